"""What the LLVM backend compiles: a `Program` checked and rewritten as a list of kernels over flat tensors.

Supported (the Program shapes compositions produce): projections `MatMul(A=vector, B=parameter matrix)`,
affine `expr` ops (sums of afferents, Tanh's `gain * (x + bias) + offset`), the registry's elementwise
transfer functions with a forward form below and a derivative in the registry, and SoftMax. Everything
else raises UnsupportedError naming the node and construct and saying that backend 'torch' runs it.

Every tensor is a flat per-trial vector; tensors with the batch axis hold one row per trial of the
minibatch, the others one row shared by all trials (read with row stride 0, so gradients flowing into
them from batched consumers sum over the minibatch).
"""
from __future__ import annotations

import ast
import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..errors import UnsupportedError
from ..executor import batched_tensors
from ..ops import get_op
from ..program import Op, Program, TensorRef
from .llvm_expr import CONSTANTS, parse

log = logging.getLogger(__name__)

USE_TORCH = "use backend 'torch', which runs it"

# What numpy computes for each elementwise registry function (the llvm backend's forward form; same
# evaluation order as the registry's numpy implementation).
FORWARD_FORMS: Dict[str, str] = {
    "linear": "variable0 * slope + intercept",
    "logistic": "1.0 / (1.0 + numpy.exp(-gain * (variable0 + bias) + offset))",
    "exponential": "scale * numpy.exp(rate * variable0 + bias) + offset",
    **{t: f"scale * numpy.{t}(variable0)"
       for t in ("sin", "cos", "tan", "sinh", "cosh", "tanh", "arctan", "arcsin", "arccos")},
    "Relu": "A * (A > 0)",
    "ReLU": "gain * numpy.where(variable0 - bias > 0, variable0 - bias, leak * (variable0 - bias))",
}


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
    """One compiled step: `kind` picks the emitter (matmul | affine | elementwise | softmax)."""

    kind: str
    node: str
    out: str
    inputs: Dict[str, str]  # argument -> tensor
    statics: Dict[str, float] = field(default_factory=dict)
    fn: str = ""
    source: str = ""  # affine: the op's expression; elementwise: the forward form
    coefs: Dict[str, float] = field(default_factory=dict)  # affine: d out / d tensor

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


def _unsupported(what: str, node: str) -> UnsupportedError:
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


class _Builder:
    """Builds a Plan from a Program (see `analyse`)."""

    def __init__(self, program: Program) -> None:
        self.prog = program
        self.batched = batched_tensors(program)
        self.tensors: Dict[str, Tensor] = {}
        self.alias: Dict[str, str] = {}
        self.kernels: List[Kernel] = []

    def canon(self, name: str) -> str:
        """The tensor a name stands for (following aliases)."""
        while name in self.alias:
            name = self.alias[name]
        return name

    def tensor(self, ref: Any, op: Op, arg: str) -> str:
        """The (canonical) tensor an op argument reads."""
        name = self.canon(ref.name)
        if name not in self.tensors:
            raise _unsupported(f"argument '{arg}' reading '{ref.name}' (not a tensor the llvm backend computes)",
                               op.node)
        return name

    def out_size(self, op: Op) -> int:
        """Values per trial of an op's output (vectors only)."""
        shape = self.prog.shapes.get(op.out)
        if shape is None:
            raise _unsupported(f"'{op.out}' with unknown shape", op.node)
        if len(shape) > 1:
            raise _unsupported(f"'{op.out}' of per-trial shape {tuple(shape)} (only vectors)", op.node)
        return _size(shape)

    def add_value(self, op: Op, size: int) -> None:
        """Declare an op's output tensor."""
        self.tensors[op.out] = Tensor(op.out, size, op.out in self.batched, "value")

    def build(self) -> Tuple[Dict[str, Tensor], List[Kernel], Dict[str, str]]:
        """(tensors, kernels, aliases) of the program; raises UnsupportedError at the first unsupported op."""
        prog = self.prog
        if prog.states:
            name, st = next(iter(prog.states.items()))
            raise _unsupported(f"a stateful program (state '{name}', {st.kind})", st.node)
        for spec in prog.inputs.values():
            name = f"{spec.node}.{spec.port}"
            shape = prog.shapes.get(name, spec.shape or ())
            if len(shape) > 1:
                raise _unsupported(f"input '{spec.name}' of per-trial shape {tuple(shape)}", spec.node)
            self.tensors[name] = Tensor(name, _size(shape), True, "input")
        for name, p in prog.params.items():
            self.tensors[name] = Tensor(name, int(np.size(p.value)), False, "param")
        for op in prog.ops:
            if op.kind == "expr":
                lower = LOWERERS["expr"]
            elif op.kind == "call":
                lower = LOWERERS.get(op.fn)
                if lower is None:
                    raise _unsupported(f"function '{op.fn}'", op.node)
            else:
                raise _unsupported(f"op kind '{op.kind}'", op.node)
            lower(self, op)
        return self.tensors, self.kernels, self.alias


