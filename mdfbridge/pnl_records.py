"""What a composition keeps after learn() and run(), in PsyNeuLink 0.21's forms: `results` entries (one per
trial), `learning_results`, `torch_losses`, `torch_sample_values`, `torch_targets`, and the learn() arguments that
say what is kept (synch_results_with_torch, retain_torch_*)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence

import numpy as np

from .errors import UnsupportedError

if TYPE_CHECKING:  # pragma: no cover
    from .composition import Composition
    from .learning import LearnConfig, LearnResult

log = logging.getLogger(__name__)

# PsyNeuLink's LearningScale names, as learn()'s synch_* / retain_* arguments take them (any case, or the member)
LEARNING_SCALES = ("optimization_step", "trial", "minibatch", "epoch", "run")


def trial_value(values: Sequence[Any]) -> np.ndarray:
    """One trial's output values in PsyNeuLink's form: a float ndarray (outputs, size...) when every output node's
    values have one shape, else an object ndarray holding each node's array.

    values: one array-like per output node, in get_output_nodes() order."""
    arrays = [np.asarray(v, dtype=float) for v in values]
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    out = np.empty(len(arrays), dtype=object)
    for k, a in enumerate(arrays):
        out[k] = a
    return out


def learning_scale(argument: str, value: Any) -> Optional[str]:
    """A synch_* / retain_* argument as a LearningScale name ('minibatch', ...), or None.

    argument: the argument's name (for the error); value: None, a name in any case ('MINIBATCH', 'epoch') or
    PsyNeuLink's LearningScale member. Anything else raises UnsupportedError listing the scales."""
    if value is None:
        return None
    name = str(getattr(value, "name", value)).split(".")[-1].lower()
    if name not in LEARNING_SCALES:
        raise UnsupportedError(f"learn(): {argument} must be one of {', '.join(LEARNING_SCALES)} or None, "
                               f"got {value!r}")
    return name


def refuse_python_mode_learning(execution_mode: Any, inputs: Any) -> None:
    """Refuse learn(execution_mode=ExecutionMode.Python) (also given in PsyNeuLink's inputs dict form).

    PsyNeuLink's Python-mode learning runs its LearningMechanisms' backpropagation, whose weight updates are not
    PyTorch mode's (measured with PsyNeuLink 0.21 on a 2-3-1 logistic net, learning_rate 0.5, 3 epochs of XOR:
    the weights differ by up to 0.045), so mdfbridge does not map it onto its torch training; it names
    ExecutionMode.PyTorch instead. execution_mode: learn()'s argument; inputs: learn()'s inputs (a dict form's
    "execution_mode" is read too)."""
    modes = [execution_mode]
    if isinstance(inputs, Mapping) and isinstance(inputs.get("inputs"), Mapping):
        modes.append(inputs.get("execution_mode"))
    for mode in modes:
        if mode is not None and str(getattr(mode, "name", mode)).split(".")[-1] == "Python":
            raise UnsupportedError(
                "learn(execution_mode=ExecutionMode.Python) is PsyNeuLink's LearningMechanism backpropagation, "
                "whose updates differ from PyTorch mode's; mdfbridge trains as ExecutionMode.PyTorch (pass that, "
                "or backend='torch' / 'llvm')")


