"""The `mdfbridge` command line, run as a real subprocess (`python -m mdfbridge.cli` and the console script)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import XOR_INPUTS, make_xor

from mdfbridge.document import save_document

BAD = Path(__file__).resolve().parent / "data" / "bad"
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
COMMANDS = ("validate", "info", "run", "convert")
# every test starts the CLI as a subprocess (about 1 s of CPU each); tests/test_bad_inputs.py runs main() in-process
pytestmark = pytest.mark.slow


def _launchers():
    out = [pytest.param((sys.executable, "-m", "mdfbridge.cli"), id="python-m")]
    exe_dir = Path(sys.executable).parent
    for name in ("mdfbridge", "mdfbridge.exe"):
        script = exe_dir / name
        if script.is_file() and os.access(script, os.X_OK):
            out.append(pytest.param((str(script),), id="console-script"))
            break
    return out


@pytest.fixture(params=_launchers())
def launcher(request):
    return request.param


def cli(*args: str, launcher=(sys.executable, "-m", "mdfbridge.cli"), cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*launcher, *map(str, args)], capture_output=True, text=True, timeout=120, env=ENV,
                          cwd=cwd)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """Exit 2, exactly one `error: ...` line on stderr, no traceback; returns that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def printed_outputs(stdout: str) -> dict:
    """Parse `name: <json>` lines printed by `run`."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("wrote "):
            continue
        name, sep, text = line.partition(": ")
        assert sep, line
        out[name] = np.asarray(json.loads(text), dtype=float)
    return out


def listing(directory: Path) -> list:
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def xor_comp():
    return make_xor()


@pytest.fixture(scope="module")
def xor_file(xor_comp, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("xor") / "xor.mdf.json"
    xor_comp.save_mdf(str(path))
    return path


COUNTER_DOC = {"counter_model": {
    "format": "ModECI MDF v0.4",
    "generating_application": "test_cli",
    "graphs": {"g": {"nodes": {
        "counter": {"parameters": {"count": {"value": "count + 1"}},
                    "output_ports": {"out": {"value": "count"}}},
    }}},
}}


@pytest.fixture
def counter_file(tmp_path) -> Path:
    path = tmp_path / "counter.mdf.yaml"
    save_document(COUNTER_DOC, path)
    return path


# ------------------------------------------------------------------------------------------ help

def test_top_level_help_shows_examples(launcher):
    proc = cli("--help", launcher=launcher)
    assert proc.returncode == 0, proc.stderr
    assert "example" in proc.stdout
    for cmd in COMMANDS:
        assert f"mdfbridge {cmd} " in proc.stdout, cmd


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_shows_an_example(command, launcher):
    proc = cli(command, "--help", launcher=launcher)
    assert proc.returncode == 0, proc.stderr
    assert "example" in proc.stdout
    assert f"mdfbridge {command} " in proc.stdout


def test_no_command_is_a_usage_error():
    proc = cli()
    assert proc.returncode != 0
    assert "usage" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------ validate / info

def test_validate_good_file(xor_file, launcher):
    proc = cli("validate", xor_file, launcher=launcher)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout and "invalid" not in proc.stdout
    assert str(xor_file) in proc.stdout
    assert "xor_model" in proc.stdout
    assert proc.stderr == ""


def test_validate_good_yaml_file(xor_file, tmp_path):
    yml = tmp_path / "xor.mdf.yaml"
    assert cli("convert", xor_file, yml).returncode == 0
    proc = cli("validate", yml)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_info_lists_nodes_functions_shapes_and_counts(xor_file, xor_comp):
    proc = cli("info", xor_file)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # nodes, with their functions
    for node, fn in (("input", "linear"), ("hidden", "logistic"), ("output", "logistic"),
                     ("input_to_hidden", "MatMul"), ("hidden_to_output", "MatMul")):
        assert any(line.strip().startswith(node) and fn in line for line in out.splitlines()), (node, fn, out)
    for node in ("bias_hidden", "bias_output", "bias_to_hidden", "bias_to_output"):
        assert node in out
    # parameter shapes
    assert "input_to_hidden.matrix: shape (2, 10)" in out
    assert "hidden_to_output.matrix: shape (10, 1)" in out
    assert "bias_to_hidden.matrix: shape (1, 10)" in out
    # counts
    flat_nodes, flat_projs = xor_comp.flatten()
    n_learn = sum(np.size(p.projection.matrix) for p in flat_projs)
    assert n_learn == 2 * 10 + 10 * 1 + 1 * 10 + 1 * 1
    n_nodes = len(flat_nodes) + len(flat_projs)
    assert f"{n_nodes} nodes" in out
    assert f"{2 * len(flat_projs)} edges" in out
    assert f"({n_learn} learnable)" in out
    # inputs / outputs with their shapes
    assert "inputs: input (2,)" in out
    assert "outputs: output (1,)" in out


# ------------------------------------------------------------------------------------------ run

def test_run_inline_input_matches_evaluate(xor_file, xor_comp, launcher):
    x = [[0, 0], [1, 1]]
    proc = cli("run", xor_file, "--input", f"input={json.dumps(x)}", launcher=launcher)
    assert proc.returncode == 0, proc.stderr
    got = printed_outputs(proc.stdout)
    want = xor_comp.evaluate({"input": np.asarray(x, dtype=float)})
    assert set(got) == set(want) == {"output"}
    assert got["output"].shape == want["output"].shape == (2, 1)
    np.testing.assert_allclose(got["output"], want["output"], rtol=0, atol=1e-12)


def test_run_npz_inputs_and_out(xor_file, xor_comp, tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, input=XOR_INPUTS)
    out = tmp_path / "out.npz"
    proc = cli("run", xor_file, "--inputs", data, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    want = xor_comp.evaluate({"input": XOR_INPUTS})
    with np.load(out, allow_pickle=False) as npz:
        assert set(npz.files) == set(want)
        for k, v in want.items():
            assert npz[k].shape == v.shape
            np.testing.assert_allclose(npz[k], v, rtol=0, atol=1e-12)
    # the printed values agree with the file
    np.testing.assert_allclose(printed_outputs(proc.stdout)["output"], want["output"], rtol=0, atol=1e-12)
    # no temporary files left beside the output
    assert listing(tmp_path) == ["data.npz", "out.npz"]


def test_run_steps_writes_trajectories(counter_file, tmp_path):
    out = tmp_path / "traj.npz"
    proc = cli("run", counter_file, "--steps", "5", "--out", out)
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as npz:
        assert set(npz.files) == {"counter", "counter__trajectory"}
        traj = npz["counter__trajectory"]
        final = npz["counter"]
    assert traj.shape[0] == 5
    np.testing.assert_array_equal(traj.reshape(5, -1)[:, 0], [1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(final.ravel(), [5.0])
    np.testing.assert_array_equal(printed_outputs(proc.stdout)["counter"].ravel(), [5.0])


def test_run_single_step_writes_no_trajectory(counter_file, tmp_path):
    out = tmp_path / "one.npz"
    proc = cli("run", counter_file, "--out", out)
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as npz:
        assert npz.files == ["counter"]
        np.testing.assert_array_equal(npz["counter"].ravel(), [1.0])


@pytest.mark.parametrize("arg, needles", [
    ("nope=[[0, 0]]", ["'nope'", "input"]),
    ("input=[[0, 0, 1]]", ["'input'", "(1, 3)", "(trials, 2)"]),
    ("input=[[NaN, 0]]", ["'input'", "NaN"]),
    ("input=[[Infinity, 0]]", ["'input'", "infinite"]),
    ("input=[[0, 0]", ["--input input", "JSON"]),
    ("input", ["--input", "NODE="]),
], ids=["unknown-node", "wrong-shape", "nan", "inf", "bad-json", "no-equals"])
def test_run_bad_inline_input_is_one_clear_line(xor_file, arg, needles):
    line = one_error_line(cli("run", xor_file, "--input", arg))
    missing = [n for n in needles if n not in line]
    assert not missing, (missing, line)


def test_run_bad_npz_is_one_clear_line(xor_file, tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, input=np.array([[0.0, np.nan]]))
    line = one_error_line(cli("run", xor_file, "--inputs", data))
    assert "'input'" in line and "NaN" in line
    np.savez(data, wrong=XOR_INPUTS)
    line = one_error_line(cli("run", xor_file, "--inputs", data))
    assert "'wrong'" in line
    line = one_error_line(cli("run", xor_file, "--inputs", tmp_path / "missing.npz"))
    assert "missing.npz" in line


def test_run_out_in_missing_directory_leaves_nothing(xor_file, tmp_path):
    before = listing(tmp_path)
    target = tmp_path / "no" / "such" / "dir" / "out.npz"
    line = one_error_line(cli("run", xor_file, "--input", "input=[[0, 1]]", "--out", target))
    assert str(target) in line
    assert listing(tmp_path) == before
    assert not (tmp_path / "no").exists()


def test_run_with_debug_shows_traceback(xor_file):
    proc = cli("--debug", "run", xor_file, "--input", "nope=[[0, 0]]")
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "DataError" in proc.stderr


# ------------------------------------------------------------------------------------------ convert

def test_convert_json_yaml_json_round_trip(xor_file, tmp_path, launcher):
    yml = tmp_path / "xor.mdf.yaml"
    back = tmp_path / "xor.back.json"
    p1 = cli("convert", xor_file, yml, launcher=launcher)
    assert p1.returncode == 0, p1.stderr
    assert f"wrote {yml}" in p1.stdout
    p2 = cli("convert", yml, back, launcher=launcher)
    assert p2.returncode == 0, p2.stderr
    original = json.loads(xor_file.read_text(encoding="utf-8"))
    as_yaml = yaml.safe_load(yml.read_text(encoding="utf-8"))
    round_tripped = json.loads(back.read_text(encoding="utf-8"))
    assert as_yaml == original
    assert round_tripped == original
    assert listing(tmp_path) == sorted(["xor.mdf.yaml", "xor.back.json"])


def test_converted_file_runs_the_same(xor_file, xor_comp, tmp_path):
    yml = tmp_path / "xor.mdf.yml"
    assert cli("convert", xor_file, yml).returncode == 0
    proc = cli("run", yml, "--input", "input=[[1, 0], [0, 1]]")
    assert proc.returncode == 0, proc.stderr
    want = xor_comp.evaluate({"input": [[1.0, 0.0], [0.0, 1.0]]})["output"]
    np.testing.assert_allclose(printed_outputs(proc.stdout)["output"], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("target", ["xor.txt", "xor.mdf", "xor"])
def test_convert_to_unsupported_extension(xor_file, tmp_path, target):
    line = one_error_line(cli("convert", xor_file, tmp_path / target))
    suffix = Path(target).suffix
    assert (f"'{suffix}'" if suffix else "(none)") in line
    assert "unsupported file extension" in line
    assert ".json" in line and ".yaml" in line
    assert listing(tmp_path) == []


def test_convert_from_unsupported_extension(xor_file, tmp_path):
    src = tmp_path / "xor.txt"
    shutil.copyfile(xor_file, src)
    line = one_error_line(cli("convert", src, tmp_path / "out.yaml"))
    assert "'.txt'" in line
    assert listing(tmp_path) == ["xor.txt"]


@pytest.mark.parametrize("bad", ["truncated.json", "unknown_node_key.json", "duplicate_key.yaml",
                                 "two_models.yaml", "port_id_keyword.yaml"])
def test_convert_never_overwrites_a_good_file_with_a_broken_result(xor_file, tmp_path, bad):
    src = tmp_path / bad
    shutil.copyfile(BAD / bad, src)
    src_bytes = src.read_bytes()
    good = tmp_path / ("good.mdf.yaml" if bad.endswith(".json") else "good.mdf.json")
    assert cli("convert", xor_file, good).returncode == 0
    good_bytes, good_mtime = good.read_bytes(), good.stat().st_mtime_ns
    before = listing(tmp_path)
    line = one_error_line(cli("convert", src, good))
    assert bad in line
    assert good.read_bytes() == good_bytes
    assert good.stat().st_mtime_ns == good_mtime
    assert src.read_bytes() == src_bytes
    assert listing(tmp_path) == before  # no temporary files left behind
    # and converting a broken file onto itself leaves it as it was
    same = tmp_path / ("self" + src.suffix)
    shutil.copyfile(src, same)
    one_error_line(cli("convert", same, same))
    assert same.read_bytes() == src_bytes


def test_convert_missing_input_is_one_line(tmp_path):
    line = one_error_line(cli("convert", tmp_path / "missing.json", tmp_path / "out.yaml"))
    assert "missing.json" in line
    assert listing(tmp_path) == []


def test_convert_into_missing_directory(xor_file, tmp_path):
    target = tmp_path / "nope" / "x.yaml"
    line = one_error_line(cli("convert", xor_file, target))
    assert str(target) in line
    assert listing(tmp_path) == []


def test_validate_strict_refuses_what_the_default_reader_accepts(xor_file, tmp_path):
    doc = json.loads(xor_file.read_text())
    next(iter(doc.values()))["notes"] = "written by another tool"
    noted = tmp_path / "noted.json"
    noted.write_text(json.dumps(doc))
    assert cli("validate", str(noted)).returncode == 0
    proc = cli("validate", "--strict", str(noted))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "noted.json" in line and "notes" in line


def test_version_names_mdfbridge_and_the_libraries_it_runs_on():
    proc = cli("--version")
    assert proc.returncode == 0
    from mdfbridge import __version__

    assert proc.stdout.startswith(f"mdfbridge {__version__} (modeci-mdf ") and "torch " in proc.stdout


def test_a_misspelled_command_is_one_line_with_the_closest_one():
    proc = cli("trian", "model.json")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "unknown command 'trian'" in line and "did you mean 'train'?" in line


def test_run_prints_a_summary_of_large_outputs_ignores_targets_and_warns_on_zeros(xor_file, tmp_path):
    data = tmp_path / "train.npz"
    rng = np.random.default_rng(0)
    np.savez(data, input=rng.uniform(size=(500, 2)), output=rng.uniform(size=(500, 1)))  # a training file
    proc = cli("run", str(xor_file), "--inputs", str(data))
    assert proc.returncode == 0, proc.stderr
    assert "output: shape (500, 1), first rows [[" in proc.stdout and "--print-all" in proc.stdout
    assert len(proc.stdout) < 400
    full = cli("run", str(xor_file), "--inputs", str(data), "--print-all")
    assert len(json.loads(full.stdout.split("output: ", 1)[1])) == 500
    zeros = cli("run", str(xor_file))
    assert zeros.returncode == 0 and "warning: no value given for input(s) input: they ran on zeros" in zeros.stderr
