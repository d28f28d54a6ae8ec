"""GRU blocks end to end (issue 4): composition <-> MDF (gate form, fused onnx::GRU form) <-> torch.nn.GRU <-> ONNX GRU.

Tolerances: 1e-12 (absolute) where every side computes in float64; 1e-6 where one side is float32 (onnxruntime's GRU,
the float32 ProgramModule). Oracles that do not go through mdfbridge's GRU code: torch.nn.GRU, a hand-built ONNX model
on onnxruntime, modeci-mdf's own execution engine, and the GRU equations written out (tests/gru_oracles.py).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from gru_oracles import ONNX_ROW, TORCH_ROW, gru_by_hand, onnx_gru_model, onnxruntime_gru, sigmoid, torch_gru
from oracles import modeci_outputs

from mdfbridge import (
    Composition,
    CompositionError,
    DataError,
    GRUComposition,
    Logistic,
    ShapeError,
    TransferMechanism,
    UnsupportedError,
)
from mdfbridge.api import save_mdf
from mdfbridge.backends import get_backend
from mdfbridge.document import load_document_dict
from mdfbridge.exporters.mdf import composition_to_dict
from mdfbridge.exporters.weights import write_back
from mdfbridge.gru import (
    BIAS_NAMES,
    WEIGHT_NAMES,
    gates_to_onnx,
    gates_to_torch,
    gru_numpy,
    onnx_to_gates,
    torch_param_of,
    torch_to_gates,
)
from mdfbridge.gru_mdf import convert_blocks
from mdfbridge.importers.reference import run_program
from mdfbridge.importers.torch_module import ProgramModule
from mdfbridge.lowering import lower

F64 = 1e-12
F32 = 1e-6
SEQ = 50
I_SIZE, H_SIZE = 4, 6


def random_gru(bias: bool, seed: int, input_size: int = I_SIZE, hidden_size: int = H_SIZE, scale: float = 0.6,
               **kw) -> GRUComposition:
    """A GRUComposition with random N(0, scale) gate weights (set through the PsyNeuLink-named attributes) and a
    random non-zero initial hidden state."""
    rng = np.random.default_rng(seed)
    h0 = rng.uniform(-0.9, 0.9, hidden_size)
    comp = GRUComposition(input_size, hidden_size, bias=bias, seed=seed, initial_hidden=h0, **kw)
    for name in WEIGHT_NAMES + (BIAS_NAMES if bias else ()):
        w = getattr(comp, name)
        w.matrix = rng.normal(0.0, scale, w.matrix.shape)
    assert np.all(comp.block.h0 != 0)
    return comp


def max_err(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


def nodes_of(doc):
    model = next(iter(doc.values()))
    return next(iter(model["graphs"].values()))["nodes"]


# ============================================================================ 1. equivalence (the heart)

@pytest.fixture(scope="module", params=[(False, 1), (False, 8), (True, 1), (True, 8)],
                ids=["nobias-batch1", "nobias-batch8", "bias-batch1", "bias-batch8"])
def case(request):
    """A random GRU block, its inputs (batch, 50, I), and the torch.nn.GRU oracle's outputs (float64)."""
    bias, batch = request.param
    comp = random_gru(bias, seed=10 + 2 * batch + bias)
    X = np.random.default_rng(100 + batch).normal(size=(batch, SEQ, I_SIZE))
    expected = torch_gru(comp.torch_parameters(), comp.block.h0, X)
    assert expected.shape == (batch, SEQ, H_SIZE)
    # the oracle is torch's documented GRU, and the sequence is long enough that errors would show
    assert max_err(expected, gru_by_hand(X, comp.block.h0, **_torch_names(comp.torch_parameters()))) < F64
    return {"comp": comp, "bias": bias, "X": X, "expected": expected, "doc": composition_to_dict(comp)}


def _torch_names(p):
    return {"w_ih": p["weight_ih_l0"], "w_hh": p["weight_hh_l0"], "b_ih": p.get("bias_ih_l0"),
            "b_hh": p.get("bias_hh_l0")}


def test_a_numpy_reference_steps_the_unfused_gate_form(case):
    prog = lower(case["doc"], fuse_gru=False)
    assert not prog.sequence  # step-level: the reference steps it through time
    assert not any(op.fn == "GRU" for op in prog.ops)
    y = run_program(prog, {"GRU__input": case["X"]}, sequence=True)["GRU__output"]
    assert max_err(y, case["expected"]) < F64


def test_b_fused_program(case):
    prog = lower(case["doc"])
    assert prog.sequence and [op.fn for op in prog.ops] == ["GRU"]
    y = run_program(prog, {"GRU__input": case["X"]}, sequence=True)["GRU__output"]
    assert max_err(y, case["expected"]) < F64
    # the composition API runs the same program
    assert max_err(case["comp"].evaluate({case["comp"].input_node: case["X"]})["GRU"], case["expected"]) < F64


@pytest.mark.slow  # modeci-mdf's engine steps every case
def test_c_modeci_mdf_engine_steps_the_gate_form(case):
    # modeci-mdf's engine takes ~0.75 s per 50-step trial here: run at most 2 trials (full sequence length 50)
    X = case["X"][:2]
    out = modeci_outputs(case["doc"], {"GRU__input_input": X}, sequence=True)
    assert set(out) == {"GRU__output"}
    assert max_err(out["GRU__output"], case["expected"][:2]) < F64


@pytest.mark.parametrize("dtype, tol", [(torch.float64, F64), (torch.float32, F32)], ids=["float64", "float32"])
def test_e_program_module(case, dtype, tol):
    prog = lower(case["doc"])
    module = ProgramModule(prog, dtype=dtype)
    assert isinstance(module.grus["GRU"], torch.nn.GRU)  # the block runs as one nn.GRU
    keys = {"grus.GRU.weight_ih_l0", "grus.GRU.weight_hh_l0"} | (
        {"grus.GRU.bias_ih_l0", "grus.GRU.bias_hh_l0"} if case["bias"] else set())
    assert set(module.state_dict()) == keys
    for k, v in case["comp"].torch_parameters().items():  # layout converted once, exactly
        assert np.array_equal(module.grus["GRU"].state_dict()[k].double().numpy(), v.astype(np.float32)
                              if dtype == torch.float32 else v)
    with torch.no_grad():
        y = module({"GRU__input": torch.as_tensor(case["X"], dtype=dtype)})["GRU__output"]
    assert y.dtype == dtype
    assert max_err(y.double().numpy(), case["expected"]) < tol


