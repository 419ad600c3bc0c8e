"""``tinylarge firmware build|run|gateway|report``: the C firmware of any registered domain.

The work is done by three modules that do not import each other in a circle:

* :mod:`shared.tiny.targets`: build (compile the domain's models with their metadata, run
  ``firmware/Makefile`` with ``APP=<domain>``), QEMU, the parity harness, installed model slots;
* :mod:`shared.tiny.gateway`: framed messages from a serial port, a pipe or QEMU -> validated -> MQTT,
  and signed model updates for the bridged devices;
* :mod:`shared.tiny.report`: the footprint report (flash, RAM, instructions, TFLM arena, parity).

This module is their command line, and re-exports the build API for scripts and tests
(``from shared.tiny.firmware import BuildConfig, build``). The serial framing and the sensor text format
live in :mod:`shared.tiny.frames`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.tiny.frames import FrameDecoder, crc16, encode_frame, encode_message, write_sensor_window, write_windows
from shared.tiny.targets import (
    FIRMWARE_DIR,
    REPO,
    TARGETS,
    BuildConfig,
    BuildResult,
    FirmwareError,
    FirmwareModel,
    QemuRun,
    build,
    c_name,
    compile_model,
    domain_tflite,
    make,
    model_id_for,
    qemu_command,
    run_parity,
    run_qemu,
    slot_model,
    standin_tflite,
)

__all__ = ["FIRMWARE_DIR", "REPO", "TARGETS", "BuildConfig", "BuildResult", "FirmwareError", "FirmwareModel",
           "FrameDecoder", "QemuRun", "build", "c_name", "compile_model", "crc16", "domain_tflite", "encode_frame",
           "encode_message", "firmware_main", "gateway_main", "make", "model_id_for", "qemu_command", "run_parity",
           "run_qemu", "slot_model", "standin_tflite", "write_sensor_window", "write_windows"]


def _cmd_build(argv: Sequence[str]) -> int:
    from shared.domain import names

    ap = argparse.ArgumentParser(prog="tinylarge firmware build",
                                 description="Compile a domain's model(s) and build its app for a target.")
    ap.add_argument("--app", choices=names(), default=None,
                    help="the domain whose app is built (firmware/apps/<app>/); required for host and cortex-m4")
    ap.add_argument("--target", choices=TARGETS, default="host")
    ap.add_argument("--model", type=Path, action="append", default=[],
                    help="full-int8 .tflite, repeat for several (primary first); default: the domain's "
                    "<models_dir>/tiny.tflite")
    ap.add_argument("--name", action="append", default=[],
                    help="C identifier per --model (default: the domain's tiny model id, or the file's stem)")
    ap.add_argument("--model-id", default="", help="id@version of the primary model in messages "
                    "(default from the model's hash)")
    ap.add_argument("--slot", type=Path, default=None,
                    help="build the model a gateway installed (DIR = <gateway --model-dir>/<device>); "
                    "sets the primary --model and --model-id")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "firmware")
    a = ap.parse_args(argv)
    if a.slot is not None and (a.model or a.model_id):
        ap.error("--slot sets the model and its id: do not combine it with --model or --model-id")
    if a.name and len(a.name) != max(1, len(a.model)):
        ap.error("--name: give one per --model")
    try:
        if a.slot is not None:
            path, a.model_id = slot_model(a.slot)
            a.model = [path]
        models: list[FirmwareModel] = []
        if a.model:
            from shared.domain import get

            primary = c_name(get(a.app).tiny_model) if a.app else None
            for i, path in enumerate(a.model):
                name = a.name[i] if a.name else (primary if i == 0 and primary else c_name(path.stem))
                models.append(FirmwareModel(path, name, a.model_id if i == 0 else ""))
        elif a.model_id or a.name:
            cfg = BuildConfig(a.app, a.target, (), a.out)  # the domain's model, renamed or re-identified
            m = cfg.models[0]
            models.append(FirmwareModel(m.path, a.name[0] if a.name else m.name, a.model_id))
        res = build(BuildConfig(a.app, a.target, models, a.out))
    except (FirmwareError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for k, p in res.artifacts.items():
        print(f"{k}: {p}")
    return 0


def _cmd_run(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="tinylarge firmware run",
                                 description="Run the Cortex-M4 image under QEMU; frames go to stdout.")
    ap.add_argument("elf", type=Path)
    ap.add_argument("--input", required=True, type=Path, help="tlsensor text file")
    ap.add_argument("--device", default=None, help="device id (default: the app's)")
    ap.add_argument("--timeout-s", type=float, default=120.0)
    a = ap.parse_args(argv)
    args = ["--input", str(a.input.resolve())] + (["--device", a.device] if a.device else [])
    try:
        run = run_qemu(a.elf, args, a.timeout_s)
    except FirmwareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(run.serial)
    sys.stderr.write(run.stderr)
    return run.returncode


def firmware_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge firmware build|run|gateway|report ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"build": _cmd_build, "run": _cmd_run, "gateway": gateway_main, "report": report_main}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: tinylarge firmware {build,run,gateway,report} ...\n\n"
              "  build    compile a domain's model(s) and build its app: --app DOMAIN --target "
              "host|cortex-m4|cortex-m0plus\n"
              "  run      run the Cortex-M4 image under QEMU with a sensor file\n"
              "  gateway  bridge framed messages from a serial port, a pipe or QEMU to MQTT\n"
              "  report   footprint report (flash, RAM, instructions, TFLM arena) -> out/firmware/report.json")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


def gateway_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge firmware gateway``: see :mod:`shared.tiny.gateway`."""
    from shared.tiny.gateway import main

    return main(list(sys.argv[1:] if argv is None else argv))


def report_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge firmware report``: see :mod:`shared.tiny.report`."""
    from shared.tiny.report import main

    return main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    raise SystemExit(firmware_main())
