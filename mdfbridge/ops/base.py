"""The op record and the one registry of ops every backend reads.

An op's record (`OpDef`) holds everything a backend needs to know about it, or says it has none: canonical
name and aliases (with argument renames), arguments, attributes and defaults, numpy and torch
implementations, derivative, batch rule, and the hooks later layers read (shape rule, LLVM form, ONNX export,
ONNX import mapping, MDF value form). Backends look ops up here by canonical name; lowering canonicalises
aliases once (`resolve`), so no backend sees an alias.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

Array = Any
BatchRule = Callable[[frozenset, Dict[str, Any]], Optional[Dict[str, Any]]]


@dataclass(frozen=True)
class Alias:
    """Another name of an op (e.g. `onnx::MatMul` for `MatMul`); `args` renames the alias's arguments
    (alias argument -> canonical argument)."""

    name: str
    args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OpDef:
    """One registered op: `args` in order, `defaults` for optional ones, `attrs` are static.

    Fields a backend reads (None: the op has none, and the backend says so clearly):
    - `numpy`, `torch`: implementations called with every argument by keyword (per trial shapes, or batched
      as `batch_rule` says).
    - `elementwise`: the same per-row result on a batch as row by row (no batch rule needed).
    - `batch_rule(batched_args, attrs)`: the attrs to call with when the arguments named in `batched_args`
      carry a leading batch axis, or None when the op cannot run on that batch (backends loop over trials).
    - `formula`: elementwise ops defined by an MDF expression over their arguments by name (the MDF standard
      functions, `"1.0 / (1.0 + numpy.exp(-gain * (variable0 + bias) + offset))"` for logistic): what the
      numpy implementation computes, in the same order; backends without the implementation compile it.
    - `derivative`: an MDF expression (mdfbridge.expressions syntax) over the op's arguments by name and `out`
      (the op's value). Elementwise ops: d out / d (first argument). Other ops (SoftMax): the vector-Jacobian
      product, which also reads `grad` (d loss / d out). None: autograd only.
    - `derivatives`: elementwise ops: d out / d argument for each argument by name (same syntax); `partial`
      reads it and `derivative`.
    - `llvm(e, **args)`: the op's scalar form for the LLVM backend, over the primitives of a scalar emitter `e`
      (importers/llvm_scalar.py `ScalarAlgebra`: add, sub, mul, div, neg, pow, compare, select, isnan,
      logical_and/or/not, call of a C library function or LLVM intrinsic) applied to one element of each
      argument (a Python float for a constant, else an emitter value); returns the element of the result.
      Ops with a `formula` need none (the backend compiles the formula).
    - `llvm_kernel`: the LLVM backend kernel of an op that is not elementwise ('projection', 'softmax').
    - `fold`: reductions: (the elementwise op that combines two values, its identity), e.g. ("Add", 0.0).
    - `value_form(x)`: the MDF `value` expression mdfbridge writes for this op applied to expression `x`
      (modeci-mdf evaluates it); lowering runs such a value as this op.
    - `expr_names`: the names MDF `value` expressions call this op by (`exp`, `numpy.exp`; positional
      arguments in `all_args` order); operators (`+`, `<`, `@`, ...) map to ops in mdfbridge.expressions.
    """

    name: str
    args: Tuple[str, ...]
    numpy: Callable[..., Array]
    torch: Optional[Callable[..., Array]] = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    attrs: Tuple[str, ...] = ()
    elementwise: bool = False
    batch_rule: Optional[BatchRule] = None
    description: str = ""
    derivative: Optional[str] = None
    aliases: Tuple[Alias, ...] = ()
    value_form: Optional[Callable[[str], str]] = None
    expr_names: Tuple[str, ...] = ()
    formula: Optional[str] = None
    derivatives: Mapping[str, str] = field(default_factory=dict)
    llvm: Optional[Callable[..., Any]] = None
    llvm_kernel: Optional[str] = None
    fold: Optional[Tuple[str, float]] = None

    @property
    def all_args(self) -> Tuple[str, ...]:
        """Positional arguments followed by attributes."""
        return self.args + tuple(a for a in self.attrs if a not in self.args)

    def partial(self, arg: str) -> Optional[str]:
        """The derivative expression with respect to argument `arg` (`derivatives[arg]`, or `derivative` for the
        first argument), or None when the record has none."""
        if arg in self.derivatives:
            return self.derivatives[arg]
        return self.derivative if self.args and arg == self.args[0] else None


REGISTRY: Dict[str, OpDef] = {}
_ALIASES: Dict[str, Tuple[str, Mapping[str, str]]] = {}
EXPRESSION_FUNCTIONS: Dict[str, OpDef] = {}  # expression function name -> op (filled by register)


def register(op: OpDef) -> OpDef:
    """Add an op (and its aliases) to the registry; a name may be registered once."""
    for name in (op.name,) + tuple(a.name for a in op.aliases):
        if name in REGISTRY or name in _ALIASES:
            raise ValueError(f"op {name!r} registered twice")
    for n in op.expr_names:
        if n in EXPRESSION_FUNCTIONS:
            raise ValueError(f"expression function {n!r} registered twice")
    REGISTRY[op.name] = op
    for a in op.aliases:
        _ALIASES[a.name] = (op.name, dict(a.args))
    for n in op.expr_names:
        EXPRESSION_FUNCTIONS[n] = op
    return op


def resolve(name: str) -> Optional[Tuple[OpDef, Mapping[str, str]]]:
    """(the op called `name` or aliased by it, argument renames from the alias's names), or None."""
    if name in REGISTRY:
        return REGISTRY[name], {}
    hit = _ALIASES.get(name)
    if hit is None:
        return None
    return REGISTRY[hit[0]], hit[1]


def get_op(name: str) -> Optional[OpDef]:
    """The op called `name` (canonical name or alias), or None."""
    hit = resolve(name)
    return hit[0] if hit else None


def canonical_name(name: str) -> str:
    """The canonical name of op `name` (itself when it is not an alias)."""
    hit = _ALIASES.get(name)
    return hit[0] if hit else name


def supported_functions() -> Tuple[str, ...]:
    """Sorted names of every registered function/op, aliases included."""
    return tuple(sorted(set(REGISTRY) | set(_ALIASES)))


def torch_module() -> Any:
    """torch, imported on first use (the numpy reference runs without it)."""
    import torch

    return torch


def is_number(v: Any, number: float) -> bool:
    """True when v is the plain number `number` (not a tensor that training may change)."""
    return isinstance(v, (int, float)) and v == number


def keywords(fn: Callable[..., Array], args: Tuple[str, ...]) -> Callable[..., Array]:
    """`fn` (a builtin or ufunc taking positional arguments) callable with `args` by keyword, as backends call
    ops; extra keyword arguments (attributes) pass through. Python functions are returned as they are."""
    if inspect.isfunction(fn):
        return fn
    if len(args) == 1:
        (a,) = args
        return lambda **kw: fn(kw.pop(a), **kw)
    if len(args) == 2:
        a, b = args
        return lambda **kw: fn(kw.pop(a), kw.pop(b), **kw)
    return lambda **kw: fn(*[kw.pop(x) for x in args], **kw)


def by_name(arg: str, f: Callable[[Array], Array]) -> Callable[..., Array]:
    """A one-argument function called by keyword `arg` (the executor passes arguments by name)."""
    def call(**kw: Array) -> Array:
        return f(kw[arg])
    return call


# --------------------------------------------------------------------------- batching policies

def first_arg_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Matrix products: fine on a batch when only the left operand carries the batch axis."""
    return attrs if batched_args <= {"A"} else None


def never(batched_args: frozenset, attrs: Dict[str, Any]) -> None:
    """Shape-dependent ops: run trial by trial."""
    return None


def only_x(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Sequence ops: fine on a batch when only the input sequence X carries the batch axis."""
    return attrs if batched_args <= {"X"} else None


MAX_ELEMENTS = 10**8  # the largest array an op that creates arrays (zeros, ones, full, tile) may create


def check_size(shape: Any, times: int = 1) -> None:
    """Refuse to create arrays of more than MAX_ELEMENTS elements (ExpressionError naming the count)."""
    import numpy as np

    from ..errors import ExpressionError

    dims = [shape] if np.ndim(shape) == 0 else list(np.asarray(shape).ravel())
    n = times
    for d in dims:
        d = int(d)
        if d < 0:
            raise ValueError(f"negative dimension {d}")
        n *= d
    if n > MAX_ELEMENTS:
        raise ExpressionError(f"array of {n} elements is larger than the limit of {MAX_ELEMENTS}")


def shift_axis(batched_args: frozenset, attrs: Dict[str, Any], key: str = "axis") -> Optional[Dict[str, Any]]:
    """Batch rule of ops with a per-trial `axis` (int or tuple): non-negative axes move one to the right past
    the batch axis; None (all axes) cannot run on the batch."""
    axis = attrs.get(key)
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return {**attrs, key: tuple(int(a) + 1 if int(a) >= 0 else int(a) for a in axis)}
    return {**attrs, key: int(axis) + 1 if int(axis) >= 0 else int(axis)}
