"""MDF JSON text, written and read fast. Written with objects indented by 2 spaces, every flat array of numbers
(a shape, a bias, each row of a weight matrix) on one line, numbers in the shortest form that reads back to the
same float64.

orjson does the encoding, in C (a 100,000-node document in about 0.5 s, against about 9 s for the standard
library's indenting encoder, which runs in Python); its indented text puts each number on a line of its own, which
one regular-expression pass joins (orjson never writes a newline inside a string, so only arrays it laid out
match). Two values orjson cannot write as JSON's readers expect are written as the standard library writes them:
a non-finite float (NaN, Infinity; orjson would write null) and an integer beyond 64 bits; a document holding
either is encoded through `orjson.Fragment`s (pre-encoded JSON orjson includes as given), its layout the same;
so is a document whose numbers are mostly in long arrays (weights), where encoding each array is faster.

Read (`loads`) by orjson (about 5 times the standard library's speed) when its result is the standard library's:
not for a duplicate key (orjson keeps the last; mdfbridge refuses it), NaN/Infinity literals or an integer
literal of 19 digits or more (orjson reads one beyond 64 bits as a float: a negative one below -2**63 has 19
digits, a positive one above 2**64 - 1 has 20); then None, and the standard library
reads the text (`document._parse_json`), with its error messages.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, List, Tuple

import numpy as np
import orjson

_NUMBER = rb"(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false)"
# an array orjson laid out one number a line: "[\n   1,\n   2\n  ]"
_NUMBER_ARRAY = re.compile(rb"\[\n *(" + _NUMBER + rb"(?:,\n *" + _NUMBER + rb")*)\n *\]")
_LINE_BREAK = re.compile(rb"\n *")
_NUMBER_TYPES = frozenset({int, float, bool})
_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY


def _one_line(m: "re.Match[bytes]") -> bytes:
    numbers = m.group(1)
    return b"[" + (_LINE_BREAK.sub(b"", numbers) if b"\n" in numbers else numbers) + b"]"  # (a shape: one number)


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
    if t is np.ndarray:  # (numeric, C order: as document.save_document keeps them)
        if value.ndim > 1:
            return [_prepared(row) for row in value]
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return orjson.Fragment(json.dumps(value.tolist(), separators=(",", ":")))
        return orjson.Fragment(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
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


def dumps(data: Any, *, finite: bool = False, array_heavy: bool = False) -> bytes:
    """The JSON text (UTF-8, ending in a newline) of a document made of plain JSON types (dict with string keys,
    list, str, int, float, bool, None) and numeric numpy arrays in C order, as `document.save_document` prepares
    it; an array's numbers are written in the shortest form of its dtype (float32: 0.1, not 0.10000000149011612).

    data: the document; finite: the caller knows that every float in it is finite (default False: the document
    is encoded array by array, `_prepared`, which writes NaN and infinities as NaN, Infinity, -Infinity);
    array_heavy: most of its numbers are in long arrays (default False), which `_prepared` encodes faster than
    orjson's one-number-a-line text is joined (same text either way)."""
    if finite and not array_heavy:
        try:
            return _NUMBER_ARRAY.sub(_one_line, orjson.dumps(data, option=_OPTIONS))
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            pass
    return orjson.dumps(_prepared(data), option=_OPTIONS)


_STRICT = (_OPTIONS | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
           | orjson.OPT_PASSTHROUGH_DATACLASS)
# a null orjson wrote (None, or a NaN or infinity it writes so): an array item on its own line, or an object's value
# (which text in a string can imitate: then the careful path runs for nothing)
_NULL = re.compile(rb"(?:\n +|: )null[,\n]")


