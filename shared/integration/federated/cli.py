"""``tinylarge fl DOMAIN --clients N --rounds R [--strategy S] [--sites K --alpha A] [--poison N --attack A]
[--dp-noise Z --dp-clip C] [--quick] [--json]``.

``--sites``: cross-silo (:mod:`.silo`); ``--poison``: poisoned clients (:mod:`.robust`); ``--dp-noise``:
Flower's server-side fixed-clipping DP wrapper, with the privacy accounting in the summary (:mod:`.dp`).

Runs one federated training on Flower's deployment engine end to end (see
:mod:`shared.integration.federated.runner`), compares it (see :mod:`shared.integration.federated.compare`),
writes ``summary.json`` in the run folder and prints the summary table (``--json``: the whole summary).
Progress goes to stderr: each step, and one line per round as the ServerApp scores it. Everything the
user gives (the domain and its ``tiny_task``, the numbers, ``--mqtt``, ``--signing-key``) is checked
before any work starts. Exit codes: 0 done, 1 the run failed, 2 a mistake on the command line (one line),
130 interrupted (every process it started is stopped either way).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.integration.federated.runner import (
    STRATEGIES,
    FederatedRunError,
    FLConfig,
    RunTerminated,
    config_dict,
    run_flower,
)


def run_federated(cfg: FLConfig) -> dict[str, Any]:
    """Flower run, then baselines, traffic, int8 and rollout; the summary (also in ``run_dir/summary.json``)."""
    from shared.integration.federated import compare

    t0 = time.monotonic()
    fl = run_flower(cfg)
    fl_seconds = time.monotonic() - t0
    log = logging.getLogger("tinylarge.fl")
    log.info(f"Flower done in {fl_seconds:.0f} s; centralised and per-client baselines on the same subjects")
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
    if cfg.sites is not None:
        summary.update({k: fl.meta[k] for k in ("sites", "site_windows", "site_labels", "label_skew_tv", "alpha")})
        summary["training_subjects"] = sum(len(v) for v in fl.meta["sites"].values())
    if cfg.dp_noise is not None:
        from shared.integration.federated.dp import accounting

        summary["privacy"] = accounting(cfg.dp_noise, summary["traffic"]["rounds"], cfg.clients, cfg.dp_clip)
    log.info("int8 conversion" + ("" if not cfg.rollout else " and the signed rollout"))
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


#: the summary table's rows (nested ones as a.b); --json prints everything
TABLE_KEYS = ("federated_accuracy", "int8_accuracy", "centralised_accuracy", "client_alone_mean", "client_alone_std",
              "client_alone_min", "client_alone_max", "rounds_to_within_1pt", "traffic.rounds",
              "traffic.client_received_bytes_per_round", "traffic.client_sent_bytes_per_round",
              "traffic.client_received_array_bytes_per_round", "traffic.client_sent_array_bytes_per_round",
              "device_macs_per_inference", "params", "rollout.model_id", "rollout.published", "rollout.via",
              "rollout.accepted", "rollout.c_compiler", "flower_seconds", "seconds")


def parser() -> argparse.ArgumentParser:
    from shared.cli import HelpFormatter, add_alias, add_domain_arg, add_json_arg

    p = argparse.ArgumentParser(prog="tinylarge fl", formatter_class=HelpFormatter, allow_abbrev=False,
                                description="federated learning of a domain's tiny model on Flower (SuperLink + "
                                "one SuperNode per subject, TLS, loopback), then int8 and a signed rollout")
    add_domain_arg(p, needs="tiny_task")
    p.add_argument("--clients", type=int, default=3, help="SuperNodes, one training subject each")
    p.add_argument("--rounds", type=int, default=5, help="federated rounds")
    p.add_argument("--strategy", choices=STRATEGIES, default="fedavg",
                   help="Flower's aggregation strategy (fedprox adds a proximal term of weight --mu; fedadam/fedyogi "
                   "adaptive server optimisers; fedmedian/fedtrimmedavg/krum robust to poisoned clients)")
    p.add_argument("--sites", type=int, help="cross-silo: K sites of many subjects each (replaces --clients), "
                   "non-IID by a Dirichlet split of the subjects' conditions")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of --sites (small: skewed)")
    p.add_argument("--poison", type=int, default=0, help="the last N clients attack in every round")
    p.add_argument("--attack", choices=("flip", "scale"), default="flip",
                   help="poisoned clients flip their labels, or send a scaled update (--attack-scale)")
    p.add_argument("--attack-scale", type=float, default=-10.0, help="factor on a scale attacker's update")
    p.add_argument("--dp-noise", type=float, help="differential privacy: Flower's server-side fixed clipping with "
                   "this Gaussian noise multiplier (FedAvg, equal weights); epsilon in the summary")
    p.add_argument("--dp-clip", type=float, default=1.0, help="L2 clipping norm of each client's update (--dp-noise)")
    p.add_argument("--mu", type=float, default=0.1, help="FedProx proximal weight")
    p.add_argument("--local-epochs", type=int, default=5, help="epochs per client per round")
    p.add_argument("--lr", type=float, default=0.01, help="client Adam learning rate")
    p.add_argument("--batch-size", type=int, default=32, help="client mini-batch size")
    p.add_argument("--min-clients", type=int, help="rounds go on with at least this many nodes (default: N/2)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="seconds a round waits for replies")
    add_alias(p, "--round-timeout", "--timeout-s", type=float)
    p.add_argument("--seed", type=int, default=0, help="seed of the partitions, the initial model and the clients")
    p.add_argument("--quick", action="store_true", help="the domain's small populations (tests, CI)")
    p.add_argument("--out", type=Path, default=Path("out/integration/fl"), help="runs folder")
    p.add_argument("--mqtt", help="publish the signed update to this broker URL (default: in-process device slots)")
    p.add_argument("--signing-key", type=Path, help="Ed25519 model signing key, PEM, with model_signing.pub beside "
                   "it (default: a run-local pair)")
    p.add_argument("--no-rollout", action="store_true", help="stop after the int8 comparison")
    p.add_argument("--kill-client", metavar="ID@ROUND",
                   help="fault injection: SIGKILL SuperNode ID while it holds round ROUND's train message")
    p.add_argument("--insecure", action="store_true", help="plaintext transport (tests only; default TLS)")
    add_json_arg(p)
    return p


def _check_signing_key(path: Path) -> None:
    """The key signs, and model_signing.pub beside it is what devices will verify with: checked up front."""
    from shared.errors import UserError
    from shared.security.model_update import PUBLIC_NAME, ModelUpdateError, load_private_key, load_public_key

    if not path.is_file():
        raise UserError(f"--signing-key: no such file {path}")
    public = path.with_name(PUBLIC_NAME)
    try:
        key = load_private_key(path)
    except (ValueError, TypeError, ModelUpdateError) as exc:
        raise UserError(f"--signing-key: {path} is not an unencrypted Ed25519 private key (PEM; "
                        f"{type(exc).__name__})") from None
    if not public.is_file():
        raise UserError(f"--signing-key: {public} is missing (the public key devices verify with goes beside it)")
    try:
        pub = load_public_key(public)
    except (ValueError, TypeError, ModelUpdateError) as exc:
        raise UserError(f"--signing-key: {public} is not an Ed25519 public key (PEM): {exc}") from None
    if pub.public_bytes_raw() != key.public_key().public_bytes_raw():
        raise UserError(f"--signing-key: {public} does not belong to {path}")


def fl_main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import domain_arg, emit_summary
    from shared.errors import UserError

    a = parser().parse_args(argv)
    d = domain_arg(a, "fl", needs="tiny_task")
    kill = None
    if a.kill_client:
        pid, at, rnd = a.kill_client.partition("@")
        if not at or not pid.isdigit() or not rnd.isdigit():
            raise UserError(f"--kill-client: expected ID@ROUND (e.g. 1@2), got {a.kill_client!r}")
        kill = (int(pid), int(rnd))
    if not a.timeout_s > 0:
        raise UserError(f"--timeout-s: must be > 0, got {a.timeout_s:g}")
    try:
        cfg = FLConfig(d.name, clients=a.clients, rounds=a.rounds, strategy=a.strategy, quick=a.quick,
                       proximal_mu=a.mu, local_epochs=a.local_epochs, lr=a.lr, batch_size=a.batch_size, seed=a.seed,
                       min_clients=a.min_clients, round_timeout_s=a.timeout_s, out_dir=a.out, mqtt=a.mqtt,
                       signing_key=a.signing_key, rollout=not a.no_rollout, kill_client=kill, insecure=a.insecure,
                       sites=a.sites, alpha=a.alpha, poison=a.poison, attack=a.attack, attack_scale=a.attack_scale,
                       dp_noise=a.dp_noise, dp_clip=a.dp_clip)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if a.signing_key is not None and not a.no_rollout:
        _check_signing_key(a.signing_key)
    if a.mqtt and not a.no_rollout:
        from shared.protocol.endpoints import parse_mqtt_url
        from shared.runtime.app import check_broker

        try:
            parse_mqtt_url(a.mqtt)
        except ValueError as exc:
            raise UserError(f"--mqtt: {exc}") from None
        check_broker(None, a.mqtt, role="fl-check")  # the rollout needs it after minutes of training
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fl: %(message)s"))
    log = logging.getLogger("tinylarge.fl")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
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
    finally:
        log.removeHandler(handler)
    title = (f"{summary['domain']} {summary['strategy']}: {len(summary['clients'])} clients x "
             f"{summary['traffic']['rounds']} rounds, {len(summary['held_out'])} held-out")
    keys = [k for k in TABLE_KEYS if not k.startswith("rollout.") or "rollout" in summary]
    if "label_skew_tv" in summary:
        keys += ["label_skew_tv", "training_subjects"]
    if "privacy" in summary:
        keys += ["privacy.noise_multiplier", "privacy.epsilon", "privacy.epsilon_rdp", "privacy.delta"]
    emit_summary(title, summary, a.json, keys=keys)
    print(f"(summary: {cfg.run_dir / 'summary.json'})", file=sys.stderr)
    return 0
