"""The documentation: the API reference builds with `mkdocs build --strict` (no warnings), the generated ops table
is the registry's, and the documented modules' public callables say what each argument takes and its default."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mdfbridge.ops import REGISTRY

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "docs" / "tools"

# modules whose docstrings are complete (docs/tools/docstring_audit.py finds no gap); the other documented module
# (importers.pytorch) joins this list once its are. Modules no API page renders (importers.composition, ops.base)
# are audited on the names they define.
COMPLETE = (
    "mdfbridge.api", "mdfbridge.document", "mdfbridge.deploy", "mdfbridge.errors", "mdfbridge.exporters.onnx",
    "mdfbridge.exporters.weights", "mdfbridge.importers.onnx", "mdfbridge.backends.protocol",
    "mdfbridge.backends.registry", "mdfbridge.backends.numpy_backend", "mdfbridge.backends.torch_backend",
    "mdfbridge.backends.llvm_backend", "mdfbridge.backends.onnxruntime_backend",
    "mdfbridge.composition", "mdfbridge.transfer", "mdfbridge.learning", "mdfbridge.gru_composition",
    "mdfbridge.importers.composition", "mdfbridge.importers.torch_module", "mdfbridge.ops", "mdfbridge.ops.base",
    "mdfbridge.dtypes", "mdfbridge.data_files", "mdfbridge.loss_plot",
    "mdfbridge.importers.pytorch",
)


def _tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_tools_{name}", TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(table: str) -> dict:
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| `"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_ops_table_is_the_registry() -> None:
    hooks = _tool("mkdocs_hooks")
    rows = _rows(hooks.ops_table())
    assert list(rows) == list(REGISTRY), "one row per registry op, in registration order"
    columns = ["op", "aliases", "expression names", *hooks.BACKEND_COLUMNS]
    for name, op in REGISTRY.items():
        cells = dict(zip(columns, rows[name]))
        assert cells["aliases"] == ", ".join(f"`{a.name}`" for a in op.aliases), name
        assert cells["expression names"] == ", ".join(f"`{n}`" for n in op.expr_names), name
        assert cells["numpy"] == "yes", f"{name}: every op has the reference implementation"
    # facts stated elsewhere (ARCHITECTURE.md, the backends' own refusals), read from the table
    matmul, gru, softmax = rows["MatMul"], rows["GRU"], rows["SoftMax"]
    assert matmul[3:7] == ["yes"] * 4
    assert gru[3:7] == ["yes", "yes", "", "yes"], "GRU: no LLVM kernel, exported to ONNX"
    assert "`onnx::Softmax`" in softmax[1] and "`softmax`" in softmax[1]


def test_ops_table_llvm_column_agrees_with_the_llvm_planner() -> None:
    """The llvm column against the llvm backend's planner (importers/llvm_plan.py `analyse`), on a one-op Program
    per elementwise op with every argument a vector input: ticked ops plan, the others are refused."""
    pytest.importorskip("llvmlite")
    from mdfbridge.errors import UnsupportedError
    from mdfbridge.importers.llvm_plan import analyse
    from mdfbridge.program import InputSpec, Op, Program, TensorRef

    hooks = _tool("mkdocs_hooks")
    outcomes = {}
    for name, op in REGISTRY.items():
        if not op.elementwise:
            continue
        specs = {a: InputSpec(a, a, "v", (4,)) for a in op.args}
        call = Op("n.y", {a: TensorRef(f"{a}.v") for a in op.args}, "n", fn=name)
        shapes = {**{f"{a}.v": (4,) for a in op.args}, "n.y": (4,)}
        prog = Program("p", [call], {}, specs, {"y": "n.y"}, shapes=shapes)
        try:
            analyse(prog)
            outcomes[name] = True
        except UnsupportedError:
            outcomes[name] = False
        assert outcomes[name] == ("llvm" in hooks.backends_of(op)), name
    assert any(outcomes.values()) and not all(outcomes.values()), outcomes


def test_documented_modules_have_complete_docstrings() -> None:
    found = _tool("docstring_audit").gaps(COMPLETE)
    assert not found, "\n".join(found)


def test_docs_build_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None:
        pytest.skip("mkdocs/mkdocstrings not installed (the 'docs' extra: pip install -e '.[docs]', or make docs)")
    site = tmp_path / "site"
    # as in a fresh clone: the hook must lay the package tree out before mkdocstrings resolves its paths
    shutil.rmtree(REPO / "build" / "docs_src", ignore_errors=True)
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not re.search(r"^WARNING", done.stderr, re.M), done.stderr
    ops = (site / "api" / "ops.html").read_text()
    assert all(f"<code>{name}</code>" in ops for name in REGISTRY), "the ops table lists every op"
    documents = (site / "api" / "documents.html").read_text()
    for name in ("mdfbridge.api.load_mdf", "mdfbridge.dtypes.dtype_name", "mdfbridge.data_files.read_csv",
                 "mdfbridge.loss_plot.loss_figure"):
        assert f'id="{name}"' in documents, name
    assert 'id="mdfbridge.importers.torch_module.TorchModel"' in (site / "api" / "onnx_torch.html").read_text()
    assert "Two commands" in (site / "guide.html").read_text()
