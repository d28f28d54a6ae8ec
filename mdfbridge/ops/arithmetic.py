"""Elementwise arithmetic, comparisons, logic and elementary functions: the ops MDF `value` expressions are
made of (`+` is Add, `<` is Less, `exp(x)` is Exp, ...), with ONNX's names; `onnx::<Name>` is an alias of
each op ONNX has, with ONNX's argument names. numpy implementations are numpy's (Python numbers stay Python
numbers); torch implementations coerce their arguments like numpy would (mdfbridge.ops.torchlib)."""
from __future__ import annotations

import math
import operator
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from . import from_onnx, to_onnx, to_onnx_expr, torchlib
from .base import Alias, OnnxImport, OpDef, binary_specialise, keywords, register, torch_module


def _op(name: str, args: Tuple[str, ...], np_fn: Callable, torch_fn: Callable, description: str,
        expr_names: Tuple[str, ...] = (), onnx: Optional[Dict[str, str]] = None,
        defaults: Optional[Dict[str, Any]] = None, attrs: Tuple[str, ...] = (), llvm: Optional[Callable] = None,
        derivatives: Optional[Dict[str, str]] = None, formula: Optional[str] = None, **hooks: Any) -> OpDef:
    """Register an elementwise op; `onnx` (ONNX argument name -> ours) adds the alias `onnx::<name>`; `hooks`
    are more `OpDef` fields (onnx_export, onnx_import, ...)."""
    aliases = (Alias(f"onnx::{name}", onnx),) if onnx is not None else ()
    return register(OpDef(name, args, keywords(np_fn, args), keywords(torch_fn, args), defaults=defaults or {},
                          attrs=attrs, elementwise=True, description=description, aliases=aliases,
                          expr_names=expr_names, llvm=llvm, derivatives=derivatives or {}, formula=formula, **hooks))


def _onnx_unary(name: str, onnx_arg: str) -> Dict[str, Any]:
    """The ONNX export and import (opset 6 on) of the elementwise ONNX op `name` whose argument ONNX calls
    `onnx_arg`."""
    return {"onnx_export": to_onnx.unary(name),
            "onnx_import": (OnnxImport(name, 6, None, from_onnx.unary(f"onnx::{name}", onnx_arg)),)}


def _onnx_binary(name: str, bias: bool = False) -> Dict[str, Any]:
    """The ONNX export and import (opset 7 on) of the elementwise ONNX op `name`; with `bias`, the importer makes
    a constant operand added to a product with weights a learnable bias."""
    return {"onnx_export": to_onnx.binary(name),
            "onnx_import": (OnnxImport(name, 7, None, from_onnx.binary(f"onnx::{name}", bias)),)}


# --------------------------------------------------------------------------- scalar LLVM forms
# `e` is the LLVM backend's scalar emitter (importers/llvm_scalar.py); arguments are one element each.

def libm(function: str) -> Callable[..., Any]:
    """The scalar form `function(X)` of a C library function or LLVM intrinsic of one double."""
    def form(e: Any, X: Any) -> Any:
        return e.call(function, X)
    return form


def _maximum(e: Any, A: Any, B: Any) -> Any:
    """numpy.maximum: NaN when either is NaN, else the larger (A on ties)."""
    return e.select(e.isnan(A), A, e.select(e.compare(">=", A, B), A, B))


def _minimum(e: Any, A: Any, B: Any) -> Any:
    """numpy.minimum: NaN when either is NaN, else the smaller (A on ties)."""
    return e.select(e.isnan(A), A, e.select(e.compare("<=", A, B), A, B))


def _heaviside(e: Any, A: Any, B: Any) -> Any:
    """numpy.heaviside: 0 below 0, B at 0, 1 above, NaN for NaN."""
    return e.select(e.compare("<", A, 0.0), 0.0,
                    e.select(e.compare(">", A, 0.0), 1.0, e.select(e.compare("==", A, 0.0), B, A)))


def _sign(e: Any, X: Any) -> Any:
    """numpy.sign: -1, 0 or 1, NaN for NaN."""
    return e.select(e.compare(">", X, 0.0), 1.0,
                    e.select(e.compare("<", X, 0.0), -1.0, e.select(e.compare("==", X, 0.0), 0.0, X)))


def _ties(a: str, b: str) -> str:
    """d max(a, b) / d a as torch computes it (half the gradient each on ties)."""
    return f"numpy.where({a} > {b}, 1.0, numpy.where({a} == {b}, 0.5, 0.0))"


NO_GRADIENT = "0.0"  # comparisons, logic, rounding: torch gives their inputs no gradient through them


# --------------------------------------------------------------------------- operators

def _pow(A: Any, B: Any) -> Any:
    if type(A) is int and type(B) is int:  # Python ints grow without bound: check the result's size first
        from .budget import check_power

        check_power(A, B)
    return A ** B


