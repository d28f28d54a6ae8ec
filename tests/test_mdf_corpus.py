"""modeci-mdf's own example corpus (tests/data/mdf_corpus, Apache-2.0) against modeci-mdf's engine.

Each protocol of ``tests/mdf_corpus.py`` (how the example's own script runs its document: how many
``evaluate()`` calls, which ``time_increment``, which inputs) runs on mdfbridge's numpy reference, and on the torch
backend where the program's schedule is static; every compared output port and parameter must agree with the
engine's value after the same number of calls to ``ATOL`` = 1e-9 (absolute), and so must the program's outputs at
the recorded points of the trajectories (``TRAJ_SAMPLES`` calls of each). The engine's results are recorded in
``tests/data/mdf_corpus/engine_results.json`` (``python tests/mdf_corpus.py --record`` regenerates it);
``test_recording_is_current`` re-runs the engine on the short protocols and checks that the recording still says
what the engine says.

Documents that use what mdfbridge cannot run (``UNSUPPORTED``) must fail with one clear line naming the construct.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import pytest

import mdfbridge
from mdfbridge.document import load_document_dict
from mdfbridge.errors import UnsupportedError
from mdfbridge.importers.reference import ReferenceRunner
from mdfbridge.program import Program
from tests.mdf_corpus import BY_NAME, PROTOCOLS, TRAJ, Protocol, engine_record, load_recorded

#: Tolerance of every comparison with the engine: |ours - engine| <= ATOL, absolute, element by element.
ATOL = 1e-9

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
    """max |ours - theirs| (the engine's (1,) for a scalar and a scalar for a (1,) compare equal); inf on a size
    mismatch or a non-finite difference."""
    a = np.asarray(ours, dtype=float).reshape(-1)
    b = np.asarray(theirs, dtype=float).reshape(-1)
    if a.size != b.size and not (a.size == 1 or b.size == 1):
        return math.inf
    d = np.abs(a - b)
    if not np.all(np.isfinite(d)):
        return math.inf
    return float(np.max(d)) if d.size else 0.0


def _inputs(p: Protocol, prog: Program, i: int = 0) -> Dict[str, np.ndarray]:
    """The call's initializer as mdfbridge inputs (one trial); an input port with neither shape nor default_value
    gets the engine's value for it, 0 (``np.full(None, 0)``: FN's INPUT), which mdfbridge does not guess."""
    out = {k: np.zeros((1,)) for k, s in prog.inputs.items() if s.shape is None and s.default is None}
    for k, v in (p.call_initializer(i) or {}).items():
        arr = np.asarray(v, dtype=float)
        spec = prog.inputs.get(k) or next((s for s in prog.inputs.values() if s.port == k), None)
        shape = tuple(spec.shape) if spec is not None and spec.shape is not None else arr.shape
        if arr.shape != shape and arr.size == int(np.prod(shape)):
            arr = arr.reshape(shape)
        out[k] = arr[None]
    return out


def load(p: Protocol, call: Optional[int] = None) -> Program:
    """The protocol's document lowered; for a call of a protocol that feeds inputs of other shapes than the
    document declares (ONNX_ab: 0, 1, [1, 2] into a (2, 3) port, which the engine takes as they come), with the
    declared shape of the input ports of that shape set to the call's input shape (mdfbridge refuses an input of
    another shape than its port's, with a one-line error)."""
    if call is None:
        return mdfbridge.load_program(p.file, p.graph)
    doc = copy.deepcopy(load_document_dict(p.file))
    nodes = next(iter(doc.values()))["graphs"][p.graph]["nodes"]
    for k, v in (p.call_initializer(call) or {}).items():
        declared = next(port.get("shape") for nid, n in nodes.items() for pid, port in
                        (n.get("input_ports") or {}).items() if k in (nid, pid))
        for n in nodes.values():
            for port in (n.get("input_ports") or {}).values():
                if port.get("shape") == declared:
                    port["shape"] = list(np.shape(v))
    return mdfbridge.lower(doc, p.graph, source=str(p.file))


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


def _port_keys(prog: Program) -> Dict[str, str]:
    """Program output name -> the "node.port" it is."""
    by_tensor: Dict[str, str] = {}
    for key, tensor in prog.metadata["ports"].items():
        by_tensor.setdefault(tensor, key)
    return {name: name if name in prog.metadata["ports"] else by_tensor[tensor]
            for name, tensor in prog.outputs.items()}


def _first_trial(v: Any) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v[0] if v.ndim and v.shape[0] == 1 else v


def run_mdfbridge(p: Protocol) -> Dict[str, Any]:
    """Run the protocol on the numpy reference: {"node.port" / "node.param": value after the last call} and, for
    the program's outputs over a multi-call protocol, {"node.port" + TRAJ: (calls, ...) values after each call}."""
    dt = p.dt if p.dt is not None else 0.0
    out: Dict[str, Any] = {}
    if p.initializers is not None:  # one call per input (a stateless document): the last one is compared
        prog = load(p, p.calls - 1)
        assert not prog.stateful
        res = ReferenceRunner(prog).run(_inputs(p, prog, p.calls - 1), keep_env=True)
    else:
        prog = load(p)
        res = ReferenceRunner(prog).run(_inputs(p, prog), steps=p.calls, dt=dt, keep_env=True, record=True)
        if p.calls > 1:
            for name, key in _port_keys(prog).items():
                out[key + TRAJ] = np.asarray(res["__trajectory__"][name], dtype=float)[:, 0]
    for k in p.compare:
        out[k] = _read(prog, res["__env__"], k)
    return out


