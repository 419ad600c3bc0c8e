"""What the dashboard knows about the fleet, built from the MQTT messages it reads (no I/O here).

:class:`FleetState` takes ``(topic, payload)`` pairs straight from the broker, whatever they hold:
anything it cannot read is ignored (the cloud's consumer already dead-letters bad messages, and the
dashboard shows those dead letters), never raised. Every accepted message bumps a global
``version`` and stamps the row it changed, so that :meth:`FleetState.view` can answer "one page of
the fleet, and only what changed since version V" in time and bytes that do not grow with the fleet.

Per domain (the registry's; a topic of any other domain is ignored):

* subjects: one row per publisher of that domain, in device-id order (a sorted list, so a page is a
  slice): ``state`` (online/offline, from the retained ``status`` and its last will), ``model`` and
  ``active_model``, ``status_counts`` (what its status reports), ``last_ms`` (when the dashboard last
  heard from it, server clock), the latest ``inference`` (class and top score, or the events it
  counted over a distance), the latest cloud ``result``, a short ``history`` of its score,
  ``alerting`` (the service's alert rule run on the scores it published; see :mod:`shared.runtime.alerts`)
  and ``counts`` that count: ``published`` (the device's own count, or the inferences seen, whichever
  is more), ``accepted`` (cloud results for it), ``rejected`` (dead letters naming it);
* stages: publishers of a status that are no subject (``cloud``, a model id of the large model, or a cluster
  worker's heartbeat, shown with ``worker``: partitions held, messages/s, last heartbeat, alive);
* ``alerts``: results that raised an alert or a new action, newest last (bounded);
* ``deadletters``: the records of ``tinylarge/_deadletter/<domain>`` with their reasons (bounded);
* ``clock``: the fleet clock, the newest result ``ts`` (simulated time in a demo) and the server time
  at which it arrived; dead letters (stamped with the consumer's wall clock) also carry the fleet
  clock at their arrival, so the page shows every feed on one clock.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shared.protocol.messages import DEADLETTER_ROOT, TOPIC_ROOT, MessageError, check_id
from shared.runtime.alerts import AlertRule, AlertState

#: largest payload the dashboard reads (the status/inference/result messages are a few hundred bytes)
MAX_PAYLOAD = 64 * 1024
HISTORY_POINTS = 60  #: score points kept per subject for the live chart
FEED_ITEMS = 50  #: alerts and dead letters kept per domain
PAGE_DEFAULT = 50  #: subjects per page
PAGE_MAX = 200  #: most subjects one view returns per domain
MAX_ROWS = 200_000  #: most publishers kept per domain (a flood of new ids past it is ignored)
ONLY = ("", "alerting")  #: the page filters
_BOOKKEEPING = frozenset(("v", "device", "seq", "ts", "model", "source_seq", "windows"))
_TEXT_MAX = 200
WORKER_MODEL = "cluster-worker@"  #: the model of a cluster worker's heartbeat status (shared.cluster.worker)


def _text(value: Any, limit: int = _TEXT_MAX) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53 else None


def _shown(value: Any) -> str | float | bool | int | None:
    """A value the page may show: a bounded string, a finite number, a bool, a list's length; else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value[:_TEXT_MAX]
    if isinstance(value, list):
        return len(value)
    return _number(value)


def _ts(msg: dict) -> int | None:
    return _count(msg.get("ts"))


@dataclass(frozen=True)
class View:
    """One domain's page: ``limit`` subjects from ``offset``, of those whose id starts with ``q``
    (``only="alerting"``: of those alerting now)."""

    offset: int = 0
    limit: int = PAGE_DEFAULT
    q: str = ""
    only: str = ""


class _Domain:
    def __init__(self, name: str, result_stream: str | None, large_model: str, rule: AlertRule | None,
                 rule_source: str):
        self.name, self.result_stream, self.large_model = name, result_stream, large_model
        self.rule, self.rule_source = rule, rule_source
        self.rows: dict[str, dict] = {}
        self.subjects: list[str] = []  #: sorted ids of the rows that are subjects
        self.stages: set[str] = set()
        self.alerting: set[str] = set()
        self.online = self.offline = 0
        self.scored = False  #: a result carried a ``risk`` (the score the rule watches)
        self.alerts: deque[dict] = deque(maxlen=FEED_ITEMS)
        self.alerts_total = 0
        self.dead: deque[dict] = deque(maxlen=FEED_ITEMS)
        self.dead_total = 0
        self.dead_by_device: dict[str, int] = {}
        self.fleet_ms: int | None = None  #: newest result ts
        self.fleet_wall_ms: int | None = None  #: server time when it arrived
        self.live_loop: dict | None = None  #: the demo's live loop (set_live_loop), shown as one line


