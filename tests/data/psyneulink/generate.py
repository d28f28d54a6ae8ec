"""Regenerate the PsyNeuLink MDF fixtures of this folder.

Runs only in the PsyNeuLink venv (see README.md):

    /work/pnl-venv/bin/python tests/data/psyneulink/generate.py [NAME ...]

For each fixture it builds a Composition with fixed, non-default parameters and fixed
(seeded, rounded to 3 decimals) weights, runs it in PsyNeuLink and writes

    <name>.json           pnl.get_mdf_serialized(comp, fmt='json')  (simple edge format)
    <name>.expected.json  {"inputs": {MDF input node id: trials}, "num_trials": N,
                           "outputs": {MDF output node id: per-trial values},
                           "results": comp.results of that run (per trial, per output port),
                           "notes": "...", ...fixture specific extras}

and generation_log.json (which fixtures were written, which failed and why).
"""
import json
import os
import re
import subprocess
import sys
import traceback
import warnings

import numpy as np
import psyneulink as pnl
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pnl_run import node_id, per_trial_outputs, to_jsonable  # noqa: E402

warnings.simplefilter('ignore')

VERSIONS = {'psyneulink': pnl.__version__, 'torch': torch.__version__, 'numpy': np.__version__}


def mat(rng, rows, cols, lo=-1.0, hi=1.0):
    return np.round(rng.uniform(lo, hi, (rows, cols)), 3)


def export(comp, name):
    text = pnl.get_mdf_serialized(comp, fmt='json')
    with open(os.path.join(HERE, f'{name}.json'), 'w') as f:
        f.write(text)
        f.write('\n')
    return json.loads(text)


def mdf_node_ids(model):
    ids = set()

    def walk(graph):
        for nid, node in graph.get('nodes', {}).items():
            ids.add(nid)
            if 'nodes' in node:  # a nested graph
                walk(node)
    for body in model.values():
        for g in body['graphs'].values():
            walk(g)
    return ids


def run_and_record(comp, inputs, num_trials=None, **run_kwargs):
    """inputs: {node: trials}. Returns (jsonable inputs by id, outputs by id, results)."""
    before = len(comp.results)
    kw = dict(run_kwargs)
    if num_trials is not None:
        kw['num_trials'] = num_trials
    comp.run(inputs=inputs, **kw)
    results = comp.results[before:]
    return ({node_id(n): to_jsonable(np.asarray(v)) for n, v in inputs.items()},
            per_trial_outputs(comp, results), to_jsonable(results))


def write_expected(name, model, inputs, outputs, results, num_trials, notes, **extra):
    ids = mdf_node_ids(model)
    missing = [i for i in list(inputs) + list(outputs or {}) if i not in ids]
    if missing:
        notes += f' WARNING: ids not found among the MDF node ids: {missing}.'
    doc = {'inputs': inputs, 'num_trials': num_trials, 'outputs': outputs, 'results': results,
           'notes': notes, 'versions': VERSIONS}
    doc.update(extra)
    with open(os.path.join(HERE, f'{name}.expected.json'), 'w') as f:
        json.dump(doc, f, indent=1)
        f.write('\n')


def projection_matrices(comp, context=None):
    out = {}
    for p in comp.projections:
        if isinstance(p, pnl.MappingProjection) and not isinstance(p.sender.owner, pnl.CompositionInterfaceMechanism) \
                and not isinstance(p.receiver.owner, pnl.CompositionInterfaceMechanism):
            try:
                m = p.parameters.matrix.get(context if context is not None else comp)
            except Exception:  # not run yet in that context: the default (construction-time) value
                m = p.parameters.matrix.get()
            out[p.name] = to_jsonable(np.asarray(m))
    return out


# ----------------------------------------------------------------------------------------------
# a. transfer functions

