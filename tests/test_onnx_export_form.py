"""The form of exported ONNX graphs: a bias node's projection is one Add of the bias vector (no MatMul by a constant
[1]), weights are initializers named as the MDF names them, a GRU's zero initial hidden state is ONNX's default
(initial_h left out, no Shape/Concat/Expand), neutral scalars (x * 1, x + 0) emit no node; and the smaller graphs
compute what the numpy reference, torch and torch.nn.GRU compute (onnxruntime, 1e-6 float32 / 1e-12 float64), with
the batch axis dynamic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import make_xor
from gru_oracles import torch_gru
from mdf_fixtures import nested_composition
from test_gru import random_gru

from mdfbridge import Composition, GRUComposition
from mdfbridge.api import load_program
from mdfbridge.exporters.mdf import composition_to_dict
from mdfbridge.exporters.onnx import program_to_onnx
from mdfbridge.importers.pytorch import module_to_program
from mdfbridge.importers.reference import run_program
from mdfbridge.lowering import lower
from mdfbridge.program import InputSpec, Op, Param, Program, TensorRef

REPO = Path(__file__).resolve().parent.parent
TOL = {"float32": 1e-6, "float64": 1e-12}
NP = {"float32": np.float32, "float64": np.float64}
LOGISTIC = {"gain": 1.0, "bias": 0.0, "offset": 0.0}  # a Program op holds every argument


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def ort_outputs(model: onnx.ModelProto, inputs: dict, dtype: str) -> dict:
    sess = session(model)
    out = sess.run(None, {k: np.asarray(v, dtype=NP[dtype]) for k, v in inputs.items()})
    return dict(zip([o.name for o in sess.get_outputs()], out))


def assert_matches_reference(program: Program, model: onnx.ModelProto, inputs: dict, dtype: str,
                             sequence: bool = False) -> None:
    """onnxruntime on `model` equals the numpy reference on the same (dtype-rounded) inputs, every output."""
    inputs = {k: np.asarray(v, dtype=NP[dtype]).astype(np.float64) for k, v in inputs.items()}
    want = run_program(program, inputs, sequence=sequence)
    got = ort_outputs(model, inputs, dtype)
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=TOL[dtype], atol=TOL[dtype], err_msg=k)


def op_types(model: onnx.ModelProto) -> list:
    return [n.op_type for n in model.graph.node]


def initializers(model: onnx.ModelProto) -> dict:
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def matmuls_by_a_one(model: onnx.ModelProto) -> list:
    """MatMul nodes one of whose operands is an initializer holding a single 1."""
    ones = {k for k, v in initializers(model).items() if v.size == 1 and float(v.reshape(-1)[0]) == 1.0}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and set(n.input) & ones]


def fixed_xor() -> Composition:
    """The XOR composition with fixed (non-random) weights."""
    comp = make_xor()
    mats = {"input_to_hidden": np.linspace(-1.0, 1.0, 20).reshape(2, 10),
            "hidden_to_output": np.linspace(0.5, -0.5, 10).reshape(10, 1),
            "bias_to_hidden": np.arange(10.0).reshape(1, 10) / 10 - 0.45, "bias_to_output": np.array([[0.25]])}
    for p in comp.projections:
        if p.name in mats:
            p.matrix = mats[p.name]
    return comp


XOR_NAMES = {"input_to_hidden.matrix", "bias_to_hidden.matrix", "hidden_to_output.matrix", "bias_to_output.matrix"}


# --------------------------------------------------------------------------- bias nodes, names (XOR, MLPs)

@pytest.mark.parametrize("source", ["composition", "fixed", "file"])
def test_xor_is_two_matmul_add_sigmoid_layers_with_mdf_names(source):
    program = {"composition": lambda: make_xor(seed=5).program(), "fixed": lambda: fixed_xor().program(),
               "file": lambda: load_program(REPO / "examples" / "xor.mdf.json")}[source]()
    model = program_to_onnx(program)
    assert op_types(model) == ["MatMul", "Add", "Sigmoid", "MatMul", "Add", "Sigmoid"]
    assert matmuls_by_a_one(model) == []
    inits = initializers(model)
    assert set(inits) == XOR_NAMES  # the document's parameters, nothing else (no [1] of the bias nodes)
    # the bias is the MDF matrix's row, added to the product: the Add nodes read it directly
    for name, node in (("bias_to_hidden.matrix", "hidden"), ("bias_to_output.matrix", "output")):
        want = np.asarray(program.params[name].value, dtype=np.float32).reshape(-1)
        assert inits[name].shape == want.shape and np.array_equal(inits[name], want)
        add = next(n for n in model.graph.node if n.op_type == "Add" and n.name.startswith(f"{node}/"))
        assert name in add.input
        doc = next(i.doc_string for i in model.graph.initializer if i.name == name)
        assert name in doc and "bias node" in doc
    for name in ("input_to_hidden.matrix", "hidden_to_output.matrix"):  # weights keep the document's shape
        assert inits[name].shape == program.params[name].value.shape


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weights", ["random", "fixed"])
def test_xor_equals_the_reference_on_a_dynamic_batch(dtype, weights):
    program = (make_xor(seed=11) if weights == "random" else fixed_xor()).program()
    model = program_to_onnx(program, dtype=dtype)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    for batch in (1, 7):
        x = np.random.default_rng(batch).uniform(-2, 2, size=(batch, 2))
        assert_matches_reference(program, model, {"input": x}, dtype)


def test_xor_exported_bias_trains_in_torch_like_the_document_bias():
    """The initializers are the model's weights: changing the bias initializer changes the output as changing
    the MDF bias matrix does (so ONNX tooling training them trains the document's parameters)."""
    comp = make_xor(seed=3)
    model = program_to_onnx(comp.program(), dtype="float64")
    x = np.random.default_rng(0).normal(size=(5, 2))
    for init in model.graph.initializer:
        if init.name == "bias_to_hidden.matrix":
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) + 0.5, init.name))
    next(p for p in comp.projections if p.name == "bias_to_hidden").matrix += 0.5
    want = run_program(comp.program(), {"input": x})["output"]
    np.testing.assert_allclose(ort_outputs(model, {"input": x}, "float64")["output"], want, rtol=1e-12, atol=1e-12)


