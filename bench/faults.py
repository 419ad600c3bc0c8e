"""Reliability under faults: published vs stored, exactly, while the broker, the consumer, the store
or the network fails mid-stream.

    python -m bench.faults [--devices 200] [--messages 10000] [--rate-hz 600] [--scenarios a,b,...] [--quick]

``--quick`` (CI) runs every scenario at the size the tests use (1,000 messages, short outages) into
``out/bench/faults-quick.json``. The exit status is 1 when a scenario broke its promise (lost or duplicated
where nothing may be), duplicated anything, stored a key nobody published or with another ts, or
dead-lettered a message (no scenario injects a bad one).

Starts its own Mosquitto (persistence on) and VictoriaMetrics on free loopback ports for every
scenario, runs the scenarios of :mod:`bench._fault_run` (the same code the tests run, at load), prints
a table and writes ``out/bench/faults.json``: a list of rows
``{scenario, published, stored, lost, duplicated, recovery_s, ...}``. ``promised`` says whether the
design promises ``lost == 0`` for that fault (see :mod:`bench._fault_run` for what each guarantees).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench._fault_run import EXTRA_SCENARIOS, SCENARIOS, ScenarioConfig, run_scenario
from tests.fixtures.influx import VM_BINARY, VictoriaMetrics
from tests.fixtures.mqtt import MosquittoServer

OUT_DEFAULT = Path("out/bench/faults.json")
#: ``--quick``: the tests' size (tests/shared/test_faults.py), every scenario in about two minutes
QUICK = ScenarioConfig(devices=20, messages=1000, rate_hz=300.0, fault_at=0.2, outage_s=1.0, store_outage_s=2.0,
                       settle_timeout_s=60.0, quiet_s=8.0, burst_messages=3000)
COLUMNS = (("scenario", 20), ("published", 9), ("stored", 9), ("lost", 6), ("duplicated", 10),
           ("recovery_s", 10), ("redelivered", 11), ("promised", 8))


def _find(name: str, *candidates: str) -> str:
    for path in (shutil.which(name), *candidates):
        if path and os.access(path, os.X_OK):
            return path
    raise SystemExit(f"bench.faults needs {name!r} (not found on PATH); install it first")


def table(rows: list[dict]) -> str:
    head = " ".join(f"{name:>{w}}" if i else f"{name:<{w}}" for i, (name, w) in enumerate(COLUMNS))
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = []
        for i, (name, w) in enumerate(COLUMNS):
            value = row.get(name)
            text = "-" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))
            cells.append(f"{text:>{w}}" if i else f"{text:<{w}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    defaults = QUICK if quick else ScenarioConfig()
    ap.add_argument("--devices", type=int, default=defaults.devices, help="device ids (%(default)s)")
    ap.add_argument("--messages", type=int, default=defaults.messages, help="per scenario (%(default)s)")
    ap.add_argument("--rate-hz", type=float, default=defaults.rate_hz, help="publish rate (%(default)s)")
    ap.add_argument("--outage-s", type=float, default=defaults.outage_s, help="broker/consumer/link outage")
    ap.add_argument("--store-outage-s", type=float, default=defaults.store_outage_s,
                    help="VictoriaMetrics outage (default %(default)s)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS + EXTRA_SCENARIOS),
                    help="comma-separated (default: all, %(default)s)")
    ap.add_argument("--quick", action="store_true", help="the tests' size, for CI (about two minutes); "
                    "writes faults-quick.json")
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT.with_name("faults-quick.json") if quick else OUT_DEFAULT)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, stores) for inspection")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS + EXTRA_SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS + EXTRA_SCENARIOS)}")
    cfg = replace(defaults, devices=args.devices, messages=args.messages, rate_hz=args.rate_hz,
                  outage_s=args.outage_s, store_outage_s=args.store_outage_s)
    mosquitto = _find("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
    vm_binary = _find(VM_BINARY)

    workdir = Path(tempfile.mkdtemp(prefix="tl-faults-"))
    servers: list[MosquittoServer | VictoriaMetrics] = []
    made = iter(range(1_000_000))  # every server gets a fresh folder (no state from an earlier scenario)

    def make_broker(persistence: bool = True, conf_extra: str = "") -> MosquittoServer:
        server = MosquittoServer(mosquitto, workdir / f"mosquitto{next(made)}", persistence, conf_extra)
        servers.append(server)
        return server.start()

    def make_tsdb() -> VictoriaMetrics:
        server = VictoriaMetrics(vm_binary, workdir / f"vm{next(made)}")
        servers.append(server)
        return server.start()

    print(f"fault scenarios: {cfg.devices} devices, {cfg.messages} messages each at {cfg.rate_hz:g}/s; "
          f"work folder {workdir}", flush=True)
    rows: list[dict] = []
    try:
        for name in names:
            t0 = time.monotonic()
            result = run_scenario(name, workdir, cfg, make_broker, make_tsdb,
                                  progress=lambda text: print(f"  {text}", flush=True))
            row = result.row()
            row["wall_s"] = round(time.monotonic() - t0, 1)
            row["lost_at"] = result.detail["lost_at"][:50]
            row["fault_at"] = result.detail["fault_at"]
            row["consumer_final"] = result.detail["consumer_final"]
            rows.append(row)
            print(f"  {name}: published {row['published']}, stored {row['stored']}, lost {row['lost']}, "
                  f"duplicated {row['duplicated']}, recovery {row['recovery_s']} s ({row['wall_s']} s)",
                  flush=True)
            for server in servers:
                server.kill() if isinstance(server, MosquittoServer) else server.stop()
            servers.clear()
    finally:
        for server in servers:
            server.kill() if isinstance(server, MosquittoServer) else server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print()
    print(table(rows))
    print(f"\nwrote {args.out}")
    broken = failures(rows)
    for line in broken:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if broken else 0


def failures(rows: list[dict]) -> list[str]:
    """What no scenario may show: loss where lossless is promised, and anywhere duplicates, phantom keys,
    another ts, or dead letters (the load sends only valid messages)."""
    out = []
    for r in rows:
        bad = {k: r.get(k) for k in ("duplicated", "phantom", "ts_mismatch", "deadletters") if r.get(k)}
        if r["promised"] and r["lost"]:
            bad["lost"] = r["lost"]
        if bad:
            out.append(f"{r['scenario']}: " + ", ".join(f"{v} {k}" for k, v in bad.items()))
    return out


if __name__ == "__main__":
    sys.exit(main())
