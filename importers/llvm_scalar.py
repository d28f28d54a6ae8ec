"""Scalar code of expression trees for the LLVM backend: one element at a time.

Trees are mdfbridge.expressions trees of registry op applications (`Call`, `Var`, `Const`, `IfExp`). `walk`
evaluates one with a `ScalarAlgebra`: a `Call` runs its record's scalar form (`OpDef.llvm`) on the algebra's
primitives, or walks the record's `formula`; a record with neither raises (UnsupportedError naming the node
and the op, from `ScalarIR`). `ScalarIR` emits LLVM IR: values are Python floats (or bools) while they are
constant, folded with numpy's IEEE double arithmetic, and `double` IR values per element otherwise;
comparisons give `i1` values, read as 0.0/1.0 in arithmetic like numpy's bools.

Reductions (records with a `fold`: `numpy.sum(e)` over the per-trial vector, as in SoftMax's derivative) are
not elementwise: the caller computes each one in a loop before the element loop (`reductions` lists them,
innermost first) and passes the results to `walk` as `reduced`.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import numpy as np
from llvmlite import ir
from llvmlite.ir import Value as IRValue  # for annotations in ScalarIR, whose method `ir` hides the module

from ..errors import UnsupportedError
from ..expressions import Call, Const, IfExp, Seq, SliceNode, Var, parse_expression
from ..ops import OpDef

DOUBLE = ir.DoubleType()
BOOL = ir.IntType(1)
Value = Union[float, bool, ir.Value]
Binder = Callable[[str], Optional[Value]]
USE_TORCH = "use backend 'torch', which runs it"

_COMPARE: Mapping[str, Callable[[float, float], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                          ">=": operator.ge, "==": operator.eq, "!=": operator.ne}


def declare(module: ir.Module, name: str, arity: int = 1) -> ir.Function:
    """`double name(double, ...)` from the C library or an LLVM intrinsic (`llvm.sqrt.f64`), declared once."""
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(DOUBLE, [DOUBLE] * arity), name)
    fn.attributes.add("nounwind")
    return fn


def declare_math(module: ir.Module, name: str) -> ir.Function:
    """`double name(double)` (see `declare`)."""
    return declare(module, name, 1)


def declare_pow(module: ir.Module) -> ir.Function:
    """`double pow(double, double)` from the C library."""
    return declare(module, "pow", 2)


def is_constant(v: Any) -> bool:
    """True for a folded constant (a Python float or bool), False for an emitted value."""
    return isinstance(v, (float, bool))


def _np(fn: Callable[..., Any], *args: float) -> float:
    """fn on float64 numbers with IEEE results (inf, nan) instead of Python's exceptions."""
    with np.errstate(all="ignore"):
        return float(fn(*(np.float64(a) for a in args)))


class ScalarAlgebra:
    """The primitives the records' scalar forms (`OpDef.llvm`) are written in, on one element of each argument.

    Arguments are constants (Python floats or bools) or values of the algebra. Every primitive raises
    `unsupported` here; `ScalarIR` implements all of them, `llvm_affine.AffineAlgebra` the affine ones.
    """

    def unsupported(self, what: str) -> Exception:
        """The exception for something this algebra cannot compute."""
        return UnsupportedError(f"{what} is not supported by the llvm backend; {USE_TORCH}")

    def add(self, a: Any, b: Any) -> Any:
        """a + b."""
        raise self.unsupported("addition")

    def sub(self, a: Any, b: Any) -> Any:
        """a - b."""
        raise self.unsupported("subtraction")

    def mul(self, a: Any, b: Any) -> Any:
        """a * b."""
        raise self.unsupported("multiplication")

    def div(self, a: Any, b: Any) -> Any:
        """a / b (IEEE: x / 0 is inf or nan)."""
        raise self.unsupported("division")

    def neg(self, a: Any) -> Any:
        """-a."""
        raise self.unsupported("negation")

    def pow(self, a: Any, b: Any) -> Any:
        """a ** b (numpy's fast paths for the exponents 2, 1, 0.5 and -1)."""
        raise self.unsupported("power")

    def compare(self, op: str, a: Any, b: Any) -> Any:
        """a `op` b for op in < <= > >= == != (numpy: False with NaN, except !=)."""
        raise self.unsupported(f"comparison '{op}'")

    def isnan(self, a: Any) -> Any:
        """a is NaN."""
        raise self.unsupported("isnan")

    def select(self, cond: Any, a: Any, b: Any) -> Any:
        """a where cond is true (non-zero, NaN included, like numpy.where), else b."""
        raise self.unsupported("select")

    def logical_and(self, a: Any, b: Any) -> Any:
        """numpy.logical_and."""
        raise self.unsupported("logical_and")

    def logical_or(self, a: Any, b: Any) -> Any:
        """numpy.logical_or."""
        raise self.unsupported("logical_or")

    def logical_not(self, a: Any) -> Any:
        """numpy.logical_not."""
        raise self.unsupported("logical_not")

    def call(self, function: str, *args: Any) -> Any:
        """A C library function of doubles (`exp`, `atan`, `pow`) or an LLVM intrinsic (`llvm.sqrt.f64`)."""
        raise self.unsupported(f"function '{function}'")


