"""The firmware report's board columns (:mod:`shared.tiny.report`): instructions per inference on each core, and
every domain's app built for every board row.

* :func:`core_insns`: the benchmark (firmware/targets/cortex-m4/bench_main.c) of one compiled model, built for an
  MPS2 row's core (``make mps2-bench``: Cortex-M7 on AN500, Cortex-M33 on AN505, both with the DSP extension) and
  run under ``qemu-system-arm -icount shift=0``, read like the Cortex-M4 column (SysTick calibrated against a loop
  of known length: instructions, not cycles).
* :func:`app_sizes`: each registered domain's app (with every model it declares, trained or a stand-in) built for
  each row of :data:`shared.tiny.boards.BOARDS`: flash, RAM (static + stack reserve) and CCM against the row, or
  why it does not fit (the linker's overflowing region) or does not build.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from shared.tiny.targets import FirmwareError, make, run_qemu

#: the report's per-core columns: core -> the board row whose QEMU machine runs it (the M4: the report's own run)
CORE_BOARDS = {"cortex-m7": "mps2-an500", "cortex-m33": "mps2-an505"}


def bench_insns(serial_and_log: str) -> dict:
    """Instructions per inference (and per SysTick tick) from a TLBENCH line."""
    m = re.search(r"TLBENCH (.*)", serial_and_log)
    if not m:
        raise FirmwareError("no TLBENCH line in the bench output")
    kv = dict(item.split("=", 1) for item in m.group(1).split())
    per_tick = int(kv["cal_insns"]) / int(kv["cal_ticks"])
    return {"insns_per_inference": round(int(kv["ticks"]) / int(kv["runs"]) * per_tick), "insns_per_tick": per_tick,
            "stack_bytes": int(kv["stack_bytes"])}


def core_insns(cname: str, model_dir: Path, work: Path, core: str) -> int:
    """Instructions per inference of the compiled model ``cname`` (in ``model_dir``) on ``core``'s board row."""
    from shared.tiny.boards import get

    board = get(CORE_BOARDS[core])
    out = Path(work) / board.name / cname
    make(board.family, model_dir, [cname], out, goal="mps2-bench", variables=board.make_vars())
    run = run_qemu(out / "bench.elf", icount=True, timeout_s=300, machine=board.qemu_machine)
    if run.returncode != 0:
        raise FirmwareError(f"bench on {board.name} failed ({run.returncode}): {run.stderr[-300:]}")
    return int(bench_insns(run.serial.decode(errors="replace") + run.stderr)["insns_per_inference"])


def app_sizes(work: Path, apps: list[str] | None = None, boards: list[str] | None = None) -> list[dict]:
    """One row per (app, board): the image's flash / RAM / CCM use, ``fits``, and ``reason`` when it does not."""
    from shared.domain import names
    from shared.tiny.board_build import app_models, build_board
    from shared.tiny.boards import BOARDS

    rows = []
    for app in apps or names():
        try:
            models = app_models(app, Path(work) / "standins")
        except Exception as exc:  # noqa: BLE001 - reported in the rows
            rows += [{"app": app, "board": b, "fits": False, "error": f"models: {exc}"[:300]}
                     for b in boards or BOARDS]
            continue
        for name in boards or BOARDS:
            print(f"  app {app} on {name}", file=sys.stderr, flush=True)
            row: dict = {"app": app, "board": name, "core": BOARDS[name].core,
                         "models": [m.path.name for m in models],
                         "trained": all("standin" not in m.path.name for m in models)}
            try:
                res = build_board(name, app, models, Path(work) / "apps")
                row.update(fits=True, **{k: v for k, v in res.size.as_dict().items() if k != "board"})
            except FirmwareError as exc:
                text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if "does not fit" in text:
                    row.update(fits=False, reason=text.split(": ", 1)[-1].split(". Use")[0])
                else:
                    row.update(fits=False, error=text[:300])
            rows.append(row)
    return rows


def _kb(v: int | None) -> str:
    return "-" if v is None else f"{v / 1024:.1f}"


def apps_table(rows: list[dict]) -> str:
    """Text: app x board, flash / RAM (static + stack) / CCM in KB of the row's, or why not."""
    lines = [f"{'app':>15} {'board':>18} {'core':>10}  flash KB          RAM KB (static+stack)  CCM KB"]
    for r in rows:
        head = f"{r['app']:>15} {r['board']:>18} {r.get('core', ''):>10}  "
        if r.get("fits"):
            ram = r["ram_static"] + r["stack_reserved"]
            ccm = f"{_kb(r['ccm_used'])} / {_kb(r['ccm_total'])}" if r.get("ccm_total") else "-"
            lines.append(head + f"{_kb(r['flash_used']):>7} / {_kb(r['flash_total']):<7} "
                         f"{_kb(ram):>7} / {_kb(r['ram_total']):<14} {ccm}")
        else:
            lines.append(head + ("does not fit: " + r["reason"] if "reason" in r else "error: " + r["error"])[:170])
    return "\n".join(lines)


def apps_markdown(rows: list[dict]) -> str:
    """The README/results table: one row per app, one column per board (flash / RAM KB, or why not)."""
    boards = list(dict.fromkeys(r["board"] for r in rows))
    head = "| app | " + " | ".join(f"`{b}`" for b in boards) + " |"
    lines = [head, "|" + "---|" * (len(boards) + 1)]
    for app in dict.fromkeys(r["app"] for r in rows):
        cells = []
        for b in boards:
            r = next((x for x in rows if x["app"] == app and x["board"] == b), None)
            if r is None:
                cells.append("-")
            elif r.get("fits"):
                ccm = f" + {_kb(r['ccm_used'])} CCM" if r.get("ccm_used") else ""
                cells.append(f"{_kb(r['flash_used'])} / {_kb(r['ram_static'] + r['stack_reserved'])}{ccm}")
            else:
                cells.append("does not fit: " + r["reason"] if "reason" in r else "error")
        lines.append(f"| `{app}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
