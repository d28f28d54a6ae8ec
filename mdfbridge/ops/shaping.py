"""Shape ops (ONNX's): Transpose, Reshape, Concat."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from . import from_onnx, to_onnx
from .base import Alias, OnnxImport, OpDef, never, register, torch_module


def _target_shape(data: Any, shape: Any, allowzero: int) -> List[int]:
    """ONNX Reshape's target: a 0 copies the input's dimension unless `allowzero`."""
    dims = [int(s) for s in np.asarray(shape).reshape(-1)]
    return dims if allowzero else [data.shape[i] if s == 0 else s for i, s in enumerate(dims)]


def _reshape_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A per-trial reshape on a batch: keep the batch axis by prepending a 0 (copy) dimension."""
    if batched_args != {"data"} or attrs.get("allowzero"):
        return None
    return {**attrs, "shape": [0] + [int(s) for s in np.asarray(attrs["shape"]).reshape(-1)]}


def _transpose_torch(data: Any, perm: Any = None) -> Any:
    return data.permute(list(perm) if perm is not None else list(range(data.dim()))[::-1])


register(OpDef("Transpose", ("data",), lambda data, perm=None: np.transpose(data, perm), _transpose_torch,
               defaults={"perm": None}, attrs=("perm",), batch_rule=never, description="ONNX Transpose",
               aliases=(Alias("onnx::Transpose"),), onnx_export=to_onnx.transpose,
               onnx_import=(OnnxImport("Transpose", 1, None, from_onnx.transpose),)))
register(OpDef("Reshape", ("data", "shape"),
               lambda data, shape, allowzero=0: np.reshape(data, _target_shape(data, shape, allowzero)),
               lambda data, shape, allowzero=0: data.reshape(_target_shape(data, shape, allowzero)),
               defaults={"allowzero": 0}, attrs=("shape", "allowzero"), batch_rule=_reshape_batched,
               description="ONNX Reshape", aliases=(Alias("onnx::Reshape"),), onnx_export=to_onnx.reshape,
               onnx_import=(OnnxImport("Reshape", 5, None, from_onnx.reshape_to_output, constant_inputs=(1,)),
                            OnnxImport("Flatten", 1, None, from_onnx.reshape_to_output),
                            OnnxImport("Squeeze", 1, None, from_onnx.reshape_to_output, constant_inputs=(1,)),
                            OnnxImport("Unsqueeze", 1, None, from_onnx.reshape_to_output, constant_inputs=(1,)))))
register(OpDef("Concat", ("inputs",), lambda *inputs, axis=0: np.concatenate(inputs, axis=axis),
               lambda *inputs, axis=0: torch_module().cat(inputs, dim=axis), defaults={"axis": 0},
               attrs=("axis",), batch_rule=never, description="ONNX Concat (inputs is a list)",
               aliases=(Alias("onnx::Concat"),), onnx_export=to_onnx.concat))
