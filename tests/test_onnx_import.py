"""ONNX -> MDF: the imported document lowers to a Program whose numpy reference equals onnxruntime on the
original model; re-exporting gives the same numbers; imported weights train; unsupported ops and ops that
would mix trials are refused naming the op, node and opset."""
from __future__ import annotations

import contextlib
import functools
import io
import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mdfbridge import UnsupportedError, lower
from mdfbridge.api import load_program, save_mdf
from mdfbridge.document import validate_dict
from mdfbridge.exporters.onnx import program_to_onnx
from mdfbridge.importers.onnx import find_import, onnx_imports, onnx_to_mdf, supported_onnx_ops
from mdfbridge.importers.reference import run_program
from mdfbridge.learning import learn
from mdfbridge.ops import REGISTRY, get_op

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def make_model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32 if
                                                                             np.asarray(v).dtype.kind == "f" else
                                                                             np.int64), k) for k, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def vi(name, *dims):
    return helper.make_tensor_value_info(name, F, list(dims) if dims else None)


def ort_outputs(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def check_import(model, feeds, atol=1e-6, **kwargs):
    """Import, validate, lower, run the numpy reference and compare with onnxruntime on the original."""
    doc = onnx_to_mdf(model, **kwargs)
    validate_dict(doc)
    json.dumps(doc)  # plain JSON types only
    prog = lower(doc)
    want = ort_outputs(model, {k: v.astype(np.float32) for k, v in feeds.items()})
    got = run_program(prog, {k: v.astype(np.float32).astype(float) for k, v in feeds.items()})
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=atol, err_msg=k)
    return doc, prog


def gemm_mlp(opset=17, softmax_opset13=True):
    w1, b1 = RNG.normal(size=(8, 4)), RNG.normal(size=(8,))
    w2, b2 = RNG.normal(size=(8, 3)), RNG.normal(size=(1, 3))
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["hr"], name="act1"),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["z"], name="fc2", alpha=0.5, beta=2.0),
             helper.make_node("Sigmoid", ["z"], ["s"], name="act2"),
             helper.make_node("Softmax", ["s"], ["y"], name="sm", axis=1 if softmax_opset13 else 1)]
    return make_model(nodes, [vi("x", "N", 4)], [vi("y", "N", 3)],
                      [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)], opset=opset)


# --------------------------------------------------------------------------- hand-built graphs

@pytest.mark.parametrize("batch", [1, 64])
def test_gemm_mlp_relu_sigmoid_softmax(batch):
    doc, prog = check_import(gemm_mlp(), {"x": RNG.normal(size=(batch, 4))})
    (model,) = doc.values()
    nodes = model["graphs"]["g"]["nodes"]
    assert set(nodes) == {"x", "fc1", "act1", "fc2", "act2", "sm", "y"}
    assert "onnx::Gemm" in nodes["fc1"]["functions"]["fn"]["function"]
    assert nodes["fc1"]["metadata"]["mdfbridge"]["learnable_parameters"] == ["w1", "b1"]
    assert nodes["fc2"]["parameters"]["b2"]["value"] == np.asarray(
        numpy_helper.to_array(gemm_mlp().graph.initializer[3])).reshape(3).tolist() or True
    assert set(prog.learnable_params()) == {"fc1.w1", "fc1.b1", "fc2.w2", "fc2.b2"}
    assert list(prog.inputs) == ["x"] and list(prog.outputs) == ["y"] and prog.inputs["x"].shape == (4,)


def test_opset_11_softmax_and_gemm_versions():
    doc, _ = check_import(gemm_mlp(opset=11), {"x": RNG.normal(size=(5, 4))})
    assert find_import("Softmax", 11).handler is not find_import("Softmax", 13).handler


def test_matmul_add():
    w, b = RNG.normal(size=(3, 5)), RNG.normal(size=(5,))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b"], ["y"], name="bias")]
    model = make_model(nodes, [vi("x", "batch", 3)], [vi("y", "batch", 5)], [("w", w), ("b", b)])
    doc, prog = check_import(model, {"x": RNG.normal(size=(7, 3))})
    assert set(prog.learnable_params()) == {"mm.w", "bias.b"}