def test_f_fused_onnx_gru_mdf_form_on_the_reference(case):
    doc = composition_to_dict(case["comp"], gru_form="onnx")
    nodes = nodes_of(doc)
    fn = nodes["GRU__gru"]["functions"]["gru"]["function"]["onnx::GRU"]
    assert fn["linear_before_reset"] == 1 and fn["hidden_size"] == H_SIZE
    prog = lower(doc)
    assert prog.sequence
    y = run_program(prog, {"GRU__input": case["X"]}, sequence=True)["GRU__output"]
    assert max_err(y, case["expected"]) < F64
    # and its torch path (the onnx::GRU op's torch implementation)
    with torch.no_grad():
        yt = ProgramModule(prog)({"GRU__input": torch.as_tensor(case["X"])})["GRU__output"]
    assert max_err(yt.numpy(), case["expected"]) < F64


def test_g_onnxruntime_hand_built_model(case):
    comp = case["comp"]
    o = gates_to_onnx(comp.block.gates)
    assert o["W"].shape == (1, 3 * H_SIZE, I_SIZE) and o["R"].shape == (1, 3 * H_SIZE, H_SIZE)
    assert o["B"].shape == (1, 6 * H_SIZE)
    if not case["bias"]:
        assert not np.any(o["B"])
    y = onnxruntime_gru(o["W"], o["R"], o["B"] if case["bias"] else None, comp.block.h0, case["X"])
    assert max_err(y, case["expected"]) < F32
    # the W, R, B, initial_h the fused MDF form holds are ONNX's layout: onnxruntime runs them as they are
    p = {k: np.asarray(v["value"]) for k, v in nodes_of(composition_to_dict(comp, "onnx"))["GRU__gru"]
         ["parameters"].items()}
    y2 = onnxruntime_gru(p["W"], p["R"], p["B"], p["initial_h"].reshape(-1), case["X"])
    assert max_err(y2, case["expected"]) < F32


def test_onnx_oracle_model_is_valid_and_explicit():
    comp = random_gru(True, seed=3)
    o = gates_to_onnx(comp.block.gates)
    model = onnx_gru_model(o["W"], o["R"], o["B"], I_SIZE, H_SIZE)  # check_model(full_check=True) inside
    gru = [n for n in model.graph.node if n.op_type == "GRU"]
    assert len(gru) == 1
    attrs = {a.name: a for a in gru[0].attribute}
    assert attrs["linear_before_reset"].i == 1 and "layout" not in attrs
    assert model.ir_version == 10 and model.opset_import[0].version == 17


# ============================================================================ 2. layouts

@pytest.mark.parametrize("bias", [False, True])
def test_layout_round_trips_are_exact(bias):
    gates = random_gru(bias, seed=21).block.gates
    back = torch_to_gates(gates_to_torch(gates))
    assert set(back) == set(gates)
    assert all(np.array_equal(back[k], gates[k]) for k in gates)
    o = gates_to_onnx(gates)
    back = onnx_to_gates(o["W"], o["R"], o["B"] if bias else None)
    assert set(back) == set(gates)
    assert all(np.array_equal(back[k], gates[k]) for k in gates)
    # the documented rule: an all-zero B with bias=False means "no bias"
    assert set(onnx_to_gates(o["W"], o["R"], np.zeros((1, 6 * H_SIZE)), bias=False)) == set(WEIGHT_NAMES)
    # and the other way round: torch -> gates -> torch, onnx -> gates -> onnx
    t = gates_to_torch(gates)
    assert all(np.array_equal(gates_to_torch(torch_to_gates(t))[k], t[k]) for k in t)
    o2 = gates_to_onnx(onnx_to_gates(o["W"], o["R"], o["B"]))
    assert all(np.array_equal(o2[k], o[k]) for k in o)
    # torch tensors (the torch backend's path) give the same layout
    tt = gates_to_torch({k: torch.as_tensor(v) for k, v in gates.items()}, torch)
    assert all(np.array_equal(tt[k].numpy(), t[k]) for k in t)


def _single_gate_case(gate: str, seed: int = 5):
    """torch.nn.GRU parameters where only `gate`'s weights are non-zero (for 'r' also bias_hn, or r has no effect),
    and the GRU written out by hand for that case."""
    rng = np.random.default_rng(seed)
    I, H = 3, 4
    p = {"weight_ih_l0": np.zeros((3 * H, I)), "weight_hh_l0": np.zeros((3 * H, H)),
         "bias_ih_l0": np.zeros(3 * H), "bias_hh_l0": np.zeros(3 * H)}
    rows = slice(TORCH_ROW[gate] * H, (TORCH_ROW[gate] + 1) * H)
    w_i, w_h = rng.normal(0, 1.0, (H, I)), rng.normal(0, 1.0, (H, H))
    p["weight_ih_l0"][rows], p["weight_hh_l0"][rows] = w_i, w_h
    b_hn = rng.normal(0, 1.0, H)
    if gate == "r":
        p["bias_hh_l0"][2 * H:] = b_hn
    X, h0 = rng.normal(size=(2, 9, I)), rng.uniform(-0.9, 0.9, H)

    def expected():
        h = np.broadcast_to(h0, (2, H)).copy()
        ys = []
        for t in range(X.shape[1]):
            x = X[:, t]
            pre = x @ w_i.T + h @ w_h.T
            if gate == "z":  # r = n-irrelevant, n = tanh(0) = 0: h' = z * h
                h = sigmoid(pre) * h
            elif gate == "n":  # r = z = 1/2
                h = 0.5 * np.tanh(x @ w_i.T + 0.5 * (h @ w_h.T)) + 0.5 * h
            else:  # z = 1/2, n = tanh(r * b_hn)
                h = 0.5 * np.tanh(sigmoid(pre) * b_hn) + 0.5 * h
            ys.append(h)
        return np.stack(ys, 1)

    return p, X, h0, expected(), H


