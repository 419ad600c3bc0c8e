"""TinyML toolchain shared by every domain: Keras -> full-int8 TFLite, an int8 runner, budget checks.

* `to_int8_tflite` converts a Keras model with full integer quantization (int8 weights, activations,
  input and output), calibrated on a representative sample of the training distribution.
* `Int8Runner` runs the flatbuffer with the LiteRT interpreter (reference kernels by default, the
  closest match to the firmware's C kernels) and does the (de)quantization arithmetic
  ``q = clamp(round(x / scale) + zero_point, -128, 127)``, ``x = (q - zero_point) * scale``.
* `model_budget` reads the flatbuffer (no TensorFlow needed) and reports the bytes of constant
  buffers (the weights that go to flash), an estimate of the tensor arena (the largest set of
  activation tensors alive at once, 16-byte aligned; the firmware compiler computes the exact plan)
  and the operator list. `budget_check` raises `BudgetError` with the numbers when over budget.

TensorFlow is imported lazily (it takes seconds), only by `to_int8_tflite`.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Operators the firmware runtime implements (firmware/runtime); the converted graphs must stay inside.
SUPPORTED_OPS = frozenset({
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "ADD",
    "MUL", "CONCATENATION", "RESHAPE", "SOFTMAX", "LOGISTIC", "TANH",
})
WEIGHTS_MAX_BYTES = 32 * 1024
ARENA_MAX_BYTES = 16 * 1024
ARENA_ALIGN_BYTES = 16
REPRESENTATIVE_MAX = 1000  # calibration samples used at most (spread evenly over the given array)

_DTYPE_BYTES = {  # TensorType enum value -> bytes per element
    0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 4, 15: 4, 16: 2, 17: 1,
}


class BudgetError(ValueError):
    """A model is over its flash (weights) or RAM (tensor arena) budget."""


def _representative_batches(representative: np.ndarray) -> Iterator[list[np.ndarray]]:
    n = len(representative)
    idx = np.linspace(0, n - 1, min(n, REPRESENTATIVE_MAX)).round().astype(int)
    for i in np.unique(idx):
        yield [representative[i : i + 1].astype(np.float32)]


def to_int8_tflite(keras_model: Any, representative: np.ndarray, path: str | Path | None = None) -> bytes:
    """Convert `keras_model` to a fully int8 TFLite flatbuffer; write it to `path` if given.

    `representative` holds model inputs (float, shape (n, *input_shape)) drawn from the training
    distribution; up to `REPRESENTATIVE_MAX` of them calibrate the activation ranges.
    """
    representative = np.asarray(representative, dtype=np.float32)
    if representative.ndim < 2 or len(representative) == 0:
        raise ValueError(f"representative must be a non-empty batch (n, ...), got shape {representative.shape}")
    if not np.all(np.isfinite(representative)):
        raise ValueError("representative contains NaN or infinite values")
    from shared.quiet import native_stderr_quiet, quiet_third_party

    quiet_third_party()
    import tensorflow as tf  # lazy: slow import

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: _representative_batches(representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # Keras export prints a lot on stdout; the converter's C++ (fully_quantize: 0 ...) on descriptor 2
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), native_stderr_quiet():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")  # int8 input: expected
        blob = bytes(converter.convert())
    runner = Int8Runner(blob)
    if runner.input_dtype != np.int8 or runner.output_dtype != np.int8:
        raise RuntimeError(f"conversion is not full int8: input {runner.input_dtype}, output {runner.output_dtype}")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(blob)
    return blob


class Int8Runner:
    """Runs a single-input, single-output int8 TFLite model with the LiteRT interpreter.

    `model` is a path or the flatbuffer bytes. `reference=True` uses the reference kernels
    (what the firmware's C kernels are held to); False uses the optimized builtin kernels.
    """

    def __init__(self, model: str | Path | bytes, reference: bool = True, max_batch: int = 4096):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.model_bytes = bytes(model) if isinstance(model, bytes | bytearray) else Path(model).read_bytes()
        resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self._interp = Interpreter(model_content=self.model_bytes, experimental_op_resolver_type=resolver)
        self._interp.allocate_tensors()
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"Int8Runner needs one input and one output, got {len(inputs)} and {len(outputs)}")
        self._in, self._out = inputs[0], outputs[0]
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        self.input_shape = tuple(int(d) for d in self._in["shape"][1:])
        self.output_shape = tuple(int(d) for d in self._out["shape"][1:])
        self.input_scale, self.input_zero_point = (float(v) for v in self._in["quantization"])
        self.output_scale, self.output_zero_point = (float(v) for v in self._out["quantization"])
        self.max_batch = max_batch
        self._batch = int(self._in["shape"][0])

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float model input -> int8 with the input tensor's scale and zero point."""
        if self.input_scale == 0.0:
            raise ValueError("input tensor is not quantized (scale 0)")
        q = np.round(np.asarray(x, dtype=np.float64) / self.input_scale) + self.input_zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Int8 model output -> float with the output tensor's scale and zero point."""
        return ((np.asarray(q, dtype=np.float32) - self.output_zero_point) * self.output_scale).astype(np.float32)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        if n != self._batch:
            self._interp.resize_tensor_input(self._in["index"], [n, *self.input_shape])
            self._interp.allocate_tensors()
            self._batch = n
        self._interp.set_tensor(self._in["index"], chunk)
        self._interp.invoke()
        return self._interp.get_tensor(self._out["index"]).copy()

    def predict_int8(self, x_int8: np.ndarray) -> np.ndarray:
        """Run a batch (n, *input_shape) of int8 inputs; returns the int8 outputs (n, ...)."""
        x_int8 = np.asarray(x_int8)
        if x_int8.dtype != self.input_dtype:
            raise TypeError(f"input dtype must be {self.input_dtype}, got {x_int8.dtype}")
        if x_int8.shape[1:] != self.input_shape:
            raise ValueError(f"input shape must be (n, {', '.join(map(str, self.input_shape))}), got {x_int8.shape}")
        if len(x_int8) == 0:
            return np.zeros((0, *self.output_shape), dtype=self.output_dtype)
        parts = [self._run(x_int8[i : i + self.max_batch]) for i in range(0, len(x_int8), self.max_batch)]
        return np.concatenate(parts, axis=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float inputs -> quantize -> int8 inference -> dequantized float outputs (e.g. probabilities)."""
        return self.dequantize(self.predict_int8(self.quantize(x)))


def _op_names() -> dict[int, str]:
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    return {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def model_budget(tflite_bytes: bytes) -> dict[str, Any]:
    """Budget of a flatbuffer: {weights_bytes, arena_bytes_estimate, ops, n_tensors}.

    weights_bytes counts every constant buffer a tensor refers to (once each). The arena estimate
    walks the operators in execution order and takes the largest total size of activation tensors
    alive at the same time (each rounded up to 16 bytes); a tensor lives from the op producing it
    (or the start, for graph inputs) to its last consumer (or the end, for graph outputs).
    """
    from ai_edge_litert.schema_py_generated import ModelT

    model = ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    names = _op_names()
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    ops: list[str] = []
    weights = 0
    seen_buffers: set[int] = set()
    arena = 0
    for sg in model.subgraphs:
        operators = sg.operators or []
        produced = {int(t) for op in operators for t in (op.outputs if op.outputs is not None else [])}
        graph_in = {int(t) for t in (sg.inputs if sg.inputs is not None else [])}
        graph_out = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}
        first: dict[int, int] = {t: 0 for t in graph_in}
        last: dict[int, int] = {t: len(operators) - 1 for t in graph_out}
        for i, op in enumerate(operators):
            ops.append(names.get(codes[op.opcodeIndex], f"OP_{codes[op.opcodeIndex]}"))
            for t in op.outputs if op.outputs is not None else []:
                first.setdefault(int(t), i)
            for t in op.inputs if op.inputs is not None else []:
                if int(t) >= 0:
                    last[int(t)] = max(last.get(int(t), i), i)
        sizes: dict[int, int] = {}
        for ti, tensor in enumerate(sg.tensors):
            buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            n_data = 0
            if buf is not None:
                n_data = len(buf.data) if buf.data is not None else int(buf.size or 0)
            if ti not in produced and ti not in graph_in and n_data > 0:
                if tensor.buffer not in seen_buffers:
                    seen_buffers.add(tensor.buffer)
                    weights += n_data
                continue
            elems = int(np.prod(tensor.shape)) if tensor.shape is not None else 1
            raw = elems * _DTYPE_BYTES.get(tensor.type, 4)
            sizes[ti] = -(-raw // ARENA_ALIGN_BYTES) * ARENA_ALIGN_BYTES
        for i in range(len(operators)):
            live = sum(s for t, s in sizes.items() if first.get(t, i + 1) <= i <= last.get(t, first.get(t, -1)))
            arena = max(arena, live)
    return {"weights_bytes": int(weights), "arena_bytes_estimate": int(arena), "ops": ops,
            "n_tensors": sum(len(sg.tensors) for sg in model.subgraphs)}


def unsupported_ops(tflite_bytes: bytes) -> list[str]:
    """Operators of the model that the firmware runtime does not implement (empty when fine)."""
    return sorted(set(model_budget(tflite_bytes)["ops"]) - SUPPORTED_OPS)


def budget_check(tflite_bytes: bytes, weights_max: int = WEIGHTS_MAX_BYTES, arena_max: int = ARENA_MAX_BYTES,
                 check_ops: bool = True) -> dict[str, Any]:
    """Return `model_budget(tflite_bytes)`; raise `BudgetError` naming the numbers when over budget
    (or, with `check_ops`, when an operator is not supported by the firmware)."""
    budget = model_budget(tflite_bytes)
    problems = []
    if budget["weights_bytes"] > weights_max:
        problems.append(f"weights {budget['weights_bytes']} B > {weights_max} B")
    if budget["arena_bytes_estimate"] > arena_max:
        problems.append(f"tensor arena ~{budget['arena_bytes_estimate']} B > {arena_max} B")
    bad = sorted(set(budget["ops"]) - SUPPORTED_OPS) if check_ops else []
    if bad:
        problems.append(f"unsupported ops {bad} (supported: {sorted(SUPPORTED_OPS)})")
    if problems:
        raise BudgetError("model over budget: " + "; ".join(problems))
    return budget
