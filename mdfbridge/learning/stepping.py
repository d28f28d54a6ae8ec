"""What the time algorithms share: a minibatch stepped through time on the trainer's module (`Unrolled`), reading a
Program's structure (which tensors an update is computed from, the MatMuls a weight feeds) and re-compiling its
steps with some MatMuls recorded (their batched operand held constant, the operand and the output kept for the
algorithm)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from ..ops import get_op
from ..program import Op, Program, TensorRef

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..backends.torch_trainer import TorchTrainer
    from ..importers.torch_module import ProgramModule
    from .algorithms import Batch


class Unrolled:
    """A minibatch stepped through time on the trainer's module: the environment (`env`), each step's outputs, and
    the truncation that cuts the state's gradient path.

    trainer: the TorchTrainer (its module and time steps); batch: the minibatch, inputs (batch, time steps, ...)."""

    def __init__(self, trainer: "TorchTrainer", batch: "Batch") -> None:
        module = trainer.module
        self.module = module
        self.env, self.size = module.initial_env({k: v[:, 0] for k, v in batch.x.items()})
        # (each step's input views made once: slicing at every step costs more than the step's small ops)
        columns = [(key, v.unbind(1)) for key, v in module.step_feeds(batch.x)]
        self.feeds = [[(key, col[t]) for key, col in columns] for t in range(trainer.time_steps)]
        self.outputs: List[Dict[str, Any]] = []

    def step(self, t: int, dt: float, steps: Optional[List[Any]] = None, keep_graph: bool = True
             ) -> Dict[str, "torch.Tensor"]:
        """Time point t (dt 0 at the first, as modeci-mdf's engine) with the module's compiled steps (or `steps`,
        default None); returns its outputs, kept detached unless `keep_graph` (default True)."""
        out = self.module.step(self.env, self.size, 0.0 if t == 0 else dt, self.feeds[t], steps=steps)
        self.outputs.append(out if keep_graph else {k: v.detach() for k, v in out.items()})
        return out

    def truncate(self) -> None:
        """Detach the state (and the outputs kept so far) from the autograd graph."""
        for name in self.module.program.states:
            self.env[name] = self.env[name].detach()
        self.outputs = [{k: v.detach() for k, v in out.items()} for out in self.outputs]

    def stacked(self, start: int = 0) -> Dict[str, "torch.Tensor"]:
        """Output name -> (batch, steps since `start`, ...)."""
        import torch

        return {k: torch.stack([out[k] for out in self.outputs[start:]], dim=1) for k in self.outputs[0]}


def refs(args: Mapping[str, Any]) -> List[str]:
    """The tensor names an op's args refer to."""
    out: List[str] = []
    for v in args.values():
        if isinstance(v, TensorRef):
            out.append(v.name)
        elif isinstance(v, (list, tuple)):
            out.extend(x.name for x in v if isinstance(x, TensorRef))
    return out


def computed_from(program: Program, tensors: Iterable[str]) -> Set[str]:
    """Every tensor (and parameter) the given tensors are computed from within one step, themselves included."""
    producers = {op.out: op for op in program.ops}
    seen: Set[str] = set()
    stack = list(tensors)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        op = producers.get(name)
        if op is not None:
            stack.extend(refs(op.args))
    return seen


@dataclass(frozen=True)
class WeightUse:
    """A learnable weight's one use: a MatMul onto units, a = W u ('rows': unit j owns row j of W) or a = u W
    ('columns': unit j owns column j), u the batched operand."""

    name: str
    orientation: str  # "rows" | "columns"
    op_out: str
    operand: str


def matmul_use(program: Program, name: str, within: Optional[Set[str]] = None) -> Optional[WeightUse]:
    """How parameter `name` is used, when its only use (among ops whose output is in `within`, default every
    op) is a MatMul with a batched operand and the weight is a matrix; else None."""
    uses = uses_of(program, name, within)
    if len(uses) != 1 or not is_matrix_product(uses[0]) or program.params[name].value.ndim != 2:
        return None
    op = uses[0]
    opdef = get_op(op.fn)
    assert opdef is not None  # (is_matrix_product found its record)
    a, b = (op.args.get(k) for k in opdef.all_args[:2])
    if isinstance(a, TensorRef) and a.name == name and isinstance(b, TensorRef) and b.name not in program.params:
        return WeightUse(name, "rows", op.out, b.name)
    if isinstance(b, TensorRef) and b.name == name and isinstance(a, TensorRef) and a.name not in program.params:
        return WeightUse(name, "columns", op.out, a.name)
    return None


def is_matrix_product(op: Op) -> bool:
    """Whether the op's record says it is a plain matrix product of its first two arguments (`matrix_product`)."""
    opdef = get_op(op.fn)
    return opdef is not None and opdef.matrix_product


def uses_of(program: Program, name: str, within: Optional[Set[str]] = None) -> List[Op]:
    """The ops (whose output is in `within`, default every op) that read tensor `name`."""
    return [op for op in program.ops if (within is None or op.out in within) and name in refs(op.args)]


Recorded = Dict[str, Tuple[Any, Any]]  # MatMul output -> (its value, its operand as the MatMul read it) this step


def recording_steps(module: "ProgramModule", operands: Mapping[str, str], record: Recorded,
                    batched_too: Iterable[str] = (), hold: bool = True) -> List[Any]:
    """The module's program compiled again for the torch module's `step(..., steps=)`: the MatMuls in `operands`
    (output -> batched operand) put (output, operand) into `record`, reading their operand detached (held
    constant) with `hold` (default True); the parameters in `batched_too` (default none) run as per-trial values;
    ops with their own torch module keep it."""
    from ..executor import compile_program

    compiled, _ = compile_program(module.program, "torch", batched_too)

    def recording(out: str, operand: str, f: Callable[[Dict[str, Any]], Any]) -> Callable[[Dict[str, Any]], Any]:
        def run(env: Dict[str, Any]) -> Any:
            u = env[operand]
            held = u.detach() if hold else u
            env[operand] = held
            try:
                result = f(env)
            finally:
                env[operand] = u
            record[out] = (result, held)
            return result
        return run

    return [(op, module.bindings[op.out].forward if op.out in module.bindings else
             recording(op.out, operands[op.out], f) if op.out in operands else f) for op, f in compiled]