@pytest.mark.parametrize("gate", ["r", "z", "n"])
def test_gate_order_against_torch_with_one_gate_non_zero(gate):
    """Fails if two gates were swapped in any conversion: only one gate's weights are non-zero."""
    p, X, h0, expected, H = _single_gate_case(gate)
    assert max_err(torch_gru(p, h0, X), expected) < F64  # the hand-written case is torch's GRU
    gates = torch_to_gates(p)
    pnl = {"r": "r", "z": "u", "n": "n"}[gate]
    nonzero = {k for k, v in gates.items() if np.any(v)}
    assert nonzero == {f"wts_i{pnl}", f"wts_h{pnl}"} | ({"bias_hn"} if gate == "r" else set())
    assert max_err(gru_numpy(X, h0, gates), expected) < F64
    o = gates_to_onnx(gates)
    k = ONNX_ROW[gate]
    for j in range(3):  # ONNX order z, r, h
        assert bool(np.any(o["W"][0, j * H:(j + 1) * H])) == (j == k)
        assert bool(np.any(o["R"][0, j * H:(j + 1) * H])) == (j == k)
    if gate == "r":  # Rb of the h gate sits in the second half of B, third block
        assert np.array_equal(o["B"][0, 3 * H + 2 * H:], p["bias_hh_l0"][2 * H:])
    assert max_err(onnxruntime_gru(o["W"], o["R"], o["B"], h0, X), expected) < F32
    # through a composition, its MDF forms and its torch module
    comp = GRUComposition(3, H, bias=True, initial_hidden=h0)
    comp.set_torch_parameters(p)
    assert bool(np.any(getattr(comp, f"wts_i{pnl}").matrix))
    assert max_err(comp.evaluate({comp.input_node: X})["GRU"], expected) < F64
    for form in ("gates", "onnx"):
        prog = lower(composition_to_dict(comp, gru_form=form))
        assert max_err(run_program(prog, {"GRU__input": X}, sequence=True)["GRU__output"], expected) < F64
        with torch.no_grad():
            y = ProgramModule(prog)({"GRU__input": torch.as_tensor(X)})["GRU__output"]
        assert max_err(y.numpy(), expected) < F64
    step = lower(composition_to_dict(comp), fuse_gru=False)
    assert max_err(run_program(step, {"GRU__input": X}, sequence=True)["GRU__output"], expected) < F64


def test_torch_slice_names_the_right_slice():
    comp = random_gru(True, seed=31)
    tp = comp.torch_parameters()
    H = H_SIZE
    want = {"wts_ir": "weight_ih_l0[0:6].T", "wts_iu": "weight_ih_l0[6:12].T", "wts_in": "weight_ih_l0[12:18].T",
            "wts_hr": "weight_hh_l0[0:6].T", "wts_hu": "weight_hh_l0[6:12].T", "wts_hn": "weight_hh_l0[12:18].T",
            "bias_ir": "bias_ih_l0[0:6]", "bias_iu": "bias_ih_l0[6:12]", "bias_in": "bias_ih_l0[12:18]",
            "bias_hr": "bias_hh_l0[0:6]", "bias_hu": "bias_hh_l0[6:12]", "bias_hn": "bias_hh_l0[12:18]"}
    assert H == 6
    for name, text in want.items():
        w = getattr(comp, name)
        assert w.torch_slice == text
        m = re.fullmatch(r"(\w+)\[(\d+):(\d+)\](\.T)?", w.torch_slice)
        param, a, b, tr = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        assert param == torch_param_of(name)
        piece = tp[param][a:b]
        assert np.array_equal(piece.T if tr else piece, w.matrix)


# ============================================================================ 3. composition API

@pytest.mark.parametrize("bias", [False, True])
def test_gru_composition_attributes(bias):
    comp = GRUComposition(3, 5, bias=bias, seed=4)
    for attr in ("input_node", "output_node", "reset_node", "update_node", "new_node", "hidden_layer_node"):
        assert getattr(comp, attr) is not None
    for n in WEIGHT_NAMES:
        w = getattr(comp, n)
        assert w.matrix.shape == ((3, 5) if n.startswith("wts_i") else (5, 5))
    for n in BIAS_NAMES:
        assert hasattr(comp, n) == bias
        if bias:
            assert getattr(comp, n).matrix.shape == (5,)
    assert set(comp.torch_parameters()) == {"weight_ih_l0", "weight_hh_l0"} | (
        {"bias_ih_l0", "bias_hh_l0"} if bias else set())
    # torch.nn.GRU's initialisation range U(-1/sqrt(H), 1/sqrt(H))
    assert all(np.all(np.abs(v) <= 1 / np.sqrt(5)) for v in comp.torch_parameters().values())
    with pytest.raises(CompositionError, match="wts_ir"):
        comp.wts_ir.matrix = np.zeros((5, 3))
    with pytest.raises(CompositionError, match="optimizer_params"):
        GRUComposition(3, 5, optimizer_params={"w_xx": 0.1})


def test_setting_a_gate_matrix_changes_every_form():
    comp = random_gru(True, seed=41)
    X = np.random.default_rng(1).normal(size=(2, 7, I_SIZE))
    before = comp.evaluate({comp.input_node: X})["GRU"]
    comp.wts_hu.matrix = comp.wts_hu.matrix * 2.0
    after = comp.evaluate({comp.input_node: X})["GRU"]
    assert max_err(before, after) > 1e-3
    expected = torch_gru(comp.torch_parameters(), comp.block.h0, X)
    assert max_err(after, expected) < F64
    for form in ("gates", "onnx"):
        y = run_program(lower(composition_to_dict(comp, form)), {"GRU__input": X}, sequence=True)["GRU__output"]
        assert max_err(y, expected) < F64


def _nested(seed: int = 7, **gru_kw):
    """Linear(2) -> GRU(4 -> 5) -> Logistic(3) with random projections."""
    A = TransferMechanism("A", 2)
    B = TransferMechanism("B", 3, Logistic())
    g = random_gru(gru_kw.pop("bias", True), seed=seed, input_size=4, hidden_size=5, **gru_kw)
    outer = Composition("outer", seed=seed)
    outer.add_linear_processing_pathway([A, "random", g, "random", B])
    outer.program()  # initialises the projection matrices
    return outer, A, g, B


