"""Conv, LayerNormalization and Gelu (mdfbridge/ops/convolution.py, normalization.py, activations.py) and the
torch.nn layers that become them (importers/pytorch/layer_converters.py).

Oracles: torch.nn.functional for the numpy implementations (1e-12, float64, random shapes and attributes); the
torch modules themselves for module_to_mdf on the numpy reference and torch backends (1e-10) and for training
(one SGD epoch, 1e-10); onnxruntime for the ONNX exports (1e-5, float32, onnx.checker clean); torch.onnx.export's
own model read back by onnx_to_mdf.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Dict, Tuple

import numpy as np
import pytest

from mdfbridge.backends import get_backend
from mdfbridge.errors import ShapeError, UnsupportedError
from mdfbridge.ops import REGISTRY
from mdfbridge.ops.convolution import conv_geometry
from mdfbridge.program import InputSpec, Op, Param, Program, TensorRef
from mdfbridge.shapes import infer_shapes

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
F = torch.nn.functional
nn = torch.nn

from mdfbridge.exporters.onnx import mdf_to_onnx  # noqa: E402
from mdfbridge.importers.onnx import onnx_to_mdf  # noqa: E402
from mdfbridge.importers.pytorch import module_to_mdf, program_state_dict, supported_layers  # noqa: E402
from mdfbridge.importers.reference import run_program  # noqa: E402
from mdfbridge.learning import learn  # noqa: E402
from mdfbridge.lowering import lower  # noqa: E402

TOL_NP = 1e-12
TOL_MODULE = 1e-10
TOL_ORT = 1e-5
CONV = REGISTRY["Conv"]
LN = REGISTRY["LayerNormalization"]
GELU = REGISTRY["Gelu"]


def _t(a: np.ndarray) -> Any:
    return torch.tensor(a, dtype=torch.float64)


# ------------------------------------------------------------------------------- numpy implementations vs torch


def _random_conv(rng: np.random.Generator, k: int) -> Tuple[Dict[str, Any], Any]:
    """Random Conv arguments (ONNX attributes) and the torch.nn.functional result they must give."""
    g = int(rng.integers(1, 4))
    c, m = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    kernel = tuple(int(rng.integers(1, 4)) for _ in range(k))
    spatial = tuple(int(rng.integers(7, 11)) for _ in range(k))
    strides = [int(rng.integers(1, 4)) for _ in range(k)]
    dilations = [int(rng.integers(1, 3)) for _ in range(k)]
    pads = [int(rng.integers(0, 3)) for _ in range(2 * k)]
    x = rng.normal(size=(int(rng.integers(1, 4)), c) + spatial)
    w = rng.normal(size=(m, c // g) + kernel)
    bias = rng.normal(size=m) if rng.random() < 0.7 else None
    args = {"X": x, "W": w, "B": bias, "strides": strides, "pads": pads, "dilations": dilations, "group": g,
            "kernel_shape": list(kernel) if rng.random() < 0.5 else None}
    padded = F.pad(_t(x), [p for i in reversed(range(k)) for p in (pads[i], pads[i + k])])
    ref = (F.conv1d, F.conv2d, F.conv3d)[k - 1](padded, _t(w), None if bias is None else _t(bias), stride=strides,
                                                 dilation=dilations, groups=g)
    return args, ref.numpy()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_conv_numpy_and_torch_implementations_equal_torch_functional(k):
    rng = np.random.default_rng(k)
    for _ in range(25):
        args, ref = _random_conv(rng, k)
        got = CONV.numpy(**args)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL_NP)
        torch_args = {a: _t(v) if isinstance(v, np.ndarray) else v for a, v in args.items()}
        np.testing.assert_allclose(CONV.torch(**torch_args).numpy(), ref, rtol=0, atol=TOL_NP)
        # one image per trial (no N), and extra leading axes: each image alone
        np.testing.assert_allclose(CONV.numpy(**{**args, "X": args["X"][0]}), ref[0], rtol=0, atol=TOL_NP)
        stacked = np.stack([args["X"], args["X"][::-1]])
        np.testing.assert_allclose(CONV.numpy(**{**args, "X": stacked}), np.stack([ref, ref[::-1]]), rtol=0,
                                   atol=TOL_NP)
        shape = CONV.shape({**args, "X": tuple(args["X"].shape[1:]), "W": tuple(args["W"].shape),
                            "B": None if args["B"] is None else tuple(args["B"].shape)})
        assert shape == ref.shape[1:]


@pytest.mark.parametrize("kw,match", [
    ({"strides": [1, 1]}, "needs 1 values"),
    ({"group": 2}, "divisible by group"),
    ({"pads": [-1, 0]}, ">= 0"),
    ({"kernel_shape": [2]}, "kernel_shape"),
    ({"dilations": [5]}, "does not fit"),
])
def test_conv_geometry_refuses_what_does_not_fit(kw, match):
    with pytest.raises(ValueError, match=match):
        conv_geometry((3, 8), (4, 3, 3), **kw)


def test_layer_norm_numpy_and_torch_implementations_equal_torch_functional():
    rng = np.random.default_rng(5)
    for _ in range(30):
        shape = tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(1, 5))))
        x = rng.normal(size=shape) * 3 + 1
        axis = int(rng.integers(-len(shape), len(shape)))
        norm = shape[axis % len(shape):]
        scale = rng.normal(size=norm) if rng.random() < 0.8 else None
        bias = rng.normal(size=norm) if rng.random() < 0.8 else None
        eps = float(rng.choice([1e-5, 1e-3, 0.5]))
        ref = F.layer_norm(_t(x), norm, None if scale is None else _t(scale), None if bias is None else _t(bias),
                           eps).numpy()
        got = LN.numpy(X=x, Scale=scale, B=bias, axis=axis, epsilon=eps)
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOL_NP)
        t = LN.torch(X=_t(x), Scale=None if scale is None else _t(scale), B=None if bias is None else _t(bias),
                     axis=axis, epsilon=eps)
        np.testing.assert_allclose(t.numpy(), ref, rtol=0, atol=TOL_NP)
    # Scale broadcast against the normalized axes (ONNX allows it; torch's layer_norm takes the full shape)
    x, s = rng.normal(size=(2, 3, 4)), rng.normal(size=(4,))
    ref = F.layer_norm(_t(x), (3, 4), _t(np.broadcast_to(s, (3, 4)).copy()), None).numpy()
    np.testing.assert_allclose(LN.numpy(X=x, Scale=s, axis=1), ref, rtol=0, atol=TOL_NP)
    np.testing.assert_allclose(LN.torch(X=_t(x), Scale=_t(s), axis=1).numpy(), ref, rtol=0, atol=TOL_NP)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_numpy_and_torch_implementations_equal_torch_functional(approximate):
    x = np.random.default_rng(2).normal(size=(4, 5, 6)) * 3
    ref = F.gelu(_t(x), approximate=approximate).numpy()
    np.testing.assert_allclose(GELU.numpy(X=x, approximate=approximate), ref, rtol=0, atol=TOL_NP)
    np.testing.assert_allclose(GELU.torch(X=_t(x), approximate=approximate).numpy(), ref, rtol=0, atol=TOL_NP)
    scalar = F.gelu(torch.tensor(1.5, dtype=torch.float64), approximate=approximate).item()
    assert abs(float(GELU.numpy(X=1.5, approximate=approximate)) - scalar) < TOL_NP
    with pytest.raises(ValueError, match="'none' or 'tanh'"):
        GELU.numpy(X=x, approximate="erf")


# ------------------------------------------------------------------------------- torch modules -> MDF


class Net1d(nn.Module):
    """Conv1d -> GELU -> LayerNorm -> Linear (over the last axis)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3, padding=1)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: Any) -> Any:
        return self.fc(self.norm(self.act(self.conv(x))))


