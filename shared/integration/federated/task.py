"""The federated task: the domain's tiny MLP, one subject's (or machine's) windows per SuperNode.

Flower-example shape: this module holds what both sides share -- the model (:class:`MLP` from
:mod:`shared.integration._mlp`, trained in NumPy so a ClientApp process starts in about a second
instead of importing TensorFlow), the partition each SuperNode reads, training and evaluation, and
the conversion between model weights and Flower's ``ArrayRecord``.

Partitions are prepared once by the runner (:func:`prepare_partitions`): subjects are split into
training and held-out sets (:func:`shared.integration.task.split_subjects`); client ``i`` gets the
``i``-th training subject of a seeded order, alone. Each SuperNode's ``--node-config`` names its
``partition-id`` and the ``.npz`` holding that subject's windows, and nothing else is visible to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.integration._mlp import MLP, accuracy, fit, init_mlp

META_NAME = "meta.json"
TEST_NAME = "test.npz"


@dataclass(frozen=True)
class TrainParams:
    """Local training on a client: Adam epochs over its own windows; ``mu`` the FedProx proximal weight."""

    local_epochs: int = 2
    lr: float = 3e-3
    batch_size: int = 32
    mu: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.local_epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.mu < 0:
            raise ValueError(f"TrainParams: local_epochs, batch_size, lr must be positive and mu >= 0; got {self}")


def partition_path(data_dir: Path, partition_id: int) -> Path:
    return Path(data_dir) / f"client_{partition_id:03d}.npz"


def prepare_partitions(domain: str, clients: int, quick: bool, data_dir: Path, seed: int = 0,
                       test_fraction: float = 0.3) -> dict[str, Any]:
    """Write one ``client_NNN.npz`` per client (one training subject each) and ``test.npz`` (held-out subjects).

    Returns the metadata also written to ``meta.json``: subjects per client, held-out subjects, the
    model's shape (n_in, hidden, n_out), labels and the tiny model id.
    """
    from shared.integration.task import load_task, split_subjects

    if clients < 1:
        raise ValueError(f"--clients must be >= 1, got {clients}")
    task = load_task(domain, quick=quick)
    train_mask, test_mask = split_subjects(task.groups, test_fraction, seed)
    train_subjects = np.unique(task.groups[train_mask])
    if clients > len(train_subjects):
        raise ValueError(f"{domain}{' (quick)' if quick else ''}: --clients {clients} but only "
                         f"{len(train_subjects)} training subjects (one subject per client)")
    order = np.random.default_rng(seed + 1).permutation(train_subjects)[:clients]
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for i, subject in enumerate(order):
        m = task.groups == subject
        np.savez(partition_path(data_dir, i), x=task.x[m], y=task.y[m], subject=np.array(str(subject)))
    np.savez(data_dir / TEST_NAME, x=task.x[test_mask], y=task.y[test_mask], groups=task.groups[test_mask])
    meta = {"domain": domain, "quick": quick, "seed": seed, "clients": [str(s) for s in order],
            "held_out": sorted({str(g) for g in task.groups[test_mask]}), "n_in": task.n_features,
            "hidden": [int(h) for h in task.hidden], "n_out": task.n_classes, "labels": list(task.labels),
            "model_id": task.model_id}
    (data_dir / META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def load_meta(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / META_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no federated data prepared here (prepare_partitions writes it)")
    return json.loads(path.read_text())


def load_partition(data_dir: Path, partition_id: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, subject) of one client's partition."""
    path = partition_path(data_dir, partition_id)
    if not path.is_file():
        raise FileNotFoundError(f"partition {partition_id}: {path} does not exist")
    with np.load(path) as z:
        return z["x"].astype(np.float32), z["y"].astype(np.int64), str(z["subject"])


def load_test(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(Path(data_dir) / TEST_NAME) as z:
        return z["x"].astype(np.float32), z["y"].astype(np.int64), z["groups"].astype(str)


def load_pooled(data_dir: Path, clients: int) -> tuple[np.ndarray, np.ndarray]:
    """Every client's windows together (what centralised training on the same data sees)."""
    parts = [load_partition(data_dir, i) for i in range(clients)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def initial_model(meta: dict[str, Any], seed: int) -> MLP:
    return init_mlp(int(meta["n_in"]), tuple(meta["hidden"]), int(meta["n_out"]), seed)


def to_named_arrays(model: MLP) -> dict[str, np.ndarray]:
    """Weights by name, in layer order (what goes into an ``ArrayRecord``)."""
    out: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        out[f"dense{i}.w"] = np.ascontiguousarray(w, np.float32)
        out[f"dense{i}.b"] = np.ascontiguousarray(b, np.float32)
    return out


def from_named_arrays(arrays: dict[str, np.ndarray]) -> MLP:
    """Inverse of :func:`to_named_arrays`; a clear error when a layer is missing or misshapen."""
    n = len(arrays) // 2
    if n < 1 or len(arrays) != 2 * n:
        raise ValueError(f"model arrays: expected dense{{i}}.w/.b pairs, got keys {sorted(arrays)}")
    try:
        ws = [np.asarray(arrays[f"dense{i}.w"], np.float32) for i in range(n)]
        bs = [np.asarray(arrays[f"dense{i}.b"], np.float32) for i in range(n)]
    except KeyError as exc:
        raise ValueError(f"model arrays: missing {exc.args[0]} (keys {sorted(arrays)})") from None
    return MLP(ws, bs)


def local_train(model: MLP, x: np.ndarray, y: np.ndarray, params: TrainParams, round_: int = 0) -> MLP:
    """``params.local_epochs`` of Adam on (x, y) from ``model``; with ``mu > 0`` the FedProx term
    ``mu/2 * ||w - w_global||^2`` (``anchor_l2 = mu/2`` pulls towards the global weights received)."""
    return fit(model, x, y, epochs=params.local_epochs, lr=params.lr, batch_size=params.batch_size,
               seed=params.seed + 1000 * round_, anchor_l2=params.mu / 2.0)


def evaluate(model: MLP, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on (x, y)."""
    z = model.logits(x).astype(np.float64)
    z -= z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return {"accuracy": accuracy(y, z.argmax(1)), "loss": float(-logp[np.arange(len(y)), y].mean())}
