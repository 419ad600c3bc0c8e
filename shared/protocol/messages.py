"""Message envelope, topics and JSON Schema validation, used on both sides of every link.

Every TinyLarge message is a JSON object with the envelope ``v``, ``device``, ``seq``, ``ts``,
``model`` plus domain fields. The schemas of streams every domain shares (``status``, ``model``) and the
envelope live in ``shared/protocol/schemas/``; each domain keeps its own streams' schemas in
``<domain package>/schemas/<stream>.json`` (found through the domain registry, ``shared.domain``);
docs/messages.md explains them. :func:`encode` validates before publishing and :func:`decode` validates
on receipt; both raise :class:`MessageError` whose ``reason`` is short, stable and safe to put in a dead-letter message.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
from referencing import Registry, Resource

SCHEMA_VERSION = 1
SCHEMA_DIR = Path(__file__).parent / "schemas"
TOPIC_ROOT = "tinylarge"
DEADLETTER_ROOT = f"{TOPIC_ROOT}/_deadletter"
#: streams whose schema is shared by every domain
COMMON_STREAMS = ("status", "model", "smashed", "cutgrad", "splitpred")  # the last three: shared.integration.split
#: payloads above this many bytes are refused before parsing (per stream overrides below)
MAX_BYTES = 16 * 1024
MAX_BYTES_BY_STREAM = {"model": 512 * 1024, "smashed": 512 * 1024, "cutgrad": 512 * 1024, "splitpred": 512 * 1024}
#: nesting deeper than this is refused before schema validation
MAX_DEPTH = 8

#: built once (``json.dumps`` with options builds an encoder per call)
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
_FINITE = json.JSONEncoder(allow_nan=False).encode

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_STREAM_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class MessageError(ValueError):
    """A message that must not be accepted; ``reason`` names what is wrong."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Topic:
    domain: str
    device: str
    stream: str

    def __str__(self) -> str:
        return f"{TOPIC_ROOT}/{self.domain}/{self.device}/{self.stream}"


def check_id(value: str, what: str = "device") -> str:
    """Return ``value`` if it is a safe id (letters, digits, ``_`` and ``-``; 1..64), else raise."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise MessageError(f"invalid {what} id {value!r}: use 1-64 of [A-Za-z0-9_-] (no '/', '+', '#', '..')")
    return value


def domains() -> tuple[str, ...]:
    """The registered domains' names (shared.domain's registry)."""
    from shared.domain import names

    return names()


def check_domain(domain: str) -> str:
    """Return ``domain`` if it is registered, else raise MessageError naming the registered ones."""
    known = domains()
    if domain not in known:
        raise MessageError(f"unknown domain {domain!r}; expected one of {', '.join(known)}")
    return domain


def topic(domain: str, device: str, stream: str) -> str:
    """``tinylarge/<domain>/<device>/<stream>``, refusing ids that would inject topic levels or wildcards."""
    check_domain(domain)
    check_id(device)
    if not _STREAM_RE.match(stream):
        raise MessageError(f"invalid stream name {stream!r}")
    return str(Topic(domain, device, stream))


def parse_topic(name: str) -> Topic:
    """Inverse of :func:`topic`; raises MessageError for anything that is not a TinyLarge device topic."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != TOPIC_ROOT:
        raise MessageError(f"not a {TOPIC_ROOT}/<domain>/<device>/<stream> topic: {name[:120]!r}")
    _, domain, device, stream = parts
    topic(domain, device, stream)  # validates every level
    return Topic(domain, device, stream)


def deadletter_topic(domain: str) -> str:
    return f"{DEADLETTER_ROOT}/{domain}"


@cache
def _schema_files() -> tuple[Path, ...]:
    """Every schema file: the common ones, then each registered domain's."""
    from shared.domain import registry

    files = sorted(SCHEMA_DIR.glob("*.json"))
    for d in registry().values():
        files += sorted(d.schema_dir.glob("*.json"))
    return tuple(files)


@cache
def _registry() -> Registry:
    resources = []
    for path in _schema_files():
        contents = json.loads(path.read_text())
        resources.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources)


@cache
def _validator(domain: str, stream: str) -> jsonschema.protocols.Validator:
    path = schema_path(domain, stream)
    if not path.exists():
        raise MessageError(f"no schema for stream {stream!r} of domain {domain!r} ({path.name})")
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=_registry())


@cache
def _fast_validator(domain: str, stream: str) -> Callable[[Any], Any]:
    """The same schema compiled to Python by fastjsonschema: ~20x faster on the valid (hot) path.

    ``$ref`` to a sibling schema file is resolved from SCHEMA_DIR by its ``$id``, never fetched.
    tests/shared/test_messages.py holds it to the same verdicts as jsonschema.
    """
    _validator(domain, stream)  # the schema exists and is itself valid
    by_id = {json.loads(p.read_text())["$id"]: p for p in _schema_files()}

    def local(uri: str) -> dict:
        if uri not in by_id:
            raise MessageError(f"schema reference {uri!r} is not a local schema")
        return json.loads(by_id[uri].read_text())

    schema = json.loads(schema_path(domain, stream).read_text())
    return fastjsonschema.compile(schema, handlers={"https": local, "http": local})


def schema_path(domain: str, stream: str) -> Path:
    """Where the schema of ``stream`` lives: shared/protocol/schemas for common streams, else the domain's."""
    if stream in COMMON_STREAMS:
        return SCHEMA_DIR / f"{stream}.json"
    from shared.domain import DomainError, get

    try:
        return get(domain).schema_dir / f"{stream}.json"
    except DomainError as exc:
        raise MessageError(str(exc)) from None


