"""Pooling: ONNX's MaxPool, AveragePool (1-D, 2-D and 3-D), GlobalAveragePool and GlobalMaxPool; `onnx::<op>`
aliases.

Semantics are ONNX's (onnxruntime's, which torch's max_pool/avg_pool share): X (..., C, *spatial) per trial, the
last `len(kernel_shape)` axes pooled and every axis before them independent, so a leading batch axis is ONNX's N
(the batch rule passes the call through). Attributes: `kernel_shape`, `strides`, `pads` (begin values of every
spatial axis, then the end values; ONNX's auto_pad is turned into pads by the importer), `dilations`,
`ceil_mode` (the output size rounded up; a last window starting in the end padding is dropped, as torch and
onnxruntime do) and, for AveragePool, `count_include_pad` (divide by the window's size within the padded input,
else by its elements of X). MaxPool pads with -inf. The global pools reduce the last `spatial` axes (kept, of
size 1). numpy (the oracle) and torch share one geometry: X padded (and extended at the end for ceil_mode's last
windows), windows taken by strides and dilations, reduced; torch's form runs through autograd (training). The
LLVM backend has no pooling kernel and refuses these ops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Sequence, Tuple

import numpy as np

from . import torchlib
from .base import Alias, OnnxImport, OpDef, check_size, only_x, register, torch_module
from .convolution import image_batch

if TYPE_CHECKING:
    from ..exporters.onnx_graph import OnnxGraphBuilder, Operand
    from ..importers.onnx_node import Emitted, NodeImport
    from ..program import Op

POOL_ATTRS = ("kernel_shape", "strides", "pads", "dilations", "ceil_mode")
AVG_ATTRS = POOL_ATTRS + ("count_include_pad",)
POOL_DEFAULTS: Dict[str, Any] = {"kernel_shape": None, "strides": None, "pads": None, "dilations": None,
                                 "ceil_mode": 0}
AVG_DEFAULTS: Dict[str, Any] = {**POOL_DEFAULTS, "count_include_pad": 0}


@dataclass(frozen=True)
class PoolGeometry:
    """A pooling call's geometry over its last k axes: kernel, strides, dilations, pads (begins then ends, as
    written), the extra end padding ceil_mode's last windows need, and the output's spatial shape."""

    k: int
    kernel: Tuple[int, ...]
    strides: Tuple[int, ...]
    dilations: Tuple[int, ...]
    pads: Tuple[int, ...]
    extra: Tuple[int, ...]
    out_spatial: Tuple[int, ...]

    @property
    def span(self) -> Tuple[int, ...]:
        """Each window's extent in the padded input (dilations included)."""
        return tuple((self.kernel[i] - 1) * self.dilations[i] + 1 for i in range(self.k))


def _ints(value: Any, k: int, fill: int, what: str, name: str) -> Tuple[int, ...]:
    if value is None:
        return (fill,) * k
    vals = tuple(int(v) for v in np.asarray(value).reshape(-1))
    if len(vals) != k:
        raise ValueError(f"{what} '{name}' needs {k} values for a {k}-D pool, got {list(vals)}")
    return vals


