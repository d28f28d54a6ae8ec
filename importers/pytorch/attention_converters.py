"""Converters of attention layers: nn.MultiheadAttention as the registry's `MultiheadAttention` op (its weights
learnable parameters in torch's layout, `Builder.weighted_op`), nn.TransformerEncoderLayer and nn.TransformerEncoder
as that op plus the converters of their own submodules (Linear, LayerNorm, the activation, residual adds), so every
weight keeps its torch key.

Eval mode only (dropout is refused in training mode, as nn.Dropout is), no masks (src_mask, key_padding_mask,
attn_mask, is_causal), embed_dim == kdim == vdim, no bias_k/bias_v or add_zero_attn. batch_first=False layers take
time-major data: their tensors carry the batch on axis 1 (`MDFTensor.batch_axis`), as batch_first=False recurrent
layers do."""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Tuple

from torch import nn

from .builder import IN, Builder
from .converters import _item_used
from .registry import CONVERTERS, add_converter
from .values import Call, MDFTensor, Weight


def _batch_axis(call: Call, x: MDFTensor, batch_first: bool) -> None:
    """Refuse an input whose batch axis is not the layer's (0 for batch_first, else 1)."""
    want = 0 if batch_first else 1
    if x.batch_axis != want:
        raise call.unsupported(f"input with the batch on axis {x.batch_axis} given to a layer with "
                               f"batch_first={batch_first} (batch axis {want}); one module's tensors need one batch "
                               "axis")


def _weight(b: Builder, call: Call, name: str, value: Any) -> Optional[Weight]:
    return None if value is None else Weight(b.key(call.path, name), value)


def _attention(b: Builder, call: Call, m: nn.MultiheadAttention, q: MDFTensor, k: MDFTensor, v: MDFTensor,
               outputs: Tuple[str, ...] = ("Y",)) -> List[MDFTensor]:
    """One MultiheadAttention node of `m` on query q, key k, value v (self-attention when all three are one), with
    a function and an output port for each of `outputs` ('Y', 'weights'): the values, in that order."""
    bad = []
    if not m._qkv_same_embed_dim:
        bad.append(f"kdim={m.kdim}, vdim={m.vdim} (not embed_dim={m.embed_dim})")
    if m.bias_k is not None or m.bias_v is not None:
        bad.append("add_bias_kv=True")
    if m.add_zero_attn:
        bad.append("add_zero_attn=True")
    if m.training and m.dropout:
        bad.append(f"dropout={m.dropout} in training mode (call module.eval())")
    if bad:
        raise call.unsupported("nn.MultiheadAttention with " + ", ".join(bad))
    for t in (q, k, v):
        _batch_axis(call, t, m.batch_first)
    if k.shape != v.shape or q.shape[-1:] != (m.embed_dim,) or len(q.shape) != 2 or len(k.shape) != 2:
        raise call.unsupported(f"attention of query {q.shape}, key {k.shape} and value {v.shape} per trial; "
                               f"expected (L, {m.embed_dim}) and (S, {m.embed_dim})")
    weights = {"in_proj_weight": _weight(b, call, "in_proj_weight", m.in_proj_weight),
               "in_proj_bias": _weight(b, call, "in_proj_bias", m.in_proj_bias),
               "out_proj_weight": _weight(b, call, "out_proj.weight", m.out_proj.weight),
               "out_proj_bias": _weight(b, call, "out_proj.bias", m.out_proj.bias)}
    shapes = {"Y": q.shape, "weights": (q.shape[0], k.shape[0])}
    extra = {name: t for name, t in (("K", k), ("V", v)) if t != q}
    args = {"X": IN, **{n: n for n in extra}, "num_heads": m.num_heads}
    first = b.weighted_op(call, q, "MultiheadAttention", {**args, "output": outputs[0]}, weights,
                          shapes[outputs[0]], "MultiheadAttention", extra_inputs=extra)
    node = b.nodes[first.node]
    fargs = next(iter(node["functions"].values()))["function"]["MultiheadAttention"]
    values = [first]
    for out in outputs[1:]:  # the same node, the same parameters: another function and port
        node["functions"][f"attn_{out}"] = {"function": {"MultiheadAttention": {**fargs, "output": out}}}
        node["output_ports"][f"attn_{out}"] = {"value": f"attn_{out}", "shape": list(shapes[out])}
        values.append(MDFTensor(first.node, f"attn_{out}", shapes[out], q.batch_axis))
    # (torch's attention weights are batch-first whatever batch_first says)
    return [dataclasses.replace(t, batch_axis=0) if out == "weights" else t for t, out in zip(values, outputs)]


