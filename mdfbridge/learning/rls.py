"""Recursive least squares, NeuroTorch's strategies made exact, for programs stepped through time.

Each time step with targets gives samples (one per trial, taken in order); parameters change as the samples
arrive (online: later steps of the same sequence run with the new values, as FORCE learning needs), so no
optimizer is used except by 'grad'. P0 = I / delta; lambda = forgetting_factor.

- 'inputs': true RLS for the weights W of a MatMul whose result is a model output (a linear readout y = W x):
  per sample, e = y* - W x (a priori, with W as it is now), k = P x / (lambda + x' P x), W += e k',
  P = (P - k x' P) / lambda. With lambda = 1 one pass equals ridge regression towards the initial weights W0,
  argmin sum ||y* - W x||^2 + delta ||W - W0||^2 (tested to 1e-8).
- 'outputs' (CURBD, Perich et al.): the same recursion for a MatMul weight J onto the state's units (a = J u,
  the units' outputs being a model output), the regressor u as J reads it, the error that of the units' outputs
  y* - y at this step.
- 'grad' (after Zhang et al.): the loss gradient of the step, g = dloss_t/dW, preconditioned by the inputs'
  inverse correlation: phi = the trials' mean of the MatMul's operand, k = P phi, h = 1 / (lambda + phi' k),
  W -= learning_rate * h * g P (rows; P g for a = u W), P = (P - h k k') / lambda.
- 'jacobian': the recursive Gauss-Newton (extended Kalman) update of every trained parameter together (theta,
  L numbers): per sample, H = dy/dtheta (this step's outputs with targets; the state held), e = y* - y
  (linearised about the step's start for the later trials), S = lambda I + H P H', K = P H' S^-1, theta += K e,
  P = (P - K H P) / lambda, P of L x L. For a linear readout it is 'inputs' exactly.

NeuroTorch's 'scaled_jacobian' is not provided: it inverts an L x L matrix every step (2 iterations > 600 s for a
50-unit network); the normalisation it aims at is the one 'jacobian' makes over the outputs (an S of outputs x
outputs), so asking for it names 'jacobian'.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import DataError, UnsupportedError
from .algorithms import BPTT, Batch, LearningAlgorithm, register_algorithm
from .stepping import Recorded, Unrolled, WeightUse, computed_from, matmul_use, recording_steps

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..backends.torch_trainer import TorchTrainer

STRATEGIES = ("inputs", "outputs", "grad", "jacobian")


@register_algorithm
class RLS(BPTT):
    """Recursive least squares (see the module docstring).

    strategy: 'inputs' (default), 'outputs', 'grad' or 'jacobian'; forgetting_factor: lambda in (0, 1] (default
    1.0: no forgetting); delta: P0 = I / delta (default 1e-2; the ridge penalty of 'inputs'); params: the
    Program parameters to train (default None: 'inputs' every learnable MatMul weight whose result is a model
    output, 'outputs' every learnable square MatMul weight onto the state's units, 'grad' every learnable MatMul
    weight, 'jacobian' every learnable parameter); max_parameters: the most numbers 'jacobian' trains (its P is
    their square; default 4096); dt, grad_norm_clip_value (for 'grad'), nan, posinf, neginf: as BPTT's."""

    name: ClassVar[str] = "rls"
    backends: ClassVar[Tuple[str, ...]] = ("torch",)

    def __init__(self, *, strategy: str = "inputs", forgetting_factor: float = 1.0, delta: float = 1e-2,
                 params: Optional[Sequence[str]] = None, max_parameters: int = 4096, dt: float = 1.0,
                 grad_norm_clip_value: float = math.inf, nan: float = 0.0, posinf: float = 1.0,
                 neginf: float = -1.0) -> None:
        super().__init__(dt=dt, grad_norm_clip_value=grad_norm_clip_value, nan=nan, posinf=posinf, neginf=neginf)
        if strategy == "scaled_jacobian":
            raise UnsupportedError("RLS strategy 'scaled_jacobian' is not provided (NeuroTorch's form inverts a "
                                   "parameters x parameters matrix every step); use strategy='jacobian', the "
                                   "Gauss-Newton update normalised over the outputs")
        if strategy not in STRATEGIES:
            raise DataError(f"RLS strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        lam = forgetting_factor
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 < lam <= 1:
            raise DataError(f"forgetting_factor must be a number in (0, 1], got {lam!r}")
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < math.inf:
            raise DataError(f"delta must be a finite number > 0 (P0 = I / delta), got {delta!r}")
        if isinstance(max_parameters, bool) or not isinstance(max_parameters, int) or max_parameters < 1:
            raise DataError(f"max_parameters must be an integer >= 1, got {max_parameters!r}")
        self.strategy, self.forgetting_factor, self.delta = strategy, float(lam), float(delta)
        self.params = None if params is None else [str(p) for p in params]
        self.max_parameters = max_parameters
        self.uses: List[WeightUse] = []  # inputs / outputs / grad: the trained MatMul weights
        self.targets_of: Dict[str, str] = {}  # weight -> the output name its error is read from (inputs / outputs)
        self.trained: List[str] = []  # jacobian: the trained parameters, in theta's order
        self.P: Dict[str, "torch.Tensor"] = {}  # weight (or "theta") -> its inverse correlation matrix
        self.steps: List[Any] = []
        self._record: Recorded = {}

    def settings(self) -> Dict[str, Any]:
        """The constructor arguments."""
        return {"strategy": self.strategy, "forgetting_factor": self.forgetting_factor, "delta": self.delta,
                "params": self.params, "max_parameters": self.max_parameters, **super().settings()}

    # ------------------------------------------------------------------ set-up
    def start(self, trainer: "TorchTrainer") -> None:
        """Choose the trained parameters (UnsupportedError naming what the strategy needs when there are none)."""
        program = trainer.module.program
        self.P = {}  # (a fresh run starts from P0; a checkpoint, loaded after this, brings its own)
        if program.sequence:
            raise UnsupportedError("RLS steps a program through time; this one's ops (a GRU block) run whole "
                                   "sequences at once")
        learnable = [k for k, p in program.params.items() if p.learnable]
        chosen = self.params if self.params is not None else learnable
        unknown = [k for k in chosen if k not in program.params]
        if unknown:
            raise DataError(f"RLS params: no parameter {unknown[0]!r} in the model; its learnable ones: "
                            f"{', '.join(learnable) or 'none'}")
        if self.strategy == "jacobian":
            self.trained = list(chosen)
            size = sum(int(program.params[k].value.size) for k in self.trained)
            if not size:
                raise UnsupportedError("RLS 'jacobian' has no parameters to train")
            if size > self.max_parameters:
                raise UnsupportedError(f"RLS 'jacobian' would train {size} numbers with a {size} x {size} P "
                                       f"(max_parameters={self.max_parameters}); name fewer with params=[...]")
            self.steps = recording_steps(trainer.module, {}, self._record, hold=False)
            return
        self.uses = [u for u in (matmul_use(program, k) for k in chosen) if u is not None
                     and self._fits(program, u)]
        if self.params is not None and len(self.uses) != len(chosen):
            bad = [k for k in chosen if k not in {u.name for u in self.uses}]
            raise UnsupportedError(f"RLS '{self.strategy}' cannot train {bad[0]!r}: {self._needs()}")
        if not self.uses:
            raise UnsupportedError(f"RLS '{self.strategy}' found nothing to train: {self._needs()}")
        self.steps = recording_steps(trainer.module, {u.op_out: u.operand for u in self.uses}, self._record,
                                     hold=self.strategy != "grad")

    def _needs(self) -> str:
        return {"inputs": "it trains the weights of a MatMul whose result is a model output (a linear readout)",
                "outputs": "it trains a square MatMul weight onto the state's units, whose outputs are a model "
                           "output (the units' target activity)",
                "grad": "it trains the weights of MatMuls with a batched operand"}[self.strategy]

    def _fits(self, program: Any, use: WeightUse) -> bool:
        """Whether the strategy can train this MatMul weight (and where its error comes from)."""
        if self.strategy == "grad":
            return True
        outputs = {t: k for k, t in program.outputs.items()}
        if self.strategy == "inputs":
            if use.op_out in outputs:
                self.targets_of[use.name] = outputs[use.op_out]
                return True
            return False
        value = program.params[use.name].value
        units = value.shape[0] if use.orientation == "rows" else value.shape[1]
        states = {st.update for st in program.states.values()}
        feeds_state = any(use.op_out in computed_from(program, [u]) for u in states)
        same = [k for k, t in program.outputs.items() if tuple(program.shapes.get(t, ())) == (units,)]
        if value.shape[0] != value.shape[1] or not feeds_state or len(same) != 1:
            return False
        self.targets_of[use.name] = same[0]
        return True

    # ------------------------------------------------------------------ the pass
    def forward(self, trainer: "TorchTrainer", batch: Batch) -> Dict[str, "torch.Tensor"]:
        """Step through the sequence, updating at every step that has targets; outputs (batch, time steps, ...)
        come back detached."""
        import torch

        module, program = trainer.module, trainer.module.program
        steps = trainer.time_steps
        run = Unrolled(trainer, batch)
        tensors = module.param_tensors()
        if not self.P:
            self._initial_P(tensors, module.dtype, trainer.device)
        for t in range(steps):
            for name in program.states:
                run.env[name] = run.env[name].detach()
            self._record.clear()
            with torch.set_grad_enabled(self.strategy in ("grad", "jacobian")):
                out = run.step(t, self.dt, self.steps, keep_graph=False)
            targets = self._targets_at(batch.y, out, t, steps)
            if targets:
                if self.strategy in ("inputs", "outputs"):
                    self._rls(out, targets, tensors)
                elif self.strategy == "grad":
                    self._grad(trainer, out, batch.y, t, tensors)
                else:
                    self._jacobian(out, targets, tensors)
        return run.stacked()

    def _initial_P(self, tensors: Mapping[str, Any], dtype: Any, device: Any) -> None:
        import torch

        if self.strategy == "jacobian":
            size = sum(int(tensors[k].numel()) for k in self.trained)
            self.P["theta"] = torch.eye(size, dtype=dtype, device=device) / self.delta
            return
        for u in self.uses:
            w = tensors[u.name]
            n = w.shape[1] if u.orientation == "rows" else w.shape[0]  # (the regressor's size)
            self.P[u.name] = torch.eye(n, dtype=dtype, device=device) / self.delta

    @staticmethod
    def _targets_at(y: Mapping[str, "torch.Tensor"], out: Mapping[str, "torch.Tensor"], t: int, steps: int
                    ) -> Dict[str, "torch.Tensor"]:
        """Output name -> this step's targets (batch, ...), for the outputs that have targets at step t."""
        got = {}
        for k, target in y.items():
            if target.dim() == out[k].dim() + 1:  # per step
                got[k] = target[:, t]
            elif t == steps - 1:
                got[k] = target
        return got

    def _rls(self, out: Mapping[str, "torch.Tensor"], targets: Mapping[str, "torch.Tensor"],
             tensors: Mapping[str, Any]) -> None:
        """'inputs' / 'outputs': one RLS update per trial, in order."""
        import torch

        lam = self.forgetting_factor
        with torch.no_grad():
            for u in self.uses:
                k = self.targets_of[u.name]
                if k not in targets:
                    continue
                W, P = tensors[u.name], self.P[u.name]
                x = self._record[u.op_out][1].reshape(targets[k].shape[0], -1)
                wanted = targets[k].reshape(x.shape[0], -1)
                seen = out[k].reshape(x.shape[0], -1)
                for b in range(x.shape[0]):
                    xb = x[b]
                    if self.strategy == "inputs":  # (a priori: with W as the earlier trials left it)
                        now = W @ xb if u.orientation == "rows" else xb @ W
                    else:
                        now = seen[b]
                    e = wanted[b] - now
                    Px = P @ xb
                    gain = Px / (lam + xb @ Px)
                    W += torch.outer(e, gain) if u.orientation == "rows" else torch.outer(gain, e)
                    P.sub_(torch.outer(gain, Px)).div_(lam)

    def _grad(self, trainer: "TorchTrainer", out: Mapping[str, "torch.Tensor"], y: Mapping[str, "torch.Tensor"],
              t: int, tensors: Mapping[str, Any]) -> None:
        """'grad': the step's loss gradient of each weight, preconditioned by its P."""
        import torch

        loss = trainer.sequence_loss({k: v[:, None] for k, v in out.items()}, y, t, t + 1)
        if loss is None:
            return
        weights = [tensors[u.name] for u in self.uses]
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
        lam, lr = self.forgetting_factor, float(trainer.config.learning_rate)
        for w, g in zip(weights, grads):
            w.grad = g
        self.before_step(trainer)  # (the safeguards, on the raw gradients)
        with torch.no_grad():
            for u, w in zip(self.uses, weights):
                if w.grad is None:
                    continue
                P = self.P[u.name]
                operand = self._record[u.op_out][1].detach()
                phi = operand.reshape(operand.shape[0], -1).mean(0)
                k = P @ phi
                h = 1.0 / (lam + phi @ k)
                step = w.grad @ P if u.orientation == "rows" else P @ w.grad
                w -= lr * h * step
                P.sub_(h * torch.outer(k, k)).div_(lam)
                w.grad = None

    def _jacobian(self, out: Mapping[str, "torch.Tensor"], targets: Mapping[str, "torch.Tensor"],
                  tensors: Mapping[str, Any]) -> None:
        """'jacobian': one Gauss-Newton (extended Kalman) update of theta per trial."""
        import torch

        names = list(targets)
        size = targets[names[0]].shape[0]
        y = torch.cat([out[k].reshape(size, -1) for k in names], dim=1)  # (batch, f_out)
        wanted = torch.cat([targets[k].reshape(size, -1) for k in names], dim=1)
        params = [tensors[k] for k in self.trained]
        H = _per_trial_jacobian(y, params)  # (batch, f_out, L)
        lam, P = self.forgetting_factor, self.P["theta"]
        with torch.no_grad():
            theta0 = torch.cat([p.reshape(-1) for p in params])
            shift = torch.zeros_like(theta0)
            eye = torch.eye(y.shape[1], dtype=y.dtype, device=y.device)
            for b in range(size):
                Hb = H[b]
                e = wanted[b] - (y[b].detach() + Hb @ shift)  # (linearised about the step's start)
                PHt = P @ Hb.T
                S = lam * eye + Hb @ PHt
                K = torch.linalg.solve(S, PHt.T).T  # P H' S^-1 (S symmetric)
                shift += K @ e
                P.sub_(K @ PHt.T).div_(lam)
            theta = theta0 + shift
            offset = 0
            for p in params:
                n = p.numel()
                p.copy_(theta[offset:offset + n].reshape(p.shape))
                offset += n

    # the updates happened during forward: batch.loss is the loss of the outputs made on the way
    on_optimization_begin = LearningAlgorithm.on_optimization_begin

    # ------------------------------------------------------------------ checkpoints
    def get_checkpoint_state(self, trainer: "TorchTrainer") -> Dict[str, Any]:
        """The P matrices (named by parameter; 'theta' for 'jacobian')."""
        return {"P": dict(self.P)}

    def load_checkpoint_state(self, trainer: "TorchTrainer", state: Mapping[str, Any]) -> None:
        """Restore the P matrices."""
        import torch

        self.P = {k: torch.as_tensor(v, dtype=trainer.module.dtype, device=trainer.device)
                  for k, v in (state.get("P") or {}).items()}


def _per_trial_jacobian(y: "torch.Tensor", params: Sequence["torch.Tensor"]) -> "torch.Tensor":
    """(batch, f_out, L): d y[b, i] / d theta for each trial b (theta: the params flattened, concatenated), by
    batched vector-Jacobian products (one one-hot cotangent per (trial, output))."""
    import torch

    size, f_out = y.shape
    eye = torch.eye(size * f_out, dtype=y.dtype, device=y.device).reshape(size * f_out, size, f_out)
    grads = torch.autograd.grad(y, list(params), grad_outputs=eye, is_grads_batched=True, allow_unused=True)
    rows: List["torch.Tensor"] = []
    for p, g in zip(params, grads):
        rows.append(torch.zeros(size * f_out, p.numel(), dtype=y.dtype, device=y.device) if g is None
                    else g.reshape(size * f_out, -1))
    return torch.cat(rows, dim=1).reshape(size, f_out, -1)


__all__: Tuple[str, ...] = ("RLS", "STRATEGIES")