# numpy implementations as plain functions of A and B: the executor calls them by keyword on its hot path
for _name, _fn, _np, _onnx, _desc, _llvm, _d in (
        ("Add", operator.add, lambda A, B: A + B, _onnx_binary("Add", bias=True), "A + B",
         lambda e, A, B: e.add(A, B), {"A": "1.0", "B": "1.0"}),
        ("Sub", operator.sub, lambda A, B: A - B, _onnx_binary("Sub", bias=True), "A - B",
         lambda e, A, B: e.sub(A, B), {"A": "1.0", "B": "-1.0"}),
        ("Mul", operator.mul, lambda A, B: A * B, _onnx_binary("Mul"), "A * B",
         lambda e, A, B: e.mul(A, B), {"A": "B", "B": "A"}),
        ("Div", operator.truediv, lambda A, B: A / B, _onnx_binary("Div"), "A / B",
         lambda e, A, B: e.div(A, B), {"A": "1.0 / B", "B": "-out / B"})):
    _op(_name, ("A", "B"), _np, torchlib.arith(_fn), _desc, onnx={}, llvm=_llvm, derivatives=_d,
        specialise=binary_specialise(_fn, torchlib.arith(_fn)), **_onnx)
_op("FloorDiv", ("A", "B"), lambda A, B: A // B, torchlib.arith(operator.floordiv), "A // B",
    onnx_export=to_onnx_expr.floor_div)
_op("Mod", ("A", "B"), lambda A, B: A % B, torchlib.arith(operator.mod), "A % B (Python's sign rule)",
    onnx_export=to_onnx_expr.mod)
_op("Pow", ("A", "B"), _pow, torchlib.arith(_pow), "A ** B", ("power",), onnx={"X": "A", "Y": "B"},
    llvm=lambda e, A, B: e.pow(A, B), onnx_export=to_onnx_expr.power,
    derivatives={"A": "numpy.where(B == 0, 0.0, B * A ** (B - 1))",
                 "B": "numpy.where(numpy.logical_and(A == 0, B >= 0), 0.0, out * numpy.log(A))"})

# (op, operator, description, LLVM comparison, the first ONNX opset importing it)
for _name, _fn, _desc, _sym, _since in (("Less", operator.lt, "A < B", "<", 7),
                                        ("LessOrEqual", operator.le, "A <= B", "<=", 12),
                                        ("Greater", operator.gt, "A > B", ">", 7),
                                        ("GreaterOrEqual", operator.ge, "A >= B", ">=", 12),
                                        ("Equal", operator.eq, "A == B", "==", 7)):
    _op(_name, ("A", "B"), _fn, torchlib.arith(_fn), _desc, onnx={},
        llvm=lambda e, A, B, _sym=_sym: e.compare(_sym, A, B), derivatives={"A": NO_GRADIENT, "B": NO_GRADIENT},
        onnx_export=to_onnx.binary(_name, out_kind="bool"),
        onnx_import=(OnnxImport(_name, _since, None, from_onnx.binary(f"onnx::{_name}")),))
_op("NotEqual", ("A", "B"), operator.ne, torchlib.arith(operator.ne), "A != B",
    llvm=lambda e, A, B: e.compare("!=", A, B), derivatives={"A": NO_GRADIENT, "B": NO_GRADIENT},
    onnx_export=to_onnx_expr.not_equal)
_op("And", ("A", "B"), np.logical_and, torchlib.binary("logical_and"), "A and B (elementwise)",
    ("logical_and",), onnx={}, llvm=lambda e, A, B: e.logical_and(A, B),
    derivatives={"A": NO_GRADIENT, "B": NO_GRADIENT}, onnx_export=to_onnx.binary("And", kind="bool"),
    onnx_import=(OnnxImport("And", 7, None, from_onnx.binary("onnx::And")),))
_op("Or", ("A", "B"), np.logical_or, torchlib.binary("logical_or"), "A or B (elementwise)", ("logical_or",),
    onnx={}, llvm=lambda e, A, B: e.logical_or(A, B), derivatives={"A": NO_GRADIENT, "B": NO_GRADIENT},
    onnx_export=to_onnx.binary("Or", kind="bool"),
    onnx_import=(OnnxImport("Or", 7, None, from_onnx.binary("onnx::Or")),))
_op("Not", ("X",), np.logical_not, torchlib.unary("logical_not", False), "not X (elementwise)",
    ("logical_not",), onnx={}, llvm=lambda e, X: e.logical_not(X), derivatives={"X": NO_GRADIENT},
    onnx_export=to_onnx.unary("Not", kind="bool"),
    onnx_import=(OnnxImport("Not", 1, None, from_onnx.unary("onnx::Not", "X")),))
