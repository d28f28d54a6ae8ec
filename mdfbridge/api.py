"""File-level entry points: load an MDF file to a Model or Program, run it, save it."""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Union

from .document import load_document_dict, model_from_dict, save_document
from .dtypes import torch_dtype  # noqa: F401 - also importable from here (to_torch uses it)
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
    """Run a Program on a registered backend (mdfbridge.backends.BACKENDS: 'numpy', the reference and default;
    'torch', no gradients; 'llvm', compiled; 'onnxruntime', the float32 ONNX export) with its default options,
    `steps` time steps (default 1) of `dt` (default 1); outputs as numpy arrays. An unknown backend raises
    UnsupportedError listing the available ones."""
    from .backends import get_backend

    return get_backend(backend).prepare(program).run(inputs, steps=steps, dt=dt)


def to_torch(model: Any, *, dtype: Any = None, device: Any = None, steps: int = 1, dt: float = 1.0) -> Any:
    """An ordinary `torch.nn.Module` computing `model`, with `forward(*tensors)` (mdfbridge.importers.torch_module
    TorchModel).

    model: an MDF file path, an MDF document (dict or modeci-mdf Model), a Program, or a Composition. dtype:
    'float32'/'float64' or a numpy/torch float dtype (default None: float64); device: a torch device (default None:
    CPU); steps, dt: time steps per call and their size (default 1 and 1.0, for stateful models)."""
    from .importers.torch_module import TorchModel

    if isinstance(model, Program):
        program = model
    elif isinstance(model, (str, os.PathLike)):
        program = load_program(model)
    elif hasattr(model, "program") and callable(model.program):  # a Composition
        program = model.program()
    else:
        program = lower(model)
    return TorchModel(program, dtype=torch_dtype(dtype), device=device, steps=steps, dt=dt)
