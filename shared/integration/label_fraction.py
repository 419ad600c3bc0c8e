"""The large model labels the fleet: few labelled subjects, many unlabelled windows, a cloud teacher.

The realistic case: only some subjects' windows carry ground truth (charted deteriorations, confirmed
faults, reported incidents); every device streams its windows to the cloud all the same. With a fraction
f of the training subjects labelled (f in 1, 5, 20, 100 %; whole subjects, chosen by a fixed seed, nested:
the 1 % subjects are among the 5 % ones), three models are compared on the held-out subjects:

* ``teacher``: the cloud's model, fitted on the labelled subjects ONLY. It sees what the cloud holds and
  the device does not: the subject's history of device vectors up to the window (the vector, two lagged
  vectors, the expanding mean, an exponential moving average), through gradient-boosted trees
  (scikit-learn's ``HistGradientBoostingClassifier``). It is not the domain's transformer: that one was
  trained on every training subject's labels, so its outputs would leak labels the fraction hides;
* ``distilled`` student: the domain's deployed MLP on the device vector, trained on EVERY training window
  with the teacher's soft labels (``distill.soft_targets``, ``distill._kd_loss``: alpha * CE on the hard
  label + (1 - alpha) * T^2 * KD) where the hard-label term is zero on the unlabelled windows;
* ``labelled_only`` student: the same MLP, same seed, cross-entropy on the labelled windows only
  (``distill.fit_student`` with no teacher).

Both students are converted to full int8 (``shared.tiny.int8``) and reported in float and int8. The
windows, labels and subjects come from the domain's ``distill_task`` (its teacher's probabilities are not
used); AUROC on held-out subjects, with a paired bootstrap over held-out subjects
(``distill.bootstrap_auroc``) for distilled - labelled_only. :func:`report_rows` gives one integration-report
row per fraction (strategy ``distill_labels_<pct>``), ``label_fraction-<domain>.json`` and a PNG curve.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared import domain as domains
from shared.integration import distill

FRACTIONS = (0.01, 0.05, 0.20, 1.00)
BASELINE = "labelled_only_student"


def strategy_name(fraction: float) -> str:
    """``distill_labels_<pct>`` (1 % -> ``distill_labels_1``)."""
    return f"distill_labels_{round(fraction * 100):d}"


@dataclass
class LabelConfig:
    """Fractions, teacher and student settings (``LabelConfig.quick()`` for tests)."""

    fractions: tuple[float, ...] = FRACTIONS
    student: distill.DistillConfig = field(default_factory=lambda: distill.DistillConfig(seeds=(0,)))
    teacher_iter: int = 200  #: boosting iterations of the teacher
    seed: int = 0  #: picks the labelled subjects and seeds the models
    int8: bool = True  #: convert the students to int8 and report that beside float

    def __post_init__(self) -> None:
        self.fractions = tuple(float(f) for f in self.fractions)
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise ValueError(f"LabelConfig.fractions: each must be in (0, 1], got {self.fractions!r}")
        if self.teacher_iter < 1:
            raise ValueError(f"LabelConfig.teacher_iter: must be >= 1, got {self.teacher_iter}")

    @classmethod
    def quick(cls) -> LabelConfig:
        return cls(student=distill.DistillConfig.quick(), teacher_iter=60)


def labelled_subjects(groups: np.ndarray, y: np.ndarray, train: np.ndarray, fractions: tuple[float, ...],
                      seed: int) -> dict[float, np.ndarray]:
    """Per fraction, the labelled training subjects: round(f * n) of them (at least 1), stratified so that
    subjects with an event and without keep their share (at least one with an event), nested across
    fractions (one seeded order per stratum, prefixes of it). Held-out subjects are never chosen."""
    groups = np.asarray(groups).astype(str)
    subs = np.unique(groups[train])
    with_event = np.array(sorted(set(groups[train & (np.asarray(y) == 1)])), dtype=str)
    without = np.setdiff1d(subs, with_event)
    rng = np.random.default_rng(seed)
    pos, neg = rng.permutation(with_event), rng.permutation(without)
    out: dict[float, np.ndarray] = {}
    for f in fractions:
        n = len(subs) if f >= 1.0 else max(1, round(f * len(subs)))
        n_pos = min(len(pos), max(1 if len(pos) else 0, round(n * len(pos) / len(subs))))
        n_neg = min(len(neg), n - n_pos)
        n_pos = min(len(pos), n - n_neg)
        out[f] = np.sort(np.concatenate([pos[:n_pos], neg[:n_neg]]))
    return out


def history_features(x: np.ndarray, groups: np.ndarray, ema: float = 0.2) -> np.ndarray:
    """What the cloud holds per window: the vector, the subject's vectors 1 and 3 windows before (the
    first repeated at the start), the expanding mean and an EMA of its vectors up to and including this
    window. Causal: nothing after the window. Windows of a subject are taken in array order (time)."""
    x = np.asarray(x, np.float64)
    groups = np.asarray(groups).astype(str)
    out = np.empty((len(x), 5 * x.shape[1]), np.float32)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        xs = x[rows]
        lag1 = np.vstack([xs[:1], xs[:-1]])
        lag3 = xs[np.maximum(np.arange(len(xs)) - 3, 0)]
        mean = np.cumsum(xs, axis=0) / np.arange(1, len(xs) + 1)[:, None]
        e = np.empty_like(xs)
        e[0] = xs[0]
        for t in range(1, len(xs)):
            e[t] = (1 - ema) * e[t - 1] + ema * xs[t]
        out[rows] = np.hstack([xs, lag1, lag3, mean, e])
    return out


def fit_teacher(h: np.ndarray, y: np.ndarray, cfg: LabelConfig) -> Any:
    """Gradient-boosted trees on history features of labelled windows; a constant prior if one class."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    y = np.asarray(y, int)
    if y.min() == y.max():
        return float(y[0])
    return HistGradientBoostingClassifier(max_iter=cfg.teacher_iter, learning_rate=0.1, max_leaf_nodes=31,
                                          l2_regularization=1.0, random_state=cfg.seed).fit(h, y)