_op("Neg", ("X",), operator.neg, lambda X: -X, "-X", onnx={}, llvm=lambda e, X: e.neg(X), derivatives={"X": "-1.0"},
    **_onnx_unary("Neg", "X"))
_op("Maximum", ("A", "B"), np.maximum, torchlib.binary("maximum"), "elementwise max(A, B)", ("maximum",),
    llvm=_maximum, derivatives={"A": _ties("A", "B"), "B": _ties("B", "A")}, onnx_export=to_onnx_expr.maximum)
_op("Minimum", ("A", "B"), np.minimum, torchlib.binary("minimum"), "elementwise min(A, B)", ("minimum",),
    llvm=_minimum, derivatives={"A": _ties("B", "A"), "B": _ties("A", "B")}, onnx_export=to_onnx.binary("Min"))
_op("Heaviside", ("A", "B"), np.heaviside, torchlib.binary("heaviside"), "0 below 0, B at 0, 1 above",
    ("heaviside",), llvm=_heaviside, onnx_export=to_onnx_expr.heaviside)


# --------------------------------------------------------------------------- elementary functions

def _unary(name: str, np_fn: Callable, torch_name: str, expr: Tuple[str, ...], onnx_arg: Optional[str] = None,
           floating: bool = True, llvm: Optional[Callable] = None, derivative: Optional[str] = None,
           formula: Optional[str] = None, onnx_export: Optional[to_onnx.OnnxExport] = None,
           float64_form: Optional[to_onnx.Float64Form] = None) -> None:
    """Register an elementwise function of X; an op ONNX has (`onnx_arg`: ONNX's name of its argument) exports as
    that ONNX op (`float64_form`: how float64 models compute it, see to_onnx.elementwise) unless `onnx_export`
    says otherwise."""
    if onnx_arg is not None and name in _ONNX_ROUND_TRIP:
        hooks = _onnx_unary(name, onnx_arg)
    elif onnx_arg is not None or onnx_export is not None:
        hooks = {"onnx_export": onnx_export or to_onnx.unary(name, float64_form=float64_form)}
    else:
        hooks = {}
    _op(name, ("X",), np_fn, torchlib.unary(torch_name, floating), f"{torch_name}(X)", expr,
        onnx=None if onnx_arg is None else ({onnx_arg: "X"} if onnx_arg != "X" else {}), llvm=llvm,
        derivatives=None if derivative is None else {"X": derivative}, formula=formula, **hooks)


_ONNX_ROUND_TRIP = ("Exp", "Log", "Tanh", "Sigmoid")  # unary ops with ONNX export and import in their records


def _np_erf(X: Any) -> Any:
    a = np.asarray(X, dtype=np.float64)
    return np.float64(math.erf(a)) if a.ndim == 0 else np.vectorize(math.erf, otypes=[np.float64])(a)


_ARCSIN = "1.0 / numpy.sqrt(1.0 - X ** 2)"
_NO_F64 = to_onnx.no_float64_kernel
for _name, _np1, _t, _expr, _oa, _form, _dx, _f64 in (
        ("Exp", np.exp, "exp", ("exp",), "input", libm("exp"), "out", None),
        ("Log", np.log, "log", ("log",), "input", libm("log"), "1.0 / X", None),
        ("Sqrt", np.sqrt, "sqrt", ("sqrt",), "X", libm("llvm.sqrt.f64"), "0.5 / out", None),
        ("Sin", np.sin, "sin", ("sin",), "input", libm("sin"), "numpy.cos(X)", None),
        ("Cos", np.cos, "cos", ("cos",), "input", libm("cos"), "-numpy.sin(X)", None),
        ("Tan", np.tan, "tan", ("tan",), "input", libm("tan"), "1.0 + out ** 2", to_onnx.tan_float64),
        ("Asin", np.arcsin, "asin", ("arcsin",), "input", libm("asin"), _ARCSIN, _NO_F64("Asin")),
        ("Acos", np.arccos, "acos", ("arccos",), "input", libm("acos"), "-" + _ARCSIN, _NO_F64("Acos")),
        ("Atan", np.arctan, "atan", ("arctan",), "input", libm("atan"), "1.0 / (1.0 + X ** 2)", _NO_F64("Atan")),
        ("Sinh", np.sinh, "sinh", ("sinh",), "input", libm("sinh"), "numpy.cosh(X)", to_onnx.sinh_float64),
        ("Cosh", np.cosh, "cosh", ("cosh",), "input", libm("cosh"), "numpy.sinh(X)", to_onnx.cosh_float64),
        ("Tanh", np.tanh, "tanh", ("tanh",), "input", libm("tanh"), "1.0 - out ** 2", None),
        ("Floor", np.floor, "floor", ("floor",), "X", libm("llvm.floor.f64"), NO_GRADIENT, None),
        ("Ceil", np.ceil, "ceil", ("ceil",), "X", libm("llvm.ceil.f64"), NO_GRADIENT, None),
        ("Erf", _np_erf, "erf", ("erf",), "input", libm("erf"), "2.0 / numpy.sqrt(pi) * numpy.exp(-X ** 2)",
         _NO_F64("Erf"))):
    _unary(_name, _np1, _t, _expr, _oa, llvm=_form, derivative=_dx, float64_form=_f64)
