"""Independent oracles the tests compare against (modeci-mdf's own execution engine)."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from typing import Any, Dict, List, Mapping, Optional

import numpy as np


def as_model(doc: Any) -> Any:
    """A modeci-mdf Model from a Model or a serialised dict."""
    if not isinstance(doc, dict):
        return doc
    import os
    import tempfile

    from modeci_mdf.utils import load_mdf_json

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(doc, f)
    try:
        return load_mdf_json(f.name)
    finally:
        os.unlink(f.name)


def modeci_outputs(doc: Any, trial_inputs: Optional[Mapping[str, np.ndarray]] = None, *, steps: int = 1,
                   dt: Optional[float] = None, outputs: Optional[Dict[str, tuple]] = None,
                   sequence: bool = False) -> Dict[str, np.ndarray]:
    """Evaluate with modeci-mdf's EvaluableGraph, one fresh graph per trial (inputs by port id: (trials, ...)).

    Returns output name -> (trials, ...) (or (steps, trials, ...) when steps > 1); `outputs` maps output names
    to (node id, port id); by default every output port of nodes that send no edge.
    """
    from modeci_mdf.execution_engine import EvaluableGraph

    model = as_model(doc)
    graph = model.graphs[0]
    if outputs is None:
        senders = {e.sender for e in graph.edges}
        outputs = {}
        for n in graph.nodes:
            if n.id not in senders:
                for p in n.output_ports:
                    outputs[n.id if len(n.output_ports) == 1 else f"{n.id}.{p.id}"] = (n.id, p.id)
    trial_inputs = dict(trial_inputs or {})
    n_trials = len(next(iter(trial_inputs.values()))) if trial_inputs else 1
    if sequence:  # inputs (trials, time, ...): one evaluation per time step, fed that step's input
        steps = next(iter(trial_inputs.values())).shape[1]
    per_trial: List[Dict[str, List[np.ndarray]]] = []
    for t in range(n_trials):
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            eg = EvaluableGraph(graph, verbose=False)
            hist: Dict[str, List[np.ndarray]] = {k: [] for k in outputs}
            for step in range(steps):
                init = {k: np.asarray(v[t, step] if sequence else v[t], dtype=float) for k, v in trial_inputs.items()}
                # modeci-mdf's scripts evaluate once without time_increment to initialise, then step by dt
                eg.evaluate(initializer=init or None, time_increment=dt if step else None)
                for k, (nid, pid) in outputs.items():
                    hist[k].append(np.asarray(eg.enodes[nid].evaluable_outputs[pid].curr_value, dtype=float))
        per_trial.append(hist)
    out = {}
    for k in outputs:
        arr = np.stack([np.stack(h[k]) for h in per_trial], axis=1)  # (steps, trials, ...)
        out[k] = np.swapaxes(arr, 0, 1) if sequence else arr[-1] if steps == 1 else arr
    return out


def modeci_values(doc: Any, trial_inputs: Optional[Mapping[str, np.ndarray]] = None, *, steps: int = 1,
                  dt: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Every parameter and output port value ("node.id" -> (trials, ...)) after `steps` evaluations by modeci-mdf's
    EvaluableGraph (one fresh graph per trial of `trial_inputs`, by input port id), the first without a time
    increment, as modeci-mdf's scripts run them. Values the engine never computed (a node that never ran) are left
    out."""
    from modeci_mdf.execution_engine import EvaluableGraph

    graph = as_model(doc).graphs[0]
    trial_inputs = dict(trial_inputs or {})
    n_trials = len(next(iter(trial_inputs.values()))) if trial_inputs else 1
    rows: List[Dict[str, np.ndarray]] = []
    for t in range(n_trials):
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            eg = EvaluableGraph(graph, verbose=False)
            for step in range(steps):
                init = {k: np.asarray(v[t], dtype=float) for k, v in trial_inputs.items()}
                eg.evaluate(initializer=init or None, time_increment=dt if step else None)
        row = {}
        for n in graph.nodes:
            en = eg.enodes[n.id]
            for kind in (en.evaluable_parameters, en.evaluable_outputs):
                for pid, ev in kind.items():
                    if ev.curr_value is not None:
                        row[f"{n.id}.{pid}"] = np.asarray(ev.curr_value, dtype=float)
        rows.append(row)
    keys = set.intersection(*(set(r) for r in rows))
    return {k: np.stack([r[k] for r in rows]) for k in sorted(keys)}
