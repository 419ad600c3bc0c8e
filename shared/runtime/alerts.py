"""The one alert rule of TinyLarge, used online by every service and offline by every report.

A subject's alert fires when its score has been at or above ``threshold`` on ``windows``
consecutive windows; it re-arms once the score falls below ``rearm_fraction * threshold``. The
lead time of a warning is measured from the first window at which the rule fires, counted only
within ``span_s`` before the ground-truth event, in (event - span_s, event] (an alert days earlier is
not a warning of it).
Training runs and demos state which ``windows`` and ``span_s`` they used; the healthcare service
uses 3 windows (15 min) and its training report 1 window, both with this same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class AlertState:
    """Per-subject state of the online rule."""

    above: int = 0  #: consecutive windows at or above the threshold
    alerting: bool = False


@dataclass(frozen=True)
class AlertRule:
    threshold: float
    windows: int = 3
    rearm_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.windows < 1:
            raise ValueError(f"AlertRule.windows: must be >= 1, got {self.windows!r}")
        if not 0.0 <= self.rearm_fraction <= 1.0:
            raise ValueError(f"AlertRule.rearm_fraction: must be in [0, 1], got {self.rearm_fraction!r}")

    def update(self, state: AlertState, score: float) -> bool:
        """Feed one window's score; True when this window raises a new alert."""
        state.above = state.above + 1 if score >= self.threshold else 0
        if state.above >= self.windows and not state.alerting:
            state.alerting = True
            return True
        if state.alerting and score < self.threshold * self.rearm_fraction:
            state.alerting = False
        return False

    def first_alert_s(self, times_s: Sequence[float], above: Sequence[bool], event_s: float | None,
                      span_s: float) -> float | None:
        """Time of the first window at which the rule fires (offline), counting only windows within
        ``span_s`` before ``event_s`` when there is an event; None if it never fires there."""
        run = 0
        for t, hit in zip(times_s, above, strict=True):
            run = run + 1 if hit else 0
            in_span = event_s is None or 0.0 <= event_s - t < span_s
            if run >= self.windows and in_span:
                return float(t)
        return None

    def lead_s(self, times_s: Sequence[float], scores: Sequence[float], event_s: float, span_s: float
               ) -> float | None:
        """Seconds from the first alert (within ``span_s`` before the event) to the event; None if none."""
        s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
        first = self.first_alert_s(list(times_s), list(s >= self.threshold), event_s, span_s)
        return None if first is None else float(event_s - first)
