"""What the LLVM backend compiles: a `Program` checked and rewritten as a list of kernels over flat tensors.

Every op is lowered through its registry record (mdfbridge.ops): records with an `llvm_kernel` get that kernel
(projections `MatMul(A=vector, B=parameter matrix)`, SoftMax); elementwise records with a scalar form (`llvm`)
or a `formula` get an elementwise kernel (gradients from the record's derivatives), except that maximal chains
of ops affine in their tensor inputs with constant coefficients (sums of afferents, `weight * x`, Tanh's
`gain * (x + bias) + offset`) are fused into one `affine` kernel; an `expr` op is lowered as the tree of
registry ops its expression compiles to. Everything else raises UnsupportedError naming the node and construct
and saying that backend 'torch' runs it.

Every tensor is a flat per-trial vector; tensors with the batch axis hold one row per trial of the
minibatch, the others one row shared by all trials (read with row stride 0, so gradients flowing into
them from batched consumers sum over the minibatch).
"""
from __future__ import annotations

import logging
import numbers
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from ..errors import UnsupportedError
from ..expressions import Call, Const, Var
from ..ops import OpDef, get_op
from ..program import Op, Program, TensorRef
from .llvm_affine import Affine, affine_form
from .llvm_scalar import USE_TORCH

log = logging.getLogger(__name__)

# kernel kinds (llvm_kernels has an emitter for each; records name theirs in `OpDef.llvm_kernel`)
PROJECTION = "projection"
AFFINE = "affine"
ELEMENTWISE = "elementwise"
SOFTMAX = "softmax"

Arg = Union[str, float]  # an op argument in the plan: a tensor name or a static number


@dataclass
class Tensor:
    """A flat tensor: `size` values per row; `batched`: one row per trial; kind input | param | value."""

    name: str
    size: int
    batched: bool
    kind: str
    grad: bool = False  # its gradient is computed during training


@dataclass
class Kernel:
    """One compiled step: `kind` picks the emitter (projection | affine | elementwise | softmax).

    `tree` (affine, elementwise) is the scalar expression computed per element, over variables named by
    `inputs` (variable -> tensor) and `statics` (variable -> number); `op` is the record of a projection,
    elementwise or softmax kernel (elementwise: `tree` applies it to its arguments)."""

    kind: str
    node: str
    out: str
    inputs: Dict[str, str]
    statics: Dict[str, float] = field(default_factory=dict)
    op: Optional[OpDef] = None
    tree: Any = None
    coefs: Dict[str, float] = field(default_factory=dict)  # affine: d out / d tensor

    @property
    def fn(self) -> str:
        """The op's name (the kernel kind for fused affine kernels), for messages."""
        return self.op.name if self.op is not None else self.kind

    @property
    def record(self) -> OpDef:
        """The op record of a projection, elementwise or softmax kernel (fused affine kernels have none)."""
        assert self.op is not None, f"{self.kind} kernel at {self.where} has no op record"
        return self.op

    def partial(self, arg: str) -> str:
        """The record's d out / d `arg` (plan() refused a gradient through an argument without one)."""
        d = self.record.partial(arg)
        assert d is not None, f"{self.fn} has no derivative in argument '{arg}'"
        return d

    @property
    def where(self) -> str:
        """`node '...'` for error messages."""
        return f"node '{self.node}'"


@dataclass
class Plan:
    """Kernels in program order over tensors, plus where inputs, outputs, targets and parameters live."""

    tensors: Dict[str, Tensor]
    kernels: List[Kernel]
    params: List[str]  # parameter order in the flat parameter buffer: trainable ones first
    param_offset: Dict[str, int]
    n_params: int
    n_train: int  # values of trainable parameters (a prefix of the parameter buffer)
    inputs: List[Tuple[str, str, int, int]]  # (input name, tensor, column, size) in the packed input rows
    outputs: List[Tuple[str, str, int, int]]  # (output name, tensor, column, size)
    targets: List[Tuple[str, str, int, int]] = field(default_factory=list)  # outputs with targets
    aliases: Dict[str, str] = field(default_factory=dict)  # program tensor -> the tensor it is (fused or renamed)

    def canon(self, name: str) -> str:
        """The plan's tensor a program tensor name stands for."""
        return _follow(self.aliases, name)

    @property
    def n_in(self) -> int:
        """Values per trial of the packed inputs."""
        return sum(s for *_, s in self.inputs)

    @property
    def n_out(self) -> int:
        """Values per trial of the packed outputs."""
        return sum(s for *_, s in self.outputs)

    @property
    def n_target(self) -> int:
        """Values per trial of the packed targets."""
        return sum(s for *_, s in self.targets)