def fold(op: OpDef, args: Mapping[str, Value]) -> Optional[Value]:
    """op on constant arguments with its numpy implementation (float64, IEEE results), or None when that fails."""
    try:
        with np.errstate(all="ignore"):
            v = op.numpy(**{k: np.float64(a) if isinstance(a, float) else a for k, a in args.items()})
    except (ArithmeticError, ValueError, TypeError):
        return None
    v = np.asarray(v)
    if v.ndim or v.dtype.kind not in "biuf":
        return None
    return bool(v) if v.dtype.kind == "b" else float(v)


def walk(e: ScalarAlgebra, node: Any, bind: Binder, reduced: Optional[Mapping[int, Value]] = None) -> Any:
    """The value of tree `node` in algebra `e`: `bind(name)` gives each variable's value (None: unbound; math
    constants then take their default), `reduced` the values of reductions computed beforehand (by id)."""
    if reduced and id(node) in reduced:
        return reduced[id(node)]
    t = type(node)
    if t is Const:
        v = node.value
        if isinstance(v, bool):
            return v
        if isinstance(v, numbers.Real):
            return float(v)
        raise e.unsupported(f"constant {v!r}")
    if t is Var:
        v = bind(node.name)
        if v is not None:
            return v
        if node.default is not None:
            return float(node.default)
        raise e.unsupported(f"name '{node.name}' (no value)")
    if t is Call:
        op = node.op
        if op.fold is not None:
            raise e.unsupported(f"reduction '{op.name}' here")
        args = {k: walk(e, v, bind, reduced) for k, v in node.args.items()}
        for k in op.args:
            if k not in args and k in op.defaults:
                args[k] = walk(e, Const(op.defaults[k]), bind)
        if all(is_constant(v) for v in args.values()):
            v = fold(op, args)
            if v is not None:
                return v
        if op.llvm is not None:
            return op.llvm(e, **args)
        if op.formula is not None:
            return walk(e, parse_expression(op.formula).tree, args.get)
        raise e.unsupported(f"function '{op.name}'")
    if t is IfExp:
        test = walk(e, node.test, bind, reduced)
        if is_constant(test):
            return walk(e, node.body if test else node.orelse, bind, reduced)
        return e.select(test, walk(e, node.body, bind, reduced), walk(e, node.orelse, bind, reduced))
    raise e.unsupported(f"{t.__name__} '{node!r}'")


def _children(node: Any) -> List[Any]:
    t = type(node)
    if t is Call:
        return list(node.args.values())
    if t is IfExp:
        return list(node)
    if t is Seq:
        return list(node.items)
    if t is SliceNode:
        return [p for p in node if p is not None]
    return []


def reductions(tree: Any) -> List[Call]:
    """The reductions (Calls of records with a `fold`) of a tree, innermost first."""
    found: List[Call] = []

    def visit(node: Any) -> None:
        for child in _children(node):
            visit(child)
        if type(node) is Call and node.op.fold is not None:
            found.append(node)
    visit(tree)
    return found


def over_vector(node: Call) -> bool:
    """A reduction over the whole per-trial vector: no axis, or axis 0 / -1 (also as a one-element list)."""
    axis = node.args.get("axis")
    if axis is None:
        return True
    if type(axis) is Seq and len(axis.items) == 1:
        axis = axis.items[0]
    return type(axis) is Const and axis.value in (0, -1) and not isinstance(axis.value, bool)


