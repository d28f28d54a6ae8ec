"""RLS (issue 14 item 5): 'inputs' is recursive least squares (one pass = ridge regression towards the initial
weights, 1e-8), 'jacobian' equals it on a linear readout, 'outputs' (CURBD), 'grad' and 'jacobian' lower the loss
of a teacher task; the forgetting factor tracks a target that changes; P resumes from checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sequence_models import rate_doc, readout_doc, readout_weights

from mdfbridge.backends import get_backend
from mdfbridge.errors import DataError, UnsupportedError
from mdfbridge.learning import learn
from mdfbridge.learning.algorithms import RLS, get_algorithm
from mdfbridge.lowering import lower

M, N, K, DT = 2, 4, 2, 0.5


def fixed_network(seed: int) -> tuple:
    """The readout network with only its readout learnable, inputs, random targets, and its hidden states."""
    W, U, Wout = readout_weights(seed, recurrent=True, n=N, m=M, k=K)
    doc = readout_doc(W, U, Wout)
    doc["m"]["graphs"]["g"]["nodes"]["cell"]["metadata"]["mdfbridge"]["learnable_parameters"] = []
    rng = np.random.default_rng(seed)
    trials, steps = 6, 15
    x = {"stim": rng.normal(size=(trials, steps, M))}
    y = {"readout": rng.normal(size=(trials, steps, K))}
    r = torch.full((trials, N), 0.1, dtype=torch.float64)
    states = []
    for t in range(steps):
        r = r + (0.0 if t == 0 else DT) * (-r + torch.tanh(r @ torch.tensor(W).T + torch.tensor(x["stim"][:, t])
                                                           @ torch.tensor(U).T)) / 2.0
        states.append(r)
    return doc, x, y, Wout, torch.stack(states, 1).reshape(-1, N).numpy()


@pytest.mark.parametrize("strategy", ["inputs", "jacobian"])
@pytest.mark.parametrize("seed", [0, 1])
def test_one_pass_equals_ridge_regression(strategy: str, seed: int) -> None:
    doc, x, y, W0, X = fixed_network(seed)
    delta = 0.5
    res = learn(doc, x, y, algorithm=RLS(strategy=strategy, delta=delta, dt=DT, forgetting_factor=1.0),
                minibatch_size=4)
    Y = y["readout"].reshape(-1, K)
    ridge = (Y.T @ X + delta * W0) @ np.linalg.inv(X.T @ X + delta * np.eye(N))  # argmin |Y-XW'|^2 + d|W-W0|^2
    np.testing.assert_allclose(res.program.params["readout.Wout"].value, ridge, atol=1e-8, rtol=0)


@pytest.fixture(scope="module")
def unit_task() -> tuple:
    """A rate network's inputs and a teacher network's unit activities (the targets for every unit)."""
    teacher = lower(rate_doc(np.random.default_rng(9).normal(size=(3, 3)) * 1.2))
    x = {"stim": np.random.default_rng(1).normal(size=(4, 30, 3))}
    return x, {"cell": get_backend("torch").prepare(teacher).run_sequence(x, dt=0.5)["cell"]}


@pytest.mark.parametrize("strategy, lr", [("outputs", 0.0), ("jacobian", 0.0), ("grad", 200.0)])
def test_each_strategy_lowers_the_loss_of_a_teacher_task(strategy: str, lr: float, unit_task: tuple) -> None:
    """The recurrent weights learn the teacher's unit activities (10 passes): the loss falls below a fifth (below a
    tenth for the two RLS recursions)."""
    x, y = unit_task
    res = learn(rate_doc(np.zeros((3, 3))), x, y, algorithm=RLS(strategy=strategy, dt=0.5, delta=1.0), epochs=10,
                minibatch_size=4, learning_rate=lr)
    assert res.epoch_losses[-1] < (0.2 if strategy == "grad" else 0.1) * res.epoch_losses[0]


def test_forgetting_factor_tracks_a_target_that_changes() -> None:
    """The readout's target map flips sign halfway: with lambda = 0.9 RLS follows it, with lambda = 1 it averages."""
    doc, x, _, _, X = fixed_network(2)
    steps = x["stim"].shape[1]
    rng = np.random.default_rng(5)
    A = rng.normal(size=(K, N))
    states = X.reshape(6, steps, N)
    y = np.einsum("kn,btn->btk", A, states)
    y[:, steps // 2:] *= -1
    errors = {}
    late = states[:, -3:].reshape(-1, N)  # (the last steps' states, whose targets are -A h)
    for lam in (1.0, 0.9):
        res = learn(doc, x, {"readout": y}, algorithm=RLS(delta=1.0, dt=DT, forgetting_factor=lam), minibatch_size=6)
        errors[lam] = float(np.mean((late @ res.program.params["readout.Wout"].value.T + late @ A.T) ** 2))
    assert errors[0.9] < 0.1 * errors[1.0], errors


def test_P_is_checkpointed(tmp_path) -> None:
    doc, x, y, _, _ = fixed_network(3)
    ck = tmp_path / "ck.npz"
    common = dict(algorithm=RLS(delta=0.3, dt=DT), minibatch_size=2)
    whole = learn(doc, x, y, epochs=3, **common)
    learn(doc, x, y, epochs=1, checkpoint=ck, algorithm=RLS(delta=0.3, dt=DT), minibatch_size=2)
    rest = learn(doc, x, y, epochs=3, checkpoint=ck, resume=True, algorithm=RLS(delta=0.3, dt=DT), minibatch_size=2)
    np.testing.assert_array_equal(rest.program.params["readout.Wout"].value,
                                  whole.program.params["readout.Wout"].value)


def test_refusals() -> None:
    with pytest.raises(UnsupportedError, match="'scaled_jacobian' is not provided.*strategy='jacobian'"):
        RLS(strategy="scaled_jacobian")
    with pytest.raises(DataError, match="strategy must be one of"):
        RLS(strategy="input")
    with pytest.raises(DataError, match="forgetting_factor"):
        RLS(forgetting_factor=1.5)
    with pytest.raises(DataError, match="delta"):
        RLS(delta=0)
    x = {"stim": np.zeros((2, 4, 3))}
    y = {"cell": np.zeros((2, 4, 3))}
    with pytest.raises(UnsupportedError, match="linear readout"):
        learn(rate_doc(np.eye(3)), x, y, algorithm="rls")  # (no MatMul whose result is an output)
    with pytest.raises(UnsupportedError, match="max_parameters"):
        learn(rate_doc(np.eye(3)), x, y, algorithm=RLS(strategy="jacobian", max_parameters=4))
    assert get_algorithm("rls", strategy="outputs").strategy == "outputs"
