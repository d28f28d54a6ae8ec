"""Pooling and normalization ops (mdfbridge/ops/pooling.py, normalization.py): MaxPool, AveragePool,
GlobalAveragePool, GlobalMaxPool, BatchNormalization.

Oracles: onnxruntime on the same one-node ONNX model (random and fixed inputs, float32, 1e-5) for the import
(onnx_to_mdf -> save_mdf -> load_program, run on the numpy reference and torch backends) and for the re-export
(program_to_onnx run on onnxruntime); torch.nn modules exported by torch.onnx.export (legacy exporter) against the
modules themselves; torch autograd (nn.BatchNorm2d in train()) for training, running statistics included.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import mdfbridge  # noqa: E402
from mdfbridge.api import run_with_backend  # noqa: E402
from mdfbridge.errors import UnsupportedError  # noqa: E402
from mdfbridge.exporters.onnx import program_to_onnx  # noqa: E402
from mdfbridge.importers.onnx import onnx_to_mdf  # noqa: E402
from mdfbridge.ops import REGISTRY  # noqa: E402

nn = torch.nn
F = torch.nn.functional
TOL = 1e-5


def _session(model: Any, check: bool = True) -> Any:
    if check:
        onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def node_model(op_type: str, x_shape: Sequence[Any], attrs: Dict[str, Any], opset: int = 17,
               inits: Optional[Dict[str, np.ndarray]] = None, outputs: int = 1) -> Any:
    """A one-node model: input x (batch axis 'N' first), constant inputs `inits` after it in order."""
    inits = inits or {}
    node = helper.make_node(op_type, ["x"] + list(inits), ["y"] + [f"y{i}" for i in range(1, outputs)], **attrs)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(len(x_shape))])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))], [y],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=8 if opset < 19 else 9)


def check_against_onnxruntime(model: Any, xs: List[np.ndarray], tmp_path: Any, check: bool = True) -> Any:
    """onnx_to_mdf -> save_mdf -> load_program on the numpy and torch backends, and the program's ONNX export (at
    the model's opset, 17 at least), against onnxruntime on `model` for every input in xs; returns the program.
    check: run onnx's checker on `model` (default True)."""
    sess = _session(model, check)
    path = tmp_path / "m.json"
    mdfbridge.save_mdf(onnx_to_mdf(model), path)
    prog = mdfbridge.load_program(path)
    back = _session(program_to_onnx(prog, opset=max(17, model.opset_import[0].version)))
    (out,) = prog.outputs
    for x in xs:
        (want,) = sess.run(["y"], {"x": x})
        for backend in ("numpy", "torch"):
            got = run_with_backend(prog, {"x": x.astype(np.float64)}, backend)[out]
            assert got.shape == want.shape, backend
            np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=backend)
        (again,) = back.run(None, {back.get_inputs()[0].name: x})
        np.testing.assert_allclose(again, want, rtol=0, atol=TOL)
    return prog


