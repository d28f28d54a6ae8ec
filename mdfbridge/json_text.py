"""MDF JSON text as mdfbridge writes it: objects indented by 2 spaces, every flat array of numbers (a shape, a bias,
each row of a weight matrix) on one line, numbers in the shortest form that reads back to the same float64
(as Python's `repr` writes them).

orjson does the encoding, in C (a 100,000-node document in about 0.5 s, against about 9 s for the standard
library's indenting encoder, which runs in Python); its indented text puts each number on a line of its own, which
one regular-expression pass joins (orjson never writes a newline inside a string, so only arrays it laid out
match). Two values orjson cannot write as JSON's readers expect are written as the standard library writes them:
a non-finite float (NaN, Infinity; orjson would write null) and an integer beyond 64 bits; a document holding
either is encoded through `orjson.Fragment`s (pre-encoded JSON orjson includes as given), its layout the same.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, List

import orjson

_NUMBER = rb"(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false)"
# an array orjson laid out one number a line: "[\n   1,\n   2\n  ]"
_NUMBER_ARRAY = re.compile(rb"\[\n *(" + _NUMBER + rb"(?:,\n *" + _NUMBER + rb")*)\n *\]")
_LINE_BREAK = re.compile(rb"\n *")
_NUMBER_TYPES = frozenset({int, float, bool})
_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE


def _one_line(m: "re.Match[bytes]") -> bytes:
    return b"[" + _LINE_BREAK.sub(b"", m.group(1)) + b"]"


def _exact(value: Any) -> Any:
    """A float or int orjson cannot write exactly as a Fragment (NaN and infinities as the standard library writes
    them; an integer beyond 64 bits in full); other values as they are."""
    t = type(value)
    if (t is float and not math.isfinite(value)) or (t is int and not -(2 ** 63) <= value < 2 ** 64):
        return orjson.Fragment(json.dumps(value))
    return value


def _flat_numbers(items: List[Any]) -> bool:
    return _NUMBER_TYPES.issuperset(map(type, items))


def _prepared(value: Any) -> Any:
    """`value` with each flat numeric array as a one-line Fragment and each other number through `_exact`."""
    t = type(value)
    if t is dict:
        return {k: _prepared(v) for k, v in value.items()}
    if t is list:
        if value and _flat_numbers(value):
            try:
                text = orjson.dumps(value)
            except orjson.JSONEncodeError:  # an integer beyond 64 bits
                text = b"null"
            if b"null" in text:  # (not None: a NaN or an infinity)
                return orjson.Fragment(json.dumps(value, separators=(",", ":")))
            return orjson.Fragment(text)
        return [_prepared(v) for v in value]
    return _exact(value)


def dumps(data: Any, *, finite: bool = False) -> bytes:
    """The JSON text (UTF-8, ending in a newline) of a document made of plain JSON types (dict with string keys,
    list, str, int, float, bool, None; as `document.save_document` prepares it).

    data: the document; finite: the caller knows that every float in it is finite (default False: the document
    is encoded the slower exact way, `_prepared`, which writes NaN and infinities as NaN, Infinity, -Infinity)."""
    if finite:
        try:
            return _NUMBER_ARRAY.sub(_one_line, orjson.dumps(data, option=_OPTIONS))
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            pass
    return orjson.dumps(_prepared(data), option=_OPTIONS)
