"""Training speed of the LLVM backend, side by side in one run with the torch backend and a hand-written torch loop.

XOR 2-10-1 (1000 epochs, minibatch 1, SGD lr 0.5) and a 64-128-10 MLP on 4096 synthetic samples at
minibatch 32. Targets: XOR <= 0.05 ms per epoch and >= 100x the hand-written torch loop; the MLP no slower
than 2x the torch backend. Compile time is reported separately (the first learn() of a model compiles;
later ones hit the cache). Every timing is the best of several runs of a whole learn() call on a model
already lowered to its Program (data checked and packed, weights written back); "native" is the part
spent in compiled code (LearnResult.seconds).

PsyNeuLink's AutodiffComposition in ExecutionMode.LLVMRun is timed on the same XOR (same weights) when
psyneulink is importable here, or with `--psyneulink-python PATH` (else $MDFBRIDGE_PNL_PYTHON) naming an
interpreter that has it; it runs in a child process (PsyNeuLink 0.21's compiler fails on the explicit bias
nodes and is left unusable in that process, so the run falls back to XOR without bias nodes in a fresh one,
and says so). Skipped cleanly when psyneulink is not available.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def psyneulink_xor_llvm(weights: dict, epochs: int, bias: bool, lr: float = 0.5) -> dict:
    """Seconds per epoch of PsyNeuLink's LLVMRun learn on XOR 2-10-1 (with or without bias nodes) after a warm-up."""
    import psyneulink as pnl

    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    t = np.array([[0.0], [1.0], [1.0], [0.0]])
    i = pnl.TransferMechanism(name="input", input_shapes=2)
    h = pnl.TransferMechanism(name="hidden", input_shapes=10, function=pnl.Logistic())
    o = pnl.TransferMechanism(name="output", input_shapes=1, function=pnl.Logistic())
    ad = pnl.AutodiffComposition(learning_rate=lr)
    ad.add_linear_processing_pathway([i, pnl.MappingProjection(matrix=np.array(weights["input_to_hidden"])), h,
                                      pnl.MappingProjection(matrix=np.array(weights["hidden_to_output"])), o])
    inputs = {i: x}
    if bias:
        bh = pnl.TransferMechanism(name="bias_hidden", input_shapes=1)
        bo = pnl.TransferMechanism(name="bias_output", input_shapes=1)
        ad.add_linear_processing_pathway([bh, pnl.MappingProjection(matrix=np.array(weights["bias_to_hidden"])), h])
        ad.add_linear_processing_pathway([bo, pnl.MappingProjection(matrix=np.array(weights["bias_to_output"])), o])
        inputs.update({bh: np.ones((4, 1)), bo: np.ones((4, 1))})
    data = {"inputs": inputs, "targets": {o: t}}
    start = time.perf_counter()
    ad.learn(inputs={**data, "epochs": 2}, execution_mode=pnl.ExecutionMode.LLVMRun)
    first = time.perf_counter() - start
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        ad.learn(inputs={**data, "epochs": epochs}, execution_mode=pnl.ExecutionMode.LLVMRun)
        best = min(best, time.perf_counter() - start)
    return {"per_epoch": best / epochs, "first_call": first, "version": pnl.__version__}


def _pnl_child() -> None:
    """`--pnl-child`: read {"weights", "epochs", "bias"} on stdin, print psyneulink_xor_llvm's result as JSON."""
    req = json.load(sys.stdin)
    print(json.dumps(psyneulink_xor_llvm(req["weights"], req["epochs"], req["bias"])))