def _follow(aliases: Dict[str, str], name: str) -> str:
    """The tensor `name` stands for: its aliases followed to the end."""
    while name in aliases:
        name = aliases[name]
    return name


def _unsupported(what: str, node: str) -> UnsupportedError:
    """UnsupportedError naming the node and what it is not supported for."""
    return UnsupportedError(f"{what} is not supported by the llvm backend; {USE_TORCH}", where=f"node '{node}'")


def _static(v: Any) -> Optional[float]:
    """A plain number (or 0-d array) as a float, else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, np.ndarray) and v.ndim == 0 and np.issubdtype(v.dtype, np.number):
        return float(v)
    return None


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape)) if len(shape) else 1


@dataclass
class _Pending:
    """An affine value not computed yet: consumers that are affine too inline it (fusion)."""

    tree: Any  # over Var(tensor) leaves
    form: Affine
    size: int
    node: str


class _Builder:
    """Builds a Plan from a Program (see `analyse`)."""

    def __init__(self, program: Program) -> None:
        self.prog = program
        self.tensors: Dict[str, Tensor] = {}
        self.alias: Dict[str, str] = {}
        self.kernels: List[Kernel] = []
        self.pending: Dict[str, _Pending] = {}
        self.uses: Counter = Counter(program.outputs.values())  # readers of each tensor
        for op in program.ops:
            for v in op.args.values():
                if isinstance(v, TensorRef):
                    self.uses[v.name] += 1

    # ------------------------------------------------------------------ tensors
    def canon(self, name: str) -> str:
        """The tensor a name stands for (following aliases)."""
        return _follow(self.alias, name)

    def alias_to(self, name: str, target: str) -> None:
        """`name` is `target` (its readers read target)."""
        self.alias[name] = target
        self.uses[target] += self.uses[name] - 1

    def size_of(self, name: str) -> int:
        """Values per trial of a computed or pending tensor."""
        return self.pending[name].size if name in self.pending else self.tensors[name].size

    def tensor(self, ref: Any, op: Op, arg: str) -> str:
        """The computed (canonical) tensor an op argument reads."""
        name = self.canon(ref.name)
        if name not in self.tensors and name not in self.pending:
            raise _unsupported(f"argument '{arg}' reading '{ref.name}' (not a tensor the llvm backend computes)",
                               op.node)
        self.materialize(name)
        return self.canon(name)

    def arg(self, v: Any, op: Op, arg: str) -> Arg:
        """An op argument: a (canonical, maybe pending) tensor name or a static number."""
        if isinstance(v, TensorRef):
            name = self.canon(v.name)
            if name not in self.tensors and name not in self.pending:
                raise _unsupported(f"argument '{arg}' reading '{v.name}' (not a tensor the llvm backend computes)",
                                   op.node)
            return name
        static = _static(v)
        if static is None:
            raise _unsupported(f"argument '{arg}' = {v!r}", op.node)
        return static

    def out_size(self, op: Op) -> int:
        """Values per trial of an op's output (vectors only)."""
        shape = self.prog.shapes.get(op.out)
        if shape is None:
            raise _unsupported(f"'{op.out}' with unknown shape", op.node)
        if len(shape) > 1:
            raise _unsupported(f"'{op.out}' of per-trial shape {tuple(shape)} (only vectors)", op.node)
        return _size(shape)

    def add_value(self, out: str, size: int, inputs: Sequence[str]) -> None:
        """Declare a computed tensor (batched when an input is)."""
        self.tensors[out] = Tensor(out, size, any(self.tensors[t].batched for t in inputs), "value")

    def materialize(self, name: str) -> None:
        """Compute a pending affine value: an `affine` kernel, or an alias when it is one tensor as it is."""
        p = self.pending.pop(name, None)
        if p is None:
            return
        same = p.form.is_identity()
        if same is not None and self.tensors[same].size == p.size:
            self.alias_to(name, same)
            return
        self.add_value(name, p.size, list(p.form.coefs))
        self.kernels.append(Kernel(AFFINE, p.node, name, {t: t for t in p.form.coefs}, tree=p.tree,
                                   coefs=dict(p.form.coefs)))

    # ------------------------------------------------------------------ ops
    def build(self, stateful: bool = False) -> Tuple[Dict[str, Tensor], List[Kernel], Dict[str, str]]:
        """(tensors, kernels, aliases) of the program; raises UnsupportedError at the first unsupported op.
        stateful: a program with states is stepped through time by its caller (importers/llvm_bptt.py): each state
        is a per-trial tensor the step reads, `dt` a one-value tensor (default False: states refused)."""
        prog = self.prog
        if prog.states and not stateful:
            name, st = next(iter(prog.states.items()))
            raise _unsupported(f"a stateful program (state '{name}', {st.kind}) outside backprop through time",
                               st.node)
        for name, st in prog.states.items():
            if np.ndim(st.initial) > 1:
                raise _unsupported(f"state '{name}' of per-trial shape {np.shape(st.initial)} (only vectors)", st.node)
            self.tensors[name] = Tensor(name, int(np.size(st.initial)), True, "state")
        if prog.states:
            self.tensors["dt"] = Tensor("dt", 1, False, "state")
        for spec in prog.inputs.values():
            name = f"{spec.node}.{spec.port}"
            shape = prog.shapes.get(name, spec.shape or ())
            if len(shape) > 1:
                reader = next((op for op in prog.ops if any(getattr(v, "name", None) == name
                                                            for v in op.args.values())), None)
                by = f" (read by {reader.fn} in node '{reader.node}')" if reader is not None else ""
                raise _unsupported(f"input '{spec.name}' of per-trial shape {tuple(shape)}{by}", spec.node)
            self.tensors[name] = Tensor(name, _size(shape), True, "input")
        for name, p in prog.params.items():
            self.tensors[name] = Tensor(name, int(np.size(p.value)), False, "param")
        for op in prog.ops:
            self.lower_call(op)
        for out in [*prog.outputs.values(), *(st.update for st in prog.states.values())]:
            self.materialize(self.canon(out))
        return self.tensors, self.kernels, self.alias

    def lower_call(self, op: Op) -> None:
        """A `call` op, as its record says."""
        opdef = get_op(op.fn)
        if opdef is not None and opdef.llvm_kernel in KERNEL_LOWERERS:
            KERNEL_LOWERERS[opdef.llvm_kernel](self, op, opdef)
        elif opdef is not None and _scalar(opdef):
            for a in opdef.attrs:  # a scalar form reads the record's arguments only: attributes must be defaults
                if a not in opdef.args and a in op.args and op.args[a] != opdef.defaults.get(a):
                    raise _unsupported(f"function '{op.fn}' with {a}={op.args[a]!r} (its scalar form computes "
                                       f"{a}={opdef.defaults.get(a)!r})", op.node)
            given = _arguments(opdef, op.args, lambda a: _unsupported(f"function '{op.fn}' without argument '{a}'",
                                                                      op.node))
            self.apply(op.node, op.out, opdef, {a: self.arg(v, op, a) for a, v in given.items()}, self.out_size(op))
        else:
            raise _unsupported(f"function '{op.fn}'", op.node)

    def apply(self, node: str, out: str, opdef: OpDef, args: Dict[str, Arg], size: int) -> None:
        """`out = opdef(**args)` elementwise: pending (fused) when affine in its tensor arguments, else an
        elementwise kernel."""
        reads = Counter(t for t in args.values() if isinstance(t, str))
        if not reads:
            raise _unsupported(f"function '{opdef.name}' of constants only", node)
        for t, n in reads.items():
            if self.size_of(t) not in (1, size):
                raise _unsupported(f"an argument of size {self.size_of(t)} broadcast to {size}", node)
            if t in self.pending and (self.uses[t] > 1 or n > 1):  # computed once, not inlined into each reader
                self.materialize(t)
        args = {a: self.canon(v) if isinstance(v, str) else v for a, v in args.items()}
        tensors = {a: t for a, t in args.items() if isinstance(t, str)}
        forms = {a: self.pending[t].form if t in self.pending else Affine.of(t) for a, t in tensors.items()}
        form = affine_form(_application(opdef), lambda a: forms.get(a, args.get(a)))
        if form is not None:
            tree = Call(opdef, {a: (self.pending.pop(v).tree if v in self.pending else Var(v))
                                if isinstance(v, str) else Const(v) for a, v in args.items()})
            self.pending[out] = _Pending(tree, form, size, node)
            return
        for t in tensors.values():
            self.materialize(t)
        inputs = {a: self.canon(t) for a, t in tensors.items()}
        self.add_value(out, size, list(inputs.values()))
        self.kernels.append(Kernel(ELEMENTWISE, node, out, inputs,
                                   {a: v for a, v in args.items() if not isinstance(v, str)}, op=opdef,
                                   tree=_application(opdef)))

