"""Multi-head attention: the `MultiheadAttention` op, torch.nn.MultiheadAttention's computation (eval mode, an
optional attention mask) with its weights in torch's layout, so a converted layer trains where torch keeps them.

Per trial, query X (L, E), key K and value V (S, E) (K and V absent: X, self-attention), num_heads h, d = E / h:

    q, k, v = X @ Wq.T + bq, K @ Wk.T + bk, V @ Wv.T + bv       (Wq, Wk, Wv: the rows of in_proj_weight (3E, E))
    A_j = softmax(q_j @ k_j.T / sqrt(d) + attn_bias, -inf where attn_block)   (head j: columns j*d .. (j+1)*d)
    Y = concat_j(A_j @ v_j) @ out_proj_weight.T + out_proj_bias

The optional (L, S) masks are torch's attn_mask split in two: `attn_bias` a float mask's finite values, added to
the scores, and `attn_block` 1 where a query may not attend (a bool mask's True, a float mask's -inf), so no
infinity is written into a document. `output` 'Y' is the attention output (L, E); 'weights' the attention weights
averaged over the heads (L, S), as torch returns them with need_weights=True. Leading axes (trials) broadcast. The
ONNX export writes the formula (MatMul, Reshape, Transpose, Softmax, Where for a mask); ONNX graphs of attention
import as those primitives (torch.onnx's export of nn.MultiheadAttention). The LLVM backend has no kernel and
refuses the op.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

import numpy as np

from . import torchlib
from .base import OpDef, register

if TYPE_CHECKING:
    from ..exporters.onnx_graph import OnnxGraphBuilder, Operand
    from ..program import Op

MHA_ARGS = ("X", "K", "V", "in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias", "attn_bias",
            "attn_block")
MHA_DEFAULTS: Dict[str, Any] = {"K": None, "V": None, "in_proj_bias": None, "out_proj_bias": None, "attn_bias": None,
                                "attn_block": None, "num_heads": 1, "output": "Y"}
MHA_OUTPUTS = ("Y", "weights")


def _attention(xp: Any, softmax: Any, X: Any, K: Any, V: Any, w_in: Any, b_in: Any, w_out: Any, b_out: Any,
               num_heads: int, output: str, bias: Any = None, block: Any = None) -> Any:
    """The op's formula with array library `xp` (numpy or torch) and its softmax over the last axis."""
    if output not in MHA_OUTPUTS:
        raise ValueError(f"MultiheadAttention output {output!r}; one of {', '.join(MHA_OUTPUTS)}")
    E = w_in.shape[-1]
    h = int(num_heads)
    d = E // h
    K = X if K is None else K
    V = K if V is None else V
    parts = []
    for i, t in enumerate((X, K, V)):
        p = t @ w_in[i * E:(i + 1) * E].T
        parts.append(p if b_in is None else p + b_in[i * E:(i + 1) * E])

    def heads(t: Any) -> Any:  # (..., L, E) -> (..., h, L, d)
        return xp.swapaxes(t.reshape(tuple(t.shape[:-1]) + (h, d)), -2, -3)

    q, k, v = (heads(t) for t in parts)
    scores = (q @ xp.swapaxes(k, -1, -2)) / math.sqrt(d)  # (..., h, L, S)
    if bias is not None:
        scores = scores + bias
    if block is not None:
        scores = xp.where(block > 0.5, -math.inf, scores)
    attn = softmax(scores)
    if output == "weights":
        return attn.mean(-3)
    ctx = xp.swapaxes(attn @ v, -2, -3)  # (..., L, h, d)
    ctx = ctx.reshape(tuple(ctx.shape[:-2]) + (E,))
    y = ctx @ w_out.T
    return y if b_out is None else y + b_out


