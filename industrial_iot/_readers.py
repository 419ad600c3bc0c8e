"""Readers for real vibration recordings (re-exported by industrial_iot.signals).

- Case Western Reserve University bearing data (.mat, MATLAB 5 files read with scipy.io.loadmat): one
  record per file, named by a prefix like X097: `X097_DE_time` (drive-end accelerometer, g),
  `X097_FE_time` (fan end), `X097_BA_time` (base), each an (n, 1) column, and `X097RPM` (motor speed, a
  1 x 1 scalar; absent in a few files). The file does not state its sample rate (12 kHz or 48 kHz,
  depending on the test series), so the caller passes it.
- CSV: a header row naming the columns with their units, then one row per sample. An acceleration
  column is required: `accel_g`, `accel_mg` or `accel_m_s2` (converted to g); the sample rate comes
  from a `time_s` (or `time_ms`) column, which must increase uniformly (within 1 %), or, without one,
  from the caller's fs_hz; an optional `rpm` column gives the shaft speed (its median is used).

Every error is a ValueError that names the file and what is wrong with it.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

G = 9.80665
ACCEL_COLUMNS = {"accel_g": 1.0, "accel_mg": 1e-3, "accel_m_s2": 1.0 / G}
TIME_COLUMNS = {"time_s": 1.0, "time_ms": 1e-3}
_CWRU_VAR = re.compile(r"^(X\d+)_(DE|FE|BA)_time$")
_CWRU_RPM = re.compile(r"^(X\d+)RPM$")


@dataclass
class Recording:
    """A real recording: acceleration in g (the drive end for Case Western files), its sample rate, the
    shaft speed if the file states it, and any further accelerometers (fan end, base)."""

    source: str
    fs_hz: float
    accel_g: np.ndarray
    rpm: float | None = None
    fe_g: np.ndarray | None = None
    ba_g: np.ndarray | None = None
    key: str | None = None    # Case Western record prefix, e.g. "X097"

    @property
    def de_g(self) -> np.ndarray:
        """Drive-end acceleration (g): `accel_g`."""
        return self.accel_g

    @property
    def shaft_hz(self) -> float:
        return self.rpm / 60.0 if self.rpm is not None else math.nan


def _check_fs(fs_hz, src: str) -> float:
    if isinstance(fs_hz, bool) or not isinstance(fs_hz, int | float) or not math.isfinite(fs_hz) or fs_hz <= 0:
        raise ValueError(f"{src}: fs_hz must be a finite number > 0 (Case Western: 12000 or 48000), got {fs_hz!r}")
    return float(fs_hz)


def _vector(value, name: str, src: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{src}: variable {name} must be numeric, got dtype {a.dtype}")
    if a.ndim > 2 or (a.ndim == 2 and min(a.shape) != 1):
        raise ValueError(f"{src}: variable {name} must be a vector (n x 1), got shape {a.shape}")
    a = a.astype(np.float64).ravel()
    if a.size < 2:
        raise ValueError(f"{src}: variable {name} holds {a.size} sample(s), need at least 2")
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        raise ValueError(f"{src}: variable {name} contains {bad} NaN or infinite sample(s)")
    return a


def read_cwru_mat(path: str | Path, fs_hz: float, key: str | None = None) -> Recording:
    """A Case Western Reserve bearing-data file. fs_hz: 12000 or 48000 (the file does not say);
    key: the record prefix (e.g. "X097") when a file holds more than one record."""
    from scipy.io import loadmat

    src = str(path)
    fs = _check_fs(fs_hz, src)
    try:
        mat = loadmat(src)
    except FileNotFoundError:
        raise ValueError(f"{src}: no such file") from None
    except Exception as e:  # scipy raises several types for a file that is not MATLAB
        raise ValueError(f"{src}: not a readable MATLAB .mat file ({e})") from None
    names = [k for k in mat if not k.startswith("__")]
    keys = sorted({m.group(1) for k in names if (m := _CWRU_VAR.match(k))})
    if key is None:
        if not keys:
            raise ValueError(f"{src}: no Case Western variable like X097_DE_time (found: {', '.join(names) or 'none'})")
        if len(keys) > 1:
            raise ValueError(f"{src}: holds several records ({', '.join(keys)}); pass key= to choose one")
        key = keys[0]
    de_name = f"{key}_DE_time"
    if de_name not in mat:
        raise ValueError(f"{src}: missing variable {de_name} (the drive-end accelerometer)")
    de = _vector(mat[de_name], de_name, src)
    others = {}
    for part in ("FE", "BA"):
        name = f"{key}_{part}_time"
        if name in mat:
            others[part] = _vector(mat[name], name, src)
            if others[part].size != de.size:
                raise ValueError(f"{src}: variable {name} has {others[part].size} samples, {de_name} has {de.size}")
    rpm = None
    if f"{key}RPM" in mat:
        r = np.asarray(mat[f"{key}RPM"])
        if r.dtype.kind not in "iuf" or r.size != 1:
            raise ValueError(f"{src}: variable {key}RPM must be one number, got shape {r.shape} dtype {r.dtype}")
        rpm = float(r.ravel()[0])
        if not (math.isfinite(rpm) and rpm > 0):
            raise ValueError(f"{src}: variable {key}RPM must be a finite number > 0, got {rpm!r}")
    return Recording(src, fs, de, rpm, others.get("FE"), others.get("BA"), key)


def _number(text: str, src: str, line: int, column: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{src}: line {line}: column {column}: {text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{src}: line {line}: column {column}: {text.strip()!r} is not a finite number")
    return v


def read_csv(path: str | Path, fs_hz: float | None = None) -> Recording:
    """A CSV recording (see the module docstring for its columns)."""
    src = str(path)
    try:
        text = Path(src).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{src}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{src}: cannot read as UTF-8 text ({e})") from None
    rows = list(csv.reader(text.splitlines()))
    rows_at = [(i + 1, r) for i, r in enumerate(rows) if r and any(c.strip() for c in r)]
    if not rows_at:
        raise ValueError(f"{src}: empty file (expected a header such as time_s,accel_g)")
    _, header = rows_at[0]
    cols = [c.strip().lower() for c in header]
    if len(set(cols)) != len(cols):
        raise ValueError(f"{src}: header repeats a column: {','.join(cols)}")
    acc = [c for c in cols if c in ACCEL_COLUMNS]
    if len(acc) != 1:
        raise ValueError(f"{src}: header needs exactly one acceleration column of {', '.join(ACCEL_COLUMNS)}; "
                         f"got {','.join(cols)}")
    tcol = [c for c in cols if c in TIME_COLUMNS]
    if len(tcol) > 1:
        raise ValueError(f"{src}: header has more than one time column ({', '.join(tcol)})")
    wanted = {acc[0]: ACCEL_COLUMNS[acc[0]]}
    if tcol:
        wanted[tcol[0]] = TIME_COLUMNS[tcol[0]]
    if "rpm" in cols:
        wanted["rpm"] = 1.0
    data: dict[str, list[float]] = {c: [] for c in wanted}
    for line, r in rows_at[1:]:
        if len(r) != len(cols):
            raise ValueError(f"{src}: line {line}: {len(r)} fields, the header has {len(cols)}")
        for c, scale in wanted.items():
            data[c].append(_number(r[cols.index(c)], src, line, c) * scale)
    if len(data[acc[0]]) < 2:
        raise ValueError(f"{src}: needs at least 2 data rows, got {len(data[acc[0]])}")
    accel = np.asarray(data[acc[0]])
    if tcol:
        t = np.asarray(data[tcol[0]])
        dt = np.diff(t)
        if np.any(dt <= 0):
            k = int(np.argmax(dt <= 0))
            raise ValueError(f"{src}: column {tcol[0]} must increase, but row {k + 2} is not after row {k + 1}")
        step = float(np.median(dt))
        if np.max(np.abs(dt - step)) > 0.01 * step:
            raise ValueError(f"{src}: column {tcol[0]} is not uniformly sampled (steps {dt.min():g}..{dt.max():g} s)")
        fs_t = 1.0 / step
        if fs_hz is not None and abs(_check_fs(fs_hz, src) - fs_t) > 0.01 * fs_t:
            raise ValueError(f"{src}: fs_hz={fs_hz!r} disagrees with column {tcol[0]} ({fs_t:.6g} Hz)")
        fs = fs_t
    elif fs_hz is None:
        raise ValueError(f"{src}: no time_s or time_ms column, so fs_hz must be given")
    else:
        fs = _check_fs(fs_hz, src)
    rpm = None
    if "rpm" in data:
        rpm = float(np.median(data["rpm"]))
        if rpm <= 0:
            raise ValueError(f"{src}: column rpm must be > 0, median is {rpm!r}")
    return Recording(src, fs, accel, rpm)


def recording_windows(rec: Recording, n: int, hop: int | None = None) -> Iterator[np.ndarray]:
    """Consecutive windows of n samples of rec.accel_g (every hop samples, default n: no overlap)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: must be an integer >= 1, got {n!r}")
    hop = n if hop is None else hop
    if not isinstance(hop, int) or hop < 1:
        raise ValueError(f"hop: must be an integer >= 1, got {hop!r}")
    for start in range(0, rec.accel_g.size - n + 1, hop):
        yield rec.accel_g[start: start + n]
