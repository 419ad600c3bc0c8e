"""shared.integration.label_fraction: a cloud teacher fitted on few labelled subjects labels the rest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.integration import distill, label_fraction
from shared.integration.report import check_row


def test_labelled_subjects_are_whole_nested_stratified_and_never_held_out():
    groups = np.repeat([f"s{i:03d}" for i in range(200)], 5)
    y = np.zeros(len(groups), int)
    y[(np.arange(len(groups)) % 5 == 4) & (np.arange(len(groups)) < 300)] = 1  # s000..s059 have an event
    train = np.isin(groups, [f"s{i:03d}" for i in range(0, 200, 2)])  # even subjects train, odd held out
    got = label_fraction.labelled_subjects(groups, y, train, label_fraction.FRACTIONS, seed=3)
    assert [len(got[f]) for f in label_fraction.FRACTIONS] == [1, 5, 20, 100]
    held_out = set(groups[~train])
    for f, subs in got.items():
        assert not set(subs) & held_out, f
        assert set(subs) & set(groups[train & (y == 1)]), f  # at least one subject with an event
    assert set(got[0.01]) <= set(got[0.05]) <= set(got[0.2]) <= set(got[1.0])
    assert set(got[1.0]) == set(groups[train])


def test_history_features_are_causal():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    h = label_fraction.history_features(x, groups)
    x2 = x.copy()
    x2[2] = 99.0  # a's last window changes: a's earlier rows and all of b's must not
    h2 = label_fraction.history_features(x2, groups)
    assert np.array_equal(h[:2], h2[:2]) and np.array_equal(h[3:], h2[3:]) and not np.array_equal(h[2], h2[2])
    assert np.allclose(h[1, 6:8], (x[0] + x[1]) / 2) and np.allclose(h[3, 6:8], x[3])  # b's mean restarts


def test_healthcare_rows_per_fraction(quick_models, tmp_path):
    """The quick form end to end: a row per fraction, labelled subjects counted, teacher never on held-out
    patients, intervals around their estimates, int8 beside float, a curve written."""
    task = distill.load_distill_task("healthcare", quick=True, models_dir=quick_models)
    n_train = len(np.unique(task.groups[task.train]))
    held_out = set(np.unique(task.groups[~task.train]))
    rows = label_fraction.report_rows("healthcare", True, tmp_path, models_dir=quick_models)
    assert [r["strategy"] for r in rows] == ["distill_labels_1", "distill_labels_5", "distill_labels_20",
                                              "distill_labels_100"]
    detail = json.loads((tmp_path / "label_fraction-healthcare.json").read_text())
    for row, f, p in zip(rows, label_fraction.FRACTIONS, detail["result"]["fractions"], strict=True):
        check_row(row)
        want = n_train if f == 1.0 else max(1, round(f * n_train))
        assert row["labelled_subjects"] == want == len(p["teacher_subjects"])
        assert not set(p["teacher_subjects"]) & held_out
        assert set(p["teacher_subjects"]) == set(p["labelled_subject_ids"])
        assert row["subjects"] == len(held_out)
        for k in ("value", "baseline_value", "teacher_value", "value_float", "baseline_value_float"):
            assert 0.0 <= row[k] <= 1.0, (f, k)
        lo, hi = row["diff_ci95"]
        assert lo <= row["diff"] <= hi, f
        assert row["diff"] == pytest.approx(row["value"] - row["baseline_value"], abs=1e-3)
        assert abs(row["value"] - row["value_float"]) < 0.1, f  # int8 follows float
    assert rows[-1]["labelled_windows"] == rows[-1]["windows_train"]
    assert rows[0]["labelled_windows"] < rows[-1]["labelled_windows"]
    assert (tmp_path / "label_fraction-healthcare.png").stat().st_size > 1000
