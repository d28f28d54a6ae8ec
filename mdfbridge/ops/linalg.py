"""Matrix products: MatMul (MDF's standard function; `onnx::MatMul` is an alias) and ONNX Gemm."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from . import from_onnx, to_onnx
from .base import Alias, OnnxImport, OpDef, first_arg_batched, register


def _gemm_np(A: Any, B: Any, C: Any = None, alpha: float = 1.0, beta: float = 1.0, transA: int = 0,
             transB: int = 0) -> Any:
    A = A.T if transA else A
    B = B.T if transB else B
    y = alpha * (A @ B)
    return y if C is None else y + beta * C


def _gemm_torch(A: Any, B: Any, C: Any = None, alpha: float = 1.0, beta: float = 1.0, transA: int = 0,
                transB: int = 0) -> Any:
    A = A.transpose(-1, -2) if transA else A
    B = B.transpose(-1, -2) if transB else B
    y = alpha * (A @ B)
    return y if C is None else y + beta * C


def _gemm_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return attrs if batched_args <= {"A"} and not attrs.get("transA") else None


register(OpDef("MatMul", ("A", "B"), lambda A, B: np.matmul(A, B), lambda A, B: A @ B,
               batch_rule=first_arg_batched, description="A @ B", aliases=(Alias("onnx::MatMul"),),
               onnx_export=to_onnx.matmul, onnx_import=(OnnxImport("MatMul", 1, None, from_onnx.matmul),),
               linear_map=True))
register(OpDef("Gemm", ("A", "B", "C"), _gemm_np, _gemm_torch,
               defaults={"C": None, "alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
               attrs=("alpha", "beta", "transA", "transB"), batch_rule=_gemm_batched, description="ONNX Gemm",
               aliases=(Alias("onnx::Gemm"),), onnx_export=to_onnx.gemm,
               onnx_import=(OnnxImport("Gemm", 7, None, from_onnx.gemm, constant_inputs=(1, 2)),), linear_map=True))
