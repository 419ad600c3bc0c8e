"""industrial_iot.train: the config, the stamp (no needless retraining) and, slow, the quick run end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from industrial_iot import train as T
from industrial_iot.signals import FleetConfig


def fake_train(calls: list):
    """A stand-in for train_all that writes the outputs and the stamp like the real one."""

    def run(models_dir, cfg, quick=False):
        from shared.runtime.training import write_stamp

        calls.append(cfg)
        (models_dir / "large").mkdir(parents=True, exist_ok=True)
        for name in T.OUTPUTS:
            (models_dir / name).write_text("{}")
        metrics = {"quick": quick, "n": len(calls)}
        write_stamp(models_dir, cfg.key(), metrics, quick)
        return metrics

    return run


def test_ensure_trained_trains_once_then_only_when_the_config_changes(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(T, "train_all", fake_train(calls))
    quick = T.TrainConfig.quick()
    assert T.ensure_trained(tmp_path, cfg=quick)["n"] == 1
    assert T.ensure_trained(tmp_path, cfg=quick)["n"] == 1  # fresh: read back, not retrained
    assert len(calls) == 1
    changed = replace(quick, large=replace(quick.large, epochs=2))
    assert T.ensure_trained(tmp_path, cfg=changed)["n"] == 2
    assert T.ensure_trained(tmp_path, cfg=changed)["n"] == 2 and len(calls) == 2
    (tmp_path / "anomaly.tflite").unlink()  # a missing output retrains
    assert T.ensure_trained(tmp_path, cfg=changed)["n"] == 3


def test_a_quick_run_accepts_fully_trained_models(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(T, "train_all", fake_train(calls))
    T.ensure_trained(tmp_path)  # the full config (faked)
    assert T.ensure_trained(tmp_path, quick=True)["quick"] is False
    assert len(calls) == 1
    other = tmp_path / "other"
    T.ensure_trained(other, quick=True)
    T.ensure_trained(other)  # quick models do not satisfy a full run
    assert [c == T.TrainConfig() for c in calls] == [True, False, True]


def test_config_keys_and_checks():
    full, quick = T.TrainConfig(), T.TrainConfig.quick()
    assert full.key() != quick.key() and full.key() == T.TrainConfig().key()
    assert full.train_fleet.seed != full.test_fleet.seed
    with pytest.raises(ValueError, match="TrainConfig.test_fleet"):
        T.TrainConfig(train_fleet=FleetConfig(seed=5), test_fleet=FleetConfig(seed=5))
    with pytest.raises(ValueError, match="TrainConfig.labelled_seeds"):
        T.TrainConfig(labelled_seeds=(1, 1))
    with pytest.raises(ValueError, match="TrainConfig.min_severity"):
        T.TrainConfig(min_severity=1.5)


REQUIRED = ("tiny_float_acc", "tiny_int8_acc", "tiny_float_macro_f1", "tiny_int8_macro_f1", "anomaly_auroc",
            "anomaly_float_auroc", "anomaly_threshold", "risk_auroc", "iso_auroc", "anomaly_rule_auroc", "lead_time_h",
            "iso_lead_time_h", "anomaly_lead_time_h", "rul_mae_h", "alert_threshold", "horizon_h", "alert_windows",
            "events_test", "risk_detected", "iso_detected", "false_alert_machines", "iso_false_alert_machines",
            "lead_time_spread", "iso_lead_time_spread", "tiny_weights_bytes", "tiny_arena_bytes",
            "anomaly_weights_bytes", "anomaly_arena_bytes", "train_machines", "test_machines", "time_total_s",
            "quick", "tiny_model_id", "anomaly_model_id", "risk_model_id")


@pytest.mark.slow
def test_quick_training_end_to_end(tmp_path, capsys):
    from industrial_iot.large import RiskPredictor, step_vector
    from industrial_iot.tiny import TinyModels
    from shared.cli import main

    assert main(["train", "industrial_iot", "--models", str(tmp_path), "--quick", "--if-needed"]) == 0
    assert "risk_auroc" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert all(k in metrics for k in REQUIRED) and metrics["quick"] is True
    assert json.loads((tmp_path / "stamp.json").read_text())["key"] == T.TrainConfig.quick().key()
    tm = TinyModels.load(tmp_path)
    pred = RiskPredictor.load(tmp_path / "large")
    assert tm.model_id == metrics["tiny_model_id"] and pred.alert_threshold == pytest.approx(metrics["alert_threshold"])
    mtime = (tmp_path / "stamp.json").stat().st_mtime_ns
    assert main(["train", "industrial_iot", "--models", str(tmp_path), "--quick", "--if-needed"]) == 0
    assert (tmp_path / "stamp.json").stat().st_mtime_ns == mtime  # fresh: nothing retrained
    feats = dict.fromkeys(pred.model.config.input_names[:21])
    msg = {"features": {k[2:]: None for k in feats}, "scores": {}, "anomaly": None, "iso_group": 1,
           "foundation": "flexible"}
    risk, rul = pred.predict_batch([step_vector(msg)[None, :]])
    assert 0 <= risk[0] <= 1 and 0 <= rul[0] <= pred.rul_cap_h
