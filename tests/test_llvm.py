"""The LLVM backend against torch autograd, the torch backend and the numpy reference.

- the registry's derivatives (mdfbridge/ops.py `derivative`) against torch autograd;
- the compiled backward of every registered transfer function: one full-batch SGD step with lr 1 gives
  W - dL/dW, compared with the torch backend's step (torch autograd) to 1e-10;
- whole training runs: weights, per-minibatch losses, epoch losses and final-epoch outputs equal the torch
  backend's to 1e-9 (sgd and adam with weight_decay, minibatch 1 and 4, shuffled or not, four losses);
- forward equals the numpy reference to 1e-12; early stopping; write-back and synching; the compile cache;
  unsupported constructs raise UnsupportedError naming them.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import pytest
import torch
from conftest import REPO, XOR_INPUTS, XOR_TARGETS, build_xor

from mdfbridge import (
    BiasMechanism,
    Composition,
    Exponential,
    Logistic,
    MappingProjection,
    ReLU,
    SoftMax,
    Tanh,
    TransferMechanism,
    UnsupportedError,
    lower,
)
from mdfbridge.api import run_with_backend
from mdfbridge.expressions import parse_expression
from mdfbridge.importers import llvm as llvm_backend
from mdfbridge.learning import LearnConfig, train_program
from mdfbridge.ops import REGISTRY

WEIGHTS_TOL = 1e-9


# ----------------------------------------------------------------------------------------- models

def build_net(seed: int = 1) -> Composition:
    """Two inputs; Tanh (affine argument), ReLU with a bias node, a SoftMax output fed by two summed
    afferents, a logistic node in a nested composition, an exponential output whose afferents include a
    learnable=False projection."""
    rng = np.random.default_rng(seed)

    def proj(name: str, shape: tuple, learnable: bool = True) -> MappingProjection:
        return MappingProjection(matrix=rng.normal(0, 0.7, shape), name=name, learnable=learnable)

    i = TransferMechanism("i", 3)
    i2 = TransferMechanism("i2", 2)
    h = TransferMechanism("h", 4, Tanh(gain=1.2, bias=0.1, offset=0.2, scale=1.5))
    r = TransferMechanism("r", 5, ReLU(gain=1.2, bias=0.1, leak=0.05))
    o = TransferMechanism("o", 3, SoftMax(gain=1.3))
    e = TransferMechanism("e", 2, Exponential(rate=0.5, scale=0.7, bias=-0.1, offset=0.2))
    inner = Composition("inner")
    lg = TransferMechanism("lg", 4, Logistic(gain=0.8, bias=0.1, offset=0.05))
    inner.add_node(lg)
    comp = Composition("net")
    comp.add_linear_processing_pathway([i, proj("i_h", (3, 4)), h, proj("h_o", (4, 3)), o])
    comp.add_linear_processing_pathway([i, proj("i_r", (3, 5)), r, proj("r_o", (5, 3)), o])
    comp.add_linear_processing_pathway([r, proj("r_e", (5, 2), learnable=False), e])
    comp.add_linear_processing_pathway([h, proj("h_lg", (4, 4)), inner, proj("lg_e", (4, 2)), e])
    comp.add_projection(proj("i2_r", (2, 5)), i2, r)
    comp.add_projection(proj("b_r", (1, 5)), BiasMechanism("b"), r)
    return comp


rng = np.random.default_rng(5)
NET_X = {"i": rng.normal(size=(7, 3)), "i2": rng.normal(size=(7, 2))}
NET_T = {"o": rng.dirichlet(np.ones(3), size=7), "e": rng.uniform(size=(7, 2))}


def train_both(build, inputs, targets, **settings):
    """(torch result, torch program, llvm result, llvm program) from identical fresh programs."""
    out = []
    for backend in ("torch", "llvm"):
        prog = build().program()
        res = train_program(prog, inputs, targets, LearnConfig(**settings), backend=backend)
        out += [res, prog]
    return tuple(out)


def assert_same_training(t_res, t_prog, l_res, l_prog, tol=WEIGHTS_TOL):
    for name, p in t_prog.params.items():
        q = l_prog.params[name].value
        assert isinstance(q, np.ndarray) and q.dtype == np.float64 and q.shape == np.shape(p.value)
        np.testing.assert_allclose(q, p.value, rtol=0, atol=tol, err_msg=name)
    assert len(l_res.losses) == len(t_res.losses)
    np.testing.assert_allclose(l_res.losses, t_res.losses, rtol=tol, atol=tol)
    np.testing.assert_allclose(l_res.epoch_losses, t_res.epoch_losses, rtol=tol, atol=tol)
    assert l_res.epochs_run == t_res.epochs_run and l_res.stopped_early == t_res.stopped_early
    for k, v in t_res.outputs.items():
        np.testing.assert_allclose(l_res.outputs[k], v, rtol=0, atol=tol, err_msg=k)


# ----------------------------------------------------------------------------------------- derivatives

def _domain(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if name in ("arcsin", "arccos"):
        return rng.uniform(-0.95, 0.95, n)
    if name == "tan":
        return rng.uniform(-1.3, 1.3, n)
    x = rng.normal(0, 1.5, n)
    return np.where(np.abs(x) < 1e-3, 0.5, x)  # keep away from kinks (Relu, ReLU)


WITH_DERIVATIVE = sorted(k for k, v in REGISTRY.items() if v.derivative is not None)


def test_every_transfer_function_has_a_derivative():
    for name in ("linear", "logistic", "exponential", "sin", "cos", "tan", "sinh", "cosh", "tanh", "arctan",
                 "arcsin", "arccos", "Relu", "ReLU", "SoftMax"):
        assert name in WITH_DERIVATIVE


@pytest.mark.parametrize("name", WITH_DERIVATIVE)
def test_registry_derivative_matches_torch_autograd(name):
    op = REGISTRY[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for _ in range(5):
        x = _domain(name, rng, 6)
        params = {a: float(rng.uniform(0.3, 1.7)) if a != "bias" else float(rng.uniform(-0.3, 0.3))
                  for a in op.args[1:]}
        if "leak" in params:
            params["leak"] = 0.07
        grad = rng.normal(size=6)
        xt = torch.tensor(x, requires_grad=True)
        out_t = op.torch(**{op.args[0]: xt}, **params)
        (out_t * torch.tensor(grad)).sum().backward()
        out = op.numpy(**{op.args[0]: x}, **params)
        np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
        env = {op.args[0]: x, "out": out, "grad": grad, **params}
        d = np.asarray(parse_expression(op.derivative).evaluate(env), dtype=float)
        vjp = d if not op.elementwise else grad * np.broadcast_to(d, x.shape)
        np.testing.assert_allclose(vjp, xt.grad.numpy(), rtol=1e-10, atol=1e-10)


def _function_doc(fn: str, args: dict, n_in: int = 3, n_out: int = 4, seed: int = 0) -> dict:
    """input (n_in) -> learnable projection -> fn -> output."""
    rng = np.random.default_rng(seed)
    small = fn in ("arcsin", "arccos", "tan")
    w = rng.uniform(-0.3, 0.3, (n_in, n_out)) if small else rng.normal(0, 0.8, (n_in, n_out))
    nodes = {
        "inp": {"input_ports": {"x": {"shape": [n_in]}}, "output_ports": {"out": {"value": "x"}}},
        "proj": {"metadata": {"mdfbridge": {"role": "projection", "learnable": True}},
                 "input_ports": {"input": {"shape": [n_in]}}, "parameters": {"matrix": {"value": w.tolist()}},
                 "functions": {"function": {"function": "MatMul", "args": {"A": "input", "B": "matrix"}}},
                 "output_ports": {"output": {"value": "function"}}},
        "f": {"input_ports": {"v": {"shape": [n_out]}},
              "functions": {"fn": {"function": fn, "args": args}},
              "output_ports": {"out": {"value": "fn"}}},
    }
    edges = {"e1": {"sender": "inp", "sender_port": "out", "receiver": "proj", "receiver_port": "input"},
             "e2": {"sender": "proj", "sender_port": "output", "receiver": "f", "receiver_port": "v"}}
    return {"m": {"format": "ModECI MDF v0.4", "generating_application": "test",
                  "graphs": {"g": {"nodes": nodes, "edges": edges}}}}


def _transfer_comp(function) -> Composition:
    rng = np.random.default_rng(3)
    comp = Composition("c")
    proj = MappingProjection(matrix=rng.normal(0, 0.8, (3, 4)), name="proj")
    comp.add_linear_processing_pathway([TransferMechanism("inp", 3), proj, TransferMechanism("f", 4, function)])
    return comp


def _gradient_program(name: str):
    """A fresh Program in which `name` is applied to a learnable projection of the input."""
    if name == "SoftMax":
        return _transfer_comp(SoftMax(gain=1.3)).program(), "f"
    if name == "ReLU":
        return _transfer_comp(ReLU(gain=1.2, bias=0.1, leak=0.07)).program(), "f"
    op = REGISTRY[name]
    values = {"slope": 1.3, "intercept": 0.2, "gain": 1.4, "bias": 0.15, "offset": -0.2, "scale": 0.9, "rate": 0.6,
              "x_0": 0.1, "standard_deviation": 1.5, "leak": 0.05}
    args = {op.args[0]: "v", **{a: values[a] for a in op.args[1:]}}
    return lower(_function_doc(name, args)), "f"


@pytest.mark.parametrize("name", WITH_DERIVATIVE)
def test_compiled_gradient_matches_torch_autograd(name):
    """One full-batch SGD step with learning rate 1: W_after = W - dL/dW on both backends."""
    x = np.random.default_rng(7).uniform(-1, 1, (5, 3))
    grads = []
    for backend in ("torch", "llvm"):
        prog, out = _gradient_program(name)
        target = np.random.default_rng(8).uniform(0.1, 0.9, (5, prog.shapes[prog.outputs[out]][0]))
        before = prog.params["proj.matrix"].value.copy()
        train_program(prog, {"inp": x}, {out: target}, LearnConfig(epochs=1, learning_rate=1.0, minibatch_size=5),
                      backend=backend)
        grads.append(before - prog.params["proj.matrix"].value)
    assert np.abs(grads[0]).max() > 1e-6
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------- forward

@pytest.mark.parametrize("trials", [1, 7, 150])
def test_forward_matches_numpy_reference(trials):
    comp = build_net()
    prog = comp.program()
    r = np.random.default_rng(trials)
    x = {"i": r.normal(size=(trials, 3)), "i2": r.normal(size=(trials, 2))}
    ref = run_with_backend(prog, x, "numpy")
    got = run_with_backend(prog, x, "llvm")
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].shape == ref[k].shape
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, atol=1e-12)


def test_forward_xor_and_composition_evaluate():
    comp = build_xor()
    ref = comp.evaluate({"input": XOR_INPUTS})
    got = comp.evaluate({"input": XOR_INPUTS}, backend="llvm")
    np.testing.assert_allclose(got["output"], ref["output"], rtol=1e-12, atol=1e-12)


def test_forward_of_every_function():
    for name in WITH_DERIVATIVE:
        prog, _ = _gradient_program(name)
        x = np.random.default_rng(2).uniform(-1, 1, (9, 3))
        ref, got = run_with_backend(prog, {"inp": x}, "numpy"), run_with_backend(prog, {"inp": x}, "llvm")
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, atol=1e-12, err_msg=name)


# ----------------------------------------------------------------------------------------- training

@pytest.mark.slow  # 32 training runs on both backends
@pytest.mark.parametrize("loss", ["mse", "l1", "sse", "cross_entropy"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("minibatch", [1, 4])
@pytest.mark.parametrize("randomize", [False, True])
def test_training_matches_torch_backend(loss, optimizer, minibatch, randomize):
    lr = 0.05 if optimizer == "sgd" else 0.01
    res = train_both(build_net, NET_X, NET_T, epochs=8, learning_rate=lr, optimizer_type=optimizer,
                     weight_decay=0.01, loss_spec=loss, minibatch_size=minibatch, randomize_minibatch=randomize,
                     seed=11)
    assert_same_training(*res)
    l_prog = res[3]
    fixed = build_net().program().params["r_e.matrix"].value
    np.testing.assert_array_equal(l_prog.params["r_e.matrix"].value, fixed)  # learnable=False
    assert not np.allclose(l_prog.params["i_h.matrix"].value, build_net().program().params["i_h.matrix"].value)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_adamw_training_matches_torch_backend(loss):
    """AdamW's decoupled weight decay, native against torch.optim.AdamW."""
    res = train_both(build_net, NET_X, NET_T, epochs=8, learning_rate=0.01, optimizer_type="adamw",
                     weight_decay=0.05, loss_spec=loss, minibatch_size=4, randomize_minibatch=True, seed=3)
    assert_same_training(*res)


