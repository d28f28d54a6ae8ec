"""Scalar LLVM IR for the whitelisted numpy expressions the LLVM backend compiles (one element at a time).

The expressions are the registry's derivative forms (mdfbridge/ops.py `OpDef.derivative`), the backend's
forward forms of the elementwise transfer functions, and the affine `expr` ops of compositions. Text is
parsed with `ast` (never evaluated); anything outside the small set below raises UnsupportedError.

Values are Python floats while they are constant (folded with the same IEEE double arithmetic numpy uses),
`double` IR values per element otherwise; comparisons give `i1` (turned into 0.0/1.0 like numpy's bools).
`numpy.sum(e)` is a reduction over the op's last (only) per-trial axis: the caller computes it in a loop
before the element loop (see `reductions`).
"""
from __future__ import annotations

import ast
import math
from typing import Callable, Dict, List, Union

from llvmlite import ir

from ..errors import UnsupportedError

DOUBLE = ir.DoubleType()
BOOL = ir.IntType(1)
Value = Union[float, bool, ir.Value]
Binder = Callable[[str], Value]

MODULES = frozenset({"numpy", "np", "math"})
CONSTANTS = {"pi": math.pi, "e": math.e}
# numpy name -> C library function (resolved in the process by MCJIT); sqrt and abs are LLVM intrinsics
LIBM = {"exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "tan": "tan", "sinh": "sinh", "cosh": "cosh",
        "tanh": "tanh", "arctan": "atan", "arcsin": "asin", "arccos": "acos", "atan": "atan", "asin": "asin",
        "acos": "acos"}
INTRINSICS = {"sqrt": "llvm.sqrt.f64", "abs": "llvm.fabs.f64", "fabs": "llvm.fabs.f64"}
_FCMP = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}
_PYCMP = {ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b, ast.Lt: lambda a, b: a < b,
          ast.LtE: lambda a, b: a <= b, ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b}


def declare_math(module: ir.Module, name: str) -> ir.Function:
    """`double name(double)` from the C library or an LLVM intrinsic, declared once per module."""
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(DOUBLE, [DOUBLE]), name)
    fn.attributes.add("nounwind")
    return fn


def declare_pow(module: ir.Module) -> ir.Function:
    """`double pow(double, double)` from the C library, declared once per module."""
    if "pow" in module.globals:
        return module.globals["pow"]
    fn = ir.Function(module, ir.FunctionType(DOUBLE, [DOUBLE, DOUBLE]), "pow")
    fn.attributes.add("nounwind")
    return fn


def parse(source: str, where: str) -> ast.expr:
    """The expression tree of `source` (syntax errors become UnsupportedError naming `where`)."""
    try:
        return ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise UnsupportedError(f"cannot parse expression {source!r}: {exc.msg}", where=where) from None


def _func_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in MODULES:
        return node.attr
    return ""


def is_sum(node: ast.AST) -> bool:
    """True for `numpy.sum(e)` (optionally with axis=-1 and keepdims)."""
    return isinstance(node, ast.Call) and _func_name(node.func) == "sum" and len(node.args) == 1


def reductions(tree: ast.expr) -> List[ast.Call]:
    """The `numpy.sum(...)` calls of an expression, innermost first (each is computed before the element loop)."""
    found = [n for n in ast.walk(tree) if is_sum(n)]
    return list(reversed(found))


