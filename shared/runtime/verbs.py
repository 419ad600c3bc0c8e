"""The four verbs every domain gets, written once: ``tinylarge demo|serve|device|train DOMAIN``.

Each reads what differs from the domain's declaration and hooks (:mod:`shared.domain`); every domain's
``--help`` shows the same flags (a scenario may add its own, in a group of their own, to ``demo`` and
``device``). No flag is taken by abbreviation.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared.runtime.cloud import serve_main
from shared.runtime.demo import demo_main


def train_main(domain: str, argv: Sequence[str] | None = None) -> int:
    """``tinylarge train DOMAIN``: train the tiny and large models (``--if-needed``: only when stale)."""
    from shared.domain import get

    d = get(domain)
    ap = argparse.ArgumentParser(prog=f"tinylarge train {domain}", allow_abbrev=False,
                                 description=f"{d.name}: train the device model ({d.tiny_model}, int8) and the cloud "
                                 f"model ({d.large_model})")
    ap.add_argument("--models", type=Path, default=d.models_dir, help="output folder (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="small populations, few epochs (well under a minute)")
    ap.add_argument("--if-needed", action="store_true", help="skip training when the stamp is up to date")
    ap.add_argument("--json", action="store_true", help="print the metrics as JSON (for machines) instead of a table")
    args = ap.parse_args(argv)
    what = "quick" if args.quick else "full"
    print(f"{d.name}: training the {what} models into {args.models}", file=sys.stderr if args.json else sys.stdout,
          flush=True)
    t0 = time.monotonic()
    hooks = d.hooks
    metrics = (hooks.ensure_trained if args.if_needed else hooks.train)(args.models, quick=args.quick)
    from shared.cli import emit_summary

    rows = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    emit_summary(f"{d.name} models ({what})", metrics if args.json else rows, args.json)
    print(f"{d.name}: models in {args.models} ({time.monotonic() - t0:.0f} s)", file=sys.stderr if args.json
          else sys.stdout, flush=True)
    return 0


def device_main(domain: str, argv: Sequence[str] | None = None) -> int:
    """``tinylarge device DOMAIN``: simulated devices (and the domain's site) publishing to a broker."""
    import os

    from shared.cli import add_endpoint_args
    from shared.domain import get
    from shared.runtime.app import check_endpoints, require_models
    from shared.runtime.demo import _device_fleet, _Site, settle_args
    from shared.runtime.scenario import DemoRun

    d = get(domain)
    scen_cls = d.hooks.scenario
    ap = argparse.ArgumentParser(prog=f"tinylarge device {domain}", allow_abbrev=False,
                                 description=f"{d.name}: simulated devices running the int8 model "
                                 f"({d.tiny_model}) against a broker")
    ap.add_argument("--subjects", type=int, default=5, help=f"{d.subject}s, one device each (default 5)")
    ap.add_argument("--duration", default="24h", help="simulated span with a unit: 30m, 24h, 21d (default 24h)")
    ap.add_argument("--speed", type=float, default=3600.0, help="simulated seconds per wall second (default 3600)")
    ap.add_argument("--seed", type=int, default=7, help="the population's seed (default 7)")
    ap.add_argument("--models", type=Path, default=d.models_dir, help="trained models folder (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="if the models are missing, train quick ones first")
    add_endpoint_args(ap)
    scen_cls.add_arguments(ap.add_argument_group(f"{d.name}'s own options"))
    args = ap.parse_args(argv)
    settle_args(ap, args, scen_cls.full.extra)
    if args.subjects < 1 or not args.speed > 0:
        ap.error("--subjects must be >= 1 and --speed > 0")
    mqtt = args.mqtt or os.environ.get("TINYLARGE_MQTT")
    if not mqtt:
        ap.error("--mqtt (or TINYLARGE_MQTT) is required: devices connect to the broker the service uses")
    check_endpoints(args)
    require_models(d.name, args.models, args.quick)
    metrics = d.hooks.ensure_trained(args.models, quick=args.quick)
    run = DemoRun(args=args, domain=d, metrics=metrics)
    scen = scen_cls(run)
    run.subjects = list(scen.population())
    run.ticks = [float(t) for t in scen.ticks()]
    run.day0_ms = scen.day0_ms()
    run.start_ms = {s.id: scen.start_ms(s, run.day0_ms) for s in run.subjects}
    fleet = _device_fleet(d, args, mqtt, run.subjects, run.start_ms)
    site = _Site(args, mqtt, d, scen.site_feed(run.subjects, run.start_ms))
    fleet.start()
    site.start()
    try:
        t0 = time.monotonic()
        for t_s in run.ticks:
            site.step(t_s)
            fleet.step_all(t_s)
            time.sleep(max(0.0, t0 + t_s / args.speed - time.monotonic()))
    finally:
        fleet.stop()
        site.stop()
    extra = f" and {site.published} site messages" if site.published else ""
    print(f"published {fleet.published} inferences{extra} from {len(fleet.devices)} {d.subject}s", flush=True)
    return 0


#: verb -> main(domain, argv)
MAINS: dict[str, Callable[[str, Sequence[str] | None], Any]] = {
    "demo": demo_main, "serve": serve_main, "device": device_main, "train": train_main}
