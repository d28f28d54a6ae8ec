"""How far the LLVM backend's trained weights drift from the torch backend's as training runs longer.

Both backends train in float64 from the same weights on the same data in the same order; they differ only in the
order of floating-point sums (the LLVM kernels accumulate their dot products and gradient sums in their own order),
so each update differs in the last bits and training (a nonlinear map iterated) can amplify that. Printed: max
|W_llvm - W_torch| over every learnable matrix after N minibatch updates, N = 10, 100, 1,000, 10,000, for SGD and
Adam, on

* XOR 2-10-1 (examples/xor_model.py: logistic hidden and output, bias nodes), minibatch 1, MSE, SGD lr 0.5,
  Adam lr 0.05 (N updates: num_trials=N, cycling the 4 patterns);
* the 64-128-10 MLP of bench_train.py (ReLU hidden, logistic output, bias nodes), 320 of its synthetic samples,
  minibatch 32 (10 updates an epoch, N / 10 epochs), MSE, SGD lr 0.1, Adam lr 0.001, and Adam lr 0.05 (too large
  a rate: the loss does not settle, and any two runs that differ in the last bit part within 1,000 updates);

and, as the yardstick for "rounding-level": the same difference between two torch-backend runs whose initial
weights differ by one rounding (each multiplied by 1 + 2**-52), and the largest weight, for scale. Also each
run's last minibatch loss. Run: `python benchmarks/bench_llvm_drift.py [--quick]` (about 1-2 minutes; --quick
stops at 1,000 updates).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))
sys.path.insert(0, str(HERE))
from bench_train import build_mlp  # noqa: E402
from xor_model import XOR_INPUTS, XOR_TARGETS, build_xor  # noqa: E402

Weights = Dict[str, np.ndarray]


def train(build: Callable, x: np.ndarray, t: np.ndarray, updates: int, mb: int, lr: float, optimizer: str,
          backend: str, nudge: float = 0.0) -> Tuple[Weights, float]:
    """(trained matrices by projection name, last minibatch loss) after `updates` minibatch updates."""
    comp = build()
    comp.flatten()
    if nudge:
        for p in comp.projections:
            p.matrix = p.matrix * (1.0 + nudge)
    per_epoch = -(-len(x) // mb)
    kw = (dict(epochs=updates // per_epoch) if updates % per_epoch == 0 and updates >= per_epoch
          else dict(epochs=1, num_trials=updates * mb))
    comp.learn({"input": x}, {"output": t}, minibatch_size=mb, learning_rate=lr, optimizer_type=optimizer,
               backend=backend, **kw)
    assert len(comp.losses) == updates, (len(comp.losses), updates)
    return {p.name: p.matrix.copy() for p in comp.projections}, float(comp.losses[-1])


def max_diff(a: Weights, b: Weights) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="stop at 1,000 updates")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    steps: List[int] = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]
    rng = np.random.default_rng(0)
    mlp_x = rng.normal(size=(4096, 64))[:320]
    mlp_t = (rng.uniform(size=(4096, 10)) > 0.5).astype(float)[:320]
    models = [("XOR 2-10-1, minibatch 1", build_xor, XOR_INPUTS, XOR_TARGETS, 1, [("sgd", 0.5), ("adam", 0.05)]),
              ("MLP 64-128-10, 320 samples, minibatch 32", build_mlp, mlp_x, mlp_t, 32,
               [("sgd", 0.1), ("adam", 0.001), ("adam", 0.05)])]
    print(f"bench_llvm_drift (torch {torch.__version__}, 1 thread, float64, MSE): max |W_llvm - W_torch| after N "
          f"minibatch updates; 'nudged' = max |W_torch - W_torch'| for initial weights x (1 + 2**-52)")
    start = time.perf_counter()
    for label, build, x, t, mb, rates in models:
        for optimizer, lr in rates:
            print(f"\n{label}, {optimizer} lr {lr}")
            print(f"  {'N':>6}  {'llvm - torch':>12}  {'nudged torch':>12}  {'max |W|':>8}  {'loss torch':>11}  "
                  f"{'loss llvm':>11}")
            for n in steps:
                w_t, l_t = train(build, x, t, n, mb, lr, optimizer, "torch")
                w_l, l_l = train(build, x, t, n, mb, lr, optimizer, "llvm")
                w_n, _ = train(build, x, t, n, mb, lr, optimizer, "torch", nudge=2.0 ** -52)
                scale = max(float(np.abs(w).max()) for w in w_t.values())
                print(f"  {n:>6}  {max_diff(w_l, w_t):12.2e}  {max_diff(w_n, w_t):12.2e}  {scale:8.2f}  "
                      f"{l_t:11.4e}  {l_l:11.4e}")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
