"""MDF written by mdfbridge, loaded and run in real PsyNeuLink 0.21: the same numbers (optional).

PsyNeuLink is never imported here: mdfbridge does not depend on it. The tests run
tests/data/psyneulink/pnl_run.py (`generate_script_from_mdf`, exec, `comp.run`) with a PsyNeuLink python in a
subprocess: $MDFBRIDGE_PNL_PYTHON, else /work/pnl-venv/bin/python where it exists; without one they skip.

Tolerance: max abs diff <= 1e-12 against mdfbridge's numpy reference (`Composition.evaluate`).
What PsyNeuLink cannot read (README.md, "MDF in PsyNeuLink") is pinned by the expected failure.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import pytest
from conftest import make_xor

from mdfbridge import (
    BiasMechanism,
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
)

HERE = Path(__file__).parent
PNL_RUN = HERE / "data" / "psyneulink" / "pnl_run.py"
TOL = 1e-12
DEFAULT_PNL_PYTHON = "/work/pnl-venv/bin/python"
pytestmark = pytest.mark.slow  # each case runs PsyNeuLink in its own python (skipped without one)
XOR_IN = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]


def _pnl_python() -> str:
    py = os.environ.get("MDFBRIDGE_PNL_PYTHON") or (DEFAULT_PNL_PYTHON if os.path.exists(DEFAULT_PNL_PYTHON) else "")
    if not py:
        pytest.skip("no PsyNeuLink python: set MDFBRIDGE_PNL_PYTHON to a python with psyneulink 0.21 installed")
    return py


def run_in_pnl(path: Path, inputs: Dict[str, Any], tmp: Path) -> subprocess.CompletedProcess:
    inp = tmp / "inputs.json"
    inp.write_text(json.dumps(inputs))
    return subprocess.run([_pnl_python(), str(PNL_RUN), str(path), str(inp)], capture_output=True, text=True,
                          timeout=600)


def pnl_outputs(comp: Composition, inputs: Dict[str, Any], tmp: Path) -> Dict[str, np.ndarray]:
    path = tmp / f"{comp.name}.mdf.json"
    comp.save_mdf(path)
    proc = run_in_pnl(path, inputs, tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {k: np.asarray(v, dtype=float) for k, v in json.loads(proc.stdout)["outputs"].items()}


def compare(comp: Composition, inputs: Dict[str, Any], tmp: Path) -> float:
    """Max abs diff between PsyNeuLink's outputs and mdfbridge's, per output node (MDF ids)."""
    ours = comp.evaluate(inputs)
    ids = {f.mechanism.name: f.id for f in comp.flatten()[0]}
    theirs = pnl_outputs(comp, {ids.get(k, k): v for k, v in inputs.items()}, tmp)
    assert set(theirs) == {ids[k] for k in ours}
    diff = 0.0
    for name, val in ours.items():
        got = theirs[ids[name]].reshape(np.shape(val))
        diff = max(diff, float(np.max(np.abs(got - val))))
    assert diff <= TOL, diff
    return diff


def three_layer(fn: Any, seed: int = 1) -> Tuple[Composition, Dict[str, Any]]:
    rng = np.random.default_rng(seed)
    a = TransferMechanism("a", 3)
    b = TransferMechanism("b", 4, fn)
    c = TransferMechanism("c", 2, fn)
    comp = Composition(f"net_{type(fn).__name__.lower()}")
    comp.add_linear_processing_pathway([a, MappingProjection(matrix=rng.uniform(-1, 1, (3, 4)), name="a_to_b"), b,
                                        MappingProjection(matrix=rng.uniform(-1, 1, (4, 2)), name="b_to_c"), c])
    comp.add_projection(MappingProjection(matrix=rng.uniform(-1, 1, (3, 2)), name="a_to_c"), a, c)  # 2 afferents
    return comp, {"a": rng.uniform(-2, 2, (5, 3)).tolist()}


FUNCTIONS = [Linear(slope=1.5, intercept=-0.2), Logistic(), Logistic(gain=1.7, bias=0.3, offset=0.4),
             Tanh(gain=0.8, bias=-0.2, offset=0.05, scale=1.3), ReLU(gain=1.4, bias=0.1, leak=0.05),
             SoftMax(gain=2.0), Exponential(rate=0.7, bias=-0.3, scale=0.9, offset=0.2)]


def test_xor(tmp_path: Path) -> None:
    compare(make_xor(), {"input": XOR_IN}, tmp_path)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=repr)
def test_three_layer_net(fn: Any, tmp_path: Path) -> None:
    comp, inputs = three_layer(fn)
    compare(comp, inputs, tmp_path)


def test_trained_xor(tmp_path: Path) -> None:
    comp = make_xor()
    before = comp.evaluate({"input": XOR_IN})["output"]
    comp.learn({"input": XOR_IN}, {"output": [[0.0], [1.0], [1.0], [0.0]]}, epochs=50, learning_rate=0.5)
    assert not np.allclose(comp.evaluate({"input": XOR_IN})["output"], before)
    compare(comp, {"input": XOR_IN}, tmp_path)


def test_bias_nodes_and_nesting(tmp_path: Path) -> None:
    """A nested composition (mdfbridge writes it flattened; PsyNeuLink gets one flat Composition) with a bias."""
    rng = np.random.default_rng(3)
    inner_in = TransferMechanism("inner_in", 3, Logistic(gain=2.0))
    inner_out = TransferMechanism("inner_out", 2, Tanh())
    inner = Composition("inner")
    inner.add_linear_processing_pathway([inner_in, MappingProjection(matrix=rng.uniform(-1, 1, (3, 2))), inner_out])
    outer_in = TransferMechanism("outer_in", 2)
    outer_out = TransferMechanism("outer_out", 2, Linear(slope=2.0, intercept=1.0))
    outer = Composition("outer")
    outer.add_linear_processing_pathway([outer_in, MappingProjection(matrix=rng.uniform(-1, 1, (2, 3))), inner,
                                         MappingProjection(matrix=rng.uniform(-1, 1, (2, 2))), outer_out])
    outer.add_projection(MappingProjection(matrix=rng.uniform(-1, 1, (1, 2)), name="bias_proj"),
                         BiasMechanism("bias", value=0.5), outer_out)
    compare(outer, {"outer_in": rng.uniform(-1, 1, (3, 2)).tolist()}, tmp_path)


def test_gru_is_not_read(tmp_path: Path) -> None:
    """PsyNeuLink 0.21 cannot read mdfbridge's GRU block (gate-form nodes, onnx:: ops, `value` expressions of
    several ports; PsyNeuLink cannot export its own GRUComposition either): its reader stops on the gate edges."""
    gru = GRUComposition(input_size=2, hidden_size=3, name="gru")
    path = tmp_path / "gru.mdf.json"
    gru.save_mdf(path)
    proc = run_in_pnl(path, {"gru__input": [[[0.1, 0.2]]]}, tmp_path)
    assert proc.returncode != 0
    assert "TypeError: 'NoneType' object is not subscriptable" in proc.stderr, proc.stderr[-2000:]
