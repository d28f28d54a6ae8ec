"""PsyNeuLink's meanings of function names, as PsyNeuLink 0.21 writes them to MDF (`get_mdf_serialized`).

PsyNeuLink writes its transfer functions under MDF's standard names with its own arguments
(tests/data/psyneulink/README.md shows every form):

- `linear` (slope, intercept, scale, offset) and `tanh` (gain, bias, x_0, scale, offset) extend MDF's standard
  records compatibly (mdfbridge/ops/standard.py): at scale 1, offset 0 (and gain 1, bias 0, x_0 0) they are
  MDF's functions exactly.
- `logistic` clashes: MDF's standard logistic is `1 / (1 + exp(-gain * (x + bias) + offset))` (offset inside the
  exponent, no scale), PsyNeuLink's is `scale / (1 + exp(-gain * (x + bias - x_0))) + offset` (offset outside).
  They are told apart by the arguments a call writes (a `Variant` of the standard record): PsyNeuLink always
  writes `x_0` and `scale` (its Logistic.as_mdf_model folds x_0 into bias and writes x_0 = 0, but still writes
  it), MDF's standard logistic takes neither, so a call writing either is PsyNeuLink's (`PsyNeuLinkLogistic`).
  The choice is local to the call: it needs no model header (`generating_application`), so a PsyNeuLink function
  copied into another document keeps its meaning, and modeci-mdf's own documents (which cannot write x_0 or scale
  for logistic) keep theirs.
- `relu` (gain, bias, leak, scale, offset): PsyNeuLink's ReLU computes `x = gain * (v - bias);
  max(x, leak * x)` and does not apply scale or offset, so they are accepted at 1 and 0 and refused otherwise.
  This is not mdfbridge's own `ReLU` (`gain * (v - bias)` where v > bias, else `leak * gain * (v - bias)`): the
  two differ when gain < 0 or leak > 1. (`relu(x)` inside a `value` expression stays ONNX's Relu: expression
  names and function names are separate namespaces.)
- `softmax` (gain, adapt_scale, adapt_base, adapt_entropy_weighting): the `adapt_*` arguments only matter when
  gain is 'ADAPTIVE'; with a numeric gain they are ignored, an adaptive gain is refused (an alias of SoftMax in
  mdfbridge/ops/transfer.py).
- `exponential` (rate, bias, scale, offset) is MDF's standard exponential.
- `gaussian` (standard_deviation, bias, scale, offset): `scale * exp(-(x - bias)**2 / (2 sd**2)) /
  sqrt(2 pi sd) + offset` (sic: PsyNeuLink 0.21 divides by sqrt(2 pi sd), not by the normal density's
  sqrt(2 pi) sd; the fixture's numbers say so), not an MDF standard function.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import UnsupportedError
from . import to_onnx
from .base import Alias, OpDef, register, torch_module

_TWO_PI = 2.0 * float(np.pi)


def _logistic_np(variable0: Any, gain: Any, bias: Any, x_0: Any, scale: Any, offset: Any) -> Any:
    return scale / (1.0 + np.exp(-gain * (variable0 + bias - x_0))) + offset


def _logistic_torch(variable0: Any, gain: Any, bias: Any, x_0: Any, scale: Any, offset: Any) -> Any:
    return scale / (1.0 + torch_module().exp(-gain * (variable0 + bias - x_0))) + offset


def _relu_np(variable0: Any, gain: Any, bias: Any, leak: Any) -> Any:
    x = gain * (variable0 - bias)
    return np.maximum(x, leak * x)


def _relu_torch(variable0: Any, gain: Any, bias: Any, leak: Any) -> Any:
    torch = torch_module()
    x = gain * (variable0 - bias)
    return torch.maximum(x, leak * x)


def _gaussian_np(variable0: Any, standard_deviation: Any, bias: Any, scale: Any, offset: Any) -> Any:
    g = np.exp(-(variable0 - bias) ** 2 / (2.0 * standard_deviation ** 2)) / np.sqrt(_TWO_PI * standard_deviation)
    return scale * g + offset


def _gaussian_torch(variable0: Any, standard_deviation: Any, bias: Any, scale: Any, offset: Any) -> Any:
    torch = torch_module()
    sd = torch.as_tensor(standard_deviation, dtype=torch.float64) if isinstance(standard_deviation, (int, float)) \
        else standard_deviation
    g = torch.exp(-(variable0 - bias) ** 2 / (2.0 * sd ** 2)) / torch.sqrt(_TWO_PI * sd)
    return scale * g + offset


def _written_number(written: Mapping[str, Any], arg: str, default: float) -> bool:
    """Is argument `arg` absent or written as the number `default`?"""
    v = written.get(arg, default)
    return not isinstance(v, bool) and isinstance(v, (int, float)) and v == default


def _relu_check(written: Mapping[str, Any], where: str) -> None:
    """PsyNeuLink's ReLU does not apply scale or offset: refuse values where reading them either way differs."""
    bad = [f"{a}={written[a]!r}" for a, d in (("scale", 1.0), ("offset", 0.0))
           if a in written and not _written_number(written, a, d)]
    if bad:
        raise UnsupportedError(f"relu with {', '.join(bad)}: PsyNeuLink's ReLU computes max(x, leak * x) with "
                               "x = gain * (variable0 - bias) and does not apply scale or offset; only scale 1, "
                               "offset 0 are read", where=where)