def dumps_plain(data: Any) -> "bytes | None":
    """`dumps` of a document its caller built from plain JSON types and numeric numpy arrays in C order (an
    importer's), with what `document.save_document` otherwise checks by a walk over the document checked in the
    encoding instead: None, for the careful path, where the document holds another type (a subclass of a JSON type,
    a date, an array not in C order), an integer beyond 64 bits, a lone surrogate (orjson refuses each), a NUL
    character or a null (None, or a non-finite float orjson would write as null). A tuple, an Enum, a UUID or a
    numpy scalar where the caller said JSON types would be is written in orjson's form of it (an array, the value,
    the string, the number)."""
    try:
        raw = orjson.dumps(data, option=_STRICT)
    except (orjson.JSONEncodeError, TypeError):
        return None
    if b"\\u0000" in raw or (b"null" in raw and _NULL.search(raw)):  # (the regex scans slowly: only if needed)
        return None
    lines, objects = raw.count(b"\n"), raw.count(b"{")
    if lines > 16 * objects:  # (mostly long arrays, one number a line: `_prepared` encodes them faster)
        return orjson.dumps(_prepared(data), option=_OPTIONS)
    return _NUMBER_ARRAY.sub(_one_line, raw)


_NOT_KEY_BYTES = bytes(b for b in range(256) if b not in b'[]{}":')
_QUOTED = re.compile(rb'"[^"]*"')


def _keys_and_depth(data: Any) -> Tuple[int, int]:
    """(the number of object keys, the nesting depth of arrays and objects) of a parsed document (a walk over its
    containers; rows of numbers are not looked into)."""
    count, deepest, stack = 0, 0, [(data, 1)]
    while stack:
        v, depth = stack.pop()
        if type(v) is dict:
            count += len(v)
            items: Any = v.values()
        elif type(v) is list:
            if _NUMBER_TYPES.issuperset(map(type, v)):
                deepest = max(deepest, depth)
                continue
            items = v
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((x, depth + 1) for x in items if type(x) is dict or type(x) is list)
    return count, deepest


def _keys_and_depth_encoded(data: Any) -> Tuple[int, int]:
    """`_keys_and_depth` from the compact text orjson writes of the document (C loops, no Python walk: 5-10 times
    faster on a document of many small objects). With its escaped backslashes and escaped quotes taken out, every
    quote left opens or closes a string; with the strings taken out too, each colon left follows a key and the
    brackets give the depth."""
    encoded = orjson.dumps(data)
    if b"\\" in encoded:
        encoded = encoded.replace(b"\\\\", b"").replace(b'\\"', b"")
    # (two strings run together where only commas or numbers part them: what is removed is still all in strings)
    structure = encoded.translate(None, _NOT_KEY_BYTES).replace(b'""', b"")
    if b'"' in structure:
        structure = _QUOTED.sub(b"", structure)
    chars = np.frombuffer(structure, np.uint8)
    steps = (chars == ord("[")).astype(np.int32) + (chars == ord("{")) - (chars == ord("]")) - (chars == ord("}"))
    return structure.count(b":"), int(np.cumsum(steps).max()) if steps.size else 0


def loads(text: str, max_depth: int) -> Any:
    """The document of JSON text as orjson reads it, or None where that could differ from the standard library's
    reading or where `parse_limits.check_json_text` could refuse it (see the module's docstring: the caller then
    checks the text and reads it with the standard library).

    text: the JSON text; max_depth: the deepest nesting of arrays and objects taken (limits' max_nesting_depth)."""
    from .parse_limits import json_text_is_plain

    raw = text.encode("utf-8", "surrogatepass")
    if not json_text_is_plain(raw, integer_digits=19):
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:  # NaN/Infinity literals, invalid JSON (the standard library says where)
        return None
    colons = raw.count(b":")
    try:  # (a document of many small objects: its encoded text; one mostly of weights: the walk, which skips rows)
        keys, depth = (_keys_and_depth_encoded if 200 * colons > len(raw) else _keys_and_depth)(data)
    except orjson.JSONEncodeError:  # nested past the 254 levels orjson writes (far past max_depth)
        return None
    if depth > max_depth:
        return None
    # outside strings, a colon follows each key: fewer keys read than colons written means a duplicate key. When
    # the whole text has no more colons than keys read, none is a duplicate ("::", as in the function name
    # "onnx::Relu", is inside a string in valid JSON: its two are not counted); else the colons in strings are
    # taken out: with the escaped backslashes and then the escaped quotes gone, every quote left opens or closes a
    # string.
    if colons - 2 * raw.count(b"::") != keys:
        unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
        if _QUOTED.sub(b"", unescaped.translate(None, _NOT_KEY_BYTES)).count(b":") != keys:
            return None
    return data
