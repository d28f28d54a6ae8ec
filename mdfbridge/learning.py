"""Supervised learning with PsyNeuLink AutodiffComposition semantics over the torch module of a Program."""
from __future__ import annotations

import enum
import math
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import numpy as np

from .errors import DataError, UnsupportedError
from .lazy_function import resolved
from .losses import Loss, get_loss, loss_name  # noqa: F401 - Loss and loss_name: also importable from here
from .optimizers import PlainSGD, get_optimizer  # noqa: F401 - PlainSGD: also importable from here
from .program import Program

log = logging.getLogger(__name__)


class ExecutionMode(enum.Enum):
    """PsyNeuLink's execution modes, accepted so PsyNeuLink scripts port with few edits."""

    Python = "numpy"
    PyTorch = "torch"
    LLVM = "llvm"
    LLVMRun = "llvm"
    LLVMExec = "llvm"


SYNCH_SCALES = ("minibatch", "epoch", "run")


def backend_name(backend: Optional[str] = None, execution_mode: Any = None) -> str:
    """'torch' | 'llvm' | 'numpy' from `backend=` or PsyNeuLink's `execution_mode=`."""
    if execution_mode is not None:
        name = getattr(execution_mode, "name", str(execution_mode)).split(".")[-1]
        try:
            return ExecutionMode[name].value
        except KeyError:
            raise UnsupportedError(f"unknown execution_mode {execution_mode!r}; use ExecutionMode.PyTorch or "
                                   "ExecutionMode.LLVMRun") from None
    backend = (backend or "torch").lower()
    if backend not in ("torch", "llvm", "numpy"):
        raise UnsupportedError(f"unknown backend {backend!r}; use 'torch' or 'llvm'")
    return backend