class FleetState:
    """The live view of every registered domain; thread-safe."""

    def __init__(self, domains: Iterable[str], result_streams: dict[str, str] | None = None,
                 clock_ms: Callable[[], int] | None = None, large_models: dict[str, str] | None = None,
                 rules: dict[str, dict] | None = None):
        self.domains = tuple(domains)
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._lock = threading.Lock()
        streams, large, rules = dict(result_streams or {}), dict(large_models or {}), dict(rules or {})
        self._doms = {d: _Domain(d, streams.get(d), large.get(d, ""), (rules.get(d) or {}).get("rule"),
                                 (rules.get(d) or {}).get("source", "")) for d in self.domains}
        self.version = 0
        self.ignored = 0  #: messages that were not readable (bad topic, JSON, shape)

    # -- reading ---------------------------------------------------------------------------------
    def view(self, since: int = 0, views: dict[str, View] | None = None, default: View | None = None) -> dict:
        """Per domain: its summary, rule and clock, one page of subjects (ids in order; the rows that
        changed after ``since``), its stages, alerts and dead letters that changed after ``since``.
        ``since`` 0 (or one this state never reached, e.g. after a restart) answers in full."""
        default = default or View()
        with self._lock:
            full = since <= 0 or since > self.version
            since = 0 if full else since
            out: dict[str, Any] = {"version": self.version, "full": full, "now_ms": self._clock_ms(),
                                   "ignored": self.ignored, "domains": {}}
            for name, dom in self._doms.items():
                v = (views or {}).get(name, default)
                ids, total, offset = _page(dom, v)
                rows = (dom.rows[i] for i in ids)
                out["domains"][name] = {
                    "summary": {"subjects": len(dom.subjects), "stages": len(dom.stages), "online": dom.online,
                                "offline": dom.offline, "alerting": len(dom.alerting),
                                "alerts_total": dom.alerts_total, "deadletters_total": dom.dead_total},
                    "rule": self._rule(dom),
                    "clock": {"fleet_ms": dom.fleet_ms, "wall_ms": dom.fleet_wall_ms},
                    "live_loop": dom.live_loop,
                    "page": {"offset": offset, "limit": v.limit, "total": total, "q": v.q, "only": v.only,
                             "ids": ids},
                    "devices": {r["device"]: self._public(dom, r) for r in rows if r["ver"] > since},
                    "stages": {i: _with_worker(self._public(dom, dom.rows[i]), out["now_ms"])
                               for i in sorted(dom.stages) if dom.rows[i]["ver"] > since},
                    "alerts": [a for a in dom.alerts if a["ver"] > since],
                    "deadletters": [r for r in dom.dead if r["ver"] > since],
                }
            return out

    def snapshot(self) -> dict:
        """The first page of every domain, in full."""
        return self.view(0)

    def set_live_loop(self, domain: str, rows: dict) -> None:
        """The demo's live loop (:mod:`shared.runtime.live_loop`): its state, the model before and after and
        the fleet metric before and after, as the page shows them (bounded strings, finite numbers)."""
        keys = ("live_loop", "model_before", "model_after", "fleet_metric", "fleet_metric_before",
                "fleet_metric_after", "fleet_metric_teacher", "fleet_metric_windows")
        with self._lock:
            dom = self._doms.get(domain)
            if dom is None:
                return
            dom.live_loop = {k: _shown(rows.get(k)) for k in keys}
            self.version += 1

    def now_ms(self) -> int:
        return int(self._clock_ms())

    def device(self, domain: str, device: str) -> dict | None:
        with self._lock:
            dom = self._doms.get(domain)
            row = None if dom is None else dom.rows.get(device)
            return None if row is None else self._public(dom, row)

    @staticmethod
    def _rule(dom: _Domain) -> dict | None:
        if dom.rule is None:
            return None
        return {"threshold": dom.rule.threshold, "windows": dom.rule.windows,
                "rearm_fraction": dom.rule.rearm_fraction, "source": dom.rule_source, "scored": dom.scored}

    @staticmethod
    def _public(dom: _Domain, row: dict) -> dict:
        out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in row.items() if not k.startswith("_")}
        out["history"] = [[t, round(s, 4)] for t, s in zip(row["_hist_ts"], row["_hist_v"], strict=True)]
        seen = row["_seen"]
        out["counts"] = {"published": max(seen["inferences"], row["status_counts"].get("published", 0)),
                         "accepted": seen["results"], "rejected": dom.dead_by_device.get(row["device"], 0)}
        return out

    # -- writing ---------------------------------------------------------------------------------
    def ingest(self, topic: str, payload: bytes, detail: bool = True) -> list[dict]:
        """Apply one broker message; return the events it made (empty when ignored). ``detail``: the
        events carry the changed row and the alert; else they only name them (cheaper)."""
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
        if len(parts) != 4 or parts[0] != TOPIC_ROOT or parts[1] not in self._doms:
            return self._ignore()
        domain, device, stream = parts[1], parts[2], parts[3]
        try:
            check_id(device)
        except MessageError:
            return self._ignore()
        if msg.get("device", device) != device:
            return self._ignore()
        with self._lock:
            dom = self._doms[domain]
            row = dom.rows.get(device)
            was_stage: bool | None = None
            if row is None:
                if len(dom.rows) >= MAX_ROWS:
                    self.ignored += 1
                    return []
                row = dom.rows[device] = _new_row(device)
            else:
                was_stage = row["stage"]
                _tally(dom, row, -1)
            alert = None
            if stream == "status":
                _status(row, msg)
            elif stream == "inference":
                _inference(row, msg)
            elif stream == dom.result_stream:
                alert = self._result(dom, row, msg)
            # another stream of the domain (e.g. healthcare's chart): only "heard from"
            if stream != "status" or msg.get("state") == "online":
                row["last_ms"] = self._clock_ms()
            row["stage"] = _is_stage(dom, row)
            _place(dom, device, was_stage, row["stage"])
            _tally(dom, row, +1)
            self.version += 1
            row["ver"] = self.version
            if alert is not None:
                alert["ver"] = self.version
                dom.alerts.append(alert)
                dom.alerts_total += 1
            if not detail:
                return [{"type": "device", "domain": domain, "id": device}]
            events = [{"type": "device", "domain": domain, "device": self._public(dom, row)}]
            if alert is not None:
                events.append({"type": "alert", "domain": domain, "alert": dict(alert)})
            return events

    def _ignore(self) -> list[dict]:
        with self._lock:
            self.ignored += 1
        return []

    def _result(self, dom: _Domain, row: dict, msg: dict) -> dict | None:
        """Store the result, run the alert rule; return an alert record when it raises an alert or a new action."""
        fields = {str(k)[:40]: v for k, v in ((k, _shown(v)) for k, v in list(msg.items())[:32])
                  if k not in _BOOKKEEPING and v is not None}
        previous = row["result"] or {}
        ts = _ts(msg)
        row["result"] = {"ts": ts, "model": _text(msg.get("model"), 100), "fields": fields}
        row["_seen"]["results"] += 1
        if ts is not None and (dom.fleet_ms is None or ts >= dom.fleet_ms):
            dom.fleet_ms, dom.fleet_wall_ms = ts, self._clock_ms()
        risk = _number(msg.get("risk"))
        score = risk if risk is not None else next((v for v in fields.values() if isinstance(v, float)), None)
        if score is not None and ts is not None:
            hist_ts, hist_v = row["_hist_ts"], row["_hist_v"]
            hist_ts.append(ts)
            hist_v.append(score)
            if len(hist_ts) > HISTORY_POINTS:
                del hist_ts[0], hist_v[0]
        state: AlertState = row["_alert"]
        if risk is not None and dom.rule is not None:
            dom.scored = True
            dom.rule.update(state, risk)
            if fields.get("alert") is True:  # the service raised it (its rule saw windows this page missed)
                state.alerting = True
        else:  # no score to run the rule on: the service's own flag of this window
            state.alerting = fields.get("alert") is True
        row["alerting"] = state.alerting
        before = previous.get("fields", {})
        action = fields.get("action")
        raised = fields.get("alert") is True and before.get("alert") is not True
        new_action = isinstance(action, str) and action not in ("none", "") and action != before.get("action")
        if not (raised or new_action):
            return None
        return {"device": row["device"], "ts": ts, "score": score, "action": action if new_action else None,
                "fields": fields}

    def _deadletter(self, domain: str, msg: dict) -> list[dict]:
        if domain not in self._doms:
            return self._ignore()
        topic = _text(msg.get("topic"), 256) or "?"
        record = {"ts": _ts(msg), "topic": topic,
                  "reason": _text(msg.get("reason"), 300) or "(no reason given)",
                  "payload": _text(msg.get("payload"), 200) or "",
                  "payload_bytes": _count(msg.get("payload_bytes"))}
        parts = topic.split("/")
        device = parts[2] if len(parts) == 4 and parts[0] == TOPIC_ROOT and parts[1] == domain else None
        try:
            device = None if device is None else check_id(device)
        except MessageError:
            device = None
        with self._lock:
            dom = self._doms[domain]
            self.version += 1
            record.update(device=device, fleet_ts=dom.fleet_ms, received_ms=self._clock_ms(), ver=self.version)
            dom.dead.append(record)
            dom.dead_total += 1
            if device is not None and (device in dom.dead_by_device or len(dom.dead_by_device) < MAX_ROWS):
                dom.dead_by_device[device] = dom.dead_by_device.get(device, 0) + 1
                if device in dom.rows:
                    dom.rows[device]["ver"] = self.version
            return [{"type": "deadletter", "domain": domain, "deadletter": dict(record), "total": dom.dead_total}]


