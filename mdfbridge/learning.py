"""Supervised learning with PsyNeuLink AutodiffComposition semantics: settings, data preparation, results.

`learn` / `train_program` check the settings (LearnConfig) and hand the Program to a training backend
(mdfbridge.backends: 'torch' or 'llvm'), whose `BackendRep.train` prepares the data here (`prepare_data`: inputs
and targets checked against the Program and aligned by trial; `TrainingData.epoch_orders`: each epoch's minibatch
order) and runs its trainer (mdfbridge/backends/torch_trainer.py, importers/llvm.py). Losses and optimizers are
records in mdfbridge/losses.py and mdfbridge/optimizers.py.
"""
from __future__ import annotations

import difflib
import enum
import logging
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Union

import numpy as np

from .errors import DataError, UnsupportedError
from .losses import Loss, get_loss, loss_name  # noqa: F401 - Loss and loss_name: also importable from here
from .optimizers import PlainSGD, get_optimizer  # noqa: F401 - PlainSGD: also importable from here
from .program import Program
from .shapes import fit_unit_axes

log = logging.getLogger(__name__)

SYNCH_SCALES = ("minibatch", "epoch", "run")


class ExecutionMode(enum.Enum):
    """PsyNeuLink's execution modes, accepted so PsyNeuLink scripts port with few edits."""

    Python = "numpy"
    PyTorch = "torch"
    LLVM = "llvm"
    LLVMRun = "llvm"
    LLVMExec = "llvm"


def backend_name(backend: Optional[str] = None, execution_mode: Any = None) -> str:
    """The name of a registered backend (mdfbridge.backends.BACKENDS) from `backend=` ('torch' when neither is
    given) or PsyNeuLink's `execution_mode=` (an ExecutionMode, or anything with that member name)."""
    from .backends import get_backend

    if execution_mode is not None:
        name = getattr(execution_mode, "name", str(execution_mode)).split(".")[-1]
        try:
            return get_backend(ExecutionMode[name].value).name
        except KeyError:
            raise UnsupportedError(f"unknown execution_mode {execution_mode!r}; use ExecutionMode.PyTorch or "
                                   "ExecutionMode.LLVMRun") from None
    return get_backend((backend or "torch").lower()).name


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


class TrainingData(NamedTuple):
    """Inputs and targets checked against a Program (what `prepare_data` returns)."""

    inputs: Dict[str, np.ndarray]  # input name -> (trials, ...)
    targets: Dict[str, np.ndarray]  # output name -> (trials, ...)
    n: int  # trials

    def epoch_orders(self, config: LearnConfig) -> Iterator[Optional[np.ndarray]]:
        """One trial order per epoch (config.epochs of them): None (trial order) unless config.randomize_minibatch,
        then `rng.permutation(n)` from one `numpy.random.default_rng(config.seed)` (fresh each call)."""
        rng = np.random.default_rng(config.seed)
        for _ in range(int(config.epochs)):
            yield rng.permutation(self.n) if config.randomize_minibatch else None


class EarlyStopping:
    """AutodiffComposition's early stopping on the epoch loss: stop after `patience` epochs in a row that do not
    improve on the best loss by more than `min_delta` (patience None: never)."""

    def __init__(self, patience: Optional[int], min_delta: float = 0.0) -> None:
        """patience: epochs without improvement before stopping (None: never stop); min_delta: default 0."""
        self.patience, self.min_delta = patience, min_delta
        self.best, self.waited = np.inf, 0

    def should_stop(self, epoch_loss: float) -> bool:
        """Record one epoch's loss; True when training should stop now."""
        if self.patience is None:
            return False
        if epoch_loss < self.best - self.min_delta:
            self.best, self.waited = epoch_loss, 0
            return False
        self.waited += 1
        return self.waited >= self.patience


def make_config(config: Optional[LearnConfig] = None, settings: Optional[Mapping[str, Any]] = None,
                error: type = UnsupportedError, where: str = "learn()") -> LearnConfig:
    """`config` (default LearnConfig()) with `settings` (LearnConfig field -> value) applied; an unknown setting
    raises `error` (default UnsupportedError) with a message starting with `where`."""
    names = [f.name for f in fields(LearnConfig)]
    for key in settings or {}:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise error(f"{where}: unknown setting '{key}'; {hint}settings: {', '.join(names)}")
    if config is None:
        return LearnConfig(**(settings or {}))
    return replace(config, **settings) if settings else config


