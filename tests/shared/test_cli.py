"""The tinylarge console script: dispatch, help, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared import cli


def test_every_verb_is_the_platforms_and_every_domain_loads_its_hooks():
    from shared.domain import VERBS, DomainHooks, registry
    from shared.runtime.verbs import MAINS

    assert "healthcare" in registry()
    assert set(MAINS) == set(VERBS)
    for name, d in registry().items():
        assert isinstance(d.hooks, DomainHooks), name


@pytest.mark.parametrize("tool", sorted(cli._TOOLS))  # noqa: SLF001
def test_every_tool_subcommand_answers_help(tool, capsys):
    try:
        code = cli.main([tool, "--help"])
    except SystemExit as exc:  # argparse's --help exits
        code = exc.code
    assert code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_help_lists_the_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "train", "serve", "device", "compile", "firmware", "pki", "broker", "ei"):
        assert command in out


def test_unknown_domain_and_missing_domain_are_named(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "spaceships"])
    assert "unknown domain 'spaceships'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["serve"])
    assert "give a DOMAIN" in capsys.readouterr().err


def test_an_unregistered_domain_lists_the_registered_ones(capsys):
    from shared.domain import names

    with pytest.raises(SystemExit):
        cli.main(["demo", "spaceships"])
    err = capsys.readouterr().err
    assert all(n in err for n in names())


def test_console_script_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "shared.cli", "--help"], capture_output=True, text=True, check=True)
    assert "tinylarge" in out.stdout
