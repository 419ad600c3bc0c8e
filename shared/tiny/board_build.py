"""Build, size, flash and emulate one board row (:mod:`shared.tiny.boards`): ``tinylarge firmware build --board``,
``tinylarge firmware flash``, and the QEMU runs of the STM32F405 (``-M netduinoplus2``, frames and sensor windows on
its emulated USART) and the MPS2 Cortex-M7/M33 images.

* :func:`build_board` compiles the domain's model(s) with their metadata and runs ``make stm32f4`` (an app image:
  ``<app>.elf``, ``.bin``, ``.hex``, ``.map``) or ``make mps2`` (``parity.elf`` and ``bench.elf`` of the
  primary model), then reads the image's sections into a :class:`SizeReport` against the board's flash and RAM.
  An image that does not fit is refused with the figures (:class:`FirmwareError`).
* :func:`flash_command` is the command line for the board's probe (openocd, pyocd or st-flash).
* :class:`SerialQemu` runs an STM32 image under QEMU with its USART on stdin/stdout: once the firmware has spoken
  (its online status frame: the USART is up, so no byte is lost) the sensor text is written to the USART's RX,
  ending with EOT (0x04). Its ``stdout`` carries the frames, for :func:`shared.tiny.gateway.pump`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shared.tiny.boards import Board, get
from shared.tiny.targets import REPO, FirmwareError, FirmwareModel, QemuRun, c_name, compile_model, make, model_id_for

EOT = b"\x04"


@dataclass(frozen=True)
class SizeReport:
    """Where an image's bytes go, against the board's capacity."""

    board: str
    flash_used: int  #: .text + .ARM.exidx + .data's load image (+ .vectors)
    flash_total: int
    ram_static: int  #: .data + .bss
    stack_reserved: int  #: the stack at the top of RAM (TL_STACK_BYTES)
    ram_total: int
    ccm_used: int = 0  #: .ccmram: what the app placed in core-coupled RAM (APP_CCM)
    ccm_total: int = 0

    @property
    def ram_free(self) -> int:
        """RAM neither static nor stack: the heap's room, and how far the stack reserve could grow."""
        return self.ram_total - self.ram_static - self.stack_reserved

    def fits(self) -> bool:
        return self.flash_used <= self.flash_total and self.ram_free >= 0 and self.ccm_used <= self.ccm_total

    def text(self) -> str:
        def pct(a: int, b: int) -> str:
            return f"{100 * a / b:5.1f}%" if b else "  n/a"

        flash = pct(self.flash_used, self.flash_total)
        return (f"{self.board}: flash {self.flash_used:>8} / {self.flash_total} B ({flash})"
                f"; RAM {self.ram_static + self.stack_reserved:>7} / {self.ram_total} B "
                f"({pct(self.ram_static + self.stack_reserved, self.ram_total)}): static {self.ram_static} + stack "
                f"{self.stack_reserved}, {self.ram_free} B free"
                + (f"; CCM {self.ccm_used} / {self.ccm_total} B" if self.ccm_total else ""))

    def as_dict(self) -> dict:
        return {"board": self.board, "flash_used": self.flash_used, "flash_total": self.flash_total,
                "ram_static": self.ram_static, "stack_reserved": self.stack_reserved, "ram_total": self.ram_total,
                "ram_free": self.ram_free, "ccm_used": self.ccm_used, "ccm_total": self.ccm_total}


@dataclass
class BoardBuild:
    board: Board
    out_dir: Path
    model_id: str
    artifacts: dict[str, Path]  #: elf, bin, hex, map (stm32f4); parity.elf, bench.elf, ... (mps2)
    size: SizeReport
    models: tuple[str, ...] = field(default_factory=tuple)


def section_sizes(elf: Path) -> dict[str, int]:
    """``arm-none-eabi-size -A``: section name -> bytes."""
    proc = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True)
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def size_report(board: Board, elf: Path) -> SizeReport:
    s = section_sizes(elf)
    flash = s.get(".text", 0) + s.get(".ARM.exidx", 0) + s.get(".data", 0)
    return SizeReport(board.name, flash, board.flash_kb * 1024, s.get(".data", 0) + s.get(".bss", 0),
                      board.stack_kb * 1024, board.ram_kb * 1024, s.get(".ccmram", 0), board.ccm_kb * 1024)


