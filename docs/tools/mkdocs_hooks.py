"""mkdocs hooks (mkdocs.yml `hooks:`): pages generated at build time, never written by hand.

- `build/docs_src/` is the package laid out as it installs (pyproject.toml's `[tool.setuptools.package-dir]`:
  importers/ as mdfbridge/importers, ...), copied, for griffe's static reader (mkdocstrings' `paths`), which does
  not follow setuptools' package-dir mapping (and resolves symbolic links to where they point).
- `guide.md` is the repository's README.md and `changelog.md` its CHANGELOG.md (one text each, no copies kept).
- `api/ops.md`'s `<!-- ops table -->` marker becomes the table of every op in `mdfbridge.ops.REGISTRY`: its
  aliases, the names MDF expressions call it by, the backends whose needs its record meets, and the ONNX op types
  it imports (`ops_table()`; tests/test_docs.py checks it against the registry without building the docs).
"""
from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any, List

try:
    import tomllib
except ImportError:  # Python 3.10: the docs extra installs tomli
    import tomli as tomllib  # type: ignore[no-redef]


REPO = Path(__file__).resolve().parents[2]
SOURCE_TREE = REPO / "build" / "docs_src"  # mkdocs.yml: mkdocstrings' python handler `paths`
OPS_MARKER = "<!-- ops table -->"
GENERATED = {"guide.md": "README.md", "changelog.md": "CHANGELOG.md"}  # page -> repository file
BACKEND_COLUMNS = ("numpy", "torch", "llvm", "onnxruntime")


def backends_of(opdef: Any) -> List[str]:
    """The backends (mdfbridge.backends names) whose needs the record `opdef` (an OpDef) meets: numpy its numpy
    implementation, torch a torch implementation or `torch_module` hook, llvm an LLVM kernel the llvm backend
    lowers or a scalar form of an elementwise op (importers/llvm_plan.py's own test), onnxruntime an ONNX
    exporter."""
    from mdfbridge.importers.llvm_plan import KERNEL_LOWERERS, _scalar

    have = {
        "numpy": opdef.numpy is not None,
        "torch": opdef.torch is not None or opdef.torch_module is not None,
        "llvm": opdef.llvm_kernel in KERNEL_LOWERERS or _scalar(opdef),
        "onnxruntime": opdef.onnx_export is not None,
    }
    return [b for b in BACKEND_COLUMNS if have[b]]


def _opsets(entry: Any) -> str:
    return f"{entry.op_type} {entry.since}+" if entry.until is None else f"{entry.op_type} {entry.since}-{entry.until}"


def _code(names: Any) -> str:
    return ", ".join(f"`{n}`" for n in names)


def ops_table() -> str:
    """Markdown: one row per registry op (canonical name order as registered), then the ONNX op types the importer
    reads as MDF value expressions rather than as one registry op."""
    from mdfbridge.importers.onnx_values import VALUE_IMPORTS
    from mdfbridge.ops import REGISTRY

    head = ["op", "aliases", "expression names", *BACKEND_COLUMNS, "ONNX import (opsets)", "description"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, op in REGISTRY.items():
        runs = set(backends_of(op))
        description = html.escape(" ".join(op.description.split()), quote=False)
        for special in "\\|*_`[]":  # the description is plain text (formulas such as x**2), not markdown
            description = description.replace(special, "\\" + special)
        cells = [f"`{name}`", _code(a.name for a in op.aliases), _code(op.expr_names),
                 *("yes" if b in runs else "" for b in BACKEND_COLUMNS),
                 ", ".join(_opsets(e) for e in op.onnx_import), description]
        lines.append("| " + " | ".join(cells) + " |")
    records = [e for op in REGISTRY.values() for e in op.onnx_import]
    values = sorted({_opsets(v) for v in VALUE_IMPORTS if not any(v.overlaps(e) for e in records)})
    lines += ["", f"{len(REGISTRY)} ops. ONNX op types imported as MDF value expressions over the ops above "
              f"(importers/onnx_values.py): {', '.join(values) or 'none'}."]
    return "\n".join(lines)


def package_tree(root: Path = SOURCE_TREE) -> Path:
    """Copy the package's source files under `root` laid out as it installs: each package of pyproject.toml's
    `[tool.setuptools.package-dir]` at its dotted path, so `root/mdfbridge/importers` holds importers/. Rebuilt on
    every call; returns `root`."""
    with open(REPO / "pyproject.toml", "rb") as f:
        package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    if root.exists():
        shutil.rmtree(root)
    mapped = {REPO / d for d in package_dir.values()}
    for package, directory in package_dir.items():
        shutil.copytree(REPO / directory, root.joinpath(*package.split(".")), dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if n == "__pycache__" or Path(d, n) in mapped])
    return root


def on_startup(command: str, dirty: bool) -> None:
    """Lay out the package tree the API pages are read from, before any plugin's on_config: mkdocstrings' python
    handler resolves its `paths` there, and without the tree it falls back to the installed package, in which
    griffe cannot find mdfbridge.importers/.exporters (a fresh clone's first build failed so)."""
    package_tree()


def on_config(config: Any) -> Any:
    """Lay the package tree out again for each (re)build (`mkdocs serve` runs on_startup once)."""
    package_tree()
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages (README.md as guide.md, CHANGELOG.md as changelog.md)."""
    from mkdocs.structure.files import File

    for page, source in GENERATED.items():
        files.append(File.generated(config, page, content=(REPO / source).read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Put the ops table in place of its marker."""
    if OPS_MARKER in markdown:
        markdown = markdown.replace(OPS_MARKER, ops_table())
    return markdown
