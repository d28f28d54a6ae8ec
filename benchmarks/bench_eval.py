"""Evaluating a 2-10-1 MLP MDF: mdfbridge's numpy reference vs modeci-mdf's EvaluableGraph.evaluate,
side by side in one run. Target: >= 100x per trial."""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np
from timing import best_of

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from xor_model import build_xor  # noqa: E402

from mdfbridge.importers.reference import run_program  # noqa: E402


def main() -> None:
    comp = build_xor()
    model = comp.to_mdf()
    prog = comp.program()
    rng = np.random.default_rng(0)
    trials = rng.uniform(0, 1, (1000, 2))
    from modeci_mdf.execution_engine import EvaluableGraph

    warnings.simplefilter("ignore")
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        eg = EvaluableGraph(model.graphs[0], verbose=False)
        x = trials[0]

        def modeci_trial():
            eg.evaluate(initializer={"input_input": x})

        t_modeci = best_of(modeci_trial, repeat=3, number=50)
    one = {"input": trials[:1]}
    t_ours_trial = best_of(lambda: run_program(prog, one), number=500)
    t_ours_batch = best_of(lambda: run_program(prog, {"input": trials}), number=20) / len(trials)
    with contextlib.redirect_stdout(sink):
        eg.evaluate(initializer={"input_input": trials[0]})
    check = np.asarray(eg.enodes["output"].evaluable_outputs["output"].curr_value)
    assert np.allclose(run_program(prog, one)["output"][0], check, atol=1e-12)
    print("bench_eval: 2-10-1 MLP MDF, per trial (best of repeats)")
    print(f"  modeci-mdf EvaluableGraph.evaluate : {t_modeci * 1e6:10.1f} us/trial")
    print(f"  mdfbridge numpy reference, 1 trial : {t_ours_trial * 1e6:10.1f} us/trial   "
          f"ratio {t_modeci / t_ours_trial:8.1f}x (target >= 100x)")
    print(f"  mdfbridge numpy reference, 1000 bat: {t_ours_batch * 1e6:10.3f} us/trial   "
          f"ratio {t_modeci / t_ours_batch:8.1f}x")


if __name__ == "__main__":
    main()
