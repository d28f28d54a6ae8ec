"""Activation functions of neural-network layers that are no MDF standard or PsyNeuLink transfer function: Gelu
(ONNX opset 20's and torch's, `onnx::Gelu` an alias).

Gelu(X) = X * Phi(X) = 0.5 * X * (1 + erf(X / sqrt(2))) (`approximate` 'none', the default), or with
`approximate` 'tanh' 0.5 * X * (1 + tanh(sqrt(2 / pi) * (X + 0.044715 * X**3))), as torch.nn.GELU and ONNX Gelu
define them. The record's derivative and LLVM scalar form are those of the exact (erf) form; the LLVM backend
refuses 'tanh' (it compiles a record's scalar form, which reads no attribute). ONNX export writes one Gelu node
from opset 20 on, else the formula with Erf (or Tanh), Mul and Add nodes (opset 17, the default).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from . import torchlib
from .arithmetic import _np_erf
from .base import Alias, OnnxImport, OpDef, register, torch_module
from .to_onnx import no_float64_kernel

if TYPE_CHECKING:
    from ..exporters.onnx_graph import OnnxGraphBuilder, Operand
    from ..importers.onnx_node import Emitted, NodeImport
    from ..program import Op

GELU_APPROXIMATIONS = ("none", "tanh")
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TANH_CUBIC = 0.044715
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _approximation(approximate: Any) -> str:
    """The `approximate` attribute, checked ('none' or 'tanh'; ValueError otherwise)."""
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"Gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    return str(approximate)


def gelu_numpy(X: Any, approximate: str = "none") -> Any:
    """Gelu in numpy (float64): the erf form, or the tanh approximation."""
    x = np.asarray(X, dtype=np.float64)
    if _approximation(approximate) == "tanh":
        y = 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + _TANH_CUBIC * x ** 3)))
    else:
        y = 0.5 * x * (1.0 + _np_erf(x * _INV_SQRT2))
    return y if np.ndim(X) else np.float64(y)


def gelu_torch(X: Any, approximate: str = "none") -> Any:
    """torch.nn.functional.gelu."""
    return torch_module().nn.functional.gelu(torchlib.tt(X), approximate=_approximation(approximate))


def _gelu_llvm(e: Any, X: Any) -> Any:
    """The erf form on one element: 0.5 * X * (1 + erf(X / sqrt(2)))."""
    return e.mul(e.mul(0.5, X), e.add(1.0, e.call("erf", e.mul(X, _INV_SQRT2))))


def _validate_gelu(node: str, args: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    from ..errors import UnsupportedError

    approximate = args.get("approximate", "none")
    if approximate not in GELU_APPROXIMATIONS:
        raise UnsupportedError(f"Gelu approximate must be 'none' or 'tanh', got {approximate!r}",
                               where=f"node '{node}'")


# --------------------------------------------------------------------------- ONNX

def export_gelu(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Gelu node from opset 20 on (float32), else 0.5 * X * (1 + Erf(X / sqrt(2))) or the tanh form."""
    x = b.required_arg(op, "X")
    approximate = _approximation(b.static_arg(op, "approximate", "none"))
    if b.opset >= 20 and b.dtype == "float32":
        return b.unary("Gelu", x, approximate=approximate)
    if approximate == "tanh":
        cubic = b.mul(b.mul(b.mul(x, x), x), b.literal(_TANH_CUBIC))
        t: Operand = b.unary("Tanh", b.mul(b.add(x, cubic), b.literal(_SQRT_2_OVER_PI)))
    elif b.dtype == "float64":
        return no_float64_kernel("Erf")(b, x)
    else:
        t = b.unary("Erf", b.mul(x, b.literal(_INV_SQRT2)))
    return b.mul(b.mul(x, b.literal(0.5)), b.add(t, b.literal(1.0)))


def import_gelu(n: NodeImport) -> Emitted:
    """Gelu (opset 20) with its approximate attribute."""
    approximate = str(n.attr("approximate", "none"))
    if approximate not in GELU_APPROXIMATIONS:
        raise n.fail(f"approximate {approximate!r} (ONNX defines 'none' and 'tanh')")
    return n.call("onnx::Gelu", {"X": n.dynamic(0, "X"), "approximate": approximate})


register(OpDef("Gelu", ("X",), gelu_numpy, gelu_torch, defaults={"approximate": "none"}, attrs=("approximate",),
               elementwise=True, description="X * Phi(X) (approximate 'none': the erf form; 'tanh': torch's and "
                                             "ONNX's tanh approximation)",
               aliases=(Alias("onnx::Gelu"),), llvm=_gelu_llvm,
               derivative="0.5 * (1.0 + erf(X / numpy.sqrt(2.0))) + X * numpy.exp(-0.5 * X ** 2) / "
                          "numpy.sqrt(2.0 * pi)",
               validate=_validate_gelu, onnx_export=export_gelu,
               onnx_import=(OnnxImport("Gelu", 20, None, import_gelu),)))
