"""Load an MDF file written by PsyNeuLink back into PsyNeuLink, run it, print the outputs.

Run with the PsyNeuLink venv's python (see README.md), never with mdfbridge's venv:

    /work/pnl-venv/bin/python pnl_run.py MODEL.json INPUTS.json [--graph ID] [--num-trials N]

INPUTS.json is either {node id: [trial, ...]} or an ``<name>.expected.json`` file (its
"inputs" and "num_trials" are used).  Node ids are the MDF node ids (PsyNeuLink names
passed through ``parse_valid_identifier``).  Prints one JSON object on stdout:

    {"graph": ID, "outputs": {output node id: [per-trial value, ...]}, "results": [...]}

PsyNeuLink 0.21 has no ``load_mdf``; the only reader is ``generate_script_from_mdf``, which
turns the MDF into Python source that is exec'd here in a fresh namespace.

The helpers ``node_id``, ``find_node`` and ``per_trial_outputs`` are shared with
generate.py, so that both scripts name inputs and outputs in the same way.
"""
import argparse
import contextlib
import io
import json
import sys
import warnings

import numpy as np


def to_jsonable(x):
    """numpy arrays / ragged PsyNeuLink values -> nested lists of floats."""
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return [to_jsonable(v) for v in x]
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def node_id(node):
    from psyneulink.core.globals.utilities import parse_valid_identifier
    return parse_valid_identifier(node.name)


def find_node(comp, ident):
    """A node of comp (or of a nested composition of it) whose MDF id is ident."""
    import psyneulink as pnl
    for n in comp.nodes:
        if node_id(n) == ident:
            return n
    for n in comp.nodes:
        if isinstance(n, pnl.Composition):
            found = find_node(n, ident)
            if found is not None:
                return found
    return None


def _source_of_cim_port(cim_output_port):
    """The (node, port) that feeds an output_CIM OutputPort, through nested compositions."""
    import psyneulink as pnl
    comp = cim_output_port.owner.composition
    for port, (_ip, op) in comp.output_CIM_ports.items():
        if op is cim_output_port:
            owner = port.owner
            if isinstance(owner, pnl.CompositionInterfaceMechanism):
                return _source_of_cim_port(port)
            return owner, port
    raise KeyError(cim_output_port)


def output_port_sources(comp):
    """[(node, port)] in the order of comp.output_CIM.output_ports (= order in comp.results[t])."""
    return [_source_of_cim_port(op) for op in comp.output_CIM.output_ports]


def per_trial_outputs(comp, results):
    """{output node id: [per-trial value]} from a list of per-trial results (comp.results slice).

    A node with one OutputPort gets that port's value per trial; a node with several gets
    the list of its ports' values per trial (in OutputPort order).
    """
    sources = output_port_sources(comp)
    by_node = {}
    for idx, (node, _port) in enumerate(sources):
        by_node.setdefault(node_id(node), []).append(idx)
    out = {}
    for ident, idxs in by_node.items():
        trials = []
        for trial in results:
            vals = [to_jsonable(trial[i]) for i in idxs]
            trials.append(vals[0] if len(vals) == 1 else vals)
        out[ident] = trials
    return out


def load_mdf_in_pnl(path, graph_id=None):
    """exec(generate_script_from_mdf(path)) in a fresh namespace; return (composition, script)."""
    import psyneulink as pnl
    with open(path) as f:
        text = f.read()
    model = json.loads(text)
    model_body = next(iter(model.values()))
    graph_ids = list(model_body['graphs'])
    if graph_id is None:
        graph_id = graph_ids[0]
    script = pnl.generate_script_from_mdf(text)
    ns = {}
    exec(compile(script, f'<generated from {path}>', 'exec'), ns)
    from psyneulink.core.globals.utilities import parse_valid_identifier
    comp = ns.get(parse_valid_identifier(graph_id))
    if not isinstance(comp, pnl.Composition):
        comps = [v for v in ns.values() if isinstance(v, pnl.Composition)]
        comps = [c for c in comps if node_id(c) == parse_valid_identifier(graph_id)] or comps
        comp = comps[0]
    return comp, script


def run_inputs(comp, inputs, num_trials=None):
    """inputs: {node id: trials}. Returns the per-trial results of this run."""
    pnl_inputs = {}
    for ident, trials in inputs.items():
        node = find_node(comp, ident)
        if node is None:
            raise KeyError(f'no node {ident!r} in {comp.name!r}')
        pnl_inputs[node] = np.asarray(trials, dtype=float) if not isinstance(trials, dict) else trials
    before = len(comp.results)
    kwargs = {}
    if num_trials is not None:
        kwargs['num_trials'] = num_trials
    comp.run(inputs=pnl_inputs, **kwargs)
    return comp.results[before:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('model')
    ap.add_argument('inputs')
    ap.add_argument('--graph', default=None)
    ap.add_argument('--num-trials', type=int, default=None)
    ap.add_argument('--script-out', default=None, help='also write the generated PsyNeuLink script here')
    args = ap.parse_args(argv)

    with open(args.inputs) as f:
        data = json.load(f)
    num_trials = args.num_trials
    if 'inputs' in data and isinstance(data['inputs'], dict):
        num_trials = num_trials or data.get('num_trials')
        data = data['inputs']

    # PsyNeuLink prints and warns a lot; keep stdout for the JSON only.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()) as noise:
        warnings.simplefilter('ignore')
        comp, script = load_mdf_in_pnl(args.model, args.graph)
        if args.script_out:
            with open(args.script_out, 'w') as f:
                f.write(script)
        results = run_inputs(comp, data, num_trials)
        outputs = per_trial_outputs(comp, results)
    sys.stderr.write(noise.getvalue())
    json.dump({'graph': comp.name, 'outputs': outputs, 'results': to_jsonable(results)}, sys.stdout)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