@dataclass
class LearnConfig:
    """learn()'s settings, with AutodiffComposition's names and defaults."""

    epochs: int = 1
    learning_rate: float = 0.001
    minibatch_size: int = 1
    randomize_minibatch: bool = False
    optimizer_type: str = "sgd"
    weight_decay: float = 0.0
    loss_spec: Union[str, Loss] = Loss.MSE
    patience: Optional[int] = None
    min_delta: float = 0.0
    synch_projection_matrices: str = "run"
    seed: Optional[int] = None

    def check(self) -> None:
        """Reject settings that cannot work, naming the argument."""
        if not isinstance(self.epochs, (int, np.integer)) or isinstance(self.epochs, bool):
            raise DataError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if int(self.epochs) < 1:
            raise DataError(f"epochs must be >= 1, got {self.epochs}")
        if int(self.minibatch_size) < 1:
            raise DataError(f"minibatch_size must be >= 1, got {self.minibatch_size}")
        get_optimizer(self.optimizer_type)
        if str(self.synch_projection_matrices).lower() not in SYNCH_SCALES:
            raise UnsupportedError(f"synch_projection_matrices must be one of {SYNCH_SCALES}, "
                                   f"got {self.synch_projection_matrices!r}")
        for name in ("learning_rate", "weight_decay", "min_delta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise DataError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise DataError(f"patience must be an integer >= 1 (or None), got {self.patience!r}")
        get_loss(self.loss_spec)


@dataclass
class LearnResult:
    """What learn() produced: final-epoch outputs (trial order), per-minibatch losses, the trained Program."""

    outputs: Dict[str, np.ndarray]
    losses: List[float]
    program: Program
    epochs_run: int
    stopped_early: bool = False
    seconds: float = 0.0
    epoch_losses: List[float] = field(default_factory=list)


def prepare_data(program: Program, inputs: Mapping[str, Any], targets: Mapping[str, Any]) -> tuple:
    """Validate training data against the program: (inputs name -> (N, ...), targets name -> (N, ...), N)."""
    from .importers.reference import runner_for

    if not inputs:
        raise DataError("no inputs given")
    x, n = runner_for(program).prepare_inputs(inputs)
    missing_inputs = [k for k, s in program.inputs.items() if k not in inputs and s.port not in inputs
                      and s.default is None]
    if missing_inputs:
        raise DataError(f"no data for input node(s) {missing_inputs}")
    x = {k: x[f"{s.node}.{s.port}"] for k, s in program.inputs.items()}
    unknown = set(targets) - set(program.outputs)
    if unknown:
        raise DataError(f"targets for {sorted(unknown)}, which are not output nodes; outputs are "
                        f"{sorted(program.outputs)}")
    if not targets:
        raise DataError(f"no targets given; the output nodes are {sorted(program.outputs)}")
    t: Dict[str, np.ndarray] = {}
    lead = 2 if program.sequence else 1
    for k, v in targets.items():
        arr = np.asarray(v, dtype=float)
        want = tuple(program.shapes.get(program.outputs[k], ()))
        if arr.shape[lead:] != want or (lead == 2 and arr.shape[:2] != next(iter(x.values())).shape[:2]):
            if lead == 1 and arr.ndim == 3 and arr.shape[1] == 1 and arr.shape[2:] == want:
                arr = arr[:, 0]
            else:
                head = "trials, time steps" if lead == 2 else "trials"
                raise DataError(f"targets for '{k}' have shape {arr.shape}; expected ({head}, "
                                f"{', '.join(map(str, want))})")
        if arr.shape[0] != n:
            raise DataError(f"targets for '{k}' have {arr.shape[0]} trials, inputs have {n}")
        if not np.all(np.isfinite(arr)):
            raise DataError(f"targets for '{k}' contain NaN or infinite values")
        t[k] = arr
    return x, t, n


def train_program(program: Program, inputs: Mapping[str, Any], targets: Mapping[str, Any],
                  config: Optional[LearnConfig] = None, *, backend: str = "torch", dtype: Any = None,
                  device: Any = None, callback: Optional[Callable[[int, int, float], None]] = None,
                  on_synch: Optional[Callable[[], None]] = None) -> LearnResult:
    """Train the Program's learnable parameters in place (its parameter table holds the trained values)."""
    config = config or LearnConfig()
    config.check()
    if backend == "llvm":
        try:
            from .importers.llvm import train_llvm
        except ImportError:
            raise UnsupportedError("backend 'llvm' (ExecutionMode.LLVMRun) is not available in this build; "
                                   "use backend='torch' (ExecutionMode.PyTorch)") from None
        return train_llvm(program, inputs, targets, config, callback=callback, on_synch=on_synch)
    if backend != "torch":
        raise UnsupportedError(f"learn() runs on backend 'torch' or 'llvm', not {backend!r}")
    import torch

    from .importers.torch_module import ProgramModule

    x_np, t_np, n = prepare_data(program, inputs, targets)
    dtype = dtype or torch.float64
    module = ProgramModule(program, dtype=dtype, device=device)
    dev = next(iter(module.buffers()), next(iter(module.parameters()), None))
    dev = dev.device if dev is not None else torch.device("cpu")
    x = {k: torch.as_tensor(v, dtype=dtype, device=dev) for k, v in x_np.items()}
    t = {k: torch.as_tensor(v, dtype=dtype, device=dev) for k, v in t_np.items()}
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise UnsupportedError("the model has no learnable parameters")
    # per-parameter learning rates (a GRU block's optimizer_params) become parameter groups
    rates = [getattr(p, "learning_rate", None) for p in params]
    groups = [{"params": [p for p, r in zip(params, rates) if r is None]}] + [
        {"params": [p], "lr": r} for p, r in zip(params, rates) if r is not None]
    optimizer = get_optimizer(config.optimizer_type).torch([g for g in groups if g["params"]], lr=config.learning_rate,
                                                           weight_decay=config.weight_decay)
    loss_fn = resolved(get_loss(config.loss_spec).torch)
    synch = str(config.synch_projection_matrices).lower()
    rng = np.random.default_rng(config.seed)
    mb = int(config.minibatch_size)
    losses: List[float] = []
    epoch_losses: List[float] = []
    best, waited, stopped = np.inf, 0, False
    last_outputs: List[tuple] = []
    start = time.perf_counter()
    epoch = 0
    for epoch in range(int(config.epochs)):
        order = rng.permutation(n) if config.randomize_minibatch else None
        epoch_outputs: List[tuple] = []
        first_loss = len(losses)
        for b0 in range(0, n, mb):
            if order is None:
                idx: Any = slice(b0, min(b0 + mb, n))
            else:
                idx = torch.as_tensor(order[b0:b0 + mb], device=dev)
            out = module.forward({k: v[idx] for k, v in x.items()})  # (no module hooks in this inner loop)
            loss = None
            for k in t:  # summed over output nodes (no `0 +` node in the autograd graph)
                term = loss_fn(out[k], t[k][idx])
                loss = term if loss is None else loss + term
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            losses.append(value)
            epoch_outputs.append((idx, {k: o.detach() for k, o in out.items()}))
            if callback is not None:
                callback(epoch, len(losses) - 1, value)
            if synch == "minibatch":
                module.write_to_program()
                if on_synch:
                    on_synch()
        last_outputs = epoch_outputs
        epoch_loss = math.fsum(losses[first_loss:]) / (len(losses) - first_loss)  # (np.mean costs 25 us)
        epoch_losses.append(epoch_loss)
        if synch == "epoch":
            module.write_to_program()
            if on_synch:
                on_synch()
        if config.patience is not None:
            if epoch_loss < best - config.min_delta:
                best, waited = epoch_loss, 0
            else:
                waited += 1
                if waited >= config.patience:
                    stopped = True
                    log.info("early stopping after epoch %d (loss %.6g)", epoch + 1, epoch_loss)
                    break
    module.write_to_program()
    if on_synch:
        on_synch()
    outputs = {k: np.zeros(next(iter(t_np.values())).shape[:2 if program.sequence else 1]
                           + tuple(program.shapes.get(program.outputs[k], ()))) for k in program.outputs}
    for idx, out in last_outputs:
        rows = np.arange(n)[idx] if isinstance(idx, slice) else idx.cpu().numpy()
        for k, o in out.items():
            outputs[k][rows] = o.cpu().numpy()
    return LearnResult(outputs, losses, program, epoch + 1, stopped, time.perf_counter() - start, epoch_losses)


def learn(model: Any, inputs: Mapping[str, Any], targets: Optional[Mapping[str, Any]] = None, *,
          backend: Optional[str] = None, execution_mode: Any = None, dtype: Any = None, device: Any = None,
          callback: Optional[Callable[[int, int, float], None]] = None, **settings: Any) -> LearnResult:
    """Train a loaded MDF model (path, dict, modeci-mdf Model or Program); returns a LearnResult.

    Settings are AutodiffComposition's: epochs, learning_rate, minibatch_size, randomize_minibatch, optimizer_type,
    weight_decay, loss_spec, patience, min_delta, synch_projection_matrices, seed. Write the trained weights back
    with `write_back(source, result.program, out)`.
    """
    from .lowering import lower

    if isinstance(inputs, Mapping) and "inputs" in inputs and targets is None:
        settings = {**{k: v for k, v in inputs.items() if k not in ("inputs", "targets")}, **settings}
        inputs, targets = inputs["inputs"], inputs.get("targets")
    if isinstance(model, Program):
        program = model
    elif isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from .api import load_program

        program = load_program(model)
    else:
        program = lower(model)
    try:
        config = LearnConfig(**settings)
    except TypeError as exc:
        raise UnsupportedError(f"learn(): {exc}") from None
    return train_program(program, inputs, targets or {}, config, backend=backend_name(backend, execution_mode),
                         dtype=dtype, device=device, callback=callback)
