"""Signed over-the-air model updates: the cloud signs, the device verifies before it swaps.

The cloud publishes a new int8 TFLite model on the retained topic ``tinylarge/<domain>/<device>/model``
as a JSON message (schema ``shared/protocol/schemas/model.json``). The Ed25519 signature covers this
canonical byte string (ASCII, every line ending in ``\\n``, no other whitespace)::

    tinylarge-model-update-v1
    domain=<domain>
    device=<device id>
    model=<model id, without @version>
    version=<version, decimal, no leading zeros>
    size=<byte count, decimal>
    sha256=<64 lowercase hex digits of the TFLite bytes>
    key_id=<16 lowercase hex digits>

Every value is restricted to characters without ``\\n`` or ``=`` (the domain: a registered domain's name,
``[a-z][a-z0-9_]{0,31}``; ids ``[A-Za-z0-9_-]``, model ids ``[A-Za-z0-9_.-]``), so the form is unambiguous.
The model bytes are bound through their hash; the envelope's ``seq`` and ``ts`` are deliberately not signed
(replay is stopped by the version rule). Signing and verifying refuse a domain the registry does not have.

A :class:`ModelSlot` is what a device holds: the active model and its version. ``offer(msg)`` accepts a
message only if the schema, domain, device, trusted key, signature, version (strictly above the version
floor: the highest version this slot ever installed), size and SHA-256 all check out, and the model loads
with the expected shapes: LiteRT's interpreter must load it and allocate its tensors, and its inputs and
outputs (shapes and dtypes) must equal the expected ones (``expected_io``, else those of the active model,
else those recorded with the last install; a slot that knows none takes any model that loads); a domain
loader (``load``) runs after that and, without ``expected_io``, decides the interface itself. On any
failure the active model is left untouched and the reason says why. With a ``path`` (or a ``state_dir``)
the new bytes are written to a temporary file and renamed over the old one, so a power cut leaves either
the old or the new model, never half of one; the metadata beside it (version, hash, shapes) is the version
floor a restarted slot starts from, kept even when the model file itself was lost or damaged, so a restart
never reopens the door to a replay of an older version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.protocol.messages import SCHEMA_VERSION, MessageError, check_domain, check_id, decode, topic, validate

CANONICAL_TAG = "tinylarge-model-update-v1"
PRIVATE_NAME, PUBLIC_NAME = "model_signing.key", "model_signing.pub"
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier at bytes 4..8 of every .tflite
_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DOMAIN_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # Domain.name's rule (shared.domain), as model.json has it

KeySource = Ed25519PublicKey | str | os.PathLike[str]


class ModelUpdateError(ValueError):
    """A model update that must not be installed; ``reason`` is short and safe to log or dead-letter."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def registered_domain(domain: str) -> str:
    """``domain`` if it is a registered domain (shared.domain's registry), else ModelUpdateError naming it."""
    try:
        return check_domain(domain)
    except MessageError as exc:
        raise ModelUpdateError(exc.reason) from None


