"""``tinylarge firmware build|run|gateway|report``: the C firmware of any registered domain.

The work is done by three modules that do not import each other in a circle:

* :mod:`shared.tiny.targets`: build (compile the domain's models with their metadata, run
  ``firmware/Makefile`` on the app in the domain's package, ``APP_DIR=<Domain.firmware_dir>``), QEMU,
  the parity harness, installed model slots;
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

from shared.errors import UserError
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


def _add_domain(ap: argparse.ArgumentParser) -> None:
    """DOMAIN, the first argument (the domain whose app is built); ``--app DOMAIN`` still works, with a warning."""
    from shared import domain as domains
    from shared.cli import DeprecatedAlias

    ap.add_argument("domain", metavar="DOMAIN", nargs="?", default=None,
                    help=f"the domain whose firmware app is built ({', '.join(domains.names())})")
    ap.add_argument("--app", dest="domain_flag", action=DeprecatedAlias, use="the positional DOMAIN", default=None,
                    help=argparse.SUPPRESS)


def _domain_or_none(a: argparse.Namespace, verb: str) -> str | None:
    """The positional DOMAIN (or the deprecated ``--app``), checked against the registry; None if neither."""
    from shared.cli import domain_arg

    if not (a.domain or a.domain_flag):
        return None
    return domain_arg(a, verb).name


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="tinylarge firmware build", formatter_class=HelpFormatter, allow_abbrev=False,
                                 description="Compile a domain's model(s) and build its app for a target.")
    _add_domain(ap)
    ap.add_argument("--target", choices=TARGETS, default="host",
                    help="host: a native executable; cortex-m4 / cortex-m0plus: an image for QEMU and boards "
                    "(DOMAIN is required for host and cortex-m4)")
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
    ap.add_argument("--out", type=lambda p: Path(p).resolve(), default=REPO / "build" / "firmware",
                    help="build folder")
    ap.add_argument("--board", default=None, help="a row of the board table (tinylarge firmware boards): writes "
                    "OUT/BOARD/DOMAIN/DOMAIN.elf, .bin, .hex with a size report; replaces --target")
    ap.add_argument("--device-args", default="", help="with --board: options baked into the image, e.g. "
                    "'--device ward3-bed7 --max-windows 0'")
    ap.add_argument("--sensor-file", type=Path, default=None,
                    help="with --board: tlsensor text stored in flash and read instead of the USART (a demo)")
    return ap


def _cmd_build(argv: Sequence[str]) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    a.app = _domain_or_none(a, "firmware build")
    if a.board is not None:
        if "--target" in argv:
            ap.error("--board and --target exclude each other (a board row names its target)")
        return _build_board(a)
    if a.device_args or a.sensor_file:
        ap.error("--device-args and --sensor-file go with --board")
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
        raise UserError(f"firmware build: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    for k, p in res.artifacts.items():
        print(f"{k}: {p}")
    return 0


def _build_board(a: argparse.Namespace) -> int:
    from shared.tiny.board_build import board_models, build_board

    try:
        if a.slot is not None:
            a.model, a.model_id = slot_model(a.slot)
        else:
            a.model = a.model[0] if a.model else None
        models = board_models(a.app, a.model, a.name[0] if a.name else None, a.model_id) if a.app else (
            [FirmwareModel(a.model, a.name[0] if a.name else c_name(a.model.stem), a.model_id)] if a.model else [])
        res = build_board(a.board, a.app, models, a.out, a.device_args.split(), a.sensor_file)
    except (FirmwareError, ValueError, LookupError, OSError) as exc:
        raise UserError(f"firmware build: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    for k, p in res.artifacts.items():
        print(f"{k}: {p}")
    print(res.size.text())
    return 0


def _cmd_flash(argv: Sequence[str]) -> int:
    import shlex
    import shutil
    import subprocess

    from shared.cli import HelpFormatter
    from shared.tiny.board_build import FLASH_TOOLS, flash_command, install_hint
    from shared.tiny.boards import BOARDS

    ap = argparse.ArgumentParser(prog="tinylarge firmware flash", formatter_class=HelpFormatter, allow_abbrev=False,
                                 description="Program a board's image with its probe (openocd, pyocd or st-flash).")
    _add_domain(ap)
    ap.add_argument("--board", required=True, choices=list(BOARDS), help="the board (tinylarge firmware boards)")
    ap.add_argument("--image", type=Path, default=None, help="the .elf (or .bin for st-flash) to program "
                    "(default: DOMAIN's image from firmware build --board)")
    ap.add_argument("--out", type=lambda p: Path(p).resolve(), default=REPO / "build" / "firmware",
                    help="build folder of DOMAIN's image")
    ap.add_argument("--tool", choices=FLASH_TOOLS, default=None,
                    help="default: the first of the board's tools found on PATH (openocd, pyocd, st-flash)")
    ap.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    a = ap.parse_args(argv)
    a.app = _domain_or_none(a, "firmware flash")
    if a.image is None:
        if a.app is None:
            ap.error("give --image PATH or a DOMAIN (the image of tinylarge firmware build DOMAIN --board ...)")
        a.image = a.out / a.board / a.app / f"{a.app}.elf"
    try:
        cmd = flash_command(a.board, a.image, a.tool)
    except FirmwareError as exc:
        raise UserError(f"firmware flash: {exc}") from None
    image = Path(cmd[-2] if cmd[0] == "st-flash" else cmd[-1].split()[1] if cmd[0] == "openocd" else cmd[-1])
    if not image.exists():
        msg = (f"{image} not found: build it first (tinylarge firmware build {a.app or 'DOMAIN'} "
               f"--board {a.board})")
        if not a.dry_run:
            raise UserError(f"firmware flash: {msg}")
        print(f"note: {msg}", file=sys.stderr)
    print(shlex.join(cmd))
    if a.dry_run:
        return 0
    if shutil.which(cmd[0]) is None:
        raise UserError(f"firmware flash: {cmd[0]} not found on PATH (install: {install_hint(cmd[0])})")
    return subprocess.run(cmd).returncode


def _cmd_boards(argv: Sequence[str]) -> int:
    from shared.tiny.boards import table

    argparse.ArgumentParser(prog="tinylarge firmware boards", description="The board table.").parse_args(argv)
    print(table())
    return 0


def _cmd_run(argv: Sequence[str]) -> int:
    from shared.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="tinylarge firmware run", formatter_class=HelpFormatter, allow_abbrev=False,
                                 description="Run the Cortex-M4 image under QEMU; frames go to stdout.")
    ap.add_argument("elf", type=Path, help="the image (firmware build DOMAIN --target cortex-m4)")
    ap.add_argument("--input", required=True, type=Path, help="tlsensor text file")
    ap.add_argument("--device", default=None, help="device id (default: the app's)")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="seconds QEMU may run")
    a = ap.parse_args(argv)
    for what, path in (("the image", a.elf), ("--input", a.input)):
        if not path.is_file():
            raise UserError(f"firmware run: {what}: no such file {path}")
    args = ["--input", str(a.input.resolve())] + (["--device", a.device] if a.device else [])
    try:
        run = run_qemu(a.elf, args, a.timeout_s)
    except FirmwareError as exc:
        raise UserError(f"firmware run: {exc}") from None
    sys.stdout.buffer.write(run.serial)
    sys.stderr.write(run.stderr)
    return run.returncode


def firmware_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge firmware build|run|gateway|report ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"build": _cmd_build, "run": _cmd_run, "gateway": gateway_main, "report": report_main,
                "flash": _cmd_flash, "boards": _cmd_boards}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: tinylarge firmware {build,run,gateway,report,flash,boards} ...\n\n"
              "  build    compile a domain's model(s) and build its app: DOMAIN --target "
              "host|cortex-m4|cortex-m0plus, or DOMAIN --board NAME (.elf/.bin/.hex + size report)\n"
              "  flash    program a board's image with openocd/pyocd/st-flash (--dry-run prints the command)\n"
              "  boards   the board table (core, FPU, DSP, memory, clock, console, probe)\n"
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
    from shared.cli import guarded

    raise SystemExit(guarded(firmware_main))
