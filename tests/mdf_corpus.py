"""modeci-mdf's own example documents, and how modeci-mdf's scripts run them (the reference protocol).

The documents under ``tests/data/mdf_corpus`` are copied from the ``examples/MDF`` and ``examples/ONNX`` folders of
ModECI/MDF at commit 073c5ba642cbb675f53ccc681c6dd738f6b1a5f8 (Apache-2.0, LICENSE and README.md there). Only the
JSON documents: each YAML file beside them is the same model written by the same ``to_yaml_file`` call, so the YAML
twins are skipped. ``RNN/IAFs.nmllite.json`` and ``RNN/Simiaf_example.json`` are NeuroMLlite documents (written by
``generate_iaf.py -neuroml``), not MDF, and are not copied.

``PROTOCOLS`` says, per document, what the example script that writes or runs it does with modeci-mdf's engine: the
initializer, how many ``EvaluableGraph.evaluate()`` calls, with which ``time_increment`` (the first call and the later
ones), and which values the script reads. The scripts are not copied; each record names its script (a path in the
ModECI/MDF repository; the versions read are the ones that match the documents' contents). Call counts reproduce the
scripts' float loops (``t = 0; while t <= duration: ...; t += dt``), which are not ``duration / dt + 1``: States runs
20 calls, not 21; RNNs 500, not 501.

``engine_run(protocol)`` runs a protocol with modeci-mdf's engine and returns the values; ``engine_status()`` says for
each protocol whether the engine runs it. ``python tests/mdf_corpus.py`` prints that table (add ``--constructs`` for
the constructs column of the README); ``--record`` runs them all and writes the engine's results to
``tests/data/mdf_corpus/engine_results.json`` (``RECORDED``), which ``tests/test_mdf_corpus.py`` compares against.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CORPUS = Path(__file__).resolve().parent / "data" / "mdf_corpus"

#: Key suffix of a trajectory in ``engine_run``'s result: ``"node.port@traj"`` (see ``engine_run``).
TRAJ = "@traj"


def float_loop_calls(duration: float, dt: float, t: float = 0.0) -> int:
    """How many calls ``t = 0; while t <= duration: <call>; t += dt`` makes (the scripts' loop, float rounding in)."""
    n = 0
    while t <= duration:
        n += 1
        t += dt
    return n


@dataclass(frozen=True)
class Protocol:
    """One document and how its modeci-mdf script runs it.

    ``calls`` evaluate() calls; the first with ``time_increment=first_dt`` (None: no time_increment argument), the
    later ones with ``time_increment=dt``. ``initializer`` is passed to every call (``evaluate(initializer=...)``);
    ``initializers`` (one dict per call) instead, where the script evaluates different inputs in turn.
    ``compare``: the values to compare, as ``"node.port"`` for output ports (those of the output nodes, and any the
    script reads) and ``"node.param"`` for parameters the script reads (``evaluable_parameters[...]``).
    """

    name: str
    path: str  # relative to tests/data/mdf_corpus
    graph: str
    source: str  # the ModECI/MDF script (repo path) this protocol comes from, or "" where none runs it
    calls: int = 1
    first_dt: float | None = None
    dt: float | None = None
    initializer: dict[str, Any] | None = None
    initializers: tuple[dict[str, Any], ...] | None = None
    compare: tuple[str, ...] = ()
    note: str = ""
    params: tuple[str, ...] = field(default=(), repr=False)  # "node.param" entries of compare (filled in below)

    @property
    def file(self) -> Path:
        return CORPUS / self.path

    def time_increments(self) -> list[float | None]:
        return [self.first_dt] + [self.dt] * (self.calls - 1)

    def call_initializer(self, i: int) -> dict[str, Any] | None:
        if self.initializers is not None:
            return self.initializers[i]
        return self.initializer


def _fn_calls() -> int:
    """translation/run_translated_FN_json.py: ``while t <= duration + dt`` with t read, before each call, from the
    translated graph's ``time`` (``time*1 + dt`` per call, starting at 0); duration 0.1, dt 5e-05."""
    duration, dt = 0.1, 5e-05
    t, n, translated_time = 0.0, 0, 0.0
    while t <= duration + dt:
        t = translated_time
        n += 1
        translated_time = translated_time * 1 + dt
    return n


def _translated_states_calls() -> int:
    """translation/run_translated_states_json.py: ``while t <= 2``, t read after each call from the translated
    graph's ``time`` (``time*1 + 0.01`` per call)."""
    t, n = 0.0, 0
    while t <= 2:
        n += 1
        t = t * 1 + 0.01
    return n


_P = Protocol
# what generate_iaf.py reads, in all three of its documents
IAF_COMPARE = ("current_input_node.current_output", "current_input_node.time", "pre.v_output", "pre.spiking",
               "post.v_output", "post.spiking", "post.spiking_output", "syn_post.current_output")

PROTOCOLS: tuple[Protocol, ...] = (
    # examples/MDF/simple.py (-run): one evaluate(), no initializer
    _P("Simple", "MDF/Simple.json", "simple_example", "examples/MDF/simple.py",
       compare=("processing_node.output_1",)),
    # examples/MDF/abcd.py (-run): one evaluate()
    _P("ABCD", "MDF/ABCD.json", "abcd_example", "examples/MDF/abcd.py", compare=("D.out_port",)),
    # examples/MDF/arrays.py (-run): one evaluate()
    _P("Arrays", "MDF/Arrays.json", "array_example", "examples/MDF/arrays.py", compare=("middle_node.output_1",)),
    # examples/MDF/params_funcs.py (-run): one evaluate(); node0 has no output ports: compare its parameters
    _P("ParametersFunctions", "MDF/ParametersFunctions.json", "params_funcs_example", "examples/MDF/params_funcs.py",
       compare=("node0.param_fixed_int", "node0.param_fixed_float", "node0.param_array_list",
                "node0.param_expression", "node0.param_stateful", "node0.param_function", "node0.param_time_deriv"),
       note="no output ports; parameters compared"),
    # examples/MDF/states.py (-run): dt 0.1, duration 2, first call without time_increment; reads sine_node.out_port
    _P("States", "MDF/States.json", "state_example", "examples/MDF/states.py",
       calls=float_loop_calls(2, 0.1), first_dt=None, dt=0.1, compare=("sine_node.out_port", "counter_node.out_port")),
    # examples/MDF/newton.py (-run): dt 0.1, duration 100, first call without time_increment; reads cool_node.out_port
    _P("NewtonCoolingModel", "MDF/NewtonCoolingModel.json", "cooling_process", "examples/MDF/newton.py",
       calls=float_loop_calls(100, 0.1), first_dt=None, dt=0.1, compare=("cool_node.out_port", "cool_node.out_port2")),
    # examples/MDF/switched_rlc.py (-run, run_simulation): dt 0.001, duration 2, first call without time_increment;
    # reads V.i_L_out and the parameters i_R, i_C, Vs, V
    _P("SwitchedRLC_Circuit", "MDF/SwitchedRLC_Circuit.json", "SwitchedRLC_Circuit", "examples/MDF/switched_rlc.py",
       calls=float_loop_calls(2, 0.001), first_dt=None, dt=0.001,
       compare=("V.V_out", "V.i_L_out", "V.i_R", "V.i_C", "V.Vs", "V.V")),
    # examples/MDF/abc_conditions.py writes the document but does not run it: one evaluate() (the scheduler's
    # termination condition decides how many passes run)
    _P("abc_conditions", "MDF/abc_conditions.json", "abc_conditions_example", "examples/MDF/abc_conditions.py",
       compare=("B.output_1", "C.output_1", "A.count_A", "B.count_B", "C.count_C"),
       note="script does not run it; one evaluate(); the outputs are the (unfed) input ports, the counts say more"),
    # examples/MDF/conditions/composite_condition_example.py (-run): one evaluate()
    _P("Composite_mdf_condition", "MDF/conditions/Composite_mdf_condition.json", "Composite_mdf_condition_example",
       "examples/MDF/conditions/composite_condition_example.py",
       compare=("C.output_1", "A.param_A", "B.param_B", "C.param_C")),
    # examples/MDF/conditions/everyNCalls.py (-run): one evaluate()
    _P("everyncalls_condition", "MDF/conditions/everyncalls_condition.json", "everyncalls_example",
       "examples/MDF/conditions/everyNCalls.py", compare=("C.output_1", "A.param_A", "B.param_B", "C.param_C")),
    # examples/MDF/conditions/threshold.py (-run): one evaluate(); prints A.output_1
    _P("threshold_condition", "MDF/conditions/threshold_condition.json", "threshold_example",
       "examples/MDF/conditions/threshold.py", compare=("A.output_1", "A.param_A")),
    # examples/MDF/conditions/timeInterval.py (-run): one evaluate(); prints A, B, C output_1
    _P("timeinterval_condition", "MDF/conditions/timeinterval_condition.json", "timeinterval_example",
       "examples/MDF/conditions/timeInterval.py", compare=("A.output_1", "B.output_1", "C.output_1")),
    # examples/MDF/RNN/generate_iaf.py (-run; regenerate.sh): dt 0.1, duration 100 (t_ext = 0.0), first call without
    # time_increment; reads current_input_node.current_output and .time, pre/post v_output and spiking
    _P("IAFs", "MDF/RNN/IAFs.json", "iaf_example", "examples/MDF/RNN/generate_iaf.py",
       calls=float_loop_calls(100, 0.1), first_dt=None, dt=0.1,
       compare=IAF_COMPARE),
    # examples/MDF/RNN/generate_iaf.py -net -run: as IAFs (8 cells)
    _P("IAF_net", "MDF/RNN/IAF_net.json", "iaf_example", "examples/MDF/RNN/generate_iaf.py (-net)",
       calls=float_loop_calls(100, 0.1), first_dt=None, dt=0.1,
       compare=IAF_COMPARE),
    # examples/MDF/RNN/generate_iaf.py -net2 -run: as IAFs (8 cells, staggered pulses)
    _P("IAF_net2", "MDF/RNN/IAF_net2.json", "iaf_example", "examples/MDF/RNN/generate_iaf.py (-net2)",
       calls=float_loop_calls(100, 0.1), first_dt=None, dt=0.1,
       compare=IAF_COMPARE),
    # examples/MDF/RNN/generate_rnn.py (-run): dt 0.1, duration 50, first call without time_increment; reads
    # input_node.out_port, rnn_node.out_port_x/out_port_r, readout_node.z
    _P("RNNs", "MDF/RNN/RNNs.json", "rnn_example", "examples/MDF/RNN/generate_rnn.py",
       calls=float_loop_calls(50, 0.1), first_dt=None, dt=0.1,
       compare=("input_node.out_port", "rnn_node.out_port_x", "rnn_node.out_port_r", "readout_node.z")),
    # examples/MDF/translation/run_translated_FN_json.py (-run) runs FN.mdf.json as ``eg_old``: first call without
    # time_increment, later ones dt 5e-05, while the translated graph's time <= 0.1 + dt; reads FNpop_0's V and W
    _P("FN", "MDF/FN.mdf.json", "FN", "examples/MDF/translation/run_translated_FN_json.py",
       calls=_fn_calls(), first_dt=None, dt=5e-05, compare=("FNpop_0.OUTPUT", "FNpop_0.V", "FNpop_0.W")),
    # examples/MDF/translation/run_translated_Simple_json.py (-run): one evaluate() of the translated graph
    _P("Translated_Simple", "MDF/translation/Translated_Simple.json", "simple_example",
       "examples/MDF/translation/run_translated_Simple_json.py", compare=("processing_node.output_1",)),
    # examples/MDF/translation/run_translated_ABCD_json.py (-run): one evaluate()
    _P("Translated_ABCD", "MDF/translation/Translated_ABCD.json", "abcd_example",
       "examples/MDF/translation/run_translated_ABCD_json.py", compare=("D.output_1",)),
    # examples/MDF/translation/run_translated_Arrays_json.py (-run): one evaluate()
    _P("Translated_Arrays", "MDF/translation/Translated_Arrays.json", "array_example",
       "examples/MDF/translation/run_translated_Arrays_json.py", compare=("middle_node.output_1",)),
    # examples/MDF/translation/run_translated_abc_conditions_json.py (-run): one evaluate(); prints C.output_1
    _P("Translated_abc_conditions", "MDF/translation/Translated_abc_conditions.json", "abc_conditions_example",
       "examples/MDF/translation/run_translated_abc_conditions_json.py",
       compare=("B.output_1", "C.output_1", "A.count_A", "B.count_B", "C.count_C")),
    # examples/MDF/translation/run_translated_states_json.py (-run): evaluate() with no time_increment (dt 0.01 is a
    # parameter of the translated graph) while its time <= 2; reads sine_node.out_port and its time
    _P("Translated_States", "MDF/translation/Translated_States.json", "stateful_parameters_example",
       "examples/MDF/translation/run_translated_states_json.py", calls=_translated_states_calls(), first_dt=None,
       dt=None, compare=("sine_node.out_port", "sine_node.time", "counter_node.out_port")),
    # examples/MDF/translation/run_translated_FN_json.py (-run): evaluate() with no time_increment (dt 5e-05 is a
    # parameter of the translated graph), as many calls as FN; reads FNpop_0's V, W, time
    _P("Translated_FN", "MDF/translation/Translated_FN.mdf.json", "FN",
       "examples/MDF/translation/run_translated_FN_json.py", calls=_fn_calls(), first_dt=None, dt=None,
       compare=("FNpop_0.OUTPUT", "FNpop_0.V", "FNpop_0.W", "FNpop_0.time")),
    # examples/ONNX/simple_ab.py (-run): three evaluate(initializer={"input": t}) for t in 0, 1, [1, 2]; prints the
    # output of the Mul node (named Mul_3 in older exports, /B/Mul in this one). As floats here: the script's int 0
    # makes onnxruntime refuse the Add (int64 input + float B: "Conflicted constraint 'T'").
    _P("ONNX_ab", "ONNX/ab.json", "main_graph", "examples/ONNX/simple_ab.py", calls=3,
       initializers=({"input": 0.0}, {"input": 1.0}, {"input": [1.0, 2.0]}), compare=("/B/Mul._4",),
       note="one call per test input, not a time series; inputs as floats (the script's ints fail in onnxruntime)"),
    # examples/ONNX/simple_abc.py only converts (no run): one evaluate() with its export inputs, zeros(2, 3) and
    # loop count 5
    _P("ONNX_abc", "ONNX/abc.json", "main_graph", "examples/ONNX/simple_abc.py",
       initializer={"input": np.zeros((2, 3)), "B_loop_count": 5}, compare=("/C/Mul._13",),
       note="script does not run it; one evaluate() with the export inputs"),
    # examples/ONNX/simple_abcd.py only converts (no run): one evaluate() with its export input, ones((1, 1))
    _P("ONNX_abcd", "ONNX/abcd.json", "main_graph", "examples/ONNX/simple_abcd.py",
       initializer={"input": np.ones((1, 1))}, compare=("/C/Add.c", "/D/Add.d"),
       note="script does not run it; one evaluate() with the export input"),
    # examples/ONNX/abc_basic.py only converts (convert_file, no run): one evaluate() with its export input zeros(2, 3)
    _P("ONNX_abc_basic", "ONNX/abc_basic-mdf.json", "main_graph", "examples/ONNX/abc_basic.py",
       initializer={"input": np.zeros((2, 3))}, compare=("/C/Cos._3",),
       note="script does not run it; one evaluate() with the export input"),
)
del _P


def _load_doc(p: Protocol) -> dict[str, Any]:
    with open(p.file) as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _graph_dict(p: Protocol) -> dict[str, Any]:
    model = next(iter(_load_doc(p).values()))
    return model["graphs"][p.graph]  # type: ignore[no-any-return]


def _fill_params() -> tuple[Protocol, ...]:
    """Split each protocol's compare entries into output ports and parameters (checked against the document)."""
    out = []
    for p in PROTOCOLS:
        nodes = _graph_dict(p)["nodes"]
        params = []
        for key in p.compare:
            node, _, name = key.partition(".")
            n = nodes[node]
            if name in (n.get("output_ports") or {}):
                continue
            if name in (n.get("parameters") or {}) or name in (n.get("states") or {}):
                params.append(key)
            else:
                raise KeyError(f"{p.name}: {key} is neither an output port nor a parameter of {node}")
        out.append(Protocol(**{**p.__dict__, "params": tuple(params)}))
    return tuple(out)


PROTOCOLS = _fill_params()
BY_NAME: dict[str, Protocol] = {p.name: p for p in PROTOCOLS}


def _value(v: Any) -> np.ndarray:
    return np.array(v, dtype=float) if not isinstance(v, np.ndarray) else v.copy()


def engine_run(protocol: Protocol | str) -> dict[str, np.ndarray]:
    """Run ``protocol`` with modeci-mdf's engine; return the values after the last call (and the trajectories).

    Keys:
      ``"node.port"``: every output port of every node of the graph, its ``curr_value`` after the last call;
      ``"node.param"``: the parameters named in ``protocol.compare``, after the last call;
      ``"node.port@traj"`` / ``"node.param@traj"`` (multi-call protocols only, ``TRAJ`` suffix): for every
      output port and compared parameter, the values after each call, stacked: shape ``(calls, *value_shape)``.
      Where the per-call values differ in shape (ONNX_ab evaluates inputs of different shapes in turn), a
      1-D object array of the per-call arrays.
    The engine's prints are suppressed (stdout is redirected while it loads and runs).
    """
    p = BY_NAME[protocol] if isinstance(protocol, str) else protocol
    from modeci_mdf.execution_engine import EvaluableGraph
    from modeci_mdf.utils import load_mdf

    with contextlib.redirect_stdout(io.StringIO()):
        model = load_mdf(str(p.file))
        graph = next(g for g in model.graphs if g.id == p.graph)
        eg = EvaluableGraph(graph, verbose=False)
        ports = [(n.id, op.id) for n in graph.nodes for op in n.output_ports]
        params = [tuple(k.split(".", 1)) for k in p.params]
        traj: dict[str, list[np.ndarray]] = {}
        for i, dt in enumerate(p.time_increments()):
            kwargs: dict[str, Any] = {}
            init = p.call_initializer(i)
            if init is not None:
                kwargs["initializer"] = init
            if dt is not None:
                kwargs["time_increment"] = dt
            eg.evaluate(**kwargs)
            for node, port in ports:
                traj.setdefault(f"{node}.{port}", []).append(
                    _value(eg.enodes[node].evaluable_outputs[port].curr_value))
            for node, par in params:
                traj.setdefault(f"{node}.{par}", []).append(
                    _value(eg.enodes[node].evaluable_parameters[par].curr_value))
    result: dict[str, np.ndarray] = {k: v[-1] for k, v in traj.items()}
    if p.calls > 1:
        for k, v in traj.items():
            if len({a.shape for a in v}) == 1:
                result[k + TRAJ] = np.stack(v)
            else:
                obj = np.empty(len(v), dtype=object)
                obj[:] = v
                result[k + TRAJ] = obj
    return result


def _status_one(name: str) -> tuple[bool, str, float]:
    t0 = time.perf_counter()
    try:
        engine_run(name)
        ok, err = True, ""
    except Exception as e:  # the table records whatever the engine raises
        msg = f"{type(e).__name__}: {e}"
        if isinstance(e, SyntaxError) and e.text:
            msg += f" in {e.text.strip()!r}"
        lines = [ln for ln in msg.splitlines() if ln.strip()]
        ok, err = False, lines[-1][:160] if lines else type(e).__name__
    return ok, err, time.perf_counter() - t0


def engine_status(
    protocols: tuple[Protocol, ...] = PROTOCOLS, jobs: int | None = None
) -> dict[str, tuple[bool, str, float]]:
    """For each protocol: (engine runs it, the error's last line or "", seconds its run took).

    The protocols run in ``jobs`` worker processes (default: one per CPU, at most 8; 1: in this process, in turn),
    longest first: in turn they take ~45 s on one core, most of it the three IAF documents (1001 calls at 7-12 ms).
    """
    names = [p.name for p in protocols]
    jobs = min(8, os.cpu_count() or 1, len(names)) if jobs is None else jobs
    if jobs <= 1:
        return {n: _status_one(n) for n in names}
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs) as ex:
        # longest first, so that the long runs start at once
        order = sorted(names, key=lambda n: -BY_NAME[n].calls)
        results = dict(zip(order, ex.map(_status_one, order)))
    return {n: results[n] for n in names}


