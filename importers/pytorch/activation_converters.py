"""Converters of the activation layers ONNX has ops for, and of nn.Embedding: nn.ELU / nn.SELU / nn.Hardsigmoid /
nn.Softplus (and their F. functions) as the registry's `Elu`, `Selu`, `HardSigmoid`, `Softplus`; nn.PReLU as
`PRelu` (its weight a learnable parameter, one slope per channel: axis 1 of torch's tensor); nn.LogSoftmax
(F.log_softmax, Tensor.log_softmax) as `LogSoftmax` over the per-trial axis; nn.Embedding as `Gather` along axis 0
of the learnable table, indexed by the (float-valued) token ids of each trial.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .builder import IN, Builder
from .registry import add_converter, aten
from .values import Call, MDFTensor, Weight

# torch's SELU constants (torch.nn.SELU's documentation): double precision, unlike ONNX's float32 defaults
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _number(call: Call, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise call.unsupported(f"{what} {value!r} is not a number")
    return float(value)


def _scalars(b: Builder, call: Call, function: str, **args: float) -> MDFTensor:
    """Registry function `function` of the input with scalar arguments `args`."""
    return b.elementwise(call, call.tensor(), function, {"function": function, "args": {"X": IN, **args}})


@add_converter(nn.ELU)
def _elu_module(b: Builder, call: Call) -> MDFTensor:
    """nn.ELU(alpha)."""
    m = call.module
    assert isinstance(m, nn.ELU)  # add_converter(nn.ELU) dispatches on the module class
    return _scalars(b, call, "Elu", alpha=_number(call, m.alpha, "alpha"))


@add_converter(F.elu, aten("elu.default"))
def _elu_function(b: Builder, call: Call) -> MDFTensor:
    """F.elu / aten.elu (aten's scale and input_scale must be 1)."""
    if call.kwargs.get("scale", 1) != 1 or call.kwargs.get("input_scale", 1) != 1 or len(call.args) > 2:
        raise call.unsupported("elu with scale or input_scale")
    return _scalars(b, call, "Elu", alpha=_number(call, call.arg(1, "alpha", 1.0), "alpha"))


@add_converter(nn.SELU, F.selu, torch.selu, aten("selu.default"))
def _selu(b: Builder, call: Call) -> MDFTensor:
    """SELU with torch's alpha and scale."""
    return _scalars(b, call, "Selu", alpha=SELU_ALPHA, gamma=SELU_SCALE)


@add_converter(nn.Hardsigmoid, F.hardsigmoid, aten("hardsigmoid.default"))
def _hardsigmoid(b: Builder, call: Call) -> MDFTensor:
    """Hardsigmoid: clip(x / 6 + 1 / 2, 0, 1)."""
    return _scalars(b, call, "HardSigmoid", alpha=1.0 / 6.0, beta=0.5)


def _softplus(b: Builder, call: Call, beta: Any) -> MDFTensor:
    """Softplus with beta 1: log(1 + exp(x)) (torch's linear branch above `threshold` differs from it by less than
    exp(-threshold))."""
    if _number(call, beta, "beta") != 1.0:
        raise call.unsupported(f"softplus beta={beta!r} (only 1)")
    return b.elementwise(call, call.tensor(), "Softplus", {"function": "Softplus", "args": {"X": IN}})


@add_converter(nn.Softplus)
def _softplus_module(b: Builder, call: Call) -> MDFTensor:
    """nn.Softplus(beta=1)."""
    m = call.module
    assert isinstance(m, nn.Softplus)  # add_converter(nn.Softplus) dispatches on the module class
    return _softplus(b, call, m.beta)


@add_converter(F.softplus, aten("softplus.default"))
def _softplus_function(b: Builder, call: Call) -> MDFTensor:
    """F.softplus / aten.softplus (beta 1)."""
    return _softplus(b, call, call.arg(1, "beta", 1.0))


@add_converter(nn.PReLU)
def _prelu(b: Builder, call: Call) -> MDFTensor:
    """nn.PReLU(num_parameters): one slope, or one per channel (torch's axis 1: the first per-trial axis)."""
    m = call.module
    assert isinstance(m, nn.PReLU)  # add_converter(nn.PReLU) dispatches on the module class
    x = call.tensor()
    if x.batch_axis != 0:
        raise call.unsupported("PReLU of a tensor whose batch axis is not axis 0")
    c = int(m.weight.numel())
    if c > 1 and (not x.shape or x.shape[0] != c):
        raise call.unsupported(f"PReLU with {c} slopes of an input with per-trial shape {x.shape}")
    key = b.key(call.path, "weight")
    if c == 1 or len(x.shape) == 1:
        return b.weighted_op(call, x, "PRelu", {"X": IN}, {"slope": Weight(key, m.weight)}, x.shape, "PReLU")
    shaped = m.weight.detach().reshape((c,) + (1,) * (len(x.shape) - 1))
    out = b.weighted_op(call, x, "PRelu", {"X": IN}, {"slope": Weight(key, shaped)}, x.shape, "PReLU")
    b.nodes[out.node]["metadata"]["mdfbridge"]["torch_keys"]["slope"]["shape"] = [c]  # torch's layout
    return out


def _log_softmax(b: Builder, call: Call, dim: Any) -> MDFTensor:
    """LogSoftmax over one per-trial axis (torch's dim, the batch axis excluded)."""
    x = call.tensor()
    ndim = len(x.shape) + b.lead
    if dim is None:  # torch's legacy implicit dim
        dim = 0 if ndim in (0, 1, 3) else 1
    if isinstance(dim, bool) or not isinstance(dim, int) or not -ndim <= dim < ndim:
        raise call.unsupported(f"log_softmax over dim={dim!r} of a {ndim}-d tensor")
    d = dim % ndim
    if x.batch_axis is not None and b.lead and d == x.batch_axis:
        raise call.unsupported(f"log_softmax over dim={dim}, the batch axis (it mixes trials)")
    axis = d - (1 if b.lead and x.batch_axis is not None and d > x.batch_axis else 0)
    return b.elementwise(call, x, "LogSoftmax", {"function": "LogSoftmax", "args": {"X": IN, "axis": axis}})


@add_converter(nn.LogSoftmax)
def _log_softmax_module(b: Builder, call: Call) -> MDFTensor:
    """nn.LogSoftmax(dim)."""
    m = call.module
    assert isinstance(m, nn.LogSoftmax)  # add_converter(nn.LogSoftmax) dispatches on the module class
    return _log_softmax(b, call, m.dim)


@add_converter(F.log_softmax, torch.log_softmax, torch.Tensor.log_softmax, aten("log_softmax.int"),
               aten("_log_softmax.default"))
def _log_softmax_function(b: Builder, call: Call) -> MDFTensor:
    """F.log_softmax / torch.log_softmax / Tensor.log_softmax / aten log_softmax."""
    if call.kwargs.get("dtype") is not None:
        raise call.unsupported("log_softmax with a dtype argument")
    return _log_softmax(b, call, call.arg(1, "dim"))


@add_converter(nn.Embedding)
def _embedding(b: Builder, call: Call) -> MDFTensor:
    """nn.Embedding: Gather(table, ids, axis=0), the table learnable (max_norm, which renormalises the table in
    place, is refused)."""
    m = call.module
    assert isinstance(m, nn.Embedding)  # add_converter(nn.Embedding) dispatches on the module class
    if m.max_norm is not None:
        raise call.unsupported("Embedding with max_norm (it rewrites the table while looking it up)")
    ids = call.tensor()
    shape = tuple(ids.shape) + (int(m.embedding_dim),)
    return b.weighted_op(call, ids, "Gather", {"indices": IN, "axis": 0}, {"data": Weight(b.key(call.path, "weight"),
                                                                                          m.weight)},
                         shape, "Embedding")
