"""The healthcare cloud service: consume wearable inferences per patient, keep history, raise risk.

Data flow for every accepted ``inference`` message (QoS 1, acknowledged only after this returns):

1. store the vitals (measurement ``vitals``) and the tiny model's verdict (measurement ``inference``);
2. append one step (``healthcare.large.step_vector``) to the patient's history, with the latest charted
   observations (``chart`` stream: blood pressure, consciousness, oxygen) carried forward;
3. queue the window for scoring with a snapshot of the history up to it and NEWS2 from the same
   vitals and chart.

A scoring thread takes every queued window (of all patients) at once, runs the transformer over their
histories in one batch (``RiskPredictor.predict_batch``), so every window gets exactly one risk (when
more than ``max_batch`` windows wait, the service is overloaded and only each patient's newest window
is scored; the others are counted as ``superseded``), stores
the result (measurement ``risk``) and publishes it on ``tinylarge/healthcare/<device>/risk``. An alert
is raised when risk has stayed at or above the threshold chosen at training time for ``alert_windows``
consecutive windows (15 min by default); it re-arms once risk falls below half the threshold. On start
the service rebuilds each patient's history from the store, so a restarted service goes on where it
stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from healthcare import news2
from shared.protocol.messages import SCHEMA_VERSION, Topic

log = logging.getLogger("tinylarge.healthcare.service")

DOMAIN = "healthcare"
RISK_MODEL_ID = "hc-risk"


@dataclass
class ServiceConfig:
    """Cloud service settings (defaults match the trained model's)."""

    history_steps: int = 72  #: steps of history given to the transformer (72 x 5 min = 6 h)
    alert_threshold: float = 0.5  #: risk at which an alert is raised (overridden by the model's metrics.json)
    alert_windows: int = 3  #: consecutive windows at or above the threshold before an alert (3 x 5 min)
    carry_vitals_s: float = 1800.0  #: last valid vitals are carried this long for NEWS2 over unreliable windows
    max_batch: int = 256  #: most patients scored in one transformer batch
    batch_wait_s: float = 0.02  #: how long the scorer waits to gather more windows into one batch
    status_every_s: float = 10.0  #: how often the service publishes its counts on its retained status
    torch_threads: int = 1  #: CPU threads for the transformer; the rest stay free for the MQTT consumer


@dataclass
class PatientState:
    device: str
    steps: deque = field(default_factory=deque)
    chart: dict[str, Any] | None = None
    vitals: dict[str, Any] = field(default_factory=dict)  # last valid value and its ts per vital
    last_seq: int = -1
    last_ts: int = 0
    alerting: bool = False
    above: int = 0  # consecutive scored windows at or above the alert threshold
    risk_seq: int = 0


class HealthcareService:
    """Consumer callbacks + batched transformer scoring; transport and store are injected."""

    def __init__(self, store: Any, predictor: Any, publish: Callable[[str, str, dict], None],
                 cfg: ServiceConfig | None = None, model_version: str = "1",
                 on_risk: Callable[[dict], None] | None = None):
        from healthcare.large import step_vector  # torch import only when a service is built

        self._step_vector = step_vector
        self.cfg = cfg or ServiceConfig()
        self.store = store
        self.predictor = predictor
        self.publish = publish
        self.model_id = f"{RISK_MODEL_ID}@{model_version}"
        self.on_risk = on_risk
        self.patients: dict[str, PatientState] = {}
        self.counts = {"inferences": 0, "charts": 0, "scored": 0, "alerts": 0, "batches": 0, "duplicates": 0,
                       "superseded": 0}
        self._due: deque[tuple] = deque()  # windows waiting to be scored, each with its history snapshot
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- consumer handlers (run on the transport's worker thread) ---------------------------------
    def handlers(self) -> dict[str, Callable[[Topic, dict], None]]:
        return {"inference": self.on_inference, "chart": self.on_chart}

    def batch_handlers(self) -> dict[str, Callable[[list[tuple[Topic, dict]]], None]]:
        """Streams the consumer may deliver in batches (one store transaction per batch)."""
        return {"inference": self.on_inference_batch}

    def _patient(self, device: str) -> PatientState:
        p = self.patients.get(device)
        if p is None:
            p = self.patients[device] = PatientState(device, deque(maxlen=self.cfg.history_steps))
        return p

    def on_chart(self, topic: Topic, msg: dict) -> None:
        from shared.storage.base import Point

        fields = {k: msg.get(k) for k in ("sbp_mmhg", "consciousness", "on_oxygen", "rr_bpm", "temp_c")}
        fields["spo2_scale"] = msg.get("spo2_scale", 1)
        self.store.write([Point("chart", msg["device"], msg["seq"], msg["ts"], fields, {"domain": DOMAIN})])
        with self._lock:
            p = self._patient(msg["device"])
            if p.chart is None or msg["ts"] >= p.chart["ts"]:
                p.chart = {**fields, "ts": msg["ts"]}
            self.counts["charts"] += 1

    def on_inference(self, topic: Topic, msg: dict) -> None:
        new = self.store.write(self._inference_points(msg))
        with self._lock:
            self._take(msg, new)
            self._wake.notify()

    def on_inference_batch(self, items: list[tuple[Topic, dict]]) -> None:
        """Many ``inference`` messages (in arrival order): stored in one transaction, then as on_inference.

        When every message is newer than its patient's history (and the batch's seqs rise per patient),
        whether a point was new cannot change the outcome, so one write serves all. Otherwise (a
        redelivery or a late message) each message goes through on_inference on its own.
        """
        with self._lock:  # only this (the worker) thread moves last_seq, so the answer holds after the write
            last = {d: p.last_seq for d, p in self.patients.items()}
            ahead = True
            for _, msg in items:
                if msg["seq"] <= last.get(msg["device"], -1):
                    ahead = False
                    break
                last[msg["device"]] = msg["seq"]
        if not ahead:
            for topic, msg in items:
                self.on_inference(topic, msg)
            return
        self.store.write([pt for _, msg in items for pt in self._inference_points(msg)])
        with self._lock:
            for _, msg in items:
                self._take(msg, new=1)  # ahead of its history: not a duplicate, whatever the write found
            self._wake.notify()

    @staticmethod
    def _inference_points(msg: dict) -> list:
        from shared.storage.base import Point

        device, seq, ts = msg["device"], msg["seq"], msg["ts"]
        tags = {"domain": DOMAIN, "model": msg["model"]}
        return [
            Point("vitals", device, seq, ts, dict(msg["vitals"]), tags),
            Point("inference", device, seq, ts, {"class": msg["class"], **{
                f"p_{k}": v for k, v in msg["scores"].items()}}, tags),
        ]

    def _take(self, msg: dict, new: int) -> None:
        """With the lock held, after the write (``new`` points were new): history, then queue for scoring."""
        p = self._patient(msg["device"])
        if new == 0 and msg["seq"] <= p.last_seq:
            self.counts["duplicates"] += 1  # redelivered after a restart: already in history
            return
        self._append(p, msg)
        self.counts["inferences"] += 1
        self._due.append((p, msg["seq"], msg["ts"], np.stack(list(p.steps)), len(p.steps), self.news2_for(p)))

    def _append(self, p: PatientState, msg: dict) -> None:
        chart = None
        if p.chart is not None:
            chart = {**p.chart, "hours_since": (msg["ts"] - p.chart["ts"]) / 3.6e6}
        p.steps.append(self._step_vector(msg["vitals"], msg["scores"], chart, msg["ts"] / 1000.0))
        for k, v in msg["vitals"].items():
            if v is not None:
                p.vitals[k] = (v, msg["ts"])
        p.last_seq, p.last_ts = msg["seq"], msg["ts"]

    # -- NEWS2 beside the model --------------------------------------------------------------------
    def news2_for(self, p: PatientState) -> news2.News2 | None:
        """NEWS2 from the latest device vitals (carried over short gaps) and the latest chart."""
        if p.chart is None:
            return None
        fresh = {k: v for k, (v, ts) in p.vitals.items() if p.last_ts - ts <= self.cfg.carry_vitals_s * 1000}
        if not all(k in fresh for k in ("rr_bpm", "spo2_pct", "hr_bpm", "temp_c")):
            return None
        rr = p.chart.get("rr_bpm") if fresh.get("rr_bpm") is None else fresh["rr_bpm"]
        return news2.score(rr=rr, spo2=fresh["spo2_pct"], on_oxygen=bool(p.chart["on_oxygen"]),
                           sbp=p.chart["sbp_mmhg"], hr=fresh["hr_bpm"],
                           consciousness=p.chart["consciousness"], temp_c=fresh["temp_c"],
                           spo2_scale=int(p.chart.get("spo2_scale") or 1))

    @property
    def idle(self) -> bool:
        """True when no patient is waiting to be scored."""
        with self._lock:
            return not self._due

    # -- batched scoring -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._score_loop, name="hc-risk-scorer", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._due:
                    break
            time.sleep(0.01)
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _score_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while not self._due and not self._stop.is_set():
                    self._wake.wait(timeout=0.5)
            if self._stop.is_set():
                return
            time.sleep(self.cfg.batch_wait_s)
            try:
                self.score_due()
            except Exception:  # noqa: BLE001 - a scoring failure must not stop the service
                log.exception("risk scoring failed")

    def score_due(self) -> int:
        """Score the waiting windows (all patients, up to max_batch) in one batch; returns how many."""
        with self._lock:
            if len(self._due) > self.cfg.max_batch:  # overloaded: a patient's older windows are superseded
                latest = {job[0].device: job for job in self._due}
                self.counts["superseded"] += len(self._due) - len(latest)
                self._due = deque(latest.values())
            jobs = [self._due.popleft() for _ in range(min(self.cfg.max_batch, len(self._due)))]
        if not jobs:
            return 0
        risks = self.predictor.predict_batch([j[3] for j in jobs])
        from shared.storage.base import Point

        points, messages = [], []
        with self._lock:
            self.counts["batches"] += 1
            for (p, seq, ts, _, n_steps, n2), risk in zip(jobs, risks, strict=True):
                risk = float(risk) if math.isfinite(float(risk)) else 0.0
                thr = self.cfg.alert_threshold
                p.above = p.above + 1 if risk >= thr else 0
                alert = p.above >= self.cfg.alert_windows and not p.alerting
                if alert:
                    p.alerting = True
                    self.counts["alerts"] += 1
                elif p.alerting and risk < thr / 2:
                    p.alerting = False
                p.risk_seq += 1
                msg = {"v": SCHEMA_VERSION, "device": p.device, "seq": seq, "ts": ts, "model": self.model_id,
                       "risk": round(risk, 5), "horizon_h": float(getattr(self.predictor, "horizon_h", 6.0)),
                       "news2": None if n2 is None else n2.score, "news2_band": None if n2 is None else n2.band,
                       "alert": alert, "windows": n_steps, "source_seq": seq}
                messages.append(msg)
                points.append(Point("risk", p.device, seq, ts, {
                    "risk": msg["risk"], "news2": msg["news2"], "alert": alert}, {"domain": DOMAIN}))
            self.counts["scored"] += len(jobs)
        self.store.write(points)
        for msg in messages:
            self.publish(msg["device"], "risk", msg)
            if self.on_risk is not None:
                self.on_risk(msg)
        return len(jobs)

    def rebuild(self) -> int:
        """Reload each patient's recent history from the store (after a restart); returns steps loaded."""
        loaded = 0
        try:
            devices = self.store.devices("inference")
        except NotImplementedError:
            return 0
        for device in devices:
            charts = self.store.query("chart", device)
            inferences = self.store.query("inference", device)[-self.cfg.history_steps:]
            if not inferences:
                continue
            vitals = {pt.seq: pt for pt in self.store.query("vitals", device, start_ms=inferences[0].ts_ms)}
            p = self._patient(device)
            for inf in inferences:
                while charts and charts[0].ts_ms <= inf.ts_ms:
                    c = charts.pop(0)
                    p.chart = {**c.fields, "ts": c.ts_ms}
                vit = vitals.get(inf.seq)
                if vit is None:
                    continue
                scores = {k[2:]: v for k, v in inf.fields.items() if k.startswith("p_")}
                self._append(p, {"vitals": vit.fields, "scores": scores, "seq": inf.seq, "ts": inf.ts_ms})
                loaded += 1
        return loaded


@dataclass
class Cloud:
    url: str
    client: Any
    store: Any
    service: HealthcareService
    consumer: Any


@contextmanager
def run_cloud(args: argparse.Namespace, mqtt: str, store_url: str, models_dir: Path,
              on_risk: Callable[[dict], None] | None = None,
              client_id: str = "tinylarge-healthcare-service") -> Iterator[Cloud]:
    """Store + transformer + MQTT consumer, started; stopped in order (scoring drained first)."""
    from healthcare.large import RiskPredictor
    from shared.runtime.app import StatusReporter, client_config, publisher
    from shared.storage.base import open_store
    from shared.transport.consumer import Consumer, status_will
    from shared.transport.mqtt import MqttClient

    cfg = ServiceConfig()
    predictor = RiskPredictor.load(models_dir / "large", threads=cfg.torch_threads)
    metrics_path = models_dir / "metrics.json"
    if metrics_path.exists():
        cfg.alert_threshold = float(json.loads(metrics_path.read_text()).get("alert_threshold",
                                                                            cfg.alert_threshold))
    store = open_store(store_url)
    client = MqttClient(client_config(args, mqtt, client_id,
                                      will=status_will(DOMAIN, "cloud", f"{RISK_MODEL_ID}@1")))
    service = HealthcareService(store, predictor, publisher(client, DOMAIN), cfg, on_risk=on_risk)
    loaded = service.rebuild()
    if loaded:
        log.info("rebuilt %d history steps from the store", loaded)
    service.start()
    consumer = Consumer(client, DOMAIN, service.handlers(), service.batch_handlers())

    def counts() -> dict[str, int]:
        c, st, tr = consumer.counts, store.counts, client.counts
        return {"received": c.get("received", 0), "accepted": c.get("accepted", 0),
                "deadletters": c.get("deadletters", 0), "stored_points": st.get("written", 0),
                "duplicates": st.get("duplicates", 0), "dropped": st.get("dropped", 0) + tr.get("dropped", 0),
                "spooled": st.get("spooled", 0), "scored": service.counts["scored"],
                "alerts": service.counts["alerts"], "superseded": service.counts["superseded"]}

    status = StatusReporter(publisher(client, DOMAIN), "cloud", service.model_id, counts,
                            every_s=cfg.status_every_s)
    try:
        client.start()
        consumer.start()
        status.start()
        yield Cloud(mqtt, client, store, service, consumer)
    finally:
        service.stop()
        if client.connected:
            status.stop()
        client.stop()
        store.close()


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds run_cloud: scoring drained, client and store closed


def main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge serve healthcare``: run the cloud service until interrupted."""
    from healthcare.train import ensure_trained
    from shared.cli import add_endpoint_args
    from shared.runtime.app import endpoints

    ap = argparse.ArgumentParser(prog="tinylarge serve healthcare", description=__doc__.splitlines()[0])
    add_endpoint_args(ap)
    ap.add_argument("--models", type=Path, default=Path("models/healthcare"), help="trained models folder")
    ap.add_argument("--client-id", default="tinylarge-healthcare-service", help="MQTT client id (persistent "
                    "session: keep it stable so a restart receives what it missed)")
    ap.add_argument("--duration-s", type=float, default=0.0, help="stop after this many seconds (0 = run forever)")
    ap.add_argument("--quick-train", action="store_true", help="if models are missing, train small ones fast")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ensure_trained(args.models, quick=args.quick_train)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with endpoints(args) as ep, run_cloud(args, ep.mqtt, ep.store, args.models, client_id=args.client_id) as svc:
        print(f"serving healthcare on {svc.url}, storing to {ep.store}; Ctrl-C to stop", flush=True)
        try:
            deadline = time.monotonic() + args.duration_s if args.duration_s > 0 else math.inf
            while time.monotonic() < deadline:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0
