"""Normalization: ONNX's LayerNormalization (opset 17), `onnx::LayerNormalization` an alias.

Y = (X - mean) / sqrt(var + epsilon) * Scale + B, mean and (population) variance over the per-trial axes `axis`..
last (ONNX's semantics; torch's layer_norm over normalized_shape is axis = -len(normalized_shape)). Scale and B
broadcast against those axes; mdfbridge also takes Scale absent (ones: torch's elementwise_affine=False). The
batch rule shifts a non-negative axis past the batch axis. Scale and B are weights the ONNX and torch importers
mark learnable. Training runs on torch (autograd); the LLVM backend has no kernel for it and refuses the op.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

import numpy as np

from . import torchlib
from .base import Alias, OnnxImport, OpDef, register, shift_axis, torch_module

if TYPE_CHECKING:
    from ..exporters.onnx_graph import OnnxGraphBuilder, Operand
    from ..importers.onnx_node import Emitted, NodeImport
    from ..program import Op

LN_DEFAULTS: Dict[str, Any] = {"Scale": None, "B": None, "axis": -1, "epsilon": 1e-5}


def _axes(rank: int, axis: Any) -> Tuple[int, ...]:
    """The normalized axes `axis`..rank-1 of a rank-`rank` value (ValueError when axis is out of range)."""
    a = int(axis)
    if not -rank <= a < rank:
        raise ValueError(f"LayerNormalization axis {a} is out of range for a value of rank {rank}")
    return tuple(range(a % rank, rank))


def layer_norm_numpy(X: Any, Scale: Any = None, B: Any = None, axis: int = -1, epsilon: float = 1e-5) -> np.ndarray:
    """ONNX LayerNormalization in numpy (float64)."""
    X = np.asarray(X, dtype=np.float64)
    axes = _axes(X.ndim, axis)
    mean = X.mean(axis=axes, keepdims=True)
    d = X - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    y = d / np.sqrt(var + float(epsilon))
    if Scale is not None:
        y = y * np.asarray(Scale, dtype=np.float64)
    if B is not None:
        y = y + np.asarray(B, dtype=np.float64)
    return y


def layer_norm_torch(X: Any, Scale: Any = None, B: Any = None, axis: int = -1, epsilon: float = 1e-5) -> Any:
    """ONNX LayerNormalization with torch.nn.functional.layer_norm (Scale, B of the normalized shape passed to it,
    others broadcast after)."""
    F = torch_module().nn.functional
    X = torchlib.tt(X)
    axes = _axes(X.ndim, axis)
    shape = tuple(X.shape[axes[0]:])
    scale = None if Scale is None else torchlib.tt(Scale, X)
    bias = None if B is None else torchlib.tt(B, X)
    fits = all(t is None or tuple(t.shape) == shape for t in (scale, bias))
    if fits:
        return F.layer_norm(X, shape, scale, bias, float(epsilon))
    y = F.layer_norm(X, shape, None, None, float(epsilon))
    y = y if scale is None else y * scale
    return y if bias is None else y + bias


def _broadcasts(s: Tuple[int, ...], to: Tuple[int, ...]) -> bool:
    """Does shape s broadcast to shape `to` (numpy's rule)?"""
    try:
        return tuple(np.broadcast_shapes(to, s)) == to
    except ValueError:
        return False


def _ln_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    x = tuple(a["X"])
    axes = _axes(len(x), a.get("axis", -1))
    normalized = x[axes[0]:]
    for name in ("Scale", "B"):
        s = a.get(name)
        if isinstance(s, tuple) and (len(s) > len(normalized) or not _broadcasts(s, normalized)):
            raise ValueError(f"LayerNormalization {name} of shape {s} does not broadcast to the normalized shape "
                             f"{normalized}")
    return x


def _ln_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """On a batch of X only (Scale and B per trial): a non-negative axis moves past the batch axis."""
    return shift_axis(batched_args, attrs) if batched_args <= {"X"} else None


# --------------------------------------------------------------------------- ONNX

def export_layer_norm(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One LayerNormalization node (Scale: ones of the normalized shape when absent); in float64 models whose
    epsilon float32 cannot hold exactly, the formula with ReduceMean, Sub, Mul, Add, Sqrt and Div nodes."""
    x = b.required_arg(op, "X")
    axis = int(b.static_arg(op, "axis", -1))
    axes = _axes(x.rank, axis)
    normalized = tuple(x.shape[axes[0]:])
    scale, bias = b.arg(op, "Scale"), b.arg(op, "B")
    if any(v is not None and b.as_val(v).batched for v in (scale, bias)):
        raise b.unsupported("LayerNormalization whose Scale or B is computed per trial")
    eps = float(b.static_arg(op, "epsilon", 1e-5))
    if not b.exact_attr(eps):
        mean = b.reduce("ReduceMean", x, axes, True)
        d = b.as_val(b.sub(x, mean))
        var = b.reduce("ReduceMean", b.as_val(b.mul(d, d)), axes, True)
        y = b.div(d, b.unary("Sqrt", b.add(var, b.literal(eps))))
        y = y if scale is None else b.mul(y, scale)
        return y if bias is None else b.add(y, bias)
    vals = [x, b.as_val(scale) if scale is not None else b.const(np.ones(normalized)),
            b.as_val(bias) if bias is not None else None]
    return b.emit("LayerNormalization", vals, shape=x.shape, batched=x.batched, axis=x.onnx_axis(axis),
                  epsilon=eps)


def import_layer_norm(n: NodeImport) -> Emitted:
    """LayerNormalization (opset 17) with constant Scale and B (learnable), over per-trial axes."""
    if any(n.used_outputs[1:]):
        raise n.fail("the Mean and InvStdDev outputs are used (only Y is imported)")
    x = n.dynamic(0, "X")
    args: Dict[str, Any] = {"X": x, "axis": n.axis(n.attr("axis", -1), x), "epsilon": float(n.attr("epsilon", 1e-5))}
    for i, name in ((1, "Scale"), (2, "B")):
        t = n.input(i)
        if t is None:
            continue
        if t.kind != "const":
            raise n.fail(f"{name} must be a constant")
        args[name] = t
    if "Scale" not in args:
        raise n.fail("Scale is missing")
    return n.call("onnx::LayerNormalization", args, [a for a in ("Scale", "B") if a in args])


register(OpDef("LayerNormalization", ("X", "Scale", "B"), layer_norm_numpy, layer_norm_torch, defaults=LN_DEFAULTS,
               attrs=("axis", "epsilon"), batch_rule=_ln_batched, shape=_ln_shape,
               description="ONNX LayerNormalization: (X - mean) / sqrt(var + epsilon) * Scale + B over the axes "
                           "axis.. (Scale, B optional)",
               aliases=(Alias("onnx::LayerNormalization"),), onnx_export=export_layer_norm,
               onnx_import=(OnnxImport("LayerNormalization", 17, None, import_layer_norm, constant_inputs=(1, 2)),)))
