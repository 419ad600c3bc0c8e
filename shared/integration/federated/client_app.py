"""The ClientApp each SuperNode runs: train the global tiny MLP on this node's own subject, nothing else.

The node's ``--node-config`` carries ``partition-id`` and ``data-dir`` (where the runner wrote the
partitions); the ServerApp's ``config`` record carries ``server-round``, ``local-epochs``, ``lr``,
``batch-size``, ``seed`` and, under FedProx, ``proximal-mu`` (set by Flower's ``FedProx`` strategy).
Replies hold the trained ``arrays`` and a ``metrics`` record with ``num-examples`` (the FedAvg
weight), the local loss/accuracy, and the array bytes this client received and sent (Flower's
``ArrayRecord.count_bytes``). Only NumPy and Flower are imported here: a ClientApp process is
started per message, so it must be light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from shared.integration.federated.task import (
    TrainParams,
    evaluate,
    from_named_arrays,
    load_partition,
    local_train,
    to_named_arrays,
)

app = ClientApp()


def _partition(context: Context) -> tuple[Any, Any, str, int]:
    cfg = context.node_config
    if "partition-id" not in cfg or "data-dir" not in cfg:
        raise ValueError(f"SuperNode --node-config needs partition-id and data-dir, got {sorted(cfg)}")
    pid = int(cfg["partition-id"])
    x, y, subject = load_partition(Path(str(cfg["data-dir"])), pid)
    return x, y, subject, pid


def _model_in(msg: Message) -> Any:
    record = msg.content.array_records["arrays"]
    return from_named_arrays({k: v.numpy() for k, v in record.items()}), record.count_bytes()


def arrays_record(model: Any) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in to_named_arrays(model).items()})


def _poisoned(context: Context, pid: int) -> str | None:
    """This node's attack (``flip``/``scale``) when the run config lists it in ``poison-ids``, else None."""
    ids = {int(p) for p in str(context.run_config.get("poison-ids", "")).split(",") if p.strip()}
    return str(context.run_config.get("attack", "flip")) if pid in ids else None


@app.train()
def train(msg: Message, context: Context) -> Message:
    x, y, _subject, pid = _partition(context)
    model, bytes_in = _model_in(msg)
    attack = _poisoned(context, pid)
    if attack == "flip":
        from shared.integration.federated.robust import flip_labels

        y = flip_labels(y, int(model.biases[-1].shape[0]))
    cfg = msg.content.config_records["config"]
    params = TrainParams(local_epochs=int(cfg.get("local-epochs", 2)), lr=float(cfg.get("lr", 3e-3)),
                         batch_size=int(cfg.get("batch-size", 32)), mu=float(cfg.get("proximal-mu", 0.0)),
                         seed=int(cfg.get("seed", 0)) + pid)
    rnd = int(cfg.get("server-round", 0))
    trained = local_train(model, x, y, params, rnd)
    scores = evaluate(trained, x, y)
    if attack == "scale":
        from shared.integration.federated.robust import scale_update

        boosted = scale_update(to_named_arrays(trained), to_named_arrays(model),
                               float(context.run_config.get("attack-scale", -10.0)))
        trained = from_named_arrays(boosted)
    out = arrays_record(trained)
    metrics = MetricRecord({"num-examples": len(y), "unit-weight": 1,
                            "train-loss": scores["loss"], "train-accuracy": scores["accuracy"],
                            "partition-id": pid, "array-bytes-in": bytes_in, "array-bytes-out": out.count_bytes()})
    return Message(RecordDict({"arrays": out, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate_local(msg: Message, context: Context) -> Message:
    x, y, _subject, pid = _partition(context)
    model, bytes_in = _model_in(msg)
    scores = evaluate(model, x, y)
    metrics = MetricRecord({"num-examples": len(y), "eval-loss": scores["loss"], "eval-accuracy": scores["accuracy"],
                            "partition-id": pid, "array-bytes-in": bytes_in})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
