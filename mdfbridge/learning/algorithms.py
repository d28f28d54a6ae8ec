"""Learning algorithms: objects with NeuroTorch's callback hooks that train a Program's torch module.

`learn(model, inputs, targets, algorithm=...)`, `Composition.learn(..., algorithm=...)` and `mdfbridge train
--algorithm NAME [--algorithm-arg k=v ...]` take one (an instance, or its name with keyword arguments: see
`get_algorithm`). The torch trainer (mdfbridge/backends/torch_trainer.py) runs the epochs and minibatches that
learn()'s settings give and calls, per run and per minibatch (a `Batch`):

    start(trainer)                               once, before the first epoch (and before a checkpoint is loaded)
      on_batch_begin(trainer, batch)
      batch.pred = forward(trainer, batch)       the outputs: one pass, or a sequence unrolled through time
      on_optimization_begin(trainer, batch)      the update; it sets batch.loss
      on_optimization_end(trainer, batch)
      on_batch_end(trainer, batch)
    close(trainer)                               once, after the last epoch

and `get_checkpoint_state(trainer)` / `load_checkpoint_state(trainer, state)` carry the algorithm's own state
(feedback weights, P matrices, ...) through checkpoints, beside the weights and the optimizer's state.

- `Backprop`: learn()'s backpropagation with PsyNeuLink's AutodiffComposition semantics (one pass per minibatch,
  loss, backward, one optimizer step); the default, and the only algorithm the llvm backend runs.
- `BPTT`: backpropagation through time. Inputs are sequences (trials, time steps, ...); a Program with state
  (stateful parameters, Euler time derivatives, cycles through default values) is stepped once per time point
  (modeci-mdf's semantics: the first step runs with dt 0, each further one advances by `dt`), its outputs stacked
  to (trials, time steps, ...); targets are per step (trials, time steps, ...) or for the last step only
  (trials, ...). The loss of the whole sequence is backpropagated through every step, then one optimizer step.
  A Program whose ops run whole sequences (GRU blocks) runs once per minibatch, as Backprop.
- `TBPTT`: truncated BPTT with NeuroTorch's parameters: every `backward_time_steps` steps the loss of the steps
  since the last truncation is backpropagated and the state detached (no gradient flows further back); every
  `optim_time_steps` steps, and at the end of the sequence, the optimizer steps (after a backward of the pending
  steps, so a truncation falls there too). The chunks' losses sum to the sequence's loss (a mean loss is weighted
  by the chunk's share of the steps), so with both equal to the sequence length TBPTT is BPTT exactly.

Gradients of BPTT and TBPTT pass NeuroTorch's safeguards before each optimizer step: NaN / +inf / -inf replaced by
`nan` / `posinf` / `neginf` (torch.nan_to_num), then the total norm clipped to `grad_norm_clip_value` (default inf:
no clipping; NeuroTorch's TBPTT clips at 1.0).
"""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Mapping, Optional, Sequence, Tuple, Type, Union

from ..errors import DataError, UnsupportedError
from .stepping import Unrolled

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..backends.torch_trainer import TorchTrainer

__all__ = ["ALGORITHMS", "BPTT", "Backprop", "Batch", "Eprop", "LearningAlgorithm", "PredictiveCoding", "RLS", "TBPTT",
           "get_algorithm", "parse_algorithm_args", "register_algorithm"]


@dataclass
class Batch:
    """One minibatch as the hooks see it.

    epoch: the 0-based epoch; index: the minibatch's 0-based index over the run (its index in the losses);
    rows: the trials it holds (a slice or an index tensor); x: input name -> (batch, ...) or (batch, time steps,
    ...) tensor; y: output name -> targets; pred: output name -> outputs (set by `forward`); loss: the minibatch's
    loss, a 0-d tensor (set by `on_optimization_begin`)."""

    epoch: int
    index: int
    rows: Any
    x: Dict[str, "torch.Tensor"]
    y: Dict[str, "torch.Tensor"]
    pred: Dict[str, "torch.Tensor"] = field(default_factory=dict)
    loss: Optional["torch.Tensor"] = None


