"""healthcare.large and shared.large.transformer: step vectors, the risk transformer, batching, metrics, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from healthcare.large import INPUT_NAMES, N_INPUTS, LargeConfig, RiskPredictor, step_vector
from healthcare.signals import LABELS
from shared.large.transformer import (
    FitConfig,
    RiskConfig,
    RiskTransformer,
    fit_binary,
    left_pad,
)
from shared.runtime.metrics import auroc

VITALS = {"hr_bpm": 88.0, "hrv_rmssd_ms": 30.0, "hrv_sdnn_ms": 40.0, "spo2_pct": 95.0, "rr_bpm": 18.0,
          "temp_c": 37.2, "motion_g": 0.02, "quality": 0.9}
SCORES = dict(zip(LABELS, (0.7, 0.1, 0.05, 0.05, 0.05, 0.05), strict=True))
CHART = {"sbp_mmhg": 118.0, "consciousness": "A", "on_oxygen": False, "rr_bpm": 17.0, "temp_c": 37.0,
         "hours_since": 1.5}
IDX = {name: i for i, name in enumerate(INPUT_NAMES)}


def tiny_model(seed: int = 0, seq_len: int = 12) -> RiskTransformer:
    torch.manual_seed(seed)
    return RiskTransformer(RiskConfig(n_inputs=N_INPUTS, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                      seq_len=seq_len, dropout=0.0)).eval()


def histories(lengths: tuple[int, ...], seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, N_INPUTS)).astype(np.float32) for n in lengths]


def test_step_vector_full_inputs():
    v = step_vector(VITALS, SCORES, CHART, t_s=6 * 3600.0)
    assert v.shape == (N_INPUTS,) and v.dtype == np.float32 and np.all(np.isfinite(v))
    assert v[IDX["v_hr_bpm"]] == pytest.approx((88.0 - 75.0) / 25.0)
    assert v[IDX["missing_hr_bpm"]] == 0.0 and v[IDX["chart_missing"]] == 0.0
    assert v[IDX["p_normal"]] == pytest.approx(0.7)
    # NEWS2 of these numbers: hr 88 -> 0, rr 18 -> 0, spo2 95 -> 1, sbp 118 -> 0, temp 37.2 -> 0, air, A
    assert v[IDX["news2"]] == pytest.approx(0.1) and v[IDX["news2_missing"]] == 0.0
    assert v[IDX["tod_sin"]] == pytest.approx(1.0, abs=1e-6)  # 06:00


def test_step_vector_missing_vitals_and_no_chart():
    vit = {**VITALS, "hr_bpm": None, "spo2_pct": None, "rr_bpm": float("nan")}
    del vit["temp_c"]
    v = step_vector(vit, {}, None, t_s=0.0)
    assert np.all(np.isfinite(v))
    for k in ("hr_bpm", "spo2_pct", "rr_bpm", "temp_c"):
        assert v[IDX[f"missing_{k}"]] == 1.0 and v[IDX[f"v_{k}"]] == 0.0
    assert v[IDX["missing_quality"]] == 0.0
    assert v[IDX["chart_missing"]] == 1.0 and v[IDX["news2_missing"]] == 1.0
    assert all(v[IDX[f"p_{k}"]] == 0.0 for k in LABELS)


def test_step_vector_chart_age_from_t_s_and_bad_consciousness():
    chart = {k: v for k, v in CHART.items() if k != "hours_since"} | {"t_s": 1000.0}
    v = step_vector(VITALS, SCORES, chart, t_s=1000.0 + 6 * 3600.0)
    assert v[IDX["chart_age"]] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="consciousness"):
        step_vector(VITALS, SCORES, {**CHART, "consciousness": "X"}, 0.0)


def test_save_pretrained_round_trip_gives_the_same_outputs(tmp_path):
    model = tiny_model()
    model.config.alert_threshold = 0.37
    hs = histories((3, 12, 7))
    before = RiskPredictor(model).predict_batch(hs)
    model.save_pretrained(str(tmp_path))
    loaded = RiskPredictor.load(tmp_path)
    # equal to float32 rounding: the same weights; summation order may differ by one ulp between
    # the freshly built and the loaded module on some CPUs (seen on this machine: 6e-8)
    np.testing.assert_allclose(loaded.predict_batch(hs), before, rtol=1e-6, atol=1e-7)
    assert loaded.alert_threshold == pytest.approx(0.37)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "tinylarge-risk"


def test_predict_batch_equals_one_by_one():
    pred = RiskPredictor(tiny_model(seq_len=12))
    hs = histories((1, 5, 12, 30, 2))  # 30 > seq_len: only the last 12 steps count
    batched = pred.predict_batch(hs)
    single = np.array([pred.predict_batch([h])[0] for h in hs])
    np.testing.assert_allclose(batched, single, atol=1e-6)
    np.testing.assert_allclose(pred.predict_batch([hs[3][-12:]]), single[3:4], atol=1e-6)
    assert np.all((batched > 0) & (batched < 1))


def test_left_pad_positions_count_from_the_end():
    x, mask, pos = left_pad(histories((2, 4)), seq_len=6, n_inputs=N_INPUTS)
    assert x.shape == (2, 4, N_INPUTS)
    assert mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert pos[0].tolist() == [2, 3, 4, 5]
    with pytest.raises(ValueError, match=r"histories\[0\]"):
        left_pad([np.zeros((3, 2))], 6, N_INPUTS)


def test_predictor_rejects_a_model_of_other_width():
    with pytest.raises(ValueError, match="inputs"):
        RiskPredictor(RiskTransformer(RiskConfig(n_inputs=3, d_model=8, n_heads=2, d_ff=8, seq_len=4)))


def test_config_checks_name_the_key():
    with pytest.raises(ValueError, match="RiskConfig.n_heads"):
        RiskConfig(n_inputs=4, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="LargeConfig.alert_fpr"):
        LargeConfig(alert_fpr=0.0)


def test_fit_binary_learns_a_separable_rule():
    """Label = sign of feature 0 at the last step: a few epochs must separate it."""
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(40, N_INPUTS)).astype(np.float32) for _ in range(6)]
    samples = np.array([(i, t) for i in range(6) for t in range(40)])
    labels = np.array([seqs[i][t, 0] > 0 for i, t in samples], dtype=np.float32)
    model = tiny_model(seq_len=8)
    losses = fit_binary(model, seqs, samples, labels, FitConfig(epochs=6, batch_size=32, lr=5e-3))
    assert losses[-1] < losses[0]
    risk = RiskPredictor(model).predict_batch([seqs[i][max(0, t - 7): t + 1] for i, t in samples])
    assert auroc(labels, risk) > 0.9


def test_quick_train_all_and_stamp(tmp_path):
    from healthcare.train import TrainConfig, ensure_trained, train_all

    m = train_all(tmp_path, quick=True)
    for f in ("tiny.tflite", "tiny.keras", "labels.json", "tiny_metrics.json", "metrics.json", "stamp.json",
              "large/config.json"):
        assert (tmp_path / f).exists(), f
    for k in ("tiny_float_acc", "tiny_int8_acc", "tiny_weights_bytes", "tiny_arena_bytes", "risk_auroc",
              "news2_auroc", "lead_time_min", "news2_lead_time_min", "alert_threshold"):
        assert k in m
    stamp = (tmp_path / "stamp.json").stat().st_mtime_ns
    assert ensure_trained(tmp_path, quick=True)["alert_threshold"] == m["alert_threshold"]
    assert (tmp_path / "stamp.json").stat().st_mtime_ns == stamp  # not retrained
    assert json.loads((tmp_path / "stamp.json").read_text())["key"] == TrainConfig.quick().key()
    pred = RiskPredictor.load(tmp_path / "large")
    assert pred.alert_threshold == pytest.approx(m["alert_threshold"])


@pytest.mark.slow
def test_full_risk_model_beats_news2():
    """Real-size training (a few minutes): the transformer's AUROC beats NEWS2 on held-out patients."""
    from healthcare.train import ensure_trained

    m = ensure_trained(Path("models/healthcare"))
    assert m["risk_auroc"] > m["news2_auroc"]
