"""The ``tinylarge`` console script.

    tinylarge demo|train|serve|device DOMAIN [options]
    tinylarge compile MODEL.tflite --name NAME --out DIR
    tinylarge firmware build|run|gateway|report ...
    tinylarge pki init|issue ...
    tinylarge broker config ...
    tinylarge ei profile|deploy ...

The domains come from the registry (:mod:`shared.domain`, entry point group ``tinylarge.domains``);
the four domain verbs are the platform's (:mod:`shared.runtime.verbs`), the same for every domain. The
heavy imports (TensorFlow, torch) happen only once a command needs them, so ``--help`` stays fast.

One style for every command (the helpers below): the domain is the first positional argument; every
option has a help text with its default shown (:class:`HelpFormatter`); one vocabulary (``--batch-size``,
``--timeout-s``; old spellings stay as hidden aliases that warn, :func:`add_alias`); results print as the
summary table the demo prints, or as JSON with ``--json`` (:func:`emit_summary`); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shared import domain as domains

_DOMAIN_COMMANDS = {
    "demo": "run the domain end to end: devices -> MQTT -> cloud model -> store; summary table, JSON and plot",
    "train": "train the domain's tiny (int8) and large (cloud) models",
    "serve": "run the cloud service: subscribe, window per subject, infer, store, publish results",
    "device": "run simulated devices that publish int8-model inferences",
}

#: pass-through subcommands: name -> (module, function taking argv, help)
_TOOLS: dict[str, tuple[str, str, str]] = {
    "compile": ("shared.tiny.compiler", "main_compile", "compile a full-int8 .tflite model to dependency-free C"),
    "firmware": ("shared.tiny.firmware", "firmware_main", "build, run and bridge the C firmware"),
    "pki": ("shared.security.pki", "pki_main", "create a CA and certificates for the broker, cloud and devices"),
    "broker": ("shared.cli", "_broker_main", "broker config: write a secured Mosquitto configuration"),
    "ei": ("shared.tiny.edge_impulse", "ei_main", "Edge Impulse interop: export, profile, deploy"),
    "dashboard": ("shared.dashboard.server", "dashboard_main", "serve the live fleet dashboard (read-only)"),
    "fl": ("shared.integration.federated.cli", "fl_main",
           "federated learning on Flower: a SuperLink and one SuperNode per client, then a signed rollout"),
    "loop": ("shared.integration.loop", "main",
             "the closed loop: distil the cloud model into the device model, roll it out signed, score before/after"),
    "split": ("shared.integration.split.cli", "split_main",
              "split learning, SplitFed and split inference: cut-layer activations over MQTT"),
    "domain": ("shared.scaffold", "domain_main", "domain new NAME: write a working domain package (a plug-in)"),
    "cluster": ("shared.cluster.cli", "cluster_main", "NATS JetStream cluster: config, init, up (local demo/test)"),
}


def add_endpoint_args(p: argparse.ArgumentParser, embedded_broker: bool = True) -> None:
    """The endpoint flags every networked command shares (DESIGN: endpoints by URL); ``embedded_broker``:
    whether the command starts an embedded broker when no URL is given (else the URL is required)."""
    default = "default: start an embedded broker (local demos only)" if embedded_broker else \
        "required (a running broker: the dashboard only reads)"
    p.add_argument("--mqtt", help="broker URL mqtt://[user:pass@]host:port or mqtts://...; env TINYLARGE_MQTT; "
                   + default)
    p.add_argument("--ca", help="CA certificate for mqtts://")
    p.add_argument("--cert", help="client certificate (PEM) for mqtts://")
    p.add_argument("--key", help="client private key (PEM) for mqtts://")
    p.add_argument("--store", help="sqlite:///path.db or influx+http://host:port/bucket (INFLUX_ORG, "
                   "INFLUX_TOKEN from the environment); env TINYLARGE_STORE; default sqlite:///out/tinylarge.db")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, ``(default: X)``, unless the text already names it or there is
    none to show (a flag, an unset option)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("(default" in text or "%(default)" in text or not action.option_strings or default is None
                or default is False or default is argparse.SUPPRESS or default == []):
            return text
        return f"{text} (default: %(default)s)"


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: sets the new one's value and says, on one line, what to use."""

    def __init__(self, option_strings: Sequence[str], dest: str, use: str = "", **kwargs: Any) -> None:
        self.use = use
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated; use {self.use}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_alias(p: argparse.ArgumentParser | Any, old: str, new: str, **kwargs: Any) -> None:
    """``old`` as a hidden alias of the option ``new`` (same ``type``/``nargs`` via ``kwargs``): not in the
    help, still accepted, with a one-line deprecation warning."""
    dest = new.lstrip("-").replace("-", "_")
    p.add_argument(old, dest=dest, action=DeprecatedAlias, use=new, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                   **kwargs)


