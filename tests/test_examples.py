"""The bundled examples run end to end: each exits 0 and ends with OK (every script checks its own numbers
against an independent oracle: modeci-mdf's engine, torch, onnxruntime, a hand-written numpy loop), prints what it
claims, writes its files into the folder it is given (`--out`) and nothing into the repository tree."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow  # each example runs in a subprocess (seconds each)
EXAMPLES = REPO / "examples"
# The examples' networks are tiny: torch's intra-op thread pool only adds waiting, and on a busy 2-core machine
# it made them 20x slower (a 16 x 8 x 4 GRU step with backward: 70 ms with 2 threads, 3.5 ms with 1).
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def git_status() -> str:
    """The tree's changes, new untracked files and new ignored paths (git-ignored output such as
    examples/*.onnx counts; Python's __pycache__ folders do not)."""
    out = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if "__pycache__" not in line)


def run_example(name: str, out: Path, *args: str) -> str:
    """Run examples/<name>.py with `--out out` from an unrelated folder; returns stdout (asserts exit 0 and OK,
    and that the repository tree is unchanged)."""
    before = git_status()
    res = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--out", str(out), *args],
                         capture_output=True, text=True, timeout=300, cwd=out.parent, env=ENV)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "OK", res.stdout
    assert git_status() == before, f"{name}.py changed the repository tree"
    return res.stdout


def numbers_after(text: str, label: str) -> List[float]:
    """The numbers printed right after each occurrence of `label` (e.g. 'max |...| = 1.2e-16')."""
    return [float(m) for m in re.findall(re.escape(label) + r"\s*([-+0-9.eE]+)", text)]


def written(out: Path) -> List[str]:
    return sorted(p.name for p in out.iterdir())


def test_xor_demo_runs_and_agrees_with_modeci(tmp_path):
    # the demo writes beside itself (as `make demo` runs it): a copy runs, so the repository tree stays as it is
    # for the tests that compare it before and after (pytest-xdist runs them at the same time)
    folder = tmp_path / "examples"
    folder.mkdir()
    for name in ("xor_demo.py", "xor_model.py"):
        shutil.copyfile(EXAMPLES / name, folder / name)
    res = subprocess.run([sys.executable, str(folder / "xor_demo.py")], capture_output=True, text=True,
                         timeout=300, env=ENV)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("OK")
    assert "tolerance 1e-12" in res.stdout
    assert (folder / "xor.mdf.json").read_bytes() == (EXAMPLES / "xor.mdf.json").read_bytes()  # (as committed)


def test_example_gru_sequences(tmp_path):
    out = run_example("gru_sequences", tmp_path / "out")
    found = re.search(r"test accuracy .*: ([0-9.]+) before -> ([0-9.]+) after", out)
    assert found, out
    before, after = (float(v) for v in found.groups())
    assert after > 0.85 and after > before + 0.3
    losses = [float(v) for v in re.findall(r"\d+: ([0-9.]+)", out.splitlines()[1])]
    assert losses[-1] < 0.5 * losses[0]
    assert numbers_after(out, "plain torch.nn.GRU loop's| over 6 tensors =")[0] < 1e-9
    assert numbers_after(out, "rebuilt with composition_from_mdf: GRU blocks ['GRU'], max diff")[0] < 1e-12


def test_example_nested_composition(tmp_path):
    out = run_example("nested_composition", tmp_path / "out")
    assert "nested ids: inner__h1, inner__h2" in out
    assert "nested compositions ['inner'], outputs identical: True" in out
    assert numbers_after(out, "plain torch loop's| over ['b_h1', 'w_in', 'w_mid', 'w_out'] =")[0] < 1e-10
    assert written(tmp_path / "out") == ["nested.mdf.json", "nested.trained.mdf.json"]


def test_example_onnx_roundtrip(tmp_path):
    out = run_example("onnx_roundtrip", tmp_path / "out")
    assert "ops ['Gemm', 'Tanh', 'Gemm', 'Softmax']" in out
    f32, f64 = numbers_after(out, "max |onnxruntime - MDF| =")
    assert f32 < 1e-6 and f64 < 1e-12
    assert written(tmp_path / "out") == ["mlp.mdf.json", "mlp.mdfbridge.float32.onnx", "mlp.mdfbridge.float64.onnx",
                                         "mlp.onnx"]


def test_example_torch_import_training(tmp_path):
    out = run_example("torch_import_training", tmp_path / "out")
    assert numbers_after(out, "Net trained directly in torch| =")[0] < 1e-10
    assert numbers_after(out, "Net trained directly| =")[0] < 1e-10
    assert written(tmp_path / "out") == ["net.loop.mdf.json", "net.mdf.json", "net.trained.mdf.json"]


def test_example_llvm_training(tmp_path):
    out = run_example("llvm_training", tmp_path / "out")
    assert "(compile " in out and "(cached code, run " in out
    assert numbers_after(out, "trained matrices:")[0] < 1e-9
    assert numbers_after(out, "minibatch losses:")[0] < 1e-9
    assert written(tmp_path / "out") == ["xor.mdf.json"]


def test_example_stateful_model(tmp_path):
    out = run_example("stateful_model", tmp_path / "out")
    assert "states ['leak.v', 'fn.V', 'fn.W']" in out
    loop, torch_diff = numbers_after(out, "Euler loop| ="), numbers_after(out, "numpy reference| =")
    assert len(loop) == 2 and max(loop) < 1e-12 and max(torch_diff) < 1e-12
    coarse, fine = numbers_after(out, "(max diff")
    assert 5 < coarse / fine < 20  # Euler's error against the analytic solution shrinks with dt (10x here)
    assert written(tmp_path / "out") == ["neurons.mdf.json"]


def test_example_deploy_onnxruntime(tmp_path):
    out = run_example("deploy_onnxruntime", tmp_path / "out")
    assert re.search(r"session runs on (CPU|CUDA)ExecutionProvider", out)
    assert len(re.findall(r"batch +\d+: +[0-9.]+ ms per call", out)) == 4
    assert numbers_after(out, "numpy reference (float64)| =")[0] < 1e-6
    assert numbers_after(out, "accuracy")[0] > 0.9
    assert written(tmp_path / "out") == ["blobs.trained.onnx"]


def test_example_sequence_learning(tmp_path):
    out = run_example("sequence_learning", tmp_path / "out")
    assert numbers_after(out, "hand-written torch loop| =")[0] < 1e-12
    pvars = dict(re.findall(r"^(\S+) +pVar ([-0-9.]+)", out, re.M))
    assert set(pvars) == {"bptt", "tbptt", "eprop", "rls", "rls-readout", "gru"}
    assert float(pvars["bptt"]) >= 0.5 and float(pvars["rls"]) >= 0.5 and float(pvars["gru"]) >= 0.9
    assert written(tmp_path / "out") == ["wilson_cowan.mdf.json", "wilson_cowan.trained.mdf.json"]


def test_example_force_learning(tmp_path):
    out = run_example("force_learning", tmp_path / "out")
    assert numbers_after(out, "on its own, steps 3000-3600: pVar")[0] > 0.9
    assert written(tmp_path / "out") == ["force.mdf.json", "force.trained.mdf.json"]


def test_example_predictive_coding_two_moons(tmp_path):
    out = run_example("predictive_coding_two_moons", tmp_path / "out")
    accuracy = numbers_after(out, "test accuracy")
    assert len(accuracy) == 8 and accuracy[-1] >= 95.0, out  # (the 8 epochs')
    assert numbers_after(out, "test accuracy of the written file:") == accuracy[-1:]
    assert numbers_after(out, "backend llvm: accuracy on the test set")[0] >= 95.0, out
    assert written(tmp_path / "out") == ["two_moons.mdf.json", "two_moons.trained.mdf.json",
                                         "two_moons_decision_boundary.png"]


@pytest.mark.parametrize("name", ["gru_sequences", "nested_composition", "onnx_roundtrip", "torch_import_training",
                                  "llvm_training", "stateful_model", "deploy_onnxruntime", "cli_walkthrough",
                                  "sequence_learning", "force_learning", "predictive_coding_two_moons"])
def test_examples_readme_lists_every_example(name):
    text = (EXAMPLES / "README.md").read_text()
    assert f"`{name}.py`" in text


def test_cli_walkthrough_trains_converts_and_agrees_with_onnxruntime(tmp_path):
    import numpy as np

    from mdfbridge.api import load_program
    from mdfbridge.importers.reference import run_program

    res = subprocess.run([sys.executable, str(EXAMPLES / "cli_walkthrough.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=600, env=ENV)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("OK")
    first, last = map(float, res.stdout.split("training loss ", 1)[1].split(";", 1)[0].split(" -> "))
    assert last < first / 10
    for name in ("xor.template.csv", "xor.trained.mdf.json", "xor.loss.png", "xor.trained.onnx",
                 "mdf_outputs.npz", "onnx_outputs.npz"):
        assert (tmp_path / name).is_file(), name
    xor_inputs = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    want = run_program(load_program(tmp_path / "xor.trained.mdf.json"), {"input": xor_inputs})["output"]
    with np.load(tmp_path / "mdf_outputs.npz") as mdf, np.load(tmp_path / "onnx_outputs.npz") as onnx:
        np.testing.assert_array_equal(mdf["output"], want)
        np.testing.assert_allclose(onnx["output"], want, rtol=0, atol=1e-6)
    assert np.all((want[:, 0] > 0.5) == np.array([False, True, True, False]))  # XOR learned
