"""The ONNX importer's op registry: one entry per ONNX op, versioned by opset like onnx's reference
evaluator (`"Gemm": {(1, 10**6): handler}`), each handler turning one ONNX node into one MDF function.

Per-trial frame: with `batch_axis=True` (the default) the leading axis of every tensor computed from the graph
inputs is mdfbridge's trial axis, so shapes and attributes are rewritten per trial (an ONNX Softmax over axis 1
of (N, C) is a softmax over axis 0 of each trial's (C,)), constants lose the leading axes that only broadcast
against the batch, and whatever would mix trials (an axis-0 reduction, a transpose moving axis 0) is refused.
With `batch_axis=False` every ONNX tensor is one trial's value and attributes are kept as written.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from onnx import helper

from ..errors import UnsupportedError
from ..ops import resolve

log = logging.getLogger(__name__)

MAX_OPSET = 10**6


@dataclass
class Tensor:
    """An ONNX tensor as the importer sees it: computed from inputs ('dynamic'), constant, or shape-derived."""

    name: str
    kind: str  # dynamic | const | shape
    shape: Tuple[int, ...] = ()  # per-trial shape (dynamic), full shape (const)
    value: Optional[np.ndarray] = None  # const values
    producer: Optional[Tuple[str, str]] = None  # (MDF node id, output port id) of a dynamic tensor
    producer_op: str = ""

    @property
    def rank(self) -> int:
        """Rank of the per-trial (dynamic) or full (const) value."""
        return len(self.shape)

    def with_value(self, value: np.ndarray) -> "Tensor":
        """A const tensor with another value (and shape)."""
        v = np.asarray(value)
        return Tensor(self.name, "const", tuple(v.shape), v)


@dataclass
class Emitted:
    """One MDF function: a registry function with args, or a `value` expression over the arg names.

    Arg values are `Tensor`s (dynamic ones become input ports, constants parameters or inline numbers) or
    static values (ONNX attributes). `learnable` names the args whose constants training may change.
    """

    function: Optional[str]
    args: Dict[str, Any]
    value: Optional[str] = None
    learnable: Tuple[str, ...] = ()


@dataclass
class NodeImport:
    """What a handler sees of one ONNX node."""

    node: Any  # onnx.NodeProto
    opset: int
    batch_axis: bool
    inputs: List[Optional[Tensor]]
    out_shapes: List[Optional[Tuple[int, ...]]]  # per-trial shapes of the outputs (from the probe runs)
    used_outputs: List[bool] = field(default_factory=list)
    batch_problem: Optional[str] = None  # set when the probe runs show the output lost the batch axis

    @property
    def op_type(self) -> str:
        """The ONNX op type."""
        return self.node.op_type

    def attr(self, name: str, default: Any = None) -> Any:
        """An attribute's value (bytes decoded), or `default`."""
        for a in self.node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def fail(self, message: str) -> UnsupportedError:
        """An error naming the ONNX node, op type and opset."""
        return UnsupportedError(f"ONNX {self.op_type} (opset {self.opset}): {message}",
                                where=f"ONNX node '{self.node.name or self.node.output[0]}'")

    def input(self, i: int) -> Optional[Tensor]:
        """Input i, or None when it is absent or empty (an omitted optional input)."""
        return self.inputs[i] if i < len(self.inputs) else None

    def dynamic(self, i: int, what: str = "") -> Tensor:
        """Input i, which must be computed from the graph inputs."""
        t = self.input(i)
        if t is None or t.kind != "dynamic":
            raise self.fail(f"input {i}{' (' + what + ')' if what else ''} must be computed from the graph inputs")
        return t

    def const(self, i: int, what: str = "") -> Optional[np.ndarray]:
        """The constant value of input i (None when absent); shape-derived or computed inputs are refused."""
        t = self.input(i)
        if t is None:
            return None
        if t.kind != "const":
            raise self.fail(f"input {i}{' (' + what + ')' if what else ''} must be a constant")
        return t.value

    def full_rank(self, t: Tensor) -> int:
        """The ONNX rank of a tensor (batch axis included for dynamic ones)."""
        return t.rank + (1 if self.batch_axis and t.kind == "dynamic" else 0)

    def axis(self, axis: int, t: Tensor) -> int:
        """An ONNX axis of tensor t -> the per-trial axis (refusing the batch axis)."""
        r = self.full_rank(t)
        a = int(axis) + (r if int(axis) < 0 else 0)
        if not 0 <= a < r:
            raise self.fail(f"axis {axis} is out of range for rank {r}")
        if self.batch_axis and t.kind == "dynamic":
            if a == 0:
                raise self.fail("operates across the batch axis (axis 0), which mixes trials; import with "
                                "batch_axis=False to treat each ONNX tensor as one trial")
            return a - 1
        return a

    def per_trial_const(self, t: Tensor, against: int) -> Tensor:
        """A constant broadcast against a dynamic tensor of ONNX rank `against`: drop axes facing the batch axis."""
        if not self.batch_axis or t.kind != "const" or t.rank < against:
            return t
        lead = t.rank - against + 1
        if any(d != 1 for d in t.shape[:lead]):
            raise self.fail(f"constant '{t.name}' of shape {t.shape} spans the batch axis")
        return t.with_value(t.value.reshape(t.shape[lead:]))


