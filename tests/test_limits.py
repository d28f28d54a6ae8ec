"""mdfbridge.limits: the policy object, its overrides (code, MDFBRIDGE_LIMITS, the CLI's --limit) and its errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mdfbridge import limits
from mdfbridge.cli import main
from mdfbridge.limits import LimitError, Limits

XOR = str(Path(__file__).resolve().parents[1] / "examples" / "xor.mdf.json")


def test_replace_checks_names_and_values():
    assert Limits().replace(max_elements="1e6").max_elements == 10 ** 6
    with pytest.raises(LimitError, match="unknown limit 'max_elems'; limits: .*max_elements"):
        Limits().replace(max_elems=3)
    for bad in (0, -1, "x", None):
        with pytest.raises(LimitError, match="expected a positive integer"):
            Limits().replace(max_elements=bad)


def test_override_is_scoped_and_check_elements_names_the_limit():
    base = limits.current().max_elements
    with limits.override(max_elements=10):
        limits.check_elements(10, "x")
        with pytest.raises(LimitError, match=r"node 'n': outer\(a, b\) would have 11 elements, over the limit "
                                             r"max_elements=10 \(raise it with --limit max_elements=N"):
            limits.check_elements(11, "outer(a, b)", where="node 'n'")
    assert limits.current().max_elements == base


def test_settings_text():
    assert limits.parse_settings(" a=1, b=2 ,") == {"a": "1", "b": "2"}
    with pytest.raises(LimitError, match="MDFBRIDGE_LIMITS: 'a': expected name=value"):
        limits.parse_settings("a")


def test_cli_flag_and_environment(monkeypatch, capsys):
    before = limits.current()
    try:
        assert main(["--limit", "bogus=1", "validate", XOR]) == 2
        assert "unknown limit 'bogus'" in capsys.readouterr().err
        assert main(["--limit", "max_elements=123", "--limit", "max_exponent=7", "validate",
                     XOR]) == 0
        assert (limits.current().max_elements, limits.current().max_exponent) == (123, 7)
    finally:
        limits.set_limits(before)
    proc = subprocess.run([sys.executable, "-m", "mdfbridge.cli", "validate", XOR],
                          capture_output=True, text=True, env={"MDFBRIDGE_LIMITS": "max_elements=0", "PATH": ""},
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "error: limit max_elements='0': expected a positive integer", proc.stderr


def test_cli_turns_a_recursion_or_memory_error_into_one_line(monkeypatch, capsys):
    import mdfbridge.cli as cli

    for exc in (RecursionError("maximum recursion depth exceeded"), MemoryError()):
        def boom(args, exc=exc):
            raise exc
        monkeypatch.setattr(cli, "cmd_validate", boom)
        assert main(["validate", XOR]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {XOR}: input ") and type(exc).__name__ in err
