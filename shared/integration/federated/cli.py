"""``tinylarge fl DOMAIN --clients N --rounds R [--strategy fedavg|fedprox] [--quick]``.

Runs one federated training on Flower's deployment engine end to end (see
:mod:`shared.integration.federated.runner`), compares it (see :mod:`shared.integration.federated.compare`),
writes ``summary.json`` in the run folder and prints the figures. Exit codes: 0 done, 1 the run failed,
2 bad arguments, 130 interrupted (every process it started is stopped either way).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.integration.federated.runner import FederatedRunError, FLConfig, RunTerminated, config_dict, run_flower


def run_federated(cfg: FLConfig) -> dict[str, Any]:
    """Flower run, then baselines, traffic, int8 and rollout; the summary (also in ``run_dir/summary.json``)."""
    from shared.integration.federated import compare

    t0 = time.monotonic()
    fl = run_flower(cfg)
    fl_seconds = time.monotonic() - t0
    model = compare.global_model(fl.result)
    data_dir = fl.run_dir / "data"
    base = compare.baselines(data_dir, fl.meta, cfg.clients, cfg.rounds * cfg.local_epochs, cfg.lr, cfg.batch_size,
                             cfg.seed)
    curve = fl.result["curve"]
    final = curve[str(max(int(k) for k in curve))]["accuracy"]
    summary: dict[str, Any] = {
        "config": config_dict(cfg), "domain": cfg.domain, "strategy": f"fl_{cfg.strategy}",
        "clients": fl.meta["clients"], "held_out": fl.meta["held_out"], "federated_accuracy": final,
        **{k: v for k, v in base.items() if k != "epochs"}, "baseline_epochs": base["epochs"],
        "rounds_to_within_1pt": compare.rounds_to_within(curve, base["centralised_accuracy"]),
        "curve": curve, "traffic": compare.traffic(fl.result), "killed": fl.killed or None,
        "leftover_pids_killed": fl.leftover_pids, "flower_seconds": round(fl_seconds, 1),
        "device_macs_per_inference": model.macs(), "params": model.n_params(),
    }
    summary.update(compare.int8_and_rollout(model, data_dir, fl.meta, cfg.clients, fl.run_dir, cfg.signing_key,
                                            cfg.mqtt, cfg.rollout))
    summary["seconds"] = round(time.monotonic() - t0, 1)
    (fl.run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def format_summary(s: dict[str, Any]) -> str:
    t = s["traffic"]
    lines = [
        f"{s['domain']} {s['strategy']}: {len(s['clients'])} clients x {t['rounds']} rounds, "
        f"{len(s['held_out'])} held-out subjects",
        f"  federated (float)      {s['federated_accuracy']:.3f}   int8 {s['int8_accuracy']:.3f}",
        f"  centralised (pooled)   {s['centralised_accuracy']:.3f}",
        f"  client alone           {s['client_alone_mean']:.3f} +- {s['client_alone_std']:.3f} "
        f"(min {s['client_alone_min']:.3f}, max {s['client_alone_max']:.3f})",
        f"  rounds to within 1 pt  {s['rounds_to_within_1pt'] if s['rounds_to_within_1pt'] is not None else 'never'}",
        f"  per client per round   received {t['client_received_bytes_per_round']:,.0f} B, sent "
        f"{t['client_sent_bytes_per_round']:,.0f} B (arrays {t['client_received_array_bytes_per_round']:,.0f} / "
        f"{t['client_sent_array_bytes_per_round']:,.0f} B)",
        f"  missing replies        {len(t['missing_replies'])}",
        f"  device MACs/inference  {s['device_macs_per_inference']:,}",
    ]
    if "rollout" in s:
        r = s["rollout"]
        lines.append(f"  rollout                {r['model_id']} -> {r['published']} devices via {r['via']}"
                     + (f", {r['accepted']} accepted" if r["accepted"] is not None else "")
                     + f"; C compiled with {r['c_compiler'] or '(no C compiler: generated only)'}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinylarge fl", description="federated learning of a domain's tiny model on "
                                "Flower (SuperLink + one SuperNode per subject, TLS, loopback)")
    p.add_argument("domain", help="a registered domain with a tiny_task")
    p.add_argument("--clients", type=int, default=3, help="SuperNodes, one training subject each (default 3)")
    p.add_argument("--rounds", type=int, default=5, help="federated rounds (default 5)")
    p.add_argument("--strategy", choices=("fedavg", "fedprox"), default="fedavg")
    p.add_argument("--mu", type=float, default=0.1, help="FedProx proximal weight (default 0.1)")
    p.add_argument("--local-epochs", type=int, default=5, help="epochs per client per round (default 5)")
    p.add_argument("--lr", type=float, default=0.01, help="client Adam learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--min-clients", type=int, help="rounds go on with at least this many nodes (default N/2)")
    p.add_argument("--round-timeout", type=float, default=60.0, help="seconds a round waits for replies")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="the domain's small populations (tests, CI)")
    p.add_argument("--out", type=Path, default=Path("out/integration/fl"), help="runs folder")
    p.add_argument("--mqtt", help="publish the signed update to this broker URL (default: in-process device slots)")
    p.add_argument("--signing-key", type=Path, help="Ed25519 model signing key (default: a run-local one)")
    p.add_argument("--no-rollout", action="store_true", help="stop after the int8 comparison")
    p.add_argument("--kill-client", metavar="ID@ROUND",
                   help="fault injection: SIGKILL SuperNode ID while it holds round ROUND's train message")
    p.add_argument("--insecure", action="store_true", help="plaintext transport (tests only; default TLS)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def fl_main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    a = p.parse_args(argv)
    from shared import domain as domains

    if a.domain not in domains.names():
        p.error(f"unknown domain {a.domain!r}; registered: {', '.join(domains.names())}")
    kill = None
    if a.kill_client:
        pid, at, rnd = a.kill_client.partition("@")
        if not at or not pid.isdigit() or not rnd.isdigit():
            p.error(f"--kill-client: expected ID@ROUND (e.g. 1@2), got {a.kill_client!r}")
        kill = (int(pid), int(rnd))
    try:
        cfg = FLConfig(a.domain, clients=a.clients, rounds=a.rounds, strategy=a.strategy, quick=a.quick,
                       proximal_mu=a.mu, local_epochs=a.local_epochs, lr=a.lr, batch_size=a.batch_size, seed=a.seed,
                       min_clients=a.min_clients, round_timeout_s=a.round_timeout, out_dir=a.out, mqtt=a.mqtt,
                       signing_key=a.signing_key, rollout=not a.no_rollout, kill_client=kill, insecure=a.insecure)
    except ValueError as exc:
        p.error(str(exc))
    try:
        summary = run_federated(cfg)
    except KeyboardInterrupt:
        print("tinylarge fl: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    except FederatedRunError as exc:
        print(f"tinylarge fl: {exc}", file=sys.stderr)
        return 1
    except RunTerminated:
        print("tinylarge fl: terminated; every process it started was stopped", file=sys.stderr)
        return 143
    print(json.dumps(summary, indent=1) if a.json else format_summary(summary))
    print(f"(summary: {cfg.run_dir / 'summary.json'})", file=sys.stderr)
    return 0