def inputs_for(shape: Sequence[int], seed: int = 0) -> List[np.ndarray]:
    """A random input and a fixed one (a ramp with ties and negatives) of this shape."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    fixed = ((np.arange(size) % 7) - 3.0).reshape(shape) / 2
    return [rng.normal(size=shape).astype(np.float32), fixed.astype(np.float32)]


# ------------------------------------------------------------------------------- pooling

POOLS = [  # (x shape, attributes)
    ((2, 3, 9), {"kernel_shape": [3]}),
    ((2, 3, 9), {"kernel_shape": [2], "strides": [2], "pads": [1, 1]}),
    ((2, 3, 10), {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}),
    ((2, 2, 7, 8), {"kernel_shape": [2, 2]}),
    ((2, 2, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [1, 0, 2, 1]}),
    ((2, 2, 7, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((2, 2, 7, 8), {"kernel_shape": [2, 3], "strides": [2, 1], "auto_pad": "SAME_UPPER"}),
    ((2, 2, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((2, 2, 7, 8), {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "VALID"}),
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2], "pads": [1, 0, 1, 0, 1, 1]}),
]


@pytest.mark.parametrize("x_shape,attrs", POOLS)
def test_max_pool_imports_and_exports_like_onnxruntime(x_shape, attrs, tmp_path):
    model = node_model("MaxPool", ("N",) + x_shape[1:], attrs, opset=12)
    check_against_onnxruntime(model, inputs_for(x_shape), tmp_path)


@pytest.mark.parametrize("x_shape,attrs", [
    ((2, 3, 11), {"kernel_shape": [3], "dilations": [2]}),
    ((2, 2, 9, 8), {"kernel_shape": [2, 2], "dilations": [2, 3], "pads": [1, 1, 0, 1], "strides": [2, 1]}),
    ((2, 2, 9, 8), {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
])
def test_max_pool_dilations_import_like_onnxruntime(x_shape, attrs, tmp_path):
    model = node_model("MaxPool", ("N",) + x_shape[1:], attrs, opset=12)
    check_against_onnxruntime(model, inputs_for(x_shape, seed=3), tmp_path)


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("x_shape,attrs", POOLS)
def test_average_pool_imports_and_exports_like_onnxruntime(x_shape, attrs, count_include_pad, tmp_path):
    model = node_model("AveragePool", ("N",) + x_shape[1:], {**attrs, "count_include_pad": count_include_pad})
    check_against_onnxruntime(model, inputs_for(x_shape, seed=1), tmp_path)


@pytest.mark.parametrize("op_type", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("x_shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 2)])
def test_global_pools_import_and_export_like_onnxruntime(op_type, x_shape, tmp_path):
    model = node_model(op_type, ("N",) + x_shape[1:], {})
    check_against_onnxruntime(model, inputs_for(x_shape, seed=2), tmp_path)


def test_pools_without_a_batch_axis_import_like_onnxruntime():
    model = node_model("MaxPool", (2, 3, 6, 6), {"kernel_shape": [2, 2], "strides": [2, 2]})
    x = inputs_for((2, 3, 6, 6))[0]
    (want,) = _session(model).run(["y"], {"x": x})
    prog = mdfbridge.lower(onnx_to_mdf(model, batch_axis=False))
    got = run_with_backend(prog, {"x": x[None].astype(np.float64)})["y"][0]
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


@pytest.mark.parametrize("op_type,attrs,match", [
    ("MaxPool", {"kernel_shape": [3], "pads": [3, 0]}, "index 7 is out of bounds"),
    ("MaxPool", {"kernel_shape": [2, 2]}, "running the ONNX graph"),
    ("AveragePool", {"kernel_shape": [2], "auto_pad": "VALID", "ceil_mode": 1}, "ceil_mode"),
    ("MaxPool", {"kernel_shape": [12]}, "out_shape=.-2,."),
])
def test_pool_refusals_are_one_line(op_type, attrs, match):
    """Forms onnxruntime's spec refuses: the probe run or the handler says so on one line."""
    model = node_model(op_type, ("N", 2, 9), attrs)
    with pytest.raises(mdfbridge.MdfBridgeError, match=match) as err:
        onnx_to_mdf(model)
    assert "\n" not in str(err.value)


def test_max_pool_indices_output_is_refused():
    model = node_model("MaxPool", ("N", 2, 9), {"kernel_shape": [2]}, outputs=2)
    model.graph.output.append(helper.make_tensor_value_info("y1", TensorProto.INT64, None))
    with pytest.raises(UnsupportedError, match="Indices"):
        onnx_to_mdf(model)


def _torch_onnx(module: Any, x: Any, opset: int = 17, fold: bool = True) -> Any:
    """torch.onnx.export's (legacy exporter) model; fold=False keeps BatchNormalization after a Conv (its constant
    folding fuses the two)."""
    f = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), f, input_names=["x"], output_names=["y"], dynamo=False,
                          opset_version=opset, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          do_constant_folding=fold)
    return onnx.load_from_string(f.getvalue())


def _imports_like_torch(module: Any, x: Any) -> Any:
    """torch.onnx.export of `module` on x's first two trials, imported: (the Program, the module's output on all of
    x), the Program on the numpy and torch backends checked against that output."""
    model = _torch_onnx(module, x[:2])
    prog = mdfbridge.lower(onnx_to_mdf(model))
    with torch.no_grad():
        want = module(x).numpy()
    for backend in ("numpy", "torch"):
        got = run_with_backend(prog, {"x": x.double().numpy()}, backend)["y"]
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=backend)
    return prog, want


@pytest.mark.parametrize("module,shape", [
    (nn.MaxPool2d(3, stride=2, padding=1), (3, 9, 8)),
    (nn.MaxPool2d((2, 3), stride=(2, 1), dilation=(2, 1), ceil_mode=True), (2, 9, 9)),
    (nn.AvgPool2d(3, stride=2, padding=1), (3, 9, 8)),
    (nn.AvgPool2d(2, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 7, 7)),
    (nn.MaxPool1d(3, stride=2), (4, 11)),
    (nn.AvgPool1d(4, stride=3, padding=2), (4, 11)),
    (nn.AdaptiveAvgPool2d((1, 1)), (3, 5, 4)),
    (nn.AdaptiveMaxPool2d((1, 1)), (3, 5, 4)),
    (nn.MaxPool3d(2), (2, 4, 4, 5)),
])
def test_torch_pooling_modules_exported_by_torch_import_like_torch(module, shape):
    x = torch.randn((4,) + shape)
    _imports_like_torch(module.eval(), x)


