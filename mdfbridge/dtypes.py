"""Floating dtypes as every entry point takes them: 'float32'/'float64' (also 'torch.float32', 'double', ...), a
numpy dtype or type, or a torch dtype; one spelling rule for learn, run, evaluate, to_torch, the ONNX export and
the backends."""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .errors import UnsupportedError

FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")
_SYNONYMS = {"half": "float16", "float": "float32", "single": "float32", "double": "float64"}


def dtype_name(dtype: Any, allowed: Sequence[str] = FLOAT_NAMES, where: str = "dtype",
               default: str = "float64") -> str:
    """The name ('float32', 'float64', ...) of a dtype given as a string, numpy dtype/type or torch dtype; None
    gives `default` (default 'float64'). A dtype not in `allowed` (default: torch's float types) raises
    UnsupportedError, one line naming `where` (default 'dtype') and the valid names."""
    if dtype is None:
        return default
    name: Optional[str]
    text = str(dtype) if type(dtype).__module__.startswith("torch") else None  # torch.float32 -> 'torch.float32'
    if text is None and isinstance(dtype, str):
        text = dtype
    if text is not None:
        name = text.strip().lower().replace("torch.", "").replace("numpy.", "").replace("np.", "")
        name = _SYNONYMS.get(name, name)
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
    if name is None or name not in allowed:
        raise UnsupportedError(f"{where} {dtype!r} is not a floating type this runs models in; use "
                               f"{' or '.join(map(repr, allowed))} (a string, numpy dtype or torch dtype)")
    return name


def torch_dtype(dtype: Any, allowed: Sequence[str] = FLOAT_NAMES, where: str = "dtype") -> Any:
    """The torch dtype of `dtype` (see dtype_name; None: torch.float64).

    dtype: a string, numpy dtype/type or torch dtype, or None; allowed: the names accepted (default FLOAT_NAMES:
    float16, bfloat16, float32, float64); where: what the dtype is for, in the UnsupportedError a dtype outside
    `allowed` raises (default 'dtype'). Imports torch."""
    import torch

    return getattr(torch, dtype_name(dtype, allowed, where))


def numpy_dtype(dtype: Any, allowed: Sequence[str] = ("float32", "float64"), where: str = "dtype") -> np.dtype:
    """The numpy dtype of `dtype` (see dtype_name; None: float64).

    dtype: a string, numpy dtype/type or torch dtype, or None; allowed: the names accepted (default ('float32',
    'float64'), the ones numpy computes in); where: what the dtype is for, in the UnsupportedError a dtype outside
    `allowed` raises (default 'dtype')."""
    return np.dtype(dtype_name(dtype, allowed, where))


@functools.lru_cache(maxsize=1)
def _stored_weight_dtypes() -> Dict[str, np.dtype]:
    """STORED_WEIGHT_DTYPES by name (ml_dtypes' bfloat16, which onnx depends on), made once: the importer asks for
    every parameter."""
    from onnx import TensorProto, helper

    return {"float16": np.dtype(np.float16),
            "bfloat16": np.dtype(helper.tensor_dtype_to_np_dtype(TensorProto.BFLOAT16))}


STORED_WEIGHT_DTYPES = ("float16", "bfloat16")
"""Weight dtypes below float32 an ONNX import records per parameter (`parameter_dtypes`) so the export writes the
weights in them again (computing in float32 or float64)."""


def stored_weight_dtype(name: Optional[str]) -> Optional[np.dtype]:
    """The numpy dtype of a recorded weight dtype name ('float16', 'bfloat16'; ml_dtypes' bfloat16), None for
    anything else (default None: none recorded)."""
    return _stored_weight_dtypes().get(name) if name is not None else None


def stored_weight_name(dtype: Any) -> Optional[str]:
    """'float16' / 'bfloat16' for an array dtype of those, else None."""
    return _stored_weight_names().get(dtype if isinstance(dtype, np.dtype) else np.dtype(dtype))


@functools.lru_cache(maxsize=1)
def _stored_weight_names() -> Dict[np.dtype, str]:
    return {t: n for n, t in _stored_weight_dtypes().items()}