@dataclass
class LearnRecords:
    """learn()'s bookkeeping arguments, read (`from_arguments`) and applied to a composition (`store`)."""

    results: Optional[str]
    sample_values: Optional[str]
    targets: Optional[str]
    losses: Optional[str]

    @classmethod
    def from_arguments(cls, *, synch_node_values_with_torch: Any, synch_node_variables_with_torch: Any,
                       synch_results_with_torch: Any, retain_torch_sample_values: Any,
                       retain_torch_trained_outputs: Any, retain_torch_targets: Any,
                       retain_torch_losses: Any) -> "LearnRecords":
        """Check PsyNeuLink's arguments (each a LearningScale name, its member, or None).

        synch_node_values_with_torch / synch_node_variables_with_torch: when PsyNeuLink copies torch's node
        values / variables to its mechanisms; mdfbridge's mechanisms hold no values, so they change nothing
        stored here (a log line says so when not PsyNeuLink's default). synch_results_with_torch: when outputs
        reach `results`; with PsyNeuLink 0.21 the final `results` are the same for every scale (measured), so
        every scale gives the same results here. retain_torch_sample_values (0.13's name:
        retain_torch_trained_outputs), retain_torch_targets, retain_torch_losses: None keeps nothing in
        torch_sample_values / torch_targets / torch_losses; any scale keeps every minibatch's (as PsyNeuLink 0.21,
        measured). A value that is no scale raises UnsupportedError."""
        if retain_torch_trained_outputs is not None:
            retain_torch_sample_values = retain_torch_trained_outputs
        for name, value, default in (("synch_node_values_with_torch", synch_node_values_with_torch, "run"),
                                     ("synch_node_variables_with_torch", synch_node_variables_with_torch, None)):
            if learning_scale(name, value) != default:
                log.info("learn(): %s=%r changes nothing in mdfbridge (its mechanisms hold no node values)",
                         name, value)
        return cls(learning_scale("synch_results_with_torch", synch_results_with_torch),
                   learning_scale("retain_torch_sample_values", retain_torch_sample_values),
                   learning_scale("retain_torch_targets", retain_torch_targets),
                   learning_scale("retain_torch_losses", retain_torch_losses))

    def store(self, comp: "Composition", result: "LearnResult", targets: Mapping[str, np.ndarray],
              config: "LearnConfig", output_ids: List[str]) -> None:
        """Fill comp.results (appended), learning_results, torch_losses, torch_sample_values and torch_targets.

        result: learn()'s LearnResult; targets: Program output id -> (trials, ...) as trained (trial order);
        config: the settings trained with (minibatch size, shuffle seed); output_ids: the Program output ids of
        the output nodes, in get_output_nodes() order."""
        from .learning import TrainingData

        n = len(next(iter(result.outputs.values())))
        reps = int(config.optimizations_per_minibatch)  # each trial's optimization steps, in a row
        epochs = result.executed_outputs
        if not epochs:  # (llvm keeps only the final epoch)
            log.warning("learn(): this backend keeps only the final epoch's outputs; results gets %d entries (the "
                        "final epoch's, in trial order), not one per trial of all %d epochs", n, result.epochs_run)
            epochs = [result.outputs]
            orders: List[np.ndarray] = [np.arange(n)]
            reps = 1
        else:
            n *= reps  # one entry per optimization step
            orders = [np.arange(n) if o is None else o for o in
                      TrainingData({}, {}, n, reps).epoch_orders(config)][:len(epochs)]
        entries: List[np.ndarray] = []
        for out in epochs:
            entries += [trial_value([out[k][i] for k in output_ids]) for i in range(n)]
        comp.results.extend(entries)
        comp.learning_results = _stack(entries[-n:])
        mb = int(config.minibatch_size)
        per_mb = [slice(b, min(b + mb, n)) for b in range(0, n, mb)]
        comp.torch_losses = np.asarray(result.losses if self.losses else [], dtype=float).reshape(-1, 1)
        comp.torch_sample_values = [] if self.sample_values is None else [
            _stack(entries[e * n:(e + 1) * n][s]) for e in range(len(epochs)) for s in per_mb]
        given = [k for k in output_ids if k in targets]
        comp.torch_targets = [] if self.targets is None else [
            _stack([trial_value([targets[k][i // reps] for k in given]) for i in order[s]]) for order in orders
            for s in per_mb]


def _stack(entries: Sequence[np.ndarray]) -> Any:
    """Trial entries stacked on a leading axis (an object array when they are object arrays)."""
    if entries and entries[0].dtype != object:
        return np.stack(entries)
    out = np.empty(len(entries), dtype=object)
    for k, e in enumerate(entries):
        out[k] = e
    return out


__all__ = ["LEARNING_SCALES", "LearnRecords", "learning_scale", "refuse_python_mode_learning", "trial_value"]
