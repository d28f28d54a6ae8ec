"""Tests for mdfbridge.document: reading, validating, writing and converting MDF v0.4 documents."""
from __future__ import annotations

import json
import keyword
import os
import types
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from conftest import REPO
from modeci_mdf.mdf import (
    Condition,
    ConditionSet,
    Edge,
    Function,
    Graph,
    InputPort,
    Model,
    Node,
    OutputPort,
    Parameter,
    ParameterCondition,
)

from mdfbridge import document
from mdfbridge.document import (
    MDF_FORMAT,
    convert_document,
    load_document,
    load_document_dict,
    load_schema,
    model_from_dict,
    model_to_dict,
    save_document,
    schema_path,
    validate_dict,
)
from mdfbridge.errors import DocumentError, SchemaError

# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

def build_xor_model() -> Model:
    """A model touching most of MDF: ports, shapes, functions (built-in, expression, ONNX),
    stateful parameters, parameter conditions, edges with parameters and graph conditions."""
    model = Model(id="xor", metadata={"description": "test model"})
    graph = Graph(id="xor_graph", parameters={"dt": 0.1})
    model.graphs.append(graph)

    inp = Node(id="input_node", metadata={"color": "1 0 0"})
    inp.parameters.append(Parameter(id="input_level", value=[[1.0, 2.0], [3.0, 4.0]]))
    inp.parameters.append(Parameter(id="t", default_initial_value=0, time_derivative="1"))
    inp.parameters.append(Parameter(id="count", value="count + 1", conditions=[
        ParameterCondition(id="reset", test="count > 5", value=0)]))
    inp.parameters.append(Parameter(id="lin", function="linear",
                                    args={"variable0": "input_level", "slope": 2, "intercept": 0}))
    inp.output_ports.append(OutputPort(id="out_port", value="input_level", shape=(2, 2)))
    graph.nodes.append(inp)

    hidden = Node(id="hidden")
    hidden.input_ports.append(InputPort(id="in_port", shape=(2, 2), type="float", reduce="add",
                                        default_value=0))
    hidden.functions.append(Function(id="f1", function="linear",
                                     args={"variable0": "in_port", "slope": 2, "intercept": 1}))
    hidden.functions.append(Function(id="f2", value="f1 * 2"))
    hidden.functions.append(Function(id="f3", function="onnx::Relu", args={"X": "f2"}))
    hidden.output_ports.append(OutputPort(id="out", value="f3"))
    graph.nodes.append(hidden)

    graph.edges.append(Edge(id="e1", sender="input_node", sender_port="out_port", receiver="hidden",
                            receiver_port="in_port", parameters={"weight": 2}))
    graph.conditions = ConditionSet(
        node_specific={"hidden": Condition(type="EveryNCalls", dependencies="input_node", n=1)},
        termination={"environment_state_update": Condition(type="AllHaveRun")})
    return model


@pytest.fixture
def xor_dict() -> dict:
    return json.loads(build_xor_model().to_json())


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def nodes(d: dict) -> dict:
    return d["xor"]["graphs"]["xor_graph"]["nodes"]


# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------

def test_schema_file_is_found_and_is_valid_2020_12():
    path = schema_path()
    assert path.name == "mdf-0.4.schema.json" and path.parent.name == "schemas"
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "$comment" in schema
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_rejects_exactly_the_python_keywords():
    keywords = load_schema()["$defs"]["id"]["allOf"][1]["not"]["enum"]
    assert sorted(keywords) == sorted(keyword.kwlist)


def test_schema_accepts_modeci_mdf_output(xor_dict):
    # the schema alone (no mdfbridge code) accepts what modeci-mdf writes
    jsonschema.Draft202012Validator(load_schema()).validate(xor_dict)
    yaml_dict = yaml.safe_load(build_xor_model().to_yaml())
    jsonschema.Draft202012Validator(load_schema()).validate(yaml_dict)
    validate_dict(xor_dict)
    validate_dict(yaml_dict)


