"""The code examples of PsyNeuLink's AutodiffComposition and GRUComposition documentation pages
(tests/data/psyneulink_doc_examples, listed with their sources in its README.md) run on mdfbridge with only the
import line changed (`import mdfbridge as pnl`), and give PsyNeuLink's numbers.

Each example runs in an empty temporary folder, first as a plain script (exit 0), then through
tests/psyneulink_doc_repl.py, which runs it as the interactive interpreter runs the doc's `>>>` lines and prints
the echoed values (learn(), run()) and the values the file's `# harness-values:` line names (the learned matrix,
`results`, `result1`) as JSON. Those numbers are compared, to 1e-10 (float64 throughout), with
- PsyNeuLink 0.21 running the same file with the doc's own `import psyneulink as pnl` (optional: needs a PsyNeuLink
  python, $MDFBRIDGE_PNL_PYTHON or /work/pnl-venv/bin/python), where PsyNeuLink 0.21 runs the example, and
- always, a torch reference: the doc's network (a 3 -> 2 linear map, no bias) trained by torch.optim.SGD at
  PsyNeuLink's default learning_rate 0.001 on torch's mean-squared-error, one optimizer step per trial; it equals
  PsyNeuLink's numbers on the example PsyNeuLink runs (test_the_torch_reference_is_psyneulinks).
Comparisons that wait for mdfbridge features in progress are strict xfails naming the feature.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pytest

HERE = Path(__file__).parent
EXAMPLES_DIR = HERE / "data" / "psyneulink_doc_examples"
REPL = HERE / "psyneulink_doc_repl.py"
PNL_PYTHON = os.environ.get("MDFBRIDGE_PNL_PYTHON") or "/work/pnl-venv/bin/python"
HAVE_PNL = Path(PNL_PYTHON).exists()
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
ATOL = 1e-10  # both sides compute in float64
MARKER = "DOC_EXAMPLE_VALUES "

LEARN = "echo:my_autodiff.learn(inputs = input_dict)"
RUN = "echo:my_autodiff.run(inputs = input_dict['inputs'])"
RESULTS = "my_autodiff.results"
MATRIX = "my_projection.matrix"
RESULT1 = "result1"
IDS = {LEARN: "learn-echo", RUN: "run-echo", RESULTS: "results", MATRIX: "matrix", RESULT1: "result1"}


@dataclass(frozen=True)
class Example:
    """One example file: what is compared (echo:<statement> or a harness-values name), whether it trains the
    nested composition a second time, and the error PsyNeuLink 0.21 stops with (None: it runs, and is compared)."""

    name: str
    items: Tuple[str, ...]
    nested: bool
    psyneulink_fails: Optional[str]


SIZE_DEPRECATED = "'size' is deprecated. Use 'input_shapes' instead"
NESTED_LEARN_FAILS = "AttributeError: 'str' object has no attribute 'full_name'"
EXAMPLES = [
    Example("autodiff_basic", (LEARN, RUN, RESULTS, MATRIX), False, None),
    Example("autodiff_nested", (LEARN, RUN, RESULT1, MATRIX), True, NESTED_LEARN_FAILS),
    Example("autodiff_older_basic", (LEARN, RUN, RESULTS, MATRIX), False, SIZE_DEPRECATED),
    Example("autodiff_older_nested", (LEARN, RUN, RESULT1, MATRIX), True, SIZE_DEPRECATED),
]
BY_NAME = {e.name: e for e in EXAMPLES}

PENDING: Dict[Tuple[str, str], str] = {}  # (example, item) -> why it is a strict xfail; none now


def cases(examples):
    """(example name, item) parameters, the pending ones as strict xfails."""
    out = []
    for e in examples:
        for item in e.items:
            reason = PENDING.get((e.name, item))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(e.name, item, marks=marks, id=f"{e.name}-{IDS[item]}"))
    return out


_RUNS: Dict[Tuple[str, str], subprocess.CompletedProcess] = {}


def run_repl(name: str, package: str) -> subprocess.CompletedProcess:
    """The example through the REPL runner, importing `package` as pnl (cached per example and package)."""
    key = (name, package)
    if key not in _RUNS:
        python = sys.executable if package == "mdfbridge" else PNL_PYTHON
        with tempfile.TemporaryDirectory() as tmp:
            _RUNS[key] = subprocess.run([python, str(REPL), str(EXAMPLES_DIR / f"{name}.py"), "--import", package],
                                        capture_output=True, text=True, timeout=300, cwd=tmp, env=ENV)
    return _RUNS[key]


def values(name: str, package: str) -> Dict[str, Any]:
    """item -> the runner's JSON value (echoes keyed `echo:<statement>`)."""
    proc = run_repl(name, package)
    assert proc.returncode == 0, f"{name} under {package}:\n{proc.stdout}{proc.stderr}"
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    data = json.loads(line[len(MARKER):])
    out = {f"echo:{stmt}": val for stmt, val in data["echoes"]}
    out.update(data["values"])
    return out


