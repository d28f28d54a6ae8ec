"""`mdfbridge.to_torch(model)`: an ordinary torch.nn.Module (positional forward) from an MDF path, document,
Program or Composition; the numpy reference is the oracle (1e-15), onnxruntime for the torch.onnx.export path."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mdf_fixtures import doc, edge

import mdfbridge
from mdfbridge import load_program, to_torch
from mdfbridge.errors import UnsupportedError
from mdfbridge.importers.reference import run_program

XOR = Path(__file__).parent.parent / "examples" / "xor.mdf.json"
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]])


def reference(x: np.ndarray = X) -> np.ndarray:
    return run_program(load_program(XOR), {"input": x})["output"]


@pytest.mark.parametrize("form", ["path", "dict", "program", "composition"])
def test_every_form_of_model_gives_a_module_with_the_reference_numbers(form, xor):
    model = {"path": str(XOR), "dict": json.loads(XOR.read_text()), "program": load_program(XOR),
             "composition": xor}[form]
    module = to_torch(model)
    assert isinstance(module, torch.nn.Module)
    y = module(torch.tensor(X))
    expected = reference() if form != "composition" else run_program(xor.program(), {"input": X})["output"]
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(module({"input": torch.tensor(X)}).detach().numpy(), y.detach().numpy(), atol=0)


def test_several_outputs_come_back_as_a_tuple_in_output_order():
    nodes = {"a": {"input_ports": {"x": {"shape": [2]}}, "output_ports": {"y": {"value": "x * 2"}}},
             "b": {"input_ports": {"x": {"shape": [2]}}, "output_ports": {"y": {"value": "x + 1"}}},
             "c": {"input_ports": {"x": {"shape": [2]}}, "output_ports": {"y": {"value": "x - 1"}}}}
    d = doc(nodes, {"ab": edge("a", "y", "b", "x"), "ac": edge("a", "y", "c", "x")})
    module = to_torch(d)
    assert module.output_names == ["b", "c"]
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    b, c = module(x)
    assert b.tolist() == [[3.0, 5.0]] and c.tolist() == [[1.0, 3.0]]
    with pytest.raises(TypeError, match=r"forward takes 1 tensor\(s\), one per input \(a\); got 2"):
        module(x, x)


def test_torch_onnx_export_of_the_module_runs_on_onnxruntime():
    import onnxruntime as ort

    module = to_torch(XOR, dtype="float32")
    buf = io.BytesIO()
    x = torch.tensor(X, dtype=torch.float32)
    torch.onnx.export(module, (x,), buf, input_names=["input"], output_names=["output"], dynamo=False)
    got = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"input": X.astype(
        np.float32)})[0]
    np.testing.assert_allclose(got, reference(), rtol=0, atol=1e-6)  # float32


def test_a_users_own_training_loop_trains_it_and_the_weights_go_back_to_mdf(tmp_path):
    module = to_torch(XOR)
    params = list(module.parameters())
    assert params and all(p.requires_grad for p in params)
    opt = torch.optim.SGD(module.parameters(), lr=0.5)
    target = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=torch.float64)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = torch.mean((module(torch.tensor(X)) - target) ** 2)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    out = tmp_path / "trained.json"
    mdfbridge.write_back(XOR, module, out)      # the module's current values, copied into its Program first
    np.testing.assert_allclose(run_program(load_program(out), {"input": X})["output"],
                               module(torch.tensor(X)).detach().numpy(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype,expected", [("float32", torch.float32), (np.float64, torch.float64),
                                            (torch.float32, torch.float32), (None, torch.float64)])
def test_dtype_takes_strings_numpy_and_torch_dtypes(dtype, expected):
    assert to_torch(XOR, dtype=dtype).program_module.dtype == expected


def test_write_back_takes_a_learn_result_and_refuses_what_holds_no_program(tmp_path):
    result = mdfbridge.learn(XOR, {"input": X}, {"output": [[0.0], [1.0], [1.0], [0.0]]}, epochs=3,
                             learning_rate=0.5)
    out = tmp_path / "r.json"
    mdfbridge.write_back(XOR, result, out)
    np.testing.assert_allclose(run_program(load_program(out), {"input": X})["output"],
                               run_program(result.program, {"input": X})["output"], rtol=0, atol=1e-15)
    with pytest.raises(TypeError, match="needs a Program, a learn.. result or a to_torch module; got dict"):
        mdfbridge.write_back(XOR, {}, out)


def test_a_dtype_torch_cannot_run_a_model_in_is_one_clear_error():
    with pytest.raises(UnsupportedError, match=r"dtype 'int64' is not a floating type"):
        to_torch(XOR, dtype="int64")
