"""The bundled example: XOR as a 2-10-1 logistic composition with explicit bias nodes."""
from __future__ import annotations

import numpy as np

from mdfbridge import BiasMechanism, Composition, Logistic, MappingProjection, TransferMechanism

XOR_INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_TARGETS = np.array([[0.0], [1.0], [1.0], [0.0]])


def build_xor(seed: int = 0) -> Composition:
    """XOR 2-10-1: input (linear) -> hidden (logistic) -> output (logistic), seeded uniform(-1, 1) weights."""
    rng = np.random.default_rng(seed)
    inp = TransferMechanism("input", 2)
    hidden = TransferMechanism("hidden", 10, Logistic())
    out = TransferMechanism("output", 1, Logistic())
    comp = Composition("xor", seed=seed)
    comp.add_linear_processing_pathway([
        inp, MappingProjection(matrix=rng.uniform(-1, 1, (2, 10)), name="input_to_hidden"),
        hidden, MappingProjection(matrix=rng.uniform(-1, 1, (10, 1)), name="hidden_to_output"),
        out])
    comp.add_projection(MappingProjection(matrix=rng.uniform(-1, 1, (1, 10)), name="bias_to_hidden"),
                        BiasMechanism("bias_hidden"), hidden)
    comp.add_projection(MappingProjection(matrix=rng.uniform(-1, 1, (1, 1)), name="bias_to_output"),
                        BiasMechanism("bias_output"), out)
    return comp
