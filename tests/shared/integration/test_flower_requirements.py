"""Flower goes in with ``pip install --no-deps`` (Makefile): its requirements are pyproject's ``fl`` extra,
all of them but the typer cap that clashes with amqtt. The extra must stay equal to what the installed
flwr asks for, or a Flower upgrade would silently miss a dependency."""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_fl_extra_is_flowers_requirements_but_its_typer_cap():
    try:
        flwr = md.requires("flwr") or []
    except md.PackageNotFoundError:
        pytest.skip("flwr is not installed (make venv installs it)")
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    wanted = {r.replace(" ", "") for r in flwr if "extra ==" not in r and _name(r) != "typer"}
    extra = {r.replace(" ", "") for r in project["optional-dependencies"]["fl"]}
    assert extra == wanted, f"fl extra differs from flwr's requirements: add {wanted - extra}, drop {extra - wanted}"
    # the one left out is the cap, and what is installed satisfies amqtt's floor instead
    assert any(_name(r) == "typer" and "<0.21" in r for r in flwr)
    major, minor = (int(x) for x in md.version("typer").split(".")[:2])
    assert (major, minor) >= (0, 24), "typer below amqtt's floor: make venv did not install the fl extra's way"
