"""Transfer learning: adapt the population tiny model to one NEW person or machine from k labels per class.

Only the last layer changes (the backbone, i.e. every layer before it, stays as deployed), so the
update that travels is the last layer's int8 weights and bias (:func:`_mlp.changed_weight_bytes`
measures it on the real flatbuffers). Where it is computed: in the cloud, from the k x classes labelled
windows the device uploads (``upload_bytes``, int8 inputs + a label byte each); the fit itself is small
enough for the device too (``head_fit_macs``), but the int8 conversion runs in the cloud.

Protocol (per domain, deterministic for a seed):

* the population model (the domain's deployed MLP widths) is trained on population subjects; the
  new subjects are held out by subject (:func:`split_subjects`), or, where a domain's tiny task has too
  few windows per subject for k = 20 (metaverse_eeg: 50 per user), simulated afresh by
  the domain's ``new_subjects`` ref (other people: a seed no training run uses);
* per new subject and class it HAS, an adaptation pool of ``min(max k, n_class // 2)`` windows is drawn
  (at least half of each class stays for evaluation); the k-label set takes the first ``min(k, pool)``;
  evaluation windows are the subject's windows outside the pool, the same for every k and method;
* subjects with fewer than two classes are not adapted (a one-class head only learns that class;
  industrial machines often show one fault or none) and are counted in ``excluded_one_class``;
* methods: ``population`` (k = 0, no change), ``last_layer`` (head initialised from the population
  head, Adam with an L2 pull towards it, samples weighted so the classes keep the population's prior),
  ``scratch`` (the whole MLP from random weights on the same k labels, same weighting);
* per subject: accuracy and macro-F1 (over the classes in its evaluation windows); mean, std and
  quartiles over subjects; the adapted model at k = ``int8_k`` also as full int8 (``Int8Runner``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared import domain as domains
from shared.integration import _mlp
from shared.integration.report import save_plot
from shared.integration.task import TinyTask, load_task, split_subjects

METHODS = ("population", "last_layer", "scratch")


@dataclass(frozen=True)
class TransferConfig:
    ks: tuple[int, ...] = (0, 5, 10, 20)
    int8_k: int = 10  #: k whose adapted models are also converted to int8 (and the headline row's k)
    test_fraction: float = 0.5  #: share of the task's subjects held out as new subjects
    seed: int = 0
    pop_epochs_max: int = 40
    pop_samples: int = 300_000  #: population training sees about this many windows (epochs = this / n)
    pop_batch: int = 128
    head_steps: int = 150  #: full-batch Adam steps on the k-label set (last layer)
    head_lr: float = 0.01
    head_anchor_l2: float = 0.1
    prior_weighting: bool = True  #: weight k-label samples to the population's class mix
    scratch_steps: int = 300
    scratch_lr: float = 0.01
    scratch_weight_decay: float = 1e-3
    max_int8_subjects: int = 16
    max_subjects: int = 48  #: new subjects evaluated at most (the first, in a seeded order)
    new_subjects: int = 32  #: people simulated where the domain declares a new_subjects ref
    new_windows: int = 160  #: windows per simulated new person

    def __post_init__(self) -> None:
        if not self.ks or self.ks[0] != 0 or list(self.ks) != sorted(set(self.ks)):
            raise ValueError(f"TransferConfig.ks: must start at 0 and increase, got {self.ks}")
        if self.int8_k not in self.ks:
            raise ValueError(f"TransferConfig.int8_k={self.int8_k} must be one of ks={self.ks}")

    @classmethod
    def quick(cls) -> TransferConfig:
        return cls(pop_epochs_max=60, pop_samples=40_000, head_steps=100, scratch_steps=150, max_int8_subjects=2,
                   max_subjects=8, new_subjects=6, new_windows=120)


NEW_SUBJECT_SEED = 9_001


def pop_epochs(cfg: TransferConfig, n: int) -> int:
    return int(max(3, min(cfg.pop_epochs_max, round(cfg.pop_samples / max(n, 1)))))


def train_population(task: TinyTask, cfg: TransferConfig) -> _mlp.MLP:
    init = _mlp.init_mlp(task.n_features, task.hidden, task.n_classes, cfg.seed)
    return _mlp.fit(init, task.x, task.y, epochs=pop_epochs(cfg, len(task.x)), batch_size=cfg.pop_batch,
                    seed=cfg.seed)


def prior_weights(y: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Per-sample weights that give the labelled set the class mix ``prior`` (restricted to its classes)."""
    counts = np.bincount(y, minlength=len(prior)).astype(float)
    return (prior[y] / counts[y]).astype(np.float32)


