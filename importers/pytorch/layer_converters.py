"""Converters of convolution, normalization and Gelu layers: nn.Conv1d/2d/3d (F.conv1d/2d/3d) as the
registry's `Conv`, nn.LayerNorm (F.layer_norm) as `LayerNormalization`, nn.GELU (F.gelu) as `Gelu`.

Conv and LayerNorm nodes hold the layer's weights as learnable parameters in torch's layout (`Builder.weighted_op`:
Conv's W (M, C/groups, *kernel) and B (M,), LayerNorm's Scale and B of the normalized shape), each recording its
torch key, so `program_state_dict` gives them back. Padding 'same' is written as explicit pads (torch puts the odd
one at the end); padding modes other than 'zeros' are refused.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch.nn.functional as F
from torch import nn

from ...ops.convolution import conv_geometry
from .builder import IN, Builder
from .registry import add_converter, aten
from .values import Call, MDFTensor, Weight

# --------------------------------------------------------------------------------------- Gelu


def _gelu(b: Builder, call: Call, approximate: Any) -> MDFTensor:
    """Gelu with torch's `approximate` ('none' or 'tanh')."""
    if approximate not in ("none", "tanh"):
        raise call.unsupported(f"gelu approximate={approximate!r}; torch defines 'none' and 'tanh'")
    return b.elementwise(call, call.tensor(), "Gelu",
                         {"function": "Gelu", "args": {"X": IN, "approximate": str(approximate)}})


@add_converter(nn.GELU)
def _gelu_module(b: Builder, call: Call) -> MDFTensor:
    """nn.GELU(approximate=...)."""
    m = call.module
    assert isinstance(m, nn.GELU)  # add_converter(nn.GELU) dispatches on the module class
    return _gelu(b, call, m.approximate)


@add_converter(F.gelu, aten("gelu.default"))
def _gelu_function(b: Builder, call: Call) -> MDFTensor:
    """F.gelu / aten.gelu."""
    return _gelu(b, call, call.kwargs.get("approximate", "none"))


# --------------------------------------------------------------------------------------- LayerNorm

def _layer_norm(b: Builder, call: Call, normalized_shape: Any, weight: Optional[Weight], bias: Optional[Weight],
                eps: Any) -> MDFTensor:
    """LayerNorm over the last len(normalized_shape) axes: LayerNormalization(axis=-k)."""
    x = call.tensor()
    shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(int(d) for d in normalized_shape)
    k = len(shape)
    if not shape or k > len(x.shape) or x.shape[len(x.shape) - k:] != shape:
        raise call.unsupported(f"layer_norm over normalized_shape {list(shape)} of an input with per-trial shape "
                               f"{x.shape} (the normalized axes must be the last ones of each trial)")
    for what, w in (("weight", weight), ("bias", bias)):
        if w is not None and tuple(w.value.shape) != shape:
            raise call.unsupported(f"layer_norm {what} '{w.key}' of shape {tuple(w.value.shape)}, expected {shape}")
    return b.weighted_op(call, x, "LayerNormalization", {"X": IN, "axis": -k, "epsilon": float(eps)},
                         {"Scale": weight, "B": bias}, x.shape, "LayerNorm")


def _weight(call: Call, value: Any, what: str) -> Optional[Weight]:
    """An optional weight argument, which must be a parameter of the module."""
    if value is None:
        return None
    if not isinstance(value, Weight):
        raise call.unsupported(f"{what} that is not a parameter of the module")
    return value


@add_converter(nn.LayerNorm)
def _layer_norm_module(b: Builder, call: Call) -> MDFTensor:
    """nn.LayerNorm (elementwise_affine True or False, bias True or False)."""
    m = call.module
    assert isinstance(m, nn.LayerNorm)  # add_converter(nn.LayerNorm) dispatches on the module class
    weight = Weight(f"{call.path}.weight", m.weight) if m.weight is not None else None
    bias = Weight(f"{call.path}.bias", m.bias) if m.bias is not None else None
    return _layer_norm(b, call, m.normalized_shape, weight, bias, m.eps)


@add_converter(F.layer_norm, aten("layer_norm.default"))
def _layer_norm_function(b: Builder, call: Call) -> MDFTensor:
    """F.layer_norm / aten.layer_norm on parameters of the module."""
    weight = _weight(call, call.arg(2, "weight"), "a layer_norm weight")
    bias = _weight(call, call.arg(3, "bias"), "a layer_norm bias")
    return _layer_norm(b, call, call.arg(1, "normalized_shape"), weight, bias, call.arg(4, "eps", 1e-5))


