"""Elementwise arithmetic and elementary functions (ONNX's names): Add, Sub, Mul, Div; Sigmoid, Neg, Tanh, Exp,
Log, Identity. `onnx::<Name>` is an alias of each, with ONNX's argument names."""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from .base import Alias, by_name, torch_module
from .standard import elementwise


def _binary(name: str, np_fn: Callable[[Any, Any], Any], torch_name: str) -> None:
    elementwise(name, ("A", "B"), lambda A, B: np_fn(A, B), lambda A, B: getattr(torch_module(), torch_name)(A, B),
                f"ONNX {name}", aliases=(Alias(f"onnx::{name}"),))


def _unary(name: str, onnx_arg: str, np_fn: Callable[[Any], Any], torch_name: Optional[str]) -> None:
    def torch_fn(x: Any) -> Any:
        return getattr(torch_module(), torch_name)(x) if torch_name else x
    elementwise(name, ("X",), by_name("X", np_fn), by_name("X", torch_fn), f"ONNX {name}",
                aliases=(Alias(f"onnx::{name}", {onnx_arg: "X"} if onnx_arg != "X" else {}),))


_binary("Add", np.add, "add")
_binary("Sub", np.subtract, "sub")
_binary("Mul", np.multiply, "mul")
_binary("Div", np.divide, "div")
_unary("Sigmoid", "X", lambda x: 1.0 / (1.0 + np.exp(-x)), "sigmoid")
_unary("Neg", "X", np.negative, "neg")
_unary("Tanh", "input", np.tanh, "tanh")
_unary("Exp", "input", np.exp, "exp")
_unary("Log", "input", np.log, "log")
_unary("Identity", "input", lambda x: x, None)
