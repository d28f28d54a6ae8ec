"""The backend protocol (mdfbridge.backends) and the loss / optimizer records (mdfbridge.losses, mdfbridge.optimizers).

- every registered backend prepares and runs the bundled XOR example (examples/xor.mdf.json) and agrees with the
  numpy reference, which itself agrees with the network written out by hand in numpy;
- unknown backend names, training on backends that do not train, trajectories where none are recorded: clear
  UnsupportedErrors naming what is available;
- `get_backend('torch'|'llvm').prepare(p).train(...)` equals `learn()` and an independent hand-written torch loop;
  a torch rep then runs what it trained;
- importing the registry imports no engine (torch, llvmlite, onnxruntime).
(The loss and optimizer records: tests/test_loss_optimizer_records.py.)
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, XOR_INPUTS, XOR_TARGETS

from mdfbridge import UnsupportedError
from mdfbridge.api import load_program, run_with_backend
from mdfbridge.backends import BACKENDS, Backend, BackendRep, get_backend, training_backend_names
from mdfbridge.cli import main
from mdfbridge.learning import ExecutionMode, LearnConfig, learn, prepare_data, train_program

XOR_MDF = REPO / "examples" / "xor.mdf.json"
TOL = {"numpy": 0.0, "torch": 1e-12, "llvm": 1e-12, "onnxruntime": 1e-5}  # float64, float64, float64, float32
EXPECTED = ["numpy", "torch", "llvm", "onnxruntime"]
RNG = np.random.default_rng(12)
X = np.concatenate([XOR_INPUTS, RNG.uniform(-2, 2, (9, 2))])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def xor_by_hand(program, x: np.ndarray) -> np.ndarray:
    """The XOR 2-10-1 network of the example, written out in numpy from its parameter table."""
    p = {k: np.asarray(v.value, dtype=float) for k, v in program.params.items()}
    hidden = _sigmoid(x @ p["input_to_hidden.matrix"] + p["bias_hidden.value"] @ p["bias_to_hidden.matrix"])
    return _sigmoid(hidden @ p["hidden_to_output.matrix"] + p["bias_output.value"] @ p["bias_to_output.matrix"])


def xor_weights(program) -> dict:
    return {k: np.array(v.value) for k, v in program.params.items() if v.learnable}


# ----------------------------------------------------------------------------------------- registry

def test_registry_holds_the_four_backends():
    assert list(BACKENDS) == EXPECTED
    for name, backend in BACKENDS.items():
        assert isinstance(backend, Backend) and backend.name == name and backend.summary
        assert get_backend(name) is backend
    assert training_backend_names() == ["torch", "llvm"]


def test_execution_modes_name_registered_backends():
    assert [m.name for m in ExecutionMode] == ["Python", "PyTorch", "LLVM", "LLVMRun", "LLVMExec", "PTXRun", "Auto"]
    for mode in ExecutionMode:
        assert mode.backend in BACKENDS or (mode.name == "PTXRun" and mode.backend is None)


@pytest.mark.parametrize("call", ["get_backend", "run_with_backend", "learn", "train_program", "evaluate"])
def test_unknown_backend_lists_the_available_ones(call, xor):
    prog = load_program(XOR_MDF)
    with pytest.raises(UnsupportedError) as info:
        if call == "get_backend":
            get_backend("tensorflow")
        elif call == "run_with_backend":
            run_with_backend(prog, {"input": X}, "tensorflow")
        elif call == "learn":
            learn(prog, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, backend="tensorflow")
        elif call == "train_program":
            train_program(prog, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, backend="tensorflow")
        else:
            xor.evaluate({"input": X}, backend="tensorflow")
    msg = str(info.value)
    assert "unknown backend 'tensorflow'" in msg, msg
    for name in EXPECTED:
        assert name in msg, msg


def test_cli_backend_choices_are_the_registry(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(XOR_MDF), "--input", "input=[[0,1]]", "--backend", "tensorflow"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "tensorflow" in err and all(name in err for name in EXPECTED), err
    with pytest.raises(SystemExit):
        main(["train", str(XOR_MDF), "--data", "d.npz", "--backend", "numpy"])
    err = capsys.readouterr().err
    assert "'torch'" in err and "'llvm'" in err and "'onnxruntime'" not in err, err


# ----------------------------------------------------------------------------------------- running

def test_numpy_reference_is_the_hand_written_network():
    prog = load_program(XOR_MDF)
    out = get_backend("numpy").prepare(prog).run({"input": X})
    np.testing.assert_allclose(out["output"], xor_by_hand(prog, X), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", EXPECTED)
def test_every_backend_runs_the_xor_example_like_the_reference(name):
    prog = load_program(XOR_MDF)
    ref = get_backend("numpy").prepare(prog).run({"input": X})
    rep = get_backend(name).prepare(prog)
    assert isinstance(rep, BackendRep) and rep.backend is BACKENDS[name] and rep.program is prog
    got = rep.run({"input": X})
    assert set(got) == set(ref) == {"output"}
    assert isinstance(got["output"], np.ndarray) and got["output"].shape == (len(X), 1)
    np.testing.assert_allclose(got["output"], ref["output"], rtol=TOL[name], atol=TOL[name])
    assert np.ptp(got["output"]) > 0.1  # the inputs tell the trials apart
    again = rep.run({"input": X[:3]})  # a prepared rep runs again on other batches (BLAS may sum a batch of 3
    tol = max(TOL[name], 1e-15)  # in another order than one of 12 on some CPUs: a few ulps)
    np.testing.assert_allclose(again["output"], ref["output"][:3], rtol=tol, atol=tol)
    np.testing.assert_array_equal(run_with_backend(prog, {"input": X}, name)["output"], got["output"])


def test_onnxruntime_runs_float32_and_float64():
    prog = load_program(XOR_MDF)
    ref = run_with_backend(prog, {"input": X}, "numpy")["output"]
    f32 = get_backend("onnxruntime").prepare(prog, provider="cpu").run({"input": X})["output"]
    f64 = get_backend("onnxruntime").prepare(prog, provider="cpu", dtype="float64").run({"input": X})["output"]
    assert f32.dtype == np.float32 and f64.dtype == np.float64
    np.testing.assert_allclose(f64, ref, rtol=1e-12, atol=1e-12)
    assert np.abs(f32 - ref).max() < 1e-5


def test_only_numpy_records_trajectories():
    prog = load_program(XOR_MDF)
    traj = get_backend("numpy").prepare(prog).run({"input": X}, steps=3, record=True)["__trajectory__"]
    assert traj["output"].shape == (3, len(X), 1)
    for name in ("torch", "llvm", "onnxruntime"):
        rep = get_backend(name).prepare(prog)
        assert "__trajectory__" not in rep.run({"input": X})
        with pytest.raises(UnsupportedError, match="numpy"):
            rep.run({"input": X}, record=True)


def test_cli_run_on_onnxruntime(capsys):
    assert main(["run", str(XOR_MDF), "--input", "input=[[0,0],[0,1],[1,0],[1,1]]", "--backend", "onnxruntime"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert line.startswith("output: ")
    want = run_with_backend(load_program(XOR_MDF), {"input": XOR_INPUTS}, "numpy")["output"]
    np.testing.assert_allclose(np.array(json.loads(line[len("output: "):])), want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------- training

SETTINGS = [dict(epochs=30, learning_rate=0.5),
            dict(epochs=20, learning_rate=0.3, minibatch_size=3, randomize_minibatch=True, seed=5, weight_decay=0.01),
            dict(epochs=15, learning_rate=0.05, optimizer_type="adam", minibatch_size=2, loss_spec="sse")]


def hand_written_torch(program, epochs, learning_rate, minibatch_size=1, randomize_minibatch=False, seed=None,
                       weight_decay=0.0, optimizer_type="sgd", loss_spec="mse"):
    """The example's network trained by a plain torch loop (torch.optim, torch.nn.functional): trained weights."""
    w = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in xor_weights(program).items()}
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer_type](list(w.values()), lr=learning_rate,
                                                                             weight_decay=weight_decay)
    lossf = {"mse": torch.nn.functional.mse_loss, "sse": lambda o, t: ((o - t) ** 2).sum()}[loss_spec]
    x, t = torch.tensor(XOR_INPUTS), torch.tensor(XOR_TARGETS)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(4) if randomize_minibatch else np.arange(4)
        for b in range(0, 4, minibatch_size):
            rows = torch.as_tensor(order[b:b + minibatch_size])
            h = torch.sigmoid(x[rows] @ w["input_to_hidden.matrix"] + w["bias_to_hidden.matrix"])
            out = torch.sigmoid(h @ w["hidden_to_output.matrix"] + w["bias_to_output.matrix"])
            loss = lossf(out, t[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach().numpy() for k, v in w.items()}


@pytest.mark.parametrize("settings", SETTINGS, ids=["sgd", "shuffled", "adam-sse"])
@pytest.mark.parametrize("name", ["torch", "llvm"])
def test_rep_train_equals_learn_and_a_hand_written_loop(name, settings):
    by_learn = learn(str(XOR_MDF), {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, backend=name, **settings)
    prog = load_program(XOR_MDF)
    before = xor_weights(prog)
    result = get_backend(name).prepare(prog).train({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **settings)
    assert result.program is prog
    after = xor_weights(prog)
    oracle = hand_written_torch(load_program(XOR_MDF), **settings)
    for k, v in after.items():
        assert not np.allclose(v, before[k], rtol=0, atol=1e-6), k  # it trained
        np.testing.assert_allclose(v, by_learn.program.params[k].value, rtol=0, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(v, oracle[k], rtol=0, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(result.losses, by_learn.losses, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.outputs["output"], by_learn.outputs["output"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["torch", "llvm"])
def test_rep_train_takes_a_config_and_settings_over_it(name):
    a, b = load_program(XOR_MDF), load_program(XOR_MDF)
    get_backend(name).prepare(a).train({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, LearnConfig(epochs=5),
                                       learning_rate=0.4)
    get_backend(name).prepare(b).train({"input": XOR_INPUTS}, {"output": XOR_TARGETS},
                                       LearnConfig(epochs=5, learning_rate=0.4))
    for k, v in xor_weights(a).items():
        np.testing.assert_array_equal(v, xor_weights(b)[k])
    with pytest.raises(UnsupportedError, match="learning_rat"):
        get_backend(name).prepare(a).train({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, learning_rat=0.1)


def test_torch_rep_runs_what_it_trained():
    prog = load_program(XOR_MDF)
    rep = get_backend("torch").prepare(prog)
    untrained = rep.run({"input": X})["output"]
    rep.train({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=20, learning_rate=0.5)
    trained = rep.run({"input": X})["output"]
    assert np.abs(trained - untrained).max() > 1e-3
    np.testing.assert_allclose(trained, xor_by_hand(prog, X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["numpy", "onnxruntime"])
def test_backends_that_do_not_train_say_so(name):
    prog = load_program(XOR_MDF)
    before = xor_weights(prog)
    with pytest.raises(UnsupportedError) as info:
        get_backend(name).prepare(prog).train({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=2)
    msg = str(info.value)
    assert f"'{name}' does not train" in msg and "'torch'" in msg and "'llvm'" in msg, msg
    with pytest.raises(UnsupportedError, match="'torch' or 'llvm'"):
        train_program(prog, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, LearnConfig(epochs=2), backend=name)
    for k, v in xor_weights(prog).items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(UnsupportedError, match="'torch' or 'llvm'"):
        learn(prog, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, execution_mode=ExecutionMode.Python)


def test_epoch_orders_are_one_seeded_permutation_per_epoch():
    data = prepare_data(load_program(XOR_MDF), {"input": XOR_INPUTS}, {"output": XOR_TARGETS})
    assert data.n == 4
    assert list(data.epoch_orders(LearnConfig(epochs=3))) == [None, None, None]
    rng = np.random.default_rng(9)
    want = [rng.permutation(4) for _ in range(5)]
    got = list(data.epoch_orders(LearnConfig(epochs=5, randomize_minibatch=True, seed=9)))
    assert len(got) == 5 and not all(np.array_equal(got[0], g) for g in got)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_importing_the_backends_imports_no_engine():
    code = ("import sys, mdfbridge.backends, mdfbridge.api\n"
            "print(sorted(m for m in ('torch', 'llvmlite', 'onnxruntime', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
