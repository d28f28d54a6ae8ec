"""Predictive coding (issue 15): pcx's standard PC equals an independent torch loop of the tutorial's algorithm
(float64, 1e-10), Z-IL's weight gradients equal backpropagation's (torch autograd of a hand-written forward pass,
float64, 1e-10) on random 3-5 layer nets, write-back into the MDF file, the CLI (--algorithm pc --T, --plot), the
energies callbacks read, and the errors bad settings get."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch
from predictive_coding_two_moons import LEAK, build_net, make_moons
from sequence_models import rate_doc

from mdfbridge import BiasMechanism, Composition, Logistic, MappingProjection, ReLU, Tanh, TransferMechanism
from mdfbridge.errors import DataError, UnsupportedError
from mdfbridge.learning import learn
from mdfbridge.learning.algorithms import PredictiveCoding, get_algorithm
from mdfbridge.lowering import lower

ACTS: Dict[str, Tuple[Callable[[], object], Callable[[torch.Tensor], torch.Tensor]]] = {
    "logistic": (Logistic, torch.sigmoid),
    "tanh": (Tanh, torch.tanh),
    "leaky": (lambda: ReLU(leak=LEAK), lambda z: torch.nn.functional.leaky_relu(z, LEAK)),
}


def random_net(seed: int, layers: int) -> Tuple[Composition, List[str], List[np.ndarray], List[np.ndarray]]:
    """input -> `layers` weighted layers (random sizes, a random activation each on the hidden ones, linear
    output), with bias nodes; returns the composition, the activations' names and the initial W (in, out), b."""
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(2, 6, size=layers + 1)]
    acts = [str(rng.choice(list(ACTS))) for _ in range(layers - 1)]
    mechs = [TransferMechanism("input", sizes[0])]
    for k in range(1, layers + 1):
        fn = ACTS[acts[k - 1]][0]() if k < layers else None
        mechs.append(TransferMechanism(f"layer{k}", sizes[k], fn))
    Ws = [rng.normal(0, 0.8, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(0, 0.5, (1, b)) for b in sizes[1:]]
    comp = Composition(f"net{seed}")
    path: list = [mechs[0]]
    for k, W in enumerate(Ws):
        path += [MappingProjection(matrix=W, name=f"w{k + 1}"), mechs[k + 1]]
    comp.add_linear_processing_pathway(path)
    for k, b in enumerate(bs):
        comp.add_projection(MappingProjection(matrix=b, name=f"b{k + 1}"), BiasMechanism(f"bias{k + 1}"), mechs[k + 1])
    return comp, acts, Ws, bs


def forward(Ws: List[torch.Tensor], bs: List[torch.Tensor], acts: List[str], x: torch.Tensor) -> torch.Tensor:
    """The nets above by hand: act(x W + b) per hidden layer, a linear output."""
    for k, (W, b) in enumerate(zip(Ws, bs)):
        x = x @ W + b
        if k < len(acts):
            x = ACTS[acts[k]][1](x)
    return x


def output_energy(u: torch.Tensor, y: torch.Tensor, energy: str) -> torch.Tensor:
    """pcx's se / ce energy of the output vode held at the target, mean over the trials."""
    if energy == "se":
        return 0.5 * ((y - u) ** 2).sum() / len(y)
    return -(y * torch.log_softmax(u, -1)).sum() / len(y)


def trained_weights(program, layers: int) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    return ([program.params[f"w{k + 1}.matrix"].value for k in range(layers)],
            [program.params[f"b{k + 1}.matrix"].value for k in range(layers)])


@pytest.mark.parametrize("energy", ["se", "ce"])
@pytest.mark.parametrize("seed,layers", [(0, 3), (1, 4), (2, 5), (3, 3), (4, 5)])
def test_zil_weight_gradients_equal_backprop(seed: int, layers: int, energy: str) -> None:
    comp, acts, Ws, bs = random_net(seed, layers)
    rng = np.random.default_rng(100 + seed)
    trials = 7
    x = rng.normal(size=(trials, Ws[0].shape[0]))
    k = Ws[-1].shape[1]
    y = np.eye(k)[rng.integers(0, k, trials)] if energy == "ce" else rng.normal(size=(trials, k))
    pc = PredictiveCoding(T=layers + 2, energy=energy, mode="zil", optim_w=("sgd", 1.0))
    result = learn(lower(comp.to_mdf()), {"input": x}, {f"layer{layers}": y}, epochs=1, minibatch_size=trials,
                   algorithm=pc)
    tW = [torch.tensor(W, requires_grad=True) for W in Ws]
    tb = [torch.tensor(b, requires_grad=True) for b in bs]
    loss = output_energy(forward(tW, tb, acts, torch.tensor(x)), torch.tensor(y), energy)
    grads = torch.autograd.grad(loss, tW + tb)
    W1, b1 = trained_weights(result.program, layers)
    for before, after, g in zip(Ws + bs, W1 + b1, grads):  # SGD at lr 1: after = before - gradient
        np.testing.assert_allclose(before - after, g.numpy(), rtol=0, atol=1e-10)
    assert max(float(g.abs().max()) for g in grads) > 1e-3  # (gradients that are there to compare)
    assert len(pc.energies) == 1 and len(pc.energies[0]) == layers + 2


def tutorial_loop(Ws: List[np.ndarray], bs: List[np.ndarray], batches: List[Tuple[np.ndarray, np.ndarray]],
                  T: int) -> Tuple[List[torch.Tensor], List[List[float]]]:
    """pcx's tutorial in plain torch (an independent oracle): per minibatch, h = forward values (the output at the
    label), T steps of sgd(0.01 x batch) on the mean energy over the hidden activities, one AdamW(0.01, weight
    decay 1e-4) step of the weights on the energy with the activities held."""
    params = [torch.tensor(v, requires_grad=True) for v in Ws + bs]
    L = len(Ws)
    W, b = params[:L], params[L:]
    opt = torch.optim.AdamW(params, lr=0.01, weight_decay=1e-4)
    act = ACTS["leaky"][1]
    energies = []

    def energy(h: List[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        below = [x] + h
        e = 0.5 * sum(((h[k] - act(below[k] @ W[k] + b[k])) ** 2).sum() for k in range(L - 1))
        return (e - (y * torch.log_softmax(below[-1] @ W[-1] + b[-1], -1)).sum()) / len(x)

    for xb, yb in batches:
        x, y = torch.tensor(xb), torch.tensor(yb)
        with torch.no_grad():
            h, a = [], x
            for k in range(L - 1):
                a = act(a @ W[k] + b[k])
                h.append(a.clone().requires_grad_(True))
        seen = []
        for _ in range(T):
            e = energy(h, x, y)
            seen.append(float(e.detach()))
            grads = torch.autograd.grad(e, h)
            with torch.no_grad():
                for hk, g in zip(h, grads):
                    hk -= 0.01 * len(x) * g
        opt.zero_grad()
        e = energy([hk.detach() for hk in h], x, y)
        seen.append(float(e.detach()))
        e.backward()
        opt.step()
        energies.append(seen)
    return params, energies


def test_standard_pc_equals_the_tutorial_loop_in_torch() -> None:
    X, labels = make_moons(96, 0.2, 3)
    Y = np.eye(2)[labels]
    comp = build_net(5, (2, 8, 8, 2))
    program = lower(comp.to_mdf())
    Ws, bs = trained_weights(program, 3)
    Ws, bs = [w.copy() for w in Ws], [b.copy() for b in bs]
    pc = PredictiveCoding(T=5, energy="ce")
    result = learn(program, {"input": X}, {"output": Y}, epochs=2, minibatch_size=32, algorithm=pc)
    batches = [(X[i:i + 32], Y[i:i + 32]) for i in range(0, 96, 32)] * 2
    params, energies = tutorial_loop(Ws, bs, batches, T=5)
    W1, b1 = trained_weights(result.program, 3)
    for got, want in zip(W1 + b1, params):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(pc.energies, energies, rtol=1e-10, atol=1e-12)
    assert energies[0][-1] < energies[0][0]  # (inference lowered the energy)
    assert len(pc.epoch_accuracy) == 2 and len(pc.epoch_energy) == 2


def test_make_moons_is_sklearns() -> None:
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is not installed (optional)")
    for n, noise, rs in ((1024, 0.2, 42), (512, 0.2, 0), (7, 0.1, 1)):
        X, y = make_moons(n, noise, rs)
        X2, y2 = datasets.make_moons(n, noise=noise, random_state=rs)
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_allclose(X, X2, rtol=0, atol=1e-15)


def test_write_back_and_callbacks_see_the_energies(tmp_path: Path) -> None:
    from mdfbridge import load_program, run_program, write_back

    model = tmp_path / "moons.json"
    build_net(1, (2, 6, 2)).save_mdf(model)
    X, labels = make_moons(64, 0.2, 1)
    Y = np.eye(2)[labels]
    before = json.loads(model.read_text())
    pc = get_algorithm("pc", T=4, energy="ce")
    seen: List[List[float]] = []
    result = learn(str(model), {"input": X}, {"output": Y}, epochs=2, minibatch_size=16, algorithm=pc,
                   callback=lambda epoch, index, loss: seen.append(list(pc.energies[index])))
    assert len(seen) == 8 and all(len(e) == 5 for e in seen)
    out = tmp_path / "moons.trained.json"
    write_back(model, result.program, out)
    assert json.loads(model.read_text()) == before  # (the source is untouched)
    again = load_program(out)
    for name, p in result.program.params.items():
        np.testing.assert_array_equal(again.params[name].value, p.value)
    assert not np.allclose(again.params["w1.matrix"].value, lower(before).params["w1.matrix"].value)
    np.testing.assert_allclose(run_program(again, {"input": X})["output"],
                               run_program(result.program, {"input": X})["output"], rtol=0, atol=1e-12)


def test_cli_train_pc_with_plot(tmp_path: Path) -> None:
    model = tmp_path / "moons.json"
    build_net(2, (2, 6, 2)).save_mdf(model)
    X, labels = make_moons(64, 0.2, 2)
    np.savez(tmp_path / "d.npz", input=X, output=np.eye(2)[labels])
    exe = [sys.executable, "-m", "mdfbridge.cli", "train", str(model), "--data", str(tmp_path / "d.npz")]
    r = subprocess.run(exe + ["--algorithm", "pc", "--T", "3", "--algorithm-arg", "energy=ce", "--epochs", "2",
                              "--minibatch-size", "16", "--plot", "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "by pc" in r.stdout, r.stderr
    png = tmp_path / "moons.loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trained = json.loads((tmp_path / "moons.trained.json").read_text())
    assert trained != json.loads(model.read_text())
    native = subprocess.run(exe + ["--algorithm", "pc", "--T", "3", "--epochs", "2", "--backend", "llvm",
                                   "--out", str(tmp_path / "native.json")], capture_output=True, text=True, timeout=300)
    assert native.returncode == 0 and "on llvm by pc" in native.stdout, native.stderr
    bad = subprocess.run(exe + ["--T", "3"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--algorithm pc" in bad.stderr, bad.stderr


def test_bad_settings_are_refused() -> None:
    with pytest.raises(DataError, match="T .* >= 1"):
        PredictiveCoding(T=0)
    with pytest.raises(DataError, match="energy"):
        PredictiveCoding(energy="mse")
    with pytest.raises(DataError, match="did you mean 'sgd'"):
        PredictiveCoding(optim_w=("sdg", 0.01))
    with pytest.raises(DataError, match="learning rate"):
        PredictiveCoding(optim_h=("sgd", -1))
    with pytest.raises(DataError, match="leave optim_h unset"):
        PredictiveCoding(mode="zil", optim_h=("sgd", 1.0))
    with pytest.raises(DataError, match="mode"):
        PredictiveCoding(mode="fast")
    X, labels = make_moons(16, 0.2, 0)
    data = ({"input": X}, {"output": np.eye(2)[labels]})
    net = build_net(0, (2, 4, 4, 2)).to_mdf()
    with pytest.raises(DataError, match="T must be >= 3"):
        learn(lower(net), *data, algorithm=PredictiveCoding(T=2, mode="zil"))
    with pytest.raises(DataError, match="did you mean 'hidden1'"):
        learn(lower(net), *data, algorithm=PredictiveCoding(vodes=["hiden1", "output"]))
    with pytest.raises(DataError, match="energy: 'nope'"):
        learn(lower(net), *data, algorithm=PredictiveCoding(energy={"nope": "se"}))
    stateful = lower(rate_doc(np.eye(3) * 0.5))
    with pytest.raises(UnsupportedError, match="feedforward"):
        learn(stateful, {"stim": np.ones((2, 3))}, {"cell": np.ones((2, 3))}, algorithm="pc")


def test_default_vodes_are_the_mechanisms_after_the_input() -> None:
    from mdfbridge.learning.predictive_coding import default_vodes

    program = lower(build_net(0, (2, 4, 4, 2)).to_mdf())
    assert list(default_vodes(program)) == ["hidden1", "hidden2", "output"]
    assert default_vodes(program)["hidden1"] == "hidden1.function"


# ----------------------------------------------------------------------------------------- the llvm backend

def _train_both(comp: Composition, X: np.ndarray, Y: np.ndarray, output: str, learn_settings=None, **settings):
    """The same PC run on the torch backend (float64) and the llvm backend: (program, algorithm, result) each;
    learn_settings: more of learn()'s (default None: none)."""
    out = []
    for backend in ("torch", "llvm"):
        program = lower(comp.to_mdf())
        pc = PredictiveCoding(**settings)
        result = learn(program, {"input": X}, {output: Y}, epochs=3, minibatch_size=12, randomize_minibatches=True,
                       seed=7, algorithm=pc, backend=backend, **(learn_settings or {}))
        out.append((result.program, pc, result))
    return out


LLVM_CASES = [
    (0, 3, dict(T=6, energy="ce")),
    (1, 4, dict(T=4, energy="se", optim_h=("sgd", 0.3), optim_w=("adam", 0.02))),
    (2, 5, dict(T=7, energy="ce", optim_w=("sgd", 0.05))),
    (3, 3, dict(T=3, energy={"layer1": "ce", "layer3": "se"}, optim_w=("adamw", 0.01, {"weight_decay": 0.1}))),
    (4, 4, dict(T=5, energy="se", frozen=[])),  # the output vode moves too
    (5, 3, dict(T=4, energy="ce", optim_w=None,  # learn()'s optimizer steps the weights
                learn_settings=dict(optimizer_type="adam", learning_rate=0.03, weight_decay=0.01))),
]


@pytest.mark.parametrize("seed,layers,settings", LLVM_CASES, ids=[f"net{c[0]}-{c[1]}layers" for c in LLVM_CASES])
def test_llvm_equals_torch(seed: int, layers: int, settings: dict) -> None:
    """Native predictive coding against the torch backend's (float64): weights, every energy, the losses and
    accuracies, on random 3-5 layer nets (a short last minibatch: 40 trials in 12s)."""
    comp, _, Ws, _ = random_net(seed, layers)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, Ws[0].shape[0]))
    Y = np.eye(Ws[-1].shape[1])[rng.integers(0, Ws[-1].shape[1], 40)]
    (pt, at, rt), (pl, al, rl) = _train_both(comp, X, Y, f"layer{layers}", **settings)
    for name, p in pt.params.items():
        np.testing.assert_allclose(pl.params[name].value, p.value, rtol=1e-10, atol=1e-12, err_msg=name)
    assert np.abs(pl.params[f"w{layers}.matrix"].value - Ws[-1]).max() > 1e-3  # (trained)
    np.testing.assert_allclose(al.energies, at.energies, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rl.losses, rt.losses, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(al.epoch_energy, at.epoch_energy, rtol=1e-10, atol=1e-12)
    assert al.epoch_accuracy == at.epoch_accuracy and len(al.epoch_accuracy) == 3
    np.testing.assert_allclose(rl.outputs[f"layer{layers}"], rt.outputs[f"layer{layers}"], rtol=1e-10, atol=1e-12)


def test_llvm_callbacks_see_the_energies_and_refusals() -> None:
    X, labels = make_moons(48, 0.2, 4)
    Y = np.eye(2)[labels]
    comp = build_net(3, (2, 5, 2))
    seen: Dict[str, List[List[float]]] = {"torch": [], "llvm": []}
    for backend in seen:
        pc = PredictiveCoding(T=3, energy="ce")
        learn(lower(comp.to_mdf()), {"input": X}, {"output": Y}, epochs=2, minibatch_size=16, algorithm=pc,
              backend=backend, callback=lambda epoch, index, loss, pc=pc, b=backend: seen[b].append(
                  list(pc.energies[index])))
    assert len(seen["llvm"]) == 6
    np.testing.assert_allclose(seen["llvm"], seen["torch"], rtol=1e-10, atol=1e-12)
    data = (lower(comp.to_mdf()), {"input": X}, {"output": Y})
    for settings, match in ((dict(mode="zil"), "mode 'zil'.*backend 'torch'"),
                            (dict(optim_h=("adam", 0.1)), "optim_h=.*plain SGD"),
                            (dict(optim_w=("rmsprop", 0.01)), "optim_w=.*'sgd' \\| 'adam' \\| 'adamw'"),
                            (dict(optim_w=lambda ps: torch.optim.SGD(ps, lr=0.1)), "optim_w=")):
        with pytest.raises(UnsupportedError, match=match):
            learn(*data, algorithm=PredictiveCoding(**settings), backend="llvm")

    class Mine(PredictiveCoding):
        pass
    with pytest.raises(UnsupportedError, match="not Mine's hooks"):
        learn(*data, algorithm=Mine(), backend="llvm")
