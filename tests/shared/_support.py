"""Helpers the shared/ tests have in common: a valid inference message, unique ids, row counts."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path


def inference(device: str, seq: int, **vitals: float) -> dict:
    """A valid healthcare ``inference`` message; keyword arguments override vitals."""
    v = {"hr_bpm": 72.0, "hrv_rmssd_ms": 40.0, "hrv_sdnn_ms": 50.0, "spo2_pct": 97.0, "rr_bpm": 14.0,
         "temp_c": 36.8, "motion_g": 0.02, "quality": 0.9}
    v.update(vitals)
    return {"v": 1, "device": device, "seq": seq, "ts": 1_700_000_000_000 + seq * 30_000, "model": "hc-tiny@1",
            "window_s": 30.0, "vitals": v, "class": "normal", "scores": {"normal": 0.9}}


def uid(prefix: str) -> str:
    """A unique client or device id, so tests sharing a session broker never meet."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def count_rows(db: Path, sql: str) -> int:
    """``sql``'s single number from a SQLite file, 0 while the table does not exist yet."""
    with sqlite3.connect(db) as con:
        try:
            return int(con.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0
