"""TFLite -> C compiler: full-int8 models to dependency-free C on the firmware/runtime kernels.

    from shared.tiny.compiler import compile_tflite
    cm = compile_tflite("model.tflite", "kws", "build/gen")   # build/gen/kws.h, build/gen/kws.c
    cm.arena_bytes, cm.const_bytes, cm.ops
"""

from shared.tiny.compiler._lower import SUPPORTED_OPS
from shared.tiny.compiler.core import CompiledModel, arena_plan, compile_tflite, main_compile
from shared.tiny.compiler.errors import CompileError
from shared.tiny.compiler.planner import ArenaPlan, Buffer, plan_buffers

__all__ = ["SUPPORTED_OPS", "ArenaPlan", "Buffer", "CompileError", "CompiledModel", "arena_plan",
           "compile_tflite", "main_compile", "plan_buffers"]
