"""torch.nn.GRU / RNN (tanh, relu) / LSTM -> MDF (module_to_mdf), stacked and bidirectional: every output the
module returns (the output sequence, h_n, and LSTM's c_n) equals torch's on the numpy reference and the torch
backend, the ONNX export runs on onnxruntime, one SGD epoch through the torch backend changes the weights as torch
autograd + SGD on the module does, and the trained weights load back into the module (load_state_dict strict)."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch
from torch import nn

from mdfbridge.backends import get_backend
from mdfbridge.errors import UnsupportedError
from mdfbridge.importers.pytorch import module_to_mdf, program_state_dict
from mdfbridge.importers.reference import run_program
from mdfbridge.learning import learn
from mdfbridge.lowering import lower
from mdfbridge.program import Param, TensorRef

TOL64, TOL32 = 1e-10, 1e-5
I_SIZE, H_SIZE, T_STEPS = 3, 4, 6

LAYERS = {  # name -> constructor of the layer (input size, hidden size, **options)
    "gru": lambda **kw: nn.GRU(I_SIZE, H_SIZE, **kw),
    "rnn_tanh": lambda **kw: nn.RNN(I_SIZE, H_SIZE, nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: nn.RNN(I_SIZE, H_SIZE, nonlinearity="relu", **kw),
    "lstm": lambda **kw: nn.LSTM(I_SIZE, H_SIZE, **kw),
}
CASES = [(name, bf, layers, False) for name in LAYERS for bf in (True, False) for layers in (1, 2)]
CASES += [(name, bf, layers, True) for name in ("rnn_tanh", "rnn_relu", "lstm", "gru") for bf, layers in
          ((True, 2), (False, 1))]  # bidirectional
IDS = [f"{n}-{'batch_first' if bf else 'time_major'}-{k}layer{'-bidirectional' if bi else ''}"
       for n, bf, k, bi in CASES]


def make_layer(name: str, batch_first: bool, num_layers: int = 1, seed: int = 0, dtype: torch.dtype = torch.float64,
               **kw: Any) -> nn.Module:
    """A layer with random weights (uniform in [-0.6, 0.6], seeded)."""
    torch.manual_seed(seed)
    m = LAYERS[name](batch_first=batch_first, num_layers=num_layers, **kw).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-0.6, 0.6)
    return m


def data(batch_first: bool, batch: int = 5, seed: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, T_STEPS, I_SIZE) if batch_first else (T_STEPS, batch, I_SIZE)
    return torch.randn(shape, generator=g, dtype=dtype)


def flat(value: Any) -> List[torch.Tensor]:
    """The tensors of a (nested) tuple, in order: (output, h_n) or (output, (h_n, c_n))."""
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flat(v)]
    return [value]


def trials_first(t: torch.Tensor, batch_axis: int) -> np.ndarray:
    """A torch result with its batch axis moved first (MDF's trial axis)."""
    return np.moveaxis(t.detach().double().numpy(), batch_axis, 0)


def mdf_inputs(doc: Dict[str, Any], xs: Tuple[torch.Tensor, ...]) -> Dict[str, np.ndarray]:
    """The module's inputs as the MDF graph takes them (batch axis first, as metadata.batch_axes says)."""
    meta = next(iter(next(iter(doc.values()))["graphs"].values()))["metadata"]["mdfbridge"]["torch"]
    axes = meta.get("batch_axes") or {}
    return {name: trials_first(x, axes.get(name, 0)) for name, x in zip(meta["inputs"], xs)}


def expected(doc: Dict[str, Any], module: nn.Module, xs: Tuple[torch.Tensor, ...]) -> Dict[str, np.ndarray]:
    """The module's outputs under the MDF output names, batch axis first."""
    meta = next(iter(next(iter(doc.values()))["graphs"].values()))["metadata"]["mdfbridge"]["torch"]
    axes = meta.get("batch_axes") or {}
    with torch.no_grad():
        got = flat(module(*xs))
    assert len(got) == len(meta["outputs"])
    return {name: trials_first(t, axes.get(name, 0)) for name, t in zip(meta["outputs"], got)}


# ------------------------------------------------------------------------------------------- forward

@pytest.mark.parametrize("name,batch_first,num_layers,bidirectional", CASES, ids=IDS)
def test_layer_outputs_match_torch_on_reference_and_torch_backend(name, batch_first, num_layers, bidirectional):
    module = make_layer(name, batch_first, num_layers, seed=num_layers, bidirectional=bidirectional)
    doc = module_to_mdf(module, (data(batch_first, 2),))
    prog = lower(doc)
    assert list(prog.outputs) == (["output_0", "output_1_0", "output_1_1"] if name == "lstm"
                                  else ["output_0", "output_1"])
    x = data(batch_first, 5, seed=7)
    want = expected(doc, module, (x,))
    ref = run_program(prog, mdf_inputs(doc, (x,)))
    on_torch = get_backend("torch").prepare(prog).run(mdf_inputs(doc, (x,)))
    for k, v in want.items():
        assert ref[k].shape == v.shape
        np.testing.assert_allclose(ref[k], v, rtol=0, atol=TOL64, err_msg=k)
        np.testing.assert_allclose(np.asarray(on_torch[k], dtype=float), v, rtol=0, atol=TOL64, err_msg=k)
    # the untouched program's state_dict is the module's own
    module.load_state_dict(program_state_dict(prog), strict=True)
    for k, t in program_state_dict(prog).items():
        torch.testing.assert_close(t, module.state_dict()[k], rtol=0, atol=0)


@pytest.mark.parametrize("name,batch_first,num_layers,bidirectional", CASES, ids=IDS)
def test_onnx_export_runs_on_onnxruntime_like_torch(name, batch_first, num_layers, bidirectional):
    from mdfbridge.deploy import DeploymentSession

    module = make_layer(name, batch_first, num_layers, seed=3, dtype=torch.float32, bidirectional=bidirectional)
    doc = module_to_mdf(module, (data(batch_first, 2, dtype=torch.float32),))
    prog = lower(doc)
    x = data(batch_first, 4, seed=5, dtype=torch.float32)
    got = DeploymentSession(prog, "cpu", dtype="float32").run(mdf_inputs(doc, (x,)))
    for k, v in expected(doc, module, (x,)).items():
        np.testing.assert_allclose(got[k], v, rtol=0, atol=TOL32, err_msg=k)


class Head(nn.Module):
    """A recurrent layer inside a module: a Linear head on the output sequence, on h_n[-1], or on c_n."""

    def __init__(self, name: str, batch_first: bool, num_layers: int, use: str, bidirectional: bool = False) -> None:
        super().__init__()
        self.rnn = make_layer(name, batch_first, num_layers, seed=11, bidirectional=bidirectional)
        self.fc = nn.Linear(H_SIZE * (2 if bidirectional and use == "seq" else 1), 2).double()
        self.use = use
        self.lstm = name == "lstm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(x)
        if self.use == "seq":
            return torch.tanh(self.fc(out))
        if self.use == "cell":
            return self.fc(h[1][-1])
        return self.fc((h[0] if self.lstm else h)[-1])  # (fx traces h as a Proxy: no isinstance test)


HEAD_CASES = [(n, bf, k, use) for n in LAYERS for bf, k in ((True, 1), (False, 2)) for use in ("seq", "last")]
HEAD_CASES += [("lstm", True, 2, "cell"), ("lstm", True, 2, "seq-bidirectional"),
               ("gru", False, 1, "last-bidirectional"), ("rnn_tanh", True, 1, "seq-bidirectional")]


@pytest.mark.parametrize("name,batch_first,num_layers,use", HEAD_CASES,
                         ids=[f"{n}-{'bf' if bf else 'tm'}-{k}-{u}" for n, bf, k, u in HEAD_CASES])
def test_sgd_epoch_through_torch_backend_matches_torch_autograd(name, batch_first, num_layers, use):
    use, bidirectional = use.split("-")[0], use.endswith("-bidirectional")
    module = Head(name, batch_first, num_layers, use, bidirectional)
    x = data(batch_first, 6, seed=2)
    doc = module_to_mdf(module, (x,))
    prog = lower(doc)
    (out_name,) = prog.outputs
    with torch.no_grad():
        target = torch.randn_like(module(x)) * 0.5
    axes = next(iter(next(iter(doc.values()))["graphs"].values()))["metadata"]["mdfbridge"]["torch"].get(
        "batch_axes") or {}
    y = trials_first(target, axes.get(out_name, 0))
    lr, batch = 0.3, 3
    before = {k: v.clone() for k, v in module.state_dict().items()}
    # the oracle: torch autograd + SGD on the module, minibatches in order, MSE (mean)
    oracle = Head(name, batch_first, num_layers, use, bidirectional)
    oracle.load_state_dict(before)
    opt = torch.optim.SGD(oracle.parameters(), lr=lr)
    b_axis = 0 if batch_first or use != "seq" else 1
    for start in range(0, 6, batch):
        xb = x[start:start + batch] if batch_first else x[:, start:start + batch]
        tb = target.narrow(b_axis, start, batch)
        opt.zero_grad()
        torch.nn.functional.mse_loss(oracle(xb), tb).backward()
        opt.step()
    result = learn(doc, mdf_inputs(doc, (x,)), {out_name: y}, epochs=1, learning_rate=lr, minibatch_size=batch,
                   optimizer_type="sgd", backend="torch")
    state = program_state_dict(result.program)
    changed = False
    for k, v in oracle.state_dict().items():
        np.testing.assert_allclose(state[k].numpy(), v.numpy(), rtol=0, atol=TOL64, err_msg=k)
        changed = changed or not torch.equal(v, before[k])
    assert changed
    module.load_state_dict(state, strict=True)
    ours = run_program(result.program, mdf_inputs(doc, (x,)))[out_name]
    np.testing.assert_allclose(ours, expected(doc, module, (x,))[out_name], rtol=0, atol=TOL64)


PROJ = 2  # nn.LSTM(proj_size=2): h (and the outputs) projected from H_SIZE to 2 by weight_hr


class ProjHead(nn.Module):
    """An nn.LSTM with proj_size (optionally with (h0, c0) inputs), a Linear head on the output sequence."""

    def __init__(self, batch_first: bool, num_layers: int, bidirectional: bool, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.rnn = nn.LSTM(I_SIZE, H_SIZE, num_layers=num_layers, bidirectional=bidirectional, proj_size=PROJ,
                           batch_first=batch_first).double()
        self.fc = nn.Linear(PROJ * (2 if bidirectional else 1), 2).double()

    def forward(self, x: torch.Tensor) -> Any:
        out, (h, c) = self.rnn(x)
        return torch.tanh(self.fc(out)), h, c


class ProjHeadWithState(ProjHead):
    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> Any:  # type: ignore[override]
        out, (h, c) = self.rnn(x, (h0, c0))
        return torch.tanh(self.fc(out)), h, c


PROJ_CASES = [(True, 1, False), (False, 2, False), (True, 2, True), (False, 1, True)]


@pytest.mark.parametrize("batch_first,num_layers,bidirectional", PROJ_CASES)
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_proj_size_matches_torch(batch_first, num_layers, bidirectional, with_state):
    """nn.LSTM(proj_size=P): the output sequence and h_n of size P, c_n of the hidden size, on the numpy reference
    and the torch backend (torch's fused kernel with weight_hr), at another batch size than traced; the state_dict
    (weight_hr_l<k> included) maps back strictly."""
    module = (ProjHeadWithState if with_state else ProjHead)(batch_first, num_layers, bidirectional)
    rows = num_layers * (2 if bidirectional else 1)

    def inputs(batch: int, seed: int) -> Tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        x = data(batch_first, batch, seed=seed)
        if not with_state:
            return (x,)
        return (x, torch.randn(rows, batch, PROJ, generator=g, dtype=torch.float64),
                torch.randn(rows, batch, H_SIZE, generator=g, dtype=torch.float64))

    doc = module_to_mdf(module, inputs(2, 1))
    prog = lower(doc)
    xs = inputs(5, 7)
    want = expected(doc, module, xs)
    ref = run_program(prog, mdf_inputs(doc, xs))
    on_torch = get_backend("torch").prepare(prog).run(mdf_inputs(doc, xs))
    for k, v in want.items():
        np.testing.assert_allclose(ref[k], v, rtol=0, atol=TOL64, err_msg=k)
        np.testing.assert_allclose(np.asarray(on_torch[k], dtype=float), v, rtol=0, atol=TOL64, err_msg=k)
    assert [v.shape[-1] for v in want.values()] == [2, PROJ, H_SIZE]
    module.load_state_dict(program_state_dict(prog), strict=True)


def test_lstm_proj_size_sgd_epoch_matches_torch_autograd_and_onnx_export_is_refused():
    module = ProjHead(True, 2, True, seed=3)
    x = data(True, 6, seed=2)
    doc = module_to_mdf(module, (x,))
    with torch.no_grad():
        target = torch.randn_like(module(x)[0]) * 0.5
    before = {k: v.clone() for k, v in module.state_dict().items()}
    oracle = ProjHead(True, 2, True)
    oracle.load_state_dict(before)
    opt = torch.optim.SGD(oracle.parameters(), lr=0.3)
    for start in range(0, 6, 3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(oracle(x[start:start + 3])[0], target[start:start + 3]).backward()
        opt.step()
    result = learn(doc, mdf_inputs(doc, (x,)), {"output_0": target.numpy()}, epochs=1, learning_rate=0.3,
                   minibatch_size=3, optimizer_type="sgd", backend="torch")
    state = program_state_dict(result.program)
    for k, v in oracle.state_dict().items():
        np.testing.assert_allclose(state[k].numpy(), v.numpy(), rtol=0, atol=TOL64, err_msg=k)
    assert not torch.equal(state["rnn.weight_hr_l1_reverse"], before["rnn.weight_hr_l1_reverse"])
    from mdfbridge.exporters.onnx import program_to_onnx

    with pytest.raises(UnsupportedError, match=r"projection \(weight_hr: torch's proj_size\): ONNX's LSTM has none"):
        program_to_onnx(lower(doc))


class WithState(nn.Module):
    """The initial state as module inputs: (x, h0) or (x, h0, c0)."""

    def __init__(self, name: str, batch_first: bool, bidirectional: bool = False) -> None:
        super().__init__()
        self.rnn = make_layer(name, batch_first, 2, seed=5, bidirectional=bidirectional)
        self.lstm = name == "lstm"

    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: Any = None) -> Any:
        return self.rnn(x, (h0, c0)) if self.lstm else self.rnn(x, h0)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("batch_first,bidirectional", [(True, False), (False, False), (True, True)])
def test_initial_state_inputs_match_torch(name, batch_first, bidirectional):
    module = WithState(name, batch_first, bidirectional)
    g = torch.Generator().manual_seed(4)
    states = tuple(torch.randn(4 if bidirectional else 2, 3, H_SIZE, generator=g, dtype=torch.float64)
                   for _ in range(2 if name == "lstm" else 1))
    xs = (data(batch_first, 3, seed=9),) + states
    doc = module_to_mdf(module, xs)
    prog = lower(doc)
    ref = run_program(prog, mdf_inputs(doc, xs))
    on_torch = get_backend("torch").prepare(prog).run(mdf_inputs(doc, xs))
    for k, v in expected(doc, module, xs).items():
        np.testing.assert_allclose(ref[k], v, rtol=0, atol=TOL64, err_msg=k)
        np.testing.assert_allclose(np.asarray(on_torch[k], dtype=float), v, rtol=0, atol=TOL64, err_msg=k)


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_given_as_the_module_with_and_without_state(name):
    module = make_layer(name, True, 1, seed=8)
    x = data(True, 3, seed=3)
    doc = module_to_mdf(module, (x,))
    ref = run_program(lower(doc), mdf_inputs(doc, (x,)))
    for k, v in expected(doc, module, (x,)).items():
        np.testing.assert_allclose(ref[k], v, rtol=0, atol=TOL64, err_msg=k)
    assert list(program_state_dict(lower(doc))) == list(module.state_dict())


def test_lstm_cell_state_is_computed_only_when_used():
    module = Head("lstm", True, 1, "last")
    doc = module_to_mdf(module, (data(True, 2),))
    nodes = next(iter(next(iter(doc.values()))["graphs"].values()))["nodes"]
    assert "c" not in nodes["rnn"]["functions"] and "rnn_c_n" not in nodes
    doc = module_to_mdf(Head("lstm", True, 1, "cell"), (data(True, 2),))
    nodes = next(iter(next(iter(doc.values()))["graphs"].values()))["nodes"]
    assert nodes["rnn"]["functions"]["c"]["function"]["LSTM"]["output"] == "Y_c"


@pytest.mark.parametrize("name,op", [("lstm", "LSTM"), ("rnn_relu", "RNN"), ("gru", "GRU")])
def test_llvm_refuses_recurrent_ops_naming_them(name, op):
    x = data(True, 2)
    doc = module_to_mdf(make_layer(name, True, 2), (x,))
    with pytest.raises(UnsupportedError, match=f"read by {op} in node .*llvm backend"):
        get_backend("llvm").prepare(lower(doc)).run(mdf_inputs(doc, (x,)))


# ------------------------------------------------------------------------------------------- refusals

class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.GRU(3, 3, batch_first=True)
        self.b = nn.LSTM(3, 3, batch_first=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)[0])[0]


class BatchIndex(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][0]


@pytest.mark.parametrize("module,shape,pattern", [
    (nn.GRU(3, 4, num_layers=2, dropout=0.5), (5, 2, 3), r"GRU with dropout=0.5 in training mode"),
    (Mixed(), (2, 5, 3), r"batch_first=True and batch_first=False"),
    (BatchIndex(), (2, 5, 3), r"selects along the batch axis"),
], ids=["dropout_training", "mixed_batch_first", "index_batch_axis"])
def test_unsupported_recurrent_settings_raise_one_clear_error(module, shape, pattern):
    with pytest.raises(UnsupportedError, match=pattern):
        module_to_mdf(module.double(), (torch.randn(*shape, dtype=torch.float64),))


# ------------------------------------------------------------------------------------------- ONNX files read back

def _read_back(model: Any, inputs: Dict[str, np.ndarray]) -> Dict[str, Any]:
    from mdfbridge.importers.onnx import onnx_to_mdf

    return onnx_to_mdf(model, batch_axis=False, input_shapes={k: v.shape for k, v in inputs.items()})


@pytest.mark.parametrize("name", ["gru", "rnn_tanh", "lstm"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_exported_onnx_file_reads_back_equal(name, batch_first, tmp_path):
    from mdfbridge.exporters.onnx import program_to_onnx, save_onnx

    module = make_layer(name, batch_first, 2, seed=6)
    x = data(batch_first, 3, seed=8)
    doc = module_to_mdf(module, (x,))
    save_onnx(program_to_onnx(lower(doc), dtype="float64"), tmp_path / "m.onnx")
    inputs = mdf_inputs(doc, (x,))
    back = lower(_read_back(str(tmp_path / "m.onnx"), inputs))  # one trial: the whole batch
    ref = run_program(back, {k: v[None] for k, v in inputs.items()})
    on_torch = get_backend("torch").prepare(back).run({k: v[None] for k, v in inputs.items()})
    for k, v in expected(doc, module, (x,)).items():
        np.testing.assert_allclose(ref[k][0], v, rtol=0, atol=TOL64, err_msg=k)
        np.testing.assert_allclose(np.asarray(on_torch[k], dtype=float)[0], v, rtol=0, atol=TOL64, err_msg=k)


def _onnx_model(op_type: str, gates: int, outputs: Tuple[str, ...], states: int, **attrs: Any) -> Any:
    """An ONNX model of one op_type node: X (T, N, I) and initial states as graph inputs, random W, R, B."""
    from onnx import TensorProto, helper, numpy_helper

    T, N = 5, 2
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    rng = np.random.default_rng(gates)
    inits = [numpy_helper.from_array(rng.uniform(-0.6, 0.6, s).astype(np.float32), k) for k, s in
             (("W", (D, gates * H_SIZE, I_SIZE)), ("R", (D, gates * H_SIZE, H_SIZE)), ("B", (D, 2 * gates * H_SIZE)))]
    state_names = ["initial_h", "initial_c"][:states]
    ins = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, N, I_SIZE])] + [
        helper.make_tensor_value_info(s, TensorProto.FLOAT, [D, N, H_SIZE]) for s in state_names]
    node = helper.make_node(op_type, ["X", "W", "R", "B", ""] + state_names, list(outputs), hidden_size=H_SIZE,
                            **attrs)
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs if o]
    return helper.make_model(helper.make_graph([node], "g", ins, outs, inits),
                             opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op_type,gates,outputs,states,attrs", [
    ("LSTM", 4, ("Y", "Y_h", "Y_c"), 2, {}),
    ("LSTM", 4, ("", "Y_h"), 1, {}),
    ("RNN", 1, ("Y", "Y_h"), 1, {}),
    ("GRU", 3, ("Y", "Y_h"), 1, {"linear_before_reset": 1}),
    ("LSTM", 4, ("Y", "Y_h", "Y_c"), 2, {"direction": "bidirectional"}),
    ("LSTM", 4, ("Y", "Y_h"), 0, {"direction": "reverse"}),
    ("RNN", 1, ("Y", "Y_h"), 1, {"direction": "bidirectional"}),
    ("RNN", 1, ("", "Y_h"), 1, {"direction": "reverse"}),
    ("GRU", 3, ("Y", "Y_h"), 1, {"linear_before_reset": 1, "direction": "bidirectional"}),
    ("GRU", 3, ("Y", "Y_h"), 0, {"linear_before_reset": 1, "direction": "reverse"}),
    ("GRU", 3, ("Y", "Y_h"), 1, {}),
    ("GRU", 3, ("Y", "Y_h"), 1, {"linear_before_reset": 0, "direction": "bidirectional"}),
    ("GRU", 3, ("", "Y_h"), 0, {"direction": "reverse"}),
], ids=["lstm_all_outputs", "lstm_y_h_only", "rnn", "gru", "lstm_bidirectional", "lstm_reverse",
        "rnn_bidirectional", "rnn_y_h_reverse", "gru_bidirectional", "gru_reverse", "gru_lbr0",
        "gru_lbr0_bidirectional", "gru_lbr0_reverse_y_h"])
