"""What every domain's training run does alike: stamps, cached tables, splits by subject.

* :func:`ensure_trained` retrains only when ``stamp.json`` is missing, its key differs from the
  config's, or an output is missing (``make demo-<domain>`` never retrains needlessly);
* :func:`cached_arrays` keeps an expensive table (simulate + DSP over thousands of windows) as one
  ``.npz`` named by a key that hashes the config and the sources it depends on;
* :func:`source_hash` is that hash of source files;
* :func:`subject_split` splits ROWS by subject (patient, machine, vehicle, user), never by window.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

STAMP_NAME = "stamp.json"
METRICS_NAME = "metrics.json"
LOCK_NAME = ".train.lock"


def source_hash(paths: Iterable[Path]) -> str:
    """First 12 hex of the SHA-256 over the files' bytes (a missing file counts as empty)."""
    h = hashlib.sha256()
    for path in paths:
        path = Path(path)
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()[:12]


def config_key(blob: Any) -> str:
    """A stable 16-hex key of any JSON-able description (dataclasses: pass ``asdict(cfg)``)."""
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_stamp(models_dir: Path, key: str, metrics: dict[str, Any], quick: bool) -> None:
    """Write ``metrics.json`` then ``stamp.json`` (the stamp last: a crash in between retrains)."""
    models_dir = Path(models_dir)
    (models_dir / METRICS_NAME).write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    (models_dir / STAMP_NAME).write_text(json.dumps({"key": key, "quick": quick}) + "\n")


def _fresh_metrics(models_dir: Path, accepted: set[str], outputs: Sequence[str]) -> tuple[dict[str, Any] | None, str]:
    """(the metrics, "") when the models in ``models_dir`` are fresh; (None, why not) otherwise."""
    missing = [f for f in (*outputs, METRICS_NAME, STAMP_NAME) if not (models_dir / f).exists()]
    if missing:
        return None, f"{missing[0]} is missing"
    try:
        if json.loads((models_dir / STAMP_NAME).read_text()).get("key") in accepted:
            return json.loads((models_dir / METRICS_NAME).read_text()), ""
    except (json.JSONDecodeError, OSError):
        return None, f"{STAMP_NAME} does not read"
    return None, "they are stale (the config or the sources changed)"


def ensure_trained(models_dir: Path, key: str, train: Callable[[], dict[str, Any]], outputs: Sequence[str],
                   also_accept: Iterable[str] = ()) -> dict[str, Any]:
    """The metrics of the models in ``models_dir``, calling ``train()`` first if they are stale.

    Fresh means: ``stamp.json`` holds ``key`` (or one of ``also_accept``, e.g. a quick run accepts
    fully trained models) and every file in ``outputs`` exists. ``train`` must write the models, the
    metrics and the stamp (:func:`write_stamp`) and return the metrics.

    Processes that find the same stale folder at once (two workers of a domain started together)
    train it once: the first holds ``.train.lock`` (an advisory ``flock``, released if it dies) while
    it trains; the others wait for it and then find the models fresh.
    """
    models_dir = Path(models_dir)
    accepted = {key, *also_accept}
    metrics, why = _fresh_metrics(models_dir, accepted, outputs)
    if metrics is not None:
        return metrics
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / LOCK_NAME, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process training the models in {models_dir}", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
            metrics, why = _fresh_metrics(models_dir, accepted, outputs)
            if metrics is not None:
                return metrics
        print(f"training the models in {models_dir}: {why}; progress follows", flush=True)
        t0 = time.monotonic()
        metrics = train()
        print(f"trained the models in {models_dir} in {time.monotonic() - t0:.0f} s", flush=True)
        return metrics


def cached_arrays(path: Path, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``build()``'s arrays, cached in ``path`` (.npz, written atomically; no pickles)."""
    path = Path(path)
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return arrays


def subject_split(subjects: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ROWS by subject id: (train_mask, test_mask); no subject is on both sides (asserted)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction!r}")
    ids = np.unique(subjects)
    if len(ids) < 2:
        raise ValueError(f"subject_split needs at least 2 subjects, got {len(ids)}")
    n_test = min(len(ids) - 1, max(1, int(round(test_fraction * len(ids)))))
    test_ids = set(np.random.default_rng(seed).permutation(ids)[:n_test].tolist())
    test = np.array([p in test_ids for p in subjects.tolist()], dtype=bool)
    train = ~test
    assert not set(np.unique(subjects[train])) & set(np.unique(subjects[test])), "subject on both sides"
    return train, test


def fork_pool(processes: int) -> Any:
    """A fork pool whose workers leave Ctrl-C and SIGTERM to the parent: Ctrl-C in a training is one
    KeyboardInterrupt in the parent (the pool is terminated on the way out), not a traceback per worker."""
    import multiprocessing as mp

    return mp.get_context("fork").Pool(processes, initializer=_worker_signals)


def _worker_signals() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal sends Ctrl-C to the whole process group
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Pool.terminate(): die quietly, not the parent's handler
