"""Parser limits (issue 12, mdfbridge.parse_limits): JSON/YAML nesting depth, YAML alias expansion and recursive
aliases, number literals, NUL and lone surrogates, regular files within max_file_bytes, port shapes. Each refusal
is one MdfBridgeError naming the file and, where the text has one, line and column; the limits move with
mdfbridge.limits.override. (The CLI side: tests/data/hostile/parsers, run by tests/test_hostile_corpus.py.)"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mdfbridge import limits
from mdfbridge.document import _parse_json, _parse_yaml, convert_document, load_document_dict
from mdfbridge.errors import DocumentError, MdfBridgeError, SchemaError
from mdfbridge.limits import LimitError
from mdfbridge.parse_limits import check_json_text

HOSTILE = Path(__file__).resolve().parent / "data" / "hostile" / "parsers"


def _model(shape=(2,), **port):
    return {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": {
        "input_ports": {"x": {"shape": list(shape), **port}},
        "output_ports": {"y": {"value": "x"}}}}}}}}


# ------------------------------------------------------------------------------------------------ JSON depth

def test_json_depth_at_the_limit_parses_and_one_past_it_is_refused_with_its_place():
    depth = limits.current().max_nesting_depth
    assert _parse_json("[" * depth + "]" * depth, "f.json") == _nested(depth)
    with pytest.raises(LimitError) as err:
        _parse_json('{"a":\n ' + "[" * depth + "]" * depth + "}", "f.json")
    assert str(err.value).startswith(f"f.json:2:{depth + 1}: ")  # the bracket that went past the limit
    assert "max_nesting_depth" in str(err.value)


def _nested(depth):
    out: list = []
    for _ in range(depth - 1):
        out = [out]
    return out


def test_brackets_and_escaped_quotes_inside_strings_do_not_count():
    text = json.dumps(["[" * 500 + '\\"' + "{" * 500, {"k": '"[[[' * 100}])
    assert _parse_json(text, "f.json")[0].startswith("[[[")


def test_100000_deep_json_is_refused_before_json_loads_recurses():
    with pytest.raises(LimitError, match="f.json:1:65: "):
        _parse_json("[" * 100_000 + "]" * 100_000, "f.json")
    with pytest.raises(LimitError, match="max_nesting_depth"):
        _parse_json('{"a": ' * 100_000 + "1" + "}" * 100_000, "f.json")


def test_a_raised_depth_limit_lets_deeper_documents_through():
    with limits.override(max_nesting_depth=300):
        assert _parse_json("[" * 200 + "]" * 200, "f.json") == _nested(200)


# ------------------------------------------------------------------------------------------------ JSON numbers

def test_number_digits_at_the_limit_parse_and_past_it_are_refused_with_the_place():
    n = limits.current().max_number_digits
    assert _parse_json("[" + "7" * n + "]", "f.json") == [int("7" * n)]
    with pytest.raises(LimitError) as err:
        _parse_json('{"a":\n  [1, ' + "7" * (n + 1) + "]}", "f.json")
    assert str(err.value).startswith("f.json:2:7: number literal of")


@pytest.mark.parametrize("split", [0.5, 0.25, 0.75])
def test_digits_on_both_sides_of_the_point_count_as_one_literal(split):
    # (neither side alone is past the limit: the fast reader's pre-check must still send it to the token scan)
    n = limits.current().max_number_digits
    left = int((n + 1) * split)
    literal = "3" * left + "." + "3" * (n + 1 - left)
    with pytest.raises(LimitError, match=f"number literal of {n + 1:,} digits"):
        _parse_json("[" + literal + "]", "f.json")
    assert _parse_json("[" + literal[:-1] + "]", "f.json") == [float(literal[:-1])]


def test_4400_digit_integer_is_a_limit_error_not_pythons_valueerror():
    with pytest.raises(LimitError, match="4,400 digits"):
        _parse_json("[1" + "0" * 4399 + "]", "f.json")


def test_long_digit_runs_inside_strings_are_text_not_numbers():
    assert _parse_json(json.dumps({"notes": "9" * 5000}), "f.json") == {"notes": "9" * 5000}


def test_floats_beyond_float64_are_refused_but_underflow_and_large_finite_pass():
    assert _parse_json("[1e308, 1.5e-400, 1e-0005]", "f.json") == [1e308, 0.0, 1e-5]
    with pytest.raises(DocumentError, match=r"f.json:1:2: number 1e400 is out of the range of a 64-bit float"):
        _parse_json("[1e400]", "f.json")
    with pytest.raises(DocumentError, match="64-bit float"):
        _parse_json("[-2.5E+0309]", "f.json")


# ------------------------------------------------------------------------------------------------ JSON text

@pytest.mark.parametrize("escape, offset", [("\\ud800", 0), ("\\udc00", 0), ("ab\\ud83d", 2), ("\\ud83dx", 0),
                                            ("\\u0000", 0), ("\\ud83d\\ud83d\\ude00", 0)])
def test_lone_surrogate_and_nul_escapes_are_refused_with_line_and_column(escape, offset):
    with pytest.raises(DocumentError) as err:
        _parse_json('{\n"a": "' + escape + '"}', "f.json")
    assert str(err.value).startswith(f"f.json:2:{7 + offset}: a string holds")  # the escape's backslash


@pytest.mark.parametrize("text, value", [('"\\ud83d\\ude00"', "\U0001F600"), ('"\\\\ud800"', "\\ud800"),
                                         ('"\\u00e9\\n"', "\u00e9\n")])
def test_paired_surrogates_and_escaped_backslashes_are_fine(text, value):
    assert _parse_json("[" + text + "]", "f.json") == [value]


def test_check_json_text_is_the_whole_pre_scan():
    check_json_text('{"a": [1, 2.5e10, "x"]}', "f.json")  # nothing to refuse
    with pytest.raises(MdfBridgeError):
        check_json_text("[" * 70, "f.json")  # depth is checked even in text that will not parse


# ------------------------------------------------------------------------------------------------ YAML

def _laughs(levels, width=9):
    out = "l0: &l0 [" + ",".join(['"lol"'] * width) + "]\n"
    for i in range(1, levels):
        out += f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * width) + "]\n"
    return out


def test_billion_laughs_is_refused_while_composing_at_the_alias_that_passes_the_limit():
    with pytest.raises(LimitError) as err:
        _parse_yaml(_laughs(9), "f.yaml")
    assert str(err.value).startswith("f.yaml:")
    assert "max_yaml_alias_nodes" in str(err.value)


def test_small_alias_use_expands_as_before():
    data = _parse_yaml(_laughs(3, 3), "f.yaml")
    assert data["l2"] == [[["lol"] * 3] * 3] * 3


def test_alias_limit_counts_the_expansion_and_moves_with_the_limit():
    text = _laughs(6)  # aliases expand to about 9**6 = 531,441 nodes
    with pytest.raises(LimitError):
        _parse_yaml(text, "f.yaml")
    with limits.override(max_yaml_alias_nodes=10 ** 6):
        assert len(_parse_yaml(text, "f.yaml")["l5"]) == 9


def test_merge_keys_still_work():
    data = _parse_yaml("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert data["derived"] == {"x": 1, "y": 3}


@pytest.mark.parametrize("text, place", [("a: &a [*a]\n", "f.yaml:1:8"), ("a: &m {self: *m}\n", "f.yaml:1:14"),
                                         ("a: &m\n  b: [1, {c: *m}]\n", "f.yaml:2:14")])
def test_recursive_aliases_are_refused_at_the_alias(text, place):
    with pytest.raises(DocumentError, match=f"^{place}: alias \\*[am] refers to a node that contains it"):
        _parse_yaml(text, "f.yaml")


def test_depth_counts_what_aliases_bring_in():
    text = "".join(f"l{i}: &l{i} " + "[" * 10 + (f"*l{i - 1}" if i else "1") + "]" * 10 + "\n" for i in range(8))
    with pytest.raises(LimitError, match="max_nesting_depth"):
        _parse_yaml(text, "f.yaml")
    with limits.override(max_nesting_depth=200):
        value = _parse_yaml(text, "f.yaml")["l7"]
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert (depth, value) == (80, 1)


def test_deep_yaml_flow_and_block_nesting_are_refused():
    with pytest.raises(LimitError, match="f.yaml:1:65: "):
        _parse_yaml("[" * 100_000 + "]" * 100_000, "f.yaml")
    block = "".join(" " * i + "a:\n" for i in range(100)) + " " * 100 + "b: 1\n"
    with pytest.raises(LimitError, match="f.yaml:65:65: "):
        _parse_yaml(block, "f.yaml")


@pytest.mark.parametrize("text, place, what", [
    ('a: "x\\0y"\n', "f.yaml:1:4", "NUL"),
    ('a:\n  - "\\ud800"\n', "f.yaml:2:5", "lone surrogate"),
    ("a: x\x00y\n", "f.yaml:1:5", "U+0000"),
])
def test_nul_and_lone_surrogates_in_yaml_are_refused_with_the_place(text, place, what):
    with pytest.raises(DocumentError) as err:
        _parse_yaml(text, "f.yaml")
    assert str(err.value).startswith(place + ": ") and what in str(err.value)


def test_yaml_numbers_digits_and_range():
    n = limits.current().max_number_digits
    assert _parse_yaml("a: " + "7" * n + "\n", "f.yaml") == {"a": int("7" * n)}
    with pytest.raises(LimitError, match="f.yaml:2:6: number literal of 4,400 digits"):
        _parse_yaml("x: 1\na:   1" + "0" * 4399 + "\n", "f.yaml")
    with pytest.raises(DocumentError, match="64-bit float"):
        _parse_yaml("a: 1.0e+400\n", "f.yaml")
    assert _parse_yaml("a: '1" + "0" * 4399 + "'\nb: .inf\n", "f.yaml")["b"] == float("inf")  # quoted: a string


# ------------------------------------------------------------------------------------------------ files

def test_a_fifo_is_refused_from_its_stat_without_blocking(tmp_path, hang_guard):
    fifo = tmp_path / "m.json"
    os.mkfifo(fifo)
    with pytest.raises(DocumentError, match=r"m.json: is a FIFO \(named pipe\), expected a regular file"):
        load_document_dict(fifo)


def test_a_symlink_to_dev_zero_and_a_directory_are_refused(tmp_path, hang_guard):
    link = tmp_path / "z.yaml"
    link.symlink_to("/dev/zero")
    with pytest.raises(DocumentError, match="is a character device"):
        load_document_dict(link)
    folder = tmp_path / "d.json"
    folder.mkdir()
    with pytest.raises(DocumentError, match="is a directory"):
        load_document_dict(folder)


def test_max_file_bytes_bounds_what_is_read(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(_model()), encoding="utf-8")
    assert load_document_dict(path)
    with limits.override(max_file_bytes=50):
        with pytest.raises(LimitError, match=r"m.json: file has \d+ bytes, over the limit max_file_bytes=50"):
            load_document_dict(path)


# ------------------------------------------------------------------------------------------------ shapes

def _write(tmp_path, data, name="m.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("shape", [(0,), (3, 0)])
def test_zero_dimensions_are_refused(tmp_path, shape):
    with pytest.raises(SchemaError, match=r"input_ports.x.shape\[\d\]: shape .* is not a positive integer"):
        load_document_dict(_write(tmp_path, _model(shape)))


def test_shapes_past_max_elements_are_refused_before_anything_allocates(tmp_path):
    path = _write(tmp_path, _model((10 ** 6, 10 ** 6)))
    with pytest.raises(LimitError, match=r"input_ports.x.shape: shape \[1000000, 1000000\] would have more than"):
        load_document_dict(path)
    with limits.override(max_elements=10 ** 13):
        assert load_document_dict(path)


def test_small_positive_shapes_still_load(tmp_path):
    assert load_document_dict(_write(tmp_path, _model((2, 3))))["m"]["graphs"]["g"]["nodes"]["n"]


# ------------------------------------------------------------------------------------------------ convert

def test_json_to_yaml_convert_never_writes_a_lone_surrogate(tmp_path):
    src = tmp_path / "m.json"
    src.write_text(json.dumps(_model()).replace('"n"', '"n\\ud800"'), encoding="utf-8")
    dst = tmp_path / "m.yaml"
    with pytest.raises(DocumentError, match="lone surrogate"):
        convert_document(src, dst)
    assert not dst.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_the_committed_corpus_files_are_refused_through_the_api():
    for name in ("billion_laughs_9x9.yaml", "recursive_alias.yaml", "deep_1000.json", "digits_4400.json",
                 "shape_1e400.json", "shape_1e12.json", "nul_escape.yaml", "surrogate.json"):
        with pytest.raises(MdfBridgeError, match=name):
            load_document_dict(HOSTILE / name)


@pytest.mark.parametrize("name", ["m.json", "m.yaml"])
def test_save_document_of_a_dict_with_a_lone_surrogate_is_one_error_and_writes_nothing(tmp_path, name):
    from mdfbridge.document import save_document

    data = _model()
    data["m"]["metadata"] = {"note": "x\ud800"}
    with pytest.raises(SchemaError, match=r"at \$.m.metadata.note: a string holds a lone surrogate"):
        save_document(data, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
