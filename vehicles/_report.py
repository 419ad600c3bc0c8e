"""Private: scoring the vehicles demo against the simulator's ground truth, and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.runtime.metrics import auroc_or_none


def evaluate(vehicles: Sequence, actions: Sequence[dict], horizon: int) -> dict:
    """Risk and the vendor score against "incident within the next `horizon` trip segments" (the
    simulator draws incidents of trips after the demo too, so every action has its label)."""
    by_id = {v.id: v for v in vehicles}
    y, risk, vendor = [], [], []
    for a in actions:
        v = by_id.get(a["device"])
        if v is None:
            continue
        k = int(a["source_seq"])
        y.append(int(any(v.incident(k + j) is not None for j in range(1, horizon + 1))))
        risk.append(a["risk"])
        vendor.append(a["vendor_points_per_100km"])
    y_arr = np.array(y)
    return {"eval_actions": len(y), "eval_positive": int(y_arr.sum()) if len(y) else 0,
            "risk_auroc": auroc_or_none(y_arr, np.array(risk)) if y else None,
            "baseline_auroc": auroc_or_none(y_arr, np.array(vendor)) if y else None}


def plot(trip, msg_events: list[dict], hazard_map, hazards: Sequence, out: Path) -> Path:
    """Left: one trip segment (speed, vehicle-frame accelerations from the unit's calibration, the
    unit's events marked). Right: the hazard map (true hazards, reports, confirmed hazards)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vehicles.features import trip_speed, vehicle_signals
    from vehicles.signals import latlon_to_xy

    vs = vehicle_signals(trip.acc_mps2, trip.gyro_rads, trip_speed(trip), trip.fs_hz)
    t = np.arange(len(vs.long)) / vs.fs_hz
    fig = plt.figure(figsize=(15, 7))
    ax0 = fig.add_subplot(3, 2, 1)
    ax0.plot(t, vs.speed * 3.6, color="k")
    ax0.set_ylabel("speed (km/h)")
    ax0.set_title(f"{trip.vehicle}, one trip segment: the unit's events (calibrated frame)")
    ax1 = fig.add_subplot(3, 2, 3, sharex=ax0)
    ax1.plot(t, vs.long, label="longitudinal", lw=0.8)
    ax1.plot(t, vs.lat, label="lateral", lw=0.8)
    ax1.axhline(-3.5, color="tab:red", ls=":", lw=0.8)
    ax1.set_ylabel("m/s^2 (0.5 s mean)")
    ax1.legend(fontsize=7, loc="upper right")
    ax2 = fig.add_subplot(3, 2, 5, sharex=ax0)
    ax2.plot(t, vs.vert, color="tab:green", lw=0.6)
    ax2.set_ylabel("vertical hp (m/s^2)")
    ax2.set_xlabel("s")
    colors = {"harsh_brake": "tab:red", "harsh_accel": "tab:orange", "harsh_corner": "tab:purple",
              "pothole": "tab:brown", "speed_bump": "tab:olive", "crash": "k"}
    for e in msg_events:
        for ax in (ax0, ax1, ax2):
            ax.axvspan(e["t_s"], e["t_s"] + max(e["dur_s"], 0.3), color=colors.get(e["kind"], "grey"), alpha=0.3)
        ax0.text(e["t_s"], ax0.get_ylim()[1] * 0.9, e["kind"], fontsize=6, rotation=90, va="top")
    for e in trip.events:
        ax2.plot([e.t_start_s], [ax2.get_ylim()[0] * 0.9], marker="^", color=colors.get(e.kind, "grey"), ms=5)
    axm = fig.add_subplot(1, 2, 2)
    for kind, mk in (("pothole", "o"), ("speed_bump", "s"), ("rough", "D")):
        hs = [h for h in hazards if h.kind == kind]
        axm.scatter([h.x_m for h in hs], [h.y_m for h in hs], marker=mk, s=80, facecolors="none",
                    edgecolors="k", label=f"true {kind}")
    conf = hazard_map.confirmed()
    rest = [c for c in hazard_map.clusters if c not in conf]
    axm.scatter([c.x_m for c in rest], [c.y_m for c in rest], s=8, color="tab:grey", label="single-vehicle reports")
    axm.scatter([c.x_m for c in conf], [c.y_m for c in conf], s=30, color="tab:red",
                label="confirmed hazards (>= 2 vehicles)")
    ok = np.isfinite(trip.gnss[:, 1])
    x, y = latlon_to_xy(trip.gnss[ok, 1], trip.gnss[ok, 2])
    axm.plot(x, y, color="tab:blue", lw=1, label="this trip (GNSS)")
    axm.set_aspect("equal")
    axm.set_title("road-hazard map (m)")
    axm.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(out) / "vehicles_demo.png"
    fig.savefig(path, dpi=85)
    plt.close(fig)
    return path


def latent_check(models_dir: Path = Path("models/vehicles"), ridge: float = 5.0) -> dict:
    """How much of each latent driver parameter the units' messages show: a ridge fit of the simulator's
    aggression, distraction and risk on each vehicle's mean step vector (`large.step_vector` over its 24
    segments) on the full config's training fleet, R^2 on its held-out fleet (docs/vehicles.md)."""
    from vehicles import large
    from vehicles._dataset import load_fleet
    from vehicles.signals import simulate_fleet
    from vehicles.train import TrainConfig

    cfg = TrainConfig()

    def means(fleet) -> tuple[np.ndarray, list]:
        t = load_fleet(fleet, cfg.n_trips, Path(models_dir) / "cache", workers=cfg.workers)
        vs = {v.id: v for v in simulate_fleet(fleet)}
        seqs = large.sequences(t, np.zeros((len(t), 6), int), vs, cfg.large.horizon_trips, cfg.large.follow_up_trips)
        return np.array([s["x"].mean(0) for s in seqs]), [vs[s["vehicle"]] for s in seqs]

    (m, v), (mt, vt) = means(cfg.train_fleet), means(cfg.test_fleet)
    mu, sd = m.mean(0), m.std(0) + 1e-6
    a = np.c_[(m - mu) / sd, np.ones(len(m))]
    at = np.c_[(mt - mu) / sd, np.ones(len(mt))]
    out = {}
    for name in ("aggression", "distraction", "risk"):
        y, yt = np.array([getattr(x, name) for x in v]), np.array([getattr(x, name) for x in vt])
        w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ y)
        out[f"{name}_r2"] = round(float(1 - np.mean((at @ w - yt) ** 2) / np.var(yt)), 3)
    return out
