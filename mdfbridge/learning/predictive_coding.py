"""Predictive coding (pcx's algorithm) for feedforward Programs: value nodes ("vodes") whose activities are inferred
by descending an energy for T steps, then one weight step on the same energy.

Value nodes: by default every node that is not an input node, whose value depends on the inputs, and whose value
is read by a projection (a matrix product with a weight: a MatMul or Gemm) or is a model output; for a
composition that is every mechanism after the input (its projections and bias nodes are part of the predictions).
A vode v holds an activity h_v; its prediction u_v is the node's value computed by the model from the activities
of the vodes it reads (the inputs clamped to the data). The energy of a minibatch is the mean over its trials of
the sum of every vode's energy summed over its elements, 'se' 0.5 (h - u)^2 or 'ce' -h log_softmax(u) (over the
last axis), pcx's se_energy and ce_energy.

Per minibatch (mode 'standard', pcx's tutorial): the init step runs the model forward and sets h = u, except that
the outputs with targets start at the target; T inference steps each take the energy's gradient with respect to
every activity that is not frozen (by default the outputs with targets are) and step optim_h; then the energy
with the activities held is backpropagated to the weights and optim_w steps once. Evaluation (`run`, predictions)
is the forward pass.

Mode 'zil' (zero-divergence inference learning, Song et al. 2020): the same init, inference steps of exactly 1 on
each trial's own energy (the activities move by -dE_trial/dh), and each vode's weights take their gradient at the
inference step equal to its distance in vodes from the outputs (the output layer at step 0, the one before it at
step 1, ...), before that step's update; then optim_w steps once. The weight gradients are then backpropagation's
of the output energies as the loss (tested to 1e-10 in float64). It needs T >= the longest distance + 1 and every
path from a vode to the outputs to pass the same number of vodes.

The energies are kept for callbacks and plots: `energies[i]` holds minibatch i's energy at each inference step
(before its update) and, in 'standard' mode, at the weight step; `epoch_accuracy` the fraction of trials per epoch
whose output argmax matched the target's (outputs of more than one column; the outputs before the minibatch's
update), `epoch_energy` each epoch's mean final energy.
"""
from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from ..errors import DataError, UnsupportedError
from ..executor import compile_program, execute
from ..ops import get_op
from ..program import Program
from .algorithms import Batch, LearningAlgorithm, register_algorithm
from .stepping import refs

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..backends.torch_trainer import TorchTrainer

log = logging.getLogger(__name__)

ENERGIES = ("se", "ce")
MODES = ("standard", "zil")
# optax's adamw weight decay (torch's AdamW defaults to 1e-2): what ("adamw", lr) means here, as in pcx
ADAMW_WEIGHT_DECAY = 1e-4
OptimSpec = Union[None, str, Sequence[Any], Callable[..., Any]]


