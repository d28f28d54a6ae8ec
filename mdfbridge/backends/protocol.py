"""The backend protocol, after onnx's `Backend.prepare(model) -> BackendRep.run(inputs)`.

A `Backend` prepares a Program once (`prepare(program, **options)`: compiling, building a module, exporting);
the `BackendRep` it returns runs batches of inputs (`run`: outputs as numpy arrays) and, on backends that train
(`Backend.trains`), trains the Program's learnable parameters (`train`: data checked here, then the backend's
trainer). Asking a backend for what it does not do raises UnsupportedError naming the backends that do.
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

import numpy as np

from ..errors import DataError, UnsupportedError
from ..program import Program
from .registry import BACKENDS, training_backend_names

if TYPE_CHECKING:  # pragma: no cover
    from ..learning import LearnConfig, LearnResult, TrainingData

Callback = Optional[Callable[[int, int, float], None]]  # (epoch, minibatch index, loss) after each minibatch
OnSynch = Optional[Callable[[], None]]  # after the trained values reach the Program


class Backend(abc.ABC):
    """A way to compute Programs; registered by `name` in mdfbridge.backends.BACKENDS."""

    name: str = ""
    summary: str = ""  # a few words for help texts
    trains: bool = False  # BackendRep.train works
    records_trajectory: bool = False  # BackendRep.run(record=True) works
    checkpoints: bool = False  # BackendRep.train writes and resumes checkpoints (LearnConfig.checkpoint)
    runs_hooks: bool = False  # its trainer calls a learning algorithm's hooks (else it runs plain Backprop only)

    @abc.abstractmethod
    def prepare(self, program: Program, **options: Any) -> "BackendRep":
        """Make `program` ready to run on this backend (options: the backend's own, each documented there)."""

    def __repr__(self) -> str:
        return f"<backend {self.name!r}>"


class BackendRep(abc.ABC):
    """A Program prepared by one backend."""

    def __init__(self, backend: Backend, program: Program) -> None:
        """backend: the Backend that prepared it; program: the Program it computes."""
        self.backend, self.program = backend, program

    @abc.abstractmethod
    def run(self, inputs: Mapping[str, Any], steps: int = 1, dt: float = 1.0, *,
            record: bool = False) -> Dict[str, np.ndarray]:
        """Outputs (output name -> (trials, ...) array) for a batch of inputs (input node or port name -> (trials,
        ...); inputs with a default value may be left out) after `steps` time steps (default 1) of `dt` (default 1).
        record: also return `"__trajectory__"` (output name -> (steps, trials, ...)) where the backend
        records_trajectory (default False)."""

    def train(self, inputs: Mapping[str, Any], targets: Mapping[str, Any], config: Optional["LearnConfig"] = None,
              *, callback: Callback = None, on_synch: OnSynch = None, **settings: Any) -> "LearnResult":
        """Train the Program's learnable parameters in place (AutodiffComposition semantics, see mdfbridge/learning).

        inputs: input name -> (trials, ...); targets: output name -> (trials, ...); config: a LearnConfig (default
        None: LearnConfig()) and/or `settings` (its fields: epochs, learning_rate, ...) overriding it; callback:
        callback(epoch, minibatch index, loss) after each minibatch (default None: none); on_synch: on_synch()
        whenever the trained values reach the Program (default None: none). Backends that do not train raise
        UnsupportedError.
        """
        if not self.backend.trains:
            raise UnsupportedError(f"backend {self.backend.name!r} does not train; train on "
                                   f"{' or '.join(map(repr, training_backend_names()))}")
        from ..learning import make_config, prepare_data
        from ..learning.algorithms import BPTT, Backprop, PredictiveCoding
        from ..losses import check_targets, get_loss

        config = make_config(config, settings)
        config.check()
        algorithm = config.algorithm
        if self.backend.name not in algorithm.backends:
            raise UnsupportedError(f"learning algorithm '{algorithm.name}' trains on backend "
                                   f"{' or '.join(map(repr, algorithm.backends))}, not {self.backend.name!r}")
        if not self.backend.runs_hooks and type(algorithm) not in (Backprop, BPTT, PredictiveCoding):
            # (native code runs these algorithms itself: a subclass's hooks would not run)
            keeps = [name for name, b in BACKENDS.items() if b.runs_hooks]
            raise UnsupportedError(f"backend {self.backend.name!r} runs learn()'s own Backprop, BPTT and "
                                   f"PredictiveCoding only, not {type(algorithm).__name__}'s hooks; train on "
                                   f"{' or '.join(map(repr, keeps))}")
        if config.checkpoint is not None and not self.backend.checkpoints:
            keeps = [name for name, b in BACKENDS.items() if b.checkpoints]
            raise UnsupportedError(f"backend {self.backend.name!r} keeps no checkpoints; train on "
                                   f"{' or '.join(map(repr, keeps))} to write or resume one")
        data = prepare_data(self.program, inputs, targets, over_time=algorithm.over_time)
        loss = get_loss(config.loss_spec)
        for name in data.targets:
            per_trial = tuple(self.program.shapes.get(self.program.outputs[name], ()))
            units = int(np.prod(per_trial))
            if units < loss.min_units:
                raise DataError(f"loss_spec '{loss.name}' needs outputs of at least {loss.min_units} units, and "
                                f"output '{name}' has {units}: it would train nothing (use 'mse', or "
                                f"{loss.min_units} output units)")
        check_targets(loss.name, data.targets)
        k = int(config.optimizations_per_minibatch)
        result = self._train(data.repeated(k), config, callback, on_synch)
        if k > 1:  # the outputs of each trial's last optimization step
            result.outputs = {name: v[k - 1::k] for name, v in result.outputs.items()}
        return result

    def _train(self, data: "TrainingData", config: "LearnConfig", callback: Callback,
               on_synch: OnSynch) -> "LearnResult":
        """The backend's trainer, on checked data and settings (backends with `trains` override it)."""
        raise UnsupportedError(f"backend {self.backend.name!r} has no trainer")

    def _refuse_record(self, record: bool) -> None:
        """UnsupportedError when a trajectory is asked of a backend that does not record one."""
        if record:
            keeps = [name for name, b in BACKENDS.items() if b.records_trajectory]
            raise UnsupportedError(f"backend {self.backend.name!r} does not record trajectories; use "
                                   f"{' or '.join(map(repr, keeps))}")

    def __repr__(self) -> str:
        return f"<{self.backend.name} rep of program {self.program.name!r}>"


def input_arrays(program: Program, inputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """Inputs checked against the Program (the reference's rules: node or port names, defaults filled in, shapes,
    NaN), as input name -> (trials, ...) float arrays.

    program: the Program the inputs are for; inputs: input node or port name -> (trials, ...) array-like. Bad
    inputs raise DataError naming the input."""
    from ..importers.reference import runner_for

    env, _ = runner_for(program).prepare_inputs(inputs)
    return {name: env[f"{spec.node}.{spec.port}"] for name, spec in program.inputs.items()}
