"""The loss and optimizer records (mdfbridge/losses.py, mdfbridge/optimizers.py) both training backends read.

Each loss record's torch function computes its loss as written out here in numpy, with the reduction it states;
every spelling resolves; unknown names list the valid ones; a record with no LLVM emitter trains on torch and is
refused by llvm, naming torch. Importing the records imports no engine.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, XOR_INPUTS, XOR_TARGETS

from mdfbridge import UnsupportedError, losses, optimizers
from mdfbridge.api import load_program
from mdfbridge.learning import LearnConfig, train_program

XOR_MDF = REPO / "examples" / "xor.mdf.json"
XOR_DATA = ({"input": XOR_INPUTS}, {"output": XOR_TARGETS})


def xor_weights(program) -> dict:
    return {k: np.array(v.value) for k, v in program.params.items() if v.learnable}


def _log_softmax(o: np.ndarray) -> np.ndarray:
    z = o - o.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


LOSS_BY_HAND = {  # each loss written out in numpy, over a (rows, size) minibatch
    "mse": lambda o, t: np.mean((o - t) ** 2),
    "sse": lambda o, t: np.sum((o - t) ** 2),
    # PsyNeuLink's L1 and POISSON_NLL (reduction sum)
    "l1": lambda o, t: np.sum(np.abs(o - t)),
    "poisson_nll": lambda o, t: np.sum(np.exp(o) - t * o),
    "cross_entropy": lambda o, t: -np.sum(_log_softmax(o) * t) / len(o),
    # PsyNeuLink's NLL / KL_DIV (reduction sum) and BINARY_CROSS_ENTROPY (mean)
    "nll": lambda o, t: -np.sum(o[np.arange(len(o)), t.argmax(axis=1)]),
    "kl_div": lambda o, t: np.sum(np.where(t > 0, t * (np.log(np.where(t > 0, t, 1)) - o), 0.0)),
    "binary_cross_entropy": lambda o, t: -np.mean(t * np.log(o) + (1 - t) * np.log(1 - o)),
}
NO_LLVM: set = set()  # losses the llvm backend refuses, naming torch (none today)


def test_every_loss_has_a_record_and_its_spellings_resolve():
    assert set(losses.LOSSES) == set(LOSS_BY_HAND) == {m.value for m in losses.Loss}
    for member in losses.Loss:
        assert losses.get_loss(member) is losses.LOSSES[member.value]
        assert losses.get_loss(member.name) is losses.LOSSES[member.value]  # 'CROSS_ENTROPY', PsyNeuLink's names
    for record in losses.LOSSES.values():
        for spelling in (record.name,) + record.aliases:
            assert losses.get_loss(spelling) is record
            assert losses.get_loss(spelling.upper().replace("_", "-")) is record
        assert record.reduction in ("mean", "sum") and (record.llvm is None) == (record.name in NO_LLVM)
    assert losses.get_loss("mean_squared_error").name == "mse" and losses.get_loss("ce").name == "cross_entropy"
    with pytest.raises(UnsupportedError):  # L1 is PsyNeuLink's sum, not a mean absolute error
        losses.get_loss("MAE")


def test_unknown_loss_lists_the_valid_ones():
    with pytest.raises(UnsupportedError) as info:
        losses.get_loss("hinge")
    assert "hinge" in str(info.value) and str(sorted(losses.LOSSES)) in str(info.value)
    with pytest.raises(UnsupportedError, match="poisson_nll"):
        LearnConfig(loss_spec="hinge").check()


@pytest.mark.parametrize("name", sorted(LOSS_BY_HAND))
def test_torch_function_of_each_loss_record(name):
    record = losses.get_loss(name)
    rng = np.random.default_rng(3)
    o = rng.normal(size=(5, 3))
    t = rng.dirichlet(np.ones(3), size=5) if name in ("cross_entropy", "kl_div") else rng.uniform(size=(5, 3))
    if name == "nll":
        t = np.eye(3)[rng.integers(0, 3, size=5)]
        o = _log_softmax(o)
    if name == "kl_div":
        o, t[0, 1] = _log_softmax(o), 0.0  # a zero target: 0 log 0 = 0
    if name == "binary_cross_entropy":
        o = 1 / (1 + np.exp(-o))
    got = record.torch(torch.tensor(o), torch.tensor(t))
    assert got.ndim == 0
    assert float(got) == pytest.approx(LOSS_BY_HAND[name](o, t), rel=1e-12, abs=1e-12)
    doubled = float(record.torch(torch.tensor(np.concatenate([o, o])), torch.tensor(np.concatenate([t, t]))))
    assert doubled == pytest.approx(float(got) * (2 if record.reduction == "sum" else 1), rel=1e-12)


def test_a_loss_without_llvm_emitter_trains_on_torch_only(monkeypatch):
    mse = losses.get_loss("mse")
    record = losses.LossRecord("mse_torch_only", (), mse.torch, "mean", None)
    monkeypatch.setitem(losses.LOSSES, record.name, record)
    monkeypatch.setitem(losses._BY_SPELLING, record.name, record)
    a, b = load_program(XOR_MDF), load_program(XOR_MDF)
    for prog, spec in ((a, "mse_torch_only"), (b, "mse")):
        train_program(prog, *XOR_DATA, LearnConfig(epochs=3, learning_rate=0.5, loss_spec=spec), backend="torch")
    for k, v in xor_weights(a).items():
        np.testing.assert_array_equal(v, xor_weights(b)[k])
    with pytest.raises(UnsupportedError, match="loss 'mse_torch_only' is not supported by the llvm backend.*torch"):
        train_program(a, *XOR_DATA, LearnConfig(loss_spec="mse_torch_only"), backend="llvm")


def test_optimizer_records():
    assert optimizers.optimizer_names() == ["sgd", "adam", "adamw"]
    with pytest.raises(UnsupportedError, match="optimizer_type must be 'sgd' or 'adam' or 'adamw', got 'rmsprop'"):
        optimizers.get_optimizer("rmsprop")
    sgd = optimizers.get_optimizer("sgd")
    record = optimizers.OptimizerRecord("sgd_torch_only", sgd.torch, None)
    saved = dict(optimizers.OPTIMIZERS)
    try:
        optimizers.register_optimizer(record)
        prog = load_program(XOR_MDF)
        train_program(prog, *XOR_DATA, LearnConfig(epochs=2, optimizer_type="sgd_torch_only"), backend="torch")
        with pytest.raises(UnsupportedError, match="optimizer 'sgd_torch_only' is not supported by the llvm"):
            train_program(prog, *XOR_DATA, LearnConfig(optimizer_type="sgd_torch_only"), backend="llvm")
    finally:
        optimizers.OPTIMIZERS.clear()
        optimizers.OPTIMIZERS.update(saved)


def test_importing_the_registries_imports_no_engine():
    code = ("import sys, mdfbridge, mdfbridge.losses, mdfbridge.optimizers, mdfbridge.learning\n"
            "print(sorted(m for m in ('torch', 'llvmlite', 'onnxruntime', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
