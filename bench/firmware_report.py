"""Firmware footprint report: ``make firmware-report`` -> out/firmware/report.json and a table.

For every model (models/*/tiny.tflite when trained, the healthcare stand-in otherwise, plus the
compiler's test models of tests/firmware/_models.py when importable) it compiles the model with
shared.compiler, builds it with the runtime for the Cortex-M4 and measures:

* flash_bytes: text + data of the model and runtime objects linked alone with --gc-sections from
  NAME_invoke (arm-none-eabi-size: what a firmware image keeps, libc/libgcc helpers included);
  flash_objects_bytes: the same objects unlinked (every runtime kernel, used or not);
* ram_bytes: data + bss of those objects (the tensor arena lives in the model's bss) + the stack
  high-water of one inference, measured under QEMU by painting the stack;
* insns_per_inference: instructions per inference on the Cortex-M4 under ``qemu-system-arm -icount
  shift=0`` (1 ns of virtual time per instruction), read with SysTick on the 25 MHz core clock and
  calibrated against a loop of known length (QEMU does not emulate the DWT cycle counter; an
  instruction count is not a cycle count);
* tflm_arena_bytes: the arena TensorFlow Lite Micro's recording allocator reports for the same model
  (tflite-micro Python package; on the 64-bit host, so pointers are 8 bytes there, 4 on the M4),
  and the ratio ram_bytes / tflm_arena_bytes (goal <= 0.75);
* tflite_bytes: the flatbuffer TFLM keeps in flash; flash_vs_tflm = flash_bytes / (tflite_bytes +
  TFLM_CORE_FLASH_BYTES), the latter TFLM's documented core runtime size ("fits in just 16 KB on an
  Arm Cortex M3", https://ai.google.dev/edge/litert/microcontrollers/overview; kernels come on top, so
  the ratio favours TFLM); flash_vs_tflite compares against the flatbuffer alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from shared.firmware_tools import REPO, FirmwareError, compile_model, healthcare_tflite, make, run_qemu

OUT_DEFAULT = REPO / "out" / "firmware"
TFLM_CORE_FLASH_BYTES = 16 * 1024
_TFLM_PROBE = ("import sys\nfrom tflite_micro.python.tflite_micro import runtime\n"
               "runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read()).print_allocations()\n")


def collect_models(work: Path, test_models: bool = True) -> dict[str, Path]:
    """name -> .tflite path."""
    models: dict[str, Path] = {}
    for p in sorted((REPO / "models").glob("*/tiny.tflite")):
        models[f"{p.parent.name}_tiny"] = p
    if "healthcare_tiny" not in models:
        models["healthcare_standin"] = healthcare_tflite(work)
    if test_models:
        try:
            sys.path.insert(0, str(REPO))
            from tests.firmware import _models
        except ImportError as exc:  # the compiler's test models are optional here
            print(f"note: test models not importable ({exc})", file=sys.stderr)
        else:
            for name, buf in _models.build_all().items():
                path = work / f"test_{name}.tflite"
                path.write_bytes(buf)
                models[f"test_{name}"] = path
    return models


def tflm_arena_bytes(tflite: Path) -> int | None:
    """Arena total reported by TFLM's RecordingMicroAllocator (printed from C++, so run apart)."""
    res = subprocess.run([sys.executable, "-c", _TFLM_PROBE, str(tflite)], capture_output=True, text=True,
                         timeout=120)
    m = re.search(r"Arena allocation total (\d+) bytes", res.stdout + res.stderr)
    return int(m.group(1)) if m else None


