"""A fast validity check for the MDF JSON Schema: the schema compiled once into nested Python predicates.

jsonschema validates a node in 1-4 ms (its validator objects, reference resolution and error machinery run for
every keyword of every object), which makes a 100,000-node document take minutes. `compile_schema` turns the
subset of JSON Schema 2020-12 the MDF schema uses (type, properties, additionalProperties, propertyNames,
required, dependentRequired, min/maxProperties, items, minimum, minLength, pattern, enum, not, allOf, anyOf, oneOf,
if/then/else and local `$ref`s) into one function answering only "valid or not", in microseconds a node. A document
it accepts is valid; for one it refuses, mdfbridge.document still asks jsonschema for the error (so the messages
are jsonschema's, unchanged). A schema using any other keyword is not compiled (`compile_schema` returns None and
jsonschema does all the work)."""
from __future__ import annotations

import logging
import re
from typing import Any, Callable, Dict, List, Mapping, Optional

logger = logging.getLogger(__name__)

Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"$comment", "$id", "$schema", "$defs", "title", "description", "x-error", "default",
                          "examples"})


# property names checked once and remembered, per object schema (ids: a 100,000-node graph repeats its node and
# edge ids in edges and conditions; the bound keeps a long-lived process's memory in check, about 30 MB)
_NAME_CACHE = 1 << 18


