"""National Early Warning Score 2 (NEWS2), exactly per the Royal College of Physicians 2017 chart.

Parameter scores (chart 1, RCP 2017):

| parameter              | 3      | 2      | 1       | 0       | 1        | 2        | 3        |
|------------------------|--------|--------|---------|---------|----------|----------|----------|
| respiration rate /min  | <=8    |        | 9-11    | 12-20   |          | 21-24    | >=25     |
| SpO2 scale 1 (%)       | <=91   | 92-93  | 94-95   | >=96    |          |          |          |
| SpO2 scale 2 (%)       | <=83   | 84-85  | 86-87   | 88-92, >=93 on air | 93-94 on O2 | 95-96 on O2 | >=97 on O2 |
| air or oxygen          |        | oxygen |         | air     |          |          |          |
| systolic BP (mmHg)     | <=90   | 91-100 | 101-110 | 111-219 |          |          | >=220    |
| pulse /min             | <=40   |        | 41-50   | 51-90   | 91-110   | 111-130  | >=131    |
| consciousness          |        |        |         | A       |          |          | C,V,P,U  |
| temperature (C)        | <=35.0 |        | 35.1-36.0 | 36.1-38.0 | 38.1-39.0 | >=39.1 |          |

Scale 2 is for patients with hypercapnic respiratory failure (target SpO2 88-92 %), chosen by a
clinician. Clinical risk (response band): aggregate 0-4 "low", unless a single parameter scores 3:
"low-medium"; 5-6 "medium"; >= 7 "high". `red_flag` is true when any single parameter scores 3.

Measurements that are not whole numbers are rounded half up first: respiration rate, SpO2, systolic
BP and pulse to integers, temperature to one decimal (the chart's resolution), so e.g. RR 20.4 -> 20
scores 0 and RR 20.5 -> 21 scores 2; temperature 38.04 -> 38.0 scores 0, 38.05 -> 38.1 scores 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CONSCIOUSNESS = ("A", "C", "V", "P", "U")
BANDS = ("low", "low-medium", "medium", "high")

# (upper bound inclusive, score) pairs, tried in order; values above the last bound score `else`.
_RR = ((8, 3), (11, 1), (20, 0), (24, 2))
_RR_ELSE = 3
_SPO2_1 = ((91, 3), (93, 2), (95, 1))
_SPO2_1_ELSE = 0
_SPO2_2 = ((83, 3), (85, 2), (87, 1), (92, 0))
_SPO2_2_O2 = ((94, 1), (96, 2))  # >= 93 on oxygen; else 3
_SBP = ((90, 3), (100, 2), (110, 1), (219, 0))
_SBP_ELSE = 3
_HR = ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2))
_HR_ELSE = 3
_TEMP10 = ((350, 3), (360, 1), (380, 0), (390, 1))  # temperature in tenths of a degree
_TEMP_ELSE = 2


@dataclass(frozen=True)
class News2:
    score: int
    band: str  # "low" | "low-medium" | "medium" | "high"
    red_flag: bool  # any single parameter scored 3
    sub: dict[str, int] = field(default_factory=dict)  # per parameter: rr, spo2, oxygen, sbp, hr, ...


def _round_half_up(x: float, decimals: int = 0) -> int:
    """x rounded half up, in units of 10**-decimals (the small epsilon absorbs binary representation)."""
    return int(math.floor(x * 10**decimals + 0.5 + 1e-9))


def _lookup(v: int, table: tuple[tuple[int, int], ...], default: int) -> int:
    for bound, s in table:
        if v <= bound:
            return s
    return default


def _number(name: str, x: object, upper: float) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
        raise ValueError(f"{name}: must be a number, got {x!r}")
    v = float(x)
    if not math.isfinite(v) or v < 0 or v > upper:
        raise ValueError(f"{name}: must be finite and in 0..{upper:g}, got {x!r}")
    return v


def band_of(total: int, red_flag: bool) -> str:
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    return "low-medium" if red_flag else "low"


def score(rr: float, spo2: float, on_oxygen: bool, sbp: float, hr: float, consciousness: str, temp_c: float,
          spo2_scale: int = 1) -> News2:
    """NEWS2 of one set of observations; invalid input raises ValueError naming the parameter."""
    rr_v = _round_half_up(_number("rr", rr, 100))
    spo2_v = _round_half_up(_number("spo2", spo2, 100))
    sbp_v = _round_half_up(_number("sbp", sbp, 400))
    hr_v = _round_half_up(_number("hr", hr, 400))
    temp_v = _round_half_up(_number("temp_c", temp_c, 50), 1)
    if not isinstance(on_oxygen, bool | np.bool_):
        raise ValueError(f"on_oxygen: must be a bool, got {on_oxygen!r}")
    if consciousness not in CONSCIOUSNESS:
        raise ValueError(f"consciousness: must be one of {CONSCIOUSNESS}, got {consciousness!r}")
    if spo2_scale not in (1, 2) or isinstance(spo2_scale, bool):
        raise ValueError(f"spo2_scale: must be 1 or 2, got {spo2_scale!r}")
    if spo2_scale == 1:
        s_spo2 = _lookup(spo2_v, _SPO2_1, _SPO2_1_ELSE)
    elif spo2_v <= 92 or not on_oxygen:
        s_spo2 = _lookup(spo2_v, _SPO2_2, 0)
    else:
        s_spo2 = _lookup(spo2_v, _SPO2_2_O2, 3)
    sub = {
        "rr": _lookup(rr_v, _RR, _RR_ELSE),
        "spo2": s_spo2,
        "oxygen": 2 if on_oxygen else 0,
        "sbp": _lookup(sbp_v, _SBP, _SBP_ELSE),
        "hr": _lookup(hr_v, _HR, _HR_ELSE),
        "consciousness": 0 if consciousness == "A" else 3,
        "temp_c": _lookup(temp_v, _TEMP10, _TEMP_ELSE),
    }
    total = sum(sub.values())
    red = any(v == 3 for v in sub.values())
    return News2(total, band_of(total, red), red, sub)


@dataclass(frozen=True)
class News2Array:
    """Vectorised result: one entry per observation set."""

    score: np.ndarray  # int16
    red_flag: np.ndarray  # bool
    band: np.ndarray  # str ("low", "low-medium", "medium", "high")


def _table_array(v: np.ndarray, table: tuple[tuple[int, int], ...], default: int) -> np.ndarray:
    out = np.full(v.shape, default, dtype=np.int16)
    for bound, s in reversed(table):
        out[v <= bound] = s
    return out


def _array(name: str, x: object, upper: float) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim > 1:
        raise ValueError(f"{name}: must be a scalar or 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a > upper):
        raise ValueError(f"{name}: every value must be finite and in 0..{upper:g}")
    return a


def score_array(rr, spo2, on_oxygen, sbp, hr, consciousness, temp_c, spo2_scale=1) -> News2Array:
    """`score` over numpy arrays (broadcast together; scalars allowed). consciousness: array of
    "A"/"C"/"V"/"P"/"U" strings; spo2_scale: 1, 2, or an array of them."""
    rr_v = np.floor(_array("rr", rr, 100) + 0.5 + 1e-9).astype(np.int64)
    spo2_v = np.floor(_array("spo2", spo2, 100) + 0.5 + 1e-9).astype(np.int64)
    sbp_v = np.floor(_array("sbp", sbp, 400) + 0.5 + 1e-9).astype(np.int64)
    hr_v = np.floor(_array("hr", hr, 400) + 0.5 + 1e-9).astype(np.int64)
    temp_v = np.floor(_array("temp_c", temp_c, 50) * 10 + 0.5 + 1e-9).astype(np.int64)
    o2 = np.asarray(on_oxygen)
    if o2.dtype != np.bool_:
        raise ValueError("on_oxygen: must be bool values")
    cons = np.asarray(consciousness, dtype=object)
    bad = ~np.isin(cons.astype(str), CONSCIOUSNESS)
    if np.any(bad):
        raise ValueError(f"consciousness: values must be in {CONSCIOUSNESS}")
    scale = np.asarray(spo2_scale)
    if not np.all(np.isin(scale, (1, 2))) or scale.dtype == np.bool_:
        raise ValueError("spo2_scale: values must be 1 or 2")
    rr_v, spo2_v, sbp_v, hr_v, temp_v, o2, cons, scale = np.broadcast_arrays(
        rr_v, spo2_v, sbp_v, hr_v, temp_v, o2, cons, scale)
    s1 = _table_array(spo2_v, _SPO2_1, _SPO2_1_ELSE)
    s2 = np.where((spo2_v <= 92) | ~o2, _table_array(spo2_v, _SPO2_2, 0), _table_array(spo2_v, _SPO2_2_O2, 3))
    subs = np.stack([
        _table_array(rr_v, _RR, _RR_ELSE),
        np.where(scale == 1, s1, s2).astype(np.int16),
        np.where(o2, 2, 0).astype(np.int16),
        _table_array(sbp_v, _SBP, _SBP_ELSE),
        _table_array(hr_v, _HR, _HR_ELSE),
        np.where(cons.astype(str) == "A", 0, 3).astype(np.int16),
        _table_array(temp_v, _TEMP10, _TEMP_ELSE),
    ])
    total = subs.sum(axis=0).astype(np.int16)
    red = np.any(subs == 3, axis=0)
    band = np.where(total >= 7, "high", np.where(total >= 5, "medium", np.where(red, "low-medium", "low")))
    return News2Array(total, red, band)


score_vector = score_array  # alias: the name the design brief used
