"""The resource budget of evaluating expressions and MDF functions on concrete values (constant folding during
lowering, `Expression.evaluate`, the shape checks of `mdfbridge validate`).

Every op application is checked BEFORE its implementation runs: its result's shape comes from the op's shape rule
(mdfbridge.ops.shape_rules; numpy broadcasting for elementwise ops) applied to the shapes of its arguments, and its
element count must stay within `limits.current().max_elements`, together with the elements of the arrays the same
evaluation already holds (a `Budget`). Integer arithmetic on Python ints (which has no size limit of its own) is
checked the same way: the bits of a power or product are estimated from its operands' bits and must stay within
`max_int_bits`, and an exponent within `max_exponent`. An integer too large for float64 that reaches an array op is
refused too (numpy would raise "int too large to convert to float" at run time). Exceeding any of these raises
`ExpressionLimitError` naming the place, the expression, the op and the limit."""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Tuple

import numpy as np

from .. import limits
from ..errors import ExpressionError
from ..limits import LimitError
from .base import OpDef
from .shape_rules import Shape, broadcast

FLOAT64_INT_BITS = 1024  # Python ints of more bits than this do not fit a float64 (its maximum is about 2**1024)
_INT_OPS = frozenset({"Add", "Sub", "Mul", "Pow", "FloorDiv", "Mod", "Neg", "Maximum", "Minimum", "Less",
                      "LessOrEqual", "Greater", "GreaterOrEqual", "Equal", "NotEqual", "And", "Or", "Not",
                      "Int", "Float", "Abs", "Sign", "Identity"})  # ops that compute on Python ints exactly


class ExpressionLimitError(LimitError, ExpressionError):
    """Evaluating an expression would exceed a resource limit (mdfbridge.limits): both a LimitError and an
    ExpressionError. message: what exceeded which limit; where: the node and expression (default None)."""


def op_label(op: OpDef) -> str:
    """How an error names an op: the name expressions call it by (`outer`, `zeros`), else its registry name."""
    return op.expr_names[0] if op.expr_names else op.name


def _is_int(v: Any) -> bool:
    return type(v) is int  # bool and numpy integers excluded: numpy integers wrap, they never grow


def _shape_of(v: Any) -> Tuple[int, ...]:
    shape = getattr(v, "shape", None)
    if shape is not None:
        return tuple(int(d) for d in shape)
    try:
        return tuple(np.shape(v))
    except (ValueError, TypeError):  # a ragged list: the op itself reports it
        return (len(v),) if isinstance(v, (list, tuple)) else ()


def elements_of(v: Any) -> int:
    """Elements of a value (an array, a tensor, a sequence or a number; 1 for a scalar)."""
    return math.prod(_shape_of(v))


def quoted(source: str, limit: int = 100) -> str:
    """An expression's text for a message: quoted, cut after `limit` characters (default 100) with '...'."""
    return repr(source) if len(source) <= limit else repr(source[:limit]) + "..."


def short(v: Any) -> str:
    """A number for a message: its digits when short, else its size in bits (a Python int) or its type."""
    if _is_int(v):
        return str(v) if v.bit_length() <= 64 else f"<an integer of {v.bit_length():,} bits>"
    if isinstance(v, (float, bool)):
        return repr(v)
    return f"<{type(v).__name__} of shape {_shape_of(v)}>"


def _fail(message: str, where: Optional[str]) -> ExpressionLimitError:
    return ExpressionLimitError(message, where=where)


def _hint(name: str) -> str:
    return f"(raise it with --limit {name}=N or {limits.ENV_VAR})"


def check_power(base: Any, exponent: Any, what: str = "integer power", where: Optional[str] = None) -> None:
    """Refuse `base ** exponent` when the exponent exceeds max_exponent, or, for Python ints, when the result
    would exceed max_int_bits (estimated from the bits of the base before computing it).

    base, exponent: the operands (only Python ints, and constant exponents, are checked); what: the operation, for
    the message (default 'integer power'); where: the place (default None)."""
    lim = limits.current()
    if _is_int(exponent) and abs(exponent) > lim.max_exponent:
        raise _fail(f"{what}: exponent {exponent:,} is over the limit max_exponent={lim.max_exponent:,} "
                    f"{_hint('max_exponent')}", where)
    if _is_int(base) and _is_int(exponent) and exponent > 0 and abs(base) > 1:
        bits = (abs(base).bit_length() - 1) * exponent + 1
        if bits > lim.max_int_bits:
            raise _fail(f"{what} would have about {bits:,} bits, over the limit max_int_bits={lim.max_int_bits:,} "
                        f"{_hint('max_int_bits')}", where)


def check_int_op(op: OpDef, args: Mapping[str, Any], what: str = "", where: Optional[str] = None) -> None:
    """Refuse integer arithmetic on Python ints whose result would exceed max_int_bits (powers: also
    max_exponent), estimated before computing it.

    op: the op; args: its arguments by name; what: the expression, for the message (default ''); where: the place
    (default None)."""
    a, b = args.get("A"), args.get("B")
    prefix = f"{what}: " if what else ""
    if op.name == "Pow":
        check_power(a, b, f"{prefix}power {short(a)}**{short(b)}", where)
        return
    label = prefix + op_label(op)
    if not (type(a) is int and type(b) is int):
        return
    bits = {"Mul": a.bit_length() + b.bit_length(), "Add": max(a.bit_length(), b.bit_length()) + 1,
            "Sub": max(a.bit_length(), b.bit_length()) + 1}.get(op.name, 0)
    lim = limits.current().max_int_bits
    if bits > lim:
        raise _fail(f"{label}'s integer result would have about {bits:,} bits, over the limit max_int_bits={lim:,} "
                    f"{_hint('max_int_bits')}", where)


