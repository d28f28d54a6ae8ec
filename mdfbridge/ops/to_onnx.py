"""ONNX export functions of the registry's ops (each record's `onnx_export` names one).

An export function gets the graph builder (`exporters.onnx_graph.OnnxGraphBuilder`) and one Program op, reads
the op's arguments through the builder (`arg`, `required_arg`, `static_arg`), emits ONNX nodes through its
helpers, which keep mdfbridge's per-trial semantics on tensors with a leading batch axis, and returns the op's
value (a tensor or a folded constant). Nothing here imports onnx: the builder does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional, cast

import numpy as np

from ..errors import UnsupportedError
from ..program import TensorRef

if TYPE_CHECKING:
    from ..exporters.onnx_graph import Const, OnnxGraphBuilder, Operand, Val
    from ..program import Op

OnnxExport = Callable[["OnnxGraphBuilder", "Op"], "Operand"]


# --------------------------------------------------------------------------- MDF standard functions

def linear(b: OnnxGraphBuilder, op: Op) -> Operand:
    """scale * (variable0 * slope + intercept) + offset."""
    y = b.add(b.mul(b.required_arg(op, "variable0"), b.arg(op, "slope", 1.0)), b.arg(op, "intercept", 0.0))
    return b.add(b.mul(y, b.arg(op, "scale", 1.0)), b.arg(op, "offset", 0.0))


def tanh(b: OnnxGraphBuilder, op: Op) -> Operand:
    """scale * tanh(gain * (variable0 + bias - x_0) + offset)."""
    z = b.sub(b.add(b.required_arg(op, "variable0"), b.arg(op, "bias", 0.0)), b.arg(op, "x_0", 0.0))
    z = b.add(b.mul(z, b.arg(op, "gain", 1.0)), b.arg(op, "offset", 0.0))
    return b.mul(b.unary("Tanh", z), b.arg(op, "scale", 1.0))


def logistic(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Sigmoid node: 1/(1 + exp(-gain*(x + bias) + offset)) == sigmoid(gain*(x + bias) - offset)."""
    z = b.add(b.required_arg(op, "variable0"), b.arg(op, "bias", 0.0))
    z = b.sub(b.mul(z, b.arg(op, "gain", 1.0)), b.arg(op, "offset", 0.0))
    return b.unary("Sigmoid", z)


def exponential(b: OnnxGraphBuilder, op: Op) -> Operand:
    """scale * exp(rate * variable0 + bias) + offset."""
    z = b.add(b.mul(b.required_arg(op, "variable0"), b.arg(op, "rate", 1.0)), b.arg(op, "bias", 0.0))
    return b.add(b.mul(b.unary("Exp", z), b.arg(op, "scale", 1.0)), b.arg(op, "offset", 0.0))


Float64Form = Callable[["OnnxGraphBuilder", "Val"], "Operand"]


def elementwise(b: OnnxGraphBuilder, op_type: str, x: Operand, float64_form: Optional[Float64Form] = None,
                kind: str = "float") -> Operand:
    """The elementwise ONNX op `op_type` of x; in float64 models `float64_form(b, x)` when given (onnxruntime
    has no float64 kernel for some ops: the form computes the op otherwise, or refuses, see `no_float64_kernel`)."""
    if float64_form is not None and b.dtype == "float64":
        return float64_form(b, b.as_val(x))
    return b.unary(op_type, x, kind)


def scaled(onnx_type: str, float64_form: Optional[Float64Form] = None) -> OnnxExport:
    """scale * f(variable0) for the elementwise ONNX op `onnx_type` f (`float64_form`: see `elementwise`)."""
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        y = elementwise(b, onnx_type, b.required_arg(op, "variable0"), float64_form)
        return b.mul(y, b.arg(op, "scale", 1.0))
    export.__name__ = f"export_{onnx_type}"
    return export


