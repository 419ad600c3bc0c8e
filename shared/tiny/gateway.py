"""The firmware gateway: framed messages from a serial line, a pipe or QEMU -> validated -> MQTT.

A device without a network stack writes frames (see :mod:`shared.tiny.frames`) on its serial line. The
gateway decodes them, validates every message with :func:`shared.protocol.messages.decode` and publishes it to
``tinylarge/<domain>/<device>/<stream>`` at QoS 1 (``status`` retained). Invalid messages are counted,
reported and sent to the dead-letter topic, never forwarded. When the source ends, devices whose last
status was ``online`` get a retained ``offline`` status, as their last will would.

The gateway speaks for its own device only: the MQTT user of ``--mqtt`` (or, with ``--cert`` and no user,
the certificate's CN), which is the one device the broker's ACL lets it publish for (``tinylarge broker
config``); ``--device`` names the devices explicitly (several devices behind one gateway on a broker that
lets it publish for them); with neither (an open local broker) any device is bridged. A frame naming any
other device is refused and dead-lettered with the reason, so the counts say what the broker accepted
(under MQTT 3.1.1 an ACL-refused publish is acknowledged and dropped silently). Dead letters go to
``tinylarge/_deadletter/<domain>``, which the generated ACL lets a device write for its own domain.
A device's log text is written with its control characters escaped (a newline as backslash-n, ESC as
backslash-x1b), so a log frame cannot forge log lines or drive the terminal.

Signed model updates (``--trusted-key`` and ``--model-dir``): for every device it bridges (seen on the
line, or named with ``--device``) the gateway subscribes to ``tinylarge/<domain>/<device>/model`` and
passes each update through a :class:`shared.security.model_update.ModelSlot` (schema, device, trusted key,
Ed25519 signature, strictly higher version, size, SHA-256). An accepted model is written atomically to
``<model-dir>/<device>/model.tflite`` (metadata in ``model.tflite.json``); a refused one leaves the old
model in place and goes to the dead-letter topic with its reason. The device's retained status then
carries ``active_model`` = the slot's model and ``counts.accepted`` / ``counts.rejected``. The gateway
does not reprogram the device: the next firmware build and flash picks the model up from the slot
(``tinylarge firmware build --slot <model-dir>/<device>``); until then the ``model`` field of the
device's own messages still names the model compiled into the running image. A bootloader that
flashes over the serial line is out of scope.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from shared.protocol import messages
from shared.tiny.frames import KIND_LOG, KIND_MESSAGE, Frame, FrameDecoder
from shared.tiny.targets import SLOT_FILE, qemu_command

log = logging.getLogger(__name__)

#: (topic, payload, qos, retain) -> accepted
Publish = Callable[[str, bytes, int, bool], bool]
#: (topic filter, handler(topic, payload)) -> None; blocks until the broker granted it
Subscribe = Callable[[str, Callable[[str, bytes], None]], None]
#: streams only the cloud publishes: never forwarded from a device's line
CLOUD_STREAMS = ("model", "risk", "action")


@dataclass
class GatewayConfig:
    """Where messages go. Defaults suit one device on a local broker."""

    mqtt: str  #: mqtt://[user:pass@]host:port
    domain: str  #: domain of the device's messages (schema and topic), a registered one
    client_id: str = "tinylarge-fw-gateway"
    max_seconds: float = 0.0  #: stop after this long (0 = when the source ends)
    trusted_keys: tuple[Path, ...] = ()  #: Ed25519 public keys (PEM) for model updates; () = no updates
    model_dir: Path | None = None  #: accepted models go to <model_dir>/<device>/model.tflite
    devices: tuple[str, ...] = ()  #: the devices it bridges (default: its MQTT identity); watched for model updates
    ca: str | None = None  #: CA certificate (PEM) for mqtts://
    certfile: str | None = None  #: client certificate (PEM) for mutual TLS
    keyfile: str | None = None  #: its private key (PEM)
    #: the devices whose frames are forwarded (``devices``, else the MQTT identity); () = any (open broker)
    own_devices: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if self.domain not in messages.domains():
            raise ValueError(f"domain: expected one of {', '.join(messages.domains())}, got {self.domain!r}")
        if self.max_seconds < 0:
            raise ValueError(f"max_seconds: must be >= 0, got {self.max_seconds}")
        self.trusted_keys = tuple(Path(k) for k in self.trusted_keys)
        if bool(self.trusted_keys) != (self.model_dir is not None):
            raise ValueError("trusted_keys and model_dir: give both (model updates) or neither")
        for key in self.trusted_keys:
            if not key.is_file():
                raise ValueError(f"trusted_keys: {key} is not a file")
        if self.model_dir is not None:
            self.model_dir = Path(self.model_dir)
        for device in self.devices:
            messages.check_id(device)
        from shared.protocol.endpoints import parse_mqtt_url
        from shared.security.pki import certificate_cn

        endpoint = parse_mqtt_url(self.mqtt)
        if (self.ca or self.certfile) and not endpoint.tls:
            raise ValueError(f"ca/cert given but {endpoint} is not TLS: use mqtts://")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("cert and key: give both (mutual TLS) or neither")
        identity = endpoint.username or (certificate_cn(self.certfile) if self.certfile else None)
        self.own_devices = tuple(self.devices) or ((messages.check_id(identity, "MQTT user"),) if identity else ())


class ModelAgent:
    """Signed model updates for the devices behind a gateway: one :class:`ModelSlot` per device.

    ``see(msg)`` is called for every valid message from the line: the first one of a device creates its
    slot (its version floor is the last update this gateway verified, saved under ``model_dir`` and
    reloaded at start, so a restart does not reopen a downgrade; never the device's own unsigned
    ``model`` field); an update must compile for the device and keep the slot model's input/output
    shapes before it is installed. It subscribes
    to its ``model`` topic. ``on_model`` (MQTT worker thread) verifies and installs; updates for a device
    that has not spoken yet wait until it does. ``publish_status`` forwards a device's status with the
    slot's ``active_model`` and the update counts.
    """

    def __init__(self, domain: str, trusted_keys: Sequence[Path], model_dir: Path, publish: Publish,
                 subscribe: Subscribe | None = None):
        from shared.security.model_update import load_public_key

        self.domain = domain
        self.keys = [load_public_key(k) for k in trusted_keys]  # fails early on a bad key file
        if not self.keys:
            raise ValueError("trusted_keys: at least one public key is needed for model updates")
        self.model_dir = Path(model_dir)
        self.publish = publish
        self.subscribe = subscribe
        self.slots: dict[str, Any] = {}  # device -> shared.security.model_update.ModelSlot
        self.updates: dict[str, Counter[str]] = {}  # device -> accepted / rejected
        self.counts: Counter[str] = Counter()
        self.last_reason: dict[str, str] = {}
        self._status: dict[str, dict] = {}  # device -> its last status as the device sent it
        self._pending: dict[str, bytes] = {}
        self._subscribed: set[str] = set()
        self._lock = threading.RLock()

    def slot_path(self, device: str) -> Path:
        return self.model_dir / messages.check_id(device) / SLOT_FILE

    def watch(self, devices: Sequence[str]) -> None:
        """Subscribe to the model topics of ``devices`` now (their updates wait until they speak)."""
        for device in devices:
            self._subscribe(device)

    def _subscribe(self, device: str) -> None:
        with self._lock:
            if device in self._subscribed or self.subscribe is None:
                return
            self._subscribed.add(device)
        from shared.security.model_update import model_topic

        self.subscribe(model_topic(self.domain, device), self.on_model)  # blocks for the SUBACK: no lock held

    def see(self, msg: dict) -> None:
        """A valid message from a device: first sight creates its slot and subscribes to its model topic."""
        from shared.security.model_update import ModelSlot

        device = msg["device"]
        with self._lock:
            if device in self.slots:
                return
            # the version floor comes only from updates this gateway verified and persisted (the slot file),
            # never from the device's own, unsigned `model` field (a huge version there would block every update)
            path = self.slot_path(device)
            path.parent.mkdir(parents=True, exist_ok=True)
            slot = ModelSlot(self.domain, device, self.keys, path=path, active_version=0,
                             load=lambda data, d=device: self._check_model(d, data))
            if slot.warning:
                log.warning("device %s: %s", device, slot.warning)
            self.slots[device] = slot
            self.updates[device] = Counter(accepted=0, rejected=0)
            pending = self._pending.pop(device, None)
            if pending is not None:
                self._offer(device, pending)
        self._subscribe(device)

    def on_model(self, topic_name: str, payload: bytes) -> None:
        """Handler for ``tinylarge/<domain>/<device>/model``."""
        if not payload:
            return  # a cleared retained message
        device = messages.parse_topic(topic_name).device
        with self._lock:
            if device not in self.slots:
                self._pending[device] = bytes(payload)
                self.counts["model_pending"] += 1
                return
            self._offer(device, bytes(payload))

    def _offer(self, device: str, payload: bytes) -> None:
        slot = self.slots[device]
        if self._is_active(slot, payload):
            self.counts["model_current"] += 1  # the retained update again (resubscribe, restart)
            return
        ok, reason = slot.offer(payload)
        self.last_reason[device] = reason
        self.updates[device]["accepted" if ok else "rejected"] += 1
        self.counts["model_accepted" if ok else "model_rejected"] += 1
        if ok:
            log.info("device %s: model update %s -> %s", device, reason, self.slot_path(device))
        else:
            log.warning("device %s: model update refused, kept %s: %s", device, slot.active_model, reason)
            record = messages.deadletter(self.domain, f"tinylarge/{self.domain}/{device}/model", reason, payload,
                                         int(time.time() * 1000))
            self.publish(messages.deadletter_topic(self.domain), record, 1, False)
        if device in self._status:
            self.publish_status(self._status[device])

    def _check_model(self, device: str, data: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The update must compile for the device (shared.tiny.compiler) and keep the input/output shapes of
        the model in its slot, if any; raises CompileError / ValueError otherwise."""
        import tempfile

        from shared.tiny.compiler import compile_tflite

        with tempfile.TemporaryDirectory() as tmp:
            new = compile_tflite(data, "update", tmp)
            io = (tuple(new.input_shape), tuple(new.output_shape))
            old_bytes = self.slots[device].active_bytes if device in self.slots else None
            if old_bytes is not None:
                old = compile_tflite(old_bytes, "active", tmp)
                if io != (tuple(old.input_shape), tuple(old.output_shape)):
                    raise ValueError(f"input/output {io[0]} -> {io[1]} differ from the active model's "
                                     f"{tuple(old.input_shape)} -> {tuple(old.output_shape)}")
        return io

    @staticmethod
    def _is_active(slot: Any, payload: bytes) -> bool:
        if slot.active_bytes is None:
            return False
        try:
            msg = json.loads(payload)
            return (isinstance(msg, dict) and msg.get("version") == slot.active_version
                    and msg.get("sha256") == hashlib.sha256(slot.active_bytes).hexdigest())
        except ValueError:
            return False

    def publish_status(self, msg: dict) -> bool:
        """Publish a device's status (retained) with the slot's active model and update counts."""
        device = msg["device"]
        with self._lock:
            self._status[device] = msg
            out = dict(msg)
            slot = self.slots.get(device)
            if slot is not None:
                # no verified update installed yet: the model the image runs, as the device says
                out["active_model"] = slot.active_model or msg.get("active_model") or msg["model"]
                out["counts"] = {**msg.get("counts", {}), **self.updates[device]}
            body = messages.encode(self.domain, "status", out)
            return self.publish(messages.topic(self.domain, device, "status"), body, 1, True)

    def summary(self) -> dict:
        with self._lock:
            return {"active_models": {d: s.active_model for d, s in sorted(self.slots.items())},
                    "last_reason": dict(self.last_reason)}


