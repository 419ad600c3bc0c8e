"""The industrial_iot demo: a plant the models never saw, scored against its ground-truth failures.

Machines (motors, pumps, fans; some develop a fault that grows to a functional failure) run for
simulated days; every ``--every-h`` hours each machine's sensor node records a 0.8 s window, runs the
DSP and both int8 models (condition classifier, anomaly autoencoder) and publishes; firmware nodes are
provisioned with their machine's bearing, ISO group and foundation. The cloud's maintenance actions
are scored against the failures: the transformer's risk beside the ISO 10816 zone rule and the anomaly
score, lead times, false alerts, remaining-life error; the plot shows one machine degrading.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.runtime.scenario import Defaults, Scenario


class PlantScenario(Scenario):
    full = Defaults(subjects=20, duration="21d", wall_s=60.0, extra={"every_h": 4.0})
    quick = Defaults(subjects=6, duration="6d", wall_s=10.0, extra={"every_h": 6.0})
    measurements = ("vibration",)
    table = ("anomaly_auroc", "risk_auroc", "iso_auroc", "failures", "detected", "iso_detected", "lead_time_h",
             "iso_lead_time_h", "anomaly_lead_time_h", "false_alert_machines", "iso_false_alert_machines",
             "rul_mae_h")

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--every-h", type=float, default=None, help="hours between windows of one machine "
                        "(default 4: the cadence the transformer learned; --quick: 6)")

    @classmethod
    def check_arguments(cls, args: argparse.Namespace) -> str | None:
        return None if args.every_h > 0 else f"--every-h: must be > 0, got {args.every_h}"

    def _config(self) -> Any:
        from industrial_iot.signals import FleetConfig

        return FleetConfig(n_machines=self.args.subjects, duration_h=self.run.duration_s / 3600.0,
                           window_every_s=self.args.every_h * 3600.0, seed=self.args.seed)

    def population(self) -> Sequence[Any]:
        from industrial_iot.signals import simulate_fleet

        self.machines = simulate_fleet(self._config())
        return self.machines

    def ticks(self) -> Sequence[float]:
        return [float(t) for t in self._config().times_s]

    def describe(self) -> str:
        return (f"plant: {len(self.machines)} machines x {self.run.duration_s / 86400:g} days, a window every "
                f"{self.args.every_h:g} h ({sum(m.fault is not None for m in self.machines)} develop a fault)")

    def firmware_options(self, subjects: Sequence[Any]) -> dict[str, Any]:
        from industrial_iot.tiny import TinyModels

        def provisioned(machine: Any) -> list[str]:  # what the node is mounted on (the app's iot_spec.c)
            b = machine.bearing.as_dict()
            return ["--n-balls", str(int(b["n_balls"])), "--ball-d", repr(float(b["ball_d"])), "--pitch-d",
                    repr(float(b["pitch_d"])), "--contact-deg", repr(float(b["contact_deg"])),
                    "--iso-group", str(int(machine.iso_group)), "--foundation", str(machine.foundation)]

        models = TinyModels.load(self.args.models)
        return {"models": ("tiny.tflite", "anomaly.tflite"), "model_id": models.model_id,
                "model_ids": (models.anomaly_model_id,), "device_args": provisioned}

    def finish(self) -> dict[str, Any]:
        svc = self.run.cloud.service
        self.threshold, self.windows = svc.rule.threshold, svc.rule.windows
        self.anomaly_threshold = svc.anomaly_threshold
        return {"every_h": self.args.every_h,
                "actions": {k: sum(a["action"] == k for a in self.run.results)
                            for k in ("none", "watch", "plan_maintenance", "maintain_now")}}

    def window_truth(self, device: str, t_s: float) -> int | None:
        """Functional failure within the risk model's horizon (windows after the failure do not count)."""
        import math

        if not hasattr(self, "_failure_h"):
            self._failure_h = {m.id: m.failure_h for m in self.machines}
        f_h, t_h = self._failure_h.get(device, math.inf), t_s / 3600.0
        if t_h >= f_h:
            return None
        return int(f_h - t_h <= float(self.run.metrics.get("horizon_h", 168.0)))

    def evaluate(self) -> dict[str, Any]:
        from industrial_iot import _report

        m = self.run.metrics
        return {**_report.evaluate(self.machines, self.run.results, self.run.day0_ms, float(m.get("horizon_h", 168.0)),
                                   self.threshold, self.windows, self.anomaly_threshold),
                "train_anomaly_auroc": m.get("anomaly_auroc"),
                "train_risk_auroc": m.get("risk_auroc"), "train_iso_auroc": m.get("iso_auroc"),
                "train_lead_time_h": m.get("lead_time_h"), "train_iso_lead_time_h": m.get("iso_lead_time_h"),
                "train_rul_mae_h": m.get("rul_mae_h")}

    def plot(self) -> Path | None:
        from industrial_iot import _report

        return _report.plot_machine(self.machines, self.run.results, self.run.out, self.run.day0_ms, self.threshold)
