"""Learning algorithms (issue 14): the interface, Backprop as one of them, BPTT and TBPTT over stateful MDF models,
learnable MDF parameters, checkpoints and resume, write-back, the CLI.

Oracles: torch autograd of the model unrolled by hand (float64, 1e-12), and runs without interruption."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sequence_models import TAU, rate_doc

from mdfbridge.errors import DataError, UnsupportedError
from mdfbridge.learning import learn
from mdfbridge.learning.algorithms import (
    ALGORITHMS,
    BPTT,
    TBPTT,
    Backprop,
    LearningAlgorithm,
    get_algorithm,
    parse_algorithm_args,
)
from mdfbridge.learning.checkpoints import load_checkpoint, save_checkpoint
from mdfbridge.lowering import lower

N, T, B, DT = 3, 12, 4, 0.5


def hand_unrolled(W: torch.Tensor, tau: torch.Tensor, x: torch.Tensor, dt: float = DT,
                  cut_every: int = 0) -> torch.Tensor:
    """The same model as a torch loop (modeci-mdf's steps: the first with dt 0); states detached after every
    `cut_every` steps (0: never)."""
    r = torch.zeros(x.shape[0], W.shape[0], dtype=torch.float64)
    outs = []
    for t in range(x.shape[1]):
        r = r + (0.0 if t == 0 else dt) * (-r + torch.tanh(r @ W.T + x[:, t])) / tau
        outs.append(r)
        if cut_every and (t + 1) % cut_every == 0:
            r = r.detach()
    return torch.stack(outs, 1)


@pytest.fixture(params=["random", "fixed"])
def weights(request: pytest.FixtureRequest) -> np.ndarray:
    if request.param == "fixed":
        return np.array([[0.5, -0.25, 0.0], [0.125, 0.75, -0.5], [-1.0, 0.25, 0.5]])
    return np.random.default_rng(7).normal(size=(N, N)) * 0.6


def data(seed: int = 0, final_only: bool = False) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, N))
    y = 0.5 * np.sin(np.linspace(0, 3, T))[None, :, None] * np.ones((B, T, N))
    return {"stim": x}, {"cell": y[:, -1] if final_only else y}


@pytest.mark.parametrize("final_only", [False, True])
def test_bptt_equals_autograd_of_the_hand_unrolled_model(weights: np.ndarray, final_only: bool) -> None:
    x, y = data(final_only=final_only)
    lr = 0.1
    res = learn(rate_doc(weights), x, y, algorithm=BPTT(dt=DT), learning_rate=lr, minibatch_size=B,
                learnable=["cell.tau"])
    W = torch.tensor(weights, requires_grad=True)
    tau = torch.tensor(TAU, dtype=torch.float64, requires_grad=True)
    pred = hand_unrolled(W, tau, torch.tensor(x["stim"]))
    target = torch.tensor(y["cell"])
    loss = torch.nn.functional.mse_loss(pred[:, -1] if final_only else pred, target)
    loss.backward()
    assert abs(res.losses[0] - loss.item()) < 1e-12
    np.testing.assert_allclose(res.program.params["cell.W"].value, weights - lr * W.grad.numpy(), atol=1e-12, rtol=0)
    assert abs(float(res.program.params["cell.tau"].value) - (TAU - lr * tau.grad.item())) < 1e-12
    assert res.outputs["cell"].shape == (B, T, N)
    np.testing.assert_allclose(res.outputs["cell"], pred.detach().numpy(), atol=1e-12, rtol=0)


def test_tbptt_with_whole_sequence_chunks_is_bptt(weights: np.ndarray) -> None:
    x, y = data()
    common = dict(learning_rate=0.05, minibatch_size=2, epochs=3, optimizer_type="adam", randomize_minibatches=True,
                  seed=5)
    a = learn(rate_doc(weights), x, y, algorithm=BPTT(dt=DT), **common)
    b = learn(rate_doc(weights), x, y, algorithm=TBPTT(backward_time_steps=T, optim_time_steps=T, dt=DT), **common)
    assert a.losses == b.losses
    np.testing.assert_array_equal(a.program.params["cell.W"].value, b.program.params["cell.W"].value)


def test_tbptt_truncates_the_state_and_steps_at_both_periods(weights: np.ndarray) -> None:
    """k1 = 3, k2 = 6 with SGD on one minibatch: the hand loop cuts the state every 3 steps, sums the chunks'
    losses (each weighted by its share of the steps) and steps the weights every 6 steps."""
    x, y = data()
    lr, k1, k2 = 0.2, 3, 6
    res = learn(rate_doc(weights), x, y, algorithm=TBPTT(backward_time_steps=k1, optim_time_steps=k2, dt=DT),
                learning_rate=lr, minibatch_size=B)
    W = torch.tensor(weights, requires_grad=True)
    xt, target = torch.tensor(x["stim"]), torch.tensor(y["cell"])
    r = torch.zeros(B, N, dtype=torch.float64)
    chunk = []
    for t in range(T):
        r = r + (0.0 if t == 0 else DT) * (-r + torch.tanh(r @ W.T + xt[:, t])) / TAU
        chunk.append(r)
        if (t + 1) % k1 == 0:
            pred = torch.stack(chunk, 1)
            (torch.nn.functional.mse_loss(pred, target[:, t + 1 - len(chunk):t + 1]) * len(chunk) / T).backward()
            r, chunk = r.detach(), []
        if (t + 1) % k2 == 0:
            with torch.no_grad():
                W -= lr * W.grad
            W.grad = None
    np.testing.assert_allclose(res.program.params["cell.W"].value, W.detach().numpy(), atol=1e-12, rtol=0)
    bptt = learn(rate_doc(weights), x, y, algorithm=BPTT(dt=DT), learning_rate=lr, minibatch_size=B)
    assert np.abs(bptt.program.params["cell.W"].value - res.program.params["cell.W"].value).max() > 1e-6


def test_tbptt_auto_time_steps_follow_neurotorchs_ratios() -> None:
    assert TBPTT().time_steps_for(100) == (10, 10)
    assert TBPTT(auto_backward_time_steps_ratio=0.25).time_steps_for(100) == (25, 25)
    assert TBPTT(auto_backward_time_steps_ratio=0.2, auto_optim_time_steps_ratio=0.5).time_steps_for(10) == (2, 5)
    assert TBPTT().time_steps_for(5) == (1, 1)
    assert TBPTT(backward_time_steps=7).time_steps_for(100) == (7, 10)


def test_gradient_guards_clip_and_replace() -> None:
    x, y = data()
    clipped = learn(rate_doc(np.eye(N)), x, y, algorithm=BPTT(dt=DT, grad_norm_clip_value=1e-3), learning_rate=1.0,
                    minibatch_size=B)
    step = clipped.program.params["cell.W"].value - np.eye(N)
    # SGD with lr 1: the step is the clipped gradient (torch's clip_grad_norm_ divides by the norm + 1e-6)
    assert np.linalg.norm(step) == pytest.approx(1e-3, rel=1e-4)
    for bad in (dict(grad_norm_clip_value=0), dict(nan=math.nan), dict(dt=-1.0)):
        with pytest.raises(DataError):
            BPTT(**bad)
    with pytest.raises(DataError, match="backward_time_steps"):
        TBPTT(backward_time_steps=0)
    with pytest.raises(DataError, match="auto_backward_time_steps_ratio"):
        TBPTT(auto_backward_time_steps_ratio=1.5)


def test_backprop_is_learns_default(tmp_path: Path) -> None:
    doc = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {
        "a": {"metadata": {"mdfbridge": {"learnable_parameters": ["w"]}}, "input_ports": {"x": {"shape": [2]}},
              "parameters": {"w": {"value": [[0.5, -0.5], [0.25, 1.0]]}},
              "functions": {"f": {"value": "tanh(matmul(x, w))"}}, "output_ports": {"y": {"value": "f"}}}}}}}}
    x = {"a": np.random.default_rng(1).normal(size=(8, 2))}
    y = {"a": np.random.default_rng(2).normal(size=(8, 2)) * 0.5}
    default = learn(doc, x, y, epochs=3, learning_rate=0.1)
    explicit = learn(doc, x, y, epochs=3, learning_rate=0.1, algorithm=Backprop())
    named = learn(doc, x, y, epochs=3, learning_rate=0.1, algorithm="BACKPROP")
    assert default.losses == explicit.losses == named.losses
    assert learn(doc, x, y, epochs=2, learning_rate=0.1, algorithm=Backprop(), backend="llvm").losses == \
        pytest.approx(default.losses[:16], abs=1e-12)


def test_hooks_run_in_neurotorchs_order() -> None:
    calls = []

    class Recording(BPTT):
        name = "recording"

        def start(self, trainer):
            calls.append("start")

        def on_batch_begin(self, trainer, batch):
            calls.append(f"begin{batch.index}")

        def on_optimization_begin(self, trainer, batch):
            calls.append("opt")
            super().on_optimization_begin(trainer, batch)

        def on_optimization_end(self, trainer, batch):
            calls.append("opt_end")

        def on_batch_end(self, trainer, batch):
            calls.append("end")

        def close(self, trainer):
            calls.append("close")

    x, y = data()
    learn(rate_doc(np.eye(N)), x, y, algorithm=Recording(dt=DT), minibatch_size=2)
    assert calls == ["start", "begin0", "opt", "opt_end", "end", "begin1", "opt", "opt_end", "end", "close"]


def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path: Path, weights: np.ndarray) -> None:
    x, y = data()
    ck = tmp_path / "ck.npz"
    common = dict(learning_rate=0.05, minibatch_size=2, optimizer_type="adam", randomize_minibatches=True, seed=11,
                  algorithm=TBPTT(backward_time_steps=4, dt=DT), learnable=["cell.tau"])
    whole = learn(rate_doc(weights), x, y, epochs=5, **common)
    first = learn(rate_doc(weights), x, y, epochs=2, checkpoint=ck, **common)
    assert load_checkpoint(ck)["epochs_done"] == 2
    rest = learn(rate_doc(weights), x, y, epochs=5, checkpoint=ck, resume=True, **common)
    assert rest.losses == whole.losses and rest.epoch_losses == whole.epoch_losses
    assert first.losses == whole.losses[:len(first.losses)]
    for name in ("cell.W", "cell.tau"):
        np.testing.assert_array_equal(rest.program.params[name].value, whole.program.params[name].value)
    again = learn(rate_doc(weights), x, y, epochs=5, checkpoint=ck, resume=True, **common)  # nothing left to train
    assert again.epochs_run == 5 and again.losses == whole.losses
    np.testing.assert_allclose(again.outputs["cell"], whole.outputs["cell"], atol=0.5)
    with pytest.raises(DataError, match="another model"):
        learn(rate_doc(weights), x, y, epochs=5, checkpoint=ck, resume=True,
              **{**common, "learnable": []})
    with pytest.raises(DataError, match="algorithm 'tbptt', not 'bptt'"):
        learn(rate_doc(weights), x, y, epochs=5, checkpoint=ck, resume=True, **{**common, "algorithm": BPTT(dt=DT)})
    with pytest.raises(DataError, match="needs a checkpoint"):
        learn(rate_doc(weights), x, y, resume=True, **common)


def test_checkpoint_files_hold_no_pickles(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    state = {"t": torch.arange(3.0), "a": np.ones((2, 2)), "opt": {"state": {0: {"step": torch.tensor(2.0)}}},
             "pair": (1, "x"), "inf": math.inf, "none": None}
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert torch.equal(back["t"], state["t"]) and np.array_equal(back["a"], state["a"])
    assert back["opt"]["state"][0]["step"].item() == 2.0 and back["pair"] == (1, "x") and back["inf"] == math.inf
    np.savez(tmp_path / "obj.npz", __tree__=np.array([{"x": 1}], dtype=object))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    for bad in ("obj.npz", "junk.npz"):
        with pytest.raises(DataError, match=bad):
            load_checkpoint(tmp_path / bad)


def test_write_back_after_bptt(tmp_path: Path, weights: np.ndarray) -> None:
    from mdfbridge import save_mdf, write_back
    from mdfbridge.api import load_program
    from mdfbridge.backends import get_backend

    src, out = tmp_path / "rate.json", tmp_path / "rate.trained.json"
    save_mdf(rate_doc(weights), src)
    x, y = data()
    res = learn(str(src), x, y, algorithm="bptt", epochs=2, learning_rate=0.2, learnable=["cell.tau"])
    write_back(src, res, out)
    params = json.loads(out.read_text())["m"]["graphs"]["g"]["nodes"]["cell"]["parameters"]
    np.testing.assert_array_equal(np.array(params["W"]["value"]), res.program.params["cell.W"].value)
    assert params["tau"]["value"] == float(res.program.params["cell.tau"].value) != TAU
    reloaded = get_backend("torch").prepare(load_program(out, learnable=["cell.tau"])).run_sequence(x)
    in_memory = get_backend("torch").prepare(res.program).run_sequence(x)
    np.testing.assert_allclose(reloaded["cell"], in_memory["cell"], atol=1e-12, rtol=0)


def test_refusals_name_what_is_wrong() -> None:
    x, y = data()
    with pytest.raises(UnsupportedError, match="trains on backend 'torch', not 'llvm'"):
        learn(rate_doc(np.eye(N)), x, y, algorithm="tbptt", backend="llvm")
    with pytest.raises(UnsupportedError, match="MatMul whose B is not a parameter matrix.*use backend 'torch'"):
        learn(rate_doc(np.eye(N)), x, y, algorithm="bptt", backend="llvm")  # (W r: the llvm plan takes r W)
    with pytest.raises(UnsupportedError, match="did you mean 'tbptt'"):
        get_algorithm("tbpt")
    with pytest.raises(UnsupportedError, match="no argument 'backward_steps'; did you mean 'backward_time_steps'"):
        get_algorithm("tbptt", backward_steps=3)
    with pytest.raises(UnsupportedError, match="pass them to its constructor"):
        get_algorithm(BPTT(), dt=0.1)
    with pytest.raises(DataError, match="'cell.r' is a stateful parameter"):
        learn(rate_doc(np.eye(N)), x, y, algorithm="bptt", learnable=["cell.r"])
    with pytest.raises(DataError, match="no parameter 'cell.tao'"):
        learn(rate_doc(np.eye(N)), x, y, algorithm="bptt", learnable=["cell.tao"])
    with pytest.raises(DataError, match="did you mean 'cell.W'"):
        learn(lower(rate_doc(np.eye(N))), x, y, algorithm="bptt", learnable=["cell.w"])
    with pytest.raises(DataError, match="targets for 'cell' have shape"):
        learn(rate_doc(np.eye(N)), x, {"cell": np.zeros((B, T + 1, N))}, algorithm="bptt")
    assert set(ALGORITHMS) >= {"backprop", "bptt", "tbptt"}
    assert all(issubclass(c, LearningAlgorithm) for c in ALGORITHMS.values())


def test_parse_algorithm_args_reads_literals_without_eval() -> None:
    got = parse_algorithm_args(["backward_time_steps=10", "dt=0.1", "grad_norm_clip_value=inf", "name=xavier_normal",
                                "flag=true", "x=__import__('os')"])
    assert got == {"backward_time_steps": 10, "dt": 0.1, "grad_norm_clip_value": math.inf, "name": "xavier_normal",
                   "flag": True, "x": "__import__('os')"}
    with pytest.raises(DataError, match="NAME=VALUE"):
        parse_algorithm_args(["oops"])


def test_cli_train_tbptt_with_checkpoint_and_resume(tmp_path: Path, weights: np.ndarray) -> None:
    from mdfbridge import save_mdf

    model = tmp_path / "rate.json"
    save_mdf(rate_doc(weights), model)
    x, y = data()
    np.savez(tmp_path / "seq.npz", stim=x["stim"], cell=y["cell"])
    exe = [sys.executable, "-m", "mdfbridge.cli"]
    args = ["--data", str(tmp_path / "seq.npz"), "--algorithm", "tbptt", "--algorithm-arg", "backward_time_steps=4",
            "--algorithm-arg", "dt=0.5", "--learnable", "cell.tau", "--lr", "0.05", "--minibatch-size", "2",
            "--optimizer", "adam", "--randomize", "--seed", "2", "--quiet"]

    def train(*more: str) -> subprocess.CompletedProcess:
        return subprocess.run(exe + ["train", str(model), *args, *more], capture_output=True, text=True,
                              timeout=300)

    ck = tmp_path / "ck.npz"
    assert train("--epochs", "2", "--checkpoint", str(ck), "--out", str(tmp_path / "a.json")).returncode == 0
    r = train("--epochs", "4", "--checkpoint", str(ck), "--resume", "--out", str(tmp_path / "b.json"))
    assert r.returncode == 0 and "by tbptt" in r.stdout, r.stderr
    assert train("--epochs", "4", "--out", str(tmp_path / "c.json")).returncode == 0
    assert json.loads((tmp_path / "b.json").read_text()) == json.loads((tmp_path / "c.json").read_text())
    bad = subprocess.run(exe + ["train", str(model), "--data", str(tmp_path / "seq.npz"), "--algorithm", "eprp"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown learning algorithm" in bad.stderr


def test_bptt_through_a_cycle_closed_by_a_default_value() -> None:
    """a(t) = tanh(W b(t-1) + x(t)), b(t) = 0.5 a(t), b(-1) = the port's default_value: BPTT's gradient is
    autograd's of that loop."""
    W0 = np.array([[0.8, -0.3], [0.4, 0.9]])
    doc = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {
        "nodes": {
            "stim": {"input_ports": {"x": {"shape": [2]}}, "output_ports": {"y": {"value": "x"}}},
            "a": {"metadata": {"mdfbridge": {"learnable_parameters": ["W"]}},
                  "input_ports": {"drive": {"shape": [2]}, "fb": {"shape": [2], "default_value": [0.25, -0.5]}},
                  "parameters": {"W": {"value": W0.tolist()}},
                  "functions": {"f": {"value": "tanh(matmul(W, fb) + drive)"}}, "output_ports": {"o": {"value": "f"}}},
            "b": {"input_ports": {"b_in": {"shape": [2]}}, "functions": {"g": {"value": "0.5 * b_in"}},
                  "output_ports": {"o": {"value": "g"}}}},
        "edges": {"sa": {"sender": "stim", "sender_port": "y", "receiver": "a", "receiver_port": "drive"},
                  "ab": {"sender": "a", "sender_port": "o", "receiver": "b", "receiver_port": "b_in"},
                  "ba": {"sender": "b", "sender_port": "o", "receiver": "a", "receiver_port": "fb"}}}}}}
    prog = lower(doc)
    assert prog.stateful and any(s.kind == "delay" for s in prog.states.values())
    out = "b" if "b" in prog.outputs else next(iter(prog.outputs))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 7, 2))
    y = rng.normal(size=(3, 7, 2)) * 0.3
    res = learn(doc, {"stim": x}, {out: y}, algorithm="bptt", learning_rate=0.3, minibatch_size=3)
    W = torch.tensor(W0, requires_grad=True)
    fb = torch.tensor([0.25, -0.5], dtype=torch.float64).expand(3, 2)
    outs = []
    for t in range(7):
        a = torch.tanh(fb @ W.T + torch.tensor(x[:, t]))
        b = 0.5 * a
        outs.append(b if out == "b" else a)
        fb = b
    torch.nn.functional.mse_loss(torch.stack(outs, 1), torch.tensor(y)).backward()
    np.testing.assert_allclose(res.program.params["a.W"].value, W0 - 0.3 * W.grad.numpy(), atol=1e-12, rtol=0)