def test_pool_torch_implementations_give_autograd_gradients_like_torch():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 8, 7))
    for fn, ref, attrs in (
            ("MaxPool", lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True),
             {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
            ("AveragePool", lambda t: F.avg_pool2d(t, 2, 2, 1, count_include_pad=False),
             {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
            ("GlobalAveragePool", lambda t: t.mean(dim=(2, 3), keepdim=True), {"spatial": 2})):
        a = torch.tensor(x, requires_grad=True)
        b = torch.tensor(x, requires_grad=True)
        got = REGISTRY[fn].torch(X=a, **attrs)
        want = ref(b)
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=0, atol=1e-12)
        w = torch.tensor(rng.normal(size=tuple(want.shape)))
        (got * w).sum().backward()
        (want * w).sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(REGISTRY[fn].numpy(X=x, **attrs), want.detach().numpy(), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------- BatchNormalization


def _bn_inits(c: int, seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"scale": rng.normal(size=c), "B": rng.normal(size=c), "mean": rng.normal(size=c),
            "var": rng.uniform(0.2, 2.0, size=c)}


@pytest.mark.parametrize("opset", [9, 14, 15])
@pytest.mark.parametrize("x_shape,epsilon", [((3, 4), 1e-5), ((3, 2, 7), 1e-3), ((2, 3, 5, 4), 0.5),
                                             ((2, 2, 3, 4, 2), 1e-5)])
def test_batch_norm_imports_and_exports_like_onnxruntime(x_shape, epsilon, opset, tmp_path):
    model = node_model("BatchNormalization", ("N",) + x_shape[1:], {"epsilon": epsilon, "momentum": 0.8}, opset=opset,
                       inits=_bn_inits(x_shape[1], opset))
    prog = check_against_onnxruntime(model, inputs_for(x_shape, seed=5), tmp_path)
    learnable = {k.rsplit(".", 1)[-1].split("_")[0] for k in prog.learnable_params()}
    running = {k.rsplit(".", 1)[-1].split("_")[0] for k, p in prog.params.items() if p.running}
    assert learnable == {"scale", "B"} and running == {"mean", "var"}


@pytest.mark.parametrize("x_shape", [(4, 3), (4, 3, 5), (3, 2, 4, 5)])
def test_batch_norm_training_mode_uses_the_batch_statistics_like_onnxruntime(x_shape, tmp_path):
    model = node_model("BatchNormalization", ("N",) + x_shape[1:], {"training_mode": 1, "epsilon": 1e-3}, opset=15,
                       inits=_bn_inits(x_shape[1], 1), outputs=3)  # (ONNX's training mode has 3 outputs)
    check_against_onnxruntime(model, inputs_for(x_shape, seed=6), tmp_path)


def test_batch_norm_running_statistics_outputs_are_refused():
    model = node_model("BatchNormalization", ("N", 3, 4), {"training_mode": 1}, opset=15, inits=_bn_inits(3, 0),
                       outputs=3)
    model.graph.output.append(helper.make_tensor_value_info("y1", TensorProto.FLOAT, [3]))
    with pytest.raises(UnsupportedError, match="ONNX node 'y': ONNX BatchNormalization.*running mean/variance outputs"):
        onnx_to_mdf(model)


def _trained_bn(module: Any) -> Any:
    """A module's BatchNorm layers away from their initial statistics and affine parameters."""
    torch.manual_seed(3)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                if m.affine:
                    m.weight.normal_()
                    m.bias.normal_()
    return module.eval()


@pytest.mark.parametrize("module,shape", [
    (nn.BatchNorm1d(4), (4,)),
    (nn.BatchNorm1d(3, eps=1e-3), (3, 6)),
    (nn.BatchNorm2d(3, momentum=0.3), (3, 5, 4)),
    (nn.BatchNorm3d(2), (2, 3, 4, 2)),
])
def test_torch_batch_norm_modules_exported_by_torch_import_like_torch(module, shape):
    module = _trained_bn(module)
    x = torch.randn((5,) + shape)
    prog, want = _imports_like_torch(module, x)
    (again,) = _session(program_to_onnx(prog)).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(again, want, rtol=0, atol=TOL)


class SmallCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> MaxPool -> Conv -> BatchNorm -> ReLU -> GlobalAveragePool -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 3, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(3, momentum=0.3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Any) -> Any:
        h = F.max_pool2d(F.relu(self.bn1(self.c1(x))), 2)
        h = F.relu(self.bn2(self.c2(h)))
        return self.fc(F.adaptive_avg_pool2d(h, (1, 1)).flatten(1))


def test_small_cnn_from_onnx_trains_like_torch_and_writes_back_its_running_statistics(tmp_path):
    from mdfbridge.learning import learn

    torch.manual_seed(0)
    net = _trained_bn(SmallCNN())
    x = torch.randn(12, 2, 6, 6)
    model = _torch_onnx(net, x[:2], fold=False)
    assert {"Conv", "BatchNormalization", "Relu", "MaxPool", "GlobalAveragePool", "Gemm"} <= {
        n.op_type for n in model.graph.node}
    path = tmp_path / "cnn.json"
    mdfbridge.save_mdf(onnx_to_mdf(model), path)
    reference = SmallCNN().double()  # the same float32 weights, trained in float64 by torch itself
    reference.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    target = np.random.default_rng(2).normal(size=(12, 2))
    lr, mb, epochs = 0.05, 4, 2
    doc = mdfbridge.load_mdf(path)
    result = learn(doc, {"x": x.double().numpy()}, {"y": target}, epochs=epochs, learning_rate=lr, minibatch_size=mb,
                   optimizer_type="sgd", loss_spec="mse", backend="torch")
    reference.train()
    opt = torch.optim.SGD(reference.parameters(), lr=lr)
    for _ in range(epochs):
        for i in range(0, 12, mb):
            opt.zero_grad()
            F.mse_loss(reference(x[i:i + mb].double()), torch.as_tensor(target[i:i + mb])).backward()
            opt.step()
    reference.eval()
    params = result.program.params
    by_value = {}
    for k, p in params.items():
        by_value.setdefault(p.value.size, []).append(k)
    for key, want in reference.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        want = want.numpy()
        before = net.state_dict()[key].double().numpy()
        if key not in ("c1.bias", "c2.bias"):  # (a conv bias before a batch-statistics BatchNorm has no gradient)
            assert not np.allclose(want, before), key  # training changed it (running statistics included)
        forms = [want.reshape(-1)] + ([want.T.reshape(-1)] if want.ndim == 2 else [])
        assert any(np.allclose(params[k].value.reshape(-1), f, rtol=0, atol=1e-9) for k in by_value[want.size]
                   for f in forms), key
    # written back into the document: the trained program's numbers on reload, and the running statistics there
    out = tmp_path / "trained.json"
    mdfbridge.write_back(path, result.program, out)
    again = mdfbridge.load_program(out)
    running = {k: p.value for k, p in again.params.items() if p.running}
    assert len(running) == 4
    for k, v in running.items():
        np.testing.assert_array_equal(v, result.program.params[k].value)
    with torch.no_grad():
        want = reference(x.double()).numpy()
    for backend in ("numpy", "torch"):
        got = run_with_backend(again, {"x": x.double().numpy()}, backend)["y"]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=backend)
    (exported,) = _session(program_to_onnx(again)).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(exported, want, rtol=0, atol=TOL)


# ------------------------------------------------------------------------------- Pad, InstanceNormalization, GroupNorm


def _pad_model(x_shape: Sequence[Any], pads: Sequence[int], mode: str, opset: int, value: Optional[float] = None,
               axes: Optional[Sequence[int]] = None) -> Any:
    """A Pad node in the attribute form (opset < 11) or the input form."""
    if opset < 11:
        attrs: Dict[str, Any] = {"pads": list(pads), "mode": mode}
        if value is not None:
            attrs["value"] = value
        return node_model("Pad", x_shape, attrs, opset=opset)
    inits: Dict[str, np.ndarray] = {"pads": np.asarray(pads, dtype=np.int64)}
    names = ["x", "pads"]
    if value is not None or axes is not None:
        inits["cv"] = np.asarray(0.0 if value is None else value, dtype=np.float32)
        names.append("cv")
    if axes is not None:
        inits["axes"] = np.asarray(axes, dtype=np.int64)
        names.append("axes")
    node = helper.make_node("Pad", names, ["y"], mode=mode)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(len(x_shape))])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))], [y],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8 if opset < 19 else 9)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("opset,x_shape,pads,value,axes", [
    (2, (2, 3, 5), [0, 1, 2, 0, 2, 1], 1.5, None),
    (11, (2, 4), [0, 2, 0, 3], None, None),
    (13, (2, 3, 4, 5), [0, 0, 1, 2, 0, 0, 2, 1], -0.5, None),
    (13, (2, 3, 6), [0, -1, 2, 0, 1, -2], None, None),
    (18, (2, 3, 4, 5), [1, 2, 0, 3], 2.0, [2, -1]),
])
def test_pad_imports_and_exports_like_onnxruntime(mode, opset, x_shape, pads, value, axes, tmp_path):
    model = _pad_model(("N",) + x_shape[1:], pads, mode, opset, value, axes)
    check_against_onnxruntime(model, inputs_for(x_shape, seed=7), tmp_path)