register(OpDef("PsyNeuLinkLogistic", ("variable0", "gain", "bias", "x_0", "scale", "offset"), _logistic_np,
               _logistic_torch, defaults={"gain": 1.0, "bias": 0.0, "x_0": 0.0, "scale": 1.0, "offset": 0.0},
               elementwise=True, formula="scale / (1.0 + numpy.exp(-gain * (variable0 + bias - x_0))) + offset",
               description="PsyNeuLink's Logistic: scale / (1 + exp(-gain * (x + bias - x_0))) + offset (offset "
                           "outside; a `logistic` call writing x_0 or scale)",
               derivative="gain * (out - offset) * (1.0 - (out - offset) / scale)",
               onnx_export=to_onnx.logistic_pnl))
register(OpDef("PsyNeuLinkReLU", ("variable0", "gain", "bias", "leak"), _relu_np, _relu_torch,
               defaults={"gain": 1.0, "bias": 0.0, "leak": 0.0}, elementwise=True,
               formula="numpy.maximum(gain * (variable0 - bias), leak * (gain * (variable0 - bias)))",
               description="PsyNeuLink's ReLU: max(x, leak * x) with x = gain * (x - bias)",
               derivative="numpy.where(gain * (variable0 - bias) >= leak * (gain * (variable0 - bias)), gain, "
                          "leak * gain)",
               aliases=(Alias("relu", ignores=("scale", "offset"), check=_relu_check),),
               onnx_export=to_onnx.relu_pnl))
_GAUSS = ("numpy.exp(-(variable0 - bias) ** 2 / (2.0 * standard_deviation ** 2)) / "
          f"numpy.sqrt({_TWO_PI!r} * standard_deviation)")
register(OpDef("gaussian", ("variable0", "standard_deviation", "bias", "scale", "offset"), _gaussian_np,
               _gaussian_torch, defaults={"standard_deviation": 1.0, "bias": 0.0, "scale": 1.0, "offset": 0.0},
               elementwise=True, formula=f"scale * ({_GAUSS}) + offset",
               description="PsyNeuLink's Gaussian: scale * exp(-(x - bias)**2 / (2 sd**2)) / sqrt(2 pi sd) + offset "
                           "(sqrt(2 pi sd), as PsyNeuLink computes it, not the normal density's sqrt(2 pi) sd)",
               derivative=f"-(variable0 - bias) / standard_deviation ** 2 * scale * ({_GAUSS})",
               onnx_export=to_onnx.gaussian))
