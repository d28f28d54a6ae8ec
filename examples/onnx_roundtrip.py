"""ONNX in and out: a small torch MLP exported by torch.onnx.export, imported as MDF (onnx_to_mdf), saved as MDF
JSON, run on mdfbridge's numpy reference, exported back to ONNX (program_to_onnx) and run on onnxruntime; the max
differences between every pair are printed.

    python examples/onnx_roundtrip.py [--out DIR]   (writes mlp.onnx, mlp.mdf.json,
    mlp.mdfbridge.float32.onnx, mlp.mdfbridge.float64.onnx)
"""
from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from example_paths import output_dir

from mdfbridge import load_program, run_program, save_mdf
from mdfbridge.exporters.onnx import program_to_onnx, save_onnx
from mdfbridge.importers.onnx import onnx_to_mdf


def main() -> int:
    out = output_dir(__doc__.splitlines()[0])
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3), torch.nn.Softmax(dim=-1))
    net.eval()
    x = torch.randn(32, 4)
    with torch.no_grad():
        want = net(x).numpy()

    src = out / "mlp.onnx"
    exported = torch.onnx.export(net, (x,), input_names=["x"], output_names=["y"], dynamo=True, verbose=False,
                                 dynamic_shapes=({0: torch.export.Dim("batch")},))
    exported.save(str(src))
    ops = [n.op_type for n in onnx.load(str(src)).graph.node]
    print(f"1. torch.onnx.export -> {src.name}: ops {ops}")

    mdf_path = out / "mlp.mdf.json"
    save_mdf(onnx_to_mdf(src), mdf_path)
    prog = load_program(mdf_path)
    print(f"2. onnx_to_mdf -> {mdf_path.name}: inputs {list(prog.inputs)}, outputs {list(prog.outputs)}, "
          f"learnable {sorted(prog.learnable_params())}")

    ref = run_program(prog, {"x": x.numpy()})["y"]
    print(f"3. numpy reference on {len(x)} inputs: max |MDF - torch| = {np.max(np.abs(ref - want)):.1e} "
          "(torch runs float32)")

    diffs = {}
    for dtype in ("float32", "float64"):
        path = out / f"mlp.mdfbridge.{dtype}.onnx"
        save_onnx(program_to_onnx(prog, dtype=dtype), path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"x": x.numpy().astype(dtype)})[0]
        diffs[dtype] = float(np.max(np.abs(got - ref)))
        print(f"{4 if dtype == 'float32' else 5}. program_to_onnx ({dtype}) -> {path.name} on onnxruntime: "
              f"max |onnxruntime - MDF| = {diffs[dtype]:.1e}")
    ok = np.max(np.abs(ref - want)) < 1e-6 and diffs["float32"] < 1e-6 and diffs["float64"] < 1e-12
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
