"""ONNX import handlers of the registry's ops (each record's `onnx_import` entries name one).

A handler gets one ONNX node as an `importers.onnx_node.NodeImport` (inputs as dynamic, constant or
shape-derived tensors, attributes, the per-trial frame) and returns the MDF function computing it
(`node.call(<registry function>, args, learnable)`), or raises `node.fail(...)` saying why it cannot.
Functions are written under their `onnx::` alias with ONNX's argument names, as modeci-mdf reads them.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Dict

import numpy as np

from .base import get_op

if TYPE_CHECKING:
    from ..importers.onnx_node import Emitted, NodeImport, Tensor

Handler = Callable[["NodeImport"], "Emitted"]


def _after_linear_map(t: Tensor) -> bool:
    """Is t computed by a product with weights (MatMul, Gemm: a record with a `weight_arg`)?"""
    op = get_op(t.producer_op) if t.kind == "dynamic" and t.producer_op else None
    return op is not None and op.weight_arg is not None


def binary(function: str, bias: bool = False) -> Handler:
    """A broadcasting binary op A, B; with `bias`, a constant operand added to a product with weights is a
    learnable bias."""
    def handle(n: NodeImport) -> Emitted:
        args = n.broadcast_args(("A", "B"))
        learn = [k for k, other in (("A", "B"), ("B", "A"))
                 if bias and args[k].kind == "const" and _after_linear_map(args[other])]
        return n.call(function, args, learn)
    return handle


def elementwise(function: str, names: "tuple[str, ...]") -> Handler:
    """A broadcasting elementwise op of the node's inputs, passed as arguments `names` in order (Where's
    condition, X, Y)."""
    def handle(n: NodeImport) -> Emitted:
        if len(n.node.input) != len(names):
            raise n.fail(f"takes {len(names)} inputs, got {len(n.node.input)}")
        return n.call(function, n.broadcast_args(names))
    return handle


def unary(function: str, arg: str) -> Handler:
    """An elementwise unary op of the (dynamic) first input, passed as argument `arg`."""
    def handle(n: NodeImport) -> Emitted:
        return n.call(function, {arg: n.dynamic(0)})
    return handle


def identity(n: NodeImport, x: Tensor) -> Emitted:
    """x itself, as `onnx::Identity` (what nodes that do not change a trial's value import as)."""
    return n.call("onnx::Identity", {"input": x})


def dropout(n: NodeImport) -> Emitted:
    """Inference-mode Dropout: the identity (the mask output unused)."""
    if any(n.used_outputs[1:]):
        raise n.fail("the mask output is used")
    training = n.input(2) if len(n.node.input) > 2 else None
    if training is not None and (training.kind != "const" or bool(np.asarray(training.value))):
        raise n.fail("training_mode is on")
    return identity(n, n.dynamic(0))


def cast(n: NodeImport) -> Emitted:
    """A cast to a float type: the identity (mdfbridge values are floats)."""
    from onnx import TensorProto

    if int(n.attr("to")) not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16):
        raise n.fail(f"cast to {TensorProto.DataType.Name(int(n.attr('to')))} (mdfbridge values are floats)")
    return identity(n, n.dynamic(0))


def gemm(n: NodeImport) -> Emitted:
    """Gemm with a constant weight matrix B (learnable, as is a constant C)."""
    a = n.dynamic(0, "A")
    w = n.input(1)
    if w is None or w.kind != "const":
        raise n.fail("B must be a constant (a weight matrix)")
    trans_a, trans_b = int(n.attr("transA", 0)), int(n.attr("transB", 0))
    if n.batch_axis and trans_a:
        raise n.fail("transA=1 on a batched A mixes trials")
    args: Dict[str, Any] = {"A": a, "B": w}
    c = n.input(2)
    if c is not None:
        if c.kind == "shape":
            raise n.fail("C derived from tensor shapes")
        args["C"] = n.per_trial_const(c, 2)
    args.update(alpha=float(n.attr("alpha", 1.0)), beta=float(n.attr("beta", 1.0)), transA=trans_a, transB=trans_b)
    return n.call("onnx::Gemm", args, [k for k in ("B", "C") if k in args and args[k].kind == "const"])


def matmul(n: NodeImport) -> Emitted:
    """MatMul (a constant operand is a learnable weight) that keeps trials apart."""
    a, b = n.input(0), n.input(1)
    if a is None or b is None or "shape" in (a.kind, b.kind):
        raise n.fail("needs two inputs that are not derived from tensor shapes")
    if n.batch_axis:
        if a.kind == "dynamic" and a.rank < 1:
            raise n.fail("A of ONNX rank 1 is the batch axis itself")
        if b.kind == "dynamic" and b.rank < 2:
            raise n.fail("a batched B of ONNX rank < 3 contracts over the batch axis")
        if a.kind == b.kind == "dynamic" and a.rank != b.rank:
            raise n.fail("batched A and B of different ranks")
    return n.call("onnx::MatMul", {"A": a, "B": b}, [k for k, t in (("A", a), ("B", b)) if t.kind == "const"])


