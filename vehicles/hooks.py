"""vehicles' code as the platform sees it (:class:`shared.domain.DomainHooks`): telematics units, the risk
transformer and the road-hazard map."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.domain import DomainHooks


class Hooks(DomainHooks):
    @property
    def scenario(self) -> type:
        """The demo: a fleet on the road network for days (vehicles.scenario)."""
        from vehicles.scenario import FleetScenario

        return FleetScenario

    # -- models: the unit's int8 event classifier and the driver risk transformer (vehicles.train) -------
    def train(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        from vehicles.train import train_all

        return train_all(Path(models_dir), quick=quick)

    def ensure_trained(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        """With ``quick``, fully trained models are accepted too (vehicles.train.ensure_trained)."""
        from vehicles.train import ensure_trained

        return ensure_trained(Path(models_dir), quick=quick)

    # -- the telematics units: a window is one trip segment (vehicles.signals.Trip) ------------------------
    def simulate(self, n_subjects: int, duration_h: float, seed: int) -> Sequence[Any]:
        """The vehicles of a fleet. Trips are drawn by trip index, not by time, so the span does not apply:
        each vehicle's ``windows()`` yields a day's trip segments."""
        from vehicles.signals import FleetConfig, simulate_fleet

        return simulate_fleet(FleetConfig(n_vehicles=n_subjects, seed=seed))

    def extract(self, window: Any) -> Any:
        """The unit's DSP on one trip segment: the features of every candidate event window."""
        from vehicles import features as f

        vs = f.extract_trip(window)
        return [f.window_features(vs, centre) for _, _, centre in f.candidates(vs)]

    def to_vector(self, features: Any) -> Any:
        """The classifier's rows: one per candidate window (one row for a single window's features)."""
        import numpy as np

        from vehicles import features as f

        if isinstance(features, Mapping):
            return f.to_vector(dict(features))
        return np.array([f.to_vector(w) for w in features], dtype=np.float32).reshape(-1, len(f.FEATURE_NAMES))

    def window_channels(self, window: Any) -> dict[str, Any]:
        from vehicles import device

        return device.window_channels(window)

    def device_fleet(self, args: argparse.Namespace | None, mqtt: str, subjects: Sequence[Any], models_dir: Path,
                     start_ms: Mapping[str, int], on_publish: Callable[[str, int], None] | None = None,
                     trusted_key: Path | None = None) -> Any:
        """The simulated units (a :class:`vehicles.device.UnitFleet`, whose ``on_trip`` sees every trip)."""
        from vehicles import device

        return device.fleet(args, mqtt, subjects, models_dir, start_ms, on_publish=on_publish,
                            trusted_key=trusted_key)

    def sample_messages(self, models_dir: Path) -> dict[str, list[dict]]:
        from vehicles import device

        return device.sample_messages(models_dir)

    # -- the cloud: risk beside the vendor score, the hazard map (vehicles.service) ------------------------
    def baseline(self, *args: Any, **kwargs: Any) -> Any:
        """``large.vendor_points(points, km)``: the vendor-style score, points per 100 km."""
        from vehicles.large import vendor_points

        return vendor_points(*args, **kwargs)

    def service(self, models_dir: Path) -> Callable[..., Any]:
        from vehicles import service

        return service.service_factory(models_dir)

    # -- the integration strategies (vehicles.tasks) -------------------------------------------------------
    @staticmethod
    def tiny_task(quick: bool = False) -> Any:
        """The event classifier's candidate windows by vehicle (vehicles.tasks.tiny_task)."""
        from vehicles.tasks import tiny_task

        return tiny_task(quick=quick)

    @staticmethod
    def distill_task(quick: bool = False, models_dir: Path | None = None) -> Any:
        """The risk transformer's probability per candidate window (vehicles.tasks.distill_task)."""
        from vehicles.tasks import distill_task

        return distill_task(quick=quick, models_dir=models_dir)
