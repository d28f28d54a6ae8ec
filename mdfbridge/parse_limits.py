"""Safe reading of model and data files (issue 12): files must be regular files within `max_file_bytes`; JSON and
YAML documents are checked, before anything is built from them, for nesting depth (`max_nesting_depth`), YAML alias
expansion (`max_yaml_alias_nodes`, recursive aliases), number literals (`max_number_digits`, floats beyond
float64), NUL characters and lone surrogates; shapes in a document must be small positive integers whose product
is within `max_elements`. Every refusal is one DocumentError or LimitError naming the file and, where the text
has one, line and column. The limits are mdfbridge.limits' (override with --limit NAME=N or MDFBRIDGE_LIMITS)."""
from __future__ import annotations

import errno
import math
import os
import re
import stat
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import yaml

from . import limits
from .errors import DocumentError, MdfBridgeError

__all__ = ["read_file_bytes", "check_json_text", "LimitedComposerMixin", "check_shapes", "file_kind"]


def _hint(name: str) -> str:
    return f"(raise it with --limit {name}=N or {limits.ENV_VAR})"


def _place(path: Optional[str], line: Optional[int] = None, column: Optional[int] = None) -> str:
    where = path or "<document>"
    if line is not None:
        where += f":{line}" + (f":{column}" if column is not None else "")
    return where


