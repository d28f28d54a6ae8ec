"""Learning algorithms over time (issue 14 item 6): the task of examples/sequence_learning.py (NeuroTorch's
Wilson-Cowan tutorial task: N = 50 units forecast T = 100 steps of smooth traces from the first step; pVar =
1 - MSE / Var) trained by every mdfbridge algorithm, with NeuroTorch 0.0.2 side by side when its venv is there
(benchmarks/make_neurotorch_venv.sh; its column runs benchmarks/neurotorch_wc.py on the same traces and initial
weights). Each run is its own subprocess, so its peak memory (max RSS) is its own.

Printed: algorithm x (pVar, ms an iteration, peak MB) for mdfbridge and NeuroTorch, the ratio of their times an
iteration (bptt-llvm: BPTT compiled on the llvm backend, its time including the compile, and the native run's
alone), and e-prop's memory against BPTT's as the sequence grows (N = 400, T = 200, 800, 3200: e-prop keeps no
sequence for a backward pass). Times are whole training runs over iterations; torch's one-time import on the first
optimizer (torch._dynamo, about 1.8 s) is paid before timing on both sides.

    python benchmarks/bench_sequence_learning.py [--iterations 100] [--neurotorch-python PATH] [--no-memory]
        [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "examples"))
sys.path.insert(0, str(REPO))
import sequence_learning as task  # noqa: E402

ALGORITHMS = ("bptt", "bptt-float32", "bptt-llvm", "tbptt", "eprop", "rls", "rls-readout", "gru")
# ours -> NeuroTorch's
NEUROTORCH = {"bptt": "bptt", "bptt-float32": "bptt", "bptt-llvm": "bptt", "tbptt": "tbptt", "eprop": "eprop",
              "rls": "rls"}
DEFAULT_NT = Path("/work/nt-venv/bin/python")


def peak_mb() -> float:
    """This process's peak resident memory, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(name: str, iterations: int, steps: int, units: int) -> Dict[str, Any]:
    """One algorithm on the task (in this process): pVar, seconds an iteration, peak MB."""
    import torch

    torch.set_num_threads(1)
    # torch's first optimizer imports torch._dynamo (about 1.8 s here, once a process); NeuroTorch's column builds
    # its optimizer before its timed Trainer.train, so the same one-time cost is paid here before timing
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    traces = task.smooth_traces(n=units, steps=steps)
    if name == "bptt-llvm":  # (cold: the disk cache off, so the time includes compiling)
        os.environ["MDFBRIDGE_LLVM_CACHE"] = "0"
    if name == "gru":
        got = task.train_gru(iterations, traces)
    else:
        got = task.train_rate_network(name, iterations, traces)
    out = {"pvar": got["pvar"], "seconds_per_iteration": got["seconds_per_iteration"], "peak_rss_mb": peak_mb()}
    if name == "bptt-llvm":
        from mdfbridge.importers import llvm

        out["native_seconds_per_iteration"] = got["native_seconds_per_iteration"]
        out["compile_seconds"] = llvm.stats["last_compile_seconds"]
    return out


def subprocess_json(cmd: List[str], timeout: float) -> Dict[str, Any]:
    """The JSON object a command prints last ({'error': ...} when it fails)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:200]}
    return dict(json.loads(lines[-1]))


def neurotorch_task(path: Path) -> None:
    """The task file neurotorch_wc.py reads: the same traces and initial weights."""
    np.savez(path, traces=task.smooth_traces(), W0=task.initial_weights(), dt=task.DT, tau=task.TAU,
             learning_rate=0.02, backward_time_steps=10)


def fmt(row: Dict[str, Any]) -> str:
    if "error" in row:
        return f"{'-':>6s} {'-':>9s} {'-':>7s}  ({row['error'][:60]})"
    return f"{row['pvar']:6.3f} {1e3 * row['seconds_per_iteration']:9.1f} {row['peak_rss_mb']:7.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--neurotorch-python", default=str(DEFAULT_NT) if DEFAULT_NT.exists() else None,
                    help=f"NeuroTorch's venv python (default {DEFAULT_NT} when it exists; none: no NeuroTorch column)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory-against-length runs")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=task.T, help=argparse.SUPPRESS)
    ap.add_argument("--units", type=int, default=task.N, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.iterations, args.steps, args.units)))
        return 0
    me = [sys.executable, str(Path(__file__).resolve())]
    rows: Dict[str, Dict[str, Any]] = {}
    print(f"Wilson-Cowan N={task.N}, T={task.T}, {args.iterations} iterations (one sequence; RLS readout: one pass)")
    print(f"{'algorithm':12s} | {'mdfbridge: pVar':>16s} {'ms/it':>5s} {'MB':>7s} | {'NeuroTorch: pVar':>17s} "
          f"{'ms/it':>5s} {'MB':>7s} | time ratio")
    nt_python: Optional[str] = args.neurotorch_python
    with tempfile.TemporaryDirectory() as tmp:
        task_file = Path(tmp) / "task.npz"
        neurotorch_task(task_file)
        for name in ALGORITHMS:
            ours = subprocess_json(me + ["--one", name, "--iterations", str(args.iterations)], 1800)
            theirs: Dict[str, Any] = {"error": "not run (no NeuroTorch venv)"} if nt_python else {"error": "absent"}
            if nt_python and name in NEUROTORCH:
                theirs = subprocess_json([nt_python, str(REPO / "benchmarks" / "neurotorch_wc.py"), "--data",
                                          str(task_file), "--algorithm", NEUROTORCH[name], "--iterations",
                                          str(args.iterations)], 1800)
            elif name not in NEUROTORCH:
                theirs = {"error": "no counterpart"}
            ratio = (f"{theirs['seconds_per_iteration'] / ours['seconds_per_iteration']:.1f}x"
                     if "error" not in ours and "error" not in theirs else "-")
            rows[name] = {"mdfbridge": ours, "neurotorch": theirs}
            print(f"{name:12s} | {fmt(ours):>30s} | {fmt(theirs):>31s} | {ratio}")
            if "native_seconds_per_iteration" in ours:  # (the llvm row: its time above includes the compile)
                native = ours["native_seconds_per_iteration"]
                versus = (f"; NeuroTorch / native = {theirs['seconds_per_iteration'] / native:.0f}x"
                          if "error" not in theirs else "")
                print(f"{'':12s}   native code alone {1000 * native:.3f} ms/it (compile "
                      f"{ours['compile_seconds']:.2f} s once per model structure, in the time above){versus}")
            if "error" in theirs and len(theirs["error"]) > 60:
                print(f"{'':12s}   NeuroTorch: {theirs['error']}")
        memory: Dict[str, Dict[int, Any]] = {}
        if not args.no_memory:
            print("\npeak MB against sequence length (N = 400 units, one iteration each):")
            for name in ("bptt", "eprop"):
                memory[name] = {}
                for steps in (200, 800, 3200):
                    got = subprocess_json(me + ["--one", name, "--iterations", "1", "--steps", str(steps),
                                                "--units", "400"], 1800)
                    memory[name][steps] = got
                print(f"  {name:6s} " + "  ".join(f"T={s}: {memory[name][s].get('peak_rss_mb', float('nan')):.0f}"
                                                  for s in (200, 800, 3200)))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "memory": memory, "time": time.time()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
