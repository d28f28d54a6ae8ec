"""Run a PsyNeuLink doc example (tests/data/psyneulink_doc_examples/*.py) as the interactive interpreter runs the
doc's `>>>` lines, and print the numbers a user sees, as one JSON line.

    python psyneulink_doc_repl.py EXAMPLE.py [--import psyneulink|mdfbridge]

--import: the package the example's `import mdfbridge as pnl` line imports (default mdfbridge; `psyneulink` runs
the doc's own line, `import psyneulink as pnl`, under a PsyNeuLink python). Each top-level statement is compiled
in 'single' mode, so an expression statement's value is echoed as at the `>>>` prompt; the echoes are recorded
with the statement's first source line. After the last statement the names on the file's `# harness-values:` line
(dotted attribute paths, resolved with getattr: nothing is eval'd) are read. The last stdout line is
`DOC_EXAMPLE_VALUES <json>`: {"echoes": [[statement's first line, value], ...], "values": {name: value}}, each
value the output of `numbers()`. The example's own exceptions propagate (a traceback and exit 1), as running it would.
Only the standard library and numpy are used: this runs under PsyNeuLink's python too.
"""
from __future__ import annotations

import ast
import json
import sys
from typing import Any, Dict, List

import numpy as np

MDFBRIDGE_IMPORT = "import mdfbridge as pnl"
MARKER = "DOC_EXAMPLE_VALUES "
VALUES_LINE = "# harness-values:"


def numbers(x: Any) -> Any:
    """A JSON form of a value a user looks at: {"array": nested lists, "shape": [...]} for anything numeric
    (PsyNeuLink's ParameterValue is read through its `.base` array; lists of equal-shaped arrays stack), None as
    None, {"dict": {str(key): numbers(value)}} for a dict, else {"object": type name} (a mechanism, a
    projection: not compared as numbers)."""
    if x is None:
        return None
    if type(x).__name__ == "ParameterValue":  # PsyNeuLink's modulable parameter: its value is .base
        x = x.base
    if isinstance(x, dict):
        return {"dict": {str(getattr(k, "name", k)): numbers(v) for k, v in x.items()}}
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        return {"object": type(x).__name__}
    return {"array": arr.tolist(), "shape": list(arr.shape)}


def resolve(namespace: Dict[str, Any], dotted: str) -> Any:
    """`a.b.c` looked up in the namespace with getattr."""
    head, *rest = dotted.split(".")
    obj = namespace[head]
    for part in rest:
        obj = getattr(obj, part)
    return obj


def main(argv: List[str]) -> int:
    path = argv[0]
    package = argv[argv.index("--import") + 1] if "--import" in argv else "mdfbridge"
    text = open(path, encoding="utf-8").read()
    if text.count(MDFBRIDGE_IMPORT + "\n") != 1:
        raise SystemExit(f"{path}: expected exactly one line '{MDFBRIDGE_IMPORT}'")
    if package != "mdfbridge":
        text = text.replace(MDFBRIDGE_IMPORT + "\n", f"import {package} as pnl\n")
    wanted = [line[len(VALUES_LINE):].split() for line in text.splitlines() if line.startswith(VALUES_LINE)]
    echoes: List[Any] = []
    namespace: Dict[str, Any] = {"__name__": "__main__", "__file__": path}
    lines = text.splitlines()
    for stmt in ast.parse(text, filename=path).body:
        line = lines[stmt.lineno - 1].strip()
        sys.displayhook = lambda value, line=line: None if value is None else echoes.append([line, numbers(value)])
        exec(compile(ast.Interactive(body=[stmt]), path, "single"), namespace)
    sys.displayhook = sys.__displayhook__
    values = {name: numbers(resolve(namespace, name)) for names in wanted for name in names}
    print(MARKER + json.dumps({"echoes": echoes, "values": values}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
