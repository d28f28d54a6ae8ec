"""ONNX -> MDF -> ONNX keeps the model's interface: graph input and output names (digits, non-identifier
characters) and their order, element types (float64 stays float64, float16 inputs/outputs stay float16), with the
numbers of onnxruntime on the original (1e-5 float32, 1e-12 float64, float16 resolution for float16 interfaces);
models older than an import handler's opset are converted by onnx.version_converter (opset 7: onnxruntime as the
oracle; opset 6, which onnxruntime does not run: a numpy formula); error lines: every unsupported op with counts,
'X is imported from opset N (this model: opset M)', probe failures naming the node without the reference
evaluator's text; `mdfbridge convert --no-batch-axis` / `--input-shape` as a subprocess."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import mdfbridge
from mdfbridge import UnsupportedError
from mdfbridge.exporters.onnx import program_to_onnx
from mdfbridge.importers.onnx import IMPORT_OPSET, onnx_to_mdf
from mdfbridge.importers.reference import run_program
from mdfbridge.lowering import lower

NP = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.FLOAT16: np.float16}


def model_of(nodes, inputs, outputs, inits=(), opset=17, ir_version=8):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def interface(model):
    inits = {i.name for i in model.graph.initializer}
    return ([(i.name, i.type.tensor_type.elem_type) for i in model.graph.input if i.name not in inits],
            [(o.name, o.type.tensor_type.elem_type) for o in model.graph.output])


def dims(model):
    """The declared dimensions of the graph inputs and outputs."""
    def of(v):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
    inits = {i.name for i in model.graph.initializer}
    return [of(i) for i in model.graph.input if i.name not in inits], [of(o) for o in model.graph.output]


def through_files(model, tmp_path, **kwargs):
    """ONNX -> MDF JSON file -> Program -> ONNX, as a user would."""
    mdfbridge.save_mdf(onnx_to_mdf(model, **kwargs), tmp_path / "m.json")
    return mdfbridge.load_program(tmp_path / "m.json")


def three_outputs(elem, weights):
    """Inputs '1', '0' (in that order: not sorted), outputs '3', '4', '5' where '5' (computed first, read by '3')
    comes last: the import's topological order differs from the graph's."""
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("MatMul", ["1", "w"], ["5"], name="mm"), helper.make_node("Tanh", ["5"], ["3"]),
             helper.make_node("Sigmoid", ["0"], ["4"], name="sig")]
    return model_of(nodes, [vi("1", elem, ["N", 3]), vi("0", elem, ["N", 2])],
                    [vi("3", elem, ["N", 4]), vi("4", elem, ["N", 2]), vi("5", elem, ["N", 4])], [("w", weights)])


FIXED_W = np.arange(12, dtype=float).reshape(3, 4) / 7 - 0.5


@pytest.mark.parametrize("weights", ["random", "fixed"])
def test_digit_names_and_output_order_survive_the_round_trip(weights, tmp_path):
    w = np.random.default_rng(1).normal(size=(3, 4)) if weights == "random" else FIXED_W
    original = three_outputs(TensorProto.FLOAT, w.astype(np.float32))
    prog = through_files(original, tmp_path)
    # (MDF ids are identifiers; the mapping travels in the metadata; the Program keeps the ONNX graph's order)
    assert list(prog.inputs) == ["n1", "n0"] and list(prog.outputs) == ["n3", "n4", "n5"]
    again = program_to_onnx(prog)
    assert interface(again) == interface(original) == (
        [("1", TensorProto.FLOAT), ("0", TensorProto.FLOAT)],
        [("3", TensorProto.FLOAT), ("4", TensorProto.FLOAT), ("5", TensorProto.FLOAT)])
    rng = np.random.default_rng(2)
    feeds = {"1": rng.normal(size=(6, 3)).astype(np.float32), "0": rng.normal(size=(6, 2)).astype(np.float32)}
    want, got = ort_run(original, feeds), ort_run(again, feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)
    # mdfbridge's onnxruntime backend runs the Program under its own names (n1, n0 -> n3, n4, n5)
    from mdfbridge.api import run_with_backend

    on_ort = run_with_backend(prog, {"n1": feeds["1"], "n0": feeds["0"]}, "onnxruntime")
    assert list(on_ort) == ["n3", "n4", "n5"]
    for k in want:
        np.testing.assert_allclose(on_ort[f"n{k}"], want[k], rtol=1e-5, atol=1e-5)


def test_non_identifier_names_are_restored(tmp_path):
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Relu", ["input:0"], ["out/relu"]), helper.make_node("Neg", ["input:0"], ["class"])]
    original = model_of(nodes, [vi("input:0", TensorProto.FLOAT, ["N", 2])],
                        [vi("out/relu", TensorProto.FLOAT, ["N", 2]), vi("class", TensorProto.FLOAT, ["N", 2])])
    prog = through_files(original, tmp_path)
    assert all(k.isidentifier() for k in (*prog.inputs, *prog.outputs))
    again = program_to_onnx(prog)
    assert interface(again) == interface(original)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(4, 2)
    want, got = ort_run(original, {"input:0": x}), ort_run(again, {"input:0": x})
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6)


def test_an_input_passed_through_as_an_output_keeps_its_name(tmp_path):
    vi = helper.make_tensor_value_info
    original = model_of([helper.make_node("Relu", ["x"], ["y"])], [vi("x", TensorProto.FLOAT, ["N", 2])],
                        [vi("y", TensorProto.FLOAT, ["N", 2]), vi("x", TensorProto.FLOAT, ["N", 2])])
    again = program_to_onnx(through_files(original, tmp_path))
    assert interface(again) == interface(original)
    x = np.array([[-1.0, 2.0], [3.0, -4.0]], dtype=np.float32)
    got = ort_run(again, {"x": x})
    np.testing.assert_array_equal(got["x"], x)
    np.testing.assert_array_equal(got["y"], np.maximum(x, 0))


@pytest.mark.parametrize("weights", ["random", "fixed"])
def test_float64_model_stays_float64(weights, tmp_path):
    w = (np.random.default_rng(3).normal(size=(3, 4)) if weights == "random" else FIXED_W) * 1e200
    original = three_outputs(TensorProto.DOUBLE, w)
    again = program_to_onnx(through_files(original, tmp_path))
    assert interface(again) == interface(original)
    assert {i.data_type for i in again.graph.initializer if i.name.startswith("w") or "mm" in i.name} <= {
        TensorProto.DOUBLE}
    rng = np.random.default_rng(4)
    feeds = {"1": rng.normal(size=(5, 3)) * 1e23, "0": rng.normal(size=(5, 2))}
    want, got = ort_run(original, feeds), ort_run(again, feeds)
    assert np.all(np.isfinite(got["5"])) and np.max(np.abs(got["5"])) > 1e200  # (float32 would be inf)
    for k in want:
        assert got[k].dtype == np.float64
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12)
    with pytest.raises(UnsupportedError, match=r"node 'mm': parameter 'mm\.w' holds -?\d(\.\d*)?e\+(199|20\d), "
                       r"beyond float32's range; export with dtype='float64'"):  # (never written as infinities)
        program_to_onnx(mdfbridge.load_program(tmp_path / "m.json"), dtype="float32")
    small = three_outputs(TensorProto.DOUBLE, w / 1e200)
    f32 = program_to_onnx(through_files(small, tmp_path), dtype="float32")  # asked for: float32
    assert {t for _, t in interface(f32)[0]} == {TensorProto.FLOAT}


def test_float16_interface_is_kept(tmp_path):
    w = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float16)
    original = three_outputs(TensorProto.FLOAT16, w)
    prog = through_files(original, tmp_path)
    again = program_to_onnx(prog)
    assert interface(again) == interface(original)
    (weight,) = again.graph.initializer  # the float16 weight stays float16 (cast to float32 inside)
    assert weight.data_type == TensorProto.FLOAT16
    np.testing.assert_array_equal(numpy_helper.to_array(weight), w)
    prog.params["mm.w"].value = prog.params["mm.w"].value + 1e-4  # (no longer float16 numbers: float32 weights)
    assert {i.data_type for i in program_to_onnx(prog).graph.initializer} == {TensorProto.FLOAT}
    rng = np.random.default_rng(6)
    feeds = {"1": rng.normal(size=(5, 3)).astype(np.float16), "0": rng.normal(size=(5, 2)).astype(np.float16)}
    want, got = ort_run(original, feeds), ort_run(again, feeds)
    for k in want:
        assert got[k].dtype == np.float16
        # (the re-export computes in float32 between casts: within float16's resolution of the original)
        np.testing.assert_allclose(got[k].astype(float), want[k].astype(float), rtol=2e-3, atol=4e-3)


@pytest.mark.parametrize("elem", [TensorProto.FLOAT16, TensorProto.BFLOAT16])
@pytest.mark.parametrize("weights", ["random", "fixed"])
def test_low_precision_weights_behind_a_cast_stay_in_their_dtype(elem, weights, tmp_path):
    """A float32 model storing its weight in float16 / bfloat16 with a Cast to float (how small checkpoints are
    written): the weight is recorded in its dtype (`parameter_dtypes`), and the re-export writes it so again, cast
    to float32 inside; onnxruntime's outputs equal the original's exactly (the same computation). Moved by
    training off that dtype's numbers, it is written in float32."""
    small = helper.tensor_dtype_to_np_dtype(elem)
    w = (np.random.default_rng(9).normal(size=(3, 4)) if weights == "random" else FIXED_W).astype(small)
    vi = helper.make_tensor_value_info
    original = model_of([helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT),
                         helper.make_node("MatMul", ["x", "wf"], ["y"], name="mm")],
                        [vi("x", TensorProto.FLOAT, ["N", 3])], [vi("y", TensorProto.FLOAT, ["N", 4])], [("w", w)])
    prog = through_files(original, tmp_path)
    again = program_to_onnx(prog)
    (init,) = again.graph.initializer
    assert init.data_type == elem
    np.testing.assert_array_equal(numpy_helper.to_array(init).astype(np.float64), w.astype(np.float64))
    assert [n.op_type for n in again.graph.node] == ["Cast", "MatMul"]
    feeds = {"x": np.random.default_rng(10).normal(size=(6, 3)).astype(np.float32)}
    np.testing.assert_array_equal(ort_run(again, feeds)["y"], ort_run(original, feeds)["y"])
    (name,) = [k for k in prog.params if prog.params[k].learnable]
    prog.params[name].value = np.asarray(prog.params[name].value) + 1e-3  # (no longer numbers of that dtype)
    assert {i.data_type for i in program_to_onnx(prog).graph.initializer} == {TensorProto.FLOAT}


