"""Hostile and broken ONNX models (issue 12): subgraphs capturing graph inputs are refused, not folded from probe
inputs; constant subgraphs still fold correctly (checked against onnxruntime); folding has a budget (Loop
iterations, output elements); external data stays inside the model's folder; broken files, future versions,
missing initializer data and empty models are one OnnxError; onnxruntime's exceptions are wrapped. The files come
from tests/data/hostile/onnx/make.py (the CLI corpus of the same area)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mdfbridge import cli, limits
from mdfbridge.errors import OnnxError, UnsupportedError
from mdfbridge.importers.onnx import load_onnx, onnx_to_mdf
from mdfbridge.importers.onnx_safety import captured_names, node_inputs, one_line, predicted_elements
from mdfbridge.lowering import lower

_spec = importlib.util.spec_from_file_location(
    "hostile_onnx_make", Path(__file__).parent / "data" / "hostile" / "onnx" / "make.py")
assert _spec and _spec.loader
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)

X = np.array([[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.5, 3.0]], np.float32)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_hostile")
    make.make(root)
    return root


def _mdf_run(doc, x=X):
    from mdfbridge.importers.reference import run_program

    prog = lower(doc)
    (inp,) = prog.inputs
    out = run_program(prog, {inp: np.asarray(x, float)})
    return np.asarray(next(iter(out.values())))


def _ort_run(model, x=X):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


# ------------------------------------------------------------------ captured tensors
@pytest.mark.parametrize("build,node,op", [(make.if_capturing_input, "branch_on_x", "If"),
                                           (make.loop_capturing_input, "loop_over_x", "Loop"),
                                           (make.scan_capturing_input, "scan_over_x", "Scan")])
def test_a_subgraph_reading_a_graph_input_is_refused_not_folded(build, node, op):
    with pytest.raises(UnsupportedError) as info:
        onnx_to_mdf(build())
    assert f"ONNX node '{node}'" in str(info.value) and f"'{op}'" in str(info.value)
    assert "\n" not in str(info.value)


def test_node_inputs_include_what_subgraphs_capture_recursively():
    inner = helper.make_graph([helper.make_node("Add", ["deep", "local"], ["r"])], "inner", [],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.float32(1), "local")])
    outer = helper.make_graph([helper.make_node("If", ["c2"], ["o"], then_branch=inner, else_branch=inner),
                               helper.make_node("Identity", ["o"], ["o2"])], "outer", [],
                              [helper.make_tensor_value_info("o2", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("passthrough", TensorProto.FLOAT, None)])
    node = helper.make_node("If", ["c"], ["y", "z"], then_branch=outer, else_branch=outer)
    assert captured_names(outer) == {"c2", "deep", "passthrough"}
    assert node_inputs(node) == ["c", "c2", "deep", "passthrough"]


def test_a_constant_if_still_folds_and_matches_onnxruntime():
    model = make.constant_if()
    doc = onnx_to_mdf(model)
    assert not any(n["metadata"]["mdfbridge"].get("onnx", {}).get("op_type") == "If"
                   for g in next(iter(doc.values()))["graphs"].values() for n in g["nodes"].values())
    np.testing.assert_allclose(_mdf_run(doc), _ort_run(model), rtol=1e-6)


def test_a_constant_loop_within_the_budget_folds_and_matches_onnxruntime():
    model = make.constant_loop(5)
    np.testing.assert_allclose(_mdf_run(onnx_to_mdf(model)), _ort_run(model), rtol=1e-6)
    np.testing.assert_allclose(_ort_run(model), X + 5)


# ------------------------------------------------------------------ folding budget
def test_a_loop_beyond_max_loop_iterations_is_refused_before_it_runs():
    with pytest.raises(limits.LimitError, match="const_loop.*1,000,000,000,000 iterations.*max_loop_iterations"):
        onnx_to_mdf(make.constant_loop(10 ** 12))
    with limits.override(max_loop_iterations=4), pytest.raises(limits.LimitError, match="max_loop_iterations=4"):
        onnx_to_mdf(make.constant_loop(5))


def test_a_loop_whose_condition_stays_true_stops_at_the_budget():
    with limits.override(max_loop_iterations=50), pytest.raises(limits.LimitError, match="forever.*more than 50"):
        onnx_to_mdf(make.while_loop())


@pytest.mark.parametrize("op,node", [("ConstantOfShape", "big_zeros"), ("Expand", "big_expand"),
                                     ("Tile", "big_tile"), ("Add", "big_outer")])
def test_a_fold_beyond_max_fold_elements_is_refused_from_shapes(op, node):
    with pytest.raises(limits.LimitError, match=f"{node}.*10,000,000,000 elements.*max_fold_elements"):
        onnx_to_mdf(make.huge_fold(op))


def test_predicted_elements_from_shapes_and_values():
    add = helper.make_node("Add", ["a", "b"], ["c"])
    assert predicted_elements(add, [np.zeros((3, 1)), np.zeros((1, 5))]) == 15
    mm = helper.make_node("MatMul", ["a", "b"], ["c"])
    assert predicted_elements(mm, [np.zeros((2, 3, 4)), np.zeros((4, 7))]) == 42
    cos = helper.make_node("ConstantOfShape", ["s"], ["c"])
    assert predicted_elements(cos, [np.array([6, 7], np.int64)]) == 42


# ------------------------------------------------------------------ broken and hostile files
@pytest.mark.parametrize("name,match", [
    ("truncated", "protobuf does not parse"), ("garbage", "protobuf does not parse"), ("empty", "empty ONNX model"),
    ("empty_graph", "empty ONNX model"), ("opset999", "opset 999"), ("ir99", "IR version 99"),
    ("init_missing", "initializer 'W'.*16 values.*holds 0"), ("init_short", "initializer 'W'.*64 bytes.*holds 8"),
    ("models/ext_absolute", "not a relative path"), ("models/ext_dotdot", "not a relative path"),
    ("models/ext_symlink", "outside the model's folder"), ("models/ext_missing", "missing"),
    ("models/ext_subgraph_dotdot", "not a relative path")])
def test_broken_or_hostile_files_are_one_onnx_error_naming_the_file(gen, name, match):
    path = gen / f"{name}.onnx"
    for call in (load_onnx, onnx_to_mdf):
        with pytest.raises(OnnxError, match=match) as info:
            call(str(path))
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_external_data_inside_the_folder_is_read(gen):
    doc = onnx_to_mdf(str(gen / "models" / "ext_inside.onnx"))
    np.testing.assert_allclose(_mdf_run(doc), X + 1, rtol=1e-6)


def test_bytes_and_modelprotos_with_external_data_are_refused():
    model = make.external("w.bin")
    with pytest.raises(OnnxError, match="external file 'w.bin'"):
        onnx_to_mdf(model.SerializeToString())
    with pytest.raises(OnnxError, match="external file 'w.bin'"):
        onnx_to_mdf(model)


def test_a_directory_is_refused(gen):
    with pytest.raises(OnnxError, match="not a regular file"):
        load_onnx(str(gen / "folder.onnx"))


def test_a_file_over_max_file_bytes_is_refused(gen):
    with limits.override(max_file_bytes=10), pytest.raises(limits.LimitError, match="max_file_bytes"):
        load_onnx(str(gen / "good.onnx"))


# ------------------------------------------------------------------ onnxruntime and the CLI
def test_onnxruntime_errors_become_one_line_onnx_errors(gen):
    from mdfbridge.deploy import DeploymentSession

    with pytest.raises(OnnxError, match="onnxruntime refused.*com.example.evil") as info:
        DeploymentSession(str(gen / "custom_domain.onnx"), "cpu")
    assert "\n" not in str(info.value)
    bad_reshape = make._model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="to7")],
                              inits=[numpy_helper.from_array(np.array([7], np.int64), "shape")])
    session = DeploymentSession(bad_reshape.SerializeToString(), "cpu")
    with pytest.raises(OnnxError, match="while running it") as info:
        session.run({"x": X})
    assert "\n" not in str(info.value)


def test_info_lists_subgraph_ops(gen, capsys):
    assert cli.main(["info", str(gen / "if_captures_input.onnx")]) == 0
    out = capsys.readouterr().out
    assert "subgraph ops (1" in out and "If 'branch_on_x' (2 subgraph nodes)" in out
    assert cli.main(["info", str(gen / "good.onnx")]) == 0
    assert "subgraph ops" not in capsys.readouterr().out


def test_convert_refuses_a_captured_if_with_one_line(gen, tmp_path, capsys):
    out = tmp_path / "out.mdf.json"
    assert cli.main(["convert", str(gen / "if_captures_input.onnx"), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "branch_on_x" in err[0]
    assert "if_captures_input.onnx" in err[0] and not out.exists()


def test_one_line():
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 1000, 50)) == 50


def test_the_chain_converts_to_the_same_values_as_onnxruntime():
    model = make.chain(30)
    np.testing.assert_allclose(_mdf_run(onnx_to_mdf(model)), _ort_run(model), rtol=1e-5)


def test_a_valid_model_round_trips_through_onnx_load(gen):
    assert isinstance(load_onnx(str(gen / "good.onnx")), onnx.ModelProto)


@pytest.mark.parametrize("field", [b"y", b"g", b"Relu"])
def test_a_name_of_invalid_utf8_is_refused(field):
    """protobuf reads a string field holding invalid UTF-8 as bytes (found by the fuzz test)."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    data = helper.make_model(graph).SerializeToString()
    assert field in data
    from mdfbridge.importers.onnx import onnx_to_mdf

    with pytest.raises(OnnxError, match="is not valid UTF-8 text"):
        onnx_to_mdf(data.replace(field, b"\xff" * len(field)))
