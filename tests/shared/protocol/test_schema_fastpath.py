"""The compiled (fastjsonschema) validator must give the same verdict as jsonschema on every schema."""

from __future__ import annotations

import copy

import fastjsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.protocol import messages as m

VALID = {
    ("healthcare", "inference"): {
        "v": 1, "device": "p001", "seq": 3, "ts": 1763700000000, "model": "hc-tiny@1", "window_s": 30.0,
        "vitals": {"hr_bpm": 72.0, "hrv_rmssd_ms": 30.0, "hrv_sdnn_ms": 41.0, "spo2_pct": 97.0, "rr_bpm": 15.0,
                   "temp_c": 36.6, "motion_g": 0.01, "quality": 0.9},
        "class": "normal", "scores": {"normal": 0.9, "irregular": 0.1}},
    ("healthcare", "chart"): {"v": 1, "device": "p001", "seq": 0, "ts": 1, "model": "ehr@1", "sbp_mmhg": 120.0,
                              "consciousness": "A", "on_oxygen": False, "rr_bpm": 16.0, "temp_c": 36.8},
    ("healthcare", "risk"): {"v": 1, "device": "p001", "seq": 3, "ts": 1, "model": "hc-risk@1", "risk": 0.2,
                             "horizon_h": 6.0, "news2": 3, "news2_band": "low", "alert": False, "windows": 4},
    ("healthcare", "status"): {"v": 1, "device": "p001", "seq": 1, "ts": 1, "model": "hc-tiny@1",
                               "state": "online", "counts": {"published": 3}},
}

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**12),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=3)
                          | st.dictionaries(st.text(max_size=8), kids, max_size=3), max_leaves=6)


def _verdicts(domain: str, stream: str, msg: object) -> tuple[bool, bool]:
    slow = m._validator(domain, stream).is_valid(msg)  # noqa: SLF001
    try:
        m._fast_validator(domain, stream)(msg)  # noqa: SLF001
        fast = True
    except fastjsonschema.JsonSchemaException:
        fast = False
    return slow, fast


def test_the_valid_examples_are_valid_for_both():
    for (domain, stream), msg in VALID.items():
        assert _verdicts(domain, stream, msg) == (True, True), (domain, stream)


@settings(max_examples=400, deadline=None)
@given(which=st.sampled_from(sorted(VALID)), path_pick=st.integers(0, 50), value=json_value,
       action=st.sampled_from(["set", "delete", "add"]))
def test_mutated_messages_get_the_same_verdict(which, path_pick, value, action):
    msg = copy.deepcopy(VALID[which])
    target = msg
    keys = list(target)
    key = keys[path_pick % len(keys)]
    if isinstance(target[key], dict) and target[key] and path_pick % 3 == 0:
        target = target[key]
        key = list(target)[path_pick % len(target)]
    if action == "set":
        target[key] = value
    elif action == "delete":
        del target[key]
    else:
        target[f"x{path_pick}"] = value
    slow, fast = _verdicts(*which, msg)
    assert slow == fast, (which, msg)