def _softmax_numpy(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def mha_numpy(X: Any, K: Any = None, V: Any = None, in_proj_weight: Any = None, in_proj_bias: Any = None,
              out_proj_weight: Any = None, out_proj_bias: Any = None, attn_bias: Any = None, attn_block: Any = None,
              num_heads: int = 1, output: str = "Y") -> np.ndarray:
    """MultiheadAttention in numpy (float64; see the module docstring)."""
    def f(v: Any) -> Any:
        return None if v is None else np.asarray(v, dtype=np.float64)

    with np.errstate(invalid="ignore"):  # (a fully blocked row is NaN, as in torch)
        return _attention(np, _softmax_numpy, f(X), f(K), f(V), f(in_proj_weight), f(in_proj_bias),
                          f(out_proj_weight), f(out_proj_bias), num_heads, output, f(attn_bias), f(attn_block))


def mha_torch(X: Any, K: Any = None, V: Any = None, in_proj_weight: Any = None, in_proj_bias: Any = None,
              out_proj_weight: Any = None, out_proj_bias: Any = None, attn_bias: Any = None, attn_block: Any = None,
              num_heads: int = 1, output: str = "Y") -> Any:
    """MultiheadAttention in torch (differentiable in every argument; see the module docstring)."""
    torch = torchlib.torch_module()
    X = torchlib.tt(X)

    def f(v: Any) -> Any:
        return None if v is None else torchlib.tt(v, X)

    return _attention(torch, lambda a: torch.softmax(a, -1), X, f(K), f(V), f(in_proj_weight), f(in_proj_bias),
                      f(out_proj_weight), f(out_proj_bias), num_heads, output, f(attn_bias), f(attn_block))


def _shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    """Per trial: Y (L, E) for X (L, E); weights (L, S), S the key's length."""
    x = tuple(a["X"])
    if a.get("output", "Y") == "weights":
        k = tuple(a["K"]) if a.get("K") is not None else x
        return x[:-1] + (k[-2],)
    return x[:-1] + (tuple(a["in_proj_weight"])[-1],)


def _batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Fine on a batch when only the query, key and value carry the batch axis (the weights and masks do not)."""
    return attrs if batched_args <= {"X", "K", "V"} else None


def validate_mha(node: str, args: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Check a MultiheadAttention call: num_heads divides the embedding size, the weights' shapes fit it."""
    from ..errors import ShapeError, UnsupportedError
    from ..rnn import static_value

    if args.get("output", "Y") not in MHA_OUTPUTS:
        raise UnsupportedError(f"MultiheadAttention output {args.get('output')!r}; one of {', '.join(MHA_OUTPUTS)}",
                               where=f"node '{node}'")
    w = static_value(args, params, "in_proj_weight")
    if w is None:
        return
    E, h = int(w.shape[-1]), int(args.get("num_heads", 1))
    if h < 1 or E % h:
        raise ShapeError(f"MultiheadAttention num_heads {h} does not divide the embedding size {E}",
                         where=f"node '{node}'")
    for arg, want in (("in_proj_weight", (3 * E, E)), ("in_proj_bias", (3 * E,)), ("out_proj_weight", (E, E)),
                      ("out_proj_bias", (E,))):
        v = static_value(args, params, arg)
        if v is not None and tuple(v.shape) != want:
            raise ShapeError(f"MultiheadAttention {arg} has shape {tuple(v.shape)}, expected {want}",
                             where=f"node '{node}'")


def export_mha(b: "OnnxGraphBuilder", op: "Op") -> "Operand":
    """The formula as ONNX nodes: three projections (MatMul, Add), heads split by Reshape and Transpose, Softmax of
    the scaled scores, the context joined back and projected."""
    x = b.required_arg(op, "X")
    key, value = b.arg(op, "K"), b.arg(op, "V")
    k_in = x if key is None else b.as_val(key)
    v_in = k_in if value is None else b.as_val(value)
    w_in = b.required_arg(op, "in_proj_weight")
    b_in, w_out, b_out = b.arg(op, "in_proj_bias"), b.required_arg(op, "out_proj_weight"), b.arg(op, "out_proj_bias")
    if any(t is not None and b.as_val(t).batched for t in (w_in, b_in, w_out, b_out, b.arg(op, "attn_bias"),
                                                             b.arg(op, "attn_block"))):
        raise b.unsupported("MultiheadAttention whose weights or masks are computed per trial")
    E, h = int(w_in.shape[-1]), int(b.static_arg(op, "num_heads", 1))
    d = E // h
    w_t = b.transpose(w_in)  # (E, 3E): the columns of q, k, v
    heads = []
    for i, t in enumerate((x, k_in, v_in)):
        p = b.as_val(b.matmul(t, b.getitem(w_t, (slice(None), slice(i * E, (i + 1) * E)))))
        if b_in is not None:
            p = b.as_val(b.add(p, b.getitem(b.as_val(b_in), (slice(i * E, (i + 1) * E),))))
        L = p.shape[0]
        heads.append(b.transpose(b.reshape(p, (L, h, d)), (1, 0, 2)))  # (h, L, d)
    q, k, v = heads
    scores: "Operand" = b.mul(b.matmul(q, b.transpose(k, (0, 2, 1))), b.literal(1.0 / math.sqrt(d)))
    bias, block = b.arg(op, "attn_bias"), b.arg(op, "attn_block")
    if bias is not None:
        scores = b.add(scores, bias)
    if block is not None:
        blocked = b.nary("Greater", [block, b.literal(0.5)], out_kind="bool")
        scores = b.select(blocked, b.literal(-math.inf), scores)
    scores = b.as_val(scores)
    attn = b.emit("Softmax", [scores], shape=scores.shape, batched=scores.batched, axis=scores.onnx_axis(-1))
    if b.static_arg(op, "output", "Y") == "weights":
        return b.reduce("ReduceMean", attn, [0], False)
    ctx = b.transpose(b.matmul(attn, v), (1, 0, 2))  # (L, h, d)
    y = b.matmul(b.reshape(ctx, (ctx.shape[0], E)), b.transpose(w_out))
    return y if b_out is None else b.add(y, b_out)


register(OpDef("MultiheadAttention", MHA_ARGS, mha_numpy, mha_torch, defaults=MHA_DEFAULTS,
               attrs=("num_heads", "output"), batch_rule=_batched, shape=_shape, validate=validate_mha,
               description="torch.nn.MultiheadAttention (eval mode): query X (L, E), key K and value V (S, E) "
                           "(absent: X), in_proj_weight (3E, E) and optional in_proj_bias (3E,) (rows q, k, v), "
                           "out_proj_weight (E, E), optional out_proj_bias (E,), num_heads dividing E, optional "
                           "(L, S) masks attn_bias (added to the scores) and attn_block (1: not attended); output "
                           "'Y' (L, E) or 'weights' (L, S, averaged over the heads)",
               onnx_export=export_mha))
