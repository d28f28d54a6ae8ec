"""ONNX export of the RNN and LSTM ops (their records' `onnx_export`; the GRU op's goes through `export_layer` too,
exporters/onnx_gru.py): one ONNX `RNN` / `LSTM` / `GRU` node per call, weights in ONNX's layout (torch-layout weights
converted once, here: LSTM gate rows i, f, g, o -> i, o, f, c), the output the call picks (Y, Y_h or Y_c).
Initial states that are exactly zero (ONNX's default) are left out.

'trial' axes (batch-first data; onnxruntime rejects layout=1): Transpose -> node -> Squeeze -> Transpose for Y,
Squeeze for Y_h / Y_c. 'onnx' axes (the onnx:: aliases; X (T, N, I) per trial): the trials and ONNX's batch axis N
fold into the node's batch (Transpose, Reshape) and unfold after it. onnxruntime's CPU kernels of these nodes run
float32 only."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from onnx import helper

from ..errors import UnsupportedError
from ..program import Op, TensorRef
from ..rnn import TORCH_WEIGHTS, cell_of, direction_name, directions, torch_to_onnx
from .onnx_graph import TIME, Const, OnnxGraphBuilder, Operand, Val

DYN = TIME  # a dynamic dimension of an intermediate (unbatched) ONNX tensor


def _static(b: OnnxGraphBuilder, op: Op, name: str) -> Optional[np.ndarray]:
    """A weight argument's value: a parameter's (or a constant's), refused when computed by the graph."""
    ref = op.args.get(name)
    if ref is None:
        return None
    if isinstance(ref, TensorRef):
        if ref.name not in b.program.params:
            raise UnsupportedError(f"{op.fn} weight {name} is computed ('{ref.name}'); ONNX export needs parameters",
                                   where=b.where)
        return np.asarray(b.program.params[ref.name].value, dtype=float)
    return np.asarray(ref, dtype=float)


def _param_name(op: Op, arg: str) -> str:
    """The MDF parameter an argument reads (its name), else the argument's name."""
    ref = op.args.get(arg)
    return ref.name if isinstance(ref, TensorRef) else arg


def _weights(b: OnnxGraphBuilder, op: Op) -> Tuple[Val, Val, Optional[Val], int]:
    """(W, R, B or None, hidden size) in ONNX's layout, as initializers named `<node>.W`, `.R`, `.B`, each
    doc_string naming the MDF parameters it holds."""
    held: Dict[str, List[str]]
    if op.args.get("weight_hr") is not None:
        raise UnsupportedError(f"{op.fn} with a projection (weight_hr: torch's proj_size): ONNX's LSTM has none (nor "
                               "does torch.onnx export one); the model runs on the numpy and torch backends",
                               where=b.where)
    if op.args.get("weight_layout", "torch") == "onnx":
        W, R, B = (_static(b, op, k) for k in ("W", "R", "B"))
        assert W is not None and R is not None  # the record requires them
        held, layout = {k: [_param_name(op, k)] for k in ("W", "R", "B")}, "ONNX layout"
    else:
        p = {k: _static(b, op, k) for k in TORCH_WEIGHTS}
        onnx = torch_to_onnx(cell_of(op.fn), {k: v for k, v in p.items() if v is not None})
        W, R = onnx["W"], onnx["R"]
        B = onnx["B"] if p.get("bias_ih") is not None else None
        held = {"W": [_param_name(op, "weight_ih")], "R": [_param_name(op, "weight_hh")],
                "B": [_param_name(op, "bias_ih"), _param_name(op, "bias_hh")]}
        layout = "torch layout converted to ONNX's gate order"

    def initializer(k: str, value: np.ndarray) -> Val:
        return b.const(value, name=f"{op.node}.{k}",
                       doc=f"ONNX {op.fn} {k} of node '{op.node}': the MDF parameters {', '.join(held[k])} ({layout})")

    return (initializer("W", W), initializer("R", R), None if B is None else initializer("B", B),
            int(R.shape[-1]))


def _node(b: OnnxGraphBuilder, op: Op, x: Val, W: Val, R: Val, B: Optional[Val], h: Optional[Val],
          c: Optional[Val], hidden: int, shape: Tuple[int, ...]) -> Val:
    """The one ONNX RNN / LSTM node; returns the output the call picks (Y, Y_h or Y_c) with `shape`."""
    output = op.args.get("output", "Y")
    cell = cell_of(op.fn)
    index = cell.outputs.index(output)
    # every output named, though one is read: onnxruntime's common-subexpression pass merges two calls on the same
    # inputs (a layer's Y and its Y_c) and then fails on an output left unnamed ("Argument type mismatch")
    base = b.fresh(f"{b.node_context or 'graph'}/{op.fn}")
    outs = [f"{base}_{o}" for o in cell.outputs]
    name = outs[index]
    ins: List[Optional[Val]] = [x, W, R, B, None, h] + ([c] if cell.has_cell else [])
    names = ["" if v is None else v.name for v in ins]
    while names and names[-1] == "":
        names.pop()
    attrs: Dict[str, Any] = {"hidden_size": hidden}
    if direction_name(op.args.get("direction")) != "forward":
        attrs["direction"] = direction_name(op.args["direction"])
    if cell.name == "GRU":  # (written always: ONNX's default, 0, is not torch's GRU)
        attrs["linear_before_reset"] = int(op.args.get("linear_before_reset", 1) or 0)
    if cell.nonlinearities:
        acts = op.args.get("activations")
        attrs["activations"] = ([a.decode() if isinstance(a, bytes) else str(a) for a in acts] if acts
                                else [cell.nonlinearities[op.args.get("nonlinearity") or "tanh"].onnx])
    b.nodes.append(helper.make_node(op.fn, names, outs, name=name, **attrs))
    return Val(name, False, shape)


def _state(b: OnnxGraphBuilder, op: Op, arg: str, hidden: int) -> Optional[Val]:
    """An initial state h0 / c0 ('trial' axes) as ONNX's (1, B, H): a constant or input expanded over the batch;
    None (the input left out: ONNX's default) when it is absent or a parameter that is exactly zero."""
    ref = op.args.get(arg)
    h0: Optional[Operand]
    if isinstance(ref, TensorRef) and ref.name in b.program.params:
        h0 = Const(np.asarray(b.program.params[ref.name].value, dtype=float), ref.name)
    else:
        h0 = b.arg(op, arg)
    if h0 is None or (isinstance(h0, Const) and not np.any(h0.array)):
        return None
    if isinstance(h0, Const):
        row = _constant_state(b, h0, (1, 1, hidden))  # (1, 1, H) expanded to (1, B, H)
        target = b.emit("Concat", [b.int64s([1], "shape"), b.batch_shape(), b.int64s([hidden], "shape")], shape=[3],
                        batched=False, kind="int64", axis=0)
        return b.emit("Expand", [row, target], shape=(1, DYN, hidden), batched=False)
    h_bh = b.expand_to_batch(b.as_val(h0))  # (B, H)
    return b.emit("Unsqueeze", [h_bh, b.int64s([0], "axes")], shape=(1, DYN, hidden), batched=False)


def _constant_state(b: OnnxGraphBuilder, s: Const, shape: Tuple[int, ...]) -> Val:
    """A constant initial state in `shape`: the initializer of the parameter it is, else a constant."""
    if s.name in b.program.params:
        return b.param_reshaped(TensorRef(s.name), shape)
    return b.const(s.array.reshape(shape), name=s.name)


def _trial_axes(b: OnnxGraphBuilder, op: Op, x: Val, W: Val, R: Val, B: Optional[Val], hidden: int) -> Val:
    if x.rank != 2:
        raise UnsupportedError(f"{op.fn} input X has per-trial shape {x.shape}, not (T, I)", where=b.where)
    x = b.expand_to_batch(x)
    x_tbi = b.emit("Transpose", [x], shape=(DYN, DYN, x.shape[-1]), batched=False, perm=[1, 0, 2])
    h = _state(b, op, "h0", hidden)
    c = _state(b, op, "c0", hidden) if cell_of(op.fn).has_cell else None
    if op.args.get("output", "Y") == "Y":
        y = _node(b, op, x_tbi, W, R, B, h, c, hidden, (DYN, 1, DYN, hidden))
        y_tbh = b.emit("Squeeze", [y, b.int64s([1], "axes")], shape=(DYN, DYN, hidden), batched=False)
        return b.emit("Transpose", [y_tbh], shape=(x.shape[0], hidden), batched=True, perm=[1, 0, 2])
    s = _node(b, op, x_tbi, W, R, B, h, c, hidden, (1, DYN, hidden))
    return b.emit("Squeeze", [s, b.int64s([0], "axes")], shape=(hidden,), batched=True)


def _onnx_axes(b: OnnxGraphBuilder, op: Op, x: Val, W: Val, R: Val, B: Optional[Val], hidden: int) -> Val:
    if x.rank != 3:
        raise UnsupportedError(f"onnx::{op.fn} input X has per-trial shape {x.shape}, not (T, N, I)", where=b.where)
    has_cell = cell_of(op.fn).has_cell
    states: List[Optional[Operand]] = []
    for a in ("h0", "c0") if has_cell else ("h0",):
        s = b.arg(op, a)
        if isinstance(s, Const):  # exactly zero: ONNX's default, the input left out
            s = _constant_state(b, s, s.shape) if np.any(s.array) else None
        states.append(s)
    if not op.args.get("layout"):
        return _onnx_layout0(b, op, x, W, R, B, hidden, states)
    # layout 1 (X (N, T, I), states (N, 1, H)): onnxruntime runs layout 0 only, so transpose around the node
    x0 = b.transpose(x, [1, 0, 2])
    states0: List[Optional[Operand]] = [None if s is None else b.transpose(b.as_val(s), [1, 0, 2]) for s in states]
    out = _onnx_layout0(b, op, x0, W, R, B, hidden, states0)
    return b.transpose(out, [2, 0, 1, 3] if op.args.get("output", "Y") == "Y" else [1, 0, 2])


def _onnx_layout0(b: OnnxGraphBuilder, op: Op, x: Val, W: Val, R: Val, B: Optional[Val], hidden: int,
                  states: List[Optional[Operand]]) -> Val:
    T, N, I = x.shape
    D = len(directions(op.args.get("direction")))  # Y (T, D, N, H), states (D, N, H)
    is_y = op.args.get("output", "Y") == "Y"
    has_cell = cell_of(op.fn).has_cell
    if not x.batched and not any(isinstance(s, Val) and s.batched for s in states):
        hc = [None if s is None else b.as_val(s) for s in states] + [None]
        return _node(b, op, x, W, R, B, hc[0], hc[1], hidden,
                     (T, D, N, hidden) if is_y else (D, N, hidden))
    x = b.expand_to_batch(x)
    x_tbni = b.emit("Transpose", [x], shape=(DYN, DYN, N, I), batched=False, perm=[1, 0, 2, 3])
    x_t_bn_i = b.emit("Reshape", [x_tbni, b.int64s([0, -1, I], "shape")], shape=(DYN, DYN, I), batched=False)
    folded: List[Optional[Val]] = []
    for s in states:  # (D, N, H) per trial -> (D, B*N, H), trial-major like x
        if s is None:
            folded.append(None)
            continue
        s_bdnh = b.expand_to_batch(b.as_val(s))
        s_dbnh = b.emit("Transpose", [s_bdnh], shape=(D, DYN, N, hidden), batched=False, perm=[1, 0, 2, 3])
        folded.append(b.emit("Reshape", [s_dbnh, b.int64s([D, -1, hidden], "shape")], shape=(D, DYN, hidden),
                             batched=False))
    c = folded[1] if has_cell else None
    if is_y:
        y = _node(b, op, x_t_bn_i, W, R, B, folded[0], c, hidden, (DYN, D, DYN, hidden))
        y5 = b.emit("Reshape", [y, b.int64s([0, D, -1, N, hidden], "shape")], shape=(DYN, D, DYN, N, hidden),
                    batched=False)
        return b.emit("Transpose", [y5], shape=(T, D, N, hidden), batched=True, perm=[2, 0, 1, 3, 4])
    s = _node(b, op, x_t_bn_i, W, R, B, folded[0], c, hidden, (D, DYN, hidden))
    s4 = b.emit("Reshape", [s, b.int64s([D, -1, N, hidden], "shape")], shape=(D, DYN, N, hidden), batched=False)
    return b.emit("Transpose", [s4], shape=(D, N, hidden), batched=True, perm=[1, 0, 2, 3])


def export_layer(b: OnnxGraphBuilder, op: Op, weights: Optional[Tuple[Val, Val, Optional[Val], int]] = None
                 ) -> Operand:
    """A recurrent op's call (RNN, LSTM or GRU; either axes) as one ONNX node of its type; weights: (W, R, B or
    None, hidden size) as initializers (default None: the RNN / LSTM weights, converted here)."""
    W, R, B, hidden = weights or _weights(b, op)
    x_arg = b.arg(op, "X")
    assert x_arg is not None  # the record requires X
    x = b.as_val(x_arg)
    if op.args.get("axes", "trial") == "onnx":
        return _onnx_axes(b, op, x, W, R, B, hidden)
    return _trial_axes(b, op, x, W, R, B, hidden)


def export_rnn(b: OnnxGraphBuilder, op: Op) -> Operand:
    """The RNN op (either weight layout, either axes) as one ONNX RNN node."""
    return export_layer(b, op)


def export_lstm(b: OnnxGraphBuilder, op: Op) -> Operand:
    """The LSTM op (either weight layout, either axes) as one ONNX LSTM node."""
    return export_layer(b, op)
