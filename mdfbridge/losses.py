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


def _functional(name: str) -> LazyFunction:
    return LazyFunction("torch.nn.functional", name)


def _emitter(name: str) -> LazyFunction:
    return LazyFunction(_LLVM_LOSSES, name)


register_loss(LossRecord("mse", ("mean_squared_error",), _functional("mse_loss"), "mean", _emitter("mse"),
                         "torch's mse_loss: mean of squared differences"))
register_loss(LossRecord("cross_entropy", ("crossentropy", "ce"), _functional("cross_entropy"), "mean",
                         _emitter("cross_entropy"), "torch's cross_entropy (class-probability targets)",
                         min_units=2))
register_loss(LossRecord("l1", ("mae",), _functional("l1_loss"), "mean", _emitter("l1"),
                         "torch's l1_loss: mean absolute difference"))
register_loss(LossRecord("sse", (), _sum_of_squares, "sum", _emitter("sse"), "sum of squared differences"))
register_loss(LossRecord("poisson_nll", (), _functional("poisson_nll_loss"), "mean", _emitter("poisson_nll"),
                         "torch's poisson_nll_loss (log_input=True, full=False)"))


class Loss(str, enum.Enum):
    """Loss functions by PsyNeuLink's names; each member's value is the canonical name of its LossRecord."""

    MSE = "mse"
    CROSS_ENTROPY = "cross_entropy"
    L1 = "l1"
    SSE = "sse"
    POISSON_NLL = "poisson_nll"


def get_loss(spec: Any) -> LossRecord:
    """The record of a loss spec: a name in any accepted spelling ('MSE', 'cross-entropy', 'mae'), a Loss member, or
    anything with a `.name` (PsyNeuLink's Loss enum). Unknown specs raise UnsupportedError listing the losses."""
    raw = spec.value if isinstance(spec, Loss) else str(getattr(spec, "name", spec))
    record = _BY_SPELLING.get(raw.lower().replace("-", "_").replace(" ", "_"))
    if record is None:
        raise UnsupportedError(f"unknown loss_spec {spec!r}; use one of {sorted(LOSSES)}")
    return record


def loss_name(spec: Any) -> str:
    """The canonical name of a loss spec (see get_loss)."""
    return get_loss(spec).name


def loss_names() -> List[str]:
    """Canonical names of the registered losses, in registration order."""
    return list(LOSSES)
