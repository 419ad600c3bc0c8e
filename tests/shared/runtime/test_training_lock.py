"""Two processes that find the same stale models folder at once train it once (the other waits)."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

from shared.runtime.training import cached_arrays, ensure_trained, write_stamp


def _train_into(models_dir: str, barrier: mp.Barrier, out: str) -> None:
    d = Path(models_dir)

    def train() -> dict:
        with open(d / "trainings.log", "a") as f:
            f.write("trained\n")
        time.sleep(1.0)  # long enough that the other process finds the lock held
        (d / "model.bin").write_bytes(b"weights")
        metrics = {"auroc": 0.5}
        write_stamp(d, "k1", metrics, quick=True)
        return metrics

    barrier.wait()
    metrics = ensure_trained(d, "k1", train, outputs=("model.bin",))
    Path(out).write_text(json.dumps(metrics))


def test_two_processes_train_a_stale_folder_once(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_train_into, args=(str(tmp_path), barrier, str(tmp_path / f"out{i}.json")))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert (tmp_path / "trainings.log").read_text().splitlines() == ["trained"]
    assert [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(2)] == [{"auroc": 0.5}] * 2


def test_a_stale_stamp_still_retrains_under_the_lock(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"old")
    write_stamp(tmp_path, "old-key", {"auroc": 0.1}, quick=True)
    calls = []

    def train() -> dict:
        calls.append(1)
        write_stamp(tmp_path, "new-key", {"auroc": 0.9}, quick=True)
        return {"auroc": 0.9}

    assert ensure_trained(tmp_path, "new-key", train, outputs=("model.bin",)) == {"auroc": 0.9}
    assert ensure_trained(tmp_path, "new-key", train, outputs=("model.bin",)) == {"auroc": 0.9}
    assert calls == [1]


def test_cached_arrays_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "table.npz"
    got = cached_arrays(path, lambda: {"x": np.arange(5)})
    assert np.array_equal(got["x"], np.arange(5))
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.npz"]
    assert np.array_equal(cached_arrays(path, lambda: {"x": np.zeros(1)})["x"], np.arange(5))