@dataclass
class SubjectSplit:
    subject: str
    eval_idx: np.ndarray  #: windows (indices into the new-subject task) used for evaluation
    pools: dict[int, np.ndarray]  #: class -> adaptation windows in draw order

    def adapt_idx(self, k: int) -> np.ndarray:
        parts = [p[:k] for p in self.pools.values()]
        return np.concatenate(parts) if parts else np.zeros(0, int)


def subject_split(task: TinyTask, subject: str, k_max: int, seed: int) -> SubjectSplit | None:
    """The adaptation pools and evaluation windows of one subject; None when it has fewer than 2 classes."""
    idx = np.flatnonzero(task.groups == subject)
    if len(idx) == 0:
        raise ValueError(f"subject_split: subject {subject!r} has no windows")
    rng = np.random.default_rng([seed, int.from_bytes(subject.encode()[-8:], "little")])
    pools: dict[int, np.ndarray] = {}
    for c in np.unique(task.y[idx]):
        ci = rng.permutation(idx[task.y[idx] == c])
        take = min(k_max, len(ci) // 2)
        if take >= 1:
            pools[int(c)] = ci[:take]
    if len(pools) < 2:
        return None
    used = np.concatenate(list(pools.values()))
    return SubjectSplit(subject, np.setdiff1d(idx, used), pools)


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, float)
    if len(v) == 0:
        return {"mean": float("nan"), "std": float("nan"), "p25": float("nan"), "p50": float("nan"),
                "p75": float("nan"), "n": 0}
    p25, p50, p75 = np.percentile(v, [25, 50, 75])
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4), "p25": round(float(p25), 4),
            "p50": round(float(p50), 4), "p75": round(float(p75), 4), "n": len(v)}


