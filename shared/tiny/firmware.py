"""Build, run and bridge the C firmware: ``tinylarge firmware build|run|gateway|report``.

* :func:`build` compiles a full-int8 TFLite model with :mod:`shared.tiny.compiler` and runs
  ``firmware/Makefile`` for a target: ``host`` (gcc, talks MQTT itself), ``cortex-m4`` (Arm MPS2 AN386
  under ``qemu-system-arm``, frames on its serial line) or ``cortex-m0plus`` (size only).
* :func:`qemu_command` / :func:`run_qemu` start the Cortex-M4 image with semihosting (the sensor file
  is read from the host through it) and return its serial output.
* Target ``cortex-m4-parity`` (``firmware/targets/cortex-m4/parity.mk``) builds ``parity.elf``: the model
  and runtime with the app's Cortex-M4 flags and a main that maps int8 input vectors to outputs;
  :func:`run_parity` feeds it a whole batch in one QEMU process (files over semihosting).
* :func:`gateway_main` (in :mod:`shared.tiny.gateway`) decodes frames from a serial port, a pipe or QEMU,
  validates each message with :func:`shared.protocol.messages.decode` and publishes it to MQTT. With
  ``--trusted-key`` and ``--model-dir`` it also verifies signed model updates for the devices it bridges
  and keeps the accepted one in ``<model-dir>/<device>/``; :func:`slot_model` (``build --slot``) builds
  the next image from there. Flashing that image is the board's own procedure (no bootloader here).

The serial framing and the sensor text format live in :mod:`shared.tiny.frames`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.tiny.frames import (  # noqa: F401  (re-exported API)
    FrameDecoder,
    crc16,
    encode_frame,
    encode_message,
    write_healthcare_windows,
    write_sensor_window,
)

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO / "firmware"
TARGETS = ("host", "cortex-m4", "cortex-m0plus", "cortex-m4-parity")
#: targets whose rules live beside the target instead of in firmware/Makefile (they include it)
_TARGET_MAKEFILES = {"cortex-m4-parity": FIRMWARE_DIR / "targets" / "cortex-m4" / "parity.mk"}
DEFAULT_MODEL = REPO / "models" / "healthcare" / "tiny.tflite"
QEMU_MACHINE = "mps2-an386"


class FirmwareError(RuntimeError):
    """A build or run step failed; the message carries the tool's output."""


@dataclass
class BuildConfig:
    """One firmware build. Defaults: the healthcare app on the host with the trained tiny model."""

    target: str = "host"  #: host | cortex-m4 | cortex-m0plus | cortex-m4-parity (model I/O harness)
    model: Path | None = None  #: full-int8 .tflite; None = models/healthcare/tiny.tflite
    name: str = "hc_tiny"  #: C identifier for the compiled model's symbols and files
    model_id: str = ""  #: id@version put in every message; "" = healthcare-tiny@<sha256[:8] of the model>
    out_dir: Path = field(default_factory=lambda: REPO / "build" / "firmware")
    defines: tuple[str, ...] = ()  #: extra -D flags for the app (e.g. HC_WINDOW_S=10)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target: expected one of {', '.join(TARGETS)}, got {self.target!r}")
        if not self.name.isidentifier():
            raise ValueError(f"name: {self.name!r} is not a C identifier")
        self.out_dir = Path(self.out_dir)
        if self.model is not None:
            self.model = Path(self.model)


@dataclass
class BuildResult:
    target: str
    out_dir: Path
    model_dir: Path
    model_id: str
    artifacts: dict[str, Path]


def model_id_for(tflite: Path, prefix: str = "healthcare-tiny") -> str:
    """``prefix@<first 8 hex of sha256>``: a stable version for a given model file."""
    return f"{prefix}@{hashlib.sha256(Path(tflite).read_bytes()).hexdigest()[:8]}"


