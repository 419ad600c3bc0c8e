"""The road-hazard map: reports merged by place, confirmed by several vehicles, scored against the truth."""

from __future__ import annotations

import numpy as np
import pytest

from vehicles.hazards import HazardMap
from vehicles.signals import Hazard, xy_to_latlon


def ll(x: float, y: float) -> tuple[float, float]:
    lat, lon = xy_to_latlon(x, y)
    return float(lat), float(lon)


def test_reports_of_two_vehicles_confirm_a_hazard_one_does_not():
    m = HazardMap()
    for dx in (0.0, 3.0, -4.0):
        m.add("a", "pothole", *ll(100.0 + dx, 200.0))
    assert m.confirmed() == []  # one vehicle, however often
    m.add("b", "pothole", *ll(102.0, 198.0))
    (c,) = m.confirmed()
    assert c.kind == "pothole" and c.reports == 4 and c.vehicles == {"a", "b"}
    assert c.x_m == pytest.approx(100.25, abs=0.01) and c.y_m == pytest.approx(199.5, abs=0.01)


def test_kinds_and_distance_keep_clusters_apart():
    m = HazardMap()
    m.add("a", "pothole", *ll(0.0, 0.0))
    m.add("b", "speed_bump", *ll(1.0, 0.0))
    m.add("c", "pothole", *ll(60.0, 0.0))
    assert len(m.clusters) == 3 and m.confirmed() == []
    assert m.add("a", "harsh_brake", *ll(0.0, 0.0)) is None
    assert m.add("a", "pothole", None, None) is None
    assert m.add("a", "pothole", float("nan"), 11.0) is None


def test_near_lists_confirmed_hazards_by_distance():
    m = HazardMap()
    for dev in ("a", "b"):
        m.add(dev, "pothole", *ll(0.0, 0.0))
        m.add(dev, "speed_bump", *ll(300.0, 0.0))
        m.add(dev, "pothole", *ll(2000.0, 0.0))
    got = m.near(*ll(100.0, 0.0), radius_m=500.0)
    assert [h["kind"] for h in got] == ["pothole", "speed_bump"]
    assert got[0]["distance_m"] == pytest.approx(100.0, abs=0.5) and got[0]["vehicles"] == 2
    assert m.near(None, None) == []


def test_score_against_true_hazards():
    truth = [Hazard(0, "pothole", 0.0, 0.0), Hazard(1, "speed_bump", 500.0, 0.0), Hazard(2, "rough", 900.0, 0.0)]
    m = HazardMap()
    rng = np.random.default_rng(0)
    for dev in ("a", "b", "c"):
        m.add(dev, "pothole", *ll(*rng.normal(0, 3, 2)))
        m.add(dev, "pothole", *ll(900.0 + rng.normal(0, 3), 0.0))  # a rough patch read as a pothole
    s = m.score(truth)
    assert s == {"hazards_confirmed": 2, "hazards_true": 2, "hazard_precision": 0.5, "hazard_recall": 0.5}
    # recall counts only hazards that at least two vehicles drove over
    assert m.score(truth, felt={0: {"a", "b"}, 1: {"a"}})["hazard_recall"] == 1.0


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="merge_m"):
        HazardMap(merge_m=0)
