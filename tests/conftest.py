"""Shared fixtures: small compositions used across the suite."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mdfbridge import BiasMechanism, Composition, Logistic, TransferMechanism  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
XOR_INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_TARGETS = np.array([[0.0], [1.0], [1.0], [0.0]])


def make_xor(seed: int = 0, bias: bool = True) -> Composition:
    """XOR 2-10-1 logistic net with random initial weights and (optionally) explicit bias nodes."""
    inp = TransferMechanism("input", 2)
    hidden = TransferMechanism("hidden", 10, Logistic())
    out = TransferMechanism("output", 1, Logistic())
    comp = Composition("xor", seed=seed)
    rng = np.random.default_rng(seed)
    comp.add_linear_processing_pathway([inp, rng.uniform(-1, 1, (2, 10)), hidden, rng.uniform(-1, 1, (10, 1)), out])
    if bias:
        from mdfbridge import MappingProjection

        b_h, b_o = BiasMechanism("bias_hidden"), BiasMechanism("bias_output")
        comp.add_projection(MappingProjection(matrix=rng.uniform(-1, 1, (1, 10)), name="bias_to_hidden"), b_h, hidden)
        comp.add_projection(MappingProjection(matrix=rng.uniform(-1, 1, (1, 1)), name="bias_to_output"), b_o, out)
    return comp


@pytest.fixture
def xor() -> Composition:
    return make_xor()
