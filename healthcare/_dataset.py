"""Private: a simulated cohort -> a per-window table (features, labels, charts carried forward), cached.

One row per device window, rows grouped by patient and ordered by time. Feature extraction of tens
of thousands of windows takes a minute or two, so tables are cached as .npz files named by a hash of
the cohort config and of the simulator / DSP sources (a change to either rebuilds the table).

Patient ids are prefixed with the cohort seed (``s1/p000``) so that two cohorts never share an id.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from healthcare.signals import LABELS, CohortConfig, Patient, simulate_cohort

DATASET_VERSION = 2  #: 2: `features` holds the message's vitals (HR and HRV NaN where withheld)
CONSCIOUSNESS = ("A", "C", "V", "P", "U")
_SOURCES = ("signals.py", "_physio.py", "_ppg.py", "features.py")
CHART_FIELDS = ("chart_sbp_mmhg", "chart_consciousness", "chart_on_oxygen", "chart_rr_bpm", "chart_temp_c",
                "chart_t_s")


@dataclass
class CohortTable:
    """Per-window arrays of one cohort (n windows); per-patient arrays (p patients)."""

    patient: np.ndarray  # (n,) str, "s<seed>/<id>"
    t_s: np.ndarray  # (n,) float64, window end since the start of the stay
    clock_s: np.ndarray  # (n,) float64, seconds since midnight of the stay's first day (patient clock)
    features: np.ndarray  # (n, 8) float32, features.FEATURE_NAMES as the message carries them (NaN: null)
    vector: np.ndarray  # (n, 8) float32, features.to_vector (the tiny model's input)
    label: np.ndarray  # (n,) int8, index into signals.LABELS
    chart: np.ndarray  # (n, 6) float64, CHART_FIELDS of the latest chart at or before t_s (NaN: none yet)
    deteriorating: np.ndarray  # (n,) bool, truth: inside a deterioration episode
    patients: np.ndarray  # (p,) str
    event_s: np.ndarray  # (p,) float64, ground-truth event time (NaN: none)

    def rows_of(self, patient: str) -> np.ndarray:
        """Row indices of one patient (in time order)."""
        return np.flatnonzero(self.patient == patient)

    def event_of_rows(self) -> np.ndarray:
        """(n,) event time of each row's patient (NaN: none)."""
        lookup = dict(zip(self.patients.tolist(), self.event_s.tolist(), strict=True))
        return np.array([lookup[p] for p in self.patient.tolist()], dtype=np.float64)


def _source_hash() -> str:
    from shared.runtime.training import source_hash

    return source_hash(Path(__file__).parent / name for name in _SOURCES)


def cohort_key(cfg: CohortConfig) -> str:
    """Cache key of a cohort table: config + simulator/DSP sources + table version."""
    blob = json.dumps({"cfg": asdict(cfg), "v": DATASET_VERSION, "src": _source_hash()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _clock_offset_s(p: Patient) -> float:
    """Seconds past midnight at t = 0 of the patient's stay (the simulator's circadian clock)."""
    return p.clock_h(0.0) * 3600.0


def _patient_rows(p: Patient) -> dict[str, np.ndarray]:
    from healthcare.features import extract_window, to_vector

    charts = sorted(p.charts(), key=lambda c: c.t_s)
    chart_t = np.array([c.t_s for c in charts], dtype=np.float64)
    t, feats, vecs, labels, det, chart = [], [], [], [], [], []
    for w in p.windows():
        f = extract_window(w)
        t.append(w.t_end_s)
        feats.append([math.nan if v is None else v for v in f.message_vitals().values()])  # as the cloud sees them
        vecs.append(to_vector(f))
        labels.append(LABELS.index(w.truth.label))
        det.append(w.truth.deteriorating)
        k = int(np.searchsorted(chart_t, w.t_end_s, side="right")) - 1
        if k < 0:
            chart.append([math.nan] * len(CHART_FIELDS))
        else:
            c = charts[k]
            chart.append([c.sbp_mmhg, float(CONSCIOUSNESS.index(c.consciousness)), float(c.on_oxygen),
                          c.rr_bpm, c.temp_c, c.t_s])
    return {"t_s": np.asarray(t, np.float64), "features": np.asarray(feats, np.float32),
            "vector": np.asarray(vecs, np.float32), "label": np.asarray(labels, np.int8),
            "deteriorating": np.asarray(det, bool), "chart": np.asarray(chart, np.float64)}


def build_table(cfg: CohortConfig, workers: int = 2, desc: str = "windows") -> CohortTable:
    """Simulate the cohort and extract every window's features (tqdm progress, `workers` processes)."""
    from shared.progress import progress
    from shared.runtime.training import fork_pool

    patients = simulate_cohort(cfg)
    n_windows = int(math.floor((cfg.duration_h * 3600.0 - cfg.window_s) / cfg.window_every_s + 1e-9)) + 1
    parts: list[dict[str, np.ndarray]] = []
    with progress(total=len(patients) * n_windows, desc=desc, unit="win") as bar:
        # fork (cheap, no re-import of __main__) only before TensorFlow has started its threads
        if workers > 1 and len(patients) > 1 and "tensorflow" not in sys.modules and os.name == "posix":
            with fork_pool(min(workers, len(patients))) as pool:
                for part in pool.imap(_patient_rows, patients):
                    parts.append(part)
                    bar.update(len(part["t_s"]))
        else:
            for p in patients:
                parts.append(_patient_rows(p))
                bar.update(len(parts[-1]["t_s"]))
    ids = np.array([f"s{cfg.seed}/{p.id}" for p in patients])
    return CohortTable(
        patient=np.concatenate([np.full(len(part["t_s"]), pid) for pid, part in zip(ids, parts, strict=True)]),
        t_s=np.concatenate([part["t_s"] for part in parts]),
        clock_s=np.concatenate([part["t_s"] + _clock_offset_s(p) for p, part in zip(patients, parts, strict=True)]),
        features=np.concatenate([part["features"] for part in parts]),
        vector=np.concatenate([part["vector"] for part in parts]),
        label=np.concatenate([part["label"] for part in parts]),
        chart=np.concatenate([part["chart"] for part in parts]),
        deteriorating=np.concatenate([part["deteriorating"] for part in parts]),
        patients=ids,
        event_s=np.array([math.nan if p.event_time_s is None else p.event_time_s for p in patients]),
    )


def load_table(cfg: CohortConfig, cache_dir: Path, workers: int = 2, desc: str = "windows") -> CohortTable:
    """The cohort's table from `cache_dir/cohort-<key>.npz`, built (and cached) when missing."""
    from shared.runtime.training import cached_arrays

    arrays = cached_arrays(Path(cache_dir) / f"cohort-{cohort_key(cfg)}.npz",
                           lambda: asdict(build_table(cfg, workers=workers, desc=desc)))
    return CohortTable(**arrays)


def subject_split(patients: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ROWS by patient id (shared.runtime.training.subject_split)."""
    from shared.runtime.training import subject_split as split

    return split(patients, test_fraction, seed)