def _arguments(opdef: OpDef, given: Dict[str, Any], missing: Callable[[str], Exception]) -> Dict[str, Any]:
    """The record's arguments: given, or their defaults (`missing(arg)` is raised for one with neither)."""
    out = {}
    for a in opdef.args:
        if a in given:
            out[a] = given[a]
        elif a in opdef.defaults:
            out[a] = opdef.defaults[a]
        else:
            raise missing(a)
    return out


def _scalar(opdef: OpDef) -> bool:
    """Does the record have a scalar form the llvm backend compiles (elementwise, `llvm` or `formula`)?"""
    return opdef.elementwise and (opdef.llvm is not None or opdef.formula is not None)


def _application(opdef: OpDef) -> Call:
    """The tree applying `opdef` to variables named as its arguments."""
    return Call(opdef, {a: Var(a) for a in opdef.args})


# ------------------------------------------------------------------------------------------ kernel lowerers

def _lower_projection(bld: _Builder, op: Op, opdef: OpDef) -> None:
    a, w = op.args.get("A"), op.args.get("B")
    if not isinstance(a, TensorRef) or not isinstance(w, TensorRef):
        raise _unsupported(f"{op.fn} with a constant operand", op.node)
    a_name, w_name = bld.tensor(a, op, "A"), bld.canon(w.name)
    param = bld.prog.params.get(w_name)
    if param is None or np.ndim(param.value) != 2:
        raise _unsupported(f"{op.fn} whose B is not a parameter matrix ('{w.name}')", op.node)
    rows, cols = param.value.shape
    a_shape = bld.prog.shapes.get(a.name, (bld.tensors[a_name].size,))
    if len(a_shape) != 1 or bld.tensors[a_name].size != rows:
        raise _unsupported(f"{op.fn} of per-trial shapes {tuple(a_shape)} @ {param.value.shape}", op.node)
    bld.add_value(op.out, cols, [a_name])
    bld.kernels.append(Kernel(PROJECTION, op.node, op.out, {"A": a_name, "B": w_name}, op=opdef))


