"""CSV readers for real telematics logs (an IMU log and a GNSS log with stated columns and units)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

IMU_COLUMNS = ("t_s", "ax_mps2", "ay_mps2", "az_mps2", "gx_rads", "gy_rads", "gz_rads")
GNSS_COLUMNS = ("t_s", "lat_deg", "lon_deg", "speed_mps")


def _read_csv(path: str | Path, columns: tuple[str, ...], allow_empty: tuple[str, ...] = ()) -> np.ndarray:
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise ValueError(f"{path}: empty file")
    header = [h.strip() for h in lines[0].split(",")]
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; need {list(columns)}")
    idx = [header.index(c) for c in columns]
    rows = []
    for no, ln in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in ln.split(",")]
        if len(cells) != len(header):
            raise ValueError(f"{path}: line {no}: {len(cells)} cells, header has {len(header)}")
        row = []
        for c, i in zip(columns, idx, strict=True):
            cell = cells[i]
            if cell == "" and c in allow_empty:
                row.append(math.nan)
                continue
            try:
                val = float(cell)
            except ValueError:
                raise ValueError(f"{path}: line {no}: column {c}: not a number: {cell!r}") from None
            if not math.isfinite(val):
                raise ValueError(f"{path}: line {no}: column {c}: not finite: {cell!r}")
            row.append(val)
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    arr = np.array(rows, dtype=np.float64)
    if np.any(np.diff(arr[:, 0]) <= 0):
        raise ValueError(f"{path}: column t_s must increase strictly")
    return arr


def read_imu_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, float]:
    """IMU log: header `t_s,ax_mps2,ay_mps2,az_mps2,gx_rads,gy_rads,gz_rads` (seconds; specific force in
    m/s^2, +9.81 on the up axis at rest; angular rate in rad/s), at a constant rate. Returns (acc (n, 3),
    gyro (n, 3), fs_hz); a clear ValueError names a missing column, a bad cell or an uneven rate."""
    arr = _read_csv(path, IMU_COLUMNS)
    if len(arr) < 2:
        raise ValueError(f"{path}: need at least 2 IMU rows")
    dt = np.diff(arr[:, 0])
    fs = 1.0 / float(np.median(dt))
    if np.max(np.abs(dt * fs - 1.0)) > 0.1:
        raise ValueError(f"{path}: t_s is not evenly spaced (median rate {fs:.3g} Hz, deviations over 10 %)")
    return arr[:, 1:4], arr[:, 4:7], fs


def read_gnss_csv(path: str | Path) -> np.ndarray:
    """GNSS log: header `t_s,lat_deg,lon_deg,speed_mps` (seconds on the IMU's clock, WGS84 degrees,
    ground speed in m/s); empty lat/lon/speed cells are dropouts (NaN). Returns (m, 4)."""
    arr = _read_csv(path, GNSS_COLUMNS, allow_empty=("lat_deg", "lon_deg", "speed_mps"))
    bad = (np.abs(arr[:, 1]) > 90) | (np.abs(arr[:, 2]) > 180) | (arr[:, 3] < 0)
    if np.any(bad):
        raise ValueError(f"{path}: row {int(np.argmax(bad)) + 2}: lat/lon out of range or negative speed")
    return arr


def read_trip_csv(imu_path: str | Path, gnss_path: str | Path) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """An IMU log and a GNSS log as one trip segment's arrays: (acc, gyro, fs_hz, gnss), the GNSS times
    relative to the IMU's first sample (``signals.trip_from_csv`` makes the Trip)."""
    acc, gyro, fs = read_imu_csv(imu_path)
    t0 = _read_csv(imu_path, ("t_s",))[0, 0]
    gnss = read_gnss_csv(gnss_path)
    gnss[:, 0] -= t0
    return acc, gyro, fs, gnss
