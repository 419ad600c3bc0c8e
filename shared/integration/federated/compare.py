"""What a federated-learning researcher compares a run against, and the rollout of the global model.

* **centralised**: the same MLP trained on the pooled windows of the same clients (what FL would reach
  if the data could leave the devices), for as many epochs as each client trains in the whole run;
* **client alone**: each client's own model on its own windows, same epochs (mean, spread, min, max);
* **federated**: the global model after each round on the held-out subjects (from the ServerApp),
  the rounds it takes to come within 1 point of centralised, and the bytes each client received and
  sent per round (Flower message object trees and ``ArrayRecord`` payloads, from the ServerApp's
  :class:`~shared.integration.federated.server_app.CountingGrid`);
* **int8**: the global model fully quantized (calibrated on the pooled client windows) next to float;
* **rollout**: int8 -> C (compiled when a C compiler exists) -> Ed25519-signed -> published on the
  ``model`` stream (:func:`shared.integration.rollout.roll_out`) to an MQTT broker when one is given,
  otherwise to the clients' own :class:`~shared.security.model_update.ModelSlot` objects in this
  process, which verify signature, hash and version exactly as a device does.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared.integration._mlp import MLP, accuracy, int8_probs, to_int8
from shared.integration.federated.task import (
    TrainParams,
    evaluate,
    from_named_arrays,
    initial_model,
    load_partition,
    load_pooled,
    load_test,
    local_train,
)

WITHIN = 0.01  # "within 1 point" of centralised accuracy


def global_model(result: dict[str, Any]) -> MLP:
    with np.load(result["weights"]) as z:
        return from_named_arrays({k: z[k] for k in z.files})


def baselines(data_dir: Path, meta: dict[str, Any], clients: int, epochs: int, lr: float, batch_size: int,
              seed: int) -> dict[str, Any]:
    """Held-out accuracy of centralised training on the pooled client data and of each client alone."""
    x_test, y_test, _ = load_test(data_dir)
    params = TrainParams(local_epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    x, y = load_pooled(data_dir, clients)
    central = local_train(initial_model(meta, seed), x, y, params)
    alone = []
    for i in range(clients):
        xi, yi, subject = load_partition(data_dir, i)
        m = local_train(initial_model(meta, seed), xi, yi, TrainParams(epochs, lr, batch_size, 0.0, seed + i))
        alone.append({"subject": subject, "windows": len(yi), "accuracy": evaluate(m, x_test, y_test)["accuracy"]})
    accs = np.array([a["accuracy"] for a in alone])
    return {"epochs": epochs, "centralised_accuracy": evaluate(central, x_test, y_test)["accuracy"],
            "client_alone": alone, "client_alone_mean": float(accs.mean()), "client_alone_std": float(accs.std()),
            "client_alone_min": float(accs.min()), "client_alone_max": float(accs.max())}


def rounds_to_within(curve: dict[str, dict[str, float]], target: float, within: float = WITHIN) -> int | None:
    """First round whose global model is at least ``target - within`` on held-out subjects (None: never)."""
    for r in sorted(int(k) for k in curve):
        if r >= 1 and curve[str(r)]["accuracy"] >= target - within:
            return r
    return None


def traffic(result: dict[str, Any]) -> dict[str, Any]:
    """Bytes per client per round (received from / sent to the SuperLink), and replies that never came."""
    rounds = [c for c in result["traffic"] if c["type"] == "train"]
    down, up, arr_down, arr_up, missing = [], [], [], [], []
    for r, call in enumerate(rounds, start=1):
        for node, entry in call["nodes"].items():
            down.append(entry["sent"]["message_bytes"])
            arr_down.append(entry["sent"]["array_bytes"])
            reply = entry["reply"]
            if reply is None or reply.get("error"):
                missing.append({"round": r, "node": node, "error": None if reply is None else reply["error"]})
                continue
            up.append(reply["message_bytes"])
            arr_up.append(reply["array_bytes"])
    return {"rounds": len(rounds), "client_received_bytes_per_round": _mean(down),
            "client_sent_bytes_per_round": _mean(up), "client_received_array_bytes_per_round": _mean(arr_down),
            "client_sent_array_bytes_per_round": _mean(arr_up),
            "bytes_on_wire_per_client_per_round": _mean(down) + _mean(up),
            "total_bytes": int(sum(down) + sum(up)), "missing_replies": missing,
            "round_seconds": [c["seconds"] for c in rounds]}


def _mean(v: list[int]) -> float:
    return float(np.mean(v)) if v else 0.0


def device_id(subject: str) -> str:
    """A subject id as a device id (``[A-Za-z0-9_-]``): ``s11/p002`` -> ``s11-p002``."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", subject)[:64]


def int8_and_rollout(model: MLP, data_dir: Path, meta: dict[str, Any], clients: int, out_dir: Path,
                     signing_key: Path | None, mqtt: str | None, rollout: bool = True) -> dict[str, Any]:
    """int8 accuracy beside float; then compile, sign and publish the int8 model to the clients' devices."""
    x_test, y_test, _ = load_test(data_dir)
    x_pool, _ = load_pooled(data_dir, clients)
    blob = to_int8(model, x_pool)
    out: dict[str, Any] = {"float_accuracy": evaluate(model, x_test, y_test)["accuracy"],
                           "int8_accuracy": accuracy(y_test, int8_probs(blob, x_test).argmax(1)),
                           "tflite_bytes": len(blob), "macs": model.macs()}
    if not rollout:
        return out
    from shared.integration.rollout import roll_out
    from shared.security.model_update import PRIVATE_NAME, PUBLIC_NAME, ModelSlot, generate_keypair

    if signing_key is None:
        keys = out_dir / "keys"
        if not (keys / PRIVATE_NAME).exists():
            generate_keypair(keys)
        signing_key, public = keys / PRIVATE_NAME, keys / PUBLIC_NAME
    else:
        public = Path(signing_key).with_name(PUBLIC_NAME)
    devices = [device_id(s) for s in meta["clients"]]
    version = int(time.time())  # strictly newer than anything rolled out before (ModelSlot's version rule)
    model_id = f"{meta['model_id']}-fl@{version}"
    accepted: dict[str, str] = {}
    publish = None
    if mqtt is None:
        slots = {d: ModelSlot(meta["domain"], d, public, state_dir=out_dir / "device-slots") for d in devices}

        def publish(device: str, stream: str, msg: dict) -> None:
            ok, reason = slots[device].offer(msg)
            accepted[device] = reason if ok else f"REFUSED: {reason}"

    done = roll_out(blob, domain=meta["domain"], devices=devices, model_id=model_id, private_key=signing_key,
                    out_dir=out_dir / "rollout", labels=meta["labels"], publish=publish, mqtt=mqtt)
    out["rollout"] = {
        "model_id": model_id, "devices": devices, "published": done.messages, "via": mqtt or "in-process ModelSlot",
        "accepted": sum(1 for v in accepted.values() if not v.startswith("REFUSED")) if mqtt is None else None,
        "update_message_bytes": done.bytes_on_wire, "weights_bytes": done.budget.get("weights_bytes"),
        "arena_bytes": done.compiled.arena_bytes, "c_compiler": done.c_compiler,
        "c_source": str(done.compiled.source_path),
    }
    return out
