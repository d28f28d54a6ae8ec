"""The training losses: one `LossRecord` per loss, shared by the torch and LLVM backends.

A record holds the loss's canonical name (PsyNeuLink's, lower case), the other spellings `loss_spec` accepts,
torch's function with the reduction it uses (the torch backend calls it on (output, target) per output node and
minibatch), and the LLVM emitter that computes the same loss and its gradient in native code (None when the LLVM
backend cannot). Losses are summed over the output nodes that have targets.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import UnsupportedError
from .lazy_function import LazyFunction

_LLVM_LOSSES = "mdfbridge.importers.llvm_losses"


@dataclass(frozen=True)
class LossRecord:
    """One loss: names, torch's function and reduction, the LLVM emitter (or None)."""

    name: str
    aliases: Tuple[str, ...]
    torch: Callable[[Any, Any], Any]  # (output, target) tensors -> the minibatch's loss (a scalar tensor)
    reduction: str  # "mean" (over every element of the minibatch) or "sum"
    llvm: Optional[Callable[..., Any]]  # (codegen, output tensor, target column, size, rows) -> loss value (IR)
    description: str = ""
    # outputs need at least this many units per trial: cross-entropy over one unit is 0 whatever the target (the
    # softmax of one value is 1), so training would silently change nothing
    min_units: int = 1
    # (targets array) -> None when the targets suit the loss, else what is wrong (learn() refuses them)
    check_targets: Optional[Callable[[Any], Optional[str]]] = None


LOSSES: Dict[str, LossRecord] = {}  # canonical name -> record, in registration order
_BY_SPELLING: Dict[str, LossRecord] = {}


def register_loss(record: LossRecord) -> LossRecord:
    """Add a loss under its name and aliases (which must not name another loss); returns the record."""
    for spelling in (record.name,) + tuple(record.aliases):
        other = _BY_SPELLING.get(spelling)
        if other is not None and other.name != record.name:
            raise ValueError(f"loss spelling '{spelling}' already names loss '{other.name}'")
        _BY_SPELLING[spelling] = record
    LOSSES[record.name] = record
    return record


def _sum_of_squares(output: Any, target: Any) -> Any:
    """PsyNeuLink's SSE: ((output - target) ** 2).sum()."""
    return ((output - target) ** 2).sum()


def _l1_sum(output: Any, target: Any) -> Any:
    """PsyNeuLink's L1: torch's nn.L1Loss(reduction='sum'), the sum of absolute differences."""
    return (output - target).abs().sum()


def _poisson_nll_sum(output: Any, target: Any) -> Any:
    """PsyNeuLink's POISSON_NLL: torch's nn.PoissonNLLLoss(reduction='sum') (log_input=True, full=False): the sum
    of exp(output) - target * output."""
    import torch.nn.functional as F

    return F.poisson_nll_loss(output, target, reduction="sum")


def _nll_sum(output: Any, target: Any) -> Any:
    """PsyNeuLink's NLL: torch's nll_loss(output, class, reduction='sum'), the class of each row of one-hot targets
    being its 1 (output: log-probabilities, as a LogSoftmax layer gives)."""
    import torch.nn.functional as F

    return F.nll_loss(output, target.argmax(dim=-1), reduction="sum")


def _kl_div_sum(output: Any, target: Any) -> Any:
    """PsyNeuLink's KL_DIV: torch's kl_div(output, target, reduction='sum'): sum of target * (log target - output)
    (output: log-probabilities; target: probabilities, 0 log 0 = 0)."""
    import torch.nn.functional as F

    return F.kl_div(output, target, reduction="sum")


def _one_hot_rows(target: Any) -> Optional[str]:
    """None when every row (last axis) is one-hot (a single 1, zeros elsewhere), else what is wrong."""
    import numpy as np

    t = np.asarray(target, dtype=float)
    if t.ndim == 0 or not (np.all((t == 0) | (t == 1)) and np.all(t.sum(axis=-1) == 1)):
        return "targets must be one-hot rows (one 1 per trial, zeros elsewhere: the class index)"
    return None


def _probabilities(target: Any) -> Optional[str]:
    """None when every target is a probability (0 <= t <= 1), else what is wrong."""
    import numpy as np

    t = np.asarray(target, dtype=float)
    return None if np.all((t >= 0) & (t <= 1)) else "targets must be probabilities (between 0 and 1)"


def _functional(name: str) -> LazyFunction:
    return LazyFunction("torch.nn.functional", name)


def _emitter(name: str) -> LazyFunction:
    return LazyFunction(_LLVM_LOSSES, name)


