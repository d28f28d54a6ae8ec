"""What the converters see while the traced graph is walked: MDF tensors, module weights, GRU outputs, and the
traced call being converted with its resolved arguments."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ...errors import UnsupportedError


@dataclass(frozen=True)
class MDFTensor:
    """An MDF value standing for a torch tensor: a node's output port and its per-trial shape."""

    node: str
    port: str
    shape: Tuple[int, ...]
    batch_axis: int = 0  # where the torch tensor has the batch (MDF's trial) axis: 1 for h_n and time-major data


@dataclass(frozen=True)
class GRUOutput:
    """What `nn.GRU(x)` returns: (output sequence, h_n); only the sequence has an MDF form."""

    seq: MDFTensor
    path: str


@dataclass(frozen=True)
class Weight:
    """A parameter tensor of the module (fx get_attr / export parameter placeholder) and its state_dict key."""

    key: str
    value: torch.Tensor


@dataclass(frozen=True)
class Zeros:
    """A zeros tensor created inside the traced graph (torch.export writes GRU's default hx this way)."""

    shape: Tuple[int, ...]


@dataclass(frozen=True)
class BatchSize:
    """What `x.size(0)` / `x.shape[0]` is for a tensor whose axis 0 is the batch: the number of trials, not known
    while converting. A view or reshape may take it as its first size; arithmetic on it is refused."""


@dataclass
class Call:
    """One traced call being converted: what it is, where it sits in the module, its resolved arguments."""

    name: str  # fx node name
    target: str  # printable target (module path + type, function or aten op name)
    path: str  # module path ('' for the root)
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    shape: Optional[Tuple[int, ...]]  # full shape of the (first) output, batch axes included
    module: Optional[nn.Module] = None
    leaf: bool = False  # the call is a torch.nn layer at `path` (names its MDF node after the path)
    fx_node: Any = None  # the traced node (converters that look at how their result is used read its users)

    @property
    def base(self) -> str:
        """The id an MDF node for this call starts from: the layer's path, else the fx node name."""
        return self.path if self.leaf else self.name

    @property
    def where(self) -> str:
        """Where this call is, for error messages."""
        return f"fx node '{self.name}' (target {self.target}, module path '{self.path or '<root>'}')"

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        """Positional argument i, or keyword `name`, or the default."""
        if len(self.args) > i:
            return self.args[i]
        return self.kwargs.get(name, default)

    def tensor(self, i: int = 0, name: str = "input") -> MDFTensor:
        """An argument that must be a tensor computed by the graph."""
        v = self.arg(i, name)
        if isinstance(v, GRUOutput):
            raise UnsupportedError(f"the (output, h_n) tuple of GRU '{v.path}' is used as a tensor; index it: "
                                   "`out, _ = gru(x)` or `gru(x)[0]`", where=self.where)
        if not isinstance(v, MDFTensor):
            raise UnsupportedError(f"argument '{name}' must be a tensor computed from the inputs, got "
                                   f"{type(v).__name__}", where=self.where)
        return v

    def unsupported(self, why: str) -> UnsupportedError:
        """An UnsupportedError naming this call."""
        return UnsupportedError(why, where=self.where)
