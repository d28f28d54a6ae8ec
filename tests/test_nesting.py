"""Nested graphs (a node holding a graph, as PsyNeuLink writes nested compositions): flattened to the numbers of
the same graph written flat (modeci-mdf's engine runs the flat one), trained values written back inside the
nesting."""
from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pytest
from mdf_fixtures import edge
from oracles import modeci_outputs

from mdfbridge import lower
from mdfbridge.errors import SchemaError, UnsupportedError
from mdfbridge.importers.reference import run_program

W = [[0.5, -1.0, 0.25], [2.0, 0.1, -0.3]]


def layer(fn: str, shape: int) -> dict:
    return {"input_ports": {"x": {"shape": [shape]}}, "functions": {"f": {"value": fn}},
            "output_ports": {"y": {"value": "f"}}}


def nested_doc() -> dict:
    proj = {"input_ports": {"x": {"shape": [2]}}, "parameters": {"W": {"value": W}},
            "functions": {"f": {"function": "MatMul", "args": {"A": "x", "B": "W"}}},
            "output_ports": {"y": {"value": "f"}}, "metadata": {"mdfbridge": {"learnable_parameters": ["W"]}}}
    inner = {"metadata": {"type": "Composition"},
             "nodes": {"hidden": layer("numpy.tanh(x)", 2), "proj": proj},
             "edges": {"hidden_proj": edge("hidden", "y", "proj", "x")},
             "conditions": {"node_specific": {"proj": {"type": "EveryNCalls", "kwargs": {"dependency": "hidden",
                                                                                        "n": 1}}},
                            "termination": {"environment_sequence": {"type": "Never", "kwargs": {}}}}}
    return {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {
        "nodes": {"inp": layer("x * 2", 2), "inner": inner, "out": layer("x + 1", 3)},
        "edges": {"in_hidden": edge("inp", "y", "hidden", "x"),  # an inner node by its id
                  "inner_out": edge("inner", "y", "out", "x")}}}}}  # the nested node, by a port one inner node has


def flat_doc() -> dict:
    d = nested_doc()
    g = d["m"]["graphs"]["g"]
    inner = g["nodes"].pop("inner")
    g["nodes"].update(inner["nodes"])
    g["edges"].update(inner["edges"])
    g["edges"]["inner_out"]["sender"] = "proj"
    return d


def test_a_nested_graph_runs_as_the_same_graph_written_flat():
    x = np.random.default_rng(1).normal(size=(5, 2))
    ours = run_program(lower(nested_doc()), {"inp": x})
    np.testing.assert_allclose(ours["out"], np.tanh(x * 2) @ np.array(W) + 1, rtol=1e-14)
    theirs = modeci_outputs(flat_doc(), {"x": x})
    np.testing.assert_allclose(ours["out"], theirs["out"], rtol=1e-12)
    prog = lower(nested_doc())
    assert prog.schedule is not None and prog.schedule.conditions == {
        "proj": {"type": "EveryNCalls", "kwargs": {"dependency": "hidden", "n": 1}}}


def test_parameters_inside_a_nested_graph_are_read_and_written_back_where_they_stand(tmp_path):
    from mdfbridge import load_program
    from mdfbridge.exporters.weights import write_back

    src = tmp_path / "nested.json"
    src.write_text(json.dumps(nested_doc()))
    prog = load_program(src)
    (name, param), = prog.learnable_params().items()
    assert param.location == ("graphs", "g", "nodes", "inner", "nodes", "proj", "parameters", "W", "value")
    param.value = param.value * 3
    out = tmp_path / "trained.json"
    write_back(src, prog, out)
    written = json.loads(out.read_text())
    expected = nested_doc()
    expected["m"]["graphs"]["g"]["nodes"]["inner"]["nodes"]["proj"]["parameters"]["W"]["value"] = \
        (np.array(W) * 3).tolist()
    written["m"].pop("generating_application", None)
    expected["m"].pop("generating_application", None)
    assert written == expected  # the nesting kept, only the learnable array changed


def test_nested_graph_errors_name_the_place():
    clash = nested_doc()
    clash["m"]["graphs"]["g"]["nodes"]["inner"]["nodes"]["inp"] = layer("x", 2)
    with pytest.raises(SchemaError, match="node id 'inp' is used both inside a nested graph and outside it"):
        lower(clash)
    ambiguous = nested_doc()
    ambiguous["m"]["graphs"]["g"]["edges"]["inner_out"]["sender_port"] = "nope"
    with pytest.raises(SchemaError, match="edge 'inner_out' names nested graph 'inner' with sender_port 'nope'"):
        lower(ambiguous)
    ends = nested_doc()
    ends["m"]["graphs"]["g"]["nodes"]["inner"]["conditions"]["termination"] = {
        "environment_state_update": {"type": "AfterNCalls", "kwargs": {"dependency": "hidden", "n": 2}}}
    with pytest.raises(UnsupportedError, match="nested graph's termination condition 'AfterNCalls'"):
        lower(ends)


