"""Progress for long steps, on a terminal or not (DESIGN: every long step announces itself).

On a terminal :func:`progress` is a tqdm bar. Anywhere else (a CI log, ``make demo-healthcare | tee``, a
pipe) it prints one line when the step starts, a line every few seconds while it runs (from a heartbeat
thread, so a step whose unit of work takes minutes still shows it is alive) and a line when it ends:

    features (train cohort): started, 1,200 win
    features (train cohort): 340/1,200 win (28 %) 12 s
    features (train cohort): done, 1,200 win in 31 s

``TINYLARGE_PROGRESS_S`` sets the seconds between lines (default 5; 0 prints only start and end). The
interface is the part of tqdm's the project uses: ``update``, ``set_postfix_str``, ``close``, the context
manager and iteration.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

DEFAULT_EVERY_S = 5.0


def every_s() -> float:
    """Seconds between progress lines off a terminal (``TINYLARGE_PROGRESS_S``, default 5)."""
    raw = os.environ.get("TINYLARGE_PROGRESS_S", "")
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_EVERY_S
    except ValueError:
        return DEFAULT_EVERY_S


class LineProgress:
    """tqdm's interface as plain lines: start, every ``every_s`` seconds while open, end."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", stream: IO[str] | None = None, every: float | None = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every = every_s() if every is None else every
        self.n, self.postfix = 0, ""
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._line(f"started{f', {total:,} {unit}' if total else ''}")
        self._beat: threading.Thread | None = None
        if self.every > 0:
            self._beat = threading.Thread(target=self._heartbeat, name=f"progress {desc}", daemon=True)
            self._beat.start()

    def _line(self, text: str) -> None:
        try:
            print(f"{self.desc}: {text}", file=self.stream, flush=True)
        except (ValueError, OSError):  # the stream was closed under us (interpreter shutdown)
            pass

    def status(self) -> str:
        """``n/total unit (pct %) elapsed [postfix]``."""
        with self._lock:
            n, postfix = self.n, self.postfix
        elapsed = time.monotonic() - self.t0
        count = f"{n:,}/{self.total:,} {self.unit} ({100.0 * n / self.total:.0f} %)" if self.total else \
            f"{n:,} {self.unit}"
        return f"{count} {elapsed:.0f} s" + (f" [{postfix}]" if postfix else "")

    def _heartbeat(self) -> None:
        while not self._closed.wait(self.every):
            self._line(self.status())

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        with self._lock:
            self.postfix = s

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        elapsed = time.monotonic() - self.t0
        self._line(f"done, {self.n:,} {self.unit} in {elapsed:.0f} s")

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # an error or Ctrl-C: stop the heartbeat without claiming the step was done
            self._closed.set()

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress: nothing to iterate (give an iterable)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        except BaseException:
            self._closed.set()
            raise
        self.close()


def progress(iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             stream: IO[str] | None = None) -> Any:
    """A tqdm bar on a terminal, :class:`LineProgress` anywhere else."""
    stream = stream if stream is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty:
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, stream=stream)
