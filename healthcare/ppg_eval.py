"""The beat detector (healthcare.features step 3) on real PPG recordings that ship inside PyPI packages.

Recordings (read from the installed packages at run time, never copied into this repository):

* ``heartpy`` 1.2.7 (GPL-3.0; van Gent et al.): ``data/data.csv`` (100 Hz), ``data2.csv`` (117 Hz,
  ``timer`` in ms), ``data3.csv`` (100.4 Hz from its timestamps): fingertip / ear PPG;
* ``pyphysio`` 4.10.0 (GPL-3.0; FBK): ``test_data/medical.txt.bz2``, 120 s of BVP beside an ECG at
  2048 Hz, resampled here to 128 Hz;
* ``e2epyppg`` 0.0.9 (MIT; UC Irvine): ``data/201902020222_Data.csv``, a smartwatch's raw PPG at 19.6 Hz,
  light intensity (it falls with blood volume: polarity -1).

None ships beat annotations, so the reference is an independent, established detector from another
package: neurokit2's ``ppg_findpeaks(method="elgendi")`` (Elgendi et al. 2013) after an order-3 Butterworth
band-pass of REF_BAND_HZ, on the signal in blood-volume polarity, resampled to 100 Hz first where it is
slower (Elgendi's filters need the bandwidth).

Default (issue 23 item 11): the whole recording, window by window (`score_windows`): each window's
signal-quality index (`WindowSqi.good`: interval regularity, template correlation, agreement of the beat
count with the autocorrelation period) decides whether its HR would be reported or withheld; the withheld
fraction is reported, and beats and HR of every reported window are scored, wherever the reference
stands. The SQI gate lives here, on the evaluation side, as a candidate: the device (features.py, the C
port, the message) does not withhold HR yet.

``--plausible`` (the earlier figures): only the 10 s segments where that reference is itself plausible
(from 2 s before to 2 s after the segment at least 3 intervals, every one within +-30 % of their median),
which leaves out motion artefacts; the share kept is reported as coverage.

The detector runs as the device runs it: 30 s windows (`features.beat_times_s` on each), 20 s apart, each
contributing the beats of its central 20 s (the first and last window their outer edge too). A detected
beat matches a reference beat within MATCH_S (0.15 s), one to one. HR = 60 / mean interval between
consecutive beats inside the evaluated segments, for detector and reference alike.

    python -m healthcare.ppg_eval          # whole recordings; JSON to out/healthcare/ppg_eval.json
    python -m healthcare.ppg_eval --plausible --invert   # the earlier, plausible-segment table
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.util
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from healthcare.features import IBI_MAX_S, IBI_MIN_S, _detect, _segment_corr, bandpass, beat_times_s, period_lag

MATCH_S = 0.15
SEGMENT_S = 10.0
SEGMENT_TOL = 0.3
CONTEXT_S = 2.0  # the reference intervals checked reach this far beyond a segment
WINDOW_S = 30.0
HOP_S = 20.0
REF_MIN_HZ = 90.0  # below it, the reference runs on the signal resampled to 100 Hz
#: the reference's band-pass (Hz): neurokit2's ppg_clean uses 0.5-8 Hz; 0.7 Hz follows the smartwatch's
#: baseline wander (100x its pulse) better, and the other recordings' reference beats hardly change
REF_BAND_HZ = (0.7, 8.0)
#: package -> pinned version (installed without dependencies for the data only where needed)
PACKAGES = {"heartpy": "1.2.7", "pyphysio": "4.10.0", "e2epyppg": "0.0.9"}


@dataclass(frozen=True)
class Recording:
    name: str
    source: str  #: the package
    x: np.ndarray  #: samples as recorded
    fs_hz: float
    polarity: int  #: 1: rises with blood volume; -1: falls (raw light intensity)


def package_dir(name: str) -> Path | None:
    """The installed package's folder, found without importing it (None if not installed)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _column(path: Path, name: str, delimiter: str = ",") -> list[str]:
    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f, delimiter=delimiter)]


def _rate(t_s: np.ndarray) -> float:
    """Mean sampling rate from time stamps (some repeat: the clock ticks coarser than the samples)."""
    return (t_s.size - 1) / float(t_s[-1] - t_s[0])


def _heartpy(root: Path) -> list[Recording]:
    d = root / "data"
    out = [Recording("heartpy/data", "heartpy", np.loadtxt(d / "data.csv"), 100.0, 1)]
    timer = np.array(_column(d / "data2.csv", "timer"), dtype=float) / 1000.0
    out.append(Recording("heartpy/data2", "heartpy", np.array(_column(d / "data2.csv", "hr"), dtype=float),
                         _rate(timer), 1))
    stamps = np.array([datetime.fromisoformat(s).timestamp() for s in _column(d / "data3.csv", "datetime")])
    out.append(Recording("heartpy/data3", "heartpy", np.array(_column(d / "data3.csv", "hr"), dtype=float),
                         _rate(stamps), 1))
    return out


