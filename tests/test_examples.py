"""The bundled examples run end to end."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_xor_demo_runs_and_agrees_with_modeci():
    res = subprocess.run([sys.executable, str(REPO / "examples" / "xor_demo.py")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("OK")
    assert "tolerance 1e-12" in res.stdout


def test_cli_walkthrough_trains_converts_and_agrees_with_onnxruntime(tmp_path):
    import numpy as np

    from mdfbridge.api import load_program
    from mdfbridge.importers.reference import run_program

    res = subprocess.run([sys.executable, str(REPO / "examples" / "cli_walkthrough.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
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
