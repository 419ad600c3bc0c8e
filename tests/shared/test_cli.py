"""The tinylarge console script: dispatch, help, clear errors."""

from __future__ import annotations

import argparse
import json
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


# ---- one style (issue 24) -------------------------------------------------------------------------------

def _style_parsers():
    """The parsers of the commands outside the four domain verbs, sub-commands included."""
    from shared.integration import loop
    from shared.integration.federated.cli import parser as fl_parser
    from shared.integration.split.cli import _parser as split_parser
    from shared.security.pki import _parser as pki_parser
    from shared.tiny.compiler.cli import compile_parser
    from shared.tiny.edge_impulse import parser as ei_parser
    from shared.tiny.firmware import build_parser

    todo = [fl_parser(), split_parser(), loop.parser(), ei_parser(), compile_parser(), build_parser(), pki_parser()]
    while todo:
        p = todo.pop()
        yield p
        for action in p._actions:  # noqa: SLF001 - argparse keeps sub-parsers only there
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                todo.extend(action.choices.values())


def test_every_option_has_help_with_its_default_and_no_raw_markup():
    for p in _style_parsers():
        text = p.format_help()
        assert "`" not in text, p.prog
        for action in p._actions:  # noqa: SLF001
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                continue
            assert action.help, f"{p.prog} {action.option_strings or action.dest}: no help"
            shown = p.formatter_class(p.prog)._get_help_string(action)  # noqa: SLF001
            if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
                assert "default" in shown, f"{p.prog} {action.option_strings}: default not shown"


@pytest.mark.parametrize("argv", [["fl", "healthcare"], ["split", "healthcare"], ["loop", "healthcare"],
                                  ["ei", "export", "healthcare"], ["firmware", "build", "healthcare"]])
def test_the_domain_is_the_first_argument_everywhere(argv):
    from shared.integration import loop
    from shared.integration.federated.cli import parser as fl_parser
    from shared.integration.split.cli import _parser as split_parser
    from shared.tiny.edge_impulse import parser as ei_parser
    from shared.tiny.firmware import build_parser

    parsers = {"fl": fl_parser, "split": split_parser, "loop": loop.parser, "ei": ei_parser, "firmware": build_parser}
    rest = argv[1:] if argv[0] in ("fl", "split", "loop") else argv[2:] if argv[0] == "firmware" else argv[1:]
    assert parsers[argv[0]]().parse_args(rest).domain == "healthcare"


def test_one_vocabulary_with_the_old_spellings_hidden(capsys):
    from shared.integration.federated.cli import parser as fl_parser
    from shared.integration.split.cli import _parser as split_parser

    a = split_parser().parse_args(["healthcare", "--batch", "16", "--timeout", "3"])
    assert (a.batch_size, a.timeout_s) == (16, 3.0)
    assert fl_parser().parse_args(["healthcare", "--round-timeout", "9"]).timeout_s == 9.0
    err = capsys.readouterr().err
    assert "--batch is deprecated; use --batch-size" in err and "--round-timeout is deprecated; use --timeout-s" in err
    for p in (split_parser(), fl_parser()):
        text = p.format_help()
        assert "--round-timeout" not in text and "--batch " not in text and "--timeout " not in text
        assert "--timeout-s" in text


def test_version(capsys):
    from importlib.metadata import version

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tinylarge {version('tinylarge')}"


def test_results_print_as_the_demos_table_or_as_json(capsys):
    summary = {"accuracy": 0.91234, "clients": 3, "traffic": {"rounds": 2}, "subjects": ["a", "b"], "none": None}
    cli.emit_summary("a run", summary)
    table = capsys.readouterr().out
    assert "a run" in table and "0.9123" in table and "traffic.rounds" in table and "a, b" in table
    assert table.count("-" * 10) >= 3  # the demo's rules
    cli.emit_summary("a run", summary, as_json=True)
    assert json.loads(capsys.readouterr().out) == summary