def bias_layer(value: float = 1.0, learnable_one: bool = False, share: bool = False) -> Program:
    """x (3,) @ W + [value] @ Wb, then logistic: a hand-built program of the bias-node form; `share`: Wb is also
    an output (read twice)."""
    rng = np.random.default_rng(7)
    params = {"W.matrix": Param("W.matrix", rng.normal(size=(3, 4)), learnable=True),
              "one.value": Param("one.value", np.array([value]), learnable=learnable_one),
              "Wb.matrix": Param("Wb.matrix", rng.normal(size=(1, 4)), learnable=True)}
    ops = [Op("W.out", {"A": TensorRef("x.in"), "B": TensorRef("W.matrix")}, "W", "MatMul"),
           Op("Wb.out", {"A": TensorRef("one.value"), "B": TensorRef("Wb.matrix")}, "Wb", "MatMul"),
           Op("h.sum", {"A": TensorRef("W.out"), "B": TensorRef("Wb.out")}, "h", "Add"),
           Op("h.out", LOGISTIC | {"variable0": TensorRef("h.sum")}, "h", "logistic")]
    outputs = {"h": "h.out", **({"Wb": "Wb.matrix"} if share else {})}
    return Program("bias", ops, params, {"x": InputSpec("x", "x", "in", (3,))}, outputs)


