"""NEWS2 per the RCP 2017 chart: every boundary of every parameter, both SpO2 scales, bands, errors."""

from __future__ import annotations

import numpy as np
import pytest

from healthcare.news2 import score, score_array

# A baseline set scoring 0 everywhere; each test changes one parameter.
BASE = {"rr": 16, "spo2": 97, "on_oxygen": False, "sbp": 120, "hr": 70, "consciousness": "A", "temp_c": 37.0}


def sub_of(param: str, value, **extra) -> int:
    obs = {**BASE, param: value, **extra}
    n = score(**obs)
    return n.sub[{"on_oxygen": "oxygen"}.get(param, param)]


@pytest.mark.parametrize(("rr", "expected"), [
    (0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3),
    (8.4, 3), (8.5, 1), (20.49, 0), (20.5, 2), (24.5, 3),
])
def test_respiration_rate_boundaries(rr, expected):
    assert sub_of("rr", rr) == expected


@pytest.mark.parametrize(("spo2", "expected"), [
    (50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0), (91.4, 3), (91.5, 2),
])
@pytest.mark.parametrize("on_oxygen", [False, True])
def test_spo2_scale1_boundaries(spo2, expected, on_oxygen):
    assert score(**{**BASE, "spo2": spo2, "on_oxygen": on_oxygen}).sub["spo2"] == expected


@pytest.mark.parametrize(("spo2", "on_oxygen", "expected"), [
    (83, False, 3), (84, False, 2), (85, False, 2), (86, False, 1), (87, False, 1), (88, False, 0),
    (92, False, 0), (93, False, 0), (97, False, 0), (100, False, 0),
    (83, True, 3), (84, True, 2), (86, True, 1), (88, True, 0), (92, True, 0),
    (93, True, 1), (94, True, 1), (95, True, 2), (96, True, 2), (97, True, 3), (100, True, 3),
])
def test_spo2_scale2_boundaries(spo2, on_oxygen, expected):
    n = score(**{**BASE, "spo2": spo2, "on_oxygen": on_oxygen}, spo2_scale=2)
    assert n.sub["spo2"] == expected
    assert n.sub["oxygen"] == (2 if on_oxygen else 0)


def test_oxygen_adds_two():
    assert score(**BASE).score == 0
    assert score(**{**BASE, "on_oxygen": True}).score == 2


@pytest.mark.parametrize(("sbp", "expected"), [
    (40, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (250, 3),
    (90.4, 3), (90.5, 2), (219.5, 3),
])
def test_systolic_bp_boundaries(sbp, expected):
    assert sub_of("sbp", sbp) == expected


@pytest.mark.parametrize(("hr", "expected"), [
    (20, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2),
    (131, 3), (200, 3), (50.5, 0), (90.5, 1),
])
def test_pulse_boundaries(hr, expected):
    assert sub_of("hr", hr) == expected


@pytest.mark.parametrize(("level", "expected"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness(level, expected):
    assert sub_of("consciousness", level) == expected


@pytest.mark.parametrize(("temp", "expected"), [
    (33.0, 3), (35.0, 3), (35.04, 3), (35.05, 1), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0),
    (38.04, 0), (38.05, 1), (38.1, 1), (39.0, 1), (39.1, 2), (41.0, 2),
])
def test_temperature_boundaries(temp, expected):
    assert sub_of("temp_c", temp) == expected


@pytest.mark.parametrize(("obs", "total", "band", "red"), [
    ({}, 0, "low", False),
    ({"hr": 95, "temp_c": 38.5}, 2, "low", False),
    ({"rr": 22, "hr": 95, "temp_c": 38.5}, 4, "low", False),
    ({"consciousness": "C"}, 3, "low-medium", True),
    ({"rr": 7, "hr": 95}, 4, "low-medium", True),
    ({"rr": 22, "hr": 95, "temp_c": 38.5, "on_oxygen": True}, 6, "medium", False),
    ({"rr": 22, "spo2": 94, "hr": 95, "temp_c": 38.5}, 5, "medium", False),
    ({"rr": 26, "hr": 95, "temp_c": 38.5}, 5, "medium", True),
    ({"rr": 22, "hr": 115, "temp_c": 39.5, "on_oxygen": True}, 8, "high", False),
    ({"rr": 30, "spo2": 85, "on_oxygen": True, "sbp": 85, "hr": 140, "consciousness": "U", "temp_c": 34.0},
     20, "high", True),
])
def test_aggregate_and_bands(obs, total, band, red):
    n = score(**{**BASE, **obs})
    assert n.score == total == sum(n.sub.values())
    assert n.band == band
    assert n.red_flag is red


@pytest.mark.parametrize(("param", "value"), [
    ("rr", float("nan")), ("rr", -1), ("spo2", 101), ("spo2", float("inf")), ("sbp", -5), ("hr", float("nan")),
    ("temp_c", float("nan")), ("temp_c", -1.0), ("hr", "fast"), ("consciousness", "X"), ("consciousness", "a"),
    ("on_oxygen", "yes"),
])
def test_invalid_input_names_parameter(param, value):
    with pytest.raises(ValueError, match=param):
        score(**{**BASE, param: value})


@pytest.mark.parametrize("scale", [0, 3, True, 1.5])
def test_invalid_scale(scale):
    with pytest.raises(ValueError, match="spo2_scale"):
        score(**BASE, spo2_scale=scale)


def test_vectorised_matches_scalar():
    rng = np.random.default_rng(7)
    n = 3000
    obs = {
        "rr": rng.uniform(4, 35, n), "spo2": rng.uniform(78, 100, n), "on_oxygen": rng.random(n) < 0.4,
        "sbp": rng.uniform(70, 240, n), "hr": rng.uniform(30, 160, n),
        "consciousness": rng.choice(list("AAAACVPU"), n), "temp_c": rng.uniform(33.5, 41.0, n),
    }
    scale = rng.choice([1, 2], n)
    out = score_array(**obs, spo2_scale=scale)
    for i in range(n):
        ref = score(**{k: (bool(v[i]) if k == "on_oxygen" else v[i].item()) for k, v in obs.items()},
                    spo2_scale=int(scale[i]))
        assert (int(out.score[i]), str(out.band[i]), bool(out.red_flag[i])) == (ref.score, ref.band, ref.red_flag)
    assert set(out.band) == {"low", "low-medium", "medium", "high"}


def test_vectorised_rejects_bad_values():
    with pytest.raises(ValueError, match="spo2"):
        score_array(16, np.array([97, np.nan]), False, 120, 70, "A", 37.0)
    with pytest.raises(ValueError, match="consciousness"):
        score_array(16, 97, False, 120, 70, np.array(["A", "Z"]), 37.0)
