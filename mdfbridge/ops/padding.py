"""Padding: ONNX's Pad (`onnx::Pad` an alias): modes constant, reflect, edge and wrap.

Per trial: `pads` holds the begin values of every axis of X, then the end values (ONNX's layout; negative values
crop), `mode` the fill and `constant_value` the constant mode's value. The batch rule adds zero pads for the batch
axis. numpy (the oracle) is np.pad after cropping; torch pads with F.pad (constant) or gathers along each axis by
the indices np.pad gives an arange (reflect, edge, wrap), so gradients flow. The ONNX importer reads the attribute
form (opsets 2-10) and the input form (11 on: pads, constant_value and, from 18, axes as constant inputs); the
batch axis must not be padded. The LLVM backend has no padding kernel and refuses the op.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import torchlib
from .base import Alias, OnnxImport, OpDef, check_size, register, torch_module

if TYPE_CHECKING:
    from ..exporters.onnx_graph import OnnxGraphBuilder, Operand
    from ..importers.onnx_node import Emitted, NodeImport
    from ..program import Op

PAD_MODES = ("constant", "reflect", "edge", "wrap")
PAD_DEFAULTS: Dict[str, Any] = {"pads": None, "mode": "constant", "constant_value": 0.0}


def pad_widths(shape: Sequence[int], pads: Any, mode: Any = "constant") -> Tuple[Tuple[int, int], ...]:
    """The (begin, end) pads of each axis of a value of shape `shape` (ValueError when they do not fit).

    shape: the input's shape; pads: begins then ends, 2 * rank ints (None: no padding); mode: one of PAD_MODES
    (default 'constant'; reflect needs pads smaller than the axis, after cropping)."""
    rank = len(shape)
    if str(mode) not in PAD_MODES:
        raise ValueError(f"Pad mode {mode!r} (one of {', '.join(PAD_MODES)})")
    p = [0] * (2 * rank) if pads is None else [int(v) for v in np.asarray(pads).reshape(-1)]
    if len(p) != 2 * rank:
        raise ValueError(f"Pad needs {2 * rank} pads (begins then ends) for a value of rank {rank}, got {p}")
    widths = tuple((p[i], p[i + rank]) for i in range(rank))
    for n, (b, e) in zip(shape, widths):
        kept = n + min(b, 0) + min(e, 0)
        if kept < 0:
            raise ValueError(f"Pad pads {p} crop more than the axis of {n} holds")
        if str(mode) != "constant" and (b > 0 or e > 0) and kept == 0:
            raise ValueError(f"Pad mode {mode!r} cannot pad an empty axis")
        if str(mode) == "reflect" and max(b, e) >= kept and (b > 0 or e > 0):
            raise ValueError(f"Pad mode 'reflect' pads {p} must be smaller than the axes {tuple(shape)}")
    return widths


def _crop(X: Any, widths: Sequence[Tuple[int, int]]) -> Any:
    index = tuple(slice(-b if b < 0 else 0, (n + e) if e < 0 else n) for (b, e), n in zip(widths, X.shape))
    return X[index]


_NP_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def pad_numpy(X: Any, pads: Any = None, mode: str = "constant", constant_value: float = 0.0) -> np.ndarray:
    """ONNX Pad in numpy: negative pads crop, then np.pad (reflect without repeating the edge, as ONNX)."""
    X = np.asarray(X, dtype=np.float64)
    widths = pad_widths(X.shape, pads, mode)
    check_size(tuple(n + b + e for n, (b, e) in zip(X.shape, widths)), what="Pad output")
    x = _crop(X, widths)
    grow = [(max(b, 0), max(e, 0)) for b, e in widths]
    if str(mode) == "constant":
        return np.pad(x, grow, mode="constant", constant_values=float(constant_value))
    return np.pad(x, grow, mode=_NP_MODES[str(mode)])  # type: ignore[call-overload]  # (mode: a str)


def pad_torch(X: Any, pads: Any = None, mode: str = "constant", constant_value: float = 0.0) -> Any:
    """ONNX Pad in torch: F.pad for constant mode, else an index_select per padded axis (the indices np.pad gives
    an arange in that mode)."""
    torch = torch_module()
    X = torchlib.tt(X)
    widths = pad_widths(tuple(X.shape), pads, mode)
    if str(mode) == "constant":
        flat = [w for b, e in reversed(widths) for w in (b, e)]
        return torch.nn.functional.pad(X, flat, value=float(constant_value)) if any(flat) else X
    x = _crop(X, widths)
    for axis, (b, e) in enumerate(widths):
        b, e = max(b, 0), max(e, 0)
        if b or e:
            idx = np.pad(np.arange(x.shape[axis]), (b, e), mode=_NP_MODES[str(mode)])  # type: ignore[call-overload]
            x = x.index_select(axis, torch.as_tensor(idx, device=x.device))
    return x


def probe_pad(attrs: Mapping[str, Any], args: Sequence[Any]) -> np.ndarray:
    """An ONNX Pad node on its inputs (the attribute form when `attrs` holds pads, else the input form), in the
    data's dtype (the ONNX importer's probe runs it: onnx's reference evaluator refuses negative pads).

    attrs: the node's attributes (name -> value); args: its inputs (data, then pads, constant_value, axes)."""
    x = np.asarray(args[0])
    mode = str(attrs.get("mode", "constant"))
    if "pads" in attrs:
        pads, value, axes = list(attrs["pads"]), float(attrs.get("value", 0.0)), None
    else:
        if len(args) < 2 or args[1] is None:
            raise ValueError("Pad without pads")
        pads = [int(v) for v in np.asarray(args[1]).reshape(-1)]
        value = float(np.asarray(args[2]).reshape(-1)[0]) if len(args) > 2 and args[2] is not None and \
            np.size(args[2]) else 0.0
        axes = [int(v) for v in np.asarray(args[3]).reshape(-1)] if len(args) > 3 and args[3] is not None else None
    if axes is not None:
        full = [0] * (2 * x.ndim)
        for i, a in enumerate(axes):
            a = a + x.ndim if a < 0 else a
            full[a], full[a + x.ndim] = pads[i], pads[i + len(axes)]
        pads = full
    return pad_numpy(x, pads, mode, value).astype(x.dtype)


