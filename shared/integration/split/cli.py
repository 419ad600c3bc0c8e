"""``tinylarge split DOMAIN --mode sl|splitfed|inference --clients N --epochs E [--quick] [--mqtt URL]``.

``sl`` / ``splitfed`` train over MQTT and print accuracy on held-out subjects beside the centralised
baseline, the payload bytes per client per epoch beside FedAvg's, and the device MACs per sample.
``inference`` trains the split model centrally, then runs split inference (int8 device layers, MQTT,
cloud model) with N devices. ``--report`` runs the whole sweep and merges the rows into
``out/integration/report.json`` (as ``make integration-report`` does for this strategy).
With no ``--mqtt`` (nor TINYLARGE_MQTT) the embedded broker is started for the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from shared import domain as domains


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinylarge split",
                                description="split learning, SplitFed and split inference over MQTT")
    p.add_argument("domain", help="a registered domain with a tiny_task")
    p.add_argument("--mode", choices=("sl", "splitfed", "inference"), default="splitfed")
    p.add_argument("--clients", type=int, default=4, help="clients (devices); each holds whole subjects")
    p.add_argument("--epochs", type=int, default=None, help="epochs (SL) or rounds (SplitFed)")
    p.add_argument("--batch", type=int, default=None, help="samples per smashed message")
    p.add_argument("--cut", type=int, default=0, help="device layers (default: all hidden layers of the tiny MLP)")
    p.add_argument("--wire", choices=("float16", "float32"), default="float16", help="training wire dtype")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds of silence before a client is skipped")
    p.add_argument("--quick", action="store_true", help="small populations (tests, demos)")
    p.add_argument("--mqtt", default=None, help="broker URL (default: env TINYLARGE_MQTT, else embedded broker)")
    p.add_argument("--report", action="store_true",
                   help="run the 2..16-client sweep, write the plot and merge rows into OUT/report.json")
    p.add_argument("--out", type=Path, default=Path("out/integration"), help="report folder")
    return p


def split_main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.domain not in domains.names():
        p.error(f"unknown domain {args.domain!r}; registered: {', '.join(domains.names())}")
    if domains.get(args.domain).hooks.tiny_task is None:
        p.error(f"domain {args.domain!r} declares no tiny_task")
    if args.clients < 1:
        p.error(f"--clients must be >= 1, got {args.clients}")
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.batch is not None and args.batch < 1:
        p.error(f"--batch must be >= 1, got {args.batch}")
    if args.timeout <= 0:
        p.error(f"--timeout must be > 0, got {args.timeout}")

    from shared.integration.report import format_table, merge_rows
    from shared.integration.split import report
    from shared.integration.split.inference import split_inference
    from shared.integration.split.train import (
        device_sizes,
        fl_bytes_per_client_round,
        prepare,
        train_centralised,
        train_sl,
        train_splitfed,
    )
    from shared.integration.task import load_task
    from shared.protocol.endpoints import mqtt_url, redact_url
    from shared.transport.broker import broker_for

    cfg = report.config_for(args.domain, args.quick, epochs=args.epochs, batch=args.batch, cut=args.cut,
                            wire_dtype=args.wire, timeout_s=args.timeout)
    if args.report:
        out = report.run_domain(args.domain, args.quick, args.mqtt, cfg=cfg)
        report.plot(out, args.out / f"split_scaling_{args.domain}.png")
        rows = report.rows_from(out)
        merge_rows(rows, args.out)
        print(format_table(rows))
        return 0
    task = load_task(args.domain, quick=args.quick)
    try:
        data = prepare(task, args.clients, cfg.test_fraction, cfg.seed)
        sizes = device_sizes(task, cfg.cut)
    except ValueError as exc:
        p.error(str(exc))
    central = train_centralised(prepare(task, 1, cfg.test_fraction, cfg.seed), cfg)
    summary: dict = {"domain": args.domain, "mode": args.mode, "clients": args.clients, "epochs": cfg.epochs,
                     "device_layers": sizes, "device_macs_per_sample": central.device.macs() if central.device else 0,
                     "centralised_acc": round(central.acc, 4), "test_subjects": data.test_subjects,
                     "fl_bytes_per_client_round": fl_bytes_per_client_round(task)}
    with broker_for(mqtt_url(args.mqtt)) as url:
        print(f"tinylarge split: broker {redact_url(url)}", file=sys.stderr)
        if args.mode == "inference":
            summary.update(split_inference(central, data, url, n_devices=args.clients))
        else:
            res = (train_sl if args.mode == "sl" else train_splitfed)(data, cfg, url)
            summary.update(res.summary(cfg.epochs))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(split_main())
