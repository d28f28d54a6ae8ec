"""PsyNeuLink transfer functions without an MDF standard function (ReLU with gain, bias and leak; SoftMax with
gain). mdfbridge writes them to MDF as a `value` expression modeci-mdf evaluates (`value_form`), with
metadata naming the function; lowering runs such a value as the op when it is exactly that form."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np

from ..errors import UnsupportedError
from . import from_onnx, to_onnx
from .base import Alias, OnnxImport, OpDef, is_number, register, torch_module
from .shape_rules import broadcast


def softmax_value_expression(x: str, gain: str = "gain") -> str:
    """The per-trial MDF `value` expression of SoftMax (modeci-mdf evaluates it)."""
    z = f"numpy.exp({gain} * ({x}) - numpy.max({gain} * ({x})))"
    return f"{z} / numpy.sum({z})"


def relu_value_expression(x: str, gain: str = "gain", bias: str = "bias", leak: str = "leak") -> str:
    """The MDF `value` expression of ReLU with gain, bias and leak (modeci-mdf evaluates it)."""
    d = f"(({x}) - {bias})"
    return f"{gain} * ({d} * ({d} > 0) + {leak} * {d} * ({d} <= 0))"


def _relu_np(variable0: Any, gain: Any, bias: Any, leak: Any) -> Any:
    x = variable0 - bias
    return gain * np.where(x > 0, x, leak * x)


def _relu_torch(variable0: Any, gain: Any, bias: Any, leak: Any) -> Any:
    torch = torch_module()
    x = variable0 if is_number(bias, 0.0) else variable0 - bias
    if is_number(leak, 0.0):
        y = torch.relu(x)
    elif isinstance(leak, (int, float)):
        y = torch.nn.functional.leaky_relu(x, float(leak))
    else:
        y = torch.where(x > 0, x, leak * x)
    return y if is_number(gain, 1.0) else gain * y


def _softmax_np(variable0: Any, gain: Any = 1.0, axis: int = -1) -> Any:
    z = variable0 if is_number(gain, 1.0) else gain * variable0
    z = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def _softmax_torch(variable0: Any, gain: Any = 1.0, axis: int = -1) -> Any:
    return torch_module().softmax(variable0 if is_number(gain, 1.0) else gain * variable0, dim=axis)


_ADAPT = ("adapt_scale", "adapt_base", "adapt_entropy_weighting")


def _softmax_pnl_check(written: Mapping[str, Any], where: str) -> None:
    """PsyNeuLink's `softmax`: its adapt_* arguments only matter when gain is 'ADAPTIVE' (then refused)."""
    gain = written.get("gain")
    if isinstance(gain, str) and gain.strip().strip("'\"").upper() == "ADAPTIVE":
        raise UnsupportedError("softmax with gain 'ADAPTIVE' (PsyNeuLink's adaptive gain from adapt_scale, "
                               "adapt_base, adapt_entropy_weighting) is not supported; give a numeric gain",
                               where=where)
    bad = [a for a in _ADAPT if a in written and (isinstance(written[a], bool)
                                                  or not isinstance(written[a], (int, float)))]
    if bad:
        raise UnsupportedError(f"softmax argument(s) {bad} must be numbers (they only matter for an adaptive gain)",
                               where=where)


def _softmax_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Dict[str, Any]:
    """A per-trial axis on a batch: non-negative axes move one to the right."""
    axis = int(attrs.get("axis", -1))
    return {**attrs, "axis": axis + 1 if axis >= 0 else axis}


register(OpDef("ReLU", ("variable0", "gain", "bias", "leak"), _relu_np, _relu_torch,
               defaults={"gain": 1.0, "bias": 0.0, "leak": 0.0}, elementwise=True,
               description="gain * (x - bias) if x > bias else leak * gain * (x - bias)",
               derivative="gain * numpy.where(variable0 - bias > 0, 1.0, leak)", value_form=relu_value_expression,
               onnx_export=to_onnx.relu,
               formula="gain * numpy.where(variable0 - bias > 0, variable0 - bias, leak * (variable0 - bias))"))
register(OpDef("SoftMax", ("variable0", "gain"), _softmax_np, _softmax_torch, defaults={"gain": 1.0, "axis": -1},
               attrs=("axis",), batch_rule=_softmax_batched, shape=broadcast,
               description="exp(gain*x) / sum(exp(gain*x)) over `axis` (the last by default)",
               derivative="gain * out * (grad - numpy.sum(grad * out, axis=-1, keepdims=True))",
               value_form=softmax_value_expression, llvm_kernel="softmax",
               aliases=(Alias("onnx::Softmax", {"input": "variable0"}),
                        Alias("softmax", ignores=_ADAPT, check=_softmax_pnl_check)), onnx_export=to_onnx.softmax,
               onnx_import=(OnnxImport("Softmax", 13, None, from_onnx.softmax),
                            OnnxImport("Softmax", 1, 12, from_onnx.softmax_flattened))))
