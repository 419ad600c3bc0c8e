"""The integration strategies' common ground: TinyTask, the split by subject, the report's rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.integration.report import ROW_FIELDS, format_table, load_rows, merge_rows
from shared.integration.task import TinyTask, load_task, split_subjects


def _task(n: int = 60, subjects: int = 6) -> TinyTask:
    rng = np.random.default_rng(0)
    groups = np.array([f"p{i % subjects}" for i in range(n)])
    return TinyTask("synthetic", rng.standard_normal((n, 3)), np.arange(n) % 2, groups, ("a", "b"), (4,), "x")


def test_split_is_by_subject_never_by_window() -> None:
    task = _task()
    for seed in range(5):
        train, test = split_subjects(task.groups, 0.3, seed)
        assert not (train & test).any() and (train | test).all()
        assert set(task.groups[train]).isdisjoint(task.groups[test])
        assert len(set(task.groups[test])) == 2  # round(0.3 * 6)


def test_split_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        split_subjects(np.array(["a", "b"]), 1.0, 0)
    with pytest.raises(ValueError, match="at least 2 subjects"):
        split_subjects(np.array(["a", "a"]), 0.5, 0)


def test_task_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        TinyTask("d", np.array([[np.nan]]), np.array([0]), np.array(["s"]), ("a",), (1,), "m")
    with pytest.raises(ValueError, match="labels must index"):
        TinyTask("d", np.zeros((2, 1)), np.array([0, 2]), np.array(["s", "t"]), ("a", "b"), (1,), "m")
    with pytest.raises(ValueError, match="need x"):
        TinyTask("d", np.zeros((2, 1)), np.array([0]), np.array(["s", "t"]), ("a",), (1,), "m")
    sub = _task().take(np.arange(10))
    assert len(sub.x) == 10 and list(sub.subjects()) == [f"p{i}" for i in range(6)]


def test_a_domain_without_tiny_task_is_named() -> None:
    from shared import domain as domains

    lacking = [d for d in domains.names() if domains.get(d).hooks.tiny_task is None]
    if not lacking:
        pytest.skip("every registered domain declares a tiny_task")
    with pytest.raises(ValueError, match=f"{lacking[0]}.*tiny_task"):
        load_task(lacking[0], quick=True)


def _row(strategy: str, value: float) -> dict:
    return {"strategy": strategy, "domain": "d", "metric": "acc", "value": value, "baseline": "b",
            "baseline_value": 0.5, "subjects": 3, "bytes_on_wire": 10, "device_macs_per_inference": 100}


def test_merge_replaces_same_key_and_keeps_the_rest(tmp_path) -> None:
    merge_rows([_row("sl", 0.1), _row("fl", 0.2)], tmp_path)
    rows = merge_rows([_row("sl", 0.9)], tmp_path)
    assert {(r["strategy"], r["value"]) for r in rows} == {("sl", 0.9), ("fl", 0.2)}
    blob = json.loads((tmp_path / "report.json").read_text())
    assert blob["fields"] == list(ROW_FIELDS) and len(blob["rows"]) == 2
    assert load_rows(tmp_path) == rows
    table = format_table(rows)
    assert "0.900" in table and "fl" in table


def test_a_row_missing_a_field_is_refused_and_nothing_is_lost(tmp_path) -> None:
    merge_rows([_row("sl", 0.1)], tmp_path)
    bad = _row("fl", 0.2)
    del bad["bytes_on_wire"]
    with pytest.raises(ValueError, match="bytes_on_wire"):
        merge_rows([bad], tmp_path)
    assert [r["strategy"] for r in load_rows(tmp_path)] == ["sl"]
