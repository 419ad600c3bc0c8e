"""The cloud service every domain runs: consume per subject, keep history, score in batches, alert, publish.

Data flow for every accepted ``inference`` message (QoS 1, acknowledged only after the handler returned):

1. store the message's points (:meth:`SubjectService.inference_points`, the domain's measurements);
2. append one step (:meth:`SubjectService.step`) to the subject's history (a bounded deque);
3. queue the window for scoring with a snapshot of the history up to it and the baseline's verdict
   (:meth:`SubjectService.baseline`: NEWS2, the ISO 10816 zone, ...) from the same moment.

A scoring thread takes every queued window (of all subjects) at once and runs the large model over
their histories in one batch (``predictor.predict_batch``), so every window gets exactly one result.
When more than ``max_batch`` windows wait, the service is overloaded: only each subject's newest
window is scored and the others are counted as ``superseded``. The one alert rule
(:class:`shared.runtime.alerts.AlertRule`) runs per subject on the scores; the domain turns each
score into its result message (:meth:`SubjectService.result`: ``risk`` or ``action``), which is
stored and published on ``tinylarge/<domain>/<device>/<result stream>``. On start
:meth:`SubjectService.rebuild` reloads each subject's recent history from the store, so a restarted
service goes on where it stopped.

Site streams (those a site role writes, e.g. healthcare's ``chart`` from the ward EHR, metaverse_eeg's
``scene`` from the world) are stored only for subjects the deployment knows; a message for any other
subject is dead-lettered (``unknown subject: ...``), so one writer cannot fill the store with invented
subjects. The service knows a subject when

- it is on the deployment's list (``ServiceConfig.subjects``; ``tinylarge serve --subjects-file FILE``, one
  id a line; the demo hands over its population), or
- its device has reported itself: an ``inference``, or its ``status`` (the service subscribes to
  ``tinylarge/<domain>/+/status``; retained, so a restarted service learns every device that ever
  connected at once), or
- the store holds inferences of it (read when the service starts).

Under the broker's ACL (``tinylarge broker config``) a device writes only its own ``inference`` and
``status`` and a site user writes only its role's streams, so a site writer cannot make a subject known.
(Without an ACL, e.g. the embedded broker, any client can pose as a device; give the list there.)

A different message under a stored key (``(device, seq)`` of a measurement) is dead-lettered as a
``seq conflict`` (:meth:`SubjectService.write_points`), inferences and site messages alike, where the
store can tell (SQLite: always; the Influx store: keys it wrote in this process); a redelivery with the
same content is absorbed.

A domain subclasses :class:`SubjectService` and implements the four hooks; everything else is here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.protocol.messages import TOPIC_ROOT, MessageError, Topic
from shared.runtime.alerts import AlertRule, AlertState

log = logging.getLogger("tinylarge.runtime.service")


@dataclass
class ServiceConfig:
    """Cloud service settings (the trained model's metrics.json may override the alert threshold)."""

    history_steps: int = 72  #: steps of history given to the large model
    alert_threshold: float = 0.5  #: score at which a window counts toward an alert
    alert_windows: int = 3  #: consecutive windows at or above the threshold before an alert
    max_batch: int = 256  #: most subjects scored in one batch
    #: how long the scorer waits to gather more windows into one batch (0: none; the windows that arrive while
    #: a batch is being scored form the next one, so batches grow with the load without a timer; a wait here
    #: adds itself to every window's latency when the service is not busy)
    batch_wait_s: float = 0.0
    status_every_s: float = 10.0  #: how often the service publishes its counts on its retained status
    torch_threads: int = 1  #: CPU threads for the large model; the rest stay free for the MQTT consumer
    #: a message whose ``ts`` is more than this ahead of the service's clock is dead-lettered (None: no check)
    max_future_skew_s: float | None = 300.0
    #: a message whose ``ts`` is before this epoch ms (a device clock never set) is dead-lettered (None: no check)
    min_ts_ms: int | None = 946_684_800_000  # 2000-01-01
    #: the subjects (device ids) the deployment provisioned: site streams are stored for them from the start
    subjects: frozenset[str] = frozenset()


@dataclass
class Subject:
    """One subject's state: history steps, the last message, alert state and domain extras."""

    device: str
    steps: deque = field(default_factory=deque)
    last_seq: int = -1
    last_ts: int = 0
    alert: AlertState = field(default_factory=AlertState)
    extra: dict[str, Any] = field(default_factory=dict)  #: whatever the domain keeps (charts, last vitals, ...)
    #: the steps again, as rows [0, _rows) of one array; a row is written once, so a view of it never changes
    _window: np.ndarray | None = field(default=None, repr=False)
    _rows: int = 0

    def push(self, step: np.ndarray) -> None:
        """Append ``step`` to :attr:`steps` and to the window. When the window is full, the newest steps move
        to a new array (views of the old one stay as they were), so a snapshot costs no copy."""
        self.steps.append(step)
        w, rows = self._window, self._rows
        if w is None or w.shape[1:] != np.shape(step) or w.dtype != getattr(step, "dtype", None):
            self._window = None  # history() builds it from the steps
            return
        if rows == len(w):
            keep = len(self.steps) - 1
            fresh = np.empty((max(len(w), 2 * len(self.steps)), *w.shape[1:]), w.dtype)
            fresh[:keep] = w[rows - keep:rows]
            self._window, w, rows = fresh, fresh, keep
        w[rows] = step
        self._rows = rows + 1

    def history(self) -> np.ndarray:
        """The steps, oldest first, as one read-only (T, features) array: a view that later steps leave alone."""
        n = len(self.steps)
        if self._window is None or self._rows < n:
            cap = max(2 * (self.steps.maxlen or n), 2 * n, 1)
            first = np.stack(list(self.steps)) if n else np.empty((0,))
            self._window = np.empty((cap, *first.shape[1:]), first.dtype)
            self._window[:n] = first
            self._rows = n
        view = self._window[self._rows - n:self._rows]
        view.flags.writeable = False
        return view


@dataclass
class Job:
    """One window waiting for its score: the history snapshot and the baseline at that moment."""

    subject: Subject
    msg: dict
    history: np.ndarray
    baseline: Any


class SubjectService:
    """Consumer callbacks + batched scoring; transport, store and model are injected.

    Subclasses implement :meth:`inference_points`, :meth:`step`, :meth:`baseline` and :meth:`result`,
    and may add handlers for their other upward streams (:meth:`extra_handlers`) and override
    :meth:`rebuild_subject` to reload their history from the store.
    """

    domain: str = ""
    counts_extra: tuple[str, ...] = ()

    def __init__(self, store: Any, predictor: Any, publish: Callable[[str, str, dict], None],
                 cfg: ServiceConfig | None = None, model_id: str = "large@1", result_stream: str = "risk",
                 on_result: Callable[[dict], None] | None = None):
        self.cfg = cfg or ServiceConfig()
        self.rule = AlertRule(self.cfg.alert_threshold, self.cfg.alert_windows)
        self.store = store
        self.predictor = predictor
        self.publish = publish
        self.model_id = model_id
        self.result_stream = result_stream
        self.on_result = on_result
        self.subjects: dict[str, Subject] = {}
        self.counts = {"inferences": 0, "scored": 0, "alerts": 0, "batches": 0, "duplicates": 0, "superseded": 0,
                       "unknown_subject": 0, **{k: 0 for k in self.counts_extra}}
        self.known: set[str] = set(self.cfg.subjects)  #: subjects whose site messages are stored (module doc)
        self._due: deque[Job] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the domain's hooks ------------------------------------------------------------------------
    def inference_points(self, msg: dict) -> list:
        """The store points of one inference message (measurements of the domain)."""
        raise NotImplementedError

    def step(self, s: Subject, msg: dict) -> np.ndarray:
        """One history step for the large model from this message (called with the lock held)."""
        raise NotImplementedError

    def baseline(self, s: Subject, msg: dict) -> Any:
        """The baseline's verdict for this window (None where it cannot be computed)."""
        return None

    def result(self, s: Subject, job: Job, output: Any, alert: bool) -> tuple[dict, list]:
        """(result message, store points) for one scored window. ``output`` is the predictor's."""
        raise NotImplementedError

    def score_of(self, output: Any) -> float:
        """The number the alert rule watches, from one predictor output (default: the output itself)."""
        return float(output)

    def extra_handlers(self) -> dict[str, Callable[[Topic, dict], None]]:
        """Handlers for the domain's other upward streams (e.g. healthcare's ``chart``)."""
        return {}

    def rebuild_subject(self, device: str) -> int:
        """Reload one subject's recent history from the store; returns the steps loaded."""
        return 0

    # -- consumer handlers (run on the transport's worker thread) ---------------------------------
    def handlers(self) -> dict[str, Callable[[Topic, dict], None]]:
        site = self.site_streams()
        extra = {s: self._known_only(s, h) if s in site else h for s, h in self.extra_handlers().items()}
        return {"inference": self.on_inference, **extra}

    def site_streams(self) -> set[str]:
        """The extra streams a site role writes (registered writer other than ``device``/``cloud``); for a
        domain the registry does not have, every extra stream."""
        from shared.domain import DomainError, get

        extra = set(self.extra_handlers())
        try:
            streams = get(self.domain).streams
        except (DomainError, KeyError, ValueError):
            return extra
        return {s for s in extra if s not in streams or streams[s].writer not in ("device", "cloud")}

    def provision(self, subjects: Any) -> None:
        """Add the deployment's subjects (ids) to the known ones."""
        self.known.update(str(s) for s in subjects)

    def _known_only(self, stream: str, handler: Callable[[Topic, dict], None]) -> Callable[[Topic, dict], None]:
        def guarded(topic: Topic, msg: dict) -> None:
            if msg["device"] not in self.known:
                with self._lock:
                    self.counts["unknown_subject"] += 1
                raise MessageError(f"unknown subject: {stream} for {msg['device']!r}, which is not on the "
                                   "deployment's list and whose device has sent no status or inference; not stored")
            handler(topic, msg)

        return guarded

    def subscriptions(self) -> dict[str, Callable[[str, bytes], None]]:
        """Raw subscriptions beside the consumer's: every device's ``status`` (the subjects it makes known)."""
        return {f"{TOPIC_ROOT}/{self.domain}/+/status": self.on_status}

    def on_status(self, topic_name: str, payload: bytes) -> None:
        """A device's (retained) status makes its subject known; anything that is not one is ignored."""
        from shared.protocol.messages import decode, parse_topic

        if not payload:
            return  # a cleared retained message
        try:
            where = parse_topic(topic_name)
            msg = decode(self.domain, "status", payload)
        except MessageError:
            return
        if where.device != "cloud" and msg["device"] == where.device:  # "cloud": the services' own status
            self.known.add(where.device)

    def batch_handlers(self) -> dict[str, Callable[[list[tuple[Topic, dict]]], None]]:
        """Streams the consumer may deliver in batches (one store transaction per batch)."""
        return {"inference": self.on_inference_batch}

    def subject(self, device: str) -> Subject:
        s = self.subjects.get(device)
        if s is None:
            s = self.subjects[device] = Subject(device, deque(maxlen=self.cfg.history_steps))
        return s

    def write_points(self, points: list) -> int:
        """Store ``points``; where some keys were stored already, a redelivery (same content) is absorbed and a
        different message raises MessageError (``seq conflict``), which the consumer dead-letters."""
        new = self.store.write(points)
        if new < len(points):
            self._check_same(points)
        return new

    def on_inference(self, topic: Topic, msg: dict) -> None:
        new = self.write_points(self.inference_points(msg))
        with self._lock:
            self._take(msg, new)
            self._wake.notify()

    def on_inference_batch(self, items: list[tuple[Topic, dict]]) -> None:
        """Many ``inference`` messages (in arrival order): stored in one transaction, then as on_inference.

        When every message is newer than its subject's history (and the batch's seqs rise per subject),
        whether a point was new cannot change the outcome, so one write serves all. Otherwise (a
        redelivery or a late message) each message goes through on_inference on its own.
        """
        with self._lock:  # only this (the worker) thread moves last_seq, so the answer holds after the write
            last = {d: s.last_seq for d, s in self.subjects.items()}
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
        self.store.write([pt for _, msg in items for pt in self.inference_points(msg)])
        with self._lock:
            for _, msg in items:
                self._take(msg, new=1)  # ahead of its history: not a duplicate, whatever the write found
            self._wake.notify()

    def _check_same(self, points: list) -> None:
        """Some points' keys were stored already: a redelivery is the same message; a different message
        under an existing (device, seq) (e.g. a device that restarted its counter) raises MessageError,
        which the consumer dead-letters with the reason instead of dropping the message silently."""
        for p in points:
            try:
                stored = self.store.conflict(p)
            except NotImplementedError:
                return  # this store cannot tell: redeliveries are absorbed unchecked
            if stored is not None:
                raise MessageError(f"seq conflict: {p.measurement} ({p.device}, seq {p.seq}) is {stored}; "
                                   f"this message (ts {p.ts_ms}) differs")

    def _take(self, msg: dict, new: int) -> None:
        """With the lock held, after the write (``new`` points were new): history, then queue for scoring."""
        s = self.subject(msg["device"])
        self.known.add(s.device)
        if new == 0 and msg["seq"] <= s.last_seq:
            self.counts["duplicates"] += 1  # redelivered after a restart: already in history
            return
        self.append(s, msg)
        self.counts["inferences"] += 1
        self._due.append(Job(s, msg, s.history(), self.baseline(s, msg)))

    def append(self, s: Subject, msg: dict) -> None:
        """Append this message's step to the subject's history and move its clock forward (never back: a
        late message must not make the windows after it look new again when they are redelivered)."""
        s.push(self.step(s, msg))
        if msg["seq"] > s.last_seq:
            s.last_seq, s.last_ts = msg["seq"], msg["ts"]

    @property
    def idle(self) -> bool:
        """True when no window is waiting to be scored."""
        with self._lock:
            return not self._due

    # -- batched scoring -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._score_loop, name=f"{self.domain}-scorer", daemon=True)
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
            if self.cfg.batch_wait_s > 0:
                time.sleep(self.cfg.batch_wait_s)
            try:
                self.score_due()
            except Exception:  # noqa: BLE001 - a scoring failure must not stop the service
                log.exception("%s scoring failed", self.domain)

    def score_due(self) -> int:
        """Score the waiting windows (all subjects, up to max_batch) in one batch; returns how many."""
        with self._lock:
            if len(self._due) > self.cfg.max_batch:  # overloaded: a subject's older windows are superseded
                latest = {job.subject.device: job for job in self._due}
                self.counts["superseded"] += len(self._due) - len(latest)
                self._due = deque(latest.values())
            jobs = [self._due.popleft() for _ in range(min(self.cfg.max_batch, len(self._due)))]
        if not jobs:
            return 0
        outputs = self.predictor.predict_batch([j.history for j in jobs])
        points, messages = [], []
        with self._lock:
            self.counts["batches"] += 1
            for job, output in zip(jobs, _rows(outputs, len(jobs)), strict=True):
                score = self.score_of(output)
                alert = self.rule.update(job.subject.alert, score if math.isfinite(score) else 0.0)
                self.counts["alerts"] += alert
                msg, pts = self.result(job.subject, job, output, alert)
                messages.append(msg)
                points += pts
            self.counts["scored"] += len(jobs)
        self.store.write(points)
        for msg in messages:
            self.publish(msg["device"], self.result_stream, msg)
            if self.on_result is not None:
                self.on_result(msg)
        return len(jobs)

    def rebuild(self) -> int:
        """Reload each subject's recent history from the store (after a restart); returns steps loaded."""
        try:
            devices = self.store.devices("inference")
        except NotImplementedError:
            return 0
        self.known.update(devices)
        return sum(self.rebuild_subject(device) for device in devices)


def read_subjects_file(path: Any) -> frozenset[str]:
    """The subject ids of a ``--subjects-file`` (one a line; blank lines and ``#`` comments skipped);
    UserError naming the file and the line when it cannot be read or an id is not valid."""
    from pathlib import Path

    from shared.errors import UserError
    from shared.protocol.messages import check_id

    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--subjects-file {path}: cannot be read ({exc}); give a text file, one id a line") from None
    ids = set()
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ids.add(check_id(text))
        except MessageError as exc:
            raise UserError(f"--subjects-file {path}, line {n}: {exc}; one device id a line") from None
    return frozenset(ids)


def _rows(outputs: Any, n: int) -> list:
    """One output per job, whether the predictor returns an array or a tuple of arrays (risk, rul, ...)."""
    if isinstance(outputs, tuple):
        return list(zip(*outputs, strict=True))
    return list(np.asarray(outputs).reshape(n, -1)[:, 0]) if np.ndim(outputs) > 1 else list(outputs)
