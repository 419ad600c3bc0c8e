"""Line protocol encoding and the two read paths (VictoriaMetrics export, InfluxDB 2 Flux).

Mapping of a :class:`~shared.storage.base.Point` to line protocol::

    <measurement>,device=<device>[,<tag>=<value>...][,str_<field>=<text>...] \
        <field>=<float>|true|false[,...],seq=<seq>i <ts_ms>

- numbers are written as floats (an int in one message and a float in the next would otherwise
  be a field-type conflict in InfluxDB); ``seq`` is the one integer field and is reserved;
- bools are InfluxDB booleans (VictoriaMetrics stores them as 1/0);
- string fields become tags named ``str_<field>`` (VictoriaMetrics ignores string fields, and
  labels keep them queryable), so tag keys starting with ``str_`` are reserved; reading back turns
  them into string fields again;
- the timestamp has millisecond precision.

VictoriaMetrics names a series ``<measurement>_<field>`` (its default
``-influxMeasurementFieldSeparator``), e.g. ``vitals_hr``; so a measurement name must not be
another's name followed by ``_``. Reading back groups the series of one device and timestamp into
one point; numbers come back as floats. On both servers a point's identity is its series and
timestamp: two different points of one device and measurement with the same ``ts_ms`` and tags
collapse into one.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from collections.abc import Iterable
from datetime import datetime

from shared.storage.base import Point

STR_TAG_PREFIX = "str_"
SEQ_FIELD = "seq"
_MEASUREMENT_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\"})
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})


def _check_text(what: str, text: str) -> None:
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} {text!r} contains a line break, which line protocol cannot carry")


def encode_line(point: Point) -> bytes:
    """One line of InfluxDB line protocol (no trailing newline) for `point`."""
    _check_text("measurement", point.measurement)
    _check_text("device", point.device)
    tags: dict[str, str] = {"device": point.device}
    for key, value in point.tags.items():
        if key.startswith(STR_TAG_PREFIX):
            raise ValueError(f"tag {key!r}: tag keys starting with {STR_TAG_PREFIX!r} are reserved")
        _check_text(f"tag {key!r}", key + value)
        if value:
            tags[key] = value
    fields: list[str] = []
    for key, value in point.measured_fields().items():
        if key == SEQ_FIELD:
            raise ValueError(f"field {SEQ_FIELD!r} is reserved (it carries Point.seq)")
        _check_text(f"field {key!r}", key)
        if isinstance(value, str):
            _check_text(f"field {key!r}", value)
            if value:
                tags[STR_TAG_PREFIX + key] = value
        elif isinstance(value, bool):
            fields.append(f"{key.translate(_KEY_ESC)}={'true' if value else 'false'}")
        else:
            fields.append(f"{key.translate(_KEY_ESC)}={float(value)!r}")
    fields.append(f"{SEQ_FIELD}={point.seq}i")
    tag_text = ",".join(f"{k.translate(_KEY_ESC)}={v.translate(_KEY_ESC)}" for k, v in sorted(tags.items()))
    line = f"{point.measurement.translate(_MEASUREMENT_ESC)},{tag_text} {','.join(fields)} {point.ts_ms}"
    return line.encode("utf-8")


def _point_from_parts(measurement: str, labels: dict[str, str], ts_ms: int, values: dict[str, object]) -> Point | None:
    seq = values.pop(SEQ_FIELD, None)
    if seq is None or not isinstance(seq, int | float) or (isinstance(seq, float) and not math.isfinite(seq)):
        return None
    fields: dict[str, float | int | bool | str | None] = dict(values)  # type: ignore[arg-type]
    tags: dict[str, str] = {}
    for key, value in labels.items():
        if key.startswith(STR_TAG_PREFIX):
            fields[key[len(STR_TAG_PREFIX) :]] = value
        else:
            tags[key] = value
    device = tags.pop("device")
    return Point(measurement, device, int(seq), ts_ms, fields, tags)


def _sorted(points: Iterable[Point]) -> list[Point]:
    return sorted(points, key=lambda p: (p.ts_ms, p.device, p.seq))


class VmReader:
    """Reads points back from VictoriaMetrics with ``/api/v1/export`` (JSON lines)."""

    def __init__(self, base_url: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def export(self, match: str, start_ms: int | None = None, end_ms: int | None = None) -> list[dict]:
        """The parsed export lines of the series `match` selects, optionally within [start, end] ms."""
        form: list[tuple[str, str]] = [("match[]", match)]
        if start_ms is not None:
            form.append(("start", f"{start_ms / 1000:.3f}"))
        if end_ms is not None:
            form.append(("end", f"{end_ms / 1000:.3f}"))
        request = urllib.request.Request(
            self.base_url + "/api/v1/export", data=urllib.parse.urlencode(form).encode(), method="POST"
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            body = response.read().decode("utf-8")
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def force_flush(self) -> None:
        """Ask VictoriaMetrics to make buffered rows searchable; errors are ignored (best effort)."""
        try:
            with urllib.request.urlopen(self.base_url + "/internal/force_flush", timeout=self.timeout_s) as r:
                r.read()
        except OSError:
            pass

    @staticmethod
    def _selector(measurement: str, device: str | None, field_name: str | None = None) -> str:
        name = json.dumps(f"{measurement}_{field_name}") if field_name else None
        parts = [f"__name__={name}"] if name else [f"__name__=~{json.dumps(_regex_quote(measurement) + '_.+')}"]
        if device is not None:
            parts.append(f"device={json.dumps(device)}")
        return "{" + ",".join(parts) + "}"

    def query(self, measurement: str, device: str | None, start_ms: int | None, end_ms: int | None) -> list[Point]:
        prefix = measurement + "_"
        grouped: dict[tuple, dict[str, object]] = {}
        for row in self.export(self._selector(measurement, device), start_ms, end_ms):
            labels = dict(row["metric"])
            name = labels.pop("__name__", "")
            if not name.startswith(prefix) or "device" not in labels:
                continue
            field_name = name[len(prefix) :]
            label_key = tuple(sorted(labels.items()))
            for value, ts in zip(row["values"], row["timestamps"], strict=True):
                if (start_ms is not None and ts < start_ms) or (end_ms is not None and ts > end_ms):
                    continue
                if field_name == SEQ_FIELD and isinstance(value, float) and value.is_integer():
                    value = int(value)
                grouped.setdefault((label_key, int(ts)), {})[field_name] = value
        points = (
            _point_from_parts(measurement, dict(label_key), ts, values) for (label_key, ts), values in grouped.items()
        )
        return _sorted(p for p in points if p is not None)

    def count(self, measurement: str, device: str | None) -> int:
        seen: set[tuple] = set()
        for row in self.export(self._selector(measurement, device, SEQ_FIELD)):
            label_key = tuple(sorted(row["metric"].items()))
            seen.update((label_key, ts) for ts in row["timestamps"])
        return len(seen)

    def devices(self, measurement: str) -> list[str]:
        rows = self.export(self._selector(measurement, None, SEQ_FIELD))
        return sorted({row["metric"]["device"] for row in rows if "device" in row["metric"]})


def _regex_quote(text: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\\" else c for c in text)


def _flux_str(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


class FluxReader:
    """Reads points back from InfluxDB 2 with Flux (not exercised by the test suite: only
    VictoriaMetrics is available there)."""

    _STOP = "2262-01-01T00:00:00Z"

    def __init__(self, client: object, bucket: str, org: str) -> None:
        self.query_api = client.query_api()  # type: ignore[attr-defined]
        self.bucket = bucket
        self.org = org

    def _range(self, start_ms: int | None, end_ms: int | None) -> str:
        start = f"time(v: {int(start_ms) * 1_000_000})" if start_ms is not None else "time(v: 0)"
        stop = f"time(v: {(int(end_ms) + 1) * 1_000_000})" if end_ms is not None else self._STOP
        return f"from(bucket: {_flux_str(self.bucket)}) |> range(start: {start}, stop: {stop})"

    def _filter(self, measurement: str, device: str | None) -> str:
        cond = f"r._measurement == {_flux_str(measurement)}"
        if device is not None:
            cond += f" and r.device == {_flux_str(device)}"
        return f" |> filter(fn: (r) => {cond})"

    def query(self, measurement: str, device: str | None, start_ms: int | None, end_ms: int | None) -> list[Point]:
        flux = (
            self._range(start_ms, end_ms)
            + self._filter(measurement, device)
            + ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        )
        points = []
        for table in self.query_api.query(flux, org=self.org):
            for record in table.records:
                values = dict(record.values)
                when: datetime = values.pop("_time")
                labels: dict[str, str] = {}
                fields: dict[str, object] = {}
                for key, value in values.items():
                    if key.startswith("_") or key in ("result", "table") or value is None:
                        continue
                    if isinstance(value, str):
                        labels[key] = value
                    else:
                        fields[key] = value
                ts_ms = round(when.timestamp() * 1000)
                point = _point_from_parts(measurement, labels, ts_ms, fields)
                if point is not None:
                    points.append(point)
        return _sorted(points)

    def count(self, measurement: str, device: str | None) -> int:
        flux = (
            self._range(None, None)
            + self._filter(measurement, device)
            + f' |> filter(fn: (r) => r._field == "{SEQ_FIELD}") |> group() |> count()'
        )
        return sum(int(rec.get_value()) for table in self.query_api.query(flux, org=self.org) for rec in table)

    def devices(self, measurement: str) -> list[str]:
        flux = (
            'import "influxdata/influxdb/schema"\n'
            f'schema.tagValues(bucket: {_flux_str(self.bucket)}, tag: "device", '
            f"predicate: (r) => r._measurement == {_flux_str(measurement)}, start: time(v: 0))"
        )
        return sorted({str(rec.get_value()) for table in self.query_api.query(flux, org=self.org) for rec in table})


def detect_flavor(base_url: str, timeout_s: float = 3.0) -> str:
    """``"vm"`` or ``"influxdb"`` from the server's ``/health`` answer (VictoriaMetrics says ``OK``,
    InfluxDB 2 answers JSON with ``"name": "influxdb"``); OSError when it cannot be reached."""
    with urllib.request.urlopen(base_url.rstrip("/") + "/health", timeout=timeout_s) as response:
        body = response.read(4096).decode("utf-8", "replace").strip()
    if body == "OK":
        return "vm"
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("name") == "influxdb":
        return "influxdb"
    raise ValueError(f"server at {base_url} is neither InfluxDB 2 nor VictoriaMetrics (/health said {body[:80]!r})")