def _new_row(device: str) -> dict:
    return {"device": device, "state": None, "model": None, "active_model": None, "status_counts": {},
            "status_ts": None, "last_ms": None, "inference": None, "result": None, "alerting": False,
            "stage": False, "ver": 0, "_seen": {"inferences": 0, "results": 0},
            "_hist_ts": array("q"), "_hist_v": array("d"), "_alert": AlertState()}


def _status(row: dict, msg: dict) -> None:
    state = msg.get("state")
    if state in ("online", "offline"):
        row["state"] = state
    row["model"] = _text(msg.get("model"), 100) or row["model"]
    row["active_model"] = _text(msg.get("active_model"), 100) or row["active_model"]
    counts = msg.get("counts")
    if isinstance(counts, dict):
        row["status_counts"] = {str(k)[:40]: v for k, v in list(counts.items())[:32] if _count(v) is not None}
    row["status_ts"] = _ts(msg)


def _inference(row: dict, msg: dict) -> None:
    scores = msg.get("scores")
    top = None
    if isinstance(scores, dict):
        numbers = [x for x in (_number(v) for v in scores.values()) if x is not None]
        top = max(numbers) if numbers else None
    counts = msg.get("counts")  # a tiny model that counts events over a trip (vehicles) instead of a class
    events = None
    if isinstance(counts, dict):
        events = {str(k)[:40]: v for k, v in list(counts.items())[:32] if _count(v)}
    row["inference"] = {"class": _text(msg.get("class"), 64), "score": top, "events": events,
                        "distance_km": _number(msg.get("distance_km")), "ts": _ts(msg), "seq": _count(msg.get("seq"))}
    row["model"] = row["model"] or _text(msg.get("model"), 100)
    row["_seen"]["inferences"] += 1


