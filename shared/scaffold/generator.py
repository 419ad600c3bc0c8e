"""``tinylarge domain new NAME [--dir DIR]``: write a working domain package, outside the repository.

The package comes from the template beside this module (``template/``, package data): plain files whose
text and paths hold ``{{name}}`` (the domain: ``smart_meter``), ``{{Name}}`` (``SmartMeter``) and
``{{NAME}}`` (``SMART_METER``, for C macros), replaced with ``str.replace``. Every template file ends in
``.tmpl``, which the generated file loses, so that ruff, pytest and setuptools never take the template for
code of the platform. What it writes is a household smart-meter domain under the chosen name: a simulator,
the DSP and its C port, the two models, the service, the demo's scenario, the hooks, the schemas and the
domain's own tests (see docs/adding-a-domain.md).

Refused, each with one line and exit code 2: a name that is not ``^[a-z][a-z0-9_]{0,31}$`` (the registry's
rule), a Python keyword, a domain already registered, a module that is importable already (the package
would shadow it or be shadowed), and a folder that exists and is not empty.
"""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import re
import sys
from collections.abc import Sequence
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent / "template"
SUFFIX = ".tmpl"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ScaffoldError(ValueError):
    """A name or a folder ``domain new`` refuses; the message says which and what to do."""


def placeholders(name: str) -> dict[str, str]:
    """What each placeholder becomes for domain ``name``."""
    return {"{{name}}": name, "{{Name}}": "".join(p.capitalize() for p in name.split("_")), "{{NAME}}": name.upper()}


def render(text: str, name: str) -> str:
    for key, value in placeholders(name).items():
        text = text.replace(key, value)
    return text


def check_name(name: str) -> None:
    """ScaffoldError unless ``name`` can be a new domain (and package) here."""
    from shared.domain import names

    if not _NAME_RE.match(name):
        raise ScaffoldError(f"{name!r} is not a domain name: lowercase letters, digits and _, starting with a letter, "
                            "at most 32 (e.g. smart_meter)")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword: a package cannot be named so")
    if name in names():
        raise ScaffoldError(f"domain {name!r} is registered already; choose another name")
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        where = spec.origin or next(iter(spec.submodule_search_locations or []), "?")
        raise ScaffoldError(f"a module named {name!r} is importable already ({where}); choose another name")


def template_files() -> list[Path]:
    """The template's files, relative to ``TEMPLATE_DIR``."""
    return sorted(p.relative_to(TEMPLATE_DIR) for p in TEMPLATE_DIR.rglob(f"*{SUFFIX}") if p.is_file())


def generate(name: str, target: Path) -> list[Path]:
    """Write domain ``name``'s package into ``target`` (created; refused when it holds anything); returns the
    files written, relative to ``target``."""
    check_name(name)
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} exists and is not an empty folder; give another --dir")
    files = template_files()
    if not files:
        raise ScaffoldError(f"no template files in {TEMPLATE_DIR} (a broken install of tinylarge?)")
    written = []
    for rel in files:
        out = Path(render(str(rel), name).removesuffix(SUFFIX))
        path = target / out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render((TEMPLATE_DIR / rel).read_text(), name))
        written.append(out)
    return written


def domain_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge domain new NAME [--dir DIR]``; 0 written, 2 refused."""
    ap = argparse.ArgumentParser(prog="tinylarge domain", description="Write a new domain package (a plug-in in a "
                                 "distribution of its own) that works with every verb as it is.")
    sub = ap.add_subparsers(dest="verb", metavar="VERB")
    new = sub.add_parser("new", help="write a working domain package: a household smart meter under NAME",
                         description="Write a working domain package (a household smart meter under NAME): "
                         "declaration, simulator, DSP and its C firmware app, tiny and large models, service, "
                         "scenario, schemas and its own tests.")
    new.add_argument("name", metavar="NAME", help="the domain (and package) name, e.g. smart_meter")
    new.add_argument("--dir", type=Path, default=None, help="where to write it (default ./NAME; must not exist or "
                     "be empty)")
    args = ap.parse_args(argv)
    if args.verb is None:
        ap.print_help()
        return 2
    target = args.dir if args.dir is not None else Path(args.name)
    try:
        written = generate(args.name, target)
    except ScaffoldError as exc:
        print(f"tinylarge domain new: {exc}", file=sys.stderr)
        return 2
    shown = target if target.is_absolute() else Path(".") / target
    print(f"wrote {len(written)} files into {shown}/: domain {args.name} (a household smart meter; make it yours "
          "module by module, docs/adding-a-domain.md)")
    print("next:\n"
          f"  python -m pip install -e {shown}    # registers the domain (entry point tinylarge.domains)\n"
          f"  tinylarge train {args.name} --quick\n"
          f"  tinylarge demo {args.name} --quick\n"
          f"  pytest {shown}/tests")
    return 0
