"""Shared test helpers: locating external tools the tests need."""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ALL_ENV = "TINYLARGE_REQUIRE_ALL"


def require_all() -> bool:
    """True when every external tool is mandatory (CI sets TINYLARGE_REQUIRE_ALL=1)."""
    return os.environ.get(REQUIRE_ALL_ENV, "") == "1"


def require_tool(name: str) -> str:
    """Return the path of executable `name`.

    When it is not on PATH the calling test fails if TINYLARGE_REQUIRE_ALL=1 and is skipped
    otherwise; both say which tool is missing.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"required tool {name!r} not found on PATH"
    if require_all():
        pytest.fail(f"{reason} ({REQUIRE_ALL_ENV}=1)")
    pytest.skip(reason)
    raise AssertionError("unreachable")  # pytest.skip raises
