"""Split learning, SplitFed and split inference at full size, into ``out/integration/report.json``.

    python -m bench.split [--domains healthcare,industrial_iot] [--quick] [--mqtt URL]

For each domain (default: every registered domain with a ``tiny_task``): the centralised baseline, SL
and SplitFed over MQTT with 2, 4, 8 and 16 clients (epochs and batch per domain:
``shared.integration.split.report.FULL_EPOCHS`` / ``FULL_BATCH``), split inference on the 4-client SL
model; rows merged into the report (strategies ``sl``, ``splitfed``, ``split_inference``), plots
``out/integration/split_scaling_<domain>.png``, one table printed.
With no ``--mqtt`` it starts its own Mosquitto (TCP_NODELAY on, persistence off) on a free loopback
port, or the embedded broker where Mosquitto is not installed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.integration.report import DEFAULT_OUT, format_table, load_rows, merge_rows, task_domains
from shared.integration.split import report


@contextmanager
def _broker(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    if exe is None:
        print("bench.split: no mosquitto; using the embedded broker", file=sys.stderr)
        yield None
        return
    from tests.fixtures.mqtt import MosquittoServer

    with tempfile.TemporaryDirectory(prefix="split-mosquitto-") as tmp:
        server = MosquittoServer(exe, Path(tmp), persistence=False, conf_extra="set_tcp_nodelay true")
        server.start()
        try:
            yield server.url
        finally:
            server.kill()


def markdown(rows: list[dict]) -> str:
    """The split rows as the Markdown tables of docs/integration/split.md (headline, then scaling)."""
    mine = [r for r in rows if r["strategy"] in ("sl", "splitfed", "split_inference")]
    fl = {(r["domain"], r["strategy"]): r for r in rows if r["strategy"] in ("fl_fedavg", "fl_fedprox")}
    out = ["| domain | strategy | clients | acc | baseline | bytes / client / epoch | FedAvg bytes / client / round "
           "| FedAvg acc | device MACs / sample |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(mine, key=lambda r: (r["domain"], r["strategy"])):
        fedavg = fl.get((r["domain"], "fl_fedavg"))
        fl_acc = "-" if fedavg is None else f"{fedavg['value']:.3f}"
        unit = " / window" if r["strategy"] == "split_inference" else ""
        out.append(f"| {r['domain']} | {r['strategy']} | {r['clients']} | {r['value']:.3f} | "
                   f"{r['baseline']} {r['baseline_value']:.3f} | {r['bytes_on_wire']:,.0f}{unit} | "
                   f"{r['fl_bytes_per_client_round']:,} | {fl_acc} | "
                   f"{r['device_macs_per_inference']:,} |")
    out += ["", "| domain | strategy | " + " | ".join(f"{n} clients: acc, bytes/client/epoch" for n in (2, 4, 8, 16))
            + " |", "|---|---|---|---|---|---|"]
    for r in sorted(mine, key=lambda r: (r["domain"], r["strategy"])):
        if "scaling" not in r:
            continue
        cells = [f"{s['acc']:.3f}, {s['bytes_per_client_epoch']:,}" if (s := r["scaling"].get(str(n))) else "-"
                 for n in (2, 4, 8, 16)]
        out.append(f"| {r['domain']} | {r['strategy']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.split", description=__doc__.split("\n\n")[0])
    p.add_argument("--domains", default="", help="comma-separated (default: every registered domain with a "
                   "tiny_task)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--mqtt", default=None, help="broker URL (default: a private Mosquitto)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--markdown", action="store_true", help="only print the Markdown tables of OUT/report.json")
    p.add_argument("--epochs", type=int, default=None, help="override the per-domain epochs")
    p.add_argument("--batch", type=int, default=None, help="override the per-domain batch size")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(load_rows(args.out)))
        return 0
    rows = []
    with _broker(args.mqtt) as url:
        for domain in [d for d in args.domains.split(",") if d] or task_domains():
            t0 = time.monotonic()
            cfg = report.config_for(domain, args.quick, epochs=args.epochs, batch=args.batch)
            got = report.report_rows(domain, args.quick, args.out, url=url, cfg=cfg)
            merge_rows(got, args.out)
            rows += got
            print(f"bench.split: {domain}: {len(got)} rows in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
