"""The forms other MDF writers use, read as the one form mdfbridge writes (liberal in what is read).

modeci-mdf 0.4.x, its older v0.1 files and PsyNeuLink 0.13-0.21 write MDF that mdfbridge's schema (the form it
writes, `mdfbridge validate --strict`) refuses, though none of these forms changes a result:
- `notes` fields (free-text documentation), anywhere;
- ids that are not Python identifiers: 'ONNX Model', '/A/Add', 'onnx::Relu_1', 'x.11', 'Edge A to B' (expressions
  refer to such names only as a whole, e.g. an output port whose value is "/A/Add");
- v0.1 forms: a condition's arguments under `args` instead of `kwargs`, a parameter written as its bare value,
  a shape as a string "(2, 1)".
`clean_form` returns the document in mdfbridge's form: itself when it is in that form, else a copy (the object
structure only: weight lists are shared);
`liberal_validator` checks it with ids relaxed to any non-empty string but a Python keyword.
"""
from __future__ import annotations

import copy
import functools
import re
from typing import Any, Dict, List, Tuple

import jsonschema

_SHAPE_TEXT = re.compile(r"^\s*[\(\[]\s*((?:\d+\s*,\s*)*\d*)\s*,?\s*[\)\]]\s*$")


def clean_form(data: Any, *, notes: bool = False, forms: bool = True) -> Any:
    """A raw MDF dict in the form mdfbridge writes: `notes` kept only with notes=True (default False) and, with
    `forms` (default True), condition `args` as `kwargs`, bare parameter values as {"value": ...} and shape
    strings as lists (ids are kept as written). `data` itself when it is in that form already; else a copy of the
    object structure (lists that hold no objects are shared)."""
    if not isinstance(data, dict) or _in_form(data, (), notes, forms):
        return data  # (nothing to change: no copy)
    root: Dict[str, Any] = {}
    stack: List[Tuple[Any, Any, Tuple[Any, ...]]] = [(data, root, ())]
    while stack:  # one pass over the objects (linear: each is visited once, its checks hoisted out of the loop)
        src, dst, path = stack.pop()  # path: the last keys leading to src
        is_dict = isinstance(src, dict)
        items = src.items() if is_dict else enumerate(src)
        parameters = forms and is_dict and path[-3:-2] == ("nodes",) and path[-1:] == ("parameters",)
        condition = forms and is_dict and "type" in src and "kwargs" not in src
        for k, v in items:
            if is_dict:
                if k == "notes" and not notes and isinstance(v, str):
                    continue
                if not forms:
                    pass
                elif parameters and not isinstance(v, dict):
                    v = {"value": v}  # v0.1: a parameter as its bare value
                elif condition and k == "args" and isinstance(v, dict):
                    k = "kwargs"  # v0.1 condition arguments
                elif k == "shape" and isinstance(v, str):
                    v = _shape(v)
            if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
                out: Any = {} if isinstance(v, dict) else [None] * len(v)
                stack.append((v, out, (path + (k,))[-3:]))
                v = out
            dst[k] = v
    return root


def _in_form(src: Any, path: Tuple[Any, ...], notes: bool, forms: bool) -> bool:
    """Would clean_form leave src (a dict, or a list of dicts, at the last keys `path`) as it is? A walk without
    building anything (about half the cost of the copy), over the same containers as clean_form's."""
    is_dict = isinstance(src, dict)
    if is_dict:
        if forms and (("type" in src and "kwargs" not in src and isinstance(src.get("args"), dict))
                      or (path[-3:-2] == ("nodes",) and path[-1:] == ("parameters",)
                          and not all(isinstance(v, dict) for v in src.values()))):
            return False
        items: Any = src.items()
    else:
        items = enumerate(src)
    for k, v in items:
        if is_dict and ((k == "notes" and not notes and isinstance(v, str))
                        or (forms and k == "shape" and isinstance(v, str))):
            return False
        if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
            if not _in_form(v, (path + (k,))[-3:], notes, forms):
                return False
    return True


def _shape(text: str) -> Any:
    m = _SHAPE_TEXT.match(text)
    if m is None:
        return text  # left for the schema to refuse where it stands
    return [int(x) for x in m.group(1).replace(" ", "").split(",") if x]


@functools.lru_cache(maxsize=1)
def liberal_validator() -> jsonschema.Draft202012Validator:
    """mdfbridge's schema with ids relaxed to any non-empty string that is not a Python keyword (the checks of
    everything else stay)."""
    from .document import load_schema

    schema = copy.deepcopy(load_schema())
    strict_id = schema["$defs"]["id"]
    not_keyword = next(rule for rule in strict_id["allOf"] if "not" in rule)
    schema["$defs"]["id"] = {"$comment": "any id another writer uses (liberal reading) but a Python keyword",
                             "type": "string", "allOf": [{"minLength": 1, "x-error": "an id is a non-empty string"},
                                                         not_keyword]}
    return jsonschema.Draft202012Validator(schema)