def test_a_nested_graph_cut_off_from_the_rest_is_warned_about(caplog):
    """PsyNeuLink 0.21 drops the projections into and out of a nested composition when it exports."""
    d = nested_doc()
    d["m"]["graphs"]["g"]["edges"] = {}
    with caplog.at_level(logging.WARNING, logger="mdfbridge.nesting"):
        lower(copy.deepcopy(d))
    assert "nested graph 'inner' has no edges into or out of it" in caplog.text


def test_a_matrix_held_in_edge_metadata_is_refused_unless_it_is_the_identity():
    """PsyNeuLink's non-simple edge format keeps projection matrices in edge metadata (modeci-mdf's engine drops
    them silently)."""
    d = flat_doc()
    meta = {"functions": {"MatrixTransform_Function_0": {"function": "onnx::MatMul", "args": {"B": [[1.0, 0.0],
                                                                                                  [0.0, 1.0]]}}}}
    d["m"]["graphs"]["g"]["edges"]["in_hidden"]["metadata"] = meta
    lower(copy.deepcopy(d))  # the identity changes nothing
    meta["functions"]["MatrixTransform_Function_0"]["args"]["B"] = [[2.0, 0.0], [0.0, 1.0]]
    with pytest.raises(UnsupportedError, match=r"edge 'in_hidden' holds a matrix of shape \(2, 2\) in its metadata"):
        lower(d)


def test_psyneulinks_gating_mechanisms_are_refused_naming_the_node(tmp_path):
    """PsyNeuLink's GRUComposition (as its exporter writes it once its AfterNodes conditions are removed): the gates
    multiply through edge metadata that MDF does not execute."""
    from pathlib import Path

    from mdfbridge import load_program

    path = Path(__file__).parent / "data" / "psyneulink" / "gru_no_conditions.json"
    with pytest.raises(UnsupportedError, match=r"gru_no_conditions.json at \$\.gru\.graphs\.gru\.nodes\.RESET: node "
                                               r"'RESET' is a PsyNeuLink GatingMechanism"):
        load_program(path)


def test_psyneulinks_nested_export_with_its_dropped_projections_restored_gives_psyneulinks_numbers():
    """PsyNeuLink 0.21 writes the inner composition as a node holding a graph but drops the projections into and
    out of it; restored (as the `<proj>_dummy_node`s it writes for other projections, matrices from its own
    record), the flattened graph computes PsyNeuLink's numbers."""
    from pathlib import Path

    data = Path(__file__).parent / "data" / "psyneulink"
    d = json.loads((data / "nested.json").read_text())
    expected = json.loads((data / "nested.expected.json").read_text())
    graph = d["outer"]["graphs"]["outer"]
    inner = graph["nodes"]["inner"]["nodes"]
    edges = graph.setdefault("edges", {})
    links = {"outer_to_inner": ("outer_in", "inner_in"), "inner_to_outer": ("inner_out", "outer_out")}
    for proj, (sender, receiver) in links.items():
        nodes = {**graph["nodes"], **inner}
        out_port = next(iter(nodes[sender]["output_ports"]))
        in_port = next(iter(nodes[receiver]["input_ports"]))
        matrix = expected["matrices"][proj]
        graph["nodes"][f"{proj}_dummy_node"] = {
            "input_ports": {"x": {"shape": [1, len(matrix)]}},
            "functions": {"mm": {"function": "onnx::MatMul", "args": {"A": "x", "B": matrix}}},
            "output_ports": {"y": {"value": "mm", "shape": [len(matrix[0])]}}}
        edges[f"{proj}_pre"] = edge(sender, out_port, f"{proj}_dummy_node", "x")
        edges[f"{proj}_post"] = edge(f"{proj}_dummy_node", "y", receiver, in_port)
    prog = lower(d)
    x = np.asarray(expected["inputs"]["outer_in"], dtype=float)
    got = run_program(prog, {"outer_in": x.reshape((len(x),) + tuple(prog.inputs["outer_in"].shape))})
    np.testing.assert_allclose(got["outer_out"].reshape(len(x), -1), expected["outputs"]["outer_out"],
                               rtol=0, atol=1e-12)
