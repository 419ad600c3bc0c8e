"""ISO 10816-3 evaluation zones: the broadband vibration rule a reliability engineer applies today.

ISO 10816-3 judges industrial machines above 15 kW, measured on the bearing housings, by the RMS of
vibration velocity over 10-1000 Hz (for machines running above 600 rpm; the same measure
`industrial_iot.features` computes as v_rms_mm_s). Zones:

- A: newly commissioned machines;
- B: acceptable for unrestricted long-term operation;
- C: unsatisfactory for long-term continuous operation; run until a suitable opportunity for remedial action;
- D: severe enough to cause damage.

Zone boundaries (mm/s RMS), by machine group and foundation (a foundation is flexible when the lowest
natural frequency of machine plus support lies below the main excitation, the running speed):

| group                                   | foundation | A/B | B/C | C/D  |
|-----------------------------------------|------------|-----|-----|------|
| 1: large, 300 kW - 50 MW                | rigid      | 2.3 | 4.5 | 7.1  |
| 1                                       | flexible   | 3.5 | 7.1 | 11.0 |
| 2: medium, 15 - 300 kW                  | rigid      | 1.4 | 2.8 | 4.5  |
| 2                                       | flexible   | 2.3 | 4.5 | 7.1  |

A value on a boundary belongs to the upper zone (the boundary is where the zone starts).
"""

from __future__ import annotations

import math

ZONES = ("A", "B", "C", "D")
#: (group, foundation) -> (A/B, B/C, C/D) boundaries in mm/s RMS
BOUNDARIES: dict[tuple[int, str], tuple[float, float, float]] = {
    (1, "rigid"): (2.3, 4.5, 7.1),
    (1, "flexible"): (3.5, 7.1, 11.0),
    (2, "rigid"): (1.4, 2.8, 4.5),
    (2, "flexible"): (2.3, 4.5, 7.1),
}
GROUPS = (1, 2)
FOUNDATIONS = ("rigid", "flexible")


def boundaries(group: int, foundation: str) -> tuple[float, float, float]:
    """(A/B, B/C, C/D) boundaries (mm/s RMS) for a machine group (1, 2) and foundation."""
    if isinstance(group, bool) or group not in GROUPS:
        raise ValueError(f"group: must be 1 (large, 300 kW-50 MW) or 2 (medium, 15-300 kW), got {group!r}")
    if foundation not in FOUNDATIONS:
        raise ValueError(f"foundation: must be 'rigid' or 'flexible', got {foundation!r}")
    return BOUNDARIES[(int(group), foundation)]


def zone(v_rms_mm_s: float, group: int, foundation: str) -> str:
    """ISO 10816-3 zone "A".."D" of a velocity RMS (mm/s, 10-1000 Hz)."""
    bounds = boundaries(group, foundation)
    if isinstance(v_rms_mm_s, bool):
        raise ValueError(f"v_rms_mm_s: must be a number >= 0, got {v_rms_mm_s!r}")
    try:
        v = float(v_rms_mm_s)
    except (TypeError, ValueError):
        raise ValueError(f"v_rms_mm_s: must be a number >= 0, got {v_rms_mm_s!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"v_rms_mm_s: must be a finite number >= 0, got {v_rms_mm_s!r}")
    return ZONES[sum(v >= b for b in bounds)]


def zone_index(v_rms_mm_s: float, group: int, foundation: str) -> int:
    """The zone as 0 (A) .. 3 (D), for scoring the rule as a ranked alarm."""
    return ZONES.index(zone(v_rms_mm_s, group, foundation))
