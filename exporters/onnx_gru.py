"""ONNX export of GRU blocks: one ONNX `GRU` op (linear_before_reset=1 written explicitly), Transpose nodes for
batch-first data (onnxruntime rejects layout=1), weights converted to ONNX's z, r, h layout."""
from __future__ import annotations

import numpy as np

from ..gru import BIAS_NAMES, WEIGHT_NAMES, gates_to_onnx
from ..program import Op, TensorRef
from .onnx_graph import Const, OnnxGraphBuilder, Operand, Val

TIME = -1  # the (dynamic) time axis in per-trial shapes of sequence programs


def _h0(b: OnnxGraphBuilder, op: Op) -> Operand:
    """The initial hidden state: a constant when it is a parameter (no initializer of its own)."""
    ref = op.args.get("h0")
    if isinstance(ref, TensorRef) and ref.name in b.program.params:
        return Const(np.asarray(b.program.params[ref.name].value, dtype=float))
    return b.arg(op, "h0")


def _gates(b: OnnxGraphBuilder, op: Op) -> dict:
    out = {}
    for g in WEIGHT_NAMES + BIAS_NAMES:
        v = op.args.get(g)
        if isinstance(v, TensorRef):
            out[g] = np.asarray(b.program.params[v.name].value, dtype=float)
    return out


def gru_node(b: OnnxGraphBuilder, x_btI: Val, gates: dict, h0: Operand, hidden: int) -> Val:
    """ONNX GRU on batch-first x (per trial (T, I)) from h0 (H,); returns batch-first Y (per trial (T, H))."""
    onnx_w = gates_to_onnx(gates)
    W, R = b.const(onnx_w["W"]), b.const(onnx_w["R"])
    B = b.const(onnx_w["B"]) if gates.get("bias_ir") is not None else None
    I = x_btI.shape[-1]
    x_tbi = b.emit("Transpose", [x_btI], shape=(TIME, TIME, I), batched=False, perm=[1, 0, 2])
    if isinstance(h0, Const):
        row = b.const(np.asarray(h0.value, dtype=float).reshape(1, 1, hidden))  # (1, 1, H) expanded to (1, B, H)
        target = b.emit("Concat", [b.int64s([1]), b.batch_shape(), b.int64s([hidden])], shape=[3], batched=False,
                        kind="int64", axis=0)
        h_1bh = b.emit("Expand", [row, target], shape=(1, TIME, hidden), batched=False)
    else:
        h_bh = b.expand_to_batch(b.as_val(h0))  # (B, H)
        h_1bh = b.emit("Unsqueeze", [h_bh, b.int64s([0])], shape=(1, TIME, hidden), batched=False)
    y = b.emit("GRU", [x_tbi, W, R, B, None, h_1bh], shape=(TIME, 1, TIME, hidden), batched=False,
               hidden_size=int(hidden), linear_before_reset=1)
    y_tbh = b.emit("Squeeze", [y, b.int64s([1])], shape=(TIME, TIME, hidden), batched=False)
    return b.emit("Transpose", [y_tbh], shape=(TIME, hidden), batched=True, perm=[1, 0, 2])


def export_gru(b: OnnxGraphBuilder, op: Op) -> Operand:
    """The `GRU` op (PsyNeuLink per-gate weights) as one ONNX GRU node."""
    gates = _gates(b, op)
    x = b.as_val(b.arg(op, "X"))
    return gru_node(b, x, gates, _h0(b, op), gates["wts_hr"].shape[0])


def export_gru_onnx_layout(b: OnnxGraphBuilder, op: Op) -> Operand:
    """The `GRU_ONNX` op (ONNX-layout W, R, B) as one ONNX GRU node."""
    from ..gru import onnx_to_gates

    p = {k: np.asarray(b.program.params[v.name].value, dtype=float) for k, v in op.args.items()
         if k in ("W", "R", "B") and isinstance(v, TensorRef)}
    gates = onnx_to_gates(p["W"], p["R"], p.get("B"))
    return gru_node(b, b.as_val(b.arg(op, "X")), gates, _h0(b, op), p["R"].shape[-1])