def no_float64_kernel(onnx_type: str) -> Float64Form:
    """The float64 form of an ONNX op onnxruntime has no float64 kernel for and that has no exact rewrite: a
    refusal naming it."""
    def refuse(b: OnnxGraphBuilder, x: Val) -> Operand:
        raise UnsupportedError(f"onnxruntime has no float64 kernel for ONNX {onnx_type}; export with dtype='float32' "
                               "(the numpy reference and torch backends run it in float64)", where=b.where)
    refuse.__name__ = f"no_float64_{onnx_type}"
    return refuse


def tan_float64(b: OnnxGraphBuilder, x: Val) -> Operand:
    """tan(x) = sin(x) / cos(x)."""
    return b.div(b.unary("Sin", x), b.unary("Cos", x))


def sinh_float64(b: OnnxGraphBuilder, x: Val) -> Operand:
    """sinh(x) = (exp(x) - exp(-x)) / 2."""
    return b.mul(b.sub(b.unary("Exp", x), b.unary("Exp", b.neg(x))), b.literal(0.5))


def cosh_float64(b: OnnxGraphBuilder, x: Val) -> Operand:
    """cosh(x) = (exp(x) + exp(-x)) / 2."""
    return b.mul(b.add(b.unary("Exp", x), b.unary("Exp", b.neg(x))), b.literal(0.5))


# --------------------------------------------------------------------------- transfer functions

def relu(b: OnnxGraphBuilder, op: Op) -> Operand:
    """gain * (x - bias), times leak where x <= bias: Relu, LeakyRelu (exact alpha) or Where."""
    x = b.sub(b.required_arg(op, "variable0"), b.arg(op, "bias", 0.0))
    leak = b.arg(op, "leak", 0.0)
    if b.is_scalar(leak, 0.0):
        y: Operand = b.unary("Relu", x)
    elif b.is_scalar(leak) and b.exact_attr(float(cast("Const", leak).value)):
        y = b.unary("LeakyRelu", x, alpha=float(cast("Const", leak).value))
    else:
        y = b.select(b.nary("Greater", [x, b.literal(0.0)], out_kind="bool"), x, b.mul(x, leak))
    return b.mul(y, b.arg(op, "gain", 1.0))


def relu_pnl(b: OnnxGraphBuilder, op: Op) -> Operand:
    """PsyNeuLink's ReLU: Max(x, leak * x) with x = gain * (variable0 - bias)."""
    x = b.mul(b.sub(b.required_arg(op, "variable0"), b.arg(op, "bias", 0.0)), b.arg(op, "gain", 1.0))
    return b.nary("Max", [x, b.mul(x, b.arg(op, "leak", 0.0))])


def logistic_pnl(b: OnnxGraphBuilder, op: Op) -> Operand:
    """PsyNeuLink's logistic: scale * sigmoid(gain * (variable0 + bias - x_0)) + offset."""
    z = b.sub(b.add(b.required_arg(op, "variable0"), b.arg(op, "bias", 0.0)), b.arg(op, "x_0", 0.0))
    y = b.unary("Sigmoid", b.mul(z, b.arg(op, "gain", 1.0)))
    return b.add(b.mul(y, b.arg(op, "scale", 1.0)), b.arg(op, "offset", 0.0))


def gaussian(b: OnnxGraphBuilder, op: Op) -> Operand:
    """scale * exp(-(variable0 - bias)**2 / (2 * sd**2)) / sqrt(2 pi sd) + offset (PsyNeuLink's Gaussian)."""
    sd = b.arg(op, "standard_deviation", 1.0)
    d = b.sub(b.required_arg(op, "variable0"), b.arg(op, "bias", 0.0))
    e = b.unary("Exp", b.neg(b.div(b.mul(d, d), b.mul(b.mul(sd, sd), b.literal(2.0)))))
    y = b.div(e, b.sqrt(b.mul(b.literal(2.0 * float(np.pi)), sd)))
    return b.add(b.mul(y, b.arg(op, "scale", 1.0)), b.arg(op, "offset", 0.0))


