"""Program -> ONNX: onnxruntime on the exported model equals the numpy reference (1e-6 float32, 1e-12 float64)
for compositions and generic MDF documents; the model passes the full checker; batch is dynamic; what has no
translation is refused with a clear error."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import XOR_INPUTS, make_xor
from mdf_fixtures import doc, nested_composition, standard_functions_doc

from mdfbridge import (
    Composition,
    Exponential,
    GRUComposition,
    Linear,
    Logistic,
    MappingProjection,
    ReLU,
    SoftMax,
    Tanh,
    TransferMechanism,
    UnsupportedError,
    lower,
)
from mdfbridge.exporters.mdf import composition_to_dict
from mdfbridge.exporters.onnx import mdf_to_onnx, program_to_onnx, save_onnx
from mdfbridge.importers.reference import run_program
from mdfbridge.ops import REGISTRY, OpDef, get_op, register
from mdfbridge.program import InputSpec, Op, Param, Program, TensorRef

TOL = {"float32": 1e-6, "float64": 1e-12}


def ort_run(model: onnx.ModelProto, inputs: dict) -> dict:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np_type = {1: np.float32, 11: np.float64}[model.graph.input[0].type.tensor_type.elem_type] if model.graph.input \
        else np.float32
    out = sess.run(None, {k: np.asarray(v, dtype=np_type) for k, v in inputs.items()})
    return dict(zip([o.name for o in sess.get_outputs()], out))


def check_equal(program, inputs: dict, dtype: str, opset: int = 17) -> onnx.ModelProto:
    """Export, check the model, run it on onnxruntime and compare every output with the numpy reference."""
    model = program_to_onnx(program, dtype=dtype, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    if dtype == "float32":  # the reference sees the same (float32-rounded) inputs
        inputs = {k: np.asarray(v, dtype=np.float32).astype(np.float64) for k, v in inputs.items()}
    want = run_program(program, inputs)
    got = {k[: -len("_output")] if k.endswith("_output") and k[: -len("_output")] in program.inputs else k: v
           for k, v in ort_run(model, inputs).items()}
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=TOL[dtype], atol=TOL[dtype], err_msg=k)
    return model


def comp_program(comp: Composition):
    return lower(composition_to_dict(comp))


# --------------------------------------------------------------------------- compositions

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 64])
def test_xor_random_weights(dtype, batch):
    prog = make_xor().program()
    x = np.random.default_rng(batch).uniform(-1, 1, size=(batch, 2))
    model = check_equal(prog, {"input": x}, dtype)
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["output"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 2
    assert {i.name for i in model.graph.initializer} >= {"input_to_hidden.matrix", "hidden_to_output.matrix"}


TRANSFERS = [Linear(slope=0.5, intercept=-1), Linear(), Logistic(gain=2, bias=0.3, offset=0.1), Logistic(), Tanh(),
             Tanh(gain=1.5, bias=-0.2, offset=0.1, scale=0.7), ReLU(), ReLU(gain=2, bias=0.1, leak=0.05),
             ReLU(leak=0.2), SoftMax(gain=3), SoftMax(), Exponential(rate=0.5, scale=2, bias=0.1, offset=-1)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", TRANSFERS, ids=repr)
def test_every_transfer_function(fn, dtype):
    a, b = TransferMechanism("a", 3), TransferMechanism("b", 4, fn)
    comp = Composition("c", pathways=[[a, np.random.default_rng(1).normal(size=(3, 4)), b]])
    x = np.random.default_rng(2).normal(size=(64, 3))
    check_equal(comp_program(comp), {"a": x}, dtype)


def test_leaky_relu_becomes_one_onnx_op():
    a, b = TransferMechanism("a", 3), TransferMechanism("b", 3, ReLU(leak=0.1))
    model = program_to_onnx(comp_program(Composition("c", pathways=[[a, np.eye(3), b]])))
    assert "LeakyRelu" in [n.op_type for n in model.graph.node]
    a, b = TransferMechanism("a", 3), TransferMechanism("b", 3, Logistic())
    model = program_to_onnx(comp_program(Composition("c", pathways=[[a, np.eye(3), b]])))
    # outputs are named in place, no Identity node
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Sigmoid"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 64])
def test_nested_composition_with_bias_nodes(dtype, batch):
    outer, _, _ = nested_composition()
    x = np.random.default_rng(3).normal(size=(batch, 2))
    check_equal(comp_program(outer), {"a": x}, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_multiple_inputs_and_outputs_fixed_weights(dtype):
    a, b = TransferMechanism("a", 2), TransferMechanism("b", 3)
    h = TransferMechanism("h", 4, Logistic(gain=1.5))
    y1, y2 = TransferMechanism("y1", 2, Linear(slope=2.0)), TransferMechanism("y2", 3, Tanh())
    comp = Composition("multi")
    comp.add_projection(MappingProjection(matrix=np.arange(8.0).reshape(2, 4) / 10), a, h)
    comp.add_projection(MappingProjection(matrix=-np.arange(12.0).reshape(3, 4) / 10), b, h)
    comp.add_projection(MappingProjection(matrix=np.ones((4, 2))), h, y1)
    comp.add_projection(MappingProjection(matrix=np.full((4, 3), 0.25)), h, y2)
    comp.add_projection(MappingProjection(matrix=np.eye(2, 3)), a, y2)
    rng = np.random.default_rng(4)
    model = check_equal(comp_program(comp), {"a": rng.normal(size=(5, 2)), "b": rng.normal(size=(5, 3))}, dtype)
    assert [i.name for i in model.graph.input] == ["a", "b"]
    assert sorted(o.name for o in model.graph.output) == ["y1", "y2"]


def test_dynamic_batch_one_model_many_batch_sizes():
    prog = make_xor().program()
    sess = ort.InferenceSession(program_to_onnx(prog).SerializeToString(), providers=["CPUExecutionProvider"])
    for n in (1, 3, 64, 257):
        x = np.random.default_rng(n).normal(size=(n, 2)).astype(np.float32)
        got = sess.run(None, {"input": x})[0]
        np.testing.assert_allclose(got, run_program(prog, {"input": x.astype(float)})["output"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_ir_version_and_opset(opset):
    model = program_to_onnx(make_xor().program(), opset=opset)
    assert model.opset_import[0].domain == "" and model.opset_import[0].version == opset
    assert model.ir_version == {17: 8, 18: 8, 21: 10}[opset] <= 10
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_allclose(ort_run(model, {"input": XOR_INPUTS})["output"],
                               make_xor().evaluate({"input": XOR_INPUTS})["output"], rtol=1e-6, atol=1e-6)


def test_opset_below_17_is_refused():
    with pytest.raises(UnsupportedError, match="opset must be between 17"):
        program_to_onnx(make_xor().program(), opset=13)


def test_save_and_mdf_to_onnx_from_file(tmp_path):
    xor = make_xor()
    path = tmp_path / "xor.mdf.json"
    xor.save_mdf(str(path))
    model = mdf_to_onnx(path, dtype="float64")
    save_onnx(model, tmp_path / "xor.onnx")
    loaded = onnx.load(str(tmp_path / "xor.onnx"))
    np.testing.assert_allclose(ort_run(loaded, {"input": XOR_INPUTS})["output"],
                               xor.evaluate({"input": XOR_INPUTS})["output"], rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- generic MDF documents

def one_node(shape, value, params=None, functions=None):
    """A one-node document whose input port `x` has per-trial `shape`."""
    node = {"input_ports": {"x": {"shape": list(shape)}}, "output_ports": {"o": {"value": value}}}
    if params:
        node["parameters"] = {k: {"value": v} for k, v in params.items()}
    if functions:
        node["functions"] = functions
    return doc({"n": node})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_standard_functions_expressions_and_edge_weight(dtype):
    d = standard_functions_doc()
    x = np.random.default_rng(0).normal(size=(5, 3))
    check_equal(lower(d), {"A": x}, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_ops_document(dtype):
    d = doc({
        "g": {"input_ports": {"x": {"shape": [1, 3]}},
              "parameters": {"W": {"value": np.arange(12.0).reshape(3, 4).tolist()},
                             "b": {"value": [0.1, 0.2, 0.3, 0.4]}},
              "functions": {
                  "gemm": {"function": {"onnx::Gemm": {"A": "x", "B": "W", "C": "b", "alpha": 0.5, "beta": 2.0}}},
                  "sig": {"function": {"onnx::Sigmoid": {"X": "gemm"}}},
                  "sm": {"function": {"onnx::Softmax": {"input": "sig", "axis": 1}}},
                  "tr": {"function": {"onnx::Transpose": {"data": "sm", "perm": [1, 0]}}},
                  "rs": {"function": {"onnx::Reshape": {"data": "tr", "shape": [2, 2]}}},
                  "mm": {"function": {"onnx::MatMul": {"A": "rs", "B": [[1.0, -1.0], [0.5, 2.0]]}}},
                  "ad": {"function": {"onnx::Add": {"A": "mm", "B": [1.0, 2.0]}}},
                  "dv": {"function": {"onnx::Div": {"A": "ad", "B": 4.0}}},
                  "gm": {"function": {"onnx::Gemm": {"A": "dv", "B": [[1.0], [2.0]], "transA": 1}}},
              },
              "output_ports": {"y": {"value": "gm"}}},
    })
    x = np.random.default_rng(1).normal(size=(4, 1, 3))
    check_equal(lower(d), {"g": x}, dtype)


EXPRESSIONS = [
    ("x / numpy.sum(x)", [3], None),
    ("numpy.exp(x - numpy.max(x)) / numpy.sum(numpy.exp(x - numpy.max(x)))", [4], None),
    ("x * (x > 0) + 0.1 * x * (x <= 0)", [3], None),
    ("numpy.where(x > 0.2, x, -x) + (1.0 if k > 1 else 2.0)", [3], {"k": 2.0}),
    ("x[0] * x[-1] + numpy.sum(x[1:3]) - x[::-1][0] + x[-2:0:-1][0]", [4], None),
    ("numpy.maximum(x, 0.1) + numpy.minimum(x, k) - numpy.abs(x) ** 2 + x ** 3 + max(x[0], x[1], 0.2)", [3],
     {"k": 0.3}),
    ("numpy.sqrt(numpy.abs(x)) + numpy.tanh(x) * numpy.cos(x) - numpy.sin(x)", [3], None),
    ("numpy.mean(x, axis=1) + numpy.sum(x, axis=0)[0] + numpy.max(x, axis=-1, keepdims=True)[:, 0]", [2, 2], None),
    ("x[0, 1] * x[1][0] + numpy.min(x) + numpy.sum(x[:, 1])", [2, 2], None),
    ("numpy.dot(x, W) + numpy.matmul(numpy.transpose(W), x)[0]", [2], {"W": [[1.0, 2.0], [3.0, 4.0]]}),
    ("W @ x + numpy.sum(W, axis=0) * pi + x @ W", [2], {"W": [[1.0, 2.0], [3.0, 4.0]]}),
    ("x @ W", [3, 2], {"W": [[1.0, 2.0], [3.0, 4.0]]}),
    ("(x > 0) * 1.0 + numpy.log(numpy.exp(x)) - numpy.floor(x) + numpy.ceil(x) % 3 - x // 0.3", [3], None),
    ("numpy.concatenate([x, x * 2, c], axis=0)", [2], {"c": [1.0, 2.0]}),
    ("numpy.reshape(x, (4,)) + numpy.reshape(numpy.transpose(x), (-1,))", [2, 2], None),
    ("numpy.clip(x, -0.5, 0.5) + numpy.sign(x) + numpy.square(x)", [3], None),
    ("numpy.outer(x, x)[1] + numpy.stack([x, x], axis=1)[:, 0] + numpy.array([x[0], 1.0, x[2]])", [3], None),
    ("numpy.argmax(x) + numpy.argmin(x) + len(x) + numpy.prod(x)", [3], None),
    ("numpy.expand_dims(x, 0)[0] + numpy.squeeze(numpy.reshape(x, (1, 3)))", [3], None),
    ("numpy.zeros_like(x) + numpy.ones_like(x) * numpy.array([1.0, 2.0, 3.0]) + numpy.ones(3)", [3], None),
    ("numpy.logical_and(x > -0.5, x < 0.5) * 1.0 + (not 0) + numpy.logical_or(x > 0.9, x < -0.9) * 2.0", [3], None),
    ("numpy.arctan(x) + numpy.sinh(x) - numpy.cosh(x) + numpy.tan(x)", [3], None),
    ("sigmoid(x) + relu(x) + numpy.exp(c) * x", [3], {"c": [0.1, 0.2, 0.3]}),
    ("numpy.round(x * 3, 1) + numpy.round(x * 30, -1) + numpy.tile(x, (2, 1))[1] + numpy.heaviside(x, 0.5)"
     " + numpy.power(numpy.abs(x), 0.5 + x) + numpy.log2(numpy.abs(x)) - numpy.log10(numpy.abs(x))", [3], None),
    ("numpy.where((x > 0) != (x < 0.5), 1.0, 2.0) + numpy.logical_not(x >= 0.3) + float(x[0] > 0) + int(3.7 * x[1])"
     " + (x == x[0]) * 2.0", [3], None),
    ("numpy.arcsin(x * 0.5) + numpy.arccos(x * 0.5) + numpy.erf(x) + numpy.cosh(x) * numpy.tan(x)", [3], None),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("expr,shape,params", EXPRESSIONS, ids=[e[0][:40] for e in EXPRESSIONS])
def test_expression_translation(expr, shape, params, dtype):
    prog = lower(one_node(shape, "f", params, {"f": {"value": expr}}))
    x = np.random.default_rng(5).uniform(-1, 1, size=(6, *shape))
    missing = next((f for f in ("Atan", "Asin") if f"numpy.arc{f[1:].lower()}" in expr), None)
    if dtype == "float64" and missing:  # onnxruntime has no float64 kernel and there is no exact rewrite
        with pytest.raises(UnsupportedError, match=f"float64 kernel for ONNX {missing}"):
            program_to_onnx(prog, dtype=dtype)
        return
    check_equal(prog, {"n": x}, dtype)


@pytest.mark.parametrize("expr", ["numpy.maximum(x, 0)", "numpy.maximum(0.0, x)", "relu(x)"])
def test_maximum_with_zero_is_one_relu_node(expr):
    model = program_to_onnx(lower(one_node([3], "f", None, {"f": {"value": expr}})))
    assert [n.op_type for n in model.graph.node] == ["Relu"]


def test_comparisons_and_logic_stay_bool_tensors():
    prog = lower(one_node([3], "f", None, {"f": {"value": "numpy.where(numpy.logical_and(x > 0, x < 0.5), x, -x)"}}))
    ops = [n.op_type for n in program_to_onnx(prog).graph.node]
    assert ops == ["Greater", "Less", "And", "Neg", "Where"]  # no Cast between the bools


def test_unbatched_values_stay_without_batch_axis():
    d = one_node([3], "f", {"W": [[1.0, 2.0, 3.0]], "c": [0.5, 1.0, 1.5]},
                 {"f": {"value": "x + numpy.exp(c) * W[0]"}})
    model = program_to_onnx(lower(d))
    exp_node = next(n for n in model.graph.node if n.op_type == "Exp")
    assert exp_node.input[0] == "n.c"  # computed from a parameter alone: no batch axis, no Expand
    assert "Expand" not in [n.op_type for n in model.graph.node]
    check_equal(lower(d), {"n": np.ones((3, 3))}, "float64")


def test_constant_output_is_broadcast_over_the_batch():
    d = doc({"a": {"input_ports": {"x": {"shape": [2]}}, "output_ports": {"o": {"value": "x * 2"}}},
             "b": {"parameters": {"v": {"value": [1.0, 2.0]}}, "output_ports": {"o": {"value": "v + 1"}}}})
    check_equal(lower(d), {"a": np.ones((5, 2))}, "float64")


# --------------------------------------------------------------------------- refusals

def test_stateful_program_is_refused_naming_the_state():
    d = doc({"counter": {"parameters": {"increment": {"value": 1.5}, "count": {"value": "count + increment"}},
                         "output_ports": {"c": {"value": "count"}}}})
    with pytest.raises(UnsupportedError, match=r"stateful.*counter\.count.*numpy reference or torch"):
        program_to_onnx(lower(d))


def test_untranslatable_expression_names_node_and_backends():
    # numpy.dot of a matrix with a 3-axis array is no matmul: the op's export refuses it
    d = one_node([2, 2], "f", {"W": np.ones((2, 2, 2)).tolist()}, {"f": {"value": "numpy.dot(x, W)"}})
    prog = lower(d)
    with pytest.raises(UnsupportedError) as ei:
        program_to_onnx(prog)
    msg = str(ei.value)
    assert "node 'n'" in msg and "numpy.dot" in msg and "numpy reference and torch" in msg


def test_expression_index_computed_from_tensors_is_refused_at_lowering():
    with pytest.raises(UnsupportedError, match="index"):
        lower(one_node([3], "f", None, {"f": {"value": "x[int(numpy.argmax(x))]"}}))


def test_op_without_exporter_names_node_op_and_backends():
    prog = make_xor().program()
    prog.ops[2].fn = "onnx::GRU_test_only"
    with pytest.raises(UnsupportedError) as ei:
        program_to_onnx(prog)
    assert "onnx::GRU_test_only" in str(ei.value) and f"node '{prog.ops[2].node}'" in str(ei.value)


def test_registry_refuses_double_registration_and_records_carry_their_exporter():
    with pytest.raises(ValueError, match="registered twice"):
        register(get_op("logistic"))
    assert callable(get_op("onnx::Gemm").onnx_export) and callable(get_op("SoftMax").onnx_export)


def test_op_without_exporter_lists_the_ops_that_have_one(monkeypatch):
    monkeypatch.setitem(REGISTRY, "NoExport", OpDef("NoExport", ("A",), lambda A: A))
    prog = make_xor().program()
    prog.ops[2].fn = "NoExport"
    with pytest.raises(UnsupportedError, match=r"'NoExport' has no ONNX exporter \(backends that can run it: numpy "
                                               r"reference\); ONNX exporters exist for .*Gemm, .*logistic"):
        program_to_onnx(prog)


# --------------------------------------------------------------------------- every registry op's onnx_export

# op -> (batched arguments: per-trial shape, parameters: shape, static arguments); an elementwise op without an
# entry gets its first argument batched with per-trial shape (3,) and the others as scalar parameters
OP_SAMPLES = {
    "MatMul": ({"A": (3,)}, {"B": (3, 4)}, {}),
    "Gemm": ({"A": (3,)}, {"B": (4, 3), "C": (4,)}, {"alpha": 0.5, "beta": 2.0, "transB": 1}),
    "SoftMax": ({"variable0": (4,)}, {"gain": ()}, {"axis": -1}),
    "Transpose": ({"data": (2, 3)}, {}, {"perm": [1, 0]}),
    "Reshape": ({"data": (2, 3)}, {}, {"shape": [3, 2]}),
    "Concat": ({"x0": (2,), "x1": (3,)}, {}, {"axis": 0}),
    "Stack": ({"x0": (3,), "x1": (3,)}, {}, {"axis": 1}),
    "AsArray": ({"x0": (), "x1": ()}, {}, {}),
    "Dot": ({"A": (2, 3)}, {"B": (3, 2)}, {}),
    "Outer": ({"A": (3,)}, {"B": (2,)}, {}),
    "ReduceSum": ({"X": (2, 3)}, {}, {"axis": -1, "keepdims": True}),
    "ReduceMean": ({"X": (2, 3)}, {}, {"axis": 0}),
    "ReduceMax": ({"X": (2, 3)}, {}, {"axis": None}),
    "ReduceMin": ({"X": (2, 3)}, {}, {"axis": (0, 1), "keepdims": True}),
    "ReduceProd": ({"X": (2, 3)}, {}, {"axis": 1}),
    "ArgMax": ({"X": (2, 3)}, {}, {"axis": 1}),
    "ArgMin": ({"X": (2, 3)}, {}, {"axis": None, "keepdims": True}),
    "Getitem": ({"X": (3, 4)}, {}, {"index": (slice(None, None, -2), -1)}),
    "Squeeze": ({"X": (1, 3, 1)}, {}, {"axis": None}),
    "Unsqueeze": ({"X": (3,)}, {}, {"axis": [0, -1]}),
    "Tile": ({"X": (2,)}, {}, {"reps": [2, 3]}),
    "Shape": ({"X": (2, 3)}, {}, {}),
    "Len": ({"X": (2, 3)}, {}, {}),
    "Round": ({"X": (3,)}, {}, {"decimals": 1}),
    "Conv": ({"X": (2, 5, 6)}, {"W": (4, 1, 3, 2), "B": (4,)},
             {"strides": [2, 1], "pads": [1, 0, 2, 1], "dilations": [1, 2], "group": 2}),
    "LayerNormalization": ({"X": (2, 3)}, {"Scale": (3,), "B": (2, 3)}, {"axis": 0, "epsilon": 0.125}),
    "MaxPool": ({"X": (2, 7, 6)}, {}, {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1],
                                       "dilations": [1, 2], "ceil_mode": 1}),
    "AveragePool": ({"X": (2, 7)}, {}, {"kernel_shape": [3], "strides": [2], "pads": [1, 2], "count_include_pad": 1}),
    "GlobalAveragePool": ({"X": (2, 3, 4)}, {}, {"spatial": 2}),
    "GlobalMaxPool": ({"X": (2, 5)}, {}, {"spatial": 1}),
    "BatchNormalization": ({"X": (2, 3, 4)}, {"scale": (2,), "B": (2,), "input_mean": (2,), "input_var": (2,)},
                           {"epsilon": 0.125}),
    "InstanceNormalization": ({"X": (2, 5)}, {"scale": (2,), "B": (2,)}, {"epsilon": 0.125}),
    "MultiheadAttention": ({"X": (3, 4), "K": (5, 4)}, {"in_proj_weight": (12, 4), "in_proj_bias": (12,),
                                                        "out_proj_weight": (4, 4), "out_proj_bias": (4,)},
                           {"num_heads": 2}),
    "GroupNormalization": ({"X": (4, 2, 3)}, {"scale": (4,), "B": (4,)}, {"num_groups": 2, "epsilon": 0.125}),
    "Pad": ({"X": (3, 4)}, {}, {"pads": [1, 2, 0, -1], "mode": "edge"}),
    "ConvTranspose": ({"X": (2, 4, 3)}, {"W": (2, 3, 2, 2), "B": (3,)},
                      {"strides": [2, 1], "pads": [1, 0, 0, 1], "output_padding": [1, 0]}),
    "LRN": ({"X": (5, 2, 2)}, {}, {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 1.5}),
    # per-trial sequences X (T, I); a batched initial cell state (a module input) for LSTM
    "RNN": ({"X": (5, 3)}, {"h0": (4,), "weight_ih": (4, 3), "weight_hh": (4, 4), "bias_ih": (4,), "bias_hh": (4,)},
            {"nonlinearity": "relu"}),
    "LSTM": ({"X": (5, 3), "c0": (4,)}, {"weight_ih": (16, 3), "weight_hh": (16, 4)}, {"output": "Y_c"}),
    "Gather": ({"data": (4, 3)}, {}, {"indices": [[2, 0], [-1, 2]], "axis": 1}),
    "GatherElements": ({"data": (3, 2)}, {}, {"indices": [[0, 1], [2, -1]], "axis": 0}),
    "Slice": ({"data": (4, 5)}, {}, {"starts": [1, -1], "ends": [3, -2 ** 63], "axes": [0, 1], "steps": [1, -2]}),
    "Expand": ({"X": (3, 1)}, {}, {"shape": [2, 3, 4]}),
    "Einsum": ({"A": (2, 3)}, {"B": (3, 4)}, {"equation": "ij,jk->ik"}),
    "LogSoftmax": ({"X": (2, 3)}, {}, {"axis": [0, 1]}),
}
LIST_ARGS = {"Concat": "inputs", "Stack": "inputs", "AsArray": "X"}  # ops taking a list of tensors (x0, x1)
GRU_FORMS = {"GRU": "gates", "GRU_ONNX": "onnx"}  # built by lowering a GRU composition's MDF form
EXPORTED = sorted(name for name, d in REGISTRY.items() if d.onnx_export is not None)


def one_op_program(name: str, rng: np.random.Generator) -> Program:
    """A Program of one call of op `name` on random batched inputs and parameters (inputs in (0.1, 0.9))."""
    opdef = REGISTRY[name]
    if name in OP_SAMPLES:
        tensors, params, static = OP_SAMPLES[name]
    else:
        assert opdef.elementwise, f"add a sample for op {name} to OP_SAMPLES"
        tensors, params, static = {opdef.args[0]: (3,)}, {a: () for a in opdef.args[1:]}, {}
    inputs = {k: InputSpec(k, k, "in", shape) for k, shape in tensors.items()}
    args = {k: TensorRef(f"{k}.in") for k in tensors}
    args.update({k: TensorRef(f"op.{k}") for k in params})
    args.update(static)
    if name in LIST_ARGS:
        args = {LIST_ARGS[name]: [args.pop("x0"), args.pop("x1")], **args}
    values = {f"op.{k}": Param(f"op.{k}", rng.uniform(0.1, 0.9, size=shape)) for k, shape in params.items()}
    return Program(f"one_{name}", [Op("op.out", args, "op", fn=name)], values, inputs, {"y": "op.out"})


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_op_on_onnxruntime_equals_its_numpy_implementation(name):
    rng = np.random.default_rng(EXPORTED.index(name))
    if name in GRU_FORMS:
        comp = GRUComposition(3, 5, bias=True, seed=0)
        prog = lower(composition_to_dict(comp, gru_form=GRU_FORMS[name]))
        assert [op.fn for op in prog.ops] == [name]
        inputs = {k: rng.uniform(0.1, 0.9, size=(4, 6, 3)) for k in prog.inputs}
    else:
        prog = one_op_program(name, rng)
        inputs = {k: rng.uniform(0.1, 0.9, size=(5, *spec.shape)) for k, spec in prog.inputs.items()}
    inputs = {k: v.astype(np.float32).astype(np.float64) for k, v in inputs.items()}
    want = run_program(prog, inputs, sequence=prog.sequence)
    got = ort_run(program_to_onnx(prog, dtype="float32"), inputs)
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)
