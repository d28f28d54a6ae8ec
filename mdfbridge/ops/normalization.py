"""Normalization: ONNX's LayerNormalization (opset 17), `onnx::LayerNormalization` an alias.

Y = (X - mean) / sqrt(var + epsilon) * Scale + B, mean and (population) variance over the per-trial axes `axis`..
last (ONNX's semantics; torch's layer_norm over normalized_shape is axis = -len(normalized_shape)). Scale and B
broadcast against those axes; mdfbridge also takes Scale absent (ones: torch's elementwise_affine=False). The
batch rule shifts a non-negative axis past the batch axis. Scale and B are weights the ONNX and torch importers
mark learnable. Training runs on torch (autograd); the LLVM backend has no kernel for it and refuses the op.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import torchlib
from .base import Alias, OnnxImport, OpDef, TorchModuleBinding, register, shift_axis, torch_module

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


# --------------------------------------------------------------------------- BatchNormalization

BN_ARGS = ("X", "scale", "B", "input_mean", "input_var")
BN_ATTRS = ("epsilon", "momentum", "training_mode", "channel_axis")
BN_DEFAULTS: Dict[str, Any] = {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0, "channel_axis": 0}
BN_COLLECTION = "batch_norms"  # where the program's torch module registers its nn.BatchNorm modules


def _bn_axes(ndim: int, channel_axis: Any) -> Tuple[int, Tuple[int, ...]]:
    """(the channel axis, the other axes: those the batch statistics reduce) of a rank-`ndim` value."""
    c = int(channel_axis)
    if not 0 <= c < ndim:
        raise ValueError(f"BatchNormalization channel axis {c} is out of range for a value of rank {ndim}")
    return c, tuple(a for a in range(ndim) if a != c)


def _per_channel(v: Any, ndim: int, c: int) -> Any:
    """A (C,) vector shaped to broadcast along axis c of a rank-ndim value."""
    return v.reshape((-1,) + (1,) * (ndim - c - 1))


def batch_norm_numpy(X: Any, scale: Any, B: Any, input_mean: Any, input_var: Any, epsilon: float = 1e-5,
                     momentum: float = 0.9, training_mode: int = 0, channel_axis: int = 0) -> np.ndarray:
    """ONNX BatchNormalization in numpy (float64): the given statistics, or with training_mode the batch's own (mean
    and population variance over every axis but the channel axis: the trials of a batch included); momentum only
    matters to training (the running statistics' update)."""
    X = np.asarray(X, dtype=np.float64)
    c, others = _bn_axes(X.ndim, channel_axis)
    if int(training_mode):
        mean = X.mean(axis=others, keepdims=True)
        var = ((X - mean) ** 2).mean(axis=others, keepdims=True)
    else:
        mean = _per_channel(np.asarray(input_mean, dtype=np.float64), X.ndim, c)
        var = _per_channel(np.asarray(input_var, dtype=np.float64), X.ndim, c)
    s = _per_channel(np.asarray(scale, dtype=np.float64), X.ndim, c)
    b = _per_channel(np.asarray(B, dtype=np.float64), X.ndim, c)
    return (X - mean) / np.sqrt(var + float(epsilon)) * s + b


def _torch_bn(X: Any, scale: Any, B: Any, mean: Any, var: Any, epsilon: float, momentum: float, batch_stats: bool,
              channel_axis: int) -> Any:
    """torch.nn.functional.batch_norm on X with its channel axis moved to dim 1 (axes before it flattened into
    the batch); with batch_stats and running tensors given, those are updated in place (torch's momentum is
    1 - ONNX's)."""
    F = torch_module().nn.functional
    c, _ = _bn_axes(X.ndim, channel_axis)
    shape = tuple(X.shape)
    x = X.reshape((-1,) + shape[c:]) if c != 1 else X
    if x.ndim == 1:
        x = x.reshape(1, -1)
    y = F.batch_norm(x, mean, var, scale, B, training=batch_stats, momentum=1.0 - float(momentum), eps=float(epsilon))
    return y.reshape(shape)


def batch_norm_torch(X: Any, scale: Any, B: Any, input_mean: Any, input_var: Any, epsilon: float = 1e-5,
                     momentum: float = 0.9, training_mode: int = 0, channel_axis: int = 0) -> Any:
    """ONNX BatchNormalization in torch (F.batch_norm; the running statistics are not updated here: the program's
    torch module runs BatchNormalization as an nn.BatchNorm module of its own when they are parameters)."""
    X = torchlib.tt(X)
    scale, B = torchlib.tt(scale, X), torchlib.tt(B, X)
    if int(training_mode):
        return _torch_bn(X, scale, B, None, None, epsilon, momentum, True, channel_axis)
    return _torch_bn(X, scale, B, torchlib.tt(input_mean, X), torchlib.tt(input_var, X), epsilon, momentum, False,
                     channel_axis)


def _bn_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    x = tuple(a["X"])
    c, _ = _bn_axes(len(x), a.get("channel_axis", 0))
    for name in BN_ARGS[1:]:
        s = a.get(name)
        if isinstance(s, tuple) and s != (x[c],):
            raise ValueError(f"BatchNormalization {name} must have shape ({x[c]},) (the channels), got {s}")
    return x


def _bn_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """On a batch of X only: the channel axis moves past the batch axis (training mode's statistics then span the
    batch, as ONNX's span N)."""
    return shift_axis(batched_args, attrs, "channel_axis") if batched_args <= {"X"} else None


def batch_norm_module(op: Op, params: Mapping[str, Any], dtype: Any, device: Any) -> Optional[TorchModuleBinding]:
    """BatchNormalization as an nn.BatchNorm1d of its own when scale, B, input_mean and input_var are program
    parameters (else None: the op's torch implementation runs): scale and B are its weight and bias (trained when
    learnable), the statistics its running_mean and running_var buffers. In the module's train() mode (learn()
    sets it) it normalizes by the batch's statistics and updates the running ones as torch does (momentum
    1 - ONNX's; the unbiased batch variance); in eval() mode by the running statistics, unless the call has
    training_mode 1 (the batch's statistics, the running ones left as they are)."""
    from ..program import TensorRef

    torch = torch_module()
    refs = {a: op.args.get(a) for a in BN_ARGS[1:]}
    names = {a: r.name for a, r in refs.items() if isinstance(r, TensorRef)}
    if len(names) != len(refs) or any(n not in params for n in names.values()):
        return None
    channels = int(np.asarray(params[names["scale"]].value).size)
    eps, momentum = float(op.args.get("epsilon", 1e-5)), float(op.args.get("momentum", 0.9))
    bn = torch.nn.BatchNorm1d(channels, eps=eps, momentum=1.0 - momentum).to(dtype=dtype, device=device)
    slots = {"scale": "weight", "B": "bias", "input_mean": "running_mean", "input_var": "running_var"}

    def from_program(values: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for a, slot in slots.items():
                getattr(bn, slot).copy_(torch.as_tensor(np.asarray(values[names[a]], dtype=float).reshape(-1),
                                                        dtype=dtype))

    def to_program() -> Dict[str, np.ndarray]:
        return {names[a]: getattr(bn, slot).detach().cpu().numpy().astype(np.float64).reshape(
            np.shape(params[names[a]].value)) for a, slot in slots.items()}

    from_program({n: params[n].value for n in names.values()})
    for a in ("scale", "B"):
        p = params[names[a]]
        getattr(bn, slots[a]).requires_grad_(bool(p.learnable))
        if p.learning_rate is not None:
            getattr(bn, slots[a]).learning_rate = p.learning_rate  # read by learn() for parameter groups
    x_ref = op.args["X"]
    training_mode = bool(int(op.args.get("training_mode", 0)))
    channel_axis = int(op.args.get("channel_axis", 0)) + 1  # the program's module runs X batched

    def forward(env: Mapping[str, Any]) -> Any:
        x = env[x_ref.name] if isinstance(x_ref, TensorRef) else torch.as_tensor(x_ref, dtype=dtype)
        if bn.training:
            return _torch_bn(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, eps, momentum, True,
                             channel_axis)
        if training_mode:
            return _torch_bn(x, bn.weight, bn.bias, None, None, eps, momentum, True, channel_axis)
        return _torch_bn(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, eps, momentum, False, channel_axis)

    return TorchModuleBinding(bn, BN_COLLECTION, op.out.split(".")[0], tuple(names.values()), forward, to_program,
                              from_program)


def _channels_first(b: OnnxGraphBuilder, op: Op, what: str) -> Tuple[Any, Any]:
    """The op's batched X as an ONNX (N, C, ...) operand (axes before the channel axis folded into N:
    convolution.image_batch) and the function restoring a result to the per-trial frame."""
    from .convolution import image_batch

    x = b.required_arg(op, "X")
    c = int(b.static_arg(op, "channel_axis", 0))
    if not x.batched or not 0 <= c < x.rank:
        raise b.unsupported(f"{what} over an input of shape {x.shape} with channel axis {c} that is not computed per "
                            "trial (ONNX's takes (N, C, ...))")
    return image_batch(b, x, c)


def export_batch_norm(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One BatchNormalization node on the batched input (N = the batch axis, channels next; axes before the
    channels folded into N)."""
    vals = [b.arg(op, a) for a in BN_ARGS[1:]]
    if any(v is None or b.as_val(v).batched for v in vals):
        raise b.unsupported("BatchNormalization whose scale, B or statistics are computed per trial")
    x, restore = _channels_first(b, op, "BatchNormalization")
    eps = float(b.static_arg(op, "epsilon", 1e-5))
    momentum = float(b.static_arg(op, "momentum", 0.9))
    if not b.exact_attr(eps):
        raise b.unsupported(f"BatchNormalization in float64 with epsilon {eps!r}, which float32 cannot hold")
    ins = [x] + [b.as_val(v) for v in vals if v is not None]
    if not int(b.static_arg(op, "training_mode", 0)):
        return restore(b.emit("BatchNormalization", ins, shape=x.shape, batched=True, epsilon=eps,
                              momentum=momentum))
    from onnx import helper

    from ..exporters.onnx_graph import Val

    # training mode has three outputs in ONNX (Y, then the running statistics, which nothing reads here)
    y = b.fresh(f"{b.node_context or 'graph'}/BatchNormalization")
    stats = [b.fresh(f"{y}_running_mean"), b.fresh(f"{y}_running_var")]
    b.nodes.append(helper.make_node("BatchNormalization", [v.name for v in ins], [y] + stats, name=y, epsilon=eps,
                                    momentum=momentum, training_mode=1))
    return restore(Val(y, True, tuple(x.shape), "float"))


def _float32_attr(v: Any) -> float:
    """An ONNX float attribute (a float32) as the shortest decimal that is that float32 (torch's momentum 0.1 is
    written as float32(0.9); 1 - 0.9 is then 0.1, not 0.0999999762)."""
    return float(str(np.float32(v)))


def import_batch_norm(n: NodeImport) -> Emitted:
    """BatchNormalization (opset 9 on) with constant scale, B (learnable) and statistics (running statistics that
    training updates); training_mode 1 (opset 14 on) normalizes by the batch's statistics. The running mean and
    variance outputs are not imported."""
    if any(n.used_outputs[1:]):
        raise n.fail("the running mean/variance outputs are used (only Y is imported)")
    x = n.dynamic(0, "X")
    if n.full_rank(x) < 2:
        raise n.fail(f"X of rank {n.full_rank(x)} ((N, C, ...) expected)")
    args: Dict[str, Any] = {"X": x, "channel_axis": n.axis(1, x), "epsilon": _float32_attr(n.attr("epsilon", 1e-5)),
                            "momentum": _float32_attr(n.attr("momentum", 0.9))}
    training = int(n.attr("training_mode", 0))
    if training not in (0, 1):
        raise n.fail(f"training_mode {training}")
    if training:
        args["training_mode"] = 1
    channels = x.shape[args["channel_axis"]]
    for i, name in enumerate(BN_ARGS[1:], start=1):
        t = n.input(i)
        if t is None or t.kind != "const" or t.value is None:
            raise n.fail(f"{name} must be a constant")
        if t.value.shape != (channels,):
            raise n.fail(f"{name} of shape {t.value.shape} for {channels} channels")
        args[name] = t
    return n.call("onnx::BatchNormalization", args, ("scale", "B"), running=("input_mean", "input_var"))


register(OpDef("BatchNormalization", BN_ARGS, batch_norm_numpy, batch_norm_torch, defaults=BN_DEFAULTS,
               attrs=BN_ATTRS, batch_rule=_bn_batched, shape=_bn_shape,
               description="ONNX BatchNormalization: (X - mean) / sqrt(var + epsilon) * scale + B per channel "
                           "(channel_axis of each trial); training_mode 1: the batch's statistics; the running "
                           "statistics input_mean, input_var are updated by training (momentum)",
               aliases=(Alias("onnx::BatchNormalization"),), onnx_export=export_batch_norm,
               torch_module=batch_norm_module,
               onnx_import=(OnnxImport("BatchNormalization", 9, None, import_batch_norm,
                                       constant_inputs=(1, 2, 3, 4)),)))


# --------------------------------------------------------------------------- InstanceNormalization, GroupNormalization

GN_DEFAULTS: Dict[str, Any] = {"epsilon": 1e-5, "channel_axis": 0, "num_groups": 1}


def _group_stats_numpy(X: np.ndarray, c: int, groups: int, epsilon: float) -> np.ndarray:
    """X normalized over each group of channels (axis c) and the axes after it, per index of the axes before."""
    shape = X.shape
    if shape[c] % groups:
        raise ValueError(f"GroupNormalization of {shape[c]} channels in {groups} groups (channels must divide)")
    x = X.reshape(shape[:c] + (groups, -1))
    mean = x.mean(axis=-1, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=-1, keepdims=True)
    return (d / np.sqrt(var + float(epsilon))).reshape(shape)


def _group_stats_torch(X: Any, c: int, groups: int, epsilon: float) -> Any:
    shape = tuple(X.shape)
    if shape[c] % groups:
        raise ValueError(f"GroupNormalization of {shape[c]} channels in {groups} groups (channels must divide)")
    x = X.reshape(shape[:c] + (groups, -1))
    mean = x.mean(dim=-1, keepdim=True)
    d = x - mean
    var = (d * d).mean(dim=-1, keepdim=True)
    return (d / torch_module().sqrt(var + float(epsilon))).reshape(shape)


def _affine(y: Any, scale: Any, B: Any, c: int) -> Any:
    return y * _per_channel(scale, y.ndim, c) + _per_channel(B, y.ndim, c)


def group_norm_numpy(X: Any, scale: Any, B: Any, epsilon: float = 1e-5, channel_axis: int = 0,
                     num_groups: int = 1) -> np.ndarray:
    """ONNX GroupNormalization (opset 21's per-channel scale and B) in numpy: mean and population variance over
    each of num_groups groups of channels and the axes after the channel axis."""
    X = np.asarray(X, dtype=np.float64)
    c, _ = _bn_axes(X.ndim, channel_axis)
    y = _group_stats_numpy(X, c, int(num_groups), epsilon)
    return _affine(y, np.asarray(scale, dtype=np.float64), np.asarray(B, dtype=np.float64), c)


def group_norm_torch(X: Any, scale: Any, B: Any, epsilon: float = 1e-5, channel_axis: int = 0,
                     num_groups: int = 1) -> Any:
    """ONNX GroupNormalization in torch (the numpy form's formula; autograd)."""
    X = torchlib.tt(X)
    c, _ = _bn_axes(X.ndim, channel_axis)
    y = _group_stats_torch(X, c, int(num_groups), epsilon)
    return _affine(y, torchlib.tt(scale, X), torchlib.tt(B, X), c)


def instance_norm_numpy(X: Any, scale: Any, B: Any, epsilon: float = 1e-5, channel_axis: int = 0) -> np.ndarray:
    """ONNX InstanceNormalization in numpy: each channel normalized over the axes after the channel axis."""
    X = np.asarray(X, dtype=np.float64)
    c, _ = _bn_axes(X.ndim, channel_axis)
    return group_norm_numpy(X, scale, B, epsilon, channel_axis, X.shape[c])


def instance_norm_torch(X: Any, scale: Any, B: Any, epsilon: float = 1e-5, channel_axis: int = 0) -> Any:
    """ONNX InstanceNormalization in torch."""
    X = torchlib.tt(X)
    c, _ = _bn_axes(X.ndim, channel_axis)
    return group_norm_torch(X, scale, B, epsilon, channel_axis, X.shape[c])


def probe_group_norm(attrs: Mapping[str, Any], args: Sequence[Any]) -> np.ndarray:
    """An ONNX GroupNormalization node (X (N, C, ...), scale and bias per group (opset 18) or per channel (21)) on
    its inputs, in X's dtype (the ONNX importer's probe runs it: onnx's reference evaluator cannot expand opset
    21's function).

    attrs: the node's attributes (name -> value); args: X, scale, bias."""
    x = np.asarray(args[0])
    groups = int(attrs.get("num_groups", 0))
    c = x.shape[1] if x.ndim > 1 else 0
    if groups < 1 or not c or c % groups:
        raise ValueError(f"num_groups {groups} for {c} channels")
    scale, bias = (np.asarray(a, dtype=np.float64).reshape(-1) for a in args[1:3])
    if scale.shape == (groups,) and groups != c:
        scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
    return group_norm_numpy(x, scale, bias, float(attrs.get("epsilon", 1e-5)), 1, groups).astype(x.dtype)


def _channel_norm_shape(what: str) -> Any:
    def shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
        x = tuple(a["X"])
        c, _ = _bn_axes(len(x), a.get("channel_axis", 0))
        if c == len(x) - 1:
            raise ValueError(f"{what} of shape {x} has no axes after its channel axis {c}")
        g = int(a.get("num_groups", 1)) if what == "GroupNormalization" else x[c]
        if g < 1 or x[c] % g:
            raise ValueError(f"{what} of {x[c]} channels in {g} groups (channels must divide)")
        for name in ("scale", "B"):
            s = a.get(name)
            if isinstance(s, tuple) and s != (x[c],):
                raise ValueError(f"{what} {name} must have shape ({x[c]},) (the channels), got {s}")
        return x
    return shape


def _channel_norm_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """On a batch of X only: the channel axis moves past the batch axis."""
    return shift_axis(batched_args, attrs, "channel_axis") if batched_args <= {"X"} else None


def _export_channel_norm(what: str) -> Any:
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        """InstanceNormalization node; GroupNormalization as one on the (N, groups, rest) reshape, then the
        per-channel scale and bias (torch's own export)."""
        given = b.arg(op, "scale"), b.arg(op, "B")
        if given[0] is None or given[1] is None or any(b.as_val(v).batched for v in given if v is not None):
            raise b.unsupported(f"{what} whose scale or B is computed per trial")
        scale, bias = b.as_val(given[0]), b.as_val(given[1])
        x, restore = _channels_first(b, op, what)
        if x.rank < 2:
            raise b.unsupported(f"{what} of channels without axes after them (shape {x.shape})")
        eps = float(b.static_arg(op, "epsilon", 1e-5))
        if not b.exact_attr(eps):
            raise b.unsupported(f"{what} in float64 with epsilon {eps!r}, which float32 cannot hold")
        if what == "InstanceNormalization":
            return restore(b.emit("InstanceNormalization", [x, scale, bias], shape=x.shape, batched=True,
                                  epsilon=eps))
        g = int(b.static_arg(op, "num_groups", 1))
        grouped = b.reshape(x, [g, -1])
        y = b.emit("InstanceNormalization", [grouped, b.const(np.ones(g)), b.const(np.zeros(g))],
                   shape=grouped.shape, batched=True, epsilon=eps)
        y = b.reshape(y, list(x.shape))
        trailing = (1,) * (x.rank - 1)
        s = b.reshape(scale, [x.shape[0], *trailing])
        bb = b.reshape(bias, [x.shape[0], *trailing])
        return restore(b.as_val(b.add(b.mul(y, s), bb)))
    return export


def _import_channel_norm(what: str) -> Any:
    def handler(n: NodeImport) -> Emitted:
        x = n.dynamic(0, "X")
        if n.full_rank(x) < 3:
            raise n.fail(f"X of rank {n.full_rank(x)} ((N, C, D1, ...) expected)")
        c = n.axis(1, x)
        channels = x.shape[c]
        args: Dict[str, Any] = {"X": x, "channel_axis": c, "epsilon": _float32_attr(n.attr("epsilon", 1e-5))}
        groups = channels
        if what == "GroupNormalization":
            groups = int(n.attr("num_groups", 0))
            if groups < 1 or channels % groups:
                raise n.fail(f"num_groups {groups} for {channels} channels (must divide them)")
            if int(n.attr("stash_type", 1)) != 1:
                raise n.fail(f"stash_type {n.attr('stash_type')} (float32 statistics, 1, is supported)")
            args["num_groups"] = groups
        for i, name in ((1, "scale"), (2, "B")):
            t = n.input(i)
            if t is None or t.kind != "const" or t.value is None:
                raise n.fail(f"{name} must be a constant")
            written = tuple(t.value.shape)
            value = np.asarray(t.value).reshape(-1)
            if what == "GroupNormalization" and n.opset < 21 and value.shape == (groups,) and groups != channels:
                value = np.repeat(value, channels // groups)  # opset 18: one value per group
            if value.shape != (channels,):
                raise n.fail(f"{name} of shape {written} for {channels} channels")
            args[name] = t.with_value(value)
        return n.call(f"onnx::{what}", args, ("scale", "B"))
    return handler


register(OpDef("InstanceNormalization", ("X", "scale", "B"), instance_norm_numpy, instance_norm_torch,
               defaults={"epsilon": 1e-5, "channel_axis": 0}, attrs=("epsilon", "channel_axis"),
               batch_rule=_channel_norm_batched, shape=_channel_norm_shape("InstanceNormalization"),
               description="ONNX InstanceNormalization: each channel (channel_axis of each trial) normalized over the "
                           "axes after it, then scale and B per channel",
               aliases=(Alias("onnx::InstanceNormalization"),),
               onnx_export=_export_channel_norm("InstanceNormalization"),
               onnx_import=(OnnxImport("InstanceNormalization", 6, None, _import_channel_norm("InstanceNormalization"),
                                       constant_inputs=(1, 2)),)))

register(OpDef("GroupNormalization", ("X", "scale", "B"), group_norm_numpy, group_norm_torch, defaults=GN_DEFAULTS,
               attrs=("epsilon", "channel_axis", "num_groups"), batch_rule=_channel_norm_batched,
               shape=_channel_norm_shape("GroupNormalization"),
               description="ONNX GroupNormalization: num_groups groups of channels each normalized over itself and "
                           "the axes after the channel axis, then scale and B per channel (opset 21's)",
               aliases=(Alias("onnx::GroupNormalization"),), onnx_export=_export_channel_norm("GroupNormalization"),
               onnx_import=(OnnxImport("GroupNormalization", 18, None, _import_channel_norm("GroupNormalization"),
                                       constant_inputs=(1, 2)),)))


# --------------------------------------------------------------------------- LRN

LRN_DEFAULTS: Dict[str, Any] = {"size": 1, "alpha": 1e-4, "beta": 0.75, "bias": 1.0, "channel_axis": 0}


def _lrn_window(size: Any) -> Tuple[int, int]:
    n = int(size)
    if n < 1:
        raise ValueError(f"LRN size {n} must be >= 1")
    return (n - 1) // 2, n - 1 - (n - 1) // 2  # channels before and after each one


def lrn_numpy(X: Any, size: int = 1, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0,
              channel_axis: int = 0) -> np.ndarray:
    """ONNX LRN in numpy: X / (bias + alpha / size * the sum of squares over the `size` channels around each
    one) ** beta."""
    X = np.asarray(X, dtype=np.float64)
    c, _ = _bn_axes(X.ndim, channel_axis)
    before, after = _lrn_window(size)
    sq = np.moveaxis(X * X, c, -1)
    padded = np.pad(sq, [(0, 0)] * (sq.ndim - 1) + [(before, after)])
    sums = np.lib.stride_tricks.sliding_window_view(padded, int(size), axis=-1).sum(axis=-1)
    return X / (float(bias) + float(alpha) / int(size) * np.moveaxis(sums, -1, c)) ** float(beta)


def lrn_torch(X: Any, size: int = 1, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0,
              channel_axis: int = 0) -> Any:
    """ONNX LRN in torch (the numpy form: padded squares summed over windows by unfold; autograd)."""
    F = torch_module().nn.functional
    X = torchlib.tt(X)
    c, _ = _bn_axes(X.ndim, channel_axis)
    before, after = _lrn_window(size)
    sq = (X * X).movedim(c, -1)
    sums = F.pad(sq, [before, after]).unfold(-1, int(size), 1).sum(dim=-1)
    return X / (float(bias) + float(alpha) / int(size) * sums.movedim(-1, c)) ** float(beta)


def _lrn_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    x = tuple(a["X"])
    _bn_axes(len(x), a.get("channel_axis", 0))
    _lrn_window(a.get("size", 1))
    return x


def export_lrn(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One LRN node on the batched input (channels first in each trial; other than (N, C, H, W) reshaped to
    (N, C, H * W..., 1) and back)."""
    x, restore = _channels_first(b, op, "LRN")
    if x.rank < 2:
        raise b.unsupported(f"LRN of channels without axes after them (shape {x.shape})")
    attrs = {a: float(b.static_arg(op, a, LRN_DEFAULTS[a])) for a in ("alpha", "beta", "bias")}
    if not all(b.exact_attr(v) for v in attrs.values()):
        raise b.unsupported(f"LRN in float64 with attributes {attrs}, which float32 cannot hold")
    four_d = x if x.rank == 3 else b.reshape(x, [x.shape[0], -1, 1])  # (onnxruntime's LRN takes 4-D inputs)
    y = b.emit("LRN", [four_d], shape=four_d.shape, batched=True, size=int(b.static_arg(op, "size", 1)),
               alpha=attrs["alpha"], beta=attrs["beta"], bias=attrs["bias"])
    return restore(y if x.rank == 3 else b.reshape(y, list(x.shape)))


def import_lrn(n: NodeImport) -> Emitted:
    """LRN (opset 1 on): size, alpha, beta, bias over the channel axis of (N, C, D1, ...)."""
    x = n.dynamic(0, "X")
    if n.full_rank(x) < 3:
        raise n.fail(f"X of rank {n.full_rank(x)} ((N, C, D1, ...) expected)")
    if n.attr("size") is None:
        raise n.fail("size is missing")
    args: Dict[str, Any] = {"X": x, "channel_axis": n.axis(1, x), "size": int(n.attr("size")),
                            "alpha": _float32_attr(n.attr("alpha", 1e-4)), "beta": _float32_attr(n.attr("beta", 0.75)),
                            "bias": _float32_attr(n.attr("bias", 1.0))}
    if args["size"] < 1:
        raise n.fail(f"size {args['size']} (>= 1 expected)")
    return n.call("onnx::LRN", args)


register(OpDef("LRN", ("X",), lrn_numpy, lrn_torch, defaults=LRN_DEFAULTS,
               attrs=("size", "alpha", "beta", "bias", "channel_axis"), batch_rule=_channel_norm_batched,
               shape=_lrn_shape,
               description="ONNX LRN: X / (bias + alpha / size * the sum of squares over `size` neighbouring "
                           "channels) ** beta",
               aliases=(Alias("onnx::LRN"),), onnx_export=export_lrn,
               onnx_import=(OnnxImport("LRN", 1, None, import_lrn),)))