def test_pad_wrap_mode_imports_and_exports_like_onnxruntime(tmp_path):
    model = _pad_model(("N", 3, 5), [0, 1, 2, 0, 2, 3], "wrap", 19)
    prog = check_against_onnxruntime(model, inputs_for((2, 3, 5), seed=8), tmp_path)
    with pytest.raises(UnsupportedError, match="wrap.*opset 19"):
        program_to_onnx(prog, opset=18)


@pytest.mark.parametrize("pads,mode,match", [
    ([1, 0, 0, 0, 0, 0], "constant", "batch axis"),
    ([0, 0, 5, 0, 0, 0], "reflect", "smaller than the axes"),
])
def test_pad_refusals_name_the_node(pads, mode, match):
    model = _pad_model(("N", 3, 5), pads, mode, 13)
    with pytest.raises(UnsupportedError, match=f"ONNX node 'y'.*{match}"):
        onnx_to_mdf(model)


def test_pad_torch_gradients_equal_torch_functional():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 3, 5, 6))
    for mode, torch_mode in (("reflect", "reflect"), ("edge", "replicate"), ("wrap", "circular"),
                             ("constant", "constant")):
        a, b = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        got = REGISTRY["Pad"].torch(X=a, pads=[0, 0, 1, 2, 0, 0, 3, 1], mode=mode)
        want = F.pad(b, [2, 1, 1, 3], mode=torch_mode)
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=0, atol=0)
        np.testing.assert_allclose(REGISTRY["Pad"].numpy(X=x, pads=[0, 0, 1, 2, 0, 0, 3, 1], mode=mode),
                                   want.detach().numpy(), rtol=0, atol=0)
        w = torch.tensor(rng.normal(size=tuple(want.shape)))
        (got * w).sum().backward()
        (want * w).sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("x_shape,epsilon", [((2, 3, 5), 1e-5), ((2, 4, 3, 5), 1e-2), ((1, 2, 3, 2, 4), 0.5)])
