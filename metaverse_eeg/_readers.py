"""Readers for real EEG recordings, into one shape: :class:`Recording` (microvolts, channels x samples).

* EDF and BDF through MNE (``mne.io.read_raw_edf`` / ``read_raw_bdf``; volts -> microvolts);
* the DEAP dataset's preprocessed Python files (``sXX.dat``: a pickled dict with ``data`` 40 trials x 40
  channels x 8064 samples at 128 Hz, the first 32 EEG in DEAP's Geneva order, and ``labels`` 40 x 4:
  valence, arousal, dominance, liking on a 1-9 scale). The pickle is read with an unpickler that
  accepts numpy arrays and plain containers only (a pickle from outside can otherwise run code);
* SEED-style .mat files (``scipy.io.loadmat``): one variable per trial (``<prefix>_eeg<k>``, 62
  channels x samples at 200 Hz) and optionally a ``label`` .mat with one label per trial (-1, 0, 1).

:func:`to_headset` picks the headset's 8 channels (by name) and resamples to 128 Hz, so that real
recordings go through the same DSP (:func:`headset_windows`).
"""

from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from metaverse_eeg import CHANNELS, FS_HZ, WINDOW_SAMPLES

DEAP_FS_HZ = 128.0
DEAP_CHANNELS = ("Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
                 "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2")
SEED_FS_HZ = 200.0


class RecordingError(ValueError):
    """A recording that cannot be read; the message names the file and what is wrong."""


@dataclass
class Recording:
    eeg: np.ndarray  #: (channels, samples) uV
    fs_hz: float
    channels: tuple[str, ...]
    source: str
    labels: dict[str, float] = field(default_factory=dict)  #: e.g. valence / arousal (1-9), or SEED's label

    def __post_init__(self) -> None:
        self.eeg = np.asarray(self.eeg, dtype=np.float64)
        if self.eeg.ndim != 2 or self.eeg.shape[0] != len(self.channels):
            raise RecordingError(f"{self.source}: eeg shape {self.eeg.shape} does not fit {len(self.channels)} "
                                 "channel names")
        if not self.fs_hz > 0:
            raise RecordingError(f"{self.source}: sampling rate must be > 0, got {self.fs_hz!r}")


def read_edf(path: str | Path) -> Recording:
    """EDF or BDF (by suffix) through MNE; the EEG channels in microvolts."""
    import mne

    path = Path(path)
    reader = {".edf": mne.io.read_raw_edf, ".bdf": mne.io.read_raw_bdf}.get(path.suffix.lower())
    if reader is None:
        raise RecordingError(f"{path}: expected a .edf or .bdf file")
    try:
        raw = reader(path, preload=True, verbose="error")
    except Exception as exc:  # noqa: BLE001 - MNE raises many kinds; name the file
        raise RecordingError(f"{path}: not a readable {path.suffix[1:].upper()} file ({exc})") from exc
    return Recording(raw.get_data() * 1e6, float(raw.info["sfreq"]), tuple(raw.ch_names), str(path))


class _ArraysOnly(pickle.Unpickler):
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("builtins", "dict"), ("builtins", "list"),
                ("_codecs", "encode")}  # bytes inside protocol-2 pickles written by Python 3

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: only numpy arrays are expected")
        return super().find_class(module, name)


def read_deap(path: str | Path) -> list[Recording]:
    """One DEAP participant file -> one Recording per trial (the 32 EEG channels), labels valence, arousal,
    dominance, liking (1-9)."""
    path = Path(path)
    try:
        obj = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001 - a malformed pickle raises almost anything; name the file
        raise RecordingError(f"{path}: not a DEAP preprocessed file ({exc})") from exc
    if not isinstance(obj, dict) or "data" not in obj or "labels" not in obj:
        raise RecordingError(f"{path}: expected a dict with 'data' and 'labels'")
    data, labels = np.asarray(obj["data"], dtype=np.float64), np.asarray(obj["labels"], dtype=np.float64)
    if data.ndim != 3 or data.shape[1] < 32 or labels.shape != (data.shape[0], 4):
        raise RecordingError(f"{path}: data must be trials x >=32 channels x samples and labels trials x 4, got "
                             f"{data.shape} and {labels.shape}")
    if not np.all((labels >= 1) & (labels <= 9)):
        raise RecordingError(f"{path}: labels must be on the 1-9 scale")
    names = ("valence", "arousal", "dominance", "liking")
    return [Recording(data[k, :32], DEAP_FS_HZ, DEAP_CHANNELS, f"{path}#trial{k + 1}",
                      dict(zip(names, labels[k].tolist(), strict=True))) for k in range(data.shape[0])]


def read_seed(path: str | Path, channels: tuple[str, ...], label_path: str | Path | None = None,
              fs_hz: float = SEED_FS_HZ) -> list[Recording]:
    """A SEED-style .mat: every ``*_eeg<k>`` variable is trial k (channels x samples, in ``channels`` order);
    ``label_path``: a .mat with ``label`` (one value per trial)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(path)
    except Exception as exc:  # noqa: BLE001 - scipy raises several kinds; name the file
        raise RecordingError(f"{path}: not a readable .mat file ({exc})") from exc
    trials = sorted(((int(m.group(1)), k) for k in mat if (m := re.search(r"_eeg(\d+)$", k))), key=lambda x: x[0])
    if not trials:
        raise RecordingError(f"{path}: no '<name>_eeg<k>' trial variables")
    labels = None
    if label_path is not None:
        lab = loadmat(label_path)
        if "label" not in lab:
            raise RecordingError(f"{label_path}: no 'label' variable")
        labels = np.asarray(lab["label"], dtype=float).ravel()
        if len(labels) < trials[-1][0]:
            raise RecordingError(f"{label_path}: {len(labels)} labels for {trials[-1][0]} trials")
    out = []
    for k, key in trials:
        x = np.asarray(mat[key], dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(channels):
            raise RecordingError(f"{path}: {key} has shape {x.shape}, expected ({len(channels)}, samples)")
        out.append(Recording(x, fs_hz, tuple(channels), f"{path}#{key}",
                             {} if labels is None else {"label": float(labels[k - 1])}))
    return out


def to_headset(rec: Recording) -> np.ndarray:
    """The headset's 8 channels (matched by name, case-insensitive) resampled to 128 Hz: (8, samples) uV."""
    from scipy.signal import resample_poly

    index = {c.strip().upper(): i for i, c in enumerate(rec.channels)}
    missing = [c for c in CHANNELS if c.upper() not in index]
    if missing:
        raise RecordingError(f"{rec.source}: the headset's channels {missing} are not in the recording")
    x = rec.eeg[[index[c.upper()] for c in CHANNELS]]
    if rec.fs_hz != FS_HZ:
        ratio = Fraction(FS_HZ / rec.fs_hz).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=1)
    return x


def headset_windows(rec: Recording, step_s: float = 4.0) -> np.ndarray:
    """(n, 8, 512) consecutive headset windows of a recording (every ``step_s``)."""
    x = to_headset(rec)
    step = int(round(step_s * FS_HZ))
    starts = range(0, x.shape[1] - WINDOW_SAMPLES + 1, step)
    if not len(starts):
        raise RecordingError(f"{rec.source}: shorter than one {WINDOW_SAMPLES / FS_HZ:g} s window")
    return np.stack([x[:, s:s + WINDOW_SAMPLES] for s in starts])
