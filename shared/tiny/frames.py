"""Serial framing and the tlsensor text format, the Python side of firmware/net/tl_frame.h and
firmware/hal/tl_sensor_text.h. Which channels a window has is the domain's business: a registered
domain's ``window_channels(window) -> {channel: samples}`` (its firmware sensor table) feeds
:func:`write_sensor_window`.

Frame: ``0x7E | kind (1) | length (2, big endian) | payload | crc16 (2, big endian) | 0x7E`` with
CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over kind, length and payload. A message frame (kind 1)
carries ``stream name, 0x00, JSON``; a log frame (kind 2) carries text. The decoder resynchronises on the
next 0x7E after anything unexpected and counts what it dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

FLAG = 0x7E
KIND_MESSAGE = 0x01
KIND_LOG = 0x02
MAX_PAYLOAD = 4096
OVERHEAD = 7


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (check value 0x29B1 for b"123456789")."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode_frame(kind: int, payload: bytes) -> bytes:
    if not 0 <= kind <= 255 or kind == FLAG:
        raise ValueError(f"frame kind must be 0..255 and not 0x7E, got {kind}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes([kind, len(payload) >> 8, len(payload) & 0xFF]) + payload
    c = crc16(body)
    return bytes([FLAG]) + body + bytes([c >> 8, c & 0xFF, FLAG])


def encode_message(stream: str, json_bytes: bytes) -> bytes:
    return encode_frame(KIND_MESSAGE, stream.encode("ascii") + b"\x00" + json_bytes)


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes

    def message(self) -> tuple[str, bytes]:
        """(stream, JSON bytes) of a message frame; ValueError if it is not one."""
        if self.kind != KIND_MESSAGE:
            raise ValueError(f"frame kind {self.kind} is not a message")
        stream, sep, body = self.payload.partition(b"\x00")
        if not sep or not stream:
            raise ValueError("message frame without 'stream\\0' prefix")
        return stream.decode("ascii", errors="replace"), body


class FrameDecoder:
    """Streaming decoder: ``feed(bytes)`` yields every complete valid Frame; counts ``bad`` frames."""

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.max_payload = max_payload
        self.buf = bytearray()
        self.ok = 0
        self.bad = 0
        self.skipped_bytes = 0  # bytes outside frames (e.g. a console banner)

    def feed(self, data: bytes) -> Iterator[Frame]:
        self.buf += data
        while True:
            start = self.buf.find(FLAG)
            if start < 0:
                self.skipped_bytes += len(self.buf)
                self.buf.clear()
                return
            if start:
                self.skipped_bytes += start
                del self.buf[:start]
            # idle flags between frames
            while len(self.buf) >= 2 and self.buf[1] == FLAG:
                del self.buf[0]
            if len(self.buf) < 4:
                return
            n = (self.buf[2] << 8) | self.buf[3]
            if n > self.max_payload:
                self._drop()
                continue
            if len(self.buf) < n + OVERHEAD:
                return
            body = bytes(self.buf[1: 4 + n])
            crc_rx = (self.buf[4 + n] << 8) | self.buf[5 + n]
            if self.buf[6 + n] != FLAG or crc16(body) != crc_rx:
                self._drop()
                continue
            del self.buf[: n + OVERHEAD]
            self.ok += 1
            yield Frame(body[0], body[3:])

    def _drop(self) -> None:
        """Bad frame: count it and resume the hunt just after its opening flag."""
        self.bad += 1
        del self.buf[:1]


# ---- tlsensor text -------------------------------------------------------------------------------

def write_sensor_window(out: TextIO, channels: dict[str, Sequence[float] | np.ndarray | float],
                        end_ts_ms: int | None = None) -> None:
    """One window in the tlsensor text format (see firmware/hal/tl_sensor_text.h). A table with a
    ``blocks`` attribute (a list of tables: a streaming app's device windows, e.g. the seconds of a
    vehicles trip segment) is written block by block, each with the end time ``end_ts_ms``."""
    blocks = getattr(channels, "blocks", None)
    for table in blocks if blocks is not None else [channels]:
        if end_ts_ms is not None:
            out.write(f"t {int(end_ts_ms)}\n")
        for name, values in table.items():
            if not name or any(c.isspace() or c == "#" for c in name):
                raise ValueError(f"channel name {name!r}: must be non-empty without spaces or '#'")
            arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
            out.write(name + " " + " ".join("nan" if not np.isfinite(v) else f"{v:.9g}" for v in arr) + "\n")


def write_windows(path: str | Path, domain: str, windows: Iterable[object], start_epoch_ms: int = 0,
                  end_ts_ms: Callable[[object], int | None] | None = None) -> int:
    """Write a domain's windows as tlsensor text, each through the domain's ``window_channels`` (its
    firmware sensor table). ``t`` = ``end_ts_ms(window)``, by default ``start_epoch_ms`` + the window's
    ``t_end_s``. Returns the count."""
    from shared.domain import get

    channels = get(domain).hooks.window_channels
    if end_ts_ms is None:
        def end_ts_ms(w: object) -> int | None:
            t_end_s = getattr(w, "t_end_s", None)
            return None if t_end_s is None else start_epoch_ms + int(round(float(t_end_s) * 1000))

    n = 0
    with open(path, "w") as out:
        for w in windows:
            write_sensor_window(out, channels(w), end_ts_ms(w))
            n += 1
    return n