def _nested_by_hand(outer, g, X):
    w1, w2 = (p.matrix for p in outer.projections)
    h = torch_gru(g.torch_parameters(), g.block.h0, X @ w1)
    return sigmoid(h @ w2)


def test_nested_gru_composition_all_forms():
    outer, A, g, B = _nested()
    assert [p.matrix.shape for p in outer.projections] == [(2, 4), (5, 3)]
    X = np.random.default_rng(3).normal(size=(3, 20, 2))
    expected = _nested_by_hand(outer, g, X)
    assert max_err(outer.evaluate({A: X})["B"], expected) < F64
    assert max_err(outer.evaluate({A: X}, backend="torch")["B"], expected) < F64
    doc = composition_to_dict(outer)
    for prog in (lower(doc), lower(doc, fuse_gru=False), lower(composition_to_dict(outer, gru_form="onnx"))):
        assert max_err(run_program(prog, {"A": X}, sequence=True)["B"], expected) < F64
    # modeci-mdf's engine: one trial, 20 steps (it is slow)
    assert max_err(modeci_outputs(doc, {"A_input": X[:1]}, sequence=True)["B"], expected[:1]) < F64


RATE_CASES = [
    # (block learning_rate, optimizer_params, enable_learning) -> expected rate per torch parameter
    (None, {}, True, {"w_ih": None, "w_hh": None, "b_ih": None, "b_hh": None}),
    (0.3, {}, True, {"w_ih": 0.3, "w_hh": 0.3, "b_ih": 0.3, "b_hh": 0.3}),
    (0.3, {"w_ih": 0.7, "w_hh": True, "b_ih": False, "b_hh": None}, True,
     {"w_ih": 0.7, "w_hh": 0.3, "b_ih": False, "b_hh": 0.3}),
    (None, {"w_ih": 0.7, "w_hh": True, "b_hh": False}, True, {"w_ih": 0.7, "w_hh": None, "b_ih": None, "b_hh": False}),
    (True, {"w_hh": 0.2}, True, {"w_ih": None, "w_hh": 0.2, "b_ih": None, "b_hh": None}),
    (0.3, {"w_ih": 0.7}, False, {"w_ih": False, "w_hh": False, "b_ih": False, "b_hh": False}),
]
KEY = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}


@pytest.mark.parametrize("rate, opt, enable, want", RATE_CASES)
def test_psyneulink_learning_rate_rules(rate, opt, enable, want):
    comp = GRUComposition(3, 4, bias=True, learning_rate=rate, optimizer_params=opt, enable_learning=enable)
    assert comp.parameter_learning_rates() == {KEY[k]: v for k, v in want.items()}
    prog = lower(composition_to_dict(comp))
    for name in WEIGHT_NAMES + BIAS_NAMES:
        p = next(p for n, p in prog.params.items() if n.endswith("." + name))
        r = want[{"weight_ih_l0": "w_ih", "weight_hh_l0": "w_hh", "bias_ih_l0": "b_ih",
                  "bias_hh_l0": "b_hh"}[torch_param_of(name)]]
        assert p.learnable == (r is not False), name
        assert p.learning_rate == (None if r is False else r), name


def _hand_loop(params, h0, X, T, rates, lr, epochs, mb, optimizer):
    """learn() written by hand: nn.GRU, mse per minibatch, one optimizer param group per parameter with its rate
    (None: learn()'s rate; False: frozen)."""
    w = params["weight_ih_l0"]
    H, I = w.shape[0] // 3, w.shape[1]
    gru = torch.nn.GRU(I, H, bias="bias_ih_l0" in params, batch_first=True).double()
    with torch.no_grad():
        for k, v in params.items():
            getattr(gru, k).copy_(torch.as_tensor(v))
    groups = []
    for k, p in gru.named_parameters():
        r = rates.get(k)
        if r is False:
            p.requires_grad_(False)
            continue
        groups.append({"params": [p], "lr": lr if r is None else r})
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(groups, lr=lr)
    x, t = torch.as_tensor(X), torch.as_tensor(T)
    h = torch.as_tensor(h0)
    outs = None
    for _ in range(epochs):
        outs = []
        for b0 in range(0, len(X), mb):
            xb = x[b0:b0 + mb]
            y, _ = gru(xb, h.reshape(1, 1, H).expand(1, xb.shape[0], H).contiguous())
            loss = torch.nn.functional.mse_loss(y, t[b0:b0 + mb])
            opt.zero_grad()
            loss.backward()
            opt.step()
            outs.append(y.detach().numpy())
    return {k: v.detach().numpy() for k, v in gru.named_parameters()}, np.concatenate(outs)


LEARN_CASES = [  # (block learning_rate, optimizer_params, expected rate per torch parameter; None: learn()'s)
    (0.3, {"w_ih": 0.7, "w_hh": True, "b_ih": False, "b_hh": None},
     {"weight_ih_l0": 0.7, "weight_hh_l0": 0.3, "bias_ih_l0": False, "bias_hh_l0": 0.3}),
    (None, {"w_ih": 0.7, "w_hh": True, "b_hh": False},
     {"weight_ih_l0": 0.7, "weight_hh_l0": None, "bias_ih_l0": None, "bias_hh_l0": False}),
]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("rate, opt, rates", LEARN_CASES, ids=["block-rate", "learn-rate"])
def test_learn_equals_hand_written_torch_loop(optimizer, rate, opt, rates):
    comp = random_gru(True, seed=51, scale=0.4, learning_rate=rate, optimizer_params=opt)
    rng = np.random.default_rng(52)
    X, T = rng.normal(size=(4, 12, I_SIZE)), rng.uniform(-0.5, 0.5, size=(4, 12, H_SIZE))
    start = {k: v.copy() for k, v in comp.torch_parameters().items()}
    gates0 = {k: v.copy() for k, v in comp.block.gates.items()}
    lr = 0.05
    comp.learn({comp.input_node: X}, {comp.output_node: T}, epochs=3, learning_rate=lr, minibatch_size=2,
               optimizer_type=optimizer)
    out = comp.learn_result.outputs
    want_params, want_out = _hand_loop(start, comp.block.h0, X, T, rates, lr, 3, 2, optimizer)
    got = comp.torch_parameters()
    for k in want_params:
        assert max_err(got[k], want_params[k]) < F64, k
    assert max_err(out["GRU"], want_out) < F64
    frozen = [k for k, v in rates.items() if v is False]
    assert frozen
    for name in WEIGHT_NAMES + BIAS_NAMES:  # frozen: bit-identical; the others moved
        if torch_param_of(name) in frozen:
            assert np.array_equal(comp.block.gates[name], gates0[name]), name
        else:
            assert not np.array_equal(comp.block.gates[name], gates0[name]), name
    # after training every form still agrees (re-export from the trained composition)
    Xe = rng.normal(size=(2, 9, I_SIZE))
    expected = torch_gru(got, comp.block.h0, Xe)
    for form in ("gates", "onnx"):
        y = run_program(lower(composition_to_dict(comp, form)), {"GRU__input": Xe}, sequence=True)["GRU__output"]
        assert max_err(y, expected) < F64
    o = gates_to_onnx(comp.block.gates)
    assert max_err(onnxruntime_gru(o["W"], o["R"], o["B"], comp.block.h0, Xe), expected) < F32


