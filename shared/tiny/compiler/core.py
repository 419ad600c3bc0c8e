"""compile_tflite: a full-int8 TFLite flatbuffer -> one dependency-free C source and header."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shared.tiny.compiler._flatbuf import Graph, parse_model
from shared.tiny.compiler._lower import ALIAS_OPS, OP_NAMES, SUPPORTED_OPS, Lowerer, Step, c_array
from shared.tiny.compiler._validate import validate_graph
from shared.tiny.compiler.errors import CompileError
from shared.tiny.compiler.metadata import ModelMetadata, emit_metadata_header
from shared.tiny.compiler.planner import ArenaPlan, Buffer, Overlap, plan_buffers

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
ARENA_ALIGN_BYTES = 4
_MAX_ARENA_BYTES = (1 << 31) - 1
_NOT_C = re.compile(r"(?<=[\s,{(=-])(inf|nan)f?(?![A-Za-z0-9_.])", re.IGNORECASE)


@dataclass
class CompiledModel:
    """What compile_tflite wrote and the numbers firmware and footprint reports need."""

    name: str
    header_path: Path
    source_path: Path
    arena_bytes: int
    const_bytes: int  # weights, biases, multipliers and tables (flash)
    input_size: int
    output_size: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    ops: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    metadata_path: Path | None = None  #: NAME_metadata.h (model id, labels, window geometry)
    metadata: ModelMetadata | None = None
    macs: int = 0  #: multiply-accumulates per inference (dense and convolution layers)

    def to_json(self) -> str:
        d = asdict(self)
        d["header_path"], d["source_path"] = str(self.header_path), str(self.source_path)
        d["metadata_path"] = None if self.metadata_path is None else str(self.metadata_path)
        return json.dumps(d, indent=2)


@dataclass
class _Program:
    graph: Graph
    steps: list[Step]
    root: dict[int, int]
    plan: ArenaPlan
    ops: list[str]
    input_root: int
    output_root: int


def _load(model: str | Path | bytes | bytearray) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    path = Path(model)
    if not path.is_file():
        raise CompileError(f"model file not found: {path}")
    return path.read_bytes()


def _build(model: str | Path | bytes, prefix: str, arithmetic: str = "litert") -> _Program:
    graph = parse_model(_load(model), OP_NAMES)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CompileError(f"model must have exactly one input and one output, got {len(graph.inputs)} and "
                           f"{len(graph.outputs)}")
    for op in graph.operators:
        if op.name not in SUPPORTED_OPS:
            raise CompileError(f"op {op.index} ({op.name}) is not supported; supported ops: "
                               f"{', '.join(SUPPORTED_OPS)}")
    for t_idx, role in ((graph.inputs[0], "input"), (graph.outputs[0], "output")):
        t = graph.tensors[t_idx]
        if t.dtype != "int8" or t.scales.size == 0:
            raise CompileError(f"model {role} tensor {t.name!r} is {t.dtype}"
                               f"{'' if t.scales.size else ' without quantization'}; compile full-int8 models "
                               f"(inference_input_type/inference_output_type = tf.int8)")
        if any(d < 1 for d in t.shape):
            raise CompileError(f"model {role} tensor {t.name!r} has a dynamic shape {t.shape}")
    validate_graph(graph)
    root: dict[int, int] = {}

    def r(t: int) -> int:
        return root.get(t, t)

    lowerer = Lowerer(graph, prefix, arithmetic)
    steps: list[Step] = []
    for op in graph.operators:
        if op.name in ALIAS_OPS:
            x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
            if x.size != y.size:
                raise CompileError(f"op {op.index} ({op.name}): {x.shape} -> {y.shape} changes the size")
            root[y.index] = r(x.index)
            continue
        step = lowerer.lower(op)
        step.reads = [r(t) for t in step.reads]
        step.writes = [r(t) for t in step.writes]
        steps.append(step)
    in_root, out_root = r(graph.inputs[0]), r(graph.outputs[0])
    if graph.tensors[out_root].data is not None:
        raise CompileError("model output is a constant tensor")
    _place_in_place(steps, root, in_root, out_root)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, s in enumerate(steps):
        for t in s.writes:
            first.setdefault(t, i)
            last[t] = max(last.get(t, i), i)
        for t in s.reads:
            if t == in_root or graph.tensors[t].data is not None:
                continue
            if t not in first:
                raise CompileError(f"tensor {t} ({graph.tensors[t].name!r}) is read by a {s.op} step "
                                   f"before any op writes it")
            last[t] = max(last[t], i)
    buffers = [Buffer(t, graph.tensors[t].size, first[t], last[t]) for t in first if t != out_root]
    plan = plan_buffers(buffers, ARENA_ALIGN_BYTES, _overlaps(steps, first, last, {in_root, out_root}))
    if plan.arena_bytes > _MAX_ARENA_BYTES:
        raise CompileError(f"the activations need a {plan.arena_bytes}-byte arena, more than {_MAX_ARENA_BYTES}")
    ops = [op.name for op in graph.operators]
    return _Program(graph, steps, root, plan, ops, in_root, out_root)


def _overlaps(steps: list[Step], first: dict[int, int], last: dict[int, int], outside: set[int]) -> list[Overlap]:
    """The raster-order steps whose output may share bytes with their input (Step.overlap_delta): the
    input is an arena buffer this step reads last and the output one this step writes first."""
    ties = []
    for i, s in enumerate(steps):
        if s.overlap_delta is None or len(s.reads) != 1 or len(s.writes) != 1:
            continue
        x, y = s.reads[0], s.writes[0]
        if x == y or x in outside or y in outside or x not in first or last.get(x) != i or first.get(y) != i:
            continue
        ties.append(Overlap(x, y, s.overlap_delta))
    return ties


def _place_in_place(steps: list[Step], root: dict[int, int], in_root: int, out_root: int) -> None:
    """A step whose kernel can overwrite its input (Step.inplace) writes into its input's buffer when
    nothing later reads that input: the output tensor becomes an alias of the input's root."""
    for i, s in enumerate(steps):
        if not s.inplace or len(s.reads) != 1 or len(s.writes) != 1:
            continue
        x, y = s.reads[0], s.writes[0]
        if x in (in_root, out_root) or y in (in_root, out_root) or x == y:
            continue
        if any(x in later.reads or x in later.writes for later in steps[i + 1:]):
            continue
        for t, rt in list(root.items()):
            if rt == y:
                root[t] = x
        root[y] = x
        for later in steps[i:]:
            later.reads = [x if t == y else t for t in later.reads]
            later.writes = [x if t == y else t for t in later.writes]