class ScalarIR(ScalarAlgebra):
    """Emits scalar IR at the builder's position; unsupported constructs raise UnsupportedError naming `where`."""

    def __init__(self, builder: ir.IRBuilder, where: str) -> None:
        self.b = builder
        self.where = where

    def unsupported(self, what: str) -> Exception:
        return UnsupportedError(f"{what} is not supported by the llvm backend; {USE_TORCH}", where=self.where)

    # ------------------------------------------------------------------ conversions
    def double(self, v: Value) -> Union[float, ir.Value]:
        """A constant as a float, an i1 as 0.0/1.0 (numpy's bools in arithmetic), a double as it is."""
        if isinstance(v, (float, bool)):  # is_constant(v)
            return float(v)
        return self.b.uitofp(v, DOUBLE) if v.type == BOOL else v

    def ir(self, v: Value) -> ir.Value:
        """The double IR value of `v` (constants materialised)."""
        v = self.double(v)
        return ir.Constant(DOUBLE, v) if isinstance(v, float) else v

    def truth(self, v: Value) -> Union[bool, IRValue]:
        """`v` as a condition: a bool for a constant, else an i1 (non-zero, NaN included, is true)."""
        if isinstance(v, (float, bool)):  # is_constant(v)
            return bool(v)
        return v if v.type == BOOL else self.b.fcmp_unordered("!=", v, ir.Constant(DOUBLE, 0.0))

    @staticmethod
    def _i1(v: Union[bool, IRValue]) -> IRValue:
        return ir.Constant(BOOL, int(v)) if isinstance(v, bool) else v

    def _binary(self, a: Value, b: Value, fold_fn: Callable[..., Any], instr: str) -> Value:
        a, b = self.double(a), self.double(b)
        if isinstance(a, float) and isinstance(b, float):
            return _np(fold_fn, a, b)
        return getattr(self.b, instr)(self.ir(a), self.ir(b))

    # ------------------------------------------------------------------ primitives
    def add(self, a: Value, b: Value) -> Value:
        return self._binary(a, b, operator.add, "fadd")

    def sub(self, a: Value, b: Value) -> Value:
        return self._binary(a, b, operator.sub, "fsub")

    def mul(self, a: Value, b: Value) -> Value:
        return self._binary(a, b, operator.mul, "fmul")

    def div(self, a: Value, b: Value) -> Value:
        return self._binary(a, b, operator.truediv, "fdiv")

    def neg(self, a: Value) -> Value:
        a = self.double(a)
        return -a if isinstance(a, float) else self.b.fneg(a)

    def pow(self, a: Value, b: Value) -> Value:
        a, b = self.double(a), self.double(b)
        if isinstance(a, float) and isinstance(b, float):
            return _np(np.power, a, b)
        if isinstance(b, float):
            if b == 2.0:
                return self.b.fmul(a, a)
            if b == 1.0:
                return a
            if b == 0.5:
                return self.call("llvm.sqrt.f64", a)
            if b == -1.0:
                return self.b.fdiv(ir.Constant(DOUBLE, 1.0), a)
        return self.call("pow", a, b)

    def compare(self, op: str, a: Value, b: Value) -> Value:
        a, b = self.double(a), self.double(b)
        if isinstance(a, float) and isinstance(b, float):
            return _COMPARE[op](a, b)
        if op == "!=":  # numpy: comparisons with NaN are False except !=
            return self.b.fcmp_unordered(op, self.ir(a), self.ir(b))
        return self.b.fcmp_ordered(op, self.ir(a), self.ir(b))

    def isnan(self, a: Value) -> Value:
        a = self.double(a)
        return math.isnan(a) if isinstance(a, float) else self.b.fcmp_unordered("uno", a, a)

    def select(self, cond: Value, a: Value, b: Value) -> Value:
        c = self.truth(cond)
        if isinstance(c, bool):
            return a if c else b
        return self.b.select(c, self.ir(a), self.ir(b))

    def logical_and(self, a: Value, b: Value) -> Value:
        x, y = self.truth(a), self.truth(b)
        if isinstance(x, bool) and isinstance(y, bool):
            return x and y
        return self.b.and_(self._i1(x), self._i1(y))

    def logical_or(self, a: Value, b: Value) -> Value:
        x, y = self.truth(a), self.truth(b)
        if isinstance(x, bool) and isinstance(y, bool):
            return x or y
        return self.b.or_(self._i1(x), self._i1(y))

    def logical_not(self, a: Value) -> Value:
        x = self.truth(a)
        return (not x) if isinstance(x, bool) else self.b.not_(x)

    def call(self, function: str, *args: Value) -> Value:
        fn = declare(self.b.module, function, len(args))
        return self.b.call(fn, [self.ir(a) for a in args])


def compile_tree(e: ScalarIR, tree: Any, bind: Binder, reduced: Optional[Dict[int, Value]] = None) -> ir.Value:
    """The double IR value of `tree` at the builder's position."""
    return e.ir(walk(e, tree, bind, reduced))
