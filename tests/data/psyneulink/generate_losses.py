"""Record PsyNeuLink's training numbers for every member of its Loss enum (losses.json, next to this file).

Runs only in the PsyNeuLink venv (see README.md):

    /work/pnl-venv/bin/python tests/data/psyneulink/generate_losses.py

The net (the same for every loss): `input` (3, Linear) -> `in_to_hidden` -> `hidden` (4, Logistic) -> two output
mechanisms, `hidden_to_a` -> `out_a` (3 units) and `hidden_to_b` -> `out_b` (2 units), each with a target.
Weights are seeded uniform draws rounded to 3 decimals (written to the fixture). 8 trials, minibatch_size 4
(2 minibatches an epoch, in order: randomize_minibatches False), 3 epochs, ExecutionMode.PyTorch, float64,
optimizer 'sgd' (learning_rate 0.1) and 'adam' (learning_rate 0.05).

Per loss, the output function and the targets suit it (see CASES): Linear outputs with real targets for L1, SSE,
MSE; Linear outputs (logits) with one-hot targets for CROSS_ENTROPY; Logistic outputs (probabilities) with
probability targets for BINARY_CROSS_ENTROPY; Linear outputs with probability targets for KL_DIV (PsyNeuLink 0.21
has no log-softmax function, so the outputs are unconstrained reals read as log-probabilities); Linear outputs
(log-probabilities likewise) with one-hot targets for NLL; Linear outputs (log-rates, PoissonNLLLoss's
log_input=True) with count targets for POISSON_NLL.

Recorded per case and optimizer: `losses` = `comp.torch_losses` after learn() (PsyNeuLink's default
retain_torch_losses=MINIBATCH: one value per minibatch update, the sum over the two outputs of the loss of that
output on the whole minibatch), the trained matrices, and `loss_calls`, the shapes PsyNeuLink passed to the torch
loss (recorded by wrapping torch.nn's loss modules' __call__; PsyNeuLink calls its LossMechanism's loss on
(minibatch, 1, units) tensors). A case whose learn() fails inside PsyNeuLink records the error instead.

Two PsyNeuLink 0.21 behaviours this records, and the `*_over_units` cases added for them:
* CROSS_ENTROPY: nn.CrossEntropyLoss on (minibatch, 1, units) takes axis 1 (length 1) as the class axis, so every
  loss is 0 and nothing trains. `cross_entropy_over_units` trains the same net with loss_spec a torch.nn loss module
  (PsyNeuLink accepts those) that is nn.CrossEntropyLoss() on the (minibatch, units) squeeze of the same tensors:
  PsyNeuLink's training with the loss its docs describe.
* NLL: nn.NLLLoss(reduction='sum') on (minibatch, 1, units) float targets raises "Expected target size [4, 3], got
  [4, 1, 3]". `nll_over_units` trains with nn.NLLLoss(reduction='sum') on the squeezed outputs and the class index
  (argmax) of the one-hot targets.
"""
import json
import os
import sys
import traceback
import warnings

import numpy as np
import psyneulink as pnl
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'losses.json')
warnings.simplefilter('ignore')

VERSIONS = {'psyneulink': pnl.__version__, 'torch': torch.__version__, 'numpy': np.__version__,
            'python': sys.version.split()[0]}
EPOCHS, MINIBATCH = 3, 4
RATES = {'sgd': 0.1, 'adam': 0.05}
SIZES = {'input': 3, 'hidden': 4, 'out_a': 3, 'out_b': 2}
PROJECTIONS = {'in_to_hidden': ('input', 'hidden'), 'hidden_to_a': ('hidden', 'out_a'),
               'hidden_to_b': ('hidden', 'out_b')}


class CrossEntropyOverUnits(torch.nn.CrossEntropyLoss):
    """nn.CrossEntropyLoss() on (minibatch, units): PsyNeuLink's (minibatch, 1, units) tensors squeezed."""

    def forward(self, output, target):
        return super().forward(output.squeeze(1), target.squeeze(1))


class NLLOverUnits(torch.nn.NLLLoss):
    """nn.NLLLoss(reduction='sum') on (minibatch, units) and the class index of each one-hot target row."""

    def __init__(self):
        super().__init__(reduction='sum')

    def forward(self, output, target):
        return super().forward(output.squeeze(1), target.squeeze(1).argmax(dim=-1))


def data():
    rng = np.random.default_rng(2024)
    weights = {name: np.round(rng.uniform(-1, 1, (SIZES[s], SIZES[r])), 3) for name, (s, r) in PROJECTIONS.items()}
    x = np.round(rng.normal(size=(8, 3)), 3)
    classes_a, classes_b = [0, 2, 1, 1, 0, 2, 2, 1], [1, 0, 0, 1, 1, 0, 1, 0]
    one_hot = {'out_a': np.eye(3)[classes_a], 'out_b': np.eye(2)[classes_b]}
    real = {k: np.round(rng.normal(size=(8, n)), 3) for k, n in (('out_a', 3), ('out_b', 2))}
    probs = {k: np.round(rng.uniform(0.05, 0.95, size=(8, n)), 3) for k, n in (('out_a', 3), ('out_b', 2))}
    dist = {k: np.round(rng.dirichlet(np.ones(n), size=8), 3) for k, n in (('out_a', 3), ('out_b', 2))}
    for v in dist.values():  # rows sum to 1 exactly after rounding: the last entry takes the rest
        v[:, -1] = np.round(1 - v[:, :-1].sum(axis=1), 3)
    counts = {k: rng.integers(0, 4, size=(8, n)).astype(float) for k, n in (('out_a', 3), ('out_b', 2))}
    return weights, x, {'real': real, 'one_hot': one_hot, 'probabilities': probs, 'distributions': dist,
                        'counts': counts}


