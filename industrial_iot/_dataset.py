"""Private: simulated vibration windows -> per-window tables (features, ground truth, ISO zone), cached.

Two kinds of table, both with one row per window and the same columns (`WindowTable`):

* a FLEET table (`load_fleet`): every window of every machine of a `signals.FleetConfig`, rows grouped
  by machine and ordered by time, with the machine's ground truth (condition, severity, hours to the
  functional failure) and its ISO 10816-3 zone;
* a LABELLED table (`load_labelled`): `signals.training_windows` (class-balanced, one random machine
  per window, fault severity uniform in a range) for the tiny classifier.

Feature extraction runs `features.extract_window` (the device DSP) in a fork pool with a tqdm bar;
tables are cached as .npz (`shared.runtime.training.cached_arrays`) named by a key over the config
and the source hash of signals.py, _vibration.py and features.py, so a change to the simulator or
the DSP rebuilds them. Machine ids carry the table's seed (``s3/m001``, ``w5/t00012``) so that two
tables never share a machine id.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from industrial_iot.features import FEATURE_NAMES, extract_window, to_vector
from industrial_iot.iso10816 import FOUNDATIONS, zone_index
from industrial_iot.signals import LABELS, FleetConfig, Machine, Window, simulate_fleet, training_windows
from shared.runtime.training import cached_arrays, config_key, source_hash

DATASET_VERSION = 1
_SOURCES = ("signals.py", "_vibration.py", "features.py", "iso10816.py")


@dataclass
class WindowTable:
    """Per-window arrays (n rows)."""

    machine: np.ndarray  # (n,) str, "s<seed>/m001" (fleet) or "w<seed>/t00012" (labelled)
    t_s: np.ndarray  # (n,) float64, window time (s from the simulation start)
    features: np.ndarray  # (n, 21) float32, FEATURE_NAMES, NaN where not measurable
    vector: np.ndarray  # (n, 21) float32, features.to_vector (the tiny models' input)
    label: np.ndarray  # (n,) int8, index into signals.LABELS (ground truth)
    severity: np.ndarray  # (n,) float32, 0 healthy .. 1 functional failure
    hours_to_failure: np.ndarray  # (n,) float64, inf when the machine never fails, 0 once failed
    failure_h: np.ndarray  # (n,) float64, the machine's functional failure (h from the start; inf: none)
    iso_zone: np.ndarray  # (n,) int8, ISO 10816-3 zone index 0 (A) .. 3 (D); -1: v_rms NaN or group unknown
    iso_group: np.ndarray  # (n,) int8, 1 or 2 (0: unknown, labelled tables)
    foundation: np.ndarray  # (n,) int8, index into iso10816.FOUNDATIONS (0 rigid, 1 flexible)
    sensor_issue: np.ndarray  # (n,) bool, the sensor is loose or saturating

    def __len__(self) -> int:
        return len(self.t_s)

    @property
    def machines(self) -> np.ndarray:
        """Machine ids in order of first appearance."""
        _, first = np.unique(self.machine, return_index=True)
        return self.machine[np.sort(first)]

    def rows_of(self, machine: str) -> np.ndarray:
        """Row indices of one machine (in time order)."""
        return np.flatnonzero(self.machine == machine)

    def subset(self, mask: np.ndarray) -> WindowTable:
        return WindowTable(**{k: v[mask] for k, v in asdict(self).items()})


def dataset_sources_hash() -> str:
    """Hash of the simulator and DSP sources every table depends on."""
    here = Path(__file__).parent
    return source_hash(here / name for name in _SOURCES)


def fleet_key(cfg: FleetConfig) -> str:
    """Cache key of a fleet table: config + simulator/DSP sources + table version."""
    return config_key({"fleet": asdict(cfg), "src": dataset_sources_hash(), "v": DATASET_VERSION})


def labelled_key(n: int, seed: int, severity: tuple[float, float]) -> str:
    """Cache key of a labelled table."""
    return config_key({"labelled": [n, seed, list(severity)], "src": dataset_sources_hash(), "v": DATASET_VERSION})


def _row(w: Window, group: int | None, foundation: str, failure_h: float) -> dict:
    f = extract_window(w)
    feats = np.array([getattr(f, k) for k in FEATURE_NAMES], dtype=np.float32)
    v = float(f.v_rms_mm_s)
    known = group is not None and math.isfinite(v) and v >= 0
    return {"t_s": w.t_s, "features": feats, "vector": to_vector(f), "label": LABELS.index(w.label),
            "severity": w.severity, "hours_to_failure": w.hours_to_failure, "failure_h": failure_h,
            "iso_zone": zone_index(v, group, foundation) if known else -1,
            "iso_group": group or 0, "foundation": FOUNDATIONS.index(foundation),
            "sensor_issue": w.sensor_issue is not None}


def _machine_rows(job: tuple[Machine, np.ndarray]) -> list[dict]:
    m, times = job
    return [_row(m.window(float(t)), m.iso_group, m.foundation, m.failure_h) for t in times]


def _labelled_row(w: Window) -> list[dict]:
    # training_windows does not say a machine's ISO group: zone -1, group 0 (the classifier never sees them)
    return [_row(w, None, "rigid", math.inf)]


def _pool_map(fn, jobs: list, total: int, desc: str, workers: int) -> list[list[dict]]:
    from shared.progress import progress
    from shared.runtime.training import fork_pool

    parts: list[list[dict]] = []
    with progress(total=total, desc=desc, unit="win") as bar:
        # fork (cheap, no re-import of __main__) only before TensorFlow has started its threads
        if workers > 1 and len(jobs) > 1 and "tensorflow" not in sys.modules and os.name == "posix":
            with fork_pool(min(workers, len(jobs))) as pool:
                for part in pool.imap(fn, jobs, chunksize=max(1, min(16, len(jobs) // (8 * workers)))):
                    parts.append(part)
                    bar.update(len(part))
        else:
            for job in jobs:
                parts.append(fn(job))
                bar.update(len(parts[-1]))
    return parts


def _to_arrays(ids: list[str], parts: list[list[dict]]) -> dict[str, np.ndarray]:
    rows = [r for part in parts for r in part]
    machine = np.array([mid for mid, part in zip(ids, parts, strict=True) for _ in part])
    dtypes = {"t_s": np.float64, "label": np.int8, "severity": np.float32, "hours_to_failure": np.float64,
              "failure_h": np.float64, "iso_zone": np.int8, "iso_group": np.int8, "foundation": np.int8,
              "sensor_issue": bool}
    out = {"machine": machine}
    for key in ("features", "vector"):
        out[key] = (np.stack([r[key] for r in rows]) if rows else np.zeros((0, len(FEATURE_NAMES)))
                    ).astype(np.float32)
    for key, dt in dtypes.items():
        out[key] = np.array([r[key] for r in rows], dtype=dt)
    return out


def build_fleet(cfg: FleetConfig, workers: int = 2, desc: str = "windows") -> WindowTable:
    """Simulate the fleet and extract the features of every window of every machine."""
    machines = simulate_fleet(cfg)
    times = cfg.times_s
    parts = _pool_map(_machine_rows, [(m, times) for m in machines], len(machines) * len(times), desc, workers)
    return WindowTable(**_to_arrays([f"s{cfg.seed}/{m.id}" for m in machines], parts))


def build_labelled(n: int, seed: int, severity: tuple[float, float] = (0.1, 1.0), workers: int = 2,
                   desc: str = "labelled windows") -> WindowTable:
    """`signals.training_windows(n, seed, severity=...)` with their features (one machine per window)."""
    windows = training_windows(n, seed, severity=severity)
    parts = _pool_map(_labelled_row, windows, n, desc, workers)
    return WindowTable(**_to_arrays([f"w{seed}/{w.machine_id}" for w in windows], parts))


def _load(path: Path, build) -> WindowTable:
    return WindowTable(**cached_arrays(path, lambda: asdict(build())))


def load_fleet(cfg: FleetConfig, cache_dir: Path, workers: int = 2, desc: str = "windows") -> WindowTable:
    """The fleet's table from `cache_dir/fleet-<key>.npz`, built (and cached) when missing."""
    return _load(Path(cache_dir) / f"fleet-{fleet_key(cfg)}.npz", lambda: build_fleet(cfg, workers, desc))


def load_labelled(n: int, seed: int, cache_dir: Path, severity: tuple[float, float] = (0.1, 1.0),
                  workers: int = 2, desc: str = "labelled windows") -> WindowTable:
    """The labelled table from `cache_dir/labelled-<key>.npz`, built (and cached) when missing."""
    path = Path(cache_dir) / f"labelled-{labelled_key(n, seed, severity)}.npz"
    return _load(path, lambda: build_labelled(n, seed, severity, workers, desc))


def concat(*tables: WindowTable) -> WindowTable:
    """Rows of several tables, in order."""
    return WindowTable(**{k: np.concatenate([asdict(t)[k] for t in tables]) for k in asdict(tables[0])})