def test_instance_norm_imports_and_exports_like_onnxruntime(x_shape, epsilon, tmp_path):
    rng = np.random.default_rng(10)
    c = x_shape[1]
    model = node_model("InstanceNormalization", ("N",) + x_shape[1:], {"epsilon": epsilon}, opset=6,
                       inits={"scale": rng.normal(size=c), "B": rng.normal(size=c)})
    check_against_onnxruntime(model, inputs_for(x_shape, seed=11), tmp_path)


@pytest.mark.parametrize("opset", [18, 21])
@pytest.mark.parametrize("x_shape,groups", [((2, 4, 5), 2), ((2, 6, 3, 4), 3), ((2, 6, 3, 4), 6), ((2, 4, 3), 1)])
def test_group_norm_imports_and_exports_like_onnxruntime(x_shape, groups, opset, tmp_path):
    rng = np.random.default_rng(12)
    per = groups if opset < 21 else x_shape[1]
    model = node_model("GroupNormalization", ("N",) + x_shape[1:], {"num_groups": groups, "epsilon": 1e-3},
                       opset=opset, inits={"scale": rng.normal(size=per), "B": rng.normal(size=per)})
    # (onnx's checker calls GroupNormalization-18 deprecated; onnxruntime runs it)
    check_against_onnxruntime(model, inputs_for(x_shape, seed=13), tmp_path, check=opset >= 21)


@pytest.mark.parametrize("module,shape", [
    (nn.InstanceNorm2d(3, affine=True), (3, 5, 4)),
    (nn.InstanceNorm1d(2), (2, 7)),
    (nn.GroupNorm(2, 4), (4, 3, 5)),
    (nn.GroupNorm(3, 3, eps=1e-3), (3, 6)),
    (nn.ReflectionPad2d((1, 2, 0, 3)), (2, 5, 6)),
    (nn.ReplicationPad1d(2), (2, 5)),
    (nn.ConstantPad2d((1, 0, 2, 1), 0.5), (2, 3, 4)),
    (nn.ZeroPad2d(1), (2, 3, 3)),
])
def test_torch_norm_and_pad_modules_exported_by_torch_import_like_torch(module, shape):
    torch.manual_seed(4)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    x = torch.randn((4,) + shape)
    prog, _ = _imports_like_torch(module.eval(), x)
    assert len(prog.learnable_params()) >= sum(1 for _ in module.parameters())


