"""Wearables that run the REAL C firmware, beside the simulated ones (``healthcare.device.Fleet``).

Each patient gets one firmware process built from the trained int8 model (``models_dir/tiny.tflite``,
compiled by :mod:`shared.tiny.compiler`, built by :func:`shared.tiny.firmware.build`):

* ``host`` devices: the host build, publishing straight to the broker with the firmware's own MQTT 3.1.1
  client (QoS 1 inferences, retained status, last will ``offline``);
* ``cortex-m4`` devices (the last ``qemu`` patients): the Arm image under ``qemu-system-arm``, whose framed
  serial output the firmware gateway (:mod:`shared.tiny.gateway`) validates and publishes.

The sensor windows are the simulator's (``Patient.window``) at the simulated Fleet's times,
``t_end = window_s + k * window_every_s``, stamped ``admission_epoch_ms(patient, day0_ms) + t_end * 1000``.
They are fed in lockstep: :meth:`FirmwareFleet.step_all` writes the window ending at ``t_end`` to every
device (the host process's stdin, QEMU's semihosting input through a FIFO) right where the simulated
Fleet's ``step_all`` runs the Python DSP, so firmware and simulated devices publish on the same clock.
The firmware is built with the simulated wearables' model id (``TinyModel.load(models_dir).model_id``) and
counts ``seq`` from 0, so the messages are the same for the service: same schema, same id, same times.

    fw = FirmwareFleet(mqtt, cohort[:2], models_dir, day0_ms, workdir, qemu=1)
    fw.build(); fw.start()
    for t in ticks(cfg): fleet.step_all(t); fw.step_all(t)
    fw.stop()          # closes the inputs, waits for every device, checks exit codes
    fw.published       # inference messages published (QoS 1, acknowledged by the broker)
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from healthcare.device import admission_epoch_ms, chart_message
from healthcare.signals import CohortConfig, Patient
from shared.tiny.frames import healthcare_window_channels, write_sensor_window

log = logging.getLogger(__name__)

DOMAIN = "healthcare"
MODEL_NAME = "hc_tiny"  #: C identifier of the compiled model
FIFO_OPEN_TIMEOUT_S = 30.0


def ticks(cfg: CohortConfig, hours: float | None = None) -> list[float]:
    """Window end times (s) of the simulated Fleet: ``window_s + k * window_every_s`` up to ``hours``."""
    span_h = cfg.duration_h if hours is None else hours
    if not span_h > 0:
        raise ValueError(f"hours: must be > 0, got {hours!r}")
    return [float(t) for t in np.arange(cfg.window_s, span_h * 3600 + 1e-6, cfg.window_every_s)]


@dataclass
class FirmwareDevice:
    """One firmware wearable: its patient, target, process and what it did."""

    patient: Patient
    target: str  #: "host" or "cortex-m4"
    start_ms: int  #: epoch ms of the patient's t = 0
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    feed: _Feeder | None = None  #: writes its sensor windows (stdin or FIFO) from a thread
    gateway: threading.Thread | None = None  #: cortex-m4 only: serial -> gateway -> MQTT
    gateway_summary: dict | None = None
    windows: int = 0  #: windows written
    published: int = 0  #: inference messages published (known once stopped)
    returncode: int | None = None

    @property
    def device(self) -> str:
        return self.patient.id

    def log_tail(self, n_chars: int = 1500) -> str:
        return self.log_path.read_text(errors="replace")[-n_chars:] if self.log_path.exists() else ""


class FirmwareError(RuntimeError):
    """A firmware device failed (build, start, or a non-zero exit); the message carries its log."""


@dataclass
class _Charts:
    """The ward EHR for the firmware patients: nurse charts at the simulated times (as ``Fleet`` does)."""

    due: list[tuple[float, str, Any]]
    start_ms: dict[str, int]
    publish: Callable[[str, str, dict], None] | None = None
    client: Any = None
    seq: dict[str, int] = field(default_factory=dict)
    published: int = 0

    def step(self, t_end_s: float) -> None:
        while self.due and self.due[0][0] <= t_end_s:
            t_s, device, obs = self.due.pop(0)
            seq = self.seq.get(device, 0)
            self.seq[device] = seq + 1
            assert self.publish is not None
            self.publish(device, "chart", chart_message(device, seq, self.start_ms[device] + int(round(t_s * 1000)),
                                                        obs))
            self.published += 1


class FirmwareFleet:
    """Patients worn by firmware devices: ``build()``, ``start()``, ``step_all(t)`` per tick, ``stop()``.

    ``qemu``: how many of the patients (the last ones) run the Cortex-M4 image under QEMU behind the
    gateway; the others run the host build. ``charts``: also publish the nurse charts of these patients
    (the simulated Fleet publishes only its own patients' charts). ``on_publish(device, seq)`` is called
    when a window is queued for its device (the host firmware publishes it within milliseconds; QEMU lags).
    ``trusted_key``: the gateway of the QEMU devices verifies signed model updates with it and installs
    them under ``workdir/slots/<device>`` (the host processes run a fixed image).
    """

    def __init__(self, mqtt_url: str, patients: Sequence[Patient], models_dir: Path, day0_ms: int, workdir: Path,
                 qemu: int = 0, charts: bool = True, on_publish: Callable[[str, int], None] | None = None,
                 trusted_key: Path | None = None, args: argparse.Namespace | None = None):
        self.patients = list(patients)
        if not self.patients:
            raise ValueError("patients: need at least one patient for the firmware fleet")
        if not 0 <= qemu <= len(self.patients):
            raise ValueError(f"qemu: must be between 0 and {len(self.patients)} (the patients), got {qemu}")
        if qemu < len(self.patients) and not mqtt_url.startswith("mqtt://"):
            raise ValueError(f"mqtt_url: the host firmware speaks plain MQTT 3.1.1 (mqtt://host:port), got "
                             f"{mqtt_url.split('://', 1)[0]}://...; run TLS devices behind the gateway (qemu)")
        self.mqtt_url = mqtt_url
        self.models_dir = Path(models_dir)
        self.workdir = Path(workdir).resolve()
        if qemu and any(c.isspace() for c in str(self.workdir)):
            raise ValueError(f"workdir: QEMU's -append cannot carry a path with spaces: {self.workdir}")
        self.trusted_key = None if trusted_key is None else Path(trusted_key)
        self.args = args
        self.on_publish = on_publish
        self.start_ms = {p.id: admission_epoch_ms(p, day0_ms) for p in self.patients}
        n_host = len(self.patients) - qemu
        self.devices = [FirmwareDevice(p, "host" if i < n_host else "cortex-m4", self.start_ms[p.id],
                                       self.workdir / f"{p.id}.log") for i, p in enumerate(self.patients)]
        self._charts = _Charts(sorted(((c.t_s, p.id, c) for p in self.patients for c in p.charts()),
                                      key=lambda x: x[0]), self.start_ms) if charts else None
        self.model_id = ""
        self.builds: dict[str, Any] = {}  # target -> shared.tiny.firmware.BuildResult
        self.published = 0
        self._started = False

    @property
    def cfg(self) -> CohortConfig:
        return self.patients[0].cfg

    @property
    def charts_published(self) -> int:
        return 0 if self._charts is None else self._charts.published

    # -- build -------------------------------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        """Compile models_dir/tiny.tflite and build the targets in use (into workdir/build)."""
        from healthcare.tiny import TinyModel
        from shared.tiny.firmware import BuildConfig, build

        tflite = self.models_dir / "tiny.tflite"
        if not tflite.exists():
            raise FileNotFoundError(f"{tflite} not found: train first (healthcare.train.ensure_trained)")
        self.model_id = TinyModel.load(self.models_dir).model_id  # the simulated wearables' id
        self.workdir.mkdir(parents=True, exist_ok=True)
        for target in sorted({d.target for d in self.devices}):
            self.builds[target] = build(BuildConfig(target, tflite, MODEL_NAME, self.model_id,
                                                    self.workdir / "build"))
        return self.builds

    # -- run ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every device (and the EHR client); builds first if needed."""
        if self._started:
            raise RuntimeError("FirmwareFleet.start: already started")
        if not self.builds:
            self.build()
        self._started = True
        try:
            for d in self.devices:
                self._start_host(d) if d.target == "host" else self._start_qemu(d)
            if self._charts is not None:
                from shared.runtime.app import client_config, publisher
                from shared.transport.mqtt import MqttClient

                self._charts.client = MqttClient(client_config(self.args, self.mqtt_url, "tinylarge-hc-ehr-fw"))
                self._charts.client.start()
                self._charts.publish = publisher(self._charts.client, DOMAIN)
        except Exception:
            self._kill_all()
            raise

    def _start_host(self, d: FirmwareDevice) -> None:
        app = self.builds["host"].artifacts["app"]
        cmd = [str(app), "--input", "-", "--device", d.device, "--mqtt", self.mqtt_url,
               "--client-id", f"tinylarge-hc-{d.device}"]
        with open(d.log_path, "wb") as logf:
            d.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=logf)
        assert d.proc.stdin is not None
        d.feed = _Feeder(d.device, io.TextIOWrapper(d.proc.stdin, encoding="ascii"))

    def _start_qemu(self, d: FirmwareDevice) -> None:
        from shared.tiny.firmware import qemu_command
        from shared.tiny.gateway import GatewayConfig, run

        fifo = self.workdir / f"{d.device}.fifo"
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
        elf = self.builds["cortex-m4"].artifacts["app.elf"]
        with open(d.log_path, "wb") as logf:
            d.proc = subprocess.Popen(qemu_command(elf, ["--input", str(fifo), "--device", d.device]),
                                      stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=logf)
        keys = (self.trusted_key,) if self.trusted_key is not None else ()
        cfg = GatewayConfig(self.mqtt_url, DOMAIN, f"tinylarge-fw-gateway-{d.device}", trusted_keys=keys,
                            model_dir=self.workdir / "slots" if keys else None, devices=(d.device,) if keys else ())

        def bridge(dev: FirmwareDevice = d) -> None:
            from shared.runtime.app import client_config
            from shared.transport.mqtt import MqttClient

            assert dev.proc is not None and dev.proc.stdout is not None
            client = MqttClient(client_config(self.args, cfg.mqtt, cfg.client_id, clean_session=True))
            try:
                client.start()
                dev.gateway_summary = run(cfg, dev.proc.stdout, client)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - reported by stop()
                log.exception("gateway of %s failed", dev.device)
            finally:
                client.stop()

        d.gateway = threading.Thread(target=bridge, name=f"fw-gateway-{d.device}", daemon=True)
        d.gateway.start()
        d.feed = _Feeder(d.device, self._open_fifo(fifo, d))

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
        """Publish the charts due by ``t_end_s``, then hand every device its window ending at ``t_end_s``."""
        if not self._started:
            raise RuntimeError("FirmwareFleet.step_all: call start() first")
        if self._charts is not None:
            self._charts.step(t_end_s)
        for d in self.devices:
            w = d.patient.window(t_end_s)
            assert d.feed is not None
            if d.feed.error is not None:
                raise FirmwareError(f"{d.device} ({d.target}) stopped reading its input ({d.feed.error}):\n"
                                    f"{d.log_tail()}")
            d.feed.put(w, d.start_ms + int(round(t_end_s * 1000)))
            if self.on_publish is not None:
                self.on_publish(d.device, d.windows)
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
        if self._charts is not None and self._charts.client is not None:
            self._charts.client.stop()
        self.published = sum(d.published for d in self.devices)
        for d in self.devices:
            if d.target == "cortex-m4":
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
        """Start, feed every tick over ``hours`` (spread over ``seconds`` of wall time), stop; ``published``."""
        self.start()
        try:
            all_ticks = ticks(self.cfg, hours)
            t0 = time.monotonic()
            for i, t_s in enumerate(all_ticks):
                self.step_all(t_s)
                if seconds > 0:
                    time.sleep(max(0.0, t0 + (i + 1) * seconds / len(all_ticks) - time.monotonic()))
        except BaseException:
            self._kill_all()
            raise
        return self.stop(timeout_s)

    def _kill_all(self) -> None:
        for d in self.devices:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
            if d.feed is not None:
                d.feed.close(5.0)
        if self._charts is not None and self._charts.client is not None:
            self._charts.client.abort()


class _Feeder:
    """Writes one device's windows from a thread, so a slow reader (QEMU's semihosting reads a 37 KB
    window in about 0.2 s) never holds up the simulated clock; the device just lags a little."""

    def __init__(self, device: str, out: IO[str]):
        self.out = out
        self.error: str | None = None
        self._queue: queue.Queue[tuple[Any, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"fw-feed-{device}", daemon=True)
        self._thread.start()

    def put(self, window: Any, end_ts_ms: int) -> None:
        self._queue.put((window, end_ts_ms))

    def _loop(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                write_sensor_window(self.out, healthcare_window_channels(item[0]), item[1])
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
