"""Readers for real recordings: Case Western .mat files and CSV, on files the tests write in those
layouts (good and malformed); every error must say what is wrong and in which file."""

from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.io import savemat

from industrial_iot import features as F
from industrial_iot import signals as S

RNG = np.random.default_rng(0)
DE = RNG.standard_normal((4000, 1)) * 0.1
FE = RNG.standard_normal((4000, 1)) * 0.05


def write_mat(path: Path, **variables) -> Path:
    savemat(str(path), variables)
    return path


# --- Case Western .mat ------------------------------------------------------------------------------

def test_cwru_file_with_every_channel(tmp_path):
    p = write_mat(tmp_path / "097.mat", X097_DE_time=DE, X097_FE_time=FE, X097_BA_time=FE * 2,
                  X097RPM=np.array([[1797]]))
    rec = S.read_cwru_mat(p, 12000)
    np.testing.assert_array_equal(rec.de_g, DE.ravel())
    np.testing.assert_array_equal(rec.fe_g, FE.ravel())
    np.testing.assert_array_equal(rec.ba_g, FE.ravel() * 2)
    assert rec.rpm == 1797.0 and rec.shaft_hz == pytest.approx(29.95) and rec.fs_hz == 12000.0
    assert rec.key == "X097" and rec.source == str(p) and rec.accel_g is rec.de_g


def test_cwru_file_without_rpm_or_fan_end(tmp_path):
    rec = S.read_cwru_mat(write_mat(tmp_path / "a.mat", X118_DE_time=DE), 48000)
    assert rec.rpm is None and math.isnan(rec.shaft_hz) and rec.fe_g is None and rec.ba_g is None


def test_cwru_file_with_two_records_needs_a_key(tmp_path):
    p = write_mat(tmp_path / "99.mat", X098_DE_time=DE, X099_DE_time=DE * 2, X099RPM=np.array([[1750]]))
    with pytest.raises(ValueError, match=r"99\.mat.*X098, X099.*key="):
        S.read_cwru_mat(p, 12000)
    rec = S.read_cwru_mat(p, 12000, key="X099")
    assert rec.rpm == 1750 and rec.accel_g[0] == DE[0, 0] * 2


@pytest.mark.parametrize(("variables", "message"), [
    ({"data": DE}, r"no Case Western variable like X097_DE_time \(found: data\)"),
    ({"X097_FE_time": FE}, "missing variable X097_DE_time"),
    ({"X097_DE_time": RNG.standard_normal((100, 2))}, r"X097_DE_time must be a vector .*\(100, 2\)"),
    ({"X097_DE_time": np.array([[np.nan]] * 10 + [[1.0]])}, "X097_DE_time contains 10 NaN"),
    ({"X097_DE_time": np.array([[1.0]])}, "X097_DE_time holds 1 sample"),
    ({"X097_DE_time": np.array(["abc"])}, "X097_DE_time must be numeric"),
    ({"X097_DE_time": DE, "X097_FE_time": FE[:100]}, "X097_FE_time has 100 samples, X097_DE_time has 4000"),
    ({"X097_DE_time": DE, "X097RPM": np.array([[1797, 1796]])}, r"X097RPM must be one number"),
    ({"X097_DE_time": DE, "X097RPM": np.array([[-5.0]])}, r"X097RPM must be a finite number > 0"),
])
def test_malformed_cwru_files_are_named(tmp_path, variables, message):
    p = write_mat(tmp_path / "bad.mat", **variables)
    with pytest.raises(ValueError, match=message) as e:
        S.read_cwru_mat(p, 12000)
    assert "bad.mat" in str(e.value)


def test_not_a_mat_file_or_missing_file(tmp_path):
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"this is not MATLAB\n" * 20)
    with pytest.raises(ValueError, match=r"junk\.mat: not a readable MATLAB"):
        S.read_cwru_mat(junk, 12000)
    with pytest.raises(ValueError, match=r"nope\.mat: no such file"):
        S.read_cwru_mat(tmp_path / "nope.mat", 12000)


