"""Firmware footprint report: ``tinylarge firmware report`` (``make firmware-report``) -> out/firmware/report.json
and a table.

For every model (each registered domain's ``<models_dir>/tiny.tflite`` when trained, its untrained
stand-in otherwise, plus the compiler's test models of tests/firmware/_models.py when run from a
checkout) it compiles the model with
shared.tiny.compiler, builds it with the runtime for the Cortex-M4 and measures:

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
  and the ratio ram_bytes / tflm_arena_bytes (goal <= RAM_GOAL, 0.6);
* tflite_bytes: the flatbuffer TFLM keeps in flash; flash_vs_tflm = flash_bytes / (tflite_bytes +
  TFLM_CORE_FLASH_BYTES), the latter TFLM's documented core runtime size ("fits in just 16 KB on an
  Arm Cortex M3", https://ai.google.dev/edge/litert/microcontrollers/overview; kernels come on top, so
  the ratio favours TFLM); flash_vs_tflite compares against the flatbuffer alone;
* parity: the compiled C in each arithmetic (compile option ``arithmetic``: ``litert``, the default, LiteRT's
  reference kernels: single rounding in FULLY_CONNECTED, double rounding in CONV_2D, DEPTHWISE_CONV_2D, MEAN,
  MUL and ADD; ``tflm``, TFLite Micro: double rounding everywhere, runtime built with -DTL_ARITH_TFLM)
  against that arithmetic's reference (LiteRT's reference kernels, ``OpResolverType.BUILTIN_REF``; the
  tflite-micro package's interpreter) on PARITY_INPUTS random int8 vectors per model (seed crc32 of the
  name; ``--quick``: QUICK_PARITY_INPUTS), on the host (gcc -O2, portable kernels,
  firmware/tools/tl_harness.c) and on the Cortex-M4 under QEMU (DSP-extension kernels; target
  cortex-m4-parity, one QEMU process), counted in int8 output values; plus how many values LiteRT's default
  interpreter (XNNPACK, single rounding in every op) gives differently from its reference kernels.
* macs, insns_per_mac: multiply-accumulates of the dense and convolution layers, and instructions per MAC.

The MLPerf Tiny reference models (bench/mlperf_tiny.py: anomaly-detection autoencoder, KWS DS-CNN) are
rows too, with the speed goals of INSNS_GOALS; ANCHORS holds published Cortex-M4 figures beside them.

A domain's model is the row ``<domain>_tiny`` once it is trained (``tinylarge train <domain>``); before
that its untrained stand-in (the domain's feature vector -> one softmax score per label) is measured as
``<domain>_standin``.

The command exits 1 when a model fails to compile or build, or when any parity count is not zero.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from shared.tiny.board_report import CORE_BOARDS, app_sizes, apps_markdown, apps_table, core_insns
from shared.tiny.targets import (
    FIRMWARE_DIR,
    REPO,
    FirmwareError,
    domain_tflite,
    make,
    models_dir,
    run_parity,
    run_qemu,
)

OUT_DEFAULT = REPO / "out" / "firmware"
TFLM_CORE_FLASH_BYTES = 16 * 1024
PARITY_INPUTS = 1000
QUICK_PARITY_INPUTS = 100  # --quick (CI): every model, both arithmetics, fewer inputs
XNNPACK_NOTE = ("LiteRT's default interpreter (XNNPACK delegate) requantizes with single rounding in every op; its "
                "reference kernels round twice (SaturatingRoundingDoublingHighMul, then a rounding shift) in "
                "CONV_2D, DEPTHWISE_CONV_2D, MEAN and MUL, so the two differ by 1 on rounding ties of those ops "
                "(and by more where a tie flips a later op)")
RAM_GOAL = 0.6
INSNS_GOALS = {"mlperf_ad_autoencoder": 330_000, "mlperf_kws_dscnn": 5_000_000}
#: Published Cortex-M4 figures: MLPerf Tiny closed division, NUCLEO-L4R5ZI at 120 MHz, median throughput
#: (results/*/{ad,kws}/performance/results.txt) turned into cycles per inference: the v0.5 reference
#: submission on TFLite Micro 2.3.1 (AD 99.487 inf/s, KWS 5.497 inf/s) and STMicroelectronics' v1.0
#: submission on X-CUBE-AI 7.3.0 (AD 131.95 inf/s, KWS 13.323 inf/s). Cycles on silicon, not instructions.
ANCHORS = {"mlperf_ad_autoencoder": {"mlperf_tiny_v0.5_reference_tflm_cycles_m4": 1_206_188,
                                     "mlperf_tiny_v1.0_st_xcubeai_cycles_m4": 909_435},
           "mlperf_kws_dscnn": {"mlperf_tiny_v0.5_reference_tflm_cycles_m4": 21_830_089,
                                "mlperf_tiny_v1.0_st_xcubeai_cycles_m4": 9_006_980}}
_TFLM_PROBE = ("import sys\nfrom tflite_micro.python.tflite_micro import runtime\n"
               "runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read()).print_allocations()\n")


def collect_models(work: Path) -> dict[str, Path]:
    """name -> .tflite path: every registered domain's tiny model (or its stand-in)."""
    from shared.domain import names

    return {f"{domain}_tiny" if (models_dir(domain) / "tiny.tflite").exists() else f"{domain}_standin":
            domain_tflite(domain, work) for domain in names()}