# ------------------------------------------------------------------------------- ConvTranspose, LRN


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((2, 3, 5), (3, 2, 3), {}),
    ((2, 4, 6), (4, 1, 2), {"strides": [2], "pads": [1, 0], "group": 2}),
    ((2, 2, 5), (2, 3, 3), {"strides": [3], "dilations": [2], "output_padding": [1], "pads": [0, 2]}),
    ((2, 2, 4, 5), (2, 3, 3, 2), {}),
    ((2, 4, 4, 3), (4, 2, 3, 3), {"strides": [2, 1], "pads": [1, 0, 2, 1], "group": 2, "dilations": [1, 2]}),
    ((2, 2, 3, 4), (2, 2, 2, 3), {"strides": [2, 3], "output_padding": [1, 2]}),
    ((2, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [8, 9]}),
    ((2, 2, 3, 3), (2, 3, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),  # beyond the output: zeros
    ((2, 2, 4, 3), (2, 3, 3, 2), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((2, 2, 4, 3), (2, 3, 3, 2), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 3, 2, 4), (2, 2, 2, 3, 2), {"strides": [1, 2, 2], "pads": [0, 1, 0, 1, 0, 1]}),
])
def test_conv_transpose_imports_and_exports_like_onnxruntime(x_shape, w_shape, attrs, tmp_path):
    rng = np.random.default_rng(14)
    inits = {"w": rng.normal(size=w_shape), "b": rng.normal(size=w_shape[1] * attrs.get("group", 1))}
    model = node_model("ConvTranspose", ("N",) + x_shape[1:], attrs, inits=inits)
    prog = check_against_onnxruntime(model, inputs_for(x_shape, seed=15), tmp_path)
    assert {k.rsplit(".", 1)[-1] for k in prog.learnable_params()} == {"w", "b"}


@pytest.mark.parametrize("module,shape", [
    (nn.ConvTranspose1d(3, 2, 3, stride=2, padding=1, output_padding=1), (3, 5)),
    (nn.ConvTranspose2d(4, 2, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, bias=False),
     (4, 4, 3)),
])
def test_torch_conv_transpose_modules_exported_by_torch_import_like_torch(module, shape):
    x = torch.randn((4,) + shape)
    _imports_like_torch(module.eval(), x)


