"""Trained weights -> the same MDF document, at the places they were read from; torch state_dict files."""
from __future__ import annotations

import copy
import io
import logging
import warnings
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..document import atomic_write_bytes, load_document_dict, save_document
from ..errors import DataError, SchemaError
from ..program import Program

log = logging.getLogger(__name__)


def _container(model: Dict[str, Any], location: tuple) -> Dict[str, Any]:
    node: Any = model
    for key in location[:-1]:
        if not isinstance(node, dict) or key not in node:
            raise SchemaError(f"the document has no {'.'.join(location)} to write the trained value to",
                              json_path="$." + ".".join(location))
        node = node[key]
    return node


def write_weights(doc: Mapping[str, Any], program: Program, *, learnable_only: bool = True) -> Dict[str, Any]:
    """A copy of the MDF dict with the program's (learnable) parameter values written at their locations.

    doc: the serialised document the Program was lowered from ({model id: {...}}, left unchanged); program: the
    Program whose parameters carry their document locations (`Param.location`); learnable_only: write only the
    parameters training changes, the learnable ones and running statistics (`Param.running`; default True; False
    writes every parameter that has a location). NaN/infinite values
    and shapes other than the document's raise DataError; a location the document lacks raises SchemaError."""
    out = copy.deepcopy(dict(doc))
    model = next(iter(out.values()))
    for name, p in program.params.items():
        if p.location is None or (learnable_only and not (p.learnable or p.running)):
            continue
        value = np.asarray(p.value, dtype=float)
        if not np.all(np.isfinite(value)):
            raise DataError(f"refusing to write NaN/infinite weights of '{name}' into the document")
        location = p.location
        if location[-1] == "value" and not isinstance(_container(model, location[:-1]).get(location[-2]), dict):
            location = location[:-1]  # a parameter written as its bare value (MDF v0.1)
        box = _container(model, location)
        old = box[location[-1]]
        if np.shape(old) != value.shape:
            raise DataError(f"'{name}' has shape {value.shape} but the document holds shape {np.shape(old)}")
        box[location[-1]] = value.tolist() if value.ndim else float(value)
    return out


def write_back(source: Any, program: Any, out: Optional[Any] = None, *, force: bool = False) -> Dict[str, Any]:
    """Write trained weights into the MDF file `source` (saved to `out`, or in place when out is None).

    source: the MDF file the Program was lowered from (str or path-like); program: the trained `Program`, or
    anything holding one as `.program` (a `learn()` result, or the module `mdfbridge.to_torch` returns: its current
    weights are copied into its Program first); out: the file to write (default None: `source` itself; a symlink
    is written through); force: replace a read-only file too (default False: DocumentError '<file>: is read-only').

    Only the arrays of learnable parameters (and running statistics) change: the rest of the document stays as its
    writer wrote it (ids, nesting, notes, older forms); the save is atomic, so a failure leaves files untouched.
    Returns the written document (a dict).
    """
    if not isinstance(program, Program):
        program = getattr(program, "program", program)
    if not isinstance(program, Program):
        raise TypeError(f"write_back needs a Program, a learn() result or a to_torch module; got "
                        f"{type(program).__name__}")
    doc = load_document_dict(source, as_written=True)
    new = write_weights(doc, program)
    save_document(new, out if out is not None else source, liberal=True, force=force)
    return new


def state_dict_of(program: Program) -> Dict[str, Any]:
    """The program's parameters as a torch state_dict (keys named after projections; tensors copied).

    program: the Program whose current parameter values are read."""
    from ..importers.torch_module import ProgramModule

    return {k: v.detach().clone() for k, v in ProgramModule(program).state_dict().items()}


def save_weights(program: Program, path: Any, *, force: bool = False) -> None:
    """Save the program's parameters in torch state_dict format (atomically; see `state_dict_of`).

    program: the Program whose parameters are saved; path: the file to write (str or path-like, e.g. `w.pt`);
    force: replace a read-only file too (default False)."""
    import torch

    buf = io.BytesIO()
    torch.save(state_dict_of(program), buf)
    atomic_write_bytes(path, buf.getvalue(), force=force)


def load_weights(program: Program, path: Any) -> None:
    """Load a state_dict file (weights_only=True) into the program's parameters, checking names and shapes.

    program: the Program whose parameter values are set; path: a file `save_weights` (or torch.save of a matching
    state_dict) wrote (str or path-like). Unreadable files, unknown or missing keys, other shapes and
    NaN/infinite values raise DataError, and the program keeps its values."""
    import torch

    from ..importers.torch_module import ProgramModule
    from ..parse_limits import read_file_bytes

    where = str(path)
    raw = read_file_bytes(where, error=lambda message: DataError(message, where=where))  # a regular file, bounded
    try:
        with warnings.catch_warnings():  # (torch warns about the pickle protocol of a file it then refuses)
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "weights only load failed" in first.lower() or "pickle" in first.lower():
            first = "it holds pickled Python objects, which are never loaded (weights_only)"
        raise DataError(f"cannot read weights: {first}; expected a state_dict (names -> tensors) as "
                        "Composition.save writes it", where=where) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        got = type(state).__name__ if not isinstance(state, dict) else "a dict that is not names -> tensors"
        raise DataError(f"holds {got}, not a state_dict (names -> tensors) as Composition.save writes it",
                        where=where)
    module = ProgramModule(program)
    own = module.state_dict()
    unknown, missing = set(state) - set(own), set(own) - set(state)
    if unknown or missing:
        raise DataError(f"{path}: weights do not match the model (unknown: {sorted(unknown)}, "
                        f"missing: {sorted(missing)})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise DataError(f"{path}: '{k}' has shape {tuple(v.shape)}, the model needs {tuple(own[k].shape)}")
        if not torch.all(torch.isfinite(v)):
            raise DataError(f"{path}: '{k}' contains NaN or infinite values")
    module.load_state_dict(state)
    module.write_to_program()
