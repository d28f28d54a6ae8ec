"""MDF exported by PsyNeuLink 0.21 (tests/data/psyneulink) runs to PsyNeuLink's own numbers.

Every fixture with expected outputs is loaded with `mdfbridge.load_program` and run on the numpy reference with
all trials of PsyNeuLink's one `run()` as time steps of one sequence (`run_program(..., sequence=True)`, inputs
(1, trials, *port shape)), so state (integrators) carries across trials as in PsyNeuLink; the same on torch
(`TorchRep.run_sequence`) where its schedule is the topological order. Tolerance: 1e-12 absolute (the values
are O(1); the largest difference seen is 9e-16).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

import mdfbridge
from mdfbridge.errors import UnsupportedError
from mdfbridge.importers.reference import run_program
from mdfbridge.ops import REGISTRY, read_call

DATA = Path(__file__).parent / "data" / "psyneulink"
ATOL = 1e-12
FIXTURES = ("transfer_functions", "integrators", "multi_sender", "chain3", "conditions", "conditions_default",
            "autodiff_sgd", "autodiff_adam")


def _expected(name: str) -> Dict[str, Any]:
    return json.loads((DATA / f"{name}.expected.json").read_text())


def _inputs(program: Any, exp: Dict[str, Any], lead: tuple) -> Dict[str, np.ndarray]:
    """PsyNeuLink's per-trial inputs (1-D per trial) shaped (lead..., *port shape) (ports are [1, n])."""
    return {k: np.asarray(v, dtype=float).reshape(lead + tuple(program.inputs[k].shape))
            for k, v in exp["inputs"].items()}


def _run_numpy(program: Any, exp: Dict[str, Any]) -> Dict[str, np.ndarray]:
    n = exp["num_trials"]
    out = run_program(program, _inputs(program, exp, (1, n)), sequence=True)
    return {k: np.asarray(v)[0].reshape(n, -1) for k, v in out.items()}


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_psyneulink_on_numpy(name: str) -> None:
    exp = _expected(name)
    program = mdfbridge.load_program(DATA / f"{name}.json")
    assert set(program.outputs) == set(exp["outputs"])  # the composition's output nodes, by their MDF ids
    got = _run_numpy(program, exp)
    for node, want in exp["outputs"].items():
        np.testing.assert_allclose(got[node], np.asarray(want, dtype=float), rtol=0, atol=ATOL, err_msg=node)


# the torch module runs schedules that are the topological order; `conditions` needs the scheduler (reference only)
NOT_ON_TORCH = {"conditions": "EveryNCalls/AfterNCalls within a trial: several passes per trial"}


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_psyneulink_on_torch(name: str) -> None:
    """The torch backend steps through the trials like the reference (`TorchRep.run_sequence`), state carried."""
    pytest.importorskip("torch")
    from mdfbridge.backends import get_backend

    exp = _expected(name)
    program = mdfbridge.load_program(DATA / f"{name}.json")
    n = exp["num_trials"]
    rep = get_backend("torch").prepare(program)
    if name in NOT_ON_TORCH:
        with pytest.raises(UnsupportedError, match="scheduling conditions"):
            rep.run_sequence(_inputs(program, exp, (1, n)))
        return
    out = rep.run_sequence(_inputs(program, exp, (1, n)))
    for node, want in exp["outputs"].items():
        np.testing.assert_allclose(np.asarray(out[node])[0].reshape(n, -1), np.asarray(want, dtype=float), rtol=0,
                                   atol=ATOL, err_msg=node)


@pytest.mark.parametrize("name", ("autodiff_sgd", "autodiff_adam"))
def test_after_learning_export_runs_without_the_learning_pathway(name: str) -> None:
    """The TARGET_/LOSS_ nodes PsyNeuLink adds are dropped; the export holds the initial matrices, so it computes
    the numbers from before learning (PsyNeuLink writes no trained weights)."""
    exp = _expected(name)
    program = mdfbridge.load_program(DATA / f"{name}_after_learning.json")
    assert set(program.outputs) == {"ad_out"} and set(program.inputs) == {"ad_in"}
    got = _run_numpy(program, exp)
    np.testing.assert_allclose(got["ad_out"], np.asarray(exp["outputs"]["ad_out"]), rtol=0, atol=ATOL)


def _standard_logistic_doc(args: Dict[str, Any]) -> Dict[str, Any]:
    node = {"input_ports": {"x0": {"shape": [3]}},
            "functions": {"f": {"function": "logistic", "args": {"variable0": "x0", **args}}},
            "output_ports": {"out": {"value": "f"}}}
    return {"m": {"format": "ModECI MDF v0.4", "generating_application": "test",
                  "graphs": {"g": {"nodes": {"n": node}}}}}


def test_standard_logistic_keeps_modeci_mdf_meaning() -> None:
    """A `logistic` call without x_0 or scale is MDF's: offset inside the exponent (modeci-mdf's engine)."""
    pytest.importorskip("modeci_mdf")
    from tests.oracles import modeci_outputs

    doc = _standard_logistic_doc({"gain": 1.7, "bias": 0.3, "offset": 0.4})
    x = np.array([[-0.5, 0.1, 0.8]])
    program = mdfbridge.lower(doc)
    got = run_program(program, {next(iter(program.inputs)): x})
    want = modeci_outputs(doc, {"x0": x})
    g, w = np.asarray(next(iter(got.values()))), np.asarray(next(iter(want.values())))
    np.testing.assert_allclose(g.reshape(w.shape), w, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.ravel(), 1.0 / (1.0 + np.exp(-1.7 * (x.ravel() + 0.3) + 0.4)), atol=1e-15)


def test_logistic_reading_is_chosen_by_the_written_arguments() -> None:
    assert read_call("logistic", {"variable0": "x", "gain": 1.0, "offset": 0.1}).op.name == "logistic"
    pnl = read_call("logistic", {"variable0": "x", "gain": 1.0, "x_0": 0, "scale": 1.2, "offset": 0.1})
    assert pnl.op is REGISTRY["PsyNeuLinkLogistic"]
    x = np.array([-0.5, 0.1, 0.8])
    np.testing.assert_allclose(pnl.op.numpy(variable0=x, gain=1.7, bias=-0.1, x_0=0.0, scale=1.2, offset=0.1),
                               1.2 / (1.0 + np.exp(-1.7 * (x - 0.1))) + 0.1, atol=1e-15)


def test_softmax_adaptive_gain_and_relu_scale_are_refused() -> None:
    with pytest.raises(UnsupportedError, match="ADAPTIVE"):
        read_call("softmax", {"variable0": "x", "gain": "ADAPTIVE", "adapt_scale": 1.0})
    assert read_call("softmax", {"variable0": "x", "gain": 2.0, "adapt_entropy_weighting": 0.95}).ignored == {
        "adapt_entropy_weighting"}
    with pytest.raises(UnsupportedError, match="does not apply scale or offset"):
        read_call("relu", {"variable0": "x", "gain": 1.0, "scale": 2.0})
