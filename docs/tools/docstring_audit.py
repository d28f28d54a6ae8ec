"""Docstring audit: public callables of the documented modules whose docstring does not say what each argument
takes, or leaves a default unsaid.

The public callables are the functions and classes the API pages render for a module (docs/api/*.md `:::` blocks):
the members a block names, else those in the module's `__all__`, else those defined in the module (not imported
into it) whose names have no leading underscore; and the public methods of such classes (`__init__` included: its
arguments may be described in the class docstring). An argument counts as described when its name occurs as a
word in the docstring (the method's, or for `__init__` the class's and its own); an argument with a default also
needs the default said: the word 'default' or the default's text (`None`, `1.0`, `'auto'`, ...) within the text
from the argument's first mention up to the next argument's. `*args`/`**kwargs` count as described when their bare
name occurs; `self`, `cls` and private `_name` arguments need no mention.

Run: `python docs/tools/docstring_audit.py [module ...]` (default: every module docs/api/*.md renders) prints one
line per gap and exits 1 when there are any. tests/test_docs.py runs `gaps()` on the modules whose docstrings are
complete.
"""
from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]


def documented(pages: Path = REPO / "docs" / "api") -> Dict[str, Optional[List[str]]]:
    """The modules the API reference pages render (`::: module` blocks in docs/api/*.md): module -> the members
    its block names (`options: members: [a, b]`; [] for `members: false`), or None for all its public ones."""
    out: Dict[str, Optional[List[str]]] = {}
    for page in sorted(pages.glob("*.md")):
        current = None
        for line in page.read_text(encoding="utf-8").splitlines():
            block = re.match(r":::\s*(\S+)", line)
            if block:
                current = block.group(1)
                out[current] = None
                continue
            members = re.match(r"\s+members:\s*(.*)$", line)
            if current and members:
                value = members.group(1).strip()
                out[current] = [] if value == "false" else [m.strip() for m in value.strip("[]").split(",")]
            elif not line.startswith(" "):
                current = None
    return out


def _public(module: Any, members: Optional[List[str]] = None) -> Iterator[Tuple[str, Any]]:
    """The functions and classes the API reference shows for `module`: `members` when given, else those its
    `__all__` names (wherever they are defined), else those defined in it whose names have no leading
    underscore."""
    names = members if members is not None else getattr(module, "__all__", None)
    for name, obj in vars(module).items():
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if names is not None:
            if name in names:
                yield name, obj
        elif not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__:
            yield name, obj


def _methods(cls: type) -> Iterator[Tuple[str, Callable[..., Any]]]:
    for name, member in vars(cls).items():
        fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
        if isinstance(member, property):
            continue
        if inspect.isfunction(fn) and (not name.startswith("_") or name == "__init__"):
            yield name, fn


def _mentions(doc: str, name: str) -> List[int]:
    return [m.start() for m in re.finditer(rf"(?<![\w.]){re.escape(name)}(?!\w)", doc)]


def _default_text(param: inspect.Parameter) -> List[str]:
    d = param.default
    texts = [repr(d), str(d)]
    if isinstance(d, str):
        texts += [d, f'"{d}"']
    if isinstance(d, float) and d == int(d):
        texts.append(str(int(d)))
    if isinstance(d, bool) or d is None:
        texts.append({True: "True", False: "False", None: "None"}[d])
    return [t for t in texts if t]


def callable_gaps(qualname: str, fn: Callable[..., Any], doc: str) -> List[str]:
    """The gaps of one callable: `doc` is the text its arguments must be described in."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    if not doc.strip():
        return [f"{qualname}: no docstring"]
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls") and not p.name.startswith("_")]
    first = {p.name: (_mentions(doc, p.name) or [-1])[0] for p in params}
    starts = sorted(v for v in first.values() if v >= 0)
    out = []
    for p in params:
        at = first[p.name]
        if at < 0:
            out.append(f"{qualname}: argument '{p.name}' not described")
            continue
        if p.default is inspect.Parameter.empty:
            continue
        end = next((s for s in starts if s > at), len(doc))
        segment = doc[at:max(end, at + 120)]
        if "default" not in segment.lower() and not any(t in segment for t in _default_text(p)):
            out.append(f"{qualname}: default of '{p.name}' ({p.default!r}) not said")
    return out


def gaps(modules: Optional[Sequence[str]] = None) -> List[str]:
    """Every gap in `modules` (dotted names, imported here; default None: every module the API pages render, see
    `documented`), one line each: 'module.name: what is missing'. Members are those the pages render."""
    pages = documented()
    out: List[str] = []
    seen = set()
    for mod_name in modules if modules is not None else pages:
        module = importlib.import_module(mod_name)
        for name, obj in _public(module, pages.get(mod_name)):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            where = f"{mod_name}.{name}"
            if inspect.isfunction(obj):
                out += callable_gaps(where, obj, inspect.getdoc(obj) or "")
                continue
            class_doc = obj.__doc__ or ""
            if not class_doc.strip():
                out.append(f"{where}: no docstring")
            for meth, fn in _methods(obj):
                doc = fn.__doc__ or ""
                if meth == "__init__":
                    doc = class_doc + "\n" + doc
                    if not _own_init(obj):
                        continue
                out += callable_gaps(f"{where}.{meth}", fn, inspect.cleandoc(doc))
    return out


def _own_init(cls: type) -> bool:
    """Does the class define an `__init__` a user writes (not a dataclass's generated one)?"""
    init = vars(cls).get("__init__")
    return init is not None and not getattr(cls, "__dataclass_fields__", None)


if __name__ == "__main__":
    found = gaps(sys.argv[1:] or None)
    print("\n".join(found) or "no gaps")
    sys.exit(1 if found else 0)