def _pyphysio(root: Path) -> list[Recording]:
    import pandas as pd
    from scipy.signal import resample_poly

    with bz2.open(root / "test_data" / "medical.txt.bz2", "rt") as f:  # columns: ECG, EDA, BVP, respiration
        bvp = pd.read_csv(f, sep="\t", header=None, usecols=[2]).to_numpy(dtype=float)[:, 0]
    return [Recording("pyphysio/medical_bvp", "pyphysio", resample_poly(bvp, 1, 16), 2048.0 / 16, 1)]


def _e2epyppg(root: Path) -> list[Recording]:
    path = root / "data" / "201902020222_Data.csv"
    t = np.array(_column(path, "timestamp", "\t"), dtype=float) / 1000.0
    return [Recording("e2epyppg/201902020222", "e2epyppg", np.array(_column(path, "ppg", "\t"), dtype=float),
                      _rate(t), -1)]


LOADERS: dict[str, Callable[[Path], list[Recording]]] = {
    "heartpy": _heartpy, "pyphysio": _pyphysio, "e2epyppg": _e2epyppg}


def recordings(packages: tuple[str, ...] = tuple(LOADERS)) -> tuple[list[Recording], list[str]]:
    """(the recordings of the installed packages, the packages missing)."""
    found: list[Recording] = []
    missing: list[str] = []
    for name in packages:
        root = package_dir(name)
        if root is None:
            missing.append(name)
        else:
            found += LOADERS[name](root)
    return found, missing


def reference_beats(x: np.ndarray, fs_hz: float, polarity: int) -> np.ndarray:
    """Beat times (s) by neurokit2's Elgendi detector on the blood-volume-polarity signal, band-passed
    REF_BAND_HZ first (order-3 Butterworth, neurokit2's ``signal_filter``)."""
    import neurokit2 as nk
    from scipy.signal import resample_poly

    y, fs = polarity * np.asarray(x, dtype=float), fs_hz
    if fs_hz < REF_MIN_HZ:
        y = resample_poly(y, 100, int(round(fs_hz)))
        fs = fs_hz * y.size / x.size
    rate = int(round(fs))
    lo, hi = REF_BAND_HZ
    clean = nk.signal_filter(y, sampling_rate=rate, lowcut=lo, highcut=hi, method="butterworth", order=3)
    peaks = nk.ppg_findpeaks(clean, sampling_rate=rate, method="elgendi")
    return np.asarray(peaks["PPG_Peaks"], dtype=float) / fs


def device_beats(x: np.ndarray, fs_hz: float, polarity: int) -> np.ndarray:
    """The detector window by window as the device runs it (see the module docstring)."""
    n, w, hop = x.size, int(round(WINDOW_S * fs_hz)), int(round(HOP_S * fs_hz))
    if n <= w:
        return beat_times_s(x, fs_hz, polarity)
    starts = list(range(0, n - w + 1, hop))
    if starts[-1] + w < n:
        starts.append(n - w)
    margin = (WINDOW_S - HOP_S) / 2
    out = []
    for j, i0 in enumerate(starts):
        t = beat_times_s(x[i0: i0 + w], fs_hz, polarity) + i0 / fs_hz
        lo = -math.inf if j == 0 else i0 / fs_hz + margin
        hi = math.inf if j == len(starts) - 1 else starts[j + 1] / fs_hz + margin
        out.append(t[(t >= lo) & (t < hi)])
    return np.concatenate(out)


def clean_segments(ref: np.ndarray, duration_s: float) -> list[tuple[float, float]]:
    """The SEGMENT_S segments whose reference intervals are plausible (see the module docstring)."""
    out = []
    for a in np.arange(0.0, duration_s - SEGMENT_S / 2, SEGMENT_S):
        ibi = np.diff(ref[(ref >= a - CONTEXT_S) & (ref < a + SEGMENT_S + CONTEXT_S)])
        if ibi.size >= 3 and np.all(np.abs(ibi / np.median(ibi) - 1.0) <= SEGMENT_TOL):
            out.append((float(a), float(a + SEGMENT_S)))
    return out


def _inside(t: np.ndarray, segments: list[tuple[float, float]]) -> np.ndarray:
    keep = np.zeros(t.size, dtype=bool)
    for a, b in segments:
        keep |= (t >= a) & (t < b)
    return keep


