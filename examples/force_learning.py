"""FORCE learning (Sussillo & Abbott 2009) in MDF: a chaotic rate network's readout learns a periodic signal
online by recursive least squares, with the readout fed back into the network.

The document: node 'cell', N rate units dx/dt = (-x + J tanh(x) + w_fb z + I) / tau with J = g * normal / sqrt(N),
g = 1.5 (chaotic), and node 'readout', z = w tanh(x), whose output goes back to the cell through an edge closed by
the cell port's default_value (a cycle). `learn(..., algorithm=RLS(strategy="inputs"))` updates w at every step
while the network runs (FORCE), one pass over T_train steps. Then the trained document runs on its own for
T_train + T_test steps: over the test window its readout must follow the target (pVar > 0.9 at the best phase: a
network started afresh settles on the cycle at a phase of its own), which the untrained network's (w = 0,
chaotic) does not.

    python examples/force_learning.py [--out DIR]   (writes force.mdf.json and force.trained.mdf.json)
"""
from __future__ import annotations

import sys
from typing import Any, Dict

import numpy as np
from example_paths import output_dir

from mdfbridge import load_program, save_mdf
from mdfbridge.backends import get_backend
from mdfbridge.exporters.weights import write_back
from mdfbridge.learning import learn
from mdfbridge.learning.algorithms import RLS

N, G, TAU, DT, PERIOD, T_TRAIN, T_TEST = 200, 1.5, 10.0, 1.0, 60, 3000, 600


def force_doc(seed: int = 0) -> Dict[str, Any]:
    """The network and its readout (w = 0, learnable) as an MDF document."""
    rng = np.random.default_rng(seed)
    J = G * rng.normal(size=(N, N)) / np.sqrt(N)
    w_fb = rng.uniform(-1, 1, size=(N, 1))
    return {"force": {"format": "ModECI MDF v0.4", "graphs": {"g": {
        "nodes": {
            "cell": {"input_ports": {"I": {"shape": [1]}, "z": {"shape": [1], "default_value": [0.0]}},
                     "parameters": {"J": {"value": J.tolist()}, "w_fb": {"value": w_fb.tolist()}, "tau": {"value": TAU},
                                    "x": {"default_initial_value": (0.5 * rng.normal(size=N)).tolist(),
                                          "time_derivative": "(-x + matmul(J, tanh(x)) + matmul(w_fb, z) + I) / tau"}},
                     "output_ports": {"r": {"value": "tanh(x)"}}},
            "readout": {"metadata": {"mdfbridge": {"learnable_parameters": ["w"]}},
                        "input_ports": {"r": {"shape": [N]}}, "parameters": {"w": {"value": np.zeros((1, N)).tolist()}},
                        "functions": {"z": {"value": "matmul(w, r)"}}, "output_ports": {"z": {"value": "z"}}}},
        "edges": {"rates": {"sender": "cell", "sender_port": "r", "receiver": "readout", "receiver_port": "r"},
                  "feedback": {"sender": "readout", "sender_port": "z", "receiver": "cell", "receiver_port": "z"}}}}}}


def target(steps: int) -> np.ndarray:
    """The signal to learn: two harmonics of a PERIOD-step cycle, (steps, 1)."""
    t = np.arange(steps)[:, None]
    return 0.8 * np.sin(2 * np.pi * t / PERIOD) + 0.4 * np.sin(4 * np.pi * t / PERIOD)


def pvar(pred: np.ndarray, want: np.ndarray) -> float:
    """1 - MSE / Var(want)."""
    return float(1.0 - np.mean((pred - want) ** 2) / np.var(want))


def aligned_pvar(pred: np.ndarray) -> float:
    """pVar of a free-running readout against the target at the best of its PERIOD phases (a network started
    afresh settles on the cycle at a phase of its own)."""
    return max(pvar(pred, target(len(pred) + lag)[lag:]) for lag in range(PERIOD))


def free_run(path: Any, steps: int) -> np.ndarray:
    """The document run on its own (no learning) for `steps` steps: the readout, (steps, 1)."""
    out = get_backend("torch").prepare(load_program(path)).run_sequence({"cell": np.zeros((1, steps, 1))}, dt=DT)
    return out["readout"][0]


def main() -> int:
    out = output_dir(__doc__.splitlines()[0])
    src, trained = out / "force.mdf.json", out / "force.trained.mdf.json"
    save_mdf(force_doc(), src)
    result = learn(str(src), {"cell": np.zeros((1, T_TRAIN, 1))}, {"readout": target(T_TRAIN)[None]},
                   algorithm=RLS(strategy="inputs", delta=1.0, dt=DT))
    write_back(src, result.program, trained)
    during = pvar(result.outputs["readout"][0, T_TRAIN // 2:], target(T_TRAIN)[T_TRAIN // 2:])
    window = slice(T_TRAIN, T_TRAIN + T_TEST)
    after = aligned_pvar(free_run(trained, T_TRAIN + T_TEST)[window])
    before = aligned_pvar(free_run(src, T_TRAIN + T_TEST)[window])
    print(f"FORCE, N={N}, g={G}: training ({result.seconds:.1f} s, one pass of {T_TRAIN} steps), second half pVar "
          f"{during:.3f}; the trained document on its own, steps {T_TRAIN}-{T_TRAIN + T_TEST}: pVar {after:.3f} "
          f"(untrained network: {before:.3f})")
    ok = after > 0.9 and before < 0.1
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