# ---------------------------------------------------------------------------------------------------------------
# Constructs: which MDF features each document uses (the README table's last column)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _cond_types(c: Any, out: list[str]) -> None:
    if isinstance(c, dict) and "type" in c:
        out.append(c["type"])
        for k in ("kwargs", "args"):
            for v in (c.get(k) or {}).values():
                if isinstance(v, list):
                    for x in v:
                        _cond_types(x, out)
                else:
                    _cond_types(v, out)


def constructs(p: Protocol) -> list[str]:
    """A short list of the MDF constructs the document uses (beyond plain parameters, functions and edges)."""
    doc = _load_doc(p)
    (mid, model), = doc.items()
    g = model["graphs"][p.graph]
    found: list[str] = []
    ids = [mid, p.graph]
    sched: list[str] = []
    conds = g.get("conditions") or {}
    for c in (conds.get("node_specific") or {}).values():
        _cond_types(c, sched)
    if sched:
        found.append("sched: " + "/".join(sorted(set(sched))))
    for scale, c in (conds.get("termination") or {}).items():
        t: list[str] = []
        _cond_types(c, t)
        found.append(f"term[{scale}]: " + "/".join(dict.fromkeys(t)))
    all_conds = [*(conds.get("node_specific") or {}).values(), *(conds.get("termination") or {}).values()]
    if any("args" in c for c in all_conds):
        found.append("conditions use 'args' (not 'kwargs')")
    if "notes" in g:
        found.append("graph notes")
    pcond = 0
    onnx: set[str] = set()
    mdf_fns: set[str] = set()
    stateful = set()
    nested = False
    for nid, n in g["nodes"].items():
        ids.append(nid)
        ids += list((n.get("input_ports") or {}).keys()) + list((n.get("output_ports") or {}).keys())
        if any(isinstance(ip.get("shape"), str) for ip in (n.get("input_ports") or {}).values()):
            stateful.add("input shape as a string '(1,)' (v0.3)")
        if "notes" in n and "node notes" not in found:
            found.append("node notes")
        if n.get("states"):
            stateful.add("states (v0.1 form)")
        for k in ("parameters", "functions"):
            for pid, par in (n.get(k) or {}).items():
                ids.append(pid)
                if not isinstance(par, dict):
                    continue
                pcond += len(par.get("conditions") or [])
                f = par.get("function")
                names = list(f.keys()) if isinstance(f, dict) else [f] if isinstance(f, str) else []
                onnx |= {x for x in names if x.startswith("onnx::")}
                mdf_fns |= {x for x in names if not x.startswith("onnx::")}
                if "time_derivative" in par:
                    stateful.add("time_derivative")
                elif isinstance(par.get("value"), str) and re.search(rf"\b{re.escape(pid)}\b", par["value"]):
                    stateful.add("self-referencing value")
                if isinstance(par.get("value"), dict) and any(str(x).startswith("graph_") for x in par["value"]):
                    nested = True
                if isinstance(f, dict) and k == "functions":
                    stateful.add("function: {name: args} form")
    found += sorted(stateful)
    if pcond:
        found.append(f"parameter conditions ({pcond})")
    if mdf_fns:
        found.append("fn: " + "/".join(sorted(mdf_fns)))
    if onnx:
        found.append(" ".join(sorted(onnx)))
    weights = [e.get("parameters", {}).get("weight") for e in (g.get("edges") or {}).values()]
    if any(isinstance(w, list) for w in weights):
        found.append("array edge weight (elementwise)")
    if nested:
        found.append("nested graph (onnx::Loop body)")
    bad = sorted({i for i in ids if not _IDENT.match(i)})
    if bad:
        found.append("non-identifier ids: " + ", ".join(repr(b) for b in bad[:4]) + (" ..." if len(bad) > 4 else ""))
    under = sorted({i for i in ids if i.startswith("_")})
    if under:
        found.append("'_'-prefixed ids")
    return found


