"""LLVM IR -> native code in this process: the host target machine, the O3 pipeline, MCJIT, the disk cache."""
from __future__ import annotations

import ctypes
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence

from llvmlite import binding as llvm
from llvmlite import ir

log = logging.getLogger(__name__)

_init_lock = threading.Lock()
_initialised = False


def target_machine() -> Any:
    """A new target machine for the host (an MCJIT engine takes ownership of the one it is given, so each
    engine gets its own); the native target is initialised once (never `llvm.initialize()`)."""
    global _initialised
    with _init_lock:
        if not _initialised:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _initialised = True
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, codemodel="jitdefault")


@functools.lru_cache(maxsize=1)
def vector_width() -> int:
    """Doubles per SIMD register on this host (8 with AVX-512, 4 with AVX, else 2)."""
    try:
        features = llvm.get_host_cpu_features()
    except RuntimeError:  # some hosts cannot report features
        return 2
    if features.get("avx512f"):
        return 8
    return 4 if features.get("avx") else 2


@dataclass
class Compiled:
    """Native code of one module: function addresses, the engine that owns them, and a lock (the module's
    buffers are globals, so one call runs at a time)."""

    engine: Any
    addresses: Dict[str, int]
    compile_seconds: float
    plan: Any = None
    from_disk: bool = False  # the object code came from the disk cache
    lock: threading.Lock = field(default_factory=threading.Lock)
    functions: Dict[str, Any] = field(default_factory=dict)

    def function(self, name: str, restype: Any, *argtypes: Any) -> Any:
        """A ctypes callable for an exported function (made once)."""
        fn = self.functions.get(name)
        if fn is None:
            fn = self.functions[name] = ctypes.CFUNCTYPE(restype, *argtypes)(self.addresses[name])
        return fn


def compile_module(module: ir.Module, names: Sequence[str], speed_level: int = 3, unroll: bool = True) -> Compiled:
    """Verify, optimise (LLVM's O`speed_level` pipeline, default 3, with loop and SLP vectorisation, and loop
    unrolling unless `unroll` is False) and JIT a module; the object code comes from, or goes to, the disk cache
    (importers/llvm_cache.py) when it is on, so a later process skips the optimisation and code generation."""
    from . import llvm_cache

    start = time.perf_counter()
    tm = target_machine()
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    text = str(module)
    key = llvm_cache.cache_key(text, speed_level, unroll)
    cached = llvm_cache.load(key)
    mod = llvm.parse_assembly(text)
    mod.verify()
    if cached is None:
        pto = llvm.create_pipeline_tuning_options(speed_level=speed_level)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pto.loop_unrolling = unroll
        pass_builder = llvm.create_pass_builder(tm, pto)
        pass_builder.getModulePassManager().run(mod, pass_builder)
    engine = llvm.create_mcjit_compiler(mod, tm)
    produced: list = []
    engine.set_object_cache(notify_func=lambda _mod, code: produced.append(bytes(code)),
                            getbuffer_func=lambda _mod: cached)
    engine.finalize_object()
    addresses = {n: engine.get_function_address(n) for n in names}
    if cached is None and produced:
        llvm_cache.store(key, produced[0])
    seconds = time.perf_counter() - start
    log.debug("%s module '%s' (%s) in %.3f s", "loaded" if cached is not None else "compiled", module.name,
              ", ".join(names), seconds)
    return Compiled(engine, addresses, seconds, from_disk=cached is not None)
