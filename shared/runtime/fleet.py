"""Simulated devices of any domain: one MQTT client each, retained status with a last will, signed updates.

A domain hands the fleet its subjects (patients, machines, ...) and a ``process(device, t_end_s)``
that runs the device side on the window ending at ``t_end_s`` (simulate, DSP, int8 model) and returns
the ``inference`` message; the fleet publishes it at QoS 1 from that device's own client, keeps the
per-device ``seq`` and publishes the retained ``status``. With a ``trusted_key``, every device accepts
signed model updates on its retained ``model`` topic (:class:`shared.security.model_update.ModelSlot`):
verified, swapped through ``reload(device, tflite_bytes, version)``, reported in the status.

A device may hold a second slot (:class:`SecondSlot`, ``second_slot=``): a model of another name (the
cloud's distilled event student) installed beside the first, never in its place, so that the first
model's outputs, which the cloud's large model reads, stay what they were. The second model runs on the
very input vector the first was given (the fleet taps the model holder's ``classify``) and its output
stays on the device (``SimDevice.windows``: the demo's live loop reads it).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.protocol.messages import boot_seq


def utc_midnight_ms(days_ago: int = 1) -> int:
    """Epoch ms of UTC midnight ``days_ago`` days before today."""
    day_ms = 86_400_000
    return (int(time.time() * 1000) // day_ms - days_ago) * day_ms


@dataclass
class SimDevice:
    """One simulated device: its subject, model(s), counters and model slot."""

    id: str
    subject: Any
    model: Any  #: what ``process`` runs (the domain's tiny model holder; has ``model_id``)
    start_ms: int  #: epoch ms of the subject's t = 0
    publish: Callable[[str, str, dict], None]
    seq: int = 0  #: next seq; the fleets start it at messages.boot_seq() so a restart reuses none
    status_seq: int = 0
    slot: Any = None
    first_seq: int = field(init=False, default=0)
    updates: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "rejected": 0})
    second: SecondSlot | None = None  #: the second model slot (None: one slot only)
    #: the input rows the first model was given while the current message was made, and its p(first class)
    #: for each (tapped; a message may hold several: vehicles' candidate windows of a trip)
    inputs: list[tuple[np.ndarray, float]] = field(default_factory=list)
    #: with a second slot, per message: (seq, t_end_s, input rows (k, d), the first model's p(first class) (k,),
    #: the second model's p(event) (k,) or None while it holds none)
    windows: list[tuple[int, float, np.ndarray, np.ndarray, np.ndarray | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.first_seq = self.seq

    def ts_ms(self, t_s: float) -> int:
        return self.start_ms + int(round(t_s * 1000))

    def publish_status(self, state: str = "online") -> None:
        from shared.runtime.app import status_message

        self.status_seq += 1
        self.publish(self.id, "status", status_message(
            self.id, self.status_seq, self.model.model_id, state, counts={"published": self.seq - self.first_seq,
                    **self.updates},
            active_model=self.model.model_id))


class _Tap:
    """The device's model holder, seen through: ``classify(x)`` notes the input vector and the answer on
    the device, everything else is the holder's own."""

    def __init__(self, model: Any, device: SimDevice):
        self._model, self._device = model, device

    def classify(self, x: Any) -> Any:
        labels, scores = self._model.classify(x)
        self._note(x, scores)
        return labels, scores

    def scores(self, x: Any) -> Any:
        """Class probabilities (n, classes) for a batch (vehicles: the candidate windows of a trip)."""
        out = self._model.scores(x)
        self._note(x, out)
        return out

    def _note(self, x: Any, scores: Any) -> None:
        rows = np.asarray(x, dtype=np.float32)
        if rows.size == 0:  # no rows (a vehicles trip without a candidate window)
            return
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows.reshape(len(rows), -1)
        first = (getattr(self._model, "labels", None) or [None])[0]
        for row, sc in zip(rows, scores, strict=True):
            p0 = sc.get(first, next(iter(sc.values()))) if isinstance(sc, dict) else np.asarray(sc).reshape(-1)[0]
            self._device.inputs.append((row.copy(), float(p0)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@dataclass
class SecondSlot:
    """A second signed-model slot of a device: ``name`` is the model it takes (an update for another name goes
    to the first slot); ``runner`` the installed int8 model (None until one is). Its output: p(last class)."""

    name: str
    slot: Any  #: shared.security.model_update.ModelSlot
    runner: Any = None

    def offer(self, payload: bytes) -> tuple[bool, str]:
        ok, reason = self.slot.offer(payload, load=self.load)
        if ok and self.slot.loaded is not None:
            self.runner = self.slot.loaded
        return ok, reason

    @staticmethod
    def load(data: bytes) -> Any:
        from shared.tiny.int8 import Int8Runner

        runner = Int8Runner(data)
        if len(runner.input_shape) != 1 or runner.output_shape != (2,):
            raise ValueError(f"expected a (d,) -> (2,) event model, got {runner.input_shape} -> {runner.output_shape}")
        return runner

    def p_event(self, x: np.ndarray) -> np.ndarray | None:
        """p(event) for each row of ``x`` (k, d); None while the slot holds no model."""
        if self.runner is None or x.shape[1:] != self.runner.input_shape:
            return None
        return self.runner.predict(x)[:, -1].astype(np.float64)

    @property
    def model_id(self) -> str | None:
        return self.slot.active_model if self.runner is not None else None


def _model_name(payload: bytes) -> str | None:
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    model = msg.get("model") if isinstance(msg, dict) else None
    return model.rpartition("@")[0] if isinstance(model, str) else None


def slot_path(slot_dir: Path | None, trusted_key: Path, domain: str, device: str) -> Path:
    """Where a simulated device keeps its installed model (``<dir>/<key id>/<domain>/<device>/model.tflite``,
    metadata beside it), so a restarted device does not accept an older signed version again. Default
    directory: ``device-slots`` beside the trusted key; the key id keeps slots of a regenerated key apart."""
    from shared.security.model_update import slot_state_path

    base = Path(slot_dir) if slot_dir is not None else Path(trusted_key).resolve().parent / "device-slots"
    return slot_state_path(base, trusted_key, domain, device)


class DeviceFleet:
    """``start()``, ``step_all(t_end_s)`` per tick, ``stop()``; counts what it published."""

    def __init__(self, domain: str, args: argparse.Namespace | None, mqtt: str, subjects: Sequence[Any],
                 model: Any, start_ms: dict[str, int], process: Callable[[SimDevice, float], dict],
                 reload: Callable[[SimDevice, bytes, int], Any] | None = None,
                 on_publish: Callable[[str, int], None] | None = None, trusted_key: Path | None = None,
                 client_prefix: str | None = None, slot_dir: Path | None = None):
        from shared.runtime.app import client_config, publisher
        from shared.transport.consumer import status_will
        from shared.transport.mqtt import MqttClient

        self.domain = domain
        self.process = process
        self.reload = reload
        self.on_publish = on_publish
        self.published = 0
        self.start_ms = dict(start_ms)
        self._clients: dict[str, Any] = {}
        self.devices: list[SimDevice] = []
        self.record_windows = False
        self._trusted_key, self._slot_dir = trusted_key, slot_dir
        prefix = client_prefix or f"tinylarge-{domain}"
        for subject in subjects:
            device = subject.id
            client = MqttClient(client_config(args, mqtt, f"{prefix}-{device}",
                                              will=status_will(domain, device, model.model_id)))
            self._clients[device] = client
            slot = None
            if trusted_key is not None:
                from shared.security.model_update import ModelSlot

                name, _, version = model.model_id.rpartition("@")
                slot = ModelSlot(domain, device, trusted_key, active_version=int(version), active_model_id=name,
                                 path=slot_path(slot_dir, trusted_key, domain, device))
            d = SimDevice(device, subject, model, self.start_ms[device], publisher(client, domain),
                          seq=boot_seq(), slot=slot)
            if slot is not None and slot.active_bytes is not None and reload is not None:
                d.model = reload(d, slot.active_bytes, int(slot.active_version))  # installed before a restart
            self.devices.append(d)

    def add_second_slot(self, name: str) -> None:
        """Before ``start()``: every device gains a second slot for model ``name`` (signed updates, as the first)
        and records its windows (``SimDevice.windows``). Needs the fleet's ``trusted_key``."""
        from shared.security.model_update import ModelSlot

        if self._trusted_key is None:
            raise ValueError("add_second_slot: the fleet has no trusted_key to verify updates with")
        self.record_windows = True
        for d in self.devices:
            first = slot_path(self._slot_dir, self._trusted_key, self.domain, d.id)
            slot = ModelSlot(self.domain, d.id, self._trusted_key, active_version=0, active_model_id=name,
                             path=first.with_name(f"second-{name}.tflite"))
            d.second = SecondSlot(name, slot)
            if slot.active_bytes is not None:  # installed before a restart
                d.second.runner = SecondSlot.load(slot.active_bytes)
            if not isinstance(d.model, _Tap):
                d.model = _Tap(d.model, d)

    def start(self) -> None:
        from shared.protocol.messages import topic

        for d in self.devices:
            client = self._clients[d.id]
            client.start()
            if d.slot is not None:
                client.subscribe(topic(self.domain, d.id, "model"), lambda _t, payload, d=d: self.offer_update(d,
                                                                                                             payload))
            d.publish_status()
        for client in self._clients.values():  # every status is at the broker before a site message follows it:
            client.wait_all_acked(10.0)  # the service knows the subjects before their first chart

    def offer_update(self, d: SimDevice, payload: bytes) -> tuple[bool, str]:
        """A ``model`` message arrived: verify, swap the model if valid and newer, report in status. An update
        for the second slot's model name goes there."""
        if d.second is not None and _model_name(payload) == d.second.name:
            ok, reason = d.second.offer(payload)
            d.updates["accepted" if ok else "rejected"] += 1
            d.publish_status()
            return ok, reason
        reload = self.reload
        # the domain's loader runs (and checks the model's input/output) before the slot installs anything
        load = None if reload is None else (lambda data: reload(d, data, int(json.loads(payload)["version"])))
        ok, reason = d.slot.offer(payload, load=load)
        if ok and d.slot.loaded is not None:
            d.model = _Tap(d.slot.loaded, d) if self.record_windows else d.slot.loaded
        d.updates["accepted" if ok else "rejected"] += 1
        d.publish_status()
        return ok, reason

    @property
    def updates(self) -> dict[str, int]:
        """Model updates accepted and rejected, over all devices."""
        return {k: sum(d.updates[k] for d in self.devices) for k in ("accepted", "rejected")}

    def step_all(self, t_end_s: float) -> int:
        """Every device's window ending at ``t_end_s``: processed and published."""
        for d in self.devices:
            d.inputs.clear()
            msg = self.process(d, t_end_s)
            if self.record_windows and d.inputs:
                x = np.stack([row for row, _ in d.inputs])
                p = d.second.p_event(x) if d.second is not None else None
                d.windows.append((int(msg["seq"]), float(t_end_s), x, np.array([p0 for _, p0 in d.inputs]), p))
            d.seq += 1
            d.publish(d.id, "inference", msg)
            self.published += 1
            if self.on_publish is not None:
                self.on_publish(d.id, msg["seq"])
        return len(self.devices)

    def stop(self, flush_timeout_s: float = 30.0) -> None:
        for d in self.devices:
            d.publish_status("offline")
        for client in self._clients.values():
            client.stop(flush_timeout_s=flush_timeout_s)