def _protocol_text(p: Protocol) -> str:
    if p.calls == 1:
        s = "1 call"
    else:
        first = "no dt" if p.first_dt is None else f"dt {p.first_dt}"
        later = "no dt" if p.dt is None else f"dt {p.dt}"
        s = f"{p.calls} calls: first {first}, then {later}" if first != later else f"{p.calls} calls, {later}"
    if p.initializer is not None or p.initializers is not None:
        s += ", initializer"
    return s


#: The engine's results, recorded by ``python tests/mdf_corpus.py --record`` (see ``record_engine``).
RECORDED = CORPUS / "engine_results.json"

#: At most this many calls of each trajectory are recorded (evenly spaced, the last one always in).
TRAJ_SAMPLES = 40


def traj_calls(calls: int, samples: int = TRAJ_SAMPLES) -> list[int]:
    """The call indices (0-based) whose values a recorded trajectory keeps."""
    if calls <= samples:
        return list(range(calls))
    return sorted({int(round(i * (calls - 1) / (samples - 1))) for i in range(samples)})


def _jsonable(v: np.ndarray) -> Any:
    if v.dtype == object:
        return [np.asarray(x, dtype=float).tolist() for x in v]
    return np.asarray(v, dtype=float).tolist()


def engine_record(protocol: Protocol | str) -> dict[str, Any]:
    """``engine_run``'s result in the recorded (JSON) form: final values, and sampled trajectories."""
    p = BY_NAME[protocol] if isinstance(protocol, str) else protocol
    res = engine_run(p)
    keep = traj_calls(p.calls)
    out: dict[str, Any] = {}
    for k, v in res.items():
        if k.endswith(TRAJ):
            out[k] = {"calls": keep, "values": [_jsonable(np.asarray(v[i])) if v.dtype == object
                                                else np.asarray(v[i]).tolist() for i in keep]}
        else:
            out[k] = _jsonable(v)
    return out


