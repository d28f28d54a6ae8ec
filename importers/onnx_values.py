"""ONNX ops the function registry has no op for, imported as MDF `value` expressions (modeci-mdf evaluates them;
lowering runs them through mdfbridge's expression language): elementary functions, Clip, Pow, the
variadic Max/Min/Sum/Mean, Concat and the reductions. `VALUE_IMPORTS` holds their `OnnxImport` entries; the ONNX
importer indexes them with the registry records' own (`OpDef.onnx_import`). An ONNX op whose registry op appears
moves to that op's record.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from ..ops.base import OnnxImport
from ..ops.from_onnx import identity
from .onnx_node import Emitted, NodeImport

Handler = Callable[[NodeImport], Emitted]
VALUE_IMPORTS: List[OnnxImport] = []


def imports(op_type: str, since: int, until: Optional[int] = None,
            constant_inputs: Sequence[int] = ()) -> Callable[[Handler], Handler]:
    """Decorator: `handler` imports ONNX `op_type` for opsets since..until (inclusive; None: on)."""
    def deco(handler: Handler) -> Handler:
        VALUE_IMPORTS.append(OnnxImport(op_type, since, until, handler, tuple(constant_inputs)))
        return handler
    return deco


def _fmt(x: Union[float, np.ndarray]) -> str:
    return repr(float(x))


def _elementary(op_type: str, since: int, expression: str) -> None:
    """An elementwise function of the (dynamic) input X, written as `expression`."""
    imports(op_type, since)(lambda n: Emitted(None, {"X": n.dynamic(0)}, value=expression))


_elementary("Abs", 6, "numpy.abs(X)")
_elementary("Sqrt", 6, "numpy.sqrt(X)")
_elementary("Floor", 6, "numpy.floor(X)")
_elementary("Ceil", 6, "numpy.ceil(X)")
_elementary("Reciprocal", 6, "1 / X")
_elementary("Sin", 1, "numpy.sin(X)")
_elementary("Cos", 1, "numpy.cos(X)")
_elementary("Tan", 1, "numpy.tan(X)")
_elementary("Asin", 1, "numpy.arcsin(X)")
_elementary("Acos", 1, "numpy.arccos(X)")
_elementary("Atan", 1, "numpy.arctan(X)")
_elementary("Sinh", 1, "numpy.sinh(X)")
_elementary("Cosh", 1, "numpy.cosh(X)")
_elementary("Sign", 1, "numpy.sign(X)")
_elementary("Erf", 1, "erf(X)")


@imports("Clip", 11, constant_inputs=(1, 2))
def _clip(n: NodeImport) -> Emitted:
    lo, hi = n.const(1, "min"), n.const(2, "max")
    expr = "X"
    if lo is not None:
        expr = f"numpy.maximum({expr}, {_fmt(lo)})"
    if hi is not None:
        expr = f"numpy.minimum({expr}, {_fmt(hi)})"
    return Emitted(None, {"X": n.dynamic(0)}, value=expr)


@imports("Pow", 7)
def _pow(n: NodeImport) -> Emitted:
    return Emitted(None, n.broadcast_args(("A", "B")), value="A ** B")


def _variadic(op_type: str, join: Callable[[List[str]], str]) -> None:
    """An elementwise op of any number of broadcasting inputs x0, x1, ..., written as `join(names)`."""
    def handle(n: NodeImport) -> Emitted:
        names = [f"x{i}" for i in range(len(n.node.input))]
        return Emitted(None, n.broadcast_args(names), value=join(names))
    imports(op_type, 8)(handle)


def _fold(fn: str, names: List[str]) -> str:
    expr = names[0]
    for nm in names[1:]:
        expr = f"{fn}({expr}, {nm})"
    return expr


_variadic("Max", lambda ns: _fold("numpy.maximum", ns))
_variadic("Min", lambda ns: _fold("numpy.minimum", ns))
_variadic("Sum", lambda ns: " + ".join(ns))
_variadic("Mean", lambda ns: f"({' + '.join(ns)}) / {len(ns)}")


@imports("Concat", 4)
def _concat(n: NodeImport) -> Emitted:
    given = [n.input(i) for i in range(len(n.node.input))]
    ops = [o for o in given if o is not None]
    if len(ops) != len(given) or any(o.kind == "shape" for o in ops):
        raise n.fail("inputs must be tensors, not shapes")
    dyn = [o for o in ops if o.kind == "dynamic"]
    if not dyn:
        raise n.fail("no input is computed from the graph inputs")
    if n.batch_axis and len(dyn) != len(ops):
        raise n.fail("a constant concatenated with batched tensors would need the batch size")
    axis = n.axis(n.attr("axis"), dyn[0])
    names = [f"x{i}" for i in range(len(ops))]
    return Emitted(None, dict(zip(names, ops)), value=f"numpy.concatenate([{', '.join(names)}], axis={axis})")


def _reduce(op_type: str, fn: str, axes_input_since: int) -> None:
    """ONNX reduction `op_type` as numpy's `fn` over per-trial axes: an attribute before opset
    `axes_input_since`, input 1 from then on."""
    def handler(axes_from_input: bool) -> Handler:
        def handle(n: NodeImport) -> Emitted:
            x = n.dynamic(0)
            axes = n.const(1, "axes") if axes_from_input else n.attr("axes")
            keep = bool(int(n.attr("keepdims", 1)))
            if axes is None or len(np.asarray(axes).reshape(-1)) == 0:
                if int(n.attr("noop_with_empty_axes", 0)):
                    return identity(n, x)
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
    imports(op_type, 1, axes_input_since - 1)(handler(False))
    imports(op_type, axes_input_since, constant_inputs=(1,))(handler(True))


_reduce("ReduceSum", "sum", 13)
_reduce("ReduceMean", "mean", 18)
_reduce("ReduceMax", "max", 18)
_reduce("ReduceMin", "min", 18)
_reduce("ReduceProd", "prod", 18)


