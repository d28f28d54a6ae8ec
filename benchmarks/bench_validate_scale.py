"""Validation and lowering scale linearly (issue 12 item 4): MDF chains of 1,000, 10,000 and 100,000 nodes (node
i's y feeds node i+1's x; each computes `2 * x + 1`), written to a temporary folder, then timed as
`mdfbridge validate` runs them (read + schema + semantic checks: `load_document_dict`; then `lower`, which folds,
checks shapes and limits) and end to end (`load_program`). Prints wall and CPU seconds and microseconds per node
(flat per-node figures mean linear time; the issue's bound: 100,000 nodes validate in under 10 s).

    python benchmarks/bench_validate_scale.py [--sizes 1000,10000,100000] [--json OUT]"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from mdfbridge.api import load_program  # noqa: E402
from mdfbridge.document import load_document_dict  # noqa: E402
from mdfbridge.lowering import gc_paused, lower  # noqa: E402


def chain(n: int) -> Dict[str, Any]:
    """An MDF document: n nodes in a chain."""
    nodes = {f"n{i}": {"input_ports": {"x": {"shape": [2]}}, "functions": {"f": {"value": "2 * x + 1"}},
                       "output_ports": {"y": {"value": "f"}}} for i in range(n)}
    edges = {f"e{i}": {"sender": f"n{i}", "sender_port": "y", "receiver": f"n{i + 1}", "receiver_port": "x"}
             for i in range(n - 1)}
    return {"chain": {"format": "ModECI MDF v0.4", "generating_application": "bench_validate_scale",
                      "graphs": {"g": {"nodes": nodes, "edges": edges}}}}


def timed(fn: Callable[[], Any]) -> Tuple[float, float, Any]:
    """(wall seconds, CPU seconds, result) of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="chain lengths, comma-separated")
    ap.add_argument("--json", help="also write the figures as JSON here")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"chain_{n}.json")
            Path(path).write_text(json.dumps(chain(n)), encoding="utf-8")
            with gc_paused():  # as load_program reads and lowers
                rw, rc, doc = timed(lambda p=path: load_document_dict(p))
            lw, lc, _ = timed(lambda d=doc, p=path: lower(d, source=p))
            tw, tc, prog = timed(lambda p=path: load_program(p))
            assert len(prog.metadata["order"]) == n
            rec = {"nodes": n, "read_validate_s": rw, "lower_s": lw, "load_program_s": tw,
                   "load_program_cpu_s": tc, "us_per_node": 1e6 * tw / n}
            records.append(rec)
            rows.append(f"| {n:,} | {rw:.2f} ({rc:.2f}) | {lw:.2f} ({lc:.2f}) | {tw:.2f} ({tc:.2f}) | "
                        f"{1e6 * tw / n:.0f} ({1e6 * tc / n:.0f}) |")
            print(rows[-1], flush=True)
    print("\nseconds wall (CPU); the last column per node: flat means linear\n")
    print("| nodes | read + schema + checks | lower (shapes, limits) | load_program (validate) | us/node |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
