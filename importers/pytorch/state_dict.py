"""The way back from MDF to torch: the program's (trained) weights as the original module's `state_dict`, read
from the torch keys the importer recorded on each projection and GRU block, and written as a torch weights file."""
from __future__ import annotations

import io
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np
import torch

from ...errors import DataError, UnsupportedError
from ...program import Program
from .builder import SOURCE


def _torch_meta(program: Program) -> Dict[str, Any]:
    """The graph's metadata.mdfbridge.torch, or an error when the model was not imported from torch."""
    gmeta = program.metadata.get("graph_metadata") or {}
    if gmeta.get("source") != SOURCE or "torch" not in gmeta:
        raise UnsupportedError("this model was not imported from a torch module (no metadata.mdfbridge.source = "
                               "'torch' on its graph); save its weights with mdfbridge.exporters.weights."
                               "save_weights instead", where=f"model '{program.name}'")
    return gmeta["torch"]


def program_state_dict(program: Union[Program, Mapping[str, Any]], dtype: Optional[torch.dtype] = None
                       ) -> "OrderedDict[str, torch.Tensor]":
    """The program's (current, e.g. trained) weights under the original module's state_dict keys.

    The original module loads it with `load_state_dict(..., strict=True)`. `dtype` defaults to the module's.
    """
    from ...gru import gates_to_torch, onnx_to_gates

    if not isinstance(program, Program):
        from ...lowering import lower

        program = lower(program)
    tmeta = _torch_meta(program)
    dtype = dtype or getattr(torch, str(tmeta.get("dtype", "float64")), torch.float64)
    nodes = program.metadata.get("nodes") or {}
    state: Dict[str, np.ndarray] = {}
    grus: Dict[str, Dict[str, np.ndarray]] = {}
    for p in program.params.values():
        loc = p.location or ()
        if len(loc) < 6 or loc[2] != "nodes" or loc[4] != "parameters":
            continue
        nid, pid = loc[3], loc[5]
        meta = nodes.get(nid) or {}
        value = np.asarray(p.value, dtype=float)
        if meta.get("torch_key") and meta.get("role") == "projection" and pid == "matrix":
            if meta.get("transpose"):
                value = value.T
            state[meta["torch_key"]] = value.reshape(meta.get("torch_shape", value.shape))
        held = (meta.get("torch_keys") or {}).get(pid)  # a layer's own weight (Conv, LayerNorm: Builder.weighted_op)
        if isinstance(held, dict) and "key" in held:
            state[held["key"]] = value.reshape(held.get("shape", value.shape))
        torch_params = meta.get("torch_params") or {}  # recurrent layers: parameter id -> state_dict key
        if pid in torch_params:
            state[torch_params[pid]] = value
        gru = meta.get("gru") or {}
        if "torch_key" in gru and pid != "initial_h":
            grus.setdefault(gru["torch_key"], {})[pid] = value
    for prefix, parts in grus.items():
        gates = onnx_to_gates(parts["W"], parts["R"], parts.get("B")) if "W" in parts else parts
        for k, v in gates_to_torch(gates).items():
            state[f"{prefix}.{k}" if prefix else k] = v
    for k, entry in (tmeta.get("unused_state") or {}).items():
        state[k] = np.asarray(entry["value"], dtype=float).reshape(entry["shape"])
    keys = list(tmeta.get("state_dict_keys") or sorted(state))
    missing = [k for k in keys if k not in state]
    if missing:
        raise DataError(f"the program has no values for state_dict entries {missing} (was a projection node "
                        "removed or renamed?)", where=f"model '{program.name}'")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k in keys:
        value = np.asarray(state[k])  # (np.ascontiguousarray would make a 0-d entry 1-d: num_batches_tracked)
        out[k] = torch.as_tensor(np.ascontiguousarray(value).reshape(value.shape), dtype=dtype)
    return out


def save_state_dict(program: Union[Program, Mapping[str, Any]], path: Any,
                    dtype: Optional[torch.dtype] = None, *, force: bool = False) -> None:
    """Write the program's `program_state_dict` with torch.save, atomically (for `mdfbridge convert model.json
    model.pt`).

    program: a Program or an MDF document dict; path: the file to write (str or path-like; a failed write leaves
    an existing file as it was); dtype: the tensors' torch dtype (default None: the module's, as traced); force:
    replace a read-only file too (default False)."""
    from ...document import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(program_state_dict(program, dtype), buf)
    atomic_write_bytes(path, buf.getvalue(), force=force)