def test_bptt_on_the_gru_gate_form_equals_backprop_on_the_fused_block() -> None:
    """The same GRUComposition lowered two ways: gate by gate (a stateful program stepped through time, its
    gate weights named learnable) trained by BPTT, and as the fused block (one op over the whole sequence) trained
    by Backprop: the same losses and weights (1e-12)."""
    from mdfbridge import GRUComposition, get_mdf_serialized

    comp = GRUComposition(3, 4, bias=True, seed=4)
    raw = get_mdf_serialized(comp)
    doc = json.loads(raw) if isinstance(raw, str) else raw
    fused = lower(doc)
    names = [k for k, p in fused.params.items() if p.learnable]
    gates = lower(doc, fuse_gru=False, learnable=names)
    assert fused.sequence and not gates.sequence and gates.stateful
    rng = np.random.default_rng(0)
    x = {"GRU__input": rng.normal(size=(5, 6, 3))}
    y = {"GRU__output": rng.normal(size=(5, 6, 4)) * 0.5}
    common = dict(epochs=2, learning_rate=0.1, minibatch_size=5)
    a = learn(fused, x, y, algorithm=Backprop(), **common)
    b = learn(gates, x, y, algorithm=BPTT(), **common)
    np.testing.assert_allclose(a.losses, b.losses, atol=1e-12, rtol=0)
    assert learn(lower(doc), x, y, algorithm=BPTT(), **common).losses == a.losses  # (the block: whole sequences)
    for name in names:
        np.testing.assert_allclose(a.program.params[name].value, b.program.params[name].value, atol=1e-12, rtol=0)
    with pytest.raises(UnsupportedError, match="GRU block"):
        learn(fused, x, y, algorithm=TBPTT(backward_time_steps=2), **common)


