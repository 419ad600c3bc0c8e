"""The subject's history window: every snapshot a job takes equals the steps at that moment and stays so
while later steps arrive (the window refills into a new array instead of overwriting rows)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from shared.runtime.service import Subject


@pytest.mark.parametrize("maxlen", [1, 5, None])
def test_snapshots_equal_the_steps_then_and_never_change(maxlen):
    rng = np.random.default_rng(0)
    s = Subject("d1", deque(maxlen=maxlen))
    taken = []
    for _ in range(60):
        s.push(rng.random(4).astype(np.float32))
        snap = s.history()
        np.testing.assert_array_equal(snap, np.stack(list(s.steps)))
        taken.append((snap, snap.copy()))
    for snap, then in taken:
        np.testing.assert_array_equal(snap, then)
    assert not taken[-1][0].flags.writeable, "a job's history is read-only"


def test_a_step_of_another_shape_or_dtype_rebuilds_from_the_steps():
    s = Subject("d2", deque(maxlen=3))
    for i in range(4):
        s.push(np.full(2, i, dtype=np.float32))
    s.history()
    s.push(np.full(2, 9, dtype=np.float64))  # np.stack promotes, as before the window existed
    np.testing.assert_array_equal(s.history(), np.stack(list(s.steps)))
    assert s.history().dtype == np.float64
