"""Backprop through time on the llvm backend (importers/llvm_bptt.py) against the torch backend's BPTT (float64):
weights, losses and every step's outputs to 1e-10 over several epochs, on random and fixed weights, with
minibatches (a short last one), shuffling, sgd/adam, mse/sse/l1 and the gradient safeguards; NeuroTorch's
Wilson-Cowan task; and the refusals, each naming backend 'torch'."""
from __future__ import annotations

import numpy as np
import pytest
from sequence_models import rate_doc, readout_doc, readout_weights

from mdfbridge.errors import UnsupportedError
from mdfbridge.learning import learn
from mdfbridge.learning.algorithms import BPTT, TBPTT
from mdfbridge.lowering import lower

N, T, DT = 3, 12, 0.5
FIXED = np.array([[0.5, -0.25, 0.0], [0.125, 0.75, -0.5], [-1.0, 0.25, 0.5]])


def sequences(seed: int, trials: int = 5) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(trials, T, N))
    y = 0.5 * np.sin(np.linspace(0, 3, T))[None, :, None] * np.ones((trials, T, N)) + 0.1 * rng.normal(
        size=(trials, T, N))
    return {"stim": x}, {"cell": y}


def both(doc: dict, x: dict, y: dict, **settings) -> tuple:
    """(torch result, llvm result) of the same BPTT run from fresh programs."""
    return tuple(learn(lower(doc), x, y, backend=backend, **settings) for backend in ("torch", "llvm"))


CASES = [
    ("fixed-sgd-mb2-shuffled", FIXED, dict(learning_rate=0.3, minibatch_size=2, randomize_minibatches=True, seed=3)),
    ("random-adam-mse", None, dict(optimizer_type="adam", learning_rate=0.05, minibatch_size=5)),
    ("random-adamw-sse-mb3", None, dict(optimizer_type="adamw", learning_rate=0.02, weight_decay=0.1,
                                        minibatch_size=3, loss_spec="sse")),
    ("fixed-l1-clipped", FIXED, dict(learning_rate=0.5, minibatch_size=4, loss_spec="l1",
                                     algorithm=BPTT(dt=DT, grad_norm_clip_value=0.05))),
]


@pytest.mark.parametrize("label,W,settings", CASES, ids=[c[0] for c in CASES])
def test_llvm_bptt_equals_torch(label: str, W, settings: dict) -> None:
    W = np.random.default_rng(11).normal(size=(N, N)) * 0.6 if W is None else W
    x, y = sequences(1)
    settings = {"algorithm": BPTT(dt=DT), "epochs": 4, **settings}
    t, n = both(rate_doc(W, right=True, r0=0.2), x, y, **settings)
    np.testing.assert_allclose(n.program.params["cell.W"].value, t.program.params["cell.W"].value, rtol=1e-10,
                               atol=1e-12)
    assert np.abs(n.program.params["cell.W"].value - W).max() > 1e-3  # (trained)
    np.testing.assert_allclose(n.losses, t.losses, rtol=1e-10, atol=1e-13)
    assert n.outputs["cell"].shape == t.outputs["cell"].shape == (5, T, N)
    np.testing.assert_allclose(n.outputs["cell"], t.outputs["cell"], rtol=1e-10, atol=1e-13)


def test_llvm_bptt_on_the_wilson_cowan_task() -> None:
    """The benchmark's model (examples/sequence_learning.py, NeuroTorch's task): 5 iterations, both backends."""
    import sequence_learning as task

    traces = task.smooth_traces()
    algorithm, settings = task.make_algorithm("bptt")
    doc = task.wilson_cowan_doc(traces[0], task.initial_weights(len(traces[0])))
    t, n = both(doc, {"wc": np.zeros((1,) + traces.shape)}, {"wc": traces[None]}, algorithm=algorithm, epochs=5,
                **settings)
    for name, p in t.program.params.items():
        np.testing.assert_allclose(n.program.params[name].value, p.value, rtol=1e-10, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(n.losses, t.losses, rtol=1e-10)


def test_llvm_bptt_refusals_name_backend_torch() -> None:
    x, y = sequences(2)
    doc = rate_doc(FIXED, right=True)
    for settings, match in ((dict(algorithm=TBPTT(dt=DT)), "trains on backend 'torch', not 'llvm'"),
                            (dict(algorithm="eprop"), "trains on backend 'torch', not 'llvm'"),
                            (dict(algorithm=BPTT(dt=DT), loss_spec="cross_entropy"), "loss 'cross_entropy' over"),
                            (dict(algorithm=BPTT(dt=DT), targets={"cell": y["cell"][:, -1]}), "last step only")):
        targets = settings.pop("targets", y)
        with pytest.raises(UnsupportedError, match=match):
            learn(lower(doc), x, targets, backend="llvm", **settings)
    with pytest.raises(UnsupportedError, match="backend 'torch'"):  # W r: W is the product's first operand
        learn(lower(rate_doc(FIXED)), x, y, algorithm=BPTT(dt=DT), backend="llvm")

    class Mine(BPTT):
        pass
    with pytest.raises(UnsupportedError, match="not Mine's hooks"):
        learn(lower(doc), x, y, algorithm=Mine(dt=DT), backend="llvm")


def test_llvm_bptt_through_a_readout_with_callbacks() -> None:
    """stim -> cell (a rate state) -> readout: the loss reads the readout, not the state; three weights."""
    W, U, Wout = readout_weights(5, recurrent=True, n=N, m=N)
    x, _ = sequences(4, trials=6)
    y = {"readout": np.cos(np.linspace(0, 2, T))[None, :, None] * np.ones((6, T, 2))}
    seen = {"torch": [], "llvm": []}
    results = {}
    for backend in seen:
        results[backend] = learn(lower(readout_doc(W, U, Wout, right=True)), x, y, algorithm=BPTT(dt=DT),
                                 backend=backend, epochs=3, minibatch_size=4, optimizer_type="adam", learning_rate=0.05,
                                 callback=lambda e, i, loss, b=backend: seen[b].append((e, i, loss)))
    t, n = results["torch"], results["llvm"]
    for name, start in (("cell.W", W.T), ("cell.U", U.T), ("readout.Wout", Wout.T)):
        np.testing.assert_allclose(n.program.params[name].value, t.program.params[name].value, rtol=1e-10,
                                   atol=1e-13, err_msg=name)
        assert np.abs(n.program.params[name].value - start).max() > 1e-3
    np.testing.assert_allclose(n.outputs["readout"], t.outputs["readout"], rtol=1e-10, atol=1e-13)
    assert [s[:2] for s in seen["llvm"]] == [s[:2] for s in seen["torch"]] and len(seen["llvm"]) == 6
    np.testing.assert_allclose([s[2] for s in seen["llvm"]], [s[2] for s in seen["torch"]], rtol=1e-10)
