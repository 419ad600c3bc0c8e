"""``make integration-report``: every integration strategy x domain as one row, in one JSON and one table.

Each strategy module exposes ``report_rows(domain: str, quick: bool, out_dir: Path) -> list[dict]``;
:data:`STRATEGIES` names them. Rows carry :data:`ROW_FIELDS` (``value`` is the strategy's metric on
held-out subjects, ``baseline_value`` the comparison named by ``baseline``; ``bytes_on_wire`` the
traffic the strategy costs per client or device, ``device_macs_per_inference`` what the device runs)
plus any extra keys (spreads, per-k curves). :func:`merge_rows` replaces rows of the same
(strategy, domain, metric) in ``out/integration/report.json`` so strategies can be run one at a time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROW_FIELDS = ("strategy", "domain", "metric", "value", "baseline", "baseline_value", "subjects", "bytes_on_wire",
              "device_macs_per_inference")
DEFAULT_OUT = Path("out/integration")
REPORT_NAME = "report.json"

#: strategy group -> "module:function" producing rows; one group may emit several strategies' rows
STRATEGIES: dict[str, str] = {
    "distill": "shared.integration.distill:report_rows",
    "distill_labels": "shared.integration.label_fraction:report_rows",
    "transfer": "shared.integration.transfer:report_rows",
    "fed_transfer": "shared.integration.fed_transfer:report_rows",
    "fl": "shared.integration.federated.report:report_rows",
    "fl_silo": "shared.integration.federated.silo:report_rows",
    "fl_robust": "shared.integration.federated.robust:report_rows",
    "fl_dp": "shared.integration.federated.dp:report_rows",
    "split": "shared.integration.split.report:report_rows",
}


def task_domains() -> tuple[str, ...]:
    """The registered domains that offer a ``tiny_task``: what the strategies run on by default."""
    from shared import domain as domains

    return tuple(name for name, d in domains.registry().items() if d.hooks.tiny_task is not None)


def check_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` if it has every field of :data:`ROW_FIELDS`; otherwise a ValueError naming the missing ones."""
    missing = [k for k in ROW_FIELDS if k not in row]
    if missing:
        raise ValueError(f"integration report row {row.get('strategy')}/{row.get('domain')}: missing {missing}")
    return row


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (str(row["strategy"]), str(row["domain"]), str(row["metric"]))


def load_rows(out_dir: Path = DEFAULT_OUT) -> list[dict[str, Any]]:
    path = Path(out_dir) / REPORT_NAME
    if not path.exists():
        return []
    blob = json.loads(path.read_text())
    return list(blob.get("rows", []))


def merge_rows(rows: Sequence[dict[str, Any]], out_dir: Path = DEFAULT_OUT) -> list[dict[str, Any]]:
    """Add ``rows`` to the report (replacing same-key rows), written atomically; returns all rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    new = {_key(check_row(r)): r for r in rows}
    merged = [r for r in load_rows(out_dir) if _key(r) not in new] + list(new.values())
    merged.sort(key=_key)
    tmp = out_dir / (REPORT_NAME + ".tmp")
    tmp.write_text(json.dumps({"fields": list(ROW_FIELDS), "rows": merged}, indent=1, default=_json) + "\n")
    os.replace(tmp, out_dir / REPORT_NAME)
    return merged


def _json(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"not JSON-able: {type(v).__name__}")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table (the fields of :data:`ROW_FIELDS`)."""
    head = ["strategy", "domain", "metric", "value", "baseline", "baseline_value", "subjects", "bytes_on_wire",
            "device_macs"]
    body = [[_fmt(r.get(k)) for k in ROW_FIELDS] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def save_plot(fig: Any, ax: Any, path: Path) -> Path:
    """Grid, legend (lower right), tight layout; write ``path`` (folders made) and close ``fig``."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _strategy(name: str) -> Any:
    module, _, func = STRATEGIES[name].partition(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tinylarge integration-report",
                                description="run the integration strategies per domain; write "
                                            "out/integration/report.json and print one table")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help=f"comma-separated, from {', '.join(STRATEGIES)} (default: all)")
    p.add_argument("--domains", default="",
                   help="comma-separated registered domains (default: every registered domain; those without "
                   "a tiny_task are skipped)")
    p.add_argument("--quick", action="store_true", help="small populations and few epochs (tests, CI)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default out/integration)")
    args = p.parse_args(argv)
    from shared import domain as domains

    names = [s for s in args.strategies.split(",") if s]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        p.error(f"--strategies: unknown {unknown}; choose from {', '.join(STRATEGIES)}")
    wanted = [d for d in args.domains.split(",") if d] or list(domains.names())
    bad = [d for d in wanted if d not in domains.names()]
    if bad:
        p.error(f"--domains: not registered: {bad}; registered: {', '.join(domains.names())}")
    rows: list[dict[str, Any]] = []
    for name in names:
        fn = _strategy(name)
        for dom in wanted:
            if domains.get(dom).hooks.tiny_task is None:
                print(f"integration-report: {name}/{dom}: skipped (the domain declares no tiny_task)",
                      file=sys.stderr)
                continue
            t0 = time.monotonic()
            got = fn(dom, quick=args.quick, out_dir=args.out)
            print(f"integration-report: {name}/{dom}: {len(got)} rows in {time.monotonic() - t0:.0f} s",
                  file=sys.stderr)
            rows += got
            merge_rows(got, args.out)
    print(format_table(load_rows(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
