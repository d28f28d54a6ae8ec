"""Compiled training: the XOR model learned from its MDF file with backend='llvm' (llvmlite: epochs, minibatches,
forward, backward and the optimizer in one compiled loop) and with backend='torch'; the weights agree to 1e-9 and
the timings are printed (the first llvm run includes compiling; the code is cached per Program).

    python examples/llvm_training.py [--out DIR]   (writes xor.mdf.json)
"""
from __future__ import annotations

import sys
import time

import numpy as np
from example_paths import output_dir
from xor_model import XOR_INPUTS, XOR_TARGETS, build_xor

from mdfbridge import learn
from mdfbridge.importers import llvm

SETTINGS = dict(epochs=500, learning_rate=0.5, optimizer_type="adam", minibatch_size=1, randomize_minibatch=True,
                seed=7, loss_spec="mse")


def main() -> int:
    out = output_dir(__doc__.splitlines()[0])
    path = out / "xor.mdf.json"
    build_xor().save_mdf(path)
    # warm-up (not timed): the first torch training imports torch and torch._dynamo (for its Adam), seconds
    learn(path, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, backend="torch", **{**SETTINGS, "epochs": 1})
    runs = {}
    for backend, label in (("torch", ""), ("llvm", "compiles, then runs"), ("llvm", "again: cached code")):
        compiles = llvm.stats["compiles"]
        t0 = time.perf_counter()
        result = learn(path, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, backend=backend, **SETTINGS)
        wall = time.perf_counter() - t0
        runs.setdefault(backend, result)
        if backend == "llvm":
            compiled = llvm.stats["compiles"] > compiles
            run_ms = llvm.stats["last_run_seconds"] * 1e3
            label = (f"compile {llvm.stats['last_compile_seconds']:.2f} s + run {run_ms:.1f} ms" if compiled
                     else f"cached code, run {run_ms:.1f} ms")
        print(f"{backend:5s}: {result.epochs_run} epochs x 4 shuffled minibatches, adam: {wall:.2f} s"
              f"{f' ({label})' if label else ''}; loss {result.epoch_losses[0]:.4f} -> {result.epoch_losses[-1]:.6f}")
    p_torch, p_llvm = runs["torch"].program, runs["llvm"].program
    diffs = {name: float(np.max(np.abs(np.asarray(p.value) - np.asarray(p_llvm.params[name].value))))
             for name, p in p_torch.learnable_params().items()}
    loss_diff = float(np.max(np.abs(np.subtract(runs["torch"].losses, runs["llvm"].losses))))
    print(f"max |llvm - torch| over the {len(diffs)} trained matrices: {max(diffs.values()):.1e}; over the "
          f"{len(runs['torch'].losses)} minibatch losses: {loss_diff:.1e} (tolerance 1e-9)")
    outputs = runs["llvm"].outputs["output"][:, 0]
    print(f"llvm-trained XOR outputs (last epoch): {np.round(outputs, 3).tolist()}")
    ok = max(diffs.values()) < 1e-9 and loss_diff < 1e-9 and bool(np.all((outputs > 0.5) == (XOR_TARGETS[:, 0] > 0.5)))
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
