"""GRU as a plug-in: one canonical GRU op for every MDF form, one ONNX GRU node for every lowering of it, and the
hooks (block lowering, op record validate / onnx_export / torch_module) that keep GRU out of generic code.

Oracles: the numpy reference (run_program) for ONNX export (onnxruntime, float32: 1e-5) and the torch module
(float64: 1e-12); the layout conversions' exact round trips for write-back.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mdfbridge import GRUComposition, ShapeError, UnsupportedError
from mdfbridge.block_lowering import BlockPlan, FusedBlock, register_block_lowering, unregister_block_lowering
from mdfbridge.exporters.mdf import composition_to_dict
from mdfbridge.exporters.onnx import program_to_onnx
from mdfbridge.gru import gates_to_torch, torch_to_gates
from mdfbridge.gru_lowering import GRU_BLOCKS
from mdfbridge.importers.reference import run_program
from mdfbridge.importers.torch_module import ProgramModule
from mdfbridge.lowering import lower
from mdfbridge.ops import canonical_name, get_op
from mdfbridge.program import Op, TensorRef

F32 = 1e-5
F64 = 1e-12
I_SIZE, H_SIZE = 3, 4


def _comp(bias: bool = True, seed: int = 0) -> GRUComposition:
    rng = np.random.default_rng(seed)
    return GRUComposition(I_SIZE, H_SIZE, bias=bias, seed=seed, initial_hidden=rng.uniform(-0.9, 0.9, H_SIZE))


def _onnx_gru_doc(T: int = 5, N: int = 2, initial_h: bool = True, bias: bool = True, seed: int = 1) -> dict:
    """A hand-written node running onnx::GRU (no GRU block metadata): X (T, N, I) per trial."""
    rng = np.random.default_rng(seed)
    H, I = H_SIZE, I_SIZE
    args = {"X": "x", "W": "W", "R": "R", "hidden_size": H, "linear_before_reset": 1}
    params = {"W": {"value": rng.normal(0, 0.6, (1, 3 * H, I)).tolist()},
              "R": {"value": rng.normal(0, 0.6, (1, 3 * H, H)).tolist()}}
    if bias:
        args["B"], params["B"] = "B", {"value": rng.normal(0, 0.6, (1, 6 * H)).tolist()}
    if initial_h:
        args["initial_h"], params["h"] = "h", {"value": rng.uniform(-0.9, 0.9, (1, N, H)).tolist()}
    node = {"input_ports": {"x": {"shape": [T, N, I]}}, "parameters": params,
            "functions": {"y": {"function": {"onnx::GRU": args}}}, "output_ports": {"out": {"value": "y"}}}
    return {"m": {"format": "ModECI MDF v0.4", "generating_application": "test",
                  "graphs": {"g": {"nodes": {"n": node}}}}}


def _forms():
    """(id, program, inputs (batch 3)) for every MDF form of a GRU that lowers to a GRU op."""
    comp = _comp()
    X = np.random.default_rng(7).normal(size=(3, 9, I_SIZE))
    gates, fused = composition_to_dict(comp), composition_to_dict(comp, gru_form="onnx")
    yield "gates", lower(gates), {"GRU__input": X}
    yield "gates-nobias", lower(composition_to_dict(_comp(bias=False))), {"GRU__input": X}
    yield "fused", lower(fused), {"GRU__input": X}
    yield "fused-unfused", lower(fused, fuse_gru=False), {"GRU__input": X}  # its onnx::GRU node as written
    Xn = np.random.default_rng(8).normal(size=(3, 5, 2, I_SIZE))
    yield "onnx::GRU", lower(_onnx_gru_doc()), {"n": Xn}
    yield "onnx::GRU-zero-h", lower(_onnx_gru_doc(initial_h=False, bias=False)), {"n": Xn}
    yield "onnx::GRU-N1", lower(_onnx_gru_doc(N=1)), {"n": Xn[:, :, :1]}


FORMS = {name: (prog, x) for name, prog, x in _forms()}
LAYOUTS = {"gates": ("gates", "trial"), "gates-nobias": ("gates", "trial"), "fused": ("onnx", "trial"),
           "fused-unfused": ("onnx", "onnx"), "onnx::GRU": ("onnx", "onnx"), "onnx::GRU-zero-h": ("onnx", "onnx"),
           "onnx::GRU-N1": ("onnx", "onnx")}


def _reference(prog, inputs):
    return run_program(prog, inputs, sequence=prog.sequence)


# ============================================================================ one canonical op

def test_one_gru_op_in_the_registry():
    assert get_op("GRU_ONNX") is None
    assert canonical_name("onnx::GRU") == "GRU" and get_op("onnx::GRU") is get_op("GRU")
    desc = get_op("GRU").description
    assert "weight_layout" in desc and "axes" in desc and "onnx::GRU" in desc


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_lowers_to_the_canonical_op(form):
    prog, _ = FORMS[form]
    grus = [op for op in prog.ops if get_op(op.fn) is get_op("GRU")]
    assert len(grus) == 1 and grus[0].fn == "GRU"  # canonical: no alias, no second GRU op
    assert (grus[0].args["weight_layout"], grus[0].args["axes"]) == LAYOUTS[form]


# ============================================================================ ONNX: one GRU node, reference numbers

@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_exports_to_one_onnx_gru_node(form):
    prog, inputs = FORMS[form]
    model = program_to_onnx(prog)
    onnx.checker.check_model(model, full_check=True)
    grus = [n for n in model.graph.node if n.op_type == "GRU"]
    assert len(grus) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in grus[0].attribute}
    assert attrs["linear_before_reset"] == 1 and attrs["hidden_size"] == H_SIZE and "layout" not in attrs
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: inputs[i.name].astype(np.float32) for i in session.get_inputs()}
    ref = _reference(prog, inputs)
    got = dict(zip(prog.outputs, session.run(None, feeds)))  # ONNX outputs in the program's order
    for k, v in ref.items():
        assert got[k].shape == v.shape, k
        assert float(np.max(np.abs(got[k] - v))) < F32, k


@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_gru_function_export_for_any_batch(batch):
    prog, _ = FORMS["onnx::GRU"]
    session = ort.InferenceSession(program_to_onnx(prog).SerializeToString(), providers=["CPUExecutionProvider"])
    X = np.random.default_rng(batch).normal(size=(batch, 5, 2, I_SIZE))
    (got,) = session.run(None, {"n": X.astype(np.float32)})
    assert float(np.max(np.abs(got - _reference(prog, {"n": X})["n"]))) < F32


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_on_the_torch_module(form):
    prog, inputs = FORMS[form]
    with torch.no_grad():
        got = ProgramModule(prog)({k: torch.as_tensor(v) for k, v in inputs.items()})
    for k, v in _reference(prog, inputs).items():
        assert float(np.max(np.abs(got[k].numpy() - v))) < F64, k


def test_onnx_gru_function_of_one_sequence_per_trial_matches_per_trial_runs():
    """The op's batch rule (X batched, ONNX's axes) gives what running trial by trial gives."""
    prog, _ = FORMS["onnx::GRU"]
    X = np.random.default_rng(3).normal(size=(3, 5, 2, I_SIZE))
    batched = _reference(prog, {"n": X})["n"]
    for t in range(3):
        assert float(np.max(np.abs(_reference(prog, {"n": X[t:t + 1]})["n"][0] - batched[t]))) < F64


# ============================================================================ plug-in hooks

@pytest.mark.parametrize("path", ["mdfbridge/lowering.py", "mdfbridge/block_lowering.py", "importers/torch_module.py"])
def test_generic_modules_have_no_gru_knowledge(path):
    assert "GRU" not in (Path(__file__).resolve().parents[1] / path).read_text()


@contextmanager
def _without(plugin):
    unregister_block_lowering(plugin)
    try:
        yield
    finally:
        register_block_lowering(plugin)


def test_lowering_without_the_gru_plugin_lowers_blocks_node_by_node():
    comp = _comp()
    with _without(GRU_BLOCKS):
        stepped = lower(composition_to_dict(comp))
        with pytest.raises(ShapeError, match="GRU__gru\\b"):  # that a block is a sequence: the plug-in's
            lower(composition_to_dict(comp, gru_form="onnx"))
    assert not stepped.sequence and stepped.states  # the gate form's recurrent edges: stepped
    assert not any(get_op(op.fn) is get_op("GRU") for op in stepped.ops)
    X = np.random.default_rng(0).normal(size=(2, 6, I_SIZE))
    with_plugin = run_program(lower(composition_to_dict(comp)), {"GRU__input": X}, sequence=True)["GRU__output"]
    assert float(np.max(np.abs(run_program(stepped, {"GRU__input": X}, sequence=True)["GRU__output"]
                               - with_plugin))) < F64


class _Doubler:
    """A toy block lowering: fuses node 'a' and its successor 'b' into one `linear` op (slope 2)."""

    def plan(self, lw):
        if set(lw.nodes) != {"a", "b"}:
            return BlockPlan()

        def emit(lw):
            x = TensorRef(lw.port_tensor[("a", "out")])
            lw.ops.append(Op("ab.y", {"variable0": x, "slope": 2.0, "intercept": 0.0}, "a", fn="linear"))
            lw.port_tensor[("b", "out")] = "ab.y"
        return BlockPlan((FusedBlock("ab", "a", frozenset({"b"}), emit),))

    def learnable_parameters(self, node):
        return None

    def learning_rate(self, node, pid):
        return None


def test_a_block_lowering_of_another_kind_plugs_in():
    doc = {"m": {"format": "ModECI MDF v0.4", "generating_application": "test", "graphs": {"g": {
        "nodes": {"a": {"input_ports": {"x": {"shape": [2]}}, "output_ports": {"out": {"value": "x"}}},
                  "b": {"input_ports": {"x": {"shape": [2]}}, "output_ports": {"out": {"value": "x * 100"}}}},
        "edges": {"e": {"sender": "a", "sender_port": "out", "receiver": "b", "receiver_port": "x"}}}}}}
    plugin = register_block_lowering(_Doubler())
    try:
        prog = lower(doc)
    finally:
        unregister_block_lowering(plugin)
    assert [op.fn for op in prog.ops] == ["linear"]
    assert np.array_equal(run_program(prog, {"a": np.ones((1, 2))})["b"], np.full((1, 2), 2.0))
    assert np.array_equal(run_program(lower(doc), {"a": np.ones((1, 2))})["b"], np.full((1, 2), 100.0))


def test_the_op_record_validates_every_call():
    doc = _onnx_gru_doc()
    doc["m"]["graphs"]["g"]["nodes"]["n"]["functions"]["y"]["function"]["onnx::GRU"]["clip"] = 1.0
    with pytest.raises(UnsupportedError, match=r"node 'n'.*onnx::GRU attribute clip"):
        lower(doc)
    assert get_op("GRU").validate is not None


# ============================================================================ torch module from the record

def test_torch_module_comes_from_the_record_and_maps_weights_exactly():
    comp = _comp(seed=3)
    prog = lower(composition_to_dict(comp))
    module = ProgramModule(prog)
    assert isinstance(module.grus["GRU"], torch.nn.GRU)
    names = {n.rsplit(".", 1)[1]: n for n in prog.params if n.rsplit(".", 1)[1] in comp.block.gates}
    assert len(names) == 12
    # load: per-gate values -> torch layout once, exactly
    rng = np.random.default_rng(4)
    new = {g: rng.normal(size=np.shape(v)) for g, v in comp.block.gates.items()}
    for g, n in names.items():
        prog.params[n].value = new[g]
    module.load_from_program()
    for k, v in gates_to_torch(new).items():
        assert np.array_equal(getattr(module.grus["GRU"], k).detach().numpy(), v), k
    # write-back: torch layout -> per-gate values, exactly
    with torch.no_grad():
        module.grus["GRU"].weight_hh_l0.mul_(0.5)
    module.write_to_program()
    want = torch_to_gates({k: v.detach().numpy() for k, v in module.grus["GRU"].named_parameters()})
    for g, n in names.items():
        assert np.array_equal(prog.params[n].value, want[g]), g


def test_frozen_gates_and_rates_reach_the_torch_parameters():
    comp = GRUComposition(I_SIZE, H_SIZE, bias=True, seed=5, learning_rate=0.3,
                          optimizer_params={"w_ih": False, "w_hh": 0.7})
    module = ProgramModule(lower(composition_to_dict(comp)))
    gru = module.grus["GRU"]
    assert not gru.weight_ih_l0.requires_grad and gru.weight_hh_l0.requires_grad
    assert gru.weight_hh_l0.learning_rate == 0.7 and gru.bias_ih_l0.learning_rate == 0.3
