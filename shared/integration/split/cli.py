"""``tinylarge split DOMAIN --mode sl|splitfed|inference --clients N --epochs E [--quick] [--mqtt URL] [--json]``.

``sl`` / ``splitfed`` train over MQTT and print accuracy on held-out subjects beside the centralised
baseline, the payload bytes per client per epoch beside FedAvg's, and the device MACs per sample.
``inference`` trains the split model centrally, then runs split inference (int8 device layers, MQTT,
cloud model) with N devices. ``--report`` runs the whole sweep and merges the rows into
``out/integration/report.json`` (as ``make integration-report`` does for this strategy).
With no ``--mqtt`` (nor TINYLARGE_MQTT) the embedded broker is started for the run; a given broker is
checked (URL, then one connection) before any training. The result prints as the summary table, or as
JSON with ``--json``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from shared.cli import HelpFormatter, add_alias, add_domain_arg, add_json_arg

    p = argparse.ArgumentParser(prog="tinylarge split", formatter_class=HelpFormatter, allow_abbrev=False,
                                description="split learning, SplitFed and split inference over MQTT")
    add_domain_arg(p, needs="tiny_task")
    p.add_argument("--mode", choices=("sl", "splitfed", "inference"), default="splitfed",
                   help="sl: clients in turn; splitfed: in parallel, device halves averaged each round; "
                   "inference: split inference with the centrally trained model")
    p.add_argument("--clients", type=int, default=4, help="clients (devices); each holds whole subjects")
    p.add_argument("--epochs", type=int, default=None, help="epochs (SL) or rounds (SplitFed) (default: the "
                   "domain's)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per smashed message (default: the "
                   "domain's)")
    add_alias(p, "--batch", "--batch-size", type=int)
    p.add_argument("--cut", type=int, default=0, help="device layers (0: all hidden layers of the tiny MLP)")
    p.add_argument("--wire", choices=("float16", "float32"), default="float16", help="training wire dtype")
    p.add_argument("--timeout-s", type=float, default=10.0, help="seconds of silence before a client is skipped")
    add_alias(p, "--timeout", "--timeout-s", type=float)
    p.add_argument("--quick", action="store_true", help="small populations (tests, demos)")
    p.add_argument("--mqtt", default=None, help="broker URL (default: env TINYLARGE_MQTT, else an embedded broker)")
    p.add_argument("--ca", help="CA certificate for mqtts:// (e.g. the ca.crt of tinylarge pki)")
    p.add_argument("--cert", help="client certificate (PEM) for mqtts://, used by the cloud and every device link")
    p.add_argument("--key", help="client private key (PEM) for mqtts://")
    p.add_argument("--report", action="store_true",
                   help="run the 2..16-client sweep, write the plot and merge rows into OUT/report.json")
    p.add_argument("--out", type=Path, default=Path("out/integration"), help="report folder")
    add_json_arg(p)
    return p


def split_main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import domain_arg, emit_summary
    from shared.errors import UserError
    from shared.protocol.endpoints import mqtt_url, redact_url

    p = _parser()
    args = p.parse_args(argv)
    args.domain = domain_arg(args, "split", needs="tiny_task").name
    for flag, value in (("--clients", args.clients), ("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise UserError(f"{flag}: must be >= 1, got {value}")
    if not args.timeout_s > 0:
        raise UserError(f"--timeout-s: must be > 0, got {args.timeout_s:g}")
    from shared.runtime.app import check_broker, check_endpoints

    check_endpoints(args)  # the URL; --ca / --cert / --key: files that load, a pair that matches
    url = mqtt_url(args.mqtt)
    if url:
        check_broker(args, url, role="split-check")
    tls = {k: v for k, v in (("ca", args.ca), ("cert", args.cert), ("key", args.key)) if v}

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
    from shared.transport.broker import broker_for

    cfg = report.config_for(args.domain, args.quick, epochs=args.epochs, batch=args.batch_size, cut=args.cut,
                            wire_dtype=args.wire, timeout_s=args.timeout_s, tls=tls or None)
    if args.report:
        out = report.run_domain(args.domain, args.quick, args.mqtt, cfg=cfg)
        report.plot(out, args.out / f"split_scaling_{args.domain}.png")
        rows = report.rows_from(out)
        merge_rows(rows, args.out)
        if args.json:
            import json

            print(json.dumps(rows, indent=1, default=str))
        else:
            print(format_table(rows))
        return 0
    print(f"split: {args.domain} task, {args.clients} clients; centralised baseline first", file=sys.stderr,
          flush=True)
    task = load_task(args.domain, quick=args.quick)
    try:
        data = prepare(task, args.clients, cfg.test_fraction, cfg.seed)
        sizes = device_sizes(task, cfg.cut)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    central = train_centralised(prepare(task, 1, cfg.test_fraction, cfg.seed), cfg)
    summary: dict = {"domain": args.domain, "mode": args.mode, "clients": args.clients, "epochs": cfg.epochs,
                     "device_layers": sizes, "device_macs_per_sample": central.device.macs() if central.device else 0,
                     "centralised_acc": round(central.acc, 4), "test_subjects": data.test_subjects,
                     "fl_bytes_per_client_round": fl_bytes_per_client_round(task)}
    with broker_for(url) as url:
        print(f"split: {args.mode} over broker {redact_url(url)}", file=sys.stderr, flush=True)
        if args.mode == "inference":
            summary.update(split_inference(central, data, url, n_devices=args.clients, tls=tls))
        else:
            res = (train_sl if args.mode == "sl" else train_splitfed)(data, cfg, url)
            summary.update(res.summary(cfg.epochs))
    emit_summary(f"{args.domain} split ({args.mode}): {args.clients} clients", summary, args.json)
    return 0


if __name__ == "__main__":
    from shared.cli import guarded

    raise SystemExit(guarded(split_main))