def _lower_softmax(bld: _Builder, op: Op, opdef: OpDef) -> None:
    size = bld.out_size(op)
    x, gain = opdef.args
    inputs: Dict[str, str] = {}
    statics: Dict[str, float] = {}
    for a in (x, gain):
        v = bld.arg(op.args.get(a, opdef.defaults.get(a)), op, a)
        if isinstance(v, str):
            inputs[a] = bld.tensor(TensorRef(v), op, a)
        else:
            statics[a] = v
    if x not in inputs or bld.tensors[inputs[x]].size != size:
        raise _unsupported(f"{op.fn} of a broadcast or constant argument", op.node)
    if gain in inputs and bld.tensors[inputs[gain]].size not in (1, size):
        raise _unsupported(f"argument '{gain}' of size {bld.tensors[inputs[gain]].size} broadcast to {size}",
                           op.node)
    bld.add_value(op.out, size, list(inputs.values()))
    bld.kernels.append(Kernel(SOFTMAX, op.node, op.out, inputs, statics, op=opdef))


KERNEL_LOWERERS: Dict[str, Callable[[_Builder, Op, OpDef], None]] = {PROJECTION: _lower_projection,
                                                                     SOFTMAX: _lower_softmax}


# ------------------------------------------------------------------------------------------ analysis