def test_poisson_nll_matches_torch_backend():
    res = train_both(build_net, NET_X, NET_T, epochs=5, learning_rate=0.01, loss_spec="poisson_nll",
                     minibatch_size=2)
    assert_same_training(*res)


def test_outputs_without_targets_are_not_trained():
    """Only 'o' has targets: parameters that reach only 'e' get no gradient (torch skips them, weight decay too)."""
    res = train_both(build_net, NET_X, {"o": NET_T["o"]}, epochs=6, learning_rate=0.05, optimizer_type="adam",
                     weight_decay=0.1, minibatch_size=3)
    assert_same_training(*res)
    initial = build_net().program().params
    for name in ("h_lg.matrix", "lg_e.matrix", "r_e.matrix"):
        np.testing.assert_array_equal(res[3].params[name].value, initial[name].value)
    assert set(res[2].outputs) == {"o", "e"}


def test_xor_2_10_1_with_bias_nodes_matches_torch():
    results = {}
    for backend in ("torch", "llvm"):
        comp = build_xor()
        comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=300, learning_rate=0.5,
                   backend=backend)
        out = comp.learn_result.outputs
        results[backend] = (comp, out)
    (t_comp, t_out), (l_comp, l_out) = results["torch"], results["llvm"]
    for p, q in zip(t_comp.projections, l_comp.projections):
        np.testing.assert_allclose(q.matrix, p.matrix, rtol=0, atol=WEIGHTS_TOL, err_msg=p.name)
    np.testing.assert_allclose(l_out["output"], t_out["output"], rtol=0, atol=WEIGHTS_TOL)
    np.testing.assert_allclose(l_comp.losses, t_comp.losses, rtol=WEIGHTS_TOL, atol=WEIGHTS_TOL)
    assert len(l_comp.losses) == 300 * 4
    assert l_comp.learn_result.epoch_losses[-1] < l_comp.learn_result.epoch_losses[0]


