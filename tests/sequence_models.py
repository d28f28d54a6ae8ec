"""Small stateful MDF models the learning-algorithm tests share: a rate network (stim -> cell: one state with an
Euler time derivative) and the same with a linear readout node."""
from __future__ import annotations

from typing import Tuple

import numpy as np

TAU = 2.0


def rate_doc(W: np.ndarray, tau: float = TAU, right: bool = False, r0: float = 0.0) -> dict:
    """A rate network in MDF: stim -> cell, dr/dt = (-r + tanh(W r + I)) / tau (W learnable), r(0) = r0 (default
    0); right: the product written matmul(r, W) (r W, the llvm backend's projection; default False)."""
    n = len(W)
    product = "matmul(r, W)" if right else "matmul(W, r)"
    return {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {
        "nodes": {
            "stim": {"input_ports": {"x": {"shape": [n]}}, "output_ports": {"y": {"value": "x"}}},
            "cell": {"metadata": {"mdfbridge": {"learnable_parameters": ["W"]}},
                     "input_ports": {"I": {"shape": [n]}},
                     "parameters": {"tau": {"value": tau}, "W": {"value": W.tolist()},
                                    "r": {"default_initial_value": [r0] * n,
                                          "time_derivative": f"(-r + tanh({product} + I)) / tau"}},
                     "output_ports": {"out": {"value": "r"}}}},
        "edges": {"e": {"sender": "stim", "sender_port": "y", "receiver": "cell", "receiver_port": "I"}}}}}}


def readout_doc(W: np.ndarray, U: np.ndarray, Wout: np.ndarray, right: bool = False) -> dict:
    """stim (m) -> cell (n rate units, dr/dt = (-r + tanh(W r + U I)) / tau, r(0) = 0.1; W, U, tau learnable) ->
    readout (Wout r, learnable); n, m, k from the arrays' shapes. right: the products written with the vector
    first, matmul(r, W^T) (the llvm backend's projections; tau then fixed: it trains matrices only; default
    False)."""
    n, m = U.shape

    def product(M: str, v: str) -> str:
        return f"matmul({v}, {M})" if right else f"matmul({M}, {v})"

    def value(M: np.ndarray) -> list:
        return (M.T if right else M).tolist()
    return {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {
        "nodes": {
            "stim": {"input_ports": {"x": {"shape": [m]}}, "output_ports": {"y": {"value": "x"}}},
            "cell": {"metadata": {"mdfbridge": {"learnable_parameters": ["W", "U"] + ([] if right else ["tau"])}},
                     "input_ports": {"I": {"shape": [m]}},
                     "parameters": {"tau": {"value": TAU}, "W": {"value": value(W)}, "U": {"value": value(U)},
                                    "r": {"default_initial_value": [0.1] * n, "time_derivative":
                                          f"(-r + tanh({product('W', 'r')} + {product('U', 'I')})) / tau"}},
                     "output_ports": {"out": {"value": "r"}}},
            "readout": {"metadata": {"mdfbridge": {"learnable_parameters": ["Wout"]}},
                        "input_ports": {"h": {"shape": [n]}}, "parameters": {"Wout": {"value": value(Wout)}},
                        "functions": {"f": {"value": product("Wout", "h")}}, "output_ports": {"y": {"value": "f"}}}},
        "edges": {"e1": {"sender": "stim", "sender_port": "y", "receiver": "cell", "receiver_port": "I"},
                  "e2": {"sender": "cell", "sender_port": "out", "receiver": "readout", "receiver_port": "h"}}}}}}


def readout_weights(seed: int, recurrent: bool, n: int = 4, m: int = 2, k: int = 2
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, U, Wout) for readout_doc: W normal * 0.5 (zeros unless `recurrent`), U normal, Wout normal * 0.5."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, n)) * 0.5 if recurrent else np.zeros((n, n))
    return W, rng.normal(size=(n, m)), rng.normal(size=(k, n)) * 0.5