def torch_skip_reason(prog: Program, steps: int) -> Optional[str]:
    """Why the torch backend does not run this program's protocol, or None."""
    if prog.schedule is not None:
        reason = prog.schedule.static_order(steps)
        if reason is not None:
            return f"schedule is not static: {reason}"
    return None


def run_torch(p: Protocol) -> Dict[str, Any]:
    """Run the protocol on the torch backend: {"node.port": value of each program output after the last call}."""
    from mdfbridge.backends import get_backend

    call = p.calls - 1 if p.initializers is not None else None
    prog = load(p, call)
    reason = torch_skip_reason(prog, 1 if call is not None else p.calls)
    if reason is not None:
        pytest.skip(reason)
    dt = p.dt if p.dt is not None else 0.0
    res = get_backend("torch").prepare(prog).run(_inputs(p, prog, call or 0), steps=1 if call is not None
                                                 else p.calls, dt=dt)
    if not prog.outputs:
        pytest.skip("no output ports (the parameters are compared on numpy)")
    return {key: _first_trial(res[name]) for name, key in _port_keys(prog).items()}


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
    theirs = _expected(p)
    ours = run_mdfbridge(p)
    diffs = {k: _close(ours[k], theirs[k]) for k in _compared(p, theirs)}
    assert diffs and max(diffs.values()) <= ATOL, diffs
    for k, traj in ours.items():  # the outputs after each recorded call, not only after the last one
        if k.endswith(TRAJ) and k in theirs:
            rec = theirs[k]
            assert len(traj) == p.calls
            tdiffs = {c: _close(traj[c], v) for c, v in zip(rec["calls"], rec["values"])}
            assert max(tdiffs.values()) <= ATOL, (k, {c: d for c, d in tdiffs.items() if d > ATOL})


@pytest.mark.parametrize("name", [p.name for p in PROTOCOLS if p.name not in UNSUPPORTED])
def test_torch_matches_engine(name: str) -> None:
    """The torch backend (float64) on every protocol whose schedule is static: its outputs against the engine."""
    p = BY_NAME[name]
    theirs = _expected(p)
    ours = run_torch(p)
    diffs = {k: _close(v, theirs[k]) for k, v in ours.items() if k in theirs}
    assert diffs and max(diffs.values()) <= ATOL, diffs


#: Protocols short enough to re-run with the engine on every test run (the long ones take seconds each).
SHORT = [p.name for p in PROTOCOLS if p.calls <= 20]


def test_recording_is_current() -> None:
    """The recorded engine results are what modeci-mdf's engine says now, on the short protocols (regenerate with
    ``python tests/mdf_corpus.py --record``), and every protocol is recorded."""
    pytest.importorskip("modeci_mdf")
    assert sorted(k for k in RECORDED if k != "__meta__") == sorted(p.name for p in PROTOCOLS)
    for name in SHORT:
        rec = RECORDED[name]
        try:
            now = engine_record(name)
        except Exception as exc:  # the engine's own failure: the recording must say it fails
            assert rec["status"] != "ok", f"{name}: recorded as run, the engine now fails: {exc}"
            continue
        assert rec["status"] == "ok", f"{name}: recorded as failing ({rec['status']}), the engine now runs it"
        assert sorted(now) == sorted(rec["values"]), name
        for k, v in now.items():
            r = rec["values"][k]
            if k.endswith(TRAJ):
                assert v["calls"] == r["calls"], (name, k)
                v, r = v["values"], r["values"]
            if isinstance(v, list) and v and isinstance(v[0], list) and len({len(x) for x in v}) > 1:
                v, r = [np.ravel(x) for x in v], [np.ravel(x) for x in r]  # ragged (ONNX_ab's per-call shapes)
                assert all(np.array_equal(a, b) for a, b in zip(v, r)), (name, k)
            else:
                np.testing.assert_array_equal(np.asarray(v, dtype=float), np.asarray(r, dtype=float),
                                              err_msg=f"{name} {k}")


def test_every_protocol_is_accounted_for() -> None:
    """Each protocol either runs against the engine's (or its translation's) results or is an expected
    UnsupportedError; what the engine cannot run is listed in ENGINE_FAILS_USE."""
    for p in PROTOCOLS:
        rec = RECORDED[p.name]
        if p.name in UNSUPPORTED:
            continue
        if rec["status"] != "ok":
            assert p.name in ENGINE_FAILS_USE, f"{p.name}: the engine fails ({rec['status']}) and nothing replaces it"


def test_trajectories_are_compared() -> None:
    """The multi-call protocols compare the outputs after the recorded calls, not only after the last one."""
    p = BY_NAME["States"]
    ours = run_mdfbridge(p)
    traj = {k for k in ours if k.endswith(TRAJ)}
    assert traj and traj <= set(RECORDED["States"]["values"])
    assert len(ours["sine_node.out_port" + TRAJ]) == p.calls