class _Unsupported(Exception):
    """A keyword or reference the compiler does not handle."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_TYPES: Dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    # JSON Schema's integer: a number with no fractional part (1.0 is an integer), never a bool
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


def _equal(a: Any, b: Any) -> bool:
    """jsonschema's equality: bools are not numbers; containers compare item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: Dict[str, Check] = {}
        self.done: Dict[str, Check] = {}

    def ref(self, pointer: str) -> Check:
        if pointer in self.done:  # compiled already: the function itself, no indirection
            return self.done[pointer]
        if pointer in self.refs:  # being compiled (a recursive reference): through the cell
            return self.refs[pointer]
        if not pointer.startswith("#/"):
            raise _Unsupported(f"$ref {pointer!r}")
        target: Any = self.root
        for part in pointer[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise _Unsupported(f"$ref {pointer!r}")
            target = target[part]
        compiled: List[Check] = []
        self.refs[pointer] = lambda v: compiled[0](v)  # recursive references resolve through this cell
        compiled.append(self.compile(target))
        self.done[pointer] = compiled[0]
        return compiled[0]

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, Mapping):
            raise _Unsupported(f"schema {schema!r}")
        checks: List[Check] = []
        folded: frozenset = frozenset()
        if schema.get("type") == "object" and "patternProperties" not in schema:
            checks.append(self._object(schema))  # one loop over the object for all its object keywords
            folded = _OBJECT_KEYWORDS | {"type"}
        for key, value in schema.items():
            if key in _ANNOTATIONS or key in folded:
                continue
            method = getattr(self, "_" + key.replace("$", "dollar_"), None)
            if method is None:
                raise _Unsupported(f"keyword {key!r}")
            checks.append(method(value, schema))
        if not checks:
            return lambda v: True
        if len(checks) == 1:
            return checks[0]

        def every(v: Any) -> bool:
            for c in checks:
                if not c(v):
                    return False
            return True
        return every

    # --------------------------------------------------------------------- keywords
    def _object(self, schema: Mapping[str, Any]) -> Check:
        """type: object with properties, additionalProperties, propertyNames, required, dependentRequired and
        min/maxProperties checked in one pass over the object's items (what the separate keywords check)."""
        props = {k: self.compile(v) for k, v in (schema.get("properties") or {}).items()}
        extra_schema = schema.get("additionalProperties", True)
        closed = extra_schema is False
        extra = None if extra_schema is True or closed else self.compile(extra_schema)
        name = self.compile(schema["propertyNames"]) if "propertyNames" in schema else None
        required = tuple(schema.get("required") or ())
        deps = {k: tuple(d) for k, d in (schema.get("dependentRequired") or {}).items()}
        lo, hi = schema.get("minProperties"), schema.get("maxProperties")
        seen_names: Dict[str, bool] = {}

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return False
            if (lo is not None and len(v) < lo) or (hi is not None and len(v) > hi):
                return False
            for k, item in v.items():
                if name is not None:
                    ok = seen_names.get(k) if isinstance(k, str) else None
                    if ok is None:
                        ok = name(k)
                        if isinstance(k, str) and len(seen_names) < _NAME_CACHE:
                            seen_names[k] = ok
                    if not ok:
                        return False
                c = props.get(k)
                if c is not None:
                    if not c(item):
                        return False
                elif closed or (extra is not None and not extra(item)):
                    return False
            for r in required:
                if r not in v:
                    return False
            for k, ds in deps.items():
                if k in v and any(d not in v for d in ds):
                    return False
            return True
        return check

    def _dollar_ref(self, value: str, schema: Mapping[str, Any]) -> Check:
        return self.ref(value)

    def _type(self, value: Any, schema: Mapping[str, Any]) -> Check:
        names = [value] if isinstance(value, str) else list(value)
        try:
            tests = [_TYPES[n] for n in names]
        except KeyError as exc:
            raise _Unsupported(f"type {exc.args[0]!r}") from None
        return tests[0] if len(tests) == 1 else (lambda v: any(t(v) for t in tests))

    def _properties(self, value: Mapping[str, Any], schema: Mapping[str, Any]) -> Check:
        props = {k: self.compile(s) for k, s in value.items()}

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for k, c in props.items():
                if k in v and not c(v[k]):
                    return False
            return True
        return check

    def _additionalProperties(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        known = frozenset(schema.get("properties") or ())
        if value is False:
            return lambda v: not isinstance(v, dict) or all(k in known for k in v)
        extra = self.compile(value)

        def check(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for k, item in v.items():
                if k not in known and not extra(item):
                    return False
            return True
        return check

    def _propertyNames(self, value: Any, schema: Mapping[str, Any]) -> Check:
        name = self.compile(value)
        return lambda v: not isinstance(v, dict) or all(name(k) for k in v)

    def _required(self, value: List[str], schema: Mapping[str, Any]) -> Check:
        names = tuple(value)
        if len(names) == 1:
            (only,) = names
            return lambda v: not isinstance(v, dict) or only in v
        return lambda v: not isinstance(v, dict) or all(n in v for n in names)

    def _dependentRequired(self, value: Mapping[str, List[str]], schema: Mapping[str, Any]) -> Check:
        deps = {k: tuple(d) for k, d in value.items()}
        return lambda v: not isinstance(v, dict) or all(all(d in v for d in ds) for k, ds in deps.items() if k in v)

    def _minProperties(self, value: int, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, dict) or len(v) >= value

    def _maxProperties(self, value: int, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, dict) or len(v) <= value

    def _items(self, value: Any, schema: Mapping[str, Any]) -> Check:
        if "prefixItems" in schema or not isinstance(value, (Mapping, bool)):
            raise _Unsupported("items with prefixItems")
        item = self.compile(value)

        def check(v: Any) -> bool:
            if isinstance(v, list):
                for x in v:
                    if not item(x):
                        return False
            return True
        return check

    def _minimum(self, value: float, schema: Mapping[str, Any]) -> Check:
        return lambda v: not _is_number(v) or v >= value

    def _minLength(self, value: int, schema: Mapping[str, Any]) -> Check:
        return lambda v: not isinstance(v, str) or len(v) >= value

    def _pattern(self, value: str, schema: Mapping[str, Any]) -> Check:
        rx = re.compile(value)  # jsonschema: re.search
        return lambda v: not isinstance(v, str) or rx.search(v) is not None

    def _enum(self, value: List[Any], schema: Mapping[str, Any]) -> Check:
        if all(isinstance(e, str) for e in value):
            allowed = frozenset(value)
            return lambda v: isinstance(v, str) and v in allowed
        return lambda v: any(_equal(v, e) for e in value)

    def _not(self, value: Any, schema: Mapping[str, Any]) -> Check:
        inner = self.compile(value)
        return lambda v: not inner(v)

    def _allOf(self, value: List[Any], schema: Mapping[str, Any]) -> Check:
        parts = [self.compile(s) for s in value]
        if len(parts) == 1:
            return parts[0]

        def check(v: Any) -> bool:
            for p in parts:
                if not p(v):
                    return False
            return True
        return check

    def _anyOf(self, value: List[Any], schema: Mapping[str, Any]) -> Check:
        parts = [self.compile(s) for s in value]

        def check(v: Any) -> bool:
            for p in parts:
                if p(v):
                    return True
            return False
        return check

    def _oneOf(self, value: List[Any], schema: Mapping[str, Any]) -> Check:
        parts = [self.compile(s) for s in value]
        return lambda v: sum(1 for p in parts if p(v)) == 1

    def _if(self, value: Any, schema: Mapping[str, Any]) -> Check:
        test = self.compile(value)
        then = self.compile(schema.get("then", True))
        orelse = self.compile(schema.get("else", True))
        return lambda v: then(v) if test(v) else orelse(v)

    def _then(self, value: Any, schema: Mapping[str, Any]) -> Check:
        return lambda v: True  # read by _if (alone, `then` has no effect)

    _else = _then


_OBJECT_KEYWORDS = frozenset({"properties", "additionalProperties", "propertyNames", "required", "dependentRequired",
                              "minProperties", "maxProperties"})


def compile_schema(schema: Mapping[str, Any]) -> Optional[Check]:
    """A function telling whether a document is valid against `schema` (a JSON Schema 2020-12 document using only
    the keywords this module knows), or None when the schema uses others (then validate with jsonschema).

    schema: the schema as parsed JSON (local `$ref`s, `#/$defs/...`, are resolved within it)."""
    try:
        return _Compiler(schema).compile(schema)
    except (_Unsupported, re.error) as exc:
        logger.debug("fast schema check not available: %s", exc)
        return None


__all__ = ["compile_schema"]