_unary("Log2", np.log2, "log2", ("log2",), llvm=libm("log2"), derivative="1.0 / (X * numpy.log(2.0))",
       onnx_export=to_onnx_expr.logarithm(2.0))
_unary("Log10", np.log10, "log10", ("log10",), llvm=libm("log10"), derivative="1.0 / (X * numpy.log(10.0))",
       onnx_export=to_onnx_expr.logarithm(10.0))
_unary("Sigmoid", lambda X: 1.0 / (1.0 + np.exp(-np.asarray(X))), "sigmoid", ("sigmoid",), "X",
       formula="1.0 / (1.0 + numpy.exp(-X))", derivative="out * (1.0 - out)")
for _name, _np2, _t, _expr, _oa, _form, _dx in (
        ("Abs", np.abs, "abs", ("abs",), "X", libm("llvm.fabs.f64"), "numpy.sign(X)"),
        ("Sign", np.sign, "sign", ("sign",), "input", _sign, NO_GRADIENT)):
    _unary(_name, _np2, _t, _expr, _oa, floating=False, llvm=_form, derivative=_dx)
_unary("Square", np.square, "square", ("square",), floating=False, llvm=lambda e, X: e.mul(X, X),
       derivative="2.0 * X", onnx_export=to_onnx_expr.square)


def _identity(X: Any) -> Any:
    return X


_op("Identity", ("X",), _identity, _identity, "X", onnx={"input": "X"}, llvm=lambda e, X: X,
    derivatives={"X": "1.0"}, onnx_export=to_onnx.identity,
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


_op("Float", ("X",), _np_float, _t_float, "X as float64", ("float",), llvm=lambda e, X: X,
    derivatives={"X": "1.0"}, onnx_export=to_onnx_expr.to_float)
_op("Int", ("X",), _np_int, _t_int, "X truncated to integers", ("int",), onnx_export=to_onnx_expr.to_int)
_op("Round", ("X", "decimals"), lambda X, decimals=0: np.round(X, decimals),
    lambda X, decimals=0: torch_module().round(torchlib.tt(X), decimals=int(decimals)), "X rounded half to even",
    ("round",), defaults={"decimals": 0}, attrs=("decimals",), onnx_export=to_onnx_expr.round_half_even)
_op("ZerosLike", ("X",), np.zeros_like, lambda X: torch_module().zeros_like(torchlib.tt(X)), "zeros shaped as X",
    ("zeros_like",), onnx_export=to_onnx_expr.filled_like(0.0))
_op("OnesLike", ("X",), np.ones_like, lambda X: torch_module().ones_like(torchlib.tt(X)), "ones shaped as X",
    ("ones_like",), onnx_export=to_onnx_expr.filled_like(1.0))
_op("Where", ("condition", "X", "Y"), np.where,
    lambda condition, X, Y: torch_module().where(torchlib.tt(condition).to(torch_module().bool),
                                                  *torchlib.tt_like(X, Y)),
    "X where condition holds, else Y", ("where",), onnx={},
    llvm=lambda e, condition, X, Y: e.select(condition, X, Y),
    derivatives={"condition": NO_GRADIENT, "X": "numpy.where(condition, 1.0, 0.0)",
                 "Y": "numpy.where(condition, 0.0, 1.0)"}, onnx_export=to_onnx_expr.where,
    onnx_import=(OnnxImport("Where", 9, None, from_onnx.elementwise("onnx::Where", ("condition", "X", "Y"))),))
_op("Clip", ("X", "lo", "hi"), np.clip, lambda X, lo, hi: torch_module().clamp(*torchlib.tt_like(X, lo, hi)),
    "X limited to [lo, hi]", ("clip",), onnx={"input": "X", "min": "lo", "max": "hi"},
    llvm=lambda e, X, lo, hi: _minimum(e, _maximum(e, X, lo), hi),
    derivatives={"X": "numpy.where(numpy.logical_and(X >= lo, X <= hi), 1.0, 0.0)"}, onnx_export=to_onnx_expr.clip)
_op("Softplus", ("X",), lambda X: np.log(1.0 + np.exp(X)),
    lambda X: torch_module().log(1.0 + torch_module().exp(torchlib.tt(X))), "log(1 + exp(X))", onnx={},
    formula="numpy.log(1.0 + numpy.exp(X))", derivatives={"X": "1.0 / (1.0 + numpy.exp(-X))"},
    **_onnx_unary("Softplus", "X"))
