"""metaverse_eeg's adapters for the integration strategies (:mod:`shared.integration`): the emotion model's
labelled windows by user, on the training run's cached feature tables."""

from __future__ import annotations

from typing import Any

import numpy as np

from metaverse_eeg import DOMAIN, LABELS
from metaverse_eeg.train import DEFAULT_MODELS_DIR, TrainConfig, _features


def _task(parts: list[dict[str, np.ndarray]], hidden: tuple[int, ...], **kwargs: Any) -> Any:
    """One TinyTask over the feature tables ``parts`` (each: ``x``, quadrant ``y``, user ``groups``)."""
    from metaverse_eeg.tiny import MODEL_NAME
    from shared.integration.task import TinyTask

    x, y, groups = (np.concatenate([p[k] for p in parts]) for k in ("x", "y", "groups"))
    return TinyTask(DOMAIN.name, x, y.astype(int), groups, LABELS, tuple(hidden), MODEL_NAME, **kwargs)


def tiny_task(quick: bool = False) -> Any:
    """The emotion model's labelled windows of the training and held-out users, by user (integration)."""
    cfg = TrainConfig.quick() if quick else TrainConfig()
    people = ((cfg.tiny_train_users, cfg.tiny_seeds[0]), (cfg.tiny_test_users, cfg.tiny_seeds[1]))
    parts = [_features(n, cfg.windows_per_user, seed, DEFAULT_MODELS_DIR / "cache") for n, seed in people]
    return _task(parts, cfg.tiny.hidden, extra={"affect": np.concatenate([p["affect"] for p in parts])})


def new_subjects(n_users: int, per_user: int, seed: int) -> Any:
    """Fresh simulated users with more windows each than ``tiny_task`` has (transfer learning's new people)."""
    return _task([_features(n_users, per_user, seed, DEFAULT_MODELS_DIR / "cache")], TrainConfig().tiny.hidden)