def prepare_data(program: Program, inputs: Mapping[str, Any], targets: Mapping[str, Any]) -> TrainingData:
    """Check training data against the program and align it by trial.

    inputs: input node (or port) name -> (trials, ...) arrays; inputs with a default value may be left out.
    targets: output node name -> (trials, ...) arrays ((trials, 1, ...) is accepted too; sequence programs take
    (trials, time steps, ...)). Raises DataError naming the node for anything that does not fit.
    """
    x, n = _training_inputs(program, inputs)
    unknown = set(targets) - set(program.outputs)
    if unknown:
        raise DataError(f"targets for {sorted(unknown)}, which are not output nodes; outputs are "
                        f"{sorted(program.outputs)}")
    if not targets:
        raise DataError(f"no targets given; the output nodes are {sorted(program.outputs)}")
    lead_shape = next(iter(x.values())).shape[:2] if program.sequence and x else None
    return TrainingData(x, {k: _aligned_targets(program, k, v, n, lead_shape) for k, v in targets.items()}, n)


def _training_inputs(program: Program, inputs: Mapping[str, Any]) -> tuple:
    """(input name -> (trials, ...) array, trials): the reference's input rules, and every input without a default
    must have data."""
    from .importers.reference import runner_for

    if not inputs:
        raise DataError("no inputs given")
    x, n = runner_for(program).prepare_inputs(inputs)
    missing_inputs = [k for k, s in program.inputs.items() if k not in inputs and s.port not in inputs
                      and s.default is None]
    if missing_inputs:
        raise DataError(f"no data for input node(s) {missing_inputs}")
    return {k: x[f"{s.node}.{s.port}"] for k, s in program.inputs.items()}, n


def _aligned_targets(program: Program, name: str, value: Any, n: int, lead_shape: Optional[tuple]) -> np.ndarray:
    """One output's targets as a float (trials, ...) array ((trials, time steps, ...) for sequences, whose leading
    axes must be the inputs' `lead_shape`), checked for shape, trial count and finiteness."""
    arr = np.asarray(value, dtype=float)
    lead = 2 if program.sequence else 1
    want = tuple(program.shapes.get(program.outputs[name], ()))
    if arr.shape[lead:] != want or (lead == 2 and arr.shape[:2] != lead_shape):
        fitted = fit_unit_axes(arr, lead, want) if lead == 1 or arr.shape[:2] == lead_shape else None
        if fitted is not None:
            arr = fitted
        else:
            head = "trials, time steps" if lead == 2 else "trials"
            raise DataError(f"targets for '{name}' have shape {arr.shape}; expected ({head}, "
                            f"{', '.join(map(str, want))})")
    if arr.shape[0] != n:
        raise DataError(f"targets for '{name}' have {arr.shape[0]} trials, inputs have {n}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"targets for '{name}' contain NaN or infinite values")
    return arr


def train_program(program: Program, inputs: Mapping[str, Any], targets: Mapping[str, Any],
                  config: Optional[LearnConfig] = None, *, backend: str = "torch", dtype: Any = None,
                  device: Any = None, callback: Optional[Callable[[int, int, float], None]] = None,
                  on_synch: Optional[Callable[[], None]] = None) -> LearnResult:
    """Train the Program's learnable parameters in place (its parameter table holds the trained values).

    inputs/targets: as `prepare_data` takes them; config: the settings (default LearnConfig()); backend: a training
    backend's name ('torch', default, or 'llvm'); dtype, device: the torch backend's tensor type (default float64)
    and device (default CPU); callback(epoch, minibatch index, loss) after each minibatch; on_synch() after the
    trained values reach the Program (per config.synch_projection_matrices, and at the end).
    """
    from .backends import get_backend, training_backend_names

    config = config or LearnConfig()
    config.check()
    chosen = get_backend(backend)
    if not chosen.trains:
        raise UnsupportedError(f"learn() runs on backend {' or '.join(map(repr, training_backend_names()))}, "
                               f"not {backend!r}")
    rep = chosen.prepare(program, dtype=dtype, device=device)
    return rep.train(inputs, targets, config, callback=callback, on_synch=on_synch)


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
    config = make_config(None, settings)
    return train_program(program, inputs, targets or {}, config, backend=backend_name(backend, execution_mode),
                         dtype=dtype, device=device, callback=callback)
