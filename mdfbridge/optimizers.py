"""The optimizers of learn(): one `OptimizerRecord` per `optimizer_type`, shared by the torch and LLVM backends.

A record says how the torch backend steps (a factory building the optimizer over parameter groups) and names the
LLVM emitter of the same update in native code. Both follow torch.optim: weight_decay is L2 added to the
gradient for sgd and adam, decoupled (the parameter shrinks by lr * weight_decay first) for adamw; Adam and AdamW
with torch's betas and eps, bias corrections and lerp.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol

from .errors import UnsupportedError
from .lazy_function import LazyFunction

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults (LearnConfig does not expose them)
ADAM_EPS = 1e-8

_LLVM_OPTIMIZERS = "mdfbridge.importers.llvm_optimizers"

class TorchFactory(Protocol):
    """(parameter groups [{"params": [...], "lr": optional}], learning rate, weight decay) -> an object with
    zero_grad(set_to_none=True) and step()"""

    def __call__(self, groups: List[Dict[str, Any]], lr: float, weight_decay: float) -> Any: ...


@dataclass(frozen=True)
class OptimizerRecord:
    """One optimizer: its name, how the torch backend builds it, the LLVM emitter of its update (or None)."""

    name: str
    torch: TorchFactory
    llvm: Optional[Callable[..., Any]]  # (codegen, step count, lr, weight_decay) -> None: updates the parameters
    description: str = ""


OPTIMIZERS: Dict[str, OptimizerRecord] = {}  # name -> record, in registration order


def register_optimizer(record: OptimizerRecord) -> OptimizerRecord:
    """Add an optimizer under its name; returns the record."""
    OPTIMIZERS[record.name] = record
    return record


class PlainSGD:
    """torch.optim.SGD's update without momentum (p -= lr * (grad + weight_decay * p)), the same arithmetic in the
    same order, without the optimizer machinery's per-step overhead (about 60 us, a quarter of a small step)."""

    def __init__(self, groups: List[Dict[str, Any]], lr: float, weight_decay: float = 0.0) -> None:
        """groups: torch-style parameter groups (a group's "lr" overrides `lr`); weight_decay: L2 term (default 0)."""
        self.groups = [(list(g["params"]), float(g.get("lr", lr))) for g in groups]
        self.weight_decay = float(weight_decay)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients."""
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    def state_dict(self) -> Dict[str, Any]:
        """torch.optim's form: no per-parameter state; each group's lr and weight_decay (for checkpoints)."""
        return {"state": {}, "param_groups": [{"lr": lr, "weight_decay": self.weight_decay, "params": len(params)}
                                              for params, lr in self.groups]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what state_dict gave; groups of other sizes raise ValueError."""
        groups = list(state["param_groups"])
        if [int(g["params"]) for g in groups] != [len(params) for params, _ in self.groups]:
            raise ValueError("the saved optimizer has other parameter groups")
        self.groups = [(params, float(g["lr"])) for (params, _), g in zip(self.groups, groups)]
        self.weight_decay = float(groups[0]["weight_decay"]) if groups else self.weight_decay

    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        import torch

        with torch.no_grad():
            for params, lr in self.groups:
                for p in params:
                    g = p.grad
                    if g is None:
                        continue
                    if self.weight_decay:
                        g = g.add(p, alpha=self.weight_decay)
                    p.add_(g, alpha=-lr)


def _torch_sgd(groups: List[Dict[str, Any]], lr: float, weight_decay: float) -> PlainSGD:
    return PlainSGD(groups, lr=lr, weight_decay=weight_decay)


def _torch_adam(groups: List[Dict[str, Any]], lr: float, weight_decay: float) -> Any:
    import torch

    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, betas=ADAM_BETAS, eps=ADAM_EPS)


register_optimizer(OptimizerRecord("sgd", _torch_sgd, LazyFunction(_LLVM_OPTIMIZERS, "sgd"),
                                   "torch.optim.SGD without momentum"))
def _torch_adamw(groups: List[Dict[str, Any]], lr: float, weight_decay: float) -> Any:
    import torch

    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=ADAM_BETAS, eps=ADAM_EPS)


register_optimizer(OptimizerRecord("adam", _torch_adam, LazyFunction(_LLVM_OPTIMIZERS, "adam"),
                                   "torch.optim.Adam (amsgrad off)"))
register_optimizer(OptimizerRecord("adamw", _torch_adamw, LazyFunction(_LLVM_OPTIMIZERS, "adamw"),
                                   "torch.optim.AdamW (amsgrad off; weight_decay decoupled)"))


def get_optimizer(name: Any) -> OptimizerRecord:
    """The record of an optimizer_type: 'sgd' | 'adam' | 'adamw' in any case ('SGD', 'Adam', 'AdamW'), or the
    torch.optim class (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW: the same updates, with torch's
    defaults). Anything else raises
    UnsupportedError listing the valid spellings."""
    spelling = name.__name__ if isinstance(name, type) else name
    key = spelling.lower() if isinstance(spelling, str) else None
    record = OPTIMIZERS.get(key) if key is not None else None
    if record is None:
        raise UnsupportedError(f"optimizer_type must be {' or '.join(map(repr, OPTIMIZERS))}, got {name!r} (any "
                               "case, or the torch.optim class)")
    return record


def optimizer_names() -> List[str]:
    """Names of the registered optimizers, in registration order."""
    return list(OPTIMIZERS)