def _depth(obj: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(obj, dict):
        return max((_depth(v, level + 1) for v in obj.values()), default=level)
    if isinstance(obj, list):
        return max((_depth(v, level + 1) for v in obj), default=level)
    return level


def _check_finite(obj: Any, path: str = "$") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise MessageError(f"non-finite number at {path}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, f"{path}[{i}]")


def validate(domain: str, stream: str, msg: Any, *, finite: bool = False) -> dict:
    """Validate a message object against its schema; return it, or raise MessageError naming the field.

    The hot path is the compiled schema plus a C-speed finiteness check (``json.dumps`` with
    ``allow_nan=False``); every schema bounds nesting, so a message that passes is shallower than
    MAX_DEPTH. Only a failing message is walked in Python to name the reason. ``finite=True`` skips the
    finiteness check, for a caller that made sure of it (:func:`decode`'s parser refuses non-finite numbers;
    :func:`encode` serialises with ``allow_nan=False`` anyway).
    """
    if not isinstance(msg, dict):
        raise MessageError(f"message must be a JSON object, got {type(msg).__name__}")
    if "v" in msg and msg["v"] != SCHEMA_VERSION:
        raise MessageError(f"unknown schema version v={msg['v']!r}; this side speaks v={SCHEMA_VERSION}")
    try:
        _fast_validator(domain, stream)(msg)
        if not finite:
            _FINITE(msg)
        return msg
    except (fastjsonschema.JsonSchemaException, ValueError):
        pass  # invalid: find the most relevant reason below
    if _depth(msg) > MAX_DEPTH:
        raise MessageError(f"message nested deeper than {MAX_DEPTH} levels")
    _check_finite(msg)
    error = jsonschema.exceptions.best_match(_validator(domain, stream).iter_errors(msg))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(message)"
        raise MessageError(f"schema: {where}: {error.message[:200]}")
    return msg


def _reject_constant(name: str) -> Any:
    raise MessageError(f"non-finite number {name} in JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999 overflows to inf
        raise MessageError(f"non-finite number {text[:40]} in JSON")
    return value


def encode(domain: str, stream: str, msg: dict) -> bytes:
    """Validate and serialise compactly (UTF-8, no NaN/Infinity): one serialisation, which checks finiteness."""
    validate(domain, stream, msg, finite=True)
    try:
        data = _COMPACT(msg).encode()
    except ValueError:  # a non-finite number: the full check names where
        validate(domain, stream, msg)
        raise
    limit = MAX_BYTES_BY_STREAM.get(stream, MAX_BYTES)
    if len(data) > limit:
        raise MessageError(f"message of {len(data)} bytes exceeds the {limit}-byte limit of {stream!r}")
    return data


def decode(domain: str, stream: str, payload: bytes) -> dict:
    """Parse and validate a received payload; raise MessageError with the reason for the dead-letter topic."""
    limit = MAX_BYTES_BY_STREAM.get(stream, MAX_BYTES)
    if len(payload) > limit:
        raise MessageError(f"oversize: {len(payload)} bytes > {limit}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        msg = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except MessageError:
        raise
    except RecursionError:
        raise MessageError(f"message nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise MessageError(f"bad JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # e.g. an integer literal beyond Python's 4300-digit conversion limit
        raise MessageError("bad JSON: number literal too long") from None
    return validate(domain, stream, msg, finite=True)  # the parser refused NaN, Infinity and overflows


#: seqs a device may use per millisecond of uptime without reusing one after a restart (see boot_seq)
SEQ_PER_MS = 1000


def boot_seq(now_ms: int | None = None) -> int:
    """The first ``seq`` of a device that cannot persist its counter: its boot time in epoch ms x SEQ_PER_MS.

    A device that restarts continues above every seq it used before, so (device, seq) stays unique across
    reboots, as long as it sent fewer than SEQ_PER_MS messages per millisecond of uptime and its clock
    did not step back. The largest value fits the schema's 2^53 - 1 until the year 2255.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else int(now_ms)
    return now_ms * SEQ_PER_MS


def check_ts(msg: dict, now_ms: int, max_future_skew_s: float | None, min_ts_ms: int | None) -> dict:
    """Return ``msg`` if its ``ts`` is plausible for a receiver whose clock reads ``now_ms``: not more than
    ``max_future_skew_s`` ahead of it and not before ``min_ts_ms`` (a device clock that was never set).
    The schema allows any ``ts`` up to year 3000; this is the receiver's check. Raises MessageError."""
    ts = msg["ts"]
    if max_future_skew_s is not None and ts > now_ms + max_future_skew_s * 1000:
        raise MessageError(f"implausible ts {ts}: {(ts - now_ms) / 1000:.0f} s ahead of the receiver's clock "
                           f"(allowed skew {max_future_skew_s:g} s)")
    if min_ts_ms is not None and ts < min_ts_ms:
        raise MessageError(f"implausible ts {ts}: before {min_ts_ms} (device clock not set?)")
    return msg


def deadletter(domain: str, topic_name: str, reason: str, payload: bytes, ts_ms: int) -> bytes:
    """The dead-letter record: where it came from, why it was refused, and the start of the payload."""
    record = {
        "v": SCHEMA_VERSION,
        "domain": domain,
        "topic": topic_name[:256],
        "reason": reason[:300],
        "ts": ts_ms,
        "payload": payload[:1024].decode("utf-8", errors="replace"),
        "payload_bytes": len(payload),
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
