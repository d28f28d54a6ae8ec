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
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DataError, UnsupportedError
from ..losses import Loss, get_loss, loss_name  # noqa: F401 - Loss and loss_name: also importable from here
from ..optimizers import PlainSGD, get_optimizer  # noqa: F401 - PlainSGD: also importable from here
from ..program import Program
from ..shapes import fit_unit_axes

log = logging.getLogger(__name__)

SYNCH_SCALES = ("minibatch", "epoch", "run")
# PsyNeuLink's spellings of LearnConfig fields (Composition.learn's randomize_minibatches,
# AutodiffComposition's synch_projection_matrices_with_torch)
SETTING_ALIASES = {"randomize_minibatches": "randomize_minibatch",
                   "synch_projection_matrices_with_torch": "synch_projection_matrices"}


class ExecutionMode(enum.Enum):
    """PsyNeuLink's execution modes (every name PsyNeuLink's ExecutionMode gives: Python, PyTorch, LLVM, LLVMRun,
    LLVMExec, PTXRun, Auto), accepted so PsyNeuLink scripts port with few edits. Each member's value is its name;
    `.backend` is the mdfbridge backend it runs on (None: PTXRun, CUDA-compiled, which mdfbridge has no backend
    for)."""

    Python = "Python"
    PyTorch = "PyTorch"
    LLVM = "LLVM"
    LLVMRun = "LLVMRun"
    LLVMExec = "LLVMExec"
    PTXRun = "PTXRun"
    Auto = "Auto"

    @property
    def backend(self) -> Optional[str]:
        """The registered backend this mode runs on: Python 'numpy' (the reference), PyTorch and Auto 'torch',
        LLVM/LLVMRun/LLVMExec 'llvm', PTXRun None (refused by backend_name)."""
        return _MODE_BACKENDS[self.name]


_MODE_BACKENDS: Dict[str, Optional[str]] = {"Python": "numpy", "PyTorch": "torch", "LLVM": "llvm", "LLVMRun": "llvm",
                                            "LLVMExec": "llvm", "PTXRun": None, "Auto": "torch"}


def backend_name(backend: Optional[str] = None, execution_mode: Any = None) -> str:
    """The name of a registered backend (mdfbridge.backends.BACKENDS) from a backend name or PsyNeuLink's
    execution mode.

    backend: a backend name, any case (default None: 'torch'); an unknown one raises UnsupportedError listing
    the available ones. execution_mode: an ExecutionMode, PsyNeuLink's own ExecutionMode member, or its name as a
    string, e.g. 'LLVMRun' (default None: use `backend`); when given it wins over `backend` (see
    ExecutionMode.backend). An unknown mode, or PTXRun (no backend), raises UnsupportedError listing the modes."""
    from ..backends import get_backend

    if execution_mode is not None:
        name = str(getattr(execution_mode, "name", None) or execution_mode).split(".")[-1]
        member = ExecutionMode.__members__.get(name)
        modes = ", ".join(f"ExecutionMode.{m.name}" for m in ExecutionMode)
        if member is None:
            raise UnsupportedError(f"unknown execution_mode {execution_mode!r}; use one of {modes}")
        if member.backend is None:
            raise UnsupportedError(f"execution_mode ExecutionMode.{name} (CUDA-compiled PTX) has no mdfbridge "
                                   "backend; use ExecutionMode.PyTorch with device='cuda', or ExecutionMode.LLVMRun")
        return get_backend(member.backend).name
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
    optimizations_per_minibatch: int = 1
    # mdfbridge's own: the learning algorithm (mdfbridge.learning.algorithms: an instance or a name; None:
    # Backprop), MDF parameters to train besides the learnable ones ("node.param"), and a checkpoint file written
    # after every epoch (resume: continue from it when it exists)
    algorithm: Any = None
    learnable: Tuple[str, ...] = ()
    checkpoint: Optional[str] = None
    resume: bool = False

    def check(self) -> None:
        """Reject settings that cannot work, naming the argument (the algorithm becomes an instance)."""
        from .algorithms import get_algorithm

        self.algorithm = get_algorithm(self.algorithm)
        if isinstance(self.learnable, str):
            self.learnable = (self.learnable,)
        self.learnable = tuple(self.learnable or ())
        if not all(isinstance(n, str) for n in self.learnable):
            raise DataError(f"learnable must be parameter names ('node.param'), got {self.learnable!r}")
        if self.checkpoint is not None:
            self.checkpoint = os.fspath(self.checkpoint)
        if self.resume and self.checkpoint is None:
            raise DataError("resume needs a checkpoint file (checkpoint=PATH; CLI: --checkpoint PATH --resume)")
        if not isinstance(self.epochs, (int, np.integer)) or isinstance(self.epochs, bool):
            raise DataError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if int(self.epochs) < 1:
            raise DataError(f"epochs must be >= 1, got {self.epochs}")
        if int(self.minibatch_size) < 1:
            raise DataError(f"minibatch_size must be >= 1, got {self.minibatch_size}")
        opt = self.optimizations_per_minibatch
        if not isinstance(opt, (int, np.integer)) or isinstance(opt, bool) or opt < 1:
            raise DataError(f"optimizations_per_minibatch must be an integer >= 1, got {opt!r}")
        if opt > 1 and int(self.minibatch_size) > 1:
            raise DataError(f"optimizations_per_minibatch ({opt}) and minibatch_size ({self.minibatch_size}) cannot "
                            "both be greater than 1 (as in PsyNeuLink)")
        self.optimizer_type = get_optimizer(self.optimizer_type).name  # 'SGD', torch.optim.Adam, ... -> the record's
        self.synch_projection_matrices = str(getattr(self.synch_projection_matrices, "name",
                                                     self.synch_projection_matrices)).lower()  # pnl.LearningScale
        if self.synch_projection_matrices not in SYNCH_SCALES:
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
    """What learn() produced: final-epoch outputs (trial order), per-minibatch losses, the trained Program.

    outputs: output name -> the final epoch's outputs, (trials, ...) in trial order; losses: each minibatch's loss;
    program: the trained Program; epochs_run: epochs trained (fewer than asked after early stopping);
    stopped_early; seconds: training time; epoch_losses: each epoch's mean minibatch loss; executed_outputs: one
    dict per epoch, output name -> (trials, ...) in the order the trials were trained (shuffled with
    randomize_minibatches), each taken before its minibatch's update (empty where the backend does not keep them:
    llvm keeps only the final epoch's `outputs`)."""

    outputs: Dict[str, np.ndarray]
    losses: List[float]
    program: Program
    epochs_run: int
    stopped_early: bool = False
    seconds: float = 0.0
    epoch_losses: List[float] = field(default_factory=list)
    executed_outputs: List[Dict[str, np.ndarray]] = field(default_factory=list)


