"""Attention through the bridge: the MultiheadAttention op against torch.nn.MultiheadAttention (the oracle), and
nn.MultiheadAttention and the nn.Transformer family (encoder and decoder layers and stacks, masks held as buffers)
converted from torch: numpy reference
and torch backend equal torch (float64, 1e-10) at batch sizes other than the traced one, the ONNX export runs on
onnxruntime (float32, 1e-5), training changes the weights and they load back into the module strictly."""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import numpy as np
import pytest
import torch
from torch import nn

from mdfbridge.backends import get_backend
from mdfbridge.errors import ShapeError, UnsupportedError
from mdfbridge.importers.pytorch import module_to_mdf, program_state_dict
from mdfbridge.importers.reference import run_program
from mdfbridge.learning import learn
from mdfbridge.lowering import lower
from mdfbridge.ops.attention import mha_numpy, mha_torch

TOL64, TOL32 = 1e-10, 1e-5
E, HEADS, L, S = 8, 2, 5, 7


def _params(m: nn.MultiheadAttention) -> Dict[str, torch.Tensor]:
    p = dict(m.named_parameters())
    return {"in_proj_weight": p["in_proj_weight"], "in_proj_bias": p.get("in_proj_bias"),
            "out_proj_weight": p["out_proj.weight"], "out_proj_bias": p.get("out_proj.bias")}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_op_equals_torch_self_and_cross_attention(bias, heads):
    torch.manual_seed(heads)
    m = nn.MultiheadAttention(E, heads, bias=bias, batch_first=True).double().eval()
    x, mem = torch.randn(3, L, E, dtype=torch.float64), torch.randn(3, S, E, dtype=torch.float64)
    p = _params(m)
    pn = {k: None if v is None else v.detach().numpy() for k, v in p.items()}
    for key in (None, mem):
        k = x if key is None else key
        want_y, want_w = (t.detach().numpy() for t in m(x, k, k))
        kn = None if key is None else key.numpy()
        assert np.abs(mha_numpy(x.numpy(), kn, kn, num_heads=heads, **pn) - want_y).max() < TOL64
        assert np.abs(mha_numpy(x.numpy(), kn, kn, num_heads=heads, output="weights", **pn) - want_w).max() < TOL64
        got = mha_torch(x, key, key, num_heads=heads, **p)
        assert np.abs(got.detach().numpy() - want_y).max() < TOL64
        assert np.abs(mha_torch(x, key, key, num_heads=heads, output="weights", **p).detach().numpy()
                      - want_w).max() < TOL64


def test_op_gradients_equal_finite_differences():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    w_in, b_in = torch.randn(12, 4, dtype=torch.float64, requires_grad=True), torch.randn(12, dtype=torch.float64)
    w_out = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)

    def f(x: Any, w_in: Any, w_out: Any) -> Any:
        return mha_torch(x, in_proj_weight=w_in, in_proj_bias=b_in, out_proj_weight=w_out, num_heads=2)

    assert torch.autograd.gradcheck(f, (x, w_in, w_out))


class SelfAttention(nn.Module):
    """Self-attention whose output and averaged weights are both returned, then a Linear head."""

    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=batch_first)
        self.fc = nn.Linear(E, 3)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        y, w = self.attn(x, x, x)
        return self.fc(y), w


class CrossAttention(nn.Module):
    """Queries from one input, keys and values from another (a decoder's cross-attention), weights not asked."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=True)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.attn(x, memory, memory, need_weights=False)[0])


class Classifier(nn.Module):
    """A two-layer encoder (its own final LayerNorm), mean over the sequence, a Linear head."""

    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16, batch_first=batch_first)
        self.enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(E), enable_nested_tensor=False)
        self.head = nn.Linear(E, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(x).mean(dim=1))


class Masked(nn.Module):
    """An encoder under an attention mask held as a buffer, then attention under the same mask: torch's causal
    float mask (0 / -inf), its bool form, or an arbitrary float mask."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=True)
        mask = nn.Transformer.generate_square_subsequent_mask(L)
        if kind == "bool":
            mask = torch.isinf(mask)
        elif kind == "float":
            mask = torch.randn(L, L, generator=torch.Generator().manual_seed(2)) * 0.3
        self.register_buffer("mask", mask)
        self.causal = kind != "float"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x, mask=self.mask, is_causal=self.causal)
        return self.attn(h, h, h, attn_mask=self.mask)[0]


