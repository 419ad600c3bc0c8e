"""The simulated users: affect dynamics that respond to the world, events, individual differences."""

from __future__ import annotations

import numpy as np
import pytest

from metaverse_eeg import LABELS
from metaverse_eeg.signals import (
    ACTION_NAMES,
    Scene,
    SessionConfig,
    apply_action,
    in_zone,
    labelled_windows,
    quadrant,
    simulate_users,
)


def _user(seed: int = 1):
    u = simulate_users(SessionConfig(n_users=1, seed=seed, event_every_s=(1e9, 1e9)))[0]
    u.params.noise = 0.0
    return u


def test_same_seed_same_users_and_affect():
    a, b = (simulate_users(SessionConfig(n_users=3, seed=4)) for _ in range(2))
    for ua, ub in zip(a, b, strict=True):
        ua.advance(300.0)
        ub.advance(300.0)
        assert ua.id == ub.id and (ua.v, ua.a) == (ub.v, ub.a)
        np.testing.assert_array_equal(ua.window(300.0).eeg, ub.window(300.0).eeg)
    assert len({u.params.alpha_hz for u in a}) == 3  # individual differences


def test_pace_raises_arousal_and_stillness_bores():
    fast, slow = _user(), _user()
    fast.scene.pace, slow.scene.pace = 1.0, 0.0
    fast.advance(300.0)
    slow.advance(300.0)
    assert fast.a > slow.a + 0.3
    bored = _user()
    bored.advance(60.0)
    early = bored.a
    bored.advance(900.0)
    assert bored.a < early - 0.1  # habituation: nothing changed for 15 minutes
    refreshed = _user()
    refreshed.advance(840.0)
    refreshed.act("tempo_up")
    refreshed.act("tempo_down")
    refreshed.advance(900.0)
    assert refreshed.a > bored.a


def test_difficulty_away_from_skill_lowers_valence():
    u = _user(2)
    skill = u.params.skill0
    near, far = Scene(difficulty=round(skill * 4) / 4), Scene(difficulty=0.0 if skill > 0.5 else 1.0)
    assert u.targets(near, 0.0, 0.0, 0.0)[0] > u.targets(far, 0.0, 0.0, 0.0)[0]


def test_actions_move_knobs_within_limits():
    s = Scene(pace=1.0)
    assert not apply_action(s, "pace_up") and s.pace == 1.0
    assert apply_action(s, "pace_down") and s.pace == 0.75 and s.since_change_s == 0.0
    assert apply_action(s, "companion_on") and s.companion == 1.0
    assert not apply_action(s, "none")
    with pytest.raises(ValueError, match="unknown 'jump'"):
        apply_action(s, "jump")
    assert len(ACTION_NAMES) == 11


def test_world_events_happen_and_push_out_of_zone():
    users = simulate_users(SessionConfig(n_users=6, seed=8))
    seen = set()
    for t in np.arange(10.0, 1800.0, 10.0):
        for u in users:
            u.advance(float(t))
            seen.add(u.scene.event)
    assert {"threat", "lull"} <= seen


def test_labelled_windows_are_balanced_and_labelled():
    eeg, affect, groups = labelled_windows(4, 40, seed=3)
    assert eeg.shape == (160, 8, 512) and len(np.unique(groups)) == 4
    counts = np.bincount([quadrant(v, a) for v, a in affect], minlength=len(LABELS))
    assert counts.min() >= 25
    assert in_zone(0.5, 0.1) and not in_zone(-0.1, 0.0) and not in_zone(0.5, 0.6)
