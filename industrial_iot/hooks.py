"""industrial_iot's code as the platform sees it (:class:`shared.domain.DomainHooks`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.domain import DomainHooks


class Hooks(DomainHooks):
    def train(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        from industrial_iot.train import train_all

        return train_all(models_dir, quick=quick)

    def ensure_trained(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        from industrial_iot.train import ensure_trained

        return ensure_trained(models_dir, quick=quick)

    def simulate(self, n_subjects: int, duration_h: float, seed: int) -> Sequence[Any]:
        from industrial_iot.signals import FleetConfig, simulate_fleet

        return simulate_fleet(FleetConfig(n_machines=n_subjects, duration_h=duration_h, seed=seed))

    def extract(self, window: Any) -> Any:
        from industrial_iot.features import extract_window

        return extract_window(window)

    def to_vector(self, features: Any) -> Any:
        from industrial_iot.features import to_vector

        return to_vector(features)

    def window_channels(self, window: Any) -> dict[str, Any]:
        from industrial_iot.device import window_channels

        return window_channels(window)

    def device_fleet(self, args: argparse.Namespace | None, mqtt: str, subjects: Sequence[Any], models_dir: Path,
                     start_ms: Mapping[str, int], on_publish: Callable[[str, int], None] | None = None,
                     trusted_key: Path | None = None) -> Any:
        from industrial_iot.device import fleet

        return fleet(args, mqtt, subjects, models_dir, start_ms, on_publish=on_publish, trusted_key=trusted_key)

    def sample_messages(self, models_dir: Path) -> dict[str, list[dict]]:
        from industrial_iot.device import sample_messages

        return sample_messages(models_dir)

    def service(self, models_dir: Path) -> Callable[..., Any]:
        from industrial_iot.service import service_factory

        return service_factory(models_dir)

    def baseline(self, *args: Any, **kwargs: Any) -> Any:
        from industrial_iot.iso10816 import zone

        return zone(*args, **kwargs)

    @property
    def scenario(self) -> type:
        from industrial_iot.scenario import PlantScenario

        return PlantScenario

    @staticmethod
    def tiny_task(quick: bool = False) -> Any:
        from industrial_iot.tasks import tiny_task

        return tiny_task(quick=quick)

    @staticmethod
    def distill_task(quick: bool = False, models_dir: Path | None = None) -> Any:
        from industrial_iot.tasks import distill_task

        return distill_task(quick=quick, models_dir=models_dir)