Handler = Callable[[NodeImport], Emitted]
ONNX_IMPORTERS: Dict[str, Dict[Tuple[int, int], Handler]] = {}


def register_import(op_type: str, since: int = 1, until: int = MAX_OPSET) -> Callable[[Handler], Handler]:
    """Decorator: the handler of `op_type` for opsets since..until (inclusive)."""
    def deco(fn: Handler) -> Handler:
        versions = ONNX_IMPORTERS.setdefault(op_type, {})
        for lo, hi in versions:
            if lo <= until and since <= hi:
                raise ValueError(f"ONNX importer for {op_type} opsets {since}..{until} overlaps {lo}..{hi}")
        versions[(since, until)] = fn
        return fn
    return deco


def find_handler(op_type: str, opset: int) -> Optional[Handler]:
    """The handler of `op_type` at `opset`, or None."""
    for (lo, hi), fn in (ONNX_IMPORTERS.get(op_type) or {}).items():
        if lo <= opset <= hi:
            return fn
    return None


def supported_onnx_ops() -> Tuple[str, ...]:
    """ONNX op types the importer reads (constant-only nodes of any type are folded besides)."""
    return tuple(sorted(ONNX_IMPORTERS))


# --------------------------------------------------------------------------- helpers

def _fmt(x: float) -> str:
    return repr(float(x))


def _broadcast_args(n: NodeImport, names: Sequence[str]) -> Dict[str, Tensor]:
    """Operands of an elementwise op in the per-trial frame (dynamic ones must agree in rank)."""
    ops = [n.input(i) for i in range(len(n.node.input))]
    if any(o is None for o in ops):
        raise n.fail("missing input")
    dyn = [o for o in ops if o.kind == "dynamic"]
    if not dyn:
        raise n.fail("no input is computed from the graph inputs")
    if n.batch_axis and len({o.rank for o in dyn}) > 1:  # ONNX aligns trailing axes: the batch axes would not meet
        raise n.fail(f"inputs of ranks {[o.rank + 1 for o in dyn]} computed from the graph inputs: broadcasting "
                     "them aligns the batch axis of one with another axis of the other (import with batch_axis=False "
                     "to treat each ONNX tensor as one trial)")
    against = max(n.full_rank(o) for o in dyn)
    out = {}
    for name, o in zip(names, ops):
        if o.kind == "shape":
            raise n.fail("an input derived from tensor shapes")
        out[name] = n.per_trial_const(o, against)
    return out


def _from_matmul(t: Tensor) -> bool:
    return t.kind == "dynamic" and t.producer_op in ("MatMul", "Gemm")


# --------------------------------------------------------------------------- registry ops (function form)

def _binary(op_type: str) -> Handler:
    def handle(n: NodeImport) -> Emitted:
        args = _broadcast_args(n, ("A", "B"))
        learn = tuple(k for k, other in (("A", "B"), ("B", "A"))
                      if op_type in ("Add", "Sub") and args[k].kind == "const" and _from_matmul(args[other]))
        return Emitted(f"onnx::{op_type}", args, learnable=learn)
    return handle


for _op in ("Add", "Sub", "Mul", "Div"):
    register_import(_op, 7)(_binary(_op))