def transfer_functions():
    rng = np.random.default_rng(1)
    inp = pnl.ProcessingMechanism(name='inp', input_shapes=3)
    mechs = [
        pnl.TransferMechanism(name='linear', input_shapes=3,
                              function=pnl.Linear(slope=1.5, intercept=-0.2)),
        pnl.TransferMechanism(name='linear_scaled', input_shapes=3,
                              function=pnl.Linear(slope=0.7, intercept=0.3, scale=1.25, offset=-0.4)),
        pnl.TransferMechanism(name='logistic', input_shapes=3,
                              function=pnl.Logistic(gain=1.7, bias=0.3, x_0=0.4, offset=0.1, scale=1.2)),
        pnl.TransferMechanism(name='logistic_plain', input_shapes=3,
                              function=pnl.Logistic(gain=1.7, bias=0.3, x_0=0.4)),
        pnl.TransferMechanism(name='tanh', input_shapes=3,
                              function=pnl.Tanh(gain=0.8, bias=-0.2, x_0=0.1, offset=0.05, scale=1.3)),
        pnl.TransferMechanism(name='relu', input_shapes=3,
                              function=pnl.ReLU(gain=1.4, bias=0.1, leak=0.05)),
        pnl.TransferMechanism(name='softmax', input_shapes=3,
                              function=pnl.SoftMax(gain=2.0)),
        pnl.TransferMechanism(name='exponential', input_shapes=3,
                              function=pnl.Exponential(rate=0.7, bias=-0.3, scale=0.9, offset=0.2)),
        pnl.TransferMechanism(name='gaussian', input_shapes=3,
                              function=pnl.Gaussian(standard_deviation=1.5, bias=0.2, scale=1.1, offset=-0.1)),
        pnl.ProcessingMechanism(name='pm_linear', input_shapes=3,
                                function=pnl.Linear(slope=-0.5, intercept=0.25)),
    ]
    comp = pnl.Composition(name='transfer_functions')
    comp.add_node(inp)
    matrices = {}
    for m in mechs:
        w = mat(rng, 3, 3)
        pname = f'inp_to_{m.name}'
        matrices[pname] = w.tolist()
        comp.add_linear_processing_pathway([inp, pnl.MappingProjection(name=pname, matrix=w), m])
    model = export(comp, 'transfer_functions')
    trials = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [-2.0, 0.0, 1.0]]
    ins, outs, res = run_and_record(comp, {inp: trials})
    write_expected('transfer_functions', model, ins, outs, res, len(trials),
                   'One input ProcessingMechanism (Linear default) feeding, through MappingProjections with fixed '
                   'matrices (sender x receiver, y = x @ M), one mechanism per transfer function. '
                   'PNL formulas: Linear scale*(slope*x+intercept)+offset; Logistic scale/(1+exp(-gain*(x+bias-x_0)))'
                   '+offset; Tanh scale*tanh(gain*(x+bias-x_0)+offset); ReLU max(g*(x-bias), leak*g*(x-bias)) with '
                   'g=gain (scale 1, offset 0); SoftMax exp(gain*x)/sum; Exponential scale*exp(rate*x+bias)+offset; '
                   'Gaussian scale*exp(-(x-bias)^2/(2 sd^2))/(sqrt(2 pi) sd)+offset. '
                   'logistic_plain has scale=1, offset=0 (only case PNL calls MDF-compatible).',
                   matrices=matrices,
                   function_params={
                       'linear': dict(slope=1.5, intercept=-0.2),
                       'linear_scaled': dict(slope=0.7, intercept=0.3, scale=1.25, offset=-0.4),
                       'logistic': dict(gain=1.7, bias=0.3, x_0=0.4, offset=0.1, scale=1.2),
                       'logistic_plain': dict(gain=1.7, bias=0.3, x_0=0.4),
                       'tanh': dict(gain=0.8, bias=-0.2, x_0=0.1, offset=0.05, scale=1.3),
                       'relu': dict(gain=1.4, bias=0.1, leak=0.05),
                       'softmax': dict(gain=2.0),
                       'exponential': dict(rate=0.7, bias=-0.3, scale=0.9, offset=0.2),
                       'gaussian': dict(standard_deviation=1.5, bias=0.2, scale=1.1, offset=-0.1),
                       'pm_linear': dict(slope=-0.5, intercept=0.25)})


# ----------------------------------------------------------------------------------------------
# b. integrators

