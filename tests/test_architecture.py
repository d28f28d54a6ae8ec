"""Architecture checks: op knowledge lives in the op records (mdfbridge/ops/), not in tables elsewhere.

An AST scan of the library outside mdfbridge/ops/ counts dict literals keyed by op names, list/tuple/set
literals of op names, and comparisons against op-name strings (`op.fn == "Relu"`, `name in ("MatMul", ...)`).
Op names are the registry's canonical names and aliases.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

from mdfbridge.ops import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = [ROOT / "mdfbridge", ROOT / "importers", ROOT / "exporters"]
OPS = ROOT / "mdfbridge" / "ops"
OP_NAMES = frozenset(REGISTRY) | {a.name for op in REGISTRY.values() for a in op.aliases}
MAX_COMPARISONS = 3


def _files() -> Iterator[Path]:
    for top in LIBRARY:
        for path in sorted(top.rglob("*.py")):
            if OPS not in path.parents:
                yield path


def _op_strings(node: ast.AST) -> List[str]:
    """Op-name string constants directly in node (a constant, or the items of a tuple/list/set)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in OP_NAMES]


def scan() -> Tuple[List[str], List[str]]:
    """(table findings, comparison findings) as 'file:line: text'."""
    tables, comparisons = [], []
    for path in _files():
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT)
        public = {id(n) for a in ast.walk(tree) if isinstance(a, ast.Assign)
                  and any(getattr(t, "id", "") == "__all__" for t in a.targets) for n in ast.walk(a.value)}
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            if id(node) in public:
                continue  # public names (classes called like ops: Tanh, ReLU, SoftMax)
            if (isinstance(node, ast.Dict) and len(node.keys) > 1  # one key: an MDF `function: {name: args}`
                    and any(k is not None and _op_strings(k) for k in node.keys)):
                tables.append(f"{where}: dict keyed by op names")
            elif isinstance(node, (ast.List, ast.Tuple, ast.Set)) and len(_op_strings(node)) >= 2:
                tables.append(f"{where}: list of op names {_op_strings(node)}")
            elif isinstance(node, ast.Compare):
                names = [s for part in [node.left, *node.comparators] for s in _op_strings(part)]
                if names:
                    comparisons.append(f"{where}: comparison with {names}")
    return tables, comparisons


def test_no_op_tables_outside_the_op_records():
    tables, _ = scan()
    assert not tables, "\n".join(tables)


def test_few_comparisons_against_op_names():
    _, comparisons = scan()
    assert len(comparisons) <= MAX_COMPARISONS, "\n".join(comparisons)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    # the scanner itself: it must see a table, a list and a comparison written the usual ways
    code = 'T = {"Relu": 1}\nL = ("MatMul", "Gemm")\nok = op.fn == "SoftMax" or name in ("Add", "Sub")\n'
    tree = ast.parse(code)
    dicts = [n for n in ast.walk(tree) if isinstance(n, ast.Dict) and any(_op_strings(k) for k in n.keys)]
    lists = [n for n in ast.walk(tree) if isinstance(n, ast.Tuple) and len(_op_strings(n)) >= 2]
    cmps = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)
            and any(_op_strings(p) for p in [n.left, *n.comparators])]
    assert len(dicts) == 1 and len(lists) == 2 and len(cmps) == 2
