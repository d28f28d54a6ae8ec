"""GRUComposition learns a sequence task: at every time step, say whether the running sum of the inputs so far is
positive. The same network (input projection -> torch.nn.GRU -> output projection -> logistic) trained by a plain
torch loop from the same start gives the same weights; test accuracy on fresh sequences shows it learned.

    python examples/gru_sequences.py [--out DIR]   (writes running_sum.trained.mdf.json)
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from example_paths import output_dir

from mdfbridge import (
    Composition,
    GRUComposition,
    Logistic,
    MappingProjection,
    TransferMechanism,
    composition_from_mdf,
    load_program,
    run_program,
)

HIDDEN, STEPS, EPOCHS, BATCH, LR = 8, 8, 25, 16, 0.05


def task(n: int, rng: np.random.Generator):
    """n sequences (n, STEPS, 1) of N(0, 1) inputs; targets 1 where the running sum is > 0, else 0."""
    x = rng.normal(size=(n, STEPS, 1))
    return x, (np.cumsum(x, axis=1) > 0).astype(float)


def build(rng: np.random.Generator):
    """x (1) -> W_in (1 x 4) -> GRU (4 -> HIDDEN) -> W_out (HIDDEN x 1) -> y (logistic)."""
    x = TransferMechanism("x", 1)
    gru = GRUComposition(input_size=4, hidden_size=HIDDEN, bias=True, seed=1)
    y = TransferMechanism("y", 1, Logistic())
    w_in = MappingProjection(matrix=rng.uniform(-1, 1, (1, 4)), name="w_in")
    w_out = MappingProjection(matrix=rng.uniform(-1, 1, (HIDDEN, 1)), name="w_out")
    comp = Composition("running_sum")
    comp.add_linear_processing_pathway([x, w_in, gru, w_out, y])
    return comp, x, gru, y, w_in, w_out


def torch_loop(w_in: np.ndarray, gru_params: dict, h0: np.ndarray, w_out: np.ndarray, X: np.ndarray,
               T: np.ndarray) -> dict:
    """The same training written in plain torch: nn.GRU, adam, mse per minibatch of BATCH sequences, in order."""
    gru = torch.nn.GRU(4, HIDDEN, batch_first=True).double()
    with torch.no_grad():
        for k, v in gru_params.items():
            getattr(gru, k).copy_(torch.as_tensor(v))
    a = torch.tensor(w_in, requires_grad=True)
    b = torch.tensor(w_out, requires_grad=True)
    opt = torch.optim.Adam([a, b, *gru.parameters()], lr=LR)
    x, t, h = torch.as_tensor(X), torch.as_tensor(T), torch.as_tensor(h0)
    for _ in range(EPOCHS):
        for s in range(0, len(X), BATCH):
            xb = x[s:s + BATCH]
            hx = h.reshape(1, 1, HIDDEN).expand(1, len(xb), HIDDEN).contiguous()
            out, _ = gru(xb @ a, hx)
            loss = torch.nn.functional.mse_loss(torch.sigmoid(out @ b), t[s:s + BATCH])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {"w_in": a.detach().numpy(), "w_out": b.detach().numpy(),
            **{k: v.detach().numpy() for k, v in gru.named_parameters()}}


def main() -> int:
    out = output_dir(__doc__.splitlines()[0])
    rng = np.random.default_rng(0)
    X, T = task(64, rng)
    Xtest, Ttest = task(256, rng)
    comp, x, gru, y, w_in, w_out = build(rng)
    start = (w_in.matrix.copy(), {k: v.copy() for k, v in gru.torch_parameters().items()}, gru.block.h0.copy(),
             w_out.matrix.copy())

    def accuracy() -> float:
        return float(np.mean((comp.evaluate({x: Xtest})["y"] > 0.5) == (Ttest > 0.5)))

    acc0 = accuracy()
    t0 = time.perf_counter()
    comp.learn({x: X}, {y: T}, epochs=EPOCHS, learning_rate=LR, optimizer_type="adam", minibatch_size=BATCH)
    seconds = time.perf_counter() - t0
    per_epoch = np.asarray(comp.losses).reshape(EPOCHS, -1).mean(axis=1)
    print(f"GRUComposition 4->{HIDDEN} on {len(X)} sequences of {STEPS} steps: {EPOCHS} epochs, adam lr {LR}, "
          f"minibatch {BATCH}, {seconds:.1f} s")
    print("epoch loss: " + "  ".join(f"{e + 1}: {per_epoch[e]:.4f}" for e in (0, 4, 9, 14, 19, EPOCHS - 1)))
    acc = accuracy()
    print(f"test accuracy on {len(Xtest)} new sequences (every step): {acc0:.3f} before -> {acc:.3f} after")

    want = torch_loop(*start, X, T)
    got = {"w_in": w_in.matrix, "w_out": w_out.matrix, **gru.torch_parameters()}
    diff = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    print(f"max |weights - plain torch.nn.GRU loop's| over {len(want)} tensors = {diff:.1e} (tolerance 1e-9)")
    path = out / "running_sum.trained.mdf.json"
    comp.save_mdf(path)  # the GRU in MDF gate form (reset/update/new/hidden nodes, a recurrent edge)
    reloaded = run_program(load_program(path), {"x": Xtest})["y"]
    same = float(np.max(np.abs(reloaded - comp.evaluate({x: Xtest})["y"])))
    print(f"saved {path.name} (gate form); reloaded and run on the numpy reference: max diff {same:.1e}")
    rebuilt = composition_from_mdf(path)  # a Composition again, its GRU block a GRUComposition with these weights
    blocks = [n.name for n in rebuilt.nodes if isinstance(n, GRUComposition)]
    rebuilt_diff = float(np.max(np.abs(rebuilt.evaluate({"x": Xtest})["y"] - reloaded)))
    print(f"rebuilt with composition_from_mdf: GRU blocks {blocks}, max diff {rebuilt_diff:.1e}")
    ok = (same < 1e-12 and rebuilt_diff < 1e-12 and len(blocks) == 1 and per_epoch[-1] < 0.5 * per_epoch[0]
          and acc > 0.85 and diff < 1e-9)
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