@register_algorithm
class PredictiveCoding(LearningAlgorithm):
    """Predictive coding (see the module docstring).

    T: inference steps per minibatch (default 8); energy: the output vodes' energy, 'se' or 'ce', or a dict
    {vode name: 'se' | 'ce'} naming any vodes (the others 'se'; default 'se'); optim_h: the activities' optimizer
    (default None: plain SGD at 0.01 x the minibatch's size, pcx's tutorial's sgd(1e-2 * batch_size) on the
    minibatch's mean energy); optim_w: the weights' optimizer (default ('adamw', 0.01): optax's adamw, weight decay
    1e-4); mode: 'standard' (default) or 'zil'; vodes: the node (or output) names that get value nodes (default
    None: see the module docstring); frozen: the vodes inference does not move (default None: the outputs with
    targets). An optimizer is (name, learning rate) or (name, learning rate, {keyword: value}) with a torch.optim
    class name in any case ('sgd', 'adamw', 'rmsprop', ...) or the class itself, or a callable taking the list of
    tensors and returning a torch optimizer. optim_w replaces learn()'s optimizer_type / learning_rate /
    weight_decay (a warning says so when those were set)."""

    name: ClassVar[str] = "pc"
    backends: ClassVar[Tuple[str, ...]] = ("torch", "llvm")

    def __init__(self, *, T: int = 8, energy: Union[str, Mapping[str, str]] = "se", optim_h: OptimSpec = None,
                 optim_w: OptimSpec = ("adamw", 0.01), mode: str = "standard", vodes: Optional[Sequence[str]] = None,
                 frozen: Optional[Sequence[str]] = None) -> None:
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise DataError(f"T (inference steps) must be an integer >= 1, got {T!r}")
        if mode not in MODES:
            raise DataError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if isinstance(energy, str):
            _check_energy("energy", energy)
        elif isinstance(energy, Mapping):
            for k, e in energy.items():
                _check_energy(f"energy[{k!r}]", e)
        else:
            raise DataError(f"energy must be 'se', 'ce' or a {{vode: energy}} dict, got {energy!r}")
        if mode == "zil" and optim_h is not None:
            raise DataError("mode='zil' steps the activities by exactly 1 on each trial's energy; leave optim_h unset")
        for label, spec in (("optim_h", optim_h), ("optim_w", optim_w)):
            if spec is not None:
                optimizer_factory(spec, label)  # (checked here: a bad spec fails at construction)
        self.T, self.energy, self.mode = T, energy if isinstance(energy, str) else dict(energy), mode
        self.optim_h, self.optim_w = optim_h, optim_w
        self.vodes = None if vodes is None else [str(v) for v in vodes]
        self.frozen = None if frozen is None else [str(v) for v in frozen]
        self.graph: Optional[VodeGraph] = None
        self.energies: List[List[float]] = []
        self.epoch_accuracy: List[float] = []
        self.epoch_energy: List[float] = []
        self._tally: Dict[int, List[float]] = {}  # epoch -> [correct, trials, sum of final energies, minibatches]

    def settings(self) -> Dict[str, Any]:
        """The constructor arguments."""
        return {"T": self.T, "energy": self.energy, "optim_h": self.optim_h, "optim_w": self.optim_w,
                "mode": self.mode, "vodes": self.vodes, "frozen": self.frozen}

    # ------------------------------------------------------------------ set-up
    def start(self, trainer: "TorchTrainer") -> None:
        """Find the vodes, check the settings against the model, build optim_w as the trainer's optimizer."""
        self.graph = VodeGraph(trainer.module, self.vodes, self.frozen, self.energy, set(trainer.t))
        if self.mode == "zil":
            self.graph.zil_schedule(self.T)
        self.energies, self.epoch_accuracy, self.epoch_energy, self._tally = [], [], [], {}
        if self.optim_w is not None:
            self.warn_unused(trainer.config)
            params = [p for p in trainer.module.parameters() if p.requires_grad]
            trainer.optimizer = optimizer_factory(self.optim_w, "optim_w")(params)

    def warn_unused(self, config: Any) -> None:
        """A warning naming learn()'s optimizer settings (a LearnConfig's) that optim_w replaces, when set."""
        from ..learning import LearnConfig

        defaults = LearnConfig()
        moved = [k for k in ("optimizer_type", "learning_rate", "weight_decay")
                 if getattr(config, k) != getattr(defaults, k)]
        if moved:
            log.warning("predictive coding steps the weights with optim_w=%r; learn()'s %s not used",
                        self.optim_w, ", ".join(moved))

    # ------------------------------------------------------------------ the pass
    def forward(self, trainer: "TorchTrainer", batch: Batch) -> Dict[str, "torch.Tensor"]:
        """Init, T inference steps, the weight update; returns the init step's outputs (the forward pass's,
        before the update), detached."""
        import torch

        graph = self.graph
        assert graph is not None, "start() was not called"
        module = trainer.module
        env, size = module.initial_env(batch.x)
        env["dt"] = 0.0
        params = module.param_tensors()
        held = {k: v.detach() for k, v in params.items()}
        env.update(held)
        with torch.no_grad():
            u = graph.predict(env, {})
            outputs = module.step_outputs(env, size)
        h: Dict[str, torch.Tensor] = {}
        for v in graph.vodes:
            target = batch.y.get(v.output) if v.output is not None else None
            h[v.name] = (target if target is not None else u[v.name]).detach().clone()
        free = [v.name for v in graph.vodes if not v.frozen]
        for k in free:
            h[k].requires_grad_(True)
        energies: List["torch.Tensor"] = []
        optimizer = trainer.optimizer
        optimizer.zero_grad(set_to_none=True)
        if self.mode == "zil":
            env.update(params)
            self._zil(trainer, env, h, free, size, energies)
        else:
            step_h = self._h_stepper(h, free, size)
            for v in graph.vodes:  # (what the steps that do not re-run read: the activities)
                env[v.tensor] = h[v.name]
            for _ in range(self.T):
                u = graph.infer(env, h, u)
                e = graph.energy(h, u, size)
                energies.append(e.detach())
                if free:
                    step_h(torch.autograd.grad(e, [h[k] for k in free]))
            env.update(params)
            fixed = {k: t.detach() for k, t in h.items()}
            e = graph.energy(fixed, graph.predict(env, fixed), size)
            energies.append(e.detach())
            e.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.energies.append(torch.stack(energies).tolist())
        return outputs

    def _h_stepper(self, h: Dict[str, "torch.Tensor"], free: List[str], size: int
                   ) -> Callable[[Sequence["torch.Tensor"]], None]:
        """The activities' update from their gradients: plain SGD in place, or optim_h's torch optimizer (its state
        fresh each minibatch)."""
        import torch

        tensors = [h[k] for k in free]
        if self.optim_h is None:
            lr = 0.01 * size

            def sgd(grads: Sequence["torch.Tensor"]) -> None:
                with torch.no_grad():
                    for t, g in zip(tensors, grads):
                        t.add_(g, alpha=-lr)
            return sgd
        optimizer = optimizer_factory(self.optim_h, "optim_h")(tensors) if tensors else None

        def step(grads: Sequence["torch.Tensor"]) -> None:
            for t, g in zip(tensors, grads):
                t.grad = g
            assert optimizer is not None
            optimizer.step()
        return step

    def _zil(self, trainer: "TorchTrainer", env: Dict[str, Any], h: Dict[str, "torch.Tensor"], free: List[str],
             size: int, energies: List["torch.Tensor"]) -> None:
        """Z-IL: per step, the energy; the gradient of the vodes scheduled at this step into the weights' .grad
        (accumulated); then the activities step by 1 on each trial's energy (size x the mean energy's gradient)."""
        import torch

        graph = self.graph
        assert graph is not None
        weights = [p for p in trainer.module.parameters() if p.requires_grad]
        for t in range(self.T):
            u = graph.predict(env, h)
            e = graph.energy(h, u, size)
            energies.append(e.detach())
            due = [v for v in graph.vodes if graph.schedule.get(v.name) == t]
            if due:
                part = graph.energy({v.name: h[v.name].detach() for v in due}, {v.name: u[v.name] for v in due},
                                    size)
                grads = torch.autograd.grad(part, weights, retain_graph=True, allow_unused=True)
                for p, g in zip(weights, grads):
                    if g is not None:
                        p.grad = g if p.grad is None else p.grad + g
            if free and t < self.T - 1:
                grads = torch.autograd.grad(e, [h[k] for k in free])
                with torch.no_grad():
                    for k, g in zip(free, grads):
                        h[k].add_(g, alpha=-float(size))

    def on_optimization_begin(self, trainer: "TorchTrainer", batch: Batch) -> None:
        """The update happened in forward: batch.loss is the learn() loss of the forward pass's outputs."""
        batch.loss = trainer.loss(batch.pred, batch.y).detach()

    def on_batch_end(self, trainer: "TorchTrainer", batch: Batch) -> None:
        """Tally the epoch's accuracy (outputs of more than one column) and final energy."""
        tally = self._tally.setdefault(batch.epoch, [0.0, 0.0, 0.0, 0.0])
        for k, target in batch.y.items():
            pred = batch.pred[k]
            if pred.dim() >= 2 and pred.shape[-1] > 1 and target.shape == pred.shape:
                tally[0] += float((pred.argmax(-1) == target.argmax(-1)).sum())
                tally[1] += float(pred[..., 0].numel())
        tally[2] += self.energies[-1][-1]
        tally[3] += 1
        self.epoch_energy = [t[2] / t[3] for _, t in sorted(self._tally.items())]
        self.epoch_accuracy = [t[0] / t[1] for _, t in sorted(self._tally.items()) if t[1]]


