"""The bundled examples run end to end."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow  # the whole demo in a subprocess (what `make demo` runs)


def test_xor_demo_runs_and_agrees_with_modeci():
    res = subprocess.run([sys.executable, str(REPO / "examples" / "xor_demo.py")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("OK")
    assert "tolerance 1e-12" in res.stdout
