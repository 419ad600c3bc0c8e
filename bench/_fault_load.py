"""Load generator for the fault scenarios: many device ids over a few MQTT connections, QoS 1.

Each of ``publishers`` :class:`shared.transport.mqtt.MqttClient` connections (persistent session, bounded
queue, reconnect with backoff) carries ``devices / publishers`` device ids; messages are valid
healthcare ``inference`` messages built by :func:`healthcare.device.inference_message` and encoded
(validated) by :func:`shared.protocol.messages.encode`. Messages go out round-robin over the devices at
``rate_hz`` in all, so every device's ``seq`` counts 0, 1, 2, ... in order.

What was published is recorded exactly: :attr:`LoadGenerator.published` maps (device, seq) to the
message's ``ts`` for every message :meth:`MqttClient.publish` accepted (sent, or queued while the
link is down); a message refused by a full queue past its timeout is counted in ``refused``.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from healthcare.device import inference_message
from shared.protocol import messages
from shared.transport.mqtt import MqttClient, MqttConfig

DOMAIN = "healthcare"
STREAM = "inference"
LABELS = ("normal", "tachycardia", "bradycardia", "desaturation", "irregular", "unreliable")
MODEL_ID = "hc-tiny@1"


@dataclass
class LoadConfig:
    """The shape of the load. Defaults are the benchmark's; tests pass smaller ones."""

    devices: int = 200  #: distinct device ids (>= publishers)
    messages: int = 10_000  #: messages in all, round-robin over the devices
    rate_hz: float = 800.0  #: publish rate over all devices (messages per second)
    publishers: int = 4  #: MQTT connections the device ids are spread over
    client_prefix: str = "fault-pub"  #: client ids are <prefix>-<k>: fixed, so sessions persist
    reconnect_max_s: float = 1.0  #: publishers retry the broker at least this often
    max_queue: int = 20_000  #: bounded outgoing queue per connection
    seed: int = 7  #: vitals are random but reproducible

    def __post_init__(self) -> None:
        if self.devices < 1 or self.publishers < 1 or self.publishers > self.devices:
            raise ValueError(f"need 1 <= publishers <= devices, got {self.publishers}, {self.devices}")
        if self.messages < 1:
            raise ValueError(f"messages must be >= 1, got {self.messages}")
        if self.rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")


def device_ids(n: int) -> list[str]:
    return [f"dev{i:04d}" for i in range(n)]


def make_payload(device: str, seq: int, ts_ms: int, rng: random.Random) -> bytes:
    """One valid, schema-checked healthcare inference message."""
    vitals = {
        "hr_bpm": rng.uniform(55, 110), "hrv_rmssd_ms": rng.uniform(10, 60),
        "hrv_sdnn_ms": rng.uniform(20, 80), "spo2_pct": rng.uniform(90, 99.5), "rr_bpm": rng.uniform(10, 24),
        "temp_c": rng.uniform(35.5, 38.0), "motion_g": rng.uniform(0, 0.2), "quality": rng.uniform(0.5, 1.0),
    }
    weights = [rng.random() for _ in LABELS]
    total = sum(weights)
    scores = {label: w / total for label, w in zip(LABELS, weights, strict=True)}
    label = max(scores, key=scores.__getitem__)
    msg = inference_message(device, seq, ts_ms, MODEL_ID, 30.0, vitals, label, scores)
    return messages.encode(DOMAIN, STREAM, msg)


class LoadGenerator:
    """Publish ``cfg.messages`` messages through ``url`` on a background thread; see the module doc."""

    def __init__(self, url: str, cfg: LoadConfig):
        self.url = url
        self.cfg = cfg
        self.devices = device_ids(cfg.devices)
        rng = random.Random(cfg.seed)
        per_device = -(-cfg.messages // cfg.devices)
        # windows end in the past (a store's reader may not show points from the future)
        t0_ms = (int(time.time() * 1000) // 1000 - 60 - per_device * 30) * 1000
        # (device, seq, ts_ms, topic, payload) in publishing order, built up front (schema validation
        # costs CPU the broker and the consumer need while the stream runs)
        self.plan: list[tuple[str, int, int, str, bytes]] = []
        for i in range(cfg.messages):
            device = self.devices[i % cfg.devices]
            seq = i // cfg.devices
            ts_ms = t0_ms + seq * 30_000 + i % cfg.devices  # distinct per device; 30 s windows
            self.plan.append((device, seq, ts_ms, messages.topic(DOMAIN, device, STREAM),
                              make_payload(device, seq, ts_ms, rng)))
        self.clients = [
            MqttClient(MqttConfig(url, f"{cfg.client_prefix}-{k}", clean_session=False,
                                  reconnect_max_s=cfg.reconnect_max_s, max_queue=cfg.max_queue))
            for k in range(cfg.publishers)
        ]
        self.published: dict[tuple[str, int], int] = {}
        self.order: list[tuple[str, int]] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.finished_at = 0.0

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        for c in self.clients:
            c.start()

    def start(self) -> None:
        """Start publishing on a background thread (connect() first)."""
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.started_at = time.monotonic()
            period = 1.0 / self.cfg.rate_hz
            for i, (device, seq, ts_ms, topic, payload) in enumerate(self.plan):
                if self._stop.is_set():
                    break
                due = self.started_at + i * period
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                client = self.clients[(i % self.cfg.devices) % self.cfg.publishers]
                if client.publish(topic, payload, qos=1, timeout_s=30.0):
                    with self._lock:
                        self.published[(device, seq)] = ts_ms
                        self.order.append((device, seq))
                else:
                    with self._lock:
                        self.refused += 1
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    @property
    def count(self) -> int:
        """Messages published so far."""
        with self._lock:
            return len(self.order)

    def keys_so_far(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self.order)

    def wait_count(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.count < n:
            if time.monotonic() > deadline or (self._thread is not None and not self._thread.is_alive()):
                return self.count >= n
            time.sleep(0.01)
        return True

    def join(self, timeout_s: float) -> None:
        """Wait for the last publish; raise what the publishing thread raised."""
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._stop.set()
                self._thread.join(5)
                raise TimeoutError(f"load generator still publishing after {timeout_s:g} s")
        if self.error is not None:
            raise RuntimeError(f"load generator failed: {self.error!r}") from self.error

    def wait_acked(self, timeout_s: float) -> bool:
        """True once the broker PUBACKed every message published."""
        deadline = time.monotonic() + timeout_s
        return all(c.wait_all_acked(max(0.0, deadline - time.monotonic())) for c in self.clients)

    def counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for c in self.clients:
            for k, v in c.counts.items():
                total[k] = total.get(k, 0) + v
        return total

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for c in self.clients:
            c.stop(flush_timeout_s=2.0)