def _check_energy(label: str, energy: Any) -> None:
    if energy not in ENERGIES:
        raise DataError(f"{label} must be one of {', '.join(map(repr, ENERGIES))}, got {energy!r}")


def resolve_optimizer(spec: OptimSpec, label: str) -> Tuple[Any, Dict[str, Any]]:
    """(torch.optim class, its keyword arguments with 'lr' when given) of an optimizer spec (see PredictiveCoding),
    or (None, {}) for a callable spec; a spec that names no torch optimizer raises DataError naming `label` and
    the closest name."""
    import torch

    if callable(spec) and not isinstance(spec, type):
        return None, {}
    items: List[Any] = [spec] if isinstance(spec, (str, type)) else list(spec or [])
    if not 1 <= len(items) <= 3:
        raise DataError(f"{label} must be (name, learning rate[, {{keyword: value}}]), got {spec!r}")
    cls_or_name, lr = items[0], items[1] if len(items) > 1 else None
    extra: Dict[str, Any] = {}
    if len(items) > 2:
        if not isinstance(items[2], Mapping):
            raise DataError(f"{label}: the third item must be a {{keyword: value}} dict, got {items[2]!r}")
        extra = dict(items[2])
    classes = {n.lower(): c for n, c in vars(torch.optim).items()
               if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer}
    if isinstance(cls_or_name, type) and issubclass(cls_or_name, torch.optim.Optimizer):
        cls = cls_or_name
    elif isinstance(cls_or_name, str) and cls_or_name.lower() in classes:
        cls = classes[cls_or_name.lower()]
    else:
        close = difflib.get_close_matches(str(cls_or_name).lower(), list(classes), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise DataError(f"{label}: {cls_or_name!r} is no torch optimizer; {hint}e.g. ('sgd', 0.32), ('adamw', 0.01)")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise DataError(f"{label}: the learning rate must be a number > 0, got {lr!r}")
    if cls is torch.optim.AdamW:
        extra.setdefault("weight_decay", ADAMW_WEIGHT_DECAY)
    if lr is not None:
        extra["lr"] = float(lr)
    return cls, extra


def optimizer_factory(spec: OptimSpec, label: str) -> Callable[[List["torch.Tensor"]], Any]:
    """A function from a list of tensors to a torch optimizer over them, from an optimizer spec (see
    PredictiveCoding); a spec that names no torch optimizer raises DataError naming `label` and the closest name."""
    cls, extra = resolve_optimizer(spec, label)
    if cls is None:  # a callable spec is the factory
        assert callable(spec)
        return spec

    def build(tensors: List["torch.Tensor"]) -> Any:
        try:
            return cls(tensors, **extra)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{label}: {cls.__name__}({extra}) refused: {exc}") from None
    return build


@dataclass(frozen=True)
class Vode:
    """One value node: its name, the tensor it replaces, its energy, whether inference holds it, the output with
    targets it is (None: a hidden vode)."""

    name: str
    tensor: str
    energy: str
    frozen: bool
    output: Optional[str]


class VodeGraph:
    """The vodes of a Program and its steps compiled so that each vode's tensor reads back as its activity.

    module: the trainer's ProgramModule; vodes / frozen: PredictiveCoding's (None: the defaults); energy: its
    energy setting; targeted: the output names with targets."""

    def __init__(self, module: Any, vodes: Optional[Sequence[str]], frozen: Optional[Sequence[str]],
                 energy: Union[str, Mapping[str, str]], targeted: Set[str]) -> None:
        program: Program = module.program
        self.program = program
        self.vodes = find_vodes(program, vodes, frozen, energy, targeted)
        self.by_tensor = {v.tensor: v for v in self.vodes}
        self.schedule: Dict[str, int] = {}
        self.steps = self._compile(module)
        # the steps an inference step re-runs: those computed from a free activity (the rest, the weights held,
        # keep the values of the minibatch's init pass); one pass in program order
        derived = {v.tensor for v in self.vodes if not v.frozen}
        moved: Set[str] = set()
        for op in self.program.ops:
            if derived.intersection(refs(op.args)):
                derived.add(op.out)
                moved.add(op.out)
        self.inference_steps = [(op, f) for op, f in self.steps if op.out in moved]

    def _compile(self, module: Any) -> List[Any]:
        """The module's steps, each vode's op wrapped to record its prediction and return the activity."""
        compiled, _ = compile_program(self.program, "torch")
        self._u: Dict[str, Any] = {}
        self._h: Mapping[str, Any] = {}

        def wrap(vode: Vode, f: Callable[[Dict[str, Any]], Any]) -> Callable[[Dict[str, Any]], Any]:
            name = vode.name

            def run(env: Dict[str, Any]) -> Any:
                u = f(env)
                self._u[name] = u
                return self._h.get(name, u)
            return run

        steps = []
        for op, f in compiled:
            f = module.bindings[op.out].forward if op.out in module.bindings else f
            vode = self.by_tensor.get(op.out)
            steps.append((op, wrap(vode, f) if vode is not None else f))
        return steps

    def predict(self, env: Dict[str, Any], h: Mapping[str, Any]) -> Dict[str, Any]:
        """One pass with each vode's tensor replaced by its activity in `h` (missing: its prediction); returns
        vode name -> prediction u."""
        self._u, self._h = {}, h
        execute(self.steps, env)
        return self._u

    def infer(self, env: Dict[str, Any], h: Mapping[str, Any], u: Mapping[str, Any]) -> Dict[str, Any]:
        """The predictions after the free activities moved: only `inference_steps` run over `env` (left by a
        pass, its vode tensors holding the activities `h`), the other vodes keep their predictions in `u`."""
        self._u, self._h = dict(u), h
        execute(self.inference_steps, env)
        return self._u

    def energy(self, h: Mapping[str, "torch.Tensor"], u: Mapping[str, "torch.Tensor"], size: int) -> "torch.Tensor":
        """The mean over the trials of the summed energies of the vodes in `h`."""
        from torch.nn import functional

        total = None
        for v in self.vodes:
            if v.name not in h:
                continue
            hv, uv = h[v.name], u[v.name]
            if v.energy == "se":  # (one fused op each way: mse_loss and cross_entropy with probability targets)
                term = functional.mse_loss(uv, hv, reduction="sum")
                term = term * 0.5
            else:  # -sum(h * log_softmax(u)) over the last axis
                term = functional.cross_entropy(uv.reshape(-1, uv.shape[-1]), hv.reshape(-1, hv.shape[-1]),
                                                reduction="sum")
            total = term if total is None else total + term
        assert total is not None
        return total * (1.0 / size)

    def zil_schedule(self, T: int) -> None:
        """Each vode's Z-IL step (its distance in vodes from the outputs with targets); DataError when T is too
        small, UnsupportedError when paths from a vode to the outputs pass different numbers of vodes."""
        reads = self._vode_reads()
        readers: Dict[str, List[str]] = {v.name: [] for v in self.vodes}
        for name, sources in reads.items():
            for s in sources:
                readers[s].append(name)
        distance: Dict[str, int] = {}

        def dist(name: str) -> int:
            if name in distance:
                return distance[name]
            vode = next(v for v in self.vodes if v.name == name)
            options = {0} if vode.output is not None and vode.frozen else set()
            options |= {dist(r) + 1 for r in readers[name]}
            if len(options) > 1:
                raise UnsupportedError(f"mode='zil' needs every path from a value node to the outputs to pass the "
                                       f"same number of value nodes; from '{name}' they pass {sorted(options)}")
            distance[name] = options.pop() if options else -1
            return distance[name]

        for v in self.vodes:
            dist(v.name)
        self.schedule = {k: d for k, d in distance.items() if d >= 0}
        need = max(self.schedule.values(), default=0) + 1
        if T < need:
            raise DataError(f"mode='zil' takes the weights' gradients at inference steps 0..{need - 1}; T must be "
                            f">= {need}, got {T}")

    def _vode_reads(self) -> Dict[str, Set[str]]:
        """Vode name -> the vodes its prediction reads (directly: through no other vode)."""
        producers = {op.out: op for op in self.program.ops}
        out: Dict[str, Set[str]] = {}
        for v in self.vodes:
            seen: Set[str] = set()
            found: Set[str] = set()
            stack = refs(producers[v.tensor].args) if v.tensor in producers else []
            while stack:
                t = stack.pop()
                if t in seen:
                    continue
                seen.add(t)
                if t in self.by_tensor:
                    found.add(self.by_tensor[t].name)
                elif t in producers:
                    stack.extend(refs(producers[t].args))
            out[v.name] = found
        return out


def find_vodes(program: Program, vodes: Optional[Sequence[str]], frozen: Optional[Sequence[str]],
               energy: Union[str, Mapping[str, str]], targeted: Set[str]) -> List[Vode]:
    """The value nodes of a feedforward Program: PredictiveCoding's `vodes` / `frozen` (None: the defaults) and
    `energy` setting, `targeted` the output names with targets. Bad names raise DataError naming the closest;
    programs with state, or with no value nodes, UnsupportedError."""
    if program.sequence or program.states:
        raise UnsupportedError("predictive coding trains feedforward models; this one has state (carried "
                               "between time steps" + (", a GRU block)" if program.sequence else ")"))
    found = default_vodes(program)
    names = list(found) if vodes is None else list(vodes)
    unknown = [n for n in names if n not in found and n not in _node_tensors(program)]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(_node_tensors(program)), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise DataError(f"vodes: no node or output {unknown[0]!r} in the model; {hint}the default vodes: "
                        f"{', '.join(found) or 'none'}")
    outputs = {t: k for k, t in program.outputs.items()}
    tensors = {n: found[n] if n in found else _node_tensors(program)[n] for n in names}
    if isinstance(energy, Mapping):
        bad = [k for k in energy if k not in tensors]
        if bad:
            raise DataError(f"energy: {bad[0]!r} is no vode of the model; its vodes: {', '.join(tensors)}")
    frozen_names = [outputs[tensors[n]] for n in names if outputs.get(tensors[n]) in targeted] \
        if frozen is None else list(frozen)
    bad = [k for k in frozen_names if k not in tensors]
    if bad:
        raise DataError(f"frozen: {bad[0]!r} is no vode of the model; its vodes: {', '.join(tensors)}")
    found_vodes: List[Vode] = []
    for n in names:
        out = outputs.get(tensors[n])
        e = energy.get(n, "se") if isinstance(energy, Mapping) else (energy if out is not None else "se")
        found_vodes.append(Vode(n, tensors[n], e, n in frozen_names, out if out in targeted else None))
    if not found_vodes:
        raise UnsupportedError("predictive coding found no value nodes in the model (nodes after the inputs)")
    return found_vodes


def _node_tensors(program: Program) -> Dict[str, str]:
    """Node (and output) name -> the tensor that is its value: an output's tensor, a node's last op's output."""
    found: Dict[str, str] = {}
    for op in program.ops:
        found[op.node] = op.out
    found.update(program.outputs)
    return found


def default_vodes(program: Program) -> Dict[str, str]:
    """Vode name -> tensor for the default choice (see the module docstring), in program order."""
    producers = {op.out: op for op in program.ops}
    inputs = {f"{s.node}.{s.port}" for s in program.inputs.values()}
    input_nodes = {s.node for s in program.inputs.values()}
    outputs = {t: k for k, t in program.outputs.items()}
    projected: Set[str] = set()  # tensors a projection reads as its batched operand
    from_inputs = set(inputs)  # tensors computed from an input (one pass in program order)
    for op in program.ops:
        if from_inputs.intersection(refs(op.args)):
            from_inputs.add(op.out)
        opdef = get_op(op.fn)
        if opdef is None or not (opdef.matrix_product or opdef.weight_arg):
            continue
        for name in refs(op.args):
            if name not in program.params:
                projected.add(name)
    found: Dict[str, str] = {}
    for op in program.ops:
        t = op.out
        if op.node in input_nodes or not (t in projected or t in outputs):
            continue
        if t not in from_inputs or producers[t].node != op.node:
            continue
        found[outputs.get(t, op.node) if t in outputs else _unique(op.node, t, found)] = t
    return found


def _unique(node: str, tensor: str, found: Mapping[str, str]) -> str:
    """The vode's name: its node's, or the tensor's where the node has more than one."""
    return tensor if node in found else node


__all__: Tuple[str, ...] = ("ENERGIES", "MODES", "PredictiveCoding", "Vode", "VodeGraph", "default_vodes",
                            "find_vodes", "optimizer_factory", "resolve_optimizer")
