"""The vehicles simulator and the CSV log readers (files the tests write, good and malformed)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vehicles import signals as S

FLEET = S.simulate_fleet(S.FleetConfig(n_vehicles=4, seed=3))


def test_trips_are_deterministic_and_shaped():
    a, b = FLEET[1].trip(2), FLEET[1].trip(2)
    np.testing.assert_array_equal(a.acc_mps2, b.acc_mps2)
    n = int(S.TRIP_S * S.FS_HZ)
    assert a.acc_mps2.shape == (n, 3) and a.gyro_rads.shape == (n, 3) and a.gnss.shape == (int(S.TRIP_S), 4)
    # at rest the specific force is gravity, whatever the mounting
    assert np.linalg.norm(a.acc_mps2.mean(axis=0)) == pytest.approx(S.G, abs=0.6)
    assert 0.1 < a.distance_km < 3.0
    assert not np.array_equal(FLEET[1].trip(3).acc_mps2, a.acc_mps2)


def test_mount_is_a_rotation():
    for v in FLEET:
        np.testing.assert_allclose(v.mount @ v.mount.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(v.mount) == pytest.approx(1.0)


def test_incidents_follow_latent_risk():
    fleet = S.simulate_fleet(S.FleetConfig(n_vehicles=60, seed=9))
    risk = np.array([v.risk for v in fleet])
    rate = np.array([np.mean([v.incident(k) is not None for k in range(400)]) for v in fleet])
    assert np.corrcoef(risk, rate)[0, 1] > 0.7


def test_forced_crash_trip_has_a_crash_event():
    trip = FLEET[0].trip(1, "crash")
    assert trip.incident == "crash" and any(e.kind == "crash" for e in trip.events)
    with pytest.raises(ValueError, match="incident"):
        FLEET[0].trip(1, "fender")


def test_hazards_are_felt_by_every_vehicle_driving_over_them():
    hits = [h for v in FLEET for k in range(12) for _, h in v.trip(k).hazards_hit]
    assert hits, "no vehicle drove over a hazard in 48 trips"
    ids = {h.id for h in FLEET[0].network.hazards}
    assert set(hits) <= ids


def write_logs(d: Path, trip: S.Trip) -> tuple[Path, Path]:
    imu, gnss = d / "imu.csv", d / "gnss.csv"
    t = np.arange(len(trip.acc_mps2)) / trip.fs_hz + 1000.0
    rows = ["t_s,ax_mps2,ay_mps2,az_mps2,gx_rads,gy_rads,gz_rads"]
    rows += [",".join(f"{x:.9g}" for x in (ti, *a, *g)) for ti, a, g in zip(t, trip.acc_mps2, trip.gyro_rads,
                                                                             strict=True)]
    imu.write_text("\n".join(rows) + "\n")
    grows = ["# a comment line", "t_s,lat_deg,lon_deg,speed_mps"]
    for r in trip.gnss:
        cells = ["" if np.isnan(x) else f"{x:.9g}" for x in r[1:]]
        grows.append(",".join([f"{r[0] + 1000.0:.9g}", *cells]))
    gnss.write_text("\n".join(grows) + "\n")
    return imu, gnss


def test_csv_round_trip(tmp_path):
    trip = FLEET[2].trip(0)
    imu, gnss = write_logs(tmp_path, trip)
    got = S.trip_from_csv(imu, gnss, "csv1")
    np.testing.assert_allclose(got.acc_mps2, trip.acc_mps2, rtol=1e-8)
    np.testing.assert_allclose(got.gyro_rads, trip.gyro_rads, rtol=1e-8, atol=1e-12)
    assert got.fs_hz == pytest.approx(100.0)
    np.testing.assert_allclose(got.gnss, trip.gnss, rtol=1e-8)  # dropouts stay NaN, t relative to the IMU


@pytest.mark.parametrize("text, match", [
    ("t_s,ax_mps2,ay_mps2,az_mps2,gx_rads,gy_rads\n0,1,2,3,4,5\n", "missing column"),
    ("t_s,ax_mps2,ay_mps2,az_mps2,gx_rads,gy_rads,gz_rads\n0,1,2,3,4,5,6\n0.01,1,x,3,4,5,6\n", "ay_mps2"),
    ("t_s,ax_mps2,ay_mps2,az_mps2,gx_rads,gy_rads,gz_rads\n0,1,2,3,4,5,6\n0,1,2,3,4,5,6\n", "increase"),
    ("t_s,ax_mps2,ay_mps2,az_mps2,gx_rads,gy_rads,gz_rads\n0,1,2,3,4,5,6\n0.01,1,2,3,4,5\n", "line 3"),
    ("t_s,ax_mps2,ay_mps2,az_mps2,gx_rads,gy_rads,gz_rads\n0,1,2,3,4,5,6\n0.01,1,2,3,4,5,6\n0.5,1,2,3,4,5,6\n",
     "evenly"),
    ("t_s,ax_mps2,ay_mps2,az_mps2,gx_rads,gy_rads,gz_rads\n0,1,2,3,4,5,6\n0.01,1,2,,4,5,6\n", "az_mps2"),
    ("", "empty"),
])
def test_bad_imu_logs_are_named(tmp_path, text, match):
    p = tmp_path / "imu.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        S.read_imu_csv(p)


def test_bad_gnss_logs_are_named(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("t_s,lat_deg,lon_deg,speed_mps\n0,95,11,3\n")
    with pytest.raises(ValueError, match="out of range"):
        S.read_gnss_csv(p)
    p.write_text("t_s,lat_deg,lon_deg,speed_mps\n0,48,11,-1\n")
    with pytest.raises(ValueError, match="negative speed"):
        S.read_gnss_csv(p)
    p.write_text("t_s,lat_deg,lon_deg\n0,48,11\n")
    with pytest.raises(ValueError, match="speed_mps"):
        S.read_gnss_csv(p)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_read_or_rejected_with_a_value_error(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.csv"
        p.write_text(text)
        for reader in (S.read_imu_csv, S.read_gnss_csv):
            try:
                out = reader(p)
            except ValueError:
                continue
            arrays = out if isinstance(out, tuple) else (out,)
            assert all(np.asarray(a).ndim >= 0 for a in arrays)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=6, max_size=6), st.integers(0, 5))
def test_a_bad_cell_names_its_column(values, col):
    cols = ["ax_mps2", "ay_mps2", "az_mps2", "gx_rads", "gy_rads", "gz_rads"]
    cells = [repr(v) for v in values]
    cells[col] = "nan?"
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "imu.csv"
        p.write_text("t_s," + ",".join(cols) + "\n0," + ",".join(repr(v) for v in values) + "\n0.01," +
                     ",".join(cells) + "\n")
        with pytest.raises(ValueError, match=cols[col]):
            S.read_imu_csv(p)
