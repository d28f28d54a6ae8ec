"""Recurrent blocks: the one GRU op (its math and weight layouts live in mdfbridge.gru).

`GRU` has two attributes that say how its arguments are laid out (see the record's description):
`weight_layout` ('gates': PsyNeuLink per-gate weights, as the gate form of a GRU block holds them; 'onnx': W, R, B
as ONNX's GRU and the fused form hold them) and `axes` ('trial': X (T, I) per trial, as a GRU block's input node
sends it; 'onnx': ONNX's X (T, N, I) and Y (T, 1, N, H)). `onnx::GRU` is an alias: ONNX's names (initial_h for
h0), the 'onnx' layouts, and ONNX's default linear_before_reset (0, which lowering refuses unless written as 1).
Its hooks: `validate` (lowering), `onnx_export` (exporters/onnx_gru.py: one ONNX GRU node), `torch_module`
(importers/torch_gru.py: one torch.nn.GRU per per-gate call, weights converted once).
"""
from __future__ import annotations

from typing import Any, Mapping, Tuple

from ..gru import GRU_ARGS, GRU_ATTRS, GRU_DEFAULTS, GRU_DESCRIPTION, gru_op_numpy, gru_op_torch, validate_gru
from ..lazy_function import LazyFunction
from .base import Alias, OpDef, only_x, register

ONNX_ACTIVATIONS = ("Sigmoid", "Tanh")  # ONNX GRU's `activations` (f, g) the op computes: ONNX's default, torch's


def _gru_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    """Y per trial: (T, H) for X (T, I) ('trial' axes), (T, 1, N, H) for X (T, N, I) ('onnx' axes)."""
    hidden = a["R"][-1] if a.get("weight_layout") == "onnx" else a["wts_hr"][0]
    x = tuple(a["X"])
    return (x[0], 1) + x[1:-1] + (hidden,) if a.get("axes") == "onnx" else x[:-1] + (hidden,)


register(OpDef("GRU", GRU_ARGS, gru_op_numpy, gru_op_torch, defaults=GRU_DEFAULTS, attrs=GRU_ATTRS,
               batch_rule=only_x, description=GRU_DESCRIPTION, shape=_gru_shape,
               aliases=(Alias("onnx::GRU", {"initial_h": "h0"},
                              {"weight_layout": "onnx", "axes": "onnx", "linear_before_reset": 0}),),
               validate=validate_gru,
               onnx_export=LazyFunction("mdfbridge.exporters.onnx_gru", "export_gru"),
               torch_module=LazyFunction("mdfbridge.importers.torch_gru", "gru_torch_module")))
