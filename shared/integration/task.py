"""The one dataset every integration strategy works on: a domain's tiny-model windows, by subject.

A domain exposes ``tiny_task(quick: bool = False) -> TinyTask`` (``DomainHooks.tiny_task``): the
input vectors its device model sees (``to_vector``), the labels, and the subject each window came
from (patient, machine, vehicle, user), over the same simulated populations its training run uses,
training and held-out cohorts together. Strategies split by subject themselves (:func:`split_subjects`),
never by window, and build the domain's deployed architecture (``hidden``) so what they produce fits
the device and compiles to C like the model it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared import domain as domains


@dataclass
class TinyTask:
    """Windows of one domain: ``x`` (n, d) float32 tiny-model inputs, ``y`` (n,) int labels, ``groups``
    (n,) subject ids; ``hidden`` the deployed MLP's hidden widths; ``model_id`` the tiny model's id."""

    domain: str
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    labels: tuple[str, ...]
    hidden: tuple[int, ...]
    model_id: str
    extra: dict = field(default_factory=dict)  #: domain-specific side data (e.g. teacher inputs), optional

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float32)
        self.y = np.asarray(self.y).astype(np.int64)
        self.groups = np.asarray(self.groups).astype(str)
        n = len(self.x)
        if self.x.ndim != 2 or n == 0 or len(self.y) != n or len(self.groups) != n:
            raise ValueError(f"TinyTask({self.domain}): need x (n, d), y (n,), groups (n,) with n >= 1; got "
                             f"{self.x.shape}, {self.y.shape}, {self.groups.shape}")
        bad = int((~np.isfinite(self.x)).sum())
        if bad:
            raise ValueError(f"TinyTask({self.domain}).x: {bad} non-finite values")
        if self.y.min() < 0 or self.y.max() >= len(self.labels):
            raise ValueError(f"TinyTask({self.domain}).y: labels must index labels (0..{len(self.labels) - 1})")

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def subjects(self) -> np.ndarray:
        """Subject ids in first-seen order."""
        _, first = np.unique(self.groups, return_index=True)
        return self.groups[np.sort(first)]

    def take(self, mask: np.ndarray) -> TinyTask:
        """The windows where ``mask`` (bool or index array) selects."""
        return TinyTask(self.domain, self.x[mask], self.y[mask], self.groups[mask], self.labels, self.hidden,
                        self.model_id, self.extra)


def load_task(domain: str, quick: bool = False) -> TinyTask:
    """The domain's :class:`TinyTask` (from ``DomainHooks.tiny_task``)."""
    hooks = domains.get(domain).hooks
    if hooks.tiny_task is None:
        raise ValueError(f"domain {domain!r} offers no tiny_task (DomainHooks.tiny_task); integration strategies "
                         "need one")
    task = hooks.tiny_task(quick=quick)
    if not isinstance(task, TinyTask):
        raise TypeError(f"{domain}: tiny_task returned {type(task).__name__}, expected TinyTask")
    return task


def split_subjects(groups: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, test) splitting windows BY SUBJECT; at least one subject on each side."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"split_subjects: test_fraction must be in (0, 1), got {test_fraction}")
    groups = np.asarray(groups).astype(str)
    subjects = np.unique(groups)
    if len(subjects) < 2:
        raise ValueError(f"split_subjects: need at least 2 subjects, got {len(subjects)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(subjects)
    n_test = min(len(subjects) - 1, max(1, round(test_fraction * len(subjects))))
    test = np.isin(groups, order[:n_test])
    return ~test, test