def _is_stage(dom: _Domain, row: dict) -> bool:
    """A publisher of a status that is no subject: the cloud service, or one running the large model."""
    if row["inference"] is not None or row["result"] is not None:
        return False
    large = f"{dom.large_model}@" if dom.large_model else None
    model = row["model"] or ""
    return row["device"] == "cloud" or model.startswith(WORKER_MODEL) or bool(large and model.startswith(large))


def _with_worker(out: dict, now_ms: float) -> dict:
    """A cluster worker's stage row (its heartbeat status, :mod:`shared.cluster.worker`) gains ``worker``: the
    partitions it holds, messages/s, its last heartbeat and ``alive`` (online, heard from within three
    heartbeat intervals: a worker killed -9 sends no offline status)."""
    if not (out.get("model") or "").startswith(WORKER_MODEL):
        return out
    c = out["status_counts"]
    every = c.get("heartbeat_ms") or 2000
    last = out.get("last_ms")
    out["worker"] = {"partitions": sorted(int(k[1:]) for k in c if k[:1] == "p" and k[1:].isdigit()),
                     "msgs_per_s": c.get("msgs_per_s", 0), "handled": c.get("handled", 0),
                     "takeovers": c.get("takeovers", 0), "last_heartbeat_ms": last,
                     "alive": out.get("state") == "online" and last is not None and now_ms - last <= 3 * every}
    return out


def _place(dom: _Domain, device: str, was_stage: bool | None, stage: bool) -> None:
    """Keep the sorted subject list and the stage set in step with the row (only when it moves)."""
    if was_stage is stage:
        return
    if was_stage is False:
        dom.subjects.pop(bisect.bisect_left(dom.subjects, device))
    elif was_stage is True:
        dom.stages.discard(device)
    if stage:
        dom.stages.add(device)
    else:
        bisect.insort(dom.subjects, device)


def _tally(dom: _Domain, row: dict, sign: int) -> None:
    """Add (+1) or take out (-1) a subject's share of the domain's online/offline/alerting counts."""
    if row["stage"]:
        return
    if row["state"] == "online":
        dom.online += sign
    elif row["state"] == "offline":
        dom.offline += sign
    if row["alerting"]:
        (dom.alerting.add if sign > 0 else dom.alerting.discard)(row["device"])


def _page(dom: _Domain, v: View) -> tuple[list[str], int, int]:
    """(ids of the page, how many match, the offset used: clamped onto the last page)."""
    if v.only == "alerting":
        pool = sorted(i for i in dom.alerting if i.startswith(v.q))
        lo, hi = 0, len(pool)
    else:
        pool = dom.subjects
        lo, hi = 0, len(pool)
        if v.q:
            lo, hi = bisect.bisect_left(pool, v.q), bisect.bisect_left(pool, v.q + "\U0010ffff")
    total = hi - lo
    offset = min(max(0, v.offset), max(0, (total - 1) // v.limit * v.limit)) if total else 0
    return pool[lo + offset:min(hi, lo + offset + v.limit)], total, offset
