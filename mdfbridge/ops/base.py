"""The op record and the one registry of ops every backend reads.

An op's record (`OpDef`) holds everything a backend needs to know about it, or says it has none: canonical
name and aliases (with argument renames and the defaults an alias implies), arguments, attributes and defaults,
numpy and torch implementations, derivative, batch rule, and the hooks later layers read (argument validation,
shape rule, LLVM form, ONNX export, torch module, ONNX import mapping, MDF value form). Backends look ops up here
by canonical name; lowering canonicalises aliases once (`resolve`, `call_defaults`), so no backend sees an alias.
"""
from __future__ import annotations

import functools
import inspect
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple, Union

if TYPE_CHECKING:  # the backends' types, for hints only (the registry imports no backend)
    from ..exporters.onnx_graph import OnnxGraphBuilder, Operand
    from ..importers.onnx_node import Emitted, NodeImport
    from ..program import Op

Array = Any
BatchRule = Callable[[frozenset, Dict[str, Any]], Optional[Dict[str, Any]]]


@dataclass(frozen=True)
class Alias:
    """Another name of an op (e.g. `onnx::MatMul` for `MatMul`); `args` renames the alias's arguments
    (alias argument -> canonical argument); `defaults` are the values a call under this name gets for canonical
    arguments it does not write, where they differ from the op's own defaults (e.g. the weight layout an alias
    implies, or the alias's own default of an attribute)."""

    name: str
    args: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # arguments a call under this name may write that the op does not read (another writer's extras, e.g.
    # PsyNeuLink's softmax `adapt_*`); `check(written_args, where)` refuses calls where they would matter
    ignores: Tuple[str, ...] = ()
    check: Optional[Callable[[Mapping[str, Any], str], None]] = None


@dataclass(frozen=True)
class Variant:
    """Another writer's meaning of an op's name: a call of the op that writes any argument in `when_any` is
    read as op `op` instead (PsyNeuLink's `logistic` writes `x_0` and `scale`, which MDF's standard `logistic`
    does not take, and means something else by `offset`)."""

    op: str
    when_any: Tuple[str, ...]


