"""What the dashboard knows about the fleet, built from the MQTT messages it reads (no I/O here).

:class:`FleetState` takes ``(topic, payload)`` pairs straight from the broker, whatever they hold:
anything it cannot read is ignored (the cloud's consumer already dead-letters bad messages, and the
dashboard shows those dead letters), never raised. Each accepted message updates the state and
returns the events the page needs to apply the same change, so that a page that loaded a
:meth:`FleetState.snapshot` and then follows the events sees what the server sees.

Per domain (the registry's; a topic of any other domain is ignored):

* ``devices``: one row per publisher of that domain: ``state`` (online/offline, from the retained
  ``status`` and its last will), ``model`` and ``active_model``, ``counts`` (what every stage reports
  on its status), ``last_ms`` (when the dashboard last heard from it, server clock), the latest
  ``inference`` (class and top score), the latest cloud ``result`` and a short ``history`` of its score;
* ``alerts``: the results that raised an alert or a new action, newest last (bounded);
* ``deadletters``: the records of ``tinylarge/_deadletter/<domain>`` with their reasons (bounded).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from shared.protocol.messages import DEADLETTER_ROOT, TOPIC_ROOT, MessageError, check_id

#: largest payload the dashboard reads (the status/inference/result messages are a few hundred bytes)
MAX_PAYLOAD = 64 * 1024
HISTORY_POINTS = 60  #: score points kept per subject for the live chart
FEED_ITEMS = 50  #: alerts and dead letters kept per domain
#: envelope and bookkeeping keys not shown among a result's fields
_ENVELOPE = frozenset(("v", "device", "seq", "ts", "model", "source_seq", "windows", "horizon_h"))
_TEXT_MAX = 200


def _text(value: Any, limit: int = _TEXT_MAX) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _scalar(value: Any) -> str | float | bool | None:
    """A value the page may show: a bounded string, a finite number, a bool; else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value[:_TEXT_MAX]
    return _number(value)


def _ts(msg: dict) -> int | None:
    ts = msg.get("ts")
    return ts if isinstance(ts, int) and not isinstance(ts, bool) and 0 <= ts < 2**53 else None


