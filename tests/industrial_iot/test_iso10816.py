"""ISO 10816-3 zones: the boundary table, what happens exactly on a boundary, and bad arguments."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_iot.iso10816 import BOUNDARIES, boundaries, zone, zone_index

TABLE = [  # group, foundation, A/B, B/C, C/D (mm/s RMS), as printed in ISO 10816-3
    (1, "rigid", 2.3, 4.5, 7.1),
    (1, "flexible", 3.5, 7.1, 11.0),
    (2, "rigid", 1.4, 2.8, 4.5),
    (2, "flexible", 2.3, 4.5, 7.1),
]


@pytest.mark.parametrize(("group", "foundation", "ab", "bc", "cd"), TABLE)
def test_boundaries_are_the_standards(group, foundation, ab, bc, cd):
    assert boundaries(group, foundation) == (ab, bc, cd)


@pytest.mark.parametrize(("group", "foundation", "ab", "bc", "cd"), TABLE)
def test_zone_at_and_around_each_boundary(group, foundation, ab, bc, cd):
    eps = 1e-9
    assert zone(0.0, group, foundation) == "A"
    assert zone(ab - eps, group, foundation) == "A"
    assert zone(ab, group, foundation) == "B"  # a boundary value belongs to the upper zone
    assert zone(bc - eps, group, foundation) == "B"
    assert zone(bc, group, foundation) == "C"
    assert zone(cd - eps, group, foundation) == "C"
    assert zone(cd, group, foundation) == "D"
    assert zone(1000.0, group, foundation) == "D"


def test_a_machine_on_a_flexible_foundation_is_allowed_more():
    assert zone(3.0, 2, "rigid") == "C"
    assert zone(3.0, 2, "flexible") == "B"
    assert zone(3.0, 1, "rigid") == "B"
    assert zone(3.0, 1, "flexible") == "A"


@given(st.floats(0, 50), st.floats(0, 50), st.sampled_from(sorted(BOUNDARIES)))
def test_zone_is_monotonic_in_velocity(v1, v2, key):
    lo, hi = sorted((v1, v2))
    assert zone_index(lo, *key) <= zone_index(hi, *key)


@pytest.mark.parametrize("v", [-0.1, math.nan, math.inf, "fast", None, True])
def test_bad_velocity_is_named(v):
    with pytest.raises(ValueError, match="v_rms_mm_s"):
        zone(v, 2, "rigid")


@pytest.mark.parametrize("group", [0, 3, "1", 1.5, None, True])
def test_bad_group_is_named(group):
    with pytest.raises(ValueError, match="group"):
        zone(1.0, group, "rigid")


@pytest.mark.parametrize("foundation", ["Rigid", "soft", "", None, 1])
def test_bad_foundation_is_named(foundation):
    with pytest.raises(ValueError, match="foundation"):
        zone(1.0, 2, foundation)


def test_numeric_strings_are_accepted_as_velocity():
    assert zone("2.0", 2, "rigid") == "B"
