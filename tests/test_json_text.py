"""mdfbridge.json_text: the JSON text mdfbridge writes reads back to the same document (the standard library's
json as the oracle), numeric arrays on one line, NaN/Infinity and integers beyond 64 bits written as the standard
library writes them."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdfbridge import json_text
from mdfbridge.document import load_document_dict, save_document

DOC = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": {
    "parameters": {"W": {"value": [[0.5, -1e-05, 3.0], [1e300, 2.5e-300, 0.1]]}, "b": {"value": [True, False]}},
    "metadata": {"text": "x[1,\n 2]", "empty": [], "mixed": [1, "a", None], "deep": [[[1, 2], [3, 4]]]},
    "input_ports": {"x": {"shape": [3]}}, "output_ports": {"y": {"value": "W"}}}}}}}}


@pytest.mark.parametrize("finite", [True, False])
def test_reads_back_the_same(finite):
    text = json_text.dumps(DOC, finite=finite)
    assert json.loads(text) == DOC
    lines = text.decode().splitlines()
    assert '"shape": [3]' in text.decode()
    rows = [json.loads(line.strip().rstrip(",")) for line in lines if line.strip().startswith("[") and "]" in line]
    assert rows == [[0.5, -1e-05, 3.0], [1e300, 2.5e-300, 0.1], [1, 2], [3, 4]]  # a matrix: a row a line
    assert any(line.strip() == '"value": [true,false]' for line in lines)
    assert '"text": "x[1,\\n 2]"' in text.decode()  # a string's text is never touched
    assert text.endswith(b"}\n")


def test_both_paths_lay_out_alike():
    finite = json_text.dumps(DOC, finite=True).decode().splitlines()
    exact = json_text.dumps(DOC, finite=False).decode().splitlines()
    assert [line.split(":")[0] for line in finite] == [line.split(":")[0] for line in exact]


@pytest.mark.parametrize("value,written", [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")])
def test_non_finite_floats_are_kept(tmp_path, value, written):
    doc = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": {
        "parameters": {"p": {"value": [1.0, value]}, "q": {"value": value}},
        "output_ports": {"y": {"value": "p"}}}}}}}}
    path = tmp_path / "m.json"
    save_document(doc, path)
    assert f"[1.0,{written}]" in path.read_text()
    back = load_document_dict(path)["m"]["graphs"]["g"]["nodes"]["n"]["parameters"]
    np.testing.assert_array_equal(back["p"]["value"], [1.0, value])
    assert back["q"]["value"] == value or (math.isnan(value) and math.isnan(back["q"]["value"]))


def test_integers_beyond_64_bits():
    doc = {"a": [2 ** 70, 1], "b": -(2 ** 65), "c": 2 ** 64 - 1}
    for finite in (True, False):
        assert json.loads(json_text.dumps(doc, finite=finite)) == doc


def test_numpy_values_are_saved_as_lists(tmp_path):
    doc = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": {
        "parameters": {"W": {"value": np.arange(6, dtype=np.float32).reshape(2, 3)},
                       "k": {"value": np.int64(3)}, "z": {"value": np.array([np.nan, 1.0])}},
        "output_ports": {"y": {"value": "W"}}}}}}}}
    path = tmp_path / "m.json"
    save_document(doc, path)
    params = load_document_dict(path)["m"]["graphs"]["g"]["nodes"]["n"]["parameters"]
    assert params["W"]["value"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert params["k"]["value"] == 3
    assert math.isnan(params["z"]["value"][0])


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 80), 2 ** 80), st.floats(allow_nan=False),
                     st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))
_docs = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                     max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(_docs)
def test_any_document_reads_back(doc):
    assert json.loads(json_text.dumps(doc, finite=False)) == doc
    if "Infinity" not in json.dumps(doc):  # (finite=True: the caller's promise)
        assert json.loads(json_text.dumps(doc, finite=True)) == doc


@pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '{"a": {"b": 1, "c": {"b": 2, "b": 3}}}', "[NaN]",
                                  "[1, Infinity]", "[18446744073709551616]", '{"x": -123456789012345678901}',
                                  # a duplicate beside the "::" of a function name (the colon count's shortcut)
                                  '{"f": {"onnx::Relu": {"X": "x"}}, "f": 2}', '{"a::": 1, "a::": 1}',
                                  '{"a": 1, "a": "::"}', '[12345678901234567890.5]'])
def test_loads_leaves_to_the_standard_library_what_orjson_reads_otherwise(text):
    assert json_text.loads(text, 64) is None


@pytest.mark.parametrize("text", ['{"a:b": "c:d", "e\\":": [1, -0.00012345678901234567, 1.5e30]}',
                                  '{"n12": 184467440737095516, "\\\\": "\\\\\\"{:"}', '[[1, 2], {"k" : [3]}]'])
def test_loads_reads_what_the_standard_library_reads(text):
    assert json_text.loads(text, 64) == json.loads(text)


@pytest.mark.parametrize("text, plain", [
    ('{"e1000": [1, 2], "edge_e20000": 1, "x": 0.12345678901234567890}', True),  # ids and fractions: the fast path
    ("[1e400]", False), ("[1.5E-308]", False), ("[2.0e+100]", False),  # 3-digit exponents: the token scan decides
    ("[12345678901234567890]", False), ("[-12345678901234567890]", False), ("12345678901234567890", False)])
def test_the_fast_readers_pre_check(text, plain):
    from mdfbridge.parse_limits import json_text_is_plain
    assert json_text_is_plain(text.encode(), integer_digits=20) is plain


@pytest.mark.parametrize("value", [-9223372036854775809, -(10 ** 18) * 9 - 1, 18446744073709551616, 10 ** 19])
def test_integers_orjson_would_read_as_floats_go_to_the_standard_library(value):
    """orjson reads an integer below -2**63 (19 digits) or above 2**64 - 1 as a float; the fast reader leaves such a
    text to the standard library (found by the property test below), which keeps the integer exactly."""
    text = json.dumps({"v": [value]})
    fast = json_text.loads(text, 64)
    assert fast is None or fast == {"v": [value]} and type(fast["v"][0]) is int


@settings(max_examples=200, deadline=None)
@given(_docs)
def test_loads_agrees_with_the_standard_library(doc):
    text = json.dumps(doc)
    fast = json_text.loads(text, 64)
    assert fast is None or fast == json.loads(text)


def test_loads_reads_a_document_as_mdfbridge_writes_it():
    doc = {"m": {"graphs": {"g": {"nodes": {"n": {"parameters": {"W": {"value": [[0.5, -1e-05], [3.0, 0.1]]}},
                                                  "metadata": {"text": "x[1,\n 2]:", "k": [1, "a", None]}}}}}}}
    text = json_text.dumps(doc, finite=True).decode()
    assert json_text.loads(text, 64) == doc
    assert json_text.loads(text, 5) is None  # deeper than the bound: left to the checks that name the place


def test_arrays_are_written_in_their_dtype_shortest_form(tmp_path):
    w32 = np.array([[0.1, 1 / 3], [2.5, -1e-8]], np.float32)
    doc = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": {
        "parameters": {"W": {"value": w32}, "v": {"value": np.arange(4.0)[::-2]},
                       "be": {"value": np.array([1.5, 2.0], ">f8")}, "s": {"value": np.float32(0.1)},
                       "z": {"value": np.array([np.nan, 0.1], np.float32)}, "i": {"value": np.arange(3)}},
        "output_ports": {"y": {"value": "W"}}}}}}}}
    path = tmp_path / "m.json"
    save_document(doc, path)
    text = path.read_text()
    assert "[0.1,0.33333334]" in text  # float32's shortest digits, not float64's 0.10000000149011612
    params = load_document_dict(path)["m"]["graphs"]["g"]["nodes"]["n"]["parameters"]
    np.testing.assert_array_equal(np.float32(params["W"]["value"]), w32)  # the float32 values exactly
    assert params["v"]["value"] == [3.0, 1.0] and params["be"]["value"] == [1.5, 2.0]
    assert params["i"]["value"] == [0, 1, 2] and params["s"]["value"] == float(np.float32(0.1))
    assert math.isnan(params["z"]["value"][0]) and np.float32(params["z"]["value"][1]) == np.float32(0.1)


_tricky_text = st.text(st.sampled_from(list('ab:[]{}"\\,\n\x7fé')), max_size=8)
_tricky_docs = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 63), 2 ** 63 - 1), st.floats(allow_nan=False,
              allow_infinity=False), _tricky_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_tricky_text, inner, max_size=4)),
    max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(_tricky_docs)
def test_key_count_and_depth_from_the_encoded_text_equal_the_walks(doc):
    """The fast reader's duplicate-key and depth checks of a document of many small objects come from orjson's
    compact text: the same figures as the walk over the parsed document, whatever its strings hold."""
    assert json_text._keys_and_depth_encoded(doc) == json_text._keys_and_depth(doc)


@pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '{"x\\"": {"b": 1, "b": [2]}}', '{"k": "a\\"}:", "k": 0}'])
def test_a_duplicate_key_in_a_document_of_many_small_objects_goes_to_the_standard_library(text):
    assert 200 * text.count(":") > len(text)  # (the encoded-text count decides)
    assert json_text.loads(text, 64) is None


def test_a_document_nested_past_what_orjson_writes_goes_to_the_checks():
    """orjson reads 1,000 levels but writes only 254: the key count from its text is not taken; the checks that
    name the place refuse the depth."""
    text = '{"a": ' * 300 + "1" + "}" * 300
    assert 200 * text.count(":") > len(text)
    assert json_text.loads(text, 1000) is None


@settings(max_examples=200, deadline=None)
@given(_docs)
def test_dumps_plain_writes_dumps_text_or_leaves_it_to_the_careful_path(doc):
    text = json_text.dumps_plain(doc)
    if text is None:  # what the careful path must see: a null (None or non-finite), NUL, beyond 64 bits
        assert "null" in json.dumps(doc) or "\\u0000" in json.dumps(doc) or "Infinity" in json.dumps(doc) \
            or any(abs(v) >= 2 ** 63 for v in _ints(doc))
    else:
        assert text == json_text.dumps(doc, finite=True)
        assert json.loads(text) == doc


def _ints(value):
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for v in value:
            yield from _ints(v)
    elif type(value) is int:
        yield value


@pytest.mark.parametrize("value", [math.nan, -math.inf, None, "a\x00b", "\ud800", 2 ** 70, np.str_("a"),
                                   np.arange(6.0).reshape(2, 3)[:, 1], np.array([1.0, math.nan])])
def test_dumps_plain_refuses_what_the_walk_must_see(value):
    assert json_text.dumps_plain({"m": {"v": value, "w": [1.0, 2.0]}}) is None


def test_dumps_plain_writes_numeric_arrays_as_dumps_does():
    doc = {"m": {"W": np.arange(6, dtype=np.float32).reshape(2, 3) / 10, "b": np.array([1, 2]), "s": [4],
                 "t": "null: not a null", "long": np.linspace(0, 1, 200)}}
    assert json_text.dumps_plain(doc) == json_text.dumps(doc, finite=True)


@pytest.mark.parametrize("extra,error", [
    ({}, None), ({"q": {"value": math.nan}}, None), ({"q": {"value": np.float64(2.5)}}, None),
    ({"q": {"value": "a\x00"}}, "NUL"), ({"q": {"value": [1, 2]}, "bad": 1}, "unexpected key")])
def test_save_document_plain_writes_what_the_careful_path_writes(tmp_path, extra, error):
    def doc():
        node = {"parameters": {"W": {"value": np.eye(2, dtype=np.float32)}, **{k: v for k, v in extra.items()
                                                                               if k != "bad"}},
                "input_ports": {"x": {"shape": [2]}}, "output_ports": {"y": {"value": "W"}}}
        if "bad" in extra:
            node["bad"] = 1
        return {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": node}}}}}

    careful, plain = tmp_path / "careful.json", tmp_path / "plain.json"
    if error is None:
        save_document(doc(), careful)
        save_document(doc(), plain, plain=True)
        assert plain.read_bytes() == careful.read_bytes()
        return
    with pytest.raises(Exception) as got:
        save_document(doc(), careful)
    with pytest.raises(type(got.value)) as got_plain:
        save_document(doc(), plain, plain=True)
    assert str(got_plain.value).replace("plain.json", "careful.json") == str(got.value) and error in str(got.value)
    assert not plain.exists()