register_loss(LossRecord("mse", ("mean_squared_error",), _functional("mse_loss"), "mean", _emitter("mse"),
                         "torch's mse_loss: mean of squared differences"))
register_loss(LossRecord("cross_entropy", ("crossentropy", "ce"), _functional("cross_entropy"), "mean",
                         _emitter("cross_entropy"),
                         "torch's cross_entropy over the units (class-probability targets), mean over the minibatch",
                         min_units=2))
# PsyNeuLink 0.21's own Loss.CROSS_ENTROPY is 0 in PyTorch mode (its nn.CrossEntropyLoss gets (minibatch, 1, units)
# tensors, whose class axis is the length-1 one) and its Loss.NLL fails in torch on them; mdfbridge's two are the
# losses over the units, which equal PsyNeuLink's training with those torch.nn losses applied over the units
# (tests/test_psyneulink_losses.py)
register_loss(LossRecord("l1", (), _l1_sum, "sum", _emitter("l1"),
                         "sum of absolute differences (PsyNeuLink's nn.L1Loss(reduction='sum'))"))
register_loss(LossRecord("sse", (), _sum_of_squares, "sum", _emitter("sse"), "sum of squared differences"))
register_loss(LossRecord("poisson_nll", ("poissonnll",), _poisson_nll_sum, "sum", _emitter("poisson_nll"),
                         "torch's poisson_nll_loss (log_input=True, full=False), summed as PsyNeuLink's"))
# PsyNeuLink's NLL, KL_DIV and BINARY_CROSS_ENTROPY, with its reductions (torch.nn's NLLLoss(reduction='sum'),
# KLDivLoss(reduction='sum'), BCELoss())
register_loss(LossRecord("nll", ("nll_loss", "negative_log_likelihood"), _nll_sum, "sum", _emitter("nll"),
                         "torch's nll_loss on log-probabilities, one-hot targets (reduction sum)",
                         check_targets=_one_hot_rows))
register_loss(LossRecord("kl_div", ("kldiv", "kl_divergence", "kldivergence"), _kl_div_sum, "sum",
                         _emitter("kl_div"),
                         "torch's kl_div on log-probabilities, probability targets (reduction sum)",
                         check_targets=_probabilities))
register_loss(LossRecord("binary_cross_entropy", ("bce", "binarycrossentropy"), _functional("binary_cross_entropy"),
                         "mean", _emitter("binary_cross_entropy"),
                         "torch's binary_cross_entropy on probabilities (outputs in (0, 1))",
                         check_targets=_probabilities))


class Loss(str, enum.Enum):
    """Loss functions by PsyNeuLink's names; each member's value is the canonical name of its LossRecord."""

    MSE = "mse"
    CROSS_ENTROPY = "cross_entropy"
    L1 = "l1"
    SSE = "sse"
    POISSON_NLL = "poisson_nll"
    NLL = "nll"
    KL_DIV = "kl_div"
    BINARY_CROSS_ENTROPY = "binary_cross_entropy"


def get_loss(spec: Any) -> LossRecord:
    """The record of a loss spec: a name in any accepted spelling, case-insensitive ('MSE', 'cross-entropy',
    'crossentropy', 'KL_DIV', 'kldiv', 'NLL', 'mae'), a Loss member, or anything with a `.name` (PsyNeuLink's Loss
    enum: pnl.Loss.CROSS_ENTROPY). Unknown specs (PsyNeuLink's Loss.L0 too) raise UnsupportedError listing the
    losses."""
    raw = spec.value if isinstance(spec, Loss) else str(getattr(spec, "name", spec))
    record = _BY_SPELLING.get(raw.lower().replace("-", "_").replace(" ", "_"))
    if record is None:
        raise UnsupportedError(f"unknown loss_spec {spec!r}; use one of {sorted(LOSSES)}")
    return record


def check_targets(spec: Any, targets: Any) -> None:
    """Refuse targets the loss of `spec` cannot take (NLL: one-hot rows; KL_DIV, binary cross-entropy:
    probabilities): DataError naming the output and the loss. targets: output name -> array."""
    from .errors import DataError

    record = get_loss(spec)
    if record.check_targets is None:
        return
    for name, value in targets.items():
        problem = record.check_targets(value)
        if problem:
            raise DataError(f"targets for '{name}': loss_spec '{record.name}': {problem}")


def loss_name(spec: Any) -> str:
    """The canonical name of a loss spec (see get_loss)."""
    return get_loss(spec).name


def loss_names() -> List[str]:
    """Canonical names of the registered losses, in registration order."""
    return list(LOSSES)
