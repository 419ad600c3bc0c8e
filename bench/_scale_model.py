"""docs/results.md's scale tables, from ``out/bench/scale.json`` (``make bench-scale``): the measured
configurations and a capacity model computed from their measured CPU cost per message.

The capacity model (every input is in scale.json; nothing here is a measured figure):

- a domain's message rate: devices / ``window_every_s`` (the cadence its Domain declares: one window per
  device that often);
- the cost per message by stage: the median, over the measured 3-node configurations, of the CPU
  microseconds per message of the NATS servers (all three replicas together), the workers and PostgreSQL;
- cores per stage = rate x cost; machines at ``UTIL`` of ``CORES_PER_MACHINE`` cores each; workers = one
  process per core needed (a worker is one Python process, about one core); partitions = the next power of
  two >= 4 x workers and >= 8 (room to add workers without changing P, which never changes); NATS: 3 nodes
  (R3), more when their cores need more machines, in threes.

Every domain is costed at the healthcare worker's measured cost per message (the only one the benchmark
runs); a domain whose cloud model costs more per message scales its worker count by that factor.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

UTIL = 0.7  #: target utilisation of a core
CORES_PER_MACHINE = 4
SIZES = (10_000, 100_000, 1_000_000)
STAGES = ("nats", "workers", "store")
SCALE_COLUMNS = ("nodes", "workers", "partitions", "messages", "msgs_per_s", "cores_used", "msgs_per_s_per_core",
                 "p50_ms", "p99_ms", "nats_us", "workers_us", "store_us", "lost", "duplicated", "reordered",
                 "loadavg_1m")


def _f(x: Any, digits: int = 0) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def scale_table(data: dict[str, Any]) -> list[str]:
    lines = ["| " + " | ".join(SCALE_COLUMNS) + " |", "|" + "---|" * len(SCALE_COLUMNS)]
    for r in data["configurations"]:
        cells = {**r, **{f"{s}_us": r["cpu_us_per_msg"].get(s) for s in STAGES}}
        digits = {"cores_used": 2, "loadavg_1m": 1}
        lines.append("| " + " | ".join(_f(cells.get(c), digits.get(c, 0)) for c in SCALE_COLUMNS) + " |")
    lines += ["", f"{data.get('cpus')} CPUs; load average at the end {', '.join(f'{x:.1f}' for x in data['loadavg'])} "
              "(1, 5, 15 min; the machine is shared). `*_us`: CPU microseconds per message by stage."]
    return lines


def unit_costs(data: dict[str, Any]) -> dict[str, float]:
    """CPU µs per message by stage: the median over the 3-node configurations (any when none has 3)."""
    rows = [r for r in data["configurations"] if r["nodes"] == 3] or data["configurations"]
    return {s: statistics.median(r["cpu_us_per_msg"].get(s, 0.0) for r in rows) for s in STAGES}


def capacity(data: dict[str, Any]) -> list[dict[str, Any]]:
    cost = unit_costs(data)
    out = []
    for domain, every_s in sorted(data["window_every_s"].items()):
        for n in SIZES:
            rate = n / every_s
            cores = {s: rate * cost[s] / 1e6 for s in STAGES}
            workers = max(1, math.ceil(cores["workers"] / UTIL))
            partitions = max(8, 1 << math.ceil(math.log2(4 * workers)))
            nats_machines = max(3, 3 * math.ceil(cores["nats"] / (3 * UTIL * CORES_PER_MACHINE)))
            out.append({"domain": domain, "devices": n, "window_every_s": every_s, "msgs_per_s": rate,
                        "workers": workers, "worker_machines": math.ceil(workers / CORES_PER_MACHINE),
                        "partitions": partitions, "nats_nodes": nats_machines,
                        "nats_cores": cores["nats"], "store_cores": cores["store"],
                        "store_rows_per_day": rate * 86400})
    return out


def capacity_table(data: dict[str, Any]) -> list[str]:
    cost = unit_costs(data)
    cols = ("domain", "devices", "window_every_s", "msgs_per_s", "workers", "worker_machines", "partitions",
            "nats_nodes", "nats_cores", "store_cores", "store_rows_per_day")
    digits = {"msgs_per_s": 1, "nats_cores": 2, "store_cores": 2}
    lines = [f"From the measured cost per message ({', '.join(f'{s} {cost[s]:,.0f} µs' for s in STAGES)} of CPU; "
             f"the median over the 3-node runs), {CORES_PER_MACHINE}-core machines at {UTIL:.0%}; see "
             "[scale.md](scale.md#capacity-model) for the model.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in capacity(data):
        lines.append("| " + " | ".join(_f(r[c], digits.get(c, 0)) for c in cols) + " |")
    return lines


def scale_headline(data: dict[str, Any]) -> str:
    rows = data["configurations"]
    best = max(rows, key=lambda r: r["msgs_per_s"])
    bad = sum(r["lost"] + r["duplicated"] + r["reordered"] for r in rows)
    total = sum(1e6 / r["cpu_us_per_msg_total"] for r in rows if r.get("cpu_us_per_msg_total")) / len(rows)
    quick = "; quick models" if data.get("quick_models") else ""
    return (f"{len(rows)} configurations, best {best['msgs_per_s']:,.0f} msgs/s ({best['nodes']} nodes, "
            f"{best['workers']} workers), {total:,.0f} msgs/s per core used on average; lost, duplicated or "
            f"reordered: {bad}{quick}")


def capacity_headline(data: dict[str, Any]) -> str:
    rows = [r for r in capacity(data) if r["devices"] == max(SIZES)]
    parts = [f"{r['domain']} {r['workers']} workers" for r in rows]
    return f"1,000,000 devices: {', '.join(parts)} (cost per message measured on healthcare)"