class Net2d(nn.Module):
    """A Conv2d stack: groups, stride, asymmetric 'same' padding with dilation, 'valid', no bias, LayerNorm over
    (C, H, W) without affine, tanh-approximated GELU, then a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
        self.c2 = nn.Conv2d(6, 4, (2, 3), dilation=(3, 1), padding="same")
        self.c3 = nn.Conv2d(4, 3, (1, 2), stride=(1, 2), padding="valid", bias=False)
        self.norm = nn.LayerNorm([3, 4, 2], elementwise_affine=False)
        self.act = nn.GELU(approximate="tanh")
        self.fc = nn.Linear(2, 3)

    def forward(self, x: Any) -> Any:
        return self.fc(self.act(self.norm(self.c3(F.gelu(self.c2(self.c1(x)))))))


class Functional(nn.Module):
    """F.conv1d / F.gelu / F.layer_norm on the module's own parameters; LayerNorm without a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 2, 2) * 0.5)
        self.b = nn.Parameter(torch.randn(4) * 0.1)
        self.ln = nn.LayerNorm(5, bias=False)
        self.scale = nn.Parameter(torch.rand(4, 5) + 0.5)

    def forward(self, x: Any) -> Any:
        h = F.conv1d(x, self.w, self.b, stride=1, padding=(1,), dilation=2, groups=1)
        h = F.gelu(self.ln(h), approximate="tanh")
        return F.layer_norm(h, (4, 5), self.scale, None, 1e-3)


