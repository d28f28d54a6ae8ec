"""Activation functions of neural-network layers that are no MDF standard or PsyNeuLink transfer function: Gelu
(ONNX opset 20's and torch's, `onnx::Gelu` an alias), ONNX's Elu, LeakyRelu, Selu, HardSigmoid, PRelu (a
learnable slope) and LogSoftmax (one axis, or ONNX's opset < 13 form over the axes `axis`.. together).

Gelu(X) = X * Phi(X) = 0.5 * X * (1 + erf(X / sqrt(2))) (`approximate` 'none', the default), or with
`approximate` 'tanh' 0.5 * X * (1 + tanh(sqrt(2 / pi) * (X + 0.044715 * X**3))), as torch.nn.GELU and ONNX Gelu
define them. The record's derivative and LLVM scalar form are those of the exact (erf) form; the LLVM backend
refuses 'tanh' (it compiles a record's scalar form, which reads no attribute). ONNX export writes one Gelu node
from opset 20 on, else the formula with Erf (or Tanh), Mul and Add nodes (opset 17, the default).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Mapping

import numpy as np

from . import torchlib
from .arithmetic import _np_erf
from .base import Alias, OnnxImport, OpDef, register, shift_axis, torch_module
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


# --------------------------------------------------------------------------- ONNX's parametrised activations
# Elu, LeakyRelu, Selu, HardSigmoid and PRelu: elementwise records whose parameters (alpha, gamma, beta, slope)
# are arguments (scalars, or PRelu's slope tensor, learnable), so the LLVM backend compiles their `formula`.
# ONNX export writes the ONNX op itself in float32 models when its attributes are exact float32 numbers (ORT has
# float32 kernels only), else the formula with Where, Exp, Mul and Add nodes.

def _where_pos(X: Any, pos: Any, neg: Any, strict_negative: bool = False) -> Any:
    x = np.asarray(X, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.where(x < 0 if strict_negative else x > 0, neg if strict_negative else pos,
                     pos if strict_negative else neg)
    return y if np.ndim(y) else np.float64(y)


def elu_numpy(X: Any, alpha: Any = 1.0) -> Any:
    """ONNX Elu: X where X > 0, alpha * (exp(X) - 1) elsewhere."""
    x = np.asarray(X, dtype=np.float64)
    return _where_pos(x, x, alpha * (np.exp(np.minimum(x, 0.0)) - 1.0))


def elu_torch(X: Any, alpha: Any = 1.0) -> Any:
    """torch.where(X > 0, X, alpha * (exp(min(X, 0)) - 1))."""
    torch = torch_module()
    x, a = torchlib.tt_like(X, alpha)
    return torch.where(x > 0, x, a * (torch.exp(torch.clamp(x, max=0.0)) - 1.0))


def leaky_relu_numpy(X: Any, alpha: Any = 0.01) -> Any:
    """ONNX LeakyRelu: X where X >= 0, alpha * X below."""
    x = np.asarray(X, dtype=np.float64)
    return _where_pos(x, x, alpha * x, strict_negative=True)


def leaky_relu_torch(X: Any, alpha: Any = 0.01) -> Any:
    """torch.where(X < 0, alpha * X, X)."""
    x, a = torchlib.tt_like(X, alpha)
    return torch_module().where(x < 0, a * x, x)


def selu_numpy(X: Any, alpha: Any = 1.67326319217681884765625, gamma: Any = 1.05070102214813232421875) -> Any:
    """ONNX Selu: gamma * X where X > 0, gamma * alpha * (exp(X) - 1) elsewhere (the defaults: ONNX's float32
    constants)."""
    x = np.asarray(X, dtype=np.float64)
    return gamma * _where_pos(x, x, alpha * (np.exp(np.minimum(x, 0.0)) - 1.0))


def selu_torch(X: Any, alpha: Any = 1.67326319217681884765625, gamma: Any = 1.05070102214813232421875) -> Any:
    """gamma * torch.where(X > 0, X, alpha * (exp(min(X, 0)) - 1))."""
    torch = torch_module()
    x, a, g = torchlib.tt_like(X, alpha, gamma)
    return g * torch.where(x > 0, x, a * (torch.exp(torch.clamp(x, max=0.0)) - 1.0))


def hard_sigmoid_numpy(X: Any, alpha: Any = 0.2, beta: Any = 0.5) -> Any:
    """ONNX HardSigmoid: max(0, min(1, alpha * X + beta))."""
    y = np.clip(alpha * np.asarray(X, dtype=np.float64) + beta, 0.0, 1.0)
    return y if np.ndim(y) else np.float64(y)


def hard_sigmoid_torch(X: Any, alpha: Any = 0.2, beta: Any = 0.5) -> Any:
    """torch.clamp(alpha * X + beta, 0, 1)."""
    x, a, b = torchlib.tt_like(X, alpha, beta)
    return torch_module().clamp(a * x + b, 0.0, 1.0)


def prelu_numpy(X: Any, slope: Any) -> Any:
    """ONNX PRelu: X where X >= 0, slope * X below (slope broadcasts against X)."""
    x = np.asarray(X, dtype=np.float64)
    return _where_pos(x, x, np.asarray(slope, dtype=np.float64) * x, strict_negative=True)


def prelu_torch(X: Any, slope: Any) -> Any:
    """torch.where(X < 0, slope * X, X) (differentiable in slope)."""
    x, s = torchlib.tt_like(X, slope)
    return torch_module().where(x < 0, s * x, x)


def _exact_scalars(b: OnnxGraphBuilder, op: Op, names: Any, defaults: Mapping[str, float]) -> Any:
    """The float values of the scalar arguments `names` when each is a constant the float32 model writes
    exactly as an ONNX attribute, else None."""
    from ..exporters.onnx_graph import Const

    out = {}
    for k in names:
        v = b.arg(op, k, defaults[k])
        if not isinstance(v, Const) or not v.is_scalar() or not b.exact_attr(float(v.value)):
            return None
        out[k] = float(v.value)
    return out if b.dtype == "float32" else None


def _negative_part_exp(b: OnnxGraphBuilder, x: Operand) -> Operand:
    """exp(min(X, 0)) - 1 (no overflow for large X)."""
    clipped = b.nary("Min", [x, b.literal(0.0)])
    return b.sub(b.unary("Exp", clipped), b.literal(1.0))


def export_elu(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Elu node, or Where(X > 0, X, alpha * (exp(min(X, 0)) - 1))."""
    x = b.required_arg(op, "X")
    exact = _exact_scalars(b, op, ("alpha",), {"alpha": 1.0})
    if exact is not None:
        return b.unary("Elu", x, alpha=exact["alpha"])
    neg = b.mul(_negative_part_exp(b, x), b.arg(op, "alpha", 1.0))
    return b.select(b.nary("Greater", [x, b.literal(0.0)], out_kind="bool"), x, neg)


