"""Backend 'onnxruntime': the Program exported to ONNX (exporters/onnx.py program_to_onnx) and run by an
onnxruntime session (mdfbridge/deploy.py DeploymentSession); does not train."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np

from ..errors import UnsupportedError
from ..program import Program
from .protocol import Backend, BackendRep, input_arrays


class OnnxRuntimeRep(BackendRep):
    """A Program exported to ONNX with its inference session (created once, at prepare)."""

    def __init__(self, backend: Backend, program: Program, provider: str = "auto", dtype: str = "float32") -> None:
        """backend: the onnxruntime backend; program: the Program, exported here; provider: 'auto' (default: CUDA
        when available, then CPU), 'cpu' or 'cuda'; dtype: the ONNX tensor type, 'float32' (default) or
        'float64'."""
        from ..deploy import DeploymentSession

        super().__init__(backend, program)
        self.session = DeploymentSession(program, provider, dtype=dtype)
        if len(self.session.output_names) != len(program.outputs):
            raise UnsupportedError(f"the ONNX export of '{program.name}' has outputs {self.session.output_names}, "
                                   f"the program {list(program.outputs)}")

    def run(self, inputs: Mapping[str, Any], steps: int = 1, dt: float = 1.0, *,
            record: bool = False) -> Dict[str, np.ndarray]:
        """Outputs (output name -> (trials, ...) array, in the model's type: float32 by default): one session run
        (as BackendRep.run).

        inputs: input node or port name -> (trials, ...) array-like (inputs with a default value may be left out);
        steps, dt: accepted for the protocol (defaults 1 and 1.0); an exported Program is stateless, so they
        change nothing; record: must stay False (the default): this backend records no trajectories."""
        self._refuse_record(record)
        out = self.session.run(input_arrays(self.program, inputs))
        # program_to_onnx writes the graph outputs in the Program's output order (renaming clashes)
        return dict(zip(self.program.outputs, out.values()))


class OnnxRuntimeBackend(Backend):
    """onnxruntime on the Program's ONNX export (float32 by default); stateless Programs; does not train."""

    name = "onnxruntime"
    summary = "ONNX export on onnxruntime, float32; stateless models"

    def prepare(self, program: Program, provider: str = "auto",  # type: ignore[override]
                dtype: Any = "float32") -> OnnxRuntimeRep:
        """program: the Program to export (stateless, with a static schedule); provider: onnxruntime execution
        provider, 'auto' (default), 'cpu' or 'cuda'; dtype: 'float32' (default) or 'float64', any spelling
        `mdfbridge.dtypes` reads. Exports the Program and creates the session."""
        from ..dtypes import dtype_name

        return OnnxRuntimeRep(self, program, provider,
                              dtype_name(dtype, ("float32", "float64"), "onnxruntime dtype", default="float32"))
