"""MDF standard functions (modeci-mdf's names and arguments): linear, logistic, exponential, the trigonometric
and hyperbolic functions with a `scale`, and Relu."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Tuple

import numpy as np

from . import from_onnx, to_onnx
from .base import Alias, OnnxImport, OpDef, Variant, is_number, register, torch_module


def elementwise(name: str, args: Tuple[str, ...], np_fn: Callable, torch_fn: Callable, formula: str,
                defaults: Optional[Mapping[str, Any]] = None, derivative: Optional[str] = None,
                aliases: Tuple[Alias, ...] = (), **hooks: Any) -> OpDef:
    """Register an elementwise op; `formula` (also its description) is what `np_fn` computes, as an MDF
    expression evaluated in the same order; `hooks` are more `OpDef` fields (onnx_export, expr_names, ...)."""
    return register(OpDef(name, args, np_fn, torch_fn, defaults=defaults or {}, elementwise=True,
                          description=formula, derivative=derivative, aliases=aliases, formula=formula, **hooks))


def _linear_np(variable0: Any, slope: Any, intercept: Any, scale: Any = 1.0, offset: Any = 0.0) -> Any:
    y = variable0 * slope + intercept
    return y if is_number(scale, 1.0) and is_number(offset, 0.0) else scale * y + offset  # * 1 + 0 is exact


def _linear_torch(variable0: Any, slope: Any, intercept: Any, scale: Any = 1.0, offset: Any = 0.0) -> Any:
    y = variable0 if is_number(slope, 1.0) and is_number(intercept, 0.0) else variable0 * slope + intercept
    return y if is_number(scale, 1.0) and is_number(offset, 0.0) else scale * y + offset


def _plain(static: Mapping[str, Any], identity: Mapping[str, float]) -> bool:
    """Are the static arguments exactly the identity values (gain 1, bias 0, ...)?"""
    return all(is_number(static.get(k), v) for k, v in identity.items())


def _linear_specialise(static: Mapping[str, Any], tensors: Tuple[str, ...], lib: str) -> Optional[Callable]:
    """x * 1 + 0 is x."""
    return (lambda variable0: variable0) if tensors == ("variable0",) and _plain(
        static, {"slope": 1.0, "intercept": 0.0, "scale": 1.0, "offset": 0.0}) else None


def _np_sigmoid(variable0: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-variable0))  # the same numbers as the formula at gain 1, bias 0, offset 0


def _logistic_specialise(static: Mapping[str, Any], tensors: Tuple[str, ...], lib: str) -> Optional[Callable]:
    if tensors != ("variable0",) or not _plain(static, {"gain": 1.0, "bias": 0.0, "offset": 0.0}):
        return None
    return _np_sigmoid if lib == "numpy" else torch_module().sigmoid


def _logistic_torch(variable0: Any, gain: Any, bias: Any, offset: Any) -> Any:
    # 1/(1 + exp(-gain*(x + bias) + offset)) == sigmoid(gain*(x + bias) - offset); torch.sigmoid is one
    # autograd node instead of five
    z = variable0 if is_number(bias, 0.0) else variable0 + bias
    z = z if is_number(gain, 1.0) else gain * z
    return torch_module().sigmoid(z if is_number(offset, 0.0) else z - offset)


# MDF's standard linear is `variable0 * slope + intercept`; PsyNeuLink writes every Linear with `scale` and
# `offset` too (its `scale * (slope * x + intercept) + offset`): at scale 1, offset 0 the two are the same numbers
elementwise("linear", ("variable0", "slope", "intercept", "scale", "offset"), _linear_np, _linear_torch,
            "scale * (variable0 * slope + intercept) + offset",
            {"slope": 1.0, "intercept": 0.0, "scale": 1.0, "offset": 0.0}, derivative="scale * slope",
            onnx_export=to_onnx.linear, specialise=_linear_specialise)
elementwise("logistic", ("variable0", "gain", "bias", "offset"),
            lambda variable0, gain, bias, offset: 1.0 / (1.0 + np.exp(-gain * (variable0 + bias) + offset)),
            _logistic_torch, "1.0 / (1.0 + numpy.exp(-gain * (variable0 + bias) + offset))",
            {"gain": 1.0, "bias": 0.0, "offset": 0.0}, derivative="gain * out * (1.0 - out)",
            onnx_export=to_onnx.logistic, specialise=_logistic_specialise,
            # PsyNeuLink writes `x_0` and `scale`, which this one does not take, and means `offset` outside
            variants=(Variant("PsyNeuLinkLogistic", ("x_0", "scale")),))
elementwise("exponential", ("variable0", "scale", "rate", "bias", "offset"),
            lambda variable0, scale, rate, bias, offset: scale * np.exp(rate * variable0 + bias) + offset,
            lambda variable0, scale, rate, bias, offset: scale * torch_module().exp(rate * variable0 + bias) + offset,
            "scale * numpy.exp(rate * variable0 + bias) + offset",
            {"scale": 1.0, "rate": 1.0, "bias": 0.0, "offset": 0.0},
            derivative="scale * rate * numpy.exp(rate * variable0 + bias)", onnx_export=to_onnx.exponential)


def _scaled(name: str, torch_name: str, derivative: str, onnx_export: to_onnx.OnnxExport) -> None:
    """`scale * f(variable0)` for numpy's f called `name` (torch's `torch_name`). At its default scale the op is
    numpy's f, so the ONNX exporter writes numpy's `name` in MDF expressions through this record."""
    f = getattr(np, name)
    elementwise(name, ("variable0", "scale"), lambda variable0, scale: scale * f(variable0),
                lambda variable0, scale: scale * getattr(torch_module(), torch_name)(variable0),
                f"scale * numpy.{name}(variable0)", {"scale": 1.0}, derivative=derivative, onnx_export=onnx_export)


_NO_F64 = to_onnx.no_float64_kernel  # onnxruntime has no float64 kernel: float64 models refuse
_scaled("sin", "sin", "scale * numpy.cos(variable0)", to_onnx.scaled("Sin"))
_scaled("cos", "cos", "-scale * numpy.sin(variable0)", to_onnx.scaled("Cos"))
_scaled("tan", "tan", "scale / numpy.cos(variable0) ** 2", to_onnx.scaled("Tan", to_onnx.tan_float64))
_scaled("sinh", "sinh", "scale * numpy.cosh(variable0)", to_onnx.scaled("Sinh", to_onnx.sinh_float64))
_scaled("cosh", "cosh", "scale * numpy.sinh(variable0)", to_onnx.scaled("Cosh", to_onnx.cosh_float64))
_scaled("arctan", "atan", "scale / (1.0 + variable0 ** 2)", to_onnx.scaled("Atan", _NO_F64("Atan")))
_scaled("arcsin", "asin", "scale / numpy.sqrt(1.0 - variable0 ** 2)", to_onnx.scaled("Asin", _NO_F64("Asin")))
_scaled("arccos", "acos", "-scale / numpy.sqrt(1.0 - variable0 ** 2)", to_onnx.scaled("Acos", _NO_F64("Acos")))


def _tanh_np(variable0: Any, scale: Any = 1.0, gain: Any = 1.0, bias: Any = 0.0, x_0: Any = 0.0,
             offset: Any = 0.0) -> Any:
    return scale * np.tanh(gain * (variable0 + bias - x_0) + offset)


def _tanh_torch(variable0: Any, scale: Any = 1.0, gain: Any = 1.0, bias: Any = 0.0, x_0: Any = 0.0,
                offset: Any = 0.0) -> Any:
    z = variable0 if is_number(bias, 0.0) and is_number(x_0, 0.0) else variable0 + bias - x_0
    z = z if is_number(gain, 1.0) else gain * z
    y = torch_module().tanh(z if is_number(offset, 0.0) else z + offset)
    return y if is_number(scale, 1.0) else scale * y


# MDF's standard tanh is `scale * tanh(variable0)`; PsyNeuLink writes gain, bias, x_0, offset as well (its
# `scale * tanh(gain * (x + bias - x_0) + offset)`, offset inside): at their defaults the same numbers
elementwise("tanh", ("variable0", "scale", "gain", "bias", "x_0", "offset"), _tanh_np, _tanh_torch,
            "scale * numpy.tanh(gain * (variable0 + bias - x_0) + offset)",
            {"scale": 1.0, "gain": 1.0, "bias": 0.0, "x_0": 0.0, "offset": 0.0},
            derivative="scale * gain * (1.0 - numpy.tanh(gain * (variable0 + bias - x_0) + offset) ** 2)",
            onnx_export=to_onnx.tanh)

elementwise("Relu", ("A",), lambda A: A * (A > 0), lambda A: torch_module().relu(A), "A * (A > 0)",
            derivative="numpy.where(A > 0, 1.0, 0.0)", aliases=(Alias("onnx::Relu", {"X": "A"}),), expr_names=("relu",),
            onnx_export=to_onnx.unary("Relu", "A"),
            onnx_import=(OnnxImport("Relu", 6, None, from_onnx.unary("onnx::Relu", "X")),))
