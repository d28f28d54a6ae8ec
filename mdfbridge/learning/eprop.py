"""e-prop (Bellec et al. 2020) with exact eligibility traces, for stateful MDF programs stepped through time.

The model's state is one population h (every state of the Program updated to one tensor, e.g. a leaky
integrator's `time_derivative`, or the GRU gate form's hidden value read through its delayed edges). Each step
runs forward only; nothing of the sequence is kept for a backward pass (memory O(parameters), whatever its
length). Per step t and trial b, from one vector-Jacobian product of the step (autograd, ones as cotangent):

- D_t = dh_t/dh_{t-1} along the unit's own path: the state as a MatMul reads it (the "observable" z_{t-1} of
  Bellec's notation) is held constant, so recurrent input does not count;
- for each learnable weight W of a MatMul a = W u (or u W) that feeds h, psi_t = dh_t/da_t and the trace
  e_t[j, i] = D_t[j] e_{t-1}[j, i] + psi_t[j] u_t[i] (unit j's own weights: a row of W, or a column of u W);
- for each other learnable parameter feeding h, of the units' shape or a scalar, e_t[j] = D_t[j] e_{t-1}[j] +
  dh_t[j]/dp (its copy per trial and unit, so the derivative is unit j's own).

The learning signal L_t[j] is the error of the step's outputs sent back to the units: `feedbacks_gen_strategy=
"symmetric"` takes dloss_t/dh_t itself (W_out transposed for a linear readout: exact), the random strategies
(NeuroTorch's: xavier_normal, randn, rand, ones, orthogonal, unitary, kaiming_normal; for real matrices unitary is
orthogonal; ones, rand and randn scaled to norm <= 1 as NeuroTorch's) a fixed matrix B (outputs x units) drawn
once from `seed`, L_t = (dloss_t/dy_t) B. A weight's gradient is the sum over steps and trials of
L_t[j] e_t[j, ...]; parameters that do not feed h (the readout) take their exact local gradient dloss_t/dp. The
optimizer steps every `optim_time_steps` steps and at the end of the sequence. Traces are per trial, so the
learning signal is exact for any batch size. Where there is no recurrent path between units (no recurrent
weights, or recurrent weights at zero), D_t is the whole Jacobian and e-prop's gradient is BPTT's exactly
(tested to 1e-12).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, List, Mapping, Optional, Set, Tuple

from ..errors import DataError, UnsupportedError
from .algorithms import BPTT, Batch, LearningAlgorithm, register_algorithm
from .stepping import Unrolled, computed_from, is_matrix_product, matmul_use, recording_steps, uses_of

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..backends.torch_trainer import TorchTrainer

FEEDBACK_STRATEGIES = ("xavier_normal", "randn", "rand", "ones", "orthogonal", "unitary", "kaiming_normal",
                       "symmetric")
# NeuroTorch's DEFAULT_FEEDBACKS_STR_NORM_CLIP_VALUE: these strategies' matrices are scaled to norm <= 1
_NORM_CLIPPED = ("ones", "rand", "randn")


@dataclass
class _Trace:
    """One learnable parameter that feeds the state: how its eligibility trace is kept."""

    name: str  # the Program parameter
    kind: str  # "rows" (a = W u: unit j owns row j), "columns" (a = u W: unit j owns column j), "units", "scalar"
    op_out: str = ""  # the MatMul's output (rows / columns)
    operand: str = ""  # the MatMul's batched operand u (rows / columns)


def _feedback_matrix(strategy: str, n_out: int, n_units: int, seed: int, dtype: Any, device: Any) -> "torch.Tensor":
    """The random feedback B (n_out x n_units) of a strategy, drawn from torch.Generator(seed)."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    shape = (n_out, n_units)
    if strategy == "ones":
        b = torch.ones(shape, dtype=torch.float64)
    elif strategy == "rand":
        b = torch.rand(shape, generator=g, dtype=torch.float64)
    elif strategy == "randn":
        b = torch.randn(shape, generator=g, dtype=torch.float64)
    else:
        b = torch.empty(shape, dtype=torch.float64)
        inits: Dict[str, Callable[..., Any]] = {"xavier_normal": torch.nn.init.xavier_normal_,
                                                "orthogonal": torch.nn.init.orthogonal_,
                                                "unitary": torch.nn.init.orthogonal_,  # (real: orthogonal)
                                                "kaiming_normal": torch.nn.init.kaiming_normal_}
        init = inits[strategy]
        init(b, generator=g)
    if strategy in _NORM_CLIPPED:
        norm = float(torch.linalg.norm(b))
        if norm > 1.0:
            b = b / norm
    return b.to(dtype=dtype, device=device)


