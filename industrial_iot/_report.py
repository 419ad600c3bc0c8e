"""Private: scoring the industrial_iot demo against the simulator's ground truth, and its plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.runtime.alerts import AlertRule
from shared.runtime.metrics import auroc_or_none, median_or_none

ZONE_INDEX = {"A": 0, "B": 1, "C": 2, "D": 3}
RUL_CAP_H = 240.0  #: RUL error is measured on windows at most this long before a failure


def evaluate(machines: Sequence, actions: Sequence[dict], day0_ms: int, horizon_h: float, threshold: float,
             windows: int, anomaly_threshold: float) -> dict:
    """The transformer's risk beside the ISO 10816 zone and the device's anomaly score, on the same windows.

    y = "functional failure within horizon_h"; windows after a machine's failure are left out. Each
    score alerts with the platform's rule (``windows`` consecutive windows): risk >= the trained
    threshold, ISO zone C or D, anomaly >= the device's threshold. Lead time: hours from the first alert
    within ``horizon_h`` before the failure to the failure (median over the failing machines warned).
    """
    failure = {m.id: m.failure_h for m in machines}
    rows = []
    for a in actions:
        t_h = (a["ts"] - day0_ms) / 3.6e6
        f_h = failure.get(a["device"], math.inf)
        if t_h >= f_h:
            continue
        y = int(f_h - t_h <= horizon_h)
        zone = ZONE_INDEX.get(a["iso_zone"], np.nan) if a["iso_zone"] is not None else np.nan
        rows.append((a["device"], t_h, y, a["risk"], zone, np.nan if a["anomaly"] is None else a["anomaly"],
                     a["rul_h"], f_h))
    y = np.array([r[2] for r in rows])
    out: dict = {"eval_windows": len(rows), "eval_positive": int(y.sum()) if len(y) else 0,
                 "risk_auroc": auroc_or_none(y, np.array([r[3] for r in rows])) if rows else None,
                 "iso_auroc": auroc_or_none(y, np.nan_to_num(np.array([r[4] for r in rows]), nan=-1)) if rows else None,
                 "anomaly_auroc": auroc_or_none(y, np.nan_to_num(np.array([r[5] for r in rows]), nan=0))
                 if rows else None}
    rules = {"risk": (3, threshold), "iso": (4, ZONE_INDEX["C"]), "anomaly": (5, anomaly_threshold)}
    failing = [m for m in machines if math.isfinite(m.failure_h) and m.failure_h * 3600 > 0]
    for name, (col, thr) in rules.items():
        rule = AlertRule(thr, windows=windows)
        leads, false_alarms = [], 0
        for m in machines:
            mine = sorted((r for r in rows if r[0] == m.id), key=lambda r: r[1])
            t = [r[1] for r in mine]
            above = [bool(np.nan_to_num(r[col], nan=-np.inf) >= thr) for r in mine]
            if math.isfinite(m.failure_h):
                first = rule.first_alert_s(t, above, m.failure_h, horizon_h)
                leads.append(None if first is None else m.failure_h - first)
            else:
                false_alarms += rule.first_alert_s(t, above, None, math.inf) is not None
        prefix = "" if name == "risk" else f"{name}_"
        out[f"{prefix}lead_time_h"] = median_or_none(leads, 1)
        out[f"{prefix}detected"] = sum(v is not None for v in leads)
        out[f"{prefix}false_alert_machines"] = false_alarms
    out["failures"] = sum(1 for m in failing if m.failure_h <= max((r[1] for r in rows), default=0) + horizon_h)
    rul = [(r[6], r[7] - r[1]) for r in rows if r[6] is not None and math.isfinite(r[7]) and r[7] - r[1] <= RUL_CAP_H]
    out["rul_mae_h"] = round(float(np.mean([abs(p - t) for p, t in rul])), 1) if rul else None
    out["rul_windows"] = len(rul)
    out["alert_windows"] = windows
    return out


def plot_machine(machines: Sequence, actions: Sequence[dict], out: Path, day0_ms: int, threshold: float) -> Path:
    """One failing machine: its envelope spectrum over the days (re-simulated windows through the device
    DSP), and the transformer's risk beside the ISO 10816 zone and the action."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from industrial_iot.features import envelope, envelope_spectrum

    mine = {m.id: [a for a in actions if a["device"] == m.id] for m in machines}
    failing = [m for m in machines if math.isfinite(m.failure_h) and mine[m.id]]
    m = (sorted(failing, key=lambda m: (m.fault not in ("outer_race", "inner_race", "rolling_element"),
                                        -len(mine[m.id])))[0] if failing else machines[0])
    acts = sorted(mine[m.id], key=lambda a: a["ts"])
    t_h = np.array([(a["ts"] - day0_ms) / 3.6e6 for a in acts])
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(10, 8), sharex=False)
    if len(t_h):
        times = np.linspace(t_h[0], t_h[-1], min(60, len(t_h)))
        rows = []
        for th in times:
            w = m.window(th * 3600.0)
            x0 = np.asarray(w.accel_g, dtype=np.float64) - float(np.mean(w.accel_g))
            rows.append(envelope_spectrum(envelope(x0, w.fs_hz)))
        spec = np.log10(np.array(rows) + 1e-12)
        df = w.fs_hz / len(w.accel_g)  # the envelope runs at M fs / n Hz over M samples: fs / n per bin
        f_max = spec.shape[1] * df
        ax0.imshow(spec.T, aspect="auto", origin="lower", extent=(times[0], times[-1], 0, f_max),
                   vmin=np.percentile(spec, 50), cmap="magma")
        ax0.set_ylim(0, min(f_max, 600))
    ax0.set_ylabel("envelope spectrum (Hz)")
    ax0.set_title(f"{m.id} ({m.kind}, fault {m.fault}, failure at {m.failure_h:.0f} h): envelope spectrum over time")
    risk = [a["risk"] for a in acts]
    zone = [ZONE_INDEX.get(a["iso_zone"], np.nan) if a["iso_zone"] else np.nan for a in acts]
    ax1.plot(t_h, risk, label="transformer risk (failure within horizon)", color="tab:red")
    ax1.axhline(threshold, color="tab:red", ls=":", label="alert threshold")
    ax2 = ax1.twinx()
    ax2.step(t_h, zone, where="post", color="tab:blue", label="ISO 10816-3 zone")
    ax2.set_yticks(range(4), list("ABCD"))
    ax2.set_ylim(-0.2, 3.2)
    alerts = [th for th, a in zip(t_h, acts, strict=True) if a["alert"]]
    for th in alerts:
        ax1.axvline(th, color="tab:orange", alpha=0.6)
    if math.isfinite(m.failure_h):
        ax1.axvline(m.failure_h, color="k", ls="--", label="functional failure (truth)")
    ax1.set_xlabel("hours")
    ax1.set_ylabel("risk")
    ax1.set_ylim(0, 1)
    ax1.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="center left", fontsize=8)
    fig.tight_layout()
    path = Path(out) / f"machine_{m.id}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
