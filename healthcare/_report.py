"""Private: scoring the healthcare demo against the simulator's ground truth, and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

NEWS2_ALERT = 5  #: NEWS2 aggregate at which the RCP chart asks for an urgent response
LEAD_SPAN_H = 12.0  #: an alert counts as a warning of an event if it comes at most this long before it


def _auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    from shared.runtime.metrics import auroc_or_none

    return auroc_or_none(y, s)


def evaluate(cohort: Sequence, risks: Sequence[dict], start_ms: dict[str, int], horizon_h: float,
             alert_threshold: float, alert_windows: int = 3) -> dict:
    """AUROC of risk and NEWS2 for "event within horizon_h", on the same rows; lead times; false alerts.

    Rows after a patient's event are left out (the patient has deteriorated; prediction is moot).
    Both scores are compared on the rows where NEWS2 can be computed (vitals and a chart known).
    Alerts follow one rule for both: the score at or above its threshold (risk >= the trained alert
    threshold; NEWS2 >= 5, the RCP's urgent-response trigger) on ``alert_windows`` consecutive windows.
    """
    events = {p.id: p.event_time_s for p in cohort}
    rows = []
    for m in risks:
        t_s = (m["ts"] - start_ms[m["device"]]) / 1000.0
        ev = events.get(m["device"])
        if ev is not None and t_s >= ev:
            continue
        y = int(ev is not None and ev - t_s <= horizon_h * 3600)
        rows.append((m["device"], t_s, y, m["risk"], m["news2"], m["alert"]))
    both = [r for r in rows if r[4] is not None]
    y = np.array([r[2] for r in both])
    out: dict = {
        "eval_rows": len(both),
        "eval_positive": int(y.sum()) if len(y) else 0,
        "risk_auroc": _auroc(y, np.array([r[3] for r in both])) if both else None,
        "news2_auroc": _auroc(y, np.array([r[4] for r in both], dtype=float)) if both else None,
    }
    risk_rule = _alert_rule(rows, lambda r: r[3] >= alert_threshold, cohort, alert_windows)
    news2_rule = _alert_rule(rows, lambda r: r[4] is not None and r[4] >= NEWS2_ALERT, cohort, alert_windows)
    out.update({
        "events": risk_rule["events"],
        "stable_patients": len(cohort) - risk_rule["events"],
        "alert_windows": alert_windows,
        "events_warned": risk_rule["warned"],
        "lead_time_min": risk_rule["lead_min"],
        "false_alert_patients": risk_rule["false_alert_patients"],
        "news2_events_warned": news2_rule["warned"],
        "news2_lead_time_min": news2_rule["lead_min"],
        "news2_false_alert_patients": news2_rule["false_alert_patients"],
    })
    return out


def _alert_rule(rows: Sequence[tuple], above: object, cohort: Sequence, k: int) -> dict:
    """The platform's alert rule (k consecutive windows) over each patient's windows: lead times before
    events (within LEAD_SPAN_H), false-alert patients."""
    from shared.runtime.alerts import AlertRule

    rule = AlertRule(threshold=0.5, windows=k)
    leads: list[float] = []
    false_alert_patients = 0
    n_events = 0
    for p in cohort:
        mine = sorted((r for r in rows if r[0] == p.id), key=lambda r: r[1])
        first = rule.first_alert_s([r[1] for r in mine], [bool(above(r)) for r in mine],  # type: ignore[operator]
                                   p.event_time_s, LEAD_SPAN_H * 3600)
        if p.event_time_s is None:
            false_alert_patients += first is not None
        else:
            n_events += 1
            if first is not None:
                leads.append((p.event_time_s - first) / 60.0)
    return {"events": n_events, "warned": len(leads), "false_alert_patients": false_alert_patients,
            "lead_min": round(float(np.median(leads)), 1) if leads else None}


def plot_patient(cohort: Sequence, risks: Sequence[dict], out: Path, start_ms: dict[str, int],
                 store_url: str | None, alert_threshold: float | None = None) -> Path:
    """Vitals as the device measured them (read back from ``store_url``; None: not shown), NEWS2 and
    transformer risk of one deteriorating patient."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_event = [p for p in cohort if p.event_time_s is not None] or list(cohort)
    patient = with_event[0]
    start_epoch_ms = start_ms[patient.id]
    mine = sorted((m for m in risks if m["device"] == patient.id), key=lambda m: m["ts"])
    t_h = np.array([(m["ts"] - start_epoch_ms) / 3.6e6 for m in mine])
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    vit = _measured_vitals(store_url, patient.id, start_epoch_ms) if store_url is not None else {}
    for ax, keys in zip(axes[:2], (("hr_bpm", "rr_bpm"), ("spo2_pct", "temp_c")), strict=True):
        for k in keys:
            if k in vit:
                ax.plot(vit[k][0], vit[k][1], ".", ms=3, label=f"{k} (device)")
        ax.legend(loc="upper left", fontsize=8)
    axes[2].step(t_h, [np.nan if m["news2"] is None else m["news2"] for m in mine], where="post", color="C3")
    axes[2].axhline(NEWS2_ALERT, ls=":", color="C3")
    axes[2].set_ylabel("NEWS2")
    axes[3].plot(t_h, [m["risk"] for m in mine], color="C4")
    axes[3].set_ylabel("transformer risk")
    if alert_threshold is not None:
        axes[3].axhline(alert_threshold, ls=":", color="C4")
    for m in mine:
        if m["alert"]:
            axes[3].plot((m["ts"] - start_epoch_ms) / 3.6e6, m["risk"], "v", color="C3", ms=9)
    axes[3].set_ylim(0, 1)
    axes[3].set_xlabel("hours since admission")
    for ax in axes:
        if patient.event_time_s is not None:
            ax.axvline(patient.event_time_s / 3600, color="k", ls="--", lw=1)
    fig.suptitle(f"{patient.id}: deterioration event at "
                 f"{(patient.event_time_s or 0) / 3600:.1f} h (dashed)")
    fig.tight_layout()
    path = out / f"patient-{patient.id}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _measured_vitals(store_url: str, device: str, start_epoch_ms: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from shared.storage.factory import open_store

    store = open_store(store_url)
    try:
        points = store.query("vitals", device)
    finally:
        store.close()
    out: dict[str, tuple[list, list]] = {}
    for pt in points:
        for k, v in pt.fields.items():
            if isinstance(v, int | float) and v is not None:
                out.setdefault(k, ([], []))
                out[k][0].append((pt.ts_ms - start_epoch_ms) / 3.6e6)
                out[k][1].append(v)
    return {k: (np.array(a), np.array(b)) for k, (a, b) in out.items()}