def test_xor_adam_shuffled_minibatch_3():
    res = train_both(build_xor, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=50, learning_rate=0.05,
                     optimizer_type="adam", weight_decay=0.001, minibatch_size=3, randomize_minibatch=True, seed=4)
    assert_same_training(*res)


@pytest.mark.parametrize("patience,min_delta,lr", [(3, 0.0, 0.0), (1, 0.0, 0.0), (2, 1e-3, 0.5), (5, 1e-4, 0.5)])
def test_early_stopping_epoch_matches_torch(patience, min_delta, lr):
    res = train_both(build_xor, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=2000, learning_rate=lr,
                     patience=patience, min_delta=min_delta)
    t_res, l_res = res[0], res[2]
    assert t_res.stopped_early and l_res.stopped_early
    assert l_res.epochs_run == t_res.epochs_run < 2000
    assert len(l_res.losses) == 4 * l_res.epochs_run
    assert_same_training(*res)


# ----------------------------------------------------------------------------------------- write-back, synch, callbacks

def test_write_back_matches_torch_and_composition_is_synched():
    comp = build_xor()
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=20, learning_rate=0.5, backend="llvm")
    prog = comp.program()
    for p in comp.projections:
        stored = comp.learn_result.program.params[f"{p.name}.matrix"].value
        assert stored.dtype == np.float64
        np.testing.assert_array_equal(p.matrix, stored)
    assert prog is comp.learn_result.program


