"""ONNX export functions of the ops MDF `value` expressions lower to that need more than one ONNX node or a
rule of their own (floor division, remainder, powers, logic on bools, casts, rounding, reductions, products,
indexing, stacking, ...); the records in arithmetic.py, reductions.py, linalg.py and shaping.py name them.

Same contract as mdfbridge.ops.to_onnx: each function gets the graph builder and one Program op and returns the
op's value. Lowering folds constant subexpressions, so an op here has at least one tensor argument, and its
attributes (axis, index, reps, decimals, keepdims) are static. Comparisons give bool tensors, which And, Or,
Not and Where read as they are; the exporter casts an op's value to float where the program keeps it.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, List, Optional

import numpy as np

from .to_onnx import OnnxExport, items

if TYPE_CHECKING:
    from ..exporters.onnx_graph import OnnxGraphBuilder, Operand, Val
    from ..program import Op


def _axes(axis: Any) -> Optional[List[int]]:
    """A static `axis` argument (None, an int, or a list/tuple of them) as a list of ints (None: every axis)."""
    if axis is None:
        return None
    return [int(a) for a in axis] if isinstance(axis, (list, tuple)) else [int(axis)]


# --------------------------------------------------------------------------- arithmetic

def floor_div(b: OnnxGraphBuilder, op: Op) -> Operand:
    """A // B = floor(A / B)."""
    a, c = b.operands(op, "A", "B")
    return b.unary("Floor", b.div(a, c))


def mod(b: OnnxGraphBuilder, op: Op) -> Operand:
    """A % B with numpy's float rule (the sign of the divisor): A - floor(A / B) * B."""
    a, c = b.operands(op, "A", "B")
    return b.sub(a, b.mul(b.unary("Floor", b.div(a, c)), c))


def power(b: OnnxGraphBuilder, op: Op) -> Operand:
    """A ** B: A itself for B = 1, A * A for B = 2, else ONNX Pow."""
    a, c = b.operands(op, "A", "B")
    if b.is_scalar(c, 1.0):
        return a
    if b.is_scalar(c, 2.0):
        v = b.as_val(a)
        return b.nary("Mul", [v, v])
    return b.nary("Pow", [a, c])


def square(b: OnnxGraphBuilder, op: Op) -> Operand:
    """X * X."""
    x = b.required_arg(op, "X")
    return b.nary("Mul", [x, x])


def logarithm(base: float) -> OnnxExport:
    """log(X) / log(base) (ONNX has the natural logarithm only)."""
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        return b.div(b.unary("Log", b.required_arg(op, "X")), b.literal(math.log(base)))
    export.__name__ = f"export_log{base:g}"
    return export


