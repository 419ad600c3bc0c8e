"""MLPerf Tiny reference models, built from Keras with seeded random weights, full int8, batch 1.

* ``mlperf_ad_autoencoder``: anomaly detection (ToyADMOS), 640 inputs (5 frames x 128 log-mel bins),
  Dense 128 x4, Dense 8, Dense 128 x4, Dense 640, ReLU between (264,192 MACs). The reference network's
  BatchNormalization after each hidden Dense is left out: at inference it is an affine map the
  reference model folds away, so the int8 graph is FULLY_CONNECTED only either way.
* ``mlperf_kws_dscnn``: keyword spotting DS-CNN, 49x10x1 MFCC input, Conv2D 64 10x4 stride 2 (same),
  four depthwise-separable blocks (DepthwiseConv2D 3x3 + Conv2D 64 1x1, ReLU), global average pooling
  over 25x5, Dense 12 + softmax (about 2.66M MACs). BatchNormalization folds into the convolutions at
  conversion and is left out here for the same reason.

Weights are Keras' seeded initialisation after one short epoch on random data (``realistic`` scale,
not a trained model); calibration uses seeded random normal inputs. Used by the firmware footprint
report (shared/tiny/report.py) and ``python -m bench.mlperf_tiny`` (writes the .tflite files and
prints the MAC counts).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OUT_DEFAULT = Path(__file__).resolve().parent.parent / "out" / "bench" / "mlperf_tiny"


def _keras():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf, tf.keras, tf.keras.layers


def autoencoder():
    """MLPerf Tiny anomaly-detection autoencoder (640-128x4-8-128x4-640)."""
    _, keras, L = _keras()
    x = keras.Input((640,), batch_size=1)
    h = x
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        h = L.Dense(units, activation="relu")(h)
    return keras.Model(x, L.Dense(640)(h), name="ad_autoencoder"), (640,)


def ds_cnn():
    """MLPerf Tiny keyword-spotting DS-CNN (12 classes)."""
    _, keras, L = _keras()
    x = keras.Input((49, 10, 1), batch_size=1)
    h = L.Conv2D(64, (10, 4), strides=(2, 2), padding="same", activation="relu")(x)
    for _ in range(4):
        h = L.DepthwiseConv2D((3, 3), padding="same", activation="relu")(h)
        h = L.Conv2D(64, (1, 1), padding="same", activation="relu")(h)
    h = L.AveragePooling2D(pool_size=(25, 5))(h)
    h = L.Flatten()(h)
    return keras.Model(x, L.Dense(12, activation="softmax")(h), name="kws_dscnn"), (49, 10, 1)


BUILDERS = {"mlperf_ad_autoencoder": autoencoder, "mlperf_kws_dscnn": ds_cnn}


def macs(name: str) -> int:
    """Multiply-accumulates per inference of the int8 graph (dense and convolution layers)."""
    if name == "mlperf_ad_autoencoder":
        dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
        return sum(a * b for a, b in zip(dims, dims[1:], strict=False))
    if name == "mlperf_kws_dscnn":
        px = 25 * 5
        return px * 64 * 10 * 4 + 4 * (px * 64 * 9 + px * 64 * 64) + 64 * 12
    raise KeyError(name)


def convert_int8(model, input_shape: tuple[int, ...], seed: int = 0, n_calib: int = 64) -> bytes:
    tf, _, _ = _keras()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, *input_shape)).astype(np.float32)
    y = rng.normal(size=(64, model.output_shape[-1])).astype(np.float32)
    model.compile("adam", "mse")
    model.fit(x, y, epochs=1, verbose=0, batch_size=16)

    def rep():
        for _ in range(n_calib):
            yield [rng.normal(size=(1, *input_shape)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def build(name: str) -> bytes:
    tf, _, _ = _keras()
    if name not in BUILDERS:
        raise KeyError(f"unknown MLPerf Tiny model {name!r}; known: {', '.join(BUILDERS)}")
    tf.keras.utils.set_random_seed(7)
    model, shape = BUILDERS[name]()
    return convert_int8(model, shape)


def build_all(out_dir: Path) -> dict[str, Path]:
    """name -> .tflite path under out_dir (reused when already there)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in BUILDERS:
        path = out_dir / f"{name}.tflite"
        if not path.exists():
            path.write_bytes(build(name))
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.mlperf_tiny", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = ap.parse_args(argv)
    paths = build_all(args.out)
    rows = {name: {"tflite": str(p), "tflite_bytes": p.stat().st_size, "macs": macs(name)} for name, p in paths.items()}
    for name, r in rows.items():
        print(f"{name:>24} {r['tflite_bytes']:>9} B {r['macs']:>10} MACs")
    (args.out / "models.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