@pytest.mark.parametrize("synch", ["minibatch", "epoch", "run"])
def test_synch_and_callback_like_torch(synch):
    seen = {}
    for backend in ("torch", "llvm"):
        prog = build_xor().program()
        events: list = []

        def on_synch(prog=prog, events=events):
            events.append(("synch", prog.params["hidden_to_output.matrix"].value.copy()))

        def callback(epoch, k, loss, events=events):
            events.append(("loss", epoch, k, loss))
        train_program(prog, {"input": XOR_INPUTS}, {"output": XOR_TARGETS},
                      LearnConfig(epochs=3, learning_rate=0.5, synch_projection_matrices=synch), backend=backend,
                      callback=callback, on_synch=on_synch)
        seen[backend] = events
    assert [e[0] for e in seen["llvm"]] == [e[0] for e in seen["torch"]]
    for a, b in zip(seen["torch"], seen["llvm"]):
        if a[0] == "loss":
            assert a[1:3] == b[1:3]
            assert abs(a[3] - b[3]) < 1e-12
        else:
            np.testing.assert_allclose(b[1], a[1], rtol=0, atol=1e-12)


def test_callback_error_propagates():
    def callback(epoch, k, loss):
        if k == 5:
            raise KeyboardInterrupt("stop")
    prog = build_xor().program()
    with pytest.raises(KeyboardInterrupt):
        train_program(prog, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, LearnConfig(epochs=10),
                      backend="llvm", callback=callback)


