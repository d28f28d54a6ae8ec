"""Safe evaluation of MDF ``value`` expressions and function arguments.

Expressions come from untrusted files, so they are never handed to ``eval``/``exec``.
The text is parsed with ``ast.parse(mode="eval")``, checked against a small whitelist of
syntax and functions, and compiled once into nested Python closures that can then be
evaluated many times against an environment with the numpy or the torch backend.
"""
from __future__ import annotations

import ast
import functools
import logging
import math
import numbers
import operator
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from mdfbridge.errors import ExpressionError

logger = logging.getLogger(__name__)

MAX_LENGTH = 10_000          # characters of expression text
MAX_DEPTH = 100              # nesting depth of the expression tree
MAX_POWER = 1000             # largest constant exponent accepted for ``**``
MAX_ELEMENTS = 10**8         # largest array zeros/ones/full/tile may create
_MAX_INT_BITS = 10_000       # largest integer constant folding may produce

MODULE_ALIASES = frozenset({"numpy", "np", "math"})
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan}
KEYWORDS = frozenset({"axis", "keepdims", "axes"})

torch: Any = None  # bound by _load_torch() the first time lib="torch" is asked for


class _Missing(Exception):
    """Internal: a variable the expression reads is not in the environment."""


# ----------------------------------------------------------------------------- numpy impls
def _check_size(shape: Any, times: int = 1) -> None:
    """Refuse to create arrays of more than MAX_ELEMENTS elements."""
    dims = [shape] if np.ndim(shape) == 0 else list(np.asarray(shape).ravel())
    n = times
    for d in dims:
        d = int(d)
        if d < 0:
            raise ValueError(f"negative dimension {d}")
        n *= d
    if n > MAX_ELEMENTS:
        raise ExpressionError(f"array of {n} elements is larger than the limit of {MAX_ELEMENTS}")


def _np_erf(x: Any) -> Any:
    a = np.asarray(x, dtype=np.float64)
    return np.float64(math.erf(a)) if a.ndim == 0 else np.vectorize(math.erf, otypes=[np.float64])(a)


def _np_float(x: Any) -> Any:
    return float(x) if np.ndim(x) == 0 else np.asarray(x, dtype=np.float64)


def _np_int(x: Any) -> Any:
    return int(x) if np.ndim(x) == 0 else np.asarray(x).astype(np.int64)


def _np_sized(fn: Callable) -> Callable:
    def f(shape: Any, *rest: Any) -> Any:
        _check_size(shape)
        return fn(shape, *rest)
    return f


def _np_tile(x: Any, reps: Any) -> Any:
    _check_size(reps, np.size(x))
    return np.tile(x, reps)


def _pow(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int and abs(b) > MAX_POWER:
        raise ExpressionError(f"integer power with exponent {b} exceeds the limit of {MAX_POWER}")
    return a ** b


_BINOPS: dict[type, Callable] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                                 ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
                                 ast.Mod: operator.mod, ast.Pow: _pow, ast.MatMult: operator.matmul}

# ----------------------------------------------------------------------------- torch impls
def _load_torch() -> Any:
    global torch
    if torch is None:
        import torch as _torch
        torch = _torch
        logger.debug("expressions: torch backend loaded")
    return torch


def _has_tensor(x: Any) -> bool:
    return any(isinstance(v, torch.Tensor) or (isinstance(v, (list, tuple)) and _has_tensor(v)) for v in x)


def _tt(x: Any, like: Any = None) -> Any:
    """Convert x to a tensor (floats -> float64, or the dtype/device of ``like``)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (list, tuple)) and _has_tensor(x):
        return torch.stack(_tt_like(*x))
    a = np.asarray(x)
    if like is not None:
        if like.is_floating_point() or a.dtype.kind not in "fc":
            return torch.as_tensor(a, dtype=like.dtype, device=like.device)
        return torch.from_numpy(np.array(a)).to(like.device)
    return torch.from_numpy(np.array(a))


def _tt_like(*xs: Any) -> tuple:
    """Convert all args to tensors of one dtype: scalars follow the (first floating) tensor's dtype/device."""
    tensors = [x for x in xs if isinstance(x, torch.Tensor)]
    ref = next((t for t in tensors if t.is_floating_point()), tensors[0] if tensors else None)
    ts = tuple(x if isinstance(x, torch.Tensor) else _tt(x, ref) for x in xs)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in ts)) if ts else None
    return tuple(t if t.dtype == dtype else t.to(dtype) for t in ts)