def file_kind(mode: int) -> str:
    """What a stat mode is, in words ('a directory', 'a FIFO (named pipe)', ...).

    mode: st_mode of os.stat."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_file_bytes(path: "os.PathLike[str] | str", *, error: Callable[[str], MdfBridgeError],
                    limit_name: str = "max_file_bytes") -> bytes:
    """The bytes of a regular file of at most the limit `limit_name` (default max_file_bytes) bytes.

    path: the file (a symlink is followed; its target must be a regular file); error: makes the exception for a
    message about the file (e.g. `lambda m: DocumentError(m, path=p)`). A directory, FIFO, device or socket is
    refused from its stat, before it is opened (a FIFO is never opened, so nothing blocks); a file over the limit
    raises LimitError; at most limit + 1 bytes are ever read (a file that grows while read is still bounded)."""
    where = os.fspath(path)
    bound = getattr(limits.current(), limit_name)
    try:
        info = os.stat(where)
    except OSError as exc:
        raise error(f"cannot read file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"is {file_kind(info.st_mode)}, expected a regular file")
    if info.st_size > bound:
        raise limits.LimitError(f"file has {info.st_size:,} bytes, over the limit {limit_name}={bound:,} "
                                f"{_hint(limit_name)}", where=where)
    try:  # O_NONBLOCK: a file swapped for a FIFO after the stat does not block the open
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"cannot read file: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"is {file_kind(os.fstat(fd).st_mode)}, expected a regular file")
        chunks: List[bytes] = []
        got = 0
        while got <= bound:
            try:
                chunk = os.read(fd, min(1 << 24, bound + 1 - got))
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    continue
                raise error(f"cannot read file: {exc.strerror or exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    if got > bound:
        raise limits.LimitError(f"file has more than {bound:,} bytes, over the limit {limit_name}={bound:,} "
                                f"{_hint(limit_name)}", where=where)
    return b"".join(chunks)


# ------------------------------------------------------------------------------------------------ JSON

_JSON_STRUCT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[{]|[\]}]', re.S)
_JSON_NUMBERS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|-?[0-9][0-9]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?', re.S)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)


def _line_col(text: str, pos: int) -> Tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)


def _bad_char(ch: str) -> Optional[str]:
    if ch == "\x00":
        return "a NUL character"
    if "\ud800" <= ch <= "\udfff":
        return f"a lone surrogate (U+{ord(ch):04X})"
    return None


def _check_json_string(token: str, pos: int, text: str, where: str) -> None:
    """Refuse \\u0000 and lone surrogate escapes in one JSON string token (at text[pos:])."""
    pending: Optional[Tuple[int, int]] = None  # (code, offset) of a high surrogate waiting for its low half
    for m in _ESCAPE.finditer(token):
        esc = m.group(1)
        code = int(esc[1:], 16) if esc[0] == "u" and len(esc) == 5 else None
        if pending is not None and not (code is not None and 0xDC00 <= code <= 0xDFFF and m.start() == pending[1]):
            _string_error(text, pos + pending[1] - 6, where, pending[0])
        if pending is not None and code is not None and 0xDC00 <= code <= 0xDFFF and m.start() == pending[1]:
            pending = None
            continue
        pending = None
        if code is None:
            continue
        if 0xD800 <= code <= 0xDBFF:
            pending = (code, m.end())
        elif 0xDC00 <= code <= 0xDFFF or code == 0:
            _string_error(text, pos + m.start(), where, code)
    if pending is not None:
        _string_error(text, pos + pending[1] - 6, where, pending[0])


def _string_error(text: str, pos: int, where: str, code: int) -> None:
    line, column = _line_col(text, pos)
    what = _bad_char(chr(code))
    raise DocumentError(f"a string holds {what}; expected text without NUL characters or lone "
                        "surrogates", path=where, line=line, column=column)


def _check_numbers(text: str, where: str, max_digits: int) -> None:
    """Token by token (strings skipped): raise at the first number literal of too many digits or beyond float64."""
    for m in _JSON_NUMBERS.finditer(text):
        token = m.group()
        if token[0] == '"' or (len(token) <= max_digits and "e" not in token.lower()):
            continue
        mantissa = re.split("[eE]", token, maxsplit=1)[0]
        digits = sum(c.isdigit() for c in mantissa)
        if digits > max_digits:
            raise limits.LimitError(f"number literal of {digits:,} digits, over the limit max_number_digits="
                                    f"{max_digits:,} {_hint('max_number_digits')}",
                                    where=_place(where, *_line_col(text, m.start())))
        try:
            value = float(token)
        except (ValueError, OverflowError):
            continue
        if math.isinf(value):
            line, column = _line_col(text, m.start())
            raise DocumentError(f"number {token[:40]} is out of the range of a 64-bit float (about 1.8e308)",
                                path=where, line=line, column=column)


_STRUCT_BYTES = b'[]{}"\\'
_NOT_STRUCT = bytes(b for b in range(256) if b not in _STRUCT_BYTES)
_COMPACT_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
# digits -> '0', '.' kept, e/E -> 'e', everything else -> ' ': each number literal becomes runs of '0' (bytes.find
# then looks for long digit runs, big exponents and long integer parts, in C)
_NUMBER_MAP = bytes(ord("0") if chr(b).isdigit() and b < 128 else b if b == ord(".") else
                    ord("e") if b in b"eE" else ord(" ") for b in range(256))
# an 'e' and 3 digits or more, signed or not, in _NUMBER_MAP's text (a regex: its search for the rare 'e' is fast,
# where bytes.find of "e000" is slowed by the common last byte)
_E_AND_3_DIGITS = re.compile(rb"e ?000")


def _max_depth(raw: bytes) -> int:
    """The deepest nesting of JSON arrays and objects in `raw`, brackets inside strings not counted: the structural
    characters alone are kept (bytes.translate), their strings removed, and the depth is a cumulative sum."""
    import numpy as np

    compact = _COMPACT_STRING.sub(b"", raw.translate(None, _NOT_STRUCT))
    steps = np.frombuffer(compact, dtype=np.uint8)
    if not steps.size:
        return 0
    delta = np.where((steps == ord("[")) | (steps == ord("{")), 1, np.where((steps == ord("]")) | (steps == ord("}")),
                                                                             -1, 0))
    return int(np.cumsum(delta).max())


def check_json_text(text: str, where: str) -> None:
    """Refuse, before json.loads builds anything, JSON text nested deeper than max_nesting_depth, with a number
    literal of more than max_number_digits digits or beyond float64, or with a \\u0000 or lone-surrogate escape.
    Linear and in C for the common case (bytes.translate, str.find, numpy); only a suspect found that way is
    looked at token by token, for the line and column. text: the document; where: the file, named in the error."""
    lim = limits.current()
    raw = text.encode("utf-8", "surrogatepass")
    if text.count("[") + text.count("{") > lim.max_nesting_depth and _max_depth(raw) > lim.max_nesting_depth:
        _scan_structure(text, where, lim.max_nesting_depth)
    if _suspect_escape(raw):
        _scan_structure(text, where, None)
    if _suspect_number(raw.translate(_NUMBER_MAP), lim.max_number_digits):
        _check_numbers(text, where, lim.max_number_digits)


_SUSPECT_ESCAPE_BYTES = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")


def _suspect_escape(raw: bytes) -> bool:
    """Could the JSON text hold a \\u0000 or lone-surrogate escape? (Only a text with a backslash is searched.)"""
    return b"\\" in raw and _SUSPECT_ESCAPE_BYTES.search(raw) is not None


def _suspect_number(numbers: bytes, max_digits: int) -> bool:
    """Could the JSON text hold a number literal of more than max_digits digits or of a 3-digit exponent (beyond
    float64 maybe)? numbers: the text translated by _NUMBER_MAP (a literal of more than max_digits digits has a run
    of more than max_digits // 2 on one side of its point; a digit run in a string may match too, which only sends
    the text to the token scan)."""
    if b"0" * (max_digits // 2 + 1) in numbers:
        return True
    for m in _E_AND_3_DIGITS.finditer(numbers):  # a digit or point before the 'e': an exponent, not an id ("e1000")
        if m.start() and numbers[m.start() - 1] in b"0.":
            return True
    return False


def json_text_is_plain(raw: bytes, integer_digits: Optional[int] = None) -> bool:
    """Does UTF-8 JSON text pass `check_json_text`'s refusals other than nesting depth, decided without a token
    scan (no suspect escape or number literal)? The fast reader (json_text.loads) checks the depth it reads.

    raw: the text; integer_digits: also False where a number's integer part may have this many digits or more
    (default None: not looked for)."""
    if _suspect_escape(raw):
        return False
    numbers = raw.translate(_NUMBER_MAP)
    if _suspect_number(numbers, limits.current().max_number_digits):
        return False
    if integer_digits is not None:
        run = b"0" * integer_digits  # (after a space: not a fraction's or an exponent's digits)
        return not numbers.startswith(run) and b" " + run not in numbers
    return True


def _scan_structure(text: str, where: str, max_depth: Optional[int]) -> None:
    """Token by token: raise at the first bracket past max_depth (None: depth not checked) or bad escape."""
    depth = 0
    for m in _JSON_STRUCT.finditer(text):
        token = m.group()
        first = token[0]
        if first == '"':
            if "\\u" in token:
                _check_json_string(token, m.start(), text, where)
        elif first in "[{":
            depth += 1
            if max_depth is not None and depth > max_depth:
                line, column = _line_col(text, m.start())
                raise limits.LimitError(
                    f"arrays and objects nested deeper than the limit max_nesting_depth="
                    f"{max_depth} {_hint('max_nesting_depth')}", where=_place(where, line, column))
        else:
            depth -= 1


# ------------------------------------------------------------------------------------------------ YAML

_INT_TAG = "tag:yaml.org,2002:int"
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
_FLOAT_TAG = "tag:yaml.org,2002:float"


def bad_text(text: str) -> bool:
    """Does a string hold a NUL character or a lone surrogate (which no JSON or YAML reader takes back)? ASCII
    text is checked without the regex."""
    return "\x00" in text or (not text.isascii() and _BAD_CHARS.search(text) is not None)


class LimitedComposerMixin:
    """For a yaml Loader (put first among the bases): composing checks nesting depth (max_nesting_depth, counting
    what aliases bring in), the nodes aliases expand to (max_yaml_alias_nodes: each alias adds the size of the
    tree it names, so a billion-laughs document stops after about the limit's worth of work), recursive aliases,
    and scalars: NUL characters, lone surrogates, number literals of more than max_number_digits digits or
    beyond float64. Each refusal is a ComposerError at the place (line and column) in the text."""

    _sizes: Dict[int, Tuple[int, int]]  # id(node) -> (nodes it expands to, height)

    def compose_document(self) -> Any:  # noqa: D102 - yaml's
        self._sizes, self._depth, self._expanded = {}, 0, 0
        self._lim = limits.current()
        return super().compose_document()  # type: ignore[misc]

    def _refuse(self, message: str, mark: Any) -> None:
        raise _LimitComposerError(None, None, message, mark)

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - yaml's
        lim = self._lim
        if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
            event = self.peek_event()  # type: ignore[attr-defined]
            target = self.anchors.get(event.anchor)  # type: ignore[attr-defined]
            if target is not None:
                known = self._sizes.get(id(target))
                if known is None:
                    self._refuse(f"alias *{event.anchor} refers to a node that contains it (a recursive alias); "
                                 "expected a tree", event.start_mark)
                assert known is not None
                size, height = known
                self._expanded += size
                if self._expanded > lim.max_yaml_alias_nodes:
                    raise _LimitComposerError(
                        None, None, f"aliases expand to more than {lim.max_yaml_alias_nodes:,} nodes, over the limit "
                        f"max_yaml_alias_nodes {_hint('max_yaml_alias_nodes')}", event.start_mark, limit=True)
                if self._depth + height > lim.max_nesting_depth:
                    self._depth_error(event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[misc]
        event = self.peek_event()  # type: ignore[attr-defined]
        collection = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if collection:
            self._depth += 1
            if self._depth > lim.max_nesting_depth:
                self._depth_error(event.start_mark)
        try:
            node = super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            if collection:
                self._depth -= 1
        if isinstance(node, yaml.ScalarNode):
            self._sizes[id(node)] = (1, 0)
            self._check_scalar(node)
        else:
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
            found = [self._sizes.get(id(c), (1, 0)) for c in children]
            self._sizes[id(node)] = (1 + sum(s for s, _ in found), 1 + max((h for _, h in found), default=0))
        return node

    def _depth_error(self, mark: Any) -> None:
        lim = self._lim
        raise _LimitComposerError(None, None, f"sequences and mappings nested deeper than the limit max_nesting_depth="
                                  f"{lim.max_nesting_depth} {_hint('max_nesting_depth')}", mark, limit=True)

    def _check_scalar(self, node: Any) -> None:
        value = node.value
        found = _BAD_CHARS.search(value)
        if found:
            raise _LimitComposerError(None, None, f"a scalar holds {_bad_char(found.group())}; expected text without "
                                      "NUL characters or lone surrogates", node.start_mark)
        if node.tag in (_INT_TAG, _FLOAT_TAG) and node.style is None:
            mantissa = value if node.tag == _INT_TAG else re.split("[eE]", value, maxsplit=1)[0]
            digits = sum(c.isalnum() for c in mantissa.lower().replace("0x", "").replace("0b", "").replace("0o", ""))
            if digits > self._lim.max_number_digits:
                raise _LimitComposerError(None, None, f"number literal of {digits:,} digits, over the limit "
                                          f"max_number_digits={self._lim.max_number_digits:,} "
                                          f"{_hint('max_number_digits')}", node.start_mark, limit=True)
            if node.tag == _FLOAT_TAG and not value.lower().lstrip("+-").startswith((".inf", ".nan")):
                try:
                    number = float(value.replace("_", ""))
                except ValueError:
                    return
                if math.isinf(number):
                    raise _LimitComposerError(None, None, f"number {value[:40]} is out of the range of a 64-bit float "
                                              "(about 1.8e308)", node.start_mark)


class _LimitComposerError(yaml.composer.ComposerError):
    def __init__(self, *args: Any, limit: bool = False) -> None:
        super().__init__(*args)
        self.limit = limit


def yaml_error(exc: BaseException, where: str) -> Optional[MdfBridgeError]:
    """The MdfBridgeError for a refusal of LimitedComposerMixin, or None for any other exception.

    exc: what the loader raised; where: the file."""
    if not isinstance(exc, _LimitComposerError):
        return None
    mark = exc.problem_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    if exc.limit:
        return limits.LimitError(str(exc.problem), where=_place(where, line, column))
    return DocumentError(str(exc.problem), path=where, line=line, column=column)


# ------------------------------------------------------------------------------------------------ shapes

def _ports(data: Dict[str, Any]) -> Iterator[Tuple[List[Any], Any]]:
    """(JSON path parts, shape) of every port shape of a flat MDF dict (what is not a mapping is skipped: the
    schema reports it)."""
    def items(node: Any) -> Iterator[Tuple[Any, Any]]:
        return iter(node.items()) if isinstance(node, dict) else iter(())
    for model_id, model in items(data):
        for graph_id, graph in items(model.get("graphs") if isinstance(model, dict) else None):
            for node_id, node in items(graph.get("nodes") if isinstance(graph, dict) else None):
                for kind in ("input_ports", "output_ports"):
                    for port_id, port in items(node.get(kind) if isinstance(node, dict) else None):
                        if isinstance(port, dict) and "shape" in port:
                            parts = [model_id, "graphs", graph_id, "nodes", node_id, kind, port_id, "shape"]
                            yield parts, port["shape"]


def check_shapes(data: Dict[str, Any], where: Optional[str], json_path: Callable[[List[Any]], str]) -> None:
    """Every port shape of an MDF dict is a list of small positive integers whose product is within max_elements;
    else SchemaError (a value that is not such an integer) or LimitError (too many elements) naming the JSON path.

    data: the document; where: the file; json_path: makes the JSON path of a list of keys (document._json_path)."""
    from .errors import SchemaError

    bound = limits.current().max_elements
    for parts, shape in _ports(data):
        if not isinstance(shape, list):
            continue  # the schema reports it
        count = 1
        for i, dim in enumerate(shape):
            ok = isinstance(dim, int) and not isinstance(dim, bool)
            if isinstance(dim, float) and math.isfinite(dim) and dim.is_integer():
                ok, dim = True, int(dim)
            if not ok or dim < 1:
                raise SchemaError(f"shape {_short(shape)}: dimension {_short(dim)} is not a positive integer; expected "
                                  "a list of positive integers", path=where, json_path=json_path(parts + [i]))
            count *= dim
            if count > bound:
                raise limits.LimitError(f"shape {_short(shape)} would have more than {bound:,} elements, over the "
                                        f"limit max_elements {_hint('max_elements')}",
                                        where=f"{where or '<document>'} at {json_path(parts)}")


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, list):
        text = "[" + ", ".join(_short(v, limit) for v in value[:8]) + (", ...]" if len(value) > 8 else "]")
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        text = f"<an integer of about {int(value.bit_length() * 0.30103):,} digits>"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_strings(data: Any, where: Optional[str], json_path: Callable[[List[Any]], str]) -> None:
    """Refuse a document to be written whose keys or strings hold a NUL character or a lone surrogate (a YAML or
    JSON reader refuses them; JSON to YAML would otherwise write them silently): SchemaError naming the JSON path.

    data: the document (plain JSON types); where: the file; json_path: makes a JSON path (document._json_path).
    Walked without recursion; numbers are skipped by type."""
    from .errors import SchemaError

    stack: List[Tuple[List[Any], Any]] = [([], data)]
    while stack:
        parts, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            for text, at in ((key, parts + [key]), (value, parts + [key])):
                if type(text) is str and _BAD_CHARS.search(text):
                    bad = _bad_char(_BAD_CHARS.search(text).group())  # type: ignore[union-attr]
                    raise SchemaError(f"{'a key' if text is key else 'a string'} holds {bad}; expected text without "
                                      "NUL characters or lone surrogates", path=where, json_path=json_path(at))
            if isinstance(value, (dict, list)):
                stack.append((parts + [key], value))
