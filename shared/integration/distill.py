"""Distillation from the large model: the cloud transformer teaches a tiny int8 student on the device.

The teacher is a domain's cloud transformer (healthcare's deterioration-risk model, industrial_iot's
failure-risk model). It reads a subject's whole message history (and, in healthcare, the nurse charts);
its output at window t is the probability of the event (deterioration within 6 h, functional failure
within 7 days) given everything up to t. The student is an MLP with the domain's deployed hidden widths
that sees ONLY the device's own input vector of that window (``features.to_vector``, what the tiny
classifier sees) and outputs two classes (no event, event); it is converted to full int8, checked
against the device budget and compiled to C, so the device keeps an event estimate of its own while
the cloud is unreachable.

A domain provides ``distill_task(quick: bool = False, models_dir=None) -> DistillTask``
(``DomainHooks.distill_task``): per window, the device input, the teacher's probability, the ground
truth and the subject, with ``train`` marking the subjects the teacher was trained on. Students train
on those subjects; every figure is measured on the teacher's held-out subjects (split by subject).

Two students of the same architecture, same data, same seed:

* ``distilled``: loss = alpha * CE(y, s) + (1 - alpha) * T^2 * CE(q_T, softmax(s / T)), with
  q_T = (1 - sigmoid(logit(p_teacher) / T), sigmoid(logit(p_teacher) / T)) (Hinton et al. 2015);
* ``hard_label_student``: alpha = 1 (cross-entropy on the ground truth only).

:func:`evaluate` reports AUROC of the teacher, of both students in float and int8, and their spread over
subjects by a bootstrap over held-out subjects (paired: the same resampled subjects for every model).
:func:`report_rows` gives the integration report's row (``make integration-report --strategies distill``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared import domain as domains
from shared.runtime.metrics import auroc

STRATEGY = "distill"
BASELINE = "hard_label_student"


@dataclass
class DistillTask:
    """Per-window arrays of one domain for distillation (n windows).

    ``x`` (n, d) float32 device inputs; ``teacher`` (n,) the transformer's event probability at that
    window; ``y`` (n,) 0/1 ground truth; ``groups`` (n,) subject ids; ``train`` (n,) bool, True for the
    subjects the teacher was trained on (the rest are held out); ``hidden`` the deployed MLP widths.
    """

    domain: str
    x: np.ndarray
    teacher: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    train: np.ndarray
    hidden: tuple[int, ...]
    model_name: str  #: the student's model id without version (e.g. "hc-risk-tiny")
    event: str  #: what the positive class means ("deterioration within 6 h")
    teacher_id: str  #: the teacher's model id
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float32)
        self.teacher = np.asarray(self.teacher, dtype=np.float64)
        self.y = np.asarray(self.y).astype(np.int64)
        self.groups = np.asarray(self.groups).astype(str)
        self.train = np.asarray(self.train, dtype=bool)
        n = len(self.x)
        if self.x.ndim != 2 or n == 0 or any(len(a) != n for a in (self.teacher, self.y, self.groups, self.train)):
            raise ValueError(f"DistillTask({self.domain}): need x (n, d), teacher, y, groups, train (n,), n >= 1; got "
                             f"{self.x.shape}, {self.teacher.shape}, {self.y.shape}, {self.groups.shape}, "
                             f"{self.train.shape}")
        if not np.all(np.isfinite(self.x)):
            raise ValueError(f"DistillTask({self.domain}).x: {int((~np.isfinite(self.x)).sum())} non-finite values")
        if not np.all((self.teacher >= 0) & (self.teacher <= 1)):
            raise ValueError(f"DistillTask({self.domain}).teacher: probabilities must lie in [0, 1]")
        if not np.isin(self.y, (0, 1)).all():
            raise ValueError(f"DistillTask({self.domain}).y: must be 0/1")
        if not self.train.any() or self.train.all():
            raise ValueError(f"DistillTask({self.domain}).train: need training and held-out windows")
        both = set(self.groups[self.train]) & set(self.groups[~self.train])
        if both:
            raise ValueError(f"DistillTask({self.domain}): subjects on both sides: {sorted(both)[:5]}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"DistillTask({self.domain}).hidden: need widths >= 1, got {self.hidden!r}")


@dataclass
class DistillConfig:
    """Student training settings (defaults: the full run; ``DistillConfig.quick()`` for tests)."""

    temperature: float = 2.0  #: T: softens the teacher's and the student's logits in the KD term
    alpha: float = 0.1  #: weight of the hard-label loss in the distilled student (1 - alpha on the teacher)
    epochs: int = 30  #: training epochs (both students)
    batch_size: int = 256  #: samples per step
    lr: float = 3e-3  #: Adam learning rate (cosine decay to 5 %)
    seeds: tuple[int, ...] = (0, 1, 2)  #: one student pair per seed; the reported model is seed 0's
    bootstrap: int = 500  #: bootstrap resamples of held-out subjects
    representative_n: int = 1000  #: training windows that calibrate the int8 ranges

    def __post_init__(self) -> None:
        self.seeds = tuple(int(s) for s in self.seeds)
        checks = {"temperature": self.temperature > 0, "alpha": 0.0 <= self.alpha < 1.0, "epochs": self.epochs >= 1,
                  "batch_size": self.batch_size >= 1, "lr": self.lr > 0, "seeds": len(self.seeds) >= 1,
                  "bootstrap": self.bootstrap >= 10, "representative_n": self.representative_n >= 1}
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"DistillConfig.{key}: invalid value {getattr(self, key)!r}")

    @classmethod
    def quick(cls) -> DistillConfig:
        return cls(epochs=4, seeds=(0,), bootstrap=50, representative_n=200)


def load_distill_task(domain: str, quick: bool = False, models_dir: Path | None = None) -> DistillTask:
    """The domain's :class:`DistillTask` (``DomainHooks.distill_task``); trains its models if needed."""
    hooks = domains.get(domain).hooks
    if hooks.distill_task is None:
        raise ValueError(f"domain {domain!r} offers no distill_task (its teacher's outputs per window); "
                         "distillation needs one")
    task = hooks.distill_task(quick=quick, models_dir=models_dir)
    if not isinstance(task, DistillTask):
        raise TypeError(f"{domain}: distill_task returned {type(task).__name__}, expected DistillTask")
    return task


