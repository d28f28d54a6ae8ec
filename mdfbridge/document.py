"""Read, validate, write and convert MDF v0.4 documents (JSON or YAML).

Reading goes text -> dict (with exact syntax-error positions and duplicate-key detection) ->
schema + semantic validation (``schemas/mdf-0.4.schema.json``) -> ``modeci_mdf.mdf.Model``.
Writing is atomic (``mdfbridge.atomic``: temporary file in the target directory, fsync, ``os.replace``; permissions
kept, symlinks written through, read-only targets refused unless forced).
"""
from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import jsonschema
import jsonschema_rs
import numpy as np
import yaml
from jsonschema.exceptions import ValidationError, best_match
from modeci_mdf import mdf as _mdf
from modeci_mdf.mdf import Model, ParameterCondition

from mdfbridge import json_text, limits
from mdfbridge.atomic import atomic_write, atomic_write_bytes  # noqa: F401 - re-exported (callers import them here)
from mdfbridge.document_forms import clean_form, liberal_validator
from mdfbridge.errors import DocumentError, MdfBridgeError, SchemaError, UnsupportedError
from mdfbridge.nesting import GRAPH_KEYS, flatten_document, is_nested
from mdfbridge.parse_limits import (
    LimitedComposerMixin,
    bad_text,
    check_json_text,
    check_shapes,
    check_strings,
    read_file_bytes,
    yaml_error,
)

__all__ = [
    "MDF_FORMAT",
    "SCHEMA_FILENAME",
    "SUPPORTED_EXTENSIONS",
    "schema_path",
    "load_schema",
    "load_document",
    "load_document_dict",
    "model_from_dict",
    "model_to_dict",
    "validate_dict",
    "save_document",
    "convert_document",
]

logger = logging.getLogger(__name__)

MDF_FORMAT = "ModECI MDF v0.4"
SCHEMA_FILENAME = "mdf-0.4.schema.json"
_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
SUPPORTED_EXTENSIONS: Tuple[str, ...] = tuple(_FORMATS)

PathLike = Union[str, "os.PathLike[str]"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------

def schema_path() -> Path:
    """Return the path of ``mdf-0.4.schema.json`` (repository ``schemas/`` first, then package data)."""
    here = Path(__file__).resolve().parent
    candidates = [
        here.parent / "schemas" / SCHEMA_FILENAME,   # source checkout: <repo>/schemas/
        here / "schemas" / SCHEMA_FILENAME,          # installed as package data: mdfbridge/schemas/
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MDF schema {SCHEMA_FILENAME} not found; looked in: " + ", ".join(str(c) for c in candidates))


@functools.lru_cache(maxsize=1)
def load_schema() -> Dict[str, Any]:
    """Return the parsed MDF v0.4 JSON Schema (cached)."""
    with open(schema_path(), encoding="utf-8") as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


_FAST_CHECKS: Dict[int, Tuple[Any, Callable[[Any], bool]]] = {}


def _fast_check(validator: Any) -> Callable[[Any], bool]:
    """The validity check of a validator's schema by jsonschema-rs (compiled Rust: about 1 us a node where
    jsonschema takes 1-4 ms and a Python-compiled check 20 us), cached per validator. It answers only "valid or
    not": the error of an invalid document is still jsonschema's, so messages are unchanged."""
    hit = _FAST_CHECKS.get(id(validator))
    if hit is None or hit[0] is not validator:
        rs = jsonschema_rs.validator_for(validator.schema)

        def check(data: Any) -> bool:
            try:
                return bool(rs.is_valid(data))
            except ValueError:  # a value of no JSON type where the schema looks (a YAML date or set): ask jsonschema
                return False

        hit = _FAST_CHECKS[id(validator)] = (validator, check)
    return hit[1]


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def _format_of(path: PathLike) -> str:
    suffix = Path(os.fspath(path)).suffix
    fmt = _FORMATS.get(suffix.lower())
    if fmt is None:
        shown = f"'{suffix}'" if suffix else "(none)"
        raise DocumentError(
            f"unsupported file extension {shown}; supported: {', '.join(SUPPORTED_EXTENSIONS)}",
            path=os.fspath(path))
    return fmt


def _json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _IDENT.match(part):
            out += f".{part}"
        else:
            out += "[" + repr(str(part) if not isinstance(part, str) else part) + "]"
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(items: Iterable[str], limit: int = 20) -> str:
    items = list(items)
    if not items:
        return "(none)"
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _line_col(text: str, pos: int) -> Tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return line, column


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------

class _DuplicateJSONKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_duplicate_pairs(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateJSONKey(key)
        result[key] = value
    return result


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]')


def _locate_json_duplicate(text: str) -> Optional[Tuple[str, int, int]]:
    """Find the first duplicate object key in (otherwise valid) JSON: (key, pos, first_pos)."""
    stack: List[Optional[Dict[str, Any]]] = []
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        top = stack[-1] if stack else None
        if token == "{":
            stack.append({"keys": {}, "expect_key": True})
        elif token == "[":
            stack.append(None)
        elif token in "}]":
            if stack:
                stack.pop()
        elif token == ",":
            if top is not None:
                top["expect_key"] = True
        elif token == ":":
            if top is not None:
                top["expect_key"] = False
        elif top is not None and top["expect_key"]:
            key = json.loads(token)
            if key in top["keys"]:
                return key, match.start(), top["keys"][key]
            top["keys"][key] = match.start()
            top["expect_key"] = False
    return None


def _parse_json(text: str, where: str) -> Any:
    # orjson's reading where it is the standard library's and nothing is to be refused (json_text.loads); else
    # depth, number literals, NUL/surrogate escapes checked before anything is built, then the standard library
    fast = json_text.loads(text, limits.current().max_nesting_depth)
    if fast is not None:
        return fast
    check_json_text(text, where)
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_pairs)
    except RecursionError:  # only past a raised max_nesting_depth
        raise DocumentError("arrays and objects nested too deeply for Python's JSON reader", path=where) from None
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError):  # e.g. Python's int-conversion digit limit
            raise DocumentError(f"invalid JSON number: {str(exc).split(';')[0]}", path=where) from None
        raise DocumentError(f"invalid JSON: {exc.msg}", path=where, line=exc.lineno,
                            column=exc.colno) from None
    except _DuplicateJSONKey as exc:
        found = _locate_json_duplicate(text)
        if found is None or found[0] != exc.key:
            raise DocumentError(f"duplicate key {exc.key!r}", path=where) from None
        key, pos, first = found
        line, column = _line_col(text, pos)
        first_line, first_column = _line_col(text, first)
        raise DocumentError(
            f"duplicate key {key!r} (first defined at line {first_line}, column {first_column})",
            path=where, line=line, column=column) from None