def as_array(value: Any, what: str) -> np.ndarray:
    assert isinstance(value, dict) and "array" in value, f"{what}: expected numbers, got {value!r}"
    return np.asarray(value["array"], dtype=float).reshape(value["shape"])


def assert_same(got: Any, want: np.ndarray, what: str) -> None:
    arr = as_array(got, what)
    assert arr.shape == want.shape, f"{what}: shape {arr.shape}, expected {want.shape}"
    np.testing.assert_allclose(arr, want, rtol=0, atol=ATOL, err_msg=what)


def torch_reference(example: Example) -> Dict[str, np.ndarray]:
    """The doc's numbers computed with torch: W = the seeded np.random.randn(3, 2); learn() is `epochs` SGD steps
    (lr 0.001, mean-squared-error) on x = [1, 2, 3], target [4, 5], each trial's output taken before its step;
    learn() returns the last trial's output and appends every trial's output to results, run() appends and returns
    x @ W; the nested example's outer learn() trains the same projection for the dict's 2 epochs more."""
    import torch

    w = torch.tensor(np.random.RandomState(17).randn(3, 2), dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    t = torch.tensor([[4.0, 5.0]], dtype=torch.float64)

    def learn(epochs: int) -> list:
        opt = torch.optim.SGD([w], lr=0.001)
        outs = []
        for _ in range(epochs):
            opt.zero_grad()
            y = x @ w
            outs.append(y.detach().numpy().copy())
            torch.nn.functional.mse_loss(y, t).backward()
            opt.step()
        return outs

    trials = learn(2)
    with torch.no_grad():
        run = (x @ w).numpy().copy()
    ref = {LEARN: trials[-1], RUN: run, RESULTS: np.stack(trials + [run])}
    if example.nested:
        ref[RESULT1] = learn(2)[-1]
    ref[MATRIX] = w.detach().numpy().copy()
    return {k: v for k, v in ref.items() if k in example.items}


@pytest.mark.parametrize("name", [e.name for e in EXAMPLES])
def test_the_example_runs_with_only_the_import_line_changed(tmp_path, name):
    """A user's script: the file as it stands, run by the venv python in an empty folder, exits 0."""
    path = EXAMPLES_DIR / f"{name}.py"
    text = path.read_text()
    assert text.count("import mdfbridge as pnl\n") == 1
    assert not [ln for ln in text.splitlines() if ln.startswith(("import psyneulink", "from psyneulink"))]
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # it writes nothing


@pytest.mark.parametrize("name,item", cases(EXAMPLES))
def test_the_example_gives_the_torch_references_numbers(name, item):
    example = BY_NAME[name]
    got = values(name, "mdfbridge")
    assert item in got, f"{name}: no value for {item}; the run gave {sorted(got)}"
    assert_same(got[item], torch_reference(example)[item], f"{name}: {item}")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_PNL, reason=f"no PsyNeuLink python at {PNL_PYTHON} (set MDFBRIDGE_PNL_PYTHON)")
@pytest.mark.parametrize("name,item", cases([e for e in EXAMPLES if e.psyneulink_fails is None]))
def test_the_example_gives_psyneulinks_numbers(name, item):
    want = values(name, "psyneulink")[item]
    got = values(name, "mdfbridge")
    assert item in got, f"{name}: no value for {item}; the run gave {sorted(got)}"
    assert_same(got[item], as_array(want, f"PsyNeuLink's {item}"), f"{name}: {item}")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_PNL, reason=f"no PsyNeuLink python at {PNL_PYTHON} (set MDFBRIDGE_PNL_PYTHON)")
@pytest.mark.parametrize("name", [e.name for e in EXAMPLES if e.psyneulink_fails is None])
def test_the_torch_reference_is_psyneulinks(name):
    """The oracle for the examples PsyNeuLink 0.21 cannot run equals PsyNeuLink where it runs."""
    example = BY_NAME[name]
    pnl = values(name, "psyneulink")
    for item, want in torch_reference(example).items():
        assert_same(pnl[item], want, f"PsyNeuLink's {item}")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_PNL, reason=f"no PsyNeuLink python at {PNL_PYTHON} (set MDFBRIDGE_PNL_PYTHON)")
@pytest.mark.parametrize("name", [e.name for e in EXAMPLES if e.psyneulink_fails is not None])
def test_psyneulink_0_21_stops_where_the_readme_says(name):
    """These examples are compared to the torch reference because PsyNeuLink 0.21 fails on them (README.md)."""
    proc = run_repl(name, "psyneulink")
    assert proc.returncode != 0 and BY_NAME[name].psyneulink_fails in proc.stderr, proc.stderr[-2000:]


def test_every_example_file_is_tested_and_listed_in_the_readme():
    readme = (EXAMPLES_DIR / "README.md").read_text()
    files = sorted(p.stem for p in EXAMPLES_DIR.glob("*.py"))
    assert files == sorted(BY_NAME)
    for name in files:
        assert f"`{name}.py`" in readme, name
