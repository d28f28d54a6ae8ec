"""Shared fixtures: small compositions used across the suite."""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO / "examples"))

# the LLVM backend's disk cache (importers/llvm_cache.py): a fresh folder per test process (and its children),
# so that the suite neither reads nor fills the user's
if "MDFBRIDGE_CACHE_DIR" not in os.environ:
    os.environ["MDFBRIDGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="mdfbridge-test-cache-")
    atexit.register(shutil.rmtree, os.environ["MDFBRIDGE_CACHE_DIR"], True)

from xor_model import XOR_INPUTS, XOR_TARGETS, build_xor  # noqa: E402,F401

from mdfbridge import Composition  # noqa: E402


def make_xor(seed: int = 0) -> Composition:
    """XOR 2-10-1 logistic net with seeded random weights and explicit bias nodes (the bundled example)."""
    return build_xor(seed)


@pytest.fixture
def xor() -> Composition:
    return make_xor()


def learned_outputs(comp, *args, **kwargs):
    """comp.learn(*args, **kwargs), then the final epoch's outputs per output node name ((trials, size), trial
    order: `comp.learn_result.outputs`; learn() itself returns PsyNeuLink's last-trial values)."""
    comp.learn(*args, **kwargs)
    return comp.learn_result.outputs


@pytest.fixture
def hang_guard():
    """A generous guard: a blocking open (e.g. of a FIFO) fails the test instead of hanging the run."""
    def _alarm(signum, frame):
        raise TimeoutError("blocked")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