@pytest.mark.parametrize("case", ["plain", "not-one", "learnable-one", "shared"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bias_row_only_where_the_product_is_exactly_the_row(case, dtype):
    kwargs = {"plain": {}, "not-one": {"value": 2.0}, "learnable-one": {"learnable_one": True},
              "shared": {"share": True}}[case]
    program = bias_layer(**kwargs)
    model = program_to_onnx(program, dtype=dtype)
    if case == "plain":
        assert op_types(model) == ["MatMul", "Add", "Sigmoid"] and set(initializers(model)) == {"W.matrix",
                                                                                              "Wb.matrix"}
    else:  # a product by 2, a [1] training may change, a matrix read elsewhere: the MatMul stays
        assert op_types(model).count("MatMul") == 2
        assert "Wb.matrix" in initializers(model) and initializers(model)["Wb.matrix"].shape == (1, 4)
    for batch in (1, 7):
        assert_matches_reference(program, model, {"x": np.random.default_rng(batch).normal(size=(batch, 3))}, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_mlp_exports_as_matmul_add_with_its_layer_names(dtype):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2),
                                 torch.nn.Sigmoid()).double()
    program = module_to_program(module, torch.randn(4, 3, dtype=torch.float64))
    model = program_to_onnx(program, dtype=dtype)
    assert op_types(model) == ["MatMul", "Add", "Relu", "MatMul", "Add", "Sigmoid"]
    inits = initializers(model)
    assert set(inits) == {"_0_weight.matrix", "_0_bias.matrix", "_2_weight.matrix", "_2_bias.matrix"}
    # torch's own parameters, in ONNX's usual form: W^T (in x out) and the bias vector
    np.testing.assert_array_equal(inits["_0_bias.matrix"], module[0].bias.detach().numpy().astype(NP[dtype]))
    np.testing.assert_array_equal(inits["_2_weight.matrix"], module[2].weight.detach().numpy().T.astype(NP[dtype]))
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch, 3))
        with torch.no_grad():
            want = module(torch.as_tensor(np.asarray(x, dtype=NP[dtype]).astype(np.float64))).numpy()
        got = ort_outputs(model, {"input": x}, dtype)["output"]
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])
        assert_matches_reference(program, model, {"input": x}, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nested_composition_bias_and_names(dtype):
    """A nested composition (inner node ids flattened with their nesting prefix) with a bias node: no MatMul by
    [1], every weight under its document name, no node for the inner nodes' neutral offsets."""
    outer, _, _ = nested_composition()
    program = lower(composition_to_dict(outer))
    model = program_to_onnx(program, dtype=dtype)
    assert matmuls_by_a_one(model) == []
    leaky = ["LeakyRelu"] if dtype == "float32" else ["Greater", "Mul", "Where"]  # alpha 0.1 is no float32
    assert op_types(model) == ["MatMul", "Tanh", "MatMul", "Sigmoid", "MatMul"] + leaky + ["MatMul", "Add", "Softmax"]
    learnable = {k for k, p in program.params.items() if p.learnable}
    extra = set() if dtype == "float32" else {"const", "inner__deeper__d.function.leak"}  # Where(x > 0, x, leak x)
    assert set(initializers(model)) == learnable | extra
    assert "b_o.matrix" in initializers(model) and "inner__MappingProjection_0.matrix" in initializers(model)
    for batch in (1, 7):
        assert_matches_reference(program, model, {"a": np.random.default_rng(batch).normal(size=(batch, 2))}, dtype)


# --------------------------------------------------------------------------- neutral scalars

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_psyneulink_unit_edge_weights_emit_no_mul(dtype):
    path = REPO / "tests" / "data" / "psyneulink" / "autodiff_sgd.json"
    program = load_program(path)
    assert sum(op.fn == "Mul" for op in program.ops) == 2  # PsyNeuLink's edges multiply by 1
    model = program_to_onnx(program, dtype=dtype)
    assert op_types(model) == ["MatMul", "Sigmoid", "MatMul", "Sigmoid"]
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch,) + tuple(program.inputs["ad_in"].shape or (3,)))
        assert_matches_reference(program, model, {"ad_in": x}, dtype)


