"""Training checkpoints: a tree of tensors, arrays, numbers, strings, lists and dicts in one .npz file.

The arrays are the .npz's members (`a0`, `a1`, ...); the tree is JSON text in the member `__tree__`, each array
replaced by {"__array__": "a0", "torch": true|false}, a dict whose keys are not all strings (an optimizer's
state: parameter index -> its state) by {"__items__": [[key, value], ...]}, a tuple by {"__tuple__": [...]}.
Nothing is pickled: reading uses mdfbridge's .npz reader (data_files.read_npz: no pickle, sizes checked before
anything is inflated) and the JSON reader, so a checkpoint file cannot run code. A 0-d array is stored as (1,)
with its shape in the tree. Written atomically (mdfbridge.atomic): a run killed while saving leaves the previous
checkpoint whole.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Dict, List, Mapping, Union

import numpy as np

from ..errors import DataError

FORMAT = "mdfbridge training checkpoint 1"


def _encode(value: Any, arrays: List[np.ndarray]) -> Any:
    """The JSON tree of `value`, its arrays appended to `arrays`."""
    import torch

    if isinstance(value, (torch.Tensor, np.ndarray)):
        is_torch = isinstance(value, torch.Tensor)
        a = value.detach().cpu().numpy().copy() if isinstance(value, torch.Tensor) else np.ascontiguousarray(value)
        arrays.append(a.reshape(a.shape or (1,)))  # (the data reader takes no 0-d member: one number as (1,))
        return {"__array__": f"a{len(arrays) - 1}", "torch": is_torch, "shape": list(a.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, arrays) for k, v in value.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a checkpoint cannot hold a {type(value).__name__}")


def _decode(tree: Any, arrays: Mapping[str, np.ndarray], where: str) -> Any:
    import torch

    if isinstance(tree, list):
        return [_decode(v, arrays, where) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__array__" in tree:
        name = tree["__array__"]
        if name not in arrays:
            raise DataError(f"the checkpoint names array {name!r}, which it does not hold", where=where)
        a = arrays[name].reshape(tuple(tree.get("shape", arrays[name].shape)))
        return torch.as_tensor(a) if tree.get("torch") else a
    if "__items__" in tree:
        return {_hashable(_decode(k, arrays, where)): _decode(v, arrays, where) for k, v in tree["__items__"]}
    if "__tuple__" in tree:
        return tuple(_decode(v, arrays, where) for v in tree["__tuple__"])
    return {k: _decode(v, arrays, where) for k, v in tree.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def save_checkpoint(path: Union[str, "os.PathLike[str]"], state: Mapping[str, Any]) -> None:
    """Write a checkpoint.

    path: the .npz file (replaced atomically); state: a dict of tensors, numpy arrays, numbers, strings, None,
    lists, tuples and dicts (any hashable scalar keys); the format tag is added."""
    from ..atomic import atomic_write

    arrays: List[np.ndarray] = []
    tree = _encode({"format": FORMAT, **state}, arrays)
    text = json.dumps(tree, allow_nan=True)
    members: Dict[str, Any] = {f"a{i}": a for i, a in enumerate(arrays)}
    members["__tree__"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def write(f: IO[Any]) -> None:
        np.savez(f, **members)

    atomic_write(Path(path), write, binary=True)


def load_checkpoint(path: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """The state a checkpoint holds (tensors where torch tensors were saved).

    path: the .npz file save_checkpoint wrote. A file that is not one (another .npz, a pickle, a damaged file)
    raises DataError naming it."""
    from ..data_files import read_npz

    where = os.fspath(path)
    arrays = read_npz(where)  # (bounded and checked member by member; never a pickle)
    raw = arrays.pop("__tree__", None)
    try:
        tree = json.loads(raw.tobytes().decode("utf-8")) if raw is not None and raw.dtype == np.uint8 else None
    except (UnicodeDecodeError, ValueError):
        tree = None
    if not isinstance(tree, dict) or tree.get("format") != FORMAT:
        raise DataError(f"not an mdfbridge training checkpoint (expected the format {FORMAT!r})", where=where)
    state = _decode(tree, arrays, where)
    state.pop("format", None)
    return state