_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes|will not fit in region `(\w+)'|RAM overflow[^\n]*")


def _fit_error(board: Board, text: str) -> FirmwareError | None:
    found = _OVERFLOW.findall(text)
    if not found:
        return None
    by_region: dict[str, int] = {}  # region -> the largest overflow the linker named (0: it named none)
    for region, by, region2 in found:
        region = region or region2 or "RAM"
        by_region[region] = max(by_region.get(region, 0), int(by or 0))
    parts = []
    for region, by in by_region.items():
        cap = board.flash_kb if region == "FLASH" else board.ccm_kb if region == "CCMRAM" else board.ram_kb
        if region == "CCMRAM" and not cap:
            parts.append(f"CCMRAM: the part has none ({by} bytes placed there by the app's APP_CCM)")
        else:
            parts.append(f"{region} ({cap} KB) overflowed" + (f" by {by} bytes" if by else ""))
    return FirmwareError(f"the image does not fit board {board.name} ({board.part}): " + "; ".join(parts)
                         + f". Use a smaller model (fewer/narrower layers), a board with more memory, or a smaller "
                         f"stack reserve (stack_kb {board.stack_kb}).")


def sensor_source(text: bytes, path: Path) -> Path:
    """A C file holding a tlsensor text as a const array in flash (SENSOR_SRC: the self-contained demo)."""
    lines = [", ".join(f"0x{b:02x}" for b in text[i:i + 16]) for i in range(0, len(text), 16)]
    path.write_text("/* generated by shared.tiny.board_build.sensor_source: sensor windows kept in flash */\n"
                    "const char tl_sensor_flash_text[] = {\n  " + ",\n  ".join(lines + ["0x00"]) + "\n};\n"
                    f"const unsigned long tl_sensor_flash_len = {len(text)}ul;\n")
    return path


def build_board(board: Board | str, app: str | None, models: Sequence[FirmwareModel] = (),
                out_dir: Path = REPO / "build" / "firmware", fw_args: Sequence[str] = (),
                sensor_file: Path | None = None, defines: Sequence[str] = ()) -> BoardBuild:
    """Compile the models and build the board's image; FirmwareError naming the overflow when it does not fit."""
    from shared.domain import get as get_domain
    from shared.tiny.compiler import ModelMetadata
    from shared.tiny.targets import BuildConfig

    board = get(board) if isinstance(board, str) else board
    board.validate()
    if board.family == "stm32f4" and app is None:
        raise ValueError(f"app: board {board.name} builds a domain's app (--app DOMAIN)")
    if sensor_file is not None and board.family != "stm32f4":
        raise ValueError(f"sensor_file: windows in flash are an STM32F4 image's; an MPS2 app reads them over "
                         f"semihosting (--input), board {board.name}")
    if any(" " in a or "'" in a or '"' in a for a in fw_args):
        raise ValueError(f"fw_args: options are baked into the image and cannot hold spaces or quotes: {fw_args}")
    cfg = BuildConfig(app, "host" if app else "cortex-m0plus", models, out_dir)
    domain = get_domain(app) if app else None
    model_dir = Path(out_dir) / "model" / cfg.folder
    ids = []
    for i, m in enumerate(cfg.models):
        if not m.path.exists():
            raise FirmwareError(f"model {m.path} not found" + (f" (train it: tinylarge train {app})" if app else ""))
        prefix = domain.tiny_model if domain is not None and i == 0 else m.name
        model_id = m.model_id or model_id_for(m.path, prefix)
        labels = m.labels if m.labels is not None or domain is None or i else domain.labels
        meta = ModelMetadata.for_domain(domain.name, model_id, labels) if domain else ModelMetadata(model_id, labels)
        compile_model(m.path, m.name, model_dir, meta)
        ids.append(model_id)
    out = Path(out_dir) / board.name / cfg.folder
    out.mkdir(parents=True, exist_ok=True)
    variables = board.make_vars()
    if fw_args:
        variables["FW_ARGS"] = " ".join(fw_args)
    if sensor_file is not None:
        variables["SENSOR_SRC"] = str(sensor_source(Path(sensor_file).read_bytes(), out / "sensor_flash.c"))
    names = tuple(m.name for m in cfg.models)
    goal = "mps2-app" if board.family == "mps2" and app else board.family
    try:
        make(board.family, model_dir, names, out, app, goal=goal, extra_cflags=[f"-D{d}" for d in defines],
             variables=variables)
    except FirmwareError as exc:
        raise _fit_error(board, str(exc)) or exc from None
    if app is not None:
        stem = out / str(app)
        artifacts = {k: stem.with_suffix(f".{k}") for k in ("elf", "bin", "hex", "map")}
    else:
        artifacts = {n: out / n for n in ("parity.elf", "parity.bin", "parity.hex", "bench.elf")}
    elf = artifacts.get("elf") or artifacts["parity.elf"]
    size = size_report(board, elf)
    if not size.fits():
        raise FirmwareError(f"the image does not fit board {board.name}: {size.text()}")
    return BoardBuild(board, out, ids[0], artifacts, size, names)


# ---- flashing --------------------------------------------------------------------------------------

FLASH_TOOLS = ("openocd", "pyocd", "st-flash")
_INSTALL = {"openocd": "apt-get install openocd", "pyocd": "pip install pyocd",
            "st-flash": "apt-get install stlink-tools"}


def flash_tools(board: Board) -> tuple[str, ...]:
    """The tools that can program this board, preferred first."""
    return tuple(t for t, ok in (("openocd", bool(board.openocd)), ("pyocd", bool(board.pyocd)),
                                 ("st-flash", board.st_flash)) if ok)


def flash_command(board: Board | str, image: Path, tool: str | None = None) -> list[str]:
    """The command that programs ``image`` (.elf for openocd/pyocd, .bin for st-flash) into the board."""
    board = get(board) if isinstance(board, str) else board
    tools = flash_tools(board)
    if not tools:
        raise FirmwareError(f"board {board.name} is not flashed over SWD: an MPS2 loads its images from the board's "
                            "microSD (copy the .bin and name it in MB/HBI0263*/AN5*/images.txt)")
    if tool is None:
        tool = next((t for t in tools if shutil.which(t)), tools[0])
    if tool not in tools:
        raise FirmwareError(f"board {board.name}: tool {tool!r} does not apply; use one of {', '.join(tools)}")
    image = Path(image)
    if tool == "openocd":
        cfgs = [a for c in board.openocd.split() for a in ("-f", c)]
        return ["openocd", *cfgs, "-c", f"program {image.with_suffix('.elf')} verify reset exit"]
    if tool == "pyocd":
        return ["pyocd", "flash", "--target", board.pyocd, str(image.with_suffix(".elf"))]
    return ["st-flash", "--reset", "write", str(image.with_suffix(".bin")), hex(board.flash_origin)]


def install_hint(tool: str) -> str:
    return _INSTALL.get(tool, tool)


# ---- QEMU: the STM32 image with its USART on a pipe -------------------------------------------------

def board_qemu_command(board: Board | str, elf: Path) -> list[str]:
    """qemu-system-arm for a board row QEMU emulates: the first serial port (USART1 on netduinoplus2,
    UART0 on MPS2) on stdin/stdout; semihosting only ends the run (and carries the MPS2 harnesses' files)."""
    board = get(board) if isinstance(board, str) else board
    if not board.qemu_machine:
        raise FirmwareError(f"board {board.name}: QEMU does not emulate it (rows with a QEMU machine: "
                            "netduinoplus2, mps2-an500, mps2-an505)")
    exe = shutil.which("qemu-system-arm")
    if exe is None:
        raise FirmwareError("qemu-system-arm not found on PATH")
    return [exe, "-M", board.qemu_machine, "-nographic", "-monitor", "none", "-serial", "stdio",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]


class SerialQemu:
    """An STM32 image under QEMU; ``read1``/``read`` give what its USART sends. ``sensor_text`` goes to the
    USART's RX (then EOT) once the first byte has come out."""

    def __init__(self, board: Board | str, elf: Path, sensor_text: bytes):
        self.proc = subprocess.Popen(board_qemu_command(board, elf), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._text = sensor_text
        self._feeder: threading.Thread | None = None
        self.stderr = b""

    def _feed(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(self._text + EOT)
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):  # QEMU ended early: its exit status says why
            pass

    def read1(self, n: int = 4096) -> bytes:
        assert self.proc.stdout is not None
        data = self.proc.stdout.read1(n)
        if data and self._feeder is None:
            self._feeder = threading.Thread(target=self._feed, daemon=True)
            self._feeder.start()
        return data

    read = read1

    def close(self, timeout_s: float = 10.0) -> int:
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.stderr = self.proc.stderr.read()
        return self.proc.returncode


class UsartTx:
    """A board's USART TX (QEMU's stdout) for the gateway (FirmwareFleet's board devices); the first byte says
    that the firmware is up."""

    def __init__(self, raw: IO[bytes], spoken: threading.Event):
        self.raw, self.spoken = raw, spoken

    def read1(self, n: int = 4096) -> bytes:
        data = self.raw.read1(n)  # type: ignore[attr-defined]
        if data:
            self.spoken.set()
        return data

    read = read1

    def close(self) -> None:
        self.raw.close()


class UsartRx:
    """A board's USART RX (QEMU's stdin): text only once the firmware has spoken (QEMU drops what arrives
    before the USART is enabled), EOT (0x04) at the end of input."""

    def __init__(self, raw: IO[bytes], spoken: threading.Event, timeout_s: float = 60.0):
        self.raw, self.spoken, self.timeout_s = raw, spoken, timeout_s

    def write(self, text: str) -> int:
        if not self.spoken.wait(self.timeout_s):
            raise OSError(f"the board did not speak on its USART within {self.timeout_s:.0f} s")
        self.raw.write(text.encode("ascii"))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        try:
            if self.spoken.is_set():
                self.raw.write(EOT)
                self.raw.flush()
        finally:
            self.raw.close()


def run_board_qemu(board: Board | str, elf: Path, sensor_text: bytes, timeout_s: float = 120.0) -> QemuRun:
    """Run the STM32 image to its end (EOT after the windows): everything its USART sent."""
    q = SerialQemu(board, elf, sensor_text)
    timer = threading.Timer(timeout_s, q.proc.kill)
    timer.start()
    chunks = []
    try:
        while data := q.read1():
            chunks.append(data)
    finally:
        timer.cancel()
        rc = q.close()
    if rc is not None and rc < 0:
        raise FirmwareError(f"QEMU did not finish within {timeout_s} s (killed)")
    return QemuRun(rc, b"".join(chunks), q.stderr.decode(errors="replace"))


def board_models(app: str, model: Path | None, name: str | None = None, model_id: str = "") -> list[FirmwareModel]:
    """The CLI's model list: the given .tflite as the domain's primary model, then the other models its app
    declares (APP_MODELS, from the domain's models dir); () for the domain's own models."""
    if model is None:
        return []
    from shared.domain import get as get_domain
    from shared.tiny.targets import app_extra_models

    return [FirmwareModel(model, name or c_name(get_domain(app).tiny_model), model_id), *app_extra_models(app)]


def standin_autoencoder(domain: str, path: Path, seed: int = 0) -> Path:
    """An untrained stand-in for an app's second model, an autoencoder of the domain's feature vector (what
    industrial_iot's anomaly.tflite is): features -> 8 -> features, int8."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from shared.domain import get as get_domain
    from shared.tiny.int8 import to_int8_tflite

    n = len(get_domain(domain).feature_names)
    tf.keras.utils.set_random_seed(seed)
    x = tf.keras.Input((n,))
    model = tf.keras.Model(x, tf.keras.layers.Dense(n)(tf.keras.layers.Dense(8, activation="relu")(x)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_int8_tflite(model, np.random.default_rng(seed).normal(size=(128, n)).astype(np.float32), path)
    return path


def app_models(domain: str, work: Path, trained: bool = True) -> list[FirmwareModel]:
    """Every model the domain's app declares (APP_MODELS): the trained ones when ``trained`` and present, else
    untrained stand-ins with their interfaces built once into ``work`` (the tiny classifier's, then autoencoders
    of the feature vector), so an app builds and runs before its domain is trained."""
    from shared.domain import get as get_domain
    from shared.tiny.targets import app_extra_models, models_dir, standin_tflite

    d = get_domain(domain)
    trained_dir = models_dir(domain)
    primary = trained_dir / "tiny.tflite"
    if not (trained and primary.exists()):
        primary = Path(work) / f"{domain}_standin.tflite"
        if not primary.exists():
            standin_tflite(domain, primary)
    out = [FirmwareModel(primary, c_name(d.tiny_model))]
    for m in app_extra_models(domain):
        if not (trained and m.path.exists()):
            path = Path(work) / f"{domain}_{m.path.stem}_standin.tflite"
            m = FirmwareModel(path if path.exists() else standin_autoencoder(domain, path), m.name)
        out.append(m)
    return out