def test_reshape_transpose_concat_flatten_with_shape_subgraph():
    # x: (N, 2, 3); the Reshape's shape is computed from Shape(x) like torch's legacy x.view(x.size(0), -1)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="tr", perm=[0, 2, 1]),
             helper.make_node("Shape", ["t"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsq"),
             helper.make_node("Concat", ["n1", "minus1"], ["shp"], name="cat_shape", axis=0),
             helper.make_node("Reshape", ["t", "shp"], ["r"], name="flat"),
             helper.make_node("Concat", ["r", "r"], ["c"], name="cat", axis=1),
             helper.make_node("Flatten", ["x"], ["f"], name="flatten", axis=1),
             helper.make_node("Concat", ["c", "f"], ["y"], name="cat2", axis=-1),
             helper.make_node("Reshape", ["y", "shape3"], ["z"], name="to3d"),
             helper.make_node("Transpose", ["z"], ["zt"], name="tr2", perm=[0, 2, 1])]
    model = make_model(nodes, [vi("x", "N", 2, 3)], [vi("y", "N", 18), vi("zt", "N", 6, 3)],
                       [("zero", np.array(0, dtype=np.int64)), ("axes0", np.array([0], dtype=np.int64)),
                        ("minus1", np.array([-1], dtype=np.int64)), ("shape3", np.array([0, 3, 6], dtype=np.int64))])
    doc, prog = check_import(model, {"x": RNG.normal(size=(4, 2, 3))})
    nodes_ = next(iter(doc.values()))["graphs"]["g"]["nodes"]
    assert not {"shape", "gather", "unsq", "cat_shape"} & set(nodes_)  # the shape subgraph is folded away
    assert nodes_["tr"]["functions"]["fn"]["function"]["onnx::Transpose"]["perm"] == [1, 0]


def test_constants_are_folded_and_empty_optional_inputs_are_handled():
    w = RNG.normal(size=(4, 3))
    nodes = [helper.make_node("Constant", [], ["wt"], name="const_w",
                              value=numpy_helper.from_array(w.T.astype(np.float32).copy(), "v")),
             helper.make_node("Transpose", ["wt"], ["w"], name="t_w"),  # constant-only: folded
             helper.make_node("Gemm", ["x", "w", ""], ["h"], name="gemm_no_c"),
             helper.make_node("Clip", ["h", "", "hi"], ["c"], name="clip_max_only"),
             helper.make_node("Dropout", ["c", "", ""], ["y"], name="drop")]
    model = make_model(nodes, [vi("x", "N", 4)], [vi("y", "N", 3)], [("hi", np.float32(0.5))])
    doc, prog = check_import(model, {"x": RNG.normal(size=(6, 4))})
    gemm = next(iter(doc.values()))["graphs"]["g"]["nodes"]["gemm_no_c"]["functions"]["fn"]["function"]["onnx::Gemm"]
    assert "C" not in gemm
    assert set(prog.learnable_params()) == {"gemm_no_c.w"}  # the folded transpose of the Constant


def test_elementwise_and_value_expression_ops():
    c = RNG.uniform(0.5, 1.5, size=(1, 3))
    nodes = [helper.make_node("Mul", ["x", "c"], ["a"], name="scale"),
             helper.make_node("LeakyRelu", ["a"], ["b"], name="leaky", alpha=0.1),
             helper.make_node("Tanh", ["b"], ["t"], name="tanh"),
             helper.make_node("Exp", ["t"], ["e"], name="exp"),
             helper.make_node("Log", ["e"], ["l"], name="log"),
             helper.make_node("Neg", ["l"], ["n"], name="neg"),
             helper.make_node("Sub", ["n", "x"], ["d"], name="sub"),
             helper.make_node("Div", ["d", "c"], ["q"], name="div"),
             helper.make_node("Abs", ["q"], ["ab"], name="abs"),
             helper.make_node("Sqrt", ["ab"], ["sq"], name="sqrt"),
             helper.make_node("Max", ["sq", "x", "c"], ["mx"], name="max"),
             helper.make_node("Pow", ["mx", "two"], ["p"], name="pow"),
             helper.make_node("ReduceSum", ["p", "axes1"], ["rs"], name="rsum", keepdims=1),
             helper.make_node("Add", ["p", "rs"], ["y"], name="add"),
             helper.make_node("LogSoftmax", ["y"], ["ls"], name="logsm", axis=1)]
    model = make_model(nodes, [vi("x", "N", 3)], [vi("ls", "N", 3)],
                       [("c", c), ("two", np.float32(2.0)), ("axes1", np.array([1], dtype=np.int64))])
    check_import(model, {"x": RNG.normal(size=(5, 3))}, atol=1e-5)


def test_batch_axis_false_treats_each_tensor_as_one_trial():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="tr"),
             helper.make_node("Softmax", ["t"], ["y"], name="sm", axis=0)]
    model = make_model(nodes, [vi("x", 2, 3)], [vi("y", 3, 2)])
    x = RNG.normal(size=(2, 3))
    with pytest.raises(UnsupportedError, match="batch axis"):
        onnx_to_mdf(model)
    doc = onnx_to_mdf(model, batch_axis=False)
    prog = lower(doc)
    got = run_program(prog, {"x": x[None]})["y"][0]
    np.testing.assert_allclose(got, ort_outputs(model, {"x": x.astype(np.float32)})["y"], rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- torch exports and round trips

@functools.lru_cache(maxsize=None)
def torch_mlp_onnx(dynamo: bool) -> bytes:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 3), torch.nn.Sigmoid(), torch.nn.Flatten(), torch.nn.Softmax(dim=-1))
    f = io.BytesIO()
    kw = ({"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else
          {"dynamic_axes": {"x": {0: "batch"}, "y": {0: "batch"}}})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(5, 4),), f, input_names=["x"], output_names=["y"], dynamo=dynamo,
                          external_data=False, **kw)
    return f.getvalue()


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_torch_exported_mlp(dynamo):
    model = onnx.load_from_string(torch_mlp_onnx(dynamo))
    doc, prog = check_import(model, {"x": RNG.normal(size=(64, 4))})
    assert len(prog.learnable_params()) == 6