@pytest.mark.parametrize("fs", [0, -12000, math.nan, "12k", None])
def test_cwru_needs_a_sample_rate(tmp_path, fs):
    p = write_mat(tmp_path / "a.mat", X097_DE_time=DE)
    with pytest.raises(ValueError, match="fs_hz"):
        S.read_cwru_mat(p, fs)


def test_outer_race_fault_in_a_cwru_layout_file_is_found_by_the_dsp(tmp_path):
    """A simulated outer-race fault on the Case Western test rig's 6205 drive-end bearing, at 12 kHz,
    written the way the rig's files are laid out, read back and analysed window by window."""
    base = S.simulate_fleet(S.FleetConfig(n_machines=1, seed=2, fs_hz=12000, window_s=3.0,
                                          fault_share=0.0, sensor_issue_share=0.0))[0]
    m = replace(base, bearing=S.BEARINGS["6205"], fault="outer_race", fault_onset_h=0.0, failure_h=100.0)
    w = m.window(60 * 3600.0)
    p = write_mat(tmp_path / "130.mat", X130_DE_time=w.accel_g.astype(np.float64)[:, None],
                  X130RPM=np.array([[w.rpm]]))
    rec = S.read_cwru_mat(p, 12000)
    windows = list(S.recording_windows(rec, 8192, hop=4096))
    assert len(windows) == 7
    for x in windows:
        ft = F.extract(x, rec.fs_hz, rec.shaft_hz, S.BEARINGS["6205"].as_dict())
        assert ft.env_bpfo_g > 3 * max(ft.env_bpfi_g, ft.env_bsf2_g)


# --- CSV -----------------------------------------------------------------------------------------------

def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_with_time_and_g(tmp_path):
    rows = "\n".join(f"{i / 1000:.6f},{0.01 * i}" for i in range(50))
    rec = S.read_csv(write_csv(tmp_path / "a.csv", "time_s,accel_g\n" + rows + "\n"))
    assert rec.fs_hz == pytest.approx(1000.0) and rec.accel_g[7] == pytest.approx(0.07) and rec.rpm is None


@pytest.mark.parametrize(("column", "value", "g"), [("accel_mg", "250", 0.25), ("accel_m_s2", "9.80665", 1.0),
                                                     ("Accel_G", "0.5", 0.5)])
def test_csv_units_are_converted_to_g(tmp_path, column, value, g):
    rec = S.read_csv(write_csv(tmp_path / "u.csv", f"{column}\n{value}\n{value}\n"), fs_hz=10240)
    assert rec.accel_g[0] == pytest.approx(g) and rec.fs_hz == 10240


def test_csv_with_time_ms_and_rpm(tmp_path):
    rows = "\n".join(f"{i * 0.5},{i % 3},1790" for i in range(20))
    rec = S.read_csv(write_csv(tmp_path / "r.csv", "time_ms,accel_g,rpm\n" + rows))
    assert rec.fs_hz == pytest.approx(2000.0) and rec.rpm == 1790 and rec.shaft_hz == pytest.approx(1790 / 60)