# ----------------------------------------------------------------------------------------- compile cache

def _xor_weights_after_llvm(seed: int = 0) -> Dict[str, np.ndarray]:
    llvm_backend.clear_cache()  # (the next learn builds its module again: from the disk cache when it has it)
    comp = build_xor(seed)
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=5, learning_rate=0.5, backend="llvm")
    return {k: p.value.copy() for k, p in comp.program().params.items()}


def test_disk_cache_loads_what_an_earlier_compile_wrote(tmp_path, monkeypatch, caplog):
    """Object code kept on disk (importers/llvm_cache.py): the second build loads it, same numbers bit for bit;
    a damaged entry or one others may write is not run; MDFBRIDGE_LLVM_CACHE=0 and an unusable folder only
    cost the compile."""
    from mdfbridge.importers import llvm_cache

    monkeypatch.setenv("MDFBRIDGE_CACHE_DIR", str(tmp_path))
    before = dict(llvm_backend.stats)
    first = _xor_weights_after_llvm()
    entries = list((tmp_path / "llvm").glob("*.o"))
    assert len(entries) == 1 and llvm_backend.stats["disk_hits"] == before["disk_hits"]
    assert oct((tmp_path / "llvm").stat().st_mode & 0o777) == "0o700"
    second = _xor_weights_after_llvm()
    assert llvm_backend.stats["disk_hits"] == before["disk_hits"] + 1
    for k in first:
        np.testing.assert_array_equal(second[k], first[k])
    entry = entries[0]
    data = bytearray(entry.read_bytes())
    data[-10] ^= 0xFF
    entry.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        damaged = _xor_weights_after_llvm()
    assert "damaged" in caplog.text and llvm_backend.stats["disk_hits"] == before["disk_hits"] + 1
    assert llvm_cache.load(entry.stem) is not None  # (compiled again and replaced)
    for k in first:
        np.testing.assert_array_equal(damaged[k], first[k])
    entry.chmod(0o666)
    caplog.clear()
    with caplog.at_level("WARNING"):
        _xor_weights_after_llvm()
    assert "not private" in caplog.text and llvm_backend.stats["disk_hits"] == before["disk_hits"] + 1
    monkeypatch.setenv("MDFBRIDGE_CACHE_DIR", str(tmp_path / "off"))
    monkeypatch.setenv("MDFBRIDGE_LLVM_CACHE", "0")
    _xor_weights_after_llvm()
    assert not (tmp_path / "off").exists()
    monkeypatch.delenv("MDFBRIDGE_LLVM_CACHE")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MDFBRIDGE_CACHE_DIR", str(tmp_path / "file"))  # (no folder can be made under a file)
    for k, v in _xor_weights_after_llvm().items():
        np.testing.assert_array_equal(v, first[k])


