"""The demo's live loop on the dashboard's state: one bounded row per domain, a new version when it changes."""

from __future__ import annotations

from shared.dashboard.state import FleetState


def test_the_live_loop_row_shows_the_version_change_and_the_metric_before_and_after():
    s = FleetState(["healthcare", "industrial_iot"], {"healthcare": "risk", "industrial_iot": "action"},
                   clock_ms=lambda: 1_000)
    assert s.view(0)["domains"]["healthcare"]["live_loop"] is None
    v0 = s.version
    s.set_live_loop("healthcare", {"live_loop": "closed", "model_before": "hc-tiny@1 sha256:aaa",
                                   "model_after": "healthcare-risk-tiny@1 sha256:bbb", "fleet_metric": "event AUROC",
                                   "fleet_metric_before": 0.61, "fleet_metric_after": float("nan"),
                                   "fleet_metric_windows": 70, "secret": "not shown", "x" * 300: 1})
    assert s.version == v0 + 1  # a poll since v0 sees it
    row = s.view(v0)["domains"]["healthcare"]["live_loop"]
    assert row["model_before"] == "hc-tiny@1 sha256:aaa" and row["model_after"].startswith("healthcare-risk-tiny@1")
    assert row["fleet_metric_before"] == 0.61 and row["fleet_metric_after"] is None  # not finite: not shown
    assert row["fleet_metric_windows"] == 70 and "secret" not in row
    assert s.view(0)["domains"]["industrial_iot"]["live_loop"] is None
    s.set_live_loop("no_such_domain", {"live_loop": "closed"})  # ignored, no error
