"""Recurrent blocks: the GRU ops (their math and weight layouts live in mdfbridge.gru)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from ..gru import (BIAS_NAMES, GATE_ARGS, ONNX_GRU_ATTRS, _gru_gate_np, _gru_gate_torch, _gru_onnx_layout_np,
                   _gru_onnx_layout_torch, _onnx_gru_np, _onnx_gru_torch, validate_onnx_gru)
from .base import OpDef, deferred, only_x, register


def _onnx_gru_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return {**attrs, "batched_trials": True} if batched_args <= {"X"} else None


register(OpDef("GRU", GATE_ARGS, _gru_gate_np, _gru_gate_torch, defaults={k: None for k in BIAS_NAMES},
               batch_rule=only_x, torch_module=deferred("mdfbridge.importers.torch_gru", "gru_torch_module"),
               description="GRU over a sequence X (T, I) from h0 (H,), PsyNeuLink per-gate weights"))
register(OpDef("onnx::GRU", ("X", "W", "R", "B", "sequence_lens", "initial_h"), _onnx_gru_np, _onnx_gru_torch,
               defaults={"B": None, "sequence_lens": None, "initial_h": None, "hidden_size": None,
                         "linear_before_reset": 0, "direction": "forward", "layout": 0, "activations": None,
                         "clip": None, "activation_alpha": None, "activation_beta": None},
               attrs=ONNX_GRU_ATTRS, batch_rule=_onnx_gru_batched, validate=validate_onnx_gru,
               description="ONNX GRU (linear_before_reset=1), first output Y (T, 1, N, H)"))
register(OpDef("GRU_ONNX", ("X", "h0", "W", "R", "B"), _gru_onnx_layout_np, _gru_onnx_layout_torch,
               defaults={"B": None}, batch_rule=only_x,
               description="a fused-form GRU block: X (T, I) from h0 (H,) with ONNX-layout W, R, B"))
