"""`mdfbridge train` on PsyNeuLink 0.21 AutodiffComposition exports (tests/data/psyneulink): trained with the
settings the file records, to PsyNeuLink's own learned matrices and outputs; the written file differs from the
input only in the learnable arrays; PsyNeuLink reloads it and computes mdfbridge's trained outputs (optional:
needs a PsyNeuLink python, MDFBRIDGE_PNL_PYTHON or /work/pnl-venv/bin/python)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdfbridge import load_program
from mdfbridge.importers.reference import run_program

DATA = Path(__file__).parent / "data" / "psyneulink"
PNL_PYTHON = os.environ.get("MDFBRIDGE_PNL_PYTHON") or "/work/pnl-venv/bin/python"

pytestmark = pytest.mark.slow  # `mdfbridge train` subprocesses to PsyNeuLink's numbers, and PsyNeuLink's own python


def shaped(prog, name: str, trials) -> np.ndarray:
    """PsyNeuLink's per-trial values in the port shape the program has ((1, n) for PsyNeuLink's 2-D variables)."""
    arr = np.asarray(trials, dtype=float)
    spec = prog.inputs.get(name)
    shape = tuple(spec.shape) if spec is not None and spec.shape is not None else arr.shape[1:]
    return arr.reshape((len(arr),) + shape)


def matrices(doc: dict) -> dict:
    """Projection name -> the matrix its dummy node holds (PsyNeuLink writes `<proj>_dummy_node`)."""
    (model,) = doc.values()
    (graph,) = model["graphs"].values()
    out = {}
    for nid, node in graph["nodes"].items():
        if nid.endswith("_dummy_node"):
            (fn,) = node["functions"].values()
            out[nid[: -len("_dummy_node")]] = np.asarray(fn["args"]["B"], dtype=float)
    return out


def train_cli(tmp_path: Path, name: str, *extra: str) -> Path:
    expected = json.loads((DATA / f"{name}.expected.json").read_text())
    prog = load_program(DATA / f"{name}.json")
    training = expected["training"]
    data = {k: shaped(prog, k, v) for k, v in training["inputs"].items()}
    data.update({k: np.asarray(v, dtype=float) for k, v in training["targets"].items()})
    np.savez(tmp_path / "d.npz", **data)
    out = tmp_path / "trained.json"
    proc = subprocess.run([sys.executable, "-m", "mdfbridge.cli", "train", str(DATA / f"{name}.json"), "--data",
                           str(tmp_path / "d.npz"), "--epochs", str(training["epochs"]), "--out", str(out),
                           "--quiet", *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "settings the document records: learning_rate=0.5" in proc.stdout  # PsyNeuLink recorded the rate
    return out


@pytest.mark.parametrize("name,extra", [("autodiff_sgd", ()), ("autodiff_adam", ("--optimizer", "adam"))])
def test_training_a_psyneulink_export_gives_psyneulinks_learned_weights(tmp_path, name, extra):
    """PsyNeuLink records learning_rate and loss_spec but not the optimizer: adam is given on the command line."""
    expected = json.loads((DATA / f"{name}.expected.json").read_text())
    out = train_cli(tmp_path, name, *extra)
    trained = matrices(json.loads(out.read_text()))
    for proj, want in expected["trained_matrices"].items():
        np.testing.assert_allclose(trained[proj], np.asarray(want), rtol=0, atol=1e-10, err_msg=proj)
    prog = load_program(out)
    x = shaped(prog, "ad_in", expected["inputs"]["ad_in"])
    got = run_program(prog, {"ad_in": x})["ad_out"]
    np.testing.assert_allclose(got.reshape(-1), np.ravel(expected["outputs_after_learning"]["ad_out"]),
                               rtol=0, atol=1e-10)


def test_the_written_file_differs_from_psyneulinks_only_in_the_learnable_arrays(tmp_path):
    out = train_cli(tmp_path, "autodiff_sgd")
    original = json.loads((DATA / "autodiff_sgd.json").read_text())
    written = json.loads(out.read_text())
    assert {k: v.shape for k, v in matrices(written).items()} == {k: v.shape for k, v in matrices(original).items()}
    for doc in (original, written):  # blank the learnable arrays: everything else is identical
        (graph,) = next(iter(doc.values()))["graphs"].values()
        for nid, node in graph["nodes"].items():
            if nid.endswith("_dummy_node"):
                (fn,) = node["functions"].values()
                fn["args"]["B"] = None
    assert written == original


@pytest.mark.skipif(not Path(PNL_PYTHON).exists(), reason=f"no PsyNeuLink python at {PNL_PYTHON} (set "
                                                          "MDFBRIDGE_PNL_PYTHON to run PsyNeuLink itself)")
def test_psyneulink_reloads_the_trained_file_and_computes_mdfbridges_trained_outputs(tmp_path):
    out = train_cli(tmp_path, "autodiff_sgd")
    expected = json.loads((DATA / "autodiff_sgd.expected.json").read_text())
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(expected["inputs"]))
    proc = subprocess.run([PNL_PYTHON, str(DATA / "pnl_run.py"), str(out), str(inputs)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pnl = json.loads(proc.stdout)["outputs"]["ad_out"]
    prog = load_program(out)
    ours = run_program(prog, {"ad_in": shaped(prog, "ad_in", expected["inputs"]["ad_in"])})["ad_out"]
    np.testing.assert_allclose(np.ravel(pnl), ours.reshape(-1), rtol=0, atol=1e-12)