MODULES = {"net1d": (Net1d, (3, 8)), "net2d": (Net2d, (4, 8, 8)), "functional": (Functional, (2, 5))}


def make(name: str, dtype: Any = torch.float64, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    module = MODULES[name][0]().to(dtype)
    with torch.no_grad():  # LayerNorm weights away from their ones/zeros defaults
        for n, p in module.named_parameters():
            if "norm" in n or "ln" in n:
                p.add_(0.3 * torch.randn_like(p))
    return module.eval()


def inputs(name: str, n: int, dtype: Any = torch.float64, seed: int = 1) -> Any:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n,) + MODULES[name][1], generator=g, dtype=dtype)


def torch_out(module: Any, x: Any) -> np.ndarray:
    with torch.no_grad():
        return module(x).double().numpy()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_to_mdf_matches_the_module_on_numpy_and_torch_backends(name):
    module = make(name)
    doc = module_to_mdf(module, (inputs(name, 2),))
    prog = lower(doc)
    x = inputs(name, 6)
    want = torch_out(module, x)
    got = run_program(prog, {"x": x.numpy()})["output"]
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL_MODULE)
    got_t = get_backend("torch").prepare(prog).run({"x": x.numpy()})["output"]
    np.testing.assert_allclose(np.asarray(got_t), want, rtol=0, atol=TOL_MODULE)
    # weights are learnable parameters in torch's layout, and go back into the module strictly
    learnable = {k for k, p in prog.learnable_params().items()}
    assert len(learnable) == sum(1 for _ in module.parameters())
    state = program_state_dict(prog)
    for k, v in module.state_dict().items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    make(name, seed=5).load_state_dict(state, strict=True)


def test_documents_hold_the_registry_functions_with_onnx_attributes():
    doc = module_to_mdf(make("net2d"), (inputs("net2d", 2),))
    nodes = next(iter(next(iter(doc.values()))["graphs"].values()))["nodes"]
    c2 = nodes["c2"]["functions"]["function"]["function"]["Conv"]
    # 'same': d * (k - 1) in all, the odd one at the end (torch's split): kernel (2, 3), dilation (3, 1)
    assert c2["pads"] == [1, 1, 2, 1] and c2["dilations"] == [3, 1]
    assert nodes["c1"]["functions"]["function"]["function"]["Conv"]["group"] == 2
    assert "B" not in nodes["c3"]["functions"]["function"]["function"]["Conv"]
    norm = nodes["norm"]["functions"]["function"]["function"]["LayerNormalization"]
    assert norm["axis"] == -3 and "Scale" not in norm
    assert nodes["act"]["functions"]["function"]["args"]["approximate"] == "tanh"
    assert nodes["c1"]["metadata"]["mdfbridge"]["torch_keys"]["W"] == {"key": "c1.weight", "shape": [6, 2, 3, 3]}


