"""metaverse_eeg's code as the platform sees it (:class:`shared.domain.DomainHooks`): headsets, the world, the agent.

Every hook imports its module on first use (``_code``), so that reading the registry imports no TensorFlow
or torch.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.domain import DomainHooks


def _code(module: str, name: str) -> Any:
    """``metaverse_eeg.<module>.<name>``, imported now."""
    return getattr(importlib.import_module(f"metaverse_eeg.{module}"), name)


class Hooks(DomainHooks):
    # -- models: the headset's int8 affect model and the interaction agent ------------------------------
    def train(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        return _code("train", "train_all")(models_dir, quick=quick)

    def ensure_trained(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        return _code("train", "ensure_trained")(models_dir, quick=quick)

    # -- the headsets ----------------------------------------------------------------------------------
    def simulate(self, n_subjects: int, duration_h: float, seed: int) -> Sequence[Any]:
        """Users in the world with nobody adapting it (each one's ``windows()`` advances it through the session)."""
        cfg = _code("signals", "SessionConfig")(n_users=n_subjects, duration_h=duration_h, seed=seed)
        return _code("signals", "simulate_users")(cfg)

    def extract(self, window: Any) -> Any:
        return _code("features", "extract_window")(window)

    def to_vector(self, features: Any) -> Any:
        return _code("features", "to_vector")(features)

    def window_channels(self, window: Any) -> dict[str, Any]:
        return _code("device", "window_channels")(window)

    def device_fleet(self, args: argparse.Namespace | None, mqtt: str, subjects: Sequence[Any], models_dir: Path,
                     start_ms: Mapping[str, int], on_publish: Callable[[str, int], None] | None = None,
                     trusted_key: Path | None = None) -> Any:
        return _code("device", "fleet")(args, mqtt, subjects, models_dir, start_ms, on_publish, trusted_key)

    def sample_messages(self, models_dir: Path) -> dict[str, list[dict]]:
        return _code("device", "sample_messages")(models_dir)

    # -- the cloud: the agent beside the rule controller ----------------------------------------------
    def service(self, models_dir: Path) -> Callable[..., Any]:
        return _code("service", "service_factory")(models_dir)

    def baseline(self, *args: Any, **kwargs: Any) -> Any:
        """``agent.rule_action(history)``: what the rule controller does with a user's recent steps."""
        return _code("agent", "rule_action")(*args, **kwargs)

    @property
    def scenario(self) -> type:
        return _code("scenario", "WorldScenario")

    # -- the integration strategies (metaverse_eeg.tasks) ----------------------------------------------
    @staticmethod
    def tiny_task(quick: bool = False) -> Any:
        return _code("tasks", "tiny_task")(quick=quick)

    @staticmethod
    def new_subjects(n_subjects: int, n_windows: int, seed: int) -> Any:
        return _code("tasks", "new_subjects")(n_subjects, n_windows, seed)
