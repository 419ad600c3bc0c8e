"""Firmware footprint report (``make firmware-report``): :mod:`shared.tiny.report` over the domains'
tiny models, plus the compiler's test models (tests/firmware/_models.py) and the MLPerf Tiny reference
models (bench/mlperf_tiny.py), which live outside the installed package. ``tinylarge firmware report``
runs the same report over the domains' models only, from any directory.

``python -m bench.firmware_report --markdown [out/firmware/report.json]`` prints the README's firmware table
from a report already written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.tiny.report import PARITY_INPUTS, collect_models, main, markdown_table, measure, parity, table

__all__ = ["PARITY_INPUTS", "collect_models", "extra_models", "main", "markdown_table", "measure", "parity",
           "table"]


def extra_models(work: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The compiler's test models and the MLPerf Tiny models, unless the flags leave them out."""
    models: dict[str, Path] = {}
    if not args.no_test_models:
        try:
            from tests.firmware import _models
        except ImportError as exc:  # the compiler's test models are optional here
            print(f"note: test models not importable ({exc})", file=sys.stderr)
        else:
            for name, buf in _models.build_all().items():
                path = work / f"test_{name}.tflite"
                path.write_bytes(buf)
                models[f"test_{name}"] = path
    if not args.no_mlperf:
        from bench import mlperf_tiny

        models.update(mlperf_tiny.build_all(args.mlperf_dir))
    return models


def print_markdown(argv: list[str]) -> int:
    """--markdown [REPORT]: the README table of a written report (default out/firmware/report.json)."""
    import json

    from shared.tiny.report import OUT_DEFAULT

    path = Path(argv[0]) if argv else OUT_DEFAULT / "report.json"
    if not path.is_file():
        print(f"error: no report at {path} (run make firmware-report first)", file=sys.stderr)
        return 2
    print(markdown_table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--markdown"]:
        raise SystemExit(print_markdown(sys.argv[2:]))
    raise SystemExit(main(extra=extra_models))
