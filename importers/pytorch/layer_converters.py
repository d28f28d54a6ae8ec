"""Converters of convolution, normalization, pooling and Gelu layers: nn.Conv1d/2d/3d (F.conv1d/2d/3d) as the
registry's `Conv`, nn.LayerNorm (F.layer_norm) as `LayerNormalization`, nn.GELU (F.gelu) as `Gelu`,
nn.MaxPool1d/2d/3d and nn.AvgPool1d/2d/3d (F.max_pool1d/2d, F.avg_pool1d/2d) as `MaxPool` / `AveragePool`,
nn.AdaptiveAvgPool1d/2d and nn.AdaptiveMaxPool1d/2d to output size 1 (F.adaptive_avg_pool1d/2d) as the global pools,
nn.BatchNorm1d/2d/3d as `BatchNormalization` (running statistics as parameters training updates).

Conv and LayerNorm nodes hold the layer's weights as learnable parameters in torch's layout (`Builder.weighted_op`:
Conv's W (M, C/groups, *kernel) and B (M,), LayerNorm's Scale and B of the normalized shape), each recording its
torch key, so `program_state_dict` gives them back. Padding 'same' is written as explicit pads (torch puts the odd
one at the end); padding modes other than 'zeros' are refused.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch.nn.functional as F
from torch import nn

from ...ops.convolution import conv_geometry
from ...ops.pooling import pool_geometry
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
    weight = Weight(b.key(call.path, "weight"), m.weight) if m.weight is not None else None
    bias = Weight(b.key(call.path, "bias"), m.bias) if m.bias is not None else None
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
    bias = Weight(b.key(call.path, "bias"), m.bias) if m.bias is not None else None
    return _conv(b, call, k, Weight(b.key(call.path, "weight"), m.weight), bias, m.stride, m.padding, m.dilation,
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


# --------------------------------------------------------------------------------------- pooling

def _pool_args(call: Call, k: int, kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: Any
               ) -> Dict[str, Any]:
    """torch's pooling arguments (stride None or empty: the kernel) as the registry's pool attributes."""
    ks = _tuple(kernel, k, "kernel_size", call)
    ss = ks if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _tuple(stride, k, "stride",
                                                                                                 call)
    p = _tuple(padding, k, "padding", call)
    return {"kernel_shape": list(ks), "strides": list(ss), "pads": list(p + p),
            "dilations": list(_tuple(dilation, k, "dilation", call)), "ceil_mode": int(bool(ceil_mode))}


def _pool(b: Builder, call: Call, k: int, op: str, attrs: Dict[str, Any], kind: str) -> MDFTensor:
    x = call.tensor()
    if len(x.shape) != k + 1:
        raise call.unsupported(f"{kind} of an input with per-trial shape {x.shape} ((C, *spatial) with {k} spatial "
                               "axes expected after the batch axis)")
    try:
        geo = pool_geometry(x.shape, **{a: v for a, v in attrs.items() if a != "count_include_pad"}, what=kind)
    except ValueError as exc:
        raise call.unsupported(str(exc)) from None
    shape = tuple(x.shape[:1]) + geo.out_spatial
    return b.weighted_op(call, x, op, {"X": IN, **attrs}, {}, shape, kind)


def _max_pool_module(b: Builder, call: Call) -> MDFTensor:
    """nn.MaxPool1d/2d/3d (return_indices False)."""
    m = call.module
    assert isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d))  # add_converter dispatches on the class
    k = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}[type(m)]
    if m.return_indices:
        raise call.unsupported(f"MaxPool{k}d return_indices=True (only the pooled values are imported)")
    return _pool(b, call, k, "MaxPool", _pool_args(call, k, m.kernel_size, m.stride, m.padding, m.dilation,
                                                    m.ceil_mode), f"MaxPool{k}d")


def _avg_pool_module(b: Builder, call: Call) -> MDFTensor:
    """nn.AvgPool1d/2d/3d (divisor_override None)."""
    m = call.module
    assert isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))  # add_converter dispatches on the class
    k = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}[type(m)]
    if getattr(m, "divisor_override", None) is not None:
        raise call.unsupported(f"AvgPool{k}d divisor_override={m.divisor_override!r}")
    attrs = _pool_args(call, k, m.kernel_size, m.stride, m.padding, 1, m.ceil_mode)
    attrs["count_include_pad"] = int(bool(m.count_include_pad))
    return _pool(b, call, k, "AveragePool", attrs, f"AvgPool{k}d")


def _max_pool_function(k: int) -> Any:
    def convert(b: Builder, call: Call) -> MDFTensor:
        """F.max_pool<k>d (return_indices False)."""
        if call.arg(6, "return_indices", False):
            raise call.unsupported(f"max_pool{k}d return_indices=True (only the pooled values are imported)")
        attrs = _pool_args(call, k, call.arg(1, "kernel_size"), call.arg(2, "stride"), call.arg(3, "padding", 0),
                           call.arg(4, "dilation", 1), call.arg(5, "ceil_mode", False))
        return _pool(b, call, k, "MaxPool", attrs, f"max_pool{k}d")
    return convert


def _avg_pool_function(k: int) -> Any:
    def convert(b: Builder, call: Call) -> MDFTensor:
        """F.avg_pool<k>d (divisor_override None)."""
        if k > 1 and call.arg(6, "divisor_override") is not None:
            raise call.unsupported(f"avg_pool{k}d divisor_override")
        attrs = _pool_args(call, k, call.arg(1, "kernel_size"), call.arg(2, "stride"), call.arg(3, "padding", 0), 1,
                           call.arg(4, "ceil_mode", False))
        attrs["count_include_pad"] = int(bool(call.arg(5, "count_include_pad", True)))
        return _pool(b, call, k, "AveragePool", attrs, f"avg_pool{k}d")
    return convert


def _global_pool(b: Builder, call: Call, k: int, output_size: Any, op: str, kind: str) -> MDFTensor:
    """An adaptive pool to output size 1 on every spatial axis as the registry's global pool."""
    sizes = (output_size,) * k if isinstance(output_size, int) or output_size is None else tuple(output_size)
    if len(sizes) != k or any(s is not None and int(s) != 1 for s in sizes):
        raise call.unsupported(f"{kind} output_size={output_size!r}; only 1 on every spatial axis (a global pool) "
                               "is supported")
    x = call.tensor()
    if len(x.shape) != k + 1:
        raise call.unsupported(f"{kind} of an input with per-trial shape {x.shape} ((C, *spatial) with {k} spatial "
                               "axes expected after the batch axis)")
    return b.weighted_op(call, x, op, {"X": IN, "spatial": k}, {}, tuple(x.shape[:1]) + (1,) * k, kind)