# ------------------------------------------------------------------------------------------ op lowerers

LOWERERS: Dict[str, Any] = {}


def lowerer(*names: str) -> Any:
    """Register a function turning one Program op into kernels (keyed by op function name, or 'expr')."""
    def deco(fn):
        for n in names:
            LOWERERS[n] = fn
        return fn
    return deco


@lowerer("MatMul")
def _lower_matmul(bld: _Builder, op: Op) -> None:
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
    bld.tensors[op.out] = Tensor(op.out, cols, op.out in bld.batched, "value")
    bld.kernels.append(Kernel("matmul", op.node, op.out, {"A": a_name, "B": w_name}, fn=op.fn))


def _bind_args(bld: _Builder, op: Op, names: Sequence[str], size: int) -> Tuple[Dict[str, str], Dict[str, float]]:
    """Split an op's arguments into tensors (size 1 or `size`) and static numbers (registry defaults too)."""
    tensors: Dict[str, str] = {}
    statics: Dict[str, float] = {}
    opdef = get_op(op.fn) if op.kind == "call" else None
    for name in names:
        v = op.args.get(name, opdef.defaults.get(name) if opdef else None)
        if isinstance(v, TensorRef):
            t = bld.tensor(v, op, name)
            if bld.tensors[t].size not in (1, size):
                raise _unsupported(f"argument '{name}' of size {bld.tensors[t].size} broadcast to {size}", op.node)
            tensors[name] = t
        elif _static(v) is not None:
            statics[name] = _static(v)
        else:
            raise _unsupported(f"argument '{name}' = {v!r}", op.node)
    return tensors, statics


@lowerer(*FORWARD_FORMS)
def _lower_elementwise(bld: _Builder, op: Op) -> None:
    opdef = get_op(op.fn)
    if opdef is None or opdef.derivative is None:
        raise _unsupported(f"function '{op.fn}' (no derivative in the registry)", op.node)
    size = bld.out_size(op)
    tensors, statics = _bind_args(bld, op, opdef.args, size)
    first = opdef.args[0]
    if first not in tensors:
        raise _unsupported(f"function '{op.fn}' of a constant", op.node)
    if op.fn == "linear" and statics.get("slope") == 1.0 and statics.get("intercept") == 0.0 \
            and bld.tensors[tensors[first]].size == size:
        bld.alias[op.out] = tensors[first]  # x * 1 + 0 is x
        return
    bld.add_value(op, size)
    bld.kernels.append(Kernel("elementwise", op.node, op.out, tensors, statics, fn=op.fn,
                              source=FORWARD_FORMS[op.fn]))


@lowerer("SoftMax")
def _lower_softmax(bld: _Builder, op: Op) -> None:
    size = bld.out_size(op)
    tensors, statics = _bind_args(bld, op, ("variable0", "gain"), size)
    if "variable0" not in tensors or bld.tensors[tensors["variable0"]].size != size:
        raise _unsupported("SoftMax of a broadcast or constant argument", op.node)
    bld.add_value(op, size)
    bld.kernels.append(Kernel("softmax", op.node, op.out, tensors, statics, fn="SoftMax"))


@lowerer("expr")
def _lower_expr(bld: _Builder, op: Op) -> None:
    source = op.expression.source
    size = bld.out_size(op)
    names = [n for n in op.args]
    unknown = sorted(set(op.expression.names) - set(names) - set(CONSTANTS))
    if unknown:
        raise _unsupported(f"expression '{source}' reading {unknown}", op.node)
    tensors, statics = _bind_args(bld, op, names, size)
    tree = parse(source, f"node '{op.node}'")
    coefs, _ = _linear_form(tree, tensors, statics, op)
    if len(tensors) == 1 and coefs == {next(iter(tensors)): 1.0} and isinstance(tree, ast.Name):
        t = next(iter(tensors.values()))
        if bld.tensors[t].size == size:
            bld.alias[op.out] = t  # a single afferent
            return
    bld.add_value(op, size)
    bld.kernels.append(Kernel("affine", op.node, op.out, tensors, statics, source=source,
                              coefs={tensors[k]: 0.0 for k in tensors} | _by_tensor(coefs, tensors)))