def test_nested_learn_equals_hand_written_loop():
    outer, A, g, B = _nested(seed=61, optimizer_params={"w_hh": 0.5})
    rng = np.random.default_rng(62)
    X, T = rng.normal(size=(4, 10, 2)), rng.uniform(size=(4, 10, 3))
    w1, w2 = (torch.tensor(p.matrix, requires_grad=True) for p in outer.projections)
    gp = {k: torch.tensor(v, requires_grad=True) for k, v in g.torch_parameters().items()}
    h0 = torch.as_tensor(g.block.h0)
    lr = 0.1
    opt = torch.optim.SGD([{"params": [w1, w2, gp["weight_ih_l0"], gp["bias_ih_l0"], gp["bias_hh_l0"]]},
                           {"params": [gp["weight_hh_l0"]], "lr": 0.5}], lr=lr)
    x, t = torch.as_tensor(X), torch.as_tensor(T)
    for _ in range(2):
        for b0 in range(0, 4, 2):
            xb = x[b0:b0 + 2]
            hx = h0.reshape(1, 1, 5).expand(1, 2, 5).contiguous()
            ws = [gp["weight_ih_l0"], gp["weight_hh_l0"], gp["bias_ih_l0"], gp["bias_hh_l0"]]
            y, _ = torch._VF.gru(xb @ w1, hx, ws, True, 1, 0.0, False, False, True)
            loss = torch.nn.functional.mse_loss(torch.sigmoid(y @ w2), t[b0:b0 + 2])
            opt.zero_grad()
            loss.backward()
            opt.step()
    outer.learn({A: X}, {B: T}, epochs=2, learning_rate=lr, minibatch_size=2)
    for proj, w in zip(outer.projections, (w1, w2)):
        assert max_err(proj.matrix, w.detach().numpy()) < F64
    got = g.torch_parameters()
    for k, v in gp.items():
        assert max_err(got[k], v.detach().numpy()) < F64, k


def test_enable_learning_false_freezes_the_whole_block():
    outer, A, g, B = _nested(seed=71, enable_learning=False)
    gates0 = {k: v.copy() for k, v in g.block.gates.items()}
    mats0 = [p.matrix.copy() for p in outer.projections]
    rng = np.random.default_rng(72)
    outer.learn({A: rng.normal(size=(3, 8, 2))}, {B: rng.uniform(size=(3, 8, 3))}, epochs=2, learning_rate=0.5)
    assert all(np.array_equal(g.block.gates[k], gates0[k]) for k in gates0)
    assert all(not np.array_equal(p.matrix, m) for p, m in zip(outer.projections, mats0))
    alone = random_gru(False, seed=73, enable_learning=False)
    with pytest.raises(UnsupportedError, match="no learnable parameters"):
        alone.learn({alone.input_node: np.zeros((1, 3, I_SIZE))}, {alone.output_node: np.zeros((1, 3, H_SIZE))})


# ---------------------------------------------------------------------------- write-back into either MDF form