# --------------------------------------------------------------------------------------- Conv1d, Conv2d, Conv3d

def _tuple(v: Any, k: int, what: str, call: Call) -> Tuple[int, ...]:
    """An int or k ints (torch's conv arguments)."""
    vals = (int(v),) * k if isinstance(v, int) else tuple(int(x) for x in v)
    if len(vals) == 1 and k > 1:
        vals = vals * k
    if len(vals) != k:
        raise call.unsupported(f"conv {what}={v!r} for a {k}-D convolution")
    return vals


def _pads(call: Call, padding: Any, k: int, kernel: Sequence[int], stride: Sequence[int],
          dilation: Sequence[int]) -> Tuple[int, ...]:
    """torch's padding (ints, 'valid', 'same') as ONNX pads (begins, then ends)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * k)
        if padding != "same":
            raise call.unsupported(f"conv padding={padding!r}; torch defines 'valid' and 'same'")
        if any(s != 1 for s in stride):
            raise call.unsupported("conv padding='same' with a stride other than 1 (torch refuses it too)")
        total = [dilation[i] * (kernel[i] - 1) for i in range(k)]
        return tuple(t // 2 for t in total) + tuple(t - t // 2 for t in total)
    p = _tuple(padding, k, "padding", call)
    return p + p


def _conv(b: Builder, call: Call, k: int, weight: Weight, bias: Optional[Weight], stride: Any, padding: Any,
          dilation: Any, groups: Any) -> MDFTensor:
    """A k-D torch convolution as the registry's Conv."""
    x = call.tensor()
    w_shape = tuple(int(d) for d in weight.value.shape)
    if len(w_shape) != k + 2:
        raise call.unsupported(f"conv{k}d weight '{weight.key}' of shape {w_shape}")
    strides, dilations = _tuple(stride, k, "stride", call), _tuple(dilation, k, "dilation", call)
    pads = _pads(call, padding, k, w_shape[2:], strides, dilations)
    args: Dict[str, Any] = {"X": IN, "strides": list(strides), "pads": list(pads), "dilations": list(dilations),
                            "group": int(groups)}
    if len(x.shape) != k + 1:
        raise call.unsupported(f"conv{k}d of an input with per-trial shape {x.shape} ((C, *spatial) with {k} "
                               "spatial axes expected after the batch axis)")
    try:
        geo = conv_geometry(x.shape, w_shape, strides, pads, dilations, int(groups))
    except ValueError as exc:
        raise call.unsupported(str(exc)) from None
    return b.weighted_op(call, x, "Conv", args, {"W": weight, "B": bias},
                         (geo.out_channels,) + geo.out_spatial, f"Conv{k}d")


def _conv_module(b: Builder, call: Call) -> MDFTensor:
    """nn.Conv1d / nn.Conv2d / nn.Conv3d (padding_mode 'zeros')."""
    m = call.module
    assert isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))  # add_converter dispatches on the module class
    k = len(m.kernel_size)
    if m.padding_mode != "zeros":
        raise call.unsupported(f"Conv{k}d padding_mode={m.padding_mode!r}; only 'zeros' (ONNX Conv's zero padding) "
                               "is supported")
    bias = Weight(f"{call.path}.bias", m.bias) if m.bias is not None else None
    return _conv(b, call, k, Weight(f"{call.path}.weight", m.weight), bias, m.stride, m.padding, m.dilation,
                 m.groups)


def _conv_function(k: int) -> Any:
    def convert(b: Builder, call: Call) -> MDFTensor:
        """F.conv<k>d / aten.conv<k>d on parameters of the module."""
        weight = _weight(call, call.arg(1, "weight"), f"a conv{k}d weight")
        if weight is None:
            raise call.unsupported(f"conv{k}d without a weight")
        bias = _weight(call, call.arg(2, "bias"), f"a conv{k}d bias")
        return _conv(b, call, k, weight, bias, call.arg(3, "stride", 1), call.arg(4, "padding", 0),
                     call.arg(5, "dilation", 1), call.arg(6, "groups", 1))
    return convert


add_converter(nn.Conv1d, nn.Conv2d, nn.Conv3d)(_conv_module)
add_converter(F.conv1d, aten("conv1d.default"), aten("conv1d.padding"))(_conv_function(1))
add_converter(F.conv2d, aten("conv2d.default"), aten("conv2d.padding"))(_conv_function(2))
add_converter(F.conv3d, aten("conv3d.default"), aten("conv3d.padding"))(_conv_function(3))