def teacher_probs(model: Any, h: np.ndarray) -> np.ndarray:
    if isinstance(model, float):
        return np.full(len(h), model)
    return np.clip(model.predict_proba(h)[:, 1], 0.0, 1.0)


def fit_partial_student(x: np.ndarray, y: np.ndarray, labelled: np.ndarray, p_teacher: np.ndarray,
                        hidden: tuple[int, ...], cfg: distill.DistillConfig, seed: int) -> Any:
    """``distill.fit_student`` with the hard-label term zero on unlabelled windows (soft labels on all)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(seed)
    hard = np.eye(2, dtype=np.float32)[np.asarray(y, int)] * np.asarray(labelled, np.float32)[:, None]
    target = np.concatenate([hard, distill.soft_targets(p_teacher, cfg.temperature)], axis=1)
    net = distill._mlp(x.shape[1], hidden, "student")
    steps = cfg.epochs * int(np.ceil(len(x) / cfg.batch_size))
    sched = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=steps, alpha=0.05)
    net.compile(optimizer=keras.optimizers.Adam(sched), loss=distill._kd_loss(cfg.alpha, cfg.temperature))
    net.fit(x, target, epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=0, shuffle=True)
    probs = keras.Sequential([net, keras.layers.Softmax(name="probs")], name="risk_student")
    probs.build((None, x.shape[1]))
    return probs


def _labelled_only_cfg(cfg: distill.DistillConfig, n_all: int, n_lab: int) -> distill.DistillConfig:
    """As many optimiser steps as the distilled student gets (a few labelled windows, more epochs)."""
    epochs = int(np.clip(round(cfg.epochs * n_all / max(n_lab, 1)), cfg.epochs, 10 * cfg.epochs))
    return distill.DistillConfig(**{**asdict(cfg), "epochs": epochs})


def evaluate(task: distill.DistillTask, cfg: LabelConfig) -> dict[str, Any]:
    """Per fraction: teacher, distilled and labelled-only students (float, int8), paired bootstrap."""
    from shared.integration import rollout
    from shared.tiny.int8 import Int8Runner, to_int8_tflite

    tr, te = task.train, ~task.train
    h = history_features(task.x, task.groups)
    x_tr, y_tr, g_tr = task.x[tr], task.y[tr], task.groups[tr]
    x_te, y_te, g_te = task.x[te], task.y[te], task.groups[te]
    held_out = set(np.unique(g_te))
    rep = x_tr[np.random.default_rng(0).permutation(len(x_tr))[: cfg.student.representative_n]]
    seed = cfg.student.seeds[0]
    chosen = labelled_subjects(task.groups, task.y, tr, cfg.fractions, cfg.seed)
    per: list[dict[str, Any]] = []
    for f in cfg.fractions:
        lab = np.isin(g_tr, chosen[f])
        teacher_rows = np.flatnonzero(tr)[lab]
        fitted_on = set(np.unique(task.groups[teacher_rows]))
        if fitted_on & held_out:  # guards the invariant the report states
            raise RuntimeError(f"label_fraction: teacher would see held-out subjects {sorted(fitted_on & held_out)}")
        teacher = fit_teacher(h[teacher_rows], task.y[teacher_rows], cfg)
        p_tr, p_te = teacher_probs(teacher, h[tr]), teacher_probs(teacher, h[te])
        scores: dict[str, np.ndarray] = {"teacher": p_te}
        models = {"distilled": fit_partial_student(x_tr, y_tr, lab, p_tr, task.hidden, cfg.student, seed),
                  "labelled_only": distill.fit_student(x_tr[lab], y_tr[lab], None, task.hidden,
                                                       _labelled_only_cfg(cfg.student, len(x_tr), int(lab.sum())),
                                                       seed)}
        wire = None
        for name, model in models.items():
            scores[f"{name}_float"] = model.predict(x_te, batch_size=4096, verbose=0)[:, 1]
            if cfg.int8:
                blob = to_int8_tflite(model, rep)
                scores[f"{name}_int8"] = Int8Runner(blob).predict(x_te)[:, 1]
                if name == "distilled":
                    wire = rollout.update_bytes(task.domain, "d001", task.model_name, 2, blob)
        kind = "int8" if cfg.int8 else "float"
        pairs = tuple((f"distilled_{k}", f"labelled_only_{k}") for k in (("int8", "float") if cfg.int8 else ("float",)))
        boot = distill.bootstrap_auroc(y_te, g_te, scores, cfg.student.bootstrap, seed=cfg.seed, pairs=pairs)
        point = {k: distill._auroc(y_te, v) for k, v in scores.items()}
        d_key = f"distilled_{kind}-labelled_only_{kind}"
        diff = None if None in (point[f"distilled_{kind}"], point[f"labelled_only_{kind}"]) else \
            round(point[f"distilled_{kind}"] - point[f"labelled_only_{kind}"], 4)
        per.append({
            "fraction": f, "labelled_subjects": int(len(chosen[f])), "labelled_windows": int(lab.sum()),
            "labelled_positive_windows": int(y_tr[lab].sum()), "labelled_subject_ids": chosen[f].tolist(),
            "teacher_subjects": sorted(fitted_on), "teacher_constant": isinstance(teacher, float),
            "auroc": point, "diff": diff, "diff_kind": kind, "bootstrap": boot,
            "diff_ci95": [boot.get(d_key, {}).get("p2.5"), boot.get(d_key, {}).get("p97.5")],
            "share_resamples_distilled_better": boot.get(d_key, {}).get("share_a_better"),
            "update_message_bytes": wire,
        })
    return {"fractions": per, "train_subjects": int(len(np.unique(g_tr))), "test_subjects": int(len(held_out)),
            "windows_train": int(tr.sum()), "windows_test": int(te.sum()),
            "positive_rate_test": round(float(y_te.mean()), 4), "history_features": int(h.shape[1]),
            "config": {**asdict(cfg), "student": asdict(cfg.student)}}


def plot(domain: str, res: dict[str, Any], event: str, path: Path) -> Path:
    """Held-out AUROC against the labelled fraction: teacher, distilled, labelled-only (95 % bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.integration.report import save_plot

    fr = [p["fraction"] * 100 for p in res["fractions"]]
    kind = res["fractions"][0]["diff_kind"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("teacher", "teacher (cloud, labelled subjects only)"),
                       (f"distilled_{kind}", f"distilled student ({kind})"),
                       (f"labelled_only_{kind}", f"labelled-only student ({kind})")):
        mid = np.array([np.nan if p["auroc"][key] is None else p["auroc"][key] for p in res["fractions"]], float)
        b = [p["bootstrap"].get(key, {}) for p in res["fractions"]]
        lo = np.array([x.get("p2.5", np.nan) for x in b], float)
        hi = np.array([x.get("p97.5", np.nan) for x in b], float)
        ax.errorbar(fr, mid, yerr=[np.maximum(mid - lo, 0), np.maximum(hi - mid, 0)], marker="o", capsize=3,
                    label=label)
    ax.set_xscale("log")
    ax.set_xticks(fr, [f"{x:g} %" for x in fr])
    ax.set_xlabel("training subjects labelled")
    ax.set_ylabel(f"AUROC, {event} (held-out subjects)")
    ax.set_title(f"{domain}: the cloud labels the fleet")
    return save_plot(fig, ax, path)


def report_rows(domain: str, quick: bool, out_dir: Path, models_dir: Path | None = None,
                cfg: LabelConfig | None = None) -> list[dict[str, Any]]:
    """One row per labelled fraction (strategy ``distill_labels_<pct>``), a JSON and a PNG per domain."""
    cfg = cfg or (LabelConfig.quick() if quick else LabelConfig())
    if domains.get(domain).hooks.distill_task is None:
        print(f"distill_labels/{domain}: skipped (the domain declares no distill_task: no event windows per "
              "subject)", file=sys.stderr)
        return []
    task = distill.load_distill_task(domain, quick=quick, models_dir=models_dir)
    res = evaluate(task, cfg)
    dims = [task.x.shape[1], *task.hidden, 2]
    macs = int(sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True)))
    kind = "int8" if cfg.int8 else "float"
    rows = []
    for p in res["fractions"]:
        a, b = p["bootstrap"], p["auroc"]
        rows.append({
            "strategy": strategy_name(p["fraction"]), "domain": domain,
            "metric": f"auroc_{task.event.replace(' ', '_')}_{kind}",
            "value": b[f"distilled_{kind}"], "baseline": BASELINE, "baseline_value": b[f"labelled_only_{kind}"],
            "subjects": res["test_subjects"], "bytes_on_wire": p["update_message_bytes"],
            "device_macs_per_inference": macs,
            "label_fraction": p["fraction"], "labelled_subjects": p["labelled_subjects"],
            "train_subjects": res["train_subjects"], "labelled_windows": p["labelled_windows"],
            "windows_train": res["windows_train"], "teacher": "history-gbt (labelled subjects only)",
            "teacher_value": b["teacher"], "value_float": b["distilled_float"],
            "baseline_value_float": b["labelled_only_float"], "diff": p["diff"], "diff_ci95": p["diff_ci95"],
            "share_resamples_distilled_better": p["share_resamples_distilled_better"],
            "value_ci95": [a.get(f"distilled_{kind}", {}).get("p2.5"), a.get(f"distilled_{kind}", {}).get("p97.5")],
            "baseline_ci95": [a.get(f"labelled_only_{kind}", {}).get("p2.5"),
                              a.get(f"labelled_only_{kind}", {}).get("p97.5")],
            "teacher_ci95": [a.get("teacher", {}).get("p2.5"), a.get("teacher", {}).get("p97.5")],
            "quick": quick,
        })
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"label_fraction-{domain}.json").write_text(
        json.dumps({"rows": rows, "result": res, "event": task.event}, indent=1, default=float) + "\n")
    plot(domain, res, task.event, out_dir / f"label_fraction-{domain}.png")
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.integration.label_fraction DOMAINS [--quick]``: rows merged into the report."""
    import argparse

    from shared.integration.report import DEFAULT_OUT, format_table, merge_rows

    ap = argparse.ArgumentParser(prog="python -m shared.integration.label_fraction",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("domains", help="comma-separated domains with a distill_task")
    ap.add_argument("--quick", action="store_true", help="quick models, few epochs")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for dom in args.domains.split(","):
        got = report_rows(dom, args.quick, args.out)
        merge_rows(got, args.out)
        rows += got
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
