"""Runs the hostile-input corpus (tests/data/hostile/<area>/cases.json) through the `mdfbridge` command line, one
subprocess per case, and measures what the issue's "must hold" asks of each: exit status, the lines on stderr,
wall time and peak memory (the child's ru_maxrss from os.wait4).

A case file maps a case name to {"argv": [...], "exit": 2 (default), "match": [substrings of the one error
line], "probe": "what the probe is"}. In argv, "{here}" is the area's folder, "{gen}" a folder the area's
optional make.py fills once (`make(gen: pathlib.Path) -> None`, for files too big or too odd to commit: a zip
bomb, a FIFO, a symlink to /dev/zero) and "{tmp}" a fresh empty folder per case. Used by
tests/test_hostile_corpus.py and benchmarks/hostile_probes.py."""
from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HOSTILE = Path(__file__).resolve().parent / "data" / "hostile"
ADDRESS_SPACE_GUARD = 6 << 30  # RLIMIT_AS of each child: protects the machine; the limit checked is 1 GiB RSS
HANG_GUARD_S = 60.0


@dataclass(frozen=True)
class Case:
    """One probe: its area, name, command line (unsubstituted), expected exit status and error substrings."""

    area: str
    name: str
    argv: Sequence[str]
    exit: int
    match: Sequence[str]
    probe: str

    @property
    def id(self) -> str:
        return f"{self.area}/{self.name}"


@dataclass
class Outcome:
    """What one run of a case did: exit status (None: killed by the hang guard), stdout, stderr, seconds, MiB."""

    returncode: Optional[int]
    stdout: str
    stderr: str
    seconds: float
    max_rss_mib: float

    @property
    def stderr_lines(self) -> List[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


def cases(root: Path = HOSTILE) -> List[Case]:
    """Every case of every area under root, sorted by area and name."""
    out = []
    for manifest in sorted(root.glob("*/cases.json")):
        area = manifest.parent.name
        for name, spec in sorted(json.loads(manifest.read_text(encoding="utf-8")).items()):
            out.append(Case(area, name, tuple(spec["argv"]), int(spec.get("exit", 2)), tuple(spec.get("match", [])),
                            spec.get("probe", "")))
    return out


def make_generated(area: str, gen: Path, root: Path = HOSTILE) -> None:
    """Run the area's make.py (if any) into gen."""
    maker = root / area / "make.py"
    gen.mkdir(parents=True, exist_ok=True)
    if maker.exists():
        spec = importlib.util.spec_from_file_location(f"hostile_make_{area}", maker)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.make(gen)


def _limits() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_GUARD, ADDRESS_SPACE_GUARD))


def run_case(case: Case, gen: Path, python: str = sys.executable, env: Optional[Dict[str, str]] = None,
             hang_guard_s: float = HANG_GUARD_S, root: Path = HOSTILE) -> Outcome:
    """Run one case's command line (python -m mdfbridge.cli ...) with the substitutions made; kills it after
    hang_guard_s."""
    with tempfile.TemporaryDirectory() as tmp:
        subs = {"{here}": str(root / case.area), "{gen}": str(gen), "{tmp}": tmp}
        argv = []
        for a in case.argv:
            for k, v in subs.items():
                a = a.replace(k, v)
            argv.append(a)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            start = time.perf_counter()
            proc = subprocess.Popen([python, "-m", "mdfbridge.cli", *argv], stdout=out, stderr=err, cwd=tmp,
                                    env=env, preexec_fn=_limits, stdin=subprocess.DEVNULL)
            killed = threading.Event()

            def _kill() -> None:
                killed.set()
                proc.kill()

            timer = threading.Timer(hang_guard_s, _kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - start
            out.seek(0)
            err.seek(0)
            return Outcome(None if killed.is_set() else proc.returncode, out.read(), err.read(), seconds,
                           usage.ru_maxrss / 1024)


def problems(case: Case, outcome: Outcome, max_rss_mib: float = 1024.0) -> List[str]:
    """What the outcome breaks of the case's expectations (empty: it holds). Time is not judged here (the
    benchmark reports it): a run the hang guard killed is a problem."""
    found = []
    if outcome.returncode is None:
        return [f"hung (killed after {outcome.seconds:.0f} s)"]
    if outcome.returncode != case.exit:
        found.append(f"exit {outcome.returncode}, expected {case.exit}")
    if "Traceback" in outcome.stderr or "Traceback" in outcome.stdout:
        found.append("a traceback")
    if case.exit == 2:
        lines = outcome.stderr_lines
        if len(lines) != 1 or not lines[0].startswith("error: "):
            found.append(f"{len(lines)} stderr lines, expected one 'error: ' line")
        missing = [m for m in case.match if m not in outcome.stderr]
        if missing:
            found.append(f"{missing} not in the error")
    if outcome.max_rss_mib > max_rss_mib:
        found.append(f"{outcome.max_rss_mib:.0f} MiB peak memory (limit {max_rss_mib:.0f})")
    return found


def describe(outcome: Outcome) -> str:
    """The outcome in a table cell: exit status, time, memory and the first error line, shortened."""
    if outcome.returncode is None:
        return f"hang (killed at {outcome.seconds:.0f} s)"
    lines = outcome.stderr_lines
    tb = " traceback" if "Traceback" in outcome.stderr else ""
    first = (lines[-1] if tb else lines[0]) if lines else ""
    return (f"exit {outcome.returncode}{tb}, {len(lines)} line(s), {outcome.seconds:.1f} s, "
            f"{outcome.max_rss_mib:.0f} MiB: {first[:90]}")