def arena_plan(model: str | Path | bytes) -> ArenaPlan:
    """Arena layout (offsets per activation tensor, total bytes) the compiler would use for `model`."""
    return _build(model, "m").plan


def _pointer(prog: _Program, prefix: str, t: int) -> str:
    t = prog.root.get(t, t)
    if t == prog.input_root:
        return "input"
    if t == prog.output_root:
        return "output"
    if prog.graph.tensors[t].data is not None:
        return f"{prefix}_t{t}"
    return f"({prefix}_arena + {prog.plan.offsets[t]})"


def _emit_source(prog: _Program, name: str, labels: list[str] | None) -> tuple[str, int]:
    g = prog.graph
    lines = [f"/* Generated by shared.tiny.compiler for model '{name}'. Do not edit. */",
             "#include <string.h>", "", f'#include "{name}.h"', '#include "tl_runtime.h"', "",
             f"static int8_t {name}_arena[{max(prog.plan.arena_bytes, 1)}];", ""]
    const_bytes = 0
    consts_done: set[int] = set()
    for s in prog.steps:
        for t in s.reads:
            if g.tensors[t].data is not None and t not in consts_done and t != prog.input_root:
                consts_done.add(t)
                lines.append(c_array("int8_t", f"{name}_t{t}", g.tensors[t].data))
                const_bytes += g.tensors[t].size
        lines += s.decls
        const_bytes += s.const_bytes
        lines.append("")
    if labels is not None:
        quoted = ", ".join(json.dumps(lb) for lb in labels)
        lines += [f"const char *const {name}_labels[{len(labels)}] = {{{quoted}}};", ""]
    lines += [f"int {name}_invoke(const int8_t *input, int8_t *output) {{",
              "  if (input == 0 || output == 0) return -1;"]
    for s in prog.steps:
        call = re.sub(r"@T(\d+)@", lambda m: _pointer(prog, name, int(m.group(1))), s.call)
        lines.append(f"  {call}  /* {s.op} */")
    if prog.output_root == prog.input_root:
        lines.append(f"  memcpy(output, input, {g.tensors[prog.input_root].size});")
    lines += ["  return 0;", "}", ""]
    src = "\n".join(lines)
    if m := _NOT_C.search(src):
        raise CompileError(f"internal: a non-finite constant ({m.group(0)!r}) reached the generated C")
    return src, const_bytes