def slot_model(slot_dir: Path) -> tuple[Path, str]:
    """(model file, ``id@version``) of the model a gateway installed in ``slot_dir`` (a
    :class:`shared.security.model_update.ModelSlot` folder: ``model.tflite`` + ``model.tflite.json``), checked
    against the SHA-256 recorded when its signature was verified; FirmwareError if missing or altered."""
    import json

    from shared.tiny.gateway import SLOT_FILE

    model = Path(slot_dir) / SLOT_FILE
    meta_path = model.with_name(SLOT_FILE + ".json")
    if not model.is_file() or not meta_path.is_file():
        raise FirmwareError(f"{slot_dir}: no installed model ({SLOT_FILE} and {SLOT_FILE}.json); "
                            "the gateway writes them when it accepts a signed update")
    try:
        meta = json.loads(meta_path.read_text())
        model_id, version, digest = str(meta["model_id"]), int(meta["version"]), str(meta["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FirmwareError(f"{meta_path}: unreadable slot metadata ({exc})") from None
    if hashlib.sha256(model.read_bytes()).hexdigest() != digest:
        raise FirmwareError(f"{model}: contents differ from the verified sha256 in {meta_path.name}")
    return model, f"{model_id}@{version}"


def compile_model(tflite: Path, name: str, out_dir: Path) -> Path:
    """shared.tiny.compiler: tflite -> out_dir/name.{h,c}; returns out_dir."""
    from shared.tiny.compiler import compile_tflite

    compile_tflite(Path(tflite), name, out_dir)
    return Path(out_dir)


def make(target: str, model_dir: Path, name: str, out: Path, model_id: str, goal: str | None = None,
         extra_cflags: Sequence[str] = ()) -> None:
    """Run firmware/Makefile; FirmwareError with the compiler output on failure."""
    tool = "gcc" if target == "host" else "arm-none-eabi-gcc"
    if shutil.which(tool) is None:
        raise FirmwareError(f"{tool} not found on PATH (needed for target {target})")
    cmd = ["make", "-s", "-C", str(FIRMWARE_DIR), goal or target, f"TARGET={target}", f"MODEL_DIR={model_dir}",
           f"MODEL_NAME={name}", f"OUT={out}", f"MODEL_ID={model_id}"]
    if target in _TARGET_MAKEFILES:
        cmd[4:4] = ["-f", str(_TARGET_MAKEFILES[target])]
    if extra_cflags:
        cmd.append("EXTRA_CFLAGS=" + " ".join(extra_cflags))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FirmwareError(f"make {goal or target} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def build(cfg: BuildConfig) -> BuildResult:
    """Compile the model and build one target; returns where everything is."""
    tflite = cfg.model or DEFAULT_MODEL
    if not tflite.exists():
        raise FirmwareError(f"model {tflite} not found: train it (make train-healthcare) or pass --model")
    model_id = cfg.model_id or model_id_for(tflite)
    model_dir = compile_model(tflite, cfg.name, cfg.out_dir / "model" / cfg.name)
    out = cfg.out_dir / cfg.target / cfg.name
    make(cfg.target, model_dir, cfg.name, out, model_id, extra_cflags=[f"-D{d}" for d in cfg.defines])
    names = {"host": ["app"], "cortex-m4": ["app.elf", "bench.elf", "model_runtime.size"],
             "cortex-m0plus": ["model_runtime.a", "model_runtime.size"],
             "cortex-m4-parity": ["parity.elf"]}[cfg.target]
    return BuildResult(cfg.target, out, model_dir, model_id, {n: out / n for n in names})


def standin_healthcare_tflite(path: Path, seed: int = 0) -> Path:
    """A stand-in for models/healthcare/tiny.tflite with the same interface (8 features -> 6 softmax
    scores), untrained: for building and testing the firmware before healthcare.train has run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from shared.tiny.int8 import to_int8_tflite

    tf.keras.utils.set_random_seed(seed)
    x = tf.keras.Input((8,))
    h = tf.keras.layers.Dense(16, activation="relu")(x)
    model = tf.keras.Model(x, tf.keras.layers.Dense(6, activation="softmax")(h))
    rep = np.random.default_rng(seed).normal(size=(128, 8)).astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_int8_tflite(model, rep, path)
    return path


def healthcare_tflite(cache_dir: Path) -> Path:
    """The trained healthcare tiny model when present, else a stand-in built once into cache_dir."""
    if DEFAULT_MODEL.exists():
        return DEFAULT_MODEL
    path = Path(cache_dir) / "healthcare_standin.tflite"
    return path if path.exists() else standin_healthcare_tflite(path)


# ---- QEMU ------------------------------------------------------------------------------------------

def qemu_command(elf: Path, args: Sequence[str] = (), icount: bool = False) -> list[str]:
    """qemu-system-arm for the Cortex-M4 image: serial on stdout, semihosting for files and stderr."""
    exe = shutil.which("qemu-system-arm")
    if exe is None:
        raise FirmwareError("qemu-system-arm not found on PATH")
    cmd = [exe, "-M", QEMU_MACHINE, "-nographic", "-monitor", "none", "-serial", "stdio",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    if icount:
        cmd[1:1] = ["-icount", "shift=0"]
    if args:
        if any(" " in a for a in args):
            raise ValueError("QEMU -append arguments cannot contain spaces")
        cmd += ["-append", " ".join(args)]
    return cmd


@dataclass
class QemuRun:
    returncode: int
    serial: bytes  #: what the firmware wrote on UART0
    stderr: str  #: semihosting stderr (logs) and QEMU's own messages


def run_qemu(elf: Path, args: Sequence[str] = (), timeout_s: float = 60.0, icount: bool = False,
             cwd: Path | None = None) -> QemuRun:
    """Run the image to completion (it exits through semihosting); FirmwareError on timeout."""
    try:
        proc = subprocess.run(qemu_command(elf, args, icount), capture_output=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise FirmwareError(f"QEMU did not finish within {timeout_s} s") from exc
    return QemuRun(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))


def run_parity(elf: Path, inputs, workdir: Path, timeout_s: float = 120.0):
    """Run ``parity.elf`` (target ``cortex-m4-parity``) on every row of ``inputs`` (int8 ``[N, input
    size]``) in one QEMU process; returns the int8 outputs ``[N, output size]``. The vectors travel in
    files under ``workdir`` (absolute paths without spaces: they go through QEMU's -append)."""
    import numpy as np

    xs = np.ascontiguousarray(inputs, dtype=np.int8)
    if xs.ndim != 2 or len(xs) == 0:
        raise ValueError(f"inputs: expected a non-empty int8 [N, input_size] array, got shape {xs.shape}")
    workdir = Path(workdir).resolve()
    fin, fout = workdir / f"{Path(elf).stem}.in.bin", workdir / f"{Path(elf).stem}.out.bin"
    fin.write_bytes(xs.tobytes())
    fout.unlink(missing_ok=True)
    run = run_qemu(elf, ["--in", str(fin), "--out", str(fout)], timeout_s=timeout_s)
    text = run.serial.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("TLPARITY ")), None)
    if run.returncode != 0 or line is None:
        raise FirmwareError(f"parity run failed (exit {run.returncode}): {(text + run.stderr)[-800:]}")
    kv = dict(item.split("=", 1) for item in line.split()[1:])
    if int(kv["inputs"]) != len(xs) or int(kv["in"]) != xs.shape[1]:
        raise FirmwareError(f"parity run read {kv['inputs']} vectors of {kv['in']} values, "
                            f"sent {len(xs)} of {xs.shape[1]}")
    out = np.frombuffer(fout.read_bytes(), np.int8)
    if out.size != len(xs) * int(kv["out"]):
        raise FirmwareError(f"{fout}: {out.size} bytes, expected {len(xs)} x {kv['out']}")
    return out.reshape(len(xs), int(kv["out"]))


# ---- CLI ---------------------------------------------------------------------------------------------

def _cmd_build(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="tinylarge firmware build", description="Compile the model and build a target.")
    ap.add_argument("--target", choices=TARGETS, default="host")
    ap.add_argument("--model", type=Path, default=None, help=f"full-int8 .tflite (default {DEFAULT_MODEL})")
    ap.add_argument("--name", default="hc_tiny", help="C identifier for the model")
    ap.add_argument("--model-id", default="", help="id@version in messages (default from the model's hash)")
    ap.add_argument("--slot", type=Path, default=None,
                    help="build the model a gateway installed (DIR = <gateway --model-dir>/<device>); "
                    "sets --model and --model-id")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "firmware")
    a = ap.parse_args(argv)
    if a.slot is not None and (a.model is not None or a.model_id):
        ap.error("--slot sets the model and its id: do not combine it with --model or --model-id")
    try:
        if a.slot is not None:
            a.model, a.model_id = slot_model(a.slot)
        res = build(BuildConfig(a.target, a.model, a.name, a.model_id, a.out))
    except (FirmwareError, ValueError) as exc:
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
    ap.add_argument("--device", default="wearable-1")
    ap.add_argument("--timeout-s", type=float, default=120.0)
    a = ap.parse_args(argv)
    try:
        run = run_qemu(a.elf, ["--input", str(a.input.resolve()), "--device", a.device], a.timeout_s)
    except FirmwareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(run.serial)
    sys.stderr.write(run.stderr)
    return run.returncode


def firmware_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge firmware build|run|gateway|report ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"build": _cmd_build, "run": _cmd_run}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*commands, "gateway", "report"):
        print("usage: tinylarge firmware {build,run,gateway,report} ...\n\n"
              "  build    compile the model and build a target (host, cortex-m4, cortex-m0plus)\n"
              "  run      run the Cortex-M4 image under QEMU with a sensor file\n"
              "  gateway  bridge framed messages from a serial port, a pipe or QEMU to MQTT\n"
              "  report   footprint report (flash, RAM, instructions, TFLM arena) -> out/firmware/report.json")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "gateway":
        return gateway_main(argv[1:])
    if argv[0] == "report":
        from bench.firmware_report import main as report_main

        return report_main(argv[1:])
    return commands[argv[0]](argv[1:])


def gateway_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge firmware gateway``: see :mod:`shared.tiny.gateway`."""
    from shared.tiny.gateway import main

    return main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    raise SystemExit(firmware_main())
