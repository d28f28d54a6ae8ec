"""The hostile-input probes (tests/data/hostile/) side by side: each case run by this checkout and, with
--before DIR, by another checkout of mdfbridge (e.g. `git worktree add /tmp/before <rev>`), in one run; prints a
markdown table probe -> before -> after with exit status, stderr lines, seconds and peak MiB, and whether the
case's expectation (tests/hostile_runner.problems) holds. The issue's bound: exit 2 with one line in under 5 s and
under 1 GiB, or success.

    python benchmarks/hostile_probes.py [--before DIR] [--area AREA] [--json OUT]"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hostile_runner import cases, describe, make_generated, problems, run_case  # noqa: E402

TIME_LIMIT_S = 5.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="another mdfbridge checkout to run the same probes with (PYTHONPATH)")
    ap.add_argument("--area", help="only this area (a folder of tests/data/hostile)")
    ap.add_argument("--json", help="also write the outcomes as JSON here")
    args = ap.parse_args()
    todo = [c for c in cases() if args.area in (None, c.area)]
    gens = {}
    rows, records = [], []
    slow = bad = 0
    for case in todo:
        if case.area not in gens:
            gens[case.area] = Path(f"/tmp/mdfbridge_hostile_gen/{case.area}")
            make_generated(case.area, gens[case.area])
        after = run_case(case, gens[case.area])
        before = (run_case(case, gens[case.area], env={"PYTHONPATH": str(Path(args.before).resolve())})
                  if args.before else None)
        issues = problems(case, after)
        if after.seconds > TIME_LIMIT_S:
            issues.append(f"{after.seconds:.1f} s (bound {TIME_LIMIT_S:.0f} s)")
            slow += 1
        bad += bool(issues)
        rows.append(f"| {case.id} | {case.probe} | {describe(before) if before else '-'} | {describe(after)} | "
                    f"{'; '.join(issues) or 'holds'} |")
        records.append({"case": case.id, "probe": case.probe, "after": after.__dict__,
                        "before": before.__dict__ if before else None, "problems": issues})
        print(rows[-1], flush=True)
    print("\n| case | probe | before | after | verdict |\n|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{len(todo)} probes: {len(todo) - bad} hold, {bad} do not ({slow} over {TIME_LIMIT_S:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1), encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
