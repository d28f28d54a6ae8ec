"""Elementwise activations and shape/indexing ops of CNN, RNN and transformer graphs (issue 13): PRelu, Selu, Elu,
LeakyRelu, HardSigmoid, Softplus, LogSoftmax (opset < 13 and 13), Erf, Where (of a comparison), Gather (an
embedding of int64 token ids), GatherElements, Slice, Split, Tile, Expand, Reshape allowzero, ReduceMean/Sum/Max
(attribute and input axes), MatMul with batch dims and batched-matmul Einsum.

Oracles: onnxruntime on the one-node ONNX model (1e-5, float32 inputs) for ONNX -> MDF -> save_mdf ->
load_program on the numpy reference and torch backends, and for the program_to_onnx re-export on onnxruntime;
torch itself for torch.onnx.export's models of nn modules and tensor expressions (legacy exports at opsets 11
and 17, and dynamo's); torch's own SGD for training an imported Embedding + Linear model (1e-10); onnx's stored
outputs for its opset-6 PReLU models (which onnxruntime cannot run). Inputs are random (seeded) and fixed
(hand-written edge values).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mdfbridge.api import load_program, save_mdf
from mdfbridge.backends import get_backend
from mdfbridge.errors import DataError, UnsupportedError
from mdfbridge.exporters.onnx import program_to_onnx
from mdfbridge.importers.onnx import onnx_to_mdf
from mdfbridge.importers.reference import run_program
from mdfbridge.learning import learn
from mdfbridge.lowering import lower
from mdfbridge.ops import REGISTRY

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
TOL = 1e-5
BIG = np.iinfo(np.int64).max


# --------------------------------------------------------------------------- one-node ONNX models


def model_of(nodes: Sequence[Any], inputs: Dict[str, Tuple[int, Sequence[Any]]], outputs: Sequence[str],
             inits: Optional[Dict[str, np.ndarray]] = None, opset: int = 17) -> Any:
    """A checked model: inputs name -> (elem type, dims), outputs by name (shapes inferred)."""
    graph = helper.make_graph(list(nodes), "g",
                              [helper.make_tensor_value_info(k, t, list(d)) for k, (t, d) in inputs.items()],
                              [helper.make_tensor_value_info(o, FLOAT, None) for o in outputs],
                              initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model)  # (the outputs' shapes)
    onnx.checker.check_model(model)
    return model


def ort_run(model: Any, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def check(model: Any, feeds: Dict[str, np.ndarray], tmp_path: Any, batch_axis: bool = True,
          tol: float = TOL) -> Any:
    """ONNX -> MDF file -> Program on numpy and torch, and its ONNX re-export, all equal to onnxruntime."""
    want = ort_run(model, feeds)
    path = tmp_path / "m.json"
    save_mdf(onnx_to_mdf(model, batch_axis=batch_axis), path)
    prog = load_program(path)
    lead = (lambda a: a) if batch_axis else (lambda a: a[None])
    back = (lambda a: a) if batch_axis else (lambda a: a[0])
    ins = {k: lead(v.astype(np.float64)) for k, v in feeds.items()}
    got_np = run_program(prog, ins)
    got_t = get_backend("torch").prepare(prog).run(ins)
    exported = program_to_onnx(prog)
    onnx.checker.check_model(exported, full_check=True)
    got_x = ort_run(exported, {k: v.astype(np.float32) for k, v in feeds.items()})  # (the original's shapes)
    for name, w in want.items():
        for what, got in (("numpy", got_np), ("torch", got_t), ("re-export", got_x)):
            g = np.asarray(got[name], dtype=np.float64)
            g = g if what == "re-export" else back(g)
            assert g.shape == w.shape, (what, name, g.shape, w.shape)
            np.testing.assert_allclose(g, w, rtol=0, atol=tol, err_msg=f"{what} {name}")
    return prog


def node(op: str, ins: Sequence[str], outs: Sequence[str] = ("y",), **attrs: Any) -> Any:
    return helper.make_node(op, list(ins), list(outs), name=f"{op.lower()}_node", **attrs)


RNG = np.random.default_rng(0)


def rand(*shape: int, lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


FIXED = np.array([[-3.0, -1.0, -0.0, 0.0], [0.5, 1.0, 2.0, 30.0], [-30.0, -1e-3, 1e-3, 4.0]], np.float32)


# --------------------------------------------------------------------------- elementwise activations

ACTIVATIONS = [
    ("Selu", {}), ("Selu", {"alpha": 1.5, "gamma": 0.75}), ("Elu", {}), ("Elu", {"alpha": 0.3}),
    ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.2}), ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
    ("Softplus", {}), ("Erf", {}),
]


@pytest.mark.parametrize("op,attrs", ACTIVATIONS, ids=[f"{o}-{sorted(a)}" for o, a in ACTIVATIONS])
@pytest.mark.parametrize("data", ["random", "fixed"])
def test_activation_matches_onnxruntime(op, attrs, data, tmp_path):
    x = rand(5, 3, 4) if data == "random" else np.stack([FIXED, -FIXED])
    model = model_of([node(op, ["x"], **attrs)], {"x": (FLOAT, ["N", 3, 4])}, ["y"])
    check(model, {"x": x}, tmp_path)


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,), (5,), ()])
def test_prelu_slope_broadcasts_and_is_learnable(slope_shape, tmp_path):
    slope = RNG.uniform(0.05, 0.5, size=slope_shape).astype(np.float32)
    model = model_of([node("PRelu", ["x", "slope"])], {"x": (FLOAT, ["N", 3, 4, 5])}, ["y"], {"slope": slope})
    prog = check(model, {"x": rand(4, 3, 4, 5)}, tmp_path)
    (learnable,) = prog.learnable_params().values()
    assert np.array_equal(np.asarray(learnable.value).reshape(-1), slope.reshape(-1).astype(np.float64))


@pytest.mark.parametrize("opset,axis,shape", [(11, 1, (4, 3, 5)), (11, 2, (4, 3, 5)), (11, -2, (4, 3, 5)),
                                              (9, 1, (4, 6)), (13, 1, (4, 3, 5)), (13, -1, (4, 3, 5)),
                                              (17, 2, (4, 3, 5))])
def test_log_softmax_opset_forms(opset, axis, shape, tmp_path):
    model = model_of([node("LogSoftmax", ["x"], axis=axis)], {"x": (FLOAT, ["N", *shape[1:]])}, ["y"], opset=opset)
    check(model, {"x": rand(*shape, lo=-5, hi=5)}, tmp_path)


def test_log_softmax_before_13_over_the_batch_axis_is_refused():
    model = model_of([node("LogSoftmax", ["x"], axis=0)], {"x": (FLOAT, ["N", 3])}, ["y"], opset=11)
    with pytest.raises(UnsupportedError, match="logsoftmax_node.*batch axis") as err:
        onnx_to_mdf(model)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("cmp", ["Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual"])
def test_where_of_a_comparison(cmp, tmp_path):
    nodes = [node(cmp, ["x", "t"], ["c"]), node("Where", ["c", "x", "z"])]
    x = np.round(rand(6, 4), 1)
    model = model_of(nodes, {"x": (FLOAT, ["N", 4]), "z": (FLOAT, ["N", 4])}, ["y"],
                     {"t": np.array([0.0, 0.5, -0.5, 1.0], np.float32)})
    check(model, {"x": x, "z": rand(6, 4)}, tmp_path)


def test_where_with_a_constant_branch(tmp_path):
    nodes = [node("Greater", ["x", "t"], ["c"]), node("Where", ["c", "x", "k"])]
    model = model_of(nodes, {"x": (FLOAT, ["N", 3])}, ["y"],
                     {"t": np.array(0.1, np.float32), "k": np.array([1.0, 2.0, 3.0], np.float32)})
    check(model, {"x": rand(5, 3)}, tmp_path)


# --------------------------------------------------------------------------- Gather, GatherElements

GATHERS = [(1, np.array([2, 0, 2], np.int64)), (1, np.array([[0, 1], [-1, -3]], np.int64)),
           (2, np.array(1, np.int64)), (-1, np.array([3, 3, 0], np.int64)), (2, np.array([-4], np.int64))]


@pytest.mark.parametrize("axis,indices", GATHERS, ids=[f"axis{a}-{i.tolist()}" for a, i in GATHERS])
def test_gather_of_constant_indices(axis, indices, tmp_path):
    model = model_of([node("Gather", ["x", "i"], axis=axis)], {"x": (FLOAT, ["N", 3, 4])}, ["y"], {"i": indices})
    check(model, {"x": rand(5, 3, 4)}, tmp_path)


@pytest.mark.parametrize("ids_shape", [(6,), (6, 5), (6, 2, 3)])
def test_gather_embedding_of_int64_ids(ids_shape, tmp_path):
    table = rand(10, 4)
    model = model_of([node("Gather", ["table", "ids"])], {"ids": (INT64, ["N", *ids_shape[1:]])}, ["y"],
                     {"table": table})
    ids = RNG.integers(-10, 10, size=ids_shape).astype(np.int64)
    prog = check(model, {"ids": ids}, tmp_path)
    (p,) = prog.learnable_params().values()
    assert np.shape(p.value) == (10, 4)
    doc = onnx_to_mdf(model)
    graph = next(iter(next(iter(doc.values()))["graphs"].values()))
    assert graph["nodes"]["ids"]["metadata"]["mdfbridge"]["onnx_elem_type"] == "int64"


def test_gather_refusals_name_the_node():
    x = {"x": (FLOAT, ["N", 3])}
    for nodes, inputs, inits, match in (
            ([node("Gather", ["x", "i"], axis=0)], x, {"i": np.array([0], np.int64)}, "batch axis"),
            ([node("Gather", ["t", "ids"], axis=1)], {"ids": (INT64, ["N", 2])}, {"t": rand(3, 4)}, "axis 1"),
            ([node("Gather", ["x", "ids"], axis=1)], {"x": (FLOAT, ["N", 3]), "ids": (INT64, ["N"])}, {},
             "both computed")):
        with pytest.raises(UnsupportedError, match=match) as err:
            onnx_to_mdf(model_of(nodes, inputs, ["y"], inits))
        assert "gather_node" in str(err.value) and "\n" not in str(err.value)


def test_gather_indices_out_of_range_and_fractional_are_data_errors():
    g = REGISTRY["Gather"]
    for impl in (g.numpy, lambda **kw: g.torch(**{k: torch.tensor(v) for k, v in kw.items() if k != "axis"},
                                               axis=kw["axis"])):
        with pytest.raises(DataError, match="out of range"):
            impl(data=np.ones((3, 2)), indices=np.array([3.0]), axis=0)
        with pytest.raises(DataError, match="whole"):
            impl(data=np.ones((3, 2)), indices=np.array([0.5]), axis=0)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_of_constant_indices_one_trial(axis, tmp_path):
    idx = RNG.integers(-3, 3, size=(2, 3) if axis == 0 else (3, 2) if axis == 1 else (3, 3)).astype(np.int64)
    model = model_of([node("GatherElements", ["x", "i"], axis=axis)], {"x": (FLOAT, [3, 3])}, ["y"], {"i": idx})
    check(model, {"x": rand(3, 3)}, tmp_path, batch_axis=False)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_gather_elements_of_int64_index_inputs(axis, tmp_path):
    model = model_of([node("GatherElements", ["x", "i"], axis=axis)],
                     {"x": (FLOAT, ["N", 3, 4]), "i": (INT64, ["N", 3, 4])}, ["y"])
    n = (3, 4)[axis if axis < 0 else axis - 1] if axis != -1 else 4
    check(model, {"x": rand(5, 3, 4), "i": RNG.integers(-n, n, size=(5, 3, 4)).astype(np.int64)}, tmp_path)


def test_gather_elements_of_a_constant_with_batch_axis_is_refused():
    model = model_of([node("GatherElements", ["t", "i"], axis=0)], {"i": (INT64, ["N", 4])}, ["y"],
                     {"t": rand(3, 4)})
    with pytest.raises(UnsupportedError, match="gatherelements_node.*both data and indices") as err:
        onnx_to_mdf(model)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- Slice, Split

SLICES = [  # (starts, ends, axes, steps): per-trial slicing of x (N, 5, 6)
    ([1], [3], [1], None), ([-3], [BIG], [2], None), ([0, 1], [BIG, -1], None, None),
    ([4], [-BIG], [2], [-2]), ([-1, 0], [-6, 10], [1, 2], [-1, 2]), ([2], [100], [-1], [1]),
    ([0, 0], [BIG, 2], [0, 1], [1, 1]), ([5], [0], [2], [-1]), ([-BIG], [BIG], [1], [1]),
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES, ids=[str(i) for i in range(len(SLICES))])
def test_slice_inputs_form(starts, ends, axes, steps, tmp_path):
    inits = {"s": np.array(starts, np.int64), "e": np.array(ends, np.int64)}
    ins = ["x", "s", "e"]
    if axes is not None or steps is not None:
        inits["a"] = np.array(axes if axes is not None else list(range(len(starts))), np.int64)
        ins.append("a")
    if steps is not None:
        inits["st"] = np.array(steps, np.int64)
        ins.append("st")
    model = model_of([node("Slice", ins)], {"x": (FLOAT, ["N", 5, 6])}, ["y"], inits, opset=13)
    check(model, {"x": rand(4, 5, 6)}, tmp_path)


def test_slice_attribute_form_opset_9(tmp_path):
    model = model_of([node("Slice", ["x"], starts=[1, -2], ends=[4, 1000], axes=[1, 2])],
                     {"x": (FLOAT, ["N", 5, 6])}, ["y"], opset=9)
    check(model, {"x": rand(3, 5, 6)}, tmp_path)


def test_slice_of_the_batch_axis_is_refused():
    model = model_of([node("Slice", ["x", "s", "e", "a"])], {"x": (FLOAT, ["N", 3])}, ["y"],
                     {"s": np.array([1], np.int64), "e": np.array([3], np.int64), "a": np.array([0], np.int64)})
    with pytest.raises(UnsupportedError, match="slice_node.*batch axis") as err:
        onnx_to_mdf(model)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("form", ["attr11", "input13", "equal13", "num_outputs18", "negaxis13"])
def test_split_forms(form, tmp_path):
    outs = ["y0", "y1", "y2"]
    inits: Dict[str, np.ndarray] = {}
    if form == "attr11":
        nd, opset = node("Split", ["x"], outs, axis=2, split=[1, 2, 3]), 11
    elif form == "input13":
        inits["sp"] = np.array([3, 1, 2], np.int64)
        nd, opset = node("Split", ["x", "sp"], outs, axis=2), 13
    elif form == "equal13":
        nd, opset = node("Split", ["x"], outs, axis=2), 13
    elif form == "num_outputs18":
        nd, opset = node("Split", ["x"], outs, axis=1, num_outputs=3), 18
    else:
        inits["sp"] = np.array([2, 2, 2], np.int64)
        nd, opset = node("Split", ["x", "sp"], outs, axis=-1), 13
    model = model_of([nd], {"x": (FLOAT, ["N", 5, 6])}, outs, inits, opset=opset)
    check(model, {"x": rand(3, 5, 6)}, tmp_path)


# --------------------------------------------------------------------------- Tile, Expand, Reshape allowzero


@pytest.mark.parametrize("reps", [[1, 2, 3], [1, 1, 1], [1, 3, 1]])
def test_tile(reps, tmp_path):
    model = model_of([node("Tile", ["x", "r"])], {"x": (FLOAT, ["N", 2, 3])}, ["y"], {"r": np.array(reps, np.int64)})
    check(model, {"x": rand(4, 2, 3)}, tmp_path)


def test_tile_of_the_batch_axis_is_refused():
    model = model_of([node("Tile", ["x", "r"])], {"x": (FLOAT, ["N", 2])}, ["y"], {"r": np.array([2, 1], np.int64)})
    with pytest.raises(UnsupportedError, match="tile_node"):
        onnx_to_mdf(model)


@pytest.mark.parametrize("xs,shape", [((3, 1), [1, 4]), ((3, 1), [3, 4]), ((1, 4), [1, 5, 4]), ((1,), [6]),
                                      ((2, 1, 3), [2, 4, 1]), ((3,), [2, 1, 3]), ((1, 3), [4, 1, 2, 1])])
def test_expand(xs, shape, tmp_path):
    model = model_of([node("Expand", ["x", "s"])], {"x": (FLOAT, ["N", *xs])}, ["y"],
                     {"s": np.array(shape, np.int64)})
    if len(shape) > len(xs) + 1:  # a longer shape puts its own axes before the batch axis
        with pytest.raises(UnsupportedError, match="expand_node.*batch axis"):
            onnx_to_mdf(model)
        fixed = model_of([node("Expand", ["x", "s"])], {"x": (FLOAT, [2, *xs])}, ["y"],
                         {"s": np.array(shape, np.int64)})
        check(fixed, {"x": rand(2, *xs)}, tmp_path, batch_axis=False)
        return
    check(model, {"x": rand(5, *xs)}, tmp_path)


@pytest.mark.parametrize("shape,allowzero", [([0, 12], 0), ([-1, 4, 3], 1), ([-1, 0, 2, 2], 0), ([-1, 2, 6], 1)])
def test_reshape_allowzero(shape, allowzero, tmp_path):
    model = model_of([node("Reshape", ["x", "s"], allowzero=allowzero)], {"x": (FLOAT, ["N", 3, 4])}, ["y"],
                     {"s": np.array(shape, np.int64)}, opset=14)
    check(model, {"x": rand(5, 3, 4)}, tmp_path)


def test_reshape_that_folds_the_batch_axis_is_refused_naming_the_node():
    model = model_of([node("Reshape", ["x", "s"])], {"x": (FLOAT, ["N", 3, 4])}, ["y"],
                     {"s": np.array([-1, 0, 2], np.int64)}, opset=14)  # (N, 3, 4) -> (2N, 3, 2)
    with pytest.raises(UnsupportedError, match="reshape_node.*batch axis") as err:
        onnx_to_mdf(model)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- reductions

REDUCTIONS = [  # (op, opset, axes, keepdims, noop_with_empty_axes)
    ("ReduceMean", 13, [1], 0, None), ("ReduceMean", 13, [-1, 1], 1, None), ("ReduceMean", 18, [2], 1, None),
    ("ReduceMean", 18, [-1], 0, None), ("ReduceSum", 11, [1, 2], 0, None), ("ReduceSum", 13, [2], 1, None),
    ("ReduceSum", 13, [], 1, 1), ("ReduceMax", 13, [1], 0, None), ("ReduceMax", 18, [1, 2], 1, None),
    ("ReduceMax", 18, None, 1, 1),
]


@pytest.mark.parametrize("op,opset,axes,keepdims,noop", REDUCTIONS, ids=[f"{r[0]}-{r[1]}-{r[2]}-{r[3]}-{r[4]}"
                                                                          for r in REDUCTIONS])
def test_reductions(op, opset, axes, keepdims, noop, tmp_path):
    attrs: Dict[str, Any] = {"keepdims": keepdims}
    if noop is not None:
        attrs["noop_with_empty_axes"] = noop
    axes_input = opset >= (13 if op == "ReduceSum" else 18)
    inits: Dict[str, np.ndarray] = {}
    ins = ["x"]
    if axes is not None and axes_input:
        inits["ax"] = np.array(axes, np.int64)
        ins.append("ax")
    elif axes is not None and axes:
        attrs["axes"] = axes
    model = model_of([node(op, ins, **attrs)], {"x": (FLOAT, ["N", 3, 4])}, ["y"], inits, opset=opset)
    check(model, {"x": rand(5, 3, 4)}, tmp_path)


def test_reduction_over_every_axis_with_batch_axis_is_refused():
    model = model_of([node("ReduceMean", ["x"], keepdims=0)], {"x": (FLOAT, ["N", 3])}, ["y"], opset=18)
    with pytest.raises(UnsupportedError, match="reducemean_node.*batch axis"):
        onnx_to_mdf(model)


# --------------------------------------------------------------------------- MatMul with batch dims, Einsum


@pytest.mark.parametrize("a,b,b_const", [((2, 3, 4), (4, 5), True), ((2, 2, 3, 4), (4, 5), True),
                                         ((2, 3, 4), (2, 4, 5), False), ((2, 2, 3, 4), (2, 2, 4, 5), False),
                                         ((2, 3, 3, 4), (3, 4, 2), True)])
def test_matmul_with_batch_dims(a, b, b_const, tmp_path):
    if b_const:
        model = model_of([node("MatMul", ["x", "w"])], {"x": (FLOAT, ["N", *a[1:]])}, ["y"], {"w": rand(*b)})
        feeds = {"x": rand(*a)}
    else:
        model = model_of([node("MatMul", ["x", "z"])], {"x": (FLOAT, ["N", *a[1:]]), "z": (FLOAT, ["N", *b[1:]])},
                         ["y"])
        feeds = {"x": rand(*a), "z": rand(*b)}
    check(model, feeds, tmp_path)


EINSUMS = [("bij,bjk->bik", (3, 2, 4), (3, 4, 5), False), ("bhqd,bhkd->bhqk", (2, 2, 3, 4), (2, 2, 5, 4), False),
           ("bij,jk->bik", (3, 2, 4), (4, 5), True), ("bi,bi->b", (4, 3), (4, 3), False),
           ("bij->bji", (3, 2, 4), None, False), ("...ij,...jk->...ik", (3, 2, 4), (3, 4, 5), False),
           ("...ij,...jk", (3, 2, 2, 4), (3, 2, 4, 5), False), ("b i j , j k -> b i k", (3, 2, 4), (4, 5), True)]


@pytest.mark.parametrize("eq,a,b,b_const", EINSUMS, ids=[e[0] for e in EINSUMS])
def test_einsum(eq, a, b, b_const, tmp_path):
    inputs = {"x": (FLOAT, ["N", *a[1:]])}
    feeds = {"x": rand(*a)}
    inits = {}
    ins = ["x"]
    if b is not None:
        ins.append("z")
        if b_const:
            inits["z"] = rand(*b)
        else:
            inputs["z"] = (FLOAT, ["N", *b[1:]])
            feeds["z"] = rand(*b)
    prog = check(model_of([node("Einsum", ins, equation=eq)], inputs, ["y"], inits, opset=12), feeds, tmp_path)
    assert [p for p in prog.learnable_params()] == ([next(iter(prog.learnable_params()))] if b_const else [])


@pytest.mark.parametrize("eq,ranks,want", [("...ii->...i", [3], "aii->ai"), ("i,i", [1, 1], "i,i->"),
                                           ("->", [0], "->"), ("ba", [2], "ba->ab"),
                                           ("...j,j...", [3, 2], "abj,jb->ab")])
def test_explicit_equation_follows_numpy(eq, ranks, want):
    from mdfbridge.ops.indexing import explicit_equation

    got = explicit_equation(eq, ranks)
    assert got == want
    ops = [RNG.normal(size=(2,) * r) for r in ranks]
    np.testing.assert_allclose(np.einsum(got, *ops), np.einsum(eq, *ops), rtol=0, atol=1e-12)


def test_einsum_mixing_the_batch_index_is_refused():
    model = model_of([node("Einsum", ["x", "z"], equation="bij,bjk->ijk")],
                     {"x": (FLOAT, ["N", 2, 3]), "z": (FLOAT, ["N", 3, 4])}, ["y"], opset=12)
    with pytest.raises(UnsupportedError, match="einsum_node.*batch index"):
        onnx_to_mdf(model)


# --------------------------------------------------------------------------- torch modules and expressions


class Lambda(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Any) -> Any:
        return self.fn(x)


class Lambda2(Lambda):
    def forward(self, x: Any, z: Any) -> Any:  # type: ignore[override]
        return self.fn(x, z)


def _torch_onnx(module: Any, args: Tuple[Any, ...], names: List[str], outs: List[str], opset: int,
                dynamo: bool = False) -> bytes:
    f = io.BytesIO()
    kw: Dict[str, Any] = ({"dynamic_shapes": tuple({0: torch.export.Dim("batch")} for _ in args),
                           "external_data": False} if dynamo else
                          {"dynamic_axes": {n: {0: "batch"} for n in names + outs}, "opset_version": opset})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, f, input_names=names, output_names=outs, dynamo=dynamo, **kw)
    return f.getvalue()


def _modules() -> Dict[str, Tuple[Any, Any]]:
    """name -> (module, a function of the batch size giving its inputs)."""
    torch.manual_seed(0)
    x34 = lambda n: (torch.randn(n, 3, 4),)  # noqa: E731
    prelu = nn.PReLU(3)
    with torch.no_grad():
        prelu.weight.uniform_(0.1, 0.5)
    return {
        "PReLU": (nn.Sequential(Lambda(lambda x: x.unsqueeze(-1)), prelu), x34),
        "PReLU1": (nn.PReLU(), x34), "SELU": (nn.SELU(), x34), "ELU": (nn.ELU(0.7), x34),
        "LeakyReLU": (nn.LeakyReLU(0.2), x34), "Hardsigmoid": (nn.Hardsigmoid(), x34),
        "Softplus": (nn.Softplus(), x34), "LogSoftmax": (nn.LogSoftmax(dim=1), x34),
        "LogSoftmax-1": (nn.LogSoftmax(dim=-1), x34),
        "Embedding": (nn.Embedding(11, 4), lambda n: (torch.randint(0, 11, (n, 5)),)),
        "slice": (Lambda(lambda x: x[:, 1:3]), x34), "slice2": (Lambda(lambda x: x[:, :, -3:-1]), x34),
        "split": (Lambda(lambda x: torch.split(x, [1, 3], dim=2)[1] * 2
                         + torch.split(x, 2, dim=1)[0].sum(dim=(1, 2), keepdim=True)), x34),
        "repeat": (Lambda(lambda x: x.repeat(1, 2, 3)), x34),
        "expand": (Lambda(lambda x: x[:, :, :1].expand(-1, 3, 5)), x34),
        "mean": (Lambda(lambda x: x.mean(dim=2)), x34), "mean_keep": (Lambda(lambda x: x.mean(-1, keepdim=True)), x34),
        "sum": (Lambda(lambda x: x.sum(dim=(1, 2))), x34), "amax": (Lambda(lambda x: x.amax(dim=1)), x34),
        "bmm": (Lambda2(lambda x, z: torch.bmm(x, z)), lambda n: (torch.randn(n, 3, 4), torch.randn(n, 4, 2))),
        "einsum": (Lambda2(lambda x, z: torch.einsum("bhqd,bhkd->bhqk", x, z)),
                   lambda n: (torch.randn(n, 2, 3, 4), torch.randn(n, 2, 5, 4))),
        "where": (Lambda(lambda x: torch.where(x > 0.1, x, x * 0.5)), x34),
        "erf": (Lambda(lambda x: torch.erf(x)), x34),
    }


MODULES = _modules()


@pytest.mark.parametrize("export", ["legacy-11", "legacy-17", "dynamo"])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_torch_onnx_exports_import_and_match_torch(name, export):
    module, make = MODULES[name]
    module = module.eval()
    args = make(2)
    names = [f"x{i}" for i in range(len(args))]
    opset = 17 if export == "dynamo" else int(export.split("-")[1])
    data = _torch_onnx(module, args, names, ["y"], max(opset, 12) if name == "einsum" else opset,
                       dynamo=export == "dynamo")
    prog = lower(onnx_to_mdf(data))
    args = make(5)
    with torch.no_grad():
        want = module(*args).double().numpy()
    feeds = {k: a.double().numpy() for k, a in zip(names, args)}
    for got in (run_program(prog, feeds)["y"], get_backend("torch").prepare(prog).run(feeds)["y"]):
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=TOL)
    if name.startswith("PReLU") or name == "Embedding":
        weight = next(iter(module.parameters())).detach().double().numpy().reshape(-1)
        assert any(np.array_equal(np.asarray(p.value).reshape(-1), weight.astype(np.float32).astype(np.float64))
                   for p in prog.learnable_params().values())


# --------------------------------------------------------------------------- training an embedding


class EmbedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.emb = nn.Embedding(7, 3)
        self.lin = nn.Linear(3, 2)

    def forward(self, ids: Any) -> Any:
        return self.lin(self.emb(ids)).mean(dim=1)


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_embedding_linear_model_from_onnx_trains_like_torch(dynamo):
    net = EmbedNet().double()
    data = _torch_onnx(net.float(), (torch.randint(0, 7, (2, 4)),), ["ids"], ["y"], 17, dynamo=dynamo)
    net = net.double()
    doc = onnx_to_mdf(data)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 5, size=(6, 4))  # rows 5 and 6 of the table are never looked up
    target = rng.normal(size=(6, 2))
    before = {k: np.asarray(p.value).copy() for k, p in lower(doc).learnable_params().items()}
    result = learn(doc, {"ids": ids.astype(np.float64)}, {"y": target}, epochs=3, learning_rate=0.1,
                   minibatch_size=6, backend="torch")
    after = {k: np.asarray(p.value) for k, p in result.program.learnable_params().items()}
    (table_key,) = [k for k, v in before.items() if v.shape == (7, 3)]
    changed = np.abs(after[table_key] - before[table_key]).max(axis=1)
    assert np.all(changed[:5] > 0) and np.all(changed[5:] == 0)
    # torch's own SGD on the same (float32-rounded) weights, full batch, MSE
    ref = EmbedNet().double()
    with torch.no_grad():
        ref.emb.weight.copy_(torch.tensor(before[table_key]))
        (w_key,) = [k for k, v in before.items() if v.shape in ((3, 2), (2, 3))]
        w = before[w_key]
        ref.lin.weight.copy_(torch.tensor(w.T if w.shape == (3, 2) else w))
        (b_key,) = [k for k, v in before.items() if v.shape == (2,)]
        ref.lin.bias.copy_(torch.tensor(before[b_key]))
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(ref(torch.tensor(ids)), torch.tensor(target))
        loss.backward()
        opt.step()
    np.testing.assert_allclose(after[table_key], ref.emb.weight.detach().numpy(), rtol=0, atol=1e-10)
    assert result.losses[-1] < result.losses[0]


# --------------------------------------------------------------------------- the LLVM backend


def test_llvm_refuses_the_indexing_ops_naming_them(tmp_path):
    pytest.importorskip("llvmlite")
    model = model_of([node("Gather", ["x", "i"], axis=1)], {"x": (FLOAT, ["N", 3])}, ["y"],
                     {"i": np.array([2, 0], np.int64)})
    prog = lower(onnx_to_mdf(model))
    with pytest.raises(UnsupportedError, match="Gather"):
        get_backend("llvm").prepare(prog).run({"x": np.ones((2, 3))})


# --------------------------------------------------------------------------- float64 exports

FLOAT64_CASES = {
    "Elu": ([node("Elu", ["x"], alpha=0.3)], {}), "Selu": ([node("Selu", ["x"])], {}),
    "LeakyRelu": ([node("LeakyRelu", ["x"], alpha=0.1)], {}), "HardSigmoid": ([node("HardSigmoid", ["x"])], {}),
    "PRelu": ([node("PRelu", ["x", "s"])], {"s": np.array([0.1, 0.2, 0.3, 0.4], np.float32)}),
    "LogSoftmax": ([node("LogSoftmax", ["x"], axis=1)], {}),
    "Gather": ([node("Gather", ["x", "i"], axis=2)], {"i": np.array([[3, 0], [1, -1]], np.int64)}),
    "Slice": ([node("Slice", ["x", "s", "e", "a", "st"])], {"s": np.array([2, -1], np.int64),
                                                           "e": np.array([0, -BIG], np.int64),
                                                           "a": np.array([1, 2], np.int64),
                                                           "st": np.array([-1, -2], np.int64)}),
    "Einsum": ([node("Einsum", ["x", "w"], equation="bij,jk->bik")], {"w": rand(4, 2)}),
}


@pytest.mark.parametrize("name", sorted(FLOAT64_CASES))
def test_float64_exports_run_on_onnxruntime_like_the_numpy_reference(name):
    nodes, inits = FLOAT64_CASES[name]
    model = model_of(nodes, {"x": (FLOAT, ["N", 3, 4])}, ["y"], inits, opset=17)
    prog = lower(onnx_to_mdf(model))
    x = RNG.normal(size=(5, 3, 4))
    want = run_program(prog, {"x": x})["y"]
    exported = program_to_onnx(prog, dtype="float64")
    onnx.checker.check_model(exported, full_check=True)
    np.testing.assert_allclose(ort_run(exported, {"x": x})["y"], want, rtol=0, atol=1e-12)
    # float32 exports write the ONNX op itself where it has one
    types = {n.op_type for n in program_to_onnx(prog).graph.node}
    assert nodes[0].op_type in types, types


PRELU_6 = ["test_PReLU_1d", "test_PReLU_1d_multiparam", "test_PReLU_2d", "test_PReLU_2d_multiparam",
           "test_PReLU_3d", "test_PReLU_3d_multiparam"]


@pytest.mark.parametrize("case", PRELU_6)
def test_prelu_opset_6_slopes_are_per_channel(case):
    """torch's opset-6 exports of nn.PReLU(C) in onnx's test data (a slope of C values applies along axis 1;
    onnxruntime has no PRelu-6 kernel, so the oracle is the outputs stored beside the model)."""
    from pathlib import Path

    d = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted" / case
    if not d.exists():
        pytest.skip("onnx's test data is not installed")
    model = onnx.load(str(d / "model.onnx"))
    x = numpy_helper.to_array(onnx.load_tensor(str(d / "test_data_set_0" / "input_0.pb")))
    want = numpy_helper.to_array(onnx.load_tensor(str(d / "test_data_set_0" / "output_0.pb")))
    # batch_axis=False: the probe run at 3 trials would meet onnx's reference PRelu-6, which guesses the channel
    # axis as the one axis of size C and fails when the batch has that size too
    prog = lower(onnx_to_mdf(model, batch_axis=False))
    (name,) = prog.inputs
    (oname,) = prog.outputs
    for got in (run_program(prog, {name: x[None].astype(np.float64)})[oname],
                get_backend("torch").prepare(prog).run({name: x[None].astype(np.float64)})[oname]):
        np.testing.assert_allclose(np.asarray(got)[0], want, rtol=0, atol=TOL)
    # the re-export has the original's interface: its input and output names, one trial's shapes
    exported = ort_run(program_to_onnx(prog), {model.graph.input[0].name: x})[model.graph.output[0].name]
    np.testing.assert_allclose(exported, want, rtol=0, atol=TOL)
    assert len(prog.learnable_params()) == 1


def test_an_integer_input_read_as_a_constant_is_refused_naming_it():
    model = model_of([node("Expand", ["x", "shape"])], {"x": (FLOAT, ["N", 1]), "shape": (INT64, [2])}, ["y"])
    with pytest.raises(UnsupportedError, match="expand_node.*graph input 'shape' is input 1 of ONNX Expand") as err:
        onnx_to_mdf(model)
    assert "\n" not in str(err.value)


def test_attention_style_mask_of_comparisons_and_logic(tmp_path):
    """Where(Not(Or(x < lo, And(x > hi, z > 0))), x, -z): the masks transformer graphs build from comparisons."""
    nodes = [node("Less", ["x", "lo"], ["a"]), node("Greater", ["x", "hi"], ["b"]),
             helper.make_node("Greater", ["z", "zero"], ["c"], name="greater_z"),
             helper.make_node("And", ["b", "c"], ["d"], name="and_node"),
             helper.make_node("Or", ["a", "d"], ["e"], name="or_node"), helper.make_node("Not", ["e"], ["f"],
                                                                                         name="not_node"),
             helper.make_node("Neg", ["z"], ["nz"], name="neg_node"), node("Where", ["f", "x", "nz"])]
    model = model_of(nodes, {"x": (FLOAT, ["N", 5]), "z": (FLOAT, ["N", 5])}, ["y"],
                     {"lo": np.array(-0.5, np.float32), "hi": np.array([0.5], np.float32),
                      "zero": np.array(0.0, np.float32)})
    check(model, {"x": rand(6, 5), "z": rand(6, 5)}, tmp_path)


# --------------------------------------------------------------------------- torch.nn -> MDF directly


def _direct_modules() -> Dict[str, Any]:
    torch.manual_seed(1)
    prelu = nn.PReLU(3)
    with torch.no_grad():
        prelu.weight.uniform_(0.1, 0.5)
    return {"ELU": nn.ELU(0.7), "SELU": nn.SELU(), "Hardsigmoid": nn.Hardsigmoid(), "Softplus": nn.Softplus(),
            "PReLU": prelu, "PReLU1": nn.PReLU(), "LogSoftmax": nn.LogSoftmax(dim=1),
            "LogSoftmax-1": nn.LogSoftmax(dim=-1), "Embedding": nn.Embedding(9, 4),
            "F.elu": Lambda(lambda x: F.elu(x, 0.3)), "F.selu": Lambda(F.selu),
            "F.log_softmax": Lambda(lambda x: F.log_softmax(x, dim=2)),
            "Tensor.log_softmax": Lambda(lambda x: x.log_softmax(-2))}


DIRECT = _direct_modules()


@pytest.mark.parametrize("name", sorted(DIRECT))
def test_module_to_mdf_of_activation_layers_and_embedding(name):
    from mdfbridge.importers.pytorch import module_to_mdf, program_state_dict

    module = nn.Sequential(DIRECT[name]).double().eval()
    make = (lambda n: torch.randint(0, 9, (n, 6))) if name == "Embedding" else \
        (lambda n: torch.randn(n, 3, 4, dtype=torch.float64) * 3)
    doc = module_to_mdf(module, (make(2),))
    prog = lower(doc)
    (iname,), (oname,) = prog.inputs, prog.outputs
    x = make(7)
    with torch.no_grad():
        want = module(x).numpy()
    for got in (run_program(prog, {iname: x.double().numpy()})[oname],
                get_backend("torch").prepare(prog).run({iname: x.double().numpy()})[oname]):
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-12)
    module.load_state_dict(program_state_dict(doc), strict=True)  # the weights go back in torch's layout
    assert len(prog.learnable_params()) == len(list(module.parameters()))


def test_module_to_mdf_embedding_model_trains_like_torch():
    from mdfbridge.importers.pytorch import module_to_mdf, program_state_dict

    net = nn.Sequential(nn.Embedding(7, 3), nn.PReLU(), nn.Linear(3, 2)).double()
    doc = module_to_mdf(net, (torch.randint(0, 7, (2, 4)),))
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 7, size=(8, 4))
    target = rng.normal(size=(8, 4, 2))
    lr, mb = 0.1, 4
    result = learn(doc, {"input": ids.astype(np.float64)}, {"output": target}, epochs=1, learning_rate=lr,
                   minibatch_size=mb, optimizer_type="sgd", loss_spec="mse", backend="torch")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for i in range(0, len(ids), mb):
        opt.zero_grad()
        F.mse_loss(net(torch.tensor(ids[i:i + mb])), torch.tensor(target[i:i + mb])).backward()
        opt.step()
    trained = program_state_dict(result.program)
    for k, v in net.state_dict().items():
        assert not torch.equal(v, before[k]), k
        torch.testing.assert_close(trained[k], v, rtol=0, atol=1e-10)


@pytest.mark.parametrize("text,by_numpy", [
    ("x[::-1]", lambda x: x[::-1]), ("x[3:0:-2]", lambda x: x[3:0:-2]), ("x[:, ::-1]", lambda x: x[:, ::-1]),
    ("x[:, ::-2]", lambda x: x[:, ::-2]), ("x[-1:-5:-1, 1]", lambda x: x[-1:-5:-1, 1]),
    ("x[::-1, 0:2]", lambda x: x[::-1, 0:2]), ("x[2:2:-1]", lambda x: x[2:2:-1]),
    ("concatenate([x, x[::-1]], axis=-1)", lambda x: np.concatenate([x, x[::-1]], axis=-1))])
def test_negative_step_slices_agree_on_every_backend(text, by_numpy):
    """An MDF expression's negative-step slice (torch's slices step only forward): the torch backend and the ONNX
    export on onnxruntime equal the numpy reference, which equals numpy itself on each trial (exactly, float64)."""
    from mdfbridge.deploy import DeploymentSession
    from mdfbridge.importers.reference import run_program
    from mdfbridge.lowering import lower

    doc = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": {
        "input_ports": {"x": {"shape": [5, 3]}}, "functions": {"f": {"value": text}},
        "output_ports": {"y": {"value": "f"}}}}}}}}
    prog = lower(doc)
    x = np.random.default_rng(3).normal(size=(2, 5, 3))
    want = np.stack([by_numpy(t) for t in x])
    (out,) = prog.outputs
    np.testing.assert_array_equal(run_program(prog, {"x": x})[out], want)
    np.testing.assert_array_equal(np.asarray(get_backend("torch").prepare(prog).run({"x": x})[out]), want)
    (on_ort,) = DeploymentSession(prog, "cpu", dtype="float64").run({"n": x}).values()
    np.testing.assert_array_equal(on_ort, want)