def test_supported_layers_list_conv_norm_gelu():
    s = supported_layers()
    assert {"Conv1d", "Conv2d", "Conv3d", "LayerNorm", "GELU"} <= set(s["modules"])
    from mdfbridge.importers.pytorch.registry import callable_name

    assert {callable_name(f) for f in (F.conv1d, F.conv2d, F.conv3d, F.layer_norm, F.gelu)} <= set(s["functions"])


@pytest.mark.parametrize("module,shape,match", [
    (nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular")), (2, 2, 5, 5),
     r"padding_mode='circular'.*'zeros'"),
    (nn.Sequential(nn.LayerNorm(2)), (2, 3, 2), None),
])
def test_layer_refusals_and_accepts(module, shape, match):
    if match is None:  # LayerNorm over the last axis of a (3, 2) trial is fine
        module = module.double()
        x = torch.randn(*shape, dtype=torch.float64)
        got = run_program(lower(module_to_mdf(module, (x,))), {"input": x.numpy()})["output"]
        np.testing.assert_allclose(got, torch_out(module, x), rtol=0, atol=TOL_MODULE)
        return
    with pytest.raises(UnsupportedError, match=match):
        module_to_mdf(module, (torch.randn(*shape),))


# ------------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", sorted(MODULES))
def test_one_sgd_epoch_on_the_torch_backend_equals_torch_autograd(name):
    module = make(name)
    doc = module_to_mdf(module, (inputs(name, 2),))
    x = inputs(name, 8, seed=4)
    target = torch_out(make(name, seed=9), x)
    lr, mb = 0.1, 4
    result = learn(doc, {"x": x.numpy()}, {"output": target}, epochs=1, learning_rate=lr, minibatch_size=mb,
                   optimizer_type="sgd", loss_spec="mse", backend="torch")
    opt = torch.optim.SGD(module.parameters(), lr=lr)
    for i in range(0, len(x), mb):
        opt.zero_grad()
        F.mse_loss(module(x[i:i + mb]), torch.as_tensor(target[i:i + mb])).backward()
        opt.step()
    trained = program_state_dict(result.program)
    before = make(name).state_dict()
    for k, v in module.state_dict().items():
        assert not torch.equal(v, before[k]), k  # the epoch changed every weight
        torch.testing.assert_close(trained[k], v, rtol=0, atol=TOL_MODULE)


# ------------------------------------------------------------------------------- ONNX export and import


def _session(model: Any) -> Any:
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_onnx_export_of_the_documents_runs_on_onnxruntime_like_torch(name, opset):
    module = make(name, torch.float32)
    doc = module_to_mdf(module, (inputs(name, 2, torch.float32),))
    model = mdf_to_onnx(doc, opset=opset)
    types = {n.op_type for n in model.graph.node}
    assert "Conv" in types and "LayerNormalization" in types
    assert ("Gelu" in types) == (opset >= 20) and ("Erf" in types or "Tanh" in types or opset >= 20)
    x = inputs(name, 5, torch.float32)
    (got,) = _session(model).run(["output"], {"x": x.numpy()})
    np.testing.assert_allclose(got, torch_out(module, x), rtol=0, atol=TOL_ORT)
    # and back: the exported model imports as the same ops (Gelu at opset 20, the erf formula at 17)
    back = run_program(lower(onnx_to_mdf(model)), {"x": x.double().numpy()})["output"]
    np.testing.assert_allclose(back, torch_out(module, x), rtol=0, atol=TOL_ORT)


def test_float64_exports_refuse_what_onnxruntime_has_no_kernel_for():
    doc = module_to_mdf(make("net1d"), (inputs("net1d", 2),))
    with pytest.raises(UnsupportedError, match="float64"):
        mdf_to_onnx(doc, dtype="float64")


def test_layer_norm_exports_in_float64_with_an_inexact_epsilon():
    """1e-5 is not a float32: the float64 export writes the formula (onnxruntime's float64 kernels)."""
    module = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.GELU("tanh")).double().eval()
    doc = module_to_mdf(module, (torch.randn(2, 3, dtype=torch.float64),))
    model = mdf_to_onnx(doc, dtype="float64")
    assert "LayerNormalization" not in {n.op_type for n in model.graph.node}
    x = torch.randn(7, 3, dtype=torch.float64)
    (got,) = _session(model).run(["output"], {"input": x.numpy()})
    np.testing.assert_allclose(got, torch_out(module, x), rtol=0, atol=1e-12)


