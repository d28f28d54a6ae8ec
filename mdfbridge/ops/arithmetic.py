"""Elementwise arithmetic, comparisons, logic and elementary functions: the ops MDF `value` expressions are
made of (`+` is Add, `<` is Less, `exp(x)` is Exp, ...), with ONNX's names; `onnx::<Name>` is an alias of
each op ONNX has, with ONNX's argument names. numpy implementations are numpy's (Python numbers stay Python
numbers); torch implementations coerce their arguments like numpy would (mdfbridge.ops.torchlib)."""
from __future__ import annotations

import math
import operator
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from . import from_onnx, to_onnx, torchlib
from .base import Alias, OnnxImport, OpDef, keywords, register, torch_module


def _op(name: str, args: Tuple[str, ...], np_fn: Callable, torch_fn: Callable, description: str,
        expr_names: Tuple[str, ...] = (), onnx: Optional[Dict[str, str]] = None,
        defaults: Optional[Dict[str, Any]] = None, attrs: Tuple[str, ...] = (), **hooks: Any) -> OpDef:
    """Register an elementwise op; `onnx` (ONNX argument name -> ours) adds the alias `onnx::<name>`; `hooks`
    are more `OpDef` fields (onnx_export, onnx_import, ...)."""
    aliases = (Alias(f"onnx::{name}", onnx),) if onnx is not None else ()
    return register(OpDef(name, args, keywords(np_fn, args), keywords(torch_fn, args), defaults=defaults or {},
                          attrs=attrs, elementwise=True, description=description, aliases=aliases,
                          expr_names=expr_names, **hooks))


def _names(*names: str) -> Tuple[str, ...]:
    """Expression function names (called bare or as numpy./np./math. attributes)."""
    return names


def _onnx_unary(name: str, onnx_arg: str) -> Dict[str, Any]:
    """The ONNX export and import (opset 6 on) of the elementwise ONNX op `name` whose argument ONNX calls
    `onnx_arg`."""
    return {"onnx_export": to_onnx.unary(name),
            "onnx_import": (OnnxImport(name, 6, None, from_onnx.unary(f"onnx::{name}", onnx_arg)),)}


# --------------------------------------------------------------------------- operators

MAX_POWER = 1000  # the largest integer exponent an integer power may have


def _pow(A: Any, B: Any) -> Any:
    if type(A) is int and type(B) is int and abs(B) > MAX_POWER:
        from ..errors import ExpressionError

        raise ExpressionError(f"integer power with exponent {B} exceeds the limit of {MAX_POWER}")
    return A ** B


