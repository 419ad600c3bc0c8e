"""Federated transfer learning: a frozen source backbone, a head trained across target sites by FedAvg.

One SOURCE population (one hospital, one plant: a subset of subjects) trains the domain's tiny MLP;
everything before its last layer is then frozen (the backbone). Several TARGET sites (disjoint groups
of other subjects; each keeps its windows) train a fresh last layer (the head) on top of it:

* ``fedavg``: ``rounds`` rounds; each site starts from the global head, runs ``local_epochs`` of SGD
  on its own windows, sends its head back; the server averages the heads weighted by window counts
  (McMahan et al. 2017) and sends the average out. Only head weights travel, in float32, both ways;
* ``site_alone``: each site trains the same head from the same start for ``rounds x local_epochs``
  epochs on its own windows only (mean and spread over sites);
* ``pooled``: one head on all sites' windows together (the upper bound: the data leaves the sites);
* ``source_head``: the source model's own head, no target training (a reference).

All are judged on HELD-OUT target subjects that belong to no site. NO encryption and NO secure
aggregation are involved: the server sees every site's head in the clear (row key ``privacy``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.integration import _mlp
from shared.integration.report import save_plot
from shared.integration.task import TinyTask, load_task

PRIVACY = "none: head weights travel in the clear, float32; no encryption, no secure aggregation, no DP"


@dataclass(frozen=True)
class FedTransferConfig:
    source_fraction: float = 0.3  #: share of subjects in the source population
    test_fraction: float = 0.3  #: share of the remaining (target) subjects held out for evaluation
    n_sites: int = 5
    rounds: int = 30
    local_epochs: int = 1
    batch_size: int = 32  #: minibatch of local training (larger on big sites: at most max_steps_per_epoch steps)
    max_steps_per_epoch: int = 100
    lr: float = 0.05  #: plain SGD (the textbook FedAvg client; Adam's reset moments drifted on label-skewed sites)
    seed: int = 0
    source_epochs_max: int = 40
    source_samples: int = 300_000  #: the source model sees about this many windows
    source_batch: int = 128

    def __post_init__(self) -> None:
        for name in ("source_fraction", "test_fraction"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"FedTransferConfig.{name}: must be in (0, 1), got {v}")
        for name in ("n_sites", "rounds", "local_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"FedTransferConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if self.n_sites < 2:
            raise ValueError(f"FedTransferConfig.n_sites: federated averaging needs >= 2 sites, got {self.n_sites}")

    @classmethod
    def quick(cls) -> FedTransferConfig:
        return cls(n_sites=3, rounds=10, source_epochs_max=60, source_samples=40_000)


@dataclass
class Partition:
    source: np.ndarray  #: subject ids
    sites: list[np.ndarray]
    test: np.ndarray


def partition(subjects: np.ndarray, cfg: FedTransferConfig) -> Partition:
    """Seeded split of subjects into source, ``n_sites`` disjoint target sites and held-out target subjects."""
    subjects = np.asarray(subjects).astype(str)
    need = 2 + 2 * cfg.n_sites  # >= 1 source, >= 1 test, >= 2 per site (a site of one is a device, not a site)
    if len(np.unique(subjects)) != len(subjects):
        raise ValueError("partition: subject ids must be unique")
    if len(subjects) < need:
        raise ValueError(f"partition: {len(subjects)} subjects is too few for 1 source + {cfg.n_sites} sites of 2 "
                         f"+ 1 held-out (need {need})")
    order = np.random.default_rng(cfg.seed).permutation(subjects)
    n_src = min(len(order) - 1 - 2 * cfg.n_sites, max(1, round(cfg.source_fraction * len(order))))
    rest = order[n_src:]
    n_test = min(len(rest) - 2 * cfg.n_sites, max(1, round(cfg.test_fraction * len(rest))))
    return Partition(order[:n_src], [np.asarray(s) for s in np.array_split(rest[n_test:], cfg.n_sites)],
                     rest[:n_test])


def _head_init(d: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    m = _mlp.init_mlp(d, (), c, seed)
    return m.weights[0], m.biases[0]


def _evaluate(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    per = [_mlp.accuracy(y[groups == s], pred[groups == s]) for s in np.unique(groups)]
    return {"acc": round(_mlp.accuracy(y, pred), 4), "macro_f1": round(_mlp.macro_f1(y, pred), 4),
            "subject_acc_mean": round(float(np.mean(per)), 4), "subject_acc_std": round(float(np.std(per)), 4)}


def run_fed_transfer(domain: str, quick: bool = False, cfg: FedTransferConfig | None = None,
                     task: TinyTask | None = None, int8: bool = True) -> dict[str, Any]:
    cfg = cfg or (FedTransferConfig.quick() if quick else FedTransferConfig())
    task = task if task is not None else load_task(domain, quick)
    part = partition(task.subjects(), cfg)
    src = np.isin(task.groups, part.source)
    test = np.isin(task.groups, part.test)
    site_masks = [np.isin(task.groups, s) for s in part.sites]

    epochs = int(max(3, min(cfg.source_epochs_max, round(cfg.source_samples / max(int(src.sum()), 1)))))
    source = _mlp.fit(_mlp.init_mlp(task.n_features, task.hidden, task.n_classes, cfg.seed), task.x[src],
                      task.y[src], epochs=epochs, batch_size=cfg.source_batch, seed=cfg.seed)
    h = source.features(task.x)  # the frozen backbone's output for every window
    d, c = source.weights[-1].shape
    w0, b0 = _head_init(d, c, cfg.seed + 1)
    yt, gt = task.y[test], task.groups[test]

    def head_eval(w: np.ndarray, b: np.ndarray) -> dict[str, float]:
        return _evaluate(yt, (h[test] @ w + b).argmax(1), gt)

    def local(w: np.ndarray, b: np.ndarray, mask: np.ndarray, n_epochs: int, seed: int) -> tuple[np.ndarray, ...]:
        bs = max(cfg.batch_size, int(np.ceil(mask.sum() / cfg.max_steps_per_epoch)))
        return _mlp.fit_head(w, b, h[mask], task.y[mask], epochs=n_epochs, lr=cfg.lr, batch_size=bs, seed=seed,
                             optimizer="sgd")

    sizes = np.array([m.sum() for m in site_masks], float)
    gw, gb = w0.copy(), b0.copy()
    curve = []
    for r in range(cfg.rounds):
        heads = [local(gw, gb, m, cfg.local_epochs, cfg.seed + 1000 * r + i) for i, m in enumerate(site_masks)]
        gw = sum(s * hw for s, (hw, _) in zip(sizes, heads, strict=True)) / sizes.sum()
        gb = sum(s * hb for s, (_, hb) in zip(sizes, heads, strict=True)) / sizes.sum()
        curve.append(head_eval(gw, gb)["acc"])
    fed = head_eval(gw, gb)
    total_epochs = cfg.rounds * cfg.local_epochs
    alone = [head_eval(*local(w0, b0, m, total_epochs, cfg.seed + 7 + i)) for i, m in enumerate(site_masks)]
    pooled = head_eval(*local(w0, b0, np.logical_or.reduce(site_masks), total_epochs, cfg.seed + 5))
    source_head = head_eval(source.weights[-1], source.biases[-1])

    int8_res: dict[str, Any] = {}
    if int8:
        rep = task.x[src][np.random.default_rng(cfg.seed).permutation(int(src.sum()))[:500]]
        blob = _mlp.to_int8(source.with_head(gw, gb), rep)
        p8 = _mlp.int8_probs(blob, task.x[test]).argmax(1)
        int8_res = {**_evaluate(yt, p8, gt), "int8_float_agreement":
                    round(float((p8 == (h[test] @ gw + gb).argmax(1)).mean()), 4), "tflite_bytes": len(blob)}
    head_bytes = 4 * (d * c + c)
    alone_acc = np.array([a["acc"] for a in alone])
    site_classes = [len(np.unique(task.y[m])) for m in site_masks]
    return {
        "domain": domain, "quick": quick, "fedavg": fed, "site_alone": alone, "pooled": pooled,
        "source_head": source_head, "int8": int8_res, "round_acc": curve,
        "site_alone_acc": {"mean": round(float(alone_acc.mean()), 4), "std": round(float(alone_acc.std()), 4),
                           "min": round(float(alone_acc.min()), 4), "max": round(float(alone_acc.max()), 4)},
        "site_alone_macro_f1_mean": round(float(np.mean([a["macro_f1"] for a in alone])), 4),
        "source_subjects": len(part.source), "site_subjects": [len(s) for s in part.sites],
        "site_windows": [int(s) for s in sizes], "site_classes": site_classes, "test_subjects": len(part.test),
        "test_windows": int(test.sum()), "n_classes": task.n_classes,
        "bytes_per_site_per_round": 2 * head_bytes, "bytes_per_site_total": 2 * head_bytes * cfg.rounds,
        "head_params": d * c + c, "device_macs_per_inference": source.macs(), "privacy": PRIVACY,
        "config": asdict(cfg),
    }


def plot(res: dict[str, Any], path: Path) -> Path:
    """Held-out accuracy of the FedAvg head per round, beside each site alone, pooled and the source head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    rounds = np.arange(1, len(res["round_acc"]) + 1)
    ax.plot(rounds, res["round_acc"], marker="o", color="tab:blue", label="FedAvg head (after round)")
    ax.axhline(res["pooled"]["acc"], color="tab:green", linestyle="--", label="pooled target data (upper bound)")
    ax.axhline(res["source_head"]["acc"], color="tab:gray", linestyle=":", label="source head, no target training")
    sa = res["site_alone_acc"]
    ax.axhspan(sa["min"], sa["max"], color="tab:orange", alpha=0.15)
    ax.axhline(sa["mean"], color="tab:orange", label="each site alone (mean, band = min..max)")
    ax.set_xlabel("federated round")
    ax.set_ylabel("accuracy, held-out target subjects")
    ax.set_title(f"{res['domain']}: {len(res['site_alone'])} sites train a head on a frozen source backbone",
                 fontsize=10)
    return save_plot(fig, ax, path)