def pool_geometry(x: Sequence[int], kernel_shape: Any, strides: Any = None, pads: Any = None, dilations: Any = None,
                  ceil_mode: Any = 0, what: str = "pool") -> PoolGeometry:
    """Check a pooling call on input shape `x` (..., C, *spatial) and give its geometry; ValueError says what does
    not fit.

    x: the input's shape; kernel_shape: the window (1 to 3 values: the spatial rank); strides, dilations: per axis
    (default None: ones); pads: begins then ends (default None: zeros); ceil_mode: round the output size up
    (default 0); what: the op, for messages (default 'pool')."""
    if kernel_shape is None:
        raise ValueError(f"{what} needs kernel_shape")
    kernel = tuple(int(v) for v in np.asarray(kernel_shape).reshape(-1))
    k = len(kernel)
    x = tuple(int(d) for d in x)
    if not 1 <= k <= 3:
        raise ValueError(f"{what} kernel_shape must have 1 to 3 values, got {list(kernel)}")
    if len(x) < k + 1:
        raise ValueError(f"{what} input X must be (..., C, *spatial) with {k} spatial axes, got shape {x}")
    s = _ints(strides, k, 1, what, "strides")
    d = _ints(dilations, k, 1, what, "dilations")
    p = _ints(pads, 2 * k, 0, what, "pads")
    if min(kernel) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{what} kernel_shape {list(kernel)}, strides {list(s)} and dilations {list(d)} must be "
                         f">= 1, pads {list(p)} >= 0")
    spatial = x[-k:]
    span = tuple((kernel[i] - 1) * d[i] + 1 for i in range(k))
    for i in range(k):
        if p[i] >= kernel[i] or p[i + k] >= kernel[i]:
            raise ValueError(f"{what} pads {list(p)} must be smaller than kernel_shape {list(kernel)} on each side")
    ceil = bool(int(ceil_mode))
    out, extra = [], []
    for i in range(k):
        padded = spatial[i] + p[i] + p[i + k]
        room = padded - span[i]
        if room < 0:
            raise ValueError(f"{what} window {list(span)} does not fit the padded input {list(spatial)} "
                             f"(pads {list(p)})")
        o = (-(-room // s[i]) if ceil else room // s[i]) + 1
        if ceil and (o - 1) * s[i] >= spatial[i] + p[i]:
            o -= 1  # the last window would start in the end padding
        out.append(o)
        extra.append(max(0, (o - 1) * s[i] + span[i] - padded))
    return PoolGeometry(k, kernel, s, d, p, tuple(extra), tuple(out))


def _geometry(shape: Sequence[int], attrs: Mapping[str, Any], what: str) -> PoolGeometry:
    return pool_geometry(shape, **{a: attrs.get(a, POOL_DEFAULTS[a]) for a in POOL_ATTRS}, what=what)


def _np_windows(x: np.ndarray, geo: PoolGeometry, fill: float) -> np.ndarray:
    """(n, c, *out, *kernel) windows of x (n, c, *spatial) padded with `fill`."""
    k = geo.k
    widths = [(0, 0), (0, 0)] + [(geo.pads[i], geo.pads[i + k] + geo.extra[i]) for i in range(k)]
    check_size(tuple(x.shape[:2]) + tuple(x.shape[2 + i] + sum(widths[2 + i]) for i in range(k)), what="padded input")
    xp = np.pad(x, widths, constant_values=fill)
    win = np.lib.stride_tricks.sliding_window_view(xp, geo.span, axis=tuple(range(2, 2 + k)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in geo.strides)
              + tuple(slice(None, None, d) for d in geo.dilations)]
    return win[(slice(None), slice(None)) + tuple(slice(0, o) for o in geo.out_spatial)]


def _avg_counts(spatial: Sequence[int], geo: PoolGeometry, include_pad: bool) -> np.ndarray:
    """(*out) divisors of AveragePool: each window's elements of X, or of the padded input (count_include_pad)."""
    k = geo.k
    ones = np.ones((1, 1) + tuple(spatial))
    if include_pad:  # the written pads count, ceil_mode's extension does not
        ones = np.pad(ones, [(0, 0), (0, 0)] + [(geo.pads[i], geo.pads[i + k]) for i in range(k)],
                      constant_values=1.0)
        geo = PoolGeometry(k, geo.kernel, geo.strides, geo.dilations, (0,) * (2 * k), geo.extra, geo.out_spatial)
    return _np_windows(ones, geo, 0.0).sum(axis=tuple(range(-k, 0)))[0, 0]


def _flat(X: Any, k: int) -> Tuple[Tuple[int, ...], Any]:
    lead = tuple(X.shape[:X.ndim - (k + 1)])
    return lead, X.reshape((-1,) + tuple(X.shape[X.ndim - (k + 1):]))


def _out_check(X: Any, geo: PoolGeometry) -> None:
    check_size(tuple(X.shape[:X.ndim - geo.k]) + geo.out_spatial, what="pool output")


def max_pool_numpy(X: Any, **attrs: Any) -> np.ndarray:
    """ONNX MaxPool in numpy: the -inf-padded input's windows (strides, dilations), maximum of each."""
    X = np.asarray(X, dtype=np.float64)
    geo = _geometry(X.shape, attrs, "MaxPool")
    _out_check(X, geo)
    lead, x = _flat(X, geo.k)
    y = _np_windows(x, geo, -np.inf).max(axis=tuple(range(-geo.k, 0)))
    return y.reshape(lead + y.shape[1:])


def avg_pool_numpy(X: Any, **attrs: Any) -> np.ndarray:
    """ONNX AveragePool in numpy: each window's sum over the zero-padded input, divided by its count."""
    X = np.asarray(X, dtype=np.float64)
    geo = _geometry(X.shape, attrs, "AveragePool")
    _out_check(X, geo)
    lead, x = _flat(X, geo.k)
    sums = _np_windows(x, geo, 0.0).sum(axis=tuple(range(-geo.k, 0)))
    y = sums / _avg_counts(X.shape[-geo.k:], geo, bool(int(attrs.get("count_include_pad", 0))))
    return y.reshape(lead + y.shape[1:])


def _torch_windows(x: Any, geo: PoolGeometry, fill: float) -> Any:
    """torch's form of _np_windows (F.pad then Tensor.unfold per spatial axis; autograd flows)."""
    F = torch_module().nn.functional
    k = geo.k
    widths = [w for i in reversed(range(k)) for w in (geo.pads[i], geo.pads[i + k] + geo.extra[i])]
    if any(widths):
        x = F.pad(x, widths, value=fill)
    for i in range(k):
        x = x.unfold(2 + i, geo.span[i], geo.strides[i])
    x = x[(slice(None), slice(None)) + tuple(slice(0, o) for o in geo.out_spatial)]
    if any(d > 1 for d in geo.dilations):
        x = x[(Ellipsis,) + tuple(slice(None, None, d) for d in geo.dilations)]
    return x


def max_pool_torch(X: Any, **attrs: Any) -> Any:
    """ONNX MaxPool in torch (the numpy form's windows; amax)."""
    X = torchlib.tt(X)
    geo = _geometry(tuple(X.shape), attrs, "MaxPool")
    lead, x = _flat(X, geo.k)
    y = _torch_windows(x, geo, float("-inf")).amax(dim=tuple(range(-geo.k, 0)))
    return y.reshape(lead + tuple(y.shape[1:]))


def avg_pool_torch(X: Any, **attrs: Any) -> Any:
    """ONNX AveragePool in torch (the numpy form's windows and divisors)."""
    X = torchlib.tt(X)
    geo = _geometry(tuple(X.shape), attrs, "AveragePool")
    lead, x = _flat(X, geo.k)
    sums = _torch_windows(x, geo, 0.0).sum(dim=tuple(range(-geo.k, 0)))
    counts = _avg_counts(tuple(X.shape[-geo.k:]), geo, bool(int(attrs.get("count_include_pad", 0))))
    y = sums / torchlib.tt(counts, X)
    return y.reshape(lead + tuple(y.shape[1:]))


def _pool_shape(what: str) -> Any:
    def shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
        x = tuple(a["X"])
        geo = _geometry(x, a, what)
        return x[:len(x) - geo.k] + geo.out_spatial
    return shape


# --------------------------------------------------------------------------- global pools

def _spatial_axes(ndim: int, spatial: Any, what: str) -> Tuple[int, ...]:
    k = int(spatial)
    if not 1 <= k < ndim:
        raise ValueError(f"{what} pools {k} spatial axes of a value of rank {ndim} (1 to rank - 1 expected)")
    return tuple(range(ndim - k, ndim))


def global_avg_numpy(X: Any, spatial: int = 2) -> np.ndarray:
    """ONNX GlobalAveragePool in numpy: the mean over the last `spatial` axes, kept."""
    X = np.asarray(X, dtype=np.float64)
    return X.mean(axis=_spatial_axes(X.ndim, spatial, "GlobalAveragePool"), keepdims=True)


def global_max_numpy(X: Any, spatial: int = 2) -> np.ndarray:
    """ONNX GlobalMaxPool in numpy: the maximum over the last `spatial` axes, kept."""
    X = np.asarray(X, dtype=np.float64)
    return X.max(axis=_spatial_axes(X.ndim, spatial, "GlobalMaxPool"), keepdims=True)


def global_avg_torch(X: Any, spatial: int = 2) -> Any:
    """ONNX GlobalAveragePool in torch."""
    X = torchlib.tt(X)
    return X.mean(dim=_spatial_axes(X.ndim, spatial, "GlobalAveragePool"), keepdim=True)


def global_max_torch(X: Any, spatial: int = 2) -> Any:
    """ONNX GlobalMaxPool in torch."""
    X = torchlib.tt(X)
    return X.amax(dim=_spatial_axes(X.ndim, spatial, "GlobalMaxPool"), keepdim=True)


def _global_shape(what: str) -> Any:
    def shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
        x = tuple(a["X"])
        axes = _spatial_axes(len(x), a.get("spatial", 2), what)
        return x[:axes[0]] + (1,) * len(axes)
    return shape


# --------------------------------------------------------------------------- ONNX

def _export_pool(what: str) -> Any:
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        attrs = {n: b.static_arg(op, n, AVG_DEFAULTS[n]) for n in (AVG_ATTRS if what == "AveragePool" else POOL_ATTRS)}
        x0 = b.required_arg(op, "X")
        geo = _geometry(x0.shape, attrs, what)
        inp, restore = image_batch(b, x0, x0.rank - (geo.k + 1))
        extra: Dict[str, Any] = {}
        if what == "AveragePool":
            if b.dtype == "float64":
                raise b.unsupported("AveragePool in float64 (onnxruntime's CPU AveragePool is float32); export "
                                    "with dtype='float32'")
            extra["count_include_pad"] = int(attrs["count_include_pad"])
            if any(d != 1 for d in geo.dilations):
                if b.opset < 19:
                    raise b.unsupported("AveragePool with dilations below opset 19")
                extra["dilations"] = list(geo.dilations)
        else:
            extra["dilations"] = list(geo.dilations)
        image = tuple(inp.shape[-(geo.k + 1):-geo.k]) + geo.out_spatial
        y = b.emit(what, [inp], shape=image if inp.batched else (inp.shape[0],) + image, batched=inp.batched,
                   kernel_shape=list(geo.kernel), strides=list(geo.strides), pads=list(geo.pads),
                   ceil_mode=int(bool(int(attrs["ceil_mode"]))), **extra)
        return restore(y)
    return export


def _export_global(what: str) -> Any:
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        k = int(b.static_arg(op, "spatial", 2))
        x = b.required_arg(op, "X")
        inp, restore = image_batch(b, x, x.rank - (k + 1))
        image = tuple(inp.shape[-(k + 1):-k]) + (1,) * k
        y = b.emit(what, [inp], shape=image if inp.batched else (inp.shape[0],) + image, batched=inp.batched)
        return restore(y)
    return export


def _same_pads(mode: str, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
               dilations: Sequence[int]) -> Tuple[int, ...]:
    """Explicit pads of ONNX's auto_pad SAME_UPPER/SAME_LOWER (output = ceil(input / stride)) and VALID (none)."""
    k = len(kernel)
    if mode == "VALID":
        return (0,) * (2 * k)
    total = [max(0, (-(-spatial[i] // strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                 - spatial[i]) for i in range(k)]
    small = [t // 2 for t in total]
    big = [t - s for t, s in zip(total, small)]
    return tuple(small + big) if mode == "SAME_UPPER" else tuple(big + small)


def onnx_pool_args(what: str, attr: Callable[[str, Any], Any], spatial: Sequence[int]) -> Dict[str, Any]:
    """The MaxPool/AveragePool call attributes of an ONNX node (auto_pad turned into pads); ValueError says what
    cannot be read.

    what: 'MaxPool' or 'AveragePool'; attr(name, default): the node's attribute values; spatial: the input's spatial
    shape (the last len(kernel_shape) axes)."""
    kernel = [int(v) for v in (attr("kernel_shape", None) or [])]
    k = len(kernel)
    if not 1 <= k <= 3:
        raise ValueError(f"kernel_shape {kernel} (1 to 3 spatial axes)")
    if len(spatial) < k:
        raise ValueError(f"an input of {len(spatial)} spatial axes for a {k}-D pool")
    spatial = tuple(spatial)[-k:]
    strides = [int(v) for v in (attr("strides", None) or [1] * k)]
    dilations = [int(v) for v in (attr("dilations", None) or [1] * k)]
    ceil_mode = int(attr("ceil_mode", 0))
    mode = str(attr("auto_pad", "NOTSET"))
    if mode not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ValueError(f"auto_pad {mode!r}")
    if mode != "NOTSET" and ceil_mode:
        raise ValueError(f"auto_pad {mode!r} with ceil_mode 1")
    if mode == "NOTSET":
        pads = [int(v) for v in (attr("pads", None) or [0] * (2 * k))]
    else:
        pads = list(_same_pads(mode, spatial, kernel, strides, dilations))
    args: Dict[str, Any] = {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dilations,
                            "ceil_mode": ceil_mode}
    if what == "AveragePool":
        args["count_include_pad"] = int(attr("count_include_pad", 0))
    return args


def probe_pool(what: str, attrs: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """An ONNX MaxPool/AveragePool node on x (N, C, *spatial), in x's dtype (the ONNX importer's probe runs it:
    onnx's reference evaluator sizes some SAME_LOWER outputs differently from onnxruntime).

    what: 'MaxPool' or 'AveragePool'; attrs: the node's attributes (name -> value); x: the input."""
    args = onnx_pool_args(what, lambda name, default: attrs.get(name, default), x.shape[2:])
    fn = max_pool_numpy if what == "MaxPool" else avg_pool_numpy
    return np.asarray(fn(x, **args)).astype(x.dtype)


def _import_pool(what: str) -> Any:
    def handler(n: NodeImport) -> Emitted:
        x = n.dynamic(0, "X")
        if any(n.used_outputs[1:]):
            raise n.fail("the Indices output is used (only Y is imported)")
        try:
            args = onnx_pool_args(what, n.attr, x.shape[1:] if n.batch_axis else x.shape[2:])
            k = len(args["kernel_shape"])
            if n.full_rank(x) != k + 2:
                raise ValueError(f"X of rank {n.full_rank(x)} for a {k}-D pool (rank {k + 2} expected)")
            _geometry(x.shape, args, what)
        except ValueError as exc:
            raise n.fail(str(exc)) from None
        return n.call(f"onnx::{what}", {"X": x, **args})
    return handler


def _import_global(what: str) -> Any:
    def handler(n: NodeImport) -> Emitted:
        x = n.dynamic(0, "X")
        k = n.full_rank(x) - 2
        if k < 1:
            raise n.fail(f"X of rank {n.full_rank(x)} (N, C and at least one spatial axis expected)")
        return n.call(f"onnx::{what}", {"X": x, "spatial": k})
    return handler


register(OpDef("MaxPool", ("X",), max_pool_numpy, max_pool_torch, defaults=POOL_DEFAULTS, attrs=POOL_ATTRS,
               batch_rule=only_x, shape=_pool_shape("MaxPool"),
               description="ONNX MaxPool: X (..., C, *spatial); kernel_shape, strides, pads (begins then ends), "
                           "dilations, ceil_mode",
               aliases=(Alias("onnx::MaxPool"),), onnx_export=_export_pool("MaxPool"),
               onnx_import=(OnnxImport("MaxPool", 1, None, _import_pool("MaxPool")),)))

register(OpDef("AveragePool", ("X",), avg_pool_numpy, avg_pool_torch, defaults=AVG_DEFAULTS, attrs=AVG_ATTRS,
               batch_rule=only_x, shape=_pool_shape("AveragePool"),
               description="ONNX AveragePool: X (..., C, *spatial); kernel_shape, strides, pads (begins then ends), "
                           "dilations, ceil_mode, count_include_pad",
               aliases=(Alias("onnx::AveragePool"),), onnx_export=_export_pool("AveragePool"),
               onnx_import=(OnnxImport("AveragePool", 1, None, _import_pool("AveragePool")),)))

register(OpDef("GlobalAveragePool", ("X",), global_avg_numpy, global_avg_torch, defaults={"spatial": 2},
               attrs=("spatial",), batch_rule=only_x, shape=_global_shape("GlobalAveragePool"),
               description="ONNX GlobalAveragePool: the mean over the last `spatial` axes of X, kept",
               aliases=(Alias("onnx::GlobalAveragePool"),), onnx_export=_export_global("GlobalAveragePool"),
               onnx_import=(OnnxImport("GlobalAveragePool", 1, None, _import_global("GlobalAveragePool")),)))

register(OpDef("GlobalMaxPool", ("X",), global_max_numpy, global_max_torch, defaults={"spatial": 2},
               attrs=("spatial",), batch_rule=only_x, shape=_global_shape("GlobalMaxPool"),
               description="ONNX GlobalMaxPool: the maximum over the last `spatial` axes of X, kept",
               aliases=(Alias("onnx::GlobalMaxPool"),), onnx_export=_export_global("GlobalMaxPool"),
               onnx_import=(OnnxImport("GlobalMaxPool", 1, None, _import_global("GlobalMaxPool")),)))
