"""Rows for ``out/integration/report.json``: SL, SplitFed and split inference per domain, with a scaling plot.

``report_rows(domain, quick, out_dir)`` trains the centralised baseline once, then SL and SplitFed over
MQTT for each client count of the sweep (2, 4, 8, 16; fewer when quick or when the domain has fewer
training subjects), and split inference on the SL model of the headline client count. Traffic is what
the MQTT payloads measured (activations up, gradients down) plus the client-side weights each client
receives and hands on (SL) or downloads and uploads (SplitFed), 4 bytes per parameter; FedAvg on the
same tiny MLP moves 2 x its float32 parameter bytes per client per round (one round = one local epoch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from shared.integration.split.device import DeviceNet
from shared.integration.split.inference import split_inference
from shared.integration.split.train import (
    SplitConfig,
    SplitResult,
    device_sizes,
    fl_bytes_per_client_round,
    prepare,
    tiny_model_params,
    train_centralised,
    train_sl,
    train_splitfed,
)
from shared.integration.task import load_task
from shared.protocol.endpoints import mqtt_url
from shared.transport.broker import broker_for

log = logging.getLogger(__name__)

FULL_SWEEP = (2, 4, 8, 16)
QUICK_SWEEP = (2, 4)
HEADLINE_CLIENTS = 4
#: epochs and batch per domain for full runs (quick: 2 epochs, batch 32)
FULL_EPOCHS = {"healthcare": 3, "industrial_iot": 8, "metaverse_eeg": 20}
FULL_BATCH = {"healthcare": 128, "industrial_iot": 64, "metaverse_eeg": 32}


def config_for(domain: str, quick: bool, **over: Any) -> SplitConfig:
    base = {"epochs": 2, "batch": 32} if quick else {"epochs": FULL_EPOCHS.get(domain, 5),
                                                     "batch": FULL_BATCH.get(domain, 64)}
    base.update({k: v for k, v in over.items() if v is not None})
    return SplitConfig(**base)


def _device_train_macs(res_sizes: list[int], samples: float) -> float:
    """Forward + backward (about 3x forward) multiply-accumulates of the device part for ``samples``."""
    return 3.0 * DeviceNet(res_sizes).macs() * samples


def _per_client_samples(task: Any, n: int, cfg: SplitConfig) -> float:
    return sum(len(c[1]) for c in prepare(task, n, cfg.test_fraction, cfg.seed).clients) / n


def run_domain(domain: str, quick: bool, url: str | None = None, sweep: tuple[int, ...] | None = None,
               headline: int = HEADLINE_CLIENTS, cfg: SplitConfig | None = None) -> dict[str, Any]:
    """Everything the rows and the plot need, for one domain."""
    task = load_task(domain, quick=quick)
    cfg = cfg or config_for(domain, quick)
    n_train = len(np.unique(task.groups)) - round(cfg.test_fraction * len(np.unique(task.groups)))
    sweep = tuple(n for n in (sweep or (QUICK_SWEEP if quick else FULL_SWEEP)) if n <= n_train)
    if not sweep:
        raise ValueError(f"{domain}: no client count of the sweep fits {n_train} training subjects")
    headline = headline if headline in sweep else sweep[-1]
    central = train_centralised(prepare(task, 1, cfg.test_fraction, cfg.seed), cfg)
    runs: dict[int, dict[str, SplitResult]] = {}
    with broker_for(mqtt_url(url)) as broker:
        for n in sweep:
            data = prepare(task, n, cfg.test_fraction, cfg.seed)
            runs[n] = {"sl": train_sl(data, cfg, broker), "splitfed": train_splitfed(data, cfg, broker)}
            log.warning("split %s: %d clients: sl %.3f, splitfed %.3f", domain, n, runs[n]["sl"].acc,
                        runs[n]["splitfed"].acc)
        data = prepare(task, headline, cfg.test_fraction, cfg.seed)
        inference = split_inference(runs[headline]["sl"], data, broker, n_devices=min(headline, 4))
    return {"task": task, "cfg": cfg, "central": central, "runs": runs, "headline": headline, "sweep": sweep,
            "inference": inference, "data": data, "quick": quick}


def rows_from(out: dict[str, Any]) -> list[dict[str, Any]]:
    task, cfg, central, runs, n = out["task"], out["cfg"], out["central"], out["runs"], out["headline"]
    data = out["data"]
    sizes = device_sizes(task, cfg.cut)
    macs = DeviceNet(sizes).macs()
    fl = fl_bytes_per_client_round(task)
    common = {"domain": task.domain, "metric": "acc", "subjects": data.test_subjects,
              "device_macs_per_inference": macs, "clients": n, "epochs": cfg.epochs, "batch": cfg.batch,
              "cut_layers": len(sizes) - 1, "cut_width": sizes[-1], "wire_dtype": cfg.wire_dtype,
              "cloud_widths": list(cfg.cloud_widths), "tiny_model_params": tiny_model_params(task),
              "fl_bytes_per_client_round": fl, "centralised_acc": round(central.acc, 4),
              "quick_population": bool(out.get("quick")), "train_windows": int(len(data.x_train))}
    rows = []
    for mode in ("sl", "splitfed"):
        res = runs[n][mode]
        scaling = {}
        for k, r in sorted(runs.items()):
            samples = _per_client_samples(task, k, cfg)
            scaling[str(k)] = {"acc": round(r[mode].acc, 4),
                               "bytes_per_client_epoch": round(r[mode].bytes_per_client_epoch(cfg.epochs)),
                               "device_train_macs_per_client_epoch": round(_device_train_macs(sizes, samples)),
                               "dead": len(r[mode].dead)}
        rows.append({**common, "strategy": mode, "value": round(res.acc, 4), "baseline": "centralised",
                     "baseline_value": round(central.acc, 4),
                     "bytes_on_wire": round(res.bytes_per_client_epoch(cfg.epochs)),
                     "bytes_unit": "payload bytes per client per epoch (activations + gradients + client weights)",
                     **{k: v for k, v in res.summary(cfg.epochs).items() if k not in ("mode", "acc")},
                     "scaling": scaling})
    inf = out["inference"]
    rows.append({**common, "strategy": "split_inference", "value": round(inf["acc_int8"], 4),
                 "baseline": "float_split", "baseline_value": round(inf["acc_float"], 4),
                 "bytes_on_wire": inf["bytes_per_window_single"],
                 "bytes_unit": "payload bytes per window (int8 activations up, class down, one window a message)",
                 **{k: v for k, v in inf.items() if k not in ("acc_int8", "acc_float", "device_macs")}})
    return rows


def plot(out: dict[str, Any], path: Path) -> Path:
    """Accuracy, bytes per client per epoch and device training MACs per client per epoch vs clients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task, cfg, runs = out["task"], out["cfg"], out["runs"]
    ns = sorted(runs)
    sizes = device_sizes(task, cfg.cut)
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for mode, style in (("sl", "o-"), ("splitfed", "s-")):
        ax[0].plot(ns, [runs[n][mode].acc for n in ns], style, label=mode)
        ax[1].plot(ns, [runs[n][mode].bytes_per_client_epoch(cfg.epochs) for n in ns], style, label=mode)
    ax[0].axhline(out["central"].acc, ls="--", c="k", label="centralised")
    ax[0].set(title=f"{task.domain}: held-out accuracy", xlabel="clients", ylabel="accuracy")
    ax[1].axhline(fl_bytes_per_client_round(task), ls="--", c="r", label="FedAvg (2 x tiny params, float32)")
    ax[1].set(title="payload bytes / client / epoch", xlabel="clients", yscale="log")
    per_client = [_per_client_samples(task, n, cfg) for n in ns]
    tiny = [task.n_features, *task.hidden, task.n_classes]
    tiny_macs = sum(a * b for a, b in zip(tiny[:-1], tiny[1:], strict=True))
    ax[2].plot(ns, [_device_train_macs(sizes, s) for s in per_client], "o-", label="split (device part)")
    ax[2].plot(ns, [3.0 * tiny_macs * s for s in per_client], "x--", label="FL (whole tiny model)")
    ax[2].set(title="device training MACs / client / epoch", xlabel="clients", yscale="log")
    for a in ax:
        a.set_xscale("log", base=2)
        a.set_xticks(ns, [str(n) for n in ns])
        a.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report_rows(domain: str, quick: bool, out_dir: Path, url: str | None = None,
                cfg: SplitConfig | None = None) -> list[dict[str, Any]]:
    """The ``sl``, ``splitfed`` and ``split_inference`` rows of ``domain``; writes split_scaling_<domain>.png."""
    out = run_domain(domain, quick, url, cfg=cfg)
    plot(out, Path(out_dir) / f"split_scaling_{domain}.png")
    return rows_from(out)
