"""kill -9 during `mdfbridge convert` (issue 12, items 6-7): how many temporary files random kills leave behind, and
whether the target is ever torn, for this checkout and, with --before DIR, another checkout (run with
PYTHONPATH=DIR), side by side.

Each run converts a ~0.9 MB MDF JSON document to YAML onto an existing, complete target and is killed (SIGKILL)
at a random moment of its write: once its temporary file appears, after the write window (temporary file
appearing -> renamed, measured on an uninterrupted run) times a uniform random fraction. After each kill the
target must be byte-equal to an uninterrupted conversion. Printed: kills that landed while the run's temporary
file was there, temporary files (and MB) left after all kills, temporary files left after one more, uninterrupted
convert, and torn targets.

    python benchmarks/bench_kill_writes.py [--before DIR] [--kills 50] [--seed 0]"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]


def source_document(path: Path) -> None:
    """examples/xor.mdf.json with a 200 x 200 'ballast' parameter on node hidden (about 0.9 MB of JSON)."""
    data = json.loads((ROOT / "examples" / "xor.mdf.json").read_text(encoding="utf-8"))
    model = next(iter(data.values()))
    graph = next(iter(model["graphs"].values()))
    rng = random.Random(0)
    ballast = [[round(rng.random(), 6) for _ in range(200)] for _ in range(200)]
    graph["nodes"]["hidden"].setdefault("parameters", {})["ballast"] = {"value": ballast}
    path.write_text(json.dumps(data, indent=4), encoding="utf-8")


def _temps(folder: Path, target: str) -> List[Path]:
    return [folder / n for n in os.listdir(folder) if n.startswith(f".{target}.") and n.endswith(".tmp")]


def _convert(checkout: Path, src: Path, dst: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen([sys.executable, "-m", "mdfbridge.cli", "convert", str(src), str(dst)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(dst.parent))


def _wait_for_temp(proc: subprocess.Popen, folder: Path, target: str, old: Set[Path]) -> Optional[float]:
    """Poll (1 ms) until a new temporary file of target (not in old) appears; its time, or None if the process
    ended first."""
    while proc.poll() is None:
        if set(_temps(folder, target)) - old:
            return time.perf_counter()
        time.sleep(0.001)
    return None


def measure(checkout: Path, kills: int, seed: int) -> Dict[str, object]:
    """Run the kills with one checkout; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="bench_kill_") as tmp:
        folder = Path(tmp)
        src = folder / "src.mdf.json"
        source_document(src)
        dst = folder / "out.mdf.yaml"
        proc = _convert(checkout, src, dst)  # uninterrupted: the reference output and the write window
        appeared = _wait_for_temp(proc, folder, dst.name, set())
        while proc.poll() is None and _temps(folder, dst.name):  # until the rename
            time.sleep(0.001)
        window = max(time.perf_counter() - (appeared or time.perf_counter()), 0.005)
        if proc.wait() != 0:
            raise SystemExit(f"convert failed with {checkout}")
        reference = dst.read_bytes()
        rng = random.Random(seed)
        in_write = torn = 0
        for _ in range(kills):
            old = set(_temps(folder, dst.name))  # left by killed runs
            proc = _convert(checkout, src, dst)
            seen = _wait_for_temp(proc, folder, dst.name, old)
            if seen is not None:
                time.sleep(rng.uniform(0.0, 1.0) * window)
            during = bool(set(_temps(folder, dst.name)) - old)  # this run's temporary file is there
            proc.kill()
            proc.wait()
            in_write += seen is not None and during and proc.returncode != 0
            if dst.exists() and dst.read_bytes() != reference:
                torn += 1
        left = _temps(folder, dst.name)
        left_bytes = sum(p.stat().st_size for p in left)
        proc = _convert(checkout, src, dst)
        ok = proc.wait() == 0 and dst.read_bytes() == reference
        after_one_more = len(_temps(folder, dst.name))
        shutil.rmtree(folder, ignore_errors=True)
    return {"kills": kills, "killed during the write": in_write, "write window s": round(window, 3),
            "temp files left": len(left), "temp MB left": round(left_bytes / 1e6, 2),
            "temp files after one more convert": after_one_more, "torn targets": torn,
            "final convert complete": ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="another mdfbridge checkout to measure too (PYTHONPATH)")
    ap.add_argument("--kills", type=int, default=50, help="kill -9 runs per checkout")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    args = ap.parse_args()
    columns: List[Tuple[str, Dict[str, object]]] = []
    if args.before:
        columns.append(("before", measure(Path(args.before).resolve(), args.kills, args.seed)))
    columns.append(("after", measure(ROOT, args.kills, args.seed)))
    print("| kill -9 during convert | " + " | ".join(name for name, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for key in columns[0][1]:
        print(f"| {key} | " + " | ".join(str(figures[key]) for _, figures in columns) + " |")
    bad = any(f["torn targets"] or not f["final convert complete"] for name, f in columns if name == "after")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