def _pad_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    x = tuple(a["X"])
    widths = pad_widths(x, a.get("pads"), a.get("mode", "constant"))
    return tuple(n + b + e for n, (b, e) in zip(x, widths))


def _pad_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """On a batch of X: no padding of the batch axis (a zero begin and end pad put in front of each half)."""
    pads = attrs.get("pads")
    if not batched_args <= {"X"}:
        return None
    if pads is None:
        return attrs
    p = [int(v) for v in np.asarray(pads).reshape(-1)]
    r = len(p) // 2
    return {**attrs, "pads": [0] + p[:r] + [0] + p[r:]}


# --------------------------------------------------------------------------- ONNX

def export_pad(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Pad node (opset 11's input form; the batch axis unpadded); wrap mode needs opset 19."""
    x = b.required_arg(op, "X")
    mode = str(b.static_arg(op, "mode", "constant"))
    widths = pad_widths(x.shape, b.static_arg(op, "pads"), mode)
    if mode == "wrap" and b.opset < 19:
        raise b.unsupported("Pad mode 'wrap' below opset 19")
    lead = [0] if x.batched else []
    pads = lead + [w[0] for w in widths] + lead + [w[1] for w in widths]
    ins = [x, b.int64s(pads)]
    if mode == "constant":
        ins.append(b.const(np.asarray(float(b.static_arg(op, "constant_value", 0.0)))))
    return b.emit("Pad", ins, shape=[n + p + q for n, (p, q) in zip(x.shape, widths)], batched=x.batched, mode=mode)


def _per_trial_pads(n: NodeImport, x: Any, pads: Sequence[int], axes: Optional[Sequence[int]] = None) -> list:
    """ONNX pads (begins then ends of `axes`, default every axis) as per-trial pads of every axis of X."""
    rank = n.full_rank(x)
    axes = list(range(rank)) if axes is None else [int(a) + (rank if int(a) < 0 else 0) for a in axes]
    if len(pads) != 2 * len(axes) or any(not 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
        raise n.fail(f"pads {list(pads)} for axes {axes} of a rank-{rank} input")
    full = [0] * (2 * rank)
    for i, a in enumerate(axes):
        full[a], full[a + rank] = int(pads[i]), int(pads[i + len(axes)])
    if n.batch_axis and x.kind == "dynamic":
        if full[0] or full[rank]:
            raise n.fail("pads the batch axis (axis 0), which mixes trials; import with batch_axis=False to treat "
                         "each ONNX tensor as one trial")
        full = full[1:rank] + full[rank + 1:]
    return full


def _emit_pad(n: NodeImport, x: Any, pads: list, mode: str, value: float) -> Emitted:
    if mode not in PAD_MODES:
        raise n.fail(f"mode {mode!r}")
    try:
        pad_widths(x.shape, pads, mode)
    except ValueError as exc:
        raise n.fail(str(exc)) from None
    args: Dict[str, Any] = {"X": x, "pads": pads, "mode": mode}
    if mode == "constant":
        args["constant_value"] = value
    return n.call("onnx::Pad", args)


def import_pad_attributes(n: NodeImport) -> Emitted:
    """Pad of opsets 2-10: pads, mode and value attributes."""
    x = n.dynamic(0, "data")
    pads = [int(v) for v in (n.attr("pads") or [])]
    return _emit_pad(n, x, _per_trial_pads(n, x, pads), str(n.attr("mode", "constant")),
                     float(n.attr("value", 0.0)))


def import_pad_inputs(n: NodeImport) -> Emitted:
    """Pad of opset 11 on: pads, constant_value and (18 on) axes as constant inputs."""
    x = n.dynamic(0, "data")
    pads = n.const(1, "pads")
    if pads is None:
        raise n.fail("pads is missing")
    value = n.const(2, "constant_value")
    axes = n.const(3, "axes")
    if value is not None and np.size(value) != 1:
        raise n.fail(f"constant_value of shape {np.shape(value)} (a scalar expected)")
    full = _per_trial_pads(n, x, [int(v) for v in np.asarray(pads).reshape(-1)],
                           None if axes is None else [int(v) for v in np.asarray(axes).reshape(-1)])
    return _emit_pad(n, x, full, str(n.attr("mode", "constant")),
                     0.0 if value is None else float(np.asarray(value).reshape(-1)[0]))


register(OpDef("Pad", ("X",), pad_numpy, pad_torch, defaults=PAD_DEFAULTS, attrs=("pads", "mode", "constant_value"),
               batch_rule=_pad_batched, shape=_pad_shape,
               description="ONNX Pad: pads (begins then ends of every axis; negative crops), mode constant, reflect, "
                           "edge or wrap, constant_value",
               aliases=(Alias("onnx::Pad"),), onnx_export=export_pad,
               onnx_import=(OnnxImport("Pad", 2, 10, import_pad_attributes),
                            OnnxImport("Pad", 11, None, import_pad_inputs, constant_inputs=(1, 2, 3)))))