# numpy implementations as plain functions of A and B: the executor calls them by keyword on its hot path
for _name, _fn, _np, _onnx, _desc in (
        ("Add", operator.add, lambda A, B: A + B, True, "A + B"),
        ("Sub", operator.sub, lambda A, B: A - B, True, "A - B"),
        ("Mul", operator.mul, lambda A, B: A * B, True, "A * B"),
        ("Div", operator.truediv, lambda A, B: A / B, True, "A / B"),
        ("FloorDiv", operator.floordiv, lambda A, B: A // B, False, "A // B"),
        ("Mod", operator.mod, lambda A, B: A % B, False, "A % B (Python's sign rule)")):
    _op(_name, ("A", "B"), _np, torchlib.arith(_fn), _desc, onnx={} if _onnx else None,
        **({"onnx_export": to_onnx.binary(_name), "onnx_import": (OnnxImport(
            _name, 7, None, from_onnx.binary(f"onnx::{_name}", _name in ("Add", "Sub"))),)} if _onnx else {}))
_op("Pow", ("A", "B"), _pow, torchlib.arith(_pow), "A ** B", _names("power"), onnx={"X": "A", "Y": "B"})

for _name, _fn, _desc in (("Less", operator.lt, "A < B"), ("LessOrEqual", operator.le, "A <= B"),
                          ("Greater", operator.gt, "A > B"), ("GreaterOrEqual", operator.ge, "A >= B"),
                          ("Equal", operator.eq, "A == B")):
    _op(_name, ("A", "B"), _fn, torchlib.arith(_fn), _desc, onnx={})
_op("NotEqual", ("A", "B"), operator.ne, torchlib.arith(operator.ne), "A != B")
_op("And", ("A", "B"), np.logical_and, torchlib.binary("logical_and"), "A and B (elementwise)",
    _names("logical_and"), onnx={})
_op("Or", ("A", "B"), np.logical_or, torchlib.binary("logical_or"), "A or B (elementwise)", _names("logical_or"),
    onnx={})
_op("Not", ("X",), np.logical_not, torchlib.unary("logical_not", False), "not X (elementwise)",
    _names("logical_not"), onnx={})
_op("Neg", ("X",), operator.neg, lambda X: -X, "-X", onnx={}, **_onnx_unary("Neg", "X"))
_op("Maximum", ("A", "B"), np.maximum, torchlib.binary("maximum"), "elementwise max(A, B)", _names("maximum"))
_op("Minimum", ("A", "B"), np.minimum, torchlib.binary("minimum"), "elementwise min(A, B)", _names("minimum"))
_op("Heaviside", ("A", "B"), np.heaviside, torchlib.binary("heaviside"), "0 below 0, B at 0, 1 above",
    _names("heaviside"))


# --------------------------------------------------------------------------- elementary functions

_ONNX_ROUND_TRIP = ("Exp", "Log", "Tanh", "Sigmoid")  # unary ops with ONNX export and import in their records


def _unary(name: str, np_fn: Callable, torch_name: str, expr: Tuple[str, ...], onnx_arg: Optional[str] = None,
           floating: bool = True) -> None:
    hooks = _onnx_unary(name, onnx_arg) if onnx_arg is not None and name in _ONNX_ROUND_TRIP else {}
    _op(name, ("X",), np_fn, torchlib.unary(torch_name, floating), f"{torch_name}(X)", _names(*expr),
        onnx=None if onnx_arg is None else ({onnx_arg: "X"} if onnx_arg != "X" else {}), **hooks)


def _np_erf(X: Any) -> Any:
    a = np.asarray(X, dtype=np.float64)
    return np.float64(math.erf(a)) if a.ndim == 0 else np.vectorize(math.erf, otypes=[np.float64])(a)


for _name, _np, _t, _expr, _oa in (
        ("Exp", np.exp, "exp", ("exp",), "input"), ("Log", np.log, "log", ("log",), "input"),
        ("Log2", np.log2, "log2", ("log2",), None), ("Log10", np.log10, "log10", ("log10",), None),
        ("Sqrt", np.sqrt, "sqrt", ("sqrt",), "X"), ("Sin", np.sin, "sin", ("sin",), "input"),
        ("Cos", np.cos, "cos", ("cos",), "input"), ("Tan", np.tan, "tan", ("tan",), "input"),
        ("Asin", np.arcsin, "asin", ("arcsin",), "input"), ("Acos", np.arccos, "acos", ("arccos",), "input"),
        ("Atan", np.arctan, "atan", ("arctan",), "input"), ("Sinh", np.sinh, "sinh", ("sinh",), "input"),
        ("Cosh", np.cosh, "cosh", ("cosh",), "input"), ("Tanh", np.tanh, "tanh", ("tanh",), "input"),
        ("Floor", np.floor, "floor", ("floor",), "X"), ("Ceil", np.ceil, "ceil", ("ceil",), "X"),
        ("Erf", _np_erf, "erf", ("erf",), "input"),
        ("Sigmoid", lambda X: 1.0 / (1.0 + np.exp(-np.asarray(X))), "sigmoid", ("sigmoid",), "X")):
    _unary(_name, _np, _t, _expr, _oa)
for _name, _np, _t, _expr, _oa in (("Abs", np.abs, "abs", ("abs",), "X"), ("Sign", np.sign, "sign", ("sign",), "input"),
                                   ("Square", np.square, "square", ("square",), None)):
    _unary(_name, _np, _t, _expr, _oa, floating=False)


def _identity(X: Any) -> Any:
    return X


_op("Identity", ("X",), _identity, _identity, "X", onnx={"input": "X"}, onnx_export=to_onnx.identity,
    onnx_import=(OnnxImport("Identity", 1, None, from_onnx.unary("onnx::Identity", "input")),
                 OnnxImport("Dropout", 1, None, from_onnx.dropout, constant_inputs=(1, 2)),
                 OnnxImport("Cast", 6, None, from_onnx.cast)))


def _np_float(X: Any) -> Any:
    return float(X) if np.ndim(X) == 0 else np.asarray(X, dtype=np.float64)


def _np_int(X: Any) -> Any:
    return int(X) if np.ndim(X) == 0 else np.asarray(X).astype(np.int64)


def _t_float(X: Any) -> Any:
    torch = torch_module()
    if isinstance(X, torch.Tensor):
        return X if X.is_floating_point() else X.to(torch.float64)
    return _np_float(X)


def _t_int(X: Any) -> Any:
    torch = torch_module()
    return X.to(torch.int64) if isinstance(X, torch.Tensor) else _np_int(X)


_op("Float", ("X",), _np_float, _t_float, "X as float64", _names("float"))
_op("Int", ("X",), _np_int, _t_int, "X truncated to integers", _names("int"))
_op("Round", ("X", "decimals"), lambda X, decimals=0: np.round(X, decimals),
    lambda X, decimals=0: torch_module().round(torchlib.tt(X), decimals=int(decimals)), "X rounded half to even",
    _names("round"), defaults={"decimals": 0}, attrs=("decimals",))
_op("ZerosLike", ("X",), np.zeros_like, lambda X: torch_module().zeros_like(torchlib.tt(X)), "zeros shaped as X",
    _names("zeros_like"))
_op("OnesLike", ("X",), np.ones_like, lambda X: torch_module().ones_like(torchlib.tt(X)), "ones shaped as X",
    _names("ones_like"))
_op("Where", ("condition", "X", "Y"), np.where,
    lambda condition, X, Y: torch_module().where(torchlib.tt(condition).to(torch_module().bool),
                                                  *torchlib.tt_like(X, Y)),
    "X where condition holds, else Y", _names("where"), onnx={})
_op("Clip", ("X", "lo", "hi"), np.clip, lambda X, lo, hi: torch_module().clamp(*torchlib.tt_like(X, lo, hi)),
    "X limited to [lo, hi]", _names("clip"), onnx={"input": "X", "min": "lo", "max": "hi"})
