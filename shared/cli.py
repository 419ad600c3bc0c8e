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
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

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
}


def add_endpoint_args(p: argparse.ArgumentParser) -> None:
    """The endpoint flags every networked command shares (DESIGN: endpoints by URL)."""
    p.add_argument("--mqtt", help="broker URL mqtt://[user:pass@]host:port or mqtts://...; env TINYLARGE_MQTT; "
                   "default: start an embedded broker (local demos only)")
    p.add_argument("--ca", help="CA certificate for mqtts://")
    p.add_argument("--cert", help="client certificate (PEM) for mqtts://")
    p.add_argument("--key", help="client private key (PEM) for mqtts://")
    p.add_argument("--store", help="sqlite:///path.db or influx+http://host:port/bucket (INFLUX_ORG, "
                   "INFLUX_TOKEN from the environment); env TINYLARGE_STORE; default sqlite:///out/tinylarge.db")


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
        print("usage: tinylarge broker config --pki DIR --out DIR --device ID [...]\n\n"
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
    import os

    from shared.errors import user_message

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("TINYLARGE_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not debug:
        from shared.quiet import quiet_third_party

        quiet_third_party()  # TensorFlow's C++ lines, Hugging Face's bars: off unless asked for
    try:
        return _dispatch(argv)
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