def record_engine(path: Path = RECORDED) -> dict[str, Any]:
    """Run every protocol with the engine; write ``{name: {"status": "ok"|error line, "values": ...}}``."""
    from concurrent.futures import ProcessPoolExecutor

    names = sorted((p.name for p in PROTOCOLS), key=lambda n: -BY_NAME[n].calls)
    with ProcessPoolExecutor(min(8, os.cpu_count() or 1)) as ex:
        done = dict(zip(names, ex.map(_record_one, names)))
    import modeci_mdf

    data: dict[str, Any] = {"__meta__": {"modeci_mdf": modeci_mdf.__version__, "traj_samples": TRAJ_SAMPLES}}
    data.update({p.name: done[p.name] for p in PROTOCOLS})
    path.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
    return data


def _record_one(name: str) -> dict[str, Any]:
    try:
        return {"status": "ok", "values": engine_record(name)}
    except Exception:  # the recording keeps whatever the engine raises, as engine_status says it
        return {"status": _status_one(name)[1], "values": None}


def load_recorded(path: Path = RECORDED) -> dict[str, Any]:
    """The recorded engine results (``record_engine``'s file)."""
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def main(argv: list[str]) -> int:
    if "--record" in argv:
        data = record_engine()
        print(f"wrote {RECORDED}: {sum(v['status'] == 'ok' for k, v in data.items() if k != '__meta__')} of "
              f"{len(data) - 1} protocols run by the engine", file=sys.stderr)
        return 0
    status = engine_status()
    rows = []
    for p in PROTOCOLS:
        ok, err, secs = status[p.name]
        row = f"| {p.path} | {'yes' if ok else 'no: ' + err.replace('|', '/')} | {_protocol_text(p)} | {p.source} |"
        if "--constructs" in argv:
            row += " " + "; ".join(constructs(p)).replace("|", "/") + " |"
        rows.append((row, secs))
    head = "| document | engine runs? | evaluate calls | source script |"
    if "--constructs" in argv:
        head += " constructs |"
    print(head)
    print("|" + "---|" * head.count(" |"))
    for row, secs in rows:
        print(row + (f" {secs:.2f}s" if "--times" in argv else ""))
    print(f"\n{sum(ok for ok, _, _ in status.values())}/{len(status)} run; "
          f"{sum(s for _, _, s in status.values()):.1f}s in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