def test_bptt_through_a_stateful_parameter() -> None:
    """A parameter whose value reads itself (modeci-mdf's stateful parameter, no time derivative): v_t =
    decay * v_{t-1} + w * x_t; BPTT trains w and decay (learnable=) as autograd of that loop does."""
    doc = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"acc": {
        "input_ports": {"x": {"shape": [1]}},
        "parameters": {"w": {"value": 0.5}, "decay": {"value": 0.8},
                       "v": {"default_initial_value": [0.0], "value": "decay * v + w * x"}},
        "output_ports": {"out": {"value": "v"}}}}}}}}
    prog = lower(doc, learnable=["acc.w", "acc.decay"])
    assert [s.kind for s in prog.states.values()] == ["parameter"]
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(3, 8, 1)), rng.normal(size=(3, 8, 1))
    res = learn(prog, {"acc": x}, {"acc": y}, algorithm="bptt", learning_rate=0.1, minibatch_size=3)
    w = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    decay = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    v, outs = torch.zeros(3, 1, dtype=torch.float64), []
    for t in range(8):
        v = decay * v + w * torch.tensor(x[:, t])
        outs.append(v)
    torch.nn.functional.mse_loss(torch.stack(outs, 1), torch.tensor(y)).backward()
    assert abs(float(res.program.params["acc.w"].value) - (0.5 - 0.1 * w.grad.item())) < 1e-12
    assert abs(float(res.program.params["acc.decay"].value) - (0.8 - 0.1 * decay.grad.item())) < 1e-12


