"""Private: the metaverse_eeg demo's evaluation against the simulated users' true affect, and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metaverse_eeg.signals import KNOBS, ZONE_A


def estimate_accuracy(truth: dict[tuple[str, int], tuple[float, float]], estimates: dict[tuple[str, int], tuple]
                      ) -> dict[str, float | None]:
    """Live accuracy of the headsets' published estimates (P > 0.5) against the users' true affect."""
    keys = [k for k in truth if k in estimates]
    if not keys:
        return {"live_valence_acc": None, "live_arousal_acc": None, "live_quadrant_acc": None}
    tv = np.array([truth[k][0] > 0 for k in keys])
    ta = np.array([truth[k][1] > 0 for k in keys])
    ev = np.array([estimates[k][0] > 0.5 for k in keys])
    ea = np.array([estimates[k][1] > 0.5 for k in keys])
    return {"live_valence_acc": round(float((tv == ev).mean()), 4),
            "live_arousal_acc": round(float((ta == ea).mean()), 4),
            "live_quadrant_acc": round(float(((tv == ev) & (ta == ea)).mean()), 4), "live_windows": len(keys)}


def plot_user(user_id: str, times_s: np.ndarray, affect: np.ndarray, estimates: Sequence[tuple[float, float] | None],
              scenes: Sequence[dict], actions: Sequence[str], out: Path) -> Path:
    """Affect trajectory with the target zone, the headset's estimates, the scene knobs and the agent's actions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_min = np.asarray(times_s) / 60.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, height_ratios=[3, 2])
    ax1.axhspan(-ZONE_A, ZONE_A, color="tab:green", alpha=0.08, label=f"arousal zone |a| < {ZONE_A}")
    ax1.plot(t_min, affect[:, 0], color="tab:blue", lw=2, label="valence (true)")
    ax1.plot(t_min, affect[:, 1], color="tab:red", lw=2, label="arousal (true)")
    est = np.array([e if e is not None else (np.nan, np.nan) for e in estimates], dtype=float)
    ax1.plot(t_min, 2 * est[:, 0] - 1, ".", color="tab:blue", alpha=0.4, ms=4, label="headset 2P(high valence)-1")
    ax1.plot(t_min, 2 * est[:, 1] - 1, ".", color="tab:red", alpha=0.4, ms=4, label="headset 2P(high arousal)-1")
    inside = (affect[:, 0] > 0) & (np.abs(affect[:, 1]) < ZONE_A)
    ax1.fill_between(t_min, -1.05, -0.95, where=inside, color="tab:green", step="mid", label="in target zone")
    for k, s in enumerate(scenes):
        if s.get("event") in ("threat", "lull") and (k == 0 or scenes[k - 1].get("event") != s.get("event")):
            ax1.axvline(t_min[k], color="k", ls=":", lw=1)
            ax1.text(t_min[k], 0.95, s["event"], fontsize=8, rotation=90, va="top")
    ax1.set_ylim(-1.1, 1.1)
    ax1.set_ylabel("affect")
    ax1.legend(loc="upper right", fontsize=7, ncol=2)
    ax1.set_title(f"metaverse_eeg demo: user {user_id} (agent in the loop; zone: valence > 0, |arousal| < {ZONE_A})")
    for i, knob in enumerate(KNOBS):
        ax2.step(t_min, [s.get(knob, np.nan) + 1.2 * i for s in scenes], where="post", label=knob)
    changed = [k for k, a in enumerate(actions) if a != "none"]
    for k in changed:
        ax2.annotate(actions[k], (t_min[k], 6.0), fontsize=6, rotation=90, va="bottom")
    ax2.plot(t_min[changed], np.full(len(changed), 5.9), "v", color="k", ms=4, label="agent action")
    ax2.set_ylim(-0.2, 8.0)
    ax2.set_yticks([0.5 + 1.2 * i for i in range(len(KNOBS))], KNOBS)
    ax2.set_xlabel("session time (min)")
    fig.tight_layout()
    path = Path(out) / "user.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