def run_transfer(domain: str, quick: bool = False, cfg: TransferConfig | None = None,
                 task: TinyTask | None = None,
                 int8: bool = True) -> dict[str, Any]:
    """The transfer-learning experiment of one domain -> curves per method with spreads over subjects."""
    cfg = cfg or (TransferConfig.quick() if quick else TransferConfig())
    task = task if task is not None else load_task(domain, quick)
    if domain in domains.names() and domains.get(domain).hooks.new_subjects is not None:
        pop_task = task
        new = domains.get(domain).hooks.new_subjects(cfg.new_subjects, cfg.new_windows, NEW_SUBJECT_SEED)
        if new.n_features != task.n_features or new.labels != task.labels:
            raise ValueError(f"{domain}: new subjects' features/labels do not match the tiny task's")
        if set(new.subjects()) & set(task.subjects()):
            raise ValueError(f"{domain}: a simulated new subject is also a population subject")
        new_source = f"{cfg.new_subjects} freshly simulated people, {cfg.new_windows} windows each (seed " \
                     f"{NEW_SUBJECT_SEED})"
    else:
        train, test = split_subjects(task.groups, cfg.test_fraction, cfg.seed)
        pop_task, new = task.take(train), task.take(test)
        new_source = f"held-out subjects of the tiny task ({cfg.test_fraction:.0%})"
    pop = train_population(pop_task, cfg)
    prior = np.bincount(pop_task.y, minlength=task.n_classes) / len(pop_task.y)
    k_max = max(cfg.ks)
    order = np.random.default_rng(cfg.seed).permutation(new.subjects())
    splits, one_class = [], 0
    for s in order:
        sp = subject_split(new, str(s), k_max, cfg.seed)
        if sp is None:
            one_class += 1
        elif len(splits) < cfg.max_subjects:
            splits.append(sp)
    if not splits:
        raise ValueError(f"{domain}: no new subject has two classes with >= 2 windows each; nothing to adapt")

    per: dict[str, dict[int, dict[str, list[float]]]] = {
        m: {k: {"acc": [], "f1": [], "labels": []} for k in cfg.ks} for m in METHODS}
    rep = pop_task.x[np.random.default_rng(cfg.seed).permutation(len(pop_task.x))[:500]]
    int8_acc: list[float] = []
    int8_pop_acc: list[float] = []
    int8_float_agree: list[float] = []
    head_bytes: list[int] = []
    pop_blob = _mlp.to_int8(pop, rep) if int8 else b""
    feats = pop.features(new.x)
    for si, sp in enumerate(splits):
        xe, ye = new.x[sp.eval_idx], new.y[sp.eval_idx]
        classes = np.unique(ye)
        pop_pred = pop.predict(xe)
        for k in cfg.ks:
            ai = sp.adapt_idx(k)
            preds: dict[str, np.ndarray | None] = {"population": pop_pred, "last_layer": pop_pred, "scratch": None}
            if k > 0:
                w = prior_weights(new.y[ai], prior) if cfg.prior_weighting else None
                hw, hb = _mlp.fit_head(pop.weights[-1], pop.biases[-1], feats[ai], new.y[ai], epochs=cfg.head_steps,
                                       lr=cfg.head_lr, batch_size=len(ai), seed=cfg.seed + si,
                                       anchor_l2=cfg.head_anchor_l2, sample_weight=w)
                adapted = pop.with_head(hw, hb)
                preds["last_layer"] = adapted.predict(xe)
                scratch = _mlp.fit(_mlp.init_mlp(task.n_features, task.hidden, task.n_classes, cfg.seed + 7919 + si),
                                   new.x[ai], new.y[ai], epochs=cfg.scratch_steps, lr=cfg.scratch_lr,
                                   batch_size=len(ai), seed=cfg.seed + si, weight_decay=cfg.scratch_weight_decay,
                                   sample_weight=w)
                preds["scratch"] = scratch.predict(xe)
                if int8 and k == cfg.int8_k and si < cfg.max_int8_subjects:
                    blob = _mlp.to_int8(adapted, rep)
                    p8 = _mlp.int8_probs(blob, xe).argmax(1)
                    int8_acc.append(_mlp.accuracy(ye, p8))
                    int8_float_agree.append(float((p8 == preds["last_layer"]).mean()))
                    int8_pop_acc.append(_mlp.accuracy(ye, _mlp.int8_probs(pop_blob, xe).argmax(1)))
                    head_bytes.append(_mlp.changed_weight_bytes(pop_blob, blob))
            for m, p in preds.items():
                if p is None:
                    continue
                per[m][k]["acc"].append(_mlp.accuracy(ye, p))
                per[m][k]["f1"].append(_mlp.macro_f1(ye, p, classes))
                per[m][k]["labels"].append(float(len(ai)))

    curves = {m: {str(k): {"acc": _stats(v["acc"]), "macro_f1": _stats(v["f1"]),
                           "labels_mean": round(float(np.mean(v["labels"])), 2) if v["labels"] else 0.0}
                  for k, v in per[m].items() if v["acc"]} for m in METHODS}
    d, c = pop.weights[-1].shape
    n_adapt = float(np.mean(per["last_layer"][cfg.int8_k]["labels"]))
    return {
        "domain": domain, "quick": quick, "subjects": len(splits), "excluded_one_class": one_class,
        "population_subjects": len(pop_task.subjects()), "new_subjects_source": new_source,
        "eval_windows_per_subject": round(float(np.mean([len(s.eval_idx) for s in splits])), 1),
        "curves": curves, "int8_k": cfg.int8_k,
        "int8": {"acc": _stats(int8_acc), "population_acc": _stats(int8_pop_acc),
                 "int8_float_agreement": _stats(int8_float_agree), "subjects": len(int8_acc)},
        "head_bytes_int8": int(np.median(head_bytes)) if head_bytes else int(d * c + 4 * c),
        "head_bytes_measured": bool(head_bytes),
        "upload_bytes": int(round(n_adapt * (task.n_features + 1))),
        "head_fit_macs": int(round(cfg.head_steps * n_adapt * 2 * d * c)),
        "device_macs_per_inference": pop.macs(), "hidden": list(task.hidden), "model_id": task.model_id,
        "config": asdict(cfg),
    }