def export_leaky_relu(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One LeakyRelu node, or Where(X < 0, alpha * X, X)."""
    x = b.required_arg(op, "X")
    exact = _exact_scalars(b, op, ("alpha",), {"alpha": 0.01})
    if exact is not None:
        return b.unary("LeakyRelu", x, alpha=exact["alpha"])
    return b.select(b.nary("Less", [x, b.literal(0.0)], out_kind="bool"), b.mul(x, b.arg(op, "alpha", 0.01)), x)


_SELU = {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875}


def export_selu(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Selu node, or gamma * Where(X > 0, X, alpha * (exp(min(X, 0)) - 1))."""
    x = b.required_arg(op, "X")
    exact = _exact_scalars(b, op, ("alpha", "gamma"), _SELU)
    if exact is not None:
        return b.unary("Selu", x, **exact)
    neg = b.mul(_negative_part_exp(b, x), b.arg(op, "alpha", _SELU["alpha"]))
    y = b.select(b.nary("Greater", [x, b.literal(0.0)], out_kind="bool"), x, neg)
    return b.mul(y, b.arg(op, "gamma", _SELU["gamma"]))


def export_hard_sigmoid(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One HardSigmoid node, or Min(Max(alpha * X + beta, 0), 1)."""
    x = b.required_arg(op, "X")
    exact = _exact_scalars(b, op, ("alpha", "beta"), {"alpha": 0.2, "beta": 0.5})
    if exact is not None:
        return b.unary("HardSigmoid", x, **exact)
    z = b.add(b.mul(x, b.arg(op, "alpha", 0.2)), b.arg(op, "beta", 0.5))
    return b.nary("Min", [b.nary("Max", [z, b.literal(0.0)]), b.literal(1.0)])


def export_prelu(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One PRelu node in float32 models (slope broadcast as ONNX does: from the right), else Where(X < 0, slope *
    X, X)."""
    x, slope = b.operands(op, "X", "slope")
    xv = b.as_val(x)
    s = b.as_val(slope)
    if b.dtype == "float32" and not s.batched and s.rank <= xv.rank:
        return b.emit("PRelu", [xv, s], shape=xv.shape, batched=xv.batched)
    return b.select(b.nary("Less", [xv, b.literal(0.0)], out_kind="bool"), b.mul(xv, slope), xv)


def _import_scalars(function: str, attrs: Mapping[str, float]) -> Any:
    """The ONNX activation `function` (an onnx:: alias) of X with its float attributes as scalar arguments."""
    def handle(n: NodeImport) -> Emitted:
        args: Dict[str, Any] = {"X": n.dynamic(0, "X")}
        args.update({k: float(n.attr(k, d)) for k, d in attrs.items()})
        return n.call(function, args)
    return handle


def import_prelu(n: NodeImport) -> Emitted:
    """PRelu: X and its slope (broadcast against X; a constant slope is a learnable weight)."""
    args = n.broadcast_args(("X", "slope"))
    if args["X"].kind != "dynamic":
        raise n.fail("input 0 (X) must be computed from the graph inputs")
    return n.call("onnx::PRelu", args, ["slope"] if args["slope"].kind == "const" else [])


def import_prelu_channels(n: NodeImport) -> Emitted:
    """PRelu before opset 7 (no broadcasting rule: a 1-D slope of C values is one per channel, axis 1, as torch's
    exports of nn.PReLU(C) at opset 6 mean): the slope reshaped to (C, 1, ..., 1) first."""
    x, slope = n.dynamic(0, "X"), n.input(1)
    if slope is None or slope.kind != "const":
        raise n.fail("slope must be a constant before opset 7")
    assert slope.value is not None
    r = n.full_rank(x)
    if slope.value.ndim == 1 and slope.value.size > 1 and r >= 2:
        channels = x.shape[0] if n.batch_axis else x.shape[1]
        if slope.value.size != channels:
            raise n.fail(f"{slope.value.size} slopes for {channels} channels")
        slope = slope.with_value(slope.value.reshape((-1,) + (1,) * (r - 2)))
    return n.call("onnx::PRelu", {"X": x, "slope": n.per_trial_const(slope, r)}, ["slope"])


_ELU_FORM = "numpy.where(X > 0, X, alpha * (numpy.exp(numpy.minimum(X, 0.0)) - 1.0))"
register(OpDef("Elu", ("X", "alpha"), elu_numpy, elu_torch, defaults={"alpha": 1.0}, elementwise=True,
               description="ONNX Elu / torch.nn.ELU: X where X > 0, alpha * (exp(X) - 1) elsewhere",
               aliases=(Alias("onnx::Elu"),), formula=_ELU_FORM,
               derivatives={"X": "numpy.where(X > 0, 1.0, alpha * numpy.exp(numpy.minimum(X, 0.0)))"},
               onnx_export=export_elu,
               onnx_import=(OnnxImport("Elu", 6, None, _import_scalars("onnx::Elu", {"alpha": 1.0})),)))
register(OpDef("LeakyRelu", ("X", "alpha"), leaky_relu_numpy, leaky_relu_torch, defaults={"alpha": 0.01},
               elementwise=True, description="ONNX LeakyRelu / torch.nn.LeakyReLU: X where X >= 0, alpha * X below",
               aliases=(Alias("onnx::LeakyRelu"),), formula="numpy.where(X < 0, alpha * X, X)",
               derivatives={"X": "numpy.where(X < 0, alpha, 1.0)"}, onnx_export=export_leaky_relu,
               onnx_import=(OnnxImport("LeakyRelu", 6, None, _import_scalars("onnx::LeakyRelu", {"alpha": 0.01})),)))
register(OpDef("Selu", ("X", "alpha", "gamma"), selu_numpy, selu_torch, defaults=dict(_SELU), elementwise=True,
               description="ONNX Selu / torch.nn.SELU: gamma * (X where X > 0, alpha * (exp(X) - 1) elsewhere)",
               aliases=(Alias("onnx::Selu"),), formula=f"gamma * {_ELU_FORM}",
               derivatives={"X": "gamma * numpy.where(X > 0, 1.0, alpha * numpy.exp(numpy.minimum(X, 0.0)))"},
               onnx_export=export_selu,
               onnx_import=(OnnxImport("Selu", 6, None, _import_scalars("onnx::Selu", _SELU)),)))
register(OpDef("HardSigmoid", ("X", "alpha", "beta"), hard_sigmoid_numpy, hard_sigmoid_torch,
               defaults={"alpha": 0.2, "beta": 0.5}, elementwise=True,
               description="ONNX HardSigmoid / torch.nn.Hardsigmoid (alpha 1/6): max(0, min(1, alpha * X + beta))",
               aliases=(Alias("onnx::HardSigmoid"),), formula="numpy.clip(alpha * X + beta, 0.0, 1.0)",
               derivatives={"X": "numpy.where(numpy.logical_and(alpha * X + beta > 0.0, alpha * X + beta < 1.0), "
                                 "alpha, 0.0)"},
               onnx_export=export_hard_sigmoid,
               onnx_import=(OnnxImport("HardSigmoid", 6, None,
                                       _import_scalars("onnx::HardSigmoid", {"alpha": 0.2, "beta": 0.5})),)))
register(OpDef("PRelu", ("X", "slope"), prelu_numpy, prelu_torch, elementwise=True,
               description="ONNX PRelu / torch.nn.PReLU: X where X >= 0, slope * X below (slope broadcasts; "
                           "learnable)",
               aliases=(Alias("onnx::PRelu"),), formula="numpy.where(X < 0, slope * X, X)",
               derivatives={"X": "numpy.where(X < 0, slope, 1.0)", "slope": "numpy.where(X < 0, X, 0.0)"},
               onnx_export=export_prelu, onnx_import=(OnnxImport("PRelu", 7, None, import_prelu),
                                                      OnnxImport("PRelu", 1, 6, import_prelu_channels))))


# --------------------------------------------------------------------------- LogSoftmax

def _axes_of(axis: Any) -> Any:
    return tuple(int(a) for a in axis) if isinstance(axis, (list, tuple)) else int(axis)


def log_softmax_numpy(X: Any, axis: Any = -1) -> Any:
    """log(softmax(X)) over `axis` (an int, or a tuple of axes normalised together: ONNX's opset < 13 form)."""
    x = np.asarray(X, dtype=np.float64)
    ax = _axes_of(axis)
    m = np.max(x, axis=ax, keepdims=True)
    with np.errstate(invalid="ignore"):
        return x - m - np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True))


