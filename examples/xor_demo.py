"""The main job on the bundled XOR example: build a composition, write it as MDF, validate, load it back,
run it with mdfbridge's numpy reference and with modeci-mdf's own engine, and compare."""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from xor_model import XOR_INPUTS, build_xor  # noqa: E402

from mdfbridge import composition_from_mdf, load_program, run_program  # noqa: E402
from mdfbridge.cli import main as cli  # noqa: E402


def modeci_engine(path: Path) -> np.ndarray:
    """Evaluate the MDF file trial by trial with modeci-mdf's EvaluableGraph."""
    from modeci_mdf.execution_engine import EvaluableGraph
    from modeci_mdf.utils import load_mdf

    graph = load_mdf(str(path)).graphs[0]
    rows = []
    for x in XOR_INPUTS:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            eg = EvaluableGraph(graph, verbose=False)
            eg.evaluate(initializer={"input_input": x})
        rows.append(np.asarray(eg.enodes["output"].evaluable_outputs["output"].curr_value, dtype=float))
    return np.stack(rows)


def main() -> int:
    """Run the demo; returns 0 when every check agrees."""
    path = HERE / "xor.mdf.json"
    comp = build_xor()
    comp.save_mdf(str(path))
    print(f"1. built XOR 2-10-1 (logistic, explicit bias nodes) and wrote {path.relative_to(HERE.parent)}")
    print("2. mdfbridge validate:", end=" ", flush=True)
    if cli(["validate", str(path)]) != 0:
        return 1
    prog = load_program(path)
    ours = run_program(prog, {"input": XOR_INPUTS})["output"]
    rebuilt = composition_from_mdf(str(path)).evaluate({"input": XOR_INPUTS})["output"]
    theirs = modeci_engine(path)
    print("3. loaded it back and ran the four XOR trials:")
    print("   input     mdfbridge (numpy)   modeci-mdf engine   |diff|")
    for x, a, b in zip(XOR_INPUTS, ours[:, 0], theirs[:, 0]):
        print(f"   {x.astype(int)}   {a:.15f}   {b:.15f}   {abs(a - b):.1e}")
    diff = float(np.max(np.abs(ours - theirs)))
    ok = diff <= 1e-12 and np.array_equal(ours, rebuilt)
    print(f"4. max |mdfbridge - modeci-mdf| = {diff:.2e} (tolerance 1e-12); rebuilt composition identical: "
          f"{np.array_equal(ours, rebuilt)}")
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
