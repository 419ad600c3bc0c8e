"""What the page needs to know about each domain to show its numbers truthfully (no I/O but schema files).

* :func:`field_meta`: a label and a unit from a field's name (the project names units in names:
  ``rul_h``, ``vendor_points_per_100km``, ``hr_bpm``), so ``vendor_points_per_100km 5843`` reads
  ``vendor points 5,843 per 100 km``;
* :func:`domain_meta`: per domain, the registry's declaration plus the result stream's fields, each
  with its label, unit, schema description and whether it is the baseline's (a field whose name shares
  a word with the declared baseline, e.g. ``news2`` for NEWS2, ``iso_zone`` for ISO 10816-3 zones,
  ``vendor_points_per_100km`` for the vendor scorecard, ``rule_action`` for the rule controller; or
  whose description names the baseline);
* :func:`alert_rules`: the alert rule each domain's service runs, read where the service reads it
  (``alert_threshold`` and ``alert_windows`` in the models folder's ``metrics.json``, else the
  service's defaults), so that "alerting now" is the service's rule applied to the scores shown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from shared.domain import Domain
from shared.runtime.alerts import AlertRule

#: unit words at the end of a field name -> how the page writes them
_UNITS = {"h": "h", "s": "s", "ms": "ms", "km": "km", "m": "m", "pct": "%", "bpm": "/min", "hz": "Hz",
          "c": "°C", "g": "g", "mps": "m/s", "mps2": "m/s²", "mps3": "m/s³", "rads": "rad/s", "trips": "trips",
          "kw": "kW", "db": "dB", "uv": "µV"}
_TWO_WORD_UNITS = {("mm", "s"): "mm/s", ("m", "s"): "m/s"}
#: envelope and bookkeeping keys of a result that the page does not show as fields
BOOKKEEPING = frozenset(("v", "device", "seq", "ts", "model", "source_seq", "windows"))
_STOP_WORDS = frozenset(("per", "the", "and", "of", "style"))


def field_meta(name: str) -> dict[str, str]:
    """``{"label", "unit"}`` of a field from its name: ``rul_h`` -> (rul, h), ``x_per_100km`` -> (x, per 100 km)."""
    words = [w for w in name.lower().split("_") if w]
    if not words:
        return {"label": name, "unit": ""}
    per = re.fullmatch(r"(\d+)([a-z]+)", words[-1])
    if len(words) >= 3 and words[-2] == "per" and (per or words[-1] in _UNITS):
        unit = f"per {per.group(1)} {_UNITS.get(per.group(2), per.group(2))}" if per else f"per {_UNITS[words[-1]]}"
        return {"label": " ".join(words[:-2]), "unit": unit}
    if len(words) >= 3 and tuple(words[-2:]) in _TWO_WORD_UNITS:
        return {"label": " ".join(words[:-2]), "unit": _TWO_WORD_UNITS[tuple(words[-2:])]}
    if len(words) >= 2 and words[-1] in _UNITS:
        return {"label": " ".join(words[:-1]), "unit": _UNITS[words[-1]]}
    return {"label": " ".join(words), "unit": ""}


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) >= 3 and w not in _STOP_WORDS}


def _schema_properties(d: Domain, stream: str) -> dict[str, Any]:
    try:
        schema = json.loads((d.schema_dir / f"{stream}.json").read_text())
    except (OSError, ValueError, LookupError):
        return {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    return props if isinstance(props, dict) else {}


def result_fields(d: Domain) -> dict[str, dict[str, Any]]:
    """The result stream's fields (from its schema): label, unit, description, baseline (bool)."""
    base_words = _words(d.baseline)
    out: dict[str, dict[str, Any]] = {}
    for name, spec in _schema_properties(d, d.result_stream).items():
        if name in BOOKKEEPING:
            continue
        desc = spec.get("description", "") if isinstance(spec, dict) else ""
        desc = desc if isinstance(desc, str) else ""
        baseline = bool(_words(name.replace("_", " ")) & base_words) or "baseline" in desc.lower()
        out[name] = {**field_meta(name), "description": desc[:200], "baseline": baseline}
    return out


def domain_meta(d: Domain) -> dict[str, Any]:
    """What ``/api/domains`` serves (and the page is given inline) for one domain."""
    return {"title": d.title, "subject": d.subject, "result_stream": d.result_stream, "streams": sorted(d.streams),
            "labels": list(d.labels), "tiny_model": d.tiny_model, "large_model": d.large_model,
            "baseline": d.baseline, "fields": result_fields(d)}


def alert_rules(domains: dict[str, Domain], models_root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Per domain ``{"rule": AlertRule, "source": text}``: what the domain's service would run on the models
    in ``<models_root>/<domain>`` (default: each domain's ``models/<domain>``)."""
    from shared.runtime.service import ServiceConfig

    default = ServiceConfig()
    out: dict[str, dict[str, Any]] = {}
    for name, d in domains.items():
        folder = Path(models_root) / name if models_root is not None else d.models_dir
        path = folder / "metrics.json"
        threshold, windows, source = default.alert_threshold, default.alert_windows, "the service's default"
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            metrics = None
        if isinstance(metrics, dict) and isinstance(metrics.get("alert_threshold"), int | float):
            threshold, source = float(metrics["alert_threshold"]), str(path)
            if isinstance(metrics.get("alert_windows"), int) and metrics["alert_windows"] >= 1:
                windows = int(metrics["alert_windows"])
        out[name] = {"rule": AlertRule(threshold, windows), "source": source}
    return out