def test_onnx_recurrent_nodes_read_equal_onnxruntime(op_type, gates, outputs, states, attrs):
    import onnxruntime as ort

    model = _onnx_model(op_type, gates, outputs, states, **attrs)
    rng = np.random.default_rng(3)
    feeds = {i.name: rng.normal(size=[d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input}
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    doc = _read_back(model, feeds)
    prog = lower(doc)
    ours = run_program(prog, {k: v[None].astype(float) for k, v in feeds.items()})
    on_torch = get_backend("torch").prepare(prog).run({k: v[None].astype(float) for k, v in feeds.items()})
    named = [o for o in outputs if o]
    assert sorted(prog.outputs) == sorted(named)
    for o, w in zip(named, want):
        np.testing.assert_allclose(ours[o][0], w, rtol=0, atol=TOL32, err_msg=o)
        np.testing.assert_allclose(np.asarray(on_torch[o], dtype=float)[0], w, rtol=0, atol=TOL32, err_msg=o)
    # W, R, B are learnable parameters of the read document
    (node,) = [n for n in next(iter(next(iter(doc.values()))["graphs"].values()))["nodes"].values()
               if (n.get("metadata") or {}).get("mdfbridge", {}).get("role") == "onnx"]
    assert len(node["metadata"]["mdfbridge"]["learnable_parameters"]) == 3


@pytest.mark.parametrize("direction,layout", [("forward", 0), ("bidirectional", 1)])
def test_gru_linear_before_reset_0_gradients_equal_finite_differences(direction, layout):
    """The torch GRU with linear_before_reset=0 (no fused kernel: the steps as tensor ops) is differentiable in X,
    initial_h, W, R and B: torch.autograd.gradcheck (float64 finite differences) on random values; and its value
    equals the numpy reference."""
    from mdfbridge.gru import gru_op_numpy, gru_op_torch

    D, H, I, T, N = 2 if direction == "bidirectional" else 1, 3, 2, 4, 2
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N, T, I) if layout else (T, N, I))
    h0 = rng.normal(size=(N, D, H) if layout else (D, N, H))
    W, R, B = rng.normal(size=(D, 3 * H, I)), rng.normal(size=(D, 3 * H, H)), rng.normal(size=(D, 6 * H))
    kw = dict(weight_layout="onnx", axes="onnx", linear_before_reset=0, direction=direction, layout=layout)
    tensors = [torch.tensor(v, requires_grad=True) for v in (X, h0, W, R, B)]

    def f(x, h, w, r, b):
        return gru_op_torch(x, h, W=w, R=r, B=b, output="Y", **kw)

    assert torch.autograd.gradcheck(f, tensors)
    np.testing.assert_allclose(f(*tensors).detach().numpy(), gru_op_numpy(X, h0, W=W, R=R, B=B, **kw),
                               rtol=0, atol=TOL64)


