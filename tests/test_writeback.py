"""Trained weights written back into the MDF document they came from; torch state_dict save/load."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import XOR_INPUTS, XOR_TARGETS, build_xor

import mdfbridge.document
from mdfbridge import DataError, MdfBridgeError
from mdfbridge.api import load_program
from mdfbridge.document import load_document_dict
from mdfbridge.exporters.weights import write_back, write_weights
from mdfbridge.importers.reference import run_program
from mdfbridge.learning import learn

PROJECTIONS = ("input_to_hidden", "hidden_to_output", "bias_to_hidden", "bias_to_output")
TRAIN = dict(epochs=3, learning_rate=0.5, minibatch_size=2, optimizer_type="adam", weight_decay=0.01)


def parse(path: Path) -> dict:
    """The file parsed by plain json/yaml (independent of mdfbridge's reader)."""
    text = Path(path).read_text(encoding="utf-8")
    return json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)


def diff_paths(a, b, path=()):
    """Every leaf path where two parsed documents differ (structure differences count as leaves)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(path + (k,))
            else:
                out += diff_paths(a[k], b[k], path + (k,))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [path]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff_paths(x, y, path + (i,))
        return out
    return [] if (type(a) is type(b) and a == b) else [path]


def location_of(path, locations):
    hits = [loc for loc in locations if tuple(path[:len(loc)]) == loc]
    return hits[0] if hits else None


def saved_xor(tmp_path: Path, ext: str) -> Path:
    path = tmp_path / f"xor.{ext}"
    build_xor().save_mdf(path)
    return path


def files_in(d: Path):
    return sorted(p.name for p in d.iterdir())


# ----------------------------------------------------------------------------------------- write_back

@pytest.mark.parametrize("ext", ["json", "yaml"])
def test_write_back_changes_only_learnable_arrays(tmp_path, ext):
    src = saved_xor(tmp_path, ext)
    before_bytes = src.read_bytes()
    res = learn(src, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **TRAIN)
    out = tmp_path / f"trained.{ext}"
    write_back(src, res.program, out)
    assert src.read_bytes() == before_bytes
    a, b = parse(src), parse(out)
    (model_id,) = a
    locs = {p.location for p in res.program.learnable_params().values()}
    assert len(locs) == 4
    full = {(model_id,) + loc for loc in locs}
    changed = diff_paths(a, b)
    assert changed, "nothing was written"
    assert all(location_of(p, full) is not None for p in changed), [p for p in changed if not location_of(p, full)]
    assert {location_of(p, full) for p in changed} == full  # every learnable matrix changed
    # the non-learnable arrays (bias node values, transfer parameters) are untouched
    for name, p in res.program.params.items():
        if not p.learnable and p.location is not None:
            box_a, box_b = a[model_id], b[model_id]
            for key in p.location:
                box_a, box_b = box_a[key], box_b[key]
            assert box_a == box_b, name
    # the written values are the trained ones
    for p in res.program.learnable_params().values():
        box = b[model_id]
        for key in p.location:
            box = box[key]
        np.testing.assert_array_equal(np.asarray(box, dtype=float), p.value)


@pytest.mark.parametrize("ext", ["json", "yaml"])
def test_reloaded_trained_file_runs_exactly_like_trained_program(tmp_path, ext):
    src = saved_xor(tmp_path, ext)
    res = learn(src, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **TRAIN)
    out = tmp_path / f"trained.{ext}"
    write_back(src, res.program, out)
    expect = run_program(res.program, {"input": XOR_INPUTS})["output"]
    got = run_program(load_program(out), {"input": XOR_INPUTS})["output"]
    assert np.array_equal(got, expect)
    before = run_program(load_program(src), {"input": XOR_INPUTS})["output"]
    assert not np.array_equal(before, expect)


@pytest.mark.parametrize("ext", ["json", "yaml"])
def test_write_back_in_place(tmp_path, ext):
    src = saved_xor(tmp_path, ext)
    original = parse(src)
    res = learn(src, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **TRAIN)
    write_back(src, res.program)
    assert files_in(tmp_path) == [src.name]
    reloaded = load_program(src)
    for name, p in res.program.params.items():
        np.testing.assert_array_equal(reloaded.params[name].value, p.value)
    model_id = next(iter(original))
    full = {(model_id,) + p.location for p in res.program.learnable_params().values()}
    assert {location_of(p, full) for p in diff_paths(original, parse(src))} == full


@pytest.mark.parametrize("ext,target", [("json", "json_text.dumps"), ("yaml", "yaml.dump")])
@pytest.mark.parametrize("in_place", [True, False])
def test_failing_save_leaves_original_untouched(tmp_path, monkeypatch, ext, target, in_place):
    src = saved_xor(tmp_path, ext)
    before = src.read_bytes()
    res = learn(src, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **TRAIN)

    def boom(*args, **kwargs):
        fileobj = args[1] if len(args) > 1 else kwargs.get("stream") or kwargs.get("fp")
        if fileobj is not None:
            fileobj.write("partial garbage")
        raise RuntimeError("disk on fire")

    module, attr = target.split(".")
    monkeypatch.setattr(getattr(mdfbridge.document, module), attr, boom)
    out = None if in_place else tmp_path / f"trained.{ext}"
    with pytest.raises(Exception, match="disk on fire"):
        write_back(src, res.program, out)
    monkeypatch.undo()
    assert src.read_bytes() == before
    assert files_in(tmp_path) == [src.name]  # no temp file, no output file


@pytest.mark.parametrize("ext", ["json", "yaml"])
def test_nan_weights_are_refused_and_nothing_written(tmp_path, ext):
    src = saved_xor(tmp_path, ext)
    before = src.read_bytes()
    res = learn(src, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=1, learning_rate=0.1)
    res.program.params["hidden_to_output.matrix"].value = res.program.params["hidden_to_output.matrix"].value.copy()
    res.program.params["hidden_to_output.matrix"].value[3, 0] = np.nan
    for out in (tmp_path / f"trained.{ext}", None):
        with pytest.raises(DataError, match="hidden_to_output"):
            write_back(src, res.program, out)
        assert src.read_bytes() == before
        assert files_in(tmp_path) == [src.name]
    with pytest.raises(DataError):
        write_weights(load_document_dict(src), res.program)


# ----------------------------------------------------------------------------------------- PsyNeuLink form

B0 = [[0.5, -0.3], [0.2, 0.8]]


def pnl_doc() -> dict:
    """What PsyNeuLink writes for a projection: a `<proj>_dummy_node` running onnx::MatMul, B inline."""
    def edge(s, r, rp):
        return {"sender": s, "sender_port": "o", "receiver": r, "receiver_port": rp}

    nodes = {
        "A": {"input_ports": {"A_in": {"shape": [2]}}, "output_ports": {"o": {"value": "A_in"}}},
        "P_dummy_node": {"input_ports": {"p_in": {"shape": [2]}},
                         "functions": {"mm": {"function": {"onnx::MatMul": {"A": "p_in", "B": copy.deepcopy(B0)}}}},
                         "output_ports": {"o": {"value": "mm"}}},
        "O": {"input_ports": {"O_in": {"shape": [2]}},
              "functions": {"f": {"function": "logistic", "args": {"variable0": "O_in", "gain": 1.0, "bias": 0.0,
                                                                    "offset": 0.0}}},
              "output_ports": {"o": {"value": "f"}}},
    }
    edges = {"e1": edge("A", "P_dummy_node", "p_in"), "e2": edge("P_dummy_node", "O", "O_in")}
    return {"pnl": {"format": "ModECI MDF v0.4", "generating_application": "PsyNeuLink 0.21",
                    "graphs": {"g": {"nodes": nodes, "edges": edges}}}}


@pytest.mark.parametrize("ext", ["json", "yaml"])
def test_psyneulink_dummy_node_inline_matrix_is_trained_and_written_back(tmp_path, ext):
    src = tmp_path / f"pnl.{ext}"
    doc = pnl_doc()
    src.write_text(json.dumps(doc, indent=2) if ext == "json" else yaml.safe_dump(doc), encoding="utf-8")
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -1.0]])
    t = np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5], [0.2, 0.3]])
    res = learn(src, {"A": x}, {"O": t}, epochs=5, learning_rate=0.5)
    (name, p), = res.program.learnable_params().items()
    loc = ("graphs", "g", "nodes", "P_dummy_node", "functions", "mm", "function", "onnx::MatMul", "B")
    assert p.location == loc
    assert not np.allclose(p.value, B0)
    out = tmp_path / f"trained.{ext}"
    write_back(src, res.program, out)
    a, b = parse(src), parse(out)
    changed = diff_paths(a, b)
    assert changed and all(c[:len(loc) + 1] == ("pnl",) + loc for c in changed), changed
    box = b["pnl"]
    for key in loc:
        box = box[key]
    np.testing.assert_array_equal(np.asarray(box), p.value)
    got = run_program(load_program(out), {"A": x})["O"]
    assert np.array_equal(got, run_program(res.program, {"A": x})["O"])


# ----------------------------------------------------------------------------------------- state_dict

def outputs(comp):
    return comp.evaluate({"input": XOR_INPUTS})["output"]


def test_state_dict_save_load_reproduces_outputs(tmp_path):
    comp = build_xor(0)
    comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=5, learning_rate=0.5)
    path = tmp_path / "xor.pt"
    comp.save(path)
    fresh = build_xor(1)
    assert not np.array_equal(outputs(fresh), outputs(comp))
    fresh.load(path)
    assert np.array_equal(outputs(fresh), outputs(comp))
    for p, q in zip(comp.projections, fresh.projections):
        assert p.name == q.name
        assert np.array_equal(p.matrix, q.matrix)
    # training after load goes on from the loaded weights
    a, b = comp.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=1), \
        fresh.learn({"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=1)
    assert np.array_equal(a, b)
    assert np.array_equal(comp.learn_result.outputs["output"], fresh.learn_result.outputs["output"])


def test_state_dict_keys_are_projection_names_and_load_weights_only(tmp_path):
    comp = build_xor()
    path = tmp_path / "xor.pt"
    comp.save(path)
    state = torch.load(path, weights_only=True)
    assert set(PROJECTIONS) <= set(state)
    for p in comp.projections:
        np.testing.assert_array_equal(state[p.name].numpy(), p.matrix)
        assert state[p.name].dtype == torch.float64
    assert files_in(tmp_path) == ["xor.pt"]


def test_state_dict_holds_only_projection_matrices(tmp_path):
    comp = build_xor()
    path = tmp_path / "xor.pt"
    comp.save(path)
    assert set(torch.load(path, weights_only=True)) == set(PROJECTIONS)


@pytest.mark.parametrize("how", ["wrong_key", "wrong_shape", "missing_key"])
def test_loading_mismatched_state_dict_raises_data_error_naming_it(tmp_path, how):
    comp = build_xor()
    path = tmp_path / "xor.pt"
    comp.save(path)
    state = torch.load(path, weights_only=True)
    if how == "wrong_key":
        state["input_to_hiddn"] = state.pop("input_to_hidden")
        name = "input_to_hiddn"
    elif how == "wrong_shape":
        state["hidden_to_output"] = torch.zeros(3, 10, dtype=torch.float64)
        name = "hidden_to_output"
    else:
        del state["bias_to_output"]
        name = "bias_to_output"
    torch.save(state, path)
    target = build_xor(1)
    before = {p.name: p.matrix.copy() for p in target.projections}
    with pytest.raises(DataError, match=name):
        target.load(path)
    for p in target.projections:
        assert np.array_equal(p.matrix, before[p.name]), p.name


def test_loading_a_non_state_dict_file_raises_data_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(MdfBridgeError):
        build_xor().load(path)