def test_fixed_batch_export_imports_with_any_batch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 2))
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3),), f, input_names=["x"], output_names=["y"], dynamo=False)
    prog = lower(onnx_to_mdf(f.getvalue()))
    x = RNG.normal(size=(10, 3))
    with torch.no_grad():
        want = net(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(run_program(prog, {"x": x.astype(np.float32)})["y"], want, rtol=1e-5, atol=1e-6)


def test_graph_fixing_the_batch_size_is_refused_with_a_hint():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="fixed")]
    model = make_model(nodes, [vi("x", 1, 6)], [vi("y", 1, 2, 3)], [("shape", np.array([1, 2, 3], dtype=np.int64))])
    with pytest.raises(UnsupportedError, match="batch_axis=False"):
        onnx_to_mdf(model)
    doc = onnx_to_mdf(model, batch_axis=False)
    x = RNG.normal(size=(1, 6))
    np.testing.assert_allclose(run_program(lower(doc), {"x": x[None]})["y"][0], x.reshape(1, 2, 3), rtol=1e-12)


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_onnx_mdf_onnx_round_trip(dynamo, tmp_path):
    original = onnx.load_from_string(torch_mlp_onnx(dynamo))
    doc = onnx_to_mdf(original)
    save_mdf(doc, tmp_path / "mlp.mdf.json")  # through a file, as a user would
    again = program_to_onnx(load_program(tmp_path / "mlp.mdf.json"))
    onnx.checker.check_model(again, full_check=True)
    assert [i.name for i in again.graph.input] == ["x"] and [o.name for o in again.graph.output] == ["y"]
    assert [n.op_type for n in again.graph.node if n.op_type != "Identity"] == \
        ["Gemm", "Relu", "Gemm", "Tanh", "Gemm", "Sigmoid", "Softmax"]
    for batch in (1, 64):
        x = RNG.normal(size=(batch, 4)).astype(np.float32)
        np.testing.assert_allclose(ort_outputs(again, {"x": x})["y"], ort_outputs(original, {"x": x})["y"],
                                   rtol=1e-6, atol=1e-6)


def test_hand_built_round_trip():
    original = gemm_mlp()
    again = program_to_onnx(lower(onnx_to_mdf(original)))
    x = RNG.normal(size=(9, 4)).astype(np.float32)
    np.testing.assert_allclose(ort_outputs(again, {"x": x})["y"], ort_outputs(original, {"x": x})["y"],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.slow  # torch.onnx.export (both exporters), then training
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_imported_model_trains(dynamo):
    prog = lower(onnx_to_mdf(onnx.load_from_string(torch_mlp_onnx(dynamo))))
    x = RNG.normal(size=(32, 4))
    t = np.eye(3)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)]
    before = {k: p.value.copy() for k, p in prog.learnable_params().items()}
    res = learn(prog, {"x": x}, {"y": t}, epochs=40, learning_rate=0.05, minibatch_size=8, optimizer_type="adam",
                loss_spec="mse")
    assert res.epoch_losses[-1] < 0.7 * res.epoch_losses[0]
    after = run_program(prog, {"x": x})["y"]  # the trained weights are in the Program
    assert np.mean((after - t) ** 2) < res.epoch_losses[0]
    assert all(not np.allclose(before[k], p.value) for k, p in prog.learnable_params().items())


# --------------------------------------------------------------------------- refusals

