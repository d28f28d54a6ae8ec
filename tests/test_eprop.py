"""e-prop with exact eligibility traces (issue 14 item 4).

Oracles: BPTT (torch autograd of the unrolled model) where e-prop is exact (no recurrent path between units:
recurrent weights at zero), and the e-prop recursion written out by hand for a rate network with recurrent
weights (float64, 1e-12)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sequence_models import TAU, readout_doc, readout_weights

from mdfbridge.errors import DataError, UnsupportedError
from mdfbridge.learning import learn
from mdfbridge.learning.algorithms import BPTT, Eprop
from mdfbridge.learning.eprop import FEEDBACK_STRATEGIES
from mdfbridge.lowering import lower

M, N, K, T, B, DT = 2, 4, 2, 10, 3, 0.5


def weights(seed: int, recurrent: bool) -> tuple:
    return readout_weights(seed, recurrent, N, M, K)


def data(seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    return {"stim": rng.normal(size=(B, T, M))}, {"readout": rng.normal(size=(B, T, K)) * 0.5}


PARAMS = ("cell.W", "cell.U", "cell.tau", "readout.Wout")


@pytest.mark.parametrize("seed", [0, 1])
def test_eprop_is_bptt_without_a_recurrent_path(seed: int) -> None:
    """Recurrent weights at zero: D_t is the whole state Jacobian, so e-prop with symmetric feedback gives BPTT's
    gradient for every parameter (input and recurrent weights, the time constant, the readout)."""
    doc = readout_doc(*weights(seed, recurrent=False))
    x, y = data(seed)
    common = dict(learning_rate=0.2, minibatch_size=B)
    a = learn(doc, x, y, algorithm=BPTT(dt=DT), **common)
    b = learn(doc, x, y, algorithm=Eprop(dt=DT, feedbacks_gen_strategy="symmetric"), **common)
    assert abs(a.losses[0] - b.losses[0]) < 1e-12
    for name in PARAMS:
        np.testing.assert_allclose(b.program.params[name].value, a.program.params[name].value, atol=1e-12, rtol=0)
    assert np.abs(a.program.params["cell.W"].value).max() > 1e-4  # (W did move: its gradient is not zero)


def test_eprop_traces_follow_the_exact_recursion_with_recurrent_weights() -> None:
    """W != 0: the hand-written e-prop of this network (D_t = 1 - dt/tau on the unit's own path; e_t[j, i] =
    D_t e_{t-1}[j, i] + dt/tau tanh'(a_j) r_{t-1}[i]; L_t = Wout' dloss_t/dy_t) gives the same update; BPTT's
    differs (e-prop leaves out the recurrent paths)."""
    W, U, Wout = weights(3, recurrent=True)
    x, y = data(3)
    lr = 0.2
    res = learn(readout_doc(W, U, Wout), x, y, algorithm=Eprop(dt=DT, feedbacks_gen_strategy="symmetric"),
                learning_rate=lr, minibatch_size=B)
    Wt, Ut, Wo = (torch.tensor(v) for v in (W, U, Wout))
    xt, yt = torch.tensor(x["stim"]), torch.tensor(y["readout"])
    r = torch.full((B, N), 0.1, dtype=torch.float64)
    eW, eU = torch.zeros(B, N, N, dtype=torch.float64), torch.zeros(B, N, M, dtype=torch.float64)
    gW, gU, gWo = torch.zeros(N, N, dtype=torch.float64), torch.zeros(N, M, dtype=torch.float64), torch.zeros(K, N)
    gWo = gWo.double()
    for t in range(T):
        dt = 0.0 if t == 0 else DT
        a = r @ Wt.T + xt[:, t] @ Ut.T
        r_new = r + dt * (-r + torch.tanh(a)) / TAU
        psi = dt / TAU * (1 - torch.tanh(a) ** 2)
        D = 1 - dt / TAU
        eW = D * eW + psi[:, :, None] * r[:, None, :]
        eU = D * eU + psi[:, :, None] * xt[:, t][:, None, :]
        out = r_new @ Wo.T
        dy = 2 * (out - yt[:, t]) / (B * T * K)  # d mse(all steps) / d y_t
        L = dy @ Wo
        gW += torch.einsum("bj,bji->ji", L, eW)
        gU += torch.einsum("bj,bji->ji", L, eU)
        gWo += dy.T @ r_new
        r = r_new
    for name, start, g in (("cell.W", W, gW), ("cell.U", U, gU), ("readout.Wout", Wout, gWo)):
        np.testing.assert_allclose(res.program.params[name].value, start - lr * g.numpy(), atol=1e-12, rtol=0)
    bptt = learn(readout_doc(W, U, Wout), x, y, algorithm=BPTT(dt=DT), learning_rate=lr, minibatch_size=B)
    assert np.abs(bptt.program.params["cell.W"].value - res.program.params["cell.W"].value).max() > 1e-6


def test_eprop_on_the_gru_gate_form_with_zero_recurrent_weights_is_bptt() -> None:
    from mdfbridge import GRUComposition, get_mdf_serialized

    raw = get_mdf_serialized(GRUComposition(3, 4, bias=True, seed=4))
    doc = json.loads(raw) if isinstance(raw, str) else raw
    names = [k for k, p in lower(doc).params.items() if p.learnable]

    def gates():
        prog = lower(doc, fuse_gru=False, learnable=names)
        for k in names:
            if ".wts_h" in k:
                prog.params[k].value = np.zeros_like(prog.params[k].value)
        return prog

    rng = np.random.default_rng(0)
    x, y = {"GRU__input": rng.normal(size=(5, 6, 3))}, {"GRU__output": rng.normal(size=(5, 6, 4)) * 0.5}
    a = learn(gates(), x, y, algorithm=BPTT(), learning_rate=0.1, minibatch_size=5)
    b = learn(gates(), x, y, algorithm=Eprop(feedbacks_gen_strategy="symmetric"), learning_rate=0.1, minibatch_size=5)
    for k in names:
        np.testing.assert_allclose(b.program.params[k].value, a.program.params[k].value, atol=1e-12, rtol=0)
    with pytest.raises(UnsupportedError, match="GRU block"):
        learn(lower(doc), x, y, algorithm="eprop")


@pytest.fixture(scope="module")
def teacher_task() -> tuple:
    """Inputs and the outputs of a teacher network of the same form (other weights): a task the hidden units
    must learn, beside the readout."""
    from mdfbridge.backends import get_backend

    teacher = lower(readout_doc(*weights(11, recurrent=True)))
    x = {"stim": np.random.default_rng(4).normal(size=(8, 20, M))}
    y = {"readout": get_backend("torch").prepare(teacher).run_sequence(x, dt=DT)["readout"]}
    readout_only = learn(readout_doc(*weights(5, recurrent=True)), x, y, algorithm=Eprop(dt=DT, params_lr=0.0),
                         learning_rate=0.02, minibatch_size=4, epochs=40, optimizer_type="adam")
    return x, y, readout_only.epoch_losses[-1]


@pytest.mark.parametrize("strategy", FEEDBACK_STRATEGIES)
def test_every_feedback_strategy_learns(strategy: str, teacher_task: tuple) -> None:
    """Each strategy lowers the loss (40 epochs, Adam) below a fifth of where it starts; all but 'ones' (one
    signal for every unit) also below 70% of what training the readout alone reaches."""
    x, y, readout_only = teacher_task
    res = learn(readout_doc(*weights(5, recurrent=True)), x, y,
                algorithm=Eprop(dt=DT, feedbacks_gen_strategy=strategy, seed=1), learning_rate=0.02, minibatch_size=4,
                epochs=40, optimizer_type="adam")
    assert res.epoch_losses[-1] < 0.2 * res.epoch_losses[0]
    if strategy != "ones":
        assert res.epoch_losses[-1] < 0.7 * readout_only


def test_learning_rates_of_the_two_groups_and_the_checkpointed_feedback(tmp_path) -> None:
    doc = readout_doc(*weights(6, recurrent=True))
    x, y = data(6)
    frozen = learn(doc, x, y, algorithm=Eprop(dt=DT, params_lr=0.0), learning_rate=0.1, minibatch_size=B)
    for name in ("cell.W", "cell.U", "cell.tau"):
        np.testing.assert_array_equal(frozen.program.params[name].value, lower(doc).params[name].value)
    assert not np.array_equal(frozen.program.params["readout.Wout"].value, lower(doc).params["readout.Wout"].value)
    ck = tmp_path / "ck.npz"
    common = dict(algorithm=Eprop(dt=DT, feedbacks_gen_strategy="randn", seed=3), learning_rate=0.05,
                  minibatch_size=1, optimizer_type="adam")
    whole = learn(doc, x, y, epochs=3, **common)
    learn(doc, x, y, epochs=1, checkpoint=ck, **{**common, "algorithm": Eprop(dt=DT, feedbacks_gen_strategy="randn",
                                                                              seed=3)})
    rest = learn(doc, x, y, epochs=3, checkpoint=ck, resume=True,
                 **{**common, "algorithm": Eprop(dt=DT, feedbacks_gen_strategy="randn", seed=99)})  # (B from the file)
    assert rest.losses == whole.losses


def test_refusals() -> None:
    x, y = data()
    with pytest.raises(DataError, match="feedbacks_gen_strategy"):
        Eprop(feedbacks_gen_strategy="xavier")
    with pytest.raises(DataError, match="optim_time_steps"):
        Eprop(optim_time_steps=0)
    fn = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"fn": {
        "metadata": {"mdfbridge": {"learnable_parameters": ["a"]}}, "input_ports": {"I": {"shape": [1]}},
        "parameters": {"a": {"value": 0.7}, "V": {"default_initial_value": [-1.0], "time_derivative": "V - W + I"},
                       "W": {"default_initial_value": [0.0], "time_derivative": "(V + a - 0.8 * W) / 12.5"}},
        "output_ports": {"V": {"value": "V"}}}}}}}}
    with pytest.raises(UnsupportedError, match="one population"):
        learn(fn, {"fn": np.zeros((2, 4, 1))}, {"fn": np.zeros((2, 4, 1))}, algorithm="eprop")
