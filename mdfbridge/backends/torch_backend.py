"""Backend 'torch': the Program's torch module (importers/torch_module.py ProgramModule); runs and trains."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

import numpy as np

from ..program import Program
from .protocol import Backend, BackendRep, Callback, OnSynch, input_arrays

if TYPE_CHECKING:  # pragma: no cover
    from ..learning import LearnConfig, LearnResult, TrainingData


class TorchRep(BackendRep):
    """A Program with its torch module (built on first use from the Program's parameter values)."""

    def __init__(self, backend: Backend, program: Program, dtype: Any = None, device: Any = None) -> None:
        """backend: the torch backend; program: the Program it computes; dtype: the module's torch dtype (default
        None: float64); device: its torch device (default None: CPU)."""
        super().__init__(backend, program)
        self.dtype, self.device = dtype, device
        self._module: Any = None

    def new_module(self) -> Any:
        """A fresh ProgramModule of the Program's current parameter values (it becomes `module`)."""
        import torch

        from ..importers.torch_module import ProgramModule

        self._module = ProgramModule(self.program, dtype=self.dtype or torch.float64, device=self.device)
        return self._module

    @property
    def module(self) -> Any:
        """The ProgramModule runs use: the last one trained, else one built on first use."""
        return self._module if self._module is not None else self.new_module()

    def run(self, inputs: Mapping[str, Any], steps: int = 1, dt: float = 1.0, *,
            record: bool = False) -> Dict[str, np.ndarray]:
        """Outputs (output name -> (trials, ...) numpy array): one forward pass of the module without gradients
        (as BackendRep.run).

        inputs: input node or port name -> (trials, ...) array-like (inputs with a default value may be left out);
        steps: time steps (default 1); dt: the time step (default 1.0); record: must stay False (the default):
        this backend records no trajectories (True raises UnsupportedError naming the backends that do)."""
        import torch

        self._refuse_record(record)
        x_np = input_arrays(self.program, inputs)
        module = self.module
        device = self.device
        x = {k: torch.as_tensor(v, dtype=module.dtype, device=device) for k, v in x_np.items()}
        with torch.no_grad():
            out = module(x, steps=steps, dt=dt)
        return {k: v.detach().cpu().numpy() for k, v in out.items()}

    def run_sequence(self, inputs: Mapping[str, Any], dt: float = 1.0) -> Dict[str, np.ndarray]:
        """Inputs (trials, time, ...) stepped through time, one time point per step with state carried (the numpy
        reference's `run_program(..., sequence=True)` for step-level programs); outputs (trials, time, ...).

        inputs: input name -> (trials, time, ...) array-like (every input the same number of time points); dt: the
        time step (default 1.0). A Program whose ops run whole sequences (`program.sequence`) runs once, as
        `run`."""
        import torch

        if self.program.sequence:
            return self.run(inputs, dt=dt)
        module, device = self.module, self.device
        seq = {k: torch.as_tensor(np.asarray(v, dtype=float), dtype=module.dtype, device=device)
               for k, v in inputs.items()}
        steps = next(iter(seq.values())).shape[1] if seq else 1
        first = input_arrays(self.program, {k: v[:, 0].cpu().numpy() for k, v in seq.items()})
        x = {k: torch.as_tensor(v, dtype=module.dtype, device=device) for k, v in first.items()}
        traj: Dict[str, Any] = {}
        with torch.no_grad():
            module(x, steps=steps, dt=dt, per_step=seq, trajectory=traj)
        return {k: torch.stack(v, dim=1).detach().cpu().numpy() for k, v in traj.items()}

    def _train(self, data: "TrainingData", config: "LearnConfig", callback: Callback,
               on_synch: OnSynch) -> "LearnResult":
        """A fresh module from the Program's current values, trained by TorchTrainer (it then serves `run`)."""
        from .torch_trainer import TorchTrainer

        return TorchTrainer(self.new_module(), data, config, callback=callback, on_synch=on_synch).train()


class TorchBackend(Backend):
    """PyTorch: runs any Program the torch module supports (GRU blocks, state) and trains it with autograd."""

    name = "torch"
    summary = "the Program's torch module"
    trains = True
    checkpoints = True
    runs_hooks = True

    def prepare(self, program: Program, dtype: Any = None, device: Optional[Any] = None  # type: ignore[override]
                ) -> TorchRep:
        """program: the Program to run or train; dtype: torch dtype of parameters and data, or its name (default
        None: float64); device: torch device (default None: CPU). The module is built on the first run or train."""
        from ..dtypes import torch_dtype

        return TorchRep(self, program, dtype=torch_dtype(dtype, where="torch backend dtype"), device=device)
