"""Composition API, MDF export, and agreement with modeci-mdf's own engine (the oracle for MDF meaning)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import XOR_INPUTS, XOR_TARGETS
from mdf_fixtures import nested_composition
from oracles import modeci_outputs

from mdfbridge import (
    Composition,
    CompositionError,
    DataError,
    Exponential,
    Linear,
    Logistic,
    MappingProjection,
    ReLU,
    SoftMax,
    Tanh,
    TransferMechanism,
    composition_from_mdf,
    load_mdf,
)
from mdfbridge.document import load_document_dict

TOL = 1e-12  # both sides float64


def _modeci(comp: Composition, inputs: dict) -> dict:
    per_port = {f"{comp.input_dict({k: v}).popitem()[0]}_input": np.asarray(v, float) for k, v in inputs.items()}
    return modeci_outputs(comp.to_mdf(), per_port)


def test_linear_3_to_2_fixed_weights_matches_numpy_and_modeci():
    a, b = TransferMechanism("a", 3), TransferMechanism("b", 2, Linear(slope=2.0, intercept=0.5))
    w = np.array([[1.0, -1.0], [0.5, 2.0], [-3.0, 0.25]])
    comp = Composition("lin", pathways=[[a, w, b]])
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    ours = comp.evaluate({a: x})["b"]
    np.testing.assert_allclose(ours, 2.0 * (x @ w) + 0.5, rtol=0, atol=TOL)
    np.testing.assert_allclose(_modeci(comp, {a: x})["b"], ours, rtol=0, atol=TOL)


def test_xor_random_weights_matches_modeci(xor):
    ours = xor.evaluate({"input": XOR_INPUTS})["output"]
    theirs = _modeci(xor, {"input": XOR_INPUTS})["output"]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)
    assert ours.shape == (4, 1)


@pytest.mark.parametrize("fn", [Linear(slope=0.5, intercept=-1), Logistic(gain=2, bias=0.3, offset=0.1), Tanh(gain=1.5),
                                ReLU(gain=2, bias=0.1, leak=0.05), SoftMax(gain=3), Exponential(rate=0.5, scale=2)])
def test_every_transfer_function_matches_modeci(fn):
    a, b = TransferMechanism("a", 3), TransferMechanism("b", 4, fn)
    w = np.random.default_rng(1).normal(size=(3, 4))
    comp = Composition("c", pathways=[[a, w, b]])
    x = np.random.default_rng(2).normal(size=(6, 3))
    ours = comp.evaluate({a: x})["b"]
    np.testing.assert_allclose(ours, _modeci(comp, {a: x})["b"], rtol=1e-12, atol=TOL)


def test_nested_composition_matches_modeci_and_rebuilds():
    outer, a, o = nested_composition()
    x = np.random.default_rng(3).normal(size=(7, 2))
    ours = outer.evaluate({a: x})["o"]
    np.testing.assert_allclose(ours, _modeci(outer, {a: x})["o"], rtol=0, atol=TOL)
    model = outer.to_mdf()
    ids = [n.id for n in model.graphs[0].nodes]
    assert "inner__h1" in ids and "inner__deeper__d" in ids
    rebuilt = composition_from_mdf(model)
    np.testing.assert_allclose(rebuilt.evaluate({"a": x})["o"], ours, rtol=0, atol=0)
    assert [n.name for n in rebuilt.nodes if isinstance(n, Composition)] == ["inner"]


def test_afferents_are_summed():
    a, b, c = TransferMechanism("a", 2), TransferMechanism("b", 2), TransferMechanism("c", 2)
    comp = Composition("sum")
    comp.add_projection(MappingProjection(matrix=np.eye(2)), a, c)
    comp.add_projection(MappingProjection(matrix=2 * np.eye(2)), b, c)
    out = comp.evaluate({a: [[1.0, 2.0]], b: [[10.0, 20.0]]})["c"]
    np.testing.assert_array_equal(out, [[21.0, 42.0]])
    np.testing.assert_allclose(_modeci(comp, {a: [[1.0, 2.0]], b: [[10.0, 20.0]]})["c"], out)


def test_default_matrices_follow_psyneulink():
    a, b, c = TransferMechanism("a", 3), TransferMechanism("b", 3), TransferMechanism("c", 2)
    comp = Composition("d", pathways=[[a, b, c]])
    comp.flatten()
    p_ab, p_bc = comp.projections
    np.testing.assert_array_equal(p_ab.matrix, np.eye(3))
    np.testing.assert_array_equal(p_bc.matrix, np.ones((3, 2)))


def test_random_initialisation_is_seeded():
    def build(seed):
        a, b = TransferMechanism("a", 3), TransferMechanism("b", 4)
        comp = Composition("r", pathways=[[a, "random", b]], seed=seed)
        comp.flatten()
        return comp.projections[0].matrix

    np.testing.assert_array_equal(build(7), build(7))
    assert not np.array_equal(build(7), build(8))


def test_run_follows_psyneulink_results(xor):
    last = xor.run({"input": XOR_INPUTS})
    assert len(xor.results) == 4 and len(last) == 1
    np.testing.assert_allclose(last[0], xor.evaluate({"input": XOR_INPUTS})["output"][-1])


def test_run_uses_updated_matrices(xor):
    before = xor.evaluate({"input": XOR_INPUTS})["output"]
    xor.projections[0].matrix = xor.projections[0].matrix * 2
    after = xor.evaluate({"input": XOR_INPUTS})["output"]
    assert not np.allclose(before, after)


def test_matrix_shape_mismatch_is_reported():
    a, b = TransferMechanism("a", 3), TransferMechanism("b", 2)
    comp = Composition("bad", pathways=[[a, np.ones((2, 2)), b]])
    with pytest.raises(CompositionError, match=r"\(2, 2\).*\(3, 2\)"):
        comp.evaluate({a: [[1, 2, 3]]})


def test_bad_input_shape_is_reported(xor):
    with pytest.raises(DataError, match="expected \\(trials, 2\\)"):
        xor.evaluate({"input": [[1.0, 2.0, 3.0]]})
    with pytest.raises(DataError, match="unknown node"):
        xor.evaluate({"nope": [[1.0, 2.0]]})


def test_mdf_file_roundtrip_json_and_yaml(tmp_path, xor):
    for ext in ("json", "yaml"):
        path = tmp_path / f"xor.mdf.{ext}"
        xor.save_mdf(str(path))
        doc = load_document_dict(path)
        model = next(iter(doc.values()))
        assert model["format"] == "ModECI MDF v0.4"
        assert model["generating_application"].startswith("mdfbridge ")
        rebuilt = composition_from_mdf(str(path))
        np.testing.assert_allclose(rebuilt.evaluate({"input": XOR_INPUTS})["output"],
                                   xor.evaluate({"input": XOR_INPUTS})["output"], rtol=0, atol=0)
        assert load_mdf(path).graphs[0].id == "xor"


@pytest.mark.parametrize("edit,message,place", [
    (lambda g: g["nodes"]["hidden"]["metadata"]["mdfbridge"].update(function="Softsign"),
     r"unknown transfer function 'Softsign'; one of Linear, Logistic", r"nodes\.hidden\.metadata\.mdfbridge\.function"),
    (lambda g: g["nodes"]["hidden"]["metadata"]["mdfbridge"].pop("size"),
     r"metadata.mdfbridge lacks size", r"nodes\.hidden\.metadata\.mdfbridge"),
    (lambda g: g["nodes"]["input_to_hidden"]["metadata"]["mdfbridge"].update(sender="nowhere"),
     r"projection 'input_to_hidden' names a node 'nowhere' among the mechanisms that the document lacks",
     r"nodes\.input_to_hidden"),
    (lambda g: g["metadata"]["mdfbridge"]["composition"]["nodes"].append("ghost"),
     r"lists node 'ghost', which no node's metadata names", r"metadata\.mdfbridge\.composition"),
], ids=["unknown_function", "missing_size", "unknown_sender", "unknown_tree_node"])
def test_edited_composition_metadata_is_one_schema_error_naming_the_place(xor, edit, message, place):
    from mdfbridge.errors import SchemaError
    from mdfbridge.exporters.mdf import composition_to_dict

    doc = composition_to_dict(xor)
    edit(next(iter(next(iter(doc.values()))["graphs"].values())))
    with pytest.raises(SchemaError, match=message) as err:
        composition_from_mdf(doc)
    assert err.value.json_path and __import__("re").search(place, err.value.json_path), err.value.json_path


# ------------------------------------------------------------------------------------------- automatic names

def _unnamed_composition() -> Composition:
    """2-3-1 logistic net, nothing named: mechanisms, projections (pathway and add_projection), a nested
    composition and the composition itself get automatic names."""
    inner = Composition(pathways=[[TransferMechanism(size=3, function=Logistic()), "random",
                                   TransferMechanism(size=3, function=Tanh())]])
    i, o = TransferMechanism(size=2), TransferMechanism(size=1, function=Logistic())
    comp = Composition(seed=3)
    comp.add_linear_processing_pathway([i, "random", inner])
    comp.add_projection(MappingProjection(matrix="random"), inner.nodes[1], o)
    comp.add_projection(sender=i, receiver=o)
    return comp


def _names(comp: Composition) -> list:
    nodes, projs = comp.flatten()
    return [comp.name] + [f.mechanism.name for f in nodes] + [p.projection.name for p in projs]


def test_automatic_names_are_per_composition_not_per_process(tmp_path):
    TransferMechanism(), MappingProjection(), Composition()  # built before: must not shift the names below
    first = _unnamed_composition()
    TransferMechanism(size=4), Composition(pathways=[[TransferMechanism(), TransferMechanism()]])
    second = _unnamed_composition()
    assert _names(first) == _names(second) == [
        "Composition_0", "TransferMechanism_0", "TransferMechanism_1", "TransferMechanism_2", "TransferMechanism_3",
        "MappingProjection_0", "MappingProjection_1", "MappingProjection_2", "MappingProjection_3"]
    assert first.nodes[1].name == "Composition_1"  # the nested one, renamed off the outer's provisional name
    first.save_mdf(tmp_path / "first.json")
    second.save_mdf(tmp_path / "second.json")
    assert (tmp_path / "first.json").read_text() == (tmp_path / "second.json").read_text()


def test_weights_saved_by_one_composition_load_into_an_identically_built_one(tmp_path):
    a = _unnamed_composition()
    a.learn({a.nodes[0]: XOR_INPUTS}, {a.nodes[2]: XOR_TARGETS}, epochs=3, learning_rate=0.5)
    a.save(tmp_path / "weights.pt")
    trained = a.evaluate({a.nodes[0]: XOR_INPUTS})["TransferMechanism_3"]
    b = _unnamed_composition()
    assert not np.allclose(b.evaluate({b.nodes[0]: XOR_INPUTS})["TransferMechanism_3"], trained)
    b.load(tmp_path / "weights.pt")
    for pa, pb in zip(a.flatten()[1], b.flatten()[1]):
        np.testing.assert_array_equal(pb.projection.matrix, pa.projection.matrix)
    np.testing.assert_array_equal(b.evaluate({b.nodes[0]: XOR_INPUTS})["TransferMechanism_3"], trained)


def test_unnamed_nodes_get_distinct_names_given_names_stay():
    a, b = TransferMechanism(size=2), TransferMechanism(size=2)
    comp = Composition("c", pathways=[[a, b]])
    assert (a.name, b.name) == ("TransferMechanism_0", "TransferMechanism_1")
    np.testing.assert_array_equal(comp.evaluate({a: [[1.0, 2.0]]})[b.name], [[1.0, 2.0]])
    # nested: the inner composition's automatic names are made unique in the outer tree, given names kept
    inner = Composition("inner", pathways=[[TransferMechanism(size=2), TransferMechanism("TransferMechanism_5", 2)]])
    outer = Composition("outer")
    first = outer.add_node(TransferMechanism(size=2))
    outer.add_linear_processing_pathway([first, inner, TransferMechanism(size=2)])
    names = [f.mechanism.name for f in outer.flatten()[0]]
    assert names == ["TransferMechanism_0", "TransferMechanism_1", "TransferMechanism_5", "TransferMechanism_2"]
    assert len({p.projection.name for p in outer.flatten()[1]}) == len(outer.flatten()[1])
    # a node added to a nested composition avoids the names of the tree it is in
    late = inner.add_node(TransferMechanism(size=2))
    assert late.name == "TransferMechanism_3"