def _diff_paths(a, b, path=()):
    """Paths (tuples) where two JSON trees differ; lists compared whole."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = set()
        for k in set(a) | set(b):
            if k not in a or k not in b:
                out.add(path + (k,))
            else:
                out |= _diff_paths(a[k], b[k], path + (k,))
        return out
    return set() if a == b else {path}


def _train_file(tmp_path, comp, form, X, T, **settings):
    src = tmp_path / f"gru_{form}.json"
    save_mdf(composition_to_dict(comp, gru_form=form), src)
    from mdfbridge.learning import learn

    result = learn(str(src), {"GRU__input": X}, {"GRU__output": T}, **settings)
    out = tmp_path / f"gru_{form}_trained.json"
    write_back(src, result.program, out)
    return src, out, result


def _trained_gates(path):
    """Per-gate weights in a (trained) MDF file of either form."""
    doc = load_document_dict(path)
    gates = {k: np.asarray(v, dtype=float) for k, v in
             ((n, p["value"]) for node in nodes_of(doc).values() for n, p in (node.get("parameters") or {}).items())
             if k in WEIGHT_NAMES + BIAS_NAMES}
    fused = nodes_of(doc).get("GRU__gru")
    if fused is not None:
        p = {k: np.asarray(v["value"], dtype=float) for k, v in fused["parameters"].items()}
        gates = onnx_to_gates(p["W"], p["R"], p["B"])
    return gates


SETTINGS = dict(epochs=3, learning_rate=0.2, minibatch_size=2)


@pytest.mark.parametrize("form", ["gates", "onnx"])
def test_trained_weights_written_back_into_the_loaded_form(tmp_path, form):
    comp = random_gru(True, seed=81, scale=0.4)
    rng = np.random.default_rng(82)
    X, T = rng.normal(size=(4, 10, I_SIZE)), rng.uniform(-0.5, 0.5, (4, 10, H_SIZE))
    src, out, result = _train_file(tmp_path, comp, form, X, T, **SETTINGS)
    reloaded = lower(load_document_dict(out))
    Xe = rng.normal(size=(3, 15, I_SIZE))
    y_trained = run_program(result.program, {"GRU__input": Xe}, sequence=True)["GRU__output"]
    y_reloaded = run_program(reloaded, {"GRU__input": Xe}, sequence=True)["GRU__output"]
    assert max_err(y_reloaded, y_trained) < F64
    assert max_err(y_trained, run_program(lower(load_document_dict(src)), {"GRU__input": Xe},
                                          sequence=True)["GRU__output"]) > 1e-4  # training changed something
    before, after = load_document_dict(src), load_document_dict(out)
    model, graph = next(iter(before)), next(iter(next(iter(before.values()))["graphs"]))
    if form == "gates":
        weights = {(n, pid) for n, node in nodes_of(before).items() for pid in (node.get("parameters") or {})
                   if pid in WEIGHT_NAMES + BIAS_NAMES}
        assert len(weights) == 12
    else:
        weights = {("GRU__gru", "W"), ("GRU__gru", "R"), ("GRU__gru", "B")}
    expected = {(model, "graphs", graph, "nodes", n, "parameters", pid, "value") for n, pid in weights}
    assert _diff_paths(before, after) == expected
    # the trained file is still the same form, and it runs on torch.nn.GRU / onnxruntime as trained
    gates = _trained_gates(out)
    h0 = comp.block.h0
    assert max_err(torch_gru(gates_to_torch(gates), h0, Xe), y_trained) < F64
    o = gates_to_onnx(gates)
    assert max_err(onnxruntime_gru(o["W"], o["R"], o["B"], h0, Xe), y_trained) < F32


def test_both_forms_train_to_the_same_weights(tmp_path):
    comp = random_gru(True, seed=91, scale=0.4)
    rng = np.random.default_rng(92)
    X, T = rng.normal(size=(4, 10, I_SIZE)), rng.uniform(-0.5, 0.5, (4, 10, H_SIZE))
    g = _trained_gates(_train_file(tmp_path, comp, "gates", X, T, **SETTINGS)[1])
    o = _trained_gates(_train_file(tmp_path, comp, "onnx", X, T, **SETTINGS)[1])
    assert set(g) == set(o)
    for k in g:
        assert max_err(g[k], o[k]) < F64, k


def test_onnx_form_without_bias_keeps_no_bias_when_trained(tmp_path):
    comp = random_gru(False, seed=93, scale=0.4)
    rng = np.random.default_rng(94)
    X, T = rng.normal(size=(4, 10, I_SIZE)), rng.uniform(-0.5, 0.5, (4, 10, H_SIZE))
    g = _trained_gates(_train_file(tmp_path, comp, "gates", X, T, **SETTINGS)[1])
    B = np.asarray(nodes_of(load_document_dict(_train_file(tmp_path, comp, "onnx", X, T, **SETTINGS)[1]))
                   ["GRU__gru"]["parameters"]["B"]["value"])
    assert not np.any(B)
    o = _trained_gates(tmp_path / "gru_onnx_trained.json")
    for k in WEIGHT_NAMES:
        assert max_err(g[k], o[k]) < F64, k


def test_onnx_form_respects_per_parameter_rates(tmp_path):
    comp = random_gru(True, seed=95, scale=0.4, learning_rate=0.3,
                      optimizer_params={"w_ih": False, "w_hh": 0.7, "b_ih": True})
    rng = np.random.default_rng(96)
    X, T = rng.normal(size=(4, 10, I_SIZE)), rng.uniform(-0.5, 0.5, (4, 10, H_SIZE))
    g = _trained_gates(_train_file(tmp_path, comp, "gates", X, T, **SETTINGS)[1])
    o = _trained_gates(_train_file(tmp_path, comp, "onnx", X, T, **SETTINGS)[1])
    for k in ("wts_ir", "wts_iu", "wts_in"):  # frozen
        assert np.array_equal(o[k], comp.block.gates[k]), k
    for k in g:
        assert max_err(g[k], o[k]) < F64, k


# ============================================================================ 4. convert_blocks

def _comps():
    yield "alone", random_gru(True, seed=101), {"GRU__input": np.random.default_rng(0).normal(size=(3, 11, I_SIZE))}
    yield "alone-nobias", random_gru(False, seed=102), {
        "GRU__input": np.random.default_rng(1).normal(size=(3, 11, I_SIZE))}
    outer = _nested(seed=103)[0]
    yield "nested", outer, {"A": np.random.default_rng(2).normal(size=(3, 11, 2))}


@pytest.mark.parametrize("which", ["alone", "alone-nobias", "nested"])
def test_convert_blocks_round_trip_outputs_identical(which):
    comp, inputs = next((c, x) for n, c, x in _comps() if n == which)
    doc = composition_to_dict(comp)
    onnx_doc = convert_blocks(doc, "onnx")
    assert onnx_doc == composition_to_dict(comp, gru_form="onnx")
    back = convert_blocks(onnx_doc, "gates")
    ys = [run_program(lower(d, fuse_gru=f), inputs, sequence=True) for d in (doc, back, onnx_doc) for f in (True,)]
    for k in ys[0]:
        assert np.array_equal(ys[0][k], ys[1][k]), k  # gates -> onnx -> gates: bit-identical numbers
        assert max_err(ys[0][k], ys[2][k]) < F64
    step = run_program(lower(back, fuse_gru=False), inputs, sequence=True)
    assert all(max_err(step[k], ys[0][k]) < F64 for k in step)


@pytest.mark.parametrize("which", [
    "alone",
    "alone-nobias",
    "nested"])
def test_convert_blocks_round_trip_gives_the_same_program(which):
    comp, inputs = next((c, x) for n, c, x in _comps() if n == which)
    doc = composition_to_dict(comp)
    back = convert_blocks(convert_blocks(doc, "onnx"), "gates")
    p0, p1 = lower(doc), lower(back)
    assert set(p0.params) == set(p1.params)
    for k, p in p0.params.items():
        q = p1.params[k]
        assert np.array_equal(np.asarray(p.value), np.asarray(q.value)), k
        assert (p.learnable, p.learning_rate, p.location) == (q.learnable, q.learning_rate, q.location), k
    assert back == doc


# ============================================================================ 5. bad input

def _onnx_doc(bias=True):
    return composition_to_dict(random_gru(bias, seed=111, input_size=3, hidden_size=4), gru_form="onnx")


def _gru_fn(doc):
    return nodes_of(doc)["GRU__gru"]["functions"]["gru"]["function"]["onnx::GRU"]


@pytest.mark.parametrize("arg, shape", [("W", (1, 15, 3)), ("R", (1, 12, 5)), ("R", (1, 15, 5)), ("B", (1, 20)),
                                        ("B", (1, 12)), ("initial_h", (1, 1, 5))])
def test_onnx_gru_weight_shapes_must_fit_hidden_size(arg, shape):
    doc = _onnx_doc()
    nodes_of(doc)["GRU__gru"]["parameters"][arg]["value"] = np.zeros(shape).tolist()
    with pytest.raises(ShapeError, match=rf"node 'GRU__gru'.*\b{arg}\b.*{re.escape(str(shape))}.*hidden_size 4"):
        lower(doc)


def test_onnx_gru_hidden_size_attribute_must_fit_the_weights():
    doc = _onnx_doc()
    _gru_fn(doc)["hidden_size"] = 5
    with pytest.raises(ShapeError, match=r"node 'GRU__gru'.*hidden_size 5"):
        lower(doc)


def test_onnx_gru_input_size_mismatch():
    doc = _onnx_doc()
    nodes_of(doc)["GRU__gru"]["parameters"]["W"]["value"] = np.zeros((1, 12, 5)).tolist()
    with pytest.raises(ShapeError, match=r"node 'GRU__gru'.*'W'.*\(1, 12, 5\).*expected \(1, 12, 3\)"):
        lower(doc)




@pytest.mark.parametrize("attr, value", [
    ("clip", 1.0),
    ("activations", ["Relu", "Tanh"]),
    ("activations", ["Sigmoid", "Sigmoid"]),
    ("activation_alpha", [1.0]),
    ("layout", 2),
    ("linear_before_reset", 2),
    ("direction", "sideways"),
])
def test_unsupported_onnx_gru_attribute(attr, value):
    doc = _onnx_doc()
    _gru_fn(doc)[attr] = value
    with pytest.raises(UnsupportedError, match=rf"node 'GRU__gru'.*attribute {attr}"):
        lower(doc)


def test_onnx_gru_without_linear_before_reset_computes_onnx_default():
    """onnx::GRU without linear_before_reset is ONNX's default, 0 (the reset gate scales h before R_h), which differs
    from torch's GRU: the numpy reference and the torch backend equal the hand-written lbr=0 equations (the fused
    block runs a trial's time steps as one sequence from initial_h)."""
    doc = _onnx_doc()
    fn = _gru_fn(doc)
    del fn["linear_before_reset"]
    prog = lower(doc)
    p = {k: np.asarray(v["value"], dtype=float) for k, v in nodes_of(doc)["GRU__gru"]["parameters"].items()}
    W, R, B, h = p["W"][0], p["R"][0], p["B"].reshape(-1), p["initial_h"].reshape(-1)
    H = R.shape[1]
    X = np.random.default_rng(11).normal(size=(7, W.shape[1]))
    want = []
    for x in X:  # ONNX's GRU equations, gate rows z, r, h
        z = sigmoid(W[:H] @ x + B[:H] + R[:H] @ h + B[3 * H:4 * H])
        r = sigmoid(W[H:2 * H] @ x + B[H:2 * H] + R[H:2 * H] @ h + B[4 * H:5 * H])
        n = np.tanh(W[2 * H:] @ x + B[2 * H:3 * H] + R[2 * H:] @ (r * h) + B[5 * H:])
        h = (1 - z) * n + z * h
        want.append(h)
    feeds = {"GRU__input": X[None]}  # (trials, time steps, I)
    assert max_err(run_program(prog, feeds)["GRU__output"][0], np.array(want)) < F64
    on_torch = get_backend("torch").prepare(prog).run(feeds)["GRU__output"]
    assert max_err(np.asarray(on_torch, dtype=float)[0], np.array(want)) < F64
    fn["linear_before_reset"] = 1  # torch's form: another result on the same weights
    assert max_err(run_program(lower(doc), feeds)["GRU__output"][0], np.array(want)) > 1e-3


