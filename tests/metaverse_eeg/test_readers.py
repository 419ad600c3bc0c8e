"""Readers for real recordings (EDF/BDF via MNE, DEAP preprocessed Python files, SEED-style .mat) on small
files the tests write in those layouts, good and malformed; errors name the file and what is wrong."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.io import savemat

from metaverse_eeg import CHANNELS, FS_HZ
from metaverse_eeg import _readers as R
from metaverse_eeg.features import extract_window

RNG = np.random.default_rng(11)


def _field(value: object, width: int) -> bytes:
    text = str(value).encode("ascii")
    assert len(text) <= width, (value, width)
    return text.ljust(width)


def write_edf(path: Path, data_uv: np.ndarray, fs: int, labels: list[str], bdf: bool = False) -> Path:
    """A minimal EDF (16-bit) or BDF (24-bit) file, written from the format's header layout."""
    n_ch, n = data_uv.shape
    n_rec = n // fs
    bits = 24 if bdf else 16
    dmax, dmin = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
    pmin, pmax = -3200.0, 3200.0
    head = (b"\xffBIOSEMI" if bdf else _field("0", 8)) + _field("X X X X", 80) + _field("Startdate X", 80)
    head += _field("01.01.24", 8) + _field("00.00.00", 8) + _field(256 * (n_ch + 1), 8)
    head += _field("24BIT" if bdf else "", 44) + _field(n_rec, 8) + _field(1, 8) + _field(n_ch, 4)
    cols = [[_field(lab, 16) for lab in labels], [_field("AgAgCl", 80)] * n_ch, [_field("uV", 8)] * n_ch,
            [_field(pmin, 8)] * n_ch, [_field(pmax, 8)] * n_ch, [_field(dmin, 8)] * n_ch, [_field(dmax, 8)] * n_ch,
            [_field("", 80)] * n_ch, [_field(fs, 8)] * n_ch, [_field("", 32)] * n_ch]
    head += b"".join(b"".join(c) for c in cols)
    digital = np.round((data_uv - pmin) / (pmax - pmin) * (dmax - dmin) + dmin).astype(np.int64)
    body = bytearray()
    for r in range(n_rec):
        for c in range(n_ch):
            for v in digital[c, r * fs:(r + 1) * fs]:
                body += int(v).to_bytes(bits // 8, "little", signed=True)
    path.write_bytes(head + bytes(body))
    return path


@pytest.mark.parametrize("bdf", [False, True])
def test_edf_and_bdf_through_mne(tmp_path, bdf):
    fs = 256
    data = RNG.normal(0, 20, (len(CHANNELS), fs * 10))
    p = write_edf(tmp_path / ("rec.bdf" if bdf else "rec.edf"), data, fs, list(CHANNELS), bdf=bdf)
    rec = R.read_edf(p)
    assert rec.channels == CHANNELS and rec.fs_hz == fs
    step = 6400 / (2 ** (24 if bdf else 16) - 1)
    np.testing.assert_allclose(rec.eeg, data, atol=step)
    windows = R.headset_windows(rec)
    assert windows.shape == (2, 8, 512)  # 10 s at 256 Hz -> 1280 samples at 128 Hz -> two 4 s windows
    assert np.isfinite(extract_window(windows[0]).bp).all()


def test_edf_errors_name_the_file(tmp_path):
    with pytest.raises(R.RecordingError, match="expected a .edf or .bdf"):
        R.read_edf(tmp_path / "x.txt")
    bad = tmp_path / "broken.edf"
    bad.write_bytes(b"0       garbage")
    with pytest.raises(R.RecordingError, match="broken.edf"):
        R.read_edf(bad)


def _deap_file(path: Path, trials: int = 3, samples: int = 8064, labels: np.ndarray | None = None) -> Path:
    data = RNG.normal(0, 10, (trials, 40, samples)).astype(np.float64)
    lab = RNG.uniform(1, 9, (trials, 4)) if labels is None else labels
    path.write_bytes(pickle.dumps({"data": data, "labels": lab}, protocol=2))
    return path


def test_deap_trials_and_labels(tmp_path):
    p = _deap_file(tmp_path / "s01.dat")
    recs = R.read_deap(p)
    assert len(recs) == 3 and recs[0].eeg.shape == (32, 8064) and recs[0].fs_hz == 128.0
    assert set(recs[0].labels) == {"valence", "arousal", "dominance", "liking"}
    assert 1 <= recs[1].labels["valence"] <= 9
    w = R.headset_windows(recs[0])
    assert w.shape == (15, 8, 512)  # 63 s
    np.testing.assert_array_equal(w[0, 0], recs[0].eeg[R.DEAP_CHANNELS.index("AF3"), :512])


def test_deap_refuses_code_and_bad_layouts(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.dat"
    p.write_bytes(pickle.dumps({"data": Evil(), "labels": None}))
    with pytest.raises(R.RecordingError, match="refusing builtins.print"):
        R.read_deap(p)
    with pytest.raises(R.RecordingError, match="labels must be on the 1-9 scale"):
        R.read_deap(_deap_file(tmp_path / "s02.dat", labels=np.zeros((3, 4))))
    q = tmp_path / "s03.dat"
    q.write_bytes(pickle.dumps({"data": np.zeros((2, 8, 10)), "labels": np.ones((2, 4))}))
    with pytest.raises(R.RecordingError, match="trials x >=32 channels"):
        R.read_deap(q)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_deap_reader_survives_any_bytes(blob):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.dat"
        p.write_bytes(blob)
        try:
            R.read_deap(p)
        except R.RecordingError as exc:
            assert "fuzz.dat" in str(exc)


def test_seed_mat_with_labels_is_resampled(tmp_path):
    names = (*CHANNELS, "FZ", "CZ")
    trials = {f"djc_eeg{k}": RNG.normal(0, 15, (len(names), 200 * 9)) for k in (1, 2)}
    savemat(tmp_path / "1_20131027.mat", trials)
    savemat(tmp_path / "label.mat", {"label": np.array([[1, -1]])})
    recs = R.read_seed(tmp_path / "1_20131027.mat", names, tmp_path / "label.mat")
    assert [r.labels["label"] for r in recs] == [1.0, -1.0]
    x = R.to_headset(recs[0])
    assert x.shape == (8, int(9 * FS_HZ))
    with pytest.raises(R.RecordingError, match=r"channels \['AF3'"):
        R.to_headset(R.Recording(np.zeros((2, 100)), 200.0, ("FZ", "CZ"), "two.mat"))
    with pytest.raises(R.RecordingError, match="djc_eeg1 has shape"):
        R.read_seed(tmp_path / "1_20131027.mat", CHANNELS)
    savemat(tmp_path / "empty.mat", {"foo": np.zeros(3)})
    with pytest.raises(R.RecordingError, match="no '<name>_eeg<k>' trial variables"):
        R.read_seed(tmp_path / "empty.mat", CHANNELS)
