"""A bounded, append-only, on-disk spool of line-protocol records (used by the Influx store).

Layout of a spool folder::

    spool.lp       records, one per line, appended in arrival order
    spool.offset   byte offset up to which records were delivered (replaced atomically)
    .lock          held with flock by the one store that owns the folder

Records are read from the offset in order and the offset advances only after the server has
acknowledged them, so a crash re-sends at most one batch (harmless: the server keeps one copy of
an identical series + timestamp). When everything is delivered the file is truncated; when the
file would outgrow ``max_bytes`` and a delivered prefix exists, the rest is compacted into a new
file first. Records that still do not fit are refused and the caller counts them as dropped.
A torn last line (process killed mid-append) is cut off when the spool is opened.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path

DATA_NAME = "spool.lp"
OFFSET_NAME = "spool.offset"
LOCK_NAME = ".lock"


class SpoolBusyError(RuntimeError):
    """Another store (this or another process) owns the spool folder."""


class Spool:
    """The spool in folder `folder`, bounded to `max_bytes` on disk; thread-safe."""

    def __init__(self, folder: str | Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool max_bytes must be > 0, got {max_bytes}")
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._lock_fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SpoolBusyError(f"spool folder {self.folder} is in use by another store") from None
            raise
        self._data_path = self.folder / DATA_NAME
        self._offset_path = self.folder / OFFSET_NAME
        self._fd = os.open(self._data_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._closed = False
        self._repair()

    # -- state -----------------------------------------------------------------------------------

    def _repair(self) -> None:
        size = os.fstat(self._fd).st_size
        if size:
            tail_start = max(0, size - 65536)
            while True:
                chunk = os.pread(self._fd, size - tail_start, tail_start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    good = tail_start + cut + 1
                    break
                if tail_start == 0:
                    good = 0
                    break
                tail_start = max(0, tail_start - 65536)
            if good != size:
                os.ftruncate(self._fd, good)
                size = good
        self._size = size
        self._offset = min(self._read_offset(), size)
        self._pending_lines = self._count_lines(self._offset, size)

    def _read_offset(self) -> int:
        try:
            value = int(self._offset_path.read_text().strip() or "0")
        except (FileNotFoundError, ValueError):
            return 0
        return value if value >= 0 else 0

    def _write_offset(self, offset: int) -> None:
        tmp = self._offset_path.with_suffix(".tmp")
        tmp.write_text(f"{offset}\n")
        os.replace(tmp, self._offset_path)
        self._offset = offset

    def _count_lines(self, start: int, end: int) -> int:
        total, pos = 0, start
        while pos < end:
            chunk = os.pread(self._fd, min(1 << 20, end - pos), pos)
            total += chunk.count(b"\n")
            pos += len(chunk)
        return total

    @property
    def pending_lines(self) -> int:
        """Records not yet delivered."""
        return self._pending_lines

    @property
    def pending_bytes(self) -> int:
        """Bytes of records not yet delivered."""
        return self._size - self._offset

    @property
    def size_bytes(self) -> int:
        """Size of the data file on disk (delivered prefix included until it is reclaimed)."""
        return self._size

    # -- writing ---------------------------------------------------------------------------------

    def append(self, lines: list[bytes]) -> int:
        """Append records in order; return how many fit (the rest did not: count them as dropped)."""
        with self._lock:
            self._check_open()
            encoded = [line.rstrip(b"\n") + b"\n" for line in lines]
            need = sum(len(x) for x in encoded)
            if self._size + need > self.max_bytes and self._offset > 0:
                self._compact()
            room = self.max_bytes - self._size
            accepted: list[bytes] = []
            for record in encoded:
                if len(record) > room:
                    break
                accepted.append(record)
                room -= len(record)
            if accepted:
                blob = b"".join(accepted)
                written = os.write(self._fd, blob)
                while written < len(blob):
                    written += os.write(self._fd, blob[written:])
                self._size += len(blob)
                self._pending_lines += len(accepted)
            return len(accepted)

    def _compact(self) -> None:
        """Move undelivered records to a fresh file, reclaiming the delivered prefix."""
        tmp_path = self._data_path.with_suffix(".compact")
        tmp_fd = os.open(tmp_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            pos = self._offset
            while pos < self._size:
                chunk = os.pread(self._fd, min(1 << 20, self._size - pos), pos)
                os.write(tmp_fd, chunk)
                pos += len(chunk)
            os.fsync(tmp_fd)
        finally:
            os.close(tmp_fd)
        # Offset 0 first: a crash between the two steps re-sends delivered records, never skips any.
        self._write_offset(0)
        os.replace(tmp_path, self._data_path)
        os.close(self._fd)
        self._fd = os.open(self._data_path, os.O_RDWR | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size

    # -- reading ---------------------------------------------------------------------------------

    def peek(self, max_lines: int, max_bytes: int = 4 << 20) -> tuple[list[bytes], int]:
        """Up to `max_lines` undelivered records from the head, and the offset just after them."""
        with self._lock:
            self._check_open()
            if self._offset >= self._size:
                return [], self._offset
            chunk = os.pread(self._fd, min(max_bytes, self._size - self._offset), self._offset)
            end = chunk.rfind(b"\n")
            if end < 0:  # one record longer than max_bytes: read until its end
                chunk = os.pread(self._fd, self._size - self._offset, self._offset)
                end = chunk.find(b"\n")
            lines = chunk[:end].split(b"\n")[:max_lines]
            consumed = sum(len(x) + 1 for x in lines)
            return lines, self._offset + consumed

    def commit(self, end_offset: int) -> None:
        """Mark records before `end_offset` (from :meth:`peek`) delivered."""
        with self._lock:
            self._check_open()
            if not self._offset <= end_offset <= self._size:
                raise ValueError(f"spool commit offset {end_offset} outside [{self._offset}, {self._size}]")
            self._pending_lines -= self._count_lines(self._offset, end_offset)
            if end_offset == self._size:
                self._write_offset(0)
                os.ftruncate(self._fd, 0)
                self._size = 0
                self._pending_lines = 0
            else:
                self._write_offset(end_offset)

    # -- lifecycle -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"spool {self.folder} is closed")

    def close(self) -> None:
        """Sync the data to disk and release the folder."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