def add_domain_arg(p: argparse.ArgumentParser, needs: str | None = None, deprecated_flag: bool = False) -> None:
    """The domain as the first positional argument (DOMAIN); ``deprecated_flag`` also accepts the old
    ``--domain X`` (hidden, warns). Resolve it with :func:`domain_arg`."""
    able = [n for n in domains.names() if not needs or getattr(domains.get(n).hooks, needs, None) is not None]
    what = f"a domain that offers {needs}" if needs else "a registered domain"
    p.add_argument("domain", metavar="DOMAIN", nargs="?" if deprecated_flag else None,
                   help=f"{what}: {', '.join(able) or 'none registered'}")
    if deprecated_flag:
        p.add_argument("--domain", dest="domain_flag", action=DeprecatedAlias, use="the positional DOMAIN",
                       default=None, help=argparse.SUPPRESS)


def domain_arg(args: argparse.Namespace, verb: str, needs: str | None = None) -> Any:
    """The :class:`shared.domain.Domain` the command line named (positional, or the deprecated ``--domain``);
    a UserError when it is missing, unknown, or lacks the hook ``needs`` (e.g. ``tiny_task``)."""
    from shared.errors import UserError

    name = getattr(args, "domain", None)
    flag = getattr(args, "domain_flag", None)
    if name and flag and name != flag:
        raise UserError(f"{verb}: two domains given ({name!r} and {flag!r}); give one, "
                        "as the first argument")
    name = name or flag
    if not name:
        raise UserError(f"{verb}: give a DOMAIN, one of {', '.join(domains.names())}")
    d = domains.get(name)  # DomainError: unknown, with the registered ones
    if needs and getattr(d.hooks, needs, None) is None:
        able = [n for n in domains.names() if getattr(domains.get(n).hooks, needs, None) is not None]
        raise UserError(f"{verb} {name}: the domain offers no {needs} (DomainHooks.{needs}), which "
                        f"{verb} needs; domains that do: {', '.join(able) or 'none'}")
    return d


