"""What crosses the cut: arrays as base64 in JSON messages on the ``smashed``, ``cutgrad`` and ``splitpred`` streams.

Topics (``shared.protocol.messages.topic``)::

    tinylarge/<domain>/<device>/smashed    device -> cloud  activations at the cut (+ labels when training)
    tinylarge/<domain>/<device>/cutgrad    cloud -> device  d loss / d activations for that batch
    tinylarge/<domain>/<device>/splitpred  cloud -> device  the classes of an inference batch

Every message carries the envelope (v, device, seq, ts, model) and is validated against its schema in
``shared/protocol/schemas/`` on both ends (``messages.encode`` / ``messages.decode``). An array travels
as ``shape`` [n, width], ``dtype`` (float16, float32 or int8), ``scale`` (and ``zero_point`` for int8):
the value of an element ``e`` is ``(e - zero_point) * scale``. float16 arrays are sent divided by their
largest magnitude (``scale``) so that small gradients keep float16's relative precision instead of
underflowing. Only plain arrays cross: the device side is NumPy, the cloud side PyTorch.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np

from shared.protocol import messages

SMASHED, CUTGRAD, SPLITPRED = "smashed", "cutgrad", "splitpred"
WIRE_DTYPES = ("float16", "float32", "int8")


def pack(a: np.ndarray, dtype: str, scale: float | None = None, zero_point: int = 0) -> dict[str, Any]:
    """The message fields carrying the 2-D array ``a``.

    ``dtype="int8"``: ``a`` is either already int8 (then ``scale``/``zero_point`` describe it, as the
    device's int8 layers produce it) or float (then it is quantized symmetrically here, zero point 0).
    """
    if dtype not in WIRE_DTYPES:
        raise ValueError(f"wire dtype {dtype!r}: expected one of {', '.join(WIRE_DTYPES)}")
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"only non-empty 2-D arrays cross the cut, got shape {a.shape}")
    if dtype == "int8":
        if a.dtype == np.int8:
            if scale is None or not scale > 0:
                raise ValueError("an int8 array needs its positive scale")
            q = a
        else:
            peak = float(np.max(np.abs(a))) if a.size else 0.0
            scale = peak / 127.0 if peak > 0 else 1.0
            q = np.clip(np.round(a / scale), -127, 127).astype(np.int8)
            zero_point = 0
        fields = {"dtype": "int8", "scale": float(scale), "zero_point": int(zero_point)}
        raw = q.tobytes()
    else:
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise ValueError("array to send holds NaN or infinite values")
        if dtype == "float16":
            peak = float(np.max(np.abs(a)))
            scale = peak if peak > 0 else 1.0
            raw = (a / scale).astype("<f2").tobytes()
        else:
            scale = 1.0
            raw = a.astype("<f4").tobytes()
        fields = {"dtype": dtype, "scale": float(scale)}
    fields["shape"] = [int(a.shape[0]), int(a.shape[1])]
    fields["data"] = base64.b64encode(raw).decode("ascii")
    return fields


def unpack(msg: dict[str, Any]) -> np.ndarray:
    """The float32 array of a (validated) message's ``shape``/``dtype``/``scale``/``data`` fields.

    MessageError when ``data`` is not base64, does not fill ``shape`` exactly, or holds non-finite values."""
    n, w = msg["shape"]
    try:
        raw = base64.b64decode(msg["data"], validate=True)
    except ValueError as exc:  # binascii.Error: bad padding
        raise messages.MessageError(f"data is not base64: {exc}") from None
    np_dtype = {"float16": "<f2", "float32": "<f4", "int8": "i1"}[msg["dtype"]]
    if len(raw) != n * w * np.dtype(np_dtype).itemsize:
        raise messages.MessageError(f"data holds {len(raw)} bytes, shape {msg['shape']} of {msg['dtype']} "
                                    f"needs {n * w * np.dtype(np_dtype).itemsize}")
    a = np.frombuffer(raw, dtype=np_dtype).reshape(n, w).astype(np.float32)
    if msg["dtype"] == "int8":
        a = a - float(msg.get("zero_point", 0))
    out = a * np.float32(msg["scale"])
    if not np.all(np.isfinite(out)):
        raise messages.MessageError("array holds non-finite values")
    return out


class Envelope:
    """Per-device envelope fields: a seq that only grows, the wall-clock ts, the model id."""

    def __init__(self, device: str, model: str):
        messages.check_id(device)
        self.device = device
        self.model = model
        self.seq = messages.boot_seq()

    def next(self) -> dict[str, Any]:
        self.seq += 1
        return {"v": messages.SCHEMA_VERSION, "device": self.device, "seq": self.seq,
                "ts": int(time.time() * 1000), "model": self.model}
