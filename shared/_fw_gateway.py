"""The firmware gateway: framed messages from a serial line, a pipe or QEMU -> validated -> MQTT.

A device without a network stack writes frames (see :mod:`shared._fw_frames`) on its serial line. The
gateway decodes them, validates every message with :func:`shared.messages.decode` and publishes it to
``tinylarge/<domain>/<device>/<stream>`` at QoS 1 (``status`` retained). Invalid messages are counted,
reported and sent to the dead-letter topic, never forwarded. When the source ends, devices whose last
status was ``online`` get a retained ``offline`` status, as their last will would.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from shared import messages
from shared._fw_frames import KIND_LOG, KIND_MESSAGE, Frame, FrameDecoder

log = logging.getLogger(__name__)

#: (topic, payload, qos, retain) -> accepted
Publish = Callable[[str, bytes, int, bool], bool]


@dataclass
class GatewayConfig:
    """Where messages go. Defaults suit one device on a local broker."""

    mqtt: str  #: mqtt://[user:pass@]host:port
    domain: str = "healthcare"  #: domain of the device's messages (schema and topic)
    client_id: str = "tinylarge-fw-gateway"
    max_seconds: float = 0.0  #: stop after this long (0 = when the source ends)

    def __post_init__(self) -> None:
        if self.domain not in messages.DOMAINS:
            raise ValueError(f"domain: expected one of {', '.join(messages.DOMAINS)}, got {self.domain!r}")
        if self.max_seconds < 0:
            raise ValueError(f"max_seconds: must be >= 0, got {self.max_seconds}")


@dataclass
class Gateway:
    """Frame handling, independent of the byte source and of the MQTT client."""

    domain: str
    publish: Publish
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    online: dict[str, dict] = field(default_factory=dict)  # device -> its last online status
    decoder: FrameDecoder = field(default_factory=FrameDecoder)

    def feed(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            self.handle(frame)

    def handle(self, frame: Frame) -> None:
        self.counts["frames"] += 1
        if frame.kind == KIND_LOG:
            self.counts["logs"] += 1
            log.info("device log: %s", frame.payload.decode(errors="replace"))
            return
        if frame.kind != KIND_MESSAGE:
            self._reject("?", frame.payload, f"unknown frame kind {frame.kind}")
            return
        try:
            stream, body = frame.message()
            msg = messages.decode(self.domain, stream, body)
            topic = messages.topic(self.domain, msg["device"], stream)
        except (ValueError, messages.MessageError) as exc:
            reason = getattr(exc, "reason", str(exc))
            self._reject(frame.payload.partition(b"\x00")[0].decode(errors="replace"), frame.payload, reason)
            return
        retain = stream == "status"
        if stream == "status":
            if msg["state"] == "online":
                self.online[msg["device"]] = msg
            else:
                self.online.pop(msg["device"], None)
        if self.publish(topic, body, 1, retain):
            self.counts["forwarded"] += 1
            self.counts[f"forwarded_{stream}"] += 1
        else:
            self.counts["publish_failed"] += 1

    def _reject(self, stream: str, payload: bytes, reason: str) -> None:
        self.counts["invalid"] += 1
        self.reasons[reason[:80]] += 1
        log.warning("invalid message on stream %r: %s", stream, reason)
        record = messages.deadletter(self.domain, f"serial/{stream}", reason, payload, int(time.time() * 1000))
        self.publish(messages.deadletter_topic(self.domain), record, 1, False)

    def close(self) -> None:
        """Devices still online when their line ended: retained offline status (their last will)."""
        for device, last in list(self.online.items()):
            offline = {"v": messages.SCHEMA_VERSION, "device": device, "seq": int(last["seq"]) + 1,
                       "ts": int(time.time() * 1000), "model": last["model"], "state": "offline"}
            self.publish(messages.topic(self.domain, device, "status"),
                         messages.encode(self.domain, "status", offline), 1, True)
            self.counts["offline_sent"] += 1
        self.online.clear()
        self.counts["bad_frames"] = self.decoder.bad
        self.counts["skipped_bytes"] = self.decoder.skipped_bytes

    def summary(self) -> dict:
        return {"counts": dict(self.counts), "invalid_reasons": dict(self.reasons)}


def pump(gw: Gateway, stream: BinaryIO, max_seconds: float = 0.0, chunk: int = 4096) -> None:
    """Feed a byte stream to the gateway until EOF (or max_seconds)."""
    t_end = time.monotonic() + max_seconds if max_seconds > 0 else None
    read = getattr(stream, "read1", stream.read)
    while t_end is None or time.monotonic() < t_end:
        data = read(chunk)
        if not data:
            if getattr(stream, "timeout", None) is not None:  # pyserial: empty read = timeout, not EOF
                continue
            break
        gw.feed(data)


def _mqtt_publisher(cfg: GatewayConfig):
    from shared.transport import MqttClient, MqttConfig

    client = MqttClient(MqttConfig(url=cfg.mqtt, client_id=cfg.client_id, clean_session=True))
    client.start()
    return client


def run(cfg: GatewayConfig, source: BinaryIO, client: object | None = None) -> dict:
    """Bridge one byte source to MQTT; returns the summary."""
    own = client is None
    client = client or _mqtt_publisher(cfg)
    gw = Gateway(cfg.domain, lambda t, p, q, r: client.publish(t, p, qos=q, retain=r))  # type: ignore[attr-defined]
    try:
        pump(gw, source, cfg.max_seconds)
    finally:
        gw.close()
        acked = client.wait_all_acked(10.0)  # type: ignore[attr-defined]
        gw.counts["all_acked"] = int(acked)
        if own:
            client.stop()  # type: ignore[attr-defined]
    return gw.summary()


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="tinylarge firmware gateway",
                                 description="Bridge framed firmware messages to MQTT (validated, QoS 1).")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--serial", help="serial port, e.g. /dev/ttyACM0 (pyserial)")
    src.add_argument("--pipe", help="shell command whose stdout carries the frames")
    src.add_argument("--qemu", type=Path, help="Cortex-M4 ELF to run under qemu-system-arm")
    ap.add_argument("--baud", type=int, default=115200, help="serial baud rate")
    ap.add_argument("--qemu-args", default="", help="firmware arguments, e.g. '--input sensors.txt --device w1'")
    ap.add_argument("--mqtt", default=os.environ.get("TINYLARGE_MQTT"), help="mqtt://host:port (env TINYLARGE_MQTT)")
    ap.add_argument("--domain", default="healthcare", choices=messages.DOMAINS)
    ap.add_argument("--client-id", default="tinylarge-fw-gateway")
    ap.add_argument("--max-seconds", type=float, default=0.0, help="stop after this long (0 = at end of source)")
    a = ap.parse_args(argv)
    if not a.mqtt:
        ap.error("--mqtt (or TINYLARGE_MQTT) is required")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cfg = GatewayConfig(a.mqtt, a.domain, a.client_id, a.max_seconds)
    proc = None
    if a.serial:
        import serial  # pyserial

        source: BinaryIO = serial.Serial(a.serial, a.baud, timeout=0.2)
    else:
        if a.qemu:
            from shared.firmware_tools import qemu_command

            cmd = qemu_command(a.qemu, shlex.split(a.qemu_args))
        else:
            cmd = ["/bin/sh", "-c", a.pipe]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        source = proc.stdout
    try:
        summary = run(cfg, source)
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=10)
        else:
            source.close()
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 0 if summary["counts"].get("invalid", 0) == 0 else 1
