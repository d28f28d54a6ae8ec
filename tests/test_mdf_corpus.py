"""modeci-mdf's own example corpus (tests/data/mdf_corpus, Apache-2.0) against modeci-mdf's engine.

Each protocol of ``tests/mdf_corpus.py`` (how the example's own script runs its document: how many
``evaluate()`` calls, which ``time_increment``, which inputs) runs on mdfbridge's numpy reference, and on the torch
backend where the program's schedule is static; every compared output port and parameter must agree with the
engine's value after the same number of calls to ``ATOL`` (absolute) / ``RTOL`` (relative), and so must the
recorded points of the trajectories. The engine's results are recorded in ``tests/data/mdf_corpus/
engine_results.json`` (``python tests/mdf_corpus.py --record`` regenerates it); ``test_recording_is_current``
re-runs the engine on the short protocols and checks that the recording still says what the engine says.

Documents that use what mdfbridge cannot run (``UNSUPPORTED``) must fail with one clear line naming the construct.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import pytest

import mdfbridge
from mdfbridge.errors import UnsupportedError
from mdfbridge.importers.reference import ReferenceRunner
from mdfbridge.program import Program
from tests.mdf_corpus import BY_NAME, PROTOCOLS, TRAJ, Protocol, engine_record, load_recorded, traj_calls

#: Tolerance of every comparison with the engine: |ours - engine| <= ATOL + RTOL * |engine|.
ATOL = 1e-9
RTOL = 1e-9

#: Documents mdfbridge cannot run, and the words its one-line error must contain.
UNSUPPORTED: Dict[str, str] = {
    "ONNX_abc": "onnx::Loop",
}

#: Documents modeci-mdf's engine cannot load or run, compared instead with the document they translate.
ENGINE_FAILS_USE: Dict[str, str] = {
    "Translated_abc_conditions": "abc_conditions",
}

RECORDED = load_recorded()


def _close(ours: Any, theirs: Any) -> float:
    """max |ours - theirs| (shapes broadcast as the engine's (1,)-for-scalar habit needs), inf on a mismatch."""
    a = np.asarray(ours, dtype=float)
    b = np.asarray(theirs, dtype=float)
    if a.size != b.size and not (a.size == 1 or b.size == 1):
        return math.inf
    a, b = a.reshape(-1), b.reshape(-1)
    d = np.abs(a - b)
    if not np.all(d <= ATOL + RTOL * np.abs(b)):
        return math.inf if not np.all(np.isfinite(d)) else float(np.max(d)) + 1.0
    return float(np.max(d)) if d.size else 0.0


def _inputs(p: Protocol, prog: Program, i: int = 0) -> Dict[str, np.ndarray]:
    init = p.call_initializer(i)
    if not init:
        return {}
    out = {}
    for k, v in init.items():
        arr = np.asarray(v, dtype=float)
        spec = prog.inputs.get(k) or next((s for s in prog.inputs.values() if s.port == k), None)
        shape = tuple(spec.shape) if spec is not None and spec.shape is not None else arr.shape
        if arr.shape != shape and arr.size == int(np.prod(shape)):
            arr = arr.reshape(shape)
        out[k] = arr[None]
    return out


def _read(prog: Program, env: Mapping[str, Any], key: str) -> np.ndarray:
    """The value of "node.port" (an output port) or "node.param" in the run's env, first trial."""
    ports = prog.metadata.get("ports", {})
    name = ports.get(key, key)
    if name == key and key + ".updated" in env:  # recomputed in modeci-mdf's second pass over the parameters
        name = key + ".updated"
    if name not in env:  # a parameter folded to a constant in lowering
        return np.asarray(prog.metadata["static_values"][key], dtype=float)
    v = np.asarray(env[name], dtype=float)
    return v[0] if v.ndim and v.shape[0] == 1 else v


def _compared(p: Protocol, recorded: Mapping[str, Any]) -> List[str]:
    return [k for k in p.compare if k in recorded]


def run_mdfbridge(p: Protocol, prog: Program) -> Dict[str, Any]:
    """Run the protocol on the numpy reference: {key: final value} and {key + TRAJ: {call: value}}."""
    runner = ReferenceRunner(prog)
    dt = p.dt if p.dt is not None else 0.0
    out: Dict[str, Any] = {}
    if p.initializers is not None:  # one independent call per input (a stateless document)
        assert not prog.stateful
        traj: Dict[str, Dict[int, Any]] = {}
        for i in range(p.calls):
            env = runner.run(_inputs(p, prog, i), steps=1, dt=dt, keep_env=True)["__env__"]
            for k in p.compare:
                traj.setdefault(k, {})[i] = _read(prog, env, k)
        for k, t in traj.items():
            out[k] = t[p.calls - 1]
            out[k + TRAJ] = t
        return out
    env = runner.run(_inputs(p, prog), steps=p.calls, dt=dt, keep_env=True)["__env__"]
    for k in p.compare:
        out[k] = _read(prog, env, k)
    return out


def _expected(p: Protocol) -> Dict[str, Any]:
    name = ENGINE_FAILS_USE.get(p.name, p.name)
    rec = RECORDED[name]
    assert rec["status"] == "ok", f"{name}: the engine does not run it ({rec['status']})"
    return rec["values"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", [p.name for p in PROTOCOLS])
def test_numpy_matches_engine(name: str) -> None:
    p = BY_NAME[name]
    if name in UNSUPPORTED:
        with pytest.raises(UnsupportedError) as exc:
            mdfbridge.load_program(p.file, p.graph)
        msg = str(exc.value)
        assert "\n" not in msg and UNSUPPORTED[name] in msg, msg
        return
    prog = mdfbridge.load_program(p.file, p.graph)
    theirs = _expected(p)
    ours = run_mdfbridge(p, prog)
    diffs = {k: _close(ours[k], theirs[k]) for k in _compared(p, theirs)}
    assert diffs and max(diffs.values()) <= ATOL + RTOL, diffs
