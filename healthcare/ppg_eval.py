"""The beat detector (healthcare.features step 3) on real PPG recordings that ship inside PyPI packages.

Recordings (read from the installed packages at run time, never copied into this repository):

* ``heartpy`` 1.2.7 (GPL-3.0; van Gent et al.): ``data/data.csv`` (100 Hz), ``data2.csv`` (117 Hz,
  ``timer`` in ms), ``data3.csv`` (100.4 Hz from its timestamps): fingertip / ear PPG;
* ``pyphysio`` 4.10.0 (GPL-3.0; FBK): ``test_data/medical.txt.bz2``, 120 s of BVP beside an ECG at
  2048 Hz, resampled here to 128 Hz;
* ``e2epyppg`` 0.0.9 (MIT; UC Irvine): ``data/201902020222_Data.csv``, a smartwatch's raw PPG at 19.6 Hz,
  light intensity (it falls with blood volume: polarity -1).

None ships beat annotations; the reference (`healthcare._ppg_ref`) is pyphysio's ECG where the recording has
one (R peaks + the pulse arrival delay), else the consensus of two published PPG detectors by other authors
(neurokit2's Elgendi and MSPTDfast): beats only one of them marks are ambiguous and count neither way, and a
window whose two reference HRs differ by more than 2 bpm has no settled HR (counted, not scored).

Default (issue 23 item 11): the whole recording, window by window as the device runs it (30 s windows, 20 s
apart; `score_windows`). Each window goes through the device's own `features.extract` (the recording scaled
into an 18-bit front end's range: its minimum at 100 000 counts, its band-passed pulse's standard deviation at
1 000 counts; the band-pass removes the DC, so the beats do not change: the scale only feeds the off-wrist
and perfusion checks), whose step 10 decides ``hr_quality``: "low" windows are withheld (HR null in the message) and
counted; every "good" window is scored, wherever the reference stands: its beats in its own stretch (the
central HOP_S, the outer edges of the first and last window) against the reference, its HR against the
reference HR over the same 30 s. Elgendi's detector alone is scored too, for comparison.

``--plausible`` (the earlier figures, issue 13 item 10): only the 10 s segments where Elgendi's beats are
themselves plausible (from 2 s before to 2 s after the segment at least 3 intervals, every one within +-30 %
of their median), which leaves out motion artefacts; the share kept is reported as coverage. There the
detector runs via `beat_times_s` on each window; HR = 60 / mean interval inside the segments.

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

from healthcare._ppg_ref import MATCH_S, REF_BAND_HZ, pair, ppg_beats, reference
from healthcare.features import HR_VITALS, Features, bandpass, beat_times_s, extract

SEGMENT_S = 10.0
SEGMENT_TOL = 0.3
CONTEXT_S = 2.0  # the reference intervals checked reach this far beyond a segment
WINDOW_S = 30.0
HOP_S = 20.0
DC_COUNTS = 100_000.0  # the front end's range the recordings are scaled to (see the module docstring)
AC_COUNTS_STD = 1_000.0
COMMAND = "python -m healthcare.ppg_eval"
#: package -> pinned version (installed without dependencies for the data only where needed)
PACKAGES = {"heartpy": "1.2.7", "pyphysio": "4.10.0", "e2epyppg": "0.0.9"}


@dataclass(frozen=True)
class Recording:
    name: str
    source: str  #: the package
    x: np.ndarray  #: samples as recorded
    fs_hz: float
    polarity: int  #: 1: rises with blood volume; -1: falls (raw light intensity)
    ecg: np.ndarray | None = None  #: an ECG recorded with it, if any
    ecg_fs_hz: float = 0.0


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
        cols = pd.read_csv(f, sep="\t", header=None, usecols=[0, 2]).to_numpy(dtype=float)
    return [Recording("pyphysio/medical_bvp", "pyphysio", resample_poly(cols[:, 1], 1, 16), 2048.0 / 16, 1,
                      ecg=cols[:, 0], ecg_fs_hz=2048.0)]


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
    """Beat times (s) by neurokit2's Elgendi detector after the REF_BAND_HZ band-pass (`_ppg_ref`)."""
    return ppg_beats(x, fs_hz, polarity, "elgendi")


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
    tp = int(pair(np.sort(ref), np.sort(det), tol_s)[0].size)
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


def front_end_scale(x: np.ndarray, fs_hz: float) -> tuple[float, float]:
    """(offset, gain) that put a recording in the front end's range: its minimum at DC_COUNTS and its
    band-passed pulse's standard deviation at AC_COUNTS_STD (a perfusion of about 1 %)."""
    return float(np.min(x)), AC_COUNTS_STD / float(np.std(bandpass(np.asarray(x, dtype=float), fs_hz)))


def window_features(x: np.ndarray, fs_hz: float, polarity: int, scale: tuple[float, float]) -> Features:
    """The device's features of one window (`features.extract`), the samples scaled (`front_end_scale`)."""
    y = (np.asarray(x, dtype=float) - scale[0]) * scale[1] + DC_COUNTS
    acc = np.zeros((y.size, 3))
    acc[:, 2] = 1.0  # at rest: motion plays no part here
    return extract(y, y, acc, 33.0, fs_hz, polarity=polarity)


