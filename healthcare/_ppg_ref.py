"""Private (healthcare.ppg_eval): the independent references the device's beat detector is scored against.

None of the public recordings ships beat annotations, so the reference is built from what each one has:

* **ECG beside the PPG** (pyphysio's recording): R peaks by neurokit2 (``ecg_clean`` + ``ecg_peaks``, its
  default method) shifted by the pulse arrival delay: the median time from an R peak to the next Elgendi PPG
  beat within 0.1-0.8 s, over the whole recording (measured with the PPG reference, not the device). Every
  beat is certain; HR comes from the R-R intervals.
* **PPG only**: two published detectors by other authors, each on its own filtered copy of the
  blood-volume-polarity signal: Elgendi et al. 2013 (neurokit2 ``"elgendi"``) after an order-3 Butterworth
  band-pass of REF_BAND_HZ (resampled to 100 Hz where slower than REF_MIN_HZ), and MSPTDfast (Charlton et
  al. 2025, an optimised multi-scale peak detector after Bishop & Ercole 2018; neurokit2 ``"charlton"``)
  after MSPTD_BAND_HZ, at 100 Hz (resampled where the rate differs by more than MSPTD_RATE_TOL). A beat
  both mark (within MATCH_S, one to one) is a *consensus* beat (at Elgendi's time); a beat only one marks
  is *ambiguous*: a detected beat on it counts neither as a hit nor as a false positive, and missing it is
  no miss. The HR of a stretch is the mean of the two detectors' HRs where
  they agree within REF_HR_AGREE_BPM, else *unsettled* (that window's HR is not scored; counted).

MSPTD_BAND_HZ's upper edge (2.5 Hz, the pulse's fundamental up to 150 bpm) was chosen on heartpy/data:
with 8 Hz MSPTDfast also marks the diastolic wave of those fingertip pulses (41 beats for 24).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MATCH_S = 0.15
REF_MIN_HZ = 90.0  # below it, the PPG references run on the signal resampled to 100 Hz
#: Elgendi's band-pass (Hz): neurokit2's ppg_clean uses 0.5-8 Hz; 0.7 Hz follows the smartwatch's baseline
#: wander (100x its pulse) better, and the other recordings' reference beats hardly change
REF_BAND_HZ = (0.7, 8.0)
MSPTD_BAND_HZ = (0.5, 2.5)
MSPTD_RATE_TOL = 0.1  #: MSPTDfast runs at 100 Hz, resampled where the rate differs by more than this share
REF_HR_AGREE_BPM = 2.0
ARRIVAL_RANGE_S = (0.1, 0.8)


def pair(a: np.ndarray, b: np.ndarray, tol_s: float = MATCH_S) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches between two sorted beat series: each beat of ``a`` takes the nearest unused beat
    of ``b`` within tol_s. Returns (indices into a, indices into b) of the matched pairs."""
    used = np.zeros(b.size, dtype=bool)
    ia: list[int] = []
    ib: list[int] = []
    for i, r in enumerate(a):
        j = int(np.searchsorted(b, r))
        near = [k for k in (j - 1, j) if 0 <= k < b.size and not used[k] and abs(b[k] - r) <= tol_s]
        if near:
            k = min(near, key=lambda k: abs(b[k] - r))
            used[k] = True
            ia.append(i)
            ib.append(k)
    return np.asarray(ia, dtype=np.int64), np.asarray(ib, dtype=np.int64)


def hr_of(t: np.ndarray) -> float:
    """60 / mean interval of consecutive beats (NaN for fewer than 2)."""
    return 60.0 / float(np.mean(np.diff(t))) if t.size > 1 else math.nan