def integrators():
    inp = pnl.ProcessingMechanism(name='inp', input_shapes=2)
    tm = pnl.TransferMechanism(name='tm_integrating', input_shapes=2, integrator_mode=True, integration_rate=0.3)
    adapt = pnl.IntegratorMechanism(name='adaptive', default_variable=[[0.0, 0.0]],
                                    function=pnl.AdaptiveIntegrator(rate=0.4))
    simple = pnl.IntegratorMechanism(name='simple', default_variable=[[0.0, 0.0]],
                                     function=pnl.SimpleIntegrator(rate=0.5, offset=0.1))
    comp = pnl.Composition(name='integrators')
    w = {'inp_to_tm': [[1.0, 0.5], [-0.5, 1.0]], 'inp_to_adaptive': [[0.8, 0.0], [0.2, 1.2]],
         'inp_to_simple': [[1.0, -0.3], [0.4, 0.9]]}
    comp.add_linear_processing_pathway([inp, pnl.MappingProjection(name='inp_to_tm', matrix=w['inp_to_tm']), tm])
    comp.add_linear_processing_pathway([inp, pnl.MappingProjection(name='inp_to_adaptive',
                                                                   matrix=w['inp_to_adaptive']), adapt])
    comp.add_linear_processing_pathway([inp, pnl.MappingProjection(name='inp_to_simple',
                                                                   matrix=w['inp_to_simple']), simple])
    model = export(comp, 'integrators')
    trials = [[1.0, 0.0], [0.5, 2.0], [-1.0, 1.0], [0.0, 0.0], [2.0, -0.5]]
    ins, outs, res = run_and_record(comp, {inp: trials})
    write_expected('integrators', model, ins, outs, res, len(trials),
                   'State carried across the 5 trials of one run (no reset). '
                   'tm_integrating: TransferMechanism(integrator_mode=True, integration_rate=0.3), '
                   'function Linear; its integrator is AdaptiveIntegrator: v=(1-r)*prev + r*x, prev starts at 0. '
                   'adaptive: IntegratorMechanism(AdaptiveIntegrator(rate=0.4)): v=(1-0.4)*prev+0.4*x. '
                   'simple: IntegratorMechanism(SimpleIntegrator(rate=0.5, offset=0.1)): v=prev+0.5*x+0.1.',
                   matrices=w)


# ----------------------------------------------------------------------------------------------
# c. multiple senders, chain of 3

def multi_sender():
    a = pnl.ProcessingMechanism(name='a', input_shapes=2)
    b = pnl.ProcessingMechanism(name='b', input_shapes=3)
    c = pnl.TransferMechanism(name='c', input_shapes=2, function=pnl.Logistic(gain=1.5, bias=-0.2))
    w = {'a_to_c': [[0.5, -1.0], [1.5, 0.25]], 'b_to_c': [[0.3, 0.7], [-0.6, 0.2], [1.1, -0.4]]}
    comp = pnl.Composition(name='multi_sender')
    comp.add_nodes([a, b, c])
    comp.add_projection(pnl.MappingProjection(name='a_to_c', matrix=w['a_to_c']), sender=a, receiver=c)
    comp.add_projection(pnl.MappingProjection(name='b_to_c', matrix=w['b_to_c']), sender=b, receiver=c)
    model = export(comp, 'multi_sender')
    ins, outs, res = run_and_record(comp, {a: [[1.0, 2.0], [-0.5, 0.5]],
                                           b: [[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]]})
    write_expected('multi_sender', model, ins, outs, res, 2,
                   'Two senders into one InputPort of c: PNL sums the projected values: '
                   'c = logistic(a @ a_to_c + b @ b_to_c).', matrices=w)


def chain3():
    rng = np.random.default_rng(3)
    l1 = pnl.ProcessingMechanism(name='layer1', input_shapes=3)
    l2 = pnl.TransferMechanism(name='layer2', input_shapes=4, function=pnl.Logistic(gain=1.0))
    l3 = pnl.TransferMechanism(name='layer3', input_shapes=2, function=pnl.Tanh(gain=0.5))
    w = {'l1_to_l2': mat(rng, 3, 4), 'l2_to_l3': mat(rng, 4, 2)}
    comp = pnl.Composition(name='chain3')
    comp.add_linear_processing_pathway([l1, pnl.MappingProjection(name='l1_to_l2', matrix=w['l1_to_l2']), l2,
                                        pnl.MappingProjection(name='l2_to_l3', matrix=w['l2_to_l3']), l3])
    model = export(comp, 'chain3')
    ins, outs, res = run_and_record(comp, {l1: [[1.0, 0.5, -0.5], [0.0, 2.0, 1.0]]})
    write_expected('chain3', model, ins, outs, res, 2,
                   'layer1 (identity) -> layer2 logistic -> layer3 tanh(0.5*x).',
                   matrices={k: v.tolist() for k, v in w.items()})


