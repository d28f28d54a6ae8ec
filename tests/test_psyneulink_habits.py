"""PsyNeuLink habits mdfbridge keeps, and the clear refusals where it does not (issue 11, items 3 and 4).

GRU blocks rebuild from MDF (gate and fused forms) to the same numbers and train; learn()/run() take PsyNeuLink's
arguments by name with its defaults (inspect.signature), num_trials cycles the inputs as PsyNeuLink's
CompositionRunner does (trial i uses row i % len), loss_spec/optimizer_type take PsyNeuLink's and torch's
spellings (each loss record equals torch.nn's loss with PsyNeuLink's reduction; NLL and KL_DIV training equals a
torch autograd loop written out here, 1e-10), show_graph draws nested compositions and GRU blocks as clusters,
every ExecutionMode member is listed, and dtype takes strings, numpy and torch dtypes everywhere with one clear
error line otherwise.
"""
from __future__ import annotations

import enum
import inspect
import json
import os
import subprocess
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import XOR_INPUTS, XOR_TARGETS, learned_outputs, make_xor

from mdfbridge import (
    AutodiffComposition,
    Composition,
    CompositionError,
    DataError,
    ExecutionMode,
    Logistic,
    MappingProjection,
    TransferMechanism,
    UnsupportedError,
    composition_from_mdf,
    learning,
    losses,
    optimizers,
    to_torch,
)
from mdfbridge.document import load_document_dict
from mdfbridge.gru_composition import GRUComposition
from mdfbridge.gru_mdf import convert_blocks

PNL_PYTHON = os.environ.get("MDFBRIDGE_PNL_PYTHON") or "/work/pnl-venv/bin/python"
X4 = {"input": XOR_INPUTS}
T4 = {"output": XOR_TARGETS}


# ---------------------------------------------------------------------------------------------- GRU rebuild
def _gru_net(seed: int = 4, **gru_kw):
    gru = GRUComposition(input_size=3, hidden_size=5, bias=True, seed=seed, **gru_kw)
    outer = Composition("seq")
    rng = np.random.default_rng(seed)
    outer.add_linear_processing_pathway([TransferMechanism("x", 2), MappingProjection(matrix=rng.normal(size=(2, 3))),
                                         gru, MappingProjection(matrix=rng.normal(size=(5, 1))),
                                         TransferMechanism("y", 1, Logistic())])
    return outer, gru


def _gru_of(comp: Composition) -> GRUComposition:
    (gru,) = [n for n in comp.nodes if isinstance(n, GRUComposition)]
    return gru


SEQS = np.random.default_rng(0).normal(size=(4, 6, 2))
SEQ_TARGETS = np.random.default_rng(1).uniform(size=(4, 6, 1))


