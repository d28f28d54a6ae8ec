"""Backends: `get_backend(name).prepare(program, **options)` gives a BackendRep whose `run(inputs, steps, dt)`
returns outputs as numpy arrays and, on the backends that train, `train(inputs, targets, ...)` trains the Program.

Registered (mdfbridge.backends.BACKENDS, in this order): 'numpy' (the reference interpreter), 'torch' (the
Program's torch module; trains), 'llvm' (compiled with llvmlite; trains), 'onnxruntime' (the ONNX export).
Importing this package imports none of torch, llvmlite or onnxruntime; each backend imports its own on use.
"""
from __future__ import annotations

from .llvm_backend import LLVMBackend, LLVMRep
from .numpy_backend import NumpyBackend, NumpyRep
from .onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeRep
from .protocol import Backend, BackendRep
from .registry import BACKENDS, get_backend, register_backend, training_backend_names
from .torch_backend import TorchBackend, TorchRep

for _backend in (NumpyBackend(), TorchBackend(), LLVMBackend(), OnnxRuntimeBackend()):
    register_backend(_backend)
del _backend

__all__ = ["BACKENDS", "Backend", "BackendRep", "get_backend", "register_backend", "training_backend_names",
           "NumpyBackend", "NumpyRep", "TorchBackend", "TorchRep", "LLVMBackend", "LLVMRep", "OnnxRuntimeBackend",
           "OnnxRuntimeRep"]