def match(det: np.ndarray, ref: np.ndarray, tol_s: float = MATCH_S) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives): each reference beat takes the nearest unused
    detection within tol_s."""
    det = np.sort(det)
    used = np.zeros(det.size, dtype=bool)
    tp = 0
    for r in np.sort(ref):
        j = int(np.searchsorted(det, r))
        near = [k for k in (j - 1, j) if 0 <= k < det.size and not used[k] and abs(det[k] - r) <= tol_s]
        if near:
            used[min(near, key=lambda k: abs(det[k] - r))] = True
            tp += 1
    return tp, det.size - tp, ref.size - tp


def _hr(t: np.ndarray, segments: list[tuple[float, float]]) -> float:
    ibi = np.concatenate([np.diff(t[(t >= a) & (t < b)]) for a, b in segments])
    return 60.0 / float(ibi.mean()) if ibi.size else math.nan


def score(rec: Recording, invert: bool = False) -> dict[str, float | str | int]:
    """Sensitivity, PPV and HR of the detector on one recording against the reference. ``invert``: feed the
    recording upside down with the polarity setting flipped to match (the other front end)."""
    sign = -1 if invert else 1
    ref = reference_beats(rec.x, rec.fs_hz, rec.polarity)
    segments = clean_segments(ref, rec.x.size / rec.fs_hz)
    det = device_beats(sign * rec.x, rec.fs_hz, sign * rec.polarity)
    r, d = ref[_inside(ref, segments)], det[_inside(det, segments)]
    tp, fp, fn = match(d, r)
    return {"recording": rec.name, "fs_hz": rec.fs_hz, "polarity": sign * rec.polarity,
            "coverage": len(segments) * SEGMENT_S / (rec.x.size / rec.fs_hz), "ref_beats": int(r.size),
            "beats": int(d.size), "se": tp / max(1, tp + fn), "ppv": tp / max(1, tp + fp),
            "hr_bpm": _hr(det, segments), "hr_ref_bpm": _hr(ref, segments)}


@dataclass(frozen=True)
class WindowSqi:
    """One device window's beats and signal-quality index (the candidate HR gate, evaluation side)."""

    t_s: np.ndarray  #: beat times (s from the window's first sample)
    hr_bpm: float  #: 60 / mean valid interval, as features.extract (NaN: too few beats)
    q_ibi: float  #: share of intervals valid and within 0.5-1.5 x their median (features step 8)
    q_corr: float  #: mean correlation of the beats with their template (features step 8)
    hr_period_bpm: float  #: 60 / the autocorrelation beat period (features step 3a; NaN: none)

    @property
    def good(self) -> bool:
        """HR reportable: regular enough intervals, beats like their template, and the beat count agreeing
        with the autocorrelation period (Li & Clifford 2012: agreement of two estimates; Orphanidou et al.
        2015: template correlation >= 0.86)."""
        return (self.q_ibi >= SQI_IBI_MIN and self.q_corr >= SQI_CORR_MIN
                and abs(self.hr_period_bpm / self.hr_bpm - 1.0) <= SQI_PERIOD_TOL)


SQI_IBI_MIN = 0.94
SQI_CORR_MIN = 0.86
SQI_PERIOD_TOL = 0.15


def window_sqi(x: np.ndarray, fs_hz: float, polarity: int) -> WindowSqi:
    """Beats, HR and quality of one window (steps 2-4, 3a and 8 of healthcare.features)."""
    bp = polarity * bandpass(np.asarray(x, dtype=float), fs_hz)
    idx, t = _detect(bp, fs_hz)
    nan = math.nan
    ibi = np.diff(t)
    valid = (ibi >= IBI_MIN_S) & (ibi <= IBI_MAX_S)
    if valid.sum() < 4:
        return WindowSqi(t, nan, 0.0, 0.0, nan)
    good = ibi[valid]
    m = float(np.median(good))
    k = period_lag(bp, fs_hz)
    return WindowSqi(t, 60.0 / float(good.mean()), float(np.mean(valid & (ibi >= 0.5 * m) & (ibi <= 1.5 * m))),
                     _segment_corr(bp, idx, m, fs_hz), 60.0 * fs_hz / k if k else nan)


def _window_starts(n: int, w: int, hop: int) -> list[int]:
    if n <= w:
        return [0]
    starts = list(range(0, n - w + 1, hop))
    if starts[-1] + w < n:
        starts.append(n - w)
    return starts


def _hr_of(t: np.ndarray) -> float:
    ibi = np.diff(t)
    return 60.0 / float(ibi.mean()) if ibi.size else math.nan


