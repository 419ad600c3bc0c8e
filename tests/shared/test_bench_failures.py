"""The benchmarks' verdicts (what makes `make bench` / `make bench-faults` and their --quick forms in CI exit 1):
any loss, duplicate or dead letter a run did not inject, whatever its rates."""

from __future__ import annotations

import copy

import pytest

from bench import faults, pipeline


def _phase(n: int) -> dict:
    return {"messages": n, "stored": n, "lost": 0, "duplicated": 0, "deadletters": 0, "scored": n - 3,
            "superseded": 3, "risk_messages": n - 3}


CLEAN = {"messages": 100, "raw_received": 100, "saturated": _phase(100), "paced": _phase(40)}


def test_a_clean_pipeline_run_passes_whatever_its_rates():
    assert pipeline.failures(CLEAN) == []


@pytest.mark.parametrize(("phase", "key", "value", "named"), [
    ("saturated", "lost", 2, "2 lost"), ("paced", "duplicated", 1, "1 duplicated"),
    ("saturated", "deadletters", 5, "5 deadletters"), ("paced", "risk_messages", 30, "risk messages"),
    ("saturated", "superseded", 0, "scored"),
])
def test_each_broken_count_fails_the_pipeline_run_and_is_named(phase, key, value, named):
    run = copy.deepcopy(CLEAN)
    run[phase][key] = value
    bad = pipeline.failures(run)
    assert len(bad) == 1 and bad[0].startswith(phase) and named in bad[0]


def test_a_raw_phase_that_missed_messages_fails():
    assert pipeline.failures({**copy.deepcopy(CLEAN), "raw_received": 99}) == ["raw: 99 of 100 received"]


ROW = {"scenario": "consumer-kill", "promised": True, "lost": 0, "duplicated": 0, "phantom": 0, "ts_mismatch": 0,
       "deadletters": 0}


def test_fault_rows_fail_on_a_broken_promise_or_any_dead_letter():
    assert faults.failures([ROW, {**ROW, "scenario": "broker-kill", "promised": False, "lost": 2}]) == []
    assert faults.failures([{**ROW, "lost": 1}]) == ["consumer-kill: 1 lost"]
    assert faults.failures([{**ROW, "deadletters": 3}]) == ["consumer-kill: 3 deadletters"]
    assert faults.failures([{**ROW, "promised": False, "duplicated": 1}]) == ["consumer-kill: 1 duplicated"]
    assert faults.failures([{**ROW, "phantom": 1, "ts_mismatch": 2}]) == ["consumer-kill: 1 phantom, 2 ts_mismatch"]
