"""`Program`: the one small IR every backend reads.

A Program is a topologically ordered list of ops over named tensors. Dynamic tensors (inputs, state and
everything computed from them) carry a leading batch axis; parameters and constants do not. A step runs
every op once; state tensors carry values from one step to the next (stateful parameters, Euler
integrated time derivatives, and edges that close a cycle, which read the sender's previous value).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from .scheduling import Schedule

# A place in the MDF document as the keys leading to it in the serialised dict, e.g.
# ("graphs", "g", "nodes", "proj", "parameters", "matrix", "value").
Location = Tuple[str, ...]


@dataclass
class Param:
    """A constant tensor of the program; `location` is where it lives in the MDF document."""

    name: str
    value: np.ndarray
    location: Optional[Location] = None
    learnable: bool = False
    learning_rate: Optional[float] = None  # a per-parameter rate (GRU optimizer_params); None: learn()'s rate
    # a statistic training updates without gradients (BatchNormalization's running mean and variance): written
    # back with the learnable parameters
    running: bool = False

    @property
    def key(self) -> str:
        """A name without dots for torch's state_dict: the projection's node id for a projection matrix."""
        node, _, rest = self.name.partition(".")
        if rest in ("matrix", "function.B") or (node.endswith("_dummy_node") and rest.endswith(".B")):
            return node[: -len("_dummy_node")] if node.endswith("_dummy_node") else node
        return self.name.replace(".", "__")


@dataclass
class Op:
    """One step of the program: `out = fn(**args)`, `fn` a canonical registry op name (mdfbridge.ops).

    `args` maps argument names to tensor references (TensorRef, or a list of them) or static values
    (attributes, constants not in the parameter table). The IR is closed: MDF expressions are lowered to
    registry ops too.
    """

    out: str
    args: Dict[str, Any]
    node: str
    fn: str = ""


@dataclass(frozen=True)
class TensorRef:
    """A reference to a named tensor inside `Op.args` (distinguishes tensor names from string attributes)."""

    name: str


@dataclass
class InputSpec:
    """An external input: a node's input port with no incoming edge."""

    name: str
    node: str
    port: str
    shape: Optional[Tuple[int, ...]] = None
    default: Optional[np.ndarray] = None


@dataclass
class State:
    """A tensor carried between steps: read as `name` during a step, replaced by `update` at its end."""

    name: str
    initial: np.ndarray
    update: str
    node: str
    kind: str = "parameter"  # parameter | derivative | delay


@dataclass
class Program:
    """Ordered ops over named tensors, with parameters, inputs, outputs and state."""

    name: str
    ops: List[Op]
    params: Dict[str, Param]
    inputs: Dict[str, InputSpec]
    outputs: Dict[str, str]  # output name -> tensor
    states: Dict[str, State] = field(default_factory=dict)
    shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # per-trial shape of each tensor
    metadata: Dict[str, Any] = field(default_factory=dict)
    uses_dt: bool = False
    # sequence programs (GRU blocks) take inputs (trials, time, ...): every dynamic tensor has a time axis
    sequence: bool = False
    # the graph's scheduling conditions (mdfbridge.scheduling.Schedule); None: each step runs every node once
    schedule: Optional["Schedule"] = None

    @property
    def stateful(self) -> bool:
        """True when a step's result depends on earlier steps."""
        return bool(self.states)

    def mark_learnable(self, names: Sequence[str]) -> None:
        """Make the named parameters learnable too (e.g. a time constant: 'node.tau').

        names: parameter names, 'node.param'. A name that is a state (a stateful parameter: carried between
        steps, not trained), or no parameter of this Program (one the lowering folded into the expressions: lower
        the document with `lower(doc, learnable=names)` to keep it), raises DataError naming the closest."""
        for name in names:
            p = self.params.get(name)
            if p is not None:
                p.learnable = True
                continue
            if name in self.states:
                raise DataError(f"learnable: '{name}' is a stateful parameter (its value is carried from step to "
                                "step); train the parameters its update reads instead")
            close = difflib.get_close_matches(name, list(self.params), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise DataError(f"learnable: no parameter '{name}' in the model{hint} (names are 'node.param'; a "
                            "parameter the lowering folded into the expressions is kept when the document is lowered "
                            "with learnable=[...])")

    def learnable_params(self) -> Dict[str, Param]:
        """The parameters training may change."""
        return {k: p for k, p in self.params.items() if p.learnable}

    def param_values(self) -> Mapping[str, np.ndarray]:
        """Name -> current value of every parameter."""
        return {k: p.value for k, p in self.params.items()}

    def fingerprint(self) -> str:
        """A content hash of the program's structure and parameter shapes (for compiled-code caches)."""
        import hashlib

        h = hashlib.sha256()
        for op in self.ops:
            h.update(repr((op.out, op.fn, sorted((k, repr(v)) for k, v in op.args.items()))).encode())
        for k, p in sorted(self.params.items()):
            h.update(repr((k, p.value.shape, str(p.value.dtype), p.learnable)).encode())
        for k, s in sorted(self.states.items()):
            h.update(repr((k, s.update, s.kind, s.initial.shape)).encode())
        h.update(repr((sorted(self.inputs), sorted(self.outputs.items()))).encode())
        return h.hexdigest()