@dataclass
class TorchModuleBinding:
    """What an op's `torch_module` hook returns: a torch module computing the op and the mapping between its
    weights and the program's parameters (a module plus a mapping, as onnx2torch's converters return).

    - `module`: the `torch.nn.Module` holding the op's weights; the program's module registers it as
      `<collection>[<key>]`, so its state_dict keys read `<collection>.<key>.<weight>`.
    - `params`: the program parameters the module holds (the program's module makes no tensors for them).
    - `forward(env)`: the op's value, reading its inputs from `env` (tensor name -> tensor).
    - `to_program()`: the module's current weights as values of those program parameters (name -> float64
      array), layouts converted.
    - `from_program(values)`: set the module's weights from program parameter values (name -> array).
    """

    module: Any
    collection: str
    key: str
    params: Tuple[str, ...]
    forward: Callable[[Mapping[str, Any]], Any]
    to_program: Callable[[], Dict[str, Any]]
    from_program: Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class OnnxImport:
    """ONNX op `op_type` imports as this op for opsets `since`..`until` (inclusive; None: every later opset).

    `handler(node)` turns one ONNX node (an `importers.onnx_node.NodeImport`) into one MDF function (an
    `Emitted`); `constant_inputs` are the input positions it reads as constants (weights, shapes, axes), which
    onnx's backend node tests feed as graph inputs.
    """

    op_type: str
    since: int
    until: Optional[int]
    handler: Callable[[NodeImport], Emitted]
    constant_inputs: Tuple[int, ...] = ()

    def covers(self, opset: int) -> bool:
        """Does this entry handle `op_type` at `opset`?"""
        return self.since <= opset and (self.until is None or opset <= self.until)

    def overlaps(self, other: "OnnxImport") -> bool:
        """Do the two entries handle the same op type at some common opset?

        other: another OnnxImport entry (the registry refuses overlapping entries)."""
        return (self.op_type == other.op_type and (other.until is None or self.since <= other.until)
                and (self.until is None or other.since <= self.until))


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
    - `variants`: other meanings of this op's name, told apart by the arguments a call writes (`Variant`);
      lowering reads calls through `read_call`.
    - `fold`: reductions: (the elementwise op that combines two values, its identity), e.g. ("Add", 0.0).
    - `value_form(x)`: the MDF `value` expression mdfbridge writes for this op applied to expression `x`
      (modeci-mdf evaluates it); lowering runs such a value as this op.
    - `shape(args)`: the per-trial output shape from the arguments' shapes (mdfbridge.ops.shape_rules); None
      for elementwise ops, whose output broadcasts their tensor arguments.
    - `simplify(args, constants)`: an exact rewrite of a call (constants: the values of its non-learnable
      parameter arguments) as (op name, args), or None; backends that compile ops apply it.
    - `specialise(static, tensors, lib)`: for a call whose static arguments are `static`, a function of the
      tensor arguments named in `tensors` (positionally, in that order) computing the same numbers as the `lib`
      ('numpy' or 'torch') implementation with less overhead, or None; the executor's hot path uses it.
    - `weight_arg`: the argument holding the weights of a product with weights (MatMul, Gemm): written inline in
      a projection node (PsyNeuLink's `<projection>_dummy_node`s) it is learnable, and the ONNX importer makes
      a constant added right after such a product a learnable bias.
    - `matrix_product`: the op is the plain matrix product of its first two arguments, A @ B per trial (MatMul):
      a 2-D weight in it maps its other operand onto units, a row (A = W) or a column (B = W) per unit, which is
      how e-prop keeps eligibility traces and RLS regresses (mdfbridge/learning/stepping.py).
    - `expr_names`: the names MDF `value` expressions call this op by (`exp`, `numpy.exp`; positional
      arguments in `all_args` order); operators (`+`, `<`, `@`, ...) map to ops in mdfbridge.expressions.
    - `onnx_export(builder, op)`: emits the ONNX nodes computing one Program op through an
      `exporters.onnx_graph.OnnxGraphBuilder` and returns its value.
    - `onnx_import`: the ONNX op types (with opset ranges) the ONNX importer reads as this op.
    - `validate(node, args, params)`: called by lowering for every call of the op with its arguments (tensor
      references or static values) and the parameters lowered so far (name -> Param); raises a ShapeError or
      UnsupportedError naming the node when the call cannot run.
    - `torch_module(op, params, dtype, device)`: a `TorchModuleBinding` running the op as a torch module of
      its own (weights converted once), or None: the op's `torch` implementation runs on the parameter tensors.
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
    shape: Optional[Callable[[Mapping[str, Any]], Tuple[int, ...]]] = None
    simplify: Optional[Callable[[Mapping[str, Any], Mapping[str, Any]], Optional[Tuple[str, Dict[str, Any]]]]] = None
    weight_arg: Optional[str] = None
    matrix_product: bool = False
    specialise: Optional[Callable[[Mapping[str, Any], Tuple[str, ...], str], Optional[Callable[..., Any]]]] = None
    onnx_export: Optional[Callable[[OnnxGraphBuilder, Op], Operand]] = None
    onnx_import: Tuple[OnnxImport, ...] = ()
    validate: Optional[Callable[[str, Mapping[str, Any], Mapping[str, Any]], None]] = None
    torch_module: Optional[Callable[..., Optional[TorchModuleBinding]]] = None
    formula: Optional[str] = None
    derivatives: Mapping[str, str] = field(default_factory=dict)
    llvm: Optional[Callable[..., Any]] = None
    llvm_kernel: Optional[str] = None
    fold: Optional[Tuple[str, float]] = None
    variants: Tuple[Variant, ...] = ()

    @functools.cached_property
    def all_args(self) -> Tuple[str, ...]:
        """Positional arguments followed by attributes (computed once: lowering reads it for every call)."""
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
_ALIAS_DEFAULTS: Dict[str, Mapping[str, Any]] = {}  # alias name -> the defaults it implies
_ALIAS_RECORDS: Dict[str, Alias] = {}


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
        _ALIAS_DEFAULTS[a.name] = dict(a.defaults)
        _ALIAS_RECORDS[a.name] = a
    for n in op.expr_names:
        EXPRESSION_FUNCTIONS[n] = op
    _read_call_names.cache_clear()  # (a name read before as unknown may be this op's)
    return op


def resolve(name: str) -> Optional[Tuple[OpDef, Mapping[str, str]]]:
    """(the op called `name` or aliased by it, argument renames from the alias's names), or None."""
    if name in REGISTRY:
        return REGISTRY[name], {}
    hit = _ALIASES.get(name)
    if hit is None:
        return None
    return REGISTRY[hit[0]], hit[1]


@dataclass(frozen=True)
class Call:
    """How lowering reads one written call (`read_call`): the op, argument renames (written -> canonical),
    the written arguments it drops, and the defaults of arguments the call does not write."""

    op: OpDef
    renames: Mapping[str, str]
    ignored: frozenset
    defaults: Mapping[str, Any]


def read_call(name: str, written: Mapping[str, Any], where: Union[str, Callable[[], str]] = "") -> Optional[Call]:
    """The call of function `name` with arguments `written` (as in the document), or None for an unknown name:
    aliases resolved, a `Variant` of the op chosen by the written argument names, an alias's ignored arguments
    checked (`Alias.check` raises where they would change the result) and dropped.

    name: the function name as written (canonical, alias or `onnx::...`); written: the written arguments (argument
    name -> value; only the names choose the variant, the values go to `Alias.check`); where: the call's place in
    the document, for `Alias.check`'s error message, or a function making it (default '': none given)."""
    call = _read_call_names(name, frozenset(written))
    if call is not None:
        alias = _ALIAS_RECORDS.get(name)
        if alias is not None and alias.check is not None:
            alias.check(written, where if isinstance(where, str) else where())
    return call


@functools.lru_cache(maxsize=4096)
def _read_call_names(name: str, written: frozenset) -> Optional[Call]:
    """read_call but for Alias.check, which reads the values: what the function name and the written argument
    names decide (a document repeats the same few calls; `defaults` read-only)."""
    hit = resolve(name)
    if hit is None:
        return None
    op, renames = hit
    defaults = call_defaults(name)
    canonical = {renames.get(a, a) for a in written}
    for v in op.variants:
        if canonical & set(v.when_any):
            op, renames, defaults = REGISTRY[v.op], {}, dict(REGISTRY[v.op].defaults)
            break
    alias = _ALIAS_RECORDS.get(name)
    ignored = frozenset(a for a in written if a in alias.ignores) if alias is not None else frozenset()
    return Call(op, renames, ignored, types.MappingProxyType(defaults))


def call_defaults(name: str) -> Mapping[str, Any]:
    """The defaults of a call written as `name`: the op's own, overridden by those its alias implies."""
    hit = resolve(name)
    if hit is None:
        return {}
    return {**hit[0].defaults, **_ALIAS_DEFAULTS.get(name, {})}


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
def binary_specialise(numpy_fn: Callable[[Any, Any], Any],
                      torch_fn: Callable[[Any, Any], Any]) -> Callable[..., Optional[Callable[..., Any]]]:
    """`specialise` of a binary op `f(A, B)`: positional calls on two tensors, or one tensor and a static
    operand.

    numpy_fn, torch_fn: f(A, B) for numpy arrays and for torch tensors. The returned specialise(static, tensors,
    lib) gives f (tensors ('A', 'B')), or f with the static operand bound (('A',) or ('B',), the other in
    `static`), or None otherwise; `lib` 'numpy' picks numpy_fn, anything else torch_fn."""
    def specialise(static: Mapping[str, Any], tensors: Tuple[str, ...], lib: str) -> Optional[Callable[..., Any]]:
        f = numpy_fn if lib == "numpy" else torch_fn
        if tensors == ("A", "B"):
            return f
        if tensors == ("A",) and "B" in static:
            b = static["B"]
            return lambda A: f(A, b)
        if tensors == ("B",) and "A" in static:
            a = static["A"]
            return lambda B: f(a, B)
        return None
    return specialise


# --------------------------------------------------------------------------- batching policies

def first_arg_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Matrix products: fine on a batch when only the left operand carries the batch axis.

    batched_args: the argument names whose values carry a leading batch axis; attrs: the call's static
    attributes. Returns attrs unchanged when batched_args is within {'A'}, else None (run trial by trial)."""
    return attrs if batched_args <= {"A"} else None


def never(batched_args: frozenset, attrs: Dict[str, Any]) -> None:
    """Shape-dependent ops: run trial by trial.

    batched_args, attrs: as for every batch rule (see first_arg_batched); ignored. Always None."""
    return None


def only_x(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Ops over whole inputs X (sequence ops, convolution): fine on a batch when only X carries the batch axis.

    batched_args: the argument names whose values carry a leading batch axis; attrs: the call's static
    attributes. Returns attrs unchanged when batched_args is within {'X'}, else None."""
    return attrs if batched_args <= {"X"} else None


def check_size(shape: Any, times: int = 1, what: str = "array") -> None:
    """Refuse to create an array of more elements than the limit max_elements (mdfbridge.limits), before creating
    it (an ExpressionLimitError naming the count, the shape and the limit).

    shape: the array's shape, an int or a sequence of ints; times: a factor the element count is multiplied by
    (default 1; Tile passes its input's element count with its repeats as the shape); what: the array, for the
    message (default 'array'). A negative dimension raises ExpressionError."""
    import math

    import numpy as np

    from .. import limits
    from ..errors import ExpressionError
    from .budget import ExpressionLimitError

    try:
        dims = [int(d) for d in ([shape] if np.ndim(shape) == 0 else list(np.asarray(shape, dtype=object).ravel()))]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ExpressionError(f"bad array shape {str(shape)[:60]}: {exc}") from None
    for d in dims:
        if d < 0:
            raise ExpressionError(f"negative dimension {d} in array shape {tuple(dims)}")
    n = int(times) * math.prod(dims)
    bound = limits.current().max_elements
    if n > bound:
        shown = str(tuple(dims)) if len(str(tuple(dims))) <= 80 else f"of {len(dims)} dimensions"
        raise ExpressionLimitError(f"{what} (shape {shown}{f' x {times:,}' if times != 1 else ''}) would have "
                                   f"{n:,} elements, over the limit max_elements={bound:,} (raise it with --limit "
                                   f"max_elements=N or {limits.ENV_VAR})")


def shift_axis(batched_args: frozenset, attrs: Dict[str, Any], key: str = "axis") -> Optional[Dict[str, Any]]:
    """Batch rule of ops with a per-trial `axis` (int or tuple): non-negative axes move one to the right past
    the batch axis; None (all axes) cannot run on the batch.

    batched_args: the argument names carrying the batch axis (not read: the batch axis is always first);
    attrs: the call's static attributes; key: the attribute holding the axis (default 'axis'). Returns a copy of
    attrs with the axis shifted (negative axes unchanged), or None when attrs[key] is None or missing."""
    axis = attrs.get(key)
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return {**attrs, key: tuple(int(a) + 1 if int(a) >= 0 else int(a) for a in axis)}
    return {**attrs, key: int(axis) + 1 if int(axis) >= 0 else int(axis)}
