"""Translate a Program 'expr' op (a safe MDF value expression) into ONNX nodes with the same per-trial meaning.

The expression text is parsed with `ast` again (it was already validated by `mdfbridge.expressions`) and
walked against a whitelist; constants are folded with numpy, tensors become ONNX nodes through
`OnnxGraphBuilder`, whose helpers keep numpy's per-trial broadcasting on batched ONNX tensors.
Anything outside the whitelist raises `UnsupportedError` naming the node and the expression.
"""
from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from onnx import helper

from ..errors import UnsupportedError
from ..expressions import FUNCTIONS
from ..ops import OpDef, get_op
from ..program import Op, TensorRef
from .onnx_graph import LN2, LN10, TIME, Const, OnnxGraphBuilder, Operand, Val

BACKENDS_HINT = "the numpy reference and torch backends run it"
_MODULES = {"numpy", "np", "math"}
_CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan}

# numpy function -> ONNX op for elementwise unary functions (float in, float out) that are no registry op (those
# that are, sin, tanh, arctan, ..., are written by their record's onnx_export)
UNARY_ONNX = {"exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs", "sign": "Sign", "floor": "Floor",
              "ceil": "Ceil", "erf": "Erf", "sigmoid": "Sigmoid", "relu": "Relu"}
_COMPARE = {ast.Gt: "Greater", ast.Lt: "Less", ast.GtE: "GreaterOrEqual", ast.LtE: "LessOrEqual", ast.Eq: "Equal"}
_FOLD_BINOP: Dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.MatMult: operator.matmul}
_FOLD_CMP = {ast.Gt: operator.gt, ast.Lt: operator.lt, ast.GtE: operator.ge, ast.LtE: operator.le,
             ast.Eq: operator.eq, ast.NotEq: operator.ne}
_REDUCE = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin", "prod": "ReduceProd"}


@dataclass(frozen=True)
class Seq:
    """A list/tuple literal: a sequence argument (concatenate, stack) or, used as a value, an array."""

    items: tuple


Item = Union[Val, Const, Seq]


def _numpy(name: str, *values: Any, **kwargs: Any) -> Any:
    """Expression function `name`'s numpy implementation on positional values."""
    op = FUNCTIONS[name]
    return op.numpy(**dict(zip(op.all_args, values)), **kwargs)


def _registry_fn(name: str) -> Optional[OpDef]:
    """The registry op numpy's elementwise function `name` is at its defaults (the MDF standard functions sin,
    tanh, arctan, ... with scale 1), when it has an ONNX export."""
    op = get_op(name)
    return op if op is not None and op.elementwise and op.onnx_export is not None else None


def is_elementwise_fn(name: str) -> bool:
    """Does `elementwise_fn` translate numpy's function `name`?"""
    return name in UNARY_ONNX or name in ("square", "log2", "log10") or _registry_fn(name) is not None


def elementwise_fn(b: OnnxGraphBuilder, name: str, x: Operand) -> Operand:
    """numpy's elementwise `name` (exp, tanh, arctan, ...) of x (registry ops through their record's export)."""
    if isinstance(x, Const):
        with np.errstate(all="ignore"):
            return Const(_numpy(name, x.value))
    op = _registry_fn(name)
    if op is not None:
        return op.onnx_export(b, Op("call", "", {op.args[0]: x}, b.node_context, fn=op.name))
    if name == "square":
        v = b.as_val(x)
        return b.nary("Mul", [v, v])
    if name in ("log2", "log10"):
        return b.div(b.unary("Log", x), Const(LN2 if name == "log2" else LN10))
    op_type = UNARY_ONNX.get(name)
    if op_type is None:
        raise UnsupportedError(f"function '{name}' has no ONNX translation", where=b.where)
    return b.unary(op_type, x)