def test_schema_accepts_function_single_entry_form_and_empty_model():
    model = Model(id="m")
    graph = Graph(id="g")
    model.graphs.append(graph)
    node = Node(id="n")
    node.input_ports.append(InputPort(id="x"))
    node.functions.append(Function(id="relu", function={"onnx::Relu": {"X": "x"}}))
    node.output_ports.append(OutputPort(id="y", value="relu"))
    graph.nodes.append(node)
    d = json.loads(model.to_json())
    assert d["m"]["graphs"]["g"]["nodes"]["n"]["functions"]["relu"] == {"function": {"onnx::Relu": {"X": "x"}}}
    validate_dict(d)
    validate_dict(json.loads(Model(id="empty").to_json()))


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".json", ".yaml", ".yml"])
def test_model_save_and_load_back_equal(tmp_path, ext):
    model = build_xor_model()
    path = tmp_path / f"xor{ext}"
    save_document(model, path)
    loaded = load_document(path)
    assert isinstance(loaded, Model)
    assert loaded.id == "xor"
    assert model_to_dict(loaded) == model_to_dict(model)
    # the written layout is exactly modeci-mdf's own to_json() layout
    assert load_document_dict(path) == json.loads(model.to_json())
    # parameter conditions come back as ParameterCondition objects (modeci-mdf alone leaves dicts)
    count = loaded.graphs[0].get_node("input_node").get_parameter("count")
    assert isinstance(count.conditions[0], ParameterCondition)
    assert (count.conditions[0].id, count.conditions[0].test, count.conditions[0].value) == ("reset", "count > 5", 0)


def test_json_yaml_json_round_trip(tmp_path, xor_dict):
    src = tmp_path / "a.json"
    save_document(xor_dict, src)
    convert_document(src, tmp_path / "b.yaml")
    convert_document(tmp_path / "b.yaml", tmp_path / "c.json")
    assert load_document_dict(tmp_path / "c.json") == load_document_dict(src) == xor_dict
    assert json.loads((tmp_path / "c.json").read_text()) == xor_dict
    assert yaml.safe_load((tmp_path / "b.yaml").read_text()) == xor_dict
    # same text when converted again: JSON output is deterministic (indent 4, key order kept)
    assert (tmp_path / "c.json").read_text() == src.read_text()


def test_load_document_dict_keeps_source_exactly(tmp_path):
    # the single-entry Function form and dict-form parameter conditions are kept verbatim in the dict,
    # and normalised in the Model
    d = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": {
        "input_ports": {"x": {"shape": [3]}},
        "parameters": {"p": {"value": 0, "conditions": {"big": {"test": "x > 1", "value": 1}}}},
        "functions": {"relu": {"function": {"onnx::Relu": {"X": "x"}}}},
        "output_ports": {"y": {"value": "relu"}}}}}}}}
    path = write(tmp_path / "m.json", json.dumps(d))
    assert load_document_dict(path) == d
    model = load_document(path)
    node = model.graphs[0].get_node("n")
    assert node.functions[0].function == "onnx::Relu"
    assert node.functions[0].args == {"X": "x"}
    cond = node.get_parameter("p").conditions[0]
    assert isinstance(cond, ParameterCondition) and cond.id == "big"
    assert load_document_dict(path) == d  # conversion did not mutate anything


def test_model_from_dict_and_model_id_named_id():
    d = {"id": {"graphs": {"g": {"nodes": {"id": {"parameters": {"p": {"value": 1}}}}}}}}
    model = model_from_dict(d)
    assert model.id == "id"
    assert model.graphs[0].nodes[0].id == "id"
    assert model.graphs[0].nodes[0].parameters[0].value == 1


def test_conversion_failure_is_reported_as_schema_error(monkeypatch, xor_dict):
    def boom(*args, **kwargs):
        raise ValueError("structure failed")

    fake_mdf = types.SimpleNamespace(converter=types.SimpleNamespace(structure=boom))
    monkeypatch.setattr(document, "_mdf", fake_mdf)
    with pytest.raises(SchemaError, match="could not build the model.*structure failed") as info:
        model_from_dict(xor_dict, "x.json")
    assert info.value.json_path == "$.xor"


