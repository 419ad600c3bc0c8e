"""Devices and a result reader for the cluster tests: real MQTT clients (shared.transport.mqtt) on the
cluster's MQTT listeners, and the checks every test makes (nothing lost, nothing duplicated, no backward
seq within a device)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import defaultdict
from pathlib import Path

from shared.transport.consumer import Publisher
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.shared._support import inference, uid


class Fleet:
    """``n`` healthcare devices; device i publishes from the client of port ``ports[i % len(ports)]``."""

    def __init__(self, ports: list[int], n: int, prefix: str = "dev"):
        self.devices = [f"{prefix}{i:03d}" for i in range(n)]
        self.clients = [MqttClient(MqttConfig(url=f"mqtt://127.0.0.1:{p}", client_id=uid(f"fleet{p}"),
                                              clean_session=False, reconnect_max_s=1.0)) for p in ports]
        self.published: dict[str, list[int]] = defaultdict(list)
        self.next_seq = dict.fromkeys(self.devices, 0)

    def start(self) -> Fleet:
        for c in self.clients:
            c.start()
        return self

    def send(self, rounds: int) -> None:
        """``rounds`` messages from every device (seq counts on per device)."""
        for _ in range(rounds):
            for i, device in enumerate(self.devices):
                seq = self.next_seq[device]
                client = self.clients[i % len(self.clients)]
                assert Publisher(client).publish_msg("healthcare", device, "inference", inference(device, seq),
                                                     timeout_s=30)
                self.published[device].append(seq)
                self.next_seq[device] = seq + 1

    def total(self) -> int:
        return sum(len(v) for v in self.published.values())

    def wait_acked(self, timeout_s: float = 30.0) -> bool:
        return all(c.wait_all_acked(timeout_s) for c in self.clients)

    def stop(self) -> None:
        for c in self.clients:
            c.stop()


class Results:
    """Collects ``tinylarge/healthcare/+/risk`` in arrival order on one node's MQTT listener."""

    def __init__(self, port: int):
        self.lock = threading.Lock()
        self.order: dict[str, list[int]] = defaultdict(list)
        self.client = MqttClient(MqttConfig(url=f"mqtt://127.0.0.1:{port}", client_id=uid("results"),
                                            clean_session=True))

    def start(self) -> Results:
        self.client.start()
        self.client.subscribe("tinylarge/healthcare/+/risk", self._on, qos=1)
        return self

    def _on(self, topic: str, payload: bytes) -> None:
        msg = json.loads(payload)
        with self.lock:
            self.order[msg["device"]].append(msg["seq"])

    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.order.values())

    def check(self) -> None:
        """No duplicate and no backward seq within a device, in the order the results arrived."""
        with self.lock:
            for device, seqs in self.order.items():
                assert len(seqs) == len(set(seqs)), f"{device}: duplicate results {seqs}"
                assert seqs == sorted(seqs), f"{device}: a backward seq in {seqs}"

    def stop(self) -> None:
        self.client.stop()


def stored(db: Path) -> dict[str, list[int]]:
    """(device -> seqs) of the inference points in the SQLite store."""
    out: dict[str, list[int]] = defaultdict(list)
    try:
        with sqlite3.connect(db) as con:
            for device, seq in con.execute("SELECT device, seq FROM points WHERE measurement = 'inference'"):
                out[device].append(seq)
    except sqlite3.OperationalError:
        pass
    return out


def stored_count(db: Path) -> int:
    return sum(len(v) for v in stored(db).values())


def check_nothing_lost(fleet: Fleet, db: Path) -> None:
    have = stored(db)
    for device, seqs in fleet.published.items():
        missing = sorted(set(seqs) - set(have.get(device, [])))
        assert not missing, f"{device}: lost {missing}"