# value expressions with the same meaning, used while the function registry's op cannot run under the
# executor's keyword calls (see `registry_runs`)
_UNARY_FALLBACK = {"Relu": ("X", "numpy.maximum(X, 0.0)"), "Sigmoid": ("X", "1 / (1 + numpy.exp(-X))"),
                   "Neg": ("X", "-X"), "Tanh": ("input", "numpy.tanh(input)"), "Exp": ("input", "numpy.exp(input)"),
                   "Log": ("input", "numpy.log(input)"), "Identity": ("input", "input")}


@functools.lru_cache(maxsize=None)
def registry_runs(name: str, argname: str) -> bool:
    """Does registry op `name` run when called as the executor calls it (keyword args, numpy and torch)?"""
    hit = resolve(name)
    if hit is None:
        return False
    op, renames = hit
    argname = renames.get(argname, argname)
    try:
        op.numpy(**{argname: np.full(2, 0.5)})
    except Exception:  # noqa: BLE001 - any failure means: do not write this function
        log.debug("registry op %s does not run in numpy with keyword %s; writing a value expression", name, argname)
        return False
    if op.torch is not None:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return True
        try:
            op.torch(**{argname: torch.full((2,), 0.5, dtype=torch.float64)})
        except Exception:  # noqa: BLE001
            log.debug("registry op %s does not run in torch with keyword %s; writing a value expression", name,
                      argname)
            return False
    return True


def unary_emitted(op_type: str, x: Tensor) -> Emitted:
    """`onnx::<op_type>` on x, or its value-expression form while the registry op cannot run."""
    argname, expr = _UNARY_FALLBACK[op_type]
    if registry_runs(f"onnx::{op_type}", argname):
        return Emitted(f"onnx::{op_type}", {argname: x})
    return Emitted(None, {argname: x}, value=expr)


for _op in _UNARY_FALLBACK:
    register_import(_op, 6 if _op != "Identity" else 1)((lambda op: lambda n: unary_emitted(op, n.dynamic(0)))(_op))


@register_import("Gemm", 7)
def _gemm(n: NodeImport) -> Emitted:
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
    return Emitted("onnx::Gemm", args, learnable=tuple(k for k in ("B", "C") if k in args and args[k].kind == "const"))


@register_import("MatMul", 1)
def _matmul(n: NodeImport) -> Emitted:
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
    learn = tuple(k for k, t in (("A", a), ("B", b)) if t.kind == "const")
    return Emitted("onnx::MatMul", {"A": a, "B": b}, learnable=learn)


@register_import("Softmax", 13)
def _softmax(n: NodeImport) -> Emitted:
    x = n.dynamic(0)
    return Emitted("onnx::Softmax", {"input": x, "axis": n.axis(n.attr("axis", -1), x)})


@register_import("Softmax", 1, 12)
def _softmax_legacy(n: NodeImport) -> Emitted:
    x = n.dynamic(0)
    r = n.full_rank(x)
    axis = int(n.attr("axis", 1))
    if (axis + r if axis < 0 else axis) != r - 1:
        raise n.fail(f"opset < 13 Softmax over the flattened axes {axis}.. of a rank-{r} tensor")
    return Emitted("onnx::Softmax", {"input": x, "axis": -1})


@register_import("Transpose", 1)
def _transpose(n: NodeImport) -> Emitted:
    x = n.dynamic(0)
    r = n.full_rank(x)
    perm = [int(p) for p in (n.attr("perm") or list(range(r))[::-1])]
    if n.batch_axis:
        if perm[0] != 0:
            raise n.fail(f"perm {perm} moves the batch axis (axis 0)")
        perm = [p - 1 for p in perm[1:]]
    return Emitted("onnx::Transpose", {"data": x, "perm": perm})


def _reshape_to_output(n: NodeImport) -> Emitted:
    """Reshape, Flatten, Squeeze, Unsqueeze: a per-trial reshape to the shape the probe runs found."""
    x = n.dynamic(0)
    shape = n.out_shapes[0]
    if shape is None:
        raise n.fail(n.batch_problem or "output shape unknown")
    if tuple(shape) == tuple(x.shape):
        return unary_emitted("Identity", x)
    args: Dict[str, Any] = {"data": x, "shape": [int(d) for d in shape]}
    if 0 in shape:  # an empty axis: 0 means size 0 here, not "copy the input's size"
        args["allowzero"] = 1
    return Emitted("onnx::Reshape", args)


