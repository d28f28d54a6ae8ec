"""File-level entry points: load an MDF file to a Model or Program, run it, save it."""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Union

from .document import load_document_dict, model_from_dict, save_document
from .lowering import lower
from .program import Program

PathLike = Union[str, "os.PathLike[str]"]


def load_mdf(path: PathLike) -> Any:
    """Read, validate and convert an MDF JSON/YAML file to a `modeci_mdf.mdf.Model`."""
    return model_from_dict(load_document_dict(path), path=str(path))


def load_program(path: PathLike, graph: Optional[str] = None) -> Program:
    """Read and validate an MDF file and lower it to a Program."""
    doc = load_document_dict(path)
    prog = lower(doc, graph, source=str(path))
    prog.metadata["source"] = str(path)
    return prog


def run_mdf(path: PathLike, inputs: Mapping[str, Any], *, steps: int = 1, dt: float = 1.0) -> Dict[str, Any]:
    """Run an MDF file with the numpy reference on a batch of inputs (name -> (trials, ...))."""
    from .importers.reference import run_program

    return run_program(load_program(path), inputs, steps=steps, dt=dt)


def save_mdf(model: Any, path: PathLike) -> None:
    """Write a Model (or serialised dict) as MDF JSON/YAML, atomically, marked as written by mdfbridge."""
    from . import __version__

    save_document(model, path, generating_application=f"mdfbridge {__version__}")


def run_with_backend(program: Program, inputs: Mapping[str, Any], backend: str = "numpy", *, steps: int = 1,
                     dt: float = 1.0) -> Dict[str, Any]:
    """Run a Program on 'numpy' (the reference), 'torch' (no gradients) or 'llvm' (compiled); outputs as numpy arrays."""
    from .importers.reference import run_program, runner_for

    if backend == "numpy":
        return run_program(program, inputs, steps=steps, dt=dt)
    if backend == "torch":
        import torch

        from .importers.torch_module import ProgramModule

        env, _ = runner_for(program).prepare_inputs(inputs)
        x = {k: torch.as_tensor(env[f"{s.node}.{s.port}"]) for k, s in program.inputs.items()}
        with torch.no_grad():
            out = ProgramModule(program)(x, steps=steps, dt=dt)
        return {k: v.numpy() for k, v in out.items()}
    if backend == "llvm":
        from .importers.llvm import run_llvm

        return run_llvm(program, inputs, steps=steps, dt=dt)
    from .errors import UnsupportedError

    raise UnsupportedError(f"backend {backend!r} cannot run programs in this build; use 'numpy', 'torch' or 'llvm'")
