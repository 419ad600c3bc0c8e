"""TFLite -> C compiler: full-int8 models to dependency-free C on the firmware/runtime kernels.

    from shared.compiler import compile_tflite
    cm = compile_tflite("model.tflite", "kws", "build/gen")   # build/gen/kws.h, build/gen/kws.c
    cm.arena_bytes, cm.const_bytes, cm.ops
"""

from shared.compiler._lower import SUPPORTED_OPS
from shared.compiler.core import CompiledModel, arena_plan, compile_tflite, main_compile
from shared.compiler.errors import CompileError
from shared.compiler.planner import ArenaPlan, Buffer, plan_buffers

__all__ = ["SUPPORTED_OPS", "ArenaPlan", "Buffer", "CompileError", "CompiledModel", "arena_plan",
           "compile_tflite", "main_compile", "plan_buffers"]