def _emit_header(prog: _Program, name: str, labels: list[str] | None) -> str:
    g = prog.graph
    x, y = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    up = name.upper()
    guard = f"{up}_MODEL_H"
    lines = [f"/* Generated by shared.tiny.compiler for model '{name}'. Do not edit. */", f"#ifndef {guard}",
             f"#define {guard}", "", "#include <stdint.h>", "",
             f"#define {up}_INPUT_SIZE {x.size}", f"#define {up}_OUTPUT_SIZE {y.size}",
             f"#define {up}_INPUT_SHAPE {{{', '.join(str(d) for d in x.shape)}}}",
             f"#define {up}_OUTPUT_SHAPE {{{', '.join(str(d) for d in y.shape)}}}",
             f"#define {up}_ARENA_BYTES {prog.plan.arena_bytes}",
             f"#define {up}_INPUT_SCALE {x.scale:.9e}f", f"#define {up}_INPUT_ZERO_POINT {x.zero_point}",
             f"#define {up}_OUTPUT_SCALE {y.scale:.9e}f", f"#define {up}_OUTPUT_ZERO_POINT {y.zero_point}",
             f"#define {up}_NUM_OPS {len(prog.ops)}", ""]
    if labels is not None:
        lines += [f"#define {up}_NUM_LABELS {len(labels)}", f"extern const char *const {name}_labels[{len(labels)}];",
                  ""]
    lines += ["#ifdef __cplusplus", 'extern "C" {', "#endif", "",
              f"/* Runs the model: input[{up}_INPUT_SIZE] -> output[{up}_OUTPUT_SIZE]; returns 0 on success. */",
              f"int {name}_invoke(const int8_t *input, int8_t *output);", "", "#ifdef __cplusplus", "}", "#endif", "",
              f"#endif /* {guard} */", ""]
    return "\n".join(lines)


ARITHMETICS = ("litert", "tflm")  # requantization rounding the runtime is built for (TL_ARITH_TFLM)


def _arith_guard(arithmetic: str) -> str:
    """Preprocessor check that the runtime is built with the rounding the model was compiled for."""
    if arithmetic == "tflm":
        return ("#ifndef TL_ARITH_TFLM\n#error \"compiled with arithmetic='tflm' (TFLite Micro's double rounding): "
                "build the runtime with -DTL_ARITH_TFLM\"\n#endif\n")
    return ("#ifdef TL_ARITH_TFLM\n#error \"compiled with arithmetic='litert' (LiteRT reference kernels' single "
            "rounding): build the runtime without -DTL_ARITH_TFLM\"\n#endif\n")


def compile_tflite(model: str | Path | bytes, name: str, out_dir: str | Path,
                   labels: list[str] | None = None, metadata: ModelMetadata | None = None,
                   arithmetic: str = "litert") -> CompiledModel:
    """Compile a full-int8 TFLite model to OUT_DIR/NAME.h, OUT_DIR/NAME.c and OUT_DIR/NAME_metadata.h.

    `name` must be a C identifier; macros use it upper-cased (NAME_INPUT_SIZE), functions as given
    (name_invoke). `metadata` (model id, labels, window geometry; see
    :mod:`shared.tiny.compiler.metadata`) goes to NAME_metadata.h; without it the header carries the id
    ``name@1`` and `labels`. Labels given in both places must agree. Raises CompileError for malformed
    files and unsupported ops, types or shapes.

    `arithmetic` picks whose integer results the C reproduces bit for bit: ``"litert"`` (default; LiteRT's
    reference kernels: single-rounding requantization, TFLITE_SINGLE_ROUNDING) or ``"tflm"`` (TensorFlow
    Lite Micro: double rounding, SaturatingRoundingDoublingHighMul then RoundingDivideByPOT). The runtime
    is built for one of them (``-DTL_ARITH_TFLM`` for ``"tflm"``); the generated source refuses to compile
    against the other.
    """
    if arithmetic not in ARITHMETICS:
        raise CompileError(f"arithmetic {arithmetic!r} is not one of {', '.join(ARITHMETICS)}")
    if not isinstance(name, str) or not _IDENT.match(name):
        raise CompileError(f"name {name!r} is not a C identifier (letters, digits, underscore; <= 63 chars)")
    if metadata is not None and metadata.labels is not None:
        if labels is not None and tuple(str(lb) for lb in labels) != metadata.labels:
            raise CompileError(f"labels {list(labels)} differ from metadata.labels {list(metadata.labels)}")
        labels = list(metadata.labels)
    prog = _build(model, name, arithmetic)
    g = prog.graph
    x, y = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    if labels is not None:
        labels = [str(lb) for lb in labels]
        if len(labels) != y.size:
            raise CompileError(f"{len(labels)} labels given for an output of {y.size} values")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src, const_bytes = _emit_source(prog, name, labels)
    head, sep, rest = src.partition('#include "tl_runtime.h"\n')
    src = head + sep + _arith_guard(arithmetic) + rest
    header_path, source_path = out / f"{name}.h", out / f"{name}.c"
    header_path.write_text(_emit_header(prog, name, labels))
    source_path.write_text(src)
    meta = metadata or ModelMetadata(f"{name}@1", None if labels is None else tuple(labels))
    metadata_path = out / f"{name}_metadata.h"
    metadata_path.write_text(emit_metadata_header(name, meta))
    return CompiledModel(name, header_path, source_path, prog.plan.arena_bytes, const_bytes, x.size, y.size,
                         tuple(x.shape), tuple(y.shape), float(np.float32(x.scale)), x.zero_point,
                         float(np.float32(y.scale)), y.zero_point, prog.ops, labels, metadata_path, meta,
                         sum(st.macs for st in prog.steps))