@dataclass
class Gateway:
    """Frame handling, independent of the byte source and of the MQTT client."""

    domain: str
    publish: Publish
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    online: dict[str, dict] = field(default_factory=dict)  # device -> its last online status
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    models: ModelAgent | None = None  #: signed model updates for the bridged devices (None: off)
    own_devices: tuple[str, ...] = ()  #: forward only these devices' messages (() = any device)

    def feed(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            self.handle(frame)

    def handle(self, frame: Frame) -> None:
        self.counts["frames"] += 1
        if frame.kind == KIND_LOG:
            self.counts["logs"] += 1
            log.info("device log: %s", printable(frame.payload.decode(errors="replace")))
            return
        if frame.kind != KIND_MESSAGE:
            self._reject("?", frame.payload, f"unknown frame kind {frame.kind}")
            return
        try:
            stream, body = frame.message()
            if stream in CLOUD_STREAMS:
                raise ValueError(f"stream {stream!r} flows cloud -> device; a device may not publish it")
            msg = messages.decode(self.domain, stream, body)
            if self.own_devices and msg["device"] not in self.own_devices:
                raise ValueError(f"frame for device {msg['device']!r}: this gateway speaks only for device "
                                 f"{', '.join(map(repr, self.own_devices))} (its MQTT identity or --device)")
            topic = messages.topic(self.domain, msg["device"], stream)
        except (ValueError, messages.MessageError) as exc:
            reason = getattr(exc, "reason", str(exc))
            self._reject(frame.payload.partition(b"\x00")[0].decode(errors="replace"), frame.payload, reason)
            return
        retain = stream == "status"
        if self.models is not None:
            self.models.see(msg)
        if stream == "status":
            if msg["state"] == "online":
                self.online[msg["device"]] = msg
            else:
                self.online.pop(msg["device"], None)
        if stream == "status" and self.models is not None:
            sent = self.models.publish_status(msg)
        else:
            sent = self.publish(topic, body, 1, retain)
        if sent:
            self.counts["forwarded"] += 1
            self.counts[f"forwarded_{stream}"] += 1
        else:
            self.counts["publish_failed"] += 1

    def _reject(self, stream: str, payload: bytes, reason: str) -> None:
        self.counts["invalid"] += 1
        self.reasons[reason[:80]] += 1
        log.warning("invalid message on stream %s: %s", printable(repr(stream)), printable(reason))
        record = messages.deadletter(self.domain, f"serial/{stream}", reason, payload, int(time.time() * 1000))
        self.publish(messages.deadletter_topic(self.domain), record, 1, False)

    def close(self) -> None:
        """Devices still online when their line ended: retained offline status (their last will)."""
        for device, last in list(self.online.items()):
            offline = {"v": messages.SCHEMA_VERSION, "device": device, "seq": int(last["seq"]) + 1,
                       "ts": int(time.time() * 1000), "model": last["model"], "state": "offline"}
            if self.models is not None:
                self.models.publish_status(offline)
            else:
                self.publish(messages.topic(self.domain, device, "status"),
                             messages.encode(self.domain, "status", offline), 1, True)
            self.counts["offline_sent"] += 1
        self.online.clear()
        self.counts["bad_frames"] = self.decoder.bad
        self.counts["skipped_bytes"] = self.decoder.skipped_bytes

    def summary(self) -> dict:
        out = {"counts": dict(self.counts), "invalid_reasons": dict(self.reasons)}
        if self.models is not None:
            out["counts"].update(self.models.counts)
            out["models"] = self.models.summary()
        return out


def printable(text: str, limit: int = 2000) -> str:
    """``text`` for a log line: control and other non-printable characters escaped (newline as backslash-n,
    ESC as backslash-x1b, U+2028 as backslash-u2028), so device text cannot start a line or drive a terminal."""
    out = []
    for ch in text[:limit]:
        if ch.isprintable():
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out) + ("..." if len(text) > limit else "")


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
    from shared.transport.mqtt import MqttClient, MqttConfig

    client = MqttClient(MqttConfig(url=cfg.mqtt, client_id=cfg.client_id, clean_session=True, ca=cfg.ca,
                                   certfile=cfg.certfile, keyfile=cfg.keyfile))
    client.start()
    return client