def _flat(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``a.b`` keys; short lists of scalars joined; long ones counted (JSON keeps them)."""
    out: dict[str, Any] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            if len(v) <= 12:
                out.update(_flat(v, key + "."))
            else:
                out[key] = f"({len(v)} entries: --json)"
        elif isinstance(v, list | tuple):
            scalar = all(isinstance(x, str | int | float | bool) or x is None for x in v)
            out[key] = ", ".join(str(x) for x in v) if scalar and len(v) <= 8 else f"({len(v)} items: --json)"
        else:
            out[key] = v
    return out


def emit_summary(title: str, summary: Mapping[str, Any], as_json: bool = False,
                 keys: Sequence[str] | None = None) -> None:
    """A command's result on stdout: the summary table the demo prints (``keys``: which rows, nested ones
    as ``a.b``; default all), or the whole summary as JSON (``--json``) for machines."""
    if as_json:
        print(json.dumps(summary, indent=1, default=str), flush=True)
        return
    from shared.runtime.demo import print_table

    flat = _flat(summary)
    print_table(title, flat, list(keys) if keys else list(flat))


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON (for machines) instead of a table")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("tinylarge")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout without pip install -e
        return "unknown (not installed: pip install -e .)"


def _domain_entry(domain: str, command: str) -> Callable[[Sequence[str]], int]:
    from shared.runtime.verbs import MAINS

    return lambda argv: MAINS[command](domain, argv)


def _tool_entry(name: str) -> Callable[[Sequence[str]], int]:
    module_name, func, _ = _TOOLS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise SystemExit(f"tinylarge {name}: not available in this build ({exc})") from None
    return getattr(module, func)


def _broker_main(argv: Sequence[str]) -> int:
    """``tinylarge broker config ...`` (the only broker verb so far)."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: tinylarge broker config --pki DIR --out DIR --device DOMAIN:ID [...]\n\n"
              "  config   write mosquitto.conf, a password file and per-device ACLs (see config --help)")
        return 0
    if argv[0] != "config":
        print(f"tinylarge broker: unknown verb {argv[0]!r}; expected 'config'", file=sys.stderr)
        return 2
    from shared.security.brokerconf import broker_config_main

    return broker_config_main(argv[1:])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinylarge",
        description="TinyLarge: a tiny int8 model on the device and a large model in the cloud, as one system.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of its one line "
                        "(also TINYLARGE_DEBUG=1)")
    parser.add_argument("--version", action="version", version=f"tinylarge {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, text in _DOMAIN_COMMANDS.items():
        p = sub.add_parser(command, help=text, description=text, add_help=False)
        p.add_argument("domain", choices=domains.names(), help="the application domain")
        p.add_argument("-h", "--help", action="store_true", help="show help (for DOMAIN's options too)")
    for name, (_, _, text) in _TOOLS.items():
        p = sub.add_parser(name, help=text, description=text, add_help=False)
        p.add_argument("-h", "--help", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: a user's mistake is one line on stderr and exit code 2 (``--debug`` anywhere, or
    ``TINYLARGE_DEBUG=1``, shows the traceback); Ctrl-C is one line and exit code 130."""
    return guarded(_dispatch, list(sys.argv[1:] if argv is None else argv))


def guarded(command: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``command(argv)`` inside the console script's error boundary (also for ``python -m MODULE``): a
    user's mistake is one line on stderr and exit code 2, unless ``--debug`` or ``TINYLARGE_DEBUG=1``."""
    import os

    from shared.errors import user_message

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("TINYLARGE_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not debug:
        from shared.quiet import quiet_third_party

        quiet_third_party()  # TensorFlow's C++ lines, Hugging Face's bars: off unless asked for
    try:
        return int(command(argv) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("tinylarge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        line = None if debug else user_message(exc)
        if line is None:
            raise
        print(f"tinylarge: {line}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] in ("--version", "-V"):
        print(f"tinylarge {version()}")
        return 0
    command = argv[0]
    if command in _TOOLS:
        return int(_tool_entry(command)(argv[1:]) or 0)
    if command not in _DOMAIN_COMMANDS:
        parser.error(f"unknown command {command!r}; choose from {', '.join([*_DOMAIN_COMMANDS, *_TOOLS])}")
    rest = argv[1:]
    if not rest or rest[0].startswith("-"):
        if rest and rest[0] in ("-h", "--help"):
            sub_help = argparse.ArgumentParser(prog=f"tinylarge {command}", description=_DOMAIN_COMMANDS[command])
            sub_help.add_argument("domain", choices=domains.names(), help="then DOMAIN --help for its options")
            sub_help.print_help()
            return 0
        parser.error(f"tinylarge {command}: give a DOMAIN, one of {', '.join(domains.names())}")
    domain = rest[0]
    if domain not in domains.names():
        parser.error(f"unknown domain {domain!r}; registered: {', '.join(domains.names())}")
    return int(_domain_entry(domain, command)(rest[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