def softmax(n: NodeImport) -> Emitted:
    """Softmax (opset 13 on) over one per-trial axis."""
    x = n.dynamic(0)
    return n.call("onnx::Softmax", {"input": x, "axis": n.axis(n.attr("axis", -1), x)})


def softmax_flattened(n: NodeImport) -> Emitted:
    """Softmax before opset 13 (over the axes from `axis` on, flattened): only when that is the last axis."""
    x = n.dynamic(0)
    r = n.full_rank(x)
    axis = int(n.attr("axis", 1))
    if (axis + r if axis < 0 else axis) != r - 1:
        raise n.fail(f"opset < 13 Softmax over the flattened axes {axis}.. of a rank-{r} tensor")
    return n.call("onnx::Softmax", {"input": x, "axis": -1})


def transpose(n: NodeImport) -> Emitted:
    """Transpose that keeps the batch axis first."""
    x = n.dynamic(0)
    r = n.full_rank(x)
    perm = [int(p) for p in (n.attr("perm") or list(range(r))[::-1])]
    if n.batch_axis:
        if perm[0] != 0:
            raise n.fail(f"perm {perm} moves the batch axis (axis 0); import with batch_axis=False (CLI: mdfbridge "
                         "convert --no-batch-axis) to treat each ONNX tensor as one trial")
        perm = [p - 1 for p in perm[1:]]
    return n.call("onnx::Transpose", {"data": x, "perm": perm})


def reshape_to_output(n: NodeImport) -> Emitted:
    """Reshape, Flatten, Squeeze, Unsqueeze: a per-trial reshape to the shape the probe runs found."""
    x = n.dynamic(0)
    shape = n.out_shapes[0]
    if shape is None:
        raise n.fail(n.batch_problem or "output shape unknown")
    if tuple(shape) == tuple(x.shape):
        return identity(n, x)
    args: Dict[str, Any] = {"data": x, "shape": [int(d) for d in shape]}
    if 0 in shape:  # an empty axis: 0 means size 0 here, not "copy the input's size"
        args["allowzero"] = 1
    return n.call("onnx::Reshape", args)


# ------------------------------------------------------------------------------------------ recurrent layers

RECURRENT_ATTRS = ("hidden_size", "direction", "layout", "activations", "clip", "activation_alpha",
                   "activation_beta", "input_forget", "linear_before_reset")


def recurrent(function: str, outputs: "tuple[str, ...]") -> Handler:
    """ONNX GRU / RNN / LSTM (X, W, R, optional B, initial_h, initial_c): `function` (the op's onnx:: alias) with
    ONNX's names and layouts, W, R, B learnable; every used output (Y, Y_h, Y_c) a function of the same node.
    Only with batch_axis=False: the recurrence runs along ONNX's axis 0 (time), which batch_axis=True would read
    as mdfbridge's trial axis. The record's validation refuses what the op does not implement (GRU's
    linear_before_reset=0, clip, sequence_lens, peepholes)."""
    names = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")

    def handle(n: NodeImport) -> Emitted:
        if n.batch_axis:
            raise n.fail("X is (seq_length, batch_size, input_size): the recurrence runs along axis 0, which "
                         "batch_axis=True reads as the trial axis; import with batch_axis=False (CLI: mdfbridge "
                         "convert --no-batch-axis; each ONNX tensor one trial)")
        args: Dict[str, Any] = {"X": n.dynamic(0, "X")}
        for i, name in enumerate(names[1:], 1):
            t = n.input(i)
            if t is None or i >= len(n.node.input):
                continue
            if t.kind == "shape":  # (batch_axis=False fixes every shape: its probed value is a constant)
                if t.value is None:
                    raise n.fail(f"input {name} is derived from tensor shapes")
                t = t.with_value(t.value)
            if name in ("W", "R") and t.kind != "const":
                raise n.fail(f"input {name} must be a constant (a weight tensor)")
            args[name] = t
        for a in n.node.attribute:
            if a.name in RECURRENT_ATTRS:
                v = n.attr(a.name)
                args[a.name] = [x.decode() if isinstance(x, bytes) else x for x in v] if isinstance(v, list) else v
        learn = [k for k in ("W", "R", "B") if k in args and args[k].kind == "const"]
        extra = tuple((i, n.call(function, {**args, "output": out}, learn))
                      for i, out in enumerate(outputs) if i and i < len(n.used_outputs) and n.used_outputs[i])
        return dataclasses.replace(n.call(function, args, learn), extra=extra)
    return handle
