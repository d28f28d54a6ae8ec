"""Safe evaluation of MDF ``value`` expressions and function arguments.

Expressions come from untrusted files, so they are never handed to ``eval``/``exec``.
The text is parsed with ``ast.parse(mode="eval")``, checked against a small whitelist of
syntax and functions, and compiled once into a tree of registry op applications (mdfbridge.ops):
lowering turns that tree into Program ops, and `Expression.evaluate` runs it against an environment
with the ops' numpy or torch implementations.
"""
from __future__ import annotations

import ast
import functools
import logging
import math
import numbers
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

import numpy as np

from mdfbridge import limits
from mdfbridge.errors import ExpressionError
from mdfbridge.ops import REGISTRY, OpDef
from mdfbridge.ops.base import EXPRESSION_FUNCTIONS, check_size
from mdfbridge.ops.budget import Budget, ExpressionLimitError, check_int_op, quoted

logger = logging.getLogger(__name__)

# The limits on expressions (characters, nesting depth, exponents, integer bits, array elements) are
# mdfbridge.limits' max_expression_length, max_expression_depth, max_exponent, max_int_bits and max_elements.

MODULE_ALIASES = frozenset({"numpy", "np", "math"})
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan}
KEYWORDS = frozenset({"axis", "keepdims", "axes"})

torch: Any = None  # bound by _load_torch() the first time lib="torch" is asked for


class _Missing(Exception):
    """Internal: a variable the expression reads is not in the environment."""


def _load_torch() -> Any:
    global torch
    if torch is None:
        import torch as _torch
        torch = _torch
        logger.debug("expressions: torch backend loaded")
    return torch


# ----------------------------------------------------------------------------- the expression tree
# An expression compiles to a tree of registry op applications: every operator and function is an op of
# mdfbridge.ops (`+` is Add, `<` is Less, `exp` is Exp, `x[i]` is Getitem, a list literal is AsArray); lowering
# turns the tree into Program ops, and `Expression.evaluate` runs it with the ops' numpy or torch implementations.


class Var(NamedTuple):
    """A free name; `default` is the value of a math constant (pi, e, inf, nan) the environment may override."""

    name: str
    default: Any = None


class Const(NamedTuple):
    """A number (folded at parse time where both operands are numbers)."""

    value: Any


class Call(NamedTuple):
    """An op applied to argument nodes keyed by the op's argument names (attributes included)."""

    op: OpDef
    args: Mapping[str, Any]


class Seq(NamedTuple):
    """A list/tuple literal passed as a call argument or index: it stays a Python sequence."""

    items: tuple
    kind: type = list


class SliceNode(NamedTuple):
    """`lo:hi:step` inside an index (None for an absent part)."""

    lo: Any
    hi: Any
    step: Any


class IfExp(NamedTuple):
    """`body if test else orelse`: a scalar test picks one branch; an array test is numpy.where."""

    test: Any
    body: Any
    orelse: Any


Node = Union[Var, Const, Call, Seq, SliceNode, IfExp]

FUNCTIONS: Mapping[str, OpDef] = EXPRESSION_FUNCTIONS
"""Expression function name -> the op it calls (the registry's `expr_names`)."""
SUPPORTED_FUNCTIONS: tuple[str, ...] = tuple(sorted(FUNCTIONS))
_SIZE_ARGS = ("shape", "reps")  # arguments whose literal value sizes the array an op creates

_BINOPS: dict[type, str] = {ast.Add: "Add", ast.Sub: "Sub", ast.Mult: "Mul", ast.Div: "Div", ast.FloorDiv: "FloorDiv",
                            ast.Mod: "Mod", ast.Pow: "Pow", ast.MatMult: "MatMul"}
_CMPOPS: dict[type, str] = {ast.Lt: "Less", ast.LtE: "LessOrEqual", ast.Gt: "Greater", ast.GtE: "GreaterOrEqual",
                            ast.Eq: "Equal", ast.NotEq: "NotEqual"}