def score_windows(rec: Recording) -> dict:
    """The whole recording, window by window as the device runs it: every window is either reported
    (quality good: its HR and beats scored against the reference) or withheld (counted, not scored).
    Beats are matched in each window's own stretch (its central HOP_S, the outer edges of the first and
    last); HR per window against the reference's HR over the same window."""
    ref = reference_beats(rec.x, rec.fs_hz, rec.polarity)
    n, w, hop = rec.x.size, int(round(WINDOW_S * rec.fs_hz)), int(round(HOP_S * rec.fs_hz))
    starts = _window_starts(n, w, hop)
    margin = (WINDOW_S - HOP_S) / 2
    tp = fp = fn = 0
    windows = []
    for j, i0 in enumerate(starts):
        a = i0 / rec.fs_hz
        b = min(n, i0 + w) / rec.fs_hz
        q = window_sqi(rec.x[i0: i0 + w], rec.fs_hz, rec.polarity)
        lo = a if j == 0 else a + margin
        hi = b if j == len(starts) - 1 else starts[j + 1] / rec.fs_hz + margin
        det = q.t_s + a
        r_own, d_own = ref[(ref >= lo) & (ref < hi)], det[(det >= lo) & (det < hi)]
        hr_ref = _hr_of(ref[(ref >= a) & (ref < b)])
        row = {"start_s": round(a, 2), "good": q.good, "q_ibi": round(q.q_ibi, 3), "q_corr": round(q.q_corr, 3),
               "hr_bpm": round(q.hr_bpm, 2) if q.good else None, "hr_ref_bpm": round(hr_ref, 2)}
        if q.good:
            t, f, m = match(d_own, r_own)
            tp, fp, fn = tp + t, fp + f, fn + m
            row.update(tp=t, fp=f, fn=m)
        windows.append(row)
    good = [r for r in windows if r["good"]]
    err = [abs(r["hr_bpm"] - r["hr_ref_bpm"]) for r in good]
    return {"recording": rec.name, "fs_hz": round(rec.fs_hz, 2), "polarity": rec.polarity,
            "duration_s": round(n / rec.fs_hz, 1), "windows": len(windows),
            "withheld": 1.0 - len(good) / len(windows),
            "se": tp / (tp + fn) if good else None, "ppv": tp / (tp + fp) if good else None,
            "hr_bpm": float(np.mean([r["hr_bpm"] for r in good])) if good else None,
            "hr_ref_bpm": float(np.mean([r["hr_ref_bpm"] for r in good])) if good else None,
            "hr_max_error_bpm": max(err) if err else None, "windows_detail": windows}


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def whole_table(rows: list[dict]) -> str:
    head = ("| recording | fs (Hz) | windows | withheld | SE | PPV | HR (good windows) | HR ref | HR error | "
            "worst window |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['recording']} | {r['fs_hz']:.1f} | {r['windows']} | {r['withheld']:.2f} | {_f(r['se'], '.3f')} "
             f"| {_f(r['ppv'], '.3f')} | {_f(r['hr_bpm'], '.1f')} | {_f(r['hr_ref_bpm'], '.1f')} "
             f"| {_f(None if r['hr_bpm'] is None else r['hr_bpm'] - r['hr_ref_bpm'], '+.1f')} "
             f"| {_f(r['hr_max_error_bpm'], '.1f')} |" for r in rows]
    return "\n".join([head, *lines])


def table(rows: list[dict]) -> str:
    head = ("| recording | fs (Hz) | polarity setting | coverage | ref beats | detected | SE | PPV | HR | HR ref "
            "| HR error |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['recording']} | {r['fs_hz']:.1f} | {r['polarity']:+d} | {r['coverage']:.2f} | {r['ref_beats']} "
             f"| {r['beats']} | {r['se']:.3f} | {r['ppv']:.3f} | {r['hr_bpm']:.1f} | {r['hr_ref_bpm']:.1f} "
             f"| {r['hr_bpm'] - r['hr_ref_bpm']:+.1f} |" for r in rows]
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m healthcare.ppg_eval", description=__doc__.split("\n")[0])
    ap.add_argument("--invert", action="store_true",
                    help="with --plausible: also score each recording upside down (default: off)")
    ap.add_argument("--plausible", action="store_true",
                    help="the earlier table: only the segments where the reference looks plausible (default: off)")
    ap.add_argument("--json", type=Path, default=Path("out/healthcare/ppg_eval.json"),
                    help="where the whole-recording figures go (default: out/healthcare/ppg_eval.json)")
    args = ap.parse_args(argv)
    recs, missing = recordings()
    if args.plausible:
        rows = [score(r) for r in recs]
        if args.invert:
            rows += [score(r, invert=True) for r in recs]
        print(table(rows))
    else:
        whole = [score_windows(r) for r in recs]
        print(whole_table(whole))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"reference": "neurokit2 elgendi, 0.7-8 Hz band-pass", "window_s": WINDOW_S,
                                         "hop_s": HOP_S, "match_s": MATCH_S, "recordings": whole}, indent=1))
        print(f"(wrote {args.json})")
    for name in missing:
        print(f"(not installed: {name}=={PACKAGES[name]}; pip install --no-deps {name}=={PACKAGES[name]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
