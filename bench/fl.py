"""Full federated runs on Flower for the integration report: ``python -m bench.fl``.

Per domain and strategy (default every registered domain with a ``tiny_task``, FedAvg and FedProx, 10
clients x 20 rounds, full populations) one ``tinylarge fl`` run end to end -- TLS SuperLink, one SuperNode per
training subject, held-out subjects for every figure, int8, C, signed rollout -- whose row is merged
into ``out/integration/report.json`` (strategies ``fl_fedavg`` / ``fl_fedprox``). Prints each run's
summary and the rows as a table. Runs take minutes each (a ClientApp process per message).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fl", description=__doc__.splitlines()[0])
    p.add_argument("--domains", default="", help="comma-separated (default: every registered domain with a "
                   "tiny_task)")
    p.add_argument("--strategies", default="fedavg,fedprox")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--local-epochs", type=int, default=5)
    p.add_argument("--mu", type=float, default=0.1, help="FedProx proximal weight")
    p.add_argument("--round-timeout", type=float, default=300.0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=Path("out/integration"))
    a = p.parse_args(argv)
    from shared.integration.federated.cli import format_summary, run_federated
    from shared.integration.federated.report import row
    from shared.integration.federated.runner import FLConfig
    from shared.integration.report import format_table, merge_rows, task_domains

    rows = []
    for domain in [d for d in a.domains.split(",") if d] or task_domains():
        for strategy in [s for s in a.strategies.split(",") if s]:
            t0 = time.monotonic()
            cfg = FLConfig(domain, clients=a.clients, rounds=a.rounds, strategy=strategy, quick=a.quick,
                           proximal_mu=a.mu, local_epochs=a.local_epochs, round_timeout_s=a.round_timeout,
                           connect_timeout_s=300.0, out_dir=a.out / "fl")
            summary = run_federated(cfg)
            print(format_summary(summary), flush=True)
            print(f"  ({time.monotonic() - t0:.0f} s; {cfg.run_dir / 'summary.json'})", file=sys.stderr, flush=True)
            r = row(summary)
            rows.append(r)
            merge_rows([r], a.out)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