_DESCRIBE = {ast.Lambda: "lambda", ast.ListComp: "comprehension", ast.SetComp: "comprehension",
             ast.DictComp: "comprehension", ast.GeneratorExp: "comprehension", ast.JoinedStr: "f-string",
             ast.NamedExpr: "assignment expression (:=)", ast.Starred: "starred argument",
             ast.Dict: "dict literal", ast.Set: "set literal", ast.Attribute: "attribute access",
             ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield"}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, complex)


def _const(node: Any) -> Any:
    """The number a node folds to, or _NOCONST."""
    return node.value if type(node) is Const else _NOCONST


_NOCONST = object()


def _call(name: str, **args: Any) -> Call:
    return Call(REGISTRY[name], args)


def is_elementwise(node: Any) -> bool:
    """True if evaluating the tree on a batch (leading axis) gives the row-by-row results."""
    t = type(node)
    if t is Var or t is Const:
        return True
    if t is Call:
        return node.op.elementwise and all(is_elementwise(v) for v in node.args.values())
    if t is IfExp:
        return all(is_elementwise(v) for v in node)
    return False


class _Compiler:
    def __init__(self, text: str, where: str) -> None:
        self.text, self.where = text, where
        self.names: set[str] = set()
        self.constants: set[str] = set()

    def fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"{message} in expression {self.text!r}", where=self.where or None)

    def limit(self, message: str) -> ExpressionLimitError:
        return ExpressionLimitError(f"expression {quoted(self.text)}: {message}", where=self.where or None)

    def reject(self, node: ast.AST) -> ExpressionError:
        what = _DESCRIBE.get(type(node), type(node).__name__)
        return self.fail(f"{what} is not allowed")

    def expr(self, node: ast.AST) -> Node:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise self.reject(node)
        return method(node)

    def _Constant(self, node: ast.Constant) -> Node:
        v = node.value
        if isinstance(v, (str, bytes)):
            raise self.fail("string constants are not allowed")
        if not _is_num(v):
            raise self.fail(f"constant {v!r} is not allowed")
        return Const(v)

    def _Name(self, node: ast.Name) -> Node:
        n = node.id
        if n.startswith("_"):
            raise self.fail(f"name {n!r} is not allowed (names starting with '_' are reserved)")
        if n in CONSTANTS:
            self.constants.add(n)
            return Var(n, CONSTANTS[n])
        self.names.add(n)
        return Var(n)

    def _Attribute(self, node: ast.Attribute) -> Node:
        if isinstance(node.value, ast.Name) and node.value.id in MODULE_ALIASES and node.attr in CONSTANTS:
            return Const(CONSTANTS[node.attr])
        raise self.fail(f"attribute access {ast.unparse(node)!r} is not allowed")

    def _UnaryOp(self, node: ast.UnaryOp) -> Node:
        a = self.expr(node.operand)
        if isinstance(node.op, ast.Not):
            return _call("Not", X=a)
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise self.fail(f"operator {type(node.op).__name__} is not allowed")
        c = _const(a)
        if _is_num(c):
            return Const(-c if isinstance(node.op, ast.USub) else +c)
        return _call("Neg", X=a) if isinstance(node.op, ast.USub) else a

    def _BinOp(self, node: ast.BinOp) -> Node:
        name = _BINOPS.get(type(node.op))
        if name is None:
            raise self.fail(f"operator {type(node.op).__name__} is not allowed")
        a, b = self.expr(node.left), self.expr(node.right)
        ca, cb = _const(a), _const(b)
        power = isinstance(node.op, ast.Pow)
        bound = limits.current().max_exponent
        if power and _is_num(cb) and abs(cb) > bound:
            raise self.limit(f"exponent {cb!r} is over the limit max_exponent={bound:,} (raise it with --limit "
                             f"max_exponent=N or {limits.ENV_VAR})")
        op = REGISTRY[name]
        if _is_num(ca) and _is_num(cb) and op.elementwise:
            folded = self._fold(op, ca, cb, power)
            if folded is not _NOCONST:
                return Const(folded)
        return Call(op, {"A": a, "B": b})

    def _fold(self, op: OpDef, x: Any, y: Any, power: bool) -> Any:
        """Evaluate an operation on two numeric constants now (the op's numpy implementation on Python numbers),
        refusing huge integers."""
        try:
            check_int_op(op, {"A": x, "B": y})
        except ExpressionLimitError as exc:
            raise self.limit(str(exc)) from None
        try:
            v = op.numpy(A=x, B=y)
        except ExpressionLimitError as exc:
            raise self.limit(str(exc)) from None
        except (ArithmeticError, ValueError):
            return _NOCONST  # leave it to run time (e.g. 1/0), where the error is reported
        bound = limits.current().max_int_bits
        if type(v) is int and v.bit_length() > bound:
            raise self.limit(f"an integer constant of {v.bit_length():,} bits is over the limit "
                             f"max_int_bits={bound:,} (raise it with --limit max_int_bits=N or {limits.ENV_VAR})")
        return v if _is_num(v) else _NOCONST

    def _Compare(self, node: ast.Compare) -> Node:
        parts = [self.expr(node.left)] + [self.expr(c) for c in node.comparators]
        result: Optional[Node] = None
        for o, left, right in zip(node.ops, parts, parts[1:]):
            name = _CMPOPS.get(type(o))
            if name is None:
                raise self.fail(f"comparison {type(o).__name__} is not allowed")
            r = _call(name, A=left, B=right)
            result = r if result is None else _call("And", A=result, B=r)
        assert result is not None  # a comparison has at least one operator
        return result

    def _BoolOp(self, node: ast.BoolOp) -> Node:
        parts = [self.expr(v) for v in node.values]
        name = "And" if isinstance(node.op, ast.And) else "Or"
        result = parts[0]
        for p in parts[1:]:
            result = _call(name, A=result, B=p)
        return result

    def _IfExp(self, node: ast.IfExp) -> Node:
        return IfExp(self.expr(node.test), self.expr(node.body), self.expr(node.orelse))

    def _sequence(self, node: ast.List | ast.Tuple) -> Seq:
        """A list/tuple literal kept as a Python sequence (index, shape and sequence arguments)."""
        return Seq(tuple(self.arg(e) for e in node.elts), tuple if isinstance(node, ast.Tuple) else list)

    def _List(self, node: ast.List) -> Node:
        return _call("AsArray", X=self._sequence(node))

    _Tuple = _List

    def arg(self, node: ast.AST) -> Node:
        """A call argument: list/tuple literals stay Python sequences (shapes, axes, sequences)."""
        return self._sequence(node) if isinstance(node, (ast.List, ast.Tuple)) else self.expr(node)

    def index(self, node: ast.AST) -> Node:
        if isinstance(node, ast.Slice):
            return SliceNode(*(None if p is None else self.expr(p) for p in (node.lower, node.upper, node.step)))
        if isinstance(node, ast.Tuple):
            return Seq(tuple(self.index(e) for e in node.elts), tuple)
        c = self.expr(node)
        if type(c) is Const and type(c.value) is not int:  # (_const(c) is not _NOCONST)
            raise self.fail(f"index {c.value!r} is not an integer")
        return c

    def _literal(self, node: Any) -> Any:
        """The value of a constant number or tuple/list of them, else None."""
        if type(node) is Seq:
            items = [self._literal(e) for e in node.items]
            return None if any(i is None for i in items) else items
        c = _const(node)
        return None if c is _NOCONST else c

    def _Subscript(self, node: ast.Subscript) -> Node:
        return _call("Getitem", X=self.expr(node.value), index=self.index(node.slice))

    def _Call(self, node: ast.Call) -> Node:
        func = node.func
        if isinstance(func, ast.Name) and not func.id.startswith("_"):
            name = func.id
        elif (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
              and func.value.id in MODULE_ALIASES and not func.attr.startswith("_")):
            name = func.attr
        else:
            raise self.fail(f"call of {ast.unparse(func)!r} is not allowed")
        op = FUNCTIONS.get(name)
        if op is None:
            raise self.fail(f"function {ast.unparse(func)!r} is not supported; supported: "
                            + ", ".join(SUPPORTED_FUNCTIONS))
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.reject(a)
        n = len(node.args)
        if name in ("max", "min") and n >= 2:  # max(a, b, ...) means elementwise maximum
            if node.keywords:
                raise self.fail(f"{name}() with several arguments takes no keyword arguments")
            parts = [self.expr(a) for a in node.args]
            result = parts[0]
            for p in parts[1:]:
                result = _call("Maximum" if name == "max" else "Minimum", A=result, B=p)
            return result
        names = op.all_args
        keywords: dict[str, Node] = {}
        for k in node.keywords:
            target = {"axes": "perm" if "perm" in names else "axis"}.get(k.arg or "", k.arg)
            if k.arg is None or k.arg not in KEYWORDS or target not in names:
                raise self.fail(f"keyword argument {k.arg or '**'!r} is not allowed "
                                f"(allowed: {', '.join(sorted(KEYWORDS))})")
            keywords[target] = self.arg(k.value)
        lo = sum(1 for a in names if a not in op.defaults)
        if not lo <= n <= len(names):
            hi = len(names)
            raise self.fail(f"{name}() takes {lo if lo == hi else f'{lo} to {hi}'} positional "
                            f"argument{'s' if hi > 1 else ''}, got {n}")
        args: dict[str, Node] = {a: self.arg(v) for a, v in zip(names, node.args)}
        args.update(keywords)
        for size_arg in _SIZE_ARGS:  # refuse huge constant shapes of ops that create arrays now, before anything runs
            shape = (self._literal(args[size_arg]) if size_arg in args and (size_arg == "reps" or names[0] == size_arg)
                     else None)
            if shape is not None:
                try:
                    check_size(shape, what=f"the result of {name}")
                except ExpressionLimitError as exc:
                    raise self.limit(str(exc)) from None
                except ExpressionError as exc:
                    raise self.fail(str(exc)) from None
                except (ValueError, TypeError) as exc:
                    raise self.fail(f"bad shape {shape!r}: {exc}") from None
        return Call(op, args)


