"""A bounded, append-only, on-disk spool of line-protocol records: the Influx store's write-ahead log.

Layout of a spool folder::

    spool.lp       records, one per line, appended in arrival order
    spool.offset   byte offset up to which records were delivered (replaced atomically)
    .lock          held with flock by the one store that owns the folder

Durability: :meth:`Spool.append` hands the records to the operating system (a killed process
loses nothing it appended); :meth:`Spool.sync` makes them survive a power loss too
(``fdatasync``). ``sync(mark)`` is a group commit: one call syncs everything appended so far, and
a caller whose records were covered by someone else's sync returns without a disk flush.

Records are read from the offset in order and the offset advances only after the server has
acknowledged them, so a crash re-sends at most what was in flight (harmless: the server keeps one
copy of an identical series + timestamp). Offsets only grow, except when the file is emptied
(everything delivered, and the file at least ``reclaim_bytes`` long, or the spool closing) or
compacted (the file would outgrow ``max_bytes`` and a delivered prefix exists); those two steps
write offset 0 durably *before* touching the data file, so a crash at any point re-sends
delivered records and never skips undelivered ones. Records that do not fit are refused and the
caller counts them as dropped. A torn last line (process killed mid-append, so never
acknowledged) is cut off when the spool is opened.

Positions: ``appended_lines`` / ``delivered_lines`` count records since this object opened the
folder (records left by an earlier process are numbered first), and ``mark`` counts bytes ever
appended; all three only grow, whatever truncation or compaction does to the file.
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
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class SpoolBusyError(RuntimeError):
    """Another store (this or another process) owns the spool folder."""


class Spool:
    """The spool in folder `folder`, bounded to `max_bytes` on disk; thread-safe.

    A fully delivered file is emptied once it holds at least `reclaim_bytes` (default
    ``min(1 MiB, max_bytes // 4)``) and when the spool is closed; emptying costs two syncs, so it is
    not done after every delivered batch.
    """

    def __init__(self, folder: str | Path, max_bytes: int, reclaim_bytes: int | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError(f"spool max_bytes must be > 0, got {max_bytes}")
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self.reclaim_bytes = min(1 << 20, self.max_bytes // 4) if reclaim_bytes is None else int(reclaim_bytes)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # file state
        self._sync_lock = threading.Lock()  # one fdatasync at a time (taken before _lock)
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
        self._base = 0  # logical position of the file's byte 0: peek/commit positions survive compaction
        self._mark = 0  # bytes appended by this object (logical, never decreases)
        self._synced_mark = 0  # bytes of those known to be on disk
        self._appended_lines = self._pending_lines  # what an earlier process left is numbered first
        self._delivered_lines = 0

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
                _datasync(self._fd)
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

    def _write_offset(self, offset: int, durable: bool = False) -> None:
        """Replace the offset file; `durable` syncs it (and the folder) before returning."""
        tmp = self._offset_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{offset}\n".encode())
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._offset_path)
        if durable:
            self._sync_folder()
        self._offset = offset

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

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

    @property
    def appended_lines(self) -> int:
        """Records appended since opening, plus those an earlier process left undelivered."""
        return self._appended_lines

    @property
    def delivered_lines(self) -> int:
        """Records committed as delivered since opening; the next :meth:`peek` starts at this index."""
        return self._delivered_lines

    @property
    def mark(self) -> int:
        """Bytes appended since opening; pass it to :meth:`sync` to make those bytes durable."""
        return self._mark

    # -- writing ---------------------------------------------------------------------------------

    def append(self, lines: list[bytes]) -> int:
        """Append records in order (handed to the OS, not yet synced); return how many fit (the
        rest did not: count them as dropped)."""
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
                self._mark += len(blob)
                self._pending_lines += len(accepted)
                self._appended_lines += len(accepted)
            return len(accepted)

    def sync(self, mark: int | None = None) -> None:
        """Make every record appended up to `mark` (default: all so far) survive a power loss.

        Group commit: one ``fdatasync`` at a time covers everything appended before it started;
        callers waiting meanwhile (appending freely: the data lock is not held while the disk
        works) find their records covered, or share the next one. A closed spool was synced by
        :meth:`close`; this returns at once then.
        """
        with self._sync_lock:
            with self._lock:
                target = self._mark if mark is None else mark
                if self._closed or self._synced_mark >= target:
                    return
                covered = self._mark
                fd = os.dup(self._fd)  # compaction may swap self._fd meanwhile (and syncs that file itself)
            try:
                _datasync(fd)
            finally:
                os.close(fd)
            with self._lock:
                self._synced_mark = max(self._synced_mark, covered)

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
        # Offset 0 on disk first: a crash between the steps re-sends delivered records, never skips any.
        self._base += self._offset
        self._write_offset(0, durable=True)
        os.replace(tmp_path, self._data_path)
        self._sync_folder()  # the new file's name is durable before anything is appended to it
        os.close(self._fd)
        self._fd = os.open(self._data_path, os.O_RDWR | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._synced_mark = max(self._synced_mark, self._mark)  # all undelivered was just synced

    # -- reading ---------------------------------------------------------------------------------

    def peek(self, max_lines: int, max_bytes: int = 4 << 20) -> tuple[list[bytes], int]:
        """Up to `max_lines` undelivered records from the head, and the position just after them
        (for :meth:`commit`; it stays valid when an append compacts the file meanwhile).

        Reads in growing chunks, so a short batch off a long spool costs little; stops at
        `max_bytes` of records unless a single record is longer.
        """
        if max_lines <= 0:
            raise ValueError(f"peek max_lines must be > 0, got {max_lines}")
        with self._lock:
            self._check_open()
            available = self._size - self._offset
            if available <= 0:
                return [], self._base + self._offset
            want = min(available, max_bytes, 64 * 1024)
            while True:
                chunk = os.pread(self._fd, want, self._offset)
                if chunk.count(b"\n") >= max_lines or want >= min(available, max_bytes):
                    break
                want = min(available, max_bytes, want * 4)
            end = chunk.rfind(b"\n")
            if end < 0:  # one record longer than max_bytes: read until its end
                chunk = os.pread(self._fd, available, self._offset)
                end = chunk.find(b"\n")
            lines = chunk[:end].split(b"\n")[:max_lines]
            consumed = sum(len(x) + 1 for x in lines)
            return lines, self._base + self._offset + consumed

    def commit(self, end: int) -> None:
        """Mark records before position `end` (from :meth:`peek`) delivered."""
        with self._lock:
            self._check_open()
            end_offset = end - self._base
            if not self._offset <= end_offset <= self._size:
                lo, hi = self._base + self._offset, self._base + self._size
                raise ValueError(f"spool commit position {end} outside [{lo}, {hi}]")
            lines = self._count_lines(self._offset, end_offset)
            self._pending_lines -= lines
            self._delivered_lines += lines
            if end_offset == self._size and self._size >= self.reclaim_bytes:
                self._empty()
            else:
                self._write_offset(end_offset)

    def _empty(self) -> None:
        """Truncate a fully delivered file (offset 0 on disk first, see the module docstring)."""
        self._write_offset(0, durable=True)
        os.ftruncate(self._fd, 0)
        self._base += self._size
        self._size = 0
        self._pending_lines = 0

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
                if self._size and self._offset == self._size:
                    self._empty()
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
