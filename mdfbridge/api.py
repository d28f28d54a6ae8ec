"""File-level entry points: load an MDF file to a Model or Program, run it, save it."""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from .document import load_document_dict, model_from_dict, save_document
from .dtypes import torch_dtype  # noqa: F401 - also importable from here (to_torch uses it)
from .lowering import lower
from .program import Program

PathLike = Union[str, "os.PathLike[str]"]


def load_mdf(path: PathLike) -> Any:
    """Read, validate and convert an MDF JSON/YAML file to a `modeci_mdf.mdf.Model`.

    path: the file (str or path-like; `.json`, `.yaml` or `.yml`). Raises DocumentError (unreadable, not JSON/YAML)
    or SchemaError (not valid MDF), naming the file and the place."""
    return model_from_dict(load_document_dict(path), path=str(path))


def load_program(path: PathLike, graph: Optional[str] = None, *, learnable: Sequence[str] = ()) -> Program:
    """Read and validate an MDF file and lower it to a Program (its `metadata["source"]` is `path`).

    path: the MDF file (str or path-like; `.json`, `.yaml` or `.yml`); graph: the id of the graph to lower (default
    None: the first graph, with a logged warning when the document has several); learnable: MDF parameters
    ('node.param') to make learnable besides those the document marks (default none; see `lower`)."""
    from .lowering import gc_paused

    with gc_paused():  # a large document: millions of live objects the collector would walk again and again
        doc = load_document_dict(path)
        prog = lower(doc, graph, source=str(path), learnable=learnable)
    prog.metadata["source"] = str(path)
    return prog


def run_mdf(path: PathLike, inputs: Mapping[str, Any], *, steps: int = 1, dt: float = 1.0) -> Dict[str, Any]:
    """Run an MDF file with the numpy reference on a batch of inputs; outputs (output name -> (trials, ...)
    array).

    path: the MDF file (str or path-like); inputs: input node or port name -> (trials, ...) array-like (inputs
    with a default value may be left out); steps: time steps to run (default 1); dt: the time step (default 1.0)."""
    from .importers.reference import run_program

    return run_program(load_program(path), inputs, steps=steps, dt=dt)


def save_mdf(model: Any, path: PathLike, *, force: bool = False, plain: bool = False) -> None:
    """Write a Model (or serialised dict) as MDF JSON/YAML, atomically, marked as written by mdfbridge.

    model: a `modeci_mdf.mdf.Model` or its serialised dict ({model id: {...}}); path: the file to write (str or
    path-like); its extension (`.json`, `.yaml`, `.yml`) picks the format; force: replace a read-only file too
    (default False: DocumentError '<path>: is read-only'); plain: `model` is a dict built from plain JSON types and
    numeric numpy arrays only, as `onnx_to_mdf` returns it (default False; see `document.save_document`)."""
    from . import __version__

    save_document(model, path, generating_application=f"mdfbridge {__version__}", force=force, plain=plain)


def run_with_backend(program: Program, inputs: Mapping[str, Any], backend: str = "numpy", *, steps: int = 1,
                     dt: float = 1.0) -> Dict[str, Any]:
    """Run a Program on a registered backend with its default options; outputs (output name -> (trials, ...))
    as numpy arrays.

    program: the Program (`load_program`, `lower`); inputs: input node or port name -> (trials, ...) array-like;
    backend: a name in mdfbridge.backends.BACKENDS (default 'numpy', the reference; 'torch', no gradients;
    'llvm', compiled; 'onnxruntime', the float32 ONNX export); steps: time steps (default 1); dt: the time step
    (default 1.0). An unknown backend raises UnsupportedError listing the available ones."""
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