class ExpressionTranslator:
    """Walks one expression's AST, emitting ONNX nodes for tensor parts and folding constant parts."""

    def __init__(self, builder: OnnxGraphBuilder, op: Op) -> None:
        self.b, self.op = builder, op
        self.source = op.expression.source if op.expression is not None else ""

    def fail(self, what: str) -> UnsupportedError:
        """The error for a construct without an ONNX translation."""
        return UnsupportedError(f"cannot export {what} in expression {self.source!r} to ONNX ({BACKENDS_HINT})",
                                where=f"node '{self.op.node}'")

    def translate(self) -> Operand:
        """The expression's value (a tensor or a folded constant)."""
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as exc:  # pragma: no cover - expressions were validated when parsed
            raise self.fail(f"unparsable text ({exc.msg})") from None
        return self.value(self.visit(tree.body))

    # ------------------------------------------------------------------ helpers
    def visit(self, node: ast.AST) -> Item:
        """Translate one AST node."""
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise self.fail(f"{type(node).__name__} syntax")
        return method(node)

    def value(self, item: Item) -> Operand:
        """A value: list literals become arrays (constants folded, tensors stacked on a new first axis)."""
        if not isinstance(item, Seq):
            return item
        items = [self.value(i) for i in item.items]
        if all(isinstance(i, Const) for i in items):
            return Const(np.asarray([i.value for i in items]))
        return self.stack(items, 0)

    def static(self, item: Item, what: str) -> Any:
        """A constant (Python value or nested list of them) for shapes, axes and indices."""
        if isinstance(item, Const):
            return item.value.tolist() if isinstance(item.value, np.ndarray) else item.value
        if isinstance(item, Seq):
            return [self.static(i, what) for i in item.items]
        raise self.fail(f"a {what} that depends on tensors")

    def stack(self, items: Sequence[Operand], axis: int) -> Val:
        """numpy.stack on per-trial values."""
        vals = [self.b.as_val(i) for i in items]
        if len({v.shape for v in vals}) != 1:
            raise self.fail(f"stacking values of shapes {[v.shape for v in vals]}")
        rank = vals[0].rank + 1
        ax = int(axis) % rank
        ups = [self.b.unsqueeze(v, [ax + (1 if v.batched else 0)]) for v in vals]
        return self.b.concat(ups, ax)

    # ------------------------------------------------------------------ leaves
    def _Constant(self, node: ast.Constant) -> Item:
        if isinstance(node.value, (bool, int, float)):
            return Const(node.value)
        raise self.fail(f"constant {node.value!r}")

    def _Name(self, node: ast.Name) -> Item:
        name = node.id
        if name in self.op.args:
            v = self.op.args[name]
            if isinstance(v, TensorRef):
                return self.b.param(v)
            if v is None:
                raise self.fail(f"name '{name}' bound to nothing")
            return Const(np.asarray(v) if isinstance(v, (list, tuple)) else v)
        if name in _CONSTANTS:
            return Const(_CONSTANTS[name])
        raise self.fail(f"name '{name}' (not bound by the op)")

    def _Attribute(self, node: ast.Attribute) -> Item:
        if isinstance(node.value, ast.Name) and node.value.id in _MODULES and node.attr in _CONSTANTS:
            return Const(_CONSTANTS[node.attr])
        raise self.fail(f"attribute '{ast.unparse(node)}'")

    def _List(self, node: Union[ast.List, ast.Tuple]) -> Item:
        return Seq(tuple(self.visit(e) for e in node.elts))

    _Tuple = _List

    # ------------------------------------------------------------------ operators
    def _UnaryOp(self, node: ast.UnaryOp) -> Item:
        x = self.value(self.visit(node.operand))
        if isinstance(node.op, ast.USub):
            return self.b.neg(x)
        if isinstance(node.op, ast.UAdd):
            return x
        if isinstance(node.op, ast.Not):
            return Const(np.logical_not(x.value)) if isinstance(x, Const) else self.b.unary("Not", x, "bool")
        raise self.fail(f"operator {type(node.op).__name__}")

    def _BinOp(self, node: ast.BinOp) -> Item:
        a, c = self.value(self.visit(node.left)), self.value(self.visit(node.right))
        kind = type(node.op)
        if isinstance(a, Const) and isinstance(c, Const) and kind in _FOLD_BINOP:
            with np.errstate(all="ignore"):
                return Const(_FOLD_BINOP[kind](a.value, c.value))
        b = self.b
        if kind is ast.Add:
            return b.add(a, c)
        if kind is ast.Sub:
            return b.sub(a, c)
        if kind is ast.Mult:
            return b.mul(a, c)
        if kind is ast.Div:
            return b.div(a, c)
        if kind is ast.Pow:
            if isinstance(c, Const) and c.is_scalar(1.0):
                return a
            if isinstance(c, Const) and c.is_scalar(2.0):
                v = b.as_val(a)
                return b.nary("Mul", [v, v])
            return b.nary("Pow", [a, c])
        if kind is ast.FloorDiv:
            return b.unary("Floor", b.div(a, c))
        if kind is ast.Mod:  # numpy's float remainder: the sign of the divisor
            return b.sub(a, b.mul(b.unary("Floor", b.div(a, c)), c))
        if kind is ast.MatMult:
            return b.matmul(a, c)
        raise self.fail(f"operator {kind.__name__}")

    def compare(self, op: ast.cmpop, a: Operand, c: Operand) -> Operand:
        """One comparison, as a bool tensor."""
        if isinstance(a, Const) and isinstance(c, Const):
            return Const(_FOLD_CMP[type(op)](a.array, c.array))
        if isinstance(op, ast.NotEq):
            return self.b.unary("Not", self.b.nary("Equal", [a, c], out_kind="bool"), "bool")
        op_type = _COMPARE.get(type(op))
        if op_type is None:
            raise self.fail(f"comparison {type(op).__name__}")
        return self.b.nary(op_type, [a, c], out_kind="bool")

    def _Compare(self, node: ast.Compare) -> Item:
        parts = [self.value(self.visit(node.left))] + [self.value(self.visit(c)) for c in node.comparators]
        result: Optional[Operand] = None
        for op, a, c in zip(node.ops, parts, parts[1:]):
            r = self.compare(op, a, c)
            result = r if result is None else self.logical("And", result, r)
        return result

    def logical(self, op_type: str, a: Operand, c: Operand) -> Operand:
        """And/Or of truth values."""
        if isinstance(a, Const) and isinstance(c, Const):
            fn = np.logical_and if op_type == "And" else np.logical_or
            return Const(fn(a.array, c.array))
        return self.b.nary(op_type, [a, c], kind="bool")

    def _BoolOp(self, node: ast.BoolOp) -> Item:
        vals = [self.value(self.visit(v)) for v in node.values]
        op_type = "And" if isinstance(node.op, ast.And) else "Or"
        result = vals[0]
        for v in vals[1:]:
            result = self.logical(op_type, result, v)
        return result

    def _IfExp(self, node: ast.IfExp) -> Item:
        test = self.value(self.visit(node.test))
        if isinstance(test, Const) and test.array.ndim == 0:
            return self.visit(node.body if bool(test.value) else node.orelse)
        return self.b.select(test, self.value(self.visit(node.body)), self.value(self.visit(node.orelse)))

    # ------------------------------------------------------------------ indexing
    def index(self, node: ast.AST) -> Any:
        """A constant index: int, slice, or tuple of them."""
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self.static(self.visit(p), "slice bound")
                     for p in (node.lower, node.upper, node.step)]
            if any(p is not None and not isinstance(p, (int, np.integer)) for p in parts):
                raise self.fail("a non-integer slice bound")
            return slice(*parts)
        if isinstance(node, ast.Tuple):
            return tuple(self.index(e) for e in node.elts)
        v = self.static(self.visit(node), "index")
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise self.fail(f"index {v!r} (only constant integers and slices)")
        return int(v)

    def _Subscript(self, node: ast.Subscript) -> Item:
        x = self.visit(node.value)
        idx = self.index(node.slice)
        if isinstance(x, Seq) and isinstance(idx, int):
            return x.items[idx]
        x = self.value(x)
        if isinstance(x, Const):
            return Const(np.asarray(x.value)[idx])
        b = self.b
        items = idx if isinstance(idx, tuple) else (idx,)
        if len(items) > x.rank:
            raise self.fail(f"too many indices for a value of shape {x.shape}")
        axis = 0
        for it in items:
            dim = x.shape[axis]
            if dim == TIME:
                raise self.fail("indexing the time axis of a sequence")
            if isinstance(it, int):
                if not -dim <= it < dim:
                    raise self.fail(f"index {it} out of range for axis {axis} of size {dim}")
                shape = x.shape[:axis] + x.shape[axis + 1:]
                x = b.emit("Gather", [x, b.const(np.asarray(it, dtype=np.int64), "int64")], shape=shape,
                           batched=x.batched, kind=x.kind, axis=x.onnx_axis(axis))
                continue
            start, stop, step = it.indices(dim)
            length = len(range(start, stop, step))
            if (start, length, step) != (0, dim, 1):
                shape = x.shape[:axis] + (length,) + x.shape[axis + 1:]
                end = stop if stop >= 0 else -dim - 1
                x = b.emit("Slice", [x, b.int64s([start]), b.int64s([end]), b.int64s([x.onnx_axis(axis)]),
                                     b.int64s([step])], shape=shape, batched=x.batched, kind=x.kind)
            axis += 1
        return x

    # ------------------------------------------------------------------ calls
    def _Call(self, node: ast.Call) -> Item:
        func = node.func
        if isinstance(func, ast.Name):
            name = func.id
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in _MODULES:
            name = func.attr
        else:
            raise self.fail(f"call of '{ast.unparse(func)}'")
        if name not in FUNCTIONS:
            raise self.fail(f"function '{name}'")
        args = [self.visit(a) for a in node.args]
        kwargs = {k.arg: self.static(self.visit(k.value), f"'{k.arg}' argument") for k in node.keywords}
        if all(isinstance(a, Const) or (isinstance(a, Seq) and self._const_seq(a)) for a in args):
            values = [self.static(a, "argument") if isinstance(a, Seq) else a.value for a in args]
            if name in ("max", "min") and len(values) >= 2:
                fn = np.maximum if name == "max" else np.minimum
                out = values[0]
                for v in values[1:]:
                    out = fn(out, v)
                return Const(out)
            with np.errstate(all="ignore"):
                return Const(_numpy(name, *values, **kwargs))
        handler = getattr(self, f"call_{name}", None)
        if handler is not None:
            return handler(args, kwargs)
        if is_elementwise_fn(name):
            self._arity(name, args, 1)
            return elementwise_fn(self.b, name, self.value(args[0]))
        raise self.fail(f"function '{name}' on tensors")

    def _const_seq(self, s: Seq) -> bool:
        return all(isinstance(i, Const) or (isinstance(i, Seq) and self._const_seq(i)) for i in s.items)

    def _arity(self, name: str, args: List[Item], n: int, kwargs: Optional[dict] = None,
               allowed: Sequence[str] = ()) -> None:
        if len(args) != n:
            raise self.fail(f"{name}() with {len(args)} positional arguments")
        extra = set(kwargs or {}) - set(allowed)
        if extra:
            raise self.fail(f"{name}() with keyword(s) {sorted(extra)}")

    def _vals(self, args: List[Item]) -> List[Operand]:
        return [self.value(a) for a in args]

    def _reduction(self, name: str, args: List[Item], kwargs: dict) -> Operand:
        if name in ("max", "min") and len(args) >= 2:
            if kwargs:
                raise self.fail(f"{name}() of several values with keywords")
            return self.b.nary("Max" if name == "max" else "Min", self._vals(args))
        axis = kwargs.get("axis", self.static(args[1], "axis") if len(args) > 1 else None)
        if len(args) > 2 or set(kwargs) - {"axis", "keepdims"}:
            raise self.fail(f"{name}() with these arguments")
        x = self.b.as_val(self.value(args[0]))
        axes = None if axis is None else (list(axis) if isinstance(axis, (list, tuple)) else [axis])
        return self.b.reduce(_REDUCE[name], x, axes, bool(kwargs.get("keepdims", False)))

    def call_sum(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.sum() of tensors."""
        return self._reduction("sum", args, kwargs)

    def call_mean(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.mean() of tensors."""
        return self._reduction("mean", args, kwargs)

    def call_max(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.max() of tensors."""
        return self._reduction("max", args, kwargs)

    def call_min(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.min() of tensors."""
        return self._reduction("min", args, kwargs)

    def call_prod(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.prod() of tensors."""
        return self._reduction("prod", args, kwargs)

    def _arg_extreme(self, op_type: str, args: List[Item], kwargs: dict) -> Operand:
        if set(kwargs) - {"axis"} or len(args) > 2:
            raise self.fail(f"{op_type.lower()}() with these arguments")
        axis = kwargs.get("axis", self.static(args[1], "axis") if len(args) > 1 else None)
        x = self.b.as_val(self.value(args[0]))
        if axis is None:
            x = self.b.reshape(x, [-1]) if x.rank != 1 else x
            axis = 0
        shape = tuple(d for i, d in enumerate(x.shape) if i != int(axis) % x.rank)
        idx = self.b.emit(op_type, [x], shape=shape, batched=x.batched, kind="int64", axis=x.onnx_axis(axis),
                          keepdims=0)
        return self.b.tensor(idx, "float")

    def call_argmax(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.argmax() of tensors."""
        return self._arg_extreme("ArgMax", args, kwargs)

    def call_argmin(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.argmin() of tensors."""
        return self._arg_extreme("ArgMin", args, kwargs)

    def call_maximum(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.maximum() of tensors."""
        self._arity("maximum", args, 2, kwargs)
        return self.b.nary("Max", self._vals(args))

    def call_minimum(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.minimum() of tensors."""
        self._arity("minimum", args, 2, kwargs)
        return self.b.nary("Min", self._vals(args))

    def call_power(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.power() of tensors."""
        self._arity("power", args, 2, kwargs)
        return self.b.nary("Pow", self._vals(args))

    def call_where(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.where() of tensors."""
        self._arity("where", args, 3, kwargs)
        return self.b.select(*self._vals(args))

    def call_clip(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.clip() of tensors."""
        self._arity("clip", args, 3, kwargs)
        x, lo, hi = self._vals(args)
        return self.b.nary("Min", [self.b.nary("Max", [x, lo]), hi])

    def call_heaviside(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.heaviside() of tensors."""
        self._arity("heaviside", args, 2, kwargs)
        x, h = self._vals(args)
        zero = Const(0.0)
        inner = self.b.select(self.compare(ast.Eq(), x, zero), h, Const(1.0))
        return self.b.select(self.compare(ast.Lt(), x, zero), zero, inner)

    def call_round(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.round() of tensors."""
        if len(args) == 2 and self.static(args[1], "decimals") != 0:
            raise self.fail("round() with decimals")
        return self.b.unary("Round", self.value(args[0]))

    def call_logical_not(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.logical_not() of tensors."""
        self._arity("logical_not", args, 1, kwargs)
        return self.b.unary("Not", self.value(args[0]), "bool")

    def call_logical_and(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.logical_and() of tensors."""
        self._arity("logical_and", args, 2, kwargs)
        return self.logical("And", *self._vals(args))

    def call_logical_or(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.logical_or() of tensors."""
        self._arity("logical_or", args, 2, kwargs)
        return self.logical("Or", *self._vals(args))

    def call_float(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.float() of tensors."""
        self._arity("float", args, 1, kwargs)
        return self.b.tensor(self.value(args[0]), "float")

    def call_int(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.int() of tensors."""
        self._arity("int", args, 1, kwargs)
        return self.b.tensor(self.b.tensor(self.value(args[0]), "int64"), "float")

    def _filled_like(self, args: List[Item], fill: float) -> Operand:
        x = self.b.as_val(self.value(args[0]))
        shp = self.b.emit("Shape", [x], shape=[x.rank + (1 if x.batched else 0)], batched=False, kind="int64")
        value = helper.make_tensor("value", self.b.elem_type, [1], [fill])
        return self.b.emit("ConstantOfShape", [shp], shape=x.shape, batched=x.batched, value=value)

    def call_zeros_like(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.zeros_like() of tensors."""
        self._arity("zeros_like", args, 1, kwargs)
        return self._filled_like(args, 0.0)

    def call_ones_like(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.ones_like() of tensors."""
        self._arity("ones_like", args, 1, kwargs)
        return self._filled_like(args, 1.0)

    def call_dot(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.dot() of tensors."""
        self._arity("dot", args, 2, kwargs)
        a, c = self._vals(args)
        ra, rc = len(a.shape), len(c.shape)
        if ra == 0 or rc == 0:
            return self.b.mul(a, c)
        if ra > 2 or rc > 2:
            raise self.fail("dot() of arrays with more than 2 axes")
        return self.b.matmul(a, c)

    def call_matmul(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.matmul() of tensors."""
        self._arity("matmul", args, 2, kwargs)
        return self.b.matmul(*self._vals(args))

    def call_outer(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.outer() of tensors."""
        self._arity("outer", args, 2, kwargs)
        a, c = [self.b.as_val(v) for v in self._vals(args)]
        return self.b.nary("Mul", [self.b.reshape(a, [-1, 1]), self.b.reshape(c, [1, -1])])

    def call_transpose(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.transpose() of tensors."""
        axes = kwargs.get("axes", self.static(args[1], "axes") if len(args) > 1 else None)
        return self.b.transpose(self.b.as_val(self.value(args[0])), axes)

    def call_reshape(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.reshape() of tensors."""
        self._arity("reshape", args, 2, kwargs)
        shape = self.static(args[1], "shape")
        return self.b.reshape(self.b.as_val(self.value(args[0])), shape if isinstance(shape, list) else [shape])

    def _sequence(self, name: str, args: List[Item]) -> List[Operand]:
        if not args or not isinstance(args[0], Seq):
            raise self.fail(f"{name}() of something other than a list literal")
        return [self.value(i) for i in args[0].items]

    def call_concatenate(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.concatenate() of tensors."""
        items = self._sequence("concatenate", args)
        axis = kwargs.get("axis", self.static(args[1], "axis") if len(args) > 1 else 0)
        if axis is None:
            items = [self.b.reshape(self.b.as_val(i), [-1]) for i in items]
            axis = 0
        return self.b.concat(items, axis)

    def call_stack(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.stack() of tensors."""
        items = self._sequence("stack", args)
        axis = kwargs.get("axis", self.static(args[1], "axis") if len(args) > 1 else 0)
        return self.stack(items, axis)

    def call_array(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.array() of tensors."""
        self._arity("array", args, 1, kwargs)
        return self.value(args[0])

    call_asarray = call_array

    def call_squeeze(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.squeeze() of tensors."""
        x = self.b.as_val(self.value(args[0]))
        axis = kwargs.get("axis", self.static(args[1], "axis") if len(args) > 1 else None)
        axes = [i for i, d in enumerate(x.shape) if d == 1] if axis is None else \
            [int(a) % x.rank for a in (axis if isinstance(axis, list) else [axis])]
        if any(x.shape[a] != 1 for a in axes):
            raise self.fail(f"squeeze of an axis whose size is not 1 (shape {x.shape})")
        return self.b.squeeze(x, [x.onnx_axis(a) for a in axes])

    def call_expand_dims(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.expand_dims() of tensors."""
        self._arity("expand_dims", args, 2, kwargs)
        x = self.b.as_val(self.value(args[0]))
        axis = self.static(args[1], "axis")
        axes = axis if isinstance(axis, list) else [axis]
        rank = x.rank + len(axes)
        pos = sorted(int(a) % rank for a in axes)
        return self.b.unsqueeze(x, [p + (1 if x.batched else 0) for p in pos])

    def call_shape(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.shape() of tensors."""
        return Const(tuple(self.value(args[0]).shape))

    def call_len(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.len() of tensors."""
        shape = self.value(args[0]).shape
        if not shape:
            raise self.fail("len() of a scalar")
        return Const(shape[0])

    def call_tile(self, args: List[Item], kwargs: dict) -> Operand:
        """numpy.tile() of tensors."""
        self._arity("tile", args, 2, kwargs)
        x = self.b.as_val(self.value(args[0]))
        reps = self.static(args[1], "reps")
        reps = reps if isinstance(reps, list) else [reps]
        if len(reps) != x.rank:
            raise self.fail("tile() whose repetitions do not match the value's rank")
        shape = [d * int(r) for d, r in zip(x.shape, reps)]
        full = ([1] if x.batched else []) + [int(r) for r in reps]
        return self.b.emit("Tile", [x, self.b.int64s(full)], shape=shape, batched=x.batched, kind=x.kind)


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str) -> None:
        self.old = old

    def visit_Name(self, node: ast.Name) -> ast.Name:
        """The renamed variable becomes X."""
        return ast.Name("X", node.ctx) if node.id == self.old else node


# whole expressions of one tensor that are one ONNX op (the ONNX importer writes some of these)
_IDIOMS = {ast.dump(ast.parse(src, mode="eval")): op_type for src, op_type in (
    ("1 / (1 + numpy.exp(-X))", "Sigmoid"), ("1 / (1 + np.exp(-X))", "Sigmoid"), ("sigmoid(X)", "Sigmoid"),
    ("numpy.maximum(X, 0.0)", "Relu"), ("numpy.maximum(X, 0)", "Relu"), ("X * (X > 0)", "Relu"),
    ("relu(X)", "Relu"))}


def _idiom(op: Op) -> Optional[str]:
    """The ONNX op an expression of a single tensor spells out, if it is a known idiom."""
    tensors = [k for k, v in op.args.items() if isinstance(v, TensorRef)]
    if len(tensors) != 1 or len(op.args) != 1 or op.expression is None:
        return None
    tree = _Rename(tensors[0]).visit(ast.parse(op.expression.source, mode="eval"))
    return _IDIOMS.get(ast.dump(tree))


def translate_expression(builder: OnnxGraphBuilder, op: Op) -> Operand:
    """ONNX nodes computing an 'expr' op; returns its value (tensor or constant)."""
    idiom = _idiom(op)
    if idiom is not None:
        (ref,) = op.args.values()
        return builder.unary(idiom, builder.param(ref))
    return ExpressionTranslator(builder, op).translate()
