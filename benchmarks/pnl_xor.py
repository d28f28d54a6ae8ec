"""PsyNeuLink's AutodiffComposition.learn on XOR 2-10-1, timed inside PsyNeuLink's own interpreter.

PsyNeuLink 0.21 pins modeci-mdf < 0.4.14 and mdfbridge needs >= 0.4.15, so the two live in separate venvs; the
benchmarks run this file with PsyNeuLink's python (`--psyneulink-python PATH`, else $MDFBRIDGE_PNL_PYTHON) as a
child process. It imports only numpy and psyneulink.

    PNL_PYTHON benchmarks/pnl_xor.py < request.json

request: {"weights": {"input_to_hidden", "hidden_to_output", "bias_to_hidden", "bias_to_output": nested lists},
"epochs": int, "mode": "PyTorch" | "LLVMRun", "learning_rate": float (default 0.5)}. Prints one JSON line
{"per_epoch": seconds, "first_call": seconds, "version": psyneulink's version}: per_epoch is the best of 3 timed
learn() calls of `epochs` epochs after a 2-epoch warm-up call (first_call; it includes LLVMRun's compile).
Minibatch 1, SGD, MSE, PsyNeuLink's defaults otherwise; bias nodes are TransferMechanisms fed 1.
"""
import json
import sys
import time
import warnings

import numpy as np


def xor_learn_seconds(weights: dict, epochs: int, mode: str = "PyTorch", learning_rate: float = 0.5) -> dict:
    """{"per_epoch", "first_call", "version"} of PsyNeuLink's learn() on XOR in ExecutionMode `mode`."""
    import psyneulink as pnl

    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    t = np.array([[0.0], [1.0], [1.0], [0.0]])
    w = {k: np.array(v, dtype=float) for k, v in weights.items()}
    i = pnl.TransferMechanism(name="input", input_shapes=2)
    h = pnl.TransferMechanism(name="hidden", input_shapes=10, function=pnl.Logistic())
    o = pnl.TransferMechanism(name="output", input_shapes=1, function=pnl.Logistic())
    bh = pnl.TransferMechanism(name="bias_hidden", input_shapes=1)
    bo = pnl.TransferMechanism(name="bias_output", input_shapes=1)
    ad = pnl.AutodiffComposition(learning_rate=learning_rate)
    ad.add_linear_processing_pathway([i, pnl.MappingProjection(matrix=w["input_to_hidden"]), h,
                                      pnl.MappingProjection(matrix=w["hidden_to_output"]), o])
    ad.add_node(bh)
    ad.add_node(bo)
    ad.add_projection(pnl.MappingProjection(matrix=w["bias_to_hidden"]), bh, h)
    ad.add_projection(pnl.MappingProjection(matrix=w["bias_to_output"]), bo, o)
    ones = np.ones((4, 1))
    data = {"inputs": {i: x, bh: ones, bo: ones}, "targets": {o: t}}
    execution_mode = getattr(pnl.ExecutionMode, mode)
    start = time.perf_counter()
    ad.learn(inputs={**data, "epochs": 2}, execution_mode=execution_mode)
    first = time.perf_counter() - start
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        ad.learn(inputs={**data, "epochs": epochs}, execution_mode=execution_mode)
        best = min(best, time.perf_counter() - start)
    return {"per_epoch": best / epochs, "first_call": first, "version": pnl.__version__}


def main() -> None:
    warnings.simplefilter("ignore")
    req = json.load(sys.stdin)
    print(json.dumps(xor_learn_seconds(req["weights"], int(req["epochs"]), req.get("mode", "PyTorch"),
                                       float(req.get("learning_rate", 0.5)))))


if __name__ == "__main__":
    main()
