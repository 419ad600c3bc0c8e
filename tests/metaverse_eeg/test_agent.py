"""The interaction agent's parts: step vectors, the rule controller, the privileged teacher, evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from metaverse_eeg import agent as ag
from metaverse_eeg.signals import Scene, SessionConfig, simulate_users


def _history(pv: float, pa: float, since_s: float = 120.0, n: int = 4, **scene) -> np.ndarray:
    s = Scene(**scene).as_dict() | {"since_change_s": since_s}
    return np.stack([ag.step_vector(pv, pa, False, s)] * n)


def test_step_vector_layout():
    v = ag.step_vector(0.7, 0.2, True, {"pace": 0.25, "difficulty": 1.0, "tempo": 0.5, "lighting": 0.0,
                                        "companion": 1.0, "event": "threat", "since_change_s": 90.0})
    assert dict(zip(ag.STEP_NAMES, v.tolist(), strict=True)) == pytest.approx(
        {"p_valence": 0.7, "p_arousal": 0.2, "artefact": 1.0, "pace": 0.25, "difficulty": 1.0, "tempo": 0.5,
         "lighting": 0.0, "companion": 1.0, "threat": 1.0, "lull": 0.0, "since_change_min": 1.5})


def test_rule_controller():
    assert ag.rule_action(_history(0.8, 0.9))[0] == "pace_down"
    assert ag.rule_action(_history(0.8, 0.9, pace=0.0))[0] == "tempo_down"
    assert ag.rule_action(_history(0.8, 0.1))[0] == "pace_up"
    assert ag.rule_action(_history(0.2, 0.5))[0] == "difficulty_down"
    assert ag.rule_action(_history(0.8, 0.5))[0] == "none"
    assert ag.rule_action(_history(0.8, 0.9, since_s=10.0))[0] == "none"  # cooldown
    action, why = ag.rule_action(_history(0.8, 0.9))
    assert why.startswith("rule: slow the pace") and "arousal 0.90 high" in why
    with pytest.raises(ValueError, match="expected"):
        ag.rule_action(np.zeros((3, 4)))


class _Oracle:
    """Estimates from the users' true affect (a perfect headset), to test the controllers alone."""

    def __init__(self, users):
        self.users = users

    def scores(self, vectors):
        out = []
        for u in self.users:
            pv, pa = 1 / (1 + np.exp(-6 * u.v)), 1 / (1 + np.exp(-6 * u.a))
            out.append([(1 - pv) * (1 - pa), (1 - pv) * pa, pv * (1 - pa), pv * pa])
        return np.array(out)


def test_teacher_keeps_users_in_the_zone_longer_than_no_adaptation():
    cfg = SessionConfig(n_users=3, duration_h=0.25, seed=21)
    res = {}
    for name, policy in (("none", ag.none_policy), ("teacher", ag.teacher_policy())):
        users = simulate_users(cfg)
        res[name] = ag.evaluate_log(ag.run_session(users, _Oracle(users), policy, cfg.times_s, label=False))
    assert res["teacher"]["time_in_zone"] > res["none"]["time_in_zone"] + 0.05, res
    assert res["none"]["actions_per_hour"] == 0 and res["teacher"]["actions_per_hour"] > 0


def test_evaluate_log_counts_events_and_recovery():
    aff = np.array([[0.5, 0.0]] * 3 + [[0.5, 0.8]] * 2 + [[0.5, 0.1]] * 5)
    log = ag.SessionLog([np.zeros((10, ag.N_STEP))], [aff], [["none"] * 10], [[False] * 4 + [True] + [False] * 5],
                        [["none"] * 3 + ["threat"] * 4 + ["none"] * 3], [[]], 100.0 / 3600.0)
    m = ag.evaluate_log(log)
    assert m["time_in_zone"] == 0.8 and m["events"] == 1
    assert m["reaction_s"] == 10.0 and m["recovery_s"] == 20.0
