"""The fast validity check (jsonschema-rs, mdfbridge.document._fast_check) agrees with jsonschema (the reference)
on every document of the repository (examples, modeci-mdf's corpus, the bad-input corpus) and on many mutations of
them, for the strict and the liberal schema; values of no JSON type go to jsonschema; and validate_dict's messages
are jsonschema's."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from mdfbridge.document import _fast_check, _validator, validate_dict
from mdfbridge.document_forms import clean_form, liberal_validator
from mdfbridge.errors import SchemaError

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for folder in ("examples", "tests/data/mdf_corpus", "tests/data/bad", "tests/data/psyneulink",
                                "tests/data/cli")
               for p in (ROOT / folder).rglob("*") if p.suffix in (".json", ".yaml", ".yml")
               and p.name not in ("expected.json", "engine_results.json"))


def _documents() -> list:
    docs = []
    for p in FILES:
        try:
            text = p.read_text(encoding="utf-8")
            doc = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict):
            docs.append((p.relative_to(ROOT).as_posix(), doc))
    return docs


DOCS = _documents()
# values a mutation writes: every JSON type, ids that are keywords or not identifiers, ints as floats, ...
ODD = [None, True, False, 0, -1, 1.0, 1.5, 2 ** 70, "", "x", "in", "1abc", "a-b", "ModECI MDF v0.4", "add",
       [], [1, 2], [-1], [1.5], ["2"], {}, {"a": 1}, {"value": "x"}, {"function": "linear"}, {"type": "Always"}]


def _places(value, path=()):
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _places(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _places(v, path + (i,))


def _mutants(doc, rng, count):
    places = [p for p, _ in _places(doc) if p]
    for _ in range(count):
        m = copy.deepcopy(doc)
        path = rng.choice(places)
        parent = m
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        action = rng.random()
        if action < 0.5:
            parent[key] = copy.deepcopy(rng.choice(ODD))
        elif action < 0.7 and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, dict):  # rename the key, or add one
            value = parent.pop(key) if action < 0.85 else copy.deepcopy(rng.choice(ODD))
            parent[rng.choice(["in", "x", "1a", "value", "args", "function", "shape", "sender", "extra",
                               "conditions", "kwargs", "type", "reduce"])] = value
        else:
            parent[key] = copy.deepcopy(rng.choice(ODD))
        yield m


@pytest.mark.parametrize("liberal", [False, True], ids=["strict", "liberal"])
def test_agrees_with_jsonschema_on_documents_and_mutations(liberal):
    validator = liberal_validator() if liberal else _validator()
    fast = _fast_check(validator)
    rng = random.Random(12)
    checked = invalid = 0
    for name, doc in DOCS:
        for d in [doc, clean_form(doc, forms=False), *_mutants(doc, rng, 60)]:
            want = validator.is_valid(d)
            assert fast(d) == want, (name, json.dumps(d)[:300])
            checked += 1
            invalid += not want
    assert len(DOCS) >= 20 and checked > 2000 and 0.2 * checked < invalid < 0.9 * checked, (checked, invalid)


def test_values_of_no_json_type_are_judged_by_jsonschema():
    """jsonschema-rs takes a tuple for an array and raises on numpy scalars or sets: such values (a dict from the
    API, a YAML date) are judged by jsonschema, as they always were."""
    def doc(shape):
        return {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": {"input_ports": {
            "x": {"shape": shape}}}}}}}}
    assert not _fast_check(_validator())(doc({2}))  # (ValueError inside: "ask jsonschema")
    for bad in [(2,), np.int64(2), {2}]:
        with pytest.raises(SchemaError, match=r"shape"):
            validate_dict(doc(bad))
    validate_dict(doc([2]))


def test_messages_stay_jsonschemas(tmp_path):
    node = {"input_ports": {"x": {"shape": "2"}}}
    doc = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": node}}}}}
    with pytest.raises(SchemaError, match=r"\$\.m\.graphs\.g\.nodes\.n\.input_ports\.x\.shape: '2' is not of type "
                                          r"'array'"):
        validate_dict(doc)
    node["input_ports"]["x"]["shape"] = [2]
    validate_dict(doc)