class FleetState:
    """The live view of every registered domain; thread-safe."""

    def __init__(self, domains: Iterable[str], result_streams: dict[str, str] | None = None,
                 clock_ms: Any = None):
        self.domains = tuple(domains)
        #: domain -> the stream its cloud publishes results on (``risk``, ``action``)
        self.result_streams = dict(result_streams or {})
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._lock = threading.Lock()
        self._devices: dict[str, dict[str, dict]] = {d: {} for d in self.domains}
        self._alerts: dict[str, deque] = {d: deque(maxlen=FEED_ITEMS) for d in self.domains}
        self._dead: dict[str, deque] = {d: deque(maxlen=FEED_ITEMS) for d in self.domains}
        self._dead_total: dict[str, int] = dict.fromkeys(self.domains, 0)
        self.ignored = 0  #: messages that were not readable (bad topic, JSON, shape)

    # -- reading ---------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Everything, as JSON-ready data (the page's starting point)."""
        with self._lock:
            return {
                "now_ms": self._clock_ms(),
                "domains": {d: {"devices": {k: _copy(v) for k, v in sorted(self._devices[d].items())},
                                "alerts": list(self._alerts[d]), "deadletters": list(self._dead[d]),
                                "deadletters_total": self._dead_total[d]}
                            for d in self.domains},
            }

    def now_ms(self) -> int:
        return int(self._clock_ms())

    def device(self, domain: str, device: str) -> dict | None:
        with self._lock:
            row = self._devices.get(domain, {}).get(device)
            return None if row is None else _copy(row)

    # -- writing ---------------------------------------------------------------------------------
    def ingest(self, topic: str, payload: bytes) -> list[dict]:
        """Apply one broker message; return the events for the page (empty when ignored)."""
        if not isinstance(topic, str) or not isinstance(payload, bytes | bytearray) or len(payload) > MAX_PAYLOAD:
            return self._ignore()
        try:
            msg = json.loads(bytes(payload).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return self._ignore()
        if not isinstance(msg, dict):
            return self._ignore()
        parts = topic.split("/")
        if topic.startswith(DEADLETTER_ROOT + "/") and len(parts) == 3:
            return self._deadletter(parts[2], msg)
        if len(parts) != 4 or parts[0] != TOPIC_ROOT or parts[1] not in self._devices:
            return self._ignore()
        domain, device, stream = parts[1], parts[2], parts[3]
        try:
            check_id(device)
        except MessageError:
            return self._ignore()
        if msg.get("device", device) != device:
            return self._ignore()
        with self._lock:
            row = self._devices[domain].get(device)
            if row is None:
                row = self._devices[domain][device] = {
                    "device": device, "state": None, "model": None, "active_model": None, "counts": {},
                    "last_ms": None, "inference": None, "result": None, "history": []}
            events: list[dict] = []
            if stream == "status":
                self._status(row, msg)
            elif stream == "inference":
                self._inference(row, msg)
            elif stream == self.result_streams.get(domain):
                alert = self._result(row, msg)
                if alert is not None:
                    self._alerts[domain].append(alert)
                    events.append({"type": "alert", "domain": domain, "alert": alert})
            else:  # another stream of the domain (e.g. healthcare's chart): only "heard from"
                pass
            if stream != "status" or msg.get("state") == "online":
                row["last_ms"] = self._clock_ms()
            events.insert(0, {"type": "device", "domain": domain, "device": _copy(row)})
            return events

    def _ignore(self) -> list[dict]:
        with self._lock:
            self.ignored += 1
        return []

    @staticmethod
    def _status(row: dict, msg: dict) -> None:
        state = msg.get("state")
        if state in ("online", "offline"):
            row["state"] = state
        row["model"] = _text(msg.get("model"), 100) or row["model"]
        row["active_model"] = _text(msg.get("active_model"), 100) or row["active_model"]
        counts = msg.get("counts")
        if isinstance(counts, dict):
            row["counts"] = {str(k)[:40]: int(v) for k, v in list(counts.items())[:32]
                             if isinstance(v, int) and not isinstance(v, bool)}
        row["status_ts"] = _ts(msg)

    @staticmethod
    def _inference(row: dict, msg: dict) -> None:
        scores = msg.get("scores")
        top = None
        if isinstance(scores, dict):
            numbers = [x for x in (_number(v) for v in scores.values()) if x is not None]
            top = max(numbers) if numbers else None
        row["inference"] = {"class": _text(msg.get("class"), 64), "score": top, "ts": _ts(msg),
                            "seq": msg.get("seq") if isinstance(msg.get("seq"), int) else None}
        row["model"] = row["model"] or _text(msg.get("model"), 100)

    @staticmethod
    def _result(row: dict, msg: dict) -> dict | None:
        """Store the result; return an alert record when it raises an alert or a new action."""
        fields = {str(k)[:40]: v for k, v in ((k, _scalar(v)) for k, v in list(msg.items())[:32])
                  if k not in _ENVELOPE and v is not None}
        previous = row["result"] or {}
        ts = _ts(msg)
        row["result"] = {"ts": ts, "model": _text(msg.get("model"), 100), "fields": fields}
        score = _number(msg.get("risk"))
        if score is None:
            score = next((v for v in fields.values() if isinstance(v, float)), None)
        if score is not None and ts is not None:
            row["history"] = (row["history"] + [[ts, round(score, 5)]])[-HISTORY_POINTS:]
        before = previous.get("fields", {})
        action = fields.get("action")
        raised = fields.get("alert") is True and before.get("alert") is not True
        new_action = isinstance(action, str) and action not in ("none", "") and action != before.get("action")
        if not (raised or new_action):
            return None
        return {"device": row["device"], "ts": ts, "score": score, "action": action if new_action else None,
                "fields": fields}

    def _deadletter(self, domain: str, msg: dict) -> list[dict]:
        if domain not in self._dead:
            return self._ignore()
        record = {"ts": _ts(msg), "topic": _text(msg.get("topic"), 256) or "?",
                  "reason": _text(msg.get("reason"), 300) or "(no reason given)",
                  "payload": _text(msg.get("payload"), 200) or "",
                  "payload_bytes": msg.get("payload_bytes") if isinstance(msg.get("payload_bytes"), int) else None}
        with self._lock:
            self._dead[domain].append(record)
            self._dead_total[domain] += 1
            total = self._dead_total[domain]
        return [{"type": "deadletter", "domain": domain, "deadletter": record, "total": total}]


def _copy(row: dict) -> dict:
    return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in row.items()}