def plot(result: dict[str, Any], path: Path) -> Path:
    """Accuracy vs labels per class, one line per method, the band = subjects' interquartile range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    styles = {"population": ("population model (k = 0)", "tab:gray"), "last_layer": ("last-layer TL", "tab:blue"),
              "scratch": ("from scratch (k labels)", "tab:orange")}
    ks_all = sorted(int(k) for k in result["curves"]["last_layer"])
    for m, (label, color) in styles.items():
        cur = result["curves"][m]
        ks = [k for k in ks_all if str(k) in cur]
        mean = [cur[str(k)]["acc"]["mean"] for k in ks]
        lo = [cur[str(k)]["acc"]["p25"] for k in ks]
        hi = [cur[str(k)]["acc"]["p75"] for k in ks]
        ax.plot(ks, mean, marker="o", color=color, label=label, linestyle="--" if m == "population" else "-")
        ax.fill_between(ks, lo, hi, color=color, alpha=0.15)
    i8 = result["int8"]
    if i8["subjects"]:
        ax.plot([result["int8_k"]], [i8["acc"]["mean"]], marker="*", markersize=12, color="tab:green",
                linestyle="none", label=f"last-layer TL, int8 ({i8['subjects']} subjects)")
    ax.set_xlabel("labels per class from the new subject (k)")
    ax.set_ylabel("accuracy on the subject's other windows")
    ax.set_xticks(ks_all)
    ax.set_title(f"{result['domain']}: adapting to {result['subjects']} new subjects "
                 f"(mean, band = IQR)", fontsize=10)
    return save_plot(fig, ax, path)


def report_rows(domain: str, quick: bool, out_dir: Path) -> list[dict[str, Any]]:
    """Rows for the integration report (strategy "transfer") + ``transfer_<domain>.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    res = run_transfer(domain, quick)
    png = plot(res, out_dir / f"transfer_{domain}.png")
    k = res["int8_k"]
    tl, pop, sc = (res["curves"][m][str(k)] for m in ("last_layer", "population", "scratch"))
    common = {"strategy": "transfer", "domain": domain, "subjects": res["subjects"],
              "bytes_on_wire": res["head_bytes_int8"], "device_macs_per_inference": res["device_macs_per_inference"]}
    extra = {"curves": res["curves"], "int8": res["int8"], "upload_bytes": res["upload_bytes"],
             "head_fit_macs": res["head_fit_macs"], "excluded_one_class": res["excluded_one_class"],
             "population_subjects": res["population_subjects"], "new_subjects_source": res["new_subjects_source"],
             "eval_windows_per_subject": res["eval_windows_per_subject"], "figure": str(png),
             "computed": "cloud (head fit + int8 conversion); only the last layer travels", "quick": quick}
    return [
        {**common, "metric": f"acc_k{k}", "value": tl["acc"]["mean"], "baseline": "population_model",
         "baseline_value": pop["acc"]["mean"], "value_std": tl["acc"]["std"], "baseline_std": pop["acc"]["std"],
         "scratch_value": sc["acc"]["mean"], "int8_value": res["int8"]["acc"]["mean"], **extra},
        {**common, "metric": f"acc_k{k}_vs_scratch", "value": tl["acc"]["mean"], "baseline": "from_scratch",
         "baseline_value": sc["acc"]["mean"], "value_std": tl["acc"]["std"], "baseline_std": sc["acc"]["std"]},
        {**common, "metric": f"macro_f1_k{k}", "value": tl["macro_f1"]["mean"], "baseline": "population_model",
         "baseline_value": pop["macro_f1"]["mean"], "value_std": tl["macro_f1"]["std"],
         "baseline_std": pop["macro_f1"]["std"], "scratch_value": sc["macro_f1"]["mean"]},
    ]
