"""Cross-silo federated learning: a few sites (wards, plants, fleets, venues), each holding many subjects.

Sites are non-IID by construction. Each training subject has a *condition*: its most frequent label other
than the domain's commonest one (a patient's arrhythmia, a machine's fault), or the commonest label when it
has no other; that is the population attribute sites differ in. For every condition a Dirichlet(alpha)
draw gives its share per site, and each subject of that condition goes to a site drawn from that share
(small alpha: a condition lives at one or two sites; large alpha: sites look alike). Subjects stay whole
(a subject's windows are at one site), and the held-out subjects are split off first, by subject
(:func:`shared.integration.task.split_subjects`), exactly as in the cross-device runs.

:func:`prepare_sites` writes the same files as :func:`shared.integration.federated.task.prepare_partitions`
(``client_NNN.npz`` is site NNN, ``test.npz``, ``meta.json``) so every other part of a run is shared.
:func:`report_rows` gives the ``fl_silo`` rows of the integration report: FedAvg, FedProx and FedAdam
(Flower's own strategies) over the same sites, against centralised training on the pooled sites.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.integration.federated.task import META_NAME, TEST_NAME, partition_path


def conditions(y: np.ndarray, groups: np.ndarray, n_classes: int) -> dict[str, int]:
    """Subject -> its condition (most frequent label other than the overall commonest, if it has any)."""
    common = int(np.bincount(y, minlength=n_classes).argmax())
    out: dict[str, int] = {}
    for s in np.unique(groups):
        counts = np.bincount(y[groups == s], minlength=n_classes)
        other = counts.copy()
        other[common] = 0
        out[str(s)] = int(other.argmax()) if other.sum() > 0 else common
    return out


def assign_sites(cond: dict[str, int], sites: int, alpha: float, seed: int) -> dict[str, int]:
    """Subject -> site: per condition a Dirichlet(alpha) share over sites, each subject drawn from its
    condition's share. Every site gets at least one subject (a subject moves from the largest site)."""
    if sites < 1:
        raise ValueError(f"--sites must be >= 1, got {sites}")
    if not alpha > 0:
        raise ValueError(f"--alpha must be > 0, got {alpha}")
    subjects = sorted(cond)
    if sites > len(subjects):
        raise ValueError(f"--sites {sites} but only {len(subjects)} training subjects (each site needs one)")
    rng = np.random.default_rng(seed + 7)
    share = {c: rng.dirichlet(np.full(sites, alpha)) for c in sorted(set(cond.values()))}
    site = {s: int(rng.choice(sites, p=share[cond[s]])) for s in subjects}
    for k in range(sites):
        if k not in site.values():
            sizes = np.bincount(list(site.values()), minlength=sites)
            donor = int(sizes.argmax())
            moved = next(s for s in subjects if site[s] == donor)
            site[moved] = k
    return site


def label_skew(y_by_site: list[np.ndarray], n_classes: int) -> float:
    """Mean total-variation distance between each site's label distribution and the pooled one (0: IID)."""
    pooled = np.bincount(np.concatenate(y_by_site), minlength=n_classes).astype(float)
    pooled /= pooled.sum()
    tv = [0.5 * np.abs(np.bincount(y, minlength=n_classes) / max(len(y), 1) - pooled).sum() for y in y_by_site]
    return float(np.mean(tv))


def prepare_sites(domain: str, sites: int, alpha: float, quick: bool, data_dir: Path, seed: int = 0,
                  test_fraction: float = 0.3) -> dict[str, Any]:
    """Write one ``client_NNN.npz`` per site (all its subjects' windows), ``test.npz`` and ``meta.json``."""
    from shared.integration.task import load_task, split_subjects

    task = load_task(domain, quick=quick)
    n_classes = len(task.labels)
    train_mask, test_mask = split_subjects(task.groups, test_fraction, seed)
    g_train, y_train = task.groups[train_mask].astype(str), task.y[train_mask]
    cond = conditions(y_train, g_train, n_classes)
    site = assign_sites(cond, sites, alpha, seed)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    groups = task.groups.astype(str)
    members: list[list[str]] = [sorted(s for s in site if site[s] == k) for k in range(sites)]
    ys = []
    for k, subs in enumerate(members):
        m = train_mask & np.isin(groups, subs)
        ys.append(task.y[m])
        np.savez(partition_path(data_dir, k), x=task.x[m], y=task.y[m], subject=np.array(f"site{k}"))
    np.savez(data_dir / TEST_NAME, x=task.x[test_mask], y=task.y[test_mask], groups=task.groups[test_mask])
    meta = {"domain": domain, "quick": quick, "seed": seed, "clients": [f"site{k}" for k in range(sites)],
            "sites": {f"site{k}": subs for k, subs in enumerate(members)}, "alpha": alpha,
            "site_windows": [len(y) for y in ys], "label_skew_tv": label_skew(ys, n_classes),
            "site_labels": [np.bincount(y, minlength=n_classes).tolist() for y in ys],
            "held_out": sorted({str(g) for g in task.groups[test_mask]}), "n_in": task.n_features,
            "hidden": [int(h) for h in task.hidden], "n_out": task.n_classes, "labels": list(task.labels),
            "model_id": task.model_id}
    (data_dir / META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    return meta


QUICK = {"sites": 3, "rounds": 3, "alpha": 0.5, "strategies": ("fedavg",)}
FULL = {"sites": 5, "rounds": 20, "alpha": 0.5, "strategies": ("fedavg", "fedprox", "fedadam")}


def row(summary: dict[str, Any]) -> dict[str, Any]:
    """An ``fl_silo_<strategy>`` row: the federated row plus the sites' shape and label skew."""
    from shared.integration.federated.report import row as fl_row

    r = fl_row(summary)
    r["strategy"] = f"fl_silo_{summary['config']['strategy']}"
    r["sites"] = len(summary["clients"])
    r["alpha"] = summary["config"]["alpha"]
    r["label_skew_tv"] = summary.get("label_skew_tv")
    r["gap_to_centralised"] = round(summary["centralised_accuracy"] - summary["federated_accuracy"], 4)
    r["training_subjects"] = summary.get("training_subjects")
    return r


def run_sites(domain: str, quick: bool, out_dir: Path, shape: dict[str, Any], **config: Any) -> dict[str, Any]:
    """One Flower run over ``shape``'s Dirichlet sites (its sites, rounds and alpha; no rollout), with the
    rest of the :class:`FLConfig` from ``config``; the run's summary. The silo, robust and DP rows use it."""
    from shared.integration.federated.cli import run_federated
    from shared.integration.federated.runner import FLConfig

    return run_federated(FLConfig(domain, clients=shape["sites"], rounds=shape["rounds"], quick=quick,
                                  sites=shape["sites"], alpha=shape["alpha"], rollout=False,
                                  out_dir=Path(out_dir) / "fl", **config))


def report_rows(domain: str, quick: bool, out_dir: Path) -> list[dict[str, Any]]:
    """``fl_silo`` rows: each strategy over the same Dirichlet sites (3 sites x 3 rounds quick)."""
    shape = QUICK if quick else FULL
    return [row(run_sites(domain, quick, out_dir, shape, strategy=s)) for s in shape["strategies"]]
