"""Poisoned sites and robust aggregation: FedAvg beside Flower's FedMedian, FedTrimmedAvg and Krum.

``--poison N --attack flip|scale``: the last N sites (partition ids K-N .. K-1) misbehave in every round.

* ``flip``: they train on flipped labels (class c becomes class ``n_classes - 1 - c``; the commonest
  class, usually "normal", becomes a rare one and back), an honest-looking update pulling the wrong way;
* ``scale``: they train honestly and send ``global + S * (trained - global)`` (``--attack-scale S``, default
  -10: a boosted update in the opposite direction, the model-replacement attack's crude form).

The ClientApp reads the poisoned ids from the run config (``poison-ids``, ``attack``, ``attack-scale``), so
the partitions and the SuperNodes are exactly those of an honest run. :func:`report_rows` gives the
``fl_robust`` rows: each aggregator under the same attack on the same sites and seed, value the accuracy on
held-out subjects, baseline centralised training on the sites' true labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ATTACKS = ("flip", "scale")
AGGREGATORS = ("fedavg", "fedmedian", "fedtrimmedavg", "krum")


def flip_labels(y: np.ndarray, n_classes: int) -> np.ndarray:
    return (n_classes - 1 - np.asarray(y)).astype(y.dtype)


def scale_update(trained: dict[str, np.ndarray], received: dict[str, np.ndarray], scale: float
                 ) -> dict[str, np.ndarray]:
    """``received + scale * (trained - received)`` per array."""
    return {k: (received[k] + scale * (trained[k] - received[k])).astype(np.float32) for k in trained}


def poison_ids(clients: int, poison: int) -> list[int]:
    return list(range(clients - poison, clients))


QUICK = {"sites": 4, "rounds": 3, "alpha": 1.0, "poison": 1, "attack": "scale", "aggregators": ("fedavg", "fedmedian")}
FULL = {"sites": 6, "rounds": 10, "alpha": 1.0, "poison": 1, "attack": "scale", "aggregators": AGGREGATORS}


def row(summary: dict[str, Any]) -> dict[str, Any]:
    from shared.integration.federated.report import row as fl_row

    c = summary["config"]
    r = fl_row(summary)
    r["strategy"] = f"fl_robust_{c['strategy']}"
    r.update({"attack": c["attack"], "attack_scale": c["attack_scale"] if c["attack"] == "scale" else None,
              "poisoned_sites": c["poison"], "sites": len(summary["clients"])})
    return r


def report_rows(domain: str, quick: bool, out_dir: Path) -> list[dict[str, Any]]:
    """``fl_robust`` rows: each aggregator under the same poisoned sites."""
    from shared.integration.federated.silo import run_sites

    shape = QUICK if quick else FULL
    return [row(run_sites(domain, quick, out_dir, shape, strategy=agg, poison=shape["poison"],
                          attack=shape["attack"])) for agg in shape["aggregators"]]
