"""Convolution: ONNX's Conv (1-D, 2-D and 3-D), `onnx::Conv` an alias.

Semantics are ONNX's: X (..., C, *spatial) per trial, W (M, C/group, *kernel) as ONNX and torch hold conv weights,
an optional bias B (M,), and the attributes `strides`, `pads` (begin values of every spatial axis, then the end
values), `dilations`, `group` and `kernel_shape` (W's spatial shape when written). Axes before (C, *spatial) are
independent images, so a leading batch axis is ONNX's N (the batch rule passes the call through as it is). The
numpy implementation (the oracle) is a strided window view of the zero-padded input contracted with the weights
by einsum; torch calls torch.nn.functional.conv1d/2d/3d. W and B are the weights (`weight_arg`; the ONNX importer
and the torch importer mark them learnable). Training runs on torch (autograd); the LLVM backend has no conv
kernel and refuses the op.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import torchlib
from .base import Alias, OnnxImport, OpDef, only_x, register, torch_module

if TYPE_CHECKING:
    from ..exporters.onnx_graph import OnnxGraphBuilder, Operand
    from ..importers.onnx_node import Emitted, NodeImport, Tensor
    from ..program import Op

CONV_ATTRS = ("strides", "pads", "dilations", "group", "kernel_shape")
CONV_DEFAULTS: Dict[str, Any] = {"B": None, "strides": None, "pads": None, "dilations": None, "group": 1,
                                 "kernel_shape": None}
_SPATIAL_LETTERS = "pqr"  # einsum letters of the output positions (up to 3 spatial axes)
_KERNEL_LETTERS = "uvw"  # and of the kernel offsets


@dataclass(frozen=True)
class ConvGeometry:
    """A Conv call's geometry: spatial rank `k`, per-axis strides/dilations, pads (begins then ends), group, the
    output's spatial shape and channel count."""

    k: int
    strides: Tuple[int, ...]
    pads: Tuple[int, ...]
    dilations: Tuple[int, ...]
    group: int
    out_spatial: Tuple[int, ...]
    out_channels: int


def _ints(value: Any, k: int, fill: int, name: str) -> Tuple[int, ...]:
    """An int-list attribute of k values (None: k times `fill`)."""
    if value is None:
        return (fill,) * k
    vals = tuple(int(v) for v in np.asarray(value).reshape(-1))
    if len(vals) != k:
        raise ValueError(f"Conv '{name}' needs {k} values for a {k}-D convolution, got {list(vals)}")
    return vals