def run_psyneulink(python: str, weights: dict, epochs: int) -> tuple:
    """(result or None, note): PsyNeuLink's LLVMRun on XOR in a child process of `python` (its compiler keeps
    state across failures, so each attempt gets a fresh process); without bias nodes if it fails on them."""
    errors = []
    for bias in (True, False):
        proc = subprocess.run([python, __file__, "--pnl-child"], capture_output=True, text=True, timeout=1800,
                              input=json.dumps({"weights": weights, "epochs": epochs, "bias": bias}))
        if proc.returncode == 0:
            note = "with bias nodes" if bias else (f"without bias nodes (with them PsyNeuLink's LLVM compiler fails: "
                                                   f"{errors[0]})")
            return json.loads(proc.stdout.strip().splitlines()[-1]), note
        errors.append(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    return None, "; ".join(errors)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer epochs/repeats (smoke test)")
    ap.add_argument("--psyneulink-python", metavar="PYTHON", help="an interpreter with psyneulink installed "
                    "(default: $MDFBRIDGE_PNL_PYTHON)")
    ap.add_argument("--pnl-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pnl_child:
        _pnl_child()
        return

    import torch

    sys.path.insert(0, str(HERE.parent / "examples"))
    sys.path.insert(0, str(HERE))
    from bench_train import build_mlp, hand_loop, mlp_forward, xor_forward  # noqa: E402
    from xor_model import XOR_INPUTS, XOR_TARGETS, build_xor  # noqa: E402

    from mdfbridge.importers import llvm as llvm_backend  # noqa: E402
    from mdfbridge.importers.llvm_jit import vector_width  # noqa: E402

    torch.set_num_threads(1)
    repeats = 2 if args.quick else 5
    print(f"bench_llvm (torch {torch.__version__}, 1 thread; llvm: {vector_width()} doubles per vector; float64, SGD)")

    def learn_time(build, x, t, epochs, mb, lr, backend):
        """(best wall seconds of learn(), best native seconds, compile seconds, trained composition)."""
        compile_s = 0.0
        if backend == "llvm":
            llvm_backend.clear_cache()
            before = llvm_backend.stats["compiles"]
            build().learn({"input": x}, {"output": t}, epochs=1, minibatch_size=mb, learning_rate=lr, backend="llvm")
            assert llvm_backend.stats["compiles"] == before + 1
            compile_s = llvm_backend.stats["last_compile_seconds"]
        best_wall, best_native, comp = np.inf, np.inf, None
        for _ in range(repeats):
            comp = build()
            comp.program()  # lowered once per model, like compiling: not part of the timing
            start = time.perf_counter()
            comp.learn({"input": x}, {"output": t}, epochs=epochs, minibatch_size=mb, learning_rate=lr, backend=backend)
            best_wall = min(best_wall, time.perf_counter() - start)
            best_native = min(best_native, comp.learn_result.seconds)
        return best_wall, best_native, compile_s, comp

    def hand_time(build, forward, x, t, epochs, mb, lr, reps):
        best, w = np.inf, None
        for _ in range(reps):
            comp = build()
            comp.flatten()
            s, w = hand_loop({p.name: p.matrix.copy() for p in comp.projections}, x, t, epochs, mb, lr, forward)
            best = min(best, s)
        return best, w

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    def check_weights(label, comp, ref):
        worst = max(float(np.abs(p.matrix - ref[p.name]).max()) for p in comp.projections)
        assert worst < 1e-9, f"{label}: llvm weights differ from the hand-written loop by {worst:.3g}"
        return worst

    # ------------------------------------------------------------------ XOR
    epochs = 100 if args.quick else 1000
    lr = 0.5
    l_wall, l_native, l_compile, l_comp = learn_time(build_xor, XOR_INPUTS, XOR_TARGETS, epochs, 1, lr, "llvm")
    t_wall, _, _, _ = learn_time(build_xor, XOR_INPUTS, XOR_TARGETS, epochs, 1, lr, "torch")
    h_wall, h_w = hand_time(build_xor, xor_forward, XOR_INPUTS, XOR_TARGETS, epochs, 1, lr, min(repeats, 3))
    worst = check_weights("XOR", l_comp, h_w)
    ms = 1e3 / epochs
    print(f"\nXOR 2-10-1, {epochs} epochs, minibatch 1 (weights equal the hand loop's to {worst:.1g})")
    print(f"  llvm backend        {l_wall * ms:9.4f} ms/epoch  (native {l_native * ms:.4f} ms/epoch; "
          f"compile {l_compile:.3f} s, once per model)")
    print(f"  torch backend       {t_wall * ms:9.4f} ms/epoch")
    print(f"  hand-written torch  {h_wall * ms:9.4f} ms/epoch")
    xor_ms = l_wall * ms
    xor_ok = xor_ms <= 0.05
    print(f"  llvm {l_wall * ms:.4f} ms/epoch (target <= 0.05) {verdict(xor_ok)}; "
          f"{h_wall / l_wall:.0f}x the hand-written loop (target >= 100x) {verdict(h_wall / l_wall >= 100)}; "
          f"{t_wall / l_wall:.0f}x the torch backend")

    # ------------------------------------------------------------------ MLP
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 64))
    t = (rng.uniform(size=(4096, 10)) > 0.5).astype(float)
    m_epochs = 1 if args.quick else 3
    l_wall, l_native, l_compile, l_comp = learn_time(build_mlp, x, t, m_epochs, 32, 0.1, "llvm")
    t_wall, _, _, _ = learn_time(build_mlp, x, t, m_epochs, 32, 0.1, "torch")
    h_wall, h_w = hand_time(build_mlp, mlp_forward, x, t, m_epochs, 32, 0.1, min(repeats, 3))
    worst = check_weights("MLP", l_comp, h_w)
    ms = 1e3 / m_epochs
    steps = m_epochs * (4096 // 32)
    flops = steps * 2 * 32 * (2 * 64 * 128 + 3 * 128 * 10)  # fwd + dW of both layers, dX of the second
    print(f"\nMLP 64-128-10 (ReLU, logistic, bias nodes), 4096 samples, minibatch 32, {m_epochs} epoch(s) "
          f"(weights equal the hand loop's to {worst:.1g})")
    print(f"  llvm backend        {l_wall * ms:9.3f} ms/epoch  (native {l_native * ms:.3f} ms/epoch, "
          f"~{flops / l_native / 1e9:.1f} GFLOP/s; compile {l_compile:.3f} s)")
    print(f"  torch backend       {t_wall * ms:9.3f} ms/epoch")
    print(f"  hand-written torch  {h_wall * ms:9.3f} ms/epoch")
    ratio = l_wall / t_wall
    print(f"  llvm / torch backend = {ratio:.2f}x (target <= 2x) {verdict(ratio <= 2.0)}; "
          f"torch backend / llvm = {t_wall / l_wall:.1f}x")

    # ------------------------------------------------------------------ PsyNeuLink LLVMRun
    comp = build_xor()
    comp.flatten()
    weights = {p.name: p.matrix.tolist() for p in comp.projections}
    pnl_epochs = 100 if args.quick else 1000
    python = (args.psyneulink_python or os.environ.get("MDFBRIDGE_PNL_PYTHON")
              or (sys.executable if importlib.util.find_spec("psyneulink") else None))
    if python is None:
        print("\nPsyNeuLink LLVMRun: psyneulink not importable: skipped (or pass --psyneulink-python)")
        return
    result, note = run_psyneulink(python, weights, pnl_epochs)
    if result is None:
        print(f"\nPsyNeuLink LLVMRun: failed in {python}: {note}")
        return
    per = result["per_epoch"] * 1e3
    print(f"\nPsyNeuLink {result['version']} AutodiffComposition, ExecutionMode.LLVMRun, XOR 2-10-1 {note}, "
          f"{pnl_epochs} epochs: {per:.4f} ms/epoch (first call incl. compile {result['first_call']:.2f} s); "
          f"mdfbridge llvm (with bias nodes) is {per / xor_ms:.1f}x faster")


if __name__ == "__main__":
    main()