def test_conv_transpose_torch_form_trains_like_torch_autograd():
    rng = np.random.default_rng(16)
    x, w, bias = rng.normal(size=(2, 4, 5, 4)), rng.normal(size=(4, 3, 3, 2)), rng.normal(size=6)
    attrs = {"strides": [2, 1], "pads": [1, 0, 1, 0], "group": 2, "output_padding": [1, 0]}
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(bias, requires_grad=True)
    rw, rb = torch.tensor(w, requires_grad=True), torch.tensor(bias, requires_grad=True)
    got = REGISTRY["ConvTranspose"].torch(X=torch.tensor(x), W=tw, B=tb, **attrs)
    want = F.conv_transpose2d(torch.tensor(x), rw, rb, stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(REGISTRY["ConvTranspose"].numpy(X=x, W=w, B=bias, **attrs), want.detach().numpy(),
                               rtol=0, atol=1e-12)
    g = torch.tensor(rng.normal(size=tuple(want.shape)))
    (got * g).sum().backward()
    (want * g).sum().backward()
    np.testing.assert_allclose(tw.grad.numpy(), rw.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(tb.grad.numpy(), rb.grad.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("x_shape,attrs", [
    ((2, 5, 3, 4), {"size": 3}),
    ((2, 6, 3, 4), {"size": 5, "alpha": 0.01, "beta": 0.5, "bias": 2.0}),
    ((2, 3, 2, 2), {"size": 1, "alpha": 0.1}),
])
def test_lrn_imports_and_exports_like_onnxruntime(x_shape, attrs, tmp_path):
    model = node_model("LRN", ("N",) + x_shape[1:], attrs)
    check_against_onnxruntime(model, inputs_for(x_shape, seed=17), tmp_path)


# ------------------------------------------------------------------------------- torch.nn -> MDF directly


class DirectCNN(nn.Module):
    """The pooling and BatchNorm layers module_to_mdf converts, as modules and as functions."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4, momentum=0.2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.avg = nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.bn2 = nn.BatchNorm2d(4, affine=False)
        self.fc = nn.Conv2d(4, 3, 1)  # (module_to_mdf's flatten keeps shapes: a 1x1 conv as the classifier)

    def forward(self, x: Any) -> Any:
        h = self.avg(self.pool(F.relu(self.bn1(self.c1(x)))))
        h = F.max_pool2d(h, 2) + F.avg_pool2d(h, 2, stride=2)
        return self.fc(self.bn2(self.gap(h)))


class DirectSeq(nn.Module):
    """1-D pools, BatchNorm1d over (C, L) and a global max pool."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.mp = nn.MaxPool1d(2, stride=2, dilation=2)
        self.ap = nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True)
        self.gmp = nn.AdaptiveMaxPool1d(1)

    def forward(self, x: Any) -> Any:
        return self.gmp(self.ap(self.mp(self.bn(x))))


@pytest.mark.parametrize("make,shape", [(DirectCNN, (2, 8, 7)), (DirectSeq, (3, 13))])
def test_module_to_mdf_converts_pools_and_batch_norm_like_torch(make, shape):
    from mdfbridge.importers.pytorch import module_to_mdf, program_state_dict

    torch.manual_seed(1)
    module = _trained_bn(make().double())
    x = torch.randn((6,) + shape, dtype=torch.float64)
    doc = module_to_mdf(module, (x[:2],))
    prog = mdfbridge.lower(doc)
    assert {"MaxPool", "AveragePool", "BatchNormalization"} <= {op.fn for op in prog.ops}
    with torch.no_grad():
        want = module(x).numpy()
    for backend in ("numpy", "torch"):
        got = run_with_backend(prog, {"x": x.numpy()}, backend)["output"]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10, err_msg=backend)
    state = program_state_dict(prog)
    for k, v in module.state_dict().items():
        torch.testing.assert_close(state[k], v.double(), rtol=0, atol=0)
    make().double().load_state_dict(state, strict=True)
    (exported,) = _session(program_to_onnx(prog)).run(None, {"x": x.float().numpy()})
    np.testing.assert_allclose(exported, want, rtol=0, atol=TOL)


def test_module_to_mdf_batch_norm_trains_like_torch_train_mode():
    from mdfbridge.importers.pytorch import module_to_mdf, program_state_dict
    from mdfbridge.learning import learn

    torch.manual_seed(2)
    module = _trained_bn(DirectCNN().double())
    x = torch.randn(8, 2, 8, 7, dtype=torch.float64)
    target = np.random.default_rng(3).normal(size=(8, 3, 1, 1))
    doc = module_to_mdf(module, (x[:2],))
    result = learn(doc, {"x": x.numpy()}, {"output": target}, epochs=2, learning_rate=0.05, minibatch_size=4,
                   optimizer_type="sgd", loss_spec="mse", backend="torch")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()
    opt = torch.optim.SGD(module.parameters(), lr=0.05)
    for _ in range(2):
        for i in range(0, 8, 4):
            opt.zero_grad()
            F.mse_loss(module(x[i:i + 4]), torch.as_tensor(target[i:i + 4])).backward()
            opt.step()
    trained = program_state_dict(result.program)
    for k, v in module.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue  # (not tracked: mdfbridge's momentum is fixed)
        if k not in ("c1.bias",):  # (a conv bias before a batch-statistics BatchNorm has no gradient)
            assert not torch.equal(v, before[k]), k
        torch.testing.assert_close(trained[k], v, rtol=0, atol=1e-10)


@pytest.mark.parametrize("module,match", [
    (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), "return_indices"),
    (nn.Sequential(nn.AdaptiveAvgPool2d((2, 1))), "output_size"),
    (nn.Sequential(nn.BatchNorm2d(2, track_running_stats=False)), "track_running_stats"),
    (nn.Sequential(nn.BatchNorm2d(2, momentum=None)), "momentum=None"),
    (nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), "divisor_override"),
])
def test_module_to_mdf_refuses_pool_and_batch_norm_forms_in_one_line(module, match):
    from mdfbridge.importers.pytorch import module_to_mdf

    with pytest.raises(UnsupportedError, match=match) as err:
        module_to_mdf(module, (torch.randn(2, 2, 4, 4),))
    assert "\n" not in str(err.value)