def _adaptive_module(b: Builder, call: Call) -> MDFTensor:
    """nn.AdaptiveAvgPool1d/2d, nn.AdaptiveMaxPool1d/2d to output size 1 (return_indices False)."""
    m = call.module
    assert isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d))
    kinds = {nn.AdaptiveAvgPool1d: (1, "GlobalAveragePool"), nn.AdaptiveAvgPool2d: (2, "GlobalAveragePool"),
             nn.AdaptiveMaxPool1d: (1, "GlobalMaxPool"), nn.AdaptiveMaxPool2d: (2, "GlobalMaxPool")}
    k, op = kinds[type(m)]
    if getattr(m, "return_indices", False):
        raise call.unsupported(f"{type(m).__name__} return_indices=True")
    return _global_pool(b, call, k, m.output_size, op, type(m).__name__)


def _adaptive_function(k: int, op: str, name: str) -> Any:
    def convert(b: Builder, call: Call) -> MDFTensor:
        """F.adaptive_avg_pool<k>d / F.adaptive_max_pool<k>d to output size 1."""
        return _global_pool(b, call, k, call.arg(1, "output_size"), op, name)
    return convert


add_converter(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)(_max_pool_module)
add_converter(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)(_avg_pool_module)
add_converter(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)(
    _adaptive_module)
add_converter(F.max_pool1d)(_max_pool_function(1))
add_converter(F.max_pool2d)(_max_pool_function(2))
add_converter(F.avg_pool1d)(_avg_pool_function(1))
add_converter(F.avg_pool2d)(_avg_pool_function(2))
add_converter(F.adaptive_avg_pool1d)(_adaptive_function(1, "GlobalAveragePool", "adaptive_avg_pool1d"))
add_converter(F.adaptive_avg_pool2d)(_adaptive_function(2, "GlobalAveragePool", "adaptive_avg_pool2d"))


# --------------------------------------------------------------------------------------- BatchNorm

@add_converter(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _batch_norm_module(b: Builder, call: Call) -> MDFTensor:
    """nn.BatchNorm1d/2d/3d with running statistics (track_running_stats, a momentum) as BatchNormalization:
    weight/bias learnable (ones/zeros constants without affine), running_mean/var the running statistics that
    learn() updates as torch's train() does (num_batches_tracked is kept as it was)."""
    m = call.module
    assert isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))  # add_converter dispatches on the class
    kind = type(m).__name__
    if not m.track_running_stats or m.running_mean is None or m.running_var is None:
        raise call.unsupported(f"{kind} track_running_stats=False (batch statistics in every run)")
    if m.momentum is None:
        raise call.unsupported(f"{kind} momentum=None (a cumulative average); ONNX's BatchNormalization takes a "
                               "momentum")
    x = call.tensor()
    rank = {nn.BatchNorm1d: (1, 2), nn.BatchNorm2d: (3,), nn.BatchNorm3d: (4,)}[type(m)]
    if len(x.shape) not in rank or x.shape[0] != m.num_features:
        raise call.unsupported(f"{kind} of {m.num_features} features on an input with per-trial shape {x.shape}")
    c = m.num_features
    weights = {"scale": Weight(b.key(call.path, "weight"), m.weight), "B": Weight(b.key(call.path, "bias"), m.bias)} \
        if m.affine else {}
    fixed = {} if m.affine else {"scale": np.ones(c), "B": np.zeros(c)}
    running = {"input_mean": Weight(b.key(call.path, "running_mean"), m.running_mean),
               "input_var": Weight(b.key(call.path, "running_var"), m.running_var)}
    args = {"X": IN, "epsilon": float(m.eps), "momentum": 1.0 - float(m.momentum), "channel_axis": 0}
    return b.weighted_op(call, x, "BatchNormalization", args, weights, x.shape, kind, running=running, fixed=fixed)
