"""Converters of attention layers: nn.MultiheadAttention as the registry's `MultiheadAttention` op (its weights
learnable parameters in torch's layout, `Builder.weighted_op`); nn.TransformerEncoderLayer, nn.TransformerEncoder,
nn.TransformerDecoderLayer, nn.TransformerDecoder and nn.Transformer as that op plus the converters of their own
submodules (Linear, LayerNorm, the activation, residual adds), so every weight keeps its torch key.

Eval mode only (dropout is refused in training mode, as nn.Dropout is). Attention masks (attn_mask, src_mask,
tgt_mask, memory_mask, mask: (L, S), bool or float, is_causal their hint) must be constants of the module (a buffer
or tensor attribute); padding masks (key_padding_mask) are refused. embed_dim == kdim == vdim, no bias_k/bias_v or
add_zero_attn. batch_first=False layers take time-major data: their tensors carry the batch on axis 1
(`MDFTensor.batch_axis`), as batch_first=False recurrent layers do."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
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


def _mask(call: Call, mask: Any, L: int, S: int) -> Dict[str, np.ndarray]:
    """An attention mask as the op's `attn_bias` / `attn_block` (see mdfbridge.ops.attention): {} for none."""
    if mask is None:
        return {}
    if not isinstance(mask, Weight):
        raise call.unsupported("an attention mask computed from the inputs; a constant mask of the module (a buffer "
                               "or tensor attribute) is supported")
    m = mask.value.detach().cpu()
    if tuple(m.shape) != (L, S):
        raise call.unsupported(f"an attention mask of shape {tuple(m.shape)}; ({L}, {S}) (one for every trial and "
                               "head) is supported")
    if m.dtype == torch.bool:
        return {"attn_block": m.double().numpy()} if bool(m.any()) else {}
    values = m.double().numpy()
    block = np.isneginf(values)
    if np.isnan(values).any() or np.isposinf(values).any():
        raise call.unsupported("an attention mask holding NaN or +inf")
    out = {"attn_bias": np.where(block, 0.0, values)} if np.any(values[~block]) else {}
    return {**out, "attn_block": block.astype(float)} if block.any() else out


def _attention(b: Builder, call: Call, m: nn.MultiheadAttention, q: MDFTensor, k: MDFTensor, v: MDFTensor,
               outputs: Tuple[str, ...] = ("Y",), mask: Any = None) -> List[MDFTensor]:
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
                          shapes[outputs[0]], "MultiheadAttention", fixed=_mask(call, mask, q.shape[0], k.shape[0]),
                          extra_inputs=extra)
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
    if call.arg(3, "key_padding_mask") is not None:
        raise call.unsupported("nn.MultiheadAttention with key_padding_mask; padding masks are not supported")
    mask = call.arg(5, "attn_mask")  # (is_causal, argument 7, is torch's hint that the mask is causal)
    need_weights = bool(call.arg(4, "need_weights", True))
    if need_weights and not call.arg(6, "average_attn_weights", True) and _item_used(call.fx_node, (1,)):
        raise call.unsupported("per-head attention weights (average_attn_weights=False)")
    used = [out for i, out in enumerate(("Y", "weights")) if _item_used(call.fx_node, (i,))
            and (out == "Y" or need_weights)]
    values = dict(zip(used, _attention(b, call, m, q, k, v, tuple(used), mask))) if used else {}
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


def _sublayers(b: Builder, call: Call, m: Any, x: MDFTensor, blocks: Sequence[Tuple[str, Any]]) -> MDFTensor:
    """x through a transformer layer's blocks, (norm submodule, block) in order, with torch's residual adds:
    x = x + block(norm(x)) with norm_first (pre-norm), else x = norm(x + block(x)); refused in training mode with
    dropout (as nn.Dropout is)."""
    if m.training and any(d.p for d in (m.dropout, m.dropout1, m.dropout2, getattr(m, "dropout3", m.dropout))):
        raise call.unsupported(f"nn.{type(m).__name__} with dropout in training mode (call module.eval())")
    for norm, block in blocks:
        if m.norm_first:
            x = b.binary(call, x, block(_apply(b, call, norm, getattr(m, norm), x)), "+")
        else:
            x = _apply(b, call, norm, getattr(m, norm), b.binary(call, x, block(x), "+"))
    return x


def _feed_forward(b: Builder, call: Call, m: Any) -> Any:
    """The layer's feed-forward block: linear2(activation(linear1(h)))."""
    def ff(h: MDFTensor) -> MDFTensor:
        h = _activation(b, call, m.activation, _apply(b, call, "linear1", m.linear1, h))
        return _apply(b, call, "linear2", m.linear2, h)
    return ff


def _attention_block(b: Builder, call: Call, attn: nn.MultiheadAttention, mask: Any, name: str = "self_attn",
                    memory: Optional[MDFTensor] = None) -> Any:
    """The layer's attention block `name` over its input (or over `memory`) under `mask`."""
    def block(h: MDFTensor) -> MDFTensor:
        kv = h if memory is None else memory
        return _attention(b, _sub(call, name, (h, kv, kv), attn), attn, h, kv, kv, mask=mask)[0]
    return block