class ScalarEmitter:
    """Emits one expression tree as scalar IR at the builder's position."""

    def __init__(self, builder: ir.IRBuilder, bind: Binder, where: str,
                 reduced: Dict[int, ir.Value] | None = None) -> None:
        self.b = builder
        self.bind = bind
        self.where = where
        self.reduced = reduced or {}

    def fail(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{what} is not supported by the llvm backend; use backend 'torch'", where=self.where)

    # ------------------------------------------------------------------ conversions
    def as_double(self, v: Value) -> Value:
        """A number stays a number; an i1 becomes 0.0/1.0 like a numpy bool in arithmetic."""
        if isinstance(v, bool):
            return float(v)
        if isinstance(v, (int, float)):
            return float(v)
        if v.type == BOOL:
            return self.b.uitofp(v, DOUBLE)
        return v

    def ir(self, v: Value) -> ir.Value:
        """The IR value of `v` (constants materialised)."""
        v = self.as_double(v)
        return ir.Constant(DOUBLE, v) if isinstance(v, float) else v

    # ------------------------------------------------------------------ tree walk
    def emit(self, node: ast.AST) -> Value:
        """Emit `node`; returns a float (constant), a double value or an i1 value."""
        if id(node) in self.reduced:
            return self.reduced[id(node)]
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise self.fail(f"syntax {type(node).__name__}")
        return method(node)

    def _Constant(self, node: ast.Constant) -> Value:
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise self.fail(f"constant {node.value!r}")
        return float(node.value)

    def _Name(self, node: ast.Name) -> Value:
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        return self.bind(node.id)

    def _Attribute(self, node: ast.Attribute) -> Value:
        if isinstance(node.value, ast.Name) and node.value.id in MODULES and node.attr in CONSTANTS:
            return CONSTANTS[node.attr]
        raise self.fail(f"attribute '{ast.unparse(node)}'")

    def _UnaryOp(self, node: ast.UnaryOp) -> Value:
        v = self.as_double(self.emit(node.operand))
        if isinstance(node.op, ast.UAdd):
            return v
        if isinstance(node.op, ast.USub):
            return -v if isinstance(v, float) else self.b.fneg(v)
        raise self.fail(f"operator {type(node.op).__name__}")

    def _BinOp(self, node: ast.BinOp) -> Value:
        a = self.as_double(self.emit(node.left))
        if isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant):
            return self._power(a, node.right.value)
        c = self.as_double(self.emit(node.right))
        ops = {ast.Add: ("fadd", lambda x, y: x + y), ast.Sub: ("fsub", lambda x, y: x - y),
               ast.Mult: ("fmul", lambda x, y: x * y), ast.Div: ("fdiv", _divide)}
        if type(node.op) not in ops:
            raise self.fail(f"operator {type(node.op).__name__}")
        name, fold = ops[type(node.op)]
        if isinstance(a, float) and isinstance(c, float):
            return fold(a, c)
        return getattr(self.b, name)(self.ir(a), self.ir(c))

    def _power(self, a: Value, exponent: object) -> Value:
        """numpy's fast scalar powers (x**2 is x*x, x**0.5 is sqrt); others go through C pow."""
        if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
            raise self.fail(f"power {exponent!r}")
        if isinstance(a, float):
            return a ** float(exponent)
        if exponent == 2:
            return self.b.fmul(a, a)
        if exponent == 1:
            return a
        if exponent == 0.5:
            return self.b.call(declare_math(self.b.module, INTRINSICS["sqrt"]), [a])
        if exponent == -1:
            return self.b.fdiv(ir.Constant(DOUBLE, 1.0), a)
        return self.b.call(declare_pow(self.b.module), [a, ir.Constant(DOUBLE, float(exponent))])

    def _Compare(self, node: ast.Compare) -> Value:
        if len(node.ops) != 1 or type(node.ops[0]) not in _FCMP:
            raise self.fail(f"comparison '{ast.unparse(node)}'")
        a = self.as_double(self.emit(node.left))
        c = self.as_double(self.emit(node.comparators[0]))
        if isinstance(a, float) and isinstance(c, float):
            return _PYCMP[type(node.ops[0])](a, c)
        op = _FCMP[type(node.ops[0])]
        # numpy: comparisons with NaN are False except !=
        return (self.b.fcmp_unordered(op, self.ir(a), self.ir(c)) if op == "!="
                else self.b.fcmp_ordered(op, self.ir(a), self.ir(c)))

    def _Call(self, node: ast.Call) -> Value:
        name = _func_name(node.func)
        if name == "where" and len(node.args) == 3 and not node.keywords:
            cond = self.emit(node.args[0])
            a, c = self.as_double(self.emit(node.args[1])), self.as_double(self.emit(node.args[2]))
            if isinstance(cond, (bool, float, int)):
                return a if cond else c
            if cond.type != BOOL:
                cond = self.b.fcmp_unordered("!=", cond, ir.Constant(DOUBLE, 0.0))
            return self.b.select(cond, self.ir(a), self.ir(c))
        if is_sum(node):
            raise self.fail(f"reduction '{ast.unparse(node)}' here")
        if (name in LIBM or name in INTRINSICS) and len(node.args) == 1 and not node.keywords:
            x = self.as_double(self.emit(node.args[0]))
            if isinstance(x, float):
                return _fold_math(name, x)
            fn = declare_math(self.b.module, LIBM.get(name) or INTRINSICS[name])
            return self.b.call(fn, [x])
        raise self.fail(f"function '{ast.unparse(node.func)}'")


def _divide(x: float, y: float) -> float:
    if y == 0.0:
        return math.copysign(math.inf, x) * math.copysign(1.0, y) if x != 0.0 and not math.isnan(x) else math.nan
    return x / y


def _fold_math(name: str, x: float) -> float:
    import numpy as np

    fn = {"abs": np.abs, "fabs": np.abs, "atan": np.arctan, "asin": np.arcsin, "acos": np.arccos}.get(name)
    return float((fn or getattr(np, name))(x))


def sum_keywords_ok(node: ast.Call) -> bool:
    """`numpy.sum(e)`, `numpy.sum(e, axis=-1, keepdims=True)`: a sum over the per-trial vector."""
    for kw in node.keywords:
        value = kw.value
        if kw.arg == "axis":
            if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub) and \
                    isinstance(value.operand, ast.Constant) and value.operand.value == 1:
                continue
            return False
        if kw.arg != "keepdims":
            return False
    return True