@pytest.mark.parametrize("algorithm, args", [("eprop", ["feedbacks_gen_strategy=symmetric", "dt=0.5"]),
                                             ("rls", ["strategy=outputs", "delta=1", "dt=0.5"]),
                                             ("bptt", ["dt=0.5"]), ("bptt", ["dt=0.5", "--backend", "llvm"])])
def test_cli_train_each_time_algorithm(tmp_path: Path, algorithm: str, args: list) -> None:
    from mdfbridge import save_mdf

    model = tmp_path / "rate.json"
    native = "llvm" in args
    if native:  # (the llvm backend's projections are r W)
        args = [a for a in args if a not in ("--backend", "llvm")]
    save_mdf(rate_doc(np.eye(N) * 0.5, right=native), model)
    x, y = data()
    np.savez(tmp_path / "seq.npz", stim=x["stim"], cell=y["cell"])
    extra = [a for pair in args for a in ("--algorithm-arg", pair)]
    r = subprocess.run([sys.executable, "-m", "mdfbridge.cli", "train", str(model), "--data", str(tmp_path / "seq.npz"),
                        "--algorithm", algorithm, *extra, "--epochs", "3", "--lr", "0.1", "--quiet",
                        "--out", str(tmp_path / "out.json"), *(["--backend", "llvm"] if native else [])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert ("on llvm" in r.stdout) == native, r.stdout
    first, last = (float(v) for v in re.search(r"loss ([-0-9.e]+) -> ([-0-9.e]+)", r.stdout).groups())
    assert last < first and f"by {algorithm}" in r.stdout
    trained = json.loads((tmp_path / "out.json").read_text())["m"]["graphs"]["g"]["nodes"]["cell"]["parameters"]
    assert trained["W"]["value"] != (np.eye(N) * 0.5).tolist()


def test_llvm_runs_plain_backprop_only() -> None:
    """A Backprop subclass's hooks would not run in the llvm trainer's native loop: refused, not ignored."""
    class Logged(Backprop):
        name = "logged"

    doc = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {
        "a": {"metadata": {"mdfbridge": {"learnable_parameters": ["w"]}}, "input_ports": {"x": {"shape": [2]}},
              "parameters": {"w": {"value": [[0.5, -0.5], [0.25, 1.0]]}},
              "functions": {"f": {"value": "matmul(x, w)"}}, "output_ports": {"y": {"value": "f"}}}}}}}}
    x, y = {"a": np.ones((2, 2))}, {"a": np.zeros((2, 2))}
    with pytest.raises(UnsupportedError,
                       match="runs learn\\(\\)'s own Backprop, BPTT and PredictiveCoding only, not Logged's hooks"):
        learn(doc, x, y, algorithm=Logged(), backend="llvm")
    assert learn(doc, x, y, algorithm=Logged()).losses  # (torch runs its hooks)


@pytest.mark.parametrize("module", ["eprop", "rls", "predictive_coding", "stepping", "algorithms"])
def test_any_algorithm_module_imports_first(module: str) -> None:
    """`import mdfbridge.learning.<module>` in a fresh interpreter (a circular import once broke all but one)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", f"import mdfbridge.learning.{module}"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
