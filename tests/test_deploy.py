"""DeploymentSession (onnxruntime provider choice, dtype casting, IO binding on CUDA) and the CLI's ONNX paths:
`mdfbridge run model.onnx`, `mdfbridge convert` between MDF, ONNX and .pt."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import XOR_INPUTS, make_xor

from mdfbridge import DataError, UnsupportedError
from mdfbridge.cli import main
from mdfbridge.deploy import CPU, CUDA, DeploymentSession, choose_providers
from mdfbridge.exporters.onnx import program_to_onnx, save_onnx
from mdfbridge.importers.reference import run_program

HAS_CUDA = CUDA in ort.get_available_providers()


@pytest.fixture
def xor_onnx(tmp_path):
    path = tmp_path / "xor.onnx"
    save_onnx(program_to_onnx(make_xor().program()), path)
    return path


def test_session_picks_cpu_here_and_reports_it(xor_onnx):
    sess = DeploymentSession(xor_onnx)
    assert sess.provider == (CUDA if HAS_CUDA else CPU)
    assert DeploymentSession(xor_onnx, "cpu").provider == CPU
    assert sess.input_names == ["input"] and sess.output_names == ["output"]


def test_run_casts_inputs_and_matches_reference(xor_onnx):
    sess = DeploymentSession(xor_onnx, "cpu")
    first = sess.session
    out = sess.run({"input": XOR_INPUTS.astype(np.float64)})  # float64 in, float32 model
    assert out["output"].dtype == np.float32 and out["output"].shape == (4, 1)
    want = run_program(make_xor().program(), {"input": XOR_INPUTS})["output"]
    np.testing.assert_allclose(out["output"], want, rtol=1e-6, atol=1e-6)
    one = sess.run({"input": [0.0, 1.0]})["output"]  # one trial without its batch axis
    np.testing.assert_allclose(one, want[1:2], rtol=1e-6, atol=1e-6)
    assert sess.session is first  # created once, reused


@pytest.mark.parametrize("kind", ["bytes", "proto", "program"])
def test_session_from_bytes_proto_or_program(kind):
    prog = make_xor().program()
    model = program_to_onnx(prog, dtype="float64")
    source = {"bytes": model.SerializeToString(), "proto": model, "program": prog}[kind]
    sess = DeploymentSession(source, "cpu", dtype="float64")
    np.testing.assert_allclose(sess.run({"input": XOR_INPUTS})["output"],
                               run_program(prog, {"input": XOR_INPUTS})["output"], rtol=1e-12, atol=1e-12)


def test_bad_inputs_are_reported(xor_onnx):
    sess = DeploymentSession(xor_onnx, "cpu")
    with pytest.raises(DataError, match="unknown input.*nope.*input"):
        sess.run({"nope": XOR_INPUTS})
    with pytest.raises(DataError, match="no value for input"):
        sess.run({})
    with pytest.raises(DataError, match="expects"):
        sess.run({"input": np.ones((2, 3))})
    with pytest.raises(DataError, match="no ONNX model"):
        DeploymentSession(xor_onnx.parent / "missing.onnx")


def test_provider_choice_logic():
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", ["AzureExecutionProvider", CPU]) == [CPU]
    assert choose_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    with pytest.raises(UnsupportedError, match="provider must be one of"):
        choose_providers("tpu", [CPU])


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime offers CUDAExecutionProvider here")
def test_cuda_requested_without_cuda_names_available_providers(xor_onnx):
    with pytest.raises(UnsupportedError) as ei:
        DeploymentSession(xor_onnx, "cuda")
    msg = str(ei.value)
    assert "CUDAExecutionProvider" in msg and CPU in msg


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDAExecutionProvider in this onnxruntime (CPU-only build or no GPU)")
def test_cuda_session_uses_io_binding_and_matches_reference(xor_onnx):  # pragma: no cover - needs a GPU
    sess = DeploymentSession(xor_onnx, "cuda")
    assert sess.provider == CUDA and sess._binding
    x = np.random.default_rng(0).normal(size=(64, 2))
    np.testing.assert_allclose(sess.run({"input": x})["output"],
                               run_program(make_xor().program(), {"input": x})["output"], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- CLI

def test_cli_run_onnx_with_provider(xor_onnx, tmp_path, capsys):
    np.savez(tmp_path / "x.npz", input=XOR_INPUTS)
    assert main(["run", str(xor_onnx), "--inputs", str(tmp_path / "x.npz"), "--provider", "cpu",
                 "--out", str(tmp_path / "y.npz")]) == 0
    cap = capsys.readouterr()
    assert "ran on onnxruntime CPUExecutionProvider" in cap.err
    got = np.asarray(json.loads(cap.out.splitlines()[0].split(": ", 1)[1]))
    want = make_xor().evaluate({"input": XOR_INPUTS})["output"]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    with np.load(tmp_path / "y.npz") as data:
        np.testing.assert_allclose(data["output"], want, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime offers CUDAExecutionProvider here")
def test_cli_run_onnx_cuda_unavailable_is_one_line_error(xor_onnx, capsys):
    assert main(["run", str(xor_onnx), "--input", "input=[[0, 1]]", "--provider", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "CUDAExecutionProvider" in err and len(err.strip().splitlines()) == 1


def test_cli_convert_mdf_onnx_mdf_and_pt(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    xor = make_xor()
    mdf = tmp_path / "xor.mdf.json"
    xor.save_mdf(str(mdf))
    assert main(["convert", str(mdf), str(tmp_path / "xor.onnx"), "--dtype", "float64"]) == 0
    model = onnx.load(str(tmp_path / "xor.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    want = xor.evaluate({"input": XOR_INPUTS})["output"]
    np.testing.assert_allclose(DeploymentSession(tmp_path / "xor.onnx", "cpu").run({"input": XOR_INPUTS})["output"],
                               want, rtol=1e-12, atol=1e-12)
    assert main(["convert", str(tmp_path / "xor.onnx"), str(tmp_path / "back.yaml")]) == 0
    assert main(["run", str(tmp_path / "back.yaml"), "--input", "input=[[0, 1]]"]) == 0
    assert main(["convert", str(tmp_path / "xor.onnx"), str(tmp_path / "again.onnx"), "--opset", "18"]) == 0
    assert onnx.load(str(tmp_path / "again.onnx")).opset_import[0].version == 18
    assert main(["convert", str(mdf), str(tmp_path / "xor.pt")]) == 0
    state = torch.load(tmp_path / "xor.pt")
    np.testing.assert_array_equal(state["input_to_hidden"].numpy(), xor.projections[0].matrix)
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "xor.pt"), str(tmp_path / "x.json")]) == 2
    assert "weights only" in capsys.readouterr().err
    assert main(["convert", str(mdf), str(tmp_path / "xor.tflite")]) == 2
    assert "unsupported file extension '.tflite'" in capsys.readouterr().err
