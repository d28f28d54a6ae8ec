"""Runs the hypothesis properties of tests/fuzz_targets.py in a child pytest process (MDFBRIDGE_FUZZ_EXAMPLES
examples each, default 150 here; `make fuzz` runs 5,000) and checks the child passed and stayed under 1 GiB of peak
memory (its ru_maxrss), with an address-space guard of 6 GiB so a runaway allocation fails instead of swapping."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MAX_RSS_MIB = 1024


def _guard() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


@pytest.mark.slow
def test_fuzz_targets_raise_only_mdfbridge_errors_within_bounds(tmp_path):
    pytest.importorskip("hypothesis")
    env = {**os.environ, "MDFBRIDGE_FUZZ_EXAMPLES": os.environ.get("MDFBRIDGE_FUZZ_EXAMPLES", "150"),
           "MDFBRIDGE_FUZZ_DEADLINE_S": os.environ.get("MDFBRIDGE_FUZZ_DEADLINE_S", "20"), "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "out.txt", "w+") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                 str(HERE / "fuzz_targets.py")], stdout=out, stderr=subprocess.STDOUT,
                                cwd=tmp_path, env=env, preexec_fn=_guard)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read()
    assert os.waitstatus_to_exitcode(status) == 0, text[-6000:]
    assert usage.ru_maxrss / 1024 < MAX_RSS_MIB, f"peak {usage.ru_maxrss / 1024:.0f} MiB"
