"""Issue 13 item 10: the beat detector on real PPG from three independent sources, either polarity.

The recordings are read from the installed packages (healthcare.ppg_eval lists them and their licences);
none is copied here. heartpy is a dev dependency; pyphysio and e2epyppg declare heavy dependencies they do
not need for their data (nilearn, netCDF4; TensorFlow, PyTorch), so the fixture installs them into the
running environment with ``pip install --no-deps`` at their pinned versions when they are missing. Without
network access the test skips (and fails under TINYLARGE_REQUIRE_ALL=1).

Before the fix: heartpy/data gave 48 beats for 24 (the diastolic wave counted), data2 SE/PPV about 0.8,
and the e2epyppg smartwatch recording (which falls with blood volume) could not be configured at all.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from healthcare import ppg_eval
from healthcare.features import beat_times_s, extract
from tests._tools import REQUIRE_ALL_ENV, require_all

MIN_SE = MIN_PPV = 0.97
MAX_HR_ERROR_BPM = 2.0


def _ensure_packages() -> None:
    missing = [name for name in ppg_eval.PACKAGES if ppg_eval.package_dir(name) is None]
    if not missing:
        return
    specs = [f"{name}=={ppg_eval.PACKAGES[name]}" for name in missing]
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", *specs],
                         capture_output=True, text=True, timeout=600)
    still = [name for name in missing if ppg_eval.package_dir(name) is None]
    if res.returncode != 0 or still:
        reason = f"cannot install {specs} for their PPG recordings: {res.stderr.strip()[-300:]}"
        if require_all():
            pytest.fail(f"{reason} ({REQUIRE_ALL_ENV}=1)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def recordings() -> list[ppg_eval.Recording]:
    _ensure_packages()
    recs, missing = ppg_eval.recordings()
    assert not missing, missing
    return recs


@pytest.fixture(scope="module")
def whole(recordings) -> dict[str, dict]:
    return {r.name: ppg_eval.score_windows(r) for r in recordings}


def test_three_independent_sources(recordings):
    assert {r.source for r in recordings} == {"heartpy", "pyphysio", "e2epyppg"}
    assert len(recordings) == 5
    assert {r.polarity for r in recordings} == {1, -1}  # a front end of each polarity


def test_whole_recording_every_window_is_reported_or_withheld(recordings, whole):
    """Issue 23 item 11: every window of every recording counts (none left out because the reference looks
    implausible there); a withheld window carries no HR."""
    for rec in recordings:
        s = whole[rec.name]
        n, w = rec.x.size, int(round(ppg_eval.WINDOW_S * rec.fs_hz))
        expected = 1 if n <= w else math.ceil((n - w) / round(ppg_eval.HOP_S * rec.fs_hz)) + 1
        assert s["windows"] == len(s["windows_detail"]) == expected, s["recording"]
        withheld = [d for d in s["windows_detail"] if d["hr_quality"] == "low"]
        assert s["withheld"] == pytest.approx(len(withheld) / expected)
        assert all(d["hr_bpm"] is None and "ref" not in d for d in withheld)


@pytest.mark.parametrize("name", ["heartpy/data", "heartpy/data2", "heartpy/data3", "pyphysio/medical_bvp",
                                  "e2epyppg/201902020222"])
def test_reported_windows_meet_the_bar(whole, name):
    """Issue 23 item 11: on the windows whose HR the device reports (hr_quality good), sensitivity and PPV
    >= 0.97 against the independent reference and the HR within 2 bpm of it, on every recording; before
    the gate moved into the device and the reference became ECG / a consensus of two detectors, data2
    (SE 0.936), pyphysio (SE 0.968) and the smartwatch (PPV 0.951, HR +3.3 bpm) missed it."""
    s = whole[name]
    assert s["withheld"] < 1.0, s
    assert s["se"] >= MIN_SE and s["ppv"] >= MIN_PPV, s
    assert abs(s["hr_bpm"] - s["hr_ref_bpm"]) <= MAX_HR_ERROR_BPM, s


def test_windows_with_a_missed_beat_are_withheld(whole):
    """Against the ECG (every beat certain), no reported window misses a beat and each is within 2 bpm; the
    windows at 20 s and 90 s, where the detector misses one pulse, are withheld (step 10's interval check:
    the old gate reported them at -2.1 bpm)."""
    s = whole["pyphysio/medical_bvp"]
    assert s["reference"].startswith("ECG R + 0.3")
    detail = {d["start_s"]: d for d in s["windows_detail"]}
    assert detail[20.0]["hr_quality"] == detail[90.0]["hr_quality"] == "low"
    for d in detail.values():
        if d["hr_quality"] == "good":
            hits, false, missed, ambiguous = d["ref"]
            assert missed == false == ambiguous == 0 and hits > 10, d
            assert abs(d["hr_bpm"] - d["hr_ref_bpm"]) <= MAX_HR_ERROR_BPM, d


def test_a_withheld_window_sends_hr_null(recordings):
    """The device's message for a real window whose quality is low: HR and HRV null, hr_quality low, the
    rest measured; valid against the inference schema (and a good window's message carries its HR)."""
    from healthcare.device import inference_message
    from shared.protocol.messages import validate

    rec = next(r for r in recordings if r.name == "heartpy/data2")
    scale = ppg_eval.front_end_scale(rec.x, rec.fs_hz)
    n = int(round(ppg_eval.WINDOW_S * rec.fs_hz))
    scores = {"normal": 0.9, "tachycardia": 0.02, "bradycardia": 0.02, "desaturation": 0.02, "irregular": 0.02,
              "unreliable": 0.02}
    sent = {}
    for i0 in (0, rec.x.size - n):  # the noisy start, the clean end
        f = ppg_eval.window_features(rec.x[i0: i0 + n], rec.fs_hz, 1, scale)
        msg = inference_message("wearable-1", i0, 1_700_000_000_000, "hc-tiny@1", 30.0, f.message_vitals(), "normal",
                                scores, f.hr_quality)
        sent[f.hr_quality] = validate("healthcare", "inference", msg)
    low, good = sent["low"], sent["good"]
    assert [low["vitals"][k] for k in ("hr_bpm", "hrv_rmssd_ms", "hrv_sdnn_ms")] == [None, None, None]
    assert low["vitals"]["spo2_pct"] is not None and low["vitals"]["quality"] >= 0
    assert 55 < good["vitals"]["hr_bpm"] < 70


def test_noisy_start_of_data2_is_withheld(whole):
    """heartpy/data2's first 40 s (the detector found 9 beats for 21 in the first window) are withheld."""
    first = whole["heartpy/data2"]["windows_detail"][:2]
    assert [d["hr_quality"] for d in first] == ["low", "low"]


def test_cli_writes_plain_json(tmp_path, capsys):
    out = tmp_path / "ppg_eval.json"
    assert ppg_eval.main(["--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["command"] == "python -m healthcare.ppg_eval"
    assert "heartpy/data3" in {r["recording"] for r in data["rows"]}
    keys = {"windows", "withheld", "se", "ppv", "hr_bpm", "hr_ref_bpm", "reference", "elgendi_se"}
    assert keys <= set(data["rows"][0])
    assert all(not isinstance(v, list | dict) for r in data["rows"] for v in r.values())  # one table row each
    assert "| heartpy/data3 |" in capsys.readouterr().out


def test_inverting_signal_and_setting_gives_the_same_beats(recordings):
    rec = next(r for r in recordings if r.name == "heartpy/data")
    same = beat_times_s(-rec.x, rec.fs_hz, polarity=-1)
    assert np.array_equal(beat_times_s(rec.x, rec.fs_hz), same)


def test_diastolic_wave_is_not_a_beat(recordings):
    """heartpy/data (24.8 s, HR 59): 48 beats before the fix; as many as the reference now."""
    rec = next(r for r in recordings if r.name == "heartpy/data")
    ref = ppg_eval.reference_beats(rec.x, rec.fs_hz, 1)
    t = beat_times_s(rec.x, rec.fs_hz)
    assert t.size == ref.size == 24
    assert ppg_eval.match(t, ref) == (24, 0, 0)
    hr = 60.0 / np.mean(np.diff(t))
    assert abs(hr - 60.0 / np.mean(np.diff(ref))) < 0.5


def test_extract_takes_the_polarity_setting(recordings):
    """The whole feature set of a smartwatch window (raw light intensity) with polarity -1 equals that of the
    same window turned the right way up with the default."""
    rec = next(r for r in recordings if r.source == "e2epyppg")
    n = int(30 * rec.fs_hz)
    x = rec.x[int(300 * rec.fs_hz): int(300 * rec.fs_hz) + n]
    acc = np.zeros((n, 3))
    acc[:, 2] = 1.0
    raw = extract(x, x, acc, 33.0, rec.fs_hz, polarity=-1).as_dict()
    upright = 2 * x.mean() - x  # same DC, the pulse the other way up
    assert raw == pytest.approx(extract(upright, upright, acc, 33.0, rec.fs_hz).as_dict(), rel=1e-6, abs=1e-6)
    assert 40 < raw["hr_bpm"] < 120 and raw["quality"] > 0.3


@pytest.mark.parametrize("bad", [0, 2, True, "1", -1.5])
def test_polarity_must_be_plus_or_minus_one(bad):
    x = np.sin(np.arange(300) * 0.5) * 1000 + 50_000
    with pytest.raises(ValueError, match="polarity"):
        beat_times_s(x, 25.0, polarity=bad)