def test_save_model_with_numpy_values(tmp_path):
    model = Model(id="np_model", metadata={"scale": np.float32(0.5), "sizes": np.array([1, 2])})
    graph = Graph(id="g")
    model.graphs.append(graph)
    node = Node(id="n")
    node.input_ports.append(InputPort(id="x", shape=(np.int64(2), np.int64(3))))
    node.parameters.append(Parameter(id="W", value=np.arange(6, dtype=np.float32).reshape(2, 3)))
    node.parameters.append(Parameter(id="b", value=np.float64(0.25)))
    node.parameters.append(Parameter(id="k", value=np.int64(7)))
    node.functions.append(Function(id="f", function="linear",
                                   args={"variable0": "x", "slope": np.float32(2.0), "intercept": "b"}))
    node.output_ports.append(OutputPort(id="y", value="f"))
    graph.nodes.append(node)

    for ext in (".json", ".yaml"):
        path = tmp_path / f"np{ext}"
        save_document(model, path, generating_application="mdfbridge tests")
        d = load_document_dict(path)
        body = d["np_model"]
        assert body["format"] == MDF_FORMAT
        assert body["generating_application"] == "mdfbridge tests"
        assert body["metadata"] == {"scale": 0.5, "sizes": [1, 2]}
        params = body["graphs"]["g"]["nodes"]["n"]["parameters"]
        assert params["W"]["value"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
        assert params["b"]["value"] == 0.25 and type(params["b"]["value"]) is float
        assert params["k"]["value"] == 7 and type(params["k"]["value"]) is int
        n = body["graphs"]["g"]["nodes"]["n"]
        assert n["input_ports"]["x"]["shape"] == [2, 3]
        assert n["functions"]["f"]["args"]["slope"] == 2.0
        loaded = load_document(path)
        assert loaded.graphs[0].nodes[0].get_parameter("W").value == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_save_sets_format_and_generating_application(tmp_path, xor_dict):
    xor_dict["xor"]["format"] = "ModECI MDF v0.3"
    del xor_dict["xor"]["generating_application"]
    path = tmp_path / "x.json"
    save_document(xor_dict, path, generating_application="me 1.0")
    body = load_document_dict(path)["xor"]
    assert list(body)[:2] == ["format", "generating_application"]
    assert body["format"] == "ModECI MDF v0.4" and body["generating_application"] == "me 1.0"
    assert xor_dict["xor"]["format"] == "ModECI MDF v0.3"  # the caller's dict is not modified


def test_new_file_is_not_private(tmp_path, xor_dict):
    path = tmp_path / "x.json"
    save_document(xor_dict, path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------------------------
# syntax errors, duplicates, structure, extensions
# --------------------------------------------------------------------------------------------

def test_json_syntax_error_reports_line_and_column(tmp_path):
    path = write(tmp_path / "bad.json", '{\n  "m": {\n    "graphs" {}\n  }\n}\n')
    with pytest.raises(DocumentError) as info:
        load_document(path)
    err = info.value
    assert (err.line, err.column) == (3, 14)
    assert err.path == str(path)
    assert "Expecting ':' delimiter" in str(err)
    assert str(err).startswith(f"{path}:3:14:")


def test_json_trailing_comma_line_and_column(tmp_path):
    path = write(tmp_path / "bad.json", '{\n  "m": {\n    "graphs": {},\n  }\n}\n')
    with pytest.raises(DocumentError) as info:
        load_document_dict(path)
    assert (info.value.line, info.value.column) == (4, 3)


def test_yaml_syntax_error_reports_line_and_column(tmp_path):
    path = write(tmp_path / "bad.yaml", "m:\n  graphs: a: b\n")
    with pytest.raises(DocumentError) as info:
        load_document(path)
    err = info.value
    assert (err.line, err.column) == (2, 12)  # 1-based: the second ':' on line 2
    assert "mapping values are not allowed here" in str(err)
    assert err.path == str(path)


def test_yaml_indentation_error_line_and_column(tmp_path):
    path = write(tmp_path / "bad.yml", "m:\n  graphs:\n    g: 1\n   bad: 2\n")
    with pytest.raises(DocumentError) as info:
        load_document_dict(path)
    assert (info.value.line, info.value.column) == (4, 4)


def test_json_duplicate_key_rejected_with_position(tmp_path):
    path = write(tmp_path / "dup.json", '{\n  "m": {\n    "graphs": {},\n    "graphs": {}\n  }\n}\n')
    with pytest.raises(DocumentError, match=r"duplicate key 'graphs' \(first defined at line 3, column 5\)") as info:
        load_document_dict(path)
    assert (info.value.line, info.value.column) == (4, 5)


def test_json_nested_duplicate_key_located_despite_tricky_strings(tmp_path):
    text = ('{"m": {"graphs": {"g": {"nodes": {"a": {"parameters": {"p": {"value": "x\\", {\\"a\\": 1"}}},'
            ' "b": {}, "a": {}}}}}}')
    path = write(tmp_path / "dup.json", text)
    with pytest.raises(DocumentError, match="duplicate key 'a'") as info:
        load_document_dict(path)
    assert info.value.line == 1
    assert info.value.column == text.rindex('"a"') + 1


def test_yaml_duplicate_key_rejected_with_position(tmp_path):
    path = write(tmp_path / "dup.yaml", "m:\n  graphs:\n    g: {}\n  graphs:\n    h: {}\n")
    with pytest.raises(DocumentError, match=r"duplicate key 'graphs' \(first defined at line 2, column 3\)") as info:
        load_document_dict(path)
    assert (info.value.line, info.value.column) == (4, 3)


def test_yaml_merge_keys_are_not_duplicates_and_dates_stay_strings(tmp_path):
    path = write(tmp_path / "m.yaml",
                 "m:\n  metadata:\n    base: &b {x: 1, y: 2}\n    other:\n      <<: *b\n      x: 3\n"
                 "    created: 2020-01-01\n")
    d = load_document_dict(path)
    assert d["m"]["metadata"]["other"] == {"x": 3, "y": 2}
    assert d["m"]["metadata"]["created"] == "2020-01-01"


def test_yaml_python_tags_are_rejected(tmp_path):
    path = write(tmp_path / "evil.yaml", 'm: !!python/object/apply:os.system ["echo hi"]\n')
    with pytest.raises(DocumentError, match="could not determine a constructor") as info:
        load_document_dict(path)
    assert info.value.line == 1


def test_yaml_unquoted_on_key_gets_a_hint(tmp_path):
    path = write(tmp_path / "m.yaml", "m:\n  metadata:\n    on: 1\n")
    with pytest.raises(SchemaError, match="quote it"):
        load_document_dict(path)


@pytest.mark.parametrize("name,text,match", [
    ("empty.json", "", "file is empty"),
    ("blank.yaml", "  \n\n", "file is empty"),
    ("comment.yaml", "# only a comment\n", "document is empty"),
    ("list.json", "[1, 2]", "top level must be a mapping"),
    ("scalar.yaml", "hello\n", "top level must be a mapping"),
    ("none.json", "{}", "exactly one model, found 0"),
    ("two.yaml", "a: {}\nb: {}\n", "exactly one model, found 2: a, b"),
])
def test_not_a_single_model_document(tmp_path, name, text, match):
    with pytest.raises(DocumentError, match=match):
        load_document(write(tmp_path / name, text))


@pytest.mark.parametrize("name", ["model.txt", "model.xml", "model", "model.json.bak"])
def test_unknown_extension(tmp_path, name):
    path = write(tmp_path / name, "{}")
    with pytest.raises(DocumentError, match=r"unsupported file extension .*supported: \.json, \.yaml, \.yml"):
        load_document(path)
    with pytest.raises(DocumentError, match="unsupported file extension"):
        save_document({"m": {}}, tmp_path / ("out_" + name))
    with pytest.raises(DocumentError, match="unsupported file extension"):
        convert_document(path, tmp_path / "out.json")


def test_uppercase_extension_is_accepted(tmp_path, xor_dict):
    path = tmp_path / "X.JSON"
    save_document(xor_dict, path)
    assert load_document_dict(path) == xor_dict


def test_missing_file(tmp_path):
    with pytest.raises(DocumentError, match="cannot read file"):
        load_document(tmp_path / "missing.json")


# --------------------------------------------------------------------------------------------
# schema / semantic errors name the JSON path
# --------------------------------------------------------------------------------------------

NODES = "$.xor.graphs.xor_graph.nodes"


def load_mutated(tmp_path, d, ext=".json"):
    path = tmp_path / f"m{ext}"
    if ext == ".json":
        path.write_text(json.dumps(d))
    else:
        path.write_text(yaml.safe_dump(d, sort_keys=False))
    return load_document(path)


@pytest.mark.parametrize("ext", [".json", ".yaml"])
def test_unknown_key_in_node(tmp_path, xor_dict, ext):
    nodes(xor_dict)["hidden"]["foo"] = 1
    with pytest.raises(SchemaError) as info:
        load_mutated(tmp_path, xor_dict, ext)
    err = info.value
    assert err.json_path == f"{NODES}.hidden.foo"
    assert "unexpected key 'foo'" in str(err)
    assert "allowed: functions, input_ports, metadata, output_ports, parameters" in str(err)
    assert err.path == str(tmp_path / f"m{ext}")


def test_unknown_keys_in_port_parameter_function_edge(xor_dict):
    cases = [
        (["hidden", "input_ports", "in_port"], f"{NODES}.hidden.input_ports.in_port.dtype"),
        (["input_node", "output_ports", "out_port"], f"{NODES}.input_node.output_ports.out_port.dtype"),
        (["input_node", "parameters", "t"], f"{NODES}.input_node.parameters.t.dtype"),
        (["hidden", "functions", "f1"], f"{NODES}.hidden.functions.f1.dtype"),
    ]
    for keys, expected in cases:
        d = json.loads(json.dumps(xor_dict))
        target = nodes(d)
        for k in keys:
            target = target[k]
        target["dtype"] = "float"
        with pytest.raises(SchemaError, match="unexpected key 'dtype'") as info:
            validate_dict(d)
        assert info.value.json_path == expected
    xor_dict["xor"]["graphs"]["xor_graph"]["edges"]["e1"]["weight"] = 1
    with pytest.raises(SchemaError, match="unexpected key 'weight'") as info:
        validate_dict(xor_dict)
    assert info.value.json_path == "$.xor.graphs.xor_graph.edges.e1.weight"


@pytest.mark.parametrize("shape,path_suffix,match", [
    ("(2, x)", "", "'(2, x)' is not of type 'array'"),
    (2, "", "2 is not of type 'array'"),
    ([2, "2"], "[1]", "'2' is not of type 'integer'"),
    ([2, 1.5], "[1]", "1.5 is not of type 'integer'"),
    ([2, -1], "[1]", "-1 is less than the minimum of 0"),
])
def test_wrong_shape(tmp_path, xor_dict, shape, path_suffix, match):
    nodes(xor_dict)["hidden"]["input_ports"]["in_port"]["shape"] = shape
    with pytest.raises(SchemaError, match=match.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")) as info:
        load_mutated(tmp_path, xor_dict)
    assert info.value.json_path == f"{NODES}.hidden.input_ports.in_port.shape{path_suffix}"


def test_wrong_parameter_value_types(xor_dict):
    nodes(xor_dict)["input_node"]["parameters"]["t"]["time_derivative"] = 1
    with pytest.raises(SchemaError, match="'time_derivative' must be an expression string, got 1") as info:
        validate_dict(xor_dict)
    assert info.value.json_path == f"{NODES}.input_node.parameters.t.time_derivative"


def test_edge_to_unknown_node(tmp_path, xor_dict):
    xor_dict["xor"]["graphs"]["xor_graph"]["edges"]["e1"]["receiver"] = "output_node"
    with pytest.raises(SchemaError) as info:
        load_mutated(tmp_path, xor_dict)
    err = info.value
    assert err.json_path == "$.xor.graphs.xor_graph.edges.e1.receiver"
    assert "edge 'e1'" in str(err) and "receiver node 'output_node' does not exist" in str(err)
    assert "nodes: input_node, hidden" in str(err)


def test_edge_to_unknown_port(xor_dict):
    xor_dict["xor"]["graphs"]["xor_graph"]["edges"]["e1"]["sender_port"] = "nope"
    with pytest.raises(SchemaError, match="edge 'e1': output port 'nope' does not exist on sender node "
                                          "'input_node'") as info:
        validate_dict(xor_dict)
    assert info.value.json_path == "$.xor.graphs.xor_graph.edges.e1.sender_port"

    d = json.loads(build_xor_model().to_json())
    d["xor"]["graphs"]["xor_graph"]["edges"]["e1"]["receiver_port"] = "out"  # an output port, not input
    with pytest.raises(SchemaError, match="input port 'out' does not exist on receiver node 'hidden'"):
        validate_dict(d)


def test_edge_missing_field(xor_dict):
    del xor_dict["xor"]["graphs"]["xor_graph"]["edges"]["e1"]["sender_port"]
    with pytest.raises(SchemaError, match="missing required key 'sender_port'") as info:
        validate_dict(xor_dict)
    assert info.value.json_path == "$.xor.graphs.xor_graph.edges.e1"


def test_condition_for_unknown_node(xor_dict):
    xor_dict["xor"]["graphs"]["xor_graph"]["conditions"]["node_specific"]["ghost"] = {"type": "Always"}
    with pytest.raises(SchemaError, match="condition for node 'ghost'") as info:
        validate_dict(xor_dict)
    assert info.value.json_path == "$.xor.graphs.xor_graph.conditions.node_specific.ghost"


@pytest.mark.parametrize("bad_id", ["in", "class", "None", "lambda"])
def test_keyword_id_rejected(tmp_path, xor_dict, bad_id):
    nodes(xor_dict)[bad_id] = nodes(xor_dict).pop("hidden")
    with pytest.raises(SchemaError, match=f"invalid id '{bad_id}': Python keywords cannot be used") as info:
        load_mutated(tmp_path, xor_dict)
    assert info.value.json_path == f"{NODES}.{bad_id}"


@pytest.mark.parametrize("bad_id,where", [
    ("my-node", f"{NODES}['my-node']"),
    ("1st", f"{NODES}['1st']"),
    ("has space", f"{NODES}['has space']"),
    ("", f"{NODES}['']"),
])
def test_non_identifier_node_id_rejected(xor_dict, bad_id, where):
    nodes(xor_dict)[bad_id] = nodes(xor_dict).pop("hidden")
    with pytest.raises(SchemaError, match="must be a Python identifier") as info:
        validate_dict(xor_dict)
    assert info.value.json_path == where


def test_non_identifier_ids_everywhere(xor_dict):
    spots = [
        (lambda d: d["xor"]["graphs"], "xor_graph", "$.xor.graphs['x-g']"),
        (lambda d: nodes(d)["hidden"]["input_ports"], "in_port", f"{NODES}.hidden.input_ports['x-g']"),
        (lambda d: nodes(d)["hidden"]["output_ports"], "out", f"{NODES}.hidden.output_ports['x-g']"),
        (lambda d: nodes(d)["hidden"]["functions"], "f1", f"{NODES}.hidden.functions['x-g']"),
        (lambda d: nodes(d)["input_node"]["parameters"], "t", f"{NODES}.input_node.parameters['x-g']"),
        (lambda d: d["xor"]["graphs"]["xor_graph"]["edges"], "e1", "$.xor.graphs.xor_graph.edges['x-g']"),
    ]
    for get, old, expected in spots:
        d = json.loads(json.dumps(xor_dict))
        container = get(d)
        container["x-g"] = container.pop(old)
        with pytest.raises(SchemaError, match="invalid id 'x-g'") as info:
            validate_dict(d)
        assert info.value.json_path == expected
    with pytest.raises(SchemaError, match="invalid id 'my model'") as info:
        validate_dict({"my model": {}})
    assert info.value.json_path == "$['my model']"


def test_function_rules(xor_dict):
    funcs = nodes(xor_dict)["hidden"]["functions"]
    funcs["f9"] = {"args": {"a": 1}}
    with pytest.raises(SchemaError, match="a function needs 'function'.*or 'value'") as info:
        validate_dict(xor_dict)
    assert info.value.json_path == f"{NODES}.hidden.functions.f9"
    funcs["f9"] = {"function": {"onnx::Relu": {"X": "f1"}}, "args": {"X": "f1"}}
    with pytest.raises(SchemaError, match="'args' cannot be combined"):
        validate_dict(xor_dict)
    funcs["f9"] = {"function": 3}
    with pytest.raises(SchemaError, match="'function' must be a function name string") as info:
        validate_dict(xor_dict)
    assert info.value.json_path == f"{NODES}.hidden.functions.f9.function"
    funcs["f9"] = {"value": "f1 + x", "args": {"x": 2}}  # value + args is allowed
    validate_dict(xor_dict)


def test_parameter_rules(xor_dict):
    params = nodes(xor_dict)["input_node"]["parameters"]
    params["p"] = {}
    with pytest.raises(SchemaError, match="a parameter needs at least one of"):
        validate_dict(xor_dict)
    params["p"] = {"value": 1, "args": {"a": 1}}
    with pytest.raises(SchemaError, match="'args' requires 'function'"):
        validate_dict(xor_dict)
    params["p"] = {"function": {"linear": {}}}
    with pytest.raises(SchemaError, match="a parameter's 'function' must be a function name string"):
        validate_dict(xor_dict)
    params["p"] = {"value": 0, "conditions": [{"id": "a", "test": "p > 1", "value": 0},
                                              {"id": "a", "test": "p > 2", "value": 1}]}
    with pytest.raises(SchemaError, match="duplicate condition id 'a'") as info:
        validate_dict(xor_dict)
    assert info.value.json_path == f"{NODES}.input_node.parameters.p.conditions[1].id"
    # any JSON value is a valid value: numbers, strings, nested lists, objects
    for value in (1, -2.5, "t * 2", [[1, 2], [3, 4]], {"a": [1, "b"]}, True):
        params["p"] = {"value": value}
        validate_dict(xor_dict)


def test_legacy_condition_args_rejected(xor_dict):
    cond = xor_dict["xor"]["graphs"]["xor_graph"]["conditions"]["node_specific"]["hidden"]
    cond["args"] = cond.pop("kwargs")
    with pytest.raises(SchemaError, match="unexpected key 'args'"):
        validate_dict(xor_dict)


def test_schema_error_message_includes_file_and_path(tmp_path, xor_dict):
    nodes(xor_dict)["hidden"]["input_ports"]["in_port"]["reduce"] = "sum"
    with pytest.raises(SchemaError) as info:
        load_mutated(tmp_path, xor_dict)
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'm.json'} at {NODES}.hidden.input_ports.in_port.reduce: ")
    assert "'sum' is not one of ['overwrite', 'add', 'multiply']" in text


# --------------------------------------------------------------------------------------------
# atomic save
# --------------------------------------------------------------------------------------------

ORIGINAL = '{"keep": "me"}\n'


def _snapshot(directory: Path) -> list:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("ext,target", [(".json", "json_text.dumps"), (".yaml", "yaml.dump")])
def test_failed_save_leaves_original_untouched(tmp_path, monkeypatch, xor_dict, ext, target):
    path = write(tmp_path / f"model{ext}", ORIGINAL)
    before = _snapshot(tmp_path)

    def failing_dump(obj, stream=None, *args, **kwargs):
        if stream is not None:  # (yaml writes as it goes: a partial document is in the temp file)
            stream.write("{ partial output")
        raise RuntimeError("disk on fire")

    module, name = target.split(".")
    monkeypatch.setattr(getattr(document, module), name, failing_dump)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_document(xor_dict, path)
    assert path.read_text() == ORIGINAL
    assert _snapshot(tmp_path) == before  # no temporary file left behind


def test_failed_replace_leaves_original_untouched(tmp_path, monkeypatch, xor_dict):
    path = write(tmp_path / "model.json", ORIGINAL)
    before = _snapshot(tmp_path)

    def failing_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(document.os, "replace", failing_replace)
    with pytest.raises(DocumentError, match="cannot write file: Permission denied"):
        save_document(xor_dict, path)
    assert path.read_text() == ORIGINAL
    assert _snapshot(tmp_path) == before


def test_invalid_document_is_not_written(tmp_path, xor_dict):
    path = write(tmp_path / "model.json", ORIGINAL)
    nodes(xor_dict)["hidden"]["foo"] = 1
    with pytest.raises(SchemaError, match="unexpected key 'foo'"):
        save_document(xor_dict, path)
    assert path.read_text() == ORIGINAL
    assert _snapshot(tmp_path) == ["model.json"]
    with pytest.raises(SchemaError, match="cannot save a value of type object"):
        save_document({"m": {"metadata": {"x": object()}}}, tmp_path / "other.json")
    assert _snapshot(tmp_path) == ["model.json"]


def test_save_replaces_existing_file(tmp_path, xor_dict):
    path = write(tmp_path / "model.yaml", "old: content\n")
    save_document(xor_dict, path)
    assert load_document_dict(path) == xor_dict
    assert _snapshot(tmp_path) == ["model.yaml"]


def test_save_rejects_other_types(tmp_path):
    with pytest.raises(TypeError):
        save_document("not a model", tmp_path / "x.json")


def _noted(doc: dict) -> dict:
    """The XOR document with `notes` fields on the model, its graph, a node and a parameter (as modeci-mdf's
    examples carry them)."""
    import copy

    doc = copy.deepcopy(doc)
    model = next(iter(doc.values()))
    model["notes"] = "a model note"
    graph = next(iter(model["graphs"].values()))
    graph["notes"] = "a graph note"
    node = graph["nodes"]["hidden"]
    node["notes"] = "a node note"
    next(iter(node["parameters"].values()))["notes"] = "a parameter note"
    return doc


def test_notes_are_read_liberally_and_refused_by_strict_validation(tmp_path):
    from mdfbridge import lower
    from mdfbridge.api import load_mdf, load_program
    from mdfbridge.importers.reference import run_program

    plain = json.loads((REPO / "examples" / "xor.mdf.json").read_text())
    noted = write(tmp_path / "noted.json", json.dumps(_noted(plain)))
    assert load_document_dict(noted)["xor_model"]["notes"] == "a model note"  # kept as written
    x = {"input": np.array([[0.0, 1.0], [1.0, 1.0]])}
    got = run_program(load_program(noted), x)["output"]
    np.testing.assert_array_equal(got, run_program(lower(plain), x)["output"])  # the same numbers
    assert load_mdf(noted).id == "xor_model"
    with pytest.raises(SchemaError, match=r"\$\.xor_model\.notes: unexpected key 'notes'"):
        load_document_dict(noted, strict=True)


def test_write_back_keeps_a_documents_notes(tmp_path):
    from mdfbridge.api import load_program
    from mdfbridge.exporters.weights import write_back

    noted = write(tmp_path / "noted.json", json.dumps(_noted(json.loads((REPO / "examples" / "xor.mdf.json")
                                                                        .read_text()))))
    prog = load_program(noted)
    for p in prog.learnable_params().values():
        p.value = p.value + 0.5
    out = tmp_path / "trained.json"
    write_back(noted, prog, out)
    written = json.loads(out.read_text())
    assert written["xor_model"]["notes"] == "a model note"
    assert written["xor_model"]["graphs"]["xor"]["nodes"]["hidden"]["notes"] == "a node note"


def test_a_nested_graph_is_named_as_such_by_strict_validation(tmp_path):
    d = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {
        "inner": {"nodes": {"a": {}}, "edges": {}, "conditions": {}}}}}}}
    path = write(tmp_path / "nested.json", json.dumps(d))
    with pytest.raises(SchemaError, match=r"\$\.m\.graphs\.g\.nodes\.inner.*holds a nested graph \(nodes, edges, "
                                          r"conditions\).*strict validation"):
        load_document_dict(path, strict=True)
    assert load_document_dict(path) == d  # the default reader reads it (flattened when lowered), kept as written
