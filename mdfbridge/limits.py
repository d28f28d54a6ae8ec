"""Resource limits for everything read from a file: one policy, checked before allocating.

Defaults fit any real model (the largest arrays of the bundled, modeci-mdf, PsyNeuLink and ONNX-zoo-sized models are
far below them) and keep a hostile file under about 1 GiB of memory and a few seconds. Override them per process
with the MDFBRIDGE_LIMITS environment variable (`name=value,name=value`), the CLI's `--limit name=value`
(repeatable), or in code with `with limits.override(max_elements=10**9): ...`. Exceeding a limit raises
`LimitError` (an MdfBridgeError) naming the place, what exceeded and the limit's name, so the message says how to
raise it."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from .errors import MdfBridgeError

ENV_VAR = "MDFBRIDGE_LIMITS"


class LimitError(MdfBridgeError):
    """Input would exceed a resource limit. message: what exceeded which limit; where: the place (a file, a node
    and expression; default None)."""


@dataclass(frozen=True)
class Limits:
    """The limits (each a positive int).

    max_elements: elements of any one array computed from a file (expression intermediates, shapes, data,
    folded constants; default 2**25, 256 MiB of float64). max_int_bits: bits of any integer an expression
    computes or a file holds (default 4096). max_exponent: largest integer exponent of `**` (default 1024).
    max_expression_depth: nesting depth of an expression tree (default 100). max_expression_length: characters of
    an expression (default 10,000). max_file_bytes: size of a model or data file read (default 1 GiB).
    max_nesting_depth: nesting of JSON/YAML arrays and objects (default 64). max_yaml_alias_nodes: nodes YAML
    aliases may expand to in a document (default 100,000). max_number_digits: digits of a number literal in a
    document (default 400). max_decompressed_bytes: what a compressed data file (.npz) may inflate to (default
    1 GiB). max_fold_elements: elements one ONNX constant-folding step may produce (default 2**22).
    max_loop_iterations: iterations an ONNX Loop may run while folding (default 10,000)."""

    max_elements: int = 2 ** 25
    max_int_bits: int = 4096
    max_exponent: int = 1024
    max_expression_depth: int = 100
    max_expression_length: int = 10_000
    max_file_bytes: int = 1 << 30
    max_nesting_depth: int = 64
    max_yaml_alias_nodes: int = 100_000
    max_number_digits: int = 400
    max_decompressed_bytes: int = 1 << 30
    max_fold_elements: int = 2 ** 22
    max_loop_iterations: int = 10_000

    def replace(self, **changes: Any) -> "Limits":
        """These limits with some changed. changes: limit name -> positive int; an unknown name or a value that
        is not a positive integer raises LimitError naming the valid names."""
        names = {f.name for f in dataclasses.fields(self)}
        out = {}
        for name, value in changes.items():
            if name not in names:
                raise LimitError(f"unknown limit {name!r}; limits: {', '.join(sorted(names))}")
            try:
                number = int(float(value)) if isinstance(value, str) else int(value)
            except (TypeError, ValueError, OverflowError):
                raise LimitError(f"limit {name}={value!r}: expected a positive integer") from None
            if number <= 0:
                raise LimitError(f"limit {name}={value!r}: expected a positive integer")
            out[name] = number
        return dataclasses.replace(self, **out)


def parse_settings(text: str, where: str = ENV_VAR) -> Mapping[str, str]:
    """`name=value[,name=value...]` as a dict. text: the settings; where: what they came from, for the error (default
    the environment variable's name). A malformed item raises LimitError."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise LimitError(f"{item!r}: expected name=value", where=where)
        out[name.strip()] = value.strip()
    return out


def _from_environment() -> Limits:
    return Limits().replace(**parse_settings(os.environ.get(ENV_VAR, "")))


_current: Optional[Limits] = None


def current() -> Limits:
    """The limits in force: those set by `set_limits`/`override`, else the defaults changed by MDFBRIDGE_LIMITS."""
    global _current
    if _current is None:
        _current = _from_environment()
    return _current


def set_limits(limits: Limits) -> None:
    """Make `limits` the ones in force for this process."""
    global _current
    _current = limits


@contextlib.contextmanager
def override(**changes: Any) -> Iterator[Limits]:
    """Within the block, the limits in force with `changes` (limit name -> positive int) applied."""
    before = current()
    set_limits(before.replace(**changes))
    try:
        yield current()
    finally:
        set_limits(before)


def check_elements(count: int, what: str, where: Optional[str] = None, limit: str = "max_elements") -> None:
    """Raise LimitError when an array of `count` elements would exceed the limit named `limit` (default
    max_elements). what: the array, for the message (e.g. "outer(a, b)'s result"); where: the place (default
    None)."""
    bound = getattr(current(), limit)
    if count > bound:
        raise LimitError(f"{what} would have {count:,} elements, over the limit {limit}={bound:,} "
                         f"(raise it with --limit {limit}=N or {ENV_VAR})", where=where)


__all__ = ["Limits", "LimitError", "current", "set_limits", "override", "check_elements", "parse_settings",
           "ENV_VAR"]