def _size_totals(path: Path) -> tuple[int, int, int, int, int]:
    """(objects text, data, bss, linked text, linked data) from the Makefile's model_runtime.size."""
    txt = path.read_text()
    m = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+\w+\s+\(TOTALS\)", txt, re.M)
    linked = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+\w+\s+\S*_linked\.elf", txt, re.M)
    if not m or not linked:
        raise FirmwareError(f"unexpected size output in {path}:\n{txt}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), int(linked.group(1)), int(linked.group(2))


def measure(name: str, tflite: Path, work: Path) -> dict:
    cname = re.sub(r"\W", "_", name).lower()
    row: dict = {"model": name, "tflite": str(tflite), "tflite_bytes": tflite.stat().st_size}
    try:
        model_dir = compile_model(tflite, cname, work / "model" / cname)
        out = work / "m4" / cname
        make("cortex-m4", model_dir, cname, out, "bench@1", goal="cortex-m4-bench")
        text, data, bss, linked_text, linked_data = _size_totals(out / "model_runtime.size")
        run = run_qemu(out / "bench.elf", icount=True, timeout_s=300)
        m = re.search(r"TLBENCH (.*)", run.serial.decode(errors="replace") + run.stderr)
        if run.returncode != 0 or not m:
            raise FirmwareError(f"bench run failed ({run.returncode}): {run.stderr[-500:]}")
        kv = dict(item.split("=", 1) for item in m.group(1).split())
        insns_per_tick = int(kv["cal_insns"]) / int(kv["cal_ticks"])
        stack = int(kv["stack_bytes"])
        row.update(flash_bytes=linked_text + linked_data, flash_objects_bytes=text + data, bss_bytes=bss,
                   arena_bytes=int(kv["arena"]), stack_bytes=stack, ram_bytes=data + bss + stack,
                   insns_per_inference=round(int(kv["ticks"]) / int(kv["runs"]) * insns_per_tick),
                   insns_per_tick=insns_per_tick)
    except Exception as exc:  # a model the compiler refuses is reported, not fatal
        row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    arena = tflm_arena_bytes(tflite)
    row["tflm_arena_bytes"] = arena
    if arena and "ram_bytes" in row:
        row["ram_vs_tflm_arena"] = round(row["ram_bytes"] / arena, 3)
        row["flash_vs_tflite"] = round(row["flash_bytes"] / row["tflite_bytes"], 3)
        row["flash_vs_tflm"] = round(row["flash_bytes"] / (row["tflite_bytes"] + TFLM_CORE_FLASH_BYTES), 3)
    return row


def table(rows: list[dict]) -> str:
    cols = [("model", "model", 26), ("flash_bytes", "flash B", 9), ("ram_bytes", "RAM B", 8),
            ("arena_bytes", "arena B", 8), ("stack_bytes", "stack B", 8), ("insns_per_inference", "insns/inf", 10),
            ("tflm_arena_bytes", "TFLM arena", 10), ("ram_vs_tflm_arena", "RAM/TFLM", 9),
            ("tflite_bytes", "tflite B", 9), ("flash_vs_tflm", "flash/(tflite+TFLM)", 19)]
    lines = [" ".join(f"{title:>{w}}" for _, title, w in cols)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:>26} error: {r['error'][:90]}")
            continue
        lines.append(" ".join(f"{str(r.get(k, '-')):>{w}}" for k, _, w in cols))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.firmware_report", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT)
    ap.add_argument("--no-test-models", action="store_true", help="only models/*/tiny.tflite (or the stand-in)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tl-fwreport-") as tmp:
        work = Path(tmp)
        models = collect_models(work, not args.no_test_models)
        rows = []
        for i, (name, path) in enumerate(models.items(), 1):
            print(f"[{i}/{len(models)}] {name}", file=sys.stderr, flush=True)
            rows.append(measure(name, path, work))
    ok = [r for r in rows if "ram_vs_tflm_arena" in r]
    report = {"target": "cortex-m4 (qemu-system-arm -M mps2-an386, -icount shift=0)", "models": rows,
              "goals": {"ram_vs_tflm_arena_max": 0.75,
                        "ram_goal_met": all(r["ram_vs_tflm_arena"] <= 0.75 for r in ok) if ok else None,
                        "tflm_core_flash_bytes": TFLM_CORE_FLASH_BYTES,
                        "flash_goal_met": all(r["flash_vs_tflm"] < 1 for r in ok) if ok else None}}
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(table(rows))
    print(f"wrote {args.out / 'report.json'}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