@register_algorithm
class Eprop(BPTT):
    """e-prop with exact eligibility traces (see the module docstring).

    feedbacks_gen_strategy: 'xavier_normal' (default, NeuroTorch's), 'randn', 'rand', 'ones', 'orthogonal',
    'unitary', 'kaiming_normal' (random feedback) or 'symmetric' (the readout's own transpose: the exact learning
    signal); seed: the random feedback's seed (default 0); params_lr / output_params_lr: learning rates of the
    parameters that feed the state and of the others (the readout) (default None: learn()'s learning_rate);
    eligibility_traces_norm_clip_value: each trace's norm is clipped to it (default inf: none);
    optim_time_steps: steps between optimizer steps (default None: once, at the end of each sequence); dt,
    grad_norm_clip_value (default inf), nan, posinf, neginf: as BPTT's."""

    name: ClassVar[str] = "eprop"
    backends: ClassVar[Tuple[str, ...]] = ("torch",)

    def __init__(self, *, feedbacks_gen_strategy: str = "xavier_normal", seed: int = 0,
                 params_lr: Optional[float] = None, output_params_lr: Optional[float] = None,
                 eligibility_traces_norm_clip_value: float = math.inf, optim_time_steps: Optional[int] = None,
                 dt: float = 1.0, grad_norm_clip_value: float = math.inf, nan: float = 0.0, posinf: float = 1.0,
                 neginf: float = -1.0) -> None:
        super().__init__(dt=dt, grad_norm_clip_value=grad_norm_clip_value, nan=nan, posinf=posinf, neginf=neginf)
        if feedbacks_gen_strategy not in FEEDBACK_STRATEGIES:
            raise DataError(f"feedbacks_gen_strategy must be one of {', '.join(FEEDBACK_STRATEGIES)}, got "
                            f"{feedbacks_gen_strategy!r}")
        for label, lr in (("params_lr", params_lr), ("output_params_lr", output_params_lr)):
            if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr >= 0
                                   or not math.isfinite(lr)):
                raise DataError(f"{label} must be a finite number >= 0 (or None: learning_rate), got {lr!r}")
        clip = eligibility_traces_norm_clip_value
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
            raise DataError(f"eligibility_traces_norm_clip_value must be a number > 0 (inf: none), got {clip!r}")
        if optim_time_steps is not None and (isinstance(optim_time_steps, bool) or not isinstance(optim_time_steps, int)
                                             or optim_time_steps < 1):
            raise DataError(f"optim_time_steps must be an integer >= 1 (or None: at the end), got {optim_time_steps!r}")
        self.feedbacks_gen_strategy, self.seed = feedbacks_gen_strategy, int(seed)
        self.params_lr, self.output_params_lr = params_lr, output_params_lr
        self.eligibility_traces_norm_clip_value = float(clip)
        self.optim_time_steps = optim_time_steps
        self.feedback: Optional["torch.Tensor"] = None  # B, drawn at the first batch (or from a checkpoint)
        self.traces: List[_Trace] = []
        self.output_params: List[str] = []
        self.update = ""  # the state's update tensor
        self.steps: List[Any] = []  # the module's compiled steps, MatMuls of traced weights wrapped
        self._matmuls: Dict[str, Tuple[Any, Any]] = {}  # MatMul output -> (its output, its operand u) this step

    def settings(self) -> Dict[str, Any]:
        """The constructor arguments."""
        return {"feedbacks_gen_strategy": self.feedbacks_gen_strategy, "seed": self.seed,
                "params_lr": self.params_lr, "output_params_lr": self.output_params_lr,
                "eligibility_traces_norm_clip_value": self.eligibility_traces_norm_clip_value,
                "optim_time_steps": self.optim_time_steps, **super().settings()}

    # ------------------------------------------------------------------ set-up
    def start(self, trainer: "TorchTrainer") -> None:
        """Find the state, the traced parameters and the readout's; wrap the traced MatMuls; give the two kinds of
        parameters their learning rates."""
        program = trainer.module.program
        self.feedback = None  # (drawn again from `seed` at the first batch; a checkpoint brings its own)
        if program.sequence:
            raise UnsupportedError("e-prop steps a program through time; this one's ops (a GRU block) run whole "
                                   "sequences at once: write it in gate form (mdfbridge convert --gru gates) or "
                                   "train it with BPTT")
        updates = sorted({st.update for st in program.states.values()})
        if len(updates) != 1:
            raise UnsupportedError(f"e-prop needs the model's state to be one population (every state updated to "
                                   f"one tensor); this model's states update to {len(updates)} ({', '.join(updates)})"
                                   ": train it with BPTT")
        self.update = updates[0]
        units = tuple(program.shapes.get(self.update, ()))
        feeding = computed_from(program, [self.update])  # (this step's)
        learnable = [k for k, p in program.params.items() if p.learnable]
        self.output_params = [k for k in learnable if k not in feeding]
        self.traces = [self._trace_of(program, k, units, feeding) for k in learnable if k in feeding]
        self.steps = recording_steps(trainer.module, {t.op_out: t.operand for t in self.traces if t.op_out},
                                     self._matmuls, [t.name for t in self.traces if t.kind in ("units", "scalar")])
        tensors = trainer.module.param_tensors()
        config = trainer.config
        groups = [{"params": [tensors[t.name] for t in self.traces],
                   "lr": config.learning_rate if self.params_lr is None else self.params_lr},
                  {"params": [tensors[k] for k in self.output_params],
                   "lr": config.learning_rate if self.output_params_lr is None else self.output_params_lr}]
        from ..optimizers import get_optimizer

        trainer.optimizer = get_optimizer(config.optimizer_type).torch(
            [g for g in groups if g["params"]], lr=config.learning_rate, weight_decay=config.weight_decay)

    def _trace_of(self, program: Any, name: str, units: Tuple[int, ...], feeding: Set[str]) -> _Trace:
        """How parameter `name`, which feeds the state, is traced (UnsupportedError when it cannot be)."""
        use = matmul_use(program, name, feeding)
        if use is not None and tuple(program.shapes.get(use.op_out, ())) == units:
            return _Trace(name, use.orientation, use.op_out, use.operand)
        uses = uses_of(program, name, feeding)
        shape = tuple(program.params[name].value.shape)
        if not any(is_matrix_product(op) for op in uses):
            if shape == units:
                return _Trace(name, "units")
            if shape == ():
                return _Trace(name, "scalar")
        raise UnsupportedError(f"e-prop keeps eligibility traces for the weights of a MatMul onto the state's units "
                               f"and for parameters of the units' shape {units} or scalars; '{name}' (shape {shape}, "
                               f"used by {', '.join(op.fn for op in uses)}) is neither: train it with BPTT")

    # ------------------------------------------------------------------ the pass
    def forward(self, trainer: "TorchTrainer", batch: Batch) -> Dict[str, "torch.Tensor"]:
        """Step through the sequence once, keeping the traces and the gradients; the optimizer steps every
        optim_time_steps steps and at the end. Returns the outputs (batch, time steps, ...), detached."""
        import torch

        module, program = trainer.module, trainer.module.program
        steps = trainer.time_steps
        run = Unrolled(trainer, batch)
        env, size = run.env, run.size
        tensors = module.param_tensors()
        units = tuple(program.shapes.get(self.update, ()))
        traces = {t.name: torch.zeros(self._trace_shape(t, size, units, tensors), dtype=module.dtype,
                                      device=trainer.device) for t in self.traces}
        grads = {k: torch.zeros_like(tensors[k]) for k in [t.name for t in self.traces] + self.output_params}
        elementwise = [t for t in self.traces if t.kind in ("units", "scalar")]
        trainer.optimizer.zero_grad(set_to_none=True)
        for t in range(steps):
            held = {name: env[name].detach().clone().requires_grad_() for name in program.states}
            env.update(held)
            copies = {tr.name: tensors[tr.name].detach().expand((size,) + units).clone().requires_grad_()
                      for tr in elementwise}
            env.update(copies)
            self._matmuls.clear()
            out = run.step(t, self.dt, self.steps, keep_graph=False)
            h = env[self.update]
            self._advance_traces(h, held, copies, traces, tensors)
            loss = trainer.sequence_loss({k: v[:, None] for k, v in out.items()}, batch.y, t, t + 1)
            if loss is not None:
                self._accumulate(loss, h, out, traces, grads, tensors)
            for name in program.states:  # (the next step starts from values, not from this step's graph)
                env[name] = env[name].detach()
            for name in copies:
                env[name] = tensors[name]
            done = t + 1
            if done == steps or (self.optim_time_steps and done % self.optim_time_steps == 0):
                self._step(trainer, grads, tensors)
        return run.stacked()

    @staticmethod
    def _trace_shape(t: _Trace, size: int, units: Tuple[int, ...], tensors: Mapping[str, Any]) -> Tuple[int, ...]:
        if t.kind in ("rows", "columns"):
            return (size,) + tuple(tensors[t.name].shape)
        return (size,) + units

    def _advance_traces(self, h: "torch.Tensor", held: Mapping[str, Any], copies: Mapping[str, Any],
                        traces: Dict[str, "torch.Tensor"], tensors: Mapping[str, Any]) -> None:
        """D_t, psi_t and the parameters' local derivatives from one VJP of the step; then each trace's step."""
        import torch

        matmul = [t for t in self.traces if t.kind in ("rows", "columns")]
        wrt = list(held.values()) + [self._matmuls[t.op_out][0] for t in matmul] + [copies[t.name] for t in
                                                                                   self.traces if t.name in copies]
        got = torch.autograd.grad(h, wrt, grad_outputs=torch.ones_like(h), retain_graph=True, allow_unused=True)
        zero = torch.zeros_like(h)
        n_held = len(held)
        D = zero
        for g in got[:n_held]:  # (every state holds h_{t-1}: dh_t/dh_{t-1} sums over them)
            if g is not None:
                D = D + g
        psi = dict(zip([t.name for t in matmul], got[n_held:n_held + len(matmul)]))
        local = dict(zip([t.name for t in self.traces if t.name in copies], got[n_held + len(matmul):]))
        with torch.no_grad():
            b = h.shape[0]
            d = D.reshape(b, -1)
            for tr in self.traces:
                e = traces[tr.name]
                if tr.kind in ("rows", "columns"):
                    p = psi[tr.name]
                    p = (p if p is not None else zero).reshape(b, -1)
                    u = self._matmuls[tr.op_out][1].reshape(b, -1)
                    if tr.kind == "rows":  # a = W u: e[j, i] = D[j] e[j, i] + psi[j] u[i]
                        e.mul_(d[:, :, None]).add_(p[:, :, None] * u[:, None, :])
                    else:  # a = u W: e[i, j] = D[j] e[i, j] + u[i] psi[j]
                        e.mul_(d[:, None, :]).add_(u[:, :, None] * p[:, None, :])
                else:
                    g_local = local.get(tr.name)
                    e.mul_(D).add_(g_local if g_local is not None else zero)
                clip = self.eligibility_traces_norm_clip_value
                if math.isfinite(clip):
                    norm = float(torch.linalg.norm(e))
                    if norm > clip:
                        e.mul_(clip / norm)

    def _accumulate(self, loss: "torch.Tensor", h: "torch.Tensor", out: Mapping[str, "torch.Tensor"],
                    traces: Mapping[str, "torch.Tensor"], grads: Dict[str, "torch.Tensor"],
                    tensors: Mapping[str, Any]) -> None:
        """The step's learning signal times the traces, and the readout's local gradients, into `grads`."""
        import torch

        names = list(out)
        readout = [tensors[k] for k in self.output_params]
        if self.feedbacks_gen_strategy == "symmetric":
            got = torch.autograd.grad(loss, [h] + readout, retain_graph=False, allow_unused=True)
            signal = got[0] if got[0] is not None else torch.zeros_like(h)
            local = got[1:]
        else:
            got = torch.autograd.grad(loss, [out[k] for k in names] + readout, allow_unused=True)
            errors = torch.cat([(g if g is not None else torch.zeros_like(out[k])).reshape(h.shape[0], -1)
                                for k, g in zip(names, got[:len(names)])], dim=1)
            if self.feedback is None:
                self.feedback = _feedback_matrix(self.feedbacks_gen_strategy, errors.shape[1], h[0].numel(),
                                                 self.seed, h.dtype, h.device)
            signal = (errors @ self.feedback).reshape(h.shape)
            local = got[len(names):]
        with torch.no_grad():
            b = h.shape[0]
            s = signal.reshape(b, -1)
            for tr in self.traces:
                e = traces[tr.name]
                if tr.kind == "rows":
                    grads[tr.name] += torch.einsum("bj,bji->ji", s, e)
                elif tr.kind == "columns":
                    grads[tr.name] += torch.einsum("bj,bij->ij", s, e)
                elif tr.kind == "units":
                    grads[tr.name] += (signal * e).sum(dim=0)
                else:
                    grads[tr.name] += (signal * e).sum()
            for k, g in zip(self.output_params, local):
                if g is not None:
                    grads[k] += g

    def _step(self, trainer: "TorchTrainer", grads: Dict[str, "torch.Tensor"], tensors: Mapping[str, Any]) -> None:
        """The accumulated gradients into .grad, the safeguards, one optimizer step; the accumulators zeroed."""
        for k, g in grads.items():
            tensors[k].grad = g.clone()
        self.before_step(trainer)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        for g in grads.values():
            g.zero_()

    # the updates happened during forward: batch.loss is the loss of the outputs made on the way
    on_optimization_begin = LearningAlgorithm.on_optimization_begin

    # ------------------------------------------------------------------ checkpoints
    def get_checkpoint_state(self, trainer: "TorchTrainer") -> Dict[str, Any]:
        """The random feedback matrix (None before the first batch, or for symmetric feedback)."""
        return {"feedback": self.feedback}

    def load_checkpoint_state(self, trainer: "TorchTrainer", state: Mapping[str, Any]) -> None:
        """Restore the feedback matrix."""
        fb = state.get("feedback")
        if fb is not None:
            import torch

            self.feedback = torch.as_tensor(fb, dtype=trainer.module.dtype, device=trainer.device)

