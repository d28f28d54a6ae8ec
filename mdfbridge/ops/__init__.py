"""The op registry: one record per op (`OpDef`), in one module per op family.

`REGISTRY` maps each canonical op name to its record; aliases (`onnx::MatMul` for `MatMul`, ...) resolve
through `resolve`/`get_op`. Families: `standard` (MDF standard functions), `arithmetic` (elementwise ONNX
ops), `linalg` (matrix products), `shaping` (shape ops), `transfer` (PsyNeuLink transfer functions without an
MDF standard function), `psyneulink` (PsyNeuLink's meanings of
standard names: its logistic, relu, gaussian), `recurrent` (the GRU op), `activations` (Gelu), `convolution`
(Conv, ConvTranspose), `pooling` (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool), `padding` (Pad),
`normalization` (LayerNormalization, BatchNormalization, InstanceNormalization, GroupNormalization, LRN),
`indexing` (Gather, GatherElements, Slice, Expand, Einsum).
"""
from __future__ import annotations

from . import (  # noqa: F401 (registering)
    activations,
    arithmetic,
    attention,
    convolution,
    indexing,
    linalg,
    normalization,
    padding,
    pooling,
    psyneulink,
    recurrent,
    reductions,
    shaping,
    standard,
    transfer,
)
from .base import (
    REGISTRY,
    Alias,
    Call,
    OpDef,
    TorchModuleBinding,
    Variant,
    call_defaults,
    canonical_name,
    get_op,
    read_call,
    register,
    resolve,
    supported_functions,
)

__all__ = ["REGISTRY", "Alias", "Call", "OpDef", "TorchModuleBinding", "Variant", "call_defaults", "canonical_name",
           "get_op", "read_call", "register", "resolve", "supported_functions"]
