"""Liberal reading (mdfbridge.document_forms): the forms other writers use load, run to the engine's numbers and
are refused by strict validation; what mdfbridge writes stays in its own form."""
from __future__ import annotations

import json

import numpy as np
import pytest
from oracles import modeci_values

from mdfbridge import load_program
from mdfbridge.document import convert_document, load_document_dict
from mdfbridge.document_forms import clean_form
from mdfbridge.errors import SchemaError
from mdfbridge.importers.reference import run_program


def other_writers_doc() -> dict:
    """ids as modeci-mdf's onnx_to_mdf writes them, a v0.1 bare parameter value, a v0.1 shape string."""
    return {"ONNX Model": {"format": "ModECI MDF v0.4", "graphs": {"main graph": {
        "nodes": {
            "/A/Add": {"input_ports": {"x.1": {"shape": "(2, 3)"}},
                       "parameters": {"B": 1.5, "/A/Add": {"function": "onnx::Add", "args": {"A": "x.1", "B": "B"}}},
                       "output_ports": {"_A_Add_output_0": {"value": "/A/Add"}}},
            "onnx::Relu_1": {"input_ports": {"_A_Add_output_0": {"shape": [2, 3]}},
                             "parameters": {"onnx::Relu_1": {"function": "onnx::Relu",
                                                             "args": {"X": "_A_Add_output_0"}}},
                             "output_ports": {"_9": {"value": "onnx::Relu_1"}}}},
        "edges": {"Edge /A/Add to onnx::Relu_1": {"sender": "/A/Add", "sender_port": "_A_Add_output_0",
                                                  "receiver": "onnx::Relu_1", "receiver_port": "_A_Add_output_0"}}}}}}


def test_ids_that_are_not_identifiers_and_v01_forms_load_and_run(tmp_path):
    path = tmp_path / "onnx_export.json"
    path.write_text(json.dumps(other_writers_doc()))
    prog = load_program(path)
    x = np.random.default_rng(0).normal(size=(4, 2, 3))
    out = run_program(prog, {"/A/Add": x})
    np.testing.assert_allclose(out["onnx::Relu_1"], np.maximum(x + 1.5, 0.0), rtol=1e-15)
    clean = load_document_dict(path)
    node = clean["ONNX Model"]["graphs"]["main graph"]["nodes"]["/A/Add"]
    assert node["parameters"]["B"] == {"value": 1.5} and node["input_ports"]["x.1"]["shape"] == [2, 3]


def test_the_engine_agrees_on_such_a_file(tmp_path):
    doc = other_writers_doc()  # (the engine cannot read a port called 'x.1': modelspec evaluates it as Python)
    node = doc["ONNX Model"]["graphs"]["main graph"]["nodes"]["/A/Add"]
    node["input_ports"] = {"input": {"shape": [2, 3], "default_value": [[-2.0, 0.0, 1.0], [3.0, -1.0, 0.5]]}}
    node["parameters"]["/A/Add"]["args"]["A"] = "input"
    theirs = modeci_values(clean_form(doc))
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    ours = run_program(load_program(path), {})
    np.testing.assert_allclose(ours["onnx::Relu_1"][0], theirs["onnx::Relu_1._9"][0], rtol=0, atol=0)


def test_strict_validation_refuses_each_of_these_forms(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(other_writers_doc()))
    with pytest.raises(SchemaError, match="invalid id 'ONNX Model'"):
        load_document_dict(path, strict=True)
    plain = other_writers_doc()
    plain["m"] = plain.pop("ONNX Model")
    with pytest.raises(SchemaError, match="invalid id"):  # 'main graph', '/A/Add', ...
        load_document_dict(_write(tmp_path / "p.json", plain), strict=True)


def test_python_keywords_stay_refused_as_ids(tmp_path):
    doc = other_writers_doc()
    nodes = doc["ONNX Model"]["graphs"]["main graph"]["nodes"]
    nodes["/A/Add"]["input_ports"]["in"] = {"shape": [1]}
    with pytest.raises(SchemaError, match="Python keywords"):
        load_document_dict(_write(tmp_path / "k.json", doc))


def test_convert_keeps_another_writers_ids_and_writes_the_clean_forms(tmp_path):
    src = _write(tmp_path / "src.json", other_writers_doc())
    dst = tmp_path / "dst.yaml"
    convert_document(src, dst)
    back = load_document_dict(dst)
    node = back["ONNX Model"]["graphs"]["main graph"]["nodes"]["/A/Add"]
    assert node["parameters"]["B"] == {"value": 1.5} and node["input_ports"]["x.1"]["shape"] == [2, 3]
    assert "Edge /A/Add to onnx::Relu_1" in back["ONNX Model"]["graphs"]["main graph"]["edges"]


def test_edge_parameters_are_not_mistaken_for_bare_parameter_values():
    doc = other_writers_doc()
    doc["ONNX Model"]["graphs"]["main graph"]["edges"]["Edge /A/Add to onnx::Relu_1"]["parameters"] = {"weight": 2}
    edge = clean_form(doc)["ONNX Model"]["graphs"]["main graph"]["edges"]["Edge /A/Add to onnx::Relu_1"]
    assert edge["parameters"] == {"weight": 2}


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path