#: extra(work, args) -> more name -> .tflite models (bench/firmware_report.py adds the compiler's test
#: models and the MLPerf Tiny models; the installed command reports the domains' models only)
ExtraModels = Callable[[Path, argparse.Namespace], dict[str, Path]]


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


def measure(name: str, tflite: Path, work: Path, cores: bool = True) -> dict:
    """The footprint and speed figures of one model; ``cores``: the Cortex-M7 and M33 columns too."""
    cname = re.sub(r"\W", "_", name).lower()
    row: dict = {"model": name, "tflite": str(tflite), "tflite_bytes": tflite.stat().st_size}
    try:
        from shared.tiny.compiler import compile_tflite

        model_dir = work / "model" / cname
        cm = compile_tflite(tflite, cname, model_dir)
        row["macs"] = cm.macs
        out = work / "m4" / cname
        make("cortex-m4", model_dir, [cname], out, goal="cortex-m4-bench")
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
        if cm.macs:
            row["insns_per_mac"] = round(row["insns_per_inference"] / cm.macs, 3)
        row["insns_by_core"] = {"cortex-m4": row["insns_per_inference"]}
        for core in CORE_BOARDS if cores else ():
            row["insns_by_core"][core] = core_insns(cname, model_dir, work, core)
    except Exception as exc:  # a model the compiler refuses is reported, not fatal
        row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    arena = tflm_arena_bytes(tflite)
    row["tflm_arena_bytes"] = arena
    if arena and "ram_bytes" in row:
        row["ram_vs_tflm_arena"] = round(row["ram_bytes"] / arena, 3)
        row["flash_vs_tflite"] = round(row["flash_bytes"] / row["tflite_bytes"], 3)
        row["flash_vs_tflm"] = round(row["flash_bytes"] / (row["tflite_bytes"] + TFLM_CORE_FLASH_BYTES), 3)
    return row


