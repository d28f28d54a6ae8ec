"""Every ```python block of README.md runs as written: all of them, in order, as one script, in an empty folder.

A block whose first line is `# excerpt of <path>` quotes a repository file instead (a registry record, say, which
would register twice if run): it must appear verbatim in that file.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import List, Tuple

from conftest import REPO

README = REPO / "README.md"
EXCERPT = re.compile(r"#\s*excerpt of\s+(\S+)\s*$")


def python_blocks(text: str) -> List[Tuple[int, str]]:
    """(line number, code) of each ```python block, in order."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"README.md:{start}: ```python block never closed"
            blocks.append((start + 1, "\n".join(body) + "\n"))
        i += 1
    return blocks


def split_blocks() -> Tuple[List[Tuple[int, str]], List[Tuple[int, str, str]]]:
    """(blocks to run, excerpts as (line, path, code))."""
    runnable, excerpts = [], []
    for line, code in python_blocks(README.read_text()):
        first, _, rest = code.partition("\n")
        m = EXCERPT.match(first.strip())
        if m:
            excerpts.append((line, m.group(1), rest))
        else:
            runnable.append((line, code))
    return runnable, excerpts


def git_status() -> str:
    """The tree's changes, new untracked files and new ignored paths (git-ignored output such as
    examples/*.onnx counts; Python's __pycache__ folders do not)."""
    out = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if "__pycache__" not in line)


def test_readme_has_python_blocks():
    runnable, excerpts = split_blocks()
    assert len(runnable) >= 5, runnable
    assert python_blocks("a\n```python\nx = 1\n```\n```sh\nls\n```\n```python\ny = 2\n```\n") == [
        (3, "x = 1\n"), (9, "y = 2\n")]


def test_readme_python_blocks_run_as_one_script_in_an_empty_folder(tmp_path):
    runnable, _ = split_blocks()
    parts = []
    for line, code in runnable:
        parts.append(f"# ---- README.md line {line}\n{code}")
    script = "\n".join(parts)
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "readme_blocks.py").write_text(script)
    before = git_status()
    res = subprocess.run([sys.executable, str(tmp_path / "readme_blocks.py")], cwd=work, capture_output=True,
                         text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    assert res.returncode == 0, f"README python blocks failed:\n{res.stdout}\n{res.stderr[-4000:]}"
    assert git_status() == before, "running the README blocks changed the repository tree"
    assert (work / "xor.mdf.json").is_file()  # the tour's file, written into the folder it ran in


def test_readme_excerpts_are_verbatim():
    _, excerpts = split_blocks()
    for line, path, code in excerpts:
        source = (REPO / path).read_text()
        assert code.strip() in source, f"README.md:{line}: the excerpt is not verbatim in {path}"
