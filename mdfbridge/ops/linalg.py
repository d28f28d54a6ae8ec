"""Matrix products: MatMul (MDF's standard function; `onnx::MatMul` is an alias) and ONNX Gemm."""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from . import torchlib
from .base import Alias, OpDef, first_arg_batched, keywords, register, torch_module


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


def _t_matmul(A: Any, B: Any) -> Any:
    torch = torch_module()
    if isinstance(A, torch.Tensor) and isinstance(B, torch.Tensor) and A.dtype == B.dtype:
        return A @ B
    return torch.matmul(*torchlib.tt_like(A, B))


def _t_dot(A: Any, B: Any) -> Any:
    a, b = torchlib.tt_like(A, B)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return torch_module().tensordot(a, b, dims=([a.ndim - 1], [0 if b.ndim == 1 else b.ndim - 2]))


def _t_outer(A: Any, B: Any) -> Any:
    return torch_module().outer(*(t.reshape(-1) for t in torchlib.tt_like(A, B)))


register(OpDef("MatMul", ("A", "B"), lambda A, B: np.matmul(A, B), _t_matmul,
               batch_rule=first_arg_batched, description="A @ B (numpy.matmul)", aliases=(Alias("onnx::MatMul"),),
               expr_names=("matmul",), llvm_kernel="projection"))
register(OpDef("Dot", ("A", "B"), keywords(np.dot, ("A", "B")), _t_dot, description="numpy.dot(A, B)", expr_names=("dot",)))
register(OpDef("Outer", ("A", "B"), keywords(np.outer, ("A", "B")), _t_outer, description="numpy.outer(A, B) of the flattened arguments",
               expr_names=("outer",)))
register(OpDef("Gemm", ("A", "B", "C"), _gemm_np, _gemm_torch,
               defaults={"C": None, "alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
               attrs=("alpha", "beta", "transA", "transB"), batch_rule=_gemm_batched, description="ONNX Gemm",
               aliases=(Alias("onnx::Gemm"),)))