@pytest.mark.parametrize("attr, value", [
    ("activations", ["Sigmoid", "Tanh"]),
    ("direction", "forward"),
])
def test_explicit_default_onnx_gru_attributes_are_accepted(attr, value):
    doc = _onnx_doc()
    _gru_fn(doc)[attr] = value
    X = np.random.default_rng(0).normal(size=(2, 6, 3))
    y = run_program(lower(doc), {"GRU__input": X}, sequence=True)["GRU__output"]
    assert max_err(y, run_program(lower(_onnx_doc()), {"GRU__input": X}, sequence=True)["GRU__output"]) < F64


@pytest.mark.parametrize("node, param, shape", [
    ("GRU__update", "wts_iu", (3, 5)),
    ("GRU__reset", "wts_hr", (4, 5)),
    ("GRU__new", "wts_hn", (5, 4)),
    ("GRU__new", "bias_hn", (5,)),
    ("GRU__update", "bias_iu", (4, 1)),
    ("GRU__reset", "wts_ir", (5, 4)),
])
def test_gate_form_wrong_gate_shape_names_node_and_parameter(node, param, shape):
    doc = composition_to_dict(random_gru(True, seed=121, input_size=3, hidden_size=4))
    nodes_of(doc)[node]["parameters"][param]["value"] = np.zeros(shape).tolist()
    with pytest.raises(ShapeError, match=rf"node '{node}' parameter '{param}'.*{re.escape(str(shape))}"):
        lower(doc)


def test_gate_form_wrong_gate_shape_unfused():
    doc = composition_to_dict(random_gru(True, seed=122, input_size=3, hidden_size=4))
    nodes_of(doc)["GRU__update"]["parameters"]["wts_iu"]["value"] = np.zeros((3, 5)).tolist()
    with pytest.raises(ShapeError, match=r"node 'GRU__update' parameter 'wts_iu'"):
        lower(doc, fuse_gru=False)