def neutral_program(fn: str, const: float, const_first: bool, compare: bool = False) -> Program:
    """y = x <fn> const (or const <fn> x); with `compare`, x is (x > 0) first, a bool tensor."""
    ops = []
    x = TensorRef("x.in")
    if compare:
        ops.append(Op("x.cmp", {"A": x, "B": 0.0}, "x", "Greater"))
        x = TensorRef("x.cmp")
    args = {"A": const, "B": x} if const_first else {"A": x, "B": const}
    ops.append(Op("y.out", args, "y", fn))
    ops.append(Op("z.out", LOGISTIC | {"variable0": TensorRef("y.out")}, "z", "logistic"))
    return Program("neutral", ops, {}, {"x": InputSpec("x", "x", "in", (4,))}, {"z": "z.out", "y": "y.out"})


@pytest.mark.parametrize("fn,const,const_first,dropped", [
    ("Mul", 1.0, True, True), ("Mul", 1.0, False, True), ("Add", 0.0, False, True), ("Add", 0.0, True, True),
    ("Sub", 0.0, False, True), ("Div", 1.0, False, True), ("Sub", 0.0, True, False), ("Div", 1.0, True, False),
    ("Mul", 2.0, False, False), ("Add", 1.0, False, False)])
@pytest.mark.parametrize("compare", [False, True])
@pytest.mark.filterwarnings("ignore:divide by zero")  # 1 / x at x = 0 in the reference: inf, as onnxruntime
def test_neutral_scalars_emit_no_node(fn, const, const_first, dropped, compare):
    program = neutral_program(fn, const, const_first, compare)
    model = program_to_onnx(program, dtype="float64")
    types = op_types(model)
    assert (fn in types) == (not dropped or compare)  # a bool operand is cast and computed as written
    x = np.array([[-1.5, 0.0, 0.5, 2.0]] + [[0.25, -0.75, 3.0, -2.0]] * 6)
    for batch in (1, 7):
        assert_matches_reference(program, model, {"x": x[:batch]}, "float64")


# --------------------------------------------------------------------------- GRU

def gru_initial_h(model: onnx.ModelProto) -> str:
    (gru,) = [n for n in model.graph.node if n.op_type == "GRU"]
    return gru.input[5] if len(gru.input) > 5 else ""