def _torch_onnx(module: Any, x: Any, opset: int) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), f, input_names=["x"], output_names=["y"], dynamo=False,
                          opset_version=opset, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return f.getvalue()


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_torch_onnx_export_imports_with_onnx_to_mdf(name, opset):
    module = make(name, torch.float32)
    data = _torch_onnx(module, inputs(name, 2, torch.float32), opset)
    types = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert "Conv" in types and "LayerNormalization" in types
    prog = lower(onnx_to_mdf(data))
    x = inputs(name, 6, torch.float32)
    got = run_program(prog, {"x": x.double().numpy()})["y"]
    np.testing.assert_allclose(got, torch_out(module, x), rtol=0, atol=TOL_ORT)
    session = _session(onnx.load_from_string(data))
    try:
        (ort_y,) = session.run(["y"], {"x": x.numpy()})
    except Exception as exc:  # onnxruntime's own limit on torch's export, not mdfbridge's
        assert name == "net2d" and "Dilation not supported for AutoPadType::SAME" in str(exc), exc
    else:
        np.testing.assert_allclose(got, ort_y, rtol=0, atol=TOL_ORT)
    # every module weight is a learnable parameter (torch's export adds zero biases, which are learnable too)
    learnable = [p.value.reshape(-1) for p in prog.learnable_params().values()]
    for name_, p in module.named_parameters():
        value = p.detach().double().numpy()
        forms = [value.reshape(-1)] + ([value.T.reshape(-1)] if value.ndim == 2 else [])  # MatMul holds W^T
        assert any(v.shape == f.shape and np.array_equal(v, f) for v in learnable for f in forms), name_


def _conv_model(auto_pad: str, opset: int = 17) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 1, 3, 2)).astype(np.float32)
    b = rng.normal(size=(4,)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["c"], auto_pad=auto_pad, strides=[2, 1], group=2)
    gelu = helper.make_node("Gelu", ["c"], ["y"], approximate="tanh")
    graph = helper.make_graph([node, gelu] if opset >= 20 else [node], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 7, 5])],
                              [helper.make_tensor_value_info("y" if opset >= 20 else "c", TensorProto.FLOAT,
                                                             ["N", 4, "H", "W"])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8 if opset < 20 else 9)


@pytest.mark.parametrize("auto_pad,opset", [("SAME_UPPER", 17), ("SAME_LOWER", 20), ("VALID", 17),
                                            ("NOTSET", 20)])
def test_onnx_conv_auto_pad_and_gelu_import_like_onnxruntime(auto_pad, opset):
    model = _conv_model(auto_pad, opset)
    out = "y" if opset >= 20 else "c"
    x = np.random.default_rng(1).normal(size=(3, 2, 7, 5)).astype(np.float32)
    (want,) = _session(model).run([out], {"x": x})
    prog = lower(onnx_to_mdf(model))
    got = run_program(prog, {"x": x.astype(np.float64)})[out]
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL_ORT)
    assert {k.rsplit(".", 1)[-1] for k in prog.learnable_params()} == {"w", "b"}


# ------------------------------------------------------------------------------- backends


def _one_op(fn: str, args: Dict[str, Any], shape: Tuple[int, ...]) -> Program:
    params = {f"n.{k}": Param(f"n.{k}", v) for k, v in args.items() if isinstance(v, np.ndarray)}
    call = {k: TensorRef(f"n.{k}") if isinstance(v, np.ndarray) else v for k, v in args.items()}
    prog = Program("p", [Op("n.y", {"X": TensorRef("n.x"), **call}, "n", fn=fn)], params,
                   {"x": InputSpec("x", "n", "x", shape)}, {"y": "n.y"})
    infer_shapes(prog)
    return prog