def test_second_learn_does_not_recompile():
    llvm_backend.clear_cache()
    comp = build_xor()
    settings = dict(epochs=5, learning_rate=0.5, backend="llvm")
    before = dict(llvm_backend.stats)
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **settings)
    assert llvm_backend.stats["compiles"] == before["compiles"] + 1
    assert llvm_backend.stats["last_compile_seconds"] > 0
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **settings)
    build_xor(seed=3).learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **settings)  # same structure
    assert llvm_backend.stats["compiles"] == before["compiles"] + 1
    assert llvm_backend.stats["cache_hits"] == before["cache_hits"] + 2
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, loss_spec="sse", **settings)
    assert llvm_backend.stats["compiles"] == before["compiles"] + 2
    # the composition keeps its values between runs: continuing training equals one longer run
    a, b = build_xor(), build_xor()
    for _ in range(2):
        a.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **settings)
    b.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=10, learning_rate=0.5, backend="llvm")
    for p, q in zip(a.projections, b.projections):
        np.testing.assert_allclose(p.matrix, q.matrix, rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------------------- unsupported

def _doc(nodes: dict, edges: dict | None = None) -> dict:
    graph = {"nodes": nodes, **({"edges": edges} if edges else {})}
    return {"m": {"format": "ModECI MDF v0.4", "generating_application": "test", "graphs": {"g": graph}}}


def _assert_unsupported(prog, node: str, what: str, *, train: bool = False, inputs=None, targets=None):
    with pytest.raises(UnsupportedError) as info:
        if train:
            train_program(prog, inputs, targets, LearnConfig(epochs=1), backend="llvm")
        else:
            run_with_backend(prog, inputs, "llvm")
    msg = str(info.value)
    assert node in msg and what in msg and "torch" in msg, msg


def test_unsupported_constructs_raise_naming_them():
    expr = lower(_doc({"A": {"input_ports": {"x": {"shape": [2]}},
                             "functions": {"f": {"value": "numpy.exp(x) * 0.5 + x[0]"}},
                             "output_ports": {"y": {"value": "f"}}}}))
    _assert_unsupported(expr, "node 'A'", "function 'Getitem'", inputs={"A": np.ones((2, 2))})
    for function, name in (({"function": "Mod", "args": {"A": "x", "B": 2.0}}, "Mod"),
                           ({"function": {"ReduceSum": {"X": "x"}}}, "ReduceSum")):
        prog = lower(_doc({"A": {"input_ports": {"x": {"shape": [2]}}, "functions": {"s": function},
                                 "output_ports": {"y": {"value": "s"}}}}))
        _assert_unsupported(prog, "node 'A'", f"function '{name}'", inputs={"A": np.ones((2, 2))})
    counter = {"parameters": {"increment": {"value": 1.5}, "count": {"value": "count + increment"}},
               "output_ports": {"c": {"value": "count"}}}
    stateful = lower(_doc({"counter": counter}))
    _assert_unsupported(stateful, "node 'counter'", "stateful", inputs={})


def test_elementwise_expressions_and_onnx_functions_compile():
    """Products of tensors (`x * x`) and elementwise ONNX functions (Sigmoid) compile through their records."""
    x = np.random.default_rng(0).normal(size=(3, 2))
    square = lower(_doc({"A": {"input_ports": {"x": {"shape": [2]}}, "output_ports": {"y": {"value": "x * x"}}}}))
    onnx = lower(_doc({"A": {"input_ports": {"x": {"shape": [2]}},
                             "functions": {"s": {"function": {"onnx::Sigmoid": {"X": "x"}}}},
                             "output_ports": {"y": {"value": "s"}}}}))
    for prog in (square, onnx):
        ref, got = run_with_backend(prog, {"A": x}, "numpy"), run_with_backend(prog, {"A": x}, "llvm")
        np.testing.assert_allclose(got["A"], ref["A"], rtol=1e-12, atol=1e-12)


def test_unsupported_training_construct_raises():
    # a learnable parameter that is not a projection matrix (a gain marked learnable)
    doc = _function_doc("logistic", {"variable0": "v", "gain": "g", "bias": 0.0, "offset": 0.0})
    node = doc["m"]["graphs"]["g"]["nodes"]["f"]
    node["parameters"] = {"g": {"value": [1.0, 1.0, 1.0, 1.0]}}
    node["metadata"] = {"mdfbridge": {"learnable_parameters": ["g"]}}
    prog = lower(doc)
    x, t = np.ones((2, 3)), np.ones((2, 4)) * 0.5
    np.testing.assert_allclose(run_with_backend(prog, {"inp": x}, "llvm")["f"],
                               run_with_backend(prog, {"inp": x}, "numpy")["f"], rtol=1e-12)
    _assert_unsupported(prog, "node 'f'", "f.g", train=True, inputs={"inp": x}, targets={"f": t})


def test_gru_block_is_unsupported():
    import mdfbridge

    gru = getattr(mdfbridge, "GRUComposition", None)
    if gru is None:
        pytest.skip("no GRUComposition in this build")
    comp = gru(input_size=2, hidden_size=3)
    with pytest.raises(UnsupportedError, match="GRU.*torch"):
        run_with_backend(comp.program(), {}, "llvm")


def test_cli_run_with_llvm_backend(tmp_path):
    from mdfbridge.cli import main

    out_a, out_b = tmp_path / "a.npz", tmp_path / "b.npz"
    model = str(REPO / "examples" / "xor.mdf.json")
    assert main(["run", model, "--input", "input=[[0,0],[1,1],[0,1]]", "--backend", "llvm", "--out", str(out_a)]) == 0
    assert main(["run", model, "--input", "input=[[0,0],[1,1],[0,1]]", "--out", str(out_b)]) == 0
    a, b = np.load(out_a), np.load(out_b)
    np.testing.assert_allclose(a["output"], b["output"], rtol=1e-12, atol=1e-12)