def _encoder_layer(b: Builder, call: Call, m: nn.TransformerEncoderLayer, x: MDFTensor, mask: Any = None
                   ) -> MDFTensor:
    """x through one encoder layer (self-attention, feed-forward; post- or pre-norm), as torch computes it in eval
    mode."""
    return _sublayers(b, call, m, x, [("norm1", _attention_block(b, call, m.self_attn, mask)),
                                      ("norm2", _feed_forward(b, call, m))])


def _decoder_layer(b: Builder, call: Call, m: nn.TransformerDecoderLayer, x: MDFTensor, memory: MDFTensor,
                   tgt_mask: Any = None, memory_mask: Any = None) -> MDFTensor:
    """x through one decoder layer (self-attention, attention over `memory`, feed-forward; post- or pre-norm)."""
    return _sublayers(b, call, m, x, [
        ("norm1", _attention_block(b, call, m.self_attn, tgt_mask)),
        ("norm2", _attention_block(b, call, m.multihead_attn, memory_mask, "multihead_attn", memory)),
        ("norm3", _feed_forward(b, call, m))])


def _encoder(b: Builder, call: Call, m: nn.TransformerEncoder, x: MDFTensor, mask: Any) -> MDFTensor:
    for i, layer in enumerate(m.layers):
        if not isinstance(layer, nn.TransformerEncoderLayer):
            raise call.unsupported(f"layer {i} is a {type(layer).__name__}, not an nn.TransformerEncoderLayer")
        x = _encoder_layer(b, _sub(call, f"layers.{i}", (x,), layer), layer, x, mask)
    return x if m.norm is None else _apply(b, call, "norm", m.norm, x)


def _decoder(b: Builder, call: Call, m: nn.TransformerDecoder, x: MDFTensor, memory: MDFTensor, tgt_mask: Any,
             memory_mask: Any) -> MDFTensor:
    for i, layer in enumerate(m.layers):
        if not isinstance(layer, nn.TransformerDecoderLayer):
            raise call.unsupported(f"layer {i} is a {type(layer).__name__}, not an nn.TransformerDecoderLayer")
        x = _decoder_layer(b, _sub(call, f"layers.{i}", (x, memory), layer), layer, x, memory, tgt_mask, memory_mask)
    return x if m.norm is None else _apply(b, call, "norm", m.norm, x)


def _no_padding_mask(call: Call, i: int, name: str) -> None:
    if call.arg(i, name) is not None:
        raise call.unsupported(f"{name} given; padding masks are not supported")


@add_converter(nn.TransformerEncoderLayer, nn.TransformerEncoder)
def _transformer_encoder(b: Builder, call: Call) -> MDFTensor:
    """nn.TransformerEncoderLayer(src, src_mask): self-attention and feed-forward blocks with residual adds and
    LayerNorms (activation relu, gelu or any converted module or function); nn.TransformerEncoder(src, mask): its
    layers in order (each with the mask), then its norm if it has one."""
    m = call.module
    _no_padding_mask(call, 2, "src_key_padding_mask")
    x = call.tensor(0, "src")
    if isinstance(m, nn.TransformerEncoderLayer):
        return _encoder_layer(b, call, m, x, call.arg(1, "src_mask"))
    assert isinstance(m, nn.TransformerEncoder)  # add_converter dispatches on the module class
    return _encoder(b, call, m, x, call.arg(1, "mask"))


@add_converter(nn.TransformerDecoderLayer, nn.TransformerDecoder)
def _transformer_decoder(b: Builder, call: Call) -> MDFTensor:
    """nn.TransformerDecoderLayer(tgt, memory, tgt_mask, memory_mask): self-attention, attention over memory and
    feed-forward blocks; nn.TransformerDecoder (the same arguments): its layers in order, then its norm."""
    m = call.module
    for i, name in ((4, "tgt_key_padding_mask"), (5, "memory_key_padding_mask")):
        _no_padding_mask(call, i, name)
    x, memory = call.tensor(0, "tgt"), call.tensor(1, "memory")
    masks = call.arg(2, "tgt_mask"), call.arg(3, "memory_mask")
    if isinstance(m, nn.TransformerDecoderLayer):
        return _decoder_layer(b, call, m, x, memory, *masks)
    assert isinstance(m, nn.TransformerDecoder)  # add_converter dispatches on the module class
    return _decoder(b, call, m, x, memory, *masks)


@add_converter(nn.Transformer)
def _transformer(b: Builder, call: Call) -> MDFTensor:
    """nn.Transformer(src, tgt, src_mask, tgt_mask, memory_mask): memory = encoder(src), then decoder(tgt, memory)."""
    m = call.module
    assert isinstance(m, nn.Transformer)  # add_converter dispatches on the module class
    for i, name in ((5, "src_key_padding_mask"), (6, "tgt_key_padding_mask"), (7, "memory_key_padding_mask")):
        _no_padding_mask(call, i, name)
    if not isinstance(m.encoder, nn.TransformerEncoder) or not isinstance(m.decoder, nn.TransformerDecoder):
        raise call.unsupported("nn.Transformer with a custom encoder or decoder")
    memory = _encoder(b, _sub(call, "encoder", (), m.encoder), m.encoder, call.tensor(0, "src"),
                      call.arg(2, "src_mask"))
    return _decoder(b, _sub(call, "decoder", (), m.decoder), m.decoder, call.tensor(1, "tgt"), memory,
                    call.arg(3, "tgt_mask"), call.arg(4, "memory_mask"))