def test_llvm_refuses_conv_layer_norm_and_tanh_gelu_naming_them():
    rng = np.random.default_rng(0)
    for fn, args, shape, match in (
            ("Conv", {"W": rng.normal(size=(2, 1, 2))}, (1, 4), "llvm backend"),
            ("LayerNormalization", {"Scale": np.ones(3)}, (3,), "LayerNormalization"),
            ("Gelu", {"approximate": "tanh"}, (3,), "approximate='tanh'")):
        with pytest.raises(UnsupportedError, match=match):
            get_backend("llvm").prepare(_one_op(fn, args, shape)).run({"x": rng.normal(size=(2,) + shape)})
    x = rng.normal(size=(5, 3))
    got = get_backend("llvm").prepare(_one_op("Gelu", {}, (3,))).run({"x": x})["y"]
    np.testing.assert_allclose(got, F.gelu(_t(x)).numpy(), rtol=0, atol=TOL_NP)


def test_shape_errors_name_the_node():
    with pytest.raises(ShapeError, match="node 'n'.*channels"):
        _one_op("Conv", {"W": np.ones((2, 3, 2))}, (2, 5))
    with pytest.raises(ShapeError, match="node 'n'.*normalized shape"):
        _one_op("LayerNormalization", {"Scale": np.ones(4)}, (3,))


def test_gelu_approximate_is_checked_in_lowering():
    doc = module_to_mdf(nn.Sequential(nn.GELU()), (torch.randn(2, 3),))
    graph = next(iter(next(iter(doc.values()))["graphs"].values()))
    node = next(n for n in graph["nodes"].values() if "functions" in n)
    node["functions"]["function"]["args"]["approximate"] = "erf"
    with pytest.raises(UnsupportedError, match="'none' or 'tanh'"):
        lower(doc)


class ExportOnly(nn.Module):
    """A shape test torch.fx cannot trace, so module_to_mdf falls back to torch.export (aten ops)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Any) -> Any:
        if x.shape[1] > 0:
            return self.inner(x)
        return x


@pytest.mark.parametrize("name", sorted(MODULES))
def test_torch_export_fallback_converts_the_aten_ops(name):
    module = ExportOnly(make(name)).eval()
    doc = module_to_mdf(module, (inputs(name, 2),))
    graph = next(iter(next(iter(doc.values()))["graphs"].values()))
    assert graph["metadata"]["mdfbridge"]["torch"]["tracer"] == "export"
    prog = lower(doc)
    x = inputs(name, 5)
    got = run_program(prog, {only_input(prog): x.numpy()})["output"]
    np.testing.assert_allclose(got, torch_out(module, x), rtol=0, atol=TOL_MODULE)
    ExportOnly(make(name, seed=3)).load_state_dict(program_state_dict(prog), strict=True)


def only_input(prog: Program) -> str:
    (name,) = prog.inputs
    return name


def test_trained_weights_write_back_into_the_document_and_load_into_torch(tmp_path):
    from mdfbridge.document import load_document_dict, save_document, validate_dict
    from mdfbridge.exporters.weights import write_weights

    module = make("net2d")
    doc = module_to_mdf(module, (inputs("net2d", 2),))
    validate_dict(doc)
    x = inputs("net2d", 8)
    result = learn(doc, {"x": x.numpy()}, {"output": np.zeros((8, 3, 4, 3))}, epochs=2, learning_rate=0.05)
    save_document(write_weights(doc, result.program), tmp_path / "trained.json")
    reread = load_document_dict(tmp_path / "trained.json")
    state = program_state_dict(reread)
    for k, v in program_state_dict(result.program).items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    module.load_state_dict(state, strict=True)
    np.testing.assert_allclose(run_program(lower(reread), {"x": x.numpy()})["output"], torch_out(module, x),
                               rtol=0, atol=TOL_MODULE)


def test_to_torch_of_an_imported_cnn_runs_like_the_module():
    import mdfbridge

    module = make("net1d")
    doc = module_to_mdf(module, (inputs("net1d", 2),))
    rebuilt = mdfbridge.to_torch(doc, dtype="float64")
    x = inputs("net1d", 4)
    with torch.no_grad():
        got = rebuilt(x)
    np.testing.assert_allclose(got.numpy(), torch_out(module, x), rtol=0, atol=TOL_MODULE)
