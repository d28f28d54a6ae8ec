"""Documents at model-zoo size (issue 13 item 6): MLPs of 1.38 M and 25 M parameters (ResNet-50's count) built as
ONNX MatMul/Add/Relu graphs, through ONNX -> MDF -> ONNX. Prints per model: the ONNX and MDF JSON sizes, seconds
and MB/s of writing (`save_mdf`) and reading (`load_document_dict`) the MDF JSON, `onnx_to_mdf`, `load_program`,
`program_to_onnx`, the whole round trip, and the CLI's `convert x.onnx x.json` and `convert x.json x.yaml` (wall
seconds and peak memory of the subprocess); with --before DIR the CLI rows also for another checkout (its
PYTHONPATH), side by side. Targets: JSON written and read at >= 100 MB/s, ONNX -> MDF of 1.38 M parameters
under 1 s, the 25 M round trip under 60 s and 4 GB.

    python benchmarks/bench_document_io.py [--models 1.38M,25M] [--before DIR] [--timeout S]"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODELS: Dict[str, Sequence[int]] = {  # layer widths: parameters = sum(w_i * w_i+1 + w_i+1)
    "1.38M": (784, 1024, 512, 256, 10),  # 1.38 M (as the wide MLP)
    "25M": (2048, 2048, 2048, 2048, 2048, 2048, 2048, 1000),  # 25.2 M (ResNet-50 has 25.6 M)
}


def mlp(widths: Sequence[int], seed: int = 0) -> onnx.ModelProto:
    """An ONNX MLP: MatMul + Add (+ Relu between layers), random float32 weights."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(rng.standard_normal(b).astype(np.float32) * 0.1, f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", widths[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", widths[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


# the child reports its own peak: the kernel's VmHWM of the process after exec (ru_maxrss of a child also counts
# the pages it shared with this process between fork and exec, which here hold the whole in-process document)
_PEAK_REPORTING_CLI = """import sys
from mdfbridge.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open('/proc/self/status') as status:
        sys.stderr.write('\\nVmHWM ' + next(l for l in status if l.startswith('VmHWM')).split()[1] + '\\n')
sys.exit(code)
"""


def cli(argv: List[str], pythonpath: Optional[str], timeout: float) -> Tuple[str, str]:
    """(wall seconds, peak MiB) of `python -m mdfbridge.cli ARGV` (or why it did not finish); the peak is the
    child's own (/proc VmHWM; without /proc, the children's ru_maxrss, which may count pages shared at fork)."""
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    proc_fs = os.path.exists("/proc/self/status")
    command = [sys.executable, "-c", _PEAK_REPORTING_CLI] if proc_fs else [sys.executable, "-m", "mdfbridge.cli"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    try:
        proc = subprocess.run([*command, *argv], env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} (killed)", "-"
    wall = time.perf_counter() - t
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if proc_fs and lines and lines[-1].startswith("VmHWM "):
        peak_kib = int(lines.pop().split()[1])
        peak = f"{peak_kib / 1024:.0f}"
    else:
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak = f"{rss / 1024:.0f}" if rss > before else "<= earlier"
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {(lines or [''])[-1][:60]}", "-"
    return f"{wall:.1f}", peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="1.38M,25M", help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--before", help="another mdfbridge checkout for the CLI rows (PYTHONPATH)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a CLI run is killed")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from mdfbridge.api import load_program, save_mdf
    from mdfbridge.document import load_document_dict
    from mdfbridge.exporters.onnx import program_to_onnx
    from mdfbridge.importers.onnx import onnx_to_mdf

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            widths = MODELS[name]
            src = Path(tmp) / f"mlp{name}.onnx"
            onnx.save(mlp(widths), str(src))
            params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
            out = Path(tmp) / f"mlp{name}.json"
            t_import, doc = timed(lambda s=src: onnx_to_mdf(str(s)))
            t_save, _ = timed(lambda d=doc, o=out: save_mdf(d, str(o)))
            del doc
            mb = out.stat().st_size / 1e6
            t_read, _ = timed(lambda o=out: load_document_dict(str(o)))
            t_load, prog = timed(lambda o=out: load_program(str(o)))
            t_export, model = timed(lambda p=prog: program_to_onnx(p))
            del prog, model
            row = {"model": f"{name} ({params / 1e6:.2f} M params)", "onnx MB": f"{src.stat().st_size / 1e6:.1f}",
                   "MDF JSON MB": f"{mb:.1f}", "onnx_to_mdf s": f"{t_import:.2f}",
                   "save_mdf s (MB/s)": f"{t_save:.2f} ({mb / t_save:.0f})",
                   "read s (MB/s)": f"{t_read:.2f} ({mb / t_read:.0f})", "load_program s": f"{t_load:.2f}",
                   "program_to_onnx s": f"{t_export:.2f}",
                   "ONNX->MDF->ONNX s": f"{t_import + t_save + t_load + t_export:.1f}"}
            for label, path in (("after", None), ("before", args.before)):
                if label == "before" and not path:
                    continue
                j = Path(tmp) / f"cli_{label}{name}.json"
                row[f"CLI convert onnx->json s, MiB ({label})"] = ", ".join(
                    cli(["convert", str(src), str(j)], path, args.timeout))
                row[f"CLI convert json->yaml s, MiB ({label})"] = ", ".join(
                    cli(["convert", str(j), str(j.with_suffix(".yaml"))], path, args.timeout)
                    if j.exists() else ("-", "-"))
            rows.append(row)
            print(" | ".join(f"{k}: {v}" for k, v in row.items()), flush=True)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(row.get(k, "-") for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
