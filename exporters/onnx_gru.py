"""ONNX export of the GRU op (its record's `onnx_export`): one ONNX `GRU` node with linear_before_reset=1 written
explicitly, weights in ONNX's z, r, h layout (per-gate weights converted once, here).

'trial' axes (a GRU block's op; batch-first data, onnxruntime rejects layout=1): Transpose -> GRU -> Squeeze ->
Transpose. 'onnx' axes (an onnx::GRU function; X (T, N, I) per trial): the trials and ONNX's batch axis N fold into
the GRU's batch (Transpose, Reshape), and unfold after it.

Initializers are named as the MDF names them: a fused-form block's (or onnx::GRU function's) W, R, B are its
parameters (`<node>.W`, ...); a gate-form block's per-gate weights become `<block>.W`, `<block>.R`, `<block>.B`, each
one's doc_string naming the MDF parameters it holds. An initial hidden state that is exactly zero is ONNX's
default: initial_h is left out (no nodes)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
from onnx import helper

from ..errors import UnsupportedError
from ..gru import BIAS_NAMES, ONNX_GATES, PNL_GATE, TORCH_LAYOUT_ARGS, WEIGHT_NAMES, gates_to_onnx, torch_to_gates
from ..program import Op, TensorRef
from ..rnn import direction_name, directions
from .onnx_graph import TIME, Const, OnnxGraphBuilder, Operand, Val

DYN = TIME  # a dynamic dimension of an intermediate (unbatched) ONNX tensor


def _h0(b: OnnxGraphBuilder, op: Op) -> Optional[Operand]:
    """The initial hidden state: None when it is a parameter that is exactly zero (ONNX's default initial_h), a
    constant named as the parameter when it is another parameter (no initializer of its own), else its value."""
    ref = op.args.get("h0")
    if isinstance(ref, TensorRef) and ref.name in b.program.params:
        value = np.asarray(b.program.params[ref.name].value, dtype=float)
        return None if not np.any(value) else Const(value, ref.name)
    return b.arg(op, "h0")


def _constant_h0(b: OnnxGraphBuilder, h0: Const, shape: Tuple[int, ...]) -> Val:
    """A constant initial hidden state in `shape`: the initializer of the parameter it is (`_h0`), else a
    constant."""
    if h0.name in b.program.params:
        return b.param_reshaped(TensorRef(h0.name), shape)
    return b.const(h0.array.reshape(shape), name=h0.name)


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


def _gru(b: OnnxGraphBuilder, x_tni: Val, W: Val, R: Val, B: Optional[Val], h_1nh: Optional[Val], hidden: int,
         shape: Tuple[int, ...], last: bool = False, direction: str = "forward") -> Val:
    """The one ONNX GRU node (`direction` forward, reverse or bidirectional): its output Y, or Y_h when `last`
    (then `shape` is Y_h's)."""
    attrs: Dict[str, Any] = {"hidden_size": int(hidden), "linear_before_reset": 1}
    if direction != "forward":
        attrs["direction"] = direction
    if not last:
        return b.emit("GRU", [x_tni, W, R, B, None, h_1nh], shape=shape, batched=False, **attrs)
    base = b.fresh(f"{b.node_context or 'graph'}/GRU")
    name = f"{base}_Y_h"
    ins = ["" if v is None else v.name for v in (x_tni, W, R, B, None, h_1nh)]
    while ins and ins[-1] == "":
        ins.pop()
    # Y named too, though unread: onnxruntime's common-subexpression pass merges this node with a Y call on the same
    # inputs and fails on an unnamed output
    b.nodes.append(helper.make_node("GRU", ins, [f"{base}_Y", name], name=name, **attrs))
    return Val(name, False, tuple(int(d) for d in shape))


def gru_node(b: OnnxGraphBuilder, x_btI: Val, W: Val, R: Val, B: Optional[Val], h0: Optional[Operand],
             hidden: int, last: bool = False) -> Val:
    """ONNX GRU on batch-first x (per trial (T, I)) from h0 (H,); returns batch-first Y (per trial (T, H)), or
    Y_h (per trial (H,)) when `last`."""
    I = x_btI.shape[-1]
    x_tbi = b.emit("Transpose", [x_btI], shape=(DYN, DYN, I), batched=False, perm=[1, 0, 2])
    h_1bh: Optional[Val] = None  # None or exactly zero: ONNX's default initial_h, left out
    if isinstance(h0, Const) and np.any(h0.array):
        row = _constant_h0(b, h0, (1, 1, hidden))  # (1, 1, H) expanded to (1, B, H)
        target = b.emit("Concat", [b.int64s([1], "shape"), b.batch_shape(), b.int64s([hidden], "shape")],
                        shape=[3], batched=False, kind="int64", axis=0)
        h_1bh = b.emit("Expand", [row, target], shape=(1, DYN, hidden), batched=False)
    elif h0 is not None and not isinstance(h0, Const):
        h_bh = b.expand_to_batch(b.as_val(h0))  # (B, H)
        h_1bh = b.emit("Unsqueeze", [h_bh, b.int64s([0], "axes")], shape=(1, DYN, hidden), batched=False)
    if last:
        y_h = _gru(b, x_tbi, W, R, B, h_1bh, hidden, (1, DYN, hidden), last=True)
        return b.emit("Squeeze", [y_h, b.int64s([0], "axes")], shape=(hidden,), batched=True)
    y = _gru(b, x_tbi, W, R, B, h_1bh, hidden, (DYN, 1, DYN, hidden))
    y_tbh = b.emit("Squeeze", [y, b.int64s([1], "axes")], shape=(DYN, DYN, hidden), batched=False)
    return b.emit("Transpose", [y_tbh], shape=(x_btI.shape[0], hidden), batched=True, perm=[1, 0, 2])


def onnx_axes_node(b: OnnxGraphBuilder, x: Val, W: Val, R: Val, B: Optional[Val], h0: Optional[Operand],
                   hidden: int, last: bool = False, direction: str = "forward") -> Val:
    """ONNX GRU with ONNX's axes: x per trial (T, N, I), h0 = initial_h (D, N, H), D = 2 for `direction`
    bidirectional (else 1); returns Y per trial (T, D, N, H), or Y_h (D, N, H) when `last`."""
    if x.rank != 3:
        raise UnsupportedError(f"onnx::GRU input X has per-trial shape {x.shape}, not (T, N, I)", where=b.where)
    T, N, I = x.shape
    D = len(directions(direction))
    if isinstance(h0, Const):
        h0 = _constant_h0(b, h0, h0.shape) if np.any(h0.array) else None  # exactly zero: ONNX's default
    if not x.batched:  # one sequence for every trial: the ONNX node as it is
        h = None if h0 is None else b.as_val(h0)
        return _gru(b, x, W, R, B, h, hidden, (D, N, hidden) if last else (T, D, N, hidden), last, direction)
    x_tbni = b.emit("Transpose", [x], shape=(DYN, DYN, N, I), batched=False, perm=[1, 0, 2, 3])
    x_t_bn_i = b.emit("Reshape", [x_tbni, b.int64s([0, -1, I], "shape")], shape=(DYN, DYN, I), batched=False)
    h = None
    if h0 is not None:  # (D, N, H) per trial -> (D, B*N, H), trial-major like x
        h_bdnh = b.expand_to_batch(b.as_val(h0))
        h_dbnh = b.emit("Transpose", [h_bdnh], shape=(D, DYN, N, hidden), batched=False, perm=[1, 0, 2, 3])
        h = b.emit("Reshape", [h_dbnh, b.int64s([D, -1, hidden], "shape")], shape=(D, DYN, hidden), batched=False)
    if last:
        y_h = _gru(b, x_t_bn_i, W, R, B, h, hidden, (D, DYN, hidden), True, direction)
        y_h4 = b.emit("Reshape", [y_h, b.int64s([D, -1, N, hidden], "shape")], shape=(D, DYN, N, hidden),
                      batched=False)
        return b.emit("Transpose", [y_h4], shape=(D, N, hidden), batched=True, perm=[1, 0, 2, 3])
    y = _gru(b, x_t_bn_i, W, R, B, h, hidden, (DYN, D, DYN, hidden), False, direction)
    y_tdbnh = b.emit("Reshape", [y, b.int64s([0, D, -1, N, hidden], "shape")], shape=(DYN, D, DYN, N, hidden),
                     batched=False)
    return b.emit("Transpose", [y_tdbnh], shape=(T, D, N, hidden), batched=True, perm=[2, 0, 1, 3, 4])


def export_gru(b: OnnxGraphBuilder, op: Op) -> Operand:
    """The GRU op (either weight layout, either axes) as one ONNX GRU node."""
    W, R, B, hidden = _weights(b, op)
    x_arg = b.arg(op, "X")
    assert x_arg is not None  # the GRU record requires X
    x = b.as_val(x_arg)
    last = op.args.get("output", "Y") == "Y_h"
    if op.args.get("axes", "trial") == "onnx":
        return onnx_axes_node(b, x, W, R, B, _h0(b, op), hidden, last, direction_name(op.args.get("direction")))
    return gru_node(b, x, W, R, B, _h0(b, op), hidden, last)
