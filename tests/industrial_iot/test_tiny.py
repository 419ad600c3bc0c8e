"""industrial_iot.tiny: machine-wise data, an int8 classifier and an int8 anomaly autoencoder within budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from industrial_iot._dataset import concat, load_fleet, load_labelled
from industrial_iot.features import FEATURE_NAMES
from industrial_iot.signals import LABELS, FleetConfig
from industrial_iot.tiny import (
    TinyConfig,
    TinyData,
    TinyModels,
    anomaly_error,
    classification_metrics,
    save_tiny,
    train_tiny,
)
from shared.runtime.training import subject_split
from shared.tiny.int8 import Int8Runner, model_budget, unsupported_ops

FLEET = FleetConfig(n_machines=6, duration_h=6 * 24.0, window_every_s=6 * 3600.0, seed=31,
                    growth_h=(48.0, 96.0), onset_frac=(0.0, 0.5))
QUICK = TinyConfig(hidden=(16,), epochs=20, ae_hidden=(12, 6, 12), ae_epochs=20, batch_size=32,
                   representative_n=200)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple:
    cache = tmp_path_factory.mktemp("cache")
    return (load_fleet(FLEET, cache, workers=1), load_labelled(140, 32, cache, workers=1),
            load_labelled(70, 33, cache, workers=1))


@pytest.fixture(scope="module")
def trained(tables, tmp_path_factory) -> tuple:
    fleet, lab_tr, lab_te = tables
    tr = concat(lab_tr, fleet)
    data = TinyData(tr.vector, tr.label.astype(int), tr.machine, lab_te.vector, lab_te.label.astype(int),
                    lab_te.machine)
    res = train_tiny(QUICK, data)
    out = tmp_path_factory.mktemp("models")
    save_tiny(res, out)
    return data, res, out


def test_tables_are_cached_and_name_machines_by_seed(tables, tmp_path):
    fleet, lab_tr, _ = tables
    a = load_fleet(FLEET, tmp_path, workers=1)
    b = load_fleet(FLEET, tmp_path, workers=1)
    assert len(list(tmp_path.glob("fleet-*.npz"))) == 1
    np.testing.assert_array_equal(a.vector, b.vector)
    np.testing.assert_array_equal(a.vector, fleet.vector)
    assert len(fleet) == FLEET.n_machines * len(FLEET.times_s)
    assert all(m.startswith(f"s{FLEET.seed}/m") for m in fleet.machines)
    assert all(m.startswith("w32/t") for m in lab_tr.machines) and len(lab_tr.machines) == 140
    assert fleet.features.shape[1] == len(FEATURE_NAMES) and fleet.vector.dtype == np.float32
    assert set(np.unique(fleet.iso_zone)) <= {0, 1, 2, 3} and set(np.unique(fleet.iso_group)) <= {1, 2}
    faulty = np.isfinite(fleet.failure_h)
    assert faulty.any() and (~faulty).any()
    assert np.all(np.isinf(fleet.hours_to_failure[~faulty]))
    assert np.bincount(lab_tr.label, minlength=len(LABELS)).tolist() == [20] * len(LABELS)


def test_split_is_by_machine_never_by_window(tables):
    fleet, lab_tr, lab_te = tables
    tr = concat(lab_tr, fleet)
    fit, val = subject_split(tr.machine, 0.25, seed=0)
    assert not set(tr.machine[fit]) & set(tr.machine[val])
    assert fit.any() and val.any()
    assert not set(lab_te.machine) & set(tr.machine)
    with pytest.raises(ValueError, match="machines in both"):
        TinyData(tr.vector, tr.label.astype(int), tr.machine, fleet.vector, fleet.label.astype(int), fleet.machine)


def test_both_models_are_int8_within_the_device_budget(trained):
    _, res, _ = trained
    for blob in (res.tflite, res.anomaly_tflite):
        budget = model_budget(blob)
        assert budget["weights_bytes"] <= QUICK.weights_max_bytes
        assert budget["arena_bytes_estimate"] <= QUICK.arena_max_bytes
        assert unsupported_ops(blob) == []
        r = Int8Runner(blob)
        assert r.input_dtype == np.int8 and r.output_dtype == np.int8 and r.input_shape == (len(FEATURE_NAMES),)
    assert Int8Runner(res.tflite).output_shape == (len(LABELS),)
    assert Int8Runner(res.anomaly_tflite).output_shape == (len(FEATURE_NAMES),)
    assert set(res.metrics["ops"]) <= {"FULLY_CONNECTED", "SOFTMAX"}
    assert set(res.metrics["anomaly_ops"]) == {"FULLY_CONNECTED"}


def test_int8_is_close_to_float(trained):
    _, res, _ = trained
    m = res.metrics
    assert m["int8_float_agreement"] >= 0.85
    assert abs(m["int8_acc"] - m["float_acc"]) <= 0.1
    assert abs(m["anomaly_auroc"] - m["anomaly_float_auroc"]) <= 0.05
    assert m["float_acc"] > 2.0 / len(LABELS)  # far above chance even with tiny data


def test_autoencoder_scores_faulty_windows_above_normal_ones(trained):
    data, res, out = trained
    models = TinyModels.load(out)
    scores = models.anomaly(data.x_test)
    normal, faulty = scores[data.y_test == 0], scores[data.y_test > 0]
    assert np.median(faulty) > 2 * np.median(normal)
    assert res.metrics["anomaly_auroc"] >= 0.8
    assert 0 < models.anomaly_threshold < np.max(scores)


def test_saved_models_load_and_follow_the_stated_formula(trained):
    data, res, out = trained
    meta = json.loads((out / "labels.json").read_text())
    assert meta["labels"] == list(LABELS) and meta["anomaly_threshold"] == res.anomaly_threshold
    assert meta["model_id"] == "iot-tiny@1" and meta["anomaly_model_id"] == "iot-anomaly@1"
    assert json.loads((out / "tiny_metrics.json").read_text())["int8_acc"] == res.metrics["int8_acc"]
    models = TinyModels.load(out)
    assert models.model_id == "iot-tiny@1" and models.anomaly_model_id == "iot-anomaly@1"
    x = data.x_test[:16]
    labels, scores = models.classify(x)
    assert len(labels) == len(scores) == 16 and all(lab in LABELS for lab in labels)
    assert all(set(s) == set(LABELS) and abs(sum(s.values()) - 1) < 0.05 for s in scores)
    assert [max(s, key=s.get) for s in scores] == labels
    # the score by hand: quantize, run, dequantize, mean squared error against the float input
    r = Int8Runner(out / "anomaly.tflite")
    q = np.clip(np.round(x.astype(np.float64) / r.input_scale) + r.input_zero_point, -128, 127).astype(np.int8)
    y = (r.predict_int8(q).astype(np.float64) - r.output_zero_point) * r.output_scale
    np.testing.assert_allclose(models.anomaly(x), ((y - x) ** 2).mean(axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="expected shape"):
        models.anomaly(x[:, :20])


def test_load_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train first"):
        TinyModels.load(tmp_path)


def test_config_and_metric_helpers():
    with pytest.raises(ValueError, match="TinyConfig.anomaly_quantile"):
        TinyConfig(anomaly_quantile=1.0)
    with pytest.raises(ValueError, match="TinyConfig.hidden"):
        TinyConfig(hidden=())
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    assert m["acc"] == 0.75 and m["recall"] == {"normal": 0.5, "imbalance": 1.0, "misalignment": 1.0}
    assert anomaly_error(np.zeros((1, 3)), np.array([[1.0, 2.0, 2.0]])).tolist() == [3.0]
