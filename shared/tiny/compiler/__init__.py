"""TFLite -> C compiler: full-int8 models to dependency-free C on the firmware/runtime kernels.

    from shared.tiny.compiler import compile_tflite
    cm = compile_tflite("model.tflite", "kws", "build/gen")   # build/gen/kws.h, kws.c, kws_metadata.h
    cm.arena_bytes, cm.const_bytes, cm.ops
    compile_tflite("model.tflite", "kws", "build/gen",
                   metadata=ModelMetadata("kws@3", labels=("yes", "no"), fs_hz=16000, window_s=1.0))
"""

from shared.tiny.compiler._lower import SUPPORTED_OPS
from shared.tiny.compiler.cli import main_compile
from shared.tiny.compiler.core import CompiledModel, arena_plan, compile_tflite
from shared.tiny.compiler.errors import CompileError
from shared.tiny.compiler.metadata import ModelMetadata
from shared.tiny.compiler.planner import ArenaPlan, Buffer, plan_buffers

__all__ = ["SUPPORTED_OPS", "ArenaPlan", "Buffer", "CompileError", "CompiledModel", "arena_plan",
           "compile_tflite", "main_compile", "plan_buffers", "ModelMetadata"]
