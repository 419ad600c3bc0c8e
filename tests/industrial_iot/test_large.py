"""industrial_iot.large: the step vector from a device message, the risk/RUL transformer, the rules beside it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from industrial_iot.features import FEATURE_NAMES, Features, to_vector
from industrial_iot.large import (
    INPUT_NAMES,
    N_INPUTS,
    LargeConfig,
    MachineSteps,
    RiskPredictor,
    rul_hours,
    rul_target,
    rule_report,
    step_vector,
    train_large,
)
from industrial_iot.signals import LABELS

FEATS = {"shaft_hz": 24.6, "v_rms_mm_s": 2.1, "a_rms_g": 0.08, "peak_g": 0.4, "crest": 5.0, "kurtosis": 3.2,
         "v_0p5x_mm_s": 0.05, "v_1x_mm_s": 1.2, "v_2x_mm_s": 0.4, "v_3x_mm_s": 0.2, "v_halfx_mm_s": 0.05,
         "v_4_8x_mm_s": 0.2, "a_10_1k_g": 0.05, "a_1k_2k_g": 0.01, "a_2k_4k_g": 0.02, "env_rms_g": 0.003,
         "env_1x_g": 0.0005, "env_ftf_g": 0.0004, "env_bpfo_g": 0.0008, "env_bpfi_g": 0.0007, "env_bsf2_g": 0.0006}


def message(**over) -> dict:
    msg = {"v": 1, "device": "m001", "seq": 7, "ts": 1_700_000_000_000, "model": "iot-tiny@1", "window_s": 0.8,
           "shaft_hz": 24.6, "iso_group": 2, "foundation": "rigid", "features": dict(FEATS), "class": "normal",
           "scores": {lab: (0.94 if lab == "normal" else 0.01) for lab in LABELS}, "anomaly": 0.2,
           "anomaly_model": "iot-anomaly@1"}
    msg.update(over)
    return msg


def test_input_names_describe_the_step():
    assert len(INPUT_NAMES) == N_INPUTS == len(set(INPUT_NAMES))
    v = step_vector(message(), 4.0)
    assert v.shape == (N_INPUTS,) and v.dtype == np.float32 and np.all(np.isfinite(v))
    named = dict(zip(INPUT_NAMES, v.tolist(), strict=True))
    np.testing.assert_allclose(v[: len(FEATURE_NAMES)], to_vector(Features(**FEATS)))
    assert named["p_normal"] == pytest.approx(0.94) and named["missing_frac"] == 0.0
    assert named["dt_days"] == pytest.approx(4.0 / 24.0) and named["iso_group2"] == 1.0 and named["flexible"] == 0.0
    assert named["iso_zone"] == pytest.approx(1 / 3)  # 2.1 mm/s: zone B for group 2 rigid
    assert named["v_rel_cd_log2"] == pytest.approx(math.log2(2.1 / 4.5 + 1e-3), rel=1e-5)
    assert named["anomaly_log10"] == pytest.approx(math.log10(0.201), rel=1e-5) and named["anomaly_missing"] == 0.0


def test_step_vector_handles_nulls():
    feats = dict.fromkeys(FEATURE_NAMES)
    v = step_vector(message(features=feats, scores={}, anomaly=None), None)
    named = dict(zip(INPUT_NAMES, v.tolist(), strict=True))
    assert np.all(np.isfinite(v))
    assert np.all(v[: len(FEATURE_NAMES)] == 0.0) and named["missing_frac"] == 1.0
    assert all(named[f"p_{lab}"] == 0.0 for lab in LABELS)
    assert named["anomaly_missing"] == 1.0 and named["anomaly_log10"] == 0.0
    assert named["iso_zone"] == 0.0 and named["v_rel_cd_log2"] == 0.0 and named["dt_days"] == 0.0
    part = dict(FEATS, v_rms_mm_s=None, kurtosis=float("nan"))
    named = dict(zip(INPUT_NAMES, step_vector(message(features=part)).tolist(), strict=True))
    assert named["missing_frac"] == pytest.approx(2 / len(FEATURE_NAMES)) and named["x_kurtosis"] == 0.0


def test_step_vector_rejects_what_it_cannot_read():
    with pytest.raises(TypeError):
        step_vector(["not", "a", "dict"])
    with pytest.raises(ValueError, match="features"):
        step_vector(message(features=None))
    with pytest.raises(ValueError, match="group"):
        step_vector(message(iso_group=3))
    with pytest.raises(ValueError, match="foundation"):
        step_vector(message(foundation="floating"))


def test_rul_target_round_trips():
    h = np.array([0.0, 5.0, 100.0, 335.0, 336.0, 1000.0, np.inf])
    t = rul_target(h, 336.0)
    assert t.min() == 0.0 and t.max() == pytest.approx(1.0) and np.all(np.diff(t) >= 0)
    np.testing.assert_allclose(rul_hours(t, 336.0), np.minimum(h, 336.0), rtol=1e-4, atol=1e-3)


def synthetic_machine(name: str, seed: int, failure_h: float | None, n: int = 48, step_h: float = 4.0) -> MachineSteps:
    """A machine whose input 0 ramps up over the 3 days before its failure (a learnable signal)."""
    rng = np.random.default_rng(seed)
    t_h = np.arange(1, n + 1) * step_h
    htf = np.full(n, np.inf) if failure_h is None else failure_h - t_h
    x = rng.normal(0, 0.3, (n, N_INPUTS)).astype(np.float32)
    x[:, 0] += np.clip(3.0 - htf / 24.0, 0.0, 3.0)
    keep = htf > 0
    iso = np.where(htf < 12, 2.0, 0.0)
    return MachineSteps(name, t_h[keep] * 3600.0, x[keep], htf[keep], iso[keep], x[keep, 0].astype(np.float64),
                        math.inf if failure_h is None else failure_h * 3600.0,
                        failure_h is not None and failure_h <= t_h[-1])


SMALL = LargeConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, seq_len=12, epochs=3, samples_per_epoch=2000,
                    batch_size=64, alert_fpr=0.05, val_fraction=0.25, horizon_h=48.0, rul_cap_h=96.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    train = [synthetic_machine(f"a/m{i}", i, 150.0 + 5 * i if i % 2 else None) for i in range(12)]
    test = [synthetic_machine(f"b/m{i}", 100 + i, 140.0 + 7 * i if i % 2 else None) for i in range(6)]
    model, metrics = train_large(SMALL, train, test, anomaly_threshold=1.5)
    out = tmp_path_factory.mktemp("large")
    model.save_pretrained(str(out))
    return model, metrics, test, out


def test_risk_predictor_round_trips_through_save_and_load(trained):
    model, metrics, test, out = trained
    pred = RiskPredictor.load(out)
    assert pred.alert_threshold == pytest.approx(metrics["alert_threshold"])
    assert pred.horizon_h == SMALL.horizon_h and pred.rul_cap_h == SMALL.rul_cap_h
    assert pred.alert_windows == SMALL.alert_windows and pred.seq_len == SMALL.seq_len
    histories = [s.x[: k + 1] for s in test for k in (0, 5, len(s.t_s) - 1)]
    risk, rul = pred.predict_batch(histories)
    assert risk.shape == rul.shape == (len(histories),)
    assert np.all((risk >= 0) & (risk <= 1)) and np.all((rul >= 0) & (rul <= SMALL.rul_cap_h))
    again, _ = RiskPredictor(model).predict_batch(histories)
    np.testing.assert_allclose(risk, again, atol=1e-6)
    empty = pred.predict_batch([])
    assert len(empty[0]) == len(empty[1]) == 0


def test_training_learns_the_signal_and_reports_beside_the_rules(trained):
    _, m, _, _ = trained
    assert m["risk_auroc"] is not None and m["risk_auroc"] > 0.7
    for key in ("iso_auroc", "anomaly_rule_auroc", "lead_time_h", "iso_lead_time_h", "rul_mae_h", "events_test",
                "risk_detected", "iso_detected", "false_alert_machines", "iso_false_alert_machines"):
        assert key in m
    assert m["events_test"] == 3 and m["n_test_machines"] == 6
    assert m["alert_windows"] == SMALL.alert_windows and m["alert_span_h"] == SMALL.horizon_h


def test_train_large_refuses_a_machine_on_both_sides():
    a = [synthetic_machine("m1", 1, 100.0), synthetic_machine("m2", 2, None)]
    with pytest.raises(ValueError, match="both fleets"):
        train_large(SMALL, a, a[:1])


def test_rule_report_lead_times_and_false_alerts():
    step = 3600.0
    fails = MachineSteps("f", np.arange(1, 11) * step, np.zeros((10, N_INPUTS)), 11.0 - np.arange(1, 11),
                         np.zeros(10), np.zeros(10), 11 * step, True)
    healthy = MachineSteps("h", np.arange(1, 11) * step, np.zeros((10, N_INPUTS)), np.full(10, np.inf),
                           np.zeros(10), np.zeros(10), math.inf, False)
    up = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=float)  # above from t = 6 h; failure at 11 h
    spike = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    r = rule_report([fails, healthy], [up, spike], threshold=0.5, windows=2, horizon_h=24.0)
    assert r["lead_time_h"] == pytest.approx(4.0)  # fires at t = 7 h (2nd window above)
    assert r["detected"] == 1 and r["events"] == 1 and r["false_alert_machines"] == 1
    r = rule_report([fails, healthy], [up, spike], threshold=0.5, windows=3, horizon_h=24.0)
    assert r["false_alert_machines"] == 0 and r["lead_time_h"] == pytest.approx(3.0)
    # raised 4 h before the failure with a 2 h span: not false (the fault is developing) but no lead
    # time from it; the rule still fires inside the span: a 1 h lead
    r = rule_report([fails], [up], threshold=0.5, windows=2, horizon_h=2.0)
    assert r["false_alert_machines"] == 0 and r["detected"] == 1 and r["lead_time_h"] == pytest.approx(1.0)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="LargeConfig.rul_cap_h"):
        LargeConfig(horizon_h=168.0, rul_cap_h=100.0)
    with pytest.raises(ValueError, match="LargeConfig.alert_windows"):
        LargeConfig(alert_windows=0)