# ----------------------------------------------------------------------------- evaluation

class _Lib(NamedTuple):
    """How `Expression.evaluate` runs a tree: which implementation of each op, and how env values load."""

    name: str
    impl: Callable[[OpDef], Optional[Callable[..., Any]]]  # None: the op has no implementation in this lib
    asarray: Callable[[Any], Any]
    foreign: tuple


_LIBS: dict[str, _Lib] = {"numpy": _Lib("numpy", lambda op: op.numpy, np.asarray, (list, tuple))}


def _impl(L: _Lib, op: OpDef) -> Callable[..., Any]:
    fn = L.impl(op)
    if fn is None:
        raise ExpressionError(f"function '{op.name}' has no {L.name} implementation")
    return fn


def _get_lib(name: str) -> _Lib:
    lib = _LIBS.get(name)
    if lib is None:
        if name != "torch":
            raise ExpressionError(f"unknown lib {name!r}; use 'numpy' or 'torch'")
        _load_torch()
        from .ops.torchlib import tt

        lib = _LIBS["torch"] = _Lib("torch", lambda op: op.torch, tt, (list, tuple, np.ndarray, np.generic))
    return lib


def _run(node: Any, env: Mapping[str, Any], L: _Lib, budget: Budget) -> Any:
    """Evaluate a tree node against env with lib L; every op is charged to `budget` before it runs (its result's
    shape from its shape rule) and the values it consumed are released after."""
    t = type(node)
    if t is Call:
        args, held = {}, budget.held
        for k, v in node.args.items():
            args[k] = _run(v, env, L, budget)
        n = budget.charge(node.op, args)
        out = _impl(L, node.op)(**args)
        budget.release(budget.held - held - n)  # the arguments are dropped; the result stays held
        return out
    if t is Var:
        if node.name in env:
            v = env[node.name]
            return L.asarray(v) if isinstance(v, L.foreign) else v
        if node.default is not None:
            return node.default
        raise _Missing(node.name)
    if t is Const:
        return node.value
    if t is Seq:
        return node.kind(_run(v, env, L, budget) for v in node.items)
    if t is SliceNode:
        return slice(*(None if p is None else _run(p, env, L, budget) for p in node))
    if t is IfExp:
        held = budget.held
        cond = _run(node.test, env, L, budget)
        if isinstance(cond, (bool, np.bool_)):  # scalar condition: plain branch, no broadcasting
            budget.release(budget.held - held)
            return _run(node.body if cond else node.orelse, env, L, budget)
        where = REGISTRY["Where"]
        args = {"condition": cond, "X": _run(node.body, env, L, budget), "Y": _run(node.orelse, env, L, budget)}
        n = budget.charge(where, args)
        out = _impl(L, where)(**args)
        budget.release(budget.held - held - n)
        return out
    raise TypeError(f"not an expression node: {node!r}")  # pragma: no cover


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

    __slots__ = ("source", "names", "constants", "where", "tree", "_elementwise")

    def __init__(self, source: str, names: frozenset[str], constants: frozenset[str], where: str,
                 tree: Node, elementwise: Optional[bool] = None) -> None:
        self.source, self.names, self.constants, self.where = source, names, constants, where
        self.tree = tree  # the expression as registry op applications (see Call, Var, Const, ...)
        self._elementwise = is_elementwise(tree) if elementwise is None else elementwise

    def at(self, where: str) -> "Expression":
        """The same compiled expression reported at another place (`where`, as for parse_expression)."""
        if where == self.where:
            return self
        return Expression(self.source, self.names, self.constants, where, self.tree, self._elementwise)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, env: Mapping[str, Any], lib: str = "numpy") -> Any:
        """Evaluate with variables from ``env`` using the "numpy" or "torch" functions."""
        L = _get_lib(lib)
        try:
            return _run(self.tree, env, L, Budget(what=f"expression {quoted(self.source)}",
                                                  where=self.where or None))
        except _Missing as exc:
            known = ", ".join(sorted(map(str, env))[:20]) or "none"
            raise ExpressionError(f"unknown variable {exc.args[0]!r} in expression {self.source!r} "
                                  f"(known: {known})", where=self.where or None) from None
        except ExpressionLimitError as exc:  # a resource limit (array elements, integer size)
            if exc.where:  # the budget's own message names the place and the expression
                raise
            raise ExpressionLimitError(f"expression {quoted(self.source)}: {exc}", where=self.where or None) from None
        except ExpressionError as exc:  # a run-time error of an op (negative dimension, ...)
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


