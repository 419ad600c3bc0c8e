"""Edge Impulse interop: export recorded device windows in the Edge Impulse data acquisition format,
and profile / deploy a tiny model with the Edge Impulse Python SDK (``tinylarge ei profile|deploy``).

Data acquisition format (JSON encoding; https://docs.edgeimpulse.com/reference/data-ingestion/
data-acquisition-format)::

    {"protected": {"ver": "v1", "alg": "HS256" | "none", "iat": <epoch s>},
     "signature": "<64 hex>",
     "payload": {"device_name": ..., "device_type": ..., "interval_ms": ...,
                 "sensors": [{"name": ..., "units": ...}, ...],
                 "values": [[s0_sensor0, s0_sensor1, ...], ...]}}

Signing (HS256): the document is serialised with the signature set to 64 zeros, the HMAC-SHA256 of
those bytes under the key is taken, and its hex digest replaces the zeros in the same text, so a
verifier zero-fills the field again and recomputes. With no key, ``alg`` is ``none`` and the signature
stays zeros. Channels sampled once per window (skin temperature) are repeated on every row, because
the format has one interval for all sensors.

The SDK calls need ``EI_API_KEY`` (an Edge Impulse project API key) and the network; without the key
they stop with a clear error before importing anything.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ZERO_SIGNATURE = "0" * 64
API_KEY_ENV = "EI_API_KEY"
HMAC_KEY_ENV = "EI_HMAC_KEY"


@dataclass(frozen=True)
class Sensor:
    name: str
    units: str


def _columns(channels: Mapping[str, Sequence[float] | np.ndarray | float]) -> tuple[list[str], np.ndarray]:
    arrays = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in channels.items()}
    if not arrays:
        raise ValueError("channels: need at least one sensor")
    n = max(a.size for a in arrays.values())
    cols = []
    for name, a in arrays.items():
        if a.size == 1:
            a = np.full(n, a[0])  # once-per-window channel: repeated on every row
        elif a.size != n:
            raise ValueError(f"channels: {name!r} has {a.size} samples, expected {n} (or 1)")
        cols.append(a)
    return list(arrays), np.stack(cols, axis=1)


def export_window(channels: Mapping[str, Sequence[float] | np.ndarray | float], units: Mapping[str, str],
                  interval_ms: float, device_type: str, device_name: str | None = None,
                  hmac_key: str | None = None, iat: int | None = None) -> bytes:
    """One sample in the data acquisition format (JSON bytes), signed with HS256 when hmac_key is given."""
    if not (interval_ms > 0 and np.isfinite(interval_ms)):
        raise ValueError(f"interval_ms: must be > 0, got {interval_ms!r}")
    if not device_type:
        raise ValueError("device_type: required by the format")
    names, values = _columns(channels)
    missing = [n for n in names if n not in units]
    if missing:
        raise ValueError(f"units: no unit for sensor(s) {', '.join(missing)}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values: NaN or infinite samples cannot be exported")
    protected: dict = {"ver": "v1", "alg": "HS256" if hmac_key else "none"}
    if iat is not None:
        protected["iat"] = int(iat)
    payload: dict = {"device_type": device_type, "interval_ms": float(interval_ms),
                     "sensors": [{"name": n, "units": units[n]} for n in names],
                     "values": [[float(v) for v in row] for row in values]}
    if device_name:
        payload = {"device_name": device_name, **payload}
    doc = {"protected": protected, "signature": ZERO_SIGNATURE, "payload": payload}
    text = json.dumps(doc, separators=(",", ":"))
    if hmac_key:
        sig = hmac.new(hmac_key.encode(), text.encode(), hashlib.sha256).hexdigest()
        text = text.replace(f'"signature":"{ZERO_SIGNATURE}"', f'"signature":"{sig}"', 1)
    return text.encode()


def verify(data: bytes, hmac_key: str) -> bool:
    """True if an HS256-signed export carries the right signature for hmac_key."""
    doc = json.loads(data)
    if doc.get("protected", {}).get("alg") != "HS256":
        return False
    sig = doc.get("signature", "")
    text = data.decode()
    zeroed = text.replace(f'"signature":"{sig}"', f'"signature":"{ZERO_SIGNATURE}"', 1)
    expected = hmac.new(hmac_key.encode(), zeroed.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig, expected)


def export_windows(domain: str, windows: Iterable[object], out_dir: str | Path, hmac_key: str | None = None,
                   device_type: str | None = None, label: str | None = None) -> list[Path]:
    """Write each window of a registered domain as ``<label>.<subject>_<t_end ms>.json``; returns the paths.

    The sensors are the domain's ``window_channels`` (its firmware sensor table), their units its
    ``Channel`` declarations, the interval that of its fastest channel. The label prefix (``label``, else
    the window's ``truth.label``) is how the Edge Impulse uploader infers a sample's label from its file
    name; the subject is the window's ``patient``, ``machine`` or ``subject`` attribute, as the domain names it.
    """
    from shared.domain import get

    d = get(domain)
    channels = d.hooks.window_channels
    units = {ch.name: ch.unit for ch in d.channels}
    interval_ms = 1000.0 / max(ch.fs_hz for ch in d.channels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for w in windows:
        subject = str(getattr(w, d.subject, None) or getattr(w, "subject", None) or d.subject)
        lab = label or getattr(getattr(w, "truth", None), "label", None) or "window"
        data = export_window(channels(w), units, interval_ms, device_type or f"TINYLARGE_{d.name.upper()}",
                             subject, hmac_key)
        t_end_ms = int(round(float(getattr(w, "t_end_s", 0.0)) * 1000))
        path = out / f"{lab}.{subject}_{t_end_ms}.json"
        path.write_bytes(data)
        paths.append(path)
    return paths


def simulated_windows(domain: str, subjects: int, hours: float, seed: int = 7) -> Iterable[object]:
    """Every window of a domain's simulator (``DomainHooks.simulate``), subject by subject."""
    from shared.domain import get

    sim = get(domain).hooks.simulate(subjects, hours, seed)
    for subject in sim:
        yield from subject.windows()


# ---- SDK: profile / deploy ------------------------------------------------------------------------

class EdgeImpulseError(RuntimeError):
    pass


def _api_key(explicit: str | None = None) -> str:
    key = explicit or os.environ.get(API_KEY_ENV, "")
    if not key:
        raise EdgeImpulseError(f"no Edge Impulse API key: set {API_KEY_ENV} (Studio > Dashboard > Keys) "
                               "or pass --api-key")
    return key


def _sdk():
    try:
        import edgeimpulse
    except ImportError as exc:
        raise EdgeImpulseError("the Edge Impulse SDK is not installed: pip install edgeimpulse") from exc
    return edgeimpulse


def profile(model: Path, device: str | None = None, api_key: str | None = None) -> dict:
    """RAM, flash and latency estimates from Edge Impulse for a .tflite model (network call)."""
    key = _api_key(api_key)
    ei = _sdk()
    resp = ei.model.profile(model=str(model), device=device, api_key=key)
    return resp.to_dict() if hasattr(resp, "to_dict") else dict(resp)


def deploy(model: Path, labels: Sequence[str], out_dir: Path, target: str = "zip",
           api_key: str | None = None) -> Path:
    """Build an Edge Impulse deployment (e.g. a C++ library zip) for a classification model."""
    key = _api_key(api_key)
    ei = _sdk()
    out_dir.mkdir(parents=True, exist_ok=True)
    ei.model.deploy(model=str(model), model_output_type=ei.model.output_type.Classification(labels=list(labels)),
                    deploy_target=target, output_directory=str(out_dir), api_key=key)
    return out_dir


def parser() -> argparse.ArgumentParser:
    from shared.cli import HelpFormatter, add_alias, add_domain_arg, add_json_arg

    ap = argparse.ArgumentParser(prog="tinylarge ei", description="Edge Impulse interop", formatter_class=HelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{export,profile,deploy}")
    e = sub.add_parser("export", help="export a domain's simulated windows in the data acquisition format",
                       description="export a domain's simulated windows in the Edge Impulse data acquisition format "
                       f"(signed HS256 when {HMAC_KEY_ENV} is set)", formatter_class=HelpFormatter)
    add_domain_arg(e, deprecated_flag=True)
    e.add_argument("--out", type=Path, default=Path("out/edge_impulse/data"), help="output folder")
    e.add_argument("--subjects", type=int, default=2, help="simulated subjects (devices), >= 1")
    add_alias(e, "--patients", "--subjects", type=int)
    e.add_argument("--hours", type=float, default=1.0, help="simulated hours per subject, > 0")
    e.add_argument("--seed", type=int, default=7, help="the simulated population's seed")
    p = sub.add_parser("profile", help="estimate RAM/flash/latency on Edge Impulse (needs EI_API_KEY)",
                       description="estimate RAM, flash and latency of a .tflite model on Edge Impulse (network; "
                       f"needs {API_KEY_ENV})", formatter_class=HelpFormatter)
    p.add_argument("model", type=Path, help="the .tflite model")
    p.add_argument("--device", default=None, help="Edge Impulse device id, e.g. cortex-m4f-80mhz (default: theirs)")
    p.add_argument("--api-key", default=None, help=f"Edge Impulse project API key (default: env {API_KEY_ENV})")
    add_json_arg(p)
    d = sub.add_parser("deploy", help="build an Edge Impulse deployment (needs EI_API_KEY)",
                       description="build an Edge Impulse deployment of a classification model (network; needs "
                       f"{API_KEY_ENV})", formatter_class=HelpFormatter)
    d.add_argument("model", type=Path, help="the .tflite model")
    d.add_argument("--labels", required=True, help="comma-separated class labels in output order")
    d.add_argument("--out", type=Path, default=Path("out/edge_impulse"), help="output folder")
    d.add_argument("--target", default="zip", help="Edge Impulse deploy target (zip: a C++ library)")
    d.add_argument("--api-key", default=None, help=f"Edge Impulse project API key (default: env {API_KEY_ENV})")
    return ap


def ei_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge ei export DOMAIN|profile MODEL|deploy MODEL``: a mistake raises UserError (one line, exit 2)."""
    from shared.cli import domain_arg, emit_summary
    from shared.errors import UserError

    a = parser().parse_args(argv)
    if a.cmd == "export":
        d = domain_arg(a, "ei export")
        if a.subjects < 1:
            raise UserError(f"--subjects: must be >= 1, got {a.subjects}")
        if not (a.hours > 0 and np.isfinite(a.hours)):
            raise UserError(f"--hours: must be > 0, got {a.hours:g}")
    elif not a.model.is_file():
        raise UserError(f"{a.model}: no such model file")
    try:
        if a.cmd == "profile":
            emit_summary(f"Edge Impulse profile of {a.model.name}", profile(a.model, a.device, a.api_key), a.json)
        elif a.cmd == "deploy":
            print(deploy(a.model, a.labels.split(","), a.out, a.target, a.api_key))
        else:
            paths = export_windows(d.name, simulated_windows(d.name, a.subjects, a.hours, a.seed), a.out,
                                   os.environ.get(HMAC_KEY_ENV) or None)
            print(f"wrote {len(paths)} samples to {a.out}")
    except (EdgeImpulseError, ValueError, FileNotFoundError, LookupError) as exc:
        raise UserError(str(exc)) from exc
    return 0