class LearningAlgorithm:
    """The hooks (see the module docstring); each does nothing here, and `forward` runs one pass of the module.

    Subclasses set `name` (what `get_algorithm` and `mdfbridge train --algorithm` call it), `over_time` (True: it
    trains on (trials, time steps, ...) sequences) and `backends` (the training backends that run it)."""

    name: ClassVar[str] = ""
    over_time: ClassVar[bool] = False
    backends: ClassVar[Tuple[str, ...]] = ("torch",)

    def start(self, trainer: "TorchTrainer") -> None:
        """Before the first epoch, and before a checkpoint is loaded (so it may set up trainer.optimizer);
        trainer: the TorchTrainer."""

    def on_batch_begin(self, trainer: "TorchTrainer", batch: Batch) -> None:
        """Before a minibatch's forward pass."""

    def forward(self, trainer: "TorchTrainer", batch: Batch) -> Dict[str, "torch.Tensor"]:
        """The minibatch's outputs (output name -> tensor): the module's forward pass over batch.x."""
        return trainer.module.forward(batch.x)

    def on_optimization_begin(self, trainer: "TorchTrainer", batch: Batch) -> None:
        """The update; sets batch.loss (a 0-d tensor)."""
        batch.loss = trainer.loss(batch.pred, batch.y).detach()

    def on_optimization_end(self, trainer: "TorchTrainer", batch: Batch) -> None:
        """After the update."""

    def on_batch_end(self, trainer: "TorchTrainer", batch: Batch) -> None:
        """After a minibatch."""

    def close(self, trainer: "TorchTrainer") -> None:
        """After the last epoch (also when training stops on an error)."""

    def get_checkpoint_state(self, trainer: "TorchTrainer") -> Dict[str, Any]:
        """The algorithm's own state for a checkpoint: a dict of tensors, numbers, strings, lists and dicts
        (default: none)."""
        return {}

    def load_checkpoint_state(self, trainer: "TorchTrainer", state: Mapping[str, Any]) -> None:
        """Restore what get_checkpoint_state gave (called after `start` on a resumed run)."""

    def settings(self) -> Dict[str, Any]:
        """The constructor arguments as set (for repr and logs)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.settings().items())})"


class Backprop(LearningAlgorithm):
    """learn()'s backpropagation (PsyNeuLink's AutodiffComposition): per minibatch one forward pass, the loss
    summed over the output nodes, backward, one optimizer step. Runs on the torch and llvm backends."""

    name = "backprop"
    backends: ClassVar[Tuple[str, ...]] = ("torch", "llvm")

    def on_optimization_begin(self, trainer: "TorchTrainer", batch: Batch) -> None:
        """Loss, backward, one optimizer step; batch.loss is the loss before the step."""
        loss = trainer.loss(batch.pred, batch.y)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.before_step(trainer)
        trainer.optimizer.step()
        batch.loss = loss.detach()

    def before_step(self, trainer: "TorchTrainer") -> None:
        """What happens to the gradients just before the optimizer steps (here: nothing)."""


@dataclass(repr=False)
class _GradientGuards:
    """NeuroTorch's gradient safeguards (see the module docstring)."""

    grad_norm_clip_value: float = math.inf
    nan: float = 0.0
    posinf: float = 1.0
    neginf: float = -1.0

    def check_guards(self) -> None:
        """DataError for a clip value that is not a number > 0, or replacement values that are not finite."""
        clip = self.grad_norm_clip_value
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
            raise DataError(f"grad_norm_clip_value must be a number > 0 (inf: no clipping), got {clip!r}")
        for name in ("nan", "posinf", "neginf"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(f"{name} must be a finite number, got {value!r}")

    def guard_gradients(self, trainer: "TorchTrainer") -> None:
        """Replace non-finite gradients, then clip their total norm."""
        import torch

        params = [p for p in trainer.module.parameters() if p.grad is not None]
        for p in params:
            torch.nan_to_num_(p.grad, nan=self.nan, posinf=self.posinf, neginf=self.neginf)
        if params and math.isfinite(self.grad_norm_clip_value):
            torch.nn.utils.clip_grad_norm_(params, self.grad_norm_clip_value)


class BPTT(Backprop):
    """Backpropagation through time over (trials, time steps, ...) sequences (see the module docstring).

    dt: the time step of the Euler integration from the second step on (default 1.0); grad_norm_clip_value
    (default inf: none), nan (0.0), posinf (1.0), neginf (-1.0): the gradient safeguards."""

    name = "bptt"
    over_time = True
    backends: ClassVar[Tuple[str, ...]] = ("torch", "llvm")

    def __init__(self, *, dt: float = 1.0, grad_norm_clip_value: float = math.inf, nan: float = 0.0,
                 posinf: float = 1.0, neginf: float = -1.0) -> None:
        self.guards = _GradientGuards(grad_norm_clip_value, nan, posinf, neginf)
        self.guards.check_guards()
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise DataError(f"dt must be a finite number > 0, got {dt!r}")
        self.dt = float(dt)

    def settings(self) -> Dict[str, Any]:
        """The constructor arguments."""
        g = self.guards
        return {"dt": self.dt, "grad_norm_clip_value": g.grad_norm_clip_value, "nan": g.nan, "posinf": g.posinf,
                "neginf": g.neginf}

    def forward(self, trainer: "TorchTrainer", batch: Batch) -> Dict[str, "torch.Tensor"]:
        """The outputs at every time step, (batch, time steps, ...), from one unrolled pass."""
        if trainer.module.program.sequence:
            return trainer.module.forward(batch.x)
        return unroll(trainer, batch, self.dt)

    def before_step(self, trainer: "TorchTrainer") -> None:
        """The gradient safeguards."""
        self.guards.guard_gradients(trainer)


class TBPTT(BPTT):
    """Truncated backpropagation through time (see the module docstring).

    backward_time_steps: steps between truncations (default None: auto_backward_time_steps_ratio of the sequence's
    length, at least 1); optim_time_steps: steps between optimizer steps (default None: auto_optim_time_steps_ratio
    of the length, at least 1); auto_backward_time_steps_ratio: default 0.1; auto_optim_time_steps_ratio: default
    None (auto_backward_time_steps_ratio), each in (0, 1]; dt, grad_norm_clip_value, nan, posinf, neginf: as
    BPTT's. An optimizer step always truncates too (the pending steps are backpropagated first), so with k1 =
    backward_time_steps and k2 = optim_time_steps the truncations fall at the multiples of k1 and of k2."""

    name = "tbptt"
    backends: ClassVar[Tuple[str, ...]] = ("torch",)

    def __init__(self, *, backward_time_steps: Optional[int] = None, optim_time_steps: Optional[int] = None,
                 auto_backward_time_steps_ratio: float = 0.1, auto_optim_time_steps_ratio: Optional[float] = None,
                 dt: float = 1.0, grad_norm_clip_value: float = math.inf, nan: float = 0.0, posinf: float = 1.0,
                 neginf: float = -1.0) -> None:
        super().__init__(dt=dt, grad_norm_clip_value=grad_norm_clip_value, nan=nan, posinf=posinf, neginf=neginf)
        for label, k in (("backward_time_steps", backward_time_steps), ("optim_time_steps", optim_time_steps)):
            if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
                raise DataError(f"{label} must be an integer >= 1 (or None: auto), got {k!r}")
        if auto_optim_time_steps_ratio is None:
            auto_optim_time_steps_ratio = auto_backward_time_steps_ratio
        for label, r in (("auto_backward_time_steps_ratio", auto_backward_time_steps_ratio),
                         ("auto_optim_time_steps_ratio", auto_optim_time_steps_ratio)):
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
                raise DataError(f"{label} must be a number in (0, 1], got {r!r}")
        self.backward_time_steps, self.optim_time_steps = backward_time_steps, optim_time_steps
        self.auto_backward_time_steps_ratio = float(auto_backward_time_steps_ratio)
        self.auto_optim_time_steps_ratio = float(auto_optim_time_steps_ratio)

    def settings(self) -> Dict[str, Any]:
        """The constructor arguments."""
        return {"backward_time_steps": self.backward_time_steps, "optim_time_steps": self.optim_time_steps,
                "auto_backward_time_steps_ratio": self.auto_backward_time_steps_ratio,
                "auto_optim_time_steps_ratio": self.auto_optim_time_steps_ratio, **super().settings()}

    def time_steps_for(self, steps: int) -> Tuple[int, int]:
        """(backward_time_steps, optim_time_steps) for sequences of `steps` time points (the auto ratios where
        None)."""
        k1 = self.backward_time_steps or max(1, int(self.auto_backward_time_steps_ratio * steps))
        k2 = self.optim_time_steps or max(1, int(self.auto_optim_time_steps_ratio * steps))
        return k1, k2

    def start(self, trainer: "TorchTrainer") -> None:
        """Refuse a Program whose ops run whole sequences (they cannot be cut in time)."""
        if trainer.module.program.sequence:
            raise UnsupportedError("TBPTT steps a program through time; this one's ops (a GRU block) run whole "
                                   "sequences at once: train it with BPTT")

    def forward(self, trainer: "TorchTrainer", batch: Batch) -> Dict[str, "torch.Tensor"]:
        """Step through the sequence, backpropagating each chunk's loss at its truncation and stepping the
        optimizer every optim_time_steps steps and at the end; the outputs come back detached."""
        steps = trainer.time_steps
        k1, k2 = self.time_steps_for(steps)
        optimizer = trainer.optimizer
        optimizer.zero_grad(set_to_none=True)
        run = Unrolled(trainer, batch)
        chunk_start = 0
        for t in range(steps):
            run.step(t, self.dt)
            done = t + 1
            optimize = done % k2 == 0 or done == steps
            if done % k1 == 0 or optimize:
                loss = trainer.sequence_loss(run.stacked(chunk_start), batch.y, chunk_start, done)
                if loss is not None and loss.requires_grad:
                    loss.backward()
                run.truncate()
                chunk_start = done
            if optimize:
                self.before_step(trainer)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        return run.stacked()

    # the updates happened during forward: batch.loss is the loss of the outputs made on the way
    on_optimization_begin = LearningAlgorithm.on_optimization_begin


def unroll(trainer: "TorchTrainer", batch: Batch, dt: float) -> Dict[str, "torch.Tensor"]:
    """The minibatch's outputs at every time step, (batch, time steps, ...), from one pass stepped through time
    (dt from the second step on), its autograd graph kept."""
    run = Unrolled(trainer, batch)
    for t in range(trainer.time_steps):
        run.step(t, dt)
    return run.stacked()


ALGORITHMS: Dict[str, Type[LearningAlgorithm]] = {cls.name: cls for cls in (Backprop, BPTT, TBPTT)}  # (+ below)


def register_algorithm(cls: Type[LearningAlgorithm]) -> Type[LearningAlgorithm]:
    """Add a LearningAlgorithm subclass under its `name` (a lower-case word); returns it (usable as a
    decorator)."""
    if not cls.name or cls.name != cls.name.lower():
        raise ValueError(f"a learning algorithm needs a lower-case name, got {cls.name!r}")
    ALGORITHMS[cls.name] = cls
    return cls


def get_algorithm(spec: Union[None, str, LearningAlgorithm, Type[LearningAlgorithm]] = None,
                  **arguments: Any) -> LearningAlgorithm:
    """A LearningAlgorithm from what learn(algorithm=...) takes.

    spec: an instance (returned as it is; no arguments then), a LearningAlgorithm subclass, or a name in
    ALGORITHMS, any case ('backprop', 'bptt', 'tbptt'; default None: Backprop()); arguments: the constructor's
    keyword arguments. An unknown name or argument raises UnsupportedError naming the closest valid one."""
    if isinstance(spec, LearningAlgorithm):
        if arguments:
            raise UnsupportedError(f"algorithm arguments {sorted(arguments)} given with an algorithm instance "
                                   f"({spec!r}); pass them to its constructor")
        return spec
    if spec is None:
        cls: Type[LearningAlgorithm] = Backprop
    elif isinstance(spec, type) and issubclass(spec, LearningAlgorithm):
        cls = spec
    elif isinstance(spec, str) and spec.lower() in ALGORITHMS:
        cls = ALGORITHMS[spec.lower()]
    else:
        close = difflib.get_close_matches(str(spec).lower(), list(ALGORITHMS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnsupportedError(f"unknown learning algorithm {spec!r}; {hint}algorithms: {', '.join(ALGORITHMS)}")
    try:
        return cls(**arguments)
    except TypeError:
        import inspect

        names = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        unknown = sorted(set(arguments) - set(names))
        if not unknown:
            raise
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnsupportedError(f"algorithm '{cls.name}' has no argument '{unknown[0]}'; {hint}arguments: "
                               f"{', '.join(names) or 'none'}") from None


def parse_algorithm_args(pairs: Sequence[str]) -> Dict[str, Any]:
    """Keyword arguments from the command line's `--algorithm-arg k=v` pairs.

    pairs: 'name=value' strings; a value is read as JSON where it is a JSON number, true/false/null or a quoted
    string or list, as inf/-inf/nan, else kept as the string (never evaluated). A pair without '=' raises
    DataError naming it."""
    out: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise DataError(f"--algorithm-arg {pair!r}: expected NAME=VALUE, e.g. backward_time_steps=10")
        text = text.strip()
        lowered = text.lower()
        if lowered in ("inf", "+inf", "infinity", "-inf", "-infinity", "nan"):
            out[key] = float(lowered)
            continue
        try:
            out[key] = json.loads(text) if text else ""
        except ValueError:
            out[key] = text
    return out


from .eprop import Eprop  # noqa: E402  (registers itself; it builds on BPTT above)
from .predictive_coding import PredictiveCoding  # noqa: E402  (likewise)
from .rls import RLS  # noqa: E402  (likewise)
