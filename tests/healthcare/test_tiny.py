"""healthcare.tiny: subject-wise data, distillation into an int8 model inside the firmware's budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from healthcare._dataset import load_table, subject_split
from healthcare.signals import LABELS, CohortConfig
from healthcare.tiny import TinyConfig, TinyData, TinyModel, classification_metrics, save_tiny, train_tiny
from shared.tiny.int8 import SUPPORTED_OPS, Int8Runner, model_budget

TRAIN = CohortConfig(n_patients=6, duration_h=8.0, deteriorating_fraction=0.5, seed=21)
TEST = CohortConfig(n_patients=3, duration_h=8.0, deteriorating_fraction=0.5, seed=22)
QUICK = TinyConfig(hidden=(16, 8), teacher_hidden=(32,), teacher_epochs=3, epochs=3, batch_size=32,
                   representative_n=300)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple:
    cache = tmp_path_factory.mktemp("cache")
    return load_table(TRAIN, cache, workers=1), load_table(TEST, cache, workers=1)


@pytest.fixture(scope="module")
def trained(tables, tmp_path_factory) -> tuple:
    tr, te = tables
    data = TinyData(tr.vector, tr.label.astype(int), tr.patient, te.vector, te.label.astype(int), te.patient)
    res = train_tiny(QUICK, data)
    out = tmp_path_factory.mktemp("models")
    save_tiny(res, out)
    return data, res, out


def test_table_is_cached_and_reloads_identically(tables, tmp_path):
    tr, _ = tables
    a = load_table(TRAIN, tmp_path, workers=1)
    assert len(list(tmp_path.glob("cohort-*.npz"))) == 1
    b = load_table(TRAIN, tmp_path, workers=1)
    np.testing.assert_array_equal(a.vector, b.vector)
    np.testing.assert_array_equal(a.vector, tr.vector)
    assert set(np.unique(a.label)) <= set(range(len(LABELS)))
    assert all(p.startswith(f"s{TRAIN.seed}/") for p in a.patients)


def test_subject_split_never_shares_a_patient(tables):
    tr, _ = tables
    train, test = subject_split(tr.patient, 0.34, seed=5)
    assert train.any() and test.any() and not (train & test).any() and (train | test).all()
    assert not set(tr.patient[train]) & set(tr.patient[test])
    # every window of a patient is on the same side
    for p in np.unique(tr.patient):
        sides = test[tr.patient == p]
        assert sides.all() or not sides.any()


def test_tiny_data_rejects_shared_patients(tables):
    tr, _ = tables
    with pytest.raises(ValueError, match="both train and test"):
        TinyData(tr.vector, tr.label, tr.patient, tr.vector[:5], tr.label[:5], tr.patient[:5])


def test_converted_model_is_int8_with_supported_ops_and_in_budget(trained):
    _, res, out = trained
    runner = Int8Runner(out / "tiny.tflite")
    assert runner.input_dtype == np.int8 and runner.output_dtype == np.int8
    assert runner.input_shape == (8,)
    budget = model_budget(res.tflite)
    assert set(budget["ops"]) <= SUPPORTED_OPS
    assert budget["weights_bytes"] <= 32 * 1024 and budget["arena_bytes_estimate"] <= 16 * 1024
    assert budget["weights_bytes"] == res.metrics["weights_bytes"] > 0


def test_int8_agrees_with_float_on_a_batch(trained):
    data, res, out = trained
    p_float = res.keras_model.predict(data.x_test, verbose=0)
    p_int8 = TinyModel.load(out).scores(data.x_test)
    assert np.abs(p_int8 - p_float).max() < 0.1
    assert (p_int8.argmax(1) == p_float.argmax(1)).mean() >= 0.95


def test_metrics_and_files(trained):
    data, res, out = trained
    m = json.loads((out / "tiny_metrics.json").read_text())
    assert json.loads((out / "labels.json").read_text()) == list(LABELS)
    assert (out / "tiny.keras").exists()
    assert m["n_test_windows"] == len(data.y_test)
    cm = np.array(m["int8_confusion"])
    assert cm.sum() == len(data.y_test)
    assert m["int8_acc"] == pytest.approx(np.trace(cm) / cm.sum())


def test_classify_returns_labels_and_scores(trained):
    data, _, out = trained
    model = TinyModel.load(out)
    assert model.model_id == "hc-tiny@1"
    labels, scores = model.classify(data.x_test[:5])
    assert len(labels) == len(scores) == 5
    for lab, sc in zip(labels, scores, strict=True):
        assert set(sc) == set(LABELS) and all(0.0 <= v <= 1.0 for v in sc.values())
        assert lab == max(sc, key=sc.get)
    with pytest.raises(ValueError, match="to_vector"):
        model.classify(np.zeros((2, 5), dtype=np.float32))


def test_classification_metrics_by_hand():
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    assert m["acc"] == pytest.approx(0.75)
    assert m["confusion"][0][:3] == [1, 1, 0]
    # F1: label 0 -> 2/3, label 1 -> 2/3, label 2 -> 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_config_names_the_bad_key():
    with pytest.raises(ValueError, match="TinyConfig.alpha"):
        TinyConfig(alpha=1.5)


@pytest.mark.slow
def test_full_tiny_model_meets_its_targets():
    """Real-size training (a few minutes): int8 within 1 point of float, inside the budget."""
    from healthcare.train import ensure_trained

    m = ensure_trained(Path("models/healthcare"))
    assert abs(m["tiny_float_acc"] - m["tiny_int8_acc"]) <= 0.01
    assert m["tiny_weights_bytes"] <= 32 * 1024 and m["tiny_arena_bytes"] <= 16 * 1024
    assert m["tiny_int8_acc"] > 0.7