@pytest.mark.parametrize("op_type,gates,attrs,pattern", [
    ("GRU", 3, {"clip": 2.0}, r"onnx::GRU attribute clip"),
    ("LSTM", 4, {"direction": "sideways"}, r"Unknown direction 'sideways'"),  # (the probe's evaluator says so)
    ("RNN", 1, {"clip": 1.0}, r"clip"),
], ids=["gru_clip", "lstm_unknown_direction", "rnn_clip"])
def test_onnx_recurrent_settings_the_ops_lack_are_refused(op_type, gates, attrs, pattern):
    model = _onnx_model(op_type, gates, ("Y",), 1, **attrs)
    feeds = {"X": np.zeros((5, 2, I_SIZE)), "initial_h": np.zeros((1, 2, H_SIZE))}
    with pytest.raises(UnsupportedError, match=pattern):
        lower(_read_back(model, feeds))


def test_onnx_recurrent_node_with_batch_axis_is_refused():
    from mdfbridge.importers.onnx import onnx_to_mdf

    with pytest.raises(UnsupportedError, match="batch_axis=False"):
        onnx_to_mdf(_onnx_model("LSTM", 4, ("Y",), 0))


@pytest.mark.parametrize("op_type,gates,outputs,states,layout,direction,lbr", [
    ("LSTM", 4, ("Y", "Y_h", "Y_c"), 2, 0, "forward", 1),
    ("LSTM", 4, ("Y", "", "Y_c"), 2, 1, "forward", 1),
    ("RNN", 1, ("Y", "Y_h"), 1, 1, "forward", 1),
    ("LSTM", 4, ("Y", "Y_h", "Y_c"), 2, 0, "bidirectional", 1),
    ("LSTM", 4, ("Y", "Y_h"), 1, 1, "bidirectional", 1),
    ("RNN", 1, ("Y", "Y_h"), 1, 0, "reverse", 1),
    ("GRU", 3, ("Y", "Y_h"), 1, 0, "bidirectional", 1),
    ("GRU", 3, ("", "Y_h"), 1, 0, "reverse", 1),
    ("GRU", 3, ("Y", "Y_h"), 1, 1, "bidirectional", 1),
    ("GRU", 3, ("Y", "Y_h"), 1, 0, "forward", 0),
    ("GRU", 3, ("Y", ""), 0, 1, "reverse", 0),
], ids=["lstm", "lstm_layout1", "rnn_layout1", "lstm_bidirectional", "lstm_bidirectional_layout1", "rnn_reverse",
        "gru_bidirectional", "gru_reverse", "gru_bidirectional_layout1", "gru_lbr0", "gru_lbr0_reverse_layout1"])