@dataclass(frozen=True)
class Reference:
    """Reference beats of one recording (s from its first sample)."""

    name: str  #: how it was made, for the table
    beats: np.ndarray  #: certain beats (consensus, or ECG)
    ambiguous: np.ndarray  #: beats only one PPG detector marks
    sources: tuple[np.ndarray, ...]  #: the series whose HRs must agree (one: ECG or a single detector)

    def hr(self, a_s: float, b_s: float) -> float | None:
        """The reference HR over [a_s, b_s) (None: the sources disagree by more than REF_HR_AGREE_BPM)."""
        rates = [hr_of(s[(s >= a_s) & (s < b_s)]) for s in self.sources]
        if any(math.isnan(r) for r in rates) or max(rates) - min(rates) > REF_HR_AGREE_BPM:
            return None
        return float(np.mean(rates))

    def score(self, det: np.ndarray, lo_s: float, hi_s: float) -> tuple[int, int, int, int]:
        """(hits, false positives, misses, detections on ambiguous beats) of ``det`` within [lo_s, hi_s)."""
        ref, amb, d = (np.sort(t[(t >= lo_s) & (t < hi_s)]) for t in (self.beats, self.ambiguous, det))
        _, i_d = pair(ref, d)
        rest = np.delete(d, i_d)
        _, i_amb = pair(amb, rest)
        return int(i_d.size), int(rest.size - i_amb.size), int(ref.size - i_d.size), int(i_amb.size)


def _ppg_clean(x: np.ndarray, fs_hz: float, polarity: int, method: str) -> tuple[np.ndarray, float]:
    import neurokit2 as nk
    from scipy.signal import resample_poly

    y, fs = polarity * np.asarray(x, dtype=float), fs_hz
    band_hz = REF_BAND_HZ if method == "elgendi" else MSPTD_BAND_HZ
    if fs_hz < REF_MIN_HZ if method == "elgendi" else abs(fs_hz / 100.0 - 1.0) > MSPTD_RATE_TOL:
        y = resample_poly(y, 100, int(round(fs_hz)))
        fs = fs_hz * y.size / x.size
    lo, hi = band_hz
    return nk.signal_filter(y, sampling_rate=int(round(fs)), lowcut=lo, highcut=hi, method="butterworth", order=3), fs


def ppg_beats(x: np.ndarray, fs_hz: float, polarity: int, method: str = "elgendi") -> np.ndarray:
    """Beat times (s) by neurokit2's ``ppg_findpeaks(method)``: "elgendi" after REF_BAND_HZ, "charlton"
    (MSPTDfast) after MSPTD_BAND_HZ."""
    import neurokit2 as nk

    clean, fs = _ppg_clean(x, fs_hz, polarity, method)
    peaks = nk.ppg_findpeaks(clean, sampling_rate=int(round(fs)), method=method)
    return np.sort(np.asarray(peaks["PPG_Peaks"], dtype=float) / fs)


def r_peaks(ecg: np.ndarray, fs_hz: float) -> np.ndarray:
    """R peak times (s) by neurokit2's default ECG pipeline."""
    import neurokit2 as nk

    _, info = nk.ecg_peaks(nk.ecg_clean(ecg, sampling_rate=int(fs_hz)), sampling_rate=int(fs_hz))
    return np.sort(np.asarray(info["ECG_R_Peaks"], dtype=float) / fs_hz)


def pulse_arrival_s(r: np.ndarray, ppg: np.ndarray) -> float:
    """Median time from each R peak to the next PPG beat, over those within ARRIVAL_RANGE_S."""
    j = np.searchsorted(ppg, r)
    ok = j < ppg.size
    d = ppg[j[ok]] - r[ok]
    d = d[(d >= ARRIVAL_RANGE_S[0]) & (d <= ARRIVAL_RANGE_S[1])]
    return float(np.median(d))


def consensus(e: np.ndarray, s: np.ndarray, name: str) -> Reference:
    ie, i_s = pair(e, s)
    ambiguous = np.sort(np.concatenate([np.delete(e, ie), np.delete(s, i_s)]))
    return Reference(name, e[ie], ambiguous, (e, s))


def reference(x: np.ndarray, fs_hz: float, polarity: int, ecg: np.ndarray | None = None,
              ecg_fs_hz: float = 0.0) -> tuple[Reference, Reference]:
    """(the reference of the module docstring, Elgendi's detector alone) for one recording."""
    e = ppg_beats(x, fs_hz, polarity, "elgendi")
    alone = Reference("Elgendi", e, np.zeros(0), (e,))
    if ecg is not None:
        r = r_peaks(ecg, ecg_fs_hz)
        delay = pulse_arrival_s(r, e)
        return Reference(f"ECG R + {delay:.3f} s", r + delay, np.zeros(0), (r + delay,)), alone
    return consensus(e, ppg_beats(x, fs_hz, polarity, "charlton"), "Elgendi ∩ MSPTDfast"), alone
