"""The ServerApp: Flower's own strategies over the SuperNodes, the global model judged on held-out subjects.

Strategies (:func:`make_strategy`): FedAvg, FedProx, FedAdam, FedYogi, FedMedian, FedTrimmedAvg, Krum, and
FedAvg inside ``DifferentialPrivacyServerSideFixedClipping`` when ``dp-noise`` >= 0 (``poison-ids``,
``attack``, ``attack-scale`` are read by the ClientApp; Krum and FedTrimmedAvg are told how many to expect).

Run config (``[tool.flwr.app.config]`` of the generated app, overridden by ``flwr run --run-config``):
``data-dir``, ``out-file``, ``strategy``, ``num-rounds``, ``num-clients`` (all must
connect before round 1, within ``connect-timeout`` s), ``min-clients`` (rounds go on with at least this
many nodes), ``round-timeout`` (s to wait for replies; a node that died is dropped from that round, never
waited on past it), ``local-epochs``, ``lr``, ``batch-size``, ``proximal-mu``, ``seed``.

Every message the strategy sends and every reply goes through :class:`CountingGrid`, which records
per node and round the bytes of the message's object tree as Flower ships it (each object deflated)
and the ``ArrayRecord`` payload (``count_bytes``). After each round the global model is scored on
the held-out subjects (``evaluate_fn``). The result (per-round accuracy, traffic, replies, final
weights) is written atomically to ``out-file`` as JSON plus an ``.npz`` of the weights.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    Strategy,
)
from flwr.supercore.inflatable.inflatable_object import InflatableObject, get_all_nested_objects

from shared.integration.federated.task import (
    evaluate,
    from_named_arrays,
    initial_model,
    load_meta,
    load_test,
    to_named_arrays,
)

app = ServerApp()


def message_bytes(msg: InflatableObject) -> int:
    """Bytes of ``msg`` (a Message, or any record) as Flower transfers it: every object of its tree (message,
    records, arrays, array chunks) deflated."""
    return int(sum(len(obj.deflate()) for obj in get_all_nested_objects(msg).values()))


def array_bytes(msg: Message) -> int:
    if msg.has_error():
        return 0
    return int(sum(rec.count_bytes() for rec in msg.content.array_records.values()))


class CountingGrid(Grid):
    """A Grid that forwards to Flower's and counts each node's traffic per ``send_and_receive`` call."""

    def __init__(self, inner: Grid):
        self._inner = inner
        self.calls: list[dict[str, Any]] = []

    def set_run(self, run: Any) -> None:
        self._inner.set_run(run)

    @property
    def run(self) -> Any:
        return self._inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self._inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self._inner.get_node_ids()

    def get_nodes(self) -> Iterable[Any]:
        return self._inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if not messages:
            return []
        sent = {int(m.metadata.dst_node_id): {"message_bytes": message_bytes(m), "array_bytes": array_bytes(m)}
                for m in messages}
        kind = messages[0].metadata.message_type
        t0 = time.monotonic()
        replies = list(self._inner.send_and_receive(messages, timeout=timeout))
        got: dict[int, dict[str, Any]] = {}
        for r in replies:
            node = int(r.metadata.src_node_id)
            entry: dict[str, Any] = {"message_bytes": message_bytes(r), "array_bytes": array_bytes(r),
                                     "error": r.error.reason if r.has_error() else None}
            if not r.has_error() and "metrics" in r.content.metric_records:
                entry["partition_id"] = int(r.content.metric_records["metrics"].get("partition-id", -1))
            got[node] = entry
        self.calls.append({"type": kind, "seconds": round(time.monotonic() - t0, 3),
                           "nodes": {str(n): {"sent": s, "reply": got.get(n)} for n, s in sent.items()}})
        return replies


def _wait_for_nodes(grid: Grid, n: int, timeout_s: float) -> list[int]:
    end = time.monotonic() + timeout_s
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= n:
            return nodes
        if time.monotonic() > end:
            raise TimeoutError(f"only {len(nodes)} of {n} SuperNodes connected within {timeout_s:.0f} s")
        time.sleep(0.5)


def _write_json(path: Path, blob: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(blob, indent=1) + "\n")
    os.replace(tmp, path)


def make_strategy(name: str, cfg: Any, min_clients: int, n_clients: int) -> Strategy:
    """Flower's own strategy ``name``; with ``dp-noise >= 0`` FedAvg (equal client weights) inside Flower's
    server-side fixed-clipping DP wrapper."""
    common: dict[str, Any] = {"fraction_train": 1.0, "fraction_evaluate": 0.0, "min_train_nodes": min_clients,
                              "min_available_nodes": min_clients}
    noise = float(cfg.get("dp-noise", -1.0))
    poisoned = len([p for p in str(cfg.get("poison-ids", "")).split(",") if p])
    if noise >= 0:
        if name != "fedavg":
            raise ValueError(f"dp-noise wraps fedavg only, got strategy {name!r}")
        inner = FedAvg(weighted_by_key="unit-weight", **common)
        return DifferentialPrivacyServerSideFixedClipping(inner, noise_multiplier=noise,
                                                          clipping_norm=float(cfg["dp-clip"]),
                                                          num_sampled_clients=n_clients)
    if name == "fedprox":
        return FedProx(proximal_mu=float(cfg["proximal-mu"]), **common)
    if name == "fedadam":  # server Adam on the mean update (Reddi et al. 2021), Flower's defaults: eta 0.1
        return FedAdam(**common)
    if name == "fedyogi":
        return FedYogi(**common)
    if name == "fedmedian":
        return FedMedian(**common)
    if name == "fedtrimmedavg":  # trims int(beta * n) clients at each end per coordinate: at least the poisoned
        return FedTrimmedAvg(beta=min(0.49, max(0.2, poisoned / max(n_clients, 1) + 1e-6)), **common)
    if name == "krum":
        return Krum(num_malicious_nodes=max(poisoned, 1), **common)
    if name == "fedavg":
        return FedAvg(**common)
    raise ValueError(f"unknown strategy {name!r}")


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    data_dir = Path(str(cfg["data-dir"]))
    out_file = Path(str(cfg["out-file"]))
    meta = load_meta(data_dir)
    x_test, y_test, _ = load_test(data_dir)
    n_clients, min_clients = int(cfg["num-clients"]), int(cfg["min-clients"])
    rounds, seed = int(cfg["num-rounds"]), int(cfg["seed"])
    name = str(cfg["strategy"])
    strategy = make_strategy(name, cfg, min_clients, n_clients)
    counting = CountingGrid(grid)
    t0 = time.monotonic()
    nodes = _wait_for_nodes(grid, n_clients, float(cfg["connect-timeout"]))
    curve: dict[int, dict[str, float]] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = from_named_arrays({k: v.numpy() for k, v in arrays.items()})
        scores = evaluate(model, x_test, y_test)
        curve[server_round] = {**scores, "t_s": round(time.monotonic() - t0, 3)}
        return MetricRecord({"held-out-accuracy": scores["accuracy"], "held-out-loss": scores["loss"]})

    init = initial_model(meta, seed)
    initial = ArrayRecord({k: Array(v) for k, v in to_named_arrays(init).items()})
    train_config = ConfigRecord({"local-epochs": int(cfg["local-epochs"]), "lr": float(cfg["lr"]),
                                 "batch-size": int(cfg["batch-size"]), "seed": seed})
    result = strategy.start(grid=counting, initial_arrays=initial, num_rounds=rounds,
                            timeout=float(cfg["round-timeout"]), train_config=train_config, evaluate_fn=evaluate_fn)
    final = {k: v.numpy() for k, v in result.arrays.items()} if result.arrays is not None \
        else to_named_arrays(init)
    weights_file = out_file.with_suffix(".npz")
    np.savez(weights_file, **final)
    train_metrics = {int(r): dict(m) for r, m in result.train_metrics_clientapp.items()}
    _write_json(out_file, {
        "strategy": name, "dp_noise": float(cfg.get("dp-noise", -1.0)),
        "rounds": rounds, "num_clients": n_clients, "min_clients": min_clients,
        "nodes_at_start": [int(n) for n in nodes], "curve": {str(k): v for k, v in sorted(curve.items())},
        "train_metrics": {str(k): v for k, v in sorted(train_metrics.items())},
        "traffic": list(counting.calls), "weights": str(weights_file), "seconds": round(time.monotonic() - t0, 3),
    })