def test_bfloat16_weights_of_a_bfloat16_model_are_kept(tmp_path):
    import ml_dtypes

    w = np.random.default_rng(11).normal(size=(3, 4)).astype(ml_dtypes.bfloat16)
    vi = helper.make_tensor_value_info
    original = model_of([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                        [vi("x", TensorProto.BFLOAT16, ["N", 3])], [vi("y", TensorProto.BFLOAT16, ["N", 4])],
                        [("w", w)])
    again = program_to_onnx(through_files(original, tmp_path))
    (init,) = again.graph.initializer
    assert init.data_type == TensorProto.BFLOAT16 and interface(again) == interface(original)
    np.testing.assert_array_equal(numpy_helper.to_array(init).astype(np.float64), w.astype(np.float64))


@pytest.mark.parametrize("elem", [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE])
@pytest.mark.parametrize("weights", ["random", "fixed"])
def test_arrays_keep_weights_in_their_dtype(elem, weights, tmp_path):
    """onnx_to_mdf(arrays=True) (what `convert` uses): float32/float64 weights stay arrays of the ONNX dtype, JSON
    holds each in that dtype's shortest form (float32 0.1 as 0.1; float16 stays an exact float64 list), and the
    file re-exports to bitwise the same initializer, with the numbers of arrays=False's plain lists."""
    w = (np.random.default_rng(7).normal(size=(3, 4)) if weights == "random" else FIXED_W).astype(NP[elem])
    w.flat[0] = 0.1  # (float32's 0.1 is 0.10000000149011612 as a float64)
    original = three_outputs(elem, w)
    as_arrays, as_lists = onnx_to_mdf(original, arrays=True), onnx_to_mdf(original)
    stored = as_arrays["g_model"]["graphs"]["g"]["nodes"]["mm"]["parameters"]["w"]["value"]
    assert (isinstance(stored, np.ndarray) and stored.dtype == w.dtype) if elem != TensorProto.FLOAT16 else (
        isinstance(stored, list))
    assert isinstance(as_lists["g_model"]["graphs"]["g"]["nodes"]["mm"]["parameters"]["w"]["value"], list)
    mdfbridge.save_mdf(as_arrays, tmp_path / "a.json")
    mdfbridge.save_mdf(as_lists, tmp_path / "l.json")
    text = (tmp_path / "a.json").read_text()
    first = {TensorProto.FLOAT: "[0.1,", TensorProto.FLOAT16: "[0.0999755859375,", TensorProto.DOUBLE: "[0.1,"}[elem]
    assert first in text and ("0.10000000149011612" in (tmp_path / "l.json").read_text()) == (
        elem == TensorProto.FLOAT)
    if elem == TensorProto.FLOAT:
        assert (tmp_path / "a.json").stat().st_size < (tmp_path / "l.json").stat().st_size
    feeds = {"1": np.random.default_rng(8).normal(size=(5, 3)).astype(NP[elem]), "0": np.ones((5, 2), NP[elem])}
    want = ort_run(original, feeds)
    for name in ("a.json", "l.json"):
        again = program_to_onnx(mdfbridge.load_program(tmp_path / name))
        (init,) = [i for i in again.graph.initializer if i.data_type == elem]
        np.testing.assert_array_equal(numpy_helper.to_array(init), w)  # (bitwise: shortest forms round-trip)
        got = ort_run(again, feeds)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


# --------------------------------------------------------------------------- old opsets

def conv_bn_gemm(opset, rng):
    """Conv -> BatchNormalization -> Relu -> Flatten -> Gemm -> Add, in the forms of opset 6 / 7."""
    vi = helper.make_tensor_value_info
    w = {"W": rng.normal(size=(4, 3, 3, 3)), "b": rng.normal(size=(4,)), "s": rng.uniform(0.5, 1.5, size=4),
         "bb": rng.normal(size=4), "m": rng.normal(size=4), "v": rng.uniform(0.5, 1.5, size=4),
         "G": rng.normal(size=(4 * 5 * 5, 5)) / 10, "gb": rng.normal(size=5)}
    bn = {"is_test": 1} if opset < 7 else {}
    bc = {"broadcast": 1} if opset < 7 else {}
    nodes = [helper.make_node("Conv", ["x", "W", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-5, **bn),
             helper.make_node("Relu", ["n"], ["r"]), helper.make_node("Flatten", ["r"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "G", "gb"], ["g"], **bc),
             helper.make_node("Add", ["g", "gb"], ["y"], **bc)]
    model = model_of(nodes, [vi("x", TensorProto.FLOAT, ["N", 3, 5, 5])], [vi("y", TensorProto.FLOAT, ["N", 5])],
                     [(k, v.astype(np.float32)) for k, v in w.items()], opset=opset, ir_version=4)
    return model, w


def numpy_conv_bn_gemm(x, w):
    """The same network in numpy (float64): 3x3 convolution with padding 1, inference batch norm, ReLU, Gemm."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (N, C, H, W, 3, 3)
    c = np.einsum("nchwij,ocij->nohw", windows, w["W"]) + w["b"][None, :, None, None]
    per = (slice(None), None, None)
    n = (c - w["m"][per]) / np.sqrt(w["v"][per] + 1e-5) * w["s"][per] + w["bb"][per]
    r = np.maximum(n, 0).reshape(len(x), -1)
    return r @ w["G"] + 2 * w["gb"]


@pytest.mark.parametrize("opset", [6, 7])
def test_old_opset_model_is_converted_then_imported(opset, caplog, tmp_path):
    rng = np.random.default_rng(opset)
    model, w = conv_bn_gemm(opset, rng)
    with caplog.at_level(logging.INFO, logger="mdfbridge.importers.onnx"):
        doc = onnx_to_mdf(model)
    assert f"converted the model from opset {opset} to opset {IMPORT_OPSET}" in caplog.text
    meta = next(iter(next(iter(doc.values()))["graphs"].values()))["metadata"]["mdfbridge"]["onnx"]
    assert meta["source_opset"] == opset and meta["opset"] == IMPORT_OPSET
    mdfbridge.save_mdf(doc, tmp_path / "old.json")
    prog = mdfbridge.load_program(tmp_path / "old.json")
    x = rng.normal(size=(3, 3, 5, 5)).astype(np.float32)
    got = run_program(prog, {"x": x})["y"]
    if opset >= 7:  # onnxruntime runs opset 7 on
        want = ort_run(model, {"x": x})["y"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.max(np.abs(want)))
    f32 = {k: v.astype(np.float32).astype(float) for k, v in w.items()}
    np.testing.assert_allclose(got, numpy_conv_bn_gemm(x.astype(float), f32), rtol=1e-9, atol=1e-9)
    back = ort_run(program_to_onnx(prog), {"x": x})["y"]
    np.testing.assert_allclose(back, got, rtol=1e-5, atol=1e-5 * np.max(np.abs(got)))


def clip_model(opset):
    vi = helper.make_tensor_value_info
    return model_of([helper.make_node("Clip", ["x"], ["y"], name="clip", min=-0.5, max=0.5)],
                    [vi("x", TensorProto.FLOAT, ["N", 3])], [vi("y", TensorProto.FLOAT, ["N", 3])], opset=opset)


def test_clip_at_opset_6_imports_through_the_converter():
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    got = run_program(lower(onnx_to_mdf(clip_model(6))), {"x": x})["y"]
    np.testing.assert_allclose(got, np.clip(x, -0.5, 0.5), rtol=0, atol=0)


def test_failed_conversion_keeps_the_refusal_and_adds_the_reason_in_one_line(monkeypatch):
    from onnx import version_converter

    def refuse(model, target):
        raise RuntimeError("no adapter for Clip\n  (C++ detail)")

    monkeypatch.setattr(version_converter, "convert_version", refuse)
    with pytest.raises(UnsupportedError) as ei:
        onnx_to_mdf(clip_model(6))
    msg = str(ei.value)
    assert "\n" not in msg and "ONNX node 'clip'" in msg
    assert "Clip is imported from opset 11 (this model: opset 6)" in msg
    assert msg.endswith(f"onnx.version_converter from opset 6 to {IMPORT_OPSET} failed: RuntimeError: no adapter "
                        "for Clip")


# --------------------------------------------------------------------------- error lines

def test_every_unsupported_op_is_listed_with_counts_in_one_line():
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("LpNormalization", ["x"], ["a"], name="lrn1"), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("LpNormalization", ["b"], ["c"], name="lrn2"),
             helper.make_node("Hardmax", ["c"], ["d"], name="hardmax"),
             helper.make_node("LpNormalization", ["d"], ["e"], name="lrn3"),
             helper.make_node("Clip", ["e"], ["y"], name="clip", min=0.0, max=1.0)]
    model = model_of(nodes, [vi("x", TensorProto.FLOAT, ["N", 3, 4, 4])], [vi("y", TensorProto.FLOAT, ["N", 3, 4, 4])],
                     opset=6, ir_version=4)
    with pytest.raises(UnsupportedError) as ei:
        onnx_to_mdf(model)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("<model>: ONNX node 'lrn1': ")
    assert "unsupported ONNX ops (opset 6): LpNormalization x3, Hardmax x1; " in msg
    assert "Clip is imported from opset 11 (this model: opset 6)" in msg  # (no conversion: the others would fail)


def test_probe_failure_names_the_node_without_the_evaluators_text():
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Gather", ["x", "idx"], ["g"], name="pick", axis=1),
             helper.make_node("Relu", ["g"], ["y"])]
    model = model_of(nodes, [vi("x", TensorProto.FLOAT, ["N", 3])], [vi("y", TensorProto.FLOAT, ["N", 1])],
                     [("idx", np.array([5], dtype=np.int64))])
    with pytest.raises(UnsupportedError) as ei:
        onnx_to_mdf(model)
    msg = str(ei.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert "ONNX node 'pick': " in msg and "Gather node: IndexError: index 5 is out of bounds" in msg


def test_batch_axis_refusals_name_the_cli_flag():
    vi = helper.make_tensor_value_info
    model = model_of([helper.make_node("Transpose", ["x"], ["y"], name="swap", perm=[1, 0, 2])],
                     [vi("x", TensorProto.FLOAT, ["N", 5, 4])], [vi("y", TensorProto.FLOAT, [5, "N", 4])])
    with pytest.raises(UnsupportedError, match=r"batch_axis=False \(CLI: mdfbridge convert --no-batch-axis\)"):
        onnx_to_mdf(model)
    with pytest.raises(UnsupportedError, match=r"--input-shape x=D1,D2,\.\.\. --no-batch-axis"):
        onnx_to_mdf(model, batch_axis=False)  # (the batch dimension is symbolic: give the whole shape)
    x = np.random.default_rng(7).normal(size=(3, 5, 4)).astype(np.float32)
    prog = lower(onnx_to_mdf(model, batch_axis=False, input_shapes={"x": x.shape}))
    np.testing.assert_allclose(run_program(prog, {"x": x[None]})["y"][0], ort_run(model, {"x": x})["y"], rtol=0,
                               atol=0)


# --------------------------------------------------------------------------- the command line

def cli(*args):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "mdfbridge.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.slow  # (subprocesses)
def test_cli_convert_no_batch_axis(tmp_path):
    vi = helper.make_tensor_value_info
    w = np.random.default_rng(8).normal(size=(4, 2)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="swap", perm=[1, 0, 2]),
             helper.make_node("MatMul", ["t", "w"], ["y"], name="mm")]
    fixed = model_of(nodes, [vi("x", TensorProto.FLOAT, [3, 5, 4])], [vi("y", TensorProto.FLOAT, [5, 3, 2])],
                     [("w", w)])
    onnx.save(fixed, str(tmp_path / "fixed.onnx"))
    refused = cli("convert", tmp_path / "fixed.onnx", tmp_path / "fixed.json")
    assert refused.returncode == 2 and "--no-batch-axis" in refused.stderr
    done = cli("convert", tmp_path / "fixed.onnx", tmp_path / "fixed.json", "--no-batch-axis")
    assert done.returncode == 0, done.stderr
    back = cli("convert", tmp_path / "fixed.json", tmp_path / "back.onnx")
    assert back.returncode == 0, back.stderr
    again = onnx.load(str(tmp_path / "back.onnx"))
    assert interface(again) == interface(fixed)
    assert dims(again) == dims(fixed) == ([[3, 5, 4]], [[5, 3, 2]])  # (one trial: the original's fixed shapes)
    x = np.random.default_rng(9).normal(size=(3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(ort_run(again, {"x": x})["y"], ort_run(fixed, {"x": x})["y"], rtol=1e-5, atol=1e-5)
    batched = program_to_onnx(mdfbridge.load_program(tmp_path / "fixed.json"), batch_axis=True)  # trials of them
    np.testing.assert_allclose(ort_run(batched, {"x": np.stack([x, -x])})["y"],
                               np.stack([ort_run(fixed, {"x": v})["y"] for v in (x, -x)]), rtol=1e-5, atol=1e-5)
    # a symbolic dimension: --input-shape gives it
    onnx.save(model_of(nodes, [vi("x", TensorProto.FLOAT, ["N", 5, 4])], [vi("y", TensorProto.FLOAT, [5, "N", 2])],
                       [("w", w)]), str(tmp_path / "sym.onnx"))
    done = cli("convert", tmp_path / "sym.onnx", tmp_path / "sym.onnx.onnx", "--no-batch-axis", "--input-shape",
               "x=3,5,4")
    assert done.returncode == 0, done.stderr
    bad = cli("convert", tmp_path / "sym.onnx", tmp_path / "bad.json", "--input-shape", "x=three")
    assert bad.returncode == 2 and "--input-shape x=three: expected NAME=D1,D2,..." in bad.stderr


@pytest.mark.slow  # (a subprocess)
def test_cli_onnx_to_onnx_keeps_float64(tmp_path):
    original = three_outputs(TensorProto.DOUBLE, FIXED_W * 1e200)
    onnx.save(original, str(tmp_path / "f64.onnx"))
    done = cli("convert", tmp_path / "f64.onnx", tmp_path / "f64.back.onnx")
    assert done.returncode == 0, done.stderr
    again = onnx.load(str(tmp_path / "f64.back.onnx"))
    assert interface(again) == interface(original)
    feeds = {"1": np.full((2, 3), 1e20), "0": np.zeros((2, 2))}
    np.testing.assert_allclose(ort_run(again, feeds)["5"], ort_run(original, feeds)["5"], rtol=1e-12)


def test_sequence_first_input_suggests_no_batch_axis():
    """torch's batch_first=False RNN input (T, batch, F): the refusal names --no-batch-axis; with it and the
    whole shape, the import equals onnxruntime."""
    vi = helper.make_tensor_value_info
    w = np.random.default_rng(10).normal(size=(4, 3)).astype(np.float32)
    model = model_of([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                     [vi("x", TensorProto.FLOAT, [5, "batch", 4])], [vi("y", TensorProto.FLOAT, [5, "batch", 3])],
                     [("w", w)])
    with pytest.raises(UnsupportedError, match=r"sequence-first RNN.*--input-shape x=D1,D2,\.\.\. --no-batch-axis"):
        onnx_to_mdf(model)
    x = np.random.default_rng(11).normal(size=(5, 2, 4)).astype(np.float32)
    prog = lower(onnx_to_mdf(model, batch_axis=False, input_shapes={"x": x.shape}))
    np.testing.assert_allclose(run_program(prog, {"x": x[None]})["y"][0], ort_run(model, {"x": x})["y"], rtol=1e-5,
                               atol=1e-5)


@pytest.mark.slow  # (torch.onnx.export)
@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_batch_first_rnn_export_imports_with_no_batch_axis(kind, tmp_path):
    """torch's batch_first RNN export transposes (N, T, F) -> (T, N, F) around the ONNX node: refused with the
    batch axis (naming --no-batch-axis), imported without it at the given shape, equal to onnxruntime, and
    re-exported with the original's interface."""
    import contextlib
    import io
    import warnings

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(4, 6, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    path = tmp_path / "rnn.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(Net(), (torch.randn(2, 5, 4),), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    original = onnx.load(str(path))
    with pytest.raises(UnsupportedError, match="--no-batch-axis"):
        onnx_to_mdf(original)
    x = np.random.default_rng(12).normal(size=(3, 5, 4)).astype(np.float32)
    prog = through_files(original, tmp_path, batch_axis=False, input_shapes={"x": x.shape})
    want = ort_run(original, {"x": x})["y"]
    np.testing.assert_allclose(run_program(prog, {"x": x[None]})["y"][0], want, rtol=1e-5, atol=1e-5)
    again = program_to_onnx(prog)
    assert interface(again) == interface(original) and dims(again)[0] == [[3, 5, 4]]
    np.testing.assert_allclose(ort_run(again, {"x": x})["y"], want, rtol=1e-5, atol=1e-5)