def maximum(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.maximum(A, B): one Relu node against a constant 0 (`numpy.maximum(x, 0)`), else ONNX Max."""
    a, c = b.operands(op, "A", "B")
    for x, other in ((a, c), (c, a)):
        if b.is_scalar(other, 0.0) and not b.is_scalar(x):
            return b.unary("Relu", x)
    return b.nary("Max", [a, c])


def not_equal(b: OnnxGraphBuilder, op: Op) -> Operand:
    """A != B as not (A == B) (a bool tensor)."""
    return b.unary("Not", b.nary("Equal", b.operands(op, "A", "B"), out_kind="bool"), "bool")


def where(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.where(condition, X, Y) (condition read as bools)."""
    return b.select(*b.operands(op, "condition", "X", "Y"))


def clip(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.clip(X, lo, hi) = min(max(X, lo), hi)."""
    x, lo, hi = b.operands(op, "X", "lo", "hi")
    return b.nary("Min", [b.nary("Max", [x, lo]), hi])


def heaviside(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.heaviside(A, B): 0 below 0, B at 0, 1 above."""
    x, h = b.operands(op, "A", "B")
    zero = b.literal(0.0)
    at_zero = b.select(b.nary("Equal", [x, zero], out_kind="bool"), h, b.literal(1.0))
    return b.select(b.nary("Less", [x, zero], out_kind="bool"), zero, at_zero)


def to_float(b: OnnxGraphBuilder, op: Op) -> Operand:
    """X as a float tensor (bools become 0 and 1)."""
    return b.tensor(b.required_arg(op, "X", keep_kind=True), "float")


def to_int(b: OnnxGraphBuilder, op: Op) -> Operand:
    """X truncated towards zero (a cast to int64 and back)."""
    return b.tensor(b.tensor(b.required_arg(op, "X", keep_kind=True), "int64"), "float")


def round_half_even(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.round(X, decimals): ONNX Round (half to even) of X scaled as numpy scales it (X * 10**decimals,
    divided back; X / 10**-decimals, multiplied back for negative decimals)."""
    x, decimals = b.required_arg(op, "X"), int(b.static_arg(op, "decimals", 0))
    if decimals == 0:
        return b.unary("Round", x)
    factor = b.literal(10.0 ** abs(decimals))
    if decimals > 0:
        return b.div(b.unary("Round", b.mul(x, factor)), factor)
    return b.mul(b.unary("Round", b.div(x, factor)), factor)


def filled_like(fill: float) -> OnnxExport:
    """numpy.zeros_like / ones_like: `fill` in X's shape."""
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        return b.filled_like(b.required_arg(op, "X", keep_kind=True), fill)
    export.__name__ = f"export_filled_{fill:g}"
    return export


# --------------------------------------------------------------------------- reductions

def reduce(onnx_type: str, axes_input_since: int = 18) -> OnnxExport:
    """numpy's reduction (sum, mean, max, min, prod) over the per-trial `axis` (None: all), with `keepdims`,
    as the ONNX reduction `onnx_type` (its axes an input from opset `axes_input_since` on: 13 for ReduceSum, 18
    for the others)."""
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        return b.reduce(onnx_type, b.required_arg(op, "X"), _axes(b.static_arg(op, "axis")),
                        bool(b.static_arg(op, "keepdims", False)), axes_input_since)
    export.__name__ = f"export_{onnx_type}"
    return export


def arg_extreme(onnx_type: str) -> OnnxExport:
    """numpy.argmax / argmin over the per-trial `axis` (None: of the flattened value) as ONNX `onnx_type`,
    the index as a float."""
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        x, axis = b.required_arg(op, "X"), b.static_arg(op, "axis")
        keepdims = bool(b.static_arg(op, "keepdims", False))
        rank = x.rank
        if axis is None:
            x, axis = (b.reshape(x, [-1]) if x.rank != 1 else x), 0
        ax = int(axis) % max(x.rank, 1)
        keep = keepdims and rank == x.rank
        shape = tuple(1 if keep and i == ax else d for i, d in enumerate(x.shape) if keep or i != ax)
        idx: Val = b.emit(onnx_type, [x], shape=shape, batched=x.batched, kind="int64", axis=x.onnx_axis(ax),
                          keepdims=int(keep))
        if keepdims and not keep:  # numpy keeps every axis of the flattened value as a 1
            idx = b.reshape(idx, [1] * rank)
        return b.tensor(idx, "float")
    export.__name__ = f"export_{onnx_type}"
    return export


# --------------------------------------------------------------------------- products

def dot(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.dot(A, B): a product with a scalar, else numpy.matmul (the same for B of rank <= 2, or A a vector)."""
    a, c = b.operands(op, "A", "B")
    if not a.shape or not c.shape:
        return b.mul(a, c)
    if len(c.shape) > 2 and len(a.shape) > 1:
        raise b.unsupported(f"numpy.dot of shapes {a.shape} and {c.shape} (B with more than 2 axes)")
    return b.matmul(a, c)


def outer(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.outer(A, B) of the flattened arguments: a column times a row."""
    a, c = b.required_arg(op, "A"), b.required_arg(op, "B")
    return b.nary("Mul", [b.reshape(a, [-1, 1]), b.reshape(c, [1, -1])])


# --------------------------------------------------------------------------- shape ops

def stack(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.stack of the list `inputs` along the per-trial `axis`."""
    return b.stack(items(b, op), int(b.static_arg(op, "axis", 0)))


def as_array(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.asarray(X): a list of values stacked along `axis` (0), a tensor itself."""
    if isinstance(op.args.get("X"), list):
        return b.stack(items(b, op, "X"), int(b.static_arg(op, "axis", 0)))
    return b.required_arg(op, "X", keep_kind=True)


def getitem(b: OnnxGraphBuilder, op: Op) -> Operand:
    """X[index] per trial (a constant int, slice, or tuple of them)."""
    return b.getitem(b.required_arg(op, "X", keep_kind=True), b.static_arg(op, "index"))


def squeeze(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.squeeze(X, axis): the per-trial axes of size 1 named by `axis` (None: all of them) removed."""
    x, axis = b.required_arg(op, "X"), _axes(b.static_arg(op, "axis"))
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axis is None else [a % x.rank for a in axis]
    if any(x.shape[a] != 1 for a in axes):
        raise b.unsupported(f"squeeze of an axis whose size is not 1 (shape {x.shape})")
    return b.squeeze(x, [x.onnx_axis(a) for a in axes])


def unsqueeze(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.expand_dims(X, axis): per-trial axes of size 1 inserted."""
    x, axes = b.required_arg(op, "X"), _axes(b.static_arg(op, "axis")) or []
    rank = x.rank + len(axes)
    return b.unsqueeze(x, [p + (1 if x.batched else 0) for p in sorted(a % rank for a in axes)])


def tile(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.tile(X, reps) per trial (X gets leading axes of size 1, or reps leading 1s, to match ranks)."""
    x, reps = b.required_arg(op, "X"), _axes(b.static_arg(op, "reps")) or []
    if len(reps) > x.rank:
        x = b.reshape(x, [1] * (len(reps) - x.rank) + list(x.shape))
    reps = [1] * (x.rank - len(reps)) + reps
    shape = [d * r for d, r in zip(x.shape, reps)]
    return b.emit("Tile", [x, b.int64s(([1] if x.batched else []) + reps)], shape=shape, batched=x.batched,
                  kind=x.kind)


def shape_of(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.shape(X): X's per-trial shape, a constant."""
    x = b.required_arg(op, "X", keep_kind=True)
    if any(d < 0 for d in x.shape):
        raise b.unsupported("the shape of a value with a time axis")
    return b.literal(np.asarray(x.shape, dtype=float))


def length(b: OnnxGraphBuilder, op: Op) -> Operand:
    """len(X): the size of X's first per-trial axis, a constant."""
    x = b.required_arg(op, "X", keep_kind=True)
    if not x.shape or x.shape[0] < 0:
        raise b.unsupported(f"len() of a value of shape {x.shape}")
    return b.literal(float(x.shape[0]))
