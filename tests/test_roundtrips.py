"""Round trips (issue 6.5) not covered elsewhere, and MDF documents whose numbers must agree on every runner.

Covered elsewhere: torch module -> MDF -> ONNX -> onnxruntime equals torch (test_pytorch_import.py
`test_torch_to_mdf_to_onnx_on_onnxruntime_equals_torch`); ONNX -> MDF -> ONNX equals the original on onnxruntime
(test_onnx_import.py `test_onnx_mdf_onnx_round_trip`, `test_hand_built_round_trip`). Here: composition -> MDF file
-> ONNX (the CLI) -> onnxruntime equals `Composition.run()`, before and after `learn()`; an `onnx::Concat` written
with `inputs` as a list of names; elementwise ops over tensors of different per-trial ranks.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mdfbridge import (
    BiasMechanism,
    Composition,
    Logistic,
    MappingProjection,
    ReLU,
    SoftMax,
    Tanh,
    TransferMechanism,
    lower,
)
from mdfbridge.cli import main
from mdfbridge.deploy import DeploymentSession
from mdfbridge.document import validate_dict
from mdfbridge.exporters.onnx import program_to_onnx
from mdfbridge.importers.reference import run_program
from mdfbridge.importers.torch_module import program_to_module

RNG = np.random.default_rng(11)


def nested_composition() -> Composition:
    """input -> (inner: tanh -> logistic) -> softmax output, with a bias node and a leaky ReLU side branch."""
    inner = Composition("inner")
    h1, h2 = TransferMechanism("h1", 5, Tanh(gain=1.3)), TransferMechanism("h2", 4, Logistic(bias=0.1))
    inner.add_linear_processing_pathway([h1, "random", h2])
    a = TransferMechanism("a", 3)
    side = TransferMechanism("side", 4, ReLU(leak=0.05))
    out = TransferMechanism("out", 2, SoftMax(gain=2.0))
    comp = Composition("outer", seed=3)
    comp.add_linear_processing_pathway([a, "random", inner])
    comp.add_projection(MappingProjection(matrix="random", name="a_to_side"), a, side)
    comp.add_projection(MappingProjection(matrix="random", name="h2_to_out"), h2, out)
    comp.add_projection(MappingProjection(matrix="random", name="side_to_out"), side, out)
    comp.add_projection(MappingProjection(matrix=[[0.3, -0.2]], name="bias_to_out"), BiasMechanism("b"), out)
    return comp


@pytest.mark.parametrize("trained", [False, True], ids=["initial", "after_learn"])
def test_composition_mdf_onnx_onnxruntime_equals_run(tmp_path, capsys, trained):
    comp = nested_composition()
    x = RNG.uniform(-1, 1, size=(16, 3))
    if trained:
        targets = np.eye(2)[(x[:, 0] > 0).astype(int)]
        comp.learn({"a": x}, {"out": targets}, epochs=3, learning_rate=0.1, minibatch_size=4)
    mdf = tmp_path / "outer.mdf.json"
    comp.save_mdf(str(mdf))
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-6)):
        onx = tmp_path / f"outer.{dtype}.onnx"
        assert main(["convert", str(mdf), str(onx), "--dtype", dtype]) == 0
        session = DeploymentSession(onx, "cpu")
        got = session.run({"a": x})["out"]
        comp.results.clear()
        comp.run({"a": x})
        want = np.stack([trial[0] for trial in comp.results])
        xin = x.astype(np.float32).astype(float) if dtype == "float32" else x
        if dtype == "float32":  # run() on the same float32-rounded inputs
            comp.results.clear()
            comp.run({"a": xin})
            want = np.stack([trial[0] for trial in comp.results])
        assert got.shape == want.shape == (16, 2)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    capsys.readouterr()


# ------------------------------------------------------------------------------------------- MDF documents

def _doc(nodes: dict, edges: dict) -> dict:
    doc = {"m": {"format": "ModECI MDF v0.4", "generating_application": "test_roundtrips",
                 "graphs": {"g": {"nodes": nodes, "edges": edges}}}}
    validate_dict(doc)
    return doc


def _source(nid: str, shape) -> dict:
    return {"input_ports": {f"{nid}_in": {"shape": list(shape)}}, "output_ports": {"out": {"value": f"{nid}_in"}}}


def _edge(sender: str, receiver: str, port: str) -> dict:
    return {"sender": sender, "sender_port": "out", "receiver": receiver, "receiver_port": port}


def _check_everywhere(doc: dict, inputs: dict, want: dict) -> None:
    """numpy reference, torch module and onnxruntime (float64 export) all give `want`."""
    prog = lower(doc)
    got = run_program(prog, inputs)
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=1e-12, err_msg=f"numpy {k}")
    module = program_to_module(prog)
    with torch.no_grad():
        out = module({k: torch.as_tensor(v) for k, v in inputs.items()})
    for k, v in want.items():
        np.testing.assert_allclose(out[k].numpy(), v, rtol=1e-12, atol=1e-12, err_msg=f"torch {k}")
    res = DeploymentSession(program_to_onnx(prog, dtype="float64"), "cpu").run(inputs)
    for k, v in want.items():
        np.testing.assert_allclose(res[k], v, rtol=1e-12, atol=1e-12, err_msg=f"onnxruntime {k}")


def test_onnx_concat_with_a_list_of_names_lowers_and_runs():
    nodes = {"a": _source("a", (3,)), "b": _source("b", (2,)),
             "c": {"input_ports": {"x": {"shape": [3]}, "y": {"shape": [2]}},
                   "parameters": {"w": {"value": [7.0, 8.0]}},
                   "functions": {"f": {"function": {"onnx::Concat": {"inputs": ["x", "y", "w", "2 * x"],
                                                                     "axis": 0}}}},
                   "output_ports": {"out": {"value": "f"}}}}
    doc = _doc(nodes, {"e1": _edge("a", "c", "x"), "e2": _edge("b", "c", "y")})
    prog = lower(doc)
    (op,) = [o for o in prog.ops if o.fn == "Concat"]
    assert [r.name for r in op.args["inputs"]][:3] == ["a.a_in", "b.b_in", "c.w"]
    assert prog.shapes[op.out] == (10,)
    a, b = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2))
    want = np.concatenate([a, b, np.tile([7.0, 8.0], (4, 1)), 2 * a], axis=1)
    _check_everywhere(doc, {"a": a, "b": b}, {"c": want})


def test_onnx_concat_list_may_read_another_function_of_the_node():
    nodes = {"a": _source("a", (2, 3)),
             "c": {"input_ports": {"x": {"shape": [2, 3]}},
                   "functions": {"cat": {"function": {"onnx::Concat": {"inputs": ["x", "sq"], "axis": 1}}},
                                 "sq": {"value": "x * x"}},
                   "output_ports": {"out": {"value": "cat"}}}}
    doc = _doc(nodes, {"e1": _edge("a", "c", "x")})
    a = RNG.normal(size=(5, 2, 3))
    _check_everywhere(doc, {"a": a}, {"c": np.concatenate([a, a * a], axis=2)})


def test_elementwise_ops_broadcast_per_trial_over_different_ranks():
    nodes = {"a": _source("a", (3,)), "b": _source("b", (2, 3)),
             "s": {"input_ports": {"x": {"shape": [3]}, "y": {"shape": [2, 3]}},
                   "functions": {"total": {"value": "x + y"},
                                 "prod": {"function": {"onnx::Mul": {"A": "x", "B": "y"}}},
                                 "mx": {"value": "numpy.maximum(x, y) * 2"},
                                 "three": {"value": "x + y + x"},
                                 "scaled": {"value": "x * y + 0.5 * x"}},
                   "output_ports": {"total": {"value": "total"}, "prod": {"value": "prod"}, "mx": {"value": "mx"},
                                    "three": {"value": "three"}, "scaled": {"value": "scaled"}}}}
    doc = _doc(nodes, {"e1": _edge("a", "s", "x"), "e2": _edge("b", "s", "y")})
    prog = lower(doc)
    assert prog.shapes["s.total"] == prog.shapes["s.scaled"] == (2, 3)
    a, b = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2, 3))
    want = {"s.total": a[:, None] + b, "s.prod": a[:, None] * b, "s.mx": np.maximum(a[:, None], b) * 2,
            "s.three": 2 * a[:, None] + b, "s.scaled": a[:, None] * b + 0.5 * a[:, None]}
    _check_everywhere(doc, {"a": a, "b": b}, want)
    one = run_program(prog, {"a": a[:1], "b": b[:1]})  # one trial: the same numbers as row 0 of the batch
    for key, v in want.items():
        np.testing.assert_allclose(one[key][0], v[0], rtol=1e-12, atol=1e-12)


def test_summed_afferents_of_different_ranks_and_equal_ranks_fast_path():
    """The pure-sum fast path: per-trial broadcasting when ranks differ; plain `+` (same result) when they agree."""
    nodes = {"a": _source("a", (3,)), "b": _source("b", (2, 3)), "c": _source("c", (2, 3)),
             "s": {"input_ports": {"x": {"shape": [3]}, "y": {"shape": [2, 3]}, "z": {"shape": [2, 3]}},
                   "functions": {"xy": {"value": "x + y"}, "yz": {"value": "y + z"}},
                   "output_ports": {"xy": {"value": "xy"}, "yz": {"value": "yz"}}}}
    doc = _doc(nodes, {"e1": _edge("a", "s", "x"), "e2": _edge("b", "s", "y"), "e3": _edge("c", "s", "z")})
    a, b, c = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 2, 3)), RNG.normal(size=(6, 2, 3))
    _check_everywhere(doc, {"a": a, "b": b, "c": c}, {"s.xy": a[:, None] + b, "s.yz": b + c})
