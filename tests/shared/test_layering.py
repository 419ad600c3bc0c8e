"""DESIGN's layering: nothing in shared/ imports a domain package, bench/ or tests/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared import domain as domains

ROOT = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "shared").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_imports_no_domain_bench_or_tests(path: Path) -> None:
    forbidden = {*domains.names(), "bench", "tests"}
    bad = _imported(path) & forbidden
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: go through the Domain registry instead"
