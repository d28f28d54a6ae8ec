"""The `mdfbridge` command line on the bundled XOR model, step by step, as a user types it: validate, info, write a
data template, train from a csv file, run the trained MDF, convert it to ONNX, run that on onnxruntime, and draw
the graph (skipped when graphviz's `dot` is not installed). Every file goes into OUT_DIR (default: a new temporary
directory); nothing is written beside the example.

    python examples/cli_walkthrough.py [OUT_DIR]

Checks at the end: the training loss went down, and onnxruntime's outputs (float32) equal the trained MDF's
(numpy reference, float64) within 1e-6. Prints OK (exit 0) or MISMATCH (exit 1)."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = HERE / "xor.mdf.json"
DATA = HERE / "xor_data.csv"


def _shown(arg: object) -> str:
    """A path as the user would type it: relative to the current directory when it lies inside it."""
    if isinstance(arg, Path):
        try:
            return str(arg.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(arg)
    return str(arg)


def mdfbridge(*args: object) -> str:
    """Run `mdfbridge ARGS` (as `python -m mdfbridge.cli`), echo the command and its output; returns stdout."""
    argv = [str(a) for a in args]
    print("$ mdfbridge " + " ".join(shlex.quote(_shown(a)) for a in args), flush=True)
    proc = subprocess.run([sys.executable, "-m", "mdfbridge.cli", *argv], capture_output=True, text=True)
    for line in (proc.stdout + proc.stderr).strip().splitlines():
        print("  " + line)
    if proc.returncode != 0:
        raise SystemExit(f"the command above failed with exit status {proc.returncode}")
    return proc.stdout


def main(out_dir: Path) -> int:
    """Run the walk-through writing into out_dir; returns 0 when the checks pass."""
    out_dir.mkdir(parents=True, exist_ok=True)
    trained, onnx = out_dir / "xor.trained.mdf.json", out_dir / "xor.trained.onnx"
    mdfbridge("validate", MODEL)
    mdfbridge("info", MODEL)
    mdfbridge("data", "template", MODEL, "--format", "csv", "--out", out_dir / "xor.template.csv")
    summary = mdfbridge("train", MODEL, "--data", DATA, "--epochs", 1000, "--lr", 0.5, "--optimizer", "sgd",
                        "--loss", "mse", "--minibatch-size", 1, "--out", trained, "--plot", out_dir / "xor.loss.png",
                        "--quiet")
    first, last = map(float, re.search(r"loss (\S+) -> (\S+);", summary).groups())  # type: ignore[union-attr]
    mdfbridge("run", trained, "--inputs", DATA, "--out", out_dir / "mdf_outputs.npz")
    mdfbridge("convert", trained, onnx)
    mdfbridge("info", onnx)
    mdfbridge("run", onnx, "--inputs", DATA, "--provider", "cpu", "--out", out_dir / "onnx_outputs.npz")
    if shutil.which("dot"):
        mdfbridge("graph", trained, "--out", out_dir / "xor.png")
    else:
        print("(skipped `mdfbridge graph`: graphviz's `dot` program is not installed)")
    with np.load(out_dir / "mdf_outputs.npz") as a, np.load(out_dir / "onnx_outputs.npz") as b:
        mdf_out, onnx_out = a["output"], b["output"]
    err = float(np.max(np.abs(mdf_out - onnx_out)))
    print(f"training loss {first:.6g} -> {last:.6g}; max |onnxruntime - MDF| = {err:.1e} (tolerance 1e-6)")
    print(f"outputs (targets 0 1 1 0): {np.round(mdf_out[:, 0], 4).tolist()}; files in {out_dir}")
    ok = last < first and err <= 1e-6
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory(prefix="mdfbridge_walkthrough_") as tmp:
        sys.exit(main(Path(tmp)))
