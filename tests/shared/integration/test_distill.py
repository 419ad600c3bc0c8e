"""shared.integration.distill: the cloud transformer teaches the tiny int8 student (held-out subjects)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.integration import distill
from shared.integration.report import ROW_FIELDS, check_row
from shared.runtime.metrics import auroc


def test_soft_targets_soften_with_temperature():
    p = np.array([0.01, 0.5, 0.9])
    t1, t4 = distill.soft_targets(p, 1.0), distill.soft_targets(p, 4.0)
    assert np.allclose(t1[:, 1], p, atol=1e-5) and np.allclose(t1.sum(1), 1.0)
    assert np.all(np.abs(t4[:, 1] - 0.5) <= np.abs(t1[:, 1] - 0.5) + 1e-7)
    assert t4[1, 1] == pytest.approx(0.5) and 0.5 < t4[2, 1] < 0.9


def test_kd_term_carries_the_teachers_knowledge():
    """Labels that are pure noise teach nothing; the teacher's probabilities (which know x0 matters) do."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4)).astype(np.float32)
    p_true = 1 / (1 + np.exp(-3 * x[:, 0]))
    y_noise = rng.integers(0, 2, len(x))
    cfg = distill.DistillConfig(epochs=4, alpha=0.0, temperature=2.0, batch_size=128, seeds=(0,))
    x_te = rng.normal(size=(1000, 4)).astype(np.float32)
    y_te = (rng.random(1000) < 1 / (1 + np.exp(-3 * x_te[:, 0]))).astype(int)
    kd = distill.fit_student(x, y_noise, p_true, (8,), cfg, seed=0).predict(x_te, verbose=0)[:, 1]
    hard = distill.fit_student(x, y_noise, None, (8,), cfg, seed=0).predict(x_te, verbose=0)[:, 1]
    assert auroc(y_te, kd) > 0.8
    assert auroc(y_te, hard) < 0.65


def test_bootstrap_is_paired_over_subjects():
    rng = np.random.default_rng(1)
    groups = np.repeat([f"s{i}" for i in range(12)], 20)
    y = rng.integers(0, 2, len(groups))
    s = rng.random(len(groups)) + 0.5 * y
    out = distill.bootstrap_auroc(y, groups, {"a": s, "b": s.copy(), "c": -s}, 60, pairs=(("a", "b"), ("a", "c")))
    assert out["a-b"]["p2.5"] == out["a-b"]["p97.5"] == 0.0 and out["a-b"]["share_a_better"] == 0.0
    assert out["a-c"]["share_a_better"] == 1.0 and out["a"]["p2.5"] <= out["a"]["median"] <= out["a"]["p97.5"]


def test_task_refuses_subjects_on_both_sides():
    x = np.zeros((4, 3), np.float32)
    kw = dict(teacher=np.full(4, 0.5), y=np.array([0, 1, 0, 1]), hidden=(4,), model_name="m", event="e",
              teacher_id="t@1")
    with pytest.raises(ValueError, match="both sides"):
        distill.DistillTask("d", x, groups=np.array(["a", "a", "b", "b"]), train=np.array([1, 0, 1, 1], bool), **kw)
    with pytest.raises(ValueError, match=r"teacher.*\[0, 1\]"):
        distill.DistillTask("d", x, groups=np.array(["a", "a", "b", "b"]), train=np.array([1, 1, 0, 0], bool),
                            **{**kw, "teacher": np.array([0.1, 1.2, 0.3, 0.4])})


def test_domain_without_a_teacher_hook_is_named():
    with pytest.raises(ValueError, match="no distill_task"):
        distill.load_distill_task("metaverse_eeg", quick=True)


def test_healthcare_distilled_student_fits_the_wearable(quick_models, tmp_path):
    """The quick models' transformer teaches; figures on held-out patients; the int8 student is in
    budget, compiles to C, and its AUROC follows the float student's."""
    task = distill.load_distill_task("healthcare", quick=True, models_dir=quick_models)
    assert task.x.shape[1] == 8 and set(np.unique(task.y)) == {0, 1}
    assert not set(task.groups[task.train]) & set(task.groups[~task.train])
    assert (quick_models / "cache").glob("distill-*.npz")
    rows = distill.report_rows("healthcare", True, tmp_path, models_dir=quick_models)
    assert len(rows) == 1
    row = check_row(rows[0])
    assert all(k in row for k in ROW_FIELDS)
    assert row["strategy"] == "distill" and row["baseline"] == "hard_label_student"
    assert row["subjects"] == len(np.unique(task.groups[~task.train]))
    for k in ("value", "baseline_value", "teacher_value", "value_float", "baseline_value_float"):
        assert 0.0 <= row[k] <= 1.0, k
    assert abs(row["value"] - row["value_float"]) < 0.1  # int8 beside float
    assert row["device_macs_per_inference"] == 8 * 16 + 16 * 8 + 8 * 2  # the quick config's (16, 8) widths
    assert row["student_weights_bytes"] < 32 * 1024 and row["bytes_on_wire"] > row["student_tflite_bytes"]
    ci = row["value_ci95"]
    assert ci[0] <= ci[1]
    detail = json.loads((tmp_path / "distill-healthcare.json").read_text())
    assert detail["result"]["subjects_train"] > 0 and detail["row"]["metric"] == row["metric"]
    assert (tmp_path / "distill-healthcare.tflite").read_bytes()[4:8] == b"TFL3"
    if row["compiled_c"] is None:
        from tests._tools import require_tool

        require_tool("gcc")


@pytest.mark.slow
def test_industrial_iot_distilled_student(tmp_path):
    models = tmp_path / "industrial_iot"
    rows = distill.report_rows("industrial_iot", True, tmp_path / "out", models_dir=models)
    row = check_row(rows[0])
    assert row["metric"].startswith("auroc_failure") and 0.0 <= row["value"] <= 1.0
    assert row["device_macs_per_inference"] > 0 and row["subjects"] >= 1