def conv_geometry(x: Sequence[int], w: Sequence[int], strides: Any = None, pads: Any = None, dilations: Any = None,
                  group: Any = 1, kernel_shape: Any = None) -> ConvGeometry:
    """Check a Conv call on shapes `x` (..., C, *spatial) and `w` (M, C/group, *kernel) and give its geometry;
    ValueError says what does not fit."""
    x, w = tuple(int(d) for d in x), tuple(int(d) for d in w)
    k = len(w) - 2
    if not 1 <= k <= 3:
        raise ValueError(f"Conv weights W must be (M, C/group, *kernel) with 1 to 3 spatial axes, got shape {w}")
    if len(x) < k + 1:
        raise ValueError(f"Conv input X must be (..., C, *spatial) with {k} spatial axes, got shape {x}")
    kernel = w[2:]
    if kernel_shape is not None and _ints(kernel_shape, k, 0, "kernel_shape") != kernel:
        raise ValueError(f"Conv kernel_shape {list(np.asarray(kernel_shape).reshape(-1))} differs from W's "
                         f"spatial shape {list(kernel)}")
    s = _ints(strides, k, 1, "strides")
    d = _ints(dilations, k, 1, "dilations")
    p = _ints(pads, 2 * k, 0, "pads")
    g = int(group)
    if min(s) < 1 or min(d) < 1 or min(p) < 0 or g < 1:
        raise ValueError(f"Conv strides {list(s)} and dilations {list(d)} must be >= 1, pads {list(p)} >= 0, "
                         f"group {g} >= 1")
    channels, m = x[-(k + 1)], w[0]
    if channels != w[1] * g or m % g:
        raise ValueError(f"Conv input of {channels} channels and W of shape {w} with group {g}: W must be "
                         f"(M, C/group, *kernel) with M divisible by group")
    spatial = x[-k:]
    out = tuple((spatial[i] + p[i] + p[i + k] - d[i] * (kernel[i] - 1) - 1) // s[i] + 1 for i in range(k))
    if min(out) < 1:
        raise ValueError(f"Conv kernel {list(kernel)} (dilations {list(d)}) does not fit the padded input "
                         f"{list(spatial)} (pads {list(p)})")
    return ConvGeometry(k, s, p, d, g, out, m)


def _geometry(X: Any, W: Any, attrs: Mapping[str, Any]) -> ConvGeometry:
    return conv_geometry(tuple(X.shape), tuple(W.shape), **{a: attrs.get(a, CONV_DEFAULTS[a]) for a in CONV_ATTRS})


def conv_numpy(X: Any, W: Any, B: Any = None, **attrs: Any) -> np.ndarray:
    """ONNX Conv in numpy, exactly: the zero-padded input's windows (strided view, dilations and strides taken by
    slicing) contracted with W per group by einsum; B added per output channel."""
    X, W = np.asarray(X, dtype=np.float64), np.asarray(W, dtype=np.float64)
    geo = _geometry(X, W, attrs)
    k, g = geo.k, geo.group
    lead = X.shape[:X.ndim - (k + 1)]
    x = X.reshape((-1,) + X.shape[X.ndim - (k + 1):])
    x = np.pad(x, [(0, 0), (0, 0)] + [(geo.pads[i], geo.pads[i + k]) for i in range(k)])
    kernel = W.shape[2:]
    span = tuple((kernel[i] - 1) * geo.dilations[i] + 1 for i in range(k))
    win = np.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(2, 2 + k)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in geo.strides)
              + tuple(slice(None, None, d) for d in geo.dilations)]
    win = win[(slice(None), slice(None)) + tuple(slice(0, o) for o in geo.out_spatial)]
    n, c = win.shape[:2]
    win = win.reshape((n, g, c // g) + geo.out_spatial + tuple(kernel))
    w = W.reshape((g, geo.out_channels // g) + W.shape[1:])
    o, kk = _SPATIAL_LETTERS[:k], _KERNEL_LETTERS[:k]
    y = np.einsum(f"ngc{o}{kk},gmc{kk}->ngm{o}", win, w, optimize=True)
    y = y.reshape((n, geo.out_channels) + geo.out_spatial)
    if B is not None:
        y = y + np.asarray(B, dtype=np.float64).reshape((geo.out_channels,) + (1,) * k)
    return y.reshape(lead + y.shape[1:])


def conv_torch(X: Any, W: Any, B: Any = None, **attrs: Any) -> Any:
    """ONNX Conv with torch.nn.functional.conv1d/2d/3d (asymmetric pads applied first with F.pad)."""
    torch = torch_module()
    F = torch.nn.functional
    X, W = torchlib.tt_like(X, W)
    B = None if B is None else torchlib.tt(B, X)
    geo = _geometry(X, W, attrs)
    k = geo.k
    lead = tuple(X.shape[:X.ndim - (k + 1)])
    x = X.reshape((-1,) + tuple(X.shape[X.ndim - (k + 1):]))
    begins, ends = geo.pads[:k], geo.pads[k:]
    if begins != ends:
        x = F.pad(x, [p for i in reversed(range(k)) for p in (begins[i], ends[i])])
        begins = (0,) * k
    conv = (F.conv1d, F.conv2d, F.conv3d)[k - 1]
    y = conv(x, W, B, stride=geo.strides, padding=begins, dilation=geo.dilations, groups=geo.group)
    return y.reshape(lead + tuple(y.shape[1:]))


def _output_shape(a: Mapping[str, Any], geometry: Any, defaults: Mapping[str, Any], attrs: Sequence[str],
                  label: str) -> Tuple[int, ...]:
    """The shape rule of Conv and ConvTranspose: `geometry` (conv_geometry, conv_transpose_geometry) on the
    argument shapes, the bias checked against the output channels."""
    x, w = tuple(a["X"]), tuple(a["W"])
    geo = geometry(x, w, **{n: a.get(n, defaults[n]) for n in attrs})
    b = a.get("B")
    if isinstance(b, tuple) and tuple(b) != (geo.out_channels,):
        raise ValueError(f"{label} bias B must have shape ({geo.out_channels},), got {tuple(b)}")
    return x[:len(x) - (geo.k + 1)] + (geo.out_channels,) + geo.out_spatial


def _conv_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    return _output_shape(a, conv_geometry, CONV_DEFAULTS, CONV_ATTRS, "Conv")


# --------------------------------------------------------------------------- ONNX

def image_batch(b: OnnxGraphBuilder, x: Any, lead: int) -> Tuple[Any, Callable[[Any], Any]]:
    """The ONNX (N, C, ...) operand of an image op whose per-trial input `x` has `lead` axes before its channel
    axis, and the function restoring the op's result to the per-trial frame: a batched (C, ...) as it is (N: the
    batch axis), an unbatched one with N = 1, and leading axes (batch_axis=False imports, (N, C, ...) per trial)
    folded into N by a Reshape and unfolded after.

    b: the graph builder; x: the input (an exporters.onnx_graph.Val); lead: the per-trial axes before the channels."""
    if lead == 0:
        if x.batched:
            return x, lambda y: y
        return b.unsqueeze(x, [0]), lambda y: b.squeeze(y, [0])
    if lead == 1 and not x.batched:
        return x, lambda y: y
    dims, rest = [int(d) for d in x.shape[:lead]], [int(d) for d in x.shape[lead:]]
    if not x.batched:
        return b.reshape(x, [-1] + rest), lambda y: b.reshape(y, dims + [int(d) for d in y.shape[1:]])
    flat = b.emit("Reshape", [x, b.int64s([-1] + rest)], shape=rest, batched=True)

    def restore(y: Any) -> Any:
        shape = dims + [int(d) for d in y.shape]
        return b.emit("Reshape", [y, b.int64s([-1] + shape)], shape=shape, batched=True)
    return flat, restore


def export_conv(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One ONNX Conv node on the batched input (N = the batch axis; `image_batch`)."""
    x, w = b.required_arg(op, "X"), b.required_arg(op, "W")
    bias = b.arg(op, "B")
    if w.batched or (bias is not None and b.as_val(bias).batched):
        raise b.unsupported("Conv whose weights are computed per trial")
    attrs = {n: b.static_arg(op, n, CONV_DEFAULTS[n]) for n in CONV_ATTRS}
    geo = conv_geometry(x.shape, w.shape, **attrs)
    k = geo.k
    if b.dtype == "float64":
        raise b.unsupported("Conv in float64 (onnxruntime's CPU Conv is float32); export with dtype='float32'")
    inp, restore = image_batch(b, x, x.rank - (k + 1))
    ins = [inp, w] + ([b.as_val(bias)] if bias is not None else [])
    out_image = (geo.out_channels,) + geo.out_spatial
    y = b.emit("Conv", ins, shape=out_image if inp.batched else (inp.shape[0],) + out_image, batched=inp.batched,
               strides=list(geo.strides), pads=list(geo.pads), dilations=list(geo.dilations), group=geo.group,
               kernel_shape=[int(d) for d in w.shape[2:]])
    return restore(y)


def _auto_pads(n: NodeImport, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
               dilations: Sequence[int]) -> Optional[Tuple[int, ...]]:
    """Explicit pads of ONNX's auto_pad (SAME_UPPER/SAME_LOWER: output = ceil(input / stride); VALID: none), or
    None for NOTSET."""
    mode = str(n.attr("auto_pad", "NOTSET"))
    if mode == "NOTSET":
        return None
    k = len(kernel)
    if mode == "VALID":
        return (0,) * (2 * k)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise n.fail(f"auto_pad {mode!r}")
    total = [max(0, (-(-spatial[i] // strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                 - spatial[i]) for i in range(k)]
    small = [t // 2 for t in total]
    big = [t - s for t, s in zip(total, small)]
    return tuple(small + big) if mode == "SAME_UPPER" else tuple(big + small)


def _conv_operands(n: NodeImport, what: str) -> Tuple[Tensor, Tensor, Optional[Tensor], int]:
    """(X, constant W, constant B or None, spatial rank) of an ONNX Conv or ConvTranspose node (`what` names it in
    the error for an X of the wrong rank)."""
    x = n.dynamic(0, "X")
    w = n.input(1)
    if w is None or w.kind != "const" or w.value is None:
        raise n.fail("W must be a constant (the weights)")
    bias = n.input(2)
    if bias is not None and bias.kind != "const":
        raise n.fail("B must be a constant (the bias)")
    k = w.rank - 2
    if n.full_rank(x) != k + 2:
        raise n.fail(f"X of rank {n.full_rank(x)} for a {k}-D {what} (rank {k + 2} expected)")
    return x, w, bias, k


def _checked_call(n: NodeImport, function: str, shape_rule: Any, args: Dict[str, Any],
                  bias: Optional[Tensor]) -> Emitted:
    """The call of `function` on args (with the bias B when there is one), its shape rule checked first; W and B
    learnable."""
    if bias is not None:
        args["B"] = bias
    try:
        shape_rule({**args, "X": tuple(args["X"].shape), "W": tuple(args["W"].shape),
                    "B": tuple(bias.shape) if bias is not None else None})
    except ValueError as exc:
        raise n.fail(str(exc)) from None
    return n.call(function, args, [a for a in ("W", "B") if a in args])


def import_conv(n: NodeImport) -> Emitted:
    """ONNX Conv with constant weights W (and bias B): learnable; auto_pad turned into explicit pads."""
    x, w, bias, k = _conv_operands(n, "convolution")
    strides = [int(v) for v in (n.attr("strides") or [1] * k)]
    dilations = [int(v) for v in (n.attr("dilations") or [1] * k)]
    pads = _auto_pads(n, x.shape[-k:], w.shape[2:], strides, dilations)
    if pads is None:
        pads = tuple(int(v) for v in (n.attr("pads") or [0] * (2 * k)))
    args: Dict[str, Any] = {"X": x, "W": w, "strides": strides, "pads": list(pads), "dilations": dilations,
                            "group": int(n.attr("group", 1))}
    if n.attr("kernel_shape") is not None:
        args["kernel_shape"] = [int(v) for v in n.attr("kernel_shape")]
    return _checked_call(n, "onnx::Conv", _conv_shape, args, bias)


register(OpDef("Conv", ("X", "W", "B"), conv_numpy, conv_torch, defaults=CONV_DEFAULTS, attrs=CONV_ATTRS,
               batch_rule=only_x, shape=_conv_shape, weight_arg="W",
               description="ONNX Conv: X (..., C, *spatial), W (M, C/group, *kernel), B (M,); strides, pads "
                           "(begins then ends), dilations, group, kernel_shape",
               aliases=(Alias("onnx::Conv"),), onnx_export=export_conv,
               onnx_import=(OnnxImport("Conv", 1, None, import_conv, constant_inputs=(1, 2)),)))


# --------------------------------------------------------------------------- ConvTranspose

CONVT_ATTRS = ("strides", "pads", "dilations", "group", "output_padding")
CONVT_DEFAULTS: Dict[str, Any] = {"B": None, "strides": None, "pads": None, "dilations": None, "group": 1,
                                  "output_padding": None}


@dataclass(frozen=True)
class ConvTransposeGeometry:
    """A ConvTranspose call's geometry: spatial rank, strides, dilations, pads (begins then ends), output_padding,
    group, the unpadded ('full') output extent, the output's spatial shape and channel count."""

    k: int
    strides: Tuple[int, ...]
    pads: Tuple[int, ...]
    dilations: Tuple[int, ...]
    output_padding: Tuple[int, ...]
    group: int
    full: Tuple[int, ...]
    out_spatial: Tuple[int, ...]
    out_channels: int


def conv_transpose_geometry(x: Sequence[int], w: Sequence[int], strides: Any = None, pads: Any = None,
                            dilations: Any = None, group: Any = 1, output_padding: Any = None
                            ) -> ConvTransposeGeometry:
    """Check a ConvTranspose call on shapes `x` (..., C, *spatial) and `w` (C, M/group, *kernel) and give its
    geometry (ONNX's output size: stride * (in - 1) + output_padding + (kernel - 1) * dilation + 1 - pads);
    ValueError says what does not fit."""
    x, w = tuple(int(d) for d in x), tuple(int(d) for d in w)
    k = len(w) - 2
    if not 1 <= k <= 3:
        raise ValueError(f"ConvTranspose weights W must be (C, M/group, *kernel) with 1 to 3 spatial axes, got "
                         f"shape {w}")
    if len(x) < k + 1:
        raise ValueError(f"ConvTranspose input X must be (..., C, *spatial) with {k} spatial axes, got shape {x}")
    s = _ints(strides, k, 1, "strides")
    d = _ints(dilations, k, 1, "dilations")
    p = _ints(pads, 2 * k, 0, "pads")
    op = _ints(output_padding, k, 0, "output_padding")
    g = int(group)
    if min(s) < 1 or min(d) < 1 or min(p) < 0 or min(op) < 0 or g < 1:
        raise ValueError(f"ConvTranspose strides {list(s)} and dilations {list(d)} must be >= 1, pads {list(p)} "
                         f"and output_padding {list(op)} >= 0, group {g} >= 1")
    channels = x[-(k + 1)]
    if channels != w[0] or channels % g:
        raise ValueError(f"ConvTranspose input of {channels} channels and W of shape {w} with group {g}: W must be "
                         f"(C, M/group, *kernel) with C divisible by group")
    spatial, kernel = x[-k:], w[2:]
    full = tuple((spatial[i] - 1) * s[i] + (kernel[i] - 1) * d[i] + 1 + op[i] for i in range(k))
    out = tuple(full[i] - p[i] - p[i + k] for i in range(k))
    if min(out) < 1:
        raise ValueError(f"ConvTranspose pads {list(p)} leave no output of the {list(full)} positions")
    return ConvTransposeGeometry(k, s, p, d, op, g, full, out, w[1] * g)


def _convt_geometry(X: Any, W: Any, attrs: Mapping[str, Any]) -> ConvTransposeGeometry:
    return conv_transpose_geometry(tuple(X.shape), tuple(W.shape),
                                   **{a: attrs.get(a, CONVT_DEFAULTS[a]) for a in CONVT_ATTRS})


def conv_transpose_numpy(X: Any, W: Any, B: Any = None, **attrs: Any) -> np.ndarray:
    """ONNX ConvTranspose in numpy: for each kernel offset, the input contracted with that offset's weights per
    group (einsum) and added at the strided, dilated positions of the full output, which the pads then crop."""
    from .base import check_size

    X, W = np.asarray(X, dtype=np.float64), np.asarray(W, dtype=np.float64)
    geo = _convt_geometry(X, W, attrs)
    k, g = geo.k, geo.group
    lead = X.shape[:X.ndim - (k + 1)]
    x = X.reshape((-1,) + X.shape[X.ndim - (k + 1):])
    n, c = x.shape[:2]
    check_size((n, geo.out_channels) + geo.full, what="ConvTranspose output")
    xg = x.reshape((n, g, c // g) + x.shape[2:])
    wg = W.reshape((g, c // g) + W.shape[1:])  # (g, C/g, M/g, *kernel)
    m = W.shape[1]
    y = np.zeros((n, g, m) + geo.full)
    o = _SPATIAL_LETTERS[:k]
    spatial = x.shape[2:]
    for offset in np.ndindex(*W.shape[2:]):
        part = np.einsum(f"ngc{o},gcm->ngm{o}", xg, wg[(Ellipsis,) + offset], optimize=True)
        at = tuple(slice(offset[i] * geo.dilations[i], offset[i] * geo.dilations[i]
                         + (spatial[i] - 1) * geo.strides[i] + 1, geo.strides[i]) for i in range(k))
        y[(slice(None), slice(None), slice(None)) + at] += part
    y = y.reshape((n, geo.out_channels) + geo.full)
    y = y[(slice(None), slice(None)) + tuple(slice(geo.pads[i], geo.full[i] - geo.pads[i + k]) for i in range(k))]
    if B is not None:
        y = y + np.asarray(B, dtype=np.float64).reshape((geo.out_channels,) + (1,) * k)
    return y.reshape(lead + y.shape[1:])


def conv_transpose_torch(X: Any, W: Any, B: Any = None, **attrs: Any) -> Any:
    """ONNX ConvTranspose with torch.nn.functional.conv_transpose1d/2d/3d on the full output (no padding), then
    F.pad for the end's output_padding and the (possibly asymmetric) pads' crop, then the bias."""
    torch = torch_module()
    F = torch.nn.functional
    X, W = torchlib.tt_like(X, W)
    geo = _convt_geometry(X, W, attrs)
    k = geo.k
    lead = tuple(X.shape[:X.ndim - (k + 1)])
    x = X.reshape((-1,) + tuple(X.shape[X.ndim - (k + 1):]))
    convt = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[k - 1]
    y = convt(x, W, None, stride=geo.strides, groups=geo.group, dilation=geo.dilations)
    y = F.pad(y, [v for i in reversed(range(k)) for v in (-geo.pads[i], geo.output_padding[i] - geo.pads[i + k])])
    if B is not None:
        y = y + torchlib.tt(B, X).reshape((geo.out_channels,) + (1,) * k)
    return y.reshape(lead + tuple(y.shape[1:]))


def _convt_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    return _output_shape(a, conv_transpose_geometry, CONVT_DEFAULTS, CONVT_ATTRS, "ConvTranspose")


def export_conv_transpose(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One ONNX ConvTranspose node on the batched input (N = the batch axis; `image_batch`), pads and
    output_padding explicit."""
    x, w = b.required_arg(op, "X"), b.required_arg(op, "W")
    bias = b.arg(op, "B")
    if w.batched or (bias is not None and b.as_val(bias).batched):
        raise b.unsupported("ConvTranspose whose weights are computed per trial")
    geo = conv_transpose_geometry(x.shape, w.shape, **{n: b.static_arg(op, n, CONVT_DEFAULTS[n])
                                                       for n in CONVT_ATTRS})
    k = geo.k
    if b.dtype == "float64":
        raise b.unsupported("ConvTranspose in float64 (onnxruntime's CPU ConvTranspose is float32); export with "
                            "dtype='float32'")
    inp, restore = image_batch(b, x, x.rank - (k + 1))
    ins = [inp, w] + ([b.as_val(bias)] if bias is not None else [])
    out_image = (geo.out_channels,) + geo.out_spatial
    y = b.emit("ConvTranspose", ins, shape=out_image if inp.batched else (inp.shape[0],) + out_image,
               batched=inp.batched, strides=list(geo.strides), pads=list(geo.pads), dilations=list(geo.dilations),
               group=geo.group, output_padding=list(geo.output_padding), kernel_shape=[int(d) for d in w.shape[2:]])
    return restore(y)


def onnx_conv_transpose_args(attr: Callable[[str, Any], Any], spatial: Sequence[int], kernel: Sequence[int]
                             ) -> Dict[str, Any]:
    """The ConvTranspose call attributes of an ONNX node: output_shape and auto_pad turned into explicit pads
    (ONNX's rule: the odd one at the end for SAME_UPPER, at the beginning otherwise; an output_shape beyond the
    output adds output_padding, as onnxruntime does); ValueError
    says what cannot be read.

    attr(name, default): the node's attribute values; spatial: the input's spatial shape; kernel: W's."""
    k = len(kernel)
    if attr("kernel_shape", None) is not None and [int(v) for v in attr("kernel_shape", None)] != list(kernel):
        raise ValueError(f"kernel_shape {list(attr('kernel_shape', None))} differs from W's spatial shape "
                         f"{list(kernel)}")
    strides = [int(v) for v in (attr("strides", None) or [1] * k)]
    dilations = [int(v) for v in (attr("dilations", None) or [1] * k)]
    out_pad = [int(v) for v in (attr("output_padding", None) or [0] * k)]
    mode = str(attr("auto_pad", "NOTSET"))
    if mode not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ValueError(f"auto_pad {mode!r}")
    output_shape = attr("output_shape", None)
    if output_shape is not None or mode in ("SAME_UPPER", "SAME_LOWER"):
        want = ([int(v) for v in output_shape][-k:] if output_shape is not None
                else [spatial[i] * strides[i] for i in range(k)])
        total = [strides[i] * (spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1 - want[i]
                 for i in range(k)]
        out_pad = [op - min(t, 0) for op, t in zip(out_pad, total)]  # a larger output_shape: zeros at the end
        total = [max(t, 0) for t in total]
        small = [t // 2 for t in total]
        big = [t - s for t, s in zip(total, small)]
        pads = small + big if mode == "SAME_UPPER" else big + small
    elif mode == "VALID":
        pads = [0] * (2 * k)
    else:
        pads = [int(v) for v in (attr("pads", None) or [0] * (2 * k))]
    return {"strides": strides, "pads": pads, "dilations": dilations, "group": int(attr("group", 1)),
            "output_padding": out_pad}


def probe_conv_transpose(attrs: Mapping[str, Any], args: Sequence[Any]) -> np.ndarray:
    """An ONNX ConvTranspose node on its inputs (X (N, C, *spatial), W, optional B), in X's dtype (the ONNX
    importer's probe runs it: onnx's reference evaluator gets groups and output_shape wrong).

    attrs: the node's attributes (name -> value); args: X, W and B (or None)."""
    x, w = np.asarray(args[0]), np.asarray(args[1])
    bias = args[2] if len(args) > 2 else None
    call = onnx_conv_transpose_args(lambda name, default: attrs.get(name, default), x.shape[2:], w.shape[2:])
    return conv_transpose_numpy(x, w, bias, **call).astype(x.dtype)


def import_conv_transpose(n: NodeImport) -> Emitted:
    """ONNX ConvTranspose with constant weights W (and bias B): learnable; output_shape and auto_pad turned into
    explicit pads (onnx_conv_transpose_args)."""
    x, w, bias, k = _conv_operands(n, "transposed convolution")
    try:
        attrs = onnx_conv_transpose_args(n.attr, x.shape[-k:], w.shape[2:])
    except ValueError as exc:
        raise n.fail(str(exc)) from None
    args: Dict[str, Any] = {"X": x, "W": w, **attrs}
    return _checked_call(n, "onnx::ConvTranspose", _convt_shape, args, bias)


register(OpDef("ConvTranspose", ("X", "W", "B"), conv_transpose_numpy, conv_transpose_torch, defaults=CONVT_DEFAULTS,
               attrs=CONVT_ATTRS, batch_rule=only_x, shape=_convt_shape, weight_arg="W",
               description="ONNX ConvTranspose: X (..., C, *spatial), W (C, M/group, *kernel), B (M,); strides, pads "
                           "(begins then ends), dilations, group, output_padding",
               aliases=(Alias("onnx::ConvTranspose"),), onnx_export=export_conv_transpose,
               onnx_import=(OnnxImport("ConvTranspose", 1, None, import_conv_transpose, constant_inputs=(1, 2)),)))