@pytest.mark.parametrize("shape", [(2, 5, 4), (5, 3, 1), (2, 5, 3, 1), (3,)])
@pytest.mark.parametrize("form, fuse", [("gates", True), ("gates", False), ("onnx", True)])
def test_sequence_input_with_wrong_shape(form, fuse, shape):
    doc = composition_to_dict(random_gru(True, seed=131, input_size=3, hidden_size=4), gru_form=form)
    prog = lower(doc, fuse_gru=fuse)
    with pytest.raises(DataError, match=r"GRU__input.*\(trials, time steps, 3\)"):
        run_program(prog, {"GRU__input": np.zeros(shape)}, sequence=True)


def test_composition_sequence_data_with_wrong_shape():
    comp = random_gru(True, seed=132, input_size=3, hidden_size=4)
    for bad in (np.zeros((2, 5, 4)), np.zeros((2, 5, 3, 1)), np.zeros(3)):
        with pytest.raises(DataError, match=r"'GRU'.*\(trials, time steps, 3\)"):
            comp.evaluate({comp.input_node: bad})
    X = np.zeros((2, 5, 3))
    with pytest.raises(DataError, match=r"\(trials, time steps, 4\)"):
        comp.learn({comp.input_node: X}, {comp.output_node: np.zeros((2, 5, 3))})
    with pytest.raises(DataError, match=r"\(trials, time steps, 4\)"):
        comp.learn({comp.input_node: X}, {comp.output_node: np.zeros((2, 6, 4))})  # time steps differ


# ============================================================================ 6. GPU

@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False")
@pytest.mark.parametrize("form", ["gates", "onnx"])
def test_program_module_on_cuda(form):
    comp = random_gru(True, seed=141)
    X = np.random.default_rng(142).normal(size=(8, SEQ, I_SIZE))
    expected = torch_gru(comp.torch_parameters(), comp.block.h0, X)
    prog = lower(composition_to_dict(comp, gru_form=form))
    # cuDNN's RNN uses TF32 for float32 by default on Ampere+, which is far from 1e-6: compare in true float32
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False), torch.no_grad():
        for dtype, tol in ((torch.float64, F64), (torch.float32, F32)):
            module = ProgramModule(prog, dtype=dtype, device="cuda")
            y = module({"GRU__input": torch.as_tensor(X, dtype=dtype, device="cuda")})["GRU__output"]
            assert y.device.type == "cuda"
            assert max_err(y.double().cpu().numpy(), expected) < tol


# ---------------------------------------------------------------------------------- export to ONNX

def _onnx_run(program, inputs, dtype="float32"):
    import onnx

    from mdfbridge.deploy import DeploymentSession
    from mdfbridge.exporters.onnx import program_to_onnx

    model = program_to_onnx(program, dtype=dtype)
    onnx.checker.check_model(model, full_check=True)
    gru_nodes = [n for n in model.graph.node if n.op_type == "GRU"]
    assert len(gru_nodes) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gru_nodes[0].attribute}
    assert attrs["linear_before_reset"] == 1 and "layout" not in attrs
    session = DeploymentSession(model, provider="cpu")
    assert session.provider == "CPUExecutionProvider"
    return session.run(inputs)


@pytest.mark.parametrize("which", ["alone", "alone-nobias", "nested"])
@pytest.mark.parametrize("batch", [1, 8])
def test_composition_with_gru_exports_to_one_onnx_gru_op_matching_run(which, batch):
    comp, inputs = next((c, x) for n, c, x in _comps() if n == which)
    key = next(iter(inputs))
    x = np.random.default_rng(batch).normal(size=(batch, 50, inputs[key].shape[2]))
    program = lower(composition_to_dict(comp))
    ours = _onnx_run(program, {key: x})
    ref = run_program(program, {key: x}, sequence=True)
    for k, v in ref.items():
        assert max_err(ours[k], v) < F32, k


def test_trained_gru_written_back_and_reexported_matches(tmp_path):
    comp, inputs = next((c, x) for n, c, x in _comps() if n == "nested")
    key = next(iter(inputs))
    path = tmp_path / "seq.json"
    save_mdf(composition_to_dict(comp), path)
    x = inputs[key]
    targets = {"B": np.random.default_rng(9).uniform(size=(x.shape[0], x.shape[1], 3))}
    from mdfbridge.learning import learn

    result = learn(str(path), {key: x}, targets, epochs=3, learning_rate=0.05, optimizer_type="adam")
    out = tmp_path / "seq.trained.json"
    write_back(str(path), result.program, str(out))
    from mdfbridge.api import load_program

    reloaded = load_program(out)
    trained = run_program(result.program, {key: x}, sequence=True)
    assert all(np.array_equal(run_program(reloaded, {key: x}, sequence=True)[k], v) for k, v in trained.items())
    deployed = _onnx_run(reloaded, {key: x})
    assert all(max_err(deployed[k], v) < F32 for k, v in trained.items())
    before = run_program(lower(composition_to_dict(comp)), {key: x}, sequence=True)
    assert any(max_err(before[k], v) > 1e-4 for k, v in trained.items())  # training changed the weights


def test_set_torch_parameters_refuses_names_and_shapes_the_block_does_not_take():
    from mdfbridge.composition import CompositionError

    torch.manual_seed(0)
    with_bias = {k: v.detach() for k, v in torch.nn.GRU(3, 4, batch_first=True).named_parameters()}
    no_bias = GRUComposition(3, 4, bias=False, seed=0)
    with pytest.raises(CompositionError, match=r"GRU block 'GRU' \(bias=False\) takes torch.nn.GRU parameters "
                                               r"weight_ih_l0, weight_hh_l0; got weight_ih_l0, weight_hh_l0, bias_ih"):
        no_bias.set_torch_parameters(with_bias)
    wrong = GRUComposition(2, 4, bias=True, seed=0)
    with pytest.raises(CompositionError, match=r"weight_ih_l0 has shape \(12, 3\), expected \(12, 2\)"):
        wrong.set_torch_parameters(with_bias)
    ok = GRUComposition(3, 4, bias=True, seed=0)
    ok.set_torch_parameters(with_bias)   # tensors (requires_grad dropped by detach) are taken as they are
    np.testing.assert_array_equal(ok.torch_parameters()["weight_hh_l0"], with_bias["weight_hh_l0"].numpy())
