"""The README's CLI commands, run from the root of a copy of the repository's tracked files (examples/ and
.gitignore in a fresh git repository): every command succeeds, its outputs land where the README says, and
afterwards `git status` shows no untracked file (the .gitignore covers everything the commands write) and no
tracked file changed. README_CLI mirrors the ```sh block under "## CLI" in README.md."""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

# stages: the commands of a stage need only what earlier stages wrote, so a stage's commands run concurrently
README_CLI = [
    ["mdfbridge --version",
     "mdfbridge validate examples/xor.mdf.json",
     "mdfbridge info examples/xor.mdf.json",
     "mdfbridge run examples/xor.mdf.json --input input='[[0,0],[1,1]]'",
     "mdfbridge data template examples/xor.mdf.json --trials 8",
     "mdfbridge data template examples/xor.mdf.json --format csv",
     "mdfbridge data check examples/xor.mdf.json --data examples/xor_data.csv",
     "mdfbridge train examples/xor.mdf.json --data examples/xor_data.csv --epochs 1000 --lr 0.5 --optimizer sgd "
     "--loss mse --minibatch-size 1 --plot",
     "mdfbridge graph examples/xor.mdf.json"],
    ["mdfbridge run examples/xor.trained.mdf.json --inputs examples/xor_data.csv",
     "mdfbridge run examples/xor.trained.mdf.json --inputs examples/xor_data.csv --out examples/xor.trained.out.npz",
     "mdfbridge convert examples/xor.trained.mdf.json examples/xor.trained.mdf.yaml",
     "mdfbridge convert examples/xor.trained.mdf.json examples/xor.trained.onnx",
     "mdfbridge train examples/xor.mdf.json --data examples/xor.template.npz --epochs 5 --quiet "
     "--out examples/xor.template.trained.json"],
    ["mdfbridge info examples/xor.trained.onnx",
     "mdfbridge run examples/xor.trained.onnx --inputs examples/xor_data.csv --provider cpu"],
]
WRITTEN = ["examples/xor.template.npz", "examples/xor.template.csv", "examples/xor.trained.mdf.json",
           "examples/xor.loss.png", "examples/xor.trained.out.npz", "examples/xor.trained.mdf.yaml",
           "examples/xor.trained.onnx", "examples/xor.template.trained.json"]
HAS_DOT = shutil.which("dot") is not None
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def digests(root: Path, files) -> dict:
    return {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in files}


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="needs git and a git checkout")
def test_readme_cli_commands_leave_git_status_clean(tmp_path):
    tracked = [f for f in git(REPO, "ls-files", "examples", ".gitignore").splitlines() if (REPO / f).is_file()]
    for f in tracked:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / f, tmp_path / f)
    git(tmp_path, "init", "-q")
    before = digests(tmp_path, tracked)
    assert git(tmp_path, "ls-files", "--others", "--exclude-standard").split() == tracked  # (nothing added yet)
    for stage in README_CLI:
        commands = [c for c in stage if HAS_DOT or not c.startswith("mdfbridge graph")]
        procs = [(c, subprocess.Popen([sys.executable, "-m", "mdfbridge.cli", *shlex.split(c)[1:]], cwd=tmp_path,
                                      env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, text=True)) for c in commands]
        for command, proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, (command, out, err)
            assert "error" not in err.lower(), (command, err)
    for f in WRITTEN + (["examples/xor.png"] if HAS_DOT else []):
        assert (tmp_path / f).is_file(), f
    untracked = set(git(tmp_path, "ls-files", "--others", "--exclude-standard").split()) - set(tracked)
    assert not untracked, f"files the README's commands write that .gitignore does not cover: {sorted(untracked)}"
    ignored = set(git(tmp_path, "ls-files", "--others", "--ignored", "--exclude-standard").split())
    assert set(WRITTEN) <= ignored
    assert digests(tmp_path, tracked) == before  # no tracked file changed
    assert not set(tracked) & ignored  # and .gitignore hides no source file
