"""Simulated devices of any domain: one MQTT client each, retained status with a last will, signed updates.

A domain hands the fleet its subjects (patients, machines, ...) and a ``process(device, t_end_s)``
that runs the device side on the window ending at ``t_end_s`` (simulate, DSP, int8 model) and returns
the ``inference`` message; the fleet publishes it at QoS 1 from that device's own client, keeps the
per-device ``seq`` and publishes the retained ``status``. With a ``trusted_key``, every device accepts
signed model updates on its retained ``model`` topic (:class:`shared.security.model_update.ModelSlot`):
verified, swapped through ``reload(device, tflite_bytes, version)``, reported in the status.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        """A ``model`` message arrived: verify, swap the model if valid and newer, report in status."""
        reload = self.reload
        # the domain's loader runs (and checks the model's input/output) before the slot installs anything
        load = None if reload is None else (lambda data: reload(d, data, int(json.loads(payload)["version"])))
        ok, reason = d.slot.offer(payload, load=load)
        if ok and d.slot.loaded is not None:
            d.model = d.slot.loaded
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
            msg = self.process(d, t_end_s)
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