def _window_starts(n: int, w: int, hop: int) -> list[int]:
    if n <= w:
        return [0]
    starts = list(range(0, n - w + 1, hop))
    if starts[-1] + w < n:
        starts.append(n - w)
    return starts


def _share(num: int, den: int) -> float | None:
    return num / den if den else None


def _summary(rows: list[dict], key: str) -> dict:
    """SE, PPV and HR error of the reported windows' scores under ``key`` ("ref" or "elgendi")."""
    tp, fp, fn, amb = (sum(r[key][i] for r in rows) for i in range(4))
    hr = [(r["hr_bpm"], r[f"hr_{key}_bpm"]) for r in rows if r[f"hr_{key}_bpm"] is not None]
    err = [d - h for d, h in hr]
    return {"se": _share(tp, tp + fn), "ppv": _share(tp, tp + fp), "beats": tp + fn, "ambiguous": amb,
            "hr_bpm": float(np.mean([d for d, _ in hr])) if hr else None,
            "hr_ref_bpm": float(np.mean([h for _, h in hr])) if hr else None,
            "hr_error_bpm": float(np.mean(err)) if err else None,
            "hr_worst_bpm": float(np.max(np.abs(err))) if err else None, "hr_unsettled": len(rows) - len(hr)}


def score_windows(rec: Recording) -> dict:
    """The whole recording, window by window as the device runs it (module docstring): every window is
    either reported (hr_quality good: its HR and beats scored) or withheld (counted, not scored)."""
    ref, alone = reference(rec.x, rec.fs_hz, rec.polarity, rec.ecg, rec.ecg_fs_hz)
    n, w, hop = rec.x.size, int(round(WINDOW_S * rec.fs_hz)), int(round(HOP_S * rec.fs_hz))
    starts = _window_starts(n, w, hop)
    scale = front_end_scale(rec.x, rec.fs_hz)
    margin = (WINDOW_S - HOP_S) / 2
    windows = []
    for j, i0 in enumerate(starts):
        a, b = i0 / rec.fs_hz, min(n, i0 + w) / rec.fs_hz
        seg = rec.x[i0: i0 + w]
        f = window_features(seg, rec.fs_hz, rec.polarity, scale)
        good = f.hr_quality == "good"
        row: dict = {"start_s": round(a, 2), "hr_quality": f.hr_quality,
                     "hr_bpm": round(f.hr_bpm, 2) if good else None}
        for key, r in (("ref", ref), ("elgendi", alone)):
            h = r.hr(a, b)
            row[f"hr_{key}_bpm"] = None if h is None else round(h, 2)
        if good:
            det = beat_times_s(seg, rec.fs_hz, rec.polarity) + a
            lo = a if j == 0 else a + margin
            hi = b if j == len(starts) - 1 else starts[j + 1] / rec.fs_hz + margin
            row["ref"], row["elgendi"] = ref.score(det, lo, hi), alone.score(det, lo, hi)
        windows.append(row)
    good = [r for r in windows if r["hr_quality"] == "good"]
    return {"recording": rec.name, "fs_hz": round(rec.fs_hz, 2), "polarity": rec.polarity,
            "duration_s": round(n / rec.fs_hz, 1), "reference": ref.name, "windows": len(windows),
            "withheld": 1.0 - len(good) / len(windows), **_summary(good, "ref"),
            "elgendi_alone": _summary(good, "elgendi"), "windows_detail": windows}


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def whole_table(rows: list[dict]) -> str:
    head = ("| recording | fs (Hz) | reference | windows | withheld | SE | PPV | beats | ambiguous | HR | HR ref "
            "| HR error | worst window | HR unsettled | Elgendi alone: SE / PPV / HR error |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = []
    for r in rows:
        e = r["elgendi_alone"]
        lines.append(f"| {r['recording']} | {r['fs_hz']:.1f} | {r['reference']} | {r['windows']} | {r['withheld']:.2f} "
                     f"| {_f(r['se'], '.3f')} | {_f(r['ppv'], '.3f')} | {r['beats']} | {r['ambiguous']} "
                     f"| {_f(r['hr_bpm'], '.1f')} | {_f(r['hr_ref_bpm'], '.1f')} | {_f(r['hr_error_bpm'], '+.1f')} "
                     f"| {_f(r['hr_worst_bpm'], '.1f')} | {r['hr_unsettled']} "
                     f"| {_f(e['se'], '.3f')} / {_f(e['ppv'], '.3f')} / {_f(e['hr_error_bpm'], '+.1f')} |")
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
    if args.invert and not args.plausible:
        ap.error("--invert: only with --plausible (the whole-recording table scores each recording as recorded)")
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
        args.json.write_text(json.dumps({
            "command": COMMAND, "window_s": WINDOW_S, "hop_s": HOP_S, "match_s": MATCH_S,
            "withheld_vitals": list(HR_VITALS), "elgendi_band_hz": list(REF_BAND_HZ),
            "rows": [{k: v for k, v in r.items() if k not in ("elgendi_alone", "windows_detail")}
                     | {f"elgendi_{k}": r["elgendi_alone"][k] for k in ("se", "ppv", "hr_error_bpm")} for r in whole],
            "recordings": whole}, indent=1))
        print(f"(wrote {args.json})")
    for name in missing:
        print(f"(not installed: {name}=={PACKAGES[name]}; pip install --no-deps {name}=={PACKAGES[name]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
