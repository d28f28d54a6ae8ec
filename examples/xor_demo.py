"""The main job on the bundled XOR example: build a composition, write it as MDF, validate, load it back,
run it with mdfbridge's numpy reference and with modeci-mdf's own engine, train it from the MDF file with the
torch backend, write the trained weights back into the same document, show the outputs before/after, export the
trained model to ONNX and run it on onnxruntime."""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from xor_model import XOR_INPUTS, XOR_TARGETS, build_xor  # noqa: E402

from mdfbridge import composition_from_mdf, load_program, run_program  # noqa: E402
from mdfbridge.cli import main as cli  # noqa: E402
from mdfbridge.deploy import DeploymentSession  # noqa: E402
from mdfbridge.exporters.onnx import program_to_onnx, save_onnx  # noqa: E402
from mdfbridge.exporters.weights import write_back  # noqa: E402
from mdfbridge.learning import learn  # noqa: E402


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
    if not ok:
        print("MISMATCH")
        return 1

    trained_path = HERE / "xor.trained.mdf.json"
    result = learn(path, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, epochs=2000, learning_rate=0.5,
                   optimizer_type="sgd", minibatch_size=1, loss_spec="mse")
    write_back(path, result.program, trained_path)
    after = run_program(load_program(trained_path), {"input": XOR_INPUTS})["output"]
    print(f"5. trained from {path.name} on torch: {result.epochs_run} epochs, sgd lr 0.5, minibatch 1, "
          f"{result.seconds:.2f} s; loss {result.epoch_losses[0]:.4f} -> {result.epoch_losses[-1]:.6f}")
    print(f"6. wrote the trained weights back into {trained_path.name} (only the learnable matrices changed)")
    print("   input   target   before     after (reloaded from the trained MDF)")
    for x, t, a, b in zip(XOR_INPUTS, XOR_TARGETS[:, 0], ours[:, 0], after[:, 0]):
        print(f"   {x.astype(int)}   {t:.0f}        {a:.4f}     {b:.4f}")
    learned = bool(np.all((after[:, 0] > 0.5) == (XOR_TARGETS[:, 0] > 0.5)))
    exact = bool(np.array_equal(after, run_program(result.program, {"input": XOR_INPUTS})["output"]))
    print(f"7. XOR learned: {learned}; reloaded outputs equal the trained program's exactly: {exact}")
    onnx_path = HERE / "xor.trained.onnx"
    trained = load_program(trained_path)
    save_onnx(program_to_onnx(trained), onnx_path)
    session = DeploymentSession(str(onnx_path))
    deployed = session.run({"input": XOR_INPUTS})["output"]
    err = float(np.max(np.abs(deployed - after)))
    print(f"8. exported {onnx_path.name} (float32, opset 17) and ran it on onnxruntime ({session.provider}):")
    print("   input   MDF (numpy, float64)   onnxruntime (float32)")
    for x, a, b in zip(XOR_INPUTS, after[:, 0], deployed[:, 0]):
        print(f"   {x.astype(int)}   {a:.7f}              {b:.7f}")
    print(f"   max |onnxruntime - numpy reference| = {err:.1e} (tolerance 1e-6)")
    ok = learned and exact and err <= 1e-6
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