def report_rows(domain: str, quick: bool, out_dir: Path) -> list[dict[str, Any]]:
    """Rows for the integration report (strategy "fed_transfer") + ``fed_transfer_<domain>.png``."""
    out_dir = Path(out_dir)
    res = run_fed_transfer(domain, quick)
    png = plot(res, out_dir / f"fed_transfer_{domain}.png")
    common = {"strategy": "fed_transfer", "domain": domain, "subjects": res["test_subjects"],
              "bytes_on_wire": res["bytes_per_site_per_round"],
              "device_macs_per_inference": res["device_macs_per_inference"], "privacy": PRIVACY}
    fed = res["fedavg"]
    return [
        {**common, "metric": "acc", "value": fed["acc"], "baseline": "site_alone",
         "baseline_value": res["site_alone_acc"]["mean"], "baseline_std": res["site_alone_acc"]["std"],
         "pooled_value": res["pooled"]["acc"], "source_head_value": res["source_head"]["acc"],
         "int8_value": res["int8"].get("acc"), "value_subject_std": fed["subject_acc_std"],
         "round_acc": res["round_acc"], "site_alone": res["site_alone"], "site_classes": res["site_classes"],
         "site_subjects": res["site_subjects"], "source_subjects": res["source_subjects"],
         "rounds": res["config"]["rounds"], "bytes_per_site_total": res["bytes_per_site_total"],
         "figure": str(png), "quick": quick},
        {**common, "metric": "acc_vs_pooled", "value": fed["acc"], "baseline": "pooled",
         "baseline_value": res["pooled"]["acc"]},
        {**common, "metric": "macro_f1", "value": fed["macro_f1"], "baseline": "site_alone",
         "baseline_value": res["site_alone_macro_f1_mean"], "pooled_value": res["pooled"]["macro_f1"]},
    ]