@pytest.mark.parametrize(("text", "fs", "message"), [
    ("", None, "empty file"),
    ("time_s,accel_g\n", None, "at least 2 data rows"),
    ("time_s,speed\n0,1\n", None, "exactly one acceleration column"),
    ("accel_g,accel_mg\n1,2\n", 100, "exactly one acceleration column"),
    ("time_s,accel_g\n0,0.1\n0.001,abc\n", None, r"line 3: column accel_g: 'abc' is not a number"),
    ("time_s,accel_g\n0,0.1\n0.001,nan\n", None, r"line 3: column accel_g: 'nan' is not a finite number"),
    ("time_s,accel_g\n0,0.1\n0.001\n", None, r"line 3: 1 fields, the header has 2"),
    ("time_s,accel_g\n0,0.1\n0,0.2\n", None, "column time_s must increase"),
    ("time_s,accel_g\n0,1\n0.001,1\n0.003,1\n", None, "not uniformly sampled"),
    ("accel_g\n0.1\n0.2\n", None, "fs_hz must be given"),
    ("accel_g\n0.1\n0.2\n", -1.0, "fs_hz must be a finite number > 0"),
    ("time_s,accel_g\n0,1\n0.001,1\n", 500.0, "disagrees with column time_s"),
    ("accel_g,accel_g\n1,1\n", 100, "repeats a column"),
    ("time_s,time_ms,accel_g\n0,0,1\n", None, "more than one time column"),
    ("accel_g,rpm\n1,0\n1,0\n", 100, "column rpm must be > 0"),
])
def test_malformed_csv_is_named(tmp_path, text, fs, message):
    p = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=message) as e:
        S.read_csv(p, fs_hz=fs)
    assert "bad.csv" in str(e.value)


def test_csv_missing_or_binary_file(tmp_path):
    with pytest.raises(ValueError, match=r"none\.csv: no such file"):
        S.read_csv(tmp_path / "none.csv")
    p = tmp_path / "bin.csv"
    p.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(ValueError, match=r"bin\.csv: cannot read as UTF-8"):
        S.read_csv(p)


def test_recording_windows(tmp_path):
    rec = S.Recording("x", 100.0, np.arange(10.0))
    assert [w.tolist() for w in S.recording_windows(rec, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(list(S.recording_windows(rec, 4, hop=2))) == 4
    with pytest.raises(ValueError, match="hop"):
        list(S.recording_windows(rec, 4, hop=0))


# --- properties -----------------------------------------------------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=2, max_size=300), st.sampled_from([1000.0, 10240.0, 12000.0, 48000.0, 25.6]))
def test_csv_round_trip(values, fs):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "r.csv"
        p.write_text("time_s,accel_g\n" + "".join(f"{i / fs!r},{v!r}\n" for i, v in enumerate(values)))
        rec = S.read_csv(p)
    assert rec.accel_g.tolist() == values
    assert rec.fs_hz == pytest.approx(fs, rel=1e-9)


@given(st.text(alphabet=st.sampled_from(list("time_sacelg,0123456789.-+eE \n\r\tnaif#\"x")), max_size=200))
def test_csv_parser_only_ever_raises_value_error(text):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.csv"
        p.write_text(text)
        try:
            rec = S.read_csv(p, fs_hz=100.0)
        except ValueError as e:
            assert "f.csv" in str(e)
        else:
            assert rec.accel_g.size >= 2 and np.all(np.isfinite(rec.accel_g))


@given(st.lists(finite, min_size=2, max_size=200), st.sampled_from(["col", "row", "flat"]),
       st.integers(1, 999), st.one_of(st.none(), st.integers(1, 4000)))
def test_mat_round_trip(values, layout, number, rpm):
    a = np.asarray(values)
    shaped = {"col": a[:, None], "row": a[None, :], "flat": a}[layout]
    key = f"X{number:03d}"
    variables = {f"{key}_DE_time": shaped} | ({f"{key}RPM": np.array([[rpm]])} if rpm else {})
    with tempfile.TemporaryDirectory() as d:
        rec = S.read_cwru_mat(write_mat(Path(d) / "f.mat", **variables), 12000)
    assert rec.key == key and rec.accel_g.tolist() == values and rec.rpm == (float(rpm) if rpm else None)


@given(st.lists(finite, min_size=3, max_size=100), st.data())
def test_mat_with_a_nan_anywhere_is_rejected(values, data):
    a = np.asarray(values)
    a[data.draw(st.integers(0, a.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with tempfile.TemporaryDirectory() as d:
        p = write_mat(Path(d) / "n.mat", X010_DE_time=a[:, None])
        with pytest.raises(ValueError, match="X010_DE_time contains 1 NaN or infinite"):
            S.read_cwru_mat(p, 12000)