def _t_arith(op: Callable) -> Callable:
    """A Python operator on tensors, keeping numpy's float64 where torch would pick float32."""
    def f(a: Any, b: Any) -> Any:
        if isinstance(a, torch.Tensor) and not a.is_floating_point():
            if isinstance(b, float) or (op is operator.truediv and not _is_float(b)):
                a = a.to(torch.float64)
        elif isinstance(b, torch.Tensor) and not b.is_floating_point():
            if isinstance(a, float) or (op is operator.truediv and not _is_float(a)):
                b = b.to(torch.float64)
        return op(a, b)
    return f


def _is_float(x: Any) -> bool:
    return isinstance(x, float) or (isinstance(x, torch.Tensor) and x.is_floating_point())


def _t_unary(name: str, floating: bool = True) -> Callable:
    def f(x: Any) -> Any:
        x = _tt(x)
        if floating and not x.is_floating_point():  # numpy computes these in float64
            x = x.to(torch.float64)
        return getattr(torch, name)(x)
    f.__name__ = f"torch_{name}"
    return f


def _t_binary(name: str) -> Callable:
    def f(a: Any, b: Any) -> Any:
        return getattr(torch, name)(*_tt_like(a, b))
    f.__name__ = f"torch_{name}"
    return f


def _t_where(c: Any, a: Any, b: Any) -> Any:
    return torch.where(_tt(c).to(torch.bool), *_tt_like(a, b))


def _t_clip(x: Any, lo: Any, hi: Any) -> Any:
    return torch.clamp(*_tt_like(x, lo, hi))


def _t_round(x: Any, decimals: int = 0) -> Any:
    return torch.round(_tt(x), decimals=int(decimals))