# ----------------------------------------------------------------------------------------------
# d. nested

def nested():
    rng = np.random.default_rng(4)
    i1 = pnl.ProcessingMechanism(name='inner_in', input_shapes=3)
    i2 = pnl.TransferMechanism(name='inner_out', input_shapes=2, function=pnl.Logistic(gain=2.0))
    inner = pnl.Composition(name='inner')
    w = {'inner_proj': mat(rng, 3, 2), 'outer_to_inner': mat(rng, 2, 3), 'inner_to_outer': mat(rng, 2, 2)}
    inner.add_linear_processing_pathway([i1, pnl.MappingProjection(name='inner_proj', matrix=w['inner_proj']), i2])
    o_in = pnl.ProcessingMechanism(name='outer_in', input_shapes=2)
    o_out = pnl.TransferMechanism(name='outer_out', input_shapes=2, function=pnl.Linear(slope=2.0, intercept=1.0))
    outer = pnl.Composition(name='outer')
    outer.add_linear_processing_pathway([o_in, pnl.MappingProjection(name='outer_to_inner', matrix=w['outer_to_inner']),
                                         inner,
                                         pnl.MappingProjection(name='inner_to_outer', matrix=w['inner_to_outer']),
                                         o_out])
    model = export(outer, 'nested')
    ins, outs, res = run_and_record(outer, {o_in: [[1.0, -1.0], [0.5, 2.0]]})
    write_expected('nested', model, ins, outs, res, 2,
                   'outer_in -> (outer_to_inner) -> [inner: inner_in -> inner_proj -> inner_out logistic(gain 2)] '
                   '-> (inner_to_outer) -> outer_out linear(2x+1). PNL 0.21 DROPS the projections outer_to_inner and '
                   'inner_to_outer from the export (they attach to the nested composition\'s CIMs, which '
                   'as_mdf_model skips): the outer graph has no edges. Their matrices are in "matrices" '
                   '(outer_to_inner: outer_in -> inner_in, inner_to_outer: inner_out -> outer_out).',
                   matrices={k: v.tolist() for k, v in w.items()})


# ----------------------------------------------------------------------------------------------
# e. autodiff

