"""``tinylarge compile MODEL.tflite --name NAME --out DIR``: the compiler's command line.

Labels come from ``--labels a,b,c``, else from ``labels.json`` beside the model when it is there (what
``tinylarge train`` writes: a list of labels, or an object with a ``labels`` list), else none (a
regression model). A mistake (a missing or malformed model, a bad label file, an unsupported op) is a
:class:`shared.errors.UserError`: one line, exit 2. The result prints as the summary table, or as JSON
with ``--json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from shared.tiny.compiler.core import ARITHMETICS, compile_tflite
from shared.tiny.compiler.errors import CompileError
from shared.tiny.compiler.metadata import ModelMetadata

LABELS_FILE = "labels.json"


def labels_beside(model: Path) -> tuple[list[str] | None, Path | None]:
    """The labels in ``labels.json`` next to ``model`` (and that file), or (None, None) when there is none;
    a UserError naming the file when it is not a list of labels (nor an object holding one)."""
    from shared.errors import UserError

    path = Path(model).with_name(LABELS_FILE)
    if not path.is_file():
        return None, None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a JSON label file ({exc}); fix it, or pass --labels a,b,c") from None
    labels = doc.get("labels") if isinstance(doc, dict) else doc
    if not isinstance(labels, list) or not labels or not all(isinstance(lb, str) and lb for lb in labels):
        raise UserError(f"{path}: expected a list of label strings (or an object with one under 'labels'); fix "
                        "it, or pass --labels a,b,c")
    return labels, path


def compile_parser() -> argparse.ArgumentParser:
    from shared.cli import HelpFormatter, add_json_arg

    ap = argparse.ArgumentParser(prog="tinylarge compile", formatter_class=HelpFormatter,
                                 description="Compile a full-int8 TFLite model to C (NAME.h, NAME.c) and its "
                                 "metadata (NAME_metadata.h).")
    ap.add_argument("model", type=Path, help="path of the .tflite file")
    ap.add_argument("--name", required=True, help="C identifier used for symbols and file names")
    ap.add_argument("--out", required=True, type=Path, help="output folder for NAME.h, NAME.c and NAME_metadata.h")
    ap.add_argument("--labels", default=None, help="comma-separated class labels, one per output value (default: "
                    f"{LABELS_FILE} beside the model when there is one, else none)")
    ap.add_argument("--model-id", default=None, help="id@version the firmware puts in its messages (default NAME@1)")
    ap.add_argument("--domain", default=None, help="the domain the model belongs to, written as NAME_DOMAIN "
                    "(default: none)")
    ap.add_argument("--fs-hz", type=float, default=None, help="sampling rate of the window in Hz (default: none)")
    ap.add_argument("--window-s", type=float, default=None, help="window length in s (default: none)")
    ap.add_argument("--window-samples", type=int, default=None,
                    help="samples per channel per window (default: round(fs_hz * window_s))")
    ap.add_argument("--arithmetic", choices=ARITHMETICS, default="litert",
                    help="integer rounding to reproduce: litert (LiteRT reference kernels) or tflm "
                         "(TensorFlow Lite Micro; build the runtime with -DTL_ARITH_TFLM)")
    add_json_arg(ap)
    return ap


def main_compile(argv: Sequence[str] | None = None) -> int:
    """CLI: compile MODEL.tflite --name NAME --out DIR [--labels a,b,c] [--model-id ID] [--domain D]
    [--fs-hz X] [--window-s S] [--window-samples N] [--json]; prints the summary table (or JSON)."""
    from shared.cli import emit_summary
    from shared.errors import UserError

    args = compile_parser().parse_args(argv)
    if not args.model.is_file():
        raise UserError(f"{args.model}: model file not found")
    labels_file = None
    if args.labels:
        labels = [lb.strip() for lb in args.labels.split(",")]
    else:
        labels, labels_file = labels_beside(args.model)
    try:
        meta = ModelMetadata(args.model_id or f"{args.name}@1", None if labels is None else tuple(labels),
                             args.domain, args.fs_hz, args.window_s, args.window_samples)
        cm = compile_tflite(args.model, args.name, args.out, labels, meta, args.arithmetic)
    except CompileError as exc:
        where = f" (labels from {labels_file})" if labels_file and "label" in str(exc) else ""
        raise UserError(f"{args.model}: {exc}{where}") from None
    summary = json.loads(cm.to_json())
    summary["labels_from"] = str(labels_file) if labels_file else ("--labels" if args.labels else None)
    summary.pop("metadata", None)
    summary["model_id"] = meta.model_id
    emit_summary(f"compiled {args.model.name} -> {args.out}", summary, args.json,
                 keys=None if args.json else ["name", "model_id", "labels", "labels_from", "input_shape",
                                              "output_shape", "ops", "macs", "arena_bytes", "const_bytes",
                                              "header_path", "source_path", "metadata_path"])
    return 0
