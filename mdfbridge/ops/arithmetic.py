"""Elementwise arithmetic and elementary functions (ONNX's names): Add, Sub, Mul, Div; Sigmoid, Neg, Tanh, Exp,
Log, Identity. `onnx::<Name>` is an alias of each, with ONNX's argument names."""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import numpy as np

from . import from_onnx, to_onnx
from .base import Alias, OnnxImport, by_name, torch_module
from .standard import elementwise
from .to_onnx import OnnxExport


def _binary(name: str, np_fn: Callable[[Any, Any], Any], torch_name: str, bias: bool = False) -> None:
    """ONNX `name` (opset 7 on); with `bias`, the importer makes a constant operand added to a product with
    weights a learnable bias."""
    elementwise(name, ("A", "B"), lambda A, B: np_fn(A, B), lambda A, B: getattr(torch_module(), torch_name)(A, B),
                f"ONNX {name}", aliases=(Alias(f"onnx::{name}"),), onnx_export=to_onnx.binary(name),
                onnx_import=(OnnxImport(name, 7, None, from_onnx.binary(f"onnx::{name}", bias)),))


def _unary(name: str, onnx_arg: str, np_fn: Callable[[Any], Any], torch_name: Optional[str],
           onnx_export: Optional[OnnxExport] = None, onnx_import: Tuple[OnnxImport, ...] = ()) -> None:
    """ONNX `name`, whose argument ONNX calls `onnx_arg` (imported from opset 6 on unless `onnx_import` says)."""
    def torch_fn(x: Any) -> Any:
        return getattr(torch_module(), torch_name)(x) if torch_name else x
    elementwise(name, ("X",), by_name("X", np_fn), by_name("X", torch_fn), f"ONNX {name}",
                aliases=(Alias(f"onnx::{name}", {onnx_arg: "X"} if onnx_arg != "X" else {}),),
                onnx_export=onnx_export or to_onnx.unary(name),
                onnx_import=onnx_import or (OnnxImport(name, 6, None, from_onnx.unary(f"onnx::{name}", onnx_arg)),))


_binary("Add", np.add, "add", bias=True)
_binary("Sub", np.subtract, "sub", bias=True)
_binary("Mul", np.multiply, "mul")
_binary("Div", np.divide, "div")
_unary("Sigmoid", "X", lambda x: 1.0 / (1.0 + np.exp(-x)), "sigmoid")
_unary("Neg", "X", np.negative, "neg")
_unary("Tanh", "input", np.tanh, "tanh")
_unary("Exp", "input", np.exp, "exp")
_unary("Log", "input", np.log, "log")
_unary("Identity", "input", lambda x: x, None, onnx_export=to_onnx.identity,
       onnx_import=(OnnxImport("Identity", 1, None, from_onnx.unary("onnx::Identity", "input")),
                    OnnxImport("Dropout", 1, None, from_onnx.dropout, constant_inputs=(1, 2)),
                    OnnxImport("Cast", 6, None, from_onnx.cast)))