def soft_targets(p_teacher: np.ndarray, temperature: float) -> np.ndarray:
    """(n, 2) teacher distribution at temperature T from event probabilities (n,)."""
    p = np.clip(np.asarray(p_teacher, dtype=np.float64), 1e-6, 1 - 1e-6)
    q = 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))
    return np.stack([1 - q, q], axis=1).astype(np.float32)


def _mlp(n_in: int, hidden: tuple[int, ...], name: str) -> Any:
    import keras

    inp = keras.Input((n_in,), name="features")
    h = inp
    for i, width in enumerate(hidden):
        h = keras.layers.Dense(width, activation="relu", name=f"{name}_dense{i}")(h)
    return keras.Model(inp, keras.layers.Dense(2, name=f"{name}_logits")(h), name=name)


def _kd_loss(alpha: float, temperature: float) -> Any:
    import keras

    def loss(target: Any, logits: Any) -> Any:
        hard, soft = target[:, :2], target[:, 2:]
        ce = keras.losses.categorical_crossentropy(hard, logits, from_logits=True)
        if alpha >= 1.0:
            return ce
        kd = keras.losses.categorical_crossentropy(soft, logits / temperature, from_logits=True)
        return alpha * ce + (1.0 - alpha) * temperature**2 * kd

    return loss