def analyse(program: Program, targets: Optional[Sequence[str]] = None, stateful: bool = False) -> Plan:
    """Check `program` and build its Plan; with `targets` (output names) also the training plan; stateful: the
    plan of one time step of a stateful program (see _Builder.build; default False)."""
    tensors, kernels, alias = _Builder(program).build(stateful)

    def canon(name: str) -> str:
        return _follow(alias, name)

    trainable: List[str] = []
    if targets is not None:
        trainable = _check_training(program, tensors, kernels, [canon(program.outputs[k]) for k in targets],
                                    {name: canon(st.update) for name, st in program.states.items()})
    order = trainable + [k for k in program.params if k not in trainable]
    offsets, pos = {}, 0
    for k in order:
        offsets[k] = pos
        pos += tensors[k].size
    n_train = sum(tensors[k].size for k in trainable)

    def columns(items: List[Tuple[str, str]]) -> List[Tuple[str, str, int, int]]:
        out, col = [], 0
        for name, t in items:
            out.append((name, t, col, tensors[t].size))
            col += tensors[t].size
        return out

    inputs = columns([(k, f"{s.node}.{s.port}") for k, s in program.inputs.items()])
    outputs = columns([(k, canon(t)) for k, t in program.outputs.items()])
    plan = Plan(tensors, kernels, order, offsets, pos, n_train, inputs, outputs, aliases=dict(alias))
    if targets is not None:
        plan.targets = columns([(k, canon(program.outputs[k])) for k in targets])
    log.debug("llvm plan for '%s': %d kernels, %d tensors, %d trainable values", program.name, len(kernels),
              len(tensors), n_train)
    return plan


def _check_training(program: Program, tensors: Dict[str, Tensor], kernels: List[Kernel],
                    target_tensors: List[str], updates: Optional[Dict[str, str]] = None) -> List[str]:
    """Mark the tensors whose gradients training needs; returns the trainable parameters (autograd's leaves
    that reach the loss: torch gives the others no gradient, so its optimizer skips them). updates: state ->
    its update's tensor (a state depends on the weights through the earlier steps, and its update reaches the
    loss through the later ones; default None: no states)."""
    updates = updates or {}
    learnable = [k for k, p in program.params.items() if p.learnable]
    if not learnable:
        raise UnsupportedError("the model has no learnable parameters")
    for k in kernels:
        for arg, t in k.inputs.items():
            if t in learnable and not (k.kind == PROJECTION and arg == "B"):
                raise _unsupported(f"learnable parameter '{t}' used as argument '{arg}' of "
                                   f"{k.fn} (the llvm backend trains projection matrices only)", k.node)
    depends: Set[str] = set(learnable) | set(updates)  # tensors computed from a learnable parameter
    for k in kernels:
        if any(t in depends for t in k.inputs.values()):
            depends.add(k.out)
    reach: Set[str] = set(target_tensors) | set(updates.values())  # tensors the loss depends on
    for k in reversed(kernels):
        if k.out in reach:
            reach.update(k.inputs.values())
    for name in depends & reach:
        tensors[name].grad = True
    for k in kernels:
        if not tensors[k.out].grad:
            continue
        for arg, t in k.inputs.items():
            if tensors[t].grad and k.kind in (ELEMENTWISE, SOFTMAX) and k.record.partial(arg) is None:
                raise _unsupported(f"a gradient through argument '{arg}' of {k.fn} (no derivative in the registry)",
                                   k.node)
    trainable = [k for k in learnable if tensors[k].grad]
    if not trainable:
        raise UnsupportedError(f"no learnable parameter affects the outputs with targets "
                               f"({', '.join(target_tensors)}); nothing to train")
    return trainable
