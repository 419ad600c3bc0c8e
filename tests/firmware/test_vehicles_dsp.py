"""The streaming C port of the vehicles DSP (vehicles/firmware/veh_features.c) against vehicles.features:
the same calibration (on the segment's first CAL_S seconds), the same rule event counts, candidate
windows, window features and trip statistics on simulated trips under random mountings, the C fed one
sample at a time as the unit receives them."""

from __future__ import annotations

import ctypes
import dataclasses
import subprocess

import numpy as np
import pytest

from shared.domain import get
from tests._tools import require_tool
from vehicles import features as F
from vehicles import signals as S

SRC = get("vehicles").firmware_dir / "veh_features.c"
KINDS = F.EVENT_KINDS
MAX_CANDS = 128

# the test's driver: calibrate on the prefix, then push every sample and finish (what veh_spec.c does)
DRIVER = r"""
#include "veh_features.h"
typedef struct { const double *acc, *gyro, *speed; } arrays;
static void sample(void *ctx, long i, double *a, double *g, double *s) {
  const arrays *x = (const arrays *)ctx;
  for (int k = 0; k < 3; k++) a[k] = x->acc[3 * i + k], g[k] = x->gyro[3 * i + k];
  *s = x->speed[i];
}
static veh_stream st;
int veh_segment(const double *acc, const double *gyro, const double *speed, long n, double fs, const veh_config *cfg,
                veh_calibration *cal, int *rule_counts, veh_candidate *cands, int max, double *stats, double *km) {
  arrays x = {acc, gyro, speed};
  if (veh_calibrate(sample, &x, n, fs, cal) != 0) return -1;
  veh_stream_init(&st, n, fs, cfg, cal, cands, max);
  for (long i = 0; i < n; i++) veh_stream_push(&st, acc + 3 * i, gyro + 3 * i, speed[i]);
  *km = veh_stream_finish(&st, stats);
  for (int k = 0; k < VEH_N_KINDS; k++) rule_counts[k] = st.rule_counts[k];
  return st.n_cands;
}
double unit_speed(const float *gs, long m, long i, double fs) { return veh_unit_speed(gs, m, i, fs); }
"""


class Calibration(ctypes.Structure):
    _fields_ = [("rotation", ctypes.c_double * 9), ("gravity_mps2", ctypes.c_double), ("ok", ctypes.c_int)]


class Config(ctypes.Structure):
    _fields_ = [(n, ctypes.c_double) for n in ("brake_mps2", "accel_mps2", "corner_mps2", "min_duration_s",
                                                "smooth_s", "road_mps2", "road_min_speed_mps",
                                                "bump_max_speed_mps", "crash_mps2")]


class Candidate(ctypes.Structure):
    _fields_ = [("lo", ctypes.c_long), ("hi", ctypes.c_long), ("centre", ctypes.c_long),
                ("features", ctypes.c_double * 16), ("peak_mps2", ctypes.c_double)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cc = require_tool("gcc")
    d = tmp_path_factory.mktemp("veh")
    (d / "driver.c").write_text(DRIVER)
    out = d / "libveh.so"
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", f"-I{SRC.parent}", "-o", str(out),
                    str(SRC), str(d / "driver.c"), "-lm"], check=True)
    so = ctypes.CDLL(str(out))
    so.veh_segment.restype = ctypes.c_int
    so.unit_speed.restype = ctypes.c_double
    return so


def c_segment(lib, acc, gyro, speed, fs, cfg: F.EventConfig | None = None) -> dict:
    n = len(acc)
    arr = [np.ascontiguousarray(x, dtype=np.float64) for x in (acc, gyro, speed)]
    ptr = [a.ctypes.data_as(ctypes.POINTER(ctypes.c_double)) for a in arr]
    cal, counts, cands = Calibration(), (ctypes.c_int * 6)(), (Candidate * MAX_CANDS)()
    stats, km = (ctypes.c_double * 10)(), ctypes.c_double()
    conf = ctypes.byref(Config(*(getattr(cfg or F.EventConfig(), f) for f, _ in Config._fields_)))
    k = lib.veh_segment(*ptr, ctypes.c_long(n), ctypes.c_double(fs), conf, ctypes.byref(cal), counts, cands,
                        MAX_CANDS, stats, ctypes.byref(km))
    return {"n": k, "cal": cal, "counts": dict(zip(KINDS, counts, strict=True)), "cands": cands[:min(k, MAX_CANDS)],
            "stats": dict(zip(F.TRIP_STATS, stats, strict=True)), "km": km.value}