def fit_student(x: np.ndarray, y: np.ndarray, p_teacher: np.ndarray | None, hidden: tuple[int, ...],
                cfg: DistillConfig, seed: int) -> Any:
    """A Keras student (softmax over no-event / event). ``p_teacher`` None: hard labels only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(seed)
    alpha = 1.0 if p_teacher is None else cfg.alpha
    soft = np.zeros((len(x), 2), np.float32) if p_teacher is None else soft_targets(p_teacher, cfg.temperature)
    target = np.concatenate([np.eye(2, dtype=np.float32)[np.asarray(y, int)], soft], axis=1)
    net = _mlp(x.shape[1], hidden, "student")
    steps = cfg.epochs * int(np.ceil(len(x) / cfg.batch_size))
    sched = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=steps, alpha=0.05)
    net.compile(optimizer=keras.optimizers.Adam(sched), loss=_kd_loss(alpha, cfg.temperature))
    net.fit(x, target, epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=0, shuffle=True)
    probs = keras.Sequential([net, keras.layers.Softmax(name="probs")], name="risk_student")
    probs.build((None, x.shape[1]))
    return probs


def bootstrap_auroc(y: np.ndarray, groups: np.ndarray, scores: dict[str, np.ndarray], n: int, seed: int = 0,
                    pairs: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Paired bootstrap over subjects: for each score its 2.5/50/97.5 % AUROC; for each pair (a, b) the
    same for AUROC(a) - AUROC(b) and the share of resamples where a beats b."""
    groups = np.asarray(groups).astype(str)
    subjects, inverse = np.unique(groups, return_inverse=True)
    rows = [np.flatnonzero(inverse == k) for k in range(len(subjects))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in scores}
    for _ in range(n):
        idx = np.concatenate([rows[k] for k in rng.integers(0, len(subjects), len(subjects))])
        if y[idx].min() == y[idx].max():
            continue
        for k, s in scores.items():
            draws[k].append(auroc(y[idx], s[idx]))

    def summary(v: np.ndarray) -> dict[str, float | int]:
        lo, mid, hi = np.percentile(v, [2.5, 50, 97.5])
        return {"p2.5": round(float(lo), 4), "median": round(float(mid), 4), "p97.5": round(float(hi), 4),
                "n": int(len(v))}

    out: dict[str, Any] = {k: summary(np.array(v)) for k, v in draws.items() if v}
    for a, b in pairs:
        if draws[a]:
            d = np.array(draws[a]) - np.array(draws[b])
            out[f"{a}-{b}"] = {**summary(d), "share_a_better": round(float((d > 0).mean()), 4)}
    return out


def _auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    v = auroc(y, s)
    return None if np.isnan(v) else round(float(v), 4)


def evaluate(task: DistillTask, cfg: DistillConfig, out_dir: Path | None = None) -> dict[str, Any]:
    """Both students per seed, int8, budget, C; AUROC on held-out subjects with bootstrap spreads.

    With ``out_dir``, writes ``distill-<domain>.tflite`` (the distilled int8 student of seed 0) there.
    """
    from shared.integration import rollout
    from shared.tiny.int8 import Int8Runner, budget_check, to_int8_tflite

    tr, te = task.train, ~task.train
    x_tr, y_tr, p_tr = task.x[tr], task.y[tr], task.teacher[tr]
    x_te, y_te, g_te = task.x[te], task.y[te], task.groups[te]
    rep = x_tr[np.random.default_rng(0).permutation(len(x_tr))[: cfg.representative_n]]
    per_seed: list[dict[str, Any]] = []
    scores: dict[str, np.ndarray] = {"teacher": task.teacher[te]}
    blobs: dict[str, bytes] = {}
    for seed in cfg.seeds:
        got: dict[str, Any] = {"seed": seed}
        for name, soft in (("distilled", p_tr), ("hard", None)):
            model = fit_student(x_tr, y_tr, soft, task.hidden, cfg, seed)
            p_float = model.predict(x_te, batch_size=4096, verbose=0)[:, 1]
            blob = to_int8_tflite(model, rep)
            p_int8 = Int8Runner(blob).predict(x_te)[:, 1]
            got[f"{name}_float"], got[f"{name}_int8"] = _auroc(y_te, p_float), _auroc(y_te, p_int8)
            got[f"{name}_int8_teacher_corr"] = round(float(np.corrcoef(p_int8, task.teacher[te])[0, 1]), 4) \
                if np.std(p_int8) > 0 else None
            if seed == cfg.seeds[0]:
                scores[f"{name}_float"], scores[f"{name}_int8"] = p_float, p_int8
                blobs[name] = blob
        per_seed.append(got)

    budget = budget_check(blobs["distilled"])
    with tempfile.TemporaryDirectory() as tmp:
        c_name = task.model_name.replace("-", "_").replace(".", "_")
        compiled = rollout.compile_c(blobs["distilled"], c_name, Path(tmp) / "c", labels=["no_event", "event"],
                                     model_id=f"{task.model_name}@1")
        wire = rollout.update_bytes(task.domain, "d001", task.model_name, 2, blobs["distilled"])
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / f"distill-{task.domain}.tflite").write_bytes(blobs["distilled"])

    boot = bootstrap_auroc(y_te, g_te, scores, cfg.bootstrap, pairs=(("distilled_int8", "hard_int8"),
                                                                        ("distilled_float", "hard_float")))
    by_seed = {k: [s[k] for s in per_seed] for k in per_seed[0] if k != "seed"}
    return {
        "teacher": _auroc(y_te, task.teacher[te]),
        **{k: _auroc(y_te, v) for k, v in scores.items() if k != "teacher"},
        "seeds": per_seed,
        "seed_mean": {k: round(float(np.mean([v for v in vals if v is not None])), 4) for k, vals in by_seed.items()
                      if any(v is not None for v in vals)},
        "bootstrap": boot,
        "subjects_test": int(len(np.unique(g_te))), "subjects_train": int(len(np.unique(task.groups[tr]))),
        "windows_test": int(te.sum()), "windows_train": int(tr.sum()),
        "positive_rate_test": round(float(y_te.mean()), 4), "positive_rate_train": round(float(y_tr.mean()), 4),
        "events_test_subjects": int(len(np.unique(g_te[y_te == 1]))),
        "tflite_bytes": len(blobs["distilled"]), "weights_bytes": budget["weights_bytes"],
        "arena_bytes_estimate": budget["arena_bytes_estimate"], "ops": sorted(set(budget["ops"])),
        "c_arena_bytes": compiled.model.arena_bytes, "c_const_bytes": compiled.model.const_bytes,
        "c_compiled_with": compiled.compiler, "macs": compiled.model.macs,
        "update_message_bytes": wire, "config": asdict(cfg),
    }