def _huge_ints(v: Any, depth: int = 0) -> Optional[int]:
    """The bits of a Python int in v (a number or a nested sequence) too large for float64, else None."""
    if _is_int(v):
        return v.bit_length() if v.bit_length() > FLOAT64_INT_BITS else None
    if isinstance(v, (list, tuple)) and depth < 32:
        for x in v:
            bits = _huge_ints(x, depth + 1)
            if bits is not None:
                return bits
    return None


def check_float_range(op: OpDef, args: Mapping[str, Any], what: str = "", where: Optional[str] = None,
                      arrays: bool = False) -> None:
    """Refuse a Python int too large for float64 passed to an op that computes on arrays (numpy would raise
    "int too large to convert to float"); ops on Python ints alone (`_INT_OPS`) may hold big ints.

    op: the op; args: its arguments by name (static ones; tensors may be left out); what: the expression, for the
    message (default ''); where: the place (default None); arrays: the op also reads tensors not in `args`
    (default False)."""
    if not arrays and op.name in _INT_OPS and all(_is_int(v) or isinstance(v, (bool, float)) for v in args.values()):
        return
    for k, v in args.items():
        if k in op.attrs:  # shapes and repeats: their element count is checked instead
            continue
        bits = _huge_ints(v)
        if bits is not None:
            label = f"{what}: {op_label(op)}" if what else op_label(op)
            raise _fail(f"{label}'s argument '{k}' is an integer of {bits:,} bits, too large to convert to float "
                        f"(float64 holds integers up to {FLOAT64_INT_BITS} bits, about 1.8e308)", where)


def result_shape(op: OpDef, args: Mapping[str, Any]) -> Optional[Tuple[int, ...]]:
    """The shape of `op` applied to `args` (concrete values by argument name), from the op's shape rule and the
    arguments' shapes, computed without running the op; None when the rule does not apply (the op then reports
    its own error, without allocating)."""
    rule_args: dict = {k: v for k, v in op.defaults.items() if k in op.attrs}
    for k, v in args.items():
        if k in op.attrs or v is None:
            rule_args[k] = v
        elif isinstance(v, (list, tuple)):
            rule_args[k] = [Shape(_shape_of(x)) for x in v]
        else:
            rule_args[k] = Shape(_shape_of(v))
    rule = op.shape or (broadcast if op.elementwise else None)
    if rule is None:
        return None
    try:
        return tuple(int(d) for d in rule(rule_args))
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, AttributeError, OverflowError):
        return None
    except ExpressionError:
        raise
    except Exception:  # noqa: BLE001 - a shape rule on hostile arguments: let the op itself report
        return None


class Budget:
    """The elements one evaluation may hold at once: `charge` before computing a value, `release` when a value
    is dropped. limit: the bound (default None: `limits.current().max_elements` when charged); what: the
    expression's source, for messages (default ''); where: the place, e.g. "node 'n' function 'f'" (default
    None)."""

    def __init__(self, limit: Optional[int] = None, what: str = "", where: Optional[str] = None) -> None:
        self.limit, self.what, self.where = limit, what, where
        self.held = 0

    def charge(self, op: OpDef, args: Mapping[str, Any], what: Optional[str] = None,
               where: Optional[str] = None) -> int:
        """Check `op` applied to `args` (concrete values by argument name) before running it: integer sizes,
        float64 range, and the elements of its result together with those already held; returns the result's
        element count (0 when its shape is unknown), now held. what, where: the expression and the place for
        this charge's message (default None: the budget's own). Raises ExpressionLimitError."""
        what = self.what if what is None else what
        where = self.where if where is None else where
        check_int_op(op, args, what, where)
        check_float_range(op, args, what, where)
        shape = result_shape(op, args)
        if shape is None:
            return 0
        n = math.prod(shape)
        bound = self.limit if self.limit is not None else limits.current().max_elements
        label = f"{what}: " if what else ""
        if n > bound:
            raise _fail(f"{label}the result of {op_label(op)} (shape {shape}) would have {n:,} elements, over the "
                        f"limit max_elements={bound:,} {_hint('max_elements')}", where)
        if self.held + n > bound:
            raise _fail(f"{label}the result of {op_label(op)} (shape {shape}, {n:,} elements) and the {self.held:,} "
                        f"elements held before it would make {self.held + n:,} elements, over the limit "
                        f"max_elements={bound:,} {_hint('max_elements')}", where)
        self.held += n
        return n

    def release(self, n: int) -> None:
        """Stop counting n elements (a value the evaluation dropped)."""
        self.held = max(0, self.held - n)


__all__ = ["Budget", "ExpressionLimitError", "check_power", "check_int_op", "check_float_range", "result_shape",
           "elements_of", "op_label", "short", "quoted",
           "FLOAT64_INT_BITS"]