class Seq2Seq(nn.Module):
    """nn.Transformer with a causal target mask, then a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.t = nn.Transformer(E, HEADS, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=16,
                                batch_first=True)
        self.register_buffer("tgt_mask", nn.Transformer.generate_square_subsequent_mask(L))
        self.head = nn.Linear(E, 3)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.head(self.t(src, tgt, tgt_mask=self.tgt_mask, tgt_is_causal=True))


# name -> (module factory, per-sample input shapes, the inputs' batch axis)
MODULES: Dict[str, Tuple[Callable[[], nn.Module], Tuple[Tuple[int, ...], ...], int]] = {
    "self_attention": (SelfAttention, ((L, E),), 0),
    "self_attention_seq_first": (lambda: SelfAttention(batch_first=False), ((L, E),), 1),
    "cross_attention": (CrossAttention, ((L, E), (S, E)), 0),
    "mha_root": (lambda: nn.MultiheadAttention(E, HEADS, batch_first=True), ((L, E), (S, E), (S, E)), 0),
    "encoder_layer": (lambda: nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16, batch_first=True),
                      ((L, E),), 0),
    "encoder_layer_pre_norm_gelu": (lambda: nn.TransformerEncoderLayer(
        E, HEADS, dim_feedforward=16, batch_first=True, norm_first=True, activation="gelu"), ((L, E),), 0),
    "encoder_layer_seq_first": (lambda: nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16), ((L, E),), 1),
    "classifier": (Classifier, ((L, E),), 0),
    "causal_mask": (lambda: Masked("causal"), ((L, E),), 0),
    "bool_mask": (lambda: Masked("bool"), ((L, E),), 0),
    "float_mask": (lambda: Masked("float"), ((L, E),), 0),
    "decoder_layer": (lambda: nn.TransformerDecoderLayer(E, HEADS, dim_feedforward=16, batch_first=True),
                      ((L, E), (S, E)), 0),
    "decoder_pre_norm_seq_first": (lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(
        E, HEADS, dim_feedforward=16, norm_first=True), 2, norm=nn.LayerNorm(E)), ((L, E), (S, E)), 1),
    "seq2seq": (Seq2Seq, ((S, E), (L, E)), 0),
}


def _make(name: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MODULES[name][0]().to(dtype).eval()


def _inputs(name: str, batch: int, dtype: torch.dtype = torch.float64, seed: int = 1) -> Tuple[torch.Tensor, ...]:
    _, shapes, axis = MODULES[name]
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn((batch,) + s, generator=g, dtype=dtype) for s in shapes]
    return tuple(x.transpose(0, 1).contiguous() for x in xs) if axis else tuple(xs)


def _feeds(doc: Dict[str, Any], xs: Tuple[torch.Tensor, ...]) -> Dict[str, np.ndarray]:
    """The MDF inputs (trials first) of torch inputs xs."""
    graph = next(iter(next(iter(doc.values()))["graphs"].values()))
    meta = graph["metadata"]["mdfbridge"]["torch"]
    axes = meta.get("batch_axes", {})
    return {n: np.moveaxis(x.numpy(), axes.get(n, 0), 0) for n, x in zip(meta["inputs"], xs)}


def _torch_outputs(module: nn.Module, doc: Dict[str, Any], xs: Tuple[torch.Tensor, ...]) -> Dict[str, np.ndarray]:
    """The module's outputs by MDF output name, trials first."""
    graph = next(iter(next(iter(doc.values()))["graphs"].values()))
    meta = graph["metadata"]["mdfbridge"]["torch"]
    with torch.enable_grad():  # (torch's composite path: its fused no-grad fast path gives NaN for a float mask)
        out = module(*xs)
    outs = list(out) if isinstance(out, tuple) else [out]
    names = meta["outputs"]
    axes = meta.get("batch_axes", {})
    return {n: np.moveaxis(o.detach().double().numpy(), axes.get(n, 0), 0) for n, o in zip(names, outs)
            if o is not None}


@pytest.mark.parametrize("name", list(MODULES))
def test_converted_module_equals_torch_on_numpy_and_torch_backends(name):
    module = _make(name)
    doc = module_to_mdf(module, _inputs(name, 2))
    prog = lower(doc)
    torch_backend = get_backend("torch").prepare(prog)
    for batch in (1, 5):
        xs = _inputs(name, batch, seed=batch)
        want = _torch_outputs(module, doc, xs)
        feeds = _feeds(doc, xs)
        ours, theirs = run_program(prog, feeds), torch_backend.run(feeds)
        assert set(want) == set(prog.outputs)
        for o, w in want.items():
            np.testing.assert_allclose(ours[o], w, rtol=0, atol=TOL64, err_msg=o)
            np.testing.assert_allclose(np.asarray(theirs[o], dtype=float), w, rtol=0, atol=TOL64, err_msg=o)
    assert list(program_state_dict(prog)) == list(module.state_dict())  # every weight under its own key
    meta = next(iter(next(iter(doc.values()))["graphs"].values()))["metadata"]["mdfbridge"]["torch"]
    # ... and every weight a parameter of the graph: only buffers (a mask) are kept aside, with their values
    assert set(meta.get("unused_state", {})) <= {k for k, _ in module.named_buffers()}


@pytest.mark.parametrize("name", ["self_attention", "cross_attention", "encoder_layer_pre_norm_gelu",
                                  "encoder_layer_seq_first", "classifier", "causal_mask", "float_mask",
                                  "decoder_pre_norm_seq_first", "seq2seq"])
