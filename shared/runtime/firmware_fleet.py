"""Devices of any registered domain that run the REAL C firmware, beside the simulated ones.

Each subject (a patient, a machine, ...) gets one firmware process of the domain's app, built from the
trained int8 model(s) in ``models_dir`` (compiled by :mod:`shared.tiny.compiler`, built by
:func:`shared.tiny.targets.build` from the app in the domain's package, ``Domain.firmware_dir``):

* ``host`` devices: the host build, publishing straight to the broker with the firmware's own MQTT 3.1.1
  client (QoS 1 inferences, retained status, last will ``offline``);
* ``cortex-m4`` devices (the last ``qemu`` subjects): the Arm image under ``qemu-system-arm``, whose framed
  serial output the firmware gateway (:mod:`shared.tiny.gateway`) validates and publishes;
* ``board`` devices (the last ``qemu`` subjects when ``board`` names a row of :mod:`shared.tiny.boards`, e.g.
  ``netduinoplus2``): the board's app image (one per device: its id, first seq and provisioned options are baked
  in) under ``qemu-system-arm -M <row's machine>``, the windows written to its emulated USART, the frames it
  sends back carried by the gateway, as a real board on a USB-serial adapter would be.

The sensor windows are the simulator's (``subject.window(t_end_s)``) at the simulated fleet's times,
``t_end = window_s + k * window_every_s`` (:func:`ticks`), stamped ``start_ms[device] + t_end * 1000``. They
are fed in lockstep: :meth:`FirmwareFleet.step_all` writes the window ending at ``t_end`` to every device
(the host process's stdin, QEMU's semihosting input through a FIFO), through the domain's
``window_channels`` (its firmware sensor table), right where the simulated fleet runs the Python DSP, so
firmware and simulated devices publish on the same clock. The firmware carries the simulated devices'
model id (``tiny_metrics.json``'s ``model_id``) and its ``seq`` starts where the fleet provisions it
(``--seq-start``, :func:`shared.protocol.messages.boot_seq` at each start, as the simulated devices count), so
a device that is restarted never reuses a (device, seq): the service cannot tell them apart.

What else a domain publishes for these subjects (healthcare: the ward EHR's nurse charts) comes through
``site``: a hook ``site(subjects, start_ms) -> [(t_s, device, stream, message), ...]`` in time order; each
message is published, on one MQTT client of the fleet's, at the first step whose ``t_end`` reaches ``t_s``.

    fw = FirmwareFleet("healthcare", mqtt, cohort[:2], models_dir, day0_ms, workdir, qemu=1,
                       start_ms=admission_epoch_ms, site=chart_feed)
    fw.build(); fw.start()
    for t in ticks(cfg): fleet.step_all(t); fw.step_all(t)
    fw.stop()          # closes the inputs, waits for every device, checks exit codes
    fw.published       # inference messages published (QoS 1, acknowledged by the broker)
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from shared.domain import Domain, get
from shared.protocol.messages import boot_seq
from shared.tiny.frames import write_sensor_window
from shared.tiny.targets import FirmwareError  # noqa: F401  (raised here too: one error for firmware steps)

log = logging.getLogger(__name__)

FIFO_OPEN_TIMEOUT_S = 30.0
#: (subjects, start_ms by device) -> the site's messages in time order: (t_s, device, stream, message)
SiteFeed = Callable[[Sequence[Any], Mapping[str, int]], Iterable[tuple[float, str, str, dict]]]


def ticks(clock: Any, hours: float | None = None) -> list[float]:
    """Window end times (s) of a simulated fleet: ``window_s + k * window_every_s`` up to ``hours``.

    ``clock``: anything with ``window_s`` and ``window_every_s`` (a Domain, a simulator's config); with
    ``hours`` None, its ``duration_h``."""
    span_h = getattr(clock, "duration_h", None) if hours is None else hours
    if span_h is None or not span_h > 0:
        raise ValueError(f"hours: must be > 0, got {hours!r}")
    return [float(t) for t in np.arange(clock.window_s, span_h * 3600 + 1e-6, clock.window_every_s)]


@dataclass
class FirmwareDevice:
    """One firmware device: its subject, target, process and what it did."""

    subject: Any  #: has ``id`` and ``window(t_end_s)``
    target: str  #: "host", "cortex-m4" or "board" (a board row's image, FirmwareFleet.board)
    start_ms: int  #: epoch ms of the subject's t = 0
    log_path: Path
    seq_start: int = 0  #: the first seq, provisioned at start (``--seq-start``)
    proc: subprocess.Popen[bytes] | None = None
    feed: _Feeder | None = None  #: writes its sensor windows (stdin or FIFO) from a thread
    gateway: threading.Thread | None = None  #: cortex-m4 only: serial -> gateway -> MQTT
    gateway_summary: dict | None = None
    windows: int = 0  #: windows written
    published: int = 0  #: inference messages published (known once stopped)
    returncode: int | None = None

    @property
    def device(self) -> str:
        return self.subject.id

    def log_tail(self, n_chars: int = 1500) -> str:
        return self.log_path.read_text(errors="replace")[-n_chars:] if self.log_path.exists() else ""


class _Site:
    """The domain's own publisher for the firmware subjects (healthcare: the ward EHR)."""

    def __init__(self, due: Iterable[tuple[float, str, str, dict]]):
        self.due = sorted(due, key=lambda x: x[0])  # stable: same-time messages keep the hook's order
        self.publish: Callable[[str, str, dict], None] | None = None
        self.client: Any = None
        self.published = 0

    def step(self, t_end_s: float) -> None:
        while self.due and self.due[0][0] <= t_end_s:
            _, device, stream, msg = self.due.pop(0)
            assert self.publish is not None
            self.publish(device, stream, msg)
            self.published += 1


class FirmwareFleet:
    """Subjects watched by firmware devices: ``build()``, ``start()``, ``step_all(t)`` per tick, ``stop()``.

    ``domain``: a registered domain (its app, channels, window and model id). ``qemu``: how many of the
    subjects (the last ones) run the Cortex-M4 image under QEMU behind the gateway; the others run the host
    build. ``start_ms(subject, day0_ms)``: epoch ms of a subject's t = 0 (default ``day0_ms``). ``site``: the
    domain's extra messages for these subjects (see the module docstring). ``models``: the model files in
    ``models_dir``, primary first (default ``tiny.tflite``). ``model_id``: the id in every message (default
    ``tiny_metrics.json``'s ``model_id``, else ``<Domain.tiny_model>@1``). ``on_publish(device, seq)`` is
    called when a window is queued for its device (the host firmware publishes it within milliseconds;
    QEMU lags). ``trusted_key``: the gateway of the QEMU devices verifies signed model updates with it and
    installs them under ``workdir/slots/<device>`` (the host processes run a fixed image). ``model_ids``:
    the ids of the models after the primary one, in ``models`` order ("" or missing: ``<C name>@<sha256[:8]>``).
    ``device_args(subject)``: the device's provisioned configuration as extra firmware options (e.g. the
    machine's bearing for industrial_iot), appended to the host command line or QEMU's semihosting one.
    """

    def __init__(self, domain: str | Domain, mqtt_url: str, subjects: Sequence[Any], models_dir: Path, day0_ms: int,
                 workdir: Path, qemu: int = 0, start_ms: Callable[[Any, int], int] | None = None,
                 site: SiteFeed | None = None, models: Sequence[str] = ("tiny.tflite",), model_id: str | None = None,
                 on_publish: Callable[[str, int], None] | None = None, trusted_key: Path | None = None,
                 args: argparse.Namespace | None = None, model_ids: Sequence[str] = (),
                 device_args: Callable[[Any], Sequence[str]] | None = None, board: str | None = None):
        self.domain = domain if isinstance(domain, Domain) else get(domain)
        self.subjects = list(subjects)
        what = f"{self.domain.subject}s"  # patients, machines, ...
        if not self.subjects:
            raise ValueError(f"{what}: need at least one {self.domain.subject} for the firmware fleet")
        if not 0 <= qemu <= len(self.subjects):
            raise ValueError(f"qemu: must be between 0 and {len(self.subjects)} (the {what}), got {qemu}")
        if qemu < len(self.subjects) and not mqtt_url.startswith("mqtt://"):
            raise ValueError(f"mqtt_url: the host firmware speaks plain MQTT 3.1.1 (mqtt://host:port), got "
                             f"{mqtt_url.split('://', 1)[0]}://...; run TLS devices behind the gateway (qemu)")
        if not models:
            raise ValueError("models: name at least the primary model file")
        self.mqtt_url = mqtt_url
        self.models_dir = Path(models_dir)
        self.models = tuple(models)
        self.model_ids = tuple(model_ids)
        self.device_args = device_args
        self.workdir = Path(workdir).resolve()
        if qemu and any(c.isspace() for c in str(self.workdir)):
            raise ValueError(f"workdir: QEMU's -append cannot carry a path with spaces: {self.workdir}")
        self.trusted_key = None if trusted_key is None else Path(trusted_key)
        self.args = args
        self.on_publish = on_publish
        self._channels = self.domain.hooks.window_channels
        self.start_ms = {s.id: (start_ms(s, day0_ms) if start_ms is not None else int(day0_ms))
                         for s in self.subjects}
        n_host = len(self.subjects) - qemu
        self.board = None
        if board is not None:
            from shared.tiny.boards import get as get_board

            self.board = get_board(board)
            if not self.board.qemu_machine:
                raise ValueError(f"board: QEMU does not emulate {board}; use a row with a QEMU machine "
                                 f"(netduinoplus2, mps2-an500, mps2-an505)")
        emulated = "cortex-m4" if self.board is None else "board"
        self.devices = [FirmwareDevice(s, "host" if i < n_host else emulated, self.start_ms[s.id],
                                       self.workdir / f"{s.id}.log") for i, s in enumerate(self.subjects)]
        self._site = _Site(site(self.subjects, self.start_ms)) if site is not None else None
        self.model_id = model_id or ""
        self.builds: dict[str, Any] = {}  # target -> shared.tiny.targets.BuildResult
        self.published = 0
        self._started = False

    @property
    def clock(self) -> Any:
        """What :func:`ticks` reads: the subjects' simulator config when they carry one, else the domain."""
        return getattr(self.subjects[0], "cfg", self.domain)

    @property
    def site_published(self) -> int:
        return 0 if self._site is None else self._site.published

    # -- build -------------------------------------------------------------------------------------------
    def _model_id(self) -> str:
        metrics = self.models_dir / "tiny_metrics.json"
        if metrics.exists():
            found = json.loads(metrics.read_text()).get("model_id")
            if found:
                return str(found)
        return f"{self.domain.tiny_model}@1"

    def build(self) -> dict[str, Any]:
        """Compile the models in models_dir and build the targets in use (into workdir/build)."""
        from shared.tiny.targets import BuildConfig, FirmwareModel, build, c_name

        paths = [self.models_dir / m for m in self.models]
        for p in paths:
            if not p.exists():
                raise FileNotFoundError(f"{p} not found: train first (tinylarge train {self.domain.name})")
        self.model_id = self.model_id or self._model_id()
        names = [c_name(self.domain.tiny_model), *(c_name(f"{self.domain.name}_{p.stem}") for p in paths[1:])]
        extra = (*self.model_ids, *[""] * len(paths))
        models = [FirmwareModel(p, n, self.model_id if i == 0 else extra[i - 1])
                  for i, (p, n) in enumerate(zip(paths, names, strict=True))]
        self.workdir.mkdir(parents=True, exist_ok=True)
        for target in sorted({d.target for d in self.devices} - {"board"}):
            self.builds[target] = build(BuildConfig(self.domain.name, target, models, self.workdir / "build"))
        for d in self.devices:
            if d.target == "board":
                self.builds[d.device] = self._build_board(d, models)
        return self.builds

    def _build_board(self, d: FirmwareDevice, models: list[Any]) -> Any:
        """The device's board image: an STM32 image takes its options from the build (no command line), so its
        first seq is provisioned here, at build time, like a device flashed before it boots."""
        from shared.tiny.board_build import build_board

        assert self.board is not None
        d.seq_start = boot_seq()
        args = ["--device", d.device, "--seq-start", str(d.seq_start), *self._device_args(d)]
        if self.board.family != "stm32f4":
            args = []  # an MPS2 image reads its options over semihosting (-append), given at start
        return build_board(self.board, self.domain.name, models, self.workdir / "build" / "boards" / d.device,
                           fw_args=args)

    # -- run ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every device (and the site's client); builds first if needed."""
        if self._started:
            raise RuntimeError("FirmwareFleet.start: already started")
        if not self.builds:
            self.build()
        self._started = True
        try:
            for d in self.devices:
                if d.target == "board":
                    self._start_board(d)
                    continue
                d.seq_start = boot_seq()
                self._start_host(d) if d.target == "host" else self._start_qemu(d)
            if self._site is not None:
                from shared.runtime.app import client_config, publisher
                from shared.transport.mqtt import MqttClient

                self._site.client = MqttClient(client_config(self.args, self.mqtt_url,
                                                             f"tinylarge-{self.domain.name}-site-fw"))
                self._site.client.start()
                self._site.publish = publisher(self._site.client, self.domain.name)
        except Exception:
            self._kill_all()
            raise

    def _device_args(self, d: FirmwareDevice) -> list[str]:
        return [str(a) for a in self.device_args(d.subject)] if self.device_args is not None else []

    def _start_host(self, d: FirmwareDevice) -> None:
        app = self.builds["host"].artifacts["app"]
        cmd = [str(app), "--input", "-", "--device", d.device, "--seq-start", str(d.seq_start), "--mqtt", self.mqtt_url,
               "--client-id", f"tinylarge-{self.domain.name}-{d.device}", *self._device_args(d)]
        with open(d.log_path, "wb") as logf:
            d.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=logf)
        assert d.proc.stdin is not None
        d.feed = _Feeder(d.device, io.TextIOWrapper(d.proc.stdin, encoding="ascii"), self._channels)

    def _start_board(self, d: FirmwareDevice) -> None:
        """The board's image under QEMU: windows on its USART's RX (QEMU's stdin) once it has spoken, frames
        from its TX (stdout) through the gateway."""
        from shared.tiny.board_build import UsartRx, UsartTx, board_qemu_command
        from shared.tiny.targets import qemu_command

        assert self.board is not None
        elf = self.builds[d.device].artifacts["elf"]
        if self.board.family == "stm32f4":
            cmd = board_qemu_command(self.board, elf)
        else:  # MPS2: the Cortex-M4 target's HAL, windows over semihosting from a FIFO
            cmd = qemu_command(elf, [], machine=self.board.qemu_machine)
            return self._start_qemu(d, cmd)
        with open(d.log_path, "wb") as logf:
            d.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=logf)
        assert d.proc.stdin is not None and d.proc.stdout is not None
        spoken = threading.Event()
        self._start_gateway(d, UsartTx(d.proc.stdout, spoken))
        d.feed = _Feeder(d.device, UsartRx(d.proc.stdin, spoken), self._channels)  # type: ignore[arg-type]

    def _start_qemu(self, d: FirmwareDevice, mps2: list[str] | None = None) -> None:
        from shared.tiny.targets import qemu_command

        fifo = self.workdir / f"{d.device}.fifo"
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
        args = ["--input", str(fifo), "--device", d.device, "--seq-start", str(d.seq_start), *self._device_args(d)]
        if mps2 is not None:
            cmd = [*mps2, "-append", " ".join(args)]
        else:
            cmd = qemu_command(self.builds["cortex-m4"].artifacts["app.elf"], args)
        with open(d.log_path, "wb") as logf:
            d.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=logf)
        assert d.proc.stdout is not None
        self._start_gateway(d, d.proc.stdout)
        d.feed = _Feeder(d.device, self._open_fifo(fifo, d), self._channels)

    def _start_gateway(self, d: FirmwareDevice, serial: Any) -> None:
        from shared.tiny.gateway import GatewayConfig, run

        keys = (self.trusted_key,) if self.trusted_key is not None else ()
        cfg = GatewayConfig(self.mqtt_url, self.domain.name, f"tinylarge-fw-gateway-{d.device}", trusted_keys=keys,
                            model_dir=self.workdir / "slots" if keys else None, devices=(d.device,) if keys else ())

        def bridge(dev: FirmwareDevice = d) -> None:
            from shared.runtime.app import client_config
            from shared.transport.mqtt import MqttClient

            client = MqttClient(client_config(self.args, cfg.mqtt, cfg.client_id, clean_session=True))
            try:
                client.start()
                dev.gateway_summary = run(cfg, serial, client)
            except Exception:  # noqa: BLE001 - reported by stop()
                log.exception("gateway of %s failed", dev.device)
            finally:
                client.stop()

        d.gateway = threading.Thread(target=bridge, name=f"fw-gateway-{d.device}", daemon=True)
        d.gateway.start()

    @staticmethod
    def _open_fifo(fifo: Path, d: FirmwareDevice) -> IO[str]:
        """Open the FIFO for writing once QEMU opened it for reading (fail if QEMU died first)."""
        deadline = time.monotonic() + FIFO_OPEN_TIMEOUT_S
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:  # ENXIO: no reader yet
                assert d.proc is not None
                if d.proc.poll() is not None or time.monotonic() > deadline:
                    raise FirmwareError(f"{d.device}: QEMU did not open its input ({d.proc.poll()}):\n"
                                        f"{d.log_tail()}") from None
                time.sleep(0.01)
        os.set_blocking(fd, True)
        return open(fd, "w", encoding="ascii")

    def step_all(self, t_end_s: float) -> int:
        """Publish the site's messages due by ``t_end_s``, then hand every device its window ending there."""
        if not self._started:
            raise RuntimeError("FirmwareFleet.step_all: call start() first")
        if self._site is not None:
            self._site.step(t_end_s)
        for d in self.devices:
            w = d.subject.window(t_end_s)
            assert d.feed is not None
            if d.feed.error is not None:
                raise FirmwareError(f"{d.device} ({d.target}) stopped reading its input ({d.feed.error}):\n"
                                    f"{d.log_tail()}")
            d.feed.put(w, d.start_ms + int(round(t_end_s * 1000)))
            if self.on_publish is not None:
                self.on_publish(d.device, d.seq_start + d.windows)
            d.windows += 1
        return len(self.devices)

    def stop(self, timeout_s: float = 60.0) -> int:
        """End every device's input, wait for it to publish the rest and exit; returns ``published``.

        FirmwareError (with the device's log) if a device exits non-zero or does not finish in time.
        """
        failed: list[str] = []
        deadline = time.monotonic() + timeout_s
        for d in self.devices:
            if d.feed is not None:
                d.feed.close(max(0.1, deadline - time.monotonic()))
                if d.feed.error is not None:
                    failed.append(f"{d.device}: input not delivered ({d.feed.error})")
        for d in self.devices:
            if d.proc is None:
                continue
            try:
                d.returncode = d.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.returncode = d.proc.wait()
                failed.append(f"{d.device}: did not finish within {timeout_s} s")
            if d.gateway is not None:
                d.gateway.join(max(0.1, deadline - time.monotonic()))
                if d.proc.stdout is not None:
                    d.proc.stdout.close()
            d.published = self._published(d, failed)
        if self._site is not None and self._site.client is not None:
            self._site.client.stop()
        self.published = sum(d.published for d in self.devices)
        for d in self.devices:
            if d.target != "host":
                (self.workdir / f"{d.device}.fifo").unlink(missing_ok=True)
        if failed:
            raise FirmwareError("firmware devices failed:\n" + "\n".join(failed))
        return self.published

    @staticmethod
    def _published(d: FirmwareDevice, failed: list[str]) -> int:
        if d.returncode != 0:
            failed.append(f"{d.device} ({d.target}) exited with {d.returncode}:\n{d.log_tail()}")
        if d.target == "host":
            # the app exits 0 only if every window was published and PUBACKed (one QoS 1 message in flight)
            return d.windows if d.returncode == 0 else 0
        counts = (d.gateway_summary or {}).get("counts", {})
        if d.gateway_summary is None or counts.get("invalid", 0) or not counts.get("all_acked"):
            failed.append(f"{d.device}: gateway summary {d.gateway_summary}")
        return int(counts.get("forwarded_inference", 0))

    def run(self, hours: float | None = None, seconds: float = 0.0, timeout_s: float = 60.0) -> int:
        """Start, feed every tick over ``hours`` (default: the simulation's duration, spread over ``seconds``
        of wall time), stop; returns ``published``."""
        self.start()
        try:
            all_ticks = ticks(self.clock, hours)
            t0 = time.monotonic()
            for i, t_s in enumerate(all_ticks):
                self.step_all(t_s)
                if seconds > 0:
                    time.sleep(max(0.0, t0 + (i + 1) * seconds / len(all_ticks) - time.monotonic()))
        except BaseException:
            self._kill_all()
            raise
        return self.stop(timeout_s)

    def abort(self) -> None:
        """Kill every device process now (an interrupted run: no firmware process outlives its fleet)."""
        self._kill_all()

    def _kill_all(self) -> None:
        for d in self.devices:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
            if d.feed is not None:
                d.feed.close(5.0)
        if self._site is not None and self._site.client is not None:
            self._site.client.abort()


class _Feeder:
    """Writes one device's windows from a thread, so a slow reader (QEMU's semihosting reads a 37 KB
    window in about 0.2 s) never holds up the simulated clock; the device just lags a little."""

    def __init__(self, device: str, out: IO[str], channels: Callable[[Any], dict]):
        self.out = out
        self.channels = channels
        self.error: str | None = None
        self._queue: queue.Queue[tuple[Any, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"fw-feed-{device}", daemon=True)
        self._thread.start()

    def put(self, window: Any, end_ts_ms: int) -> None:
        self._queue.put((window, end_ts_ms))

    def _loop(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                write_sensor_window(self.out, self.channels(item[0]), item[1])
                self.out.flush()
        except (OSError, ValueError) as exc:  # BrokenPipeError: the device exited early
            self.error = str(exc) or type(exc).__name__
        finally:
            try:
                self.out.close()
            except OSError:
                pass

    def close(self, timeout_s: float) -> None:
        """End of input once everything queued is written (the device then finishes and exits)."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.error = self.error or f"input still being written after {timeout_s:.0f} s"

