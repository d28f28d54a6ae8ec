"""ONNX import at scale (issue 12): Relu/Add/MatMul chains of 1,000 / 10,000 / 100,000 nodes on (N, 4) tensors.
Prints, per size, the seconds of the ONNX -> MDF dict import (`onnx_to_mdf`, the importer's part), of writing the
MDF file (`save_mdf`: schema validation and JSON), and of the whole `mdfbridge convert x.onnx x.mdf.json` command
(a subprocess), with the per-node cost, so super-linear parts show as a growing per-node figure. Target: the
100,000-node chain converts in under 10 s.

    python benchmarks/bench_onnx_import_scale.py [--sizes 1000,10000,100000] [--no-cli] [--no-save]
        [--timeout S]"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def chain(n: int) -> onnx.ModelProto:
    """An n-node Relu/Add/MatMul chain: y = ... relu(x) + b) @ W ..., x of shape (N, 4)."""
    nodes, prev = [], "x"
    for i in range(n):
        op = ("Relu", "Add", "MatMul")[i % 3]
        out = "y" if i == n - 1 else f"t{i}"
        ins = [prev] if op == "Relu" else [prev, "b" if op == "Add" else "W"]
        nodes.append(helper.make_node(op, ins, [out], name=f"n{i}"))
        prev = out
    graph = helper.make_graph(nodes, f"chain{n}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(np.eye(4, dtype=np.float32) * 0.5, "W"),
                               numpy_helper.from_array(np.full(4, 0.1, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="comma-separated node counts")
    ap.add_argument("--no-cli", action="store_true", help="skip the `mdfbridge convert` subprocess")
    ap.add_argument("--no-save", action="store_true", help="skip save_mdf (schema validation and JSON)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a convert subprocess is killed")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # (the shared-weight warning names every user)
    from mdfbridge.api import save_mdf
    from mdfbridge.importers.onnx import onnx_to_mdf

    print("| nodes | import s | import us/node | save_mdf s | convert (CLI) s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"chain{n}.onnx"
            onnx.save(chain(n), str(path))
            t0 = time.perf_counter()
            doc = onnx_to_mdf(str(path), arrays=True)  # (as `mdfbridge convert` imports)
            t_import = time.perf_counter() - t0
            t_save = "-"
            if not args.no_save:
                t0 = time.perf_counter()
                save_mdf(doc, str(Path(tmp) / f"chain{n}.mdf.json"), plain=True)  # (as `mdfbridge convert` saves)
                t_save = f"{time.perf_counter() - t0:.2f}"
            t_cli = "-"
            if not args.no_cli:
                t0 = time.perf_counter()
                try:
                    subprocess.run([sys.executable, "-m", "mdfbridge.cli", "convert", str(path),
                                    str(Path(tmp) / f"cli{n}.mdf.json")], check=True, timeout=args.timeout,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    t_cli = f"{time.perf_counter() - t0:.2f}"
                except subprocess.TimeoutExpired:
                    t_cli = f"> {args.timeout:.0f} (killed)"
            print(f"| {n:,} | {t_import:.2f} | {1e6 * t_import / n:.0f} | {t_save} | {t_cli} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
