"""Rows of the integration report for federated learning: ``fl_fedavg`` and ``fl_fedprox`` per domain.

``value`` is the global model's float accuracy on held-out subjects after the last round,
``baseline_value`` centralised training on the pooled windows of the same clients, ``subjects`` the
held-out subjects, ``bytes_on_wire`` what one client receives plus sends per round (Flower message
object trees), ``device_macs_per_inference`` the tiny MLP's. Extra keys: the int8 accuracy, the
client-alone mean/spread, rounds to within 1 point of centralised, the traffic split, the run's shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

QUICK = {"clients": 3, "rounds": 3}
FULL = {"clients": 10, "rounds": 20}
STRATEGIES = ("fedavg", "fedprox")


def row(summary: dict[str, Any]) -> dict[str, Any]:
    """One report row from a run's summary (see :func:`shared.integration.federated.cli.run_federated`)."""
    t = summary["traffic"]
    r = {
        "strategy": summary["strategy"], "domain": summary["domain"], "metric": "acc",
        "value": summary["federated_accuracy"], "baseline": "centralised",
        "baseline_value": summary["centralised_accuracy"], "subjects": len(summary["held_out"]),
        "bytes_on_wire": round(t["bytes_on_wire_per_client_per_round"]),
        "device_macs_per_inference": summary["device_macs_per_inference"],
        "int8_acc": summary.get("int8_accuracy"), "client_alone_mean": summary["client_alone_mean"],
        "client_alone_std": summary["client_alone_std"], "client_alone_min": summary["client_alone_min"],
        "client_alone_max": summary["client_alone_max"], "rounds_to_within_1pt": summary["rounds_to_within_1pt"],
        "clients": len(summary["clients"]), "rounds": t["rounds"], "quick": bool(summary["config"]["quick"]),
        "client_received_bytes_per_round": round(t["client_received_bytes_per_round"]),
        "client_sent_bytes_per_round": round(t["client_sent_bytes_per_round"]),
        "missing_replies": len(t["missing_replies"]),
    }
    if "rollout" in summary:
        r["rollout_update_bytes"] = summary["rollout"]["update_message_bytes"]
    return r


def report_rows(domain: str, quick: bool, out_dir: Path, strategies: tuple[str, ...] = STRATEGIES,
                clients: int | None = None, rounds: int | None = None) -> list[dict[str, Any]]:
    """Run FedAvg and FedProx for ``domain`` (3 clients x 3 rounds quick, 10 x 20 full) and return their rows."""
    from shared.integration.federated.cli import run_federated
    from shared.integration.federated.runner import FLConfig

    shape = QUICK if quick else FULL
    rows = []
    for strategy in strategies:
        cfg = FLConfig(domain, clients=clients or shape["clients"], rounds=rounds or shape["rounds"],
                       strategy=strategy, quick=quick, out_dir=Path(out_dir) / "fl")
        rows.append(row(run_federated(cfg)))
    return rows