def test_cli_converts_trains_writes_back_and_reexports_an_onnx_cnn(tmp_path):
    """`mdfbridge convert cnn.onnx cnn.json`, `mdfbridge train` (running statistics written back), `mdfbridge
    convert trained.json trained.onnx`, as a user runs them."""
    import json
    import subprocess
    import sys

    torch.manual_seed(0)
    net = _trained_bn(SmallCNN())
    x = torch.randn(8, 2, 6, 6)
    onnx.save(_torch_onnx(net, x[:2], fold=False), str(tmp_path / "cnn.onnx"))
    np.savez(tmp_path / "data.npz", x=x.double().numpy(), y=np.random.default_rng(5).normal(size=(8, 2)))

    def cli(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "mdfbridge.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=600)
        assert done.returncode == 0, done.stderr

    cli("convert", "cnn.onnx", "cnn.json")
    cli("train", "cnn.json", "--data", "data.npz", "--epochs", "2", "--lr", "0.05", "--minibatch-size", "4",
        "--out", "trained.json")
    cli("convert", "trained.json", "trained.onnx")
    before, after = mdfbridge.load_program(tmp_path / "cnn.json"), mdfbridge.load_program(tmp_path / "trained.json")
    stats = [k for k, p in after.params.items() if p.running]
    assert len(stats) == 4
    for k in stats:
        assert not np.allclose(before.params[k].value, after.params[k].value), k
    assert json.loads((tmp_path / "trained.json").read_text())  # (a readable document)
    want = run_with_backend(after, {"x": x.double().numpy()})["y"]
    (got,) = _session(onnx.load(str(tmp_path / "trained.onnx"))).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


@pytest.mark.parametrize("op_type,x_shape,attrs,inits", [
    ("Conv", (2, 2, 6, 5), {"strides": [2, 1], "pads": [1, 0, 0, 1]}, {"w": (3, 2, 3, 2), "b": (3,)}),
    ("ConvTranspose", (2, 2, 4, 3), {"strides": [2, 1]}, {"w": (2, 3, 2, 2)}),
    ("MaxPool", (2, 3, 6, 5), {"kernel_shape": [2, 2], "strides": [2, 1]}, {}),
    ("AveragePool", (3, 2, 7), {"kernel_shape": [3], "pads": [1, 1], "count_include_pad": 1}, {}),
    ("GlobalAveragePool", (2, 3, 4, 5), {}, {}),
    ("BatchNormalization", (3, 2, 4, 3), {}, {"s": (2,), "bias": (2,), "m": (2,), "v": (2,)}),
    ("InstanceNormalization", (2, 3, 5), {}, {"s": (3,), "bias": (3,)}),
    ("LRN", (2, 5, 3, 2), {"size": 3}, {}),
])
def test_batch_axis_false_imports_reexport_like_onnxruntime(op_type, x_shape, attrs, inits):
    """batch_axis=False: each ONNX tensor is one trial's (N, C, ...); the export folds the trial axis into N."""
    rng = np.random.default_rng(18)
    values = {k: (rng.uniform(0.5, 1.5, size=s) if k == "v" else rng.normal(size=s)) for k, s in inits.items()}
    model = node_model(op_type, x_shape, attrs, inits=values)
    x = np.stack(inputs_for(x_shape, seed=19))  # two trials
    sess = _session(model)
    want = np.stack([sess.run(["y"], {"x": t})[0] for t in x])
    prog = mdfbridge.lower(onnx_to_mdf(model, batch_axis=False))
    for backend in ("numpy", "torch"):
        got = run_with_backend(prog, {"x": x.astype(np.float64)}, backend)["y"]
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=backend)
    one = _session(program_to_onnx(prog))  # (the original's interface: one trial's shapes)
    np.testing.assert_allclose(np.stack([one.run(None, {"x": t})[0] for t in x]), want, rtol=0, atol=TOL)
    (again,) = _session(program_to_onnx(prog, batch_axis=True)).run(None, {"x": x})  # trials folded into N
    np.testing.assert_allclose(again, want, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", ["light_shufflenet.onnx", "light_inception_v1.onnx"])
def test_onnx_model_zoo_cnns_match_onnxruntime(name):
    """onnx's light model-zoo CNNs (opset 9, batch 1) with seeded random weights (benchmarks/bench_onnx_cnns.py
    runs all five): the logits on the numpy and torch backends and the re-export, relative to their scale."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_onnx_cnns.py"
    spec = importlib.util.spec_from_file_location("bench_onnx_cnns", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    if not (bench.LIGHT / name).exists():
        pytest.skip(f"the installed onnx has no {name}")
    model = bench.with_random_weights(onnx.load(str(bench.LIGHT / name)))
    assert {"Conv", "MaxPool", "AveragePool"} <= {n.op_type for n in model.graph.node}
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    names = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in names)
    (want,) = _session(model, check=False).run(None, {inp.name: x})[:1]
    prog = mdfbridge.lower(onnx_to_mdf(model, batch_axis=False))
    (pin,), (out,) = prog.inputs, prog.outputs
    scale = float(np.abs(want).max())
    for backend in ("numpy", "torch"):
        got = run_with_backend(prog, {pin: x[None].astype(np.float64)}, backend)[out][0]
        assert np.abs(got - want).max() <= 1e-5 * scale, backend
    (again,) = _session(program_to_onnx(prog)).run(None, {inp.name: x})  # (the original's interface)
    assert np.abs(again - want).max() <= 1e-5 * scale
