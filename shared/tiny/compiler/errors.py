"""Errors raised by the TFLite -> C compiler."""

from __future__ import annotations


class CompileError(ValueError):
    """The model cannot be compiled: malformed file, unsupported op, type or quantization."""
