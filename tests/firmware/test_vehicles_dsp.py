"""The C port of the vehicles DSP (vehicles/firmware/veh_features.c) against vehicles.features:
the same calibration and the same events on simulated trips under random mountings."""

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


class Event(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("t_start_s", ctypes.c_double), ("t_end_s", ctypes.c_double),
                ("peak_mps2", ctypes.c_double)]


class Calibration(ctypes.Structure):
    _fields_ = [("rotation", ctypes.c_double * 9), ("gravity_mps2", ctypes.c_double), ("ok", ctypes.c_int)]


class Config(ctypes.Structure):
    _fields_ = [(n, ctypes.c_double) for n in ("brake_mps2", "accel_mps2", "corner_mps2", "min_duration_s",
                                                "smooth_s", "road_mps2", "road_min_speed_mps",
                                                "bump_max_speed_mps", "crash_mps2")]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cc = require_tool("gcc")
    out = tmp_path_factory.mktemp("veh") / "libveh.so"
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(out), str(SRC), "-lm"],
                   check=True)
    so = ctypes.CDLL(str(out))
    so.veh_detect_events.restype = ctypes.c_int
    return so


def c_events(lib, acc, gyro, speed, fs, cfg: F.EventConfig | None = None):
    n = len(acc)
    arr = [np.ascontiguousarray(x, dtype=np.float64) for x in (acc, gyro, speed)]
    scratch = np.zeros(7 * n + 1)
    events = (Event * 256)()
    cal = Calibration()
    ptr = [a.ctypes.data_as(ctypes.POINTER(ctypes.c_double)) for a in (*arr, scratch)]
    conf = None if cfg is None else ctypes.byref(Config(*(getattr(cfg, f) for f, _ in Config._fields_)))
    k = lib.veh_detect_events(ptr[0], ptr[1], ptr[2], ctypes.c_size_t(n), ctypes.c_double(fs), conf, ptr[3], events,
                              256, ctypes.byref(cal))
    assert k >= 0
    return [(KINDS[e.kind], e.t_start_s, e.t_end_s, e.peak_mps2) for e in events[:k]], cal


@pytest.mark.parametrize("seed", range(6))
def test_c_and_python_find_the_same_events(lib, seed):
    fleet = S.simulate_fleet(S.FleetConfig(n_vehicles=3, seed=40 + seed))
    v = dataclasses.replace(fleet[seed % 3], mount=S.random_rotation(np.random.default_rng(seed)))
    trip = v.trip(seed, "crash" if seed == 2 else True)
    speed = trip.speed_mps
    py = F.detect_events(trip.acc_mps2, trip.gyro_rads, speed, trip.fs_hz)
    c, cal = c_events(lib, trip.acc_mps2, trip.gyro_rads, speed, trip.fs_hz)
    pcal = F.calibrate(trip.acc_mps2, trip.gyro_rads, speed, trip.fs_hz)
    np.testing.assert_allclose(np.array(cal.rotation).reshape(3, 3), pcal.rotation, atol=1e-9)
    assert bool(cal.ok) == pcal.ok and cal.gravity_mps2 == pytest.approx(pcal.gravity_mps2, abs=1e-9)
    assert [e[0] for e in c] == [e.kind for e in py]
    for (kind, t0, t1, peak), e in zip(c, py, strict=True):
        assert (t0, t1) == pytest.approx((e.t_start_s, e.t_end_s), abs=1e-9), kind
        assert peak == pytest.approx(e.peak_mps2, rel=1e-9, abs=1e-9)
    if seed == 2:
        assert "crash" in [e[0] for e in c]


def test_c_takes_the_configured_thresholds_and_refuses_bad_input(lib):
    trip = S.simulate_fleet(S.FleetConfig(n_vehicles=1, seed=77))[0].trip(0)
    cfg = F.EventConfig(brake_mps2=2.5, accel_mps2=2.0, corner_mps2=2.5, min_duration_s=0.3)
    py = F.detect_events(trip.acc_mps2, trip.gyro_rads, trip.speed_mps, trip.fs_hz, cfg)
    c, _ = c_events(lib, trip.acc_mps2, trip.gyro_rads, trip.speed_mps, trip.fs_hz, cfg)
    assert [e[0] for e in c] == [e.kind for e in py] and len(py) > 0
    bad = trip.acc_mps2.copy()
    bad[5, 0] = np.nan
    n = len(bad)
    ptr = [np.ascontiguousarray(x).ctypes.data_as(ctypes.POINTER(ctypes.c_double))
           for x in (bad, trip.gyro_rads, trip.speed_mps, np.zeros(7 * n + 1))]
    assert lib.veh_detect_events(ptr[0], ptr[1], ptr[2], ctypes.c_size_t(n), ctypes.c_double(100.0), None, ptr[3],
                                 (Event * 8)(), 8, None) == -1


def test_the_c_dsp_builds_for_cortex_m4(tmp_path):
    cc = require_tool("arm-none-eabi-gcc")
    out = tmp_path / "veh_features.o"
    subprocess.run([cc, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-Wall",
                    "-Wextra", "-Werror", "-c", "-o", str(out), str(SRC)], check=True)
    assert out.stat().st_size > 0