def test_read_onnx_nodes_run_on_trials_and_export_back_to_onnxruntime(op_type, gates, outputs, states, layout,
                                                                      direction, lbr):
    """onnx:: aliases on several trials: numpy reference = torch backend = the re-exported ONNX model on
    onnxruntime (which runs layout 0 only: the export transposes around the node); layout 1 checked against onnx's
    reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    from mdfbridge.deploy import DeploymentSession

    model = _onnx_model(op_type, gates, outputs, states, direction=direction, **({"layout": 1} if layout else {}),
                        **({"linear_before_reset": lbr} if op_type == "GRU" else {}))
    if layout:  # X (N, T, I), states (N, 1, H)
        for inp in model.graph.input:
            dims = inp.type.tensor_type.shape.dim
            dims[0].dim_value, dims[1].dim_value = dims[1].dim_value, dims[0].dim_value
    rng = np.random.default_rng(5)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    trials = {k: rng.normal(size=[3, *s]).astype(np.float32) for k, s in shapes.items()}
    prog = lower(_read_back(model, {k: v[0] for k, v in trials.items()}))
    ref = run_program(prog, {k: v.astype(float) for k, v in trials.items()})
    on_torch = get_backend("torch").prepare(prog).run({k: v.astype(float) for k, v in trials.items()})
    ort_out = DeploymentSession(prog, "cpu", dtype="float32").run(trials)
    evaluator = ReferenceEvaluator(model)
    named = [o for o in outputs if o]
    for t in range(3):
        want = evaluator.run(None, {k: v[t] for k, v in trials.items()})
        for o, w in zip(named, want):
            np.testing.assert_allclose(ref[o][t], w, rtol=0, atol=TOL32, err_msg=o)
    for o in named:
        np.testing.assert_allclose(np.asarray(on_torch[o], dtype=float), ref[o], rtol=0, atol=TOL64, err_msg=o)
        np.testing.assert_allclose(ort_out[o], ref[o], rtol=0, atol=TOL32, err_msg=o)


# ------------------------------------------------------------------------------------------- ONNX export form

@pytest.mark.parametrize("name", ["rnn_tanh", "lstm"])
def test_onnx_export_names_weights_after_the_node_and_leaves_zero_states_out(name):
    """One ONNX node per layer, weights `<node>.W/.R/.B` (doc_strings naming the MDF parameters), and no
    Shape/Concat/Expand for an initial state that is absent (zeros)."""
    from mdfbridge.exporters.onnx import program_to_onnx

    module = make_layer(name, True, 1, seed=3, dtype=torch.float32)
    prog = lower(module_to_mdf(module, (data(True, 2, dtype=torch.float32),)))
    model = program_to_onnx(prog)
    node = "RNN" if name != "lstm" else "LSTM"
    ops = [n.op_type for n in model.graph.node]
    assert node in ops and not {"Expand", "Concat", "Shape"} & set(ops), ops
    inits = {t.name: t for t in model.graph.initializer}
    layer = [n for n in model.graph.node if n.op_type == node][0]
    assert [i for i in layer.input[1:4]] == [f"{p}.{k}" for p in ["layer"] for k in ("W", "R", "B")], layer.input
    assert len(layer.input) <= 4 or all(i == "" for i in layer.input[4:]), layer.input
    assert "weight_ih" in inits["layer.W"].doc_string and "bias_hh" in inits["layer.B"].doc_string


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm"])
def test_onnx_export_with_a_nonzero_state_parameter_equals_torch(name):
    """A nonzero initial state held as a parameter is still exported (expanded over the batch)."""
    from mdfbridge.deploy import DeploymentSession

    module = make_layer(name, True, 1, seed=4, dtype=torch.float32)
    doc = module_to_mdf(module, (data(True, 2, dtype=torch.float32),))
    prog = lower(doc)
    h0 = np.linspace(-0.5, 0.5, H_SIZE)
    ops = [op for op in prog.ops if op.fn in ("RNN", "LSTM")]
    assert ops
    for op in ops:
        for arg in (("h0", "c0") if name == "lstm" else ("h0",)):
            pname = f"{op.node}.{arg}_test"
            prog.params[pname] = Param(pname, h0.copy(), learnable=False)
            op.args[arg] = TensorRef(pname)
    x = data(True, 4, seed=5, dtype=torch.float32)
    got = DeploymentSession(prog, "cpu", dtype="float32").run(mdf_inputs(doc, (x,)))
    hx = torch.as_tensor(h0, dtype=torch.float32).reshape(1, 1, H_SIZE).expand(1, 4, H_SIZE).contiguous()
    with torch.no_grad():
        want = flat(module(x, (hx, hx) if name == "lstm" else hx))
    ref = run_program(prog, mdf_inputs(doc, (x,)))
    meta = next(iter(next(iter(doc.values()))["graphs"].values()))["metadata"]["mdfbridge"]["torch"]
    axes = meta.get("batch_axes") or {}
    for k, v in zip(prog.outputs, want):
        np.testing.assert_allclose(got[k], trials_first(v, axes.get(k, 0)), rtol=0, atol=TOL32, err_msg=k)
        np.testing.assert_allclose(ref[k], trials_first(v, axes.get(k, 0)), rtol=0, atol=TOL32, err_msg=k)


@pytest.mark.parametrize("direction,pattern", [
    ("reverse", r"direction: 'reverse' with 'trial' axes"), ("sideways", r"'sideways'; one of forward, reverse")])
def test_a_direction_the_trial_axes_do_not_run_is_refused(direction, pattern):
    """A direction written into an MDF LSTM call ('trial' axes, as the torch.nn import writes it) is refused naming
    the node, not run forward."""
    doc = module_to_mdf(make_layer("lstm", True, 1), (data(True, 2),))
    node = next(iter(next(iter(doc.values()))["graphs"].values()))["nodes"]["layer"]
    node["functions"]["y"]["function"]["LSTM"]["direction"] = direction
    with pytest.raises(UnsupportedError, match=f"node 'layer'.*{pattern}"):
        lower(doc)


def test_onnx_axes_with_torch_layout_weights_equal_the_onnx_layout():
    """The LSTM op with ONNX's axes reads torch-layout weights too (one direction): the same values as the ONNX
    layout of the same weights, on numpy and torch; bidirectional needs the ONNX layout (refused naming it)."""
    from mdfbridge.ops.recurrent import LSTM_CELL, lstm_numpy, lstm_torch
    from mdfbridge.rnn import torch_to_onnx, validate

    rng = np.random.default_rng(0)
    H, T, N = H_SIZE, 5, 2
    p = {"weight_ih": rng.normal(size=(4 * H, I_SIZE)), "weight_hh": rng.normal(size=(4 * H, H)),
         "bias_ih": rng.normal(size=4 * H), "bias_hh": rng.normal(size=4 * H)}
    o = torch_to_onnx(LSTM_CELL, p)
    X = rng.normal(size=(T, N, I_SIZE))
    for output in ("Y", "Y_h", "Y_c"):
        want = lstm_numpy(X, weight_layout="onnx", axes="onnx", output=output, **o)
        np.testing.assert_allclose(lstm_numpy(X, weight_layout="torch", axes="onnx", output=output, **p), want,
                                   rtol=0, atol=TOL64)
        got = lstm_torch(torch.tensor(X), weight_layout="torch", axes="onnx", output=output,
                         **{k: torch.tensor(v) for k, v in p.items()})
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=TOL64)
    with pytest.raises(UnsupportedError, match="bidirectional needs ONNX-layout weights"):
        validate(LSTM_CELL, "n", {"weight_layout": "torch", "axes": "onnx", "direction": "bidirectional",
                                  "weight_hh": p["weight_hh"]}, {})