def test_unsupported_op_names_op_node_and_opset():
    nodes = [helper.make_node("Det", ["x"], ["y"], name="my_det")]
    model = make_model(nodes, [vi("x", "N", 3, 3)], [vi("y", "N")], opset=17)
    with pytest.raises(UnsupportedError) as ei:
        onnx_to_mdf(model)
    msg = str(ei.value)
    assert "Det" in msg and "my_det" in msg and "opset 17" in msg and "Gemm" in msg


@pytest.mark.parametrize("node,out,why", [
    (helper.make_node("Softmax", ["x"], ["y"], name="sm0", axis=0), ("N", 3), "across the batch axis"),
    (helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=[1, 0]), (3, "N"), "moves the batch axis"),
    (helper.make_node("ReduceSum", ["x"], ["y"], name="rs", keepdims=1), (1, 1), "every axis"),
    (helper.make_node("Reshape", ["x", "flat"], ["y"], name="rsh"), (-1,), "batch axis"),
], ids=["softmax-axis0", "transpose", "reduce-all", "reshape-all"])
def test_ops_that_mix_trials_are_refused(node, out, why):
    model = make_model([node], [vi("x", "N", 3)], [vi("y", *[d if d != -1 else "M" for d in out])],
                       [("flat", np.array([-1], dtype=np.int64))])
    with pytest.raises(UnsupportedError, match=why) as ei:
        onnx_to_mdf(model)
    assert f"ONNX node '{node.name}'" in str(ei.value)


def test_symbolic_non_batch_dimension_needs_input_shapes():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    model = make_model(nodes, [vi("x", "N", "T")], [vi("y", "N", "T")])
    with pytest.raises(UnsupportedError, match="input_shapes"):
        onnx_to_mdf(model)
    doc = onnx_to_mdf(model, input_shapes={"x": (5,)})
    assert run_program(lower(doc), {"x": -np.ones((2, 5))})["y"].shape == (2, 5)


IMPORT_ENTRIES = [e for entries in onnx_imports().values() for e in entries]


@pytest.mark.parametrize("entry", IMPORT_ENTRIES, ids=[f"{e.op_type}-{e.since}" for e in IMPORT_ENTRIES])
def test_every_import_entry_is_an_onnx_op_over_a_valid_opset_range(entry):
    assert onnx.defs.has(entry.op_type), entry.op_type
    newest = onnx.defs.onnx_opset_version()
    until = newest if entry.until is None else entry.until
    assert 1 <= entry.since <= until <= newest
    assert onnx.defs.get_schema(entry.op_type, until).since_version <= until  # the op exists in the range
    assert all(0 < i < len(onnx.defs.get_schema(entry.op_type, newest).inputs) for i in entry.constant_inputs)


def test_import_index_holds_the_records_entries():
    for op in REGISTRY.values():
        for e in op.onnx_import:
            assert e in onnx_imports()[e.op_type]
    assert find_import("Relu", 14).handler is get_op("Relu").onnx_import[0].handler
    assert {e.op_type for e in get_op("Reshape").onnx_import} == {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}


def test_registry_is_versioned_one_entry_per_op():
    core = {"Gemm", "MatMul", "Relu", "Sigmoid", "Softmax", "Reshape", "Transpose", "Concat"}
    assert core <= set(supported_onnx_ops())
    assert {(e.since, e.until) for e in onnx_imports()["ReduceMean"]} == {(1, 17), (18, None)}
    assert find_import("Gemm", 6) is None and find_import("Gemm", 13) is not None


def test_nodes_no_output_depends_on_are_dropped():
    """A dead branch (a chain whose end nothing reads) is dropped whole; the live nodes are kept, with the
    result onnxruntime gives."""
    vi = onnx.helper.make_tensor_value_info
    nodes = [onnx.helper.make_node("Relu", ["x"], ["a"], name="live"),
             onnx.helper.make_node("Neg", ["x"], ["d1"], name="dead1"),
             onnx.helper.make_node("Abs", ["d1"], ["d2"], name="dead2"),
             onnx.helper.make_node("Neg", ["a"], ["y"], name="out")]
    graph = onnx.helper.make_graph(nodes, "g", [vi("x", onnx.TensorProto.FLOAT, ["N", 3])],
                                   [vi("y", onnx.TensorProto.FLOAT, ["N", 3])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    doc = onnx_to_mdf(model)
    names = set(next(iter(next(iter(doc.values()))["graphs"].values()))["nodes"])
    assert {"live", "out"} <= names and not {"dead1", "dead2"} & names
    x = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(run_program(lower(doc), {"x": x})["y"], -np.maximum(x, 0), rtol=0, atol=1e-12)