register_import("Reshape", 5)(_reshape_to_output)
register_import("Flatten", 1)(_reshape_to_output)
register_import("Squeeze", 1)(_reshape_to_output)
register_import("Unsqueeze", 1)(_reshape_to_output)


@register_import("Dropout", 1)
def _dropout(n: NodeImport) -> Emitted:
    if any(n.used_outputs[1:]):
        raise n.fail("the mask output is used")
    training = n.input(2) if len(n.node.input) > 2 else None
    if training is not None and (training.kind != "const" or bool(np.asarray(training.value))):
        raise n.fail("training_mode is on")
    return unary_emitted("Identity", n.dynamic(0))


@register_import("Cast", 6)
def _cast(n: NodeImport) -> Emitted:
    from onnx import TensorProto

    if int(n.attr("to")) not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16):
        raise n.fail(f"cast to {TensorProto.DataType.Name(int(n.attr('to')))} (mdfbridge values are floats)")
    return unary_emitted("Identity", n.dynamic(0))


# --------------------------------------------------------------------------- value-expression forms

_UNARY_EXPR = {"Abs": "numpy.abs(X)", "Sqrt": "numpy.sqrt(X)", "Sin": "numpy.sin(X)", "Cos": "numpy.cos(X)",
               "Tan": "numpy.tan(X)", "Asin": "numpy.arcsin(X)", "Acos": "numpy.arccos(X)",
               "Atan": "numpy.arctan(X)", "Sinh": "numpy.sinh(X)", "Cosh": "numpy.cosh(X)",
               "Floor": "numpy.floor(X)", "Ceil": "numpy.ceil(X)", "Sign": "numpy.sign(X)", "Erf": "erf(X)",
               "Reciprocal": "1 / X", "Softplus": "numpy.log(numpy.exp(X) + 1)"}

for _op, _expr in _UNARY_EXPR.items():
    register_import(_op, 6 if _op not in ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Erf",
                                          "Sign", "Softplus") else 1)(
        (lambda e: lambda n: Emitted(None, {"X": n.dynamic(0)}, value=e))(_expr))


@register_import("LeakyRelu", 6)
def _leaky_relu(n: NodeImport) -> Emitted:
    return Emitted(None, {"X": n.dynamic(0)}, value=f"numpy.where(X > 0, X, {_fmt(n.attr('alpha', 0.01))} * X)")


@register_import("Elu", 6)
def _elu(n: NodeImport) -> Emitted:
    return Emitted(None, {"X": n.dynamic(0)},
                   value=f"numpy.where(X > 0, X, {_fmt(n.attr('alpha', 1.0))} * (numpy.exp(X) - 1))")


@register_import("HardSigmoid", 6)
def _hard_sigmoid(n: NodeImport) -> Emitted:
    a, b = _fmt(n.attr("alpha", 0.2)), _fmt(n.attr("beta", 0.5))
    return Emitted(None, {"X": n.dynamic(0)}, value=f"numpy.clip({a} * X + {b}, 0.0, 1.0)")


@register_import("Clip", 11)
def _clip(n: NodeImport) -> Emitted:
    lo, hi = n.const(1, "min"), n.const(2, "max")
    expr = "X"
    if lo is not None:
        expr = f"numpy.maximum({expr}, {_fmt(lo)})"
    if hi is not None:
        expr = f"numpy.minimum({expr}, {_fmt(hi)})"
    return Emitted(None, {"X": n.dynamic(0)}, value=expr)


@register_import("Pow", 7)
def _pow(n: NodeImport) -> Emitted:
    return Emitted(None, _broadcast_args(n, ("A", "B")), value="A ** B")


def _variadic(join: Callable[[List[str]], str]) -> Handler:
    def handle(n: NodeImport) -> Emitted:
        names = [f"x{i}" for i in range(len(n.node.input))]
        return Emitted(None, _broadcast_args(n, names), value=join(names))
    return handle


def _fold(fn: str, names: List[str]) -> str:
    expr = names[0]
    for nm in names[1:]:
        expr = f"{fn}({expr}, {nm})"
    return expr


