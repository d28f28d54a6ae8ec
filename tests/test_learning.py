"""learn() against an independent, hand-written torch training loop (AutodiffComposition semantics).

The oracle below knows nothing of mdfbridge's Program, ProgramModule or training loop: each network's
forward pass is written out by hand over plain tensors, trained with torch.optim.SGD/Adam and the loss of
torch.nn.functional with the same name, minibatches in trial order (or in the order of one
`np.random.default_rng(seed).permutation(n)` per epoch when randomized).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import XOR_INPUTS, XOR_TARGETS, build_xor, learned_outputs

import mdfbridge.learning as learning
from mdfbridge import (
    BiasMechanism,
    Composition,
    CompositionError,
    DataError,
    Linear,
    Logistic,
    MappingProjection,
    MdfBridgeError,
    ReLU,
    SoftMax,
    Tanh,
    TransferMechanism,
    UnsupportedError,
)
from mdfbridge.api import load_program
from mdfbridge.learning import ExecutionMode, LearnConfig

TOL = dict(rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------- the oracle

def t_logistic(x, gain=1.0, bias=0.0, offset=0.0):
    return 1.0 / (1.0 + torch.exp(-gain * (x + bias) + offset))


def t_relu(x, gain=1.0, bias=0.0, leak=0.0):
    d = x - bias
    return gain * torch.where(d > 0, d, leak * d)


def t_tanh(x, gain=1.0, bias=0.0, offset=0.0, scale=1.0):
    return scale * torch.tanh(gain * (x + bias) + offset)


def t_softmax(x, gain=1.0):
    return torch.softmax(gain * x, dim=-1)


ORACLE_LOSSES: Dict[str, Callable] = {
    "mse": lambda o, t: F.mse_loss(o, t),
    "l1": lambda o, t: F.l1_loss(o, t, reduction="sum"),  # PsyNeuLink's L1: nn.L1Loss(reduction='sum')
    "sse": lambda o, t: F.mse_loss(o, t, reduction="sum"),
    "cross_entropy": lambda o, t: F.cross_entropy(o, t),
}


@dataclass
class Oracle:
    """What the hand-written loop saw: weights after training, per-minibatch losses, final-epoch outputs."""

    weights: Dict[str, np.ndarray]
    losses: List[float]
    epoch_losses: List[float]
    outputs: Dict[str, np.ndarray]
    snapshots: List[Dict[str, np.ndarray]]  # weights after each minibatch update (index k: after k+1 updates)
    epochs_run: int


def oracle_train(forward, w0: Dict[str, np.ndarray], inputs: Dict[str, np.ndarray], targets: Dict[str, np.ndarray],
                 *, epochs: int = 1, learning_rate: float = 0.001, minibatch_size: int = 1,
                 randomize_minibatch: bool = False, seed: Optional[int] = None, optimizer_type: str = "sgd",
                 weight_decay: float = 0.0, loss_spec: str = "mse", frozen=(), patience: Optional[int] = None,
                 min_delta: float = 0.0, dtype=torch.float64) -> Oracle:
    W = {k: torch.tensor(np.asarray(v), dtype=dtype, requires_grad=k not in frozen) for k, v in w0.items()}
    params = [W[k] for k in W if k not in frozen]
    opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer_type]
    opt = opt_cls(params, lr=learning_rate, weight_decay=weight_decay)
    lossf = ORACLE_LOSSES[loss_spec]
    X = {k: torch.tensor(np.asarray(v, dtype=float), dtype=dtype) for k, v in inputs.items()}
    T = {k: torch.tensor(np.asarray(v, dtype=float), dtype=dtype) for k, v in targets.items()}
    n = len(next(iter(inputs.values())))
    rng = np.random.default_rng(seed)
    losses, epoch_losses, snapshots = [], [], []
    best, waited = math.inf, 0
    outputs: Dict[str, np.ndarray] = {}
    epochs_run = 0
    for _ in range(epochs):
        epochs_run += 1
        order = rng.permutation(n) if randomize_minibatch else np.arange(n)
        outputs = {}
        mine = []
        for b0 in range(0, n, minibatch_size):
            rows = order[b0:b0 + minibatch_size]
            sel = torch.as_tensor(rows)
            out = forward(W, {k: v[sel] for k, v in X.items()})
            loss = None
            for k in T:
                term = lossf(out[k], T[k][sel])
                loss = term if loss is None else loss + term
            for k, v in out.items():
                outputs.setdefault(k, np.zeros((n,) + tuple(v.shape[1:])))[rows] = v.detach().numpy()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            mine.append(float(loss.detach()))
            snapshots.append({k: v.detach().numpy().astype(float).copy() for k, v in W.items()})
        epoch_loss = float(np.mean(mine))
        epoch_losses.append(epoch_loss)
        if patience is not None:
            if epoch_loss < best - min_delta:
                best, waited = epoch_loss, 0
            else:
                waited += 1
                if waited >= patience:
                    break
    weights = {k: v.detach().numpy().astype(float).copy() for k, v in W.items()}
    return Oracle(weights, losses, epoch_losses, outputs, snapshots, epochs_run)


def oracle_forward_np(forward, weights, inputs):
    with torch.no_grad():
        W = {k: torch.tensor(v, dtype=torch.float64) for k, v in weights.items()}
        X = {k: torch.tensor(np.asarray(v, dtype=float), dtype=torch.float64) for k, v in inputs.items()}
        return {k: v.numpy() for k, v in forward(W, X).items()}


# ----------------------------------------------------------------------------------------- the networks

ONE = torch.ones(1, dtype=torch.float64)


def xor_forward(W, x):
    """XOR 2-10-1 with bias nodes (value 1) projecting into hidden and output."""
    hidden = t_logistic(x["input"] @ W["input_to_hidden"] + ONE.to(W["bias_to_hidden"].dtype) @ W["bias_to_hidden"])
    out = t_logistic(hidden @ W["hidden_to_output"] + ONE.to(W["bias_to_output"].dtype) @ W["bias_to_output"])
    return {"output": out}


def xor_weights(comp: Composition) -> Dict[str, np.ndarray]:
    return {p.name: np.array(p.matrix) for p in comp.projections}


OUT_FNS = {"Linear": (Linear, lambda x: x), "SoftMax": (SoftMax, t_softmax), "Logistic": (Logistic, t_logistic)}


def build_mixed(out_fn: str = "Linear", seed: int = 1, learnable_b: bool = True):
    """in_a (2) and in_b (3) summed into hidden (ReLU, 4, fed also by a bias node) -> mid (Tanh gain .7, 3)
    -> out (3, `out_fn`). Returns (composition, hand-written forward, initial weights)."""
    rng = np.random.default_rng(seed)
    a, b = TransferMechanism("in_a", 2), TransferMechanism("in_b", 3)
    hidden = TransferMechanism("hidden", 4, ReLU())
    mid = TransferMechanism("mid", 3, Tanh(gain=0.7))
    out = TransferMechanism("out", 3, OUT_FNS[out_fn][0]())
    bias = BiasMechanism("bias_h")
    w = {"a_to_hidden": rng.normal(size=(2, 4)), "b_to_hidden": rng.normal(size=(3, 4)),
         "bias_to_hidden": rng.normal(size=(1, 4)) * 0.5, "hidden_to_mid": rng.normal(size=(4, 3)),
         "mid_to_out": rng.normal(size=(3, 3))}
    comp = Composition("mixed")
    comp.add_projection(MappingProjection(matrix=w["a_to_hidden"], name="a_to_hidden"), a, hidden)
    comp.add_projection(MappingProjection(matrix=w["b_to_hidden"], name="b_to_hidden", learnable=learnable_b), b,
                        hidden)
    comp.add_projection(MappingProjection(matrix=w["bias_to_hidden"], name="bias_to_hidden"), bias, hidden)
    comp.add_projection(MappingProjection(matrix=w["hidden_to_mid"], name="hidden_to_mid"), hidden, mid)
    comp.add_projection(MappingProjection(matrix=w["mid_to_out"], name="mid_to_out"), mid, out)
    out_t = OUT_FNS[out_fn][1]

    def forward(W, x):
        h = t_relu(x["in_a"] @ W["a_to_hidden"] + x["in_b"] @ W["b_to_hidden"] + ONE @ W["bias_to_hidden"])
        m = t_tanh(h @ W["hidden_to_mid"], gain=0.7)
        return {"out": out_t(m @ W["mid_to_out"])}

    return comp, forward, w


def mixed_data(loss: str, n: int = 7, seed: int = 2):
    rng = np.random.default_rng(seed)
    x = {"in_a": rng.normal(size=(n, 2)), "in_b": rng.normal(size=(n, 3))}
    if loss == "cross_entropy":
        t = np.eye(3)[rng.integers(0, 3, size=n)]
    else:
        t = rng.uniform(-0.5, 0.9, size=(n, 3))
    return x, {"out": t}


def weights_of(comp: Composition) -> Dict[str, np.ndarray]:
    return {p.projection.name: np.array(p.projection.matrix) for p in comp.flatten()[1]}


def assert_weights(actual: Dict[str, np.ndarray], expected: Dict[str, np.ndarray], **tol):
    assert set(actual) == set(expected)
    for k in expected:
        np.testing.assert_allclose(actual[k], expected[k], err_msg=k, **(tol or TOL))


# ----------------------------------------------------------------------------------------- fidelity grid

GRID = [dict(optimizer_type=o, weight_decay=wd, minibatch_size=mb, randomize_minibatch=r, seed=11 if r else None)
        for o in ("sgd", "adam") for wd in (0.0, 0.01) for mb in (1, 4) for r in (False, True)]


def _id(s):
    order = "rand" if s["randomize_minibatch"] else "ord"
    return f"{s['optimizer_type']}-wd{s['weight_decay']}-mb{s['minibatch_size']}-{order}"


@pytest.mark.parametrize("settings", GRID, ids=[_id(s) for s in GRID])
def test_xor_matches_oracle(settings):
    comp = build_xor()
    w0 = xor_weights(comp)
    lr = 0.3 if settings["optimizer_type"] == "sgd" else 0.02
    # 6 trials (XOR repeated in part) so minibatch 4 leaves a short last minibatch
    x, t = np.concatenate([XOR_INPUTS, XOR_INPUTS[:2]]), np.concatenate([XOR_TARGETS, XOR_TARGETS[:2]])
    comp.learn({"input": x}, {"output": t}, epochs=4, learning_rate=lr, **settings)
    out = comp.learn_result.outputs
    ref = oracle_train(xor_forward, w0, {"input": x}, {"output": t}, epochs=4, learning_rate=lr, **settings)
    assert_weights(xor_weights(comp), ref.weights)
    assert set(out) == {"output"}
    np.testing.assert_allclose(out["output"], ref.outputs["output"], **TOL)
    assert len(comp.losses) == len(ref.losses) == 4 * math.ceil(6 / settings["minibatch_size"])
    np.testing.assert_allclose(comp.losses, ref.losses, **TOL)


MIXED_CASES = [
    ("mse", "Linear", dict(optimizer_type="sgd", minibatch_size=1)),
    ("mse", "Logistic", dict(optimizer_type="adam", minibatch_size=3, randomize_minibatch=True, seed=5,
                             weight_decay=0.01)),
    ("l1", "Linear", dict(optimizer_type="sgd", minibatch_size=3, weight_decay=0.01)),
    ("l1", "Linear", dict(optimizer_type="adam", minibatch_size=1, randomize_minibatch=True, seed=3)),
    ("sse", "Linear", dict(optimizer_type="sgd", minibatch_size=4, randomize_minibatch=True, seed=7)),
    ("sse", "Logistic", dict(optimizer_type="adam", minibatch_size=1, weight_decay=0.01)),
    ("cross_entropy", "SoftMax", dict(optimizer_type="sgd", minibatch_size=1)),
    ("cross_entropy", "SoftMax", dict(optimizer_type="adam", minibatch_size=4, randomize_minibatch=True, seed=9,
                                      weight_decay=0.01)),
    ("cross_entropy", "Linear", dict(optimizer_type="sgd", minibatch_size=3, weight_decay=0.01)),
    ("cross_entropy", "Linear", dict(optimizer_type="adam", minibatch_size=1, randomize_minibatch=True, seed=1)),
]


@pytest.mark.parametrize("loss,out_fn,settings", MIXED_CASES,
                         ids=[f"{l}-{o}-{s['optimizer_type']}-mb{s['minibatch_size']}-{i}"
                              for i, (l, o, s) in enumerate(MIXED_CASES)])
def test_mixed_net_losses_match_oracle(loss, out_fn, settings):
    comp, forward, w0 = build_mixed(out_fn)
    x, t = mixed_data(loss)
    lr = 0.05 if settings["optimizer_type"] == "sgd" else 0.01
    spec = {"mse": learning.Loss.MSE, "l1": "L1", "sse": "SSE", "cross_entropy": learning.Loss.CROSS_ENTROPY}[loss]
    comp.learn(x, t, epochs=3, learning_rate=lr, loss_spec=spec, **settings)
    out = comp.learn_result.outputs
    ref = oracle_train(forward, w0, x, t, epochs=3, learning_rate=lr, loss_spec=loss, **settings)
    for k in w0:  # every learnable matrix moved
        assert not np.array_equal(weights_of(comp)[k], w0[k]), k
    assert_weights(weights_of(comp), ref.weights)
    np.testing.assert_allclose(out["out"], ref.outputs["out"], **TOL)
    np.testing.assert_allclose(comp.losses, ref.losses, **TOL)


def test_returned_outputs_are_pre_update_final_epoch_outputs_in_trial_order():
    comp, forward, w0 = build_mixed("Linear")
    x, t = mixed_data("mse")
    settings = dict(epochs=3, learning_rate=0.1, minibatch_size=2, randomize_minibatch=True, seed=4)
    comp.learn(x, t, **settings)
    out = comp.learn_result.outputs
    ref = oracle_train(forward, w0, x, t, **settings)
    np.testing.assert_allclose(out["out"], ref.outputs["out"], **TOL)
    # they are not the outputs of the trained weights (each was taken before its minibatch's update)
    after = oracle_forward_np(forward, ref.weights, x)["out"]
    assert not np.allclose(out["out"], after, rtol=1e-6, atol=1e-9)
    # trial order: row k is the forward pass of trial k (randomized minibatches were reassembled)
    rng = np.random.default_rng(4)
    for _ in range(2):
        rng.permutation(7)
    order = rng.permutation(7)
    snap = ref.snapshots[2 * 4 - 1]  # 4 minibatches per epoch: the weights after the first two epochs
    first_rows = order[:2]
    before = oracle_forward_np(forward, snap, {k: v[first_rows] for k, v in x.items()})["out"]
    np.testing.assert_allclose(out["out"][first_rows], before, **TOL)


def test_losses_one_per_minibatch_equal_oracle():
    comp = build_xor()
    w0 = xor_weights(comp)
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=5, minibatch_size=3, learning_rate=0.5)
    ref = oracle_train(xor_forward, w0, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=5, minibatch_size=3,
                       learning_rate=0.5)
    assert len(comp.losses) == 10
    np.testing.assert_allclose(comp.losses, ref.losses, **TOL)
    np.testing.assert_allclose(comp.learn_result.epoch_losses, ref.epoch_losses, **TOL)


# ----------------------------------------------------------------------------------------- it learns

@pytest.mark.parametrize("settings", [dict(optimizer_type="sgd", learning_rate=0.5, epochs=2000, minibatch_size=4),
                                      dict(optimizer_type="adam", learning_rate=0.05, epochs=300, minibatch_size=4)],
                         ids=["sgd", "adam"])
def test_xor_learns(settings):
    comp = build_xor()
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **settings)
    out = comp.learn_result.outputs
    assert np.all((out["output"] > 0.5) == (XOR_TARGETS > 0.5))
    after = comp.evaluate({"input": XOR_INPUTS})["output"]
    assert np.all((after > 0.5) == (XOR_TARGETS > 0.5))
    assert np.mean((after - XOR_TARGETS) ** 2) < 0.02
    assert comp.losses[-1] < comp.losses[0]


# ----------------------------------------------------------------------------------------- structure

def test_learnable_false_projection_is_bit_identical():
    comp, forward, w0 = build_mixed("Linear", learnable_b=False)
    frozen_before = np.array(next(p for p in comp.projections if p.name == "b_to_hidden").matrix)
    x, t = mixed_data("mse")
    comp.learn(x, t, epochs=3, learning_rate=0.1, minibatch_size=2, optimizer_type="adam", weight_decay=0.01)
    after = weights_of(comp)
    assert after["b_to_hidden"].tobytes() == frozen_before.tobytes() == w0["b_to_hidden"].tobytes()
    for k in w0:
        if k != "b_to_hidden":
            assert not np.array_equal(after[k], w0[k]), k
    ref = oracle_train(forward, w0, x, t, epochs=3, learning_rate=0.1, minibatch_size=2, optimizer_type="adam",
                       weight_decay=0.01, frozen={"b_to_hidden"})
    assert_weights(after, ref.weights)
    # the program's parameter table agrees too
    prog = comp.program()
    assert prog.params["b_to_hidden.matrix"].value.tobytes() == w0["b_to_hidden"].tobytes()
    assert not prog.params["b_to_hidden.matrix"].learnable


def build_nested(seed: int = 3):
    rng = np.random.default_rng(seed)
    w = {"x_to_inner": rng.normal(size=(2, 3)), "h1_to_h2": rng.normal(size=(3, 3)),
         "inner_to_y": rng.normal(size=(3, 1))}
    inner = Composition("inner")
    h1, h2 = TransferMechanism("h1", 3, Logistic()), TransferMechanism("h2", 3, Tanh())
    inner.add_linear_processing_pathway([h1, MappingProjection(matrix=w["h1_to_h2"], name="h1_to_h2"), h2])
    x, y = TransferMechanism("x", 2), TransferMechanism("y", 1)
    outer = Composition("outer")
    outer.add_linear_processing_pathway([x, MappingProjection(matrix=w["x_to_inner"], name="x_to_inner"), inner,
                                         MappingProjection(matrix=w["inner_to_y"], name="inner_to_y"), y])

    def forward(W, inp):
        a = t_logistic(inp["x"] @ W["x_to_inner"])
        b = t_tanh(a @ W["h1_to_h2"])
        return {"y": b @ W["inner_to_y"]}

    return outer, inner, x, y, forward, w


def test_nested_composition_trains_through_nesting():
    outer, inner, x, y, forward, w0 = build_nested()
    rng = np.random.default_rng(0)
    xs, ts = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    outer.learn({x: xs}, {y: ts}, epochs=3, learning_rate=0.1, minibatch_size=2, optimizer_type="sgd")
    out = outer.learn_result.outputs
    inner_proj = inner.projections[0]
    assert inner_proj.name == "h1_to_h2"
    assert not np.array_equal(inner_proj.matrix, w0["h1_to_h2"])
    ref = oracle_train(forward, w0, {"x": xs}, {"y": ts}, epochs=3, learning_rate=0.1, minibatch_size=2)
    assert_weights(weights_of(outer), ref.weights)
    np.testing.assert_allclose(out["y"], ref.outputs["y"], **TOL)


def test_run_and_evaluate_after_learn_use_trained_weights():
    comp, forward, w0 = build_mixed("SoftMax")
    x, t = mixed_data("cross_entropy")
    comp.learn(x, t, epochs=3, learning_rate=0.05, loss_spec="cross_entropy")
    ref = oracle_train(forward, w0, x, t, epochs=3, learning_rate=0.05, loss_spec="cross_entropy")
    expect = oracle_forward_np(forward, ref.weights, x)["out"]
    np.testing.assert_allclose(comp.evaluate(x)["out"], expect, **TOL)
    assert len(comp.results) == 3 * 7  # learn() keeps every trained trial (PsyNeuLink's results)
    last = comp.run(x)
    assert len(comp.results) == 4 * 7
    np.testing.assert_allclose(np.asarray(last[0]), expect[-1], **TOL)
    np.testing.assert_allclose(np.stack([r[0] for r in comp.results[-7:]]), expect, **TOL)


# ----------------------------------------------------------------------------------------- early stopping

def expected_stop_epoch(epoch_losses, patience, min_delta):
    best, waited = math.inf, 0
    for e, loss in enumerate(epoch_losses, start=1):
        if loss < best - min_delta:
            best, waited = loss, 0
        else:
            waited += 1
            if waited >= patience:
                return e
    return len(epoch_losses)


@pytest.mark.parametrize("lr,seed,patience,min_delta", [(4.0, 2, 2, 0.0), (4.0, 2, 3, 0.002), (2.0, 0, 2, 0.01),
                                                     (2.0, 0, 3, 0.002)])
def test_early_stopping_stops_at_the_epoch_the_rule_implies(lr, seed, patience, min_delta):
    # SGD with a large rate on XOR: the epoch loss goes down unevenly, so the stop epoch is not trivial
    settings = dict(learning_rate=lr, minibatch_size=1, optimizer_type="sgd")
    w0 = xor_weights(build_xor(seed))
    free = oracle_train(xor_forward, w0, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=60, **settings)
    stop = expected_stop_epoch(free.epoch_losses, patience, min_delta)
    assert patience + 1 < stop < 60, (stop, free.epoch_losses)  # the case really exercises the rule
    comp = build_xor(seed)
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=60, patience=patience, min_delta=min_delta,
               **settings)
    assert comp.learn_result.epochs_run == stop
    assert comp.learn_result.stopped_early
    assert len(comp.losses) == 4 * stop
    np.testing.assert_allclose(comp.learn_result.epoch_losses, free.epoch_losses[:stop], **TOL)
    ref = oracle_train(xor_forward, w0, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=60,
                       patience=patience, min_delta=min_delta, **settings)
    assert ref.epochs_run == stop
    # rates this large amplify last-bit differences (sigmoid via exp vs torch's) over tens of epochs
    assert_weights(xor_weights(comp), ref.weights, rtol=1e-9, atol=1e-10)


def test_no_early_stop_without_patience():
    comp = build_xor(2)
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=30, learning_rate=8.0)
    assert comp.learn_result.epochs_run == 30 and not comp.learn_result.stopped_early


# ----------------------------------------------------------------------------------------- synch

def _synch_reads(scale):
    comp = build_xor()
    w0 = xor_weights(comp)
    reads = []
    seen_losses = []

    def cb(epoch, k, loss):
        reads.append((epoch, xor_weights(comp)))
        seen_losses.append(loss)

    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=3, minibatch_size=2, learning_rate=0.5,
               synch_projection_matrices=scale, callback=cb)
    ref = oracle_train(xor_forward, w0, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=3, minibatch_size=2,
                       learning_rate=0.5)
    assert len(reads) == 6
    assert [e for e, _ in reads] == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(seen_losses, ref.losses, **TOL)
    assert_weights(xor_weights(comp), ref.weights)  # after the run, always synchronised
    return [r for _, r in reads], ref, w0


def _same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_synch_minibatch_changes_matrices_every_minibatch():
    reads, ref, w0 = _synch_reads("minibatch")
    for a, b in zip(reads, reads[1:]):
        assert not _same(a, b)
    # each read is the oracle's weights after either that minibatch's update or the one before (consistently)
    lag = 0 if _same(reads[0], w0) else 1
    states = [w0] + ref.snapshots
    for k, r in enumerate(reads):
        assert_weights(r, states[k + lag])


def test_synch_epoch_changes_matrices_only_at_epoch_ends():
    reads, ref, w0 = _synch_reads("epoch")
    assert _same(reads[0], w0) and _same(reads[1], w0)
    assert _same(reads[2], reads[3]) and _same(reads[4], reads[5])
    assert not _same(reads[1], reads[2]) and not _same(reads[3], reads[4])
    assert_weights(reads[2], ref.snapshots[1])
    assert_weights(reads[4], ref.snapshots[3])


def test_synch_run_changes_matrices_only_after_the_run():
    reads, ref, w0 = _synch_reads("run")
    for r in reads:
        assert _same(r, w0)


# ----------------------------------------------------------------------------------------- modes, forms, defaults

def test_execution_mode_pytorch_is_torch_backend():
    a, b = build_xor(), build_xor()
    kw = dict(epochs=2, learning_rate=0.5, minibatch_size=2)
    a.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, execution_mode=ExecutionMode.PyTorch, **kw)
    ra = a.learn_result.outputs
    b.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, backend="torch", **kw)
    rb = b.learn_result.outputs
    np.testing.assert_array_equal(ra["output"], rb["output"])
    for k, v in xor_weights(a).items():
        np.testing.assert_array_equal(v, xor_weights(b)[k])
    assert learning.backend_name(execution_mode=ExecutionMode.PyTorch) == "torch"
    assert learning.backend_name(execution_mode=ExecutionMode.LLVMRun) == "llvm"


@pytest.mark.parametrize("how", ["execution_mode", "backend"])
def test_llvm_mode_raises_clear_error_or_works(how):
    comp = build_xor()
    before = xor_weights(comp)
    kw = {"execution_mode": ExecutionMode.LLVMRun} if how == "execution_mode" else {"backend": "llvm"}
    try:
        comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=2, learning_rate=0.5, **kw)
        out = comp.learn_result.outputs
    except MdfBridgeError as exc:
        assert "llvm" in str(exc).lower()
        assert _same(xor_weights(comp), before)
        return
    ref = build_xor()
    ref.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=2, learning_rate=0.5)
    expect = ref.learn_result.outputs
    np.testing.assert_allclose(out["output"], expect["output"], rtol=1e-9, atol=1e-12)
    assert_weights(xor_weights(comp), xor_weights(ref), rtol=1e-9, atol=1e-12)


def test_psyneulink_dict_form():
    comp, ref_comp = build_xor(), build_xor()
    inp, out = comp.nodes[0], comp.get_output_nodes()[0]
    assert (inp.name, out.name) == ("input", "output")
    comp.learn(inputs={"inputs": {inp: XOR_INPUTS}, "targets": {out: XOR_TARGETS}, "epochs": 3},
               learning_rate=0.5)
    res = comp.learn_result.outputs
    ref_comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=3, learning_rate=0.5)
    expect = ref_comp.learn_result.outputs
    assert len(comp.losses) == 12
    np.testing.assert_array_equal(res["output"], expect["output"])
    for k, v in xor_weights(comp).items():
        np.testing.assert_array_equal(v, xor_weights(ref_comp)[k])
    # PsyNeuLink's per-trial nesting (trials, 1, size) is accepted for inputs and targets alike
    third = build_xor()
    third.learn(inputs={"inputs": {"input": XOR_INPUTS[:, None, :]},
                        "targets": {"output": XOR_TARGETS[:, None, :]}, "epochs": 3, "learning_rate": 0.5})
    res3 = third.learn_result.outputs
    np.testing.assert_array_equal(res3["output"], expect["output"])


def test_default_learning_rate_is_0_001():
    assert LearnConfig().learning_rate == 0.001
    comp = build_xor()
    w0 = xor_weights(comp)
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=2)
    ref = oracle_train(xor_forward, w0, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=2,
                       learning_rate=0.001)
    assert_weights(xor_weights(comp), ref.weights)
    other = oracle_train(xor_forward, w0, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=2,
                         learning_rate=0.01)
    assert not np.allclose(xor_weights(comp)["hidden_to_output"], other.weights["hidden_to_output"], rtol=1e-9)


# ----------------------------------------------------------------------------------------- bad arguments / data

@pytest.mark.parametrize("kw,name", [({"optimizer_type": "rmsprop"}, "optimizer_type"),
                                     ({"loss_spec": "hinge"}, "loss"),
                                     ({"minibatch_size": 0}, "minibatch_size"),
                                     ({"epochs": 0}, "epochs"),
                                     ({"synch_projection_matrices": "trial"}, "synch_projection_matrices"),
                                     ({"learning_rat": 0.1}, "learning_rat")])
def test_bad_arguments_raise_naming_the_argument(kw, name):
    comp = build_xor()
    before = xor_weights(comp)
    with pytest.raises(MdfBridgeError, match=name):
        comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **kw)
    assert _same(xor_weights(comp), before)
    with pytest.raises(MdfBridgeError, match=name):
        learning.learn(comp.program(), {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **kw)


def test_bad_argument_error_classes():
    comp = build_xor()
    data = ({"input": XOR_INPUTS}, {"output": XOR_TARGETS})
    with pytest.raises(UnsupportedError):
        comp.learn(*data, optimizer_type="rmsprop")
    with pytest.raises(UnsupportedError):
        comp.learn(*data, loss_spec="hinge")
    with pytest.raises(DataError):
        comp.learn(*data, minibatch_size=0)
    with pytest.raises(CompositionError):
        comp.learn(*data, bogus=1)




@pytest.mark.parametrize("kw,name", [({"weight_decay": -0.1}, "weight_decay"),
                                     ({"weight_decay": float("nan")}, "weight_decay"),
                                     ({"learning_rate": "fast"}, "learning_rate")])
def test_bad_numeric_settings_raise_naming_the_argument(kw, name):
    comp = build_xor()
    before = xor_weights(comp)
    try:
        with pytest.raises(MdfBridgeError, match=name):
            comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **kw)
    finally:
        assert _same(xor_weights(comp), before)


@pytest.mark.parametrize("case", ["non_output_target", "target_shape", "nan_target", "trial_count",
                                  "input_trial_count", "unknown_input"])
def test_bad_data_raises_data_error(case):
    comp, _, w0 = build_mixed("Linear")
    x, t = mixed_data("mse")
    if case == "non_output_target":
        t = {"hidden": np.zeros((7, 4)), **t}
        match = "hidden"
    elif case == "target_shape":
        t = {"out": np.zeros((7, 2))}
        match = "out"
    elif case == "nan_target":
        t["out"][3, 1] = np.nan
        match = "NaN"
    elif case == "trial_count":
        t = {"out": t["out"][:5]}
        match = "trials"
    elif case == "input_trial_count":
        x = {"in_a": x["in_a"], "in_b": x["in_b"][:6]}
        match = "trials"
    else:
        x = {**x, "nope": np.zeros((7, 1))}
        match = "nope"
    with pytest.raises(DataError, match=match):
        comp.learn(x, t, epochs=1, learning_rate=0.1)
    assert _same(weights_of(comp), w0)
    with pytest.raises(DataError):
        learning.learn(comp.program(), x, t, epochs=1)


# ----------------------------------------------------------------------------------------- float32, files

def test_float32_agrees_with_float64():
    a, b = build_xor(), build_xor()
    kw = dict(epochs=10, learning_rate=0.3, minibatch_size=2, optimizer_type="sgd")
    a.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, dtype=torch.float32, **kw)
    out32 = a.learn_result.outputs
    b.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **kw)
    out64 = b.learn_result.outputs
    assert a.losses[-1] != b.losses[-1]  # it really ran in float32
    np.testing.assert_allclose(out32["output"], out64["output"], rtol=0, atol=1e-5)
    assert_weights(xor_weights(a), xor_weights(b), rtol=0, atol=1e-5)
    for v in xor_weights(a).values():
        assert v.dtype == np.float64


def test_learn_function_on_saved_mdf_matches_composition_learn(tmp_path):
    comp = build_xor()
    path = tmp_path / "xor.json"
    comp.save_mdf(path)
    before = path.read_bytes()
    kw = dict(epochs=3, learning_rate=0.2, minibatch_size=2, optimizer_type="adam", randomize_minibatch=True,
              seed=3, weight_decay=0.01)
    res = learning.learn(str(path), {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **kw)
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **kw)
    out = comp.learn_result.outputs
    for name, w in xor_weights(comp).items():
        np.testing.assert_allclose(res.program.params[f"{name}.matrix"].value, w, **TOL)
    np.testing.assert_allclose(res.outputs["output"], out["output"], **TOL)
    np.testing.assert_allclose(res.losses, comp.losses, **TOL)
    assert path.read_bytes() == before  # learn() on a path does not write the file
    # also a pre-loaded Program and the PsyNeuLink dict form of the function
    res2 = learning.learn(load_program(path), {"inputs": {"input": XOR_INPUTS}, "targets": {"output": XOR_TARGETS},
                                               **kw})
    for name, p in res.program.learnable_params().items():
        np.testing.assert_array_equal(res2.program.params[name].value, p.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False")
def test_learn_on_cuda_matches_cpu():
    from xor_model import XOR_INPUTS, XOR_TARGETS, build_xor

    cpu, gpu = build_xor(), build_xor()
    kw = dict(epochs=20, learning_rate=0.5, minibatch_size=2)
    cpu.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **kw)
    gpu.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, device="cuda", **kw)
    for a, b in zip(cpu.projections, gpu.projections):
        np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-9)


def test_a_misspelled_learn_setting_lists_the_settings_with_the_closest_one():
    from conftest import make_xor

    from mdfbridge.errors import MdfBridgeError

    with pytest.raises(MdfBridgeError, match=r"unknown setting 'learning_rat'; did you mean 'learning_rate'\? "
                                             r"settings: epochs, learning_rate, minibatch_size"):
        make_xor().learn(inputs={"input": np.zeros((4, 2))}, targets={"output": np.zeros((4, 1))}, learning_rat=0.1)


def _xor_net(cls, **kw):
    from mdfbridge import Logistic, MappingProjection, TransferMechanism

    rng = np.random.default_rng(3)
    a, h, o = TransferMechanism("input", 2), TransferMechanism("hidden", 3, Logistic()), \
        TransferMechanism("output", 1, Logistic())
    return cls("net", pathways=[[a, MappingProjection(matrix=rng.normal(size=(2, 3))), h,
                                 MappingProjection(matrix=rng.normal(size=(3, 1))), o]], **kw)


def test_autodiff_composition_takes_psyneulinks_learning_settings_in_its_constructor():
    from mdfbridge import AutodiffComposition, Composition

    x = {"input": np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]])}
    t = {"output": np.array([[0], [1], [1], [0.0]])}
    plain = learned_outputs(_xor_net(Composition), inputs=x, targets=t, epochs=30, learning_rate=0.3,
                            optimizer_type="adam")
    auto = _xor_net(AutodiffComposition, learning_rate=0.3, optimizer_type="adam")
    np.testing.assert_allclose(learned_outputs(auto, inputs=x, targets=t, epochs=30)["output"], plain["output"], rtol=0,
                               atol=1e-15)
    overridden = _xor_net(AutodiffComposition, learning_rate=0.3, optimizer_type="adam")
    sgd = learned_outputs(_xor_net(Composition), inputs=x, targets=t, epochs=30, learning_rate=0.3)
    got = learned_outputs(overridden, inputs=x, targets=t, epochs=30, optimizer_type="sgd")["output"]
    np.testing.assert_allclose(got, sgd["output"], rtol=0, atol=1e-15)  # learn()'s arguments win
    assert not np.allclose(sgd["output"], plain["output"])


def test_cross_entropy_on_a_one_unit_output_is_refused_not_a_silent_no_op():
    """torch's cross_entropy over one unit is 0 whatever the target: training would change nothing."""
    from conftest import make_xor

    from mdfbridge.errors import DataError

    x = {"input": np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]])}
    t = {"output": np.array([[0], [1], [1], [0.0]])}
    for backend in ("torch", "llvm"):
        with pytest.raises(DataError, match=r"loss_spec 'cross_entropy' needs outputs of at least 2 units, and "
                                             r"output 'output' has 1"):
            make_xor().learn(inputs=x, targets=t, epochs=2, loss_spec="cross_entropy", backend=backend)
