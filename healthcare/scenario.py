"""The healthcare demo: a ward the models never saw, scored against its ground-truth deteriorations.

Patients (some deteriorate towards an event) wear a wrist device for simulated hours; every 5 minutes
each device runs the DSP and the int8 model on a 30 s window and publishes; each patient's clock starts
at the admission time of day (:func:`healthcare.device.admission_epoch_ms`). The ward EHR publishes
nurse charts (blood pressure, consciousness, oxygen) every ~4 h: the site feed. The cloud's risk is
scored against the events beside NEWS2 on the same rows (AUROC, events warned and lead times under one
alert rule, false alerts); the plot shows one deteriorating patient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from shared.runtime.scenario import Defaults, Scenario


class WardScenario(Scenario):
    full = Defaults(subjects=20, duration="24h", wall_s=60.0)
    quick = Defaults(subjects=4, duration="6h", wall_s=4.0)
    measurements = ("vitals",)
    table = ("charts", "risk_auroc", "news2_auroc", "events", "events_warned", "lead_time_min",
             "false_alert_patients", "news2_events_warned", "news2_lead_time_min", "news2_false_alert_patients",
             "stable_patients")

    def _config(self) -> Any:
        from healthcare.signals import CohortConfig

        return CohortConfig(n_patients=self.args.subjects, duration_h=self.run.duration_s / 3600.0,
                            seed=self.args.seed)

    def population(self) -> Sequence[Any]:
        from healthcare.signals import simulate_cohort

        self.cohort = simulate_cohort(self._config())
        return self.cohort

    def ticks(self) -> Sequence[float]:
        import numpy as np

        cfg = self._config()
        return [float(t) for t in np.arange(cfg.window_s, cfg.duration_h * 3600 + 1e-6, cfg.window_every_s)]

    def day0_ms(self) -> int:
        """UTC midnight at least two days back: a patient's t = 0 is its admission time on that day (up to
        24 h past it), and the whole stay must lie in the past."""
        from shared.runtime.fleet import utc_midnight_ms

        return utc_midnight_ms(days_ago=1 + max(1, math.ceil(self.run.duration_s / 86400.0)))

    def start_ms(self, subject: Any, day0_ms: int) -> int:
        from healthcare.device import admission_epoch_ms

        return admission_epoch_ms(subject, day0_ms)

    def site_feed(self, subjects: Sequence[Any], start_ms: dict[str, int]) -> Iterable[tuple[float, str, str, dict]]:
        """The ward EHR's nurse charts for every patient (firmware-watched ones too)."""
        from healthcare.device import chart_feed

        self.charts = chart_feed(subjects, start_ms)
        return self.charts

    def finish(self) -> dict[str, Any]:
        cfg = self.run.cloud.service.cfg
        self.threshold, self.windows = cfg.alert_threshold, cfg.alert_windows
        last = self.run.ticks[-1]
        return {"charts": sum(t_s <= last for t_s, *_ in self.charts),
                "active_models": sorted({d.model.model_id for d in self.run.fleet.devices})}

    def window_truth(self, device: str, t_s: float) -> int | None:
        """Deterioration within the risk model's horizon (windows after the event do not count)."""
        if not hasattr(self, "_events"):
            self._events = {p.id: p.event_time_s for p in self.cohort}
        ev = self._events.get(device)
        if ev is not None and t_s >= ev:
            return None
        return int(ev is not None and ev - t_s <= float(self.run.metrics.get("horizon_h", 6.0)) * 3600.0)

    def evaluate(self) -> dict[str, Any]:
        from healthcare import _report

        m = self.run.metrics
        return {"tiny_weights_bytes": m.get("tiny_weights_bytes"), "tiny_arena_bytes": m.get("tiny_arena_bytes"),
                **_report.evaluate(self.cohort, self.run.results, self.run.start_ms,
                                   horizon_h=float(m.get("horizon_h", 6.0)), alert_threshold=self.threshold,
                                   alert_windows=self.windows),
                "train_risk_auroc": m.get("risk_auroc"), "train_news2_auroc": m.get("news2_auroc")}

    def plot(self) -> Path | None:
        from healthcare import _report

        url = self.run.store_url
        return _report.plot_patient(self.cohort, self.run.results, self.run.out, self.run.start_ms,
                                    url if url.startswith("sqlite:") else None, self.threshold)
