"""The docs hold together: every relative link and anchor in README.md and docs/*.md resolves, every
`make X` the README names is a target of `make help`, every `tinylarge ...` command it shows parses
(`--help`), the board flash example runs as written, and every figure between `<!-- results:KEY -->`
markers equals the committed docs/results.md (which `make results` generates)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results import read_spans

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = REPO / "docs" / "results.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _prose(text: str) -> str:
    """The text without code blocks, inline code and HTML comments (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", COMMENT.sub("", text)))


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup and punctuation dropped (not '-' or '_'), lower case,
    each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for m in HEADING.finditer(FENCE.sub("", path.read_text())):
        base = github_slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    out |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", path.read_text()))
    return out


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto: are not checked here


def test_slug_follows_github() -> None:
    assert github_slug("healthcare: models") == "healthcare-models"
    assert github_slug("industrial_iot: tiny model") == "industrial_iot-tiny-model"
    assert github_slug("Dev boards: STM32F4, Cortex-M7, Cortex-M33 (`--board`)") == \
        "dev-boards-stm32f4-cortex-m7-cortex-m33---board"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}:\n" + "\n".join(broken)


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [bad](#nowhere) `[code](missing.md)` [gone](missing.md)\n")
    assert relative_links(page) == ["#title", "#nowhere", "missing.md"]
    assert "title" in anchors(page) and "nowhere" not in anchors(page)


def _make_targets() -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return [line.split()[0] for line in ANSI.sub("", out.stdout).splitlines() if line.strip()]


def _matches(name: str, targets: list[str]) -> bool:
    return any(t == name or ("%" in t and re.fullmatch(re.escape(t).replace("%", ".+"), name)) for t in targets)


def test_every_make_target_the_readme_names_exists() -> None:
    targets = _make_targets()
    # `make X` in inline code, or a code block's line that starts with make
    named = set(re.findall(r"(?:`|^)make\s+([a-z][\w%<>-]*)", README.read_text(), re.M)) - {"help"}
    assert {"demo-healthcare", "test", "results"} <= named
    named = {n.replace("<domain>", "healthcare") for n in named}
    missing = sorted(n for n in named if not _matches(n, targets))
    assert not missing, f"README names make targets that `make help` does not list: {missing}"
    assert not _matches("no-such-target", targets)


def _command_paths(text: str) -> set[tuple[str, ...]]:
    """The sub-command path of every `tinylarge ...` the text shows: the words up to the first option,
    placeholder (upper case, <...>) or punctuation."""
    paths = set()
    for m in re.finditer(r"\btinylarge((?:[ \t]+[a-z][a-z0-9_-]*)+)", text):
        words = m.group(1).split()
        paths.add(tuple(words[:3]))
    return paths


def _tinylarge(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TINYLARGE_DEBUG": "0"}
    env.pop("TINYLARGE_MQTT", None)
    env.pop("TINYLARGE_STORE", None)
    return subprocess.run([sys.executable, "-m", "shared.cli", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


def test_every_tinylarge_command_in_the_readme_parses() -> None:
    paths = _command_paths(README.read_text())
    assert ("firmware", "flash") in {p[:2] for p in paths}
    bad = []
    for path in sorted(paths):
        # a word after the command that is not a sub-command (a domain, a value) is part of the usage
        proc = _tinylarge(*path, "--help")
        while proc.returncode != 0 and len(path) > 1:
            path = path[:-1]
            proc = _tinylarge(*path, "--help")
        if proc.returncode != 0 or "usage: tinylarge" not in proc.stdout:
            bad.append(f"tinylarge {' '.join(path)} --help: exit {proc.returncode}: {proc.stderr[-300:]}")
    assert not bad, "\n".join(bad)


def test_the_flash_example_runs_as_written() -> None:
    cmd = re.search(r"`tinylarge (firmware flash [^`]*--dry-run)`", README.read_text())
    assert cmd, "README shows no `tinylarge firmware flash ... --dry-run` example"
    proc = _tinylarge(*cmd.group(1).split())
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert "deprecated" not in proc.stderr, proc.stderr  # the README shows today's spelling
    assert "program" in proc.stdout or "flash" in proc.stdout, proc.stdout


def test_readme_and_domain_pages_quote_the_committed_results() -> None:
    committed = read_spans(RESULTS.read_text())
    assert committed, "docs/results.md has no headline figures"
    quoted = {}
    for doc in DOCS:
        if doc == RESULTS:
            continue
        for key, text in read_spans(doc.read_text()).items():
            quoted[(doc.name, key)] = text
    assert {"healthcare", "industrial_iot", "vehicles", "metaverse_eeg"} <= {k for _, k in quoted}
    wrong = {f"{name}: {key}": (text, committed.get(key)) for (name, key), text in quoted.items()
             if committed.get(key) != text}
    assert not wrong, f"figures that differ from docs/results.md (run `make results`): {wrong}"


def test_the_readme_stays_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; tables of figures belong in docs/results.md"
