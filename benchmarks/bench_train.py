"""Training speed: mdfbridge's torch backend vs a hand-written torch loop, side by side in one run.

XOR 2-10-1 (1000 epochs, minibatch 1 and full batch) and a 64-128-10 MLP on 4096 synthetic samples at
minibatch 32. Targets: <= 1.1x the hand-written loop at minibatch 32, <= 1.5x at minibatch 1.

PsyNeuLink's AutodiffComposition.learn on the same XOR (same weights, PyTorch mode) is timed too (target: mdfbridge
>= 20x faster per epoch) in a child process of a python that has psyneulink: `--psyneulink-python PATH`, else
$MDFBRIDGE_PNL_PYTHON, else this python if psyneulink is importable here; skipped otherwise. PsyNeuLink 0.21 pins
modeci-mdf < 0.4.14 and mdfbridge needs >= 0.4.15, so it lives in its own venv:
`python3 -m venv /tmp/pnl && /tmp/pnl/bin/pip install torch==2.13.0 && /tmp/pnl/bin/pip install psyneulink`,
then `MDFBRIDGE_PNL_PYTHON=/tmp/pnl/bin/python python benchmarks/bench_train.py` (the child is pnl_xor.py).
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
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from xor_model import XOR_INPUTS, XOR_TARGETS, build_xor  # noqa: E402

from mdfbridge import BiasMechanism, Composition, Logistic, MappingProjection, ReLU, TransferMechanism  # noqa: E402


def hand_loop(weights, x, t, epochs, mb, lr, forward):
    """The hand-written reference: same weights, same order, plain torch."""
    w = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in weights.items()}
    opt = torch.optim.SGD(list(w.values()), lr=lr)
    x, t = torch.as_tensor(x), torch.as_tensor(t)
    n = len(x)
    start = time.perf_counter()
    for _ in range(epochs):
        for b in range(0, n, mb):
            out = forward(w, x[b:b + mb])
            loss = torch.nn.functional.mse_loss(out, t[b:b + mb])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            float(loss.detach())
    return time.perf_counter() - start, {k: v.detach().numpy() for k, v in w.items()}


def xor_forward(w, x):
    h = torch.sigmoid(x @ w["input_to_hidden"] + w["bias_to_hidden"])
    return torch.sigmoid(h @ w["hidden_to_output"] + w["bias_to_output"])


def build_mlp(seed=0):
    """64-128-10 MLP: ReLU hidden, logistic output, explicit bias nodes."""
    rng = np.random.default_rng(seed)
    i, h = TransferMechanism("input", 64), TransferMechanism("hidden", 128, ReLU())
    o = TransferMechanism("output", 10, Logistic())
    comp = Composition("mlp")
    comp.add_linear_processing_pathway([i, MappingProjection(matrix=rng.normal(0, 0.1, (64, 128)), name="w1"), h,
                                        MappingProjection(matrix=rng.normal(0, 0.1, (128, 10)), name="w2"), o])
    comp.add_projection(MappingProjection(matrix=np.zeros((1, 128)), name="b1"), BiasMechanism("bh"), h)
    comp.add_projection(MappingProjection(matrix=np.zeros((1, 10)), name="b2"), BiasMechanism("bo"), o)
    return comp


def mlp_forward(w, x):
    return torch.sigmoid(torch.relu(x @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"])


def compare(label, build, forward, x, t, epochs, mb, lr, target, repeats):
    best_ours, best_hand = np.inf, np.inf
    for _ in range(repeats):
        comp = build()
        weights = ({p.name: p.matrix.copy() for p in comp.projections}
                   if comp.projections[0].matrix is not None else None)
        comp.flatten()
        weights = {p.name: p.matrix.copy() for p in comp.projections}
        t_hand, w_hand = hand_loop(weights, x, t, epochs, mb, lr, forward)
        start = time.perf_counter()
        comp.learn({"input": x}, {"output": t}, epochs=epochs, minibatch_size=mb, learning_rate=lr)
        t_ours = time.perf_counter() - start
        best_ours, best_hand = min(best_ours, t_ours), min(best_hand, t_hand)
        for p in comp.projections:
            assert np.allclose(p.matrix, w_hand[p.name], atol=1e-9), f"{label}: weights differ for {p.name}"
    ratio = best_ours / best_hand
    steps = epochs * -(-len(x) // mb)
    print(f"  {label:<38} mdfbridge {best_ours * 1e3 / epochs:8.3f} ms/epoch  "
          f"hand-written {best_hand * 1e3 / epochs:8.3f} "
          f"ms/epoch  ({best_ours / steps * 1e6:6.1f} vs {best_hand / steps * 1e6:6.1f} us/step)  ratio {ratio:5.2f}x "
          f"(target <= {target}x) {'OK' if ratio <= target else 'MISSED'}")
    return best_ours / epochs


def psyneulink_python(given: Optional[str] = None) -> Optional[str]:
    """The interpreter to time PsyNeuLink with: `given`, else $MDFBRIDGE_PNL_PYTHON, else this python when psyneulink
    is importable here, else None."""
    if given:
        return given
    if os.environ.get("MDFBRIDGE_PNL_PYTHON"):
        return os.environ["MDFBRIDGE_PNL_PYTHON"]
    return sys.executable if importlib.util.find_spec("psyneulink") else None


def psyneulink_xor(epochs: int, python: Optional[str]) -> Optional[dict]:
    """PsyNeuLink's PyTorch-mode learn() on XOR (build_xor's weights) timed by pnl_xor.py in `python`: its
    {"per_epoch", "first_call", "version"}, or None (said why) when there is no such python or the run fails."""
    if python is None:
        print("  PsyNeuLink: no python with psyneulink (--psyneulink-python or MDFBRIDGE_PNL_PYTHON): skipped")
        return None
    comp = build_xor()
    comp.flatten()
    request = {"weights": {p.name: p.matrix.tolist() for p in comp.projections}, "epochs": epochs, "mode": "PyTorch",
               "learning_rate": 0.5}
    proc = subprocess.run([python, str(Path(__file__).resolve().parent / "pnl_xor.py")], input=json.dumps(request),
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        print(f"  PsyNeuLink: the run in {python} failed: {last[0]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer epochs/repeats (smoke test)")
    ap.add_argument("--psyneulink-python", metavar="PYTHON", help="an interpreter with psyneulink installed "
                    "(default: $MDFBRIDGE_PNL_PYTHON)")
    args = ap.parse_args()
    epochs, repeats = (50, 1) if args.quick else (1000, 3)
    torch.set_num_threads(1)
    print(f"bench_train (torch {torch.__version__}, 1 thread, float64, SGD)")
    per_epoch = compare("XOR 2-10-1, minibatch 1", build_xor, xor_forward, XOR_INPUTS, XOR_TARGETS, epochs, 1, 0.5,
                        1.5, repeats)
    compare("XOR 2-10-1, full batch (4)", build_xor, xor_forward, XOR_INPUTS, XOR_TARGETS, epochs, 4, 0.5, 1.5, repeats)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 64))
    t = (rng.uniform(size=(4096, 10)) > 0.5).astype(float)
    compare("MLP 64-128-10, 4096 samples, mb 32", build_mlp, mlp_forward, x, t, 1 if args.quick else 3, 32, 0.1,
            1.1, repeats)
    pnl = psyneulink_xor(20 if args.quick else 100, psyneulink_python(args.psyneulink_python))
    if pnl is not None:
        pnl_epoch = pnl["per_epoch"]
        print(f"  PsyNeuLink {pnl['version']} AutodiffComposition PyTorch mode (XOR, minibatch 1): "
              f"{pnl_epoch * 1e3:.3f} ms/epoch; mdfbridge is {pnl_epoch / per_epoch:.1f}x faster (target >= 20x) "
              f"{'OK' if pnl_epoch / per_epoch >= 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