# name -> (PsyNeuLink loss_spec, output function ('linear' | 'logistic'), targets kind)
CASES = {
    'l1': ('L1', 'linear', 'real'),
    'sse': ('SSE', 'linear', 'real'),
    'mse': ('MSE', 'linear', 'real'),
    'cross_entropy': ('CROSS_ENTROPY', 'linear', 'one_hot'),
    'cross_entropy_over_units': (CrossEntropyOverUnits, 'linear', 'one_hot'),
    'binary_cross_entropy': ('BINARY_CROSS_ENTROPY', 'logistic', 'probabilities'),
    'kl_div': ('KL_DIV', 'linear', 'distributions'),
    'nll': ('NLL', 'linear', 'one_hot'),
    'nll_over_units': (NLLOverUnits, 'linear', 'one_hot'),
    'poisson_nll': ('POISSON_NLL', 'linear', 'counts'),
}


def train(spec, out_fn, weights, x, targets, optimizer):
    """(torch_losses, trained matrices, loss call shapes) of one PsyNeuLink learn()."""
    fn = (lambda: pnl.Logistic()) if out_fn == 'logistic' else (lambda: pnl.Linear())
    mechs = {'input': pnl.TransferMechanism(name='input', input_shapes=3),
             'hidden': pnl.TransferMechanism(name='hidden', input_shapes=4, function=pnl.Logistic()),
             'out_a': pnl.TransferMechanism(name='out_a', input_shapes=3, function=fn()),
             'out_b': pnl.TransferMechanism(name='out_b', input_shapes=2, function=fn())}
    projs = {name: pnl.MappingProjection(name=name, matrix=weights[name].copy(), sender=mechs[s], receiver=mechs[r])
             for name, (s, r) in PROJECTIONS.items()}
    loss_spec = getattr(pnl.Loss, spec) if isinstance(spec, str) else spec()
    comp = pnl.AutodiffComposition(
        pathways=[[mechs['input'], projs['in_to_hidden'], mechs['hidden'], projs['hidden_to_a'], mechs['out_a']],
                  [mechs['hidden'], projs['hidden_to_b'], mechs['out_b']]],
        learning_rate=RATES[optimizer], optimizer_type=optimizer, loss_spec=loss_spec)
    calls = []
    original = torch.nn.Module.__call__

    def recording_call(self, *args, **kwargs):
        if isinstance(self, torch.nn.modules.loss._Loss):
            calls.append([list(a.shape) for a in args])
        return original(self, *args, **kwargs)

    torch.nn.Module.__call__ = recording_call
    try:
        comp.learn(inputs={'inputs': {mechs['input']: x},
                           'targets': {mechs['out_a']: targets['out_a'], mechs['out_b']: targets['out_b']}},
                   epochs=EPOCHS, minibatch_size=MINIBATCH, execution_mode=pnl.ExecutionMode.PyTorch)
    finally:
        torch.nn.Module.__call__ = original
    losses = [float(np.ravel(v)[0]) for v in comp.torch_losses]
    matrices = {name: np.asarray(p.parameters.matrix.get(comp), dtype=float).tolist() for name, p in projs.items()}
    shapes = sorted({json.dumps(c) for c in calls})
    return losses, matrices, [json.loads(s) for s in shapes], len(calls)


def main():
    weights, x, kinds = data()
    doc = {'notes': __doc__.strip(), 'versions': VERSIONS, 'epochs': EPOCHS, 'minibatch_size': MINIBATCH,
           'learning_rates': RATES, 'sizes': SIZES, 'projections': {k: list(v) for k, v in PROJECTIONS.items()},
           'initial_matrices': {k: v.tolist() for k, v in weights.items()}, 'inputs': {'input': x.tolist()},
           'targets': {kind: {k: v.tolist() for k, v in t.items()} for kind, t in kinds.items()}, 'cases': {}}
    for name, (spec, out_fn, kind) in CASES.items():
        case = {'loss_spec': spec if isinstance(spec, str) else spec.__name__, 'output_function': out_fn,
                'targets': kind, 'runs': {}}
        if not isinstance(spec, str):
            case['torch_loss'] = spec.__doc__
        for optimizer in RATES:
            try:
                losses, matrices, shapes, n_calls = train(spec, out_fn, weights, x, kinds[kind], optimizer)
                case['runs'][optimizer] = {'losses': losses, 'matrices': matrices, 'loss_call_shapes': shapes,
                                           'loss_calls': n_calls}
            except Exception as e:  # recorded: PsyNeuLink's own failure
                last = traceback.format_exception_only(type(e), e)[-1].strip()
                case['runs'][optimizer] = {'error': last}
            print(name, optimizer, case['runs'][optimizer].get('error') or case['runs'][optimizer]['losses'][:2])
        doc['cases'][name] = case
    with open(OUT, 'w') as f:
        json.dump(doc, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
