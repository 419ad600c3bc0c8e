"""healthcare's code as the platform sees it (:class:`shared.domain.DomainHooks`).

Every hook imports its module when called (``--help`` and the registry import no TensorFlow or torch).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.domain import DomainHooks


def _call(ref: str, *args: Any, **kwargs: Any) -> Any:
    """Import ``healthcare.<module>`` and call its ``attr``: ``ref`` is ``"module:attr"``."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(f"healthcare.{module}"), attr)(*args, **kwargs)


class Hooks(DomainHooks):
    def train(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        return _call("train:train_all", models_dir, quick=quick)

    def ensure_trained(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        return _call("train:ensure_trained", models_dir, quick=quick)

    def simulate(self, n_subjects: int, duration_h: float, seed: int) -> Sequence[Any]:
        from healthcare.signals import CohortConfig, simulate_cohort

        return simulate_cohort(CohortConfig(n_patients=n_subjects, duration_h=duration_h, seed=seed))

    def extract(self, window: Any) -> Any:
        return _call("features:extract_window", window)

    def to_vector(self, features: Any) -> Any:
        return _call("features:to_vector", features)

    def window_channels(self, window: Any) -> dict[str, Any]:
        return _call("device:window_channels", window)

    def device_fleet(self, args: argparse.Namespace | None, mqtt: str, subjects: Sequence[Any], models_dir: Path,
                     start_ms: Mapping[str, int], on_publish: Callable[[str, int], None] | None = None,
                     trusted_key: Path | None = None) -> Any:
        return _call("device:fleet", args, mqtt, subjects, models_dir, start_ms, on_publish=on_publish,
                     trusted_key=trusted_key)

    def sample_messages(self, models_dir: Path) -> dict[str, list[dict]]:
        return _call("device:sample_messages", models_dir)

    def service(self, models_dir: Path) -> Callable[..., Any]:
        return _call("service:service_factory", models_dir)

    def baseline(self, *args: Any, **kwargs: Any) -> Any:
        """NEWS2 (``healthcare.news2.score``)."""
        return _call("news2:score", *args, **kwargs)

    @property
    def scenario(self) -> type:
        from healthcare.scenario import WardScenario

        return WardScenario

    @staticmethod
    def tiny_task(quick: bool = False) -> Any:
        return _call("tasks:tiny_task", quick=quick)

    @staticmethod
    def distill_task(quick: bool = False, models_dir: Path | None = None) -> Any:
        return _call("tasks:distill_task", quick=quick, models_dir=models_dir)
