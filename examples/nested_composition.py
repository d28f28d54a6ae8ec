"""A composition nested in another: saved as MDF (flattened, ids prefixed by the nesting path, the nesting kept in
metadata), rebuilt with composition_from_mdf, and trained through the nesting; the trained weights equal a plain
torch loop's from the same start, and the trained composition saves and reloads to the same outputs.

    python examples/nested_composition.py [--out DIR]   (writes nested.mdf.json, nested.trained.mdf.json)
"""
from __future__ import annotations

import json
import sys
from typing import Dict

import numpy as np
import torch
from example_paths import output_dir

from mdfbridge import (
    BiasMechanism,
    Composition,
    Logistic,
    MappingProjection,
    Tanh,
    TransferMechanism,
    composition_from_mdf,
)

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
T = np.array([[0.0], [1.0], [1.0], [0.0]])
EPOCHS, LR = 300, 1.0


def build() -> Composition:
    """outer: a (2) -> w_in -> inner[h1 (6, tanh) -> w_mid -> h2 (4, logistic)] -> w_out -> o (1, logistic)."""
    rng = np.random.default_rng(3)
    inner = Composition("inner")
    h1, h2 = TransferMechanism("h1", 6, Tanh()), TransferMechanism("h2", 4, Logistic())
    inner.add_linear_processing_pathway([h1, MappingProjection(matrix=rng.uniform(-1, 1, (6, 4)), name="w_mid"), h2])
    inner.add_projection(MappingProjection(matrix=rng.uniform(-1, 1, (1, 6)), name="b_h1"), BiasMechanism("bias"), h1)
    a, o = TransferMechanism("a", 2), TransferMechanism("o", 1, Logistic())
    outer = Composition("outer")
    outer.add_linear_processing_pathway([inner, MappingProjection(matrix=rng.uniform(-1, 1, (4, 1)), name="w_out"), o])
    # h1 also receives the bias, so it is not an input node of `inner`: the projection names it
    outer.add_projection(MappingProjection(matrix=rng.uniform(-1, 1, (2, 6)), name="w_in"), a, h1)
    return outer


def matrices(comp: Composition) -> Dict[str, np.ndarray]:
    """Projection name -> matrix, for the composition and every nested one."""
    out = {p.name: np.array(p.matrix) for p in comp.projections}
    for node in comp.nodes:
        if isinstance(node, Composition):
            out.update(matrices(node))
    return out


def torch_loop(w: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The same network and training in plain torch: sgd, mse, one minibatch of all four trials per epoch."""
    p = {k: torch.tensor(v, requires_grad=True) for k, v in w.items()}
    opt = torch.optim.SGD(p.values(), lr=LR)
    x, t = torch.as_tensor(X), torch.as_tensor(T)
    for _ in range(EPOCHS):
        h1 = torch.tanh(x @ p["w_in"] + p["b_h1"])
        h2 = torch.sigmoid(h1 @ p["w_mid"])
        loss = torch.nn.functional.mse_loss(torch.sigmoid(h2 @ p["w_out"]), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().numpy() for k, v in p.items()}


def main() -> int:
    out = output_dir(__doc__.splitlines()[0])
    path, trained_path = out / "nested.mdf.json", out / "nested.trained.mdf.json"
    outer = build()
    outer.save_mdf(path)
    graph = next(iter(json.loads(path.read_text()).values()))["graphs"]
    ids = [n for g in graph.values() for n in g["nodes"]]
    print(f"wrote {path}: {len(ids)} nodes, nested ids: {', '.join(i for i in ids if i.startswith('inner__'))}")

    rebuilt = composition_from_mdf(path)
    inner = [n.name for n in rebuilt.nodes if isinstance(n, Composition)]
    same = np.array_equal(rebuilt.evaluate({"a": X})["o"], outer.evaluate({"a": X})["o"])
    print(f"rebuilt with composition_from_mdf: nested compositions {inner}, outputs identical: {same}")

    start = matrices(rebuilt)
    rebuilt.learn({"a": X}, {"o": T}, epochs=EPOCHS, learning_rate=LR, optimizer_type="sgd", minibatch_size=4)
    losses = rebuilt.losses
    after = rebuilt.evaluate({"a": X})["o"][:, 0]
    print(f"learned through the nesting: {EPOCHS} epochs sgd lr {LR}, loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
          f"outputs {np.round(after, 3).tolist()} (targets {T[:, 0].tolist()})")

    want = torch_loop(start)
    got = matrices(rebuilt)
    diff = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    print(f"max |trained matrices - plain torch loop's| over {sorted(want)} = {diff:.1e} (tolerance 1e-10)")

    rebuilt.save_mdf(trained_path)
    reloaded = composition_from_mdf(trained_path).evaluate({"a": X})["o"][:, 0]
    print(f"saved {trained_path.name} and reloaded it: outputs identical: {np.array_equal(reloaded, after)}")
    ok = same and diff < 1e-10 and np.array_equal(reloaded, after) and bool(np.all((after > 0.5) == (T[:, 0] > 0.5)))
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
