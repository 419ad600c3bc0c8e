"""The vehicles demo: a fleet the models never saw, scored against the simulator's incidents and hazards.

Vehicles with drivers from calm to aggressive, each telematics unit mounted at its own random rotation,
drive on the shared road network for simulated days, ``--trips-per-day`` trip segments a day; after
every segment the unit calibrates its mounting, detects and classifies events with the int8 model and
publishes. The cloud scores each vehicle's trip history with the transformer beside the vendor score
(points per 100 km), merges road anomalies into the hazard map and sends confirmed hazards near each
vehicle back on its ``action`` stream. Risk and the vendor score are scored against the simulator's
incidents, the hazard map against its true hazards (the ones vehicles of the run drove over); the plot
shows one trip with its events, and the hazard map.

A segment is 120 s of IMU samples at 100 Hz: the Cortex-M4 image under QEMU takes seconds to read and
process one (soft double precision), so ``--qemu auto`` puts a unit under QEMU only on short runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.runtime.scenario import Defaults, DemoRun, Scenario

#: about how long the QEMU unit takes per trip segment, and the longest run 'auto' gives one
QEMU_S_PER_TRIP = 10.0
QEMU_AUTO_MAX_TRIPS = 12


def n_trips(args: argparse.Namespace) -> int:
    """Trip segments per vehicle in the run: ``--duration`` in days x ``--trips-per-day``."""
    return int(round(args.duration_s / 86400.0 * args.trips_per_day))


class FleetScenario(Scenario):
    full = Defaults(subjects=24, duration="5d", wall_s=60.0, extra={"trips_per_day": 6})
    quick = Defaults(subjects=6, duration="2d", wall_s=8.0, extra={"trips_per_day": 4})
    measurements = ("trip",)
    table = ("event_f1", "rule_event_f1", "risk_auroc", "baseline_auroc", "train_risk_auroc", "train_baseline_auroc",
             "hazard_reports", "hazards_confirmed", "hazard_precision", "hazard_recall")

    def __init__(self, run: DemoRun):
        super().__init__(run)
        self.vehicles: list[Any] = []
        self.felt: dict[int, set[str]] = {}  #: hazard id -> the vehicles that drove over it
        self.shown: dict[str, Any] = {}  #: the trip the plot shows (the most eventful one)
        self.hazard_map: Any = None

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--trips-per-day", type=int, default=None, help="trip segments per vehicle and day "
                        f"(default 6; --quick: 4); --qemu auto runs a QEMU unit only on runs of at most "
                        f"{QEMU_AUTO_MAX_TRIPS} segments (about {QEMU_S_PER_TRIP:.0f} s each)")

    @classmethod
    def check_arguments(cls, args: argparse.Namespace) -> str | None:
        return None if args.trips_per_day >= 1 else f"--trips-per-day: must be >= 1, got {args.trips_per_day}"

    @classmethod
    def auto_qemu(cls, args: argparse.Namespace) -> bool:
        return n_trips(args) <= QEMU_AUTO_MAX_TRIPS

    @property
    def every_s(self) -> float:
        return 86400.0 / self.args.trips_per_day

    def population(self) -> Sequence[Any]:
        from vehicles.signals import FleetConfig, simulate_fleet

        self.vehicles = simulate_fleet(FleetConfig(n_vehicles=self.args.subjects, seed=self.args.seed))
        return self.vehicles

    def ticks(self) -> Sequence[float]:
        return [(i + 1) * self.every_s for i in range(n_trips(self.args))]

    def describe(self) -> str:
        net = self.vehicles[0].network
        return (f"fleet: {len(self.vehicles)} vehicles x {len(self.run.ticks)} trip segments (one every "
                f"{self.every_s / 3600:g} h) on a {net.n}x{net.n} grid with {len(net.hazards)} road hazards")

    def _on_trip(self, vehicle: Any, trip: Any) -> None:
        """Every trip a unit drives (simulated or firmware): the hazards felt, the trip to plot."""
        for _, hid in trip.hazards_hit:
            self.felt.setdefault(hid, set()).add(vehicle.id)
        score = len(trip.events) + 5 * sum(e.kind in ("pothole", "speed_bump") for e in trip.events)
        if score > self.shown.get("score", -1):
            self.shown.update(score=score, trip=trip)

    def firmware_options(self, subjects: Sequence[Any]) -> dict[str, Any]:
        from vehicles.device import FirmwareUnit

        qemu_s = QEMU_S_PER_TRIP * 3 * len(self.run.ticks) if self.args.qemu > 0 else 0.0
        return {"subjects": [FirmwareUnit(v, self.every_s, self._on_trip) for v in subjects],
                "stop_timeout_s": 60.0 + qemu_s}

    def firmware_started(self, firmware: Any) -> None:
        for dev in firmware.devices:  # each unit's trip index continues from its provisioned first seq
            dev.subject.first_seq = dev.seq_start

    def start(self) -> None:
        self.run.fleet.on_trip = self._on_trip

    def finish(self) -> dict[str, Any]:
        svc = self.run.cloud.service
        self.hazard_map = svc.hazards
        return {"trips_per_day": self.args.trips_per_day, "hazard_reports": svc.counts.get("hazard_reports", 0),
                "actions_with_hazards": sum(bool(a["hazards_ahead"]) for a in self.run.results)}

    def evaluate(self) -> dict[str, Any]:
        from vehicles import _report

        m = self.run.metrics
        return {"event_f1": m.get("event_f1"), "rule_event_f1": m.get("rule_event_f1"),
                **_report.evaluate(self.vehicles, self.run.results, int(m.get("horizon_trips", 10))),
                **self.hazard_map.score(self.vehicles[0].network.hazards, self.felt),
                "train_risk_auroc": m.get("risk_auroc"), "train_baseline_auroc": m.get("baseline_auroc"),
                "train_risk_ece": m.get("risk_ece"), "train_baseline_ece": m.get("baseline_ece"),
                "train_risk_brier": m.get("risk_brier"), "train_baseline_brier": m.get("baseline_brier")}

    def plot(self) -> Path | None:
        trip = self.shown.get("trip")
        if trip is None:
            return None
        from vehicles import _report
        from vehicles.device import inference_message
        from vehicles.tiny import TinyModel

        msg = inference_message(trip.vehicle, 0, 0, trip, TinyModel.load(self.args.models))
        return _report.plot(trip, msg["events"], self.hazard_map, self.vehicles[0].network.hazards, self.run.out)