def assert_gru_matches_torch(model: onnx.ModelProto, comp: GRUComposition, x: np.ndarray) -> None:
    """onnxruntime (float32: its GRU kernel has no float64) equals torch.nn.GRU in float64 on the same float32
    inputs within 1e-6."""
    x32 = np.asarray(x, dtype=np.float32)
    got = ort_outputs(model, {"GRU__input": x32}, "float32")["GRU__output"]
    want = torch_gru(comp.torch_parameters(), comp.block.h0, x32.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("form", ["gates", "onnx"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gru_with_zero_initial_state_leaves_initial_h_out(form, dtype):
    """The graph's form in both dtypes; onnxruntime runs the float32 model (its GRU kernel has no float64)."""
    comp = random_gru(True, seed=31)
    comp.block.h0 = np.zeros_like(comp.block.h0)
    program = lower(composition_to_dict(comp, gru_form=form))
    model = program_to_onnx(program, dtype=dtype)
    types = op_types(model)
    assert types == ["Transpose", "GRU", "Squeeze", "Transpose"]
    assert gru_initial_h(model) == ""
    names = set(initializers(model))
    want = {"GRU.W", "GRU.R", "GRU.B"} if form == "gates" else {"GRU__gru.W", "GRU__gru.R", "GRU__gru.B"}
    assert want <= names and not any(n.startswith("const") for n in names)
    if form == "gates":
        doc = {i.name: i.doc_string for i in model.graph.initializer}
        assert all(p in doc["GRU.W"] for p in ("GRU__update.wts_iu", "GRU__reset.wts_ir", "GRU__new.wts_in"))
        assert "GRU__reset.bias_hr" in doc["GRU.B"]
    if dtype == "float64":
        return
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch, 9, 4))
        assert_matches_reference(program, model, {"GRU__input": x}, dtype, sequence=True)
        assert_gru_matches_torch(model, comp, x)


@pytest.mark.parametrize("form", ["gates", "onnx"])
def test_gru_with_nonzero_initial_state_still_equal(form):
    comp = random_gru(True, seed=32)  # a random non-zero h0
    program = lower(composition_to_dict(comp, gru_form=form))
    model = program_to_onnx(program)
    assert gru_initial_h(model) != "" and "Expand" in op_types(model)
    h0_name = next(op.args["h0"].name for op in program.ops if op.fn == "GRU")
    init = initializers(model)[h0_name]  # the initial state under its program name, in ONNX's (1, 1, H)
    assert init.shape == (1, 1, comp.block.h0.size)
    np.testing.assert_array_equal(init.reshape(-1), comp.block.h0.astype(np.float32))
    for batch in (1, 7):
        x = np.random.default_rng(batch + 10).normal(size=(batch, 9, 4))
        assert_matches_reference(program, model, {"GRU__input": x}, "float32", sequence=True)
        assert_gru_matches_torch(model, comp, x)


def test_gru_with_a_tiny_initial_state_is_not_taken_for_zero():
    """Exactly zero only: an initial state of 1e-30 (0 in float32's normal range, not in float64) is exported."""
    comp = random_gru(True, seed=33)
    comp.block.h0 = np.zeros_like(comp.block.h0)
    comp.block.h0[2] = 1e-30
    model = program_to_onnx(lower(composition_to_dict(comp)))
    assert gru_initial_h(model) != ""


def test_gru_without_bias_and_default_state():
    comp = GRUComposition(3, 5, bias=False, seed=4)
    assert not np.any(comp.block.h0)
    program = lower(composition_to_dict(comp))
    model = program_to_onnx(program)
    assert op_types(model) == ["Transpose", "GRU", "Squeeze", "Transpose"]
    (gru,) = [n for n in model.graph.node if n.op_type == "GRU"]
    assert list(gru.input)[1:] == ["GRU.W", "GRU.R"]  # no B, no sequence_lens, no initial_h
    x = np.random.default_rng(2).normal(size=(7, 6, 3))
    assert_matches_reference(program, model, {"GRU__input": x}, "float32", sequence=True)


def test_torch_gru_then_linear_names_and_values():
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = torch.nn.GRU(3, 4, batch_first=True)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            y, _ = self.gru(x)
            return self.fc(y)

    torch.manual_seed(1)
    net = Net().double()
    program = module_to_program(net, torch.randn(2, 5, 3, dtype=torch.float64))
    model = program_to_onnx(program)
    assert op_types(model) == ["Transpose", "GRU", "Squeeze", "Transpose", "MatMul", "Add"]
    assert set(initializers(model)) == {"gru.W", "gru.R", "gru.B", "axes", "fc_weight.matrix", "fc_bias.matrix"}
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch, 6, 3)).astype(np.float32)
        with torch.no_grad():
            want = net(torch.as_tensor(x, dtype=torch.float64)).numpy()
        got = ort_outputs(model, {"x": x}, "float32")["output"]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert_matches_reference(program, model, {"x": x}, "float32", sequence=True)


# --------------------------------------------------------------------------- stacked sums (input-port combinations)

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_psyneulink_combination_of_two_afferents_is_one_add(dtype):
    program = load_program(REPO / "tests" / "data" / "psyneulink" / "multi_sender.json")
    assert [op.fn for op in program.ops if op.fn in ("AsArray", "ReduceSum", "Getitem")] == [
        "AsArray", "ReduceSum", "Getitem"]
    model = program_to_onnx(program, dtype=dtype)
    assert op_types(model) == ["MatMul", "MatMul", "Add", "Add", "Mul", "Sigmoid"]
    assert [op.fn for op in program.ops].count("AsArray") == 1  # the caller's Program is not rewritten
    for batch in (1, 7):
        rng = np.random.default_rng(batch)
        inputs = {k: rng.normal(size=(batch,) + tuple(program.inputs[k].shape)) for k in ("a", "b")}
        assert_matches_reference(program, model, inputs, dtype)