def _by_tensor(coefs: Dict[str, float], tensors: Dict[str, str]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for arg, c in coefs.items():
        out[tensors[arg]] = out.get(tensors[arg], 0.0) + c
    return out


def _linear_form(node: ast.AST, tensors: Dict[str, str], statics: Dict[str, float],
                 op: Op) -> Tuple[Dict[str, float], float]:
    """(d expr / d argument for each tensor argument, constant part); anything not affine is unsupported."""
    def fail() -> UnsupportedError:
        return _unsupported(f"expression '{op.expression.source}' (the llvm backend compiles sums of afferents "
                            "and affine maps only)", op.node)

    def rec(n: ast.AST) -> Tuple[Dict[str, float], float]:
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return {}, float(n.value)
        if isinstance(n, ast.Name):
            if n.id in tensors:
                return {n.id: 1.0}, 0.0
            if n.id in statics:
                return {}, statics[n.id]
            if n.id in CONSTANTS:
                return {}, CONSTANTS[n.id]
            raise fail()
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.UAdd, ast.USub)):
            c, k = rec(n.operand)
            s = -1.0 if isinstance(n.op, ast.USub) else 1.0
            return {a: s * v for a, v in c.items()}, s * k
        if isinstance(n, ast.BinOp):
            (ca, ka), (cb, kb) = rec(n.left), rec(n.right)
            if isinstance(n.op, (ast.Add, ast.Sub)):
                s = 1.0 if isinstance(n.op, ast.Add) else -1.0
                out = dict(ca)
                for a, v in cb.items():
                    out[a] = out.get(a, 0.0) + s * v
                return out, ka + s * kb
            if isinstance(n.op, ast.Mult) and (not ca or not cb):
                (c, k), f = ((cb, kb), ka) if not ca else ((ca, ka), kb)
                return {a: v * f for a, v in c.items()}, k * f
            if isinstance(n.op, ast.Div) and not cb and kb != 0.0:
                return {a: v / kb for a, v in ca.items()}, ka / kb
        raise fail()

    coefs, const = rec(node)
    if not all(math.isfinite(v) for v in coefs.values()):
        raise fail()
    return coefs, const


# ------------------------------------------------------------------------------------------ analysis

def analyse(program: Program, targets: Optional[Sequence[str]] = None) -> Plan:
    """Check `program` and build its Plan; with `targets` (output names) also the training plan."""
    tensors, kernels, alias = _Builder(program).build()

    def canon(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    trainable: List[str] = []
    if targets is not None:
        trainable = _check_training(program, tensors, kernels, [canon(program.outputs[k]) for k in targets])
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
    plan = Plan(tensors, kernels, order, offsets, pos, n_train, inputs, outputs)
    if targets is not None:
        plan.targets = columns([(k, canon(program.outputs[k])) for k in targets])
    log.debug("llvm plan for '%s': %d kernels, %d tensors, %d trainable values", program.name, len(kernels),
              len(tensors), n_train)
    return plan


def _check_training(program: Program, tensors: Dict[str, Tensor], kernels: List[Kernel],
                    target_tensors: List[str]) -> List[str]:
    """Mark the tensors whose gradients training needs; returns the trainable parameters (autograd's leaves
    that reach the loss: torch gives the others no gradient, so its optimizer skips them)."""
    learnable = [k for k, p in program.params.items() if p.learnable]
    if not learnable:
        raise UnsupportedError("the model has no learnable parameters")
    for k in kernels:
        for arg, t in k.inputs.items():
            if t in learnable and not (k.kind == "matmul" and arg == "B"):
                raise _unsupported(f"learnable parameter '{t}' used as argument '{arg}' of "
                                   f"{k.fn or k.kind} (the llvm backend trains projection matrices only)", k.node)
    depends: Set[str] = set(learnable)  # tensors computed from a learnable parameter
    for k in kernels:
        if any(t in depends for t in k.inputs.values()):
            depends.add(k.out)
    reach: Set[str] = set(target_tensors)  # tensors the loss depends on
    for k in reversed(kernels):
        if k.out in reach:
            reach.update(k.inputs.values())
    for name in depends & reach:
        tensors[name].grad = True
    for k in kernels:
        if not tensors[k.out].grad:
            continue
        for arg, t in k.inputs.items():
            if tensors[t].grad and k.kind in ("elementwise", "softmax") and arg != next(iter(k.inputs)):
                raise _unsupported(f"a gradient through argument '{arg}' of {k.fn}", k.node)
    trainable = [k for k in learnable if tensors[k].grad]
    if not trainable:
        raise UnsupportedError(f"no learnable parameter affects the outputs with targets "
                               f"({', '.join(target_tensors)}); nothing to train")
    return trainable
