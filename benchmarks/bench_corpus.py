"""modeci-mdf's example documents run as their scripts run them (tests/mdf_corpus.py protocols): mdfbridge's numpy
reference (scheduled node by node where the conditions are not a fixed order) and torch (static schedules) vs
modeci-mdf's EvaluableGraph, side by side in one run. Prints seconds per whole protocol and the ratios."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from timing import best_of

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import mdfbridge  # noqa: E402
from mdfbridge.backends import get_backend  # noqa: E402
from mdfbridge.importers.reference import ReferenceRunner  # noqa: E402
from tests.mdf_corpus import BY_NAME, engine_run  # noqa: E402

DOCUMENTS = ("States", "SwitchedRLC_Circuit", "IAF_net", "RNNs", "FN", "abc_conditions", "everyncalls_condition",
             "threshold_condition")


def row(name: str) -> str:
    """One document's line: seconds per whole protocol on the engine, numpy and torch, and the ratios."""
    p = BY_NAME[name]
    prog = mdfbridge.load_program(p.file, p.graph)
    inputs = {k: np.zeros((1,)) for k, s in prog.inputs.items() if s.shape is None and s.default is None}
    dt = p.dt if p.dt is not None else 1.0
    engine = best_of(lambda: engine_run(p), repeat=2)
    runner = ReferenceRunner(prog)
    ours = best_of(lambda: runner.run(inputs, steps=p.calls, dt=dt), repeat=3)
    torch_s = float("nan")
    if prog.schedule is None or prog.schedule.static_order(p.calls) is None:
        rep = get_backend("torch").prepare(prog)
        torch_s = best_of(lambda: rep.run(inputs, steps=p.calls, dt=dt), repeat=3)
    return (f"{name:24s} {p.calls:6d} {engine:10.4f} {ours:10.4f} {torch_s:10.4f} {engine / ours:13.1f} "
            f"{engine / torch_s:13.1f}")


def main() -> None:
    warnings.simplefilter("ignore")
    print(f"{'document':24s} {'calls':>6s} {'engine s':>10s} {'numpy s':>10s} {'torch s':>10s} "
          f"{'engine/numpy':>13s} {'engine/torch':>13s}")
    for name in DOCUMENTS:
        print(row(name))


if __name__ == "__main__":
    main()