def _autodiff(name, optimizer):
    rng = np.random.default_rng(5)
    x = pnl.ProcessingMechanism(name='ad_in', input_shapes=3)
    h = pnl.ProcessingMechanism(name='ad_hidden', input_shapes=4, function=pnl.Logistic())
    y = pnl.ProcessingMechanism(name='ad_out', input_shapes=2, function=pnl.Logistic())
    w0 = {'in_to_hidden': mat(rng, 3, 4), 'hidden_to_out': mat(rng, 4, 2)}
    comp = pnl.AutodiffComposition(name=name, learning_rate=0.5, optimizer_type=optimizer,
                                   loss_spec=pnl.Loss.MSE)
    comp.add_linear_processing_pathway([x, pnl.MappingProjection(name='in_to_hidden', matrix=w0['in_to_hidden']), h,
                                        pnl.MappingProjection(name='hidden_to_out', matrix=w0['hidden_to_out']), y])
    model = export(comp, name)
    train_x = [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    train_t = [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    ins, outs_before, res_before = run_and_record(comp, {x: train_x})
    epochs = 5
    learn_out = comp.learn(inputs={'inputs': {x: train_x}, 'targets': {y: train_t}, 'epochs': epochs})
    all_trained = projection_matrices(comp)
    trained = {k: all_trained[k] for k in w0}
    learning_projections = sorted(k for k in all_trained if k not in w0)
    _, outs_after, res_after = run_and_record(comp, {x: train_x})
    model_after = export(comp, f'{name}_after_learning')

    # does the post-learning export hold the trained or the initial weights?
    # (dummy node ids are '<projection>_dummy_node', with a '_1' suffix on a second export)
    def edge_matrices(model):
        found = {}
        for body in model.values():
            for g in body['graphs'].values():
                for nid, node in g['nodes'].items():
                    for fn in node.get('functions', {}).values():
                        for k, v in fn.get('args', {}).items():
                            if k == 'B' or k == 'matrix':
                                found[re.sub(r'_dummy_node(_\d+)?$', '', nid)] = v
                    for pid, p in node.get('parameters', {}).items():
                        if pid == 'matrix':
                            found[re.sub(r'_dummy_node(_\d+)?$', '', nid)] = p.get('value')
        return found
    before_m, after_m = edge_matrices(model), edge_matrices(model_after)
    same_as_initial = all(np.allclose(w0[k], after_m[k]) for k in w0)
    same_as_trained = all(np.allclose(trained[k], after_m[k]) for k in w0)
    assert all(np.allclose(w0[k], before_m[k]) for k in w0)
    write_expected(name, model, ins, outs_before, res_before, len(train_x),
                   f'AutodiffComposition(learning_rate=0.5, optimizer_type={optimizer!r}, loss_spec=Loss.MSE); '
                   'ad_hidden/ad_out are ProcessingMechanisms with Logistic() (gain 1, bias 0). '
                   '"outputs"/"results" are run() BEFORE learning (the weights in this export). '
                   'Then learn(inputs={"inputs": {ad_in: training.inputs}, '
                   '"targets": {ad_out: training.targets}, '
                   f'"epochs": {epochs}}}) with PNL defaults otherwise (minibatch_size 1: one optimizer step per '
                   'pattern, patterns in the given order, 4 x 5 = 20 steps). trained_matrices are the matrices '
                   'after learning, outputs_after_learning/results_after_learning are run() on the same inputs '
                   f'after learning. {name}_after_learning.json is the export after learning: '
                   f'its matrices equal the initial ones: {same_as_initial}; '
                   f'equal the trained ones: {same_as_trained}. '
                   'The MDF has no record of learning_rate/optimizer/loss other than what the README says.',
                   initial_matrices={k: v.tolist() for k, v in w0.items()},
                   training={'inputs': {node_id(x): train_x}, 'targets': {node_id(y): train_t}, 'epochs': epochs,
                             'learning_rate': 0.5, 'optimizer_type': optimizer, 'loss_spec': 'MSE',
                             'learn_returned': to_jsonable(learn_out)},
                   trained_matrices=trained,
                   learning_projections_added_by_learn=learning_projections,
                   after_learning_nodes=list(next(iter(next(iter(model_after.values()))['graphs'].values()))['nodes']),
                   outputs_after_learning=outs_after, results_after_learning=res_after,
                   after_learning_export={'file': f'{name}_after_learning.json',
                                          'matrices_equal_initial': same_as_initial,
                                          'matrices_equal_trained': same_as_trained,
                                          'matrices_found': after_m})


def autodiff_sgd():
    _autodiff('autodiff_sgd', 'sgd')


def autodiff_adam():
    _autodiff('autodiff_adam', 'adam')


# ----------------------------------------------------------------------------------------------
# f. GRU

def _gru_build():
    np.random.seed(7)  # GRUComposition draws its initial weights from np.random.uniform
    return pnl.GRUComposition(name='gru', input_size=3, hidden_size=2, bias=True)


GRU_TRIALS = [[1.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-1.0, 2.0, 0.0], [0.0, 0.0, 0.0]]


def gru():
    """As PNL builds it: the export fails (AfterNodes conditions), the numbers are still written."""
    comp = _gru_build()
    weights = projection_matrices(comp)
    export_error = None
    try:
        export(comp, 'gru')
    except Exception as e:
        export_error = f'{type(e).__name__}: {e}'
    ins, outs, res = run_and_record(comp, {comp.input_node: GRU_TRIALS})
    doc_notes = ('GRUComposition(input_size=3, hidden_size=2, bias=True), weights from np.random.seed(7) '
                 '(GRUComposition draws them with np.random.uniform(-sqrt(hidden), sqrt(hidden))). '
                 'Run in Python mode: one GRUCell step per trial, the hidden state carried from trial to '
                 'trial by the recurrent projection HIDDEN_RECURRENT (h0 = 0). weights: every MappingProjection '
                 'matrix (sender x receiver, y = x @ M) by projection name. PyTorch GRU equivalents: '
                 'weight_ih_l0 = [INPUT TO RESET; INPUT TO UPDATE; INPUT TO NEW] transposed, weight_hh_l0 = '
                 '[HIDDEN TO RESET; HIDDEN TO UPDATE; HIDDEN TO NEW] transposed, biases = the BIAS ... matrices '
                 '(1 x hidden, fed by a BIAS node whose value is 1).')
    if export_error:
        doc_notes += (f' PNL 0.21 cannot export this composition: {export_error}. gru.json is therefore NOT '
                      'written by this fixture; see gru_mdf_conditions.json (gru_mdf_conditions fixture).')
    with open(os.path.join(HERE, 'gru.expected.json'), 'w') as f:
        json.dump({'inputs': ins, 'num_trials': len(GRU_TRIALS), 'outputs': outs, 'results': res,
                   'notes': doc_notes, 'versions': VERSIONS, 'export_error': export_error,
                   'weights': weights, 'node_names': {node_id(n): n.name for n in comp.nodes}},
                  f, indent=1)
        f.write('\n')


def _run_with_alarm(comp, inputs, seconds=60):
    import signal

    def on_alarm(signum, frame):
        raise TimeoutError(f'run() did not finish in {seconds} s')
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        return run_and_record(comp, inputs), None
    except TimeoutError as e:
        return None, str(e)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _gru_variant(name, replace):
    comp = _gru_build()
    weights = projection_matrices(comp)
    changed = {}
    for node, cond in list(comp.scheduler.conditions.conditions.items()):
        if type(cond).__name__ == 'AfterNodes':
            deps = list(np.ravel(np.array(cond.nodes, dtype=object)))
            assert len(deps) == 1, deps
            comp.scheduler.remove_condition(cond)
            if replace:
                comp.scheduler.add_condition(node, pnl.AfterNCalls(deps[0], 1))
                changed[node_id(node)] = f'AfterNodes({deps[0].name!r}) -> AfterNCalls({deps[0].name!r}, 1)'
            else:
                changed[node_id(node)] = f'AfterNodes({deps[0].name!r}) removed'
    model = export(comp, name)
    ran, err = _run_with_alarm(comp, {comp.input_node: GRU_TRIALS})
    with open(os.path.join(HERE, 'gru.expected.json')) as f:
        ref = json.load(f)
    if ran is None:
        ins = {node_id(comp.input_node): GRU_TRIALS}
        outs, res, same = None, None, None
        result_note = (f'PNL could NOT run the modified composition: {err} (killed by a SIGALRM); '
                       '"outputs" is null. Use the numbers of gru.expected.json (same weights) instead.')
    else:
        ins, outs, res = ran
        same = all(np.allclose(outs[k], ref['outputs'][k]) for k in outs)
        result_note = f'run() outputs identical to the unmodified GRUComposition (gru.expected.json): {same}.'
    write_expected(name, model, ins, outs, res, len(GRU_TRIALS),
                   'Same GRUComposition as gru.expected.json (same seed, same weights), with the scheduler '
                   f'conditions PNL 0.21 cannot export changed so that it can: {changed}. ' + result_note,
                   changed_conditions=changed, outputs_equal_unmodified_gru=same, run_error=err,
                   reference_outputs_unmodified_gru=ref['outputs'], weights=weights,
                   node_names={node_id(n): n.name for n in comp.nodes})


def gru_mdf_conditions():
    """The GRU with its three AfterNodes conditions replaced by AfterNCalls(X, 1), which MDF can hold."""
    _gru_variant('gru_mdf_conditions', replace=True)


def gru_no_conditions():
    """The GRU with its three AfterNodes conditions removed (PNL default scheduling)."""
    _gru_variant('gru_no_conditions', replace=False)


# ----------------------------------------------------------------------------------------------
# g. conditions

def conditions():
    a = pnl.ProcessingMechanism(name='A', input_shapes=1)
    b = pnl.ProcessingMechanism(name='B', input_shapes=1, function=pnl.Linear(slope=2.0))
    c = pnl.IntegratorMechanism(name='C', default_variable=[[0.0]], function=pnl.SimpleIntegrator(rate=1.0))
    comp = pnl.Composition(name='conditions')
    comp.add_linear_processing_pathway([a, b, c])
    comp.scheduler.add_condition(b, pnl.EveryNCalls(a, 2))
    comp.scheduler.add_condition(c, pnl.AfterNCalls(b, 1))
    comp.scheduler.termination_conds = {pnl.TimeScale.TRIAL: pnl.AfterNCalls(c, 3)}
    model = export(comp, 'conditions')
    trials = [[1.0], [2.0], [-1.0]]
    ins, outs, res = run_and_record(comp, {a: trials})
    counts = {n.name: int(n.parameters.num_executions.get(comp)._get_by_time_scale(pnl.TimeScale.RUN))
              if hasattr(n.parameters.num_executions.get(comp), '_get_by_time_scale') else None
              for n in (a, b, c)}
    write_expected('conditions', model, ins, outs, res, len(trials),
                   'A (identity) -> B (2x) -> C SimpleIntegrator(rate=1): C sums its inputs over every execution '
                   '(state carried across passes and trials). Conditions: B EveryNCalls(A, 2), '
                   'C AfterNCalls(B, 1); trial termination AfterNCalls(C, 3) (TimeScale.TRIAL). '
                   'So in a trial A runs every pass, B every 2nd pass, C every pass once B has run, '
                   'until C has run 3 times in that trial.',
                   execution_counts_run=counts)


def conditions_default():
    a = pnl.ProcessingMechanism(name='A', input_shapes=1)
    b = pnl.ProcessingMechanism(name='B', input_shapes=1, function=pnl.Linear(slope=2.0))
    c = pnl.IntegratorMechanism(name='C', default_variable=[[0.0]], function=pnl.SimpleIntegrator(rate=1.0))
    comp = pnl.Composition(name='conditions_default')
    comp.add_linear_processing_pathway([a, b, c])
    model = export(comp, 'conditions_default')
    trials = [[1.0], [2.0], [-1.0]]
    ins, outs, res = run_and_record(comp, {a: trials})
    write_expected('conditions_default', model, ins, outs, res, len(trials),
                   'Same graph as conditions.json with PsyNeuLink default scheduling (each node once per '
                   'trial, in topological order; trial ends when all have run). C sums over trials.')


FIXTURES = [transfer_functions, integrators, multi_sender, chain3, nested, autodiff_sgd, autodiff_adam, gru,
            gru_mdf_conditions, gru_no_conditions, conditions, conditions_default]


def main(names):
    """Each fixture in a fresh interpreter: PsyNeuLink's name registry is per process, so a second
    'inp' would become 'inp-1' (MDF id inp_1)."""
    log_path = os.path.join(HERE, 'generation_log.json')
    log = {'fixtures': {}}
    if names and os.path.exists(log_path):
        with open(log_path) as f:
            log = json.load(f)
    log['versions'] = VERSIONS
    for fx in FIXTURES:
        if names and fx.__name__ not in names:
            continue
        p = subprocess.run([sys.executable, os.path.abspath(__file__), '--one', fx.__name__],
                           capture_output=True, text=True)
        status = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else f'FAILED: rc {p.returncode}'
        log['fixtures'][fx.__name__] = status
        print(f'{fx.__name__}: {status}')
        if not status.startswith('ok'):
            print(p.stderr[-3000:])
    with open(log_path, 'w') as f:
        json.dump(log, f, indent=1)
        f.write('\n')


def one(name):
    fx = {f.__name__: f for f in FIXTURES}[name]
    try:
        fx()
        print('ok')
    except Exception as e:
        traceback.print_exc()
        print(f'FAILED: {type(e).__name__}: {e}'.replace('\n', ' '))


if __name__ == '__main__':
    if sys.argv[1:2] == ['--one']:
        one(sys.argv[2])
    else:
        main(sys.argv[1:])
