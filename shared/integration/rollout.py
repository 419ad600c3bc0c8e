"""Roll a model from ANY integration strategy out to a fleet: full int8 -> C that compiles -> signed -> the
retained ``model`` stream.

Whatever produced the model (distillation, transfer learning, Flower FL, split learning), the last mile
is the same, and it is this module::

    from shared.integration.rollout import roll_out

    done = roll_out(model,                      # a Keras model, or .tflite bytes / a path
                    domain="healthcare", devices=["p001", "p002"],
                    model_id="hc-risk-tiny@2",  # name@version; the version must exceed the devices' active one
                    private_key=Path("keys/model_signing.key"),
                    mqtt="mqtt://127.0.0.1:1883",   # or publish=shared.runtime.app.publisher(client, domain)
                    representative=x_train[:1000],  # Keras models only: int8 calibration inputs
                    out_dir=Path("out/rollout"))
    done.tflite, done.compiled.macs, done.compiled.arena_bytes, done.c_compiler, done.messages, done.bytes_on_wire

Steps (each usable on its own):

1. :func:`to_int8` -- a Keras model is converted with full integer quantization
   (:func:`shared.tiny.int8.to_int8_tflite`); bytes are checked to be a TFLite flatbuffer with int8 input
   and output. :func:`shared.tiny.int8.budget_check` then holds it to the device budget (flash, RAM, ops).
2. :func:`compile_c` -- the firmware compiler (:mod:`shared.tiny.compiler`) writes ``NAME.h/.c`` and
   ``NAME_metadata.h``; when a C compiler (``cc``/``gcc``) is installed the source is compiled against
   ``firmware/runtime`` with ``-std=c99 -Wall -Wextra -Werror -pedantic`` (a failure raises
   :class:`RolloutError`); without one, ``c_compiler`` is None and only generation was checked.
3. :func:`signed_updates` -- one message per device, signed with Ed25519
   (:func:`shared.security.model_update.sign_update`: domain, device, model id, version, size, SHA-256).
4. :func:`publish_updates` -- QoS 1, retained, on ``tinylarge/<domain>/<device>/model``; a device that
   connects later still gets it. Devices verify with :class:`shared.security.model_update.ModelSlot`
   (signature, hash, strictly newer version) before swapping models (see :mod:`shared.runtime.fleet`).

No encryption is involved: updates are signed (authentic, untampered), not secret; the broker's TLS is
what keeps them private on the wire.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
RUNTIME_DIR = REPO / "firmware" / "runtime"
STRICT_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2")

Publish = Callable[[str, str, dict], None]


class RolloutError(RuntimeError):
    """A model that must not be rolled out (not int8, over budget, C that does not compile, bad id)."""


@dataclass
class CompiledC:
    """The C the model compiled to, and which compiler checked it (None: generated, not compiled)."""

    model: Any  #: shared.tiny.compiler.CompiledModel (arena_bytes, const_bytes, macs, ops, paths)
    compiler: str | None


@dataclass
class Rollout:
    """What :func:`roll_out` did."""

    domain: str
    model_name: str
    version: int
    tflite: bytes = field(repr=False)
    budget: dict[str, Any]
    compiled: Any  #: shared.tiny.compiler.CompiledModel
    c_compiler: str | None
    devices: list[str]
    messages: int  #: update messages published (one per device)
    bytes_on_wire: int  #: bytes of one device's signed update message (JSON)


def split_model_id(model_id: str) -> tuple[str, int]:
    """``"name@3"`` -> ``("name", 3)``; a clear error otherwise."""
    name, at, version = str(model_id).rpartition("@")
    if not at or not name or not version.isdigit() or (len(version) > 1 and version[0] == "0"):
        raise RolloutError(f"model_id {model_id!r}: expected NAME@VERSION with a decimal version (e.g. hc-risk-tiny@2)")
    return name, int(version)


def to_int8(model: Any, representative: np.ndarray | None = None) -> bytes:
    """Full-int8 TFLite bytes from a Keras model (needs ``representative`` inputs) or from .tflite bytes/path."""
    from shared.tiny.int8 import Int8Runner, to_int8_tflite

    if isinstance(model, str | Path):
        path = Path(model)
        if not path.is_file():
            raise RolloutError(f"model file {path} not found")
        model = path.read_bytes()
    if isinstance(model, bytes | bytearray):
        blob = bytes(model)
        if blob[4:8] != b"TFL3":
            raise RolloutError("model bytes are not a TFLite flatbuffer (no TFL3 identifier)")
        runner = Int8Runner(blob)
        if runner.input_dtype != np.int8 or runner.output_dtype != np.int8:
            raise RolloutError(f"model is not full int8: input {runner.input_dtype}, output {runner.output_dtype}; "
                               "pass the Keras model with representative inputs instead")
        return blob
    if not hasattr(model, "predict"):
        raise RolloutError(f"model must be a Keras model, .tflite bytes or a path; got {type(model).__name__}")
    if representative is None:
        raise RolloutError("a Keras model needs representative inputs (n, ...) to calibrate int8 ranges")
    return to_int8_tflite(model, np.asarray(representative, dtype=np.float32))


def c_compiler() -> str | None:
    """The host C compiler used to check generated sources (``cc`` or ``gcc``), None when there is none."""
    return shutil.which("cc") or shutil.which("gcc")


def compile_c(tflite: bytes, name: str, out_dir: Path, labels: Sequence[str] | None = None,
              model_id: str | None = None, domain: str | None = None) -> CompiledC:
    """Generate C for ``tflite`` in ``out_dir`` and, when a compiler is installed, compile it (and the runtime
    kernels) with strict flags. Raises :class:`RolloutError` naming the compiler's first error."""
    from shared.tiny.compiler import CompileError, ModelMetadata, compile_tflite

    out_dir = Path(out_dir)
    meta = ModelMetadata(model_id or f"{name}@1", None if labels is None else tuple(labels), domain)
    try:
        cm = compile_tflite(tflite, name, out_dir, None if labels is None else list(labels), meta)
    except CompileError as exc:
        raise RolloutError(f"model does not compile to C: {exc}") from None
    cc = c_compiler()
    if cc is None:
        return CompiledC(cm, None)
    for src in [cm.source_path, *sorted(RUNTIME_DIR.glob("*.c"))]:
        obj = out_dir / f"{src.stem}.o"
        res = subprocess.run([cc, *STRICT_CFLAGS, f"-I{RUNTIME_DIR}", f"-I{out_dir}", "-c", str(src), "-o", str(obj)],
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            first = (res.stderr.strip().splitlines() or ["(no output)"])[0]
            raise RolloutError(f"generated C for {name} does not compile ({src.name}): {first}")
    return CompiledC(cm, Path(cc).name)


def signed_updates(domain: str, devices: Sequence[str], model_name: str, version: int, tflite: bytes,
                   private_key: Any, first_seq: int = 1, ts_ms: int | None = None) -> list[dict]:
    """One signed ``model`` message per device (schema-checked)."""
    from shared.security.model_update import sign_update

    if not devices:
        raise RolloutError("no devices to roll out to")
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    return [sign_update(domain, d, model_name, version, tflite, private_key, first_seq + i, ts)
            for i, d in enumerate(devices)]


def update_bytes(domain: str, device: str, model_name: str, version: int, tflite: bytes) -> int:
    """Bytes of one signed update message for ``tflite`` (JSON, as published), signed with a throwaway key."""
    from shared.protocol.messages import encode
    from shared.security.model_update import generate_keypair

    with tempfile.TemporaryDirectory() as tmp:
        key, _ = generate_keypair(tmp)
        msg = signed_updates(domain, [device], model_name, version, tflite, key)[0]
    return len(encode(domain, "model", msg))


def publish_updates(domain: str, updates: Sequence[dict], publish: Publish | None = None, mqtt: str | None = None,
                    client_id: str = "tinylarge-rollout", args: Any = None) -> int:
    """Publish each update retained (QoS 1) on its device's ``model`` topic, through ``publish`` (a
    :func:`shared.runtime.app.publisher`) or a client of its own on the ``mqtt`` URL; returns the count."""
    if publish is None:
        if mqtt is None:
            raise RolloutError("publish_updates: give publish= or mqtt=")
        from shared.runtime.app import client_config, publisher
        from shared.transport.mqtt import MqttClient

        client = MqttClient(client_config(args, mqtt, client_id))
        client.start()
        try:
            n = publish_updates(domain, updates, publisher(client, domain))
        finally:
            client.stop(flush_timeout_s=30.0)
        return n
    for msg in updates:
        publish(msg["device"], "model", msg)
    return len(updates)


def roll_out(model: Any, *, domain: str, devices: Sequence[str], model_id: str, private_key: Any,
             out_dir: Path, representative: np.ndarray | None = None, labels: Sequence[str] | None = None,
             publish: Publish | None = None, mqtt: str | None = None, weights_max: int | None = None,
             arena_max: int | None = None, args: Any = None) -> Rollout:
    """int8 -> budget -> C (compiled when a compiler exists) -> signed -> published retained. See the module doc.

    ``args``: an argparse namespace with the endpoint flags (``--ca``, ``--cert``, ``--key``) for ``mqtt``."""
    from shared.protocol.messages import encode
    from shared.tiny import int8

    name, version = split_model_id(model_id)
    blob = to_int8(model, representative)
    try:
        budget = int8.budget_check(blob, weights_max or int8.WEIGHTS_MAX_BYTES, arena_max or int8.ARENA_MAX_BYTES)
    except int8.BudgetError as exc:
        raise RolloutError(str(exc)) from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}@{version}.tflite").write_bytes(blob)
    c_ident = "".join(ch if ch.isalnum() else "_" for ch in name)
    compiled = compile_c(blob, c_ident if c_ident[0].isalpha() else f"m_{c_ident}", out_dir / "c", labels,
                         model_id, domain)
    updates = signed_updates(domain, list(devices), name, version, blob, private_key)
    sent = publish_updates(domain, updates, publish=publish, mqtt=mqtt, args=args)
    return Rollout(domain, name, version, blob, budget, compiled.model, compiled.compiler, list(devices), sent,
                   len(encode(domain, "model", updates[0])))
