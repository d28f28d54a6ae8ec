"""Backend 'numpy': the reference interpreter (importers/reference.py), batched over trials, multi-step, float64."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np

from ..program import Program
from .protocol import Backend, BackendRep


class NumpyRep(BackendRep):
    """A Program compiled to the reference interpreter's numpy closures (kept on the Program)."""

    def __init__(self, backend: Backend, program: Program) -> None:
        """backend: the numpy backend; program: the Program (compiled here, once per Program)."""
        from ..importers.reference import runner_for

        super().__init__(backend, program)
        self.runner = runner_for(program)

    def run(self, inputs: Mapping[str, Any], steps: int = 1, dt: float = 1.0, *,
            record: bool = False) -> Dict[str, np.ndarray]:
        """Outputs (output name -> (trials, ...) array) of the reference interpreter, reading the Program's current
        parameter values (as BackendRep.run).

        inputs: input node or port name -> (trials, ...) array-like (inputs with a default value may be left out);
        steps: time steps (default 1); dt: the time step (default 1.0); record: also return `"__trajectory__"`
        (output name -> (steps, trials, ...); default False)."""
        return self.runner.run(inputs, steps=steps, dt=dt, record=record)


class NumpyBackend(Backend):
    """The numpy reference interpreter: runs every Program (stateful ones too); does not train."""

    name = "numpy"
    summary = "the reference interpreter"
    records_trajectory = True

    def prepare(self, program: Program) -> NumpyRep:  # type: ignore[override]  # takes no options
        """The Program compiled for the reference interpreter (no options).

        program: the Program to run (its compiled closures are kept on it, once per Program)."""
        return NumpyRep(self, program)
