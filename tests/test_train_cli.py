"""`mdfbridge train` as a user runs it (a subprocess): outputs, files written, errors."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pytest
from conftest import XOR_INPUTS, XOR_TARGETS, build_xor
from test_writeback import diff_paths, location_of, parse

from mdfbridge.api import load_program
from mdfbridge.learning import learn

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SETTINGS = dict(epochs=20, learning_rate=0.05, optimizer_type="adam", loss_spec="mse", minibatch_size=3)
ARGS = ["--epochs", "20", "--lr", "0.05", "--optimizer", "adam", "--loss", "mse", "--minibatch-size", "3"]

pytestmark = pytest.mark.slow  # `mdfbridge train` subprocesses, each importing torch and training


def run_many(jobs: Sequence[tuple]) -> List[subprocess.CompletedProcess]:
    """Run `mdfbridge <args>` for each (args, cwd) concurrently (each pays torch's import time)."""
    procs = [subprocess.Popen([sys.executable, "-m", "mdfbridge.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True) for args, cwd in jobs]
    done = []
    for (args, _), p in zip(jobs, procs):
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(args, p.returncode, out, err))
    return done


def make_model(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    path = d / "model.json"
    build_xor().save_mdf(path)
    return path


def snapshot(d: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def learnable_full_locations(prog, doc) -> set:
    (model_id,) = doc
    return {(model_id,) + p.location for p in prog.learnable_params().values()}


def assert_only_learnable_changed(model: dict, trained: dict, prog) -> None:
    full = learnable_full_locations(prog, model)
    changed = diff_paths(model, trained)
    assert changed
    assert all(location_of(p, full) is not None for p in changed), changed
    assert {location_of(p, full) for p in changed} == full


# ----------------------------------------------------------------------------------------- successful runs

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Three training runs, run concurrently: --out with --plot, default output name, --in-place."""
    base = tmp_path_factory.mktemp("train_ok")
    dirs = {k: base / k for k in ("out", "default", "inplace")}
    before = {}
    for k, d in dirs.items():
        make_model(d)
        np.savez(d / "data.npz", input=XOR_INPUTS, output=XOR_TARGETS)
        before[k] = snapshot(d)
    jobs = [(["train", "model.json", "--data", "data.npz", *ARGS, "--out", "trained.json", "--plot", "loss.png"],
             dirs["out"]),
            (["train", "model.json", "--data", "data.npz", *ARGS], dirs["default"]),
            (["train", "model.json", "--data", "data.npz", *ARGS, "--in-place"], dirs["inplace"])]
    results = dict(zip(dirs, run_many(jobs)))
    expected = learn(dirs["out"] / "model.json", {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **SETTINGS)
    return dirs, before, results, expected


def test_train_writes_trained_model_and_plot(good):
    dirs, before, results, expected = good
    d, r = dirs["out"], results["out"]
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr.lower()
    lines = r.stdout.strip().splitlines()
    assert lines and "trained.json" in lines[0] and "20 epoch" in lines[0]
    assert (d / "model.json").read_bytes() == before["out"]["model.json"]
    assert sorted(p.name for p in d.iterdir()) == ["data.npz", "loss.png", "model.json", "trained.json"]
    png = (d / "loss.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    assert_only_learnable_changed(parse(d / "model.json"), parse(d / "trained.json"), expected.program)


def test_train_prints_exactly_one_summary_line(good):
    _, _, results, _ = good
    r = results["out"]
    assert r.returncode == 0
    assert len(r.stdout.strip().splitlines()) == 1, r.stdout


def test_train_summary_is_one_line_without_plot(good):
    _, _, results, _ = good
    for key in ("default", "inplace"):
        r = results[key]
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.strip().splitlines()) == 1, r.stdout
        assert r.stderr.strip() == ""


def test_cli_weights_equal_in_process_learn(good):
    dirs, _, _, expected = good
    for key, name in (("out", "trained.json"), ("default", "model.trained.json"), ("inplace", "model.json")):
        prog = load_program(dirs[key] / name)
        for pname, p in expected.program.learnable_params().items():
            np.testing.assert_allclose(prog.params[pname].value, p.value, rtol=1e-12, atol=1e-12,
                                       err_msg=f"{key}: {pname}")
        for pname, p in expected.program.params.items():
            if not p.learnable:
                np.testing.assert_array_equal(prog.params[pname].value, p.value)


def test_default_output_name_leaves_model_untouched(good):
    dirs, before, results, expected = good
    d = dirs["default"]
    assert results["default"].returncode == 0
    assert sorted(p.name for p in d.iterdir()) == ["data.npz", "model.json", "model.trained.json"]
    assert (d / "model.json").read_bytes() == before["default"]["model.json"]
    assert "model.trained.json" in results["default"].stdout
    assert_only_learnable_changed(parse(d / "model.json"), parse(d / "model.trained.json"), expected.program)


def test_in_place_overwrites_model(good):
    dirs, before, results, expected = good
    d = dirs["inplace"]
    assert results["inplace"].returncode == 0
    assert sorted(p.name for p in d.iterdir()) == ["data.npz", "model.json"]
    original = dirs["out"] / "model.json"  # the same model, untouched there
    assert before["inplace"]["model.json"] == original.read_bytes()
    assert_only_learnable_changed(parse(original), parse(d / "model.json"), expected.program)


# ----------------------------------------------------------------------------------------- bad data

GOOD_DATA = dict(input=XOR_INPUTS, output=XOR_TARGETS)
# case -> (arrays in data.npz, extra command-line arguments, what the error line must name)
BAD = {
    "unknown_array": (dict(input=XOR_INPUTS, output=XOR_TARGETS, outptu=XOR_TARGETS), [], r"outptu"),
    "wrong_input_shape": (dict(input=np.zeros((4, 3)), output=XOR_TARGETS), [], r"input.*\(4, 3\)|\(4, 3\).*input"),
    "wrong_target_shape": (dict(input=XOR_INPUTS, output=np.zeros((4, 2))), [],
                           r"output.*\(4, 2\)|\(4, 2\).*output"),
    "nan_target": (dict(input=XOR_INPUTS, output=np.array([[0.0], [np.nan], [1.0], [0.0]])), [], r"output.*NaN"),
    "nan_input": (dict(input=np.array([[0.0, 0.0], [np.nan, 1.0], [1.0, 0.0], [1.0, 1.0]]), output=XOR_TARGETS), [],
                  r"input.*NaN"),
    "missing_targets": (dict(input=XOR_INPUTS), [], r"target"),
    "trial_count": (dict(input=XOR_INPUTS, output=XOR_TARGETS[:3]), [], r"trials"),
    "bad_loss": (GOOD_DATA, ["--loss", "hinge"], r"loss.*hinge"),
    "minibatch_size_0": (GOOD_DATA, ["--minibatch-size", "0"], r"minibatch.size"),
    "negative_weight_decay": (GOOD_DATA, ["--weight-decay", "-1"], r"weight.decay"),
}
BUGS: dict = {}  # known library bugs (xfail, strict) — none at present


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    base = tmp_path_factory.mktemp("train_bad")
    jobs, meta = [], {}
    for i, (case, (arrays, extra, _)) in enumerate(BAD.items()):
        d = base / case
        make_model(d)
        np.savez(d / "data.npz", **arrays)
        # half the cases name --out, half rely on the default output name
        out = ["--out", "trained.json"] if i % 2 else []
        meta[case] = (d, snapshot(d))
        args = [*ARGS, *extra]  # a later option overrides an earlier one
        jobs.append((["train", "model.json", "--data", "data.npz", *args, *out], d))
    return dict(zip(BAD, zip(meta.values(), run_many(jobs))))


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=BUGS[c]))
                                  if c in BUGS else c for c in BAD])
def test_bad_data_or_arguments_exit_2_with_one_error_line_and_write_nothing(bad, case):
    (d, before), r = bad[case]
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:")
    assert re.search(BAD[case][2], lines[0]), lines[0]
    assert "Traceback" not in r.stderr
    assert snapshot(d) == before  # model byte-identical, no output or temp file
    assert r.stdout.strip() == ""