register_import("Max", 8)(_variadic(lambda ns: _fold("numpy.maximum", ns)))
register_import("Min", 8)(_variadic(lambda ns: _fold("numpy.minimum", ns)))
register_import("Sum", 8)(_variadic(lambda ns: " + ".join(ns)))
register_import("Mean", 8)(_variadic(lambda ns: f"({' + '.join(ns)}) / {len(ns)}"))


@register_import("Concat", 4)
def _concat(n: NodeImport) -> Emitted:
    ops = [n.input(i) for i in range(len(n.node.input))]
    if any(o is None or o.kind == "shape" for o in ops):
        raise n.fail("inputs must be tensors, not shapes")
    dyn = [o for o in ops if o.kind == "dynamic"]
    if not dyn:
        raise n.fail("no input is computed from the graph inputs")
    if n.batch_axis and len(dyn) != len(ops):
        raise n.fail("a constant concatenated with batched tensors would need the batch size")
    axis = n.axis(n.attr("axis"), dyn[0])
    names = [f"x{i}" for i in range(len(ops))]
    return Emitted(None, dict(zip(names, ops)), value=f"numpy.concatenate([{', '.join(names)}], axis={axis})")


@register_import("LogSoftmax", 13)
def _log_softmax(n: NodeImport) -> Emitted:
    x = n.dynamic(0)
    a = n.axis(n.attr("axis", -1), x)
    m = f"numpy.max(X, axis={a}, keepdims=True)"
    return Emitted(None, {"X": x}, value=f"X - {m} - numpy.log(numpy.sum(numpy.exp(X - {m}), axis={a}, keepdims=True))")


def _reduce(fn: str, axes_from_input: bool) -> Handler:
    def handle(n: NodeImport) -> Emitted:
        x = n.dynamic(0)
        axes = n.const(1, "axes") if axes_from_input else n.attr("axes")
        keep = bool(int(n.attr("keepdims", 1)))
        if axes is None or len(np.asarray(axes).reshape(-1)) == 0:
            if int(n.attr("noop_with_empty_axes", 0)):
                return unary_emitted("Identity", x)
            if n.batch_axis:
                raise n.fail("reduces over every axis, the batch axis included (mixes trials)")
            axes = list(range(x.rank))
        per_trial = tuple(sorted(n.axis(a, x) for a in np.asarray(axes).reshape(-1)))
        if fn == "prod" and len(per_trial) > 1:  # torch.prod takes one axis: reduce the axes one by one
            expr = "X"
            for a in reversed(per_trial):  # last axis first, so the remaining axis numbers stay valid
                expr = f"numpy.prod({expr}, axis={a}, keepdims={keep})"
            return Emitted(None, {"X": x}, value=expr)
        return Emitted(None, {"X": x}, value=f"numpy.{fn}(X, axis={per_trial}, keepdims={keep})")
    return handle


register_import("ReduceSum", 1, 12)(_reduce("sum", False))
register_import("ReduceSum", 13)(_reduce("sum", True))
for _op, _fn in (("ReduceMean", "mean"), ("ReduceMax", "max"), ("ReduceMin", "min"), ("ReduceProd", "prod")):
    register_import(_op, 1, 17)(_reduce(_fn, False))
    register_import(_op, 18)(_reduce(_fn, True))


@register_import("BatchNormalization", 9)
def _batch_norm(n: NodeImport) -> Emitted:
    if int(n.attr("training_mode", 0)) or any(n.used_outputs[1:]):
        raise n.fail("training mode (running statistics outputs)")
    x = n.dynamic(0)
    channel_axis = n.axis(1, x)
    eps = _fmt(n.attr("epsilon", 1e-5))
    trailing = x.rank - channel_axis - 1
    args: Dict[str, Any] = {"X": x}
    for i, name in enumerate(("scale", "B", "mean", "var"), start=1):
        t = n.input(i)
        if t is None or t.kind != "const":
            raise n.fail(f"{name} must be a constant")
        args[name] = t.with_value(t.value.reshape(t.value.shape + (1,) * trailing))
    return Emitted(None, args, value=f"(X - mean) / numpy.sqrt(var + {eps}) * scale + B", learnable=("scale", "B"))