def _trip(seed: int):
    fleet = S.simulate_fleet(S.FleetConfig(n_vehicles=3, seed=40 + seed))
    v = dataclasses.replace(fleet[seed % 3], mount=S.random_rotation(np.random.default_rng(seed)))
    return v.trip(seed, "crash" if seed == 2 else True)


def assert_same(c: dict, vs: F.VehicleSignals) -> None:
    np.testing.assert_allclose(np.array(c["cal"].rotation).reshape(3, 3), vs.cal.rotation, atol=1e-9)
    assert bool(c["cal"].ok) == vs.cal.ok and c["cal"].gravity_mps2 == pytest.approx(vs.cal.gravity_mps2, abs=1e-9)
    rule = F.detect_in(vs)
    assert c["counts"] == {k: sum(e.kind == k for e in rule) for k in KINDS}
    cands = F.candidates(vs)
    assert c["n"] == len(cands)
    assert [(x.lo, x.hi, x.centre) for x in c["cands"]] == cands[:MAX_CANDS]
    for x, (_, _, centre) in zip(c["cands"], cands, strict=False):
        f = F.window_features(vs, centre)
        np.testing.assert_allclose(list(x.features), [f[k] for k in F.FEATURE_NAMES], rtol=1e-9, atol=1e-9)
    st = F.trip_stats(vs)
    for k, v in st.items():
        assert c["stats"][k] == pytest.approx(v, rel=1e-9, abs=1e-9, nan_ok=True), k


@pytest.mark.parametrize("seed", range(6))
def test_the_streaming_c_equals_python(lib, seed):
    trip = _trip(seed)
    speed = F.trip_speed(trip)
    vs = F.extract_trip(trip)
    c = c_segment(lib, trip.acc_mps2, trip.gyro_rads, speed, trip.fs_hz)
    assert_same(c, vs)
    assert c["km"] == pytest.approx(float(np.nan_to_num(speed).sum() / trip.fs_hz / 1000), rel=1e-12)
    if seed == 2:
        assert c["counts"]["crash"] >= 1


def test_the_c_takes_the_configured_thresholds(lib):
    trip = S.simulate_fleet(S.FleetConfig(n_vehicles=1, seed=77))[0].trip(0)
    cfg = F.EventConfig(brake_mps2=2.5, accel_mps2=2.0, corner_mps2=2.5, min_duration_s=0.3)
    speed = F.trip_speed(trip)
    vs = F.vehicle_signals(trip.acc_mps2, trip.gyro_rads, speed, trip.fs_hz, cfg)
    c = c_segment(lib, trip.acc_mps2, trip.gyro_rads, speed, trip.fs_hz, cfg)
    assert_same(c, vs)
    assert sum(c["counts"].values()) > 0


def test_the_unit_speed_bridges_dropouts_with_the_last_fix(lib):
    gs = np.array([np.nan, 2.0, 4.0, np.nan, np.nan, 10.0], dtype=np.float32)
    py = F.unit_speed(gs, 600, 100.0)
    c = [lib.unit_speed(gs.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.c_long(6), ctypes.c_long(i),
                        ctypes.c_double(100.0)) for i in range(600)]
    np.testing.assert_array_equal(np.array(c), py)
    assert np.isnan(py[:100]).all() and py[150] == 3.0 and py[350] == 7.0 and (py[500:] == 10.0).all()


def test_the_c_dsp_builds_for_cortex_m4(tmp_path):
    cc = require_tool("arm-none-eabi-gcc")
    out = tmp_path / "veh_features.o"
    subprocess.run([cc, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-Wall",
                    "-Wextra", "-Werror", "-c", "-o", str(out), str(SRC)], check=True)
    assert out.stat().st_size > 0