class TrainingData(NamedTuple):
    """Inputs and targets checked against a Program (what `prepare_data` returns)."""

    inputs: Dict[str, np.ndarray]  # input name -> (trials, ...)
    targets: Dict[str, np.ndarray]  # output name -> (trials, ...)
    n: int  # trials (each repeated `repeats` times in a row)
    repeats: int = 1  # optimization steps per trial (PsyNeuLink's optimizations_per_minibatch)
    # time steps of sequence data for a program stepped through time (inputs (trials, steps, ...); targets per step
    # (trials, steps, ...) or for the last step (trials, ...)); 0: none
    steps: int = 0

    def repeated(self, k: int) -> "TrainingData":
        """Every trial k times in a row (k >= 1): PsyNeuLink's optimizations_per_minibatch with minibatch_size 1,
        k forward passes and updates on each trial before the next."""
        if k == 1:
            return self
        return TrainingData({n: np.repeat(v, k, axis=0) for n, v in self.inputs.items()},
                            {n: np.repeat(v, k, axis=0) for n, v in self.targets.items()}, self.n * k, self.repeats * k,
                            self.steps)

    def epoch_orders(self, config: LearnConfig) -> Iterator[Optional[np.ndarray]]:
        """One trial order per epoch (config.epochs of them): None (trial order) unless config.randomize_minibatch,
        then `rng.permutation(trials)` from one `numpy.random.default_rng(config.seed)` (fresh each call), each
        trial's repeats kept together."""
        rng = np.random.default_rng(config.seed)
        k = self.repeats
        for _ in range(int(config.epochs)):
            if not config.randomize_minibatch:
                yield None
            else:
                order = rng.permutation(self.n // k)
                yield (order[:, None] * k + np.arange(k)).ravel() if k > 1 else order


class EarlyStopping:
    """AutodiffComposition's early stopping on the epoch loss: stop after `patience` epochs in a row that do not
    improve on the best loss by more than `min_delta` (patience None: never)."""

    def __init__(self, patience: Optional[int], min_delta: float = 0.0) -> None:
        """patience: epochs without improvement before stopping (None: never stop); min_delta: default 0."""
        self.patience, self.min_delta = patience, min_delta
        self.best, self.waited = np.inf, 0

    def should_stop(self, epoch_loss: float) -> bool:
        """Record one epoch's loss; True when training should stop now.

        epoch_loss: the epoch's loss (the mean of its minibatches' losses). It improves when below the best so
        far by more than min_delta; False always when patience is None."""
        if self.patience is None:
            return False
        if epoch_loss < self.best - self.min_delta:
            self.best, self.waited = epoch_loss, 0
            return False
        self.waited += 1
        return self.waited >= self.patience


def make_config(config: Optional[LearnConfig] = None, settings: Optional[Mapping[str, Any]] = None,
                error: type = UnsupportedError, where: str = "learn()") -> LearnConfig:
    """A LearnConfig: a starting one with setting values applied (a new one; the start itself when none are
    given).

    config: the starting settings (default None: LearnConfig(), AutodiffComposition's defaults); settings:
    LearnConfig field -> value, PsyNeuLink's spellings (randomize_minibatches, synch_projection_matrices_with_torch)
    accepted (default None: none). error: the exception class raised for an unknown setting, naming the closest
    valid one, or for two spellings of one setting that disagree (default UnsupportedError); where: the start of
    that message (default 'learn()'). Values are not checked here: LearnConfig.check does that."""
    names = [f.name for f in fields(LearnConfig)]
    spellings = names + list(SETTING_ALIASES)
    given: Dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if key not in spellings:
            close = difflib.get_close_matches(key, spellings, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise error(f"{where}: unknown setting '{key}'; {hint}settings: {', '.join(spellings)}")
        name = SETTING_ALIASES.get(key, key)
        if name in given and given[name] != value:
            raise error(f"{where}: '{key}' and another spelling of '{name}' disagree ({given[name]!r}, {value!r})")
        given[name] = value
    settings = given
    if config is None:
        return LearnConfig(**(settings or {}))
    return replace(config, **settings) if settings else config


def prepare_data(program: Program, inputs: Mapping[str, Any], targets: Mapping[str, Any],
                 over_time: bool = False) -> TrainingData:
    """Check training data against the program and align it by trial.

    inputs: input node (or port) name -> (trials, ...) arrays; inputs with a default value may be left out.
    targets: output node name -> (trials, ...) arrays ((trials, 1, ...) is accepted too; sequence programs take
    (trials, time steps, ...)). over_time: the data are sequences for a program stepped through time (default
    False): inputs (trials, time steps, ...), targets per step (trials, time steps, ...) or for the last step
    (trials, ...). Raises DataError naming the node for anything that does not fit.
    """
    x, n = _training_inputs(program, inputs, 2 if over_time else None)
    unknown = set(targets) - set(program.outputs)
    if unknown:
        raise DataError(f"targets for {sorted(unknown)}, which are not output nodes; outputs are "
                        f"{sorted(program.outputs)}")
    if not targets:
        raise DataError(f"no targets given; the output nodes are {sorted(program.outputs)}")
    sequences = (program.sequence or over_time) and bool(x)
    lead_shape = next(iter(x.values())).shape[:2] if sequences else None
    steps = int(lead_shape[1]) if over_time and lead_shape is not None and not program.sequence else 0
    return TrainingData(x, {k: _aligned_targets(program, k, v, n, lead_shape, last_step_too=steps > 0)
                            for k, v in targets.items()}, n, steps=steps)


def _training_inputs(program: Program, inputs: Mapping[str, Any], lead: Optional[int] = None) -> tuple:
    """(input name -> (trials, ...) array, trials): the reference's input rules (`lead` leading axes; default
    None: the program's), and every input without a default must have data."""
    from ..importers.reference import runner_for

    if not inputs:
        raise DataError("no inputs given")
    x, n = runner_for(program).prepare_inputs(inputs, lead=lead)
    missing_inputs = [k for k, s in program.inputs.items() if k not in inputs and s.port not in inputs
                      and s.default is None]
    if missing_inputs:
        raise DataError(f"no data for input node(s) {missing_inputs}")
    return {k: x[f"{s.node}.{s.port}"] for k, s in program.inputs.items()}, n


def _aligned_targets(program: Program, name: str, value: Any, n: int, lead_shape: Optional[tuple],
                     last_step_too: bool = False) -> np.ndarray:
    """One output's targets as a float (trials, ...) array ((trials, time steps, ...) for sequences, whose leading
    axes must be the inputs' `lead_shape`), checked for shape, trial count and finiteness; last_step_too: a
    (trials, ...) array, the targets of a sequence's last step, is taken too (default False)."""
    arr = np.asarray(value, dtype=float)
    lead = 2 if lead_shape is not None else 1
    want = tuple(program.shapes.get(program.outputs[name], ()))
    if last_step_too and arr.shape[1:] == want:
        lead = 1
    if arr.shape[lead:] != want or (lead == 2 and arr.shape[:2] != lead_shape):
        fitted = fit_unit_axes(arr, lead, want) if lead == 1 or arr.shape[:2] == lead_shape else None
        if fitted is not None:
            arr = fitted
        else:
            head = "trials, time steps" if lead == 2 else "trials"
            also = f", or (trials, {', '.join(map(str, want))}) for the last step" if last_step_too else ""
            raise DataError(f"targets for '{name}' have shape {arr.shape}; expected ({head}, "
                            f"{', '.join(map(str, want))}){also}")
    if arr.shape[0] != n:
        raise DataError(f"targets for '{name}' have {arr.shape[0]} trials, inputs have {n}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"targets for '{name}' contain NaN or infinite values")
    return arr


def train_program(program: Program, inputs: Mapping[str, Any], targets: Mapping[str, Any],
                  config: Optional[LearnConfig] = None, *, backend: str = "torch", dtype: Any = None,
                  device: Any = None, callback: Optional[Callable[[int, int, float], None]] = None,
                  on_synch: Optional[Callable[[], None]] = None) -> LearnResult:
    """Train the Program's learnable parameters in place (its parameter table holds the trained values); returns
    the LearnResult.

    program: the lowered Program to train; inputs/targets: as `prepare_data` takes them; config: the settings
    (default LearnConfig()); backend: a training backend's name ('torch', default, or 'llvm'); dtype: the torch
    backend's tensor type, 'float32' | 'float64' or a numpy/torch float dtype (default None: float64; llvm takes
    float64 only); device: the torch device (default None: CPU); callback(epoch, minibatch, loss) after each
    minibatch: the 0-based epoch, the minibatch's 0-based index over the whole run (its index in
    LearnResult.losses), its loss (float, summed over the outputs); an exception it raises stops training and
    propagates (default None); on_synch() after the trained values reach the Program (per
    config.synch_projection_matrices, and at the end; default None). A backend that does not train raises
    UnsupportedError; settings and data that do not fit raise DataError / UnsupportedError naming them.
    """
    from ..backends import get_backend, training_backend_names

    config = config or LearnConfig()
    config.check()
    chosen = get_backend(backend)
    if not chosen.trains:
        raise UnsupportedError(f"learn() runs on backend {' or '.join(map(repr, training_backend_names()))}, "
                               f"not {backend!r}")
    program.mark_learnable(config.learnable)
    rep = chosen.prepare(program, dtype=dtype, device=device)
    return rep.train(inputs, targets, config, callback=callback, on_synch=on_synch)


LEARN_ARGUMENTS_DOC = """inputs: {input node: (trials, size) array-like}, or PsyNeuLink's dict form {"inputs": {...},
    ...} whose other keys are any of the arguments below (explicit arguments win).
    targets: {output node: (trials, size)} (default None: those of the inputs dict form).
    num_trials: trials per epoch (default None: as many as the inputs have); PsyNeuLink's rule: trial i of an epoch
    uses input (and target) row i % len(inputs), so a larger number repeats the inputs cyclically, a smaller one
    uses the first num_trials.
    epochs: passes over the trials (default 1). learning_rate: default None (0.001, or the AutodiffComposition's).
    minibatch_size: trials per weight update (default None: 1, or the AutodiffComposition's).
    patience: epochs without an improvement of more than min_delta (default 0) before stopping early (default
    None: never). execution_mode: PsyNeuLink's ExecutionMode (default None: `backend`'s; PyTorch is 'torch',
    LLVMRun 'llvm'). randomize_minibatches: shuffle the trials every epoch (default False; numpy's
    default_rng(seed)). optimizations_per_minibatch: forward passes and updates on each trial before the next, as
    PsyNeuLink's (default None: 1; more than 1 needs minibatch_size 1; every step is a loss, a minibatch and a
    `results` entry, and the outputs are each trial's last step's).
    optimizer_type: 'sgd' | 'adam' | 'adamw', any case, or torch.optim.SGD / Adam / AdamW (default None: 'sgd', or the
    AutodiffComposition's). loss_spec: a Loss member, PsyNeuLink's pnl.Loss member or a name ('mse', 'MSE',
    'cross_entropy', 'crossentropy', 'l1', 'sse', 'nll', 'kl_div', 'kldiv', 'poisson_nll', 'binary_cross_entropy';
    default None: Loss.MSE). weight_decay: L2 penalty (default None: 0).
    synch_projection_matrices_with_torch: when trained values reach the weights, 'minibatch' | 'epoch' | 'run'
    (default None: 'run'). seed: the minibatch shuffle's seed (default None: fresh entropy).
    backend: 'torch' (default) or 'llvm'. dtype: the torch backend's tensor type, 'float32' | 'float64' or a
    numpy/torch float dtype (default None: float64; llvm runs float64 only). device: a torch device, 'cpu' or
    'cuda' (default None: CPU). callback: called after every minibatch's weight update, on both backends, as
    callback(epoch, minibatch, loss) with three positional arguments: the 0-based epoch (int), the 0-based
    minibatch index counted over the whole run (int; its index in the losses list) and that minibatch's loss (a
    float, summed over the output nodes, computed before its update); its return value is ignored. The weights
    it can read (a composition's matrices, the Program's parameters) are those of the last synch
    (synch_projection_matrices_with_torch): it runs before that minibatch's own synch, so with 'minibatch' they
    hold the previous minibatch's values. An exception it raises stops training and propagates (default None: no
    callback; on llvm a callback makes the native loop call back into Python each minibatch).
    randomize_minibatch: the earlier name of randomize_minibatches (default None).
    synch_projection_matrices: the earlier name of synch_projection_matrices_with_torch (default None).
    algorithm: the learning algorithm (mdfbridge.learning.algorithms), an instance such as
    TBPTT(backward_time_steps=10, optim_time_steps=10) or a name ('backprop', 'bptt', 'tbptt'; default None:
    Backprop, the behaviour described above). The time algorithms (BPTT, TBPTT) take sequences: inputs (trials,
    time steps, size), targets per step (trials, time steps, size) or for the last step (trials, size), and step
    a stateful model once per time point; they run on the torch backend.
    learnable: MDF parameters to train besides the learnable weights, as 'node.param' (e.g. a time constant
    'cell.tau'; default None: none); they are written back with the weights.
    checkpoint: a file (.npz) written after every epoch: weights, optimizer and algorithm state, losses (default
    None: none; torch backend). resume: continue from `checkpoint` when it exists, `epochs` counting the epochs
    already trained (default None: False); a checkpoint of another model or algorithm is refused.
    Other keywords are refused naming the closest valid one."""


def learn_settings(explicit: Mapping[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """The LearnConfig settings learn()'s keyword arguments give: `explicit` (argument -> value; None means "not
    given") and `extra` (other keywords, checked by make_config, which names the closest valid one)."""
    settings = {k: v for k, v in explicit.items() if v is not None and not _left_at_default(k, v)}
    return {**settings, **extra}


def _left_at_default(key: str, value: Any) -> bool:
    default = _LEARN_DEFAULTS.get(key, _LEARN_DEFAULTS)  # (a sentinel no value equals)
    return type(value) is type(default) and value == default


# learn()'s setting arguments (Composition.learn and learning.learn take the same ones)
SETTING_ARGS = ("epochs", "learning_rate", "minibatch_size", "patience", "min_delta", "randomize_minibatches",
                "optimizations_per_minibatch", "optimizer_type", "loss_spec", "weight_decay", "seed",
                "synch_projection_matrices_with_torch", "randomize_minibatch", "synch_projection_matrices", "algorithm",
                "learnable", "checkpoint", "resume")


def read_learn_call(inputs: Any, targets: Optional[Mapping[str, Any]], arguments: Mapping[str, Any],
                    other: Mapping[str, Any]) -> tuple:
    """(inputs, targets, num_trials, execution_mode, settings) of one learn() call: PsyNeuLink's dict form read
    (`split_inputs`), its settings over the keyword arguments.

    inputs, targets: as learn() got them; arguments: learn()'s keyword arguments by name (its `locals()`: the
    SETTING_ARGS, num_trials, execution_mode); other: the keywords learn() does not name (checked by make_config)."""
    inputs, targets, given = split_inputs(inputs, targets)
    num_trials = given.pop("num_trials", arguments["num_trials"])
    execution_mode = given.pop("execution_mode", arguments["execution_mode"])
    settings = {**given, **learn_settings({k: arguments[k] for k in SETTING_ARGS}, other)}
    return inputs, targets, num_trials, execution_mode, settings


def split_inputs(inputs: Any, targets: Optional[Mapping[str, Any]]) -> tuple:
    """(inputs, targets, settings) from PsyNeuLink's learn(inputs={"inputs": ..., "targets": ..., "epochs": ...})
    form (recognised by a dict under "inputs", so a node called 'inputs' keeps its data); other inputs are
    returned as given with no settings."""
    if isinstance(inputs, Mapping) and isinstance(inputs.get("inputs"), Mapping) and targets is None:
        settings = {k: v for k, v in inputs.items() if k not in ("inputs", "targets")}
        return inputs["inputs"], inputs.get("targets"), settings
    return inputs, targets, {}


def cycle_trials(data: Mapping[str, Any], num_trials: Optional[int], what: str = "inputs") -> Dict[str, Any]:
    """PsyNeuLink's num_trials: each array's rows taken as row i % len for i in range(num_trials) (repeated
    cyclically when larger, the first num_trials when smaller); None leaves the data as it is.

    data: name -> (trials, ...) array-like; num_trials: an int >= 1, or None; what: the data's kind in error
    messages (default 'inputs'). A bad num_trials or a 0-d / empty array raises DataError."""
    if num_trials is None:
        return dict(data)
    if isinstance(num_trials, bool) or not isinstance(num_trials, (int, np.integer)) or int(num_trials) < 1:
        raise DataError(f"num_trials must be an integer >= 1 (or None), got {num_trials!r}")
    out: Dict[str, Any] = {}
    for k, v in data.items():
        arr = np.asarray(v)
        if arr.ndim == 0 or len(arr) == 0:
            raise DataError(f"{what} for {k!r}: num_trials needs a (trials, ...) array, got shape {arr.shape}")
        out[k] = arr[np.arange(int(num_trials)) % len(arr)]
    return out


def learn(model: Any, inputs: Mapping[str, Any], targets: Optional[Mapping[str, Any]] = None, *,
          num_trials: Optional[int] = None, epochs: Optional[int] = 1, learning_rate: Optional[float] = None,
          minibatch_size: Optional[int] = None, patience: Optional[int] = None, min_delta: Optional[float] = 0,
          execution_mode: Any = None, randomize_minibatches: Optional[bool] = False,
          optimizations_per_minibatch: Optional[int] = None, optimizer_type: Any = None, loss_spec: Any = None,
          weight_decay: Optional[float] = None, synch_projection_matrices_with_torch: Any = None,
          seed: Optional[int] = None, backend: Optional[str] = None, dtype: Any = None, device: Any = None,
          callback: Optional[Callable[[int, int, float], None]] = None, randomize_minibatch: Optional[bool] = None,
          synch_projection_matrices: Any = None, algorithm: Any = None, learnable: Optional[Sequence[str]] = None,
          checkpoint: Optional[Union[str, "os.PathLike[str]"]] = None, resume: Optional[bool] = None,
          **other: Any) -> LearnResult:
    """Train a loaded MDF model (path, dict, modeci-mdf Model or Program) with PsyNeuLink's learn() arguments;
    returns a LearnResult. Write the trained weights back with `write_back(source, result.program, out)`.

    model: an MDF file path, document dict, modeci-mdf Model or Program (trained in place). The data are keyed by
    the Program's input and output names.
    """
    from ..lowering import lower

    inputs, targets, num_trials, execution_mode, settings = read_learn_call(inputs, targets, locals(), other)
    config = make_config(None, settings)
    config.check()  # (before lowering: `learnable` as names; train_program's check finds it checked)
    if isinstance(model, Program):
        program = model
    elif isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from ..api import load_program

        program = load_program(model, learnable=config.learnable)
    else:
        program = lower(model, learnable=config.learnable)
    x = cycle_trials(inputs or {}, num_trials)
    t = cycle_trials(targets or {}, num_trials, "targets")
    return train_program(program, x, t, config, backend=backend_name(backend, execution_mode),
                         dtype=dtype, device=device, callback=callback)


learn.__doc__ = (learn.__doc__ or "") + "\n    " + LEARN_ARGUMENTS_DOC + "\n"

# learn()'s explicit defaults that are LearnConfig's too: an argument left there is "not given" (so the dict form
# or an earlier spelling may set it)
_LEARN_DEFAULTS = {"epochs": 1, "min_delta": 0, "randomize_minibatches": False}


# the algorithm registry, loaded here so that any algorithm's module may be imported first
from . import algorithms  # noqa: E402,F401