def _t_reduce(name: str) -> Callable:
    dim_fn = {"max": "amax", "min": "amin"}.get(name, name)  # torch.max(x, dim) returns (values, indices)

    def f(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        x = _tt(x)
        if name == "mean" and not x.is_floating_point():
            x = x.to(torch.float64)
        if axis is None:
            r = getattr(torch, name)(x)
            return r.reshape([1] * x.ndim) if keepdims else r
        dims = tuple(int(a) for a in axis) if isinstance(axis, (list, tuple)) else (int(axis),)
        if name in ("sum", "mean", "max", "min"):
            return getattr(torch, dim_fn)(x, dim=dims, keepdim=bool(keepdims))
        if len(dims) != 1:
            raise ValueError(f"{name} takes a single axis")
        return getattr(torch, dim_fn)(x, dim=dims[0], keepdim=bool(keepdims))
    f.__name__ = f"torch_{name}"
    return f


def _t_dot(a: Any, b: Any) -> Any:
    a, b = _tt_like(a, b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return torch.tensordot(a, b, dims=([a.ndim - 1], [0 if b.ndim == 1 else b.ndim - 2]))


def _t_transpose(x: Any, axes: Any = None) -> Any:
    x = _tt(x)
    return x.permute(*(reversed(range(x.ndim)) if axes is None else [int(a) for a in axes]))


def _shape(s: Any) -> tuple:
    return (int(s),) if np.ndim(s) == 0 else tuple(int(d) for d in s)


def _t_concatenate(seq: Any, axis: Any = 0) -> Any:
    ts = _tt_like(*seq)
    if axis is None:
        return torch.cat([t.reshape(-1) for t in ts])
    return torch.cat(ts, dim=int(axis))


def _t_full(shape: Any, value: Any) -> Any:
    _check_size(shape)
    v = _tt(value)
    return v.expand(_shape(shape)).clone()


def _t_sized(name: str) -> Callable:
    def f(shape: Any) -> Any:
        _check_size(shape)
        return getattr(torch, name)(_shape(shape), dtype=torch.float64)
    return f


def _t_tile(x: Any, reps: Any) -> Any:
    x = _tt(x)
    _check_size(reps, x.numel())
    return torch.tile(x, _shape(reps))


def _t_squeeze(x: Any, axis: Any = None) -> Any:
    x = _tt(x)
    return torch.squeeze(x) if axis is None else torch.squeeze(x, dim=_shape(axis))


def _t_expand_dims(x: Any, axis: Any) -> Any:
    x = _tt(x)
    for a in sorted(_shape(axis)):
        x = torch.unsqueeze(x, a)
    return x


def _t_float(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(torch.float64)
    return _np_float(x)


def _t_int(x: Any) -> Any:
    return x.to(torch.int64) if isinstance(x, torch.Tensor) else _np_int(x)


# ----------------------------------------------------------------------------- registry
class Function(NamedTuple):
    """One whitelisted function: numpy and torch implementations, elementwise flag, arity."""
    numpy: Callable
    torch: Callable
    elementwise: bool
    nargs: tuple[int, int] = (1, 1)  # min/max positional args (caps them: numpy's extra args include `out`)


_UNARY = {"exp": "exp", "log": "log", "log2": "log2", "log10": "log10", "sqrt": "sqrt", "abs": "abs",
          "sin": "sin", "cos": "cos", "tan": "tan", "arcsin": "asin", "arccos": "acos", "arctan": "atan",
          "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "sign": "sign", "floor": "floor", "ceil": "ceil",
          "square": "square", "logical_not": "logical_not"}
_KEEP_DTYPE = {"abs", "sign", "square", "logical_not"}
_BINARY = {"maximum": "maximum", "minimum": "minimum", "power": "pow", "logical_and": "logical_and",
           "logical_or": "logical_or", "heaviside": "heaviside"}

FUNCTIONS: dict[str, Function] = {
    **{n: Function(getattr(np, n), _t_unary(t, n not in _KEEP_DTYPE), True) for n, t in _UNARY.items()},
    **{n: Function(getattr(np, n), _t_binary(t), True, (2, 2)) for n, t in _BINARY.items()},
    "round": Function(np.round, _t_round, True, (1, 2)),
    "where": Function(np.where, _t_where, True, (3, 3)),
    "clip": Function(np.clip, _t_clip, True, (3, 3)),
    "erf": Function(_np_erf, _t_unary("erf"), True),
    "sigmoid": Function(lambda x: 1.0 / (1.0 + np.exp(-np.asarray(x))), _t_unary("sigmoid"), True),
    "relu": Function(lambda x: np.maximum(x, 0), _t_unary("relu", False), True),
    "float": Function(_np_float, _t_float, True),
    "int": Function(_np_int, _t_int, True),
    "zeros_like": Function(np.zeros_like, lambda x: torch.zeros_like(_tt(x)), True),
    "ones_like": Function(np.ones_like, lambda x: torch.ones_like(_tt(x)), True),
    **{n: Function(getattr(np, n), _t_reduce(n), False, (1, 2))
       for n in ("sum", "max", "min", "mean", "prod", "argmax", "argmin")},
    "dot": Function(np.dot, _t_dot, False, (2, 2)),
    "matmul": Function(np.matmul, _t_binary("matmul"), False, (2, 2)),
    "outer": Function(np.outer, lambda a, b: torch.outer(*(t.reshape(-1) for t in _tt_like(a, b))),
                      False, (2, 2)),
    "transpose": Function(np.transpose, _t_transpose, False, (1, 2)),
    "reshape": Function(np.reshape, lambda x, s: torch.reshape(_tt(x), _shape(s)), False, (2, 2)),
    "concatenate": Function(np.concatenate, _t_concatenate, False, (1, 2)),
    "stack": Function(np.stack, lambda seq, axis=0: torch.stack(_tt_like(*seq), dim=int(axis)), False, (1, 2)),
    "array": Function(np.array, _tt, False),
    "asarray": Function(np.asarray, _tt, False),
    "zeros": Function(_np_sized(np.zeros), _t_sized("zeros"), False),
    "ones": Function(_np_sized(np.ones), _t_sized("ones"), False),
    "full": Function(_np_sized(np.full), _t_full, False, (2, 2)),
    "tile": Function(_np_tile, _t_tile, False, (2, 2)),
    "squeeze": Function(np.squeeze, _t_squeeze, False, (1, 2)),
    "expand_dims": Function(np.expand_dims, _t_expand_dims, False, (2, 2)),
    "shape": Function(np.shape, lambda x: tuple(_tt(x).shape), False),
    "len": Function(len, len, False),
}
SUPPORTED_FUNCTIONS: tuple[str, ...] = tuple(sorted(FUNCTIONS))
_SIZED = {"zeros": 0, "ones": 0, "full": 0, "tile": 1}  # function -> index of its shape/reps argument


class _Lib:
    """A backend: the function table plus the few operations the syntax itself needs."""

    def __init__(self, name: str, funcs: dict[str, Callable], ops: dict[type, Callable], asarray: Callable,
                 foreign: tuple) -> None:
        self.name, self.funcs, self.ops, self.asarray, self.foreign = name, funcs, ops, asarray, foreign
        self.where, self.logical_not = funcs["where"], funcs["logical_not"]
        self.logical_and, self.logical_or = funcs["logical_and"], funcs["logical_or"]


_LIBS: dict[str, _Lib] = {
    "numpy": _Lib("numpy", {n: f.numpy for n, f in FUNCTIONS.items()}, _BINOPS, np.asarray, (list, tuple)),
}


def _get_lib(name: str) -> _Lib:
    lib = _LIBS.get(name)
    if lib is None:
        if name != "torch":
            raise ExpressionError(f"unknown lib {name!r}; use 'numpy' or 'torch'")
        _load_torch()
        ops = {k: _t_arith(op) for k, op in _BINOPS.items()}
        ops[ast.MatMult] = FUNCTIONS["matmul"].torch
        lib = _LIBS["torch"] = _Lib("torch", {n: f.torch for n, f in FUNCTIONS.items()}, ops, _tt,
                                    (list, tuple, np.ndarray, np.generic))
    return lib


# ----------------------------------------------------------------------------- compiler
_NOCONST = object()
Fn = Callable[[Mapping[str, Any], _Lib], Any]


class _C(NamedTuple):
    fn: Fn
    elementwise: bool
    const: Any = _NOCONST


_CMPOPS: dict[type, Callable] = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
                                 ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}
_UNOPS: dict[type, Callable] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_DESCRIBE = {ast.Lambda: "lambda", ast.ListComp: "comprehension", ast.SetComp: "comprehension",
             ast.DictComp: "comprehension", ast.GeneratorExp: "comprehension", ast.JoinedStr: "f-string",
             ast.NamedExpr: "assignment expression (:=)", ast.Starred: "starred argument",
             ast.Dict: "dict literal", ast.Set: "set literal", ast.Attribute: "attribute access",
             ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield"}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, complex)


class _Compiler:
    def __init__(self, text: str, where: str) -> None:
        self.text, self.where = text, where
        self.names: set[str] = set()
        self.constants: set[str] = set()

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"{message} in expression {self.text!r}", where=self.where or None)

    def reject(self, node: ast.AST) -> ExpressionError:
        what = _DESCRIBE.get(type(node), type(node).__name__)
        return self.fail(f"{what} is not allowed")

    def expr(self, node: ast.AST) -> _C:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise self.reject(node)
        return method(node)

    def _Constant(self, node: ast.Constant) -> _C:
        v = node.value
        if isinstance(v, (str, bytes)):
            raise self.fail("string constants are not allowed")
        if not _is_num(v):
            raise self.fail(f"constant {v!r} is not allowed")
        return _C(lambda env, L: v, True, v)

    def _Name(self, node: ast.Name) -> _C:
        n = node.id
        if n.startswith("_"):
            raise self.fail(f"name {n!r} is not allowed (names starting with '_' are reserved)")
        if n in CONSTANTS:
            self.constants.add(n)
            c = CONSTANTS[n]
            return _C(lambda env, L: env[n] if n in env else c, True)
        self.names.add(n)

        def load(env: Mapping[str, Any], L: _Lib) -> Any:
            try:
                v = env[n]
            except KeyError:
                raise _Missing(n) from None
            return L.asarray(v) if isinstance(v, L.foreign) else v
        return _C(load, True)

    def _Attribute(self, node: ast.Attribute) -> _C:
        if isinstance(node.value, ast.Name) and node.value.id in MODULE_ALIASES and node.attr in CONSTANTS:
            c = CONSTANTS[node.attr]
            return _C(lambda env, L: c, True, c)
        raise self.fail(f"attribute access {ast.unparse(node)!r} is not allowed")

    def _UnaryOp(self, node: ast.UnaryOp) -> _C:
        a = self.expr(node.operand)
        f = a.fn
        if isinstance(node.op, ast.Not):
            return _C(lambda env, L: L.logical_not(f(env, L)), a.elementwise)
        op = _UNOPS.get(type(node.op))
        if op is None:
            raise self.fail(f"operator {type(node.op).__name__} is not allowed")
        if _is_num(a.const):
            v = op(a.const)
            return _C(lambda env, L: v, True, v)
        return _C(lambda env, L: op(f(env, L)), a.elementwise)

    def _BinOp(self, node: ast.BinOp) -> _C:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(f"operator {type(node.op).__name__} is not allowed")
        a, b = self.expr(node.left), self.expr(node.right)
        if op is _pow and _is_num(b.const) and abs(b.const) > MAX_POWER:
            raise self.fail(f"exponent {b.const!r} exceeds the limit of {MAX_POWER}")
        if _is_num(a.const) and _is_num(b.const) and op is not operator.matmul:
            folded = self._fold(op, a.const, b.const)
            if folded is not _NOCONST:
                return _C(lambda env, L: folded, True, folded)
        fa, fb, key = a.fn, b.fn, type(node.op)
        elementwise = a.elementwise and b.elementwise and op is not operator.matmul
        return _C(lambda env, L: L.ops[key](fa(env, L), fb(env, L)), elementwise)

    def _fold(self, op: Callable, x: Any, y: Any) -> Any:
        """Evaluate an operation on two numeric constants now, refusing huge integers."""
        if op is _pow and type(x) is int and type(y) is int and y > 0 and x.bit_length() * y > _MAX_INT_BITS:
            raise self.fail(f"integer constant {ast.unparse(ast.Constant(x))[:20]}**{y} is too large")
        try:
            v = op(x, y)
        except (ArithmeticError, ValueError):
            return _NOCONST  # leave it to run time (e.g. 1/0), where the error is reported
        if isinstance(v, int) and v.bit_length() > _MAX_INT_BITS:
            raise self.fail("integer constant is too large")
        return v if _is_num(v) else _NOCONST

    def _Compare(self, node: ast.Compare) -> _C:
        parts = [self.expr(node.left)] + [self.expr(c) for c in node.comparators]
        ops = []
        for o in node.ops:
            if type(o) not in _CMPOPS:
                raise self.fail(f"comparison {type(o).__name__} is not allowed")
            ops.append(_CMPOPS[type(o)])
        elementwise = all(p.elementwise for p in parts)
        if len(ops) == 1:
            op, fa, fb = ops[0], parts[0].fn, parts[1].fn
            return _C(lambda env, L: op(fa(env, L), fb(env, L)), elementwise)
        fns = [p.fn for p in parts]

        def chain(env: Mapping[str, Any], L: _Lib) -> Any:
            left = fns[0](env, L)
            result = None
            for op, fn in zip(ops, fns[1:]):
                right = fn(env, L)
                r = op(left, right)
                result = r if result is None else L.logical_and(result, r)
                left = right
            return result
        return _C(chain, elementwise)

    def _BoolOp(self, node: ast.BoolOp) -> _C:
        parts = [self.expr(v) for v in node.values]
        fns = [p.fn for p in parts]
        is_and = isinstance(node.op, ast.And)

        def combine(env: Mapping[str, Any], L: _Lib) -> Any:
            op = L.logical_and if is_and else L.logical_or
            result = fns[0](env, L)
            for fn in fns[1:]:
                result = op(result, fn(env, L))
            return result
        return _C(combine, all(p.elementwise for p in parts))

    def _IfExp(self, node: ast.IfExp) -> _C:
        c, a, b = self.expr(node.test), self.expr(node.body), self.expr(node.orelse)
        fc, fa, fb = c.fn, a.fn, b.fn

        def ifexp(env: Mapping[str, Any], L: _Lib) -> Any:
            cond = fc(env, L)
            if isinstance(cond, (bool, np.bool_)):  # scalar condition: plain branch, no broadcasting
                return fa(env, L) if cond else fb(env, L)
            return L.where(cond, fa(env, L), fb(env, L))
        return _C(ifexp, c.elementwise and a.elementwise and b.elementwise)

    def _sequence(self, node: ast.List | ast.Tuple) -> Fn:
        """A list/tuple literal kept as a Python sequence (index, shape and sequence arguments)."""
        fns = [self.arg(e) for e in node.elts]
        kind = tuple if isinstance(node, ast.Tuple) else list
        return lambda env, L: kind([f(env, L) for f in fns])

    def _List(self, node: ast.List) -> _C:
        seq = self._sequence(node)
        return _C(lambda env, L: L.asarray(seq(env, L)), False)

    _Tuple = _List

    def arg(self, node: ast.AST) -> Fn:
        return self.arg_c(node).fn

    def arg_c(self, node: ast.AST) -> _C:
        """A call argument: list/tuple literals stay Python sequences (shapes, axes, sequences)."""
        return _C(self._sequence(node), False) if isinstance(node, (ast.List, ast.Tuple)) else self.expr(node)

    def index(self, node: ast.AST) -> Fn:
        if isinstance(node, ast.Slice):
            lo, hi, st = (None if p is None else self.expr(p).fn for p in (node.lower, node.upper, node.step))
            return lambda env, L: slice(lo and lo(env, L), hi and hi(env, L), st and st(env, L))
        if isinstance(node, ast.Tuple):
            fns = [self.index(e) for e in node.elts]
            return lambda env, L: tuple(f(env, L) for f in fns)
        c = self.expr(node)
        if c.const is not _NOCONST and type(c.const) is not int:
            raise self.fail(f"index {c.const!r} is not an integer")
        return c.fn

    def _literal(self, node: ast.AST) -> Any:
        """The value of a constant (folded) number or tuple/list of them, else None."""
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self._literal(e) for e in node.elts]
            return None if any(i is None for i in items) else items
        c = self.expr(node).const
        return None if c is _NOCONST else c

    def _Subscript(self, node: ast.Subscript) -> _C:
        fv, fi = self.expr(node.value).fn, self.index(node.slice)
        return _C(lambda env, L: fv(env, L)[fi(env, L)], False)

    def _Call(self, node: ast.Call) -> _C:
        func = node.func
        if isinstance(func, ast.Name) and not func.id.startswith("_"):
            name = func.id
        elif (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
              and func.value.id in MODULE_ALIASES and not func.attr.startswith("_")):
            name = func.attr
        else:
            raise self.fail(f"call of {ast.unparse(func)!r} is not allowed")
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise self.fail(f"function {ast.unparse(func)!r} is not supported; supported: "
                            + ", ".join(SUPPORTED_FUNCTIONS))
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.reject(a)
        kw: dict[str, Fn] = {}
        for k in node.keywords:
            if k.arg is None or k.arg not in KEYWORDS:
                raise self.fail(f"keyword argument {k.arg or '**'!r} is not allowed "
                                f"(allowed: {', '.join(sorted(KEYWORDS))})")
            kw[k.arg] = self.arg(k.value)
        n = len(node.args)
        if name in ("max", "min") and n >= 2:  # max(a, b, ...) means elementwise maximum
            if kw:
                raise self.fail(f"{name}() with several arguments takes no keyword arguments")
            parts = [self.expr(a) for a in node.args]
            fns, key = [p.fn for p in parts], "maximum" if name == "max" else "minimum"

            def chained(env: Mapping[str, Any], L: _Lib) -> Any:
                f = L.funcs[key]
                result = fns[0](env, L)
                for fn in fns[1:]:
                    result = f(result, fn(env, L))
                return result
            return _C(chained, all(p.elementwise for p in parts))
        lo, hi = spec.nargs
        if not lo <= n <= hi:
            raise self.fail(f"{name}() takes {lo if lo == hi else f'{lo} to {hi}'} positional "
                            f"argument{'s' if hi > 1 else ''}, got {n}")
        compiled = [self.arg_c(a) for a in node.args]
        args = [c.fn for c in compiled]
        if name in _SIZED:  # refuse huge constant shapes now, before anything runs
            shape = self._literal(node.args[_SIZED[name]])
            if shape is not None:
                try:
                    _check_size(shape)
                except ExpressionError as exc:
                    raise self.fail(str(exc)) from None
                except (ValueError, TypeError) as exc:
                    raise self.fail(f"bad shape {shape!r}: {exc}") from None
        elementwise = spec.elementwise and all(c.elementwise for c in compiled)
        if kw:
            return _C(lambda env, L: L.funcs[name](*[a(env, L) for a in args],
                                                   **{k: f(env, L) for k, f in kw.items()}), elementwise)
        if n == 1:
            a0 = args[0]
            return _C(lambda env, L: L.funcs[name](a0(env, L)), elementwise)
        return _C(lambda env, L: L.funcs[name](*[a(env, L) for a in args]), elementwise)


def _depth(tree: ast.AST) -> int:
    """Nesting depth of expression nodes, computed without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        for child in ast.iter_child_nodes(node):
            stack.append((child, d + 1 if isinstance(child, ast.expr) else d))
    return deepest


# ----------------------------------------------------------------------------- public API
class Expression:
    """A parsed, validated and compiled expression; evaluate it any number of times."""

    __slots__ = ("source", "names", "constants", "where", "_fn", "_elementwise")

    def __init__(self, source: str, names: frozenset[str], constants: frozenset[str], where: str,
                 fn: Fn, elementwise: bool) -> None:
        self.source, self.names, self.constants, self.where = source, names, constants, where
        self._fn, self._elementwise = fn, elementwise

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        """Evaluate with variables from ``env`` using the "numpy" or "torch" functions."""
        L = _get_lib(lib)
        try:
            return self._fn(env, L)
        except _Missing as exc:
            known = ", ".join(sorted(map(str, env))[:20]) or "none"
            raise ExpressionError(f"unknown variable {exc.args[0]!r} in expression {self.source!r} "
                                  f"(known: {known})", where=self.where or None) from None
        except ExpressionError as exc:  # a run-time limit (array size, integer power)
            raise ExpressionError(f"{exc} in expression {self.source!r}", where=self.where or None) from None
        except (ArithmeticError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise ExpressionError(f"evaluating {self.source!r} failed: {type(exc).__name__}: {exc}",
                                  where=self.where or None) from exc

    def is_elementwise(self) -> bool:
        """True if evaluating on a batch (leading axis) gives the row-by-row results."""
        return self._elementwise


def parse_expression(text: str | int | float, where: str = "") -> Expression:
    """Parse, validate and compile ``text`` (or a number) into an Expression; errors raise ExpressionError."""
    if not isinstance(text, (str, numbers.Real, np.bool_)):
        raise ExpressionError(f"expression must be a string or a number, not {type(text).__name__}",
                              where=where or None)
    return _parse(text, where)


@functools.lru_cache(maxsize=4096, typed=True)
def _parse(text: str | int | float, where: str) -> Expression:
    def fail(message: str) -> ExpressionError:
        return ExpressionError(f"{message} in expression {str(text)[:200]!r}", where=where or None)

    if isinstance(text, (bool, np.bool_)) or (isinstance(text, numbers.Real) and not isinstance(text, str)):
        v = bool(text) if isinstance(text, (bool, np.bool_)) else (
            int(text) if isinstance(text, numbers.Integral) else float(text))
        return Expression(repr(v), frozenset(), frozenset(), where, lambda env, L: v, True)
    if len(text) > MAX_LENGTH:
        raise fail(f"expression of {len(text)} characters is longer than the limit of {MAX_LENGTH}")
    source = text.strip()
    if not source:
        raise fail("empty expression")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise fail(f"syntax error: {exc.msg} (column {exc.offset})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise fail(f"cannot parse: {type(exc).__name__}") from None
    if _depth(tree.body) > MAX_DEPTH:
        raise fail(f"expression is nested deeper than the limit of {MAX_DEPTH}")
    compiler = _Compiler(source, where)
    compiled = compiler.expr(tree.body)
    logger.debug("compiled expression %r (names %s)", source, sorted(compiler.names))
    return Expression(source, frozenset(compiler.names), frozenset(compiler.constants), where,
                      compiled.fn, compiled.elementwise)


def expression_names(text: str | int | float) -> frozenset[str]:
    """The free variable names ``text`` reads (math constants pi/e/inf/nan excluded)."""
    return parse_expression(text).names
