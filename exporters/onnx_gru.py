"""ONNX export of the GRU op (its record's `onnx_export`): one ONNX `GRU` node with the call's linear_before_reset
written explicitly (1, torch's, unless the call says 0), weights in ONNX's z, r, h layout (per-gate weights converted
once, here); the node, its axes and states are written as for the RNN and LSTM ops (exporters/onnx_rnn.py:
'trial' axes: Transpose -> GRU -> Squeeze -> Transpose; 'onnx' axes: trials and ONNX's batch axis fold into the
node's batch).

Initializers are named as the MDF names them: a fused-form block's (or onnx::GRU function's) W, R, B are its
parameters (`<node>.W`, ...); a gate-form block's per-gate weights become `<block>.W`, `<block>.R`, `<block>.B`, each
one's doc_string naming the MDF parameters it holds. An initial hidden state that is exactly zero is ONNX's
default: initial_h is left out (no nodes)."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import UnsupportedError
from ..gru import BIAS_NAMES, ONNX_GATES, PNL_GATE, TORCH_LAYOUT_ARGS, WEIGHT_NAMES, gates_to_onnx, torch_to_gates
from ..program import Op, TensorRef
from .onnx_graph import OnnxGraphBuilder, Operand, Val
from .onnx_rnn import export_layer


def _weight(b: OnnxGraphBuilder, op: Op, name: str) -> Optional[Val]:
    """An ONNX-layout weight: its parameter's initializer (under the parameter's name), else its value."""
    v = b.arg(op, name)
    return None if v is None else b.as_val(v)


def _weight_array(b: OnnxGraphBuilder, op: Op, name: str) -> Optional[np.ndarray]:
    """A torch-layout weight's value (a parameter), None when absent; refused when computed by the graph."""
    v = op.args.get(name)
    if v is None:
        return None
    if not isinstance(v, TensorRef) or v.name not in b.program.params:
        raise UnsupportedError(f"GRU weight {name} is computed; ONNX export needs parameters", where=b.where)
    return np.asarray(b.program.params[v.name].value, dtype=float)


def _block(op: Op) -> str:
    """The GRU block's name (its op is `<block>.gru`), else the op's node."""
    return op.out[: -len(".gru")] if op.out.endswith(".gru") else op.node


def _weights(b: OnnxGraphBuilder, op: Op) -> Tuple[Val, Val, Optional[Val], int]:
    """(W, R, B or None, hidden size) in ONNX's layout."""
    if op.args.get("weight_layout", "gates") == "onnx":
        W, R, B = (_weight(b, op, k) for k in ("W", "R", "B"))
        assert W is not None and R is not None  # the GRU record requires them
        return W, R, B, int(R.shape[-1])
    gates, names = {}, {}
    if op.args.get("weight_layout", "gates") == "torch":
        torch_refs = {k: v.name for k in TORCH_LAYOUT_ARGS if isinstance(v := op.args.get(k), TensorRef)}
        gates = torch_to_gates({f"{k}_l0": v for k in TORCH_LAYOUT_ARGS
                                if (v := _weight_array(b, op, k)) is not None})
        names = {g: torch_refs.get(f"weight_{g[4]}h" if g.startswith("wts") else f"bias_{g[5]}h", g) for g in gates}
    for g in () if gates else WEIGHT_NAMES + BIAS_NAMES:
        v = op.args.get(g)
        if isinstance(v, TensorRef):
            if v.name not in b.program.params:
                raise UnsupportedError(f"GRU gate weight {g} is computed ('{v.name}'); ONNX export needs "
                                       "parameters", where=b.where)
            gates[g], names[g] = np.asarray(b.program.params[v.name].value, dtype=float), v.name
    onnx_w = gates_to_onnx(gates)
    block = _block(op)
    held = {"W": [f"wts_i{PNL_GATE[g]}" for g in ONNX_GATES], "R": [f"wts_h{PNL_GATE[g]}" for g in ONNX_GATES],
            "B": [f"bias_{s}{PNL_GATE[g]}" for s in "ih" for g in ONNX_GATES]}

    def initializer(k: str) -> Val:
        layout = "transposed, gate order z, r, h" if k != "B" else "gate order z, r, h"
        return b.const(onnx_w[k], name=f"{block}.{k}", doc=f"ONNX GRU {k} of GRU block '{block}': the MDF "
                       f"parameters {', '.join(dict.fromkeys(names[g] for g in held[k]))} ({layout})")

    W, R = initializer("W"), initializer("R")
    B = initializer("B") if gates.get("bias_ir") is not None else None
    return W, R, B, int(gates["wts_hr"].shape[0])


def export_gru(b: OnnxGraphBuilder, op: Op) -> Operand:
    """The GRU op (any weight layout, either axes, ONNX layout 0 or 1) as one ONNX GRU node (exporters/onnx_rnn.py
    writes it: the node, its axes and states as for the RNN and LSTM ops)."""
    return export_layer(b, op, _weights(b, op))