@pytest.mark.parametrize("form", ["gates", "onnx"])
def test_composition_from_mdf_rebuilds_a_gru_block_to_the_same_numbers(tmp_path, form):
    outer, gru = _gru_net(optimizer_params={"w_hh": 0.01, "w_ih": False}, initial_hidden=0.25)
    path = tmp_path / "seq.json"
    outer.save_mdf(path)
    if form == "onnx":  # what `mdfbridge convert --gru onnx` writes
        (tmp_path / "fused.json").write_text(json.dumps(convert_blocks(load_document_dict(path), "onnx")))
        path = tmp_path / "fused.json"
        assert any("__gru" in k for k in json.loads(path.read_text())["seq_model"]["graphs"]["seq"]["nodes"])
    back = composition_from_mdf(path)
    rebuilt = _gru_of(back)
    assert (rebuilt.name, rebuilt.input_size, rebuilt.hidden_size, rebuilt.bias) == ("GRU", 3, 5, True)
    assert rebuilt.block.learning_rates == gru.block.learning_rates
    assert rebuilt.block.frozen == gru.block.frozen and rebuilt.block.enable_learning
    np.testing.assert_array_equal(rebuilt.block.h0, np.full(5, 0.25))
    for name, value in gru.block.gates.items():
        np.testing.assert_allclose(rebuilt.block.gates[name], value, rtol=0, atol=1e-15)
    want = outer.evaluate({"x": SEQS})["y"]
    for backend in ("numpy", "torch"):
        np.testing.assert_allclose(back.evaluate({"x": SEQS}, backend=backend)["y"], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("form", ["gates", "onnx"])
def test_a_standalone_gru_without_bias_or_learning_rebuilds(form):
    from mdfbridge.exporters.mdf import composition_to_dict

    gru = GRUComposition(2, 3, bias=False, enable_learning=False, seed=3)
    back = composition_from_mdf(composition_to_dict(gru, gru_form=form))
    assert isinstance(back, GRUComposition) and not back.bias and not back.block.enable_learning
    assert back.block.frozen == gru.block.frozen and set(back.block.gates) == set(gru.block.gates)
    x = np.random.default_rng(0).normal(size=(2, 4, 2))
    np.testing.assert_allclose(back.evaluate({"GRU": x})["GRU"], gru.evaluate({"GRU": x})["GRU"], rtol=0, atol=1e-12)


def test_a_rebuilt_gru_composition_learns_as_the_original():
    outer, gru = _gru_net(optimizer_params={"w_hh": 0.01, "w_ih": False})
    back = composition_from_mdf(outer.to_mdf())
    kw = dict(epochs=3, learning_rate=0.1, minibatch_size=2)
    a = learned_outputs(outer, {"x": SEQS}, {"y": SEQ_TARGETS}, **kw)["y"]
    b = learned_outputs(back, {"x": SEQS}, {"y": SEQ_TARGETS}, **kw)["y"]
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.losses, outer.losses, rtol=1e-12)
    rebuilt = _gru_of(back)
    for name in gru.block.gates:
        np.testing.assert_allclose(rebuilt.block.gates[name], gru.block.gates[name], rtol=0, atol=1e-12)
    before = _gru_of(composition_from_mdf(_gru_net(optimizer_params={"w_hh": 0.01, "w_ih": False})[0].to_mdf()))
    np.testing.assert_array_equal(rebuilt.block.gates["wts_ir"], before.block.gates["wts_ir"])  # w_ih frozen
    assert not np.allclose(rebuilt.block.gates["wts_hr"], before.block.gates["wts_hr"])


def test_a_hand_edited_gru_block_is_refused_naming_it():
    from mdfbridge.exporters.mdf import composition_to_dict

    outer, _ = _gru_net()
    doc = composition_to_dict(outer)
    graph = doc["seq_model"]["graphs"]["seq"]
    graph["nodes"]["GRU__reset"]["functions"]["function"]["value"] = "x @ wts_ir"
    with pytest.raises(UnsupportedError, match="GRU block 'GRU': its gate nodes are not the form mdfbridge writes"):
        composition_from_mdf(doc)


# ---------------------------------------------------------------------------------------------- signatures
PNL_LEARN_DEFAULTS = {  # psyneulink 0.21 Composition.learn's defaults for the arguments both take
    "targets": None, "num_trials": None, "epochs": 1, "learning_rate": None, "minibatch_size": None,
    "optimizations_per_minibatch": None, "patience": None, "min_delta": 0, "randomize_minibatches": False}
LEARN_ARGUMENTS = ["inputs", "targets", "num_trials", "epochs", "learning_rate", "minibatch_size", "patience",
                   "min_delta", "execution_mode", "randomize_minibatches", "optimizer_type", "loss_spec",
                   "weight_decay", "synch_projection_matrices_with_torch", "seed", "backend", "dtype", "device",
                   "callback"]


@pytest.mark.parametrize("fn", [Composition.learn, AutodiffComposition.learn, learning.learn])
def test_learn_lists_psyneulinks_arguments_with_its_defaults(fn):
    params = inspect.signature(fn).parameters
    for name in LEARN_ARGUMENTS:
        assert name in params, name
    for name, default in PNL_LEARN_DEFAULTS.items():
        assert params[name].default == default and type(params[name].default) is type(default), name
    for name in ("execution_mode", "optimizer_type", "loss_spec", "weight_decay", "backend", "dtype", "device",
                 "callback", "seed", "synch_projection_matrices_with_torch"):
        assert params[name].default is None, name  # None: the AutodiffComposition's setting, else the default
    doc = inspect.getdoc(fn) or ""
    assert "callback(epoch, minibatch, loss)" in doc and "'float32' | 'float64'" in doc and "num_trials" in doc


