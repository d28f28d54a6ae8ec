"""Training speed: mdfbridge's torch backend vs a hand-written torch loop, side by side in one run.

XOR 2-10-1 (1000 epochs, minibatch 1 and full batch) and a 64-128-10 MLP on 4096 synthetic samples at
minibatch 32. Targets: <= 1.1x the hand-written loop at minibatch 32, <= 1.5x at minibatch 1. If psyneulink is
importable, AutodiffComposition.learn on XOR in PyTorch mode is timed too (target: mdfbridge >= 20x faster per
epoch). Install it in a separate venv: `pip install torch==2.13.0 && pip install psyneulink`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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


def psyneulink_xor(epochs):
    try:
        import psyneulink as pnl
    except ImportError:
        print("  psyneulink not importable: skipped (install it in a separate venv to compare)")
        return None
    comp = build_xor()
    comp.flatten()
    w = {p.name: p.matrix for p in comp.projections}
    i = pnl.TransferMechanism(name="input", input_shapes=2)
    h = pnl.TransferMechanism(name="hidden", input_shapes=10, function=pnl.Logistic())
    o = pnl.TransferMechanism(name="output", input_shapes=1, function=pnl.Logistic())
    bh = pnl.TransferMechanism(name="bias_hidden", input_shapes=1)
    bo = pnl.TransferMechanism(name="bias_output", input_shapes=1)
    ad = pnl.AutodiffComposition(learning_rate=0.5)
    ad.add_linear_processing_pathway([i, pnl.MappingProjection(matrix=w["input_to_hidden"]), h,
                                      pnl.MappingProjection(matrix=w["hidden_to_output"]), o])
    ad.add_node(bh)
    ad.add_node(bo)
    ad.add_projection(pnl.MappingProjection(matrix=w["bias_to_hidden"]), bh, h)
    ad.add_projection(pnl.MappingProjection(matrix=w["bias_to_output"]), bo, o)
    ones = np.ones((4, 1))
    start = time.perf_counter()
    ad.learn(inputs={"inputs": {i: XOR_INPUTS, bh: ones, bo: ones}, "targets": {o: XOR_TARGETS}, "epochs": epochs},
             execution_mode=pnl.ExecutionMode.PyTorch)
    return (time.perf_counter() - start) / epochs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer epochs/repeats (smoke test)")
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
    pnl_epoch = psyneulink_xor(20 if args.quick else 100)
    if pnl_epoch is not None:
        print(f"  PsyNeuLink AutodiffComposition PyTorch mode: {pnl_epoch * 1e3:.3f} ms/epoch; mdfbridge is "
              f"{pnl_epoch / per_epoch:.1f}x faster (target >= 20x)")


if __name__ == "__main__":
    main()
