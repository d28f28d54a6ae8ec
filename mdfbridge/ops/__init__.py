"""The op registry: one record per op (`OpDef`), in one module per op family.

`REGISTRY` maps each canonical op name to its record; aliases (`onnx::MatMul` for `MatMul`, ...) resolve
through `resolve`/`get_op`. Families: `standard` (MDF standard functions), `arithmetic` (elementwise ONNX
ops), `linalg` (matrix products), `shaping` (shape ops), `transfer` (PsyNeuLink transfer functions without an
MDF standard function), `recurrent` (the GRU op).
"""
from __future__ import annotations

from . import arithmetic, linalg, recurrent, reductions, shaping, standard, transfer  # noqa: F401 (registering)
from .base import (
    REGISTRY,
    Alias,
    OpDef,
    TorchModuleBinding,
    call_defaults,
    canonical_name,
    get_op,
    register,
    resolve,
    supported_functions,
)

__all__ = ["REGISTRY", "Alias", "OpDef", "TorchModuleBinding", "call_defaults", "canonical_name", "get_op",
           "register", "resolve", "supported_functions"]