def _host_harness(model_dir: Path, cname: str, exe: Path, extra_cflags: Sequence[str] = ()) -> Path:
    """gcc -O2: the compiled model + runtime + firmware/tools/tl_harness.c (inputs file -> outputs file)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FirmwareError("gcc not found on PATH (needed for the host parity run)")
    runtime = FIRMWARE_DIR / "runtime"
    cmd = [gcc, "-std=c99", "-O2", *extra_cflags, f"-I{runtime}", f"-I{model_dir}", f"-DTL_MODEL={cname}",
           f"-DTL_MODEL_UPPER={cname.upper()}", f'-DTL_MODEL_HEADER="{cname}.h"',
           str(FIRMWARE_DIR / "tools" / "tl_harness.c"), str(model_dir / f"{cname}.c"),
           *sorted(str(p) for p in runtime.glob("*.c")), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FirmwareError(f"host harness build failed:\n{proc.stderr[-800:]}")
    return exe


ARITH_CFLAGS = {"litert": (), "tflm": ("-DTL_ARITH_TFLM",)}
REFERENCES = {"litert": "LiteRT reference kernels (ai_edge_litert Interpreter, OpResolverType.BUILTIN_REF)",
              "tflm": "TensorFlow Lite Micro (tflite_micro.python runtime.Interpreter)",
              "xnnpack": "LiteRT default (ai_edge_litert Interpreter: builtin kernels + XNNPACK)"}


def reference_outputs(buf: bytes, xs, kind: str):
    """int8 outputs [N, out] of one reference interpreter (REFERENCES) on the int8 inputs xs [N, in]."""
    import numpy as np

    if kind == "tflm":
        from tflite_micro.python.tflite_micro import runtime

        tm = runtime.Interpreter.from_bytes(buf)
        shape = tm.get_input_details(0)["shape"]
        out = []
        for x in xs:
            tm.set_input(x.reshape(shape), 0)
            tm.invoke()
            out.append(tm.get_output(0).reshape(-1).copy())
        return np.stack(out)
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if kind == "litert" else OpResolverType.AUTO
    it = Interpreter(model_content=buf, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for x in xs:
        it.set_tensor(i["index"], x.reshape(i["shape"]))
        it.invoke()
        out.append(it.get_tensor(o["index"]).reshape(-1).copy())
    return np.stack(out)


def parity_inputs(name: str, input_size: int, n_inputs: int):
    import numpy as np

    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.integers(-128, 128, size=(n_inputs, input_size), dtype=np.int8)


def parity(name: str, tflite: Path, work: Path, n_inputs: int = PARITY_INPUTS) -> dict:
    """Mismatching int8 output values of the compiled C, in each arithmetic (ARITHMETICS), against that
    arithmetic's reference interpreter, on the host (portable C kernels) and on the Cortex-M4 under QEMU
    (DSP-extension kernels), over `n_inputs` random int8 vectors; plus how often LiteRT's default
    interpreter (XNNPACK) differs from its reference kernels. {"error": ...} if a step fails."""
    import numpy as np

    from shared.tiny.compiler import compile_tflite

    cname = re.sub(r"\W", "_", name).lower()
    res: dict = {"inputs": n_inputs}
    try:
        buf = tflite.read_bytes()
        for arith, cflags in ARITH_CFLAGS.items():
            model_dir = work / "parity" / arith / cname
            cm = compile_tflite(tflite, cname, model_dir, arithmetic=arith)
            xs = parity_inputs(name, cm.input_size, n_inputs)
            y_ref = reference_outputs(buf, xs, arith)
            out = model_dir / "m4"
            make("cortex-m4-parity", model_dir, [cname], out, extra_cflags=cflags)
            y_m4 = run_parity(out / "parity.elf", xs, out, timeout_s=300)
            exe = _host_harness(model_dir, cname, out / "host_harness", cflags)
            fin, fout = out / "host.in.bin", out / "host.out.bin"
            fin.write_bytes(xs.tobytes())
            proc = subprocess.run([str(exe), str(fin), str(fout)], capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise FirmwareError(f"host harness failed ({proc.returncode}): {proc.stderr[-300:]}")
            y_host = np.frombuffer(fout.read_bytes(), np.int8).reshape(y_ref.shape)
            if y_m4.shape != y_ref.shape:
                raise FirmwareError(f"QEMU outputs {y_m4.shape}, interpreter {y_ref.shape}")
            res[arith] = {"reference": REFERENCES[arith], "values": int(y_ref.size),
                          "host_mismatches": int((y_host != y_ref).sum()),
                          "qemu_mismatches": int((y_m4 != y_ref).sum()),
                          "host_vs_qemu_mismatches": int((y_host != y_m4).sum())}
            if arith == "litert":
                y_xnn = reference_outputs(buf, xs, "xnnpack")
                res["xnnpack_vs_litert_ref_mismatches"] = int((y_xnn != y_ref).sum())
            else:
                y_lr = reference_outputs(buf, xs, "litert")
                res["tflm_vs_litert_ref_mismatches"] = int((y_lr != y_ref).sum())
    except Exception as exc:  # reported in the row, like the footprint figures
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return res


def _bit_exact(r: dict, arith: str | None = None) -> bool:
    p = r["parity"]
    if "error" in p:
        return False
    return all(p[a]["host_mismatches"] == 0 and p[a]["qemu_mismatches"] == 0
               for a in ([arith] if arith else ARITH_CFLAGS))


def _parity_cell(r: dict, arith: str) -> str:
    p = r.get("parity")
    if not p:
        return "-"
    return "error" if "error" in p else f"{p[arith]['host_mismatches']}/{p[arith]['qemu_mismatches']}"


def table(rows: list[dict]) -> str:
    cols = [("model", "model", 26), ("flash_bytes", "flash B", 9), ("ram_bytes", "RAM B", 8),
            ("arena_bytes", "arena B", 8), ("stack_bytes", "stack B", 8), ("insns_per_inference", "insns/inf", 10),
            ("insns_per_mac", "insns/MAC", 9), ("m7", "M7 insns", 10), ("m33", "M33 insns", 10),
            ("tflm_arena_bytes", "TFLM arena", 10),
            ("ram_vs_tflm_arena", "RAM/TFLM", 9), ("tflite_bytes", "tflite B", 9),
            ("flash_vs_tflm", "flash/(tflite+TFLM)", 19), ("litert", "LiteRT-ref h/q", 14), ("tflm", "TFLM h/q", 10),
            ("xnnpack", "XNNPACK!=ref", 12)]
    lines = [" ".join(f"{title:>{w}}" for _, title, w in cols)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:>26} error: {r['error'][:90]}")
            continue
        cells = {k: str(r.get(k, "-")) for k, _, _ in cols}
        for core, key in (("cortex-m7", "m7"), ("cortex-m33", "m33")):
            cells[key] = str(r.get("insns_by_core", {}).get(core, "-"))
        for arith in ARITH_CFLAGS:
            cells[arith] = _parity_cell(r, arith)
        cells["xnnpack"] = str(r.get("parity", {}).get("xnnpack_vs_litert_ref_mismatches", "-"))
        lines.append(" ".join(f"{cells[k]:>{w}}" for k, _, w in cols))
    checked = [r["parity"]["inputs"] for r in rows if "inputs" in r.get("parity", {})]
    if checked:
        lines.append(f"parity h/q: int8 output values of the compiled C (host: portable kernels / Cortex-M4 "
                     f"under QEMU: DSP kernels) differing from the reference of its arithmetic over {max(checked)} "
                     f"random inputs per model (LiteRT-ref: arithmetic='litert' vs LiteRT's reference kernels; TFLM: "
                     f"arithmetic='tflm' vs TFLite Micro); XNNPACK!=ref: LiteRT's default interpreter vs its "
                     f"reference kernels")
    return "\n".join(lines)


def _n(v) -> str:
    return "-" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))


def markdown_table(report: dict) -> str:
    """The README's firmware table from a report.json: one row per model, both arithmetics' parity."""
    head = ("| model | MACs | flash B | RAM B (arena + stack) | instructions / inference (M4) | per MAC | M7 | M33 "
            "| TFLM arena B "
            "| RAM / TFLM | `litert` vs LiteRT reference host / QEMU | `tflm` vs TFLite Micro host / QEMU "
            "| XNNPACK != reference |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    goals = report.get("goals", {}).get("insns_per_inference_max", {})
    for r in report["models"]:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error'][:80]} |")
            continue
        p = r.get("parity", {})
        goal = f" (goal <= {goals[r['model']]:,})" if r["model"] in goals else ""
        cells = [f"`{r['model']}`", _n(r.get("macs")), _n(r.get("flash_bytes")), _n(r.get("ram_bytes")),
                 _n(r.get("insns_per_inference")) + goal,
                 _n(r.get("insns_per_mac")), _n(r.get("insns_by_core", {}).get("cortex-m7")),
                 _n(r.get("insns_by_core", {}).get("cortex-m33")), _n(r.get("tflm_arena_bytes")),
                 _n(r.get("ram_vs_tflm_arena"))]
        for arith in ARITH_CFLAGS:
            q = p.get(arith)
            cells.append("error" if "error" in p else "-" if q is None else
                         f"{q['host_mismatches']} / {q['qemu_mismatches']} of {q['values']:,}")
        cells.append(_n(p.get("xnnpack_vs_litert_ref_mismatches")))
        lines.append("| " + " | ".join(cells) + " |")
    if report.get("apps"):
        lines += ["", "Each domain's app on each board row (flash KB / RAM KB: static + stack reserve; "
                  "`tinylarge firmware build DOMAIN --board ROW`):", "", apps_markdown(report["apps"])]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, extra: ExtraModels | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tinylarge firmware report", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT)
    ap.add_argument("--no-test-models", action="store_true",
                    help="only the domains' tiny models (or their stand-ins); with make firmware-report")
    ap.add_argument("--parity-inputs", type=int, default=None,
                    help=f"random inputs per model for the parity check (default {PARITY_INPUTS}; 0 = skip it)")
    ap.add_argument("--quick", action="store_true",
                    help=f"CI: the parity check on {QUICK_PARITY_INPUTS} inputs per model (still every model, both "
                         f"arithmetics, host and Cortex-M4)")
    ap.add_argument("--no-mlperf", action="store_true", help="leave out the MLPerf Tiny reference models "
                    "(make firmware-report)")
    ap.add_argument("--no-apps", action="store_true", help="leave out the domains' apps built for every board row")
    ap.add_argument("--mlperf-dir", type=Path, default=REPO / "out" / "bench" / "mlperf_tiny",
                    help="where the MLPerf Tiny .tflite files are built (reused when there)")
    args = ap.parse_args(argv)
    if args.parity_inputs is None:
        args.parity_inputs = QUICK_PARITY_INPUTS if args.quick else PARITY_INPUTS
    if args.parity_inputs < 0:
        ap.error(f"--parity-inputs must be >= 0, got {args.parity_inputs}")
    started = time.monotonic()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tl-fwreport-") as tmp:
        work = Path(tmp)
        models = collect_models(work)
        if extra is not None:
            models.update(extra(work, args))
        rows = []
        for i, (name, path) in enumerate(models.items(), 1):
            print(f"[{i}/{len(models)}] {name}", file=sys.stderr, flush=True)
            # the M7/M33 columns: every model, but --quick leaves out the compiler's test models'
            row = measure(name, path, work, cores=not (args.quick and name.startswith("test_")))
            if args.parity_inputs > 0:
                row["parity"] = parity(name, path, work, args.parity_inputs)
            rows.append(row)
        apps = [] if args.no_apps else app_sizes(work)
    ok = [r for r in rows if "ram_vs_tflm_arena" in r]
    by_name = {r["model"]: r for r in rows}
    speed = {m: (by_name[m].get("insns_per_inference"), limit) for m, limit in INSNS_GOALS.items() if m in by_name}
    report = {"target": "cortex-m4 (qemu-system-arm -M mps2-an386, -icount shift=0)", "models": rows,
              "cores": {"cortex-m4": "mps2-an386", **CORE_BOARDS}, "apps": apps,
              "arithmetic_default": "litert", "parity_inputs": args.parity_inputs,
              "argv": list(argv if argv is not None else sys.argv[1:]),
              "xnnpack_note": XNNPACK_NOTE,
              "anchors": ANCHORS,
              "goals": {"ram_vs_tflm_arena_max": RAM_GOAL,
                        "ram_goal_met": all(r["ram_vs_tflm_arena"] <= RAM_GOAL for r in ok) if ok else None,
                        "insns_per_inference_max": INSNS_GOALS,
                        "insns_goal_met": {m: (v is not None and v <= lim) for m, (v, lim) in speed.items()},
                        "parity_litert_bit_exact": [r["model"] for r in rows if "parity" in r
                                                    and _bit_exact(r, "litert")],
                        "parity_tflm_bit_exact": [r["model"] for r in rows if "parity" in r and _bit_exact(r, "tflm")],
                        "tflm_core_flash_bytes": TFLM_CORE_FLASH_BYTES,
                        "flash_goal_met": all(r["flash_vs_tflm"] < 1 for r in ok) if ok else None,
                        "parity_not_bit_exact": [r["model"] for r in rows if "parity" in r and not _bit_exact(r)]}}
    report["seconds"] = round(time.monotonic() - started, 1)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(table(rows))
    if apps:
        print(apps_table(apps))
    print(f"wrote {args.out / 'report.json'}")
    not_exact = report["goals"]["parity_not_bit_exact"]
    if not_exact:
        print(f"parity: not bit-exact in both arithmetics: {', '.join(not_exact)}", file=sys.stderr)
    app_errors = [f"{r['app']} on {r['board']}" for r in apps if "error" in r]
    if app_errors:
        print(f"apps: did not build: {', '.join(app_errors)}", file=sys.stderr)
    return 0 if all("error" not in r for r in rows) and not not_exact and not app_errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