def test_autodiff_composition_constructor_has_psyneulinks_defaults():
    params = inspect.signature(AutodiffComposition).parameters
    assert params["optimizer_type"].default == "sgd" and params["loss_spec"].default == losses.Loss.MSE
    assert params["weight_decay"].default == 0 and params["learning_rate"].default is None
    assert params["synch_projection_matrices_with_torch"].default == "run" and params["device"].default is None
    with pytest.raises(UnsupportedError, match="optimizer_type must be 'sgd' or 'adam' or 'adamw', got 'rmsprop'"):
        AutodiffComposition("a", optimizer_type="rmsprop")


def test_run_and_evaluate_document_their_arguments():
    for fn, names in ((Composition.run, ("num_trials", "execution_mode", "dtype", "device")),
                      (Composition.evaluate, ("num_trials", "backend", "dtype", "device"))):
        params = inspect.signature(fn).parameters
        doc = inspect.getdoc(fn) or ""
        for name in names:
            assert name in params and name in doc, (fn, name)


# ---------------------------------------------------------------------------------------------- torch oracle
def _net(out_size: int = 3, seed: int = 5, out_fn=None):
    rng = np.random.default_rng(seed)
    w1, w2 = rng.normal(size=(2, 4)), rng.normal(size=(4, out_size))
    p1, p2 = MappingProjection(matrix=w1), MappingProjection(matrix=w2)
    comp = Composition("net", pathways=[[TransferMechanism("input", 2), p1, TransferMechanism("hidden", 4, Logistic()),
                                         p2, TransferMechanism("output", out_size, out_fn)]])
    return comp, (p1, p2), (w1, w2)


def _torch_training(w, x, t, loss, lr, epochs, minibatch_size, rows=None):
    """PsyNeuLink's learn() written out with torch autograd: per minibatch, forward, loss, backward, plain SGD."""
    w1, w2 = (torch.tensor(a, requires_grad=True) for a in w)
    x, t = torch.tensor(x), torch.tensor(t)
    rows = np.arange(len(x)) if rows is None else rows
    values = []
    for _ in range(epochs):
        for b0 in range(0, len(rows), minibatch_size):
            idx = torch.as_tensor(rows[b0:b0 + minibatch_size])
            value = loss(torch.sigmoid(x[idx] @ w1) @ w2, t[idx])
            value.backward()
            values.append(float(value))
            with torch.no_grad():
                for p in (w1, w2):
                    p -= lr * p.grad
                    p.grad = None
    return [p.detach().numpy() for p in (w1, w2)], values


X6 = np.random.default_rng(7).normal(size=(6, 2))
CLASSES = np.eye(3)[[0, 2, 1, 1, 0, 2]]
PROBS = np.random.default_rng(8).dirichlet(np.ones(3), size=6)


@pytest.mark.parametrize("spec,targets,oracle", [
    ("nll", CLASSES, lambda o, t: nn.NLLLoss(reduction="sum")(o, t.argmax(dim=1))),
    ("NLL", CLASSES, lambda o, t: nn.NLLLoss(reduction="sum")(o, t.argmax(dim=1))),
    ("kl_div", PROBS, nn.KLDivLoss(reduction="sum")),
    ("kldiv", PROBS, nn.KLDivLoss(reduction="sum")),
    (losses.Loss.KL_DIV, PROBS, nn.KLDivLoss(reduction="sum")),
])
def test_nll_and_kl_div_training_equals_torch_autograd(spec, targets, oracle):
    comp, projs, w = _net()
    comp.learn({"input": X6}, {"output": targets}, epochs=4, learning_rate=0.05, minibatch_size=2,
               loss_spec=spec)
    out = comp.learn_result.outputs
    (w1, w2), values = _torch_training(w, X6, targets, oracle, 0.05, 4, 2)
    np.testing.assert_allclose(projs[0].matrix, w1, rtol=0, atol=1e-10)
    np.testing.assert_allclose(projs[1].matrix, w2, rtol=0, atol=1e-10)
    np.testing.assert_allclose(comp.losses, values, rtol=1e-10, atol=1e-12)
    assert out["output"].shape == (6, 3)