def softmax(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Softmax node over the per-trial axis (gain multiplied in first)."""
    x, gain = b.required_arg(op, "variable0"), b.arg(op, "gain", 1.0)
    if not b.is_scalar(gain, 1.0):
        x = b.as_val(b.mul(x, gain))
    axis = b.static_arg(op, "axis", -1)
    return b.emit("Softmax", [x], shape=x.shape, batched=x.batched, axis=x.onnx_axis(axis))


# --------------------------------------------------------------------------- elementwise ONNX ops

# a scalar constant that leaves the other operand as it is: (on the left, on the right) per ONNX op
_NEUTRAL = {"Add": (0.0, 0.0), "Sub": (None, 0.0), "Mul": (1.0, 1.0), "Div": (None, 1.0)}


def _neutral(b: OnnxGraphBuilder, op_type: str, a: Operand, c: Operand) -> Optional[Operand]:
    """The float tensor operand of `a op_type c` when the other one is a scalar constant that changes nothing
    (x + 0, x - 0, x * 1, 1 * x, x / 1: PsyNeuLink's edge weights of 1, expression forms' zero offsets), else
    None. x + 0 is x up to the sign of a zero (as the builder's `add` treats it)."""
    left, right = _NEUTRAL.get(op_type, (None, None))
    for x, other, number in ((a, c, right), (c, a, left)):
        if number is not None and b.is_scalar(other, number) and getattr(x, "kind", None) == "float":  # a Val
            return x
    return None


def binary(op_type: str, kind: str = "float", out_kind: Optional[str] = None) -> OnnxExport:
    """ONNX `op_type` (a broadcasting binary op) of A and B, cast to `kind` (a comparison's `out_kind` is
    "bool"; And/Or take bools). Add, Sub, Mul and Div with a neutral scalar constant emit no node."""
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        a, c = b.operands(op, "A", "B")
        if kind == "float" and out_kind is None:
            same = _neutral(b, op_type, a, c)
            if same is not None:
                return same
        return b.nary(op_type, [a, c], kind=kind, out_kind=out_kind)
    export.__name__ = f"export_{op_type}"
    return export


def unary(op_type: str, arg: str = "X", float64_form: Optional[Float64Form] = None, kind: str = "float"
          ) -> OnnxExport:
    """ONNX `op_type` (an elementwise unary op) of argument `arg` cast to `kind` (`float64_form`: see
    `elementwise`)."""
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        (x,) = b.operands(op, arg)
        return elementwise(b, op_type, x, float64_form, kind)
    export.__name__ = f"export_{op_type}"
    return export


def identity(b: OnnxGraphBuilder, op: Op) -> Operand:
    """X itself (no node)."""
    return b.required_arg(op, "X")


# --------------------------------------------------------------------------- matrix products

def matmul(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.matmul of A and B per trial; a bias node's projection (a constant [1] times a 1 x n matrix) is the
    matrix's row itself (`bias_row`), which the node that sums it adds (one Add)."""
    row = bias_row(b, op)
    if row is not None:
        return row
    return b.matmul(b.required_arg(op, "A"), b.required_arg(op, "B"))


def _is_one(b: OnnxGraphBuilder, value: Any) -> bool:
    """Is `value` (an op argument) exactly the constant vector [1.0], a static value or a parameter training does
    not change?"""
    if isinstance(value, TensorRef):
        p = b.program.params.get(value.name)
        if p is None or p.learnable or value.name in b.env:
            return False
        value = p.value
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        return arr.shape == (1,) and arr.dtype.kind in "biuf" and float(arr[0]) == 1.0
    return False


def bias_row(b: OnnxGraphBuilder, op: Op) -> Optional[Val]:
    """[1] @ W for a 1 x n parameter matrix W that nothing else reads: W's row as a vector initializer (the
    product is exactly the row: one product by 1.0 per element, no sum), named as the parameter, its doc_string
    saying so. None (a MatMul then) for any other product."""
    a, w = op.args.get("A"), op.args.get("B")
    if not isinstance(w, TensorRef) or w.name in b.env or b.readers(w.name) != 1 or not _is_one(b, a):
        return None
    p = b.program.params.get(w.name)
    if p is None or np.ndim(p.value) != 2 or np.shape(p.value)[0] != 1:
        return None
    n = int(np.shape(p.value)[1])
    return b.param_reshaped(w, (n,), doc=f"the MDF parameter '{w.name}' (1 x {n}) as a vector: a bias node's [1] "
                                         "times it")


def _gemm_direct(a: Val, w: Val, c: Optional[Val], trans_a: int, trans_b: int) -> bool:
    """Is ONNX Gemm itself the per-trial computation (A a matrix per batch, C broadcastable one way)?"""
    if w.batched or w.rank != 2 or (a.batched and (a.rank != 1 or trans_a)) or (not a.batched and a.rank != 2):
        return False
    m = w.shape[0] if trans_b else w.shape[1]
    if c is None:
        return True
    if a.batched:
        return c.shape == (m,) or (not c.batched and c.shape in ((), (1,)))
    rows = a.shape[1] if trans_a else a.shape[0]
    return not c.batched and c.rank <= 2 and tuple(np.broadcast_shapes((rows, m), c.shape)) == (rows, m)


def gemm(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Gemm node when that is the per-trial computation (exact alpha and beta), else MatMul, Mul and Add."""
    a, w, c = b.required_arg(op, "A"), b.required_arg(op, "B"), b.arg(op, "C")
    alpha, beta = float(b.static_arg(op, "alpha", 1.0)), float(b.static_arg(op, "beta", 1.0))
    trans_a, trans_b = int(b.static_arg(op, "transA", 0)), int(b.static_arg(op, "transB", 0))
    cv = b.as_val(c) if c is not None else None
    if _gemm_direct(a, w, cv, trans_a, trans_b) and b.exact_attr(alpha) and b.exact_attr(beta):
        m = w.shape[0] if trans_b else w.shape[1]
        shape = (m,) if a.batched else ((a.shape[1] if trans_a else a.shape[0]), m)
        return b.emit("Gemm", [a, w, cv], shape=shape, batched=a.batched, alpha=alpha, beta=beta,
                      transA=trans_a or None, transB=trans_b or None)
    if trans_a and a.rank >= 2:
        a = b.transpose(a, list(range(a.rank - 2)) + [a.rank - 1, a.rank - 2])
    if trans_b and w.rank >= 2:
        w = b.transpose(w, list(range(w.rank - 2)) + [w.rank - 1, w.rank - 2])
    y = b.mul(b.matmul(a, w), b.literal(alpha))
    return y if c is None else b.add(y, b.mul(c, b.literal(beta)))


# --------------------------------------------------------------------------- shape ops

def transpose(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.transpose with the per-trial permutation `perm`."""
    return b.transpose(b.required_arg(op, "data"), b.static_arg(op, "perm"))


def reshape(b: OnnxGraphBuilder, op: Op) -> Operand:
    """A per-trial reshape (a 0 copies the input's dimension unless `allowzero`)."""
    x = b.required_arg(op, "data")
    shape = [int(s) for s in np.asarray(b.static_arg(op, "shape")).reshape(-1)]
    if not int(b.static_arg(op, "allowzero", 0) or 0):
        shape = [x.shape[i] if s == 0 and i < x.rank else s for i, s in enumerate(shape)]
    return b.reshape(x, shape)


def items(b: OnnxGraphBuilder, op: Op, name: str = "inputs") -> List[Operand]:
    """The list argument `name` of `op` (tensors or constants) as operands."""
    values = op.args.get(name)
    if not isinstance(values, list) or not values:
        raise UnsupportedError(f"{op.fn} needs a list of tensors as '{name}'", where=b.where)
    items = [b.operand(v) for v in values]
    if any(v is None for v in items):
        raise UnsupportedError(f"{op.fn}: an item of '{name}' is missing", where=b.where)
    return cast("List[Operand]", items)


def concat(b: OnnxGraphBuilder, op: Op) -> Operand:
    """numpy.concatenate of the list `inputs` (tensors or constants) along the per-trial `axis` (None: of the
    flattened values)."""
    values, axis = items(b, op), b.static_arg(op, "axis", 0)
    if axis is None:
        return b.concat([b.reshape(b.as_val(v), [-1]) for v in values], 0)
    return b.concat(values, int(axis))
