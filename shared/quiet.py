"""Third-party noise off by default: TensorFlow's C++ log lines, absl's preamble, the TFLite converter's
``fully_quantize: 0 ...`` line, Hugging Face's "Writing model shards" bar and library warnings a user
cannot act on.

TensorFlow 2.21 writes some of its lines from C++ straight to file descriptor 2 before its own log
settings apply (``oneDNN custom operations are on``, ``All log messages before absl::InitializeLog()``),
so :func:`native_stderr_quiet` points descriptor 2 at a temporary file for the length of a block (the
import of TensorFlow, one conversion) and replays what was captured if the block fails, so an error's
context is never lost. ``TINYLARGE_VERBOSE=1`` (or ``--debug``) leaves every library as loud as it is.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import Any

#: environment defaults set before the libraries are imported; a value the user set wins
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's own INFO and WARNING lines
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # "Writing model shards", "Loading weights" bars
    "TRANSFORMERS_VERBOSITY": "error",
    "TF_ENABLE_ONEDNN_OPTS": None,  # left alone: turning it off changes numerics, so only its line is hidden
}

#: warnings from libraries that say nothing a TinyLarge user can act on
_QUIET_WARNINGS = (
    r"Statistics for quantized inputs were expected",  # TFLite converter, int8 in/out by design
    r".*`torch\.nn\.utils\.weight_norm` is deprecated",
)


def verbose() -> bool:
    """True when the user asked for everything (``TINYLARGE_VERBOSE`` or ``TINYLARGE_DEBUG`` set, not 0)."""
    return any(os.environ.get(k, "") not in ("", "0") for k in ("TINYLARGE_VERBOSE", "TINYLARGE_DEBUG"))


def quiet_third_party() -> None:
    """Set the quiet defaults (call before TensorFlow, torch or transformers are imported)."""
    if verbose():
        return
    for key, value in QUIET_ENV.items():
        if value is not None:
            os.environ.setdefault(key, value)
    for pattern in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    quiet_tensorflow_import()


@contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """Send what native code writes to descriptor 2 during the block to a temporary file; replay it on
    error. Keep blocks short and single-threaded in purpose: another thread's stderr output in the
    meantime is captured too (and dropped on success)."""
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 (embedded interpreter): nothing to quiet
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            os.write(2, capture.read()[-20_000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Wraps TensorFlow's own loader: its package runs inside :func:`native_stderr_quiet`."""

    def __init__(self, inner: importlib.abc.Loader):
        self.inner = inner

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with native_stderr_quiet():
            self.inner.exec_module(module)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` the usual way, once, and hands it to :class:`_QuietLoader`: every ``import keras``
    or ``import tensorflow`` anywhere loads it quietly, with no call site to remember."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> ModuleSpec | None:
        # stays installed until TensorFlow is loaded: a bare find_spec (transformers asking whether TensorFlow
        # is installed) loads nothing; sys.modules answers every import after the first
        if name != "tensorflow" or "tensorflow" in sys.modules:
            return None
        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Make the process's first import of TensorFlow quiet (a no-op once it is imported, or when verbose)."""
    if verbose() or "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlow())