def log_softmax_torch(X: Any, axis: Any = -1) -> Any:
    """torch.log_softmax (one axis), or X - logsumexp(X, axes)."""
    torch = torch_module()
    x = torchlib.tt(X)
    ax = _axes_of(axis)
    if isinstance(ax, int):
        return torch.log_softmax(x, dim=ax)
    return x - torch.logsumexp(x, dim=ax, keepdim=True)


def export_log_softmax(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One LogSoftmax node over one axis, or X - max - log(sum(exp(X - max))) over several."""
    x = b.required_arg(op, "X")
    ax = _axes_of(b.static_arg(op, "axis", -1))
    if isinstance(ax, int):
        return b.emit("LogSoftmax", [x], shape=x.shape, batched=x.batched, axis=x.onnx_axis(ax))
    m = b.reduce("ReduceMax", x, list(ax), True)
    shifted = b.as_val(b.sub(x, m))
    total = b.reduce("ReduceSum", b.unary("Exp", shifted), list(ax), True, axes_input_since=13)
    return b.sub(shifted, b.unary("Log", total))


def import_log_softmax(n: NodeImport) -> Emitted:
    """LogSoftmax from opset 13: over one per-trial axis."""
    x = n.dynamic(0, "input")
    return n.call("onnx::LogSoftmax", {"input": x, "axis": n.axis(int(n.attr("axis", -1)), x)})


def import_log_softmax_flattened(n: NodeImport) -> Emitted:
    """LogSoftmax before opset 13 normalises over the axes `axis`.. together (the input read as 2-D)."""
    x = n.dynamic(0, "input")
    r = n.full_rank(x)
    axis = int(n.attr("axis", 1))
    first = axis + r if axis < 0 else axis
    if not 0 <= first < r:
        raise n.fail(f"axis {axis} is out of range for rank {r}")
    axes = [n.axis(a, x) for a in range(first, r)]
    return n.call("onnx::LogSoftmax", {"input": x, "axis": axes[0] if len(axes) == 1 else axes})


register(OpDef("LogSoftmax", ("X",), log_softmax_numpy, log_softmax_torch, defaults={"axis": -1}, attrs=("axis",),
               batch_rule=lambda batched, attrs: shift_axis(batched, {**attrs, "axis": attrs.get("axis", -1)}),
               description="ONNX LogSoftmax / torch.log_softmax: log(softmax(X)) over axis (a list: over those "
                           "axes together, ONNX's opset < 13 form)",
               shape=lambda a: tuple(a["X"]), aliases=(Alias("onnx::LogSoftmax", {"input": "X"}),),
               onnx_export=export_log_softmax,
               onnx_import=(OnnxImport("LogSoftmax", 13, None, import_log_softmax),
                            OnnxImport("LogSoftmax", 1, 12, import_log_softmax_flattened))))
