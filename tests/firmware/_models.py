"""Small Keras models covering every op the compiler supports, converted to full-int8 TFLite."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _keras():
    import tensorflow as tf

    return tf, tf.keras, tf.keras.layers


def dense_mlp():
    _, keras, L = _keras()
    x = keras.Input((20,), batch_size=1)
    h = L.Dense(32, activation="relu")(x)
    h = L.Dense(16, activation="relu6")(h)
    return keras.Model(x, L.Dense(5, activation="softmax")(h)), (20,)


def conv1d_pool():
    _, keras, L = _keras()
    x = keras.Input((64, 3), batch_size=1)
    h = L.Conv1D(8, 5, padding="same", activation="relu")(x)
    h = L.MaxPooling1D(2)(h)
    h = L.Conv1D(12, 3, strides=2, padding="valid", activation="relu")(h)
    h = L.AveragePooling1D(3, strides=2, padding="same")(h)
    h = L.Flatten()(h)
    return keras.Model(x, L.Dense(4, activation="softmax")(h)), (64, 3)


def depthwise_gap():
    _, keras, L = _keras()
    x = keras.Input((12, 12, 3), batch_size=1)
    h = L.Conv2D(6, 3, padding="same", activation="relu6")(x)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(h)
    h = L.DepthwiseConv2D(3, strides=2, padding="valid", dilation_rate=1)(h)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(x, L.Dense(3, activation="sigmoid")(h)), (12, 12, 3)


def branches():
    _, keras, L = _keras()
    x = keras.Input((32, 4), batch_size=1)
    a = L.Conv1D(8, 3, padding="same", activation="relu")(x)
    b = L.Conv1D(8, 5, padding="same", activation="tanh")(x)
    s = L.Add()([a, b])
    m = L.Multiply()([a, s])
    c = L.Concatenate()([s, m])
    h = L.GlobalAveragePooling1D()(c)
    return keras.Model(x, L.Dense(6)(h)), (32, 4)


def dense_tanh_head():
    """Like `branches` but with a Dense(tanh) head: the known XNNPACK gap (see README)."""
    _, keras, L = _keras()
    x = keras.Input((32, 4), batch_size=1)
    a = L.Conv1D(8, 3, padding="same", activation="relu")(x)
    b = L.Conv1D(8, 5, padding="same", activation="tanh")(x)
    s = L.Add()([a, b])
    c = L.Concatenate()([s, L.Multiply()([a, s])])
    h = L.GlobalAveragePooling1D()(c)
    return keras.Model(x, L.Dense(6, activation="tanh")(h)), (32, 4)


def dilated_mean():
    _, keras, L = _keras()
    x = keras.Input((40, 2), batch_size=1)  # static batch: the Reshape below stays a static RESHAPE
    h = L.Conv1D(10, 3, dilation_rate=2, padding="causal", activation="relu")(x)
    g = L.GlobalAveragePooling1D()(h)
    gate = L.Dense(10, activation="sigmoid")(g)
    h = L.Multiply()([h, L.Reshape((1, 10))(gate)])
    h = L.GlobalMaxPooling1D()(h)
    return keras.Model(x, L.Dense(3)(h)), (40, 2)


def never_seen():
    """Composed unlike the others: 2-D conv stem, squeeze-excite style broadcast add, two heads."""
    _, keras, L = _keras()
    x = keras.Input((10, 8, 2), batch_size=1)
    h = L.Conv2D(4, (3, 1), strides=(2, 1), padding="same")(x)
    h = L.Activation("relu")(h)
    p = L.AveragePooling2D((2, 2))(h)
    q = L.MaxPooling2D((2, 2))(h)
    h = L.Concatenate(axis=-1)([p, q])
    h = L.Flatten()(h)
    h1 = L.Dense(7, activation="tanh")(h)
    h2 = L.Dense(7, activation="sigmoid")(h)
    return keras.Model(x, L.Softmax()(L.Add()([h1, h2]))), (10, 8, 2)


BUILDERS: dict[str, Callable] = {
    "dense_mlp": dense_mlp,
    "conv1d_pool": conv1d_pool,
    "depthwise_gap": depthwise_gap,
    "branches": branches,
    "dilated_mean": dilated_mean,
    "never_seen": never_seen,
    "dense_tanh_head": dense_tanh_head,
}


def float_model() -> bytes:
    """A float32 (not quantized) TFLite model, which the compiler must refuse."""
    tf, keras, L = _keras()
    x = keras.Input((8,), batch_size=1)
    model = keras.Model(x, L.Dense(2)(x))
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def convert_int8(model, input_shape: tuple[int, ...], seed: int = 0, n_calib: int = 64) -> bytes:
    """Full-int8 conversion with a representative dataset of random normal samples."""
    tf, _, _ = _keras()
    rng = np.random.default_rng(seed)
    # train a little so weights are not the untrained initialisation only
    x = rng.normal(size=(128, *input_shape)).astype(np.float32)
    out_dim = model.output_shape[-1]
    y = rng.normal(size=(128, out_dim)).astype(np.float32)
    model.compile("adam", "mse")
    model.fit(x, y, epochs=1, verbose=0, batch_size=32)

    def rep():
        for i in range(n_calib):
            yield [rng.normal(size=(1, *input_shape)).astype(np.float32) * (1.0 + 0.5 * (i % 3))]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def build_all(names: list[str] | None = None) -> dict[str, bytes]:
    tf, _, _ = _keras()
    out = {}
    for name in names or list(BUILDERS):
        tf.keras.utils.set_random_seed(1)
        model, shape = BUILDERS[name]()
        out[name] = convert_int8(model, shape)
    return out