@add_converter(nn.MultiheadAttention)
def _multihead_attention(b: Builder, call: Call) -> Tuple[Optional[MDFTensor], Optional[MDFTensor]]:
    """nn.MultiheadAttention(query, key, value): (attn_output, attn_weights), each computed where it is used
    (weights averaged over the heads; None with need_weights=False)."""
    m = call.module
    assert isinstance(m, nn.MultiheadAttention)  # add_converter dispatches on the module class
    q, k, v = call.tensor(0, "query"), call.tensor(1, "key"), call.tensor(2, "value")
    for i, name in ((3, "key_padding_mask"), (5, "attn_mask")):
        if call.arg(i, name) is not None:
            raise call.unsupported(f"nn.MultiheadAttention with {name}; masks are not supported")
    if call.arg(7, "is_causal", False):
        raise call.unsupported("nn.MultiheadAttention with is_causal=True; masks are not supported")
    need_weights = bool(call.arg(4, "need_weights", True))
    if need_weights and not call.arg(6, "average_attn_weights", True) and _item_used(call.fx_node, (1,)):
        raise call.unsupported("per-head attention weights (average_attn_weights=False)")
    used = [out for i, out in enumerate(("Y", "weights")) if _item_used(call.fx_node, (i,))
            and (out == "Y" or need_weights)]
    values = dict(zip(used, _attention(b, call, m, q, k, v, tuple(used)))) if used else {}
    return values.get("Y"), values.get("weights")


def _sub(call: Call, name: str, args: Tuple[Any, ...], module: Any = None) -> Call:
    """The call of submodule `name` of the layer being converted (its converter names nodes after its path)."""
    path = f"{call.path}.{name}" if call.path else name
    return Call(f"{call.name}_{name}", f"{path} ({type(module).__name__})", path, args, {}, None, module,
                module is not None, None)


def _apply(b: Builder, call: Call, name: str, module: nn.Module, x: MDFTensor) -> MDFTensor:
    """Submodule `name` of the layer applied to x, by its own converter."""
    conv = CONVERTERS.get(type(module))
    if conv is None:
        raise call.unsupported(f"submodule {name} ({type(module).__name__}) has no converter")
    return conv(b, _sub(call, name, (x,), module))


def _activation(b: Builder, call: Call, act: Any, x: MDFTensor) -> MDFTensor:
    """The layer's activation: a module (its converter) or a function (F.relu, F.gelu: theirs)."""
    if isinstance(act, nn.Module):
        return _apply(b, call, "activation", act, x)
    conv = CONVERTERS.get(act)
    if conv is None:
        raise call.unsupported(f"activation {getattr(act, '__name__', act)!r} has no converter")
    return conv(b, Call(f"{call.name}_activation", getattr(act, "__name__", "activation"), call.path, (x,), {},
                        None, None, False, None))


def _encoder_layer(b: Builder, call: Call, m: nn.TransformerEncoderLayer, x: MDFTensor) -> MDFTensor:
    """x through one encoder layer (post-norm, or pre-norm with norm_first), as torch computes it in eval mode."""
    if m.training and any(d.p for d in (m.dropout, m.dropout1, m.dropout2)):
        raise call.unsupported("nn.TransformerEncoderLayer with dropout in training mode (call module.eval())")
    attn = m.self_attn

    def sa(h: MDFTensor) -> MDFTensor:
        return _attention(b, _sub(call, "self_attn", (h, h, h), attn), attn, h, h, h)[0]

    def ff(h: MDFTensor) -> MDFTensor:
        h = _activation(b, call, m.activation, _apply(b, call, "linear1", m.linear1, h))
        return _apply(b, call, "linear2", m.linear2, h)

    def add(a: MDFTensor, c: MDFTensor) -> MDFTensor:
        return b.binary(call, a, c, "+")

    if m.norm_first:
        x = add(x, sa(_apply(b, call, "norm1", m.norm1, x)))
        return add(x, ff(_apply(b, call, "norm2", m.norm2, x)))
    x = _apply(b, call, "norm1", m.norm1, add(x, sa(x)))
    return _apply(b, call, "norm2", m.norm2, add(x, ff(x)))


def _no_masks(call: Call, names: Tuple[str, ...]) -> None:
    for i, name in enumerate(names, 1):
        if call.arg(i, name) not in (None, False):
            raise call.unsupported(f"{name} given; masks are not supported")


@add_converter(nn.TransformerEncoderLayer)
def _transformer_encoder_layer(b: Builder, call: Call) -> MDFTensor:
    """nn.TransformerEncoderLayer(src): self-attention and feed-forward blocks with residual adds and LayerNorms
    (activation relu, gelu or any converted module or function)."""
    m = call.module
    assert isinstance(m, nn.TransformerEncoderLayer)  # add_converter dispatches on the module class
    _no_masks(call, ("src_mask", "src_key_padding_mask", "is_causal"))
    return _encoder_layer(b, call, m, call.tensor(0, "src"))


@add_converter(nn.TransformerEncoder)
def _transformer_encoder(b: Builder, call: Call) -> MDFTensor:
    """nn.TransformerEncoder(src): its layers in order, then its norm if it has one."""
    m = call.module
    assert isinstance(m, nn.TransformerEncoder)  # add_converter dispatches on the module class
    _no_masks(call, ("mask", "src_key_padding_mask", "is_causal"))
    x = call.tensor(0, "src")
    for i, layer in enumerate(m.layers):
        if not isinstance(layer, nn.TransformerEncoderLayer):
            raise call.unsupported(f"layer {i} is a {type(layer).__name__}, not an nn.TransformerEncoderLayer")
        x = _encoder_layer(b, _sub(call, f"layers.{i}", (x,), layer), layer, x)
    return x if m.norm is None else _apply(b, call, "norm", m.norm, x)