def report_rows(domain: str, quick: bool, out_dir: Path, models_dir: Path | None = None,
                cfg: DistillConfig | None = None) -> list[dict[str, Any]]:
    """One integration-report row: the distilled int8 student's AUROC beside the hard-label student's."""
    cfg = cfg or (DistillConfig.quick() if quick else DistillConfig())
    if domains.get(domain).hooks.distill_task is None:
        import sys

        print(f"distill/{domain}: skipped (the domain declares no distill_task: no teacher outputs per window)",
              file=sys.stderr)
        return []
    task = load_distill_task(domain, quick=quick, models_dir=models_dir)
    res = evaluate(task, cfg, out_dir)
    boot = res["bootstrap"]
    row = {
        "strategy": STRATEGY, "domain": domain, "metric": f"auroc_{task.event.replace(' ', '_')}_int8",
        "value": res["distilled_int8"], "baseline": BASELINE, "baseline_value": res["hard_int8"],
        "subjects": res["subjects_test"], "bytes_on_wire": res["update_message_bytes"],
        "device_macs_per_inference": res["macs"],
        "teacher": task.teacher_id, "teacher_value": res["teacher"],
        "value_float": res["distilled_float"], "baseline_value_float": res["hard_float"],
        "value_seed_mean": res["seed_mean"].get("distilled_int8"),
        "baseline_value_seed_mean": res["seed_mean"].get("hard_int8"),
        "value_ci95": [boot.get("distilled_int8", {}).get("p2.5"), boot.get("distilled_int8", {}).get("p97.5")],
        "baseline_ci95": [boot.get("hard_int8", {}).get("p2.5"), boot.get("hard_int8", {}).get("p97.5")],
        "teacher_ci95": [boot.get("teacher", {}).get("p2.5"), boot.get("teacher", {}).get("p97.5")],
        "diff_ci95": [boot.get("distilled_int8-hard_int8", {}).get("p2.5"),
                      boot.get("distilled_int8-hard_int8", {}).get("p97.5")],
        "share_resamples_distilled_better": boot.get("distilled_int8-hard_int8", {}).get("share_a_better"),
        "student_tflite_bytes": res["tflite_bytes"], "student_weights_bytes": res["weights_bytes"],
        "student_arena_bytes": res["c_arena_bytes"], "compiled_c": res["c_compiled_with"],
        "windows_test": res["windows_test"], "positive_rate_test": res["positive_rate_test"],
        "temperature": cfg.temperature, "alpha": cfg.alpha, "quick": quick,
    }
    detail = Path(out_dir) / f"distill-{domain}.json"
    detail.parent.mkdir(parents=True, exist_ok=True)
    detail.write_text(json.dumps({"row": row, "result": res, "event": task.event, "extra": task.extra},
                                 indent=1, default=float) + "\n")
    return [row]


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.integration.distill DOMAIN [--quick]``: the distill rows of one domain, printed."""
    import argparse

    from shared.integration.report import DEFAULT_OUT, format_table, merge_rows

    ap = argparse.ArgumentParser(prog="python -m shared.integration.distill", description=__doc__.splitlines()[0])
    ap.add_argument("domains", help="comma-separated domains with a distill_task ref")
    ap.add_argument("--quick", action="store_true", help="quick models and few epochs")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    rows = []
    for dom in args.domains.split(","):
        rows += report_rows(dom, args.quick, args.out)
        merge_rows(rows[-1:], args.out)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
