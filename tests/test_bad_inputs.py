"""The bad-input corpus (tests/data/bad/): every document has exactly one defect, and every defect is reported
as the right MdfBridgeError subclass with a message that says where and what -- by the API, and by the CLI as
one `error:` line (exit 2, no traceback unless --debug). No input file is ever modified, and no expression in
them is ever executed.

tests/data/bad/expected.json maps file name -> {"error": <exception class name>, "match": [substrings],
optionally "xfail": <reason: a known library bug>}.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mdfbridge
import mdfbridge.errors
from mdfbridge import api

BAD = Path(__file__).resolve().parent / "data" / "bad"
MANIFEST_NAME = "expected.json"
MANIFEST = json.loads((BAD / MANIFEST_NAME).read_text(encoding="utf-8"))
PWN_MARKER = Path("/tmp/mdfbridge_pwned")
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def _params(with_xfail: bool = True):
    out = []
    for name, spec in sorted(MANIFEST.items()):
        marks = []
        if with_xfail and spec.get("xfail"):
            marks.append(pytest.mark.xfail(strict=True, reason=spec["xfail"]))
        out.append(pytest.param(name, spec, id=name, marks=marks))
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _marker_state():
    """(exists, mtime_ns) of the marker an injected expression would `touch`."""
    try:
        return True, PWN_MARKER.stat().st_mtime_ns
    except FileNotFoundError:
        return False, None


def _assert_not_pwned(before) -> None:
    after = _marker_state()
    assert not after[0] or after == before, \
        f"an expression from the corpus was executed: {PWN_MARKER} was created/touched"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mdfbridge.cli", *args], capture_output=True, text=True,
                          timeout=120, env=ENV)


# ------------------------------------------------------------------------------------ the manifest itself

def test_every_corpus_file_is_in_the_manifest():
    files = {p.name for p in BAD.iterdir() if p.is_file()} - {MANIFEST_NAME}
    assert files == set(MANIFEST), (
        f"not in {MANIFEST_NAME}: {sorted(files - set(MANIFEST))}; "
        f"listed but missing: {sorted(set(MANIFEST) - files)}")


def test_corpus_is_large_and_mixes_formats():
    assert len(MANIFEST) >= 20
    suffixes = {Path(n).suffix for n in MANIFEST}
    assert {".json", ".yaml"} <= suffixes


def test_manifest_entries_are_well_formed():
    for name, spec in MANIFEST.items():
        assert set(spec) <= {"error", "match", "xfail"}, name
        cls = getattr(mdfbridge.errors, spec["error"], None)
        assert isinstance(cls, type) and issubclass(cls, mdfbridge.errors.MdfBridgeError), (name, spec["error"])
        assert spec["match"] and all(isinstance(s, str) and s for s in spec["match"]), name


# ------------------------------------------------------------------------------------ per document

@pytest.mark.parametrize("name, spec", _params())
def test_load_program_raises_exactly_the_expected_error(name, spec):
    path = BAD / name
    before = _marker_state()
    with pytest.raises(mdfbridge.errors.MdfBridgeError) as ei:
        api.load_program(path)
    _assert_not_pwned(before)
    assert type(ei.value).__name__ == spec["error"], f"{type(ei.value).__name__}: {ei.value}"
    msg = str(ei.value)
    missing = [s for s in spec["match"] if s not in msg]
    assert not missing, f"{missing} not in message: {msg}"


@pytest.mark.slow  # one CLI subprocess per corpus file (the errors themselves: test_load_program_raises_...)
@pytest.mark.parametrize("name, spec", _params())
def test_cli_validate_prints_one_error_line_and_exits_2(name, spec):
    path = BAD / name
    before = _marker_state()
    proc = _cli("validate", str(path))
    _assert_not_pwned(before)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    missing = [s for s in spec["match"] if s not in line]
    assert not missing, f"{missing} not in: {line}"


@pytest.mark.slow  # one CLI subprocess per corpus file
@pytest.mark.parametrize("name, spec", _params())
def test_cli_debug_shows_the_traceback(name, spec):
    path = BAD / name
    before = _marker_state()
    for args in (("--debug", "validate", str(path)), ("validate", "--debug", str(path))):
        proc = _cli(*args)
        _assert_not_pwned(before)
        assert proc.returncode != 0, (args, proc.stdout, proc.stderr)
        assert "Traceback (most recent call last)" in proc.stderr, (args, proc.stderr)
        assert f"mdfbridge.errors.{spec['error']}" in proc.stderr, (args, proc.stderr[-2000:])


@pytest.mark.parametrize("name, spec", _params(with_xfail=False))
def test_file_is_unchanged_by_every_command(name, spec, tmp_path, capsys):
    from mdfbridge import cli

    path = BAD / name
    digest, stat = _sha(path), path.stat()
    before = _marker_state()
    try:
        api.load_program(path)
    except mdfbridge.errors.MdfBridgeError:
        pass
    out = tmp_path / ("converted.yaml" if path.suffix == ".json" else "converted.json")
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    try:  # cli.main() configures logging: keep that from leaking into other tests
        for argv in (["validate", str(path)], ["info", str(path)], ["run", str(path)],
                     ["run", str(path), "--steps", "2", "--out", str(tmp_path / "o.npz")],
                     ["convert", str(path), str(out)]):
            rc = cli.main(argv)
            assert rc in (0, 2), argv
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
    capsys.readouterr()
    _assert_not_pwned(before)
    assert _sha(path) == digest
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    # nothing else (temp files, backups) appeared in the corpus directory
    assert not [p.name for p in BAD.iterdir() if p.name.startswith(".")]


def test_injected_expressions_never_run():
    """The three injection documents (parameter, function value, output port) are refused before evaluation."""
    injected = [n for n, spec in MANIFEST.items() if spec["error"] == "ExpressionError"
                and "mdfbridge_pwned" in (BAD / n).read_text(encoding="utf-8")]
    assert {"inject_parameter.json", "inject_function_value.yaml", "inject_output_port.json"} <= set(injected)
    before = _marker_state()
    for name in injected:
        with pytest.raises(mdfbridge.errors.ExpressionError):
            api.load_program(BAD / name)
        with pytest.raises(mdfbridge.errors.ExpressionError):
            mdfbridge.lower(api.load_mdf(BAD / name))
    _assert_not_pwned(before)
