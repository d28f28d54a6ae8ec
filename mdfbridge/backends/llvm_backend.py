"""Backend 'llvm': the Program compiled with llvmlite (importers/llvm.py); forward runs and whole training runs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping

import numpy as np

from ..errors import UnsupportedError
from ..program import Program
from .protocol import Backend, BackendRep, Callback, OnSynch

if TYPE_CHECKING:  # pragma: no cover
    from ..learning import LearnConfig, LearnResult, TrainingData


class LLVMRep(BackendRep):
    """A Program for the LLVM backend (native code is compiled on first use and cached per Program content)."""

    def __init__(self, backend: Backend, program: Program, compiler: Any) -> None:
        """backend: the llvm backend; program: the Program it computes; compiler: the module
        mdfbridge.importers.llvm."""
        super().__init__(backend, program)
        self.compiler = compiler

    def run(self, inputs: Mapping[str, Any], steps: int = 1, dt: float = 1.0, *,
            record: bool = False) -> Dict[str, np.ndarray]:
        """Outputs (output name -> (trials, ...) array) of the compiled forward pass (as BackendRep.run).

        inputs: input node or port name -> (trials, ...) array-like (inputs with a default value may be left out);
        steps, dt: accepted for the protocol (defaults 1 and 1.0); the Programs this backend compiles are
        stateless, so they change nothing; record: must stay False (the default): this backend records no
        trajectories (True raises UnsupportedError naming the backends that do)."""
        self._refuse_record(record)
        return self.compiler.run_llvm(self.program, inputs, steps=steps, dt=dt)

    def _train(self, data: "TrainingData", config: "LearnConfig", callback: Callback,
               on_synch: OnSynch) -> "LearnResult":
        """The whole run in one native call (importers/llvm.py train_llvm)."""
        return self.compiler.train_llvm(self.program, data, config, callback=callback, on_synch=on_synch)


class LLVMBackend(Backend):
    """Compiled native code (float64, CPU): Programs of the kernels importers/llvm_plan.py supports, stateless ones
    (stateful ones trained by BPTT, importers/llvm_bptt.py)."""

    name = "llvm"
    summary = "compiled with llvmlite; stateless models (stateful ones: BPTT training)"
    trains = True

    def prepare(self, program: Program, dtype: Any = None, device: Any = None  # type: ignore[override]
                ) -> LLVMRep:
        """program: the Program to compile (native code is compiled on first use); dtype: None or float64 in any
        spelling (others are refused); device: accepted so learn()'s settings pass through (default None each), and
        ignored (native code is float64 on this CPU). Raises UnsupportedError when llvmlite is not available."""
        from ..dtypes import dtype_name

        dtype_name(dtype, ("float64",), "llvm backend dtype")  # native code is float64: refuse others, one line
        try:
            from ..importers import llvm
        except ImportError:
            raise UnsupportedError("backend 'llvm' (ExecutionMode.LLVMRun) is not available in this build; "
                                   "use backend='torch' (ExecutionMode.PyTorch)") from None
        return LLVMRep(self, program, llvm)