def test_onnx_export_runs_on_onnxruntime_like_torch(name):
    ort = pytest.importorskip("onnxruntime")
    from mdfbridge.exporters.onnx import mdf_to_onnx

    module = _make(name, torch.float32)
    doc = module_to_mdf(module, _inputs(name, 2, torch.float32))
    sess = ort.InferenceSession(mdf_to_onnx(doc).SerializeToString(), providers=["CPUExecutionProvider"])
    xs = _inputs(name, 6, torch.float32, seed=4)
    feeds = {k: v.astype(np.float32) for k, v in _feeds(doc, xs).items()}
    want = _torch_outputs(module, doc, xs)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    for o, w in want.items():
        np.testing.assert_allclose(got[o], w, rtol=0, atol=TOL32, err_msg=o)


@pytest.mark.slow  # trains a transformer classifier
def test_learn_trains_a_converted_transformer_and_weights_load_back_strictly():
    module = _make("classifier")
    doc = module_to_mdf(module, _inputs("classifier", 2))
    xs = _inputs("classifier", 16, seed=7)
    teacher = _make("classifier", seed=3)
    targets = _torch_outputs(teacher, doc, xs)
    result = learn(doc, _feeds(doc, xs), targets, epochs=20, learning_rate=0.01, minibatch_size=4,
                   optimizer_type="adam")
    losses = np.asarray(result.epoch_losses)
    assert losses[-1] < 0.5 * losses[0]
    state = program_state_dict(result.program)
    before = module.state_dict()
    assert all(not torch.equal(state[k], before[k]) for k in state if k.endswith("in_proj_weight"))
    module.load_state_dict(state, strict=True)
    trained = run_program(result.program, _feeds(doc, xs))
    for o, w in _torch_outputs(module, doc, xs).items():
        np.testing.assert_allclose(trained[o], w, rtol=0, atol=TOL64)


class Attn(nn.Module):
    def __init__(self, **kw: Any) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=True, **kw)
        self.call_kw: Dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, **self.call_kw)[0]


def _with(module: "Attn", **call_kw: Any) -> "Attn":
    module.call_kw = call_kw
    return module


class KDim(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=True, kdim=4, vdim=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x[:, :, :4], x[:, :, :4])[0]


class PerHeadWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, average_attn_weights=False)[1]


class MixedBatchFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.MultiheadAttention(E, HEADS, batch_first=True)
        self.b = nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16, batch_first=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x, x, x)[0])


@pytest.mark.parametrize("module,pattern", [
    (_with(Attn(), attn_mask=torch.zeros(2 * HEADS, L, L, dtype=torch.float64)),
     r"attention mask of shape \(4, 5, 5\); \(5, 5\)"),
    (_with(Attn(), key_padding_mask=torch.zeros(2, L, dtype=torch.bool)), r"key_padding_mask; padding masks"),
    (KDim(), r"kdim=4, vdim=4"),
    (Attn(add_bias_kv=True), r"add_bias_kv=True"),
    (Attn(dropout=0.2), r"dropout=0.2 in training mode \(call module\.eval\(\)\)"),  # (modules start in training)
    (PerHeadWeights(), r"per-head attention weights"),
    (MixedBatchFirst(), r"batch_first=True and batch_first=False"),
], ids=["3d_mask", "key_padding_mask", "kdim", "bias_kv", "dropout_training", "per_head_weights",
        "mixed"])
def test_unsupported_attention_settings_raise_one_clear_error(module, pattern):
    with pytest.raises(UnsupportedError, match=pattern):
        module_to_mdf(module.double(), (torch.randn(2, L, E, dtype=torch.float64),))


class InputMask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, attn_mask=mask)[0]


def test_a_mask_given_as_an_input_is_refused():
    x = torch.randn(2, L, E, dtype=torch.float64)
    with pytest.raises(UnsupportedError, match=r"an attention mask computed from the inputs; a constant mask"):
        module_to_mdf(InputMask().double(), (x, torch.zeros(L, L, dtype=torch.float64)))


def test_num_heads_must_divide_the_embedding_size():
    doc = module_to_mdf(_make("encoder_layer"), _inputs("encoder_layer", 2))
    nodes = next(iter(next(iter(doc.values()))["graphs"].values()))["nodes"]
    (fn,) = [f["function"]["MultiheadAttention"] for n in nodes.values() for f in (n.get("functions") or {}).values()
             if isinstance(f.get("function"), dict) and "MultiheadAttention" in f["function"]]
    fn["num_heads"] = 3
    with pytest.raises(ShapeError, match=r"num_heads 3 does not divide the embedding size 8"):
        lower(doc)


def test_llvm_refuses_the_attention_op_naming_it():
    doc = module_to_mdf(_make("encoder_layer"), _inputs("encoder_layer", 2))
    with pytest.raises(UnsupportedError, match=r"MultiheadAttention.*llvm backend"):
        get_backend("llvm").prepare(lower(doc)).run(_feeds(doc, _inputs("encoder_layer", 2)))
