"""The hostile-input corpus (tests/data/hostile/, see tests/hostile_runner.py): every probe ends as its case says
(for bad input: exit 2, one `error: ` line naming file and place, no traceback), under 1 GiB of peak memory, never
hanging (a 60 s guard), and never changes a corpus file. Times are reported by benchmarks/hostile_probes.py."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hostile_runner import HOSTILE, cases, make_generated, problems, run_case

CASES = cases()


def _digest(root: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    gens = {}
    for area in sorted({c.area for c in CASES}):
        gens[area] = tmp_path_factory.mktemp(f"hostile_{area}")
        make_generated(area, gens[area])
    return gens


def test_the_corpus_has_cases():
    assert len(CASES) >= 1
    for c in CASES:
        assert c.argv and (c.exit != 2 or c.match), c.id


@pytest.mark.slow  # one CLI subprocess per case
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_probe_ends_as_its_case_says(case, generated):
    before = _digest(HOSTILE / case.area)
    outcome = run_case(case, generated[case.area])
    assert not problems(case, outcome), (problems(case, outcome), outcome.stderr[-2000:])
    assert _digest(HOSTILE / case.area) == before, "a corpus file changed"
