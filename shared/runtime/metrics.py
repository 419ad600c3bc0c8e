"""The evaluation every domain reports the same way: AUROC, thresholds, lead times, spreads.

One AUROC (Mann-Whitney U with mid-ranks for ties, equal to the area under the ROC curve), one way
to choose an alert threshold (at a false-positive rate on the training subjects), and the
lead-time helpers that :mod:`shared.runtime.alerts` applies the alert rule with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); NaN if one class is absent."""
    from scipy.stats import rankdata

    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_or_none(labels: np.ndarray, scores: np.ndarray, digits: int = 4) -> float | None:
    """:func:`auroc` rounded for a report, None where it is undefined (one class only)."""
    value = auroc(labels, scores) if len(labels) else math.nan
    return None if math.isnan(value) else round(value, digits)


def threshold_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold t such that the fraction of negatives with score >= t is at most `fpr`."""
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr: must be in (0, 1), got {fpr!r}")
    neg = np.sort(np.asarray(scores, dtype=np.float64)[~np.asarray(labels).astype(bool)])[::-1]
    if len(neg) == 0:
        raise ValueError("threshold_at_fpr: no negative samples")
    k = int(np.floor(fpr * len(neg)))  # at most k negatives may reach the threshold
    if k >= len(neg):
        return float(neg[-1])
    return float(np.nextafter(neg[k], np.inf))


def median_or_none(values: Sequence[float | None], digits: int | None = None) -> float | None:
    got = [float(v) for v in values if v is not None]
    if not got:
        return None
    m = float(np.median(got))
    return round(m, digits) if digits is not None else m


def spread(values: Sequence[float | None], digits: int = 4) -> dict[str, float | None]:
    """Median and interquartile range over subjects (None where nothing is defined)."""
    got = np.array([float(v) for v in values if v is not None and not math.isnan(float(v))])
    if len(got) == 0:
        return {"median": None, "q25": None, "q75": None, "n": 0}
    q25, med, q75 = np.percentile(got, [25, 50, 75])
    return {"median": round(float(med), digits), "q25": round(float(q25), digits),
            "q75": round(float(q75), digits), "n": int(len(got))}
