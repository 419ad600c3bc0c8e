"""shared.tiny.int8: full-int8 conversion, the LiteRT runner's (de)quantization, budget numbers."""

from __future__ import annotations

import numpy as np
import pytest

from shared.tiny.int8 import SUPPORTED_OPS, BudgetError, Int8Runner, budget_check, model_budget, to_int8_tflite

N_IN, HIDDEN, N_OUT = 6, 12, 4


@pytest.fixture(scope="module")
def converted() -> tuple[object, np.ndarray, bytes]:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(3)
    inp = keras.Input((N_IN,))
    h = keras.layers.Dense(HIDDEN, activation="relu")(inp)
    out = keras.layers.Softmax()(keras.layers.Dense(N_OUT)(h))
    model = keras.Model(inp, out)
    # non-zero biases so that the converter keeps them as constant tensors
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.linspace(-0.5, 0.5, layer.bias.shape[0]).astype("float32"))
    x = np.random.default_rng(0).normal(size=(400, N_IN)).astype(np.float32)
    return model, x, to_int8_tflite(model, x)


def test_conversion_is_full_int8_with_supported_ops(converted):
    _, _, blob = converted
    runner = Int8Runner(blob)
    assert runner.input_dtype == np.int8 and runner.output_dtype == np.int8
    ops = model_budget(blob)["ops"]
    assert ops == ["FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]
    assert set(ops) <= SUPPORTED_OPS


def test_budget_counts_weights_and_biases(converted):
    _, _, blob = converted
    b = model_budget(blob)
    # int8 weight matrices + int32 biases, nothing else constant
    expected = N_IN * HIDDEN + HIDDEN * N_OUT + 4 * (HIDDEN + N_OUT)
    assert b["weights_bytes"] == expected
    # batch 1: the largest live set is one FC's int8 input and output, each padded to 16 bytes
    assert b["arena_bytes_estimate"] == 16 + 16
    assert budget_check(blob) == b


def test_budget_check_raises_with_numbers(converted):
    _, _, blob = converted
    with pytest.raises(BudgetError, match=r"weights \d+ B > 100 B"):
        budget_check(blob, weights_max=100)
    with pytest.raises(BudgetError, match=r"arena ~32 B > 8 B"):
        budget_check(blob, arena_max=8)


def test_int8_agrees_with_float(converted):
    model, x, blob = converted
    runner = Int8Runner(blob)
    p_float = model.predict(x, verbose=0)
    p_int8 = runner.predict(x)
    assert p_int8.shape == p_float.shape
    assert np.abs(p_int8 - p_float).max() < 0.05
    assert (p_int8.argmax(1) == p_float.argmax(1)).mean() >= 0.97


def test_runner_batches_and_quantizes_consistently(converted):
    _, x, blob = converted
    runner = Int8Runner(blob, max_batch=7)  # forces several chunks and resizes
    q = runner.quantize(x[:20])
    assert q.dtype == np.int8
    np.testing.assert_allclose((q.astype(float) - runner.input_zero_point) * runner.input_scale, x[:20],
                               atol=runner.input_scale / 2 + 1e-6)
    batched = runner.predict_int8(q)
    one_by_one = np.concatenate([runner.predict_int8(q[i: i + 1]) for i in range(len(q))])
    np.testing.assert_array_equal(batched, one_by_one)
    with pytest.raises(TypeError, match="int8"):
        runner.predict_int8(x[:2])
    with pytest.raises(ValueError, match="input shape"):
        runner.predict_int8(q[:, :3])


def test_rejects_bad_representative(converted):
    model, _, _ = converted
    with pytest.raises(ValueError, match="NaN"):
        to_int8_tflite(model, np.full((4, N_IN), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        to_int8_tflite(model, np.zeros((0, N_IN), dtype=np.float32))