class _DuplicateYAMLKey(yaml.constructor.ConstructorError):
    pass


class _StrictSafeLoader(LimitedComposerMixin, yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys and keeps timestamps as strings (JSON has no dates); its
    composer bounds depth, alias expansion, numbers and refuses NUL/lone surrogates (mdfbridge.parse_limits)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: Dict[Any, Any] = {}
            for key_node, _value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<' merge keys may legitimately override
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable key: let the base class report it
                if first is not None:
                    raise _DuplicateYAMLKey(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first defined at line {first.line + 1}, "
                        f"column {first.column + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


# JSON has no timestamps: keep YAML dates/times as plain strings so YAML <-> JSON round-trips.
_StrictSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse_yaml(text: str, where: str) -> Any:
    # Same as yaml.safe_load(text), but with the SafeLoader subclass above (never an unsafe loader).
    loader: Optional[_StrictSafeLoader] = None
    try:
        loader = _StrictSafeLoader(text)  # (its reader refuses unprintable characters here already)
        return loader.get_single_data()
    except _DuplicateYAMLKey as exc:
        mark = exc.problem_mark
        raise DocumentError(exc.problem or "duplicate key", path=where,
                            line=mark.line + 1 if mark else None,
                            column=mark.column + 1 if mark else None) from None
    except yaml.MarkedYAMLError as exc:
        limited = yaml_error(exc, where)
        if limited is not None:
            raise limited from None
        mark = exc.problem_mark or exc.context_mark
        context = exc.context
        if context and exc.context_mark is not None and exc.problem_mark is not None:
            context += f" (line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        parts = [p for p in (context, exc.problem) if p]
        raise DocumentError("invalid YAML: " + ("; ".join(parts) or str(exc)), path=where,
                            line=mark.line + 1 if mark else None,
                            column=mark.column + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:
        line, column = _line_col(text, exc.position)
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise DocumentError(f"invalid YAML: {exc.reason} (character {char})",
                            path=where, line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"invalid YAML: {exc}", path=where) from None
    except RecursionError:  # only past a raised max_nesting_depth
        raise DocumentError("sequences and mappings nested too deeply for the YAML reader", path=where) from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: PathLike) -> str:
    """The file as text: UTF-8 (a leading BOM dropped), newlines translated as text mode would ("\r\n", "\r" ->
    "\n"). Bytes are read and decoded in one call, which is several times faster than a text-mode read on
    documents of hundreds of MB (one number per line)."""
    where = os.fspath(path)
    # a regular file (no directory, FIFO or device: stat before open) of at most max_file_bytes
    raw = read_file_bytes(where, error=lambda message: DocumentError(message, path=where))
    try:
        text = raw.decode("utf-8")  # (the "utf-8-sig" codec is several times slower on large files)
    except UnicodeDecodeError as exc:
        raise DocumentError(f"file is not UTF-8 text ({exc.reason} at byte {exc.start})",
                            path=where) from None
    if text.startswith("\ufeff"):  # a byte order mark
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _check_top_level(data: Any, where: Optional[str], error: type) -> None:
    if data is None:
        raise error("document is empty; expected one model: {<model id>: {...}}", path=where)
    if not isinstance(data, dict):
        raise error(f"top level must be a mapping {{<model id>: {{...}}}}, got {type(data).__name__}",
                    path=where)
    if len(data) != 1:
        raise error(f"top level must contain exactly one model, found {len(data)}"
                    + (f": {_names(map(str, data))}" if data else ""), path=where)


def load_document_dict(path: PathLike, *, strict: bool = False, as_written: bool = False) -> Dict[str, Any]:
    """Read a .json/.yaml/.yml MDF file and return its validated dict ({model id: {...}}).

    path: the file (str or path-like; the extension picks the parser). Unreadable files and JSON/YAML syntax
    errors raise DocumentError with the line and column; schema violations raise SchemaError with the JSON path.
    strict (default False): validate against mdfbridge's schema as written (the form mdfbridge writes;
    `mdfbridge validate --strict`) and return the dict exactly as written. By default (False) the forms other
    writers use that change no result are read too (mdfbridge.document_forms: `notes`, ids that are not
    identifiers, v0.1 forms) and the dict comes back in mdfbridge's form (`clean_form`; `notes` are kept as
    written), or exactly as written with `as_written` (default False; for writing trained values back into
    another writer's file).
    """
    where = os.fspath(path)
    fmt = _format_of(path)
    text = _read_text(path)
    if not text.strip():
        raise DocumentError("file is empty; expected one model: {<model id>: {...}}", path=where)
    data = _parse_json(text, where) if fmt == "json" else _parse_yaml(text, where)
    _check_top_level(data, where, DocumentError)
    json_keys = fmt == "json"  # (JSON keys are strings: nothing to check)
    if strict:
        _validate(data, where, False, keys_checked=json_keys)
    else:
        kept = clean_form(data, notes=True)
        # without the word "notes" in the text (nor an escape that could spell it) there are none to drop: the one
        # copy serves validation too (each clean_form is a pass over the whole document)
        _validate(clean_form(data) if "notes" in text or "\\" in text else kept, where, True,
                  keys_checked=json_keys)
        data = data if as_written else kept
    logger.debug("loaded %s document %s (model %r)", fmt, where, next(iter(data)))
    return data


def load_document(path: PathLike) -> Model:
    """Read, validate and convert an MDF file to a ``modeci_mdf.mdf.Model``.

    path: the file (str or path-like; `.json`, `.yaml` or `.yml`), read as `load_document_dict` reads it."""
    where = os.fspath(path)
    return _build_model(load_document_dict(path), where)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------

def _x_error(error: ValidationError) -> Optional[str]:
    for candidate in (error, error.parent):
        if candidate is not None and isinstance(candidate.schema, dict) and "x-error" in candidate.schema:
            return candidate.schema["x-error"]
    return None


def _schema_error(error: ValidationError, where: Optional[str]) -> SchemaError:
    parts = list(error.absolute_path)
    in_property_names = "propertyNames" in error.absolute_schema_path
    if in_property_names:
        # the instance is the offending key; point at it
        parts.append(error.instance)
        if not isinstance(error.instance, str):
            message = f"key {_short(error.instance)} is not a string"
            return SchemaError(message, path=where, json_path=_json_path(parts))
    template = _x_error(error)
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        if len(extra) == 1:
            parts.append(extra[0])
            message = f"unexpected key {extra[0]!r} (allowed: {_names(allowed)})"
        else:
            message = (f"unexpected keys {', '.join(repr(k) for k in extra)} "
                       f"(allowed: {_names(allowed)})")
    elif template is not None:
        message = template.replace("{value}", _short(error.instance))
    elif error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        message = f"missing required key {missing[0]!r}" if len(missing) == 1 else error.message
    elif error.validator == "dependentRequired":
        message = error.message
        for key, needed in error.validator_value.items():
            missing = [n for n in needed if n not in error.instance]
            if key in error.instance and missing:
                message = f"{key!r} requires " + ", ".join(repr(n) for n in missing)
                break
    else:
        message = error.message
    return SchemaError(message, path=where, json_path=_json_path(parts))


def _numeric_array(node: List[Any]) -> bool:
    """Is this (nested) list all numbers, e.g. a weight matrix? Then it holds no mapping keys to check; numpy
    decides in one C call instead of a Python walk over millions of numbers."""
    first = node
    while isinstance(first, list) and first:
        first = first[0]
    if isinstance(first, (dict, str)) or first is None or isinstance(first, list):
        return False
    try:
        np.asarray(node, dtype=float)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _string_keys_only(node: Any) -> bool:
    """True when every mapping key in node is a string (the quick pass; `_check_string_keys` names a bad one)."""
    stack = [node]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for key, item in v.items():
                if not isinstance(key, str):
                    return False
                if isinstance(item, (dict, list)):
                    stack.append(item)
        elif isinstance(v, list):
            stack.extend(x for x in v if isinstance(x, (dict, list)))
    return True


def _check_string_keys(node: Any, parts: List[Any], where: Optional[str]) -> None:
    if not parts and _string_keys_only(node):
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                hint = ""
                if isinstance(key, bool) or key is None:
                    hint = " (YAML reads unquoted on/off/yes/no/true/false/null as booleans/null; quote it)"
                raise SchemaError(f"key {_short(key)} is not a string{hint}", path=where,
                                  json_path=_json_path(parts + [str(key)]))
            _check_string_keys(value, parts + [key], where)
    elif isinstance(node, list) and not _numeric_array(node):
        for index, value in enumerate(node):
            _check_string_keys(value, parts + [index], where)


def _graph_nodes(data: Dict[str, Any]) -> Iterator[Tuple[str, str, str, Any]]:
    """(model id, graph id, node id, node) of every node of a raw MDF dict, skipping what is not a mapping (the
    schema reports those)."""
    for model_id, model in data.items():
        for graph_id, graph in ((model.get("graphs") or {}).items() if isinstance(model, dict) else ()):
            nodes = graph.get("nodes") if isinstance(graph, dict) else None
            for node_id, node in (nodes.items() if isinstance(nodes, dict) else ()):
                yield model_id, graph_id, node_id, node


def _refuse_nested_graphs(data: Dict[str, Any], where: Optional[str]) -> None:
    """Strict validation: mdfbridge writes flat graphs (a node holding a graph is read, flattened, by the default
    reader: mdfbridge.nesting)."""
    for model_id, graph_id, node_id, node in _graph_nodes(data):
        if is_nested(node):
            held = [k for k in GRAPH_KEYS if k in node]
            raise SchemaError(
                f"node {node_id!r} holds a nested graph ({', '.join(held)}); the default reader flattens "
                "nested graphs, strict validation (the form mdfbridge writes) wants flat ones", path=where,
                json_path=_json_path([model_id, "graphs", graph_id, "nodes", node_id]))


def _refuse_gating(data: Dict[str, Any], where: Optional[str]) -> None:
    """PsyNeuLink's GatingMechanisms (its GRUComposition's reset and update gates) act through edges into ports the
    receiver does not declare and a multiplication held only in edge metadata: MDF does not say what they do, so
    running the rest would be silently wrong."""
    for model_id, graph_id, node_id, node in _graph_nodes(data):
        meta = node.get("metadata") if isinstance(node, dict) else None
        if isinstance(meta, dict) and meta.get("type") == "GatingMechanism":
            raise UnsupportedError(
                f"node {node_id!r} is a PsyNeuLink GatingMechanism: its gating acts through edge metadata, "
                "which MDF does not execute (PsyNeuLink 0.21 cannot export a GRUComposition itself; "
                "mdfbridge's GRUComposition writes GRU blocks it runs)",
                where=f"{where or '<document>'} at {_json_path([model_id, 'graphs', graph_id, 'nodes', node_id])}")


def _check_semantics(data: Dict[str, Any], where: Optional[str]) -> None:
    for model_id, model in data.items():
        for graph_id, graph in (model.get("graphs") or {}).items():
            gparts = [model_id, "graphs", graph_id]
            nodes = graph.get("nodes") or {}
            for edge_id, edge in (graph.get("edges") or {}).items():
                eparts = gparts + ["edges", edge_id]
                for role, port_role, ports_key in (("sender", "sender_port", "output_ports"),
                                                   ("receiver", "receiver_port", "input_ports")):
                    node_id = edge[role]
                    if node_id not in nodes:
                        raise SchemaError(
                            f"edge {edge_id!r}: {role} node {node_id!r} does not exist in graph "
                            f"{graph_id!r} (nodes: {_names(nodes)})",
                            path=where, json_path=_json_path(eparts + [role]))
                    port_id = edge[port_role]
                    ports = nodes[node_id].get(ports_key) or {}
                    if port_id not in ports:
                        kind = "output" if role == "sender" else "input"
                        raise SchemaError(
                            f"edge {edge_id!r}: {kind} port {port_id!r} does not exist on {role} node "
                            f"{node_id!r} ({ports_key}: {_names(ports)})",
                            path=where, json_path=_json_path(eparts + [port_role]))
            node_specific = (graph.get("conditions") or {}).get("node_specific") or {}
            for node_id in node_specific:
                if node_id not in nodes:
                    raise SchemaError(
                        f"condition for node {node_id!r}, which does not exist in graph {graph_id!r} "
                        f"(nodes: {_names(nodes)})",
                        path=where,
                        json_path=_json_path(gparts + ["conditions", "node_specific", node_id]))
            for node_id, node in nodes.items():
                for param_id, param in (node.get("parameters") or {}).items():
                    conditions = param.get("conditions")
                    if isinstance(conditions, list):
                        seen = set()
                        for index, cond in enumerate(conditions):
                            if cond["id"] in seen:
                                raise SchemaError(
                                    f"duplicate condition id {cond['id']!r} in parameter {param_id!r}",
                                    path=where,
                                    json_path=_json_path(gparts + ["nodes", node_id, "parameters",
                                                                   param_id, "conditions", index, "id"]))
                            seen.add(cond["id"])


def validate_dict(data: Dict[str, Any], path: Optional[str] = None, liberal: bool = False) -> None:
    """Validate a raw MDF dict against the v0.4 schema and semantic rules; raise SchemaError if invalid.

    data: the serialised document ({model id: {...}}); path: the file it came from, named in errors (default None:
    '<document>'); liberal: read as other writers write (default False: the form mdfbridge writes): ids may be any
    non-empty string but a Python keyword, and nested graphs are checked flattened (mdfbridge.nesting)."""
    _validate(data, os.fspath(path) if path is not None else None, liberal)


def _validate(data: Dict[str, Any], where: Optional[str], liberal: bool, keys_checked: bool = False) -> None:
    """validate_dict; keys_checked: every mapping key is known to be a string and every value of a JSON type
    (JSON or YAML text, `_plain_checked`)."""
    _check_top_level(data, where, SchemaError)
    if not keys_checked:
        _check_string_keys(data, [], where)
        # (a dict from the API may hold tuples, which jsonschema-rs takes for arrays and jsonschema does not)
        keys_checked = _is_plain(data, _Seen(arrays=True))
    _refuse_gating(data, where)
    if liberal:
        data = flatten_document(data)
    else:
        _refuse_nested_graphs(data, where)
    validator = liberal_validator() if liberal else _validator()
    if not (keys_checked and _fast_check(validator)(data)):  # valid documents skip jsonschema (jsonschema-rs
        error = best_match(validator.iter_errors(data))  # said so); the error of an invalid one is jsonschema's
        if error is not None:
            raise _schema_error(error, where)
    check_shapes(data, where, _json_path)  # small positive integers within max_elements, before anything allocates
    _check_semantics(data, where)


# --------------------------------------------------------------------------------------------
# dict <-> Model
# --------------------------------------------------------------------------------------------

def _describe(exc: BaseException) -> str:
    subs = getattr(exc, "exceptions", None)
    if subs:
        return "; ".join(_describe(s) for s in subs)
    return f"{type(exc).__name__}: {exc}"


def _normalise_parameter_conditions(model: Model) -> None:
    # modeci-mdf writes Parameter.conditions as a list of {id, test, value} but cannot structure
    # that list back (it stays a list of dicts, and to_dict() then fails): rebuild the objects.
    for graph in model.graphs:
        for node in graph.nodes:
            for param in node.parameters:
                if any(isinstance(c, dict) for c in param.conditions):
                    param.conditions = [
                        ParameterCondition(id=c["id"], test=c.get("test"), value=c.get("value"))
                        if isinstance(c, dict) else c
                        for c in param.conditions
                    ]


def _build_model(data: Dict[str, Any], where: Optional[str]) -> Model:
    (model_id, body), = data.items()
    try:
        # Same as Model.from_dict(data) but also correct for a model whose id is literally "id";
        # deep copy because modeci-mdf's structure hooks mutate the dicts they are given.
        model = _mdf.converter.structure({"id": model_id, **copy.deepcopy(body)}, Model)
        _normalise_parameter_conditions(model)
    except MdfBridgeError:
        raise
    except Exception as exc:  # cattrs/attrs errors: never leak them raw
        raise SchemaError(f"modeci-mdf could not build the model: {_describe(exc)}",
                          path=where, json_path=_json_path([model_id])) from exc
    return model


def model_from_dict(data: Dict[str, Any], path: Optional[str] = None) -> Model:
    """Validate a raw MDF dict and convert it to a ``modeci_mdf.mdf.Model`` (which has no place for `notes`: they
    are left out).

    data: the serialised document ({model id: {...}}; other writers' forms are read as mdfbridge's); path: the file
    it came from, named in errors (default None: '<document>')."""
    data = clean_form(data, forms=False)
    validate_dict(data, path)
    return _build_model(data, os.fspath(path) if path is not None else None)


_PLAIN_SCALARS = frozenset({float, int, bool, str, type(None)})


def _to_plain(value: Any, parts: List[Any], where: Optional[str] = None) -> Any:
    """Return a copy of ``value`` made of plain JSON types (numpy arrays/scalars -> lists/floats)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, np.str_):
                key = str(key)
            out[key] = _to_plain(item, parts + [key], where)
        return out
    if isinstance(value, (list, tuple)):
        if all(type(item) in _PLAIN_SCALARS for item in value):  # a row of numbers: nothing to convert
            return list(value)
        return [_to_plain(item, parts + [i], where) for i, item in enumerate(value)]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fiub":  # tolist() gives plain floats/ints/bools already
            return value.tolist()
        return _to_plain(value.tolist(), parts, where)
    if isinstance(value, np.generic):
        return _to_plain(value.item(), parts, where)
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)          # e.g. modelspec's EvaluableExpression
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise SchemaError(f"cannot save a value of type {type(value).__name__}: {_short(value)}",
                      path=where, json_path=_json_path(parts))


class _NotPlain(Exception):
    """Raised by `_plain_fast` at anything it does not pass: the slow walks then name the place."""


class _Seen:
    """What `_is_plain` / `_plain_fast` saw on the way: a `notes` key; a float that is not finite (NaN, an
    infinity); how many objects and how many numbers in rows of numbers (`_is_plain` only)."""

    __slots__ = ("notes", "non_finite", "objects", "row_numbers", "arrays")

    def __init__(self, arrays: bool = False) -> None:
        self.notes = False
        self.non_finite = False
        self.objects = 0
        self.row_numbers = 0
        self.arrays = arrays  # numpy arrays json_text writes (numeric, 1-D or more) stay arrays: not made lists


_JSON_DTYPES = frozenset(np.dtype(t) for t in ("float64", "float32", "float16", "int64", "int32", "int16", "int8",
                                               "uint64", "uint32", "uint16", "uint8", "bool"))


def _kept_array(value: np.ndarray, seen: _Seen) -> bool:
    """Is value an array to keep as it is (seen.arrays, a dtype json_text writes, 1-D or more, C order)? Notes a
    non-finite value and counts its numbers."""
    if not (seen.arrays and value.ndim and value.dtype in _JSON_DTYPES and value.flags.c_contiguous):
        return False
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        seen.non_finite = True
    seen.row_numbers += value.size
    return True


def _finite_row(row: Any) -> bool:
    """Are all numbers of a row of numbers finite? (Their sum is then finite, barring overflow: a false no.)"""
    try:
        return math.isfinite(sum(row))
    except OverflowError:  # an integer too large for a float
        return False


def _plain_fast(value: Any, seen: _Seen) -> Any:
    """`_to_plain` in one pass without a path (so without a list per item), checking on the way what
    `_check_string_keys` and `check_strings` check (string keys; no NUL or lone surrogate in keys or strings)
    and noting in `seen` what it saw. Raises _NotPlain where the slow walks must say what is wrong."""
    t = type(value)
    if t is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise _NotPlain
                key = str(key)  # np.str_
            if bad_text(key):
                raise _NotPlain
            if key == "notes":
                seen.notes = True
            ti = type(item)
            if ti is float or ti is int or ti is bool or item is None:
                if ti is float and not math.isfinite(item):
                    seen.non_finite = True
                out[key] = item
            elif ti is str:
                if bad_text(item):
                    raise _NotPlain
                out[key] = item
            else:
                out[key] = _plain_fast(item, seen)
        return out
    if t is list or t is tuple:
        if _NUMBERS.issuperset(map(type, value)):  # a row of numbers (in C): nothing to convert or check
            if not _finite_row(value):
                seen.non_finite = True
            return list(value)
        return [_plain_fast(item, seen) for item in value]
    if t is float or t is int or t is bool or value is None:
        if t is float and not math.isfinite(value):
            seen.non_finite = True
        return value
    if isinstance(value, str):
        if bad_text(value):
            raise _NotPlain
        return str(value)  # (also modelspec's EvaluableExpression)
    if isinstance(value, np.ndarray):
        if seen.arrays and value.ndim and value.dtype.kind in "fiub" and value.dtype.newbyteorder("=") in _JSON_DTYPES:
            value = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))
            if _kept_array(value, seen):
                return value
        if value.dtype.kind in "fiub":
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                seen.non_finite = True
            return value.tolist()
        return _plain_fast(value.tolist(), seen)
    if isinstance(value, np.generic):
        return _plain_fast(value.item(), seen)
    if isinstance(value, int):  # a subclass (an IntEnum; np.bool_ and np.int64 are np.generic, above)
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise _NotPlain


_NUMBERS = frozenset({float, int, bool})


def _is_plain(value: Any, seen: _Seen) -> bool:
    """Is value made of plain JSON types only (exactly: no subclass, tuple or numpy value), its keys strings, no
    NUL or lone surrogate anywhere? (Then `_plain_checked` need not copy it: a walk without building anything,
    about twice as fast.)"""
    t = type(value)
    if t is dict:
        seen.objects += 1
        for key, item in value.items():
            # (bad_text inlined: ASCII text without NUL needs no regex)
            if type(key) is not str or "\x00" in key or (not key.isascii() and bad_text(key)):
                return False
            if key == "notes":
                seen.notes = True
            ti = type(item)
            if ti is dict or ti is list:
                if not _is_plain(item, seen):
                    return False
            elif ti is str:
                if "\x00" in item or (not item.isascii() and bad_text(item)):
                    return False
            elif ti is float:
                if not math.isfinite(item):
                    seen.non_finite = True
            elif not (ti is int or ti is bool or item is None or (ti is np.ndarray and _kept_array(item, seen))):
                return False
        return True
    if t is list:
        if _NUMBERS.issuperset(map(type, value)):
            if not _finite_row(value):
                seen.non_finite = True
            seen.row_numbers += len(value)
            return True
        for item in value:
            if not _is_plain(item, seen):
                return False
        return True
    if t is str:
        return not bad_text(value)
    if t is float:
        if not math.isfinite(value):
            seen.non_finite = True
        return True
    return t is int or t is bool or value is None or (t is np.ndarray and _kept_array(value, seen))


def _plain_checked(value: Any, where: Optional[str], arrays: bool = False) -> Tuple[Any, _Seen]:
    """(value in plain JSON types, what was seen in it), refusing what cannot be saved: a value of another type,
    a key that is not a string, a NUL character or lone surrogate (SchemaError naming the JSON path). Value itself
    comes back when it is plain already, else a copy (numpy arrays as lists, tuples as lists, np.str_ keys as
    str); with `arrays` (default False) numeric numpy arrays of 1 or more dimensions stay arrays (in C order, native
    byte order), for json_text to write in their own dtype's shortest form."""
    seen = _Seen(arrays)
    if _is_plain(value, seen):
        return value, seen
    seen = _Seen(arrays)
    try:
        return _plain_fast(value, seen), seen
    except _NotPlain:
        pass
    data = _to_plain(value, [], where)  # the slow walks: each names the place of what it refuses
    _check_string_keys(data, [], where)
    check_strings(data, where, _json_path)
    seen.notes = seen.non_finite = True  # (not known: the careful paths)
    return data, seen


def model_to_dict(model: Model, path: Optional[str] = None) -> Dict[str, Any]:
    """Serialise a ``modeci_mdf.mdf.Model`` to the dict layout of ``Model.to_json()`` (plain JSON types).

    model: the Model; path: the file it is for, named in errors (default None: '<document>')."""
    return _plain_checked(_model_dict(model, path), path)[0]


def _model_dict(model: Model, path: Optional[str]) -> Dict[str, Any]:
    """modeci-mdf's dict of a Model (its values not yet plain JSON types)."""
    _normalise_parameter_conditions(model)
    try:
        return model.to_dict()
    except Exception as exc:
        raise SchemaError(f"modeci-mdf could not serialise the model: {_describe(exc)}",
                          path=path, json_path=_json_path([getattr(model, "id", "?")])) from exc


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def _with_header(data: Dict[str, Any], generating_application: Optional[str], keep_format: bool = False
                 ) -> Dict[str, Any]:
    (model_id, body), = data.items()
    if not isinstance(body, dict):
        return data  # let validation report it
    header: Dict[str, Any] = {"format": body["format"] if keep_format and "format" in body else MDF_FORMAT}
    if generating_application is not None:
        header["generating_application"] = generating_application
    elif "generating_application" in body:
        header["generating_application"] = body["generating_application"]
    if all(k in body for k in header):
        new_body = {k: header.get(k, v) for k, v in body.items()}   # keep the existing key order
    else:
        new_body = {**header, **{k: v for k, v in body.items() if k not in header}}
    return {model_id: new_body}


_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's C emitter where PyYAML has it


def _write_atomically(target: Path, fmt: str, data: Dict[str, Any], force: bool = False, finite: bool = False,
                      array_heavy: bool = False) -> None:
    def write(f: IO[Any]) -> None:
        if fmt == "json":
            f.write(json_text.dumps(data, finite=finite, array_heavy=array_heavy))
        else:
            yaml.dump(data, f, Dumper=_YAML_DUMPER, sort_keys=False, default_flow_style=None, indent=4,
                      allow_unicode=True, width=100)  # (flow style for lists of scalars: a row a line)

    try:
        atomic_write(target, write, binary=fmt == "json", force=force)  # (its temp file is removed on any error)
    except UnicodeEncodeError as exc:  # a lone surrogate in a string from the API: UTF-8 cannot hold it
        raise DocumentError(f"cannot write a string holding {exc.object[exc.start:exc.end]!r} (a lone surrogate); "
                            "expected valid Unicode text", path=str(target)) from None


def save_document(model_or_dict: Union[Model, Dict[str, Any]], path: PathLike, *,
                  generating_application: Optional[str] = None, liberal: bool = False, force: bool = False,
                  plain: bool = False) -> None:
    """Validate and atomically write a Model or MDF dict as JSON (mdfbridge.json_text: objects indented, numeric
    arrays on one line) or YAML, chosen by extension.

    model_or_dict: a ``modeci_mdf.mdf.Model`` or its serialised dict ({model id: {...}}); path: the file (str or
    path-like; `.json`, `.yaml` or `.yml`), replaced only once the whole document is written;
    generating_application: recorded in the header (default None: as the dict has it); liberal: validate as
    another writer's document is read, its ids, forms and format header kept (default False: mdfbridge's own form);
    force: replace a read-only file too (default False: DocumentError '<path>: is read-only'); plain: the caller
    built the dict from plain JSON types and numeric numpy arrays only, as mdfbridge's importers do (default False:
    a walk over the document checks and converts its types first): for JSON, the walk is skipped and its checks
    are made in the encoded text (`json_text.dumps_plain`), falling back to the walk where they fail. Written as
    mdfbridge.atomic writes: through a symlink, the file's permissions kept."""
    from .lowering import gc_paused

    where = os.fspath(path)
    fmt = _format_of(path)
    if isinstance(model_or_dict, Model):
        model_or_dict = _model_dict(model_or_dict, where)
    elif not isinstance(model_or_dict, dict):
        raise TypeError(f"save_document expects a modeci_mdf Model or an MDF dict, "
                        f"got {type(model_or_dict).__name__}")
    with gc_paused():  # a large document: millions of new objects the collector would walk again and again
        if plain and fmt == "json" and not liberal and isinstance(model_or_dict, dict) \
                and _save_plain(model_or_dict, where, generating_application, force):
            return
        # plain JSON types, string keys, no NUL or lone surrogate (nothing a reader would refuse is ever written)
        data, seen = _plain_checked(model_or_dict, where, arrays=fmt == "json")
        _check_top_level(data, where, SchemaError)
        data = _with_header(data, generating_application, keep_format=liberal)
        # a document's own notes pass through (mdfbridge writes none); so do other writers' forms when liberal
        _validate(clean_form(data, forms=liberal) if seen.notes or liberal else data, where, liberal,
                  keys_checked=True)
        _write_atomically(Path(where), fmt, data, force, finite=not seen.non_finite,
                          array_heavy=seen.row_numbers > 16 * seen.objects)
    logger.debug("saved %s document %s (model %r)", fmt, where, next(iter(data)))


def _save_plain(data: Dict[str, Any], where: str, generating_application: Optional[str], force: bool) -> bool:
    """save_document of a dict its caller built from plain JSON types (`plain=True`): validated as it is, encoded
    by `json_text.dumps_plain` and written; False (nothing written) where the careful path must decide: the dict
    is not valid as it is, or its text holds what that path checks for."""
    if len(data) != 1 or not isinstance(next(iter(data.values())), dict):
        return False
    data = _with_header(data, generating_application)
    try:
        _validate(data, where, False, keys_checked=True)
    except Exception:  # noqa: BLE001 - the careful path decides, on the document it makes plain (its error)
        return False
    text = json_text.dumps_plain(data)
    if text is None:
        return False

    def write(f: IO[Any]) -> None:
        f.write(text)

    atomic_write(Path(where), write, binary=True, force=force)
    logger.debug("saved json document %s (model %r)", where, next(iter(data)))
    return True


def convert_document(src: PathLike, dst: PathLike, *, force: bool = False) -> None:
    """Convert an MDF file between JSON and YAML (validated; content preserved, format set to v0.4).

    src: the file to read; dst: the file to write (str or path-like each; the extensions, `.json`, `.yaml` or
    `.yml`, pick the formats; another writer's ids stay as written); force: replace a read-only dst too (default
    False)."""
    _format_of(dst)  # fail on a bad target extension before reading anything
    data = load_document_dict(src)
    save_document(data, dst, liberal=True, force=force)  # another writer's ids stay as they are
    logger.info("converted %s -> %s", os.fspath(src), os.fspath(dst))