def run(cfg: GatewayConfig, source: BinaryIO, client: object | None = None) -> dict:
    """Bridge one byte source to MQTT; returns the summary."""
    own = client is None
    client = client or _mqtt_publisher(cfg)
    def publish(t: str, p: bytes, q: int, r: bool) -> bool:
        return client.publish(t, p, qos=q, retain=r)  # type: ignore[attr-defined]

    gw = Gateway(cfg.domain, publish, own_devices=cfg.own_devices)
    if not cfg.own_devices:
        log.info("bridging any device (no MQTT identity and no --device: an open broker)")
    if cfg.trusted_keys:
        assert cfg.model_dir is not None
        gw.models = ModelAgent(cfg.domain, cfg.trusted_keys, cfg.model_dir, publish,
                               lambda f, h: client.subscribe(f, h))  # type: ignore[attr-defined]
        gw.models.watch(cfg.devices)
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
    src.add_argument("--qemu", type=Path, help="Cortex-M4 ELF to run under qemu-system-arm (with --board: that "
                     "board's image, e.g. netduinoplus2)")
    ap.add_argument("--board", help="with --qemu: a board row QEMU emulates (shared/tiny/boards.py); its USART is "
                    "QEMU's serial line, and --qemu-input's sensor windows go into its RX")
    ap.add_argument("--qemu-input", type=Path, help="with --board: tlsensor text to send to the board's USART "
                    "(an MPS2 row: read by the image over semihosting)")
    ap.add_argument("--baud", type=int, default=115200, help="serial baud rate")
    ap.add_argument("--qemu-args", default="", help="firmware arguments, e.g. '--input sensors.txt --device w1'")
    ap.add_argument("--mqtt", default=os.environ.get("TINYLARGE_MQTT"),
                    help="mqtt[s]://[user:pass@]host:port (env TINYLARGE_MQTT); the user is the bridged device")
    ap.add_argument("--ca", help="CA certificate for mqtts://")
    ap.add_argument("--cert", help="client certificate (PEM) for mqtts:// (its CN names the device without a user)")
    ap.add_argument("--key", help="client private key (PEM) for mqtts://")
    ap.add_argument("--domain", required=True, choices=messages.domains(), help="the domain of the bridged devices")
    ap.add_argument("--client-id", default="tinylarge-fw-gateway")
    ap.add_argument("--max-seconds", type=float, default=0.0, help="stop after this long (0 = at end of source)")
    ap.add_argument("--trusted-key", type=Path, action="append", default=[],
                    help="Ed25519 public key (PEM) that signs model updates; repeat for key rotation")
    ap.add_argument("--model-dir", type=Path, help="accepted models go to DIR/<device>/model.tflite, where "
                    "`tinylarge firmware build --slot DIR/<device>` takes them for the next flash")
    ap.add_argument("--device", action="append", default=[],
                    help="a device this gateway bridges (default: the MQTT user); its model topic is watched "
                    "from the start")
    a = ap.parse_args(argv)
    if not a.mqtt:
        ap.error("--mqtt (or TINYLARGE_MQTT) is required")
    if bool(a.trusted_key) != (a.model_dir is not None):
        ap.error("--trusted-key and --model-dir go together (model updates need both)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = GatewayConfig(a.mqtt, a.domain, a.client_id, a.max_seconds, tuple(a.trusted_key), a.model_dir,
                            tuple(a.device), a.ca, a.cert, a.key)
    except ValueError as exc:
        ap.error(str(exc))
    proc = None
    if a.serial:
        import serial  # pyserial

        source: BinaryIO = serial.Serial(a.serial, a.baud, timeout=0.2)
    else:
        mps2 = None
        if a.qemu and a.board:
            from shared.tiny.boards import get as get_board

            try:
                mps2 = get_board(a.board) if get_board(a.board).family == "mps2" else None
            except ValueError as exc:
                ap.error(str(exc))
        if a.qemu and a.board and mps2 is None:
            from shared.tiny.board_build import SerialQemu

            if a.qemu_input is None:
                ap.error("--board needs --qemu-input (the sensor windows for the board's USART)")
            try:
                board_qemu = SerialQemu(a.board, a.qemu, a.qemu_input.read_bytes())
            except (ValueError, OSError, RuntimeError) as exc:  # unknown board, no QEMU for it, unreadable input
                ap.error(str(exc))
            try:
                summary = run(cfg, board_qemu)  # type: ignore[arg-type]
            finally:
                board_qemu.close()
            print(json.dumps(summary, indent=1, sort_keys=True))
            return 0 if summary["counts"].get("invalid", 0) == 0 else 1
        if mps2 is not None:  # an MPS2 app image: windows over semihosting, frames on UART0 (QEMU's stdout)
            inputs = ["--input", str(a.qemu_input.resolve())] if a.qemu_input is not None else []
            cmd = qemu_command(a.qemu, [*inputs, *shlex.split(a.qemu_args)], machine=mps2.qemu_machine)
        elif a.qemu:
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
