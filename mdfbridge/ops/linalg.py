"""Matrix products: MatMul (MDF's standard function; `onnx::MatMul` is an alias) and ONNX Gemm."""
from __future__ import annotations

import operator
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from . import from_onnx, to_onnx, to_onnx_expr, torchlib
from . import shape_rules as sr
from .base import Alias, OnnxImport, OpDef, first_arg_batched, keywords, register, torch_module


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


def _bias_row(args: Mapping[str, Any], constants: Mapping[str, Any]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """A bias node's constant `[1.] @ W` (W of shape (1, n)) is W viewed as (n,)."""
    a = constants.get("A")
    if a is not None and np.shape(a) == (1,) and a[0] == 1.0:
        return "Reshape", {"data": args["B"], "shape": [-1], "allowzero": 0}
    return None


def _gemm_shape(a: Mapping[str, Any]) -> Any:
    A, B = a["A"], a["B"]
    rows = A[-1] if a.get("transA") else A[-2] if len(A) > 1 else None
    cols = B[-2] if a.get("transB") else B[-1]
    out = (cols,) if rows is None else (rows, cols)
    return tuple(np.broadcast_shapes(out, a["C"])) if isinstance(a.get("C"), tuple) else out


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
               expr_names=("matmul",), shape=lambda a: sr.matmul(a["A"], a["B"]), simplify=_bias_row, weight_arg="B",
               matrix_product=True,
               specialise=lambda static, tensors, lib: (operator.matmul if lib == "numpy" else _t_matmul)
               if tensors == ("A", "B") else None,
               llvm_kernel="projection",
               onnx_export=to_onnx.matmul, onnx_import=(OnnxImport("MatMul", 1, None, from_onnx.matmul),)))
register(OpDef("Dot", ("A", "B"), keywords(np.dot, ("A", "B")), _t_dot, description="numpy.dot(A, B)",
               expr_names=("dot",),
               shape=lambda a: sr.dot(a["A"], a["B"]), onnx_export=to_onnx_expr.dot))
register(OpDef("Outer", ("A", "B"), keywords(np.outer, ("A", "B")), _t_outer,
               description="numpy.outer(A, B) of the flattened arguments",
               expr_names=("outer",), shape=lambda a: (int(np.prod(a["A"])), int(np.prod(a["B"]))),
               onnx_export=to_onnx_expr.outer))
register(OpDef("Gemm", ("A", "B", "C"), _gemm_np, _gemm_torch,
               defaults={"C": None, "alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
               attrs=("alpha", "beta", "transA", "transB"), batch_rule=_gemm_batched, description="ONNX Gemm",
               shape=_gemm_shape, weight_arg="B", aliases=(Alias("onnx::Gemm"),), onnx_export=to_onnx.gemm,
               onnx_import=(OnnxImport("Gemm", 7, None, from_onnx.gemm, constant_inputs=(1, 2)),)))