def _parse(text: str | int | float, where: str) -> Expression:
    """The compiled expression, from a cache keyed by the text and the limits in force (not by the place: a
    document's nodes repeat the same expressions); errors are raised again naming `where`."""
    try:
        return _parse_with(text, "", limits.current()).at(where)
    except ExpressionError as exc:
        if not where:
            raise
        raise type(exc)(str(exc), where=where) from None


@functools.lru_cache(maxsize=4096, typed=True)
def _parse_with(text: str | int | float, where: str, lim: limits.Limits) -> Expression:
    def fail(message: str) -> ExpressionError:
        return ExpressionError(f"{message} in expression {str(text)[:200]!r}", where=where or None)

    if isinstance(text, (bool, np.bool_)) or (isinstance(text, numbers.Real) and not isinstance(text, str)):
        v = bool(text) if isinstance(text, (bool, np.bool_)) else (
            int(text) if isinstance(text, numbers.Integral) else float(text))
        return Expression(repr(v), frozenset(), frozenset(), where, Const(v))
    assert isinstance(text, str)  # numbers were handled above
    if len(text) > lim.max_expression_length:
        raise ExpressionLimitError(f"expression {quoted(text, 60)} of {len(text):,} characters is longer than the "
                                   f"limit max_expression_length={lim.max_expression_length:,} (raise it with --limit "
                                   f"max_expression_length=N or {limits.ENV_VAR})", where=where or None)
    source = text.strip()
    if not source:
        raise fail("empty expression")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise fail(f"syntax error: {exc.msg} (column {exc.offset})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise fail(f"cannot parse: {type(exc).__name__}") from None
    depth = _depth(tree.body)
    if depth > lim.max_expression_depth:
        raise ExpressionLimitError(f"expression {quoted(source)}: nested {depth} deep, deeper than the limit "
                                   f"max_expression_depth={lim.max_expression_depth} (raise it with --limit "
                                   f"max_expression_depth=N or {limits.ENV_VAR})", where=where or None)
    compiler = _Compiler(source, where)
    try:
        compiled = compiler.expr(tree.body)
    except RecursionError:  # only with max_expression_depth raised far beyond its default
        raise fail(f"expression nested {depth} deep is too deep to compile") from None
    logger.debug("compiled expression %r (names %s)", source, sorted(compiler.names))
    return Expression(source, frozenset(compiler.names), frozenset(compiler.constants), where, compiled)


def expression_names(text: str | int | float) -> frozenset[str]:
    """The free variable names ``text`` reads (math constants pi/e/inf/nan excluded)."""
    return parse_expression(text).names