@pytest.mark.parametrize("spec,targets", [("nll", CLASSES), ("kl_div", PROBS), ("binary_cross_entropy", PROBS)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_llvm_trains_nll_kl_div_and_bce_as_torch(spec, targets, optimizer):
    kw = dict(epochs=5, learning_rate=0.05, minibatch_size=2, loss_spec=spec, optimizer_type=optimizer,
              weight_decay=0.01)
    fn = Logistic() if spec == "binary_cross_entropy" else None  # BCE takes probabilities
    (a, pa, _), (b, pb, _) = _net(out_fn=fn), _net(out_fn=fn)
    ra = learned_outputs(a, {"input": X6}, {"output": targets}, backend="torch", **kw)["output"]
    rb = learned_outputs(b, {"input": X6}, {"output": targets}, backend="llvm", **kw)["output"]
    np.testing.assert_allclose(rb, ra, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.losses, a.losses, rtol=1e-12, atol=1e-12)
    for p, q in zip(pa, pb):
        np.testing.assert_allclose(q.matrix, p.matrix, rtol=0, atol=1e-12)


def test_nll_kl_div_and_bce_refuse_targets_they_cannot_take():
    comp, _, _ = _net()
    for backend in ("torch", "llvm"):
        with pytest.raises(DataError, match=r"targets for 'output': loss_spec 'nll': targets must be one-hot rows"):
            comp.learn({"input": X6}, {"output": PROBS}, loss_spec="nll", backend=backend)
    with pytest.raises(DataError, match="loss_spec 'kl_div': targets must be probabilities"):
        comp.learn({"input": X6}, {"output": PROBS * 3}, loss_spec="KL_DIV")
    with pytest.raises(DataError, match="loss_spec 'binary_cross_entropy': targets must be probabilities"):
        comp.learn({"input": X6}, {"output": -PROBS}, loss_spec="BCE")


@pytest.mark.skipif(not os.path.exists(PNL_PYTHON), reason="needs a PsyNeuLink python")
@pytest.mark.parametrize("loss", ["KL_DIV", "L1", "POISSON_NLL"])
def test_summed_losses_train_as_in_psyneulink(loss):
    """PsyNeuLink 0.21 trains with loss_spec=pnl.Loss.KL_DIV / L1 / POISSON_NLL (its nn.KLDivLoss, L1Loss,
    PoissonNLLLoss, each reduction='sum'); mdfbridge's matrices equal its (1e-12). (Its Loss.NLL fails inside torch on
    a (minibatch, 1, size) target, so NLL is compared with torch only, above.)"""
    comp, projs, (w1, w2) = _net()
    script = f"""
import json, numpy as np, psyneulink as pnl
i = pnl.TransferMechanism(name='input', input_shapes=2)
h = pnl.TransferMechanism(name='hidden', input_shapes=4, function=pnl.Logistic())
o = pnl.TransferMechanism(name='output', input_shapes=3)
p1 = pnl.MappingProjection(matrix=np.array({w1.tolist()}), sender=i, receiver=h)
p2 = pnl.MappingProjection(matrix=np.array({w2.tolist()}), sender=h, receiver=o)
c = pnl.AutodiffComposition(pathways=[[i, p1, h, p2, o]], learning_rate=0.05, loss_spec=pnl.Loss.{loss})
c.learn(inputs={{'inputs': {{i: {X6.tolist()}}}, 'targets': {{o: {PROBS.tolist()}}}}}, epochs=4, minibatch_size=2,
        execution_mode=pnl.ExecutionMode.PyTorch)
print(json.dumps([p1.parameters.matrix.get(c).tolist(), p2.parameters.matrix.get(c).tolist()]))
"""
    proc = subprocess.run([PNL_PYTHON, "-c", script], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"PsyNeuLink run failed: {proc.stderr.strip().splitlines()[-1:]}")
    pnl_w = [np.array(m) for m in json.loads(proc.stdout.strip().splitlines()[-1])]
    comp.learn({"input": X6}, {"output": PROBS}, epochs=4, minibatch_size=2, learning_rate=0.05, loss_spec=loss)
    for p, want in zip(projs, pnl_w):
        np.testing.assert_allclose(p.matrix, want, rtol=0, atol=1e-12)


class PnlLoss(enum.Enum):
    """psyneulink 0.21's Loss enum (names and values), for specs given as its members."""

    L0 = 1
    L1 = 2
    SSE = 3
    MSE = 4
    CROSS_ENTROPY = 5
    BINARY_CROSS_ENTROPY = 6
    KL_DIV = 7
    NLL = 8
    POISSON_NLL = 9


TORCH_LOSS = {  # torch.nn's losses as PsyNeuLink's AutodiffComposition._get_loss builds them (mdfbridge: where equal)
    "mse": nn.MSELoss(reduction="mean"), "sse": nn.MSELoss(reduction="sum"), "cross_entropy": nn.CrossEntropyLoss(),
    "binary_cross_entropy": nn.BCELoss(), "kl_div": nn.KLDivLoss(reduction="sum"),
    "nll": lambda o, t: nn.NLLLoss(reduction="sum")(o, t.argmax(dim=1)),
    "l1": nn.L1Loss(reduction="sum"), "poisson_nll": nn.PoissonNLLLoss(reduction="sum"),
}
SPELLINGS = {"mse": ["mse", "MSE", losses.Loss.MSE, PnlLoss.MSE], "sse": ["sse", "SSE", PnlLoss.SSE],
             "cross_entropy": ["crossentropy", "cross_entropy", "CROSS_ENTROPY", "cross-entropy",
                               PnlLoss.CROSS_ENTROPY],
             "l1": ["l1", "L1", PnlLoss.L1], "nll": ["nll", "NLL", PnlLoss.NLL, losses.Loss.NLL],
             "kl_div": ["kl_div", "kldiv", "KL_DIV", PnlLoss.KL_DIV],
             "poisson_nll": ["poisson_nll", "POISSON_NLL", PnlLoss.POISSON_NLL],
             "binary_cross_entropy": ["binary_cross_entropy", "BCE", PnlLoss.BINARY_CROSS_ENTROPY]}


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_each_loss_spelling_is_torchs_loss(name):
    rng = np.random.default_rng(11)
    o = torch.tensor(rng.normal(size=(5, 3)))
    t = torch.tensor(rng.uniform(size=(5, 3)))
    if name in ("nll", "kl_div"):
        o = torch.log_softmax(o, dim=1)
    if name == "nll":
        t = torch.tensor(np.eye(3)[[0, 1, 2, 2, 1]])
    if name in ("kl_div", "cross_entropy"):
        t = t / t.sum(dim=1, keepdim=True)
    if name == "binary_cross_entropy":
        o = torch.sigmoid(o)
    want = float(TORCH_LOSS[name](o, t))
    for spelling in SPELLINGS[name]:
        record = losses.get_loss(spelling)
        assert record.name == name, spelling
        assert float(record.torch(o, t)) == pytest.approx(want, rel=1e-13, abs=1e-15), spelling


def test_a_wrong_loss_or_optimizer_spelling_is_one_line_listing_the_valid_ones():
    for spec in ("hinge", PnlLoss.L0):
        with pytest.raises(UnsupportedError) as info:
            make_xor().learn(X4, T4, loss_spec=spec)
        msg = str(info.value)
        assert "\n" not in msg and str(sorted(losses.LOSSES)) in msg
    with pytest.raises(UnsupportedError) as info:
        make_xor().learn(X4, T4, optimizer_type="rmsprop")
    assert "\n" not in str(info.value) and "'sgd' or 'adam'" in str(info.value)


@pytest.mark.parametrize("spelling,name", [("SGD", "sgd"), ("Adam", "adam"), ("ADAM", "adam"),
                                           (torch.optim.SGD, "sgd"), (torch.optim.Adam, "adam")])
def test_optimizer_spellings_train_as_the_canonical_name(spelling, name):
    assert optimizers.get_optimizer(spelling).name == name
    a = learned_outputs(make_xor(), X4, T4, epochs=5, learning_rate=0.3, optimizer_type=spelling)["output"]
    b = learned_outputs(make_xor(), X4, T4, epochs=5, learning_rate=0.3, optimizer_type=name)["output"]
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------- num_trials
@pytest.mark.parametrize("num_trials", [2, 4, 7, 9])
def test_num_trials_cycles_the_inputs_as_psyneulink_does(num_trials):
    """PsyNeuLink's CompositionRunner: trial i of an epoch uses row i % len(inputs), targets alike."""
    comp, projs, w = _net(out_size=1)
    x, t = XOR_INPUTS, XOR_TARGETS
    comp.learn({"input": x}, {"output": t}, num_trials=num_trials, epochs=3, learning_rate=0.5, minibatch_size=2)
    rows = np.arange(num_trials) % len(x)
    (w1, w2), values = _torch_training(w, x, t, nn.MSELoss(), 0.5, 3, 2, rows=rows)
    np.testing.assert_allclose(projs[0].matrix, w1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(projs[1].matrix, w2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(comp.losses, values, rtol=1e-12)
    assert len(comp.losses) == 3 * -(-num_trials // 2)


def test_num_trials_in_run_and_the_module_level_learn():
    comp = make_xor()
    last = comp.run(X4, num_trials=6)
    assert len(comp.results) == 6
    want = comp.evaluate({"input": XOR_INPUTS[[0, 1, 2, 3, 0, 1]]})["output"]
    np.testing.assert_array_equal(np.array([r[0] for r in comp.results]), want)
    np.testing.assert_array_equal(last[0], want[-1])
    comp.results.clear()
    comp.run(X4, num_trials=3)
    assert len(comp.results) == 3
    comp.results.clear()
    comp.run(inputs={"inputs": X4, "targets": T4, "num_trials": 5})  # PsyNeuLink's dict form (targets unused)
    assert len(comp.results) == 5
    prog = make_xor().program()
    res = learning.learn(prog, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, num_trials=6, epochs=2)
    assert len(res.losses) == 12
    for bad in (0, -1, 2.5, True):
        with pytest.raises(DataError, match="num_trials must be an integer >= 1"):
            make_xor().learn(X4, T4, num_trials=bad)


@pytest.mark.skipif(not os.path.exists(PNL_PYTHON), reason="needs a PsyNeuLink python")
def test_num_trials_matches_psyneulink(tmp_path):
    """PsyNeuLink 0.21 learns XOR with num_trials=6 over 4 inputs; mdfbridge's matrices equal its (1e-12)."""
    rng = np.random.default_rng(2)
    w1, w2 = rng.normal(size=(2, 3)), rng.normal(size=(3, 1))
    script = f"""
import json, numpy as np, psyneulink as pnl
w1, w2 = np.array({w1.tolist()}), np.array({w2.tolist()})
i = pnl.TransferMechanism(name='input', input_shapes=2)
h = pnl.TransferMechanism(name='hidden', input_shapes=3, function=pnl.Logistic())
o = pnl.TransferMechanism(name='output', input_shapes=1, function=pnl.Logistic())
p1 = pnl.MappingProjection(matrix=w1, sender=i, receiver=h)
p2 = pnl.MappingProjection(matrix=w2, sender=h, receiver=o)
c = pnl.AutodiffComposition(pathways=[[i, p1, h, p2, o]], learning_rate=0.5)
c.learn(inputs={{'inputs': {{i: {XOR_INPUTS.tolist()}}}, 'targets': {{o: {XOR_TARGETS.tolist()}}}}},
        num_trials=6, epochs=3, minibatch_size=1, execution_mode=pnl.ExecutionMode.PyTorch)
print(json.dumps([p1.parameters.matrix.get(c).tolist(), p2.parameters.matrix.get(c).tolist()]))
"""
    proc = subprocess.run([PNL_PYTHON, "-c", script], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"PsyNeuLink run failed: {proc.stderr.strip().splitlines()[-1:]}")
    pnl_w1, pnl_w2 = (np.array(m) for m in json.loads(proc.stdout.strip().splitlines()[-1]))
    p1, p2 = MappingProjection(matrix=w1), MappingProjection(matrix=w2)
    comp = Composition("xor", pathways=[[TransferMechanism("input", 2), p1, TransferMechanism("hidden", 3, Logistic()),
                                         p2, TransferMechanism("output", 1, Logistic())]])
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, num_trials=6, epochs=3, learning_rate=0.5)
    np.testing.assert_allclose(p1.matrix, pnl_w1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p2.matrix, pnl_w2, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- learn() forms
def test_psyneulinks_dict_forms_and_both_spellings_of_renamed_settings():
    ref = learned_outputs(make_xor(), X4, T4, epochs=3, learning_rate=0.4)["output"]
    got = learned_outputs(make_xor(), inputs={"inputs": X4, "targets": T4, "epochs": 3}, learning_rate=0.4)["output"]
    np.testing.assert_array_equal(got, ref)
    outer = make_xor()
    outer.learn(inputs={outer: {"inputs": X4, "targets": T4, "epochs": 3, "learning_rate": 0.4}})
    nested = outer.learn_result.outputs
    np.testing.assert_array_equal(nested["output"], ref)
    a = learned_outputs(make_xor(), X4, T4, epochs=3, randomize_minibatches=True, seed=4)["output"]
    b = learned_outputs(make_xor(), X4, T4, epochs=3, randomize_minibatch=True, seed=4)["output"]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(CompositionError, match="disagree"):
        make_xor().learn(X4, T4, randomize_minibatches=True, randomize_minibatch=False)
    with pytest.raises(CompositionError, match="did you mean 'learning_rate'"):
        make_xor().learn(X4, T4, learnin_rate=0.1)
    with pytest.raises(DataError, match=r"optimizations_per_minibatch \(2\) and minibatch_size \(4\) cannot both"):
        make_xor().learn(X4, T4, optimizations_per_minibatch=2, minibatch_size=4)


def test_callback_receives_epoch_minibatch_index_and_loss():
    calls = []
    comp = make_xor()
    comp.learn(X4, T4, epochs=2, minibatch_size=2, callback=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(0, 0), (0, 1), (1, 2), (1, 3)]
    assert [c[2] for c in calls] == comp.losses


# ---------------------------------------------------------------------------------------------- show_graph
def _nested_with_gru():
    inner = Composition("inner", pathways=[[TransferMechanism("a", 2), TransferMechanism("b", 2)]])
    top = Composition("top")
    gru = GRUComposition(2, 3, name="G")
    top.add_linear_processing_pathway([TransferMechanism("x0", 2), inner, gru, TransferMechanism("y", 3)])
    return top


def test_show_graph_draws_nested_compositions_and_gru_blocks_as_clusters():
    graph = _nested_with_gru().show_graph()
    src = graph.source
    assert type(graph).__name__ == "Digraph"
    assert "subgraph cluster_top__inner {" in src and "subgraph cluster_G__GRU {" in src
    inner = src[src.index("subgraph cluster_top__inner"):src.index("subgraph cluster_G__GRU")]
    assert "inner__a [" in inner and "inner__b [" in inner and "x0 [" not in inner
    gru = src[src.index("subgraph cluster_G__GRU"):]
    for role in ("INPUT", "RESET", "UPDATE", "NEW", "HIDDEN", "OUTPUT"):
        assert f'"{role}_NODE' in gru
    assert "G__hidden -> G__hidden" in gru
    assert "x0 -> inner__a" in src and "inner__b -> G__input" in src and "G__output -> y" in src
    flat = _nested_with_gru().show_graph(show_nested=False).source
    assert "cluster_top__inner" not in flat and "box_top__inner [" in flat and "x0 -> box_top__inner" in flat
    assert _nested_with_gru().show_graph(output_fmt="source") == src


def test_show_graph_writes_files_and_says_when_dot_is_missing(tmp_path, monkeypatch):
    from mdfbridge import graphviz_render

    comp = _nested_with_gru()
    comp.show_graph(output_fmt="dot", filename=str(tmp_path / "g"))
    assert (tmp_path / "g.dot").read_text() == comp.show_graph().source
    if graphviz_render.dot_available():
        comp.show_graph(output_fmt="png", filename=str(tmp_path / "g"))
        assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setattr(graphviz_render, "dot_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = comp.show_graph(output_fmt="pdf", filename=str(tmp_path / "h"))
    assert "subgraph cluster_G__GRU" in graph.source and not (tmp_path / "h.pdf").exists()
    assert any("'dot' program is not installed" in str(w.message) for w in caught)
    with pytest.raises(DataError, match="output_fmt 'bmp' unknown"):
        comp.show_graph(output_fmt="bmp")


# ---------------------------------------------------------------------------------------------- ExecutionMode
def test_every_execution_mode_is_listed_and_maps_to_a_backend():
    assert [m.name for m in ExecutionMode] == ["Python", "PyTorch", "LLVM", "LLVMRun", "LLVMExec", "PTXRun", "Auto"]
    assert {m.name: m.backend for m in ExecutionMode} == {
        "Python": "numpy", "PyTorch": "torch", "LLVM": "llvm", "LLVMRun": "llvm", "LLVMExec": "llvm",
        "PTXRun": None, "Auto": "torch"}
    for mode in ExecutionMode:
        if mode.backend is not None:
            assert learning.backend_name(execution_mode=mode) == mode.backend
            assert learning.backend_name(execution_mode=mode.name) == mode.backend  # PsyNeuLink's member or name
    with pytest.raises(UnsupportedError, match="ExecutionMode.PTXRun .CUDA-compiled PTX. has no mdfbridge backend"):
        learning.backend_name(execution_mode=ExecutionMode.PTXRun)
    with pytest.raises(UnsupportedError) as info:
        make_xor().evaluate(X4, execution_mode="GPU")
    assert "unknown execution_mode 'GPU'" in str(info.value)
    assert all(f"ExecutionMode.{m.name}" in str(info.value) for m in ExecutionMode)
    np.testing.assert_array_equal(make_xor().evaluate(X4, execution_mode=ExecutionMode.LLVMRun)["output"],
                                  make_xor().evaluate(X4, backend="llvm")["output"])


# ---------------------------------------------------------------------------------------------- dtype
@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32"), torch.float32, "torch.float32"])
def test_dtype_spellings_in_learn_evaluate_and_to_torch(dtype):
    ref = learned_outputs(make_xor(), X4, T4, epochs=3, learning_rate=0.5)["output"]
    got = learned_outputs(make_xor(), X4, T4, epochs=3, learning_rate=0.5, dtype=dtype)["output"]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert not np.array_equal(got, ref)  # float32 really ran
    comp = make_xor()
    want = comp.evaluate(X4)["output"]
    np.testing.assert_allclose(comp.evaluate(X4, backend="torch", dtype=dtype)["output"], want, atol=1e-6)
    np.testing.assert_allclose(comp.evaluate(X4, backend="onnxruntime", dtype=dtype)["output"], want, atol=1e-6)
    assert to_torch(comp, dtype=dtype).program_module.dtype == torch.float32


@pytest.mark.parametrize("dtype", ["float64", np.float64, torch.float64, "double"])
def test_float64_spellings_run_every_backend_to_the_reference(dtype):
    comp = make_xor()
    want = comp.evaluate(X4)["output"]
    for backend in ("numpy", "torch", "llvm", "onnxruntime"):
        np.testing.assert_allclose(comp.evaluate(X4, backend=backend, dtype=dtype)["output"], want, rtol=0,
                                   atol=1e-12)
    from mdfbridge.exporters.onnx import program_to_onnx

    model = program_to_onnx(comp.program(), dtype=dtype)
    assert model.graph.input[0].type.tensor_type.elem_type == 11  # TensorProto.DOUBLE
    ref = learned_outputs(make_xor(), X4, T4, epochs=2, backend="llvm")["output"]
    got = learned_outputs(make_xor(), X4, T4, epochs=2, backend="llvm", dtype=dtype)["output"]
    np.testing.assert_allclose(got, ref, rtol=0, atol=0)


@pytest.mark.parametrize("call", ["learn", "evaluate_torch", "evaluate_llvm", "evaluate_numpy", "onnx", "to_torch"])
def test_a_bad_dtype_is_one_clear_line_everywhere(call):
    comp = make_xor()
    with pytest.raises(UnsupportedError) as info:
        if call == "learn":
            comp.learn(X4, T4, dtype="int64")
        elif call == "evaluate_torch":
            comp.evaluate(X4, backend="torch", dtype=np.int32)
        elif call == "evaluate_llvm":
            comp.evaluate(X4, backend="llvm", dtype="float32")  # native code is float64
        elif call == "evaluate_numpy":
            comp.evaluate(X4, dtype="float32")  # the reference is float64
        elif call == "onnx":
            from mdfbridge.exporters.onnx import program_to_onnx

            program_to_onnx(comp.program(), dtype="float16")
        else:
            to_torch(comp, dtype="complex64")
    msg = str(info.value)
    assert "\n" not in msg and "is not a floating type" in msg and "'float64'" in msg, msg


def test_evaluate_device_is_for_torch_only():
    with pytest.raises(CompositionError, match="device='cpu' is for backend 'torch', not 'numpy'"):
        make_xor().evaluate(X4, device="cpu")
    np.testing.assert_allclose(make_xor().evaluate(X4, backend="torch", device="cpu")["output"],
                               make_xor().evaluate(X4)["output"], rtol=0, atol=1e-12)



def test_both_learn_functions_name_every_setting_argument():
    """Composition.learn and learning.learn read their settings by name (learning.SETTING_ARGS)."""
    import inspect

    from mdfbridge import Composition, learning

    for fn in (Composition.learn, learning.learn):
        names = set(inspect.signature(fn).parameters)
        assert set(learning.SETTING_ARGS) | {"num_trials", "execution_mode"} <= names, fn.__qualname__
