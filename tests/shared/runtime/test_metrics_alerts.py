"""shared.runtime.metrics and shared.runtime.alerts: the one AUROC, threshold and alert rule, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.runtime.alerts import AlertRule, AlertState
from shared.runtime.metrics import auroc, auroc_or_none, spread, threshold_at_fpr
from shared.runtime.training import subject_split


def test_auroc_and_threshold_by_hand():
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.1, 0.2])))
    assert auroc_or_none(np.array([1, 1]), np.array([0.1, 0.2])) is None
    y = np.zeros(100)
    s = np.arange(100, dtype=float)
    thr = threshold_at_fpr(y, s, 0.05)
    assert (s >= thr).sum() == 5


@given(st.lists(st.tuples(st.booleans(), st.floats(-5, 5)), min_size=2, max_size=60))
def test_auroc_equals_sklearn(pairs):
    from sklearn.metrics import roc_auc_score

    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs])
    if len(np.unique(y)) < 2:
        assert math.isnan(auroc(y, s))
    else:
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_lead_time_counts_only_alerts_inside_the_span():
    t = np.arange(0, 10 * 3600, 300.0)
    scores = (t >= 7 * 3600).astype(float)
    rule = AlertRule(0.5, windows=1)
    assert rule.lead_s(t, scores, event_s=9 * 3600, span_s=6 * 3600) == pytest.approx(7200)
    # the span is (event - 1 h, event]: the first alert inside it is at 8 h + 5 min
    assert rule.lead_s(t, scores, event_s=9 * 3600, span_s=3600) == pytest.approx(3300)
    assert rule.lead_s(t, np.zeros_like(scores), 9 * 3600, 6 * 3600) is None
    # three consecutive windows: the rule fires at 7 h + 10 min
    assert AlertRule(0.5, windows=3).lead_s(t, scores, 9 * 3600, 6 * 3600) == pytest.approx(7200 - 600)


def test_online_rule_needs_consecutive_windows_and_rearms_below_half():
    rule, st_ = AlertRule(0.6, windows=3), AlertState()
    fired = [rule.update(st_, s) for s in (0.7, 0.7, 0.1, 0.7, 0.7, 0.7, 0.9, 0.5, 0.2, 0.7, 0.7, 0.7)]
    assert fired == [False, False, False, False, False, True, False, False, False, False, False, True]
    with pytest.raises(ValueError, match="windows"):
        AlertRule(0.5, windows=0)


def test_offline_and_online_rule_agree():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 200)
    rule = AlertRule(0.55, windows=2)
    st_ = AlertState()
    online = next(i for i, s in enumerate(scores) if rule.update(st_, s))
    offline = rule.first_alert_s(list(range(200)), list(scores >= 0.55), None, span_s=1e9)
    assert offline == online


def test_subject_split_never_shares_a_subject():
    subjects = np.repeat(np.array([f"m{i}" for i in range(10)]), 7)
    train, test = subject_split(subjects, 0.3, seed=1)
    assert set(subjects[train]).isdisjoint(subjects[test]) and test.sum() == 21
    with pytest.raises(ValueError, match="test_fraction"):
        subject_split(subjects, 1.5, seed=1)


def test_spread_over_subjects():
    out = spread([0.9, 0.8, None, 0.7, float("nan")])
    assert out == {"median": 0.8, "q25": 0.75, "q75": 0.85, "n": 3}