def stacked_sum(n: int, keepdims: bool = True, axis: int = 0, also_output: bool = False) -> Program:
    """x0 .. x{n-1} (each (2,) per trial) stacked, summed over `axis` (with `keepdims`, then item 0), then
    halved; `also_output`: the stacked value is an output too."""
    inputs = {f"x{i}": InputSpec(f"x{i}", f"x{i}", "in", (2,)) for i in range(n)}
    ops = [Op("c.stack", {"X": [TensorRef(f"x{i}.in") for i in range(n)], "axis": axis}, "c", "AsArray"),
           Op("c.sum", {"X": TensorRef("c.stack"), "axis": axis, "keepdims": keepdims}, "c", "ReduceSum")]
    total = "c.sum"
    if keepdims:
        ops.append(Op("c.pick", {"X": TensorRef("c.sum"), "index": 0}, "c", "Getitem"))
        total = "c.pick"
    ops.append(Op("c.out", {"A": TensorRef(total), "B": 0.5}, "c", "Mul"))
    outputs = {"c": "c.out", "s": total, **({"stack": "c.stack"} if also_output else {})}
    return Program("sum", ops, {}, inputs, outputs)


@pytest.mark.parametrize("n,keepdims,axis,also_output,rewritten", [
    (2, True, 0, False, True), (3, True, 0, False, True), (7, False, 0, False, True), (8, True, 0, False, False),
    (3, True, 0, True, False), (3, False, 1, False, False)])
def test_stacked_sum_as_adds_in_numpys_order(n, keepdims, axis, also_output, rewritten):
    program = stacked_sum(n, keepdims, axis, also_output)
    model = program_to_onnx(program, dtype="float64")
    types = op_types(model)
    assert ("ReduceSum" not in types and types.count("Add") == n - 1) == rewritten
    # values whose sum depends on the order of the additions: 1e16 + 1 - 1e16 + 1 ...
    vals = [1e16, 1.0, -1e16, 1.0, 3.0, -1e16, 0.5, 1e16]
    for batch in (1, 7):
        rng = np.random.default_rng(batch)
        inputs = {f"x{i}": vals[i] + 0.0 * rng.normal(size=(batch, 2)) if i < len(vals) else rng.normal(size=(batch, 2))
                  for i in range(n)}
        if axis == 1:
            inputs = {k: rng.normal(size=(batch, 2)) for k in inputs}
        want = run_program(program, inputs)
        got = ort_outputs(model, inputs, "float64")
        if rewritten:  # the Adds are numpy's order exactly
            assert np.array_equal(got["s"], want["s"]) and np.array_equal(got["c"], want["c"])
        assert_matches_reference(program, model, inputs, "float64")


def test_reimported_export_keeps_every_weight_learnable():
    """onnx_to_mdf on the exported XOR: the two weight matrices and the two bias vectors are learnable parameters
    holding the exported values, and the imported model computes the same outputs."""
    from mdfbridge.importers.onnx import onnx_to_mdf

    comp = make_xor(seed=9)
    model = program_to_onnx(comp.program(), dtype="float64")
    back = lower(onnx_to_mdf(model))
    learnable = {k: p.value for k, p in back.params.items() if p.learnable}
    assert len(learnable) == 4
    exported = initializers(model)
    for name, value in exported.items():
        match = [k for k in learnable if k.endswith(name.replace(".", "_"))]
        assert len(match) == 1, name
        np.testing.assert_array_equal(learnable[match[0]], value)
    x = np.random.default_rng(4).normal(size=(7, 2))
    np.testing.assert_allclose(run_program(back, {"input": x})["output"], run_program(comp.program(), {"input": x})
                               ["output"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_psyneulink_transfer_functions_fold_constant_subexpressions(dtype):
    """PsyNeuLink's transfer functions (the Gaussian's sqrt(2 pi sd) of a constant sd is folded: no Sqrt node),
    equal to the reference."""
    program = load_program(REPO / "tests" / "data" / "psyneulink" / "transfer_functions.json")
    assert any(op.fn == "gaussian" for op in program.ops)
    model = program_to_onnx(program, dtype=dtype)
    assert "Sqrt" not in op_types(model) and "Identity" not in op_types(model)
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch,) + tuple(program.inputs["inp"].shape))
        assert_matches_reference(program, model, {"inp": x}, dtype)