def model_topic(domain: str, device: str) -> str:
    return topic(domain, device, "model")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def generate_keypair(dir: str | os.PathLike[str], overwrite: bool = False) -> tuple[Path, Path]:
    """Create ``model_signing.key`` (PKCS#8 PEM, mode 0600) and ``model_signing.pub`` (PEM) in ``dir``."""
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / PRIVATE_NAME, out / PUBLIC_NAME
    if not overwrite and (private_path.exists() or public_path.exists()):
        raise ModelUpdateError(f"a signing key already exists in {out}; rotating keys is a deliberate step")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = private_path.with_name(private_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)
    os.replace(tmp, private_path)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ModelUpdateError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(source: KeySource) -> Ed25519PublicKey:
    """An Ed25519 public key from a key object or a PEM file."""
    if isinstance(source, Ed25519PublicKey):
        return source
    key = serialization.load_pem_public_key(Path(source).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ModelUpdateError(f"{source}: not an Ed25519 public key")
    return key


def canonical_bytes(
    domain: str, device: str, model_id: str, version: int, size: int, sha256_hex: str, key_id_hex: str
) -> bytes:
    """The exact bytes that are signed (see the module docstring); refuses values that would be ambiguous."""
    check_id(device)
    if not _MODEL_ID_RE.match(model_id):
        raise ModelUpdateError(f"invalid model id {model_id!r}: use 1-64 of [A-Za-z0-9_.-], no '@'")
    if not isinstance(domain, str) or not _DOMAIN_RE.match(domain):
        raise ModelUpdateError(f"invalid domain {domain!r}: a domain name matches {_DOMAIN_RE.pattern}")
    for name, value in (("version", version), ("size", size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ModelUpdateError(f"{name} must be a non-negative integer, got {value!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256_hex) or not re.fullmatch(r"[0-9a-f]{16}", key_id_hex):
        raise ModelUpdateError("sha256 and key_id must be lowercase hex (64 and 16 digits)")
    lines = [CANONICAL_TAG, f"domain={domain}", f"device={device}", f"model={model_id}", f"version={version}",
             f"size={size}", f"sha256={sha256_hex}", f"key_id={key_id_hex}"]
    return ("\n".join(lines) + "\n").encode("ascii")


def sign_update(
    domain: str,
    device: str,
    model_id: str,
    version: int,
    tflite: bytes,
    private_key: Ed25519PrivateKey | str | os.PathLike[str],
    seq: int,
    ts_ms: int,
) -> dict:
    """Build the signed ``model`` message for one device of a registered domain; validated against model.json
    before return."""
    registered_domain(domain)
    key = private_key if isinstance(private_key, Ed25519PrivateKey) else load_private_key(private_key)
    if not isinstance(tflite, bytes | bytearray) or not tflite:
        raise ModelUpdateError("tflite must be non-empty bytes")
    tflite = bytes(tflite)
    digest = hashlib.sha256(tflite).hexdigest()
    kid = key_id(key.public_key())
    signed = canonical_bytes(domain, device, model_id, version, len(tflite), digest, kid)
    msg = {
        "v": SCHEMA_VERSION,
        "device": device,
        "seq": seq,
        "ts": ts_ms,
        "model": f"{model_id}@{version}",
        "domain": domain,
        "version": version,
        "sha256": digest,
        "size": len(tflite),
        "tflite_b64": base64.b64encode(tflite).decode("ascii"),
        "key_id": kid,
        "sig_b64": base64.b64encode(key.sign(signed)).decode("ascii"),
    }
    try:
        return validate(domain, "model", msg)
    except MessageError as exc:
        raise ModelUpdateError(exc.reason) from None


def _trusted_map(trusted: KeySource | Iterable[KeySource]) -> dict[str, Ed25519PublicKey]:
    if isinstance(trusted, Ed25519PublicKey | str | os.PathLike):
        trusted = [trusted]
    keys = {}
    for source in trusted:
        key = load_public_key(source)
        keys[key_id(key)] = key
    if not keys:
        raise ModelUpdateError("no trusted public key given")
    return keys


def verify_update(
    msg: dict | bytes | str, domain: str, device: str, trusted: dict[str, Ed25519PublicKey],
    require_tflite: bool = True,
) -> tuple[dict, bytes]:
    """Check everything except the version rule; return (message, model bytes) or raise ModelUpdateError.
    ``domain`` (this device's) must be registered; the message must name the same domain."""
    registered_domain(domain)
    try:
        if isinstance(msg, bytes | str):
            msg = decode(domain, "model", msg.encode() if isinstance(msg, str) else msg)
        else:
            msg = validate(domain, "model", msg)
    except MessageError as exc:
        raise ModelUpdateError(exc.reason) from None
    if msg["domain"] != domain:
        raise ModelUpdateError(f"wrong domain: update for {msg['domain']!r}, this device is in {domain!r}")
    if msg["device"] != device:
        raise ModelUpdateError(f"wrong device: update for {msg['device']!r}, this device is {device!r}")
    model_id, _, version_text = msg["model"].rpartition("@")
    if version_text != str(msg["version"]):
        raise ModelUpdateError(f"model {msg['model']!r} does not name version {msg['version']}")
    key = trusted.get(msg["key_id"])
    if key is None:
        raise ModelUpdateError(f"unknown signing key {msg['key_id']}")
    try:
        signature = base64.b64decode(msg["sig_b64"], validate=True)
        if base64.b64encode(signature).decode("ascii") != msg["sig_b64"]:
            raise ValueError("non-canonical base64")
        key.verify(signature, canonical_bytes(domain, device, model_id, msg["version"], msg["size"],
                                              msg["sha256"], msg["key_id"]))
    except (InvalidSignature, binascii.Error, ValueError):
        raise ModelUpdateError("bad signature") from None
    try:
        data = base64.b64decode(msg["tflite_b64"], validate=True)
    except (binascii.Error, ValueError):
        raise ModelUpdateError("tflite_b64 is not valid base64 (truncated?)") from None
    if base64.b64encode(data).decode("ascii") != msg["tflite_b64"]:
        raise ModelUpdateError("tflite_b64 is not in canonical base64 (altered padding bits?)")
    if len(data) != msg["size"]:
        raise ModelUpdateError(f"size mismatch: decoded {len(data)} bytes, signed size {msg['size']}")
    if hashlib.sha256(data).hexdigest() != msg["sha256"]:
        raise ModelUpdateError("sha256 mismatch: model bytes differ from the signed hash")
    if require_tflite and data[4:8] != TFLITE_IDENTIFIER:
        raise ModelUpdateError("not a TFLite flatbuffer (no TFL3 identifier)")
    return msg, data


def tflite_io(data: bytes) -> dict[str, list]:
    """Load ``data`` in LiteRT's interpreter (tensors allocated) and return its interface, the shape and dtype
    of every input and output: ``{"inputs": [[[1, 8], "int8"]], "outputs": [[[1, 6], "int8"]]}``. Raises
    (ValueError, RuntimeError) when the model does not load."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=bytes(data),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()

    def sig(details: list[dict]) -> list:
        return [[[int(d) for d in t["shape"]], np.dtype(t["dtype"]).name] for t in details]

    return {"inputs": sig(interp.get_input_details()), "outputs": sig(interp.get_output_details())}


def _io_text(io: dict) -> str:
    def side(items: list) -> str:
        return ", ".join(f"{dtype}{tuple(shape)}" for shape, dtype in items)

    return f"{side(io['inputs'])} -> {side(io['outputs'])}"


def slot_state_path(state_dir: str | os.PathLike[str], trusted_key: KeySource, domain: str, device: str) -> Path:
    """``<state_dir>/<key id>/<domain>/<device>/model.tflite`` (folders created): where a slot keeps its model
    and version floor; the key id keeps the slots of a regenerated signing key apart."""
    path = Path(state_dir) / key_id(load_public_key(trusted_key)) / domain / device / "model.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ModelSlot:
    """The model a device runs, and the gate every update passes through.

    ``trusted``: one or more Ed25519 public keys (objects or PEM paths); several allow key rotation.
    ``path``: optional file holding the active model; its metadata lives beside it in ``<path>.json``
    and is reloaded at start, so a reboot does not reopen the door to a downgrade. ``state_dir``: the same,
    at :func:`slot_state_path` (per the first trusted key). Without either, the floor is kept in memory only.
    ``active``/``active_version``/``active_model_id``: the factory model when there is no saved state.
    ``expected_io``: the interface every update must have (:func:`tflite_io`'s form); default: the active
    model's. ``require_tflite=False`` skips the TFLite checks (identifier, loading, shapes).
    ``load``: the domain's loader, run on a model that loaded in LiteRT; it checks the interface it needs
    (unless ``expected_io`` is given) and what it returns is ``loaded``.
    """

    def __init__(
        self,
        domain: str,
        device: str,
        trusted: KeySource | Iterable[KeySource],
        path: str | os.PathLike[str] | None = None,
        active: bytes | None = None,
        active_version: int = 0,
        active_model_id: str | None = None,
        require_tflite: bool = True,
        load: Callable[[bytes], object] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        expected_io: dict | None = None,
    ):
        check_id(device)
        self.load = load
        self.loaded: object | None = None
        self.domain, self.device = domain, device
        self.require_tflite = require_tflite
        self._trusted = _trusted_map(trusted)
        self._lock = threading.Lock()
        if path is None and state_dir is not None:
            path = slot_state_path(state_dir, next(iter(self._trusted.values())), domain, device)
        self.path = Path(path) if path is not None else None
        self.active_bytes = active
        self.active_version = active_version
        self.active_model_id = active_model_id
        self.version_floor = active_version  #: the highest version installed (or the factory's); persisted
        self.expected_io = expected_io
        self._io_from_active = expected_io is None and active is not None
        self.warning: str | None = None
        if self.path is not None:
            self._load_state()

    @property
    def active_model(self) -> str | None:
        """``<model id>@<version>`` as a status message's ``active_model`` field carries it."""
        return None if self.active_model_id is None else f"{self.active_model_id}@{self.active_version}"

    @property
    def meta_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".json")

    def _load_state(self) -> None:
        """The saved model and its metadata. The floor (the version in the metadata) holds even when the model
        file is missing or damaged: the model is then not trusted, but no older version gets in either."""
        assert self.path is not None and self.meta_path is not None
        if not self.meta_path.exists():
            return
        try:
            meta = json.loads(self.meta_path.read_text())
            version = int(meta["version"])
        except (ValueError, KeyError, TypeError) as exc:
            self.warning = f"saved model state ignored: {exc}"
            return
        self.version_floor = max(self.version_floor, version)
        try:
            if not self.path.exists():
                raise ValueError("model file is missing")
            data = self.path.read_bytes()
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise ValueError("model file does not match its recorded sha256")
            self.active_bytes, self.active_version = data, version
            self.active_model_id = str(meta["model_id"])
            if isinstance(meta.get("io"), dict) and self.expected_io is None:
                self.expected_io, self._io_from_active = meta["io"], False
        except (ValueError, KeyError, TypeError) as exc:
            self.warning = f"saved model ignored ({exc}); versions up to {version} stay refused"

    def _expected(self) -> dict | None:
        """The interface an update must have; the active model's is read once, on the first offer."""
        if self._io_from_active and self.active_bytes is not None:
            self._io_from_active = False
            try:
                self.expected_io = tflite_io(self.active_bytes)
            except Exception:  # noqa: BLE001 - an active model LiteRT cannot read sets no expectation
                self.expected_io = None
        return self.expected_io

    def _check_loads(self, data: bytes, loader: bool) -> tuple[dict | None, str | None]:
        """(interface, None) for a model that loads with the expected shapes, else (None, the reason). With a
        domain loader and no explicit ``expected_io``, the loader says which interface fits (it may differ from
        the active model's: a distilled student replacing a factory classifier)."""
        if not self.require_tflite:
            return None, None
        try:
            io = tflite_io(data)
        except Exception as exc:  # noqa: BLE001 - any failure to load means: do not install
            return None, f"model does not load: {str(exc).strip()[:200] or type(exc).__name__}"
        want = self.expected_io if loader else self._expected()
        if want is not None and io != want:
            return None, f"model does not load with the expected shapes: {_io_text(io)}, expected {_io_text(want)}"
        return io, None

    def offer(self, msg: dict | bytes | str, load: Callable[[bytes], object] | None = None) -> tuple[bool, str]:
        """Verify, check that it loads with the expected shapes, load (``load`` or the slot's) and, if valid and
        newer than the floor, install; returns (accepted, reason). Never raises on bad input."""
        with self._lock:
            try:
                checked, data = verify_update(msg, self.domain, self.device, self._trusted, self.require_tflite)
            except ModelUpdateError as exc:
                return False, exc.reason
            version = checked["version"]
            if version <= self.active_version:
                return False, (f"stale version {version} <= active {self.active_version} "
                               "(replay or downgrade refused)")
            if version <= self.version_floor:
                return False, (f"stale version {version} <= {self.version_floor} installed before "
                               "(replay or downgrade refused)")
            loader = load or self.load
            io, refused = self._check_loads(data, loader is not None)
            if refused is not None:
                return False, refused
            model_id = checked["model"].rpartition("@")[0]
            loaded = None
            if loader is not None:
                try:
                    loaded = loader(data)
                except Exception as exc:  # noqa: BLE001 - any failure to load means: do not install
                    return False, f"model does not load: {str(exc)[:200] or type(exc).__name__}"
            if self.path is not None:
                assert self.meta_path is not None
                meta = {"model_id": model_id, "version": version, "sha256": checked["sha256"],
                        "size": checked["size"], "key_id": checked["key_id"], "io": io}
                try:
                    _atomic_write(self.path, data)
                    _atomic_write(self.meta_path, json.dumps(meta).encode())
                except OSError as exc:
                    return False, f"storage error: {exc.strerror or exc}"
            self.active_bytes, self.active_version, self.active_model_id = data, version, model_id
            self.version_floor = max(self.version_floor, version)
            if io is not None and loader is None:
                self.expected_io, self._io_from_active = io, False
            self.loaded = loaded
            return True, f"installed {checked['model']} ({len(data)} bytes, key {checked['key_id']})"
