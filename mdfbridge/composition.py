"""PsyNeuLink-style composition API: mechanisms, projections, pathways, nesting, bias nodes, run."""
from __future__ import annotations

import itertools
import keyword
import logging
import re
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeGuard,
    Union,
    cast,
)

import numpy as np

from .errors import CompositionError, DataError
from .learning import LEARN_ARGUMENTS_DOC, make_config
from .losses import Loss
from .transfer import Linear, TransferFunction

if TYPE_CHECKING:  # pragma: no cover
    from .gru_composition import GRUBlock
    from .program import Program

log = logging.getLogger(__name__)

IDENTITY_MATRIX = "identity"
FULL_CONNECTIVITY_MATRIX = "full"
RANDOM_CONNECTIVITY_MATRIX = "random"


def identifier(name: str) -> str:
    """`name` made a Python identifier that is not a keyword (MDF ids must be; modeci-mdf parses them)."""
    ident = re.sub(r"\W", "_", name.strip()) or "node"
    if ident[0].isdigit():
        ident = "_" + ident
    return ident + "_" if keyword.iskeyword(ident) else ident


class _Named:
    """A mechanism, projection or composition: named by the user, or automatically `<kind>_<n>`.

    An automatic name is `<kind>_0` until the object is added to a composition; the composition then makes it
    unique among the names in every composition tree the object belongs to (the smallest free n). Names thus
    depend only on how a composition is built, not on what else the process built before: the same
    construction code gives the same names (and MDF ids, and weights-file keys) every time.
    """

    def _init_name(self, name: Optional[str], kind: str) -> None:
        """Take the given name, or the provisional automatic one of `kind`."""
        self._kind = kind
        self._auto = not name
        self._name = name if name else f"{kind}_0"
        self._owners: List["Composition"] = []  # compositions this object was added to (as a node or projection)

    @property
    def name(self) -> str:
        """The given name, or the automatic one."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name, self._auto = value, False


class Mechanism(_Named):
    """A node of a composition with `size` values.

    name: the mechanism's name (default None: `<class name>_<n>`, made unique when it is added to a composition);
    size: the number of values, an int or a shape whose product is taken (default 1). A size below 1 raises
    CompositionError.
    """

    def __init__(self, name: Optional[str] = None, size: Union[int, Sequence[int]] = 1) -> None:
        self._init_name(name, type(self).__name__)
        # (cast: numpy's stub of isscalar narrows `size` to numpy scalar types)
        self.size = int(cast(int, size) if np.isscalar(size) else int(np.prod(size)))
        if self.size < 1:
            raise CompositionError(f"mechanism '{self.name}' needs size >= 1, got {size}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, size={self.size})"


class TransferMechanism(Mechanism):
    """A mechanism applying an elementwise transfer function to the sum of its afferents (or its input).

    name: as Mechanism's (default None: automatic); size: the number of values, an int or a shape (default None:
    from input_shapes, else the element count of default_variable, else 1); function: a TransferFunction
    instance, or its class (made with its defaults) (default None: Linear(), the identity); input_shapes:
    PsyNeuLink's name for the size, used when size is None (default None); default_variable: PsyNeuLink's, only
    its element count is read, as the size when size and input_shapes are None (default None). A function that is
    not a TransferFunction raises CompositionError.
    """

    def __init__(self, name: Optional[str] = None, size: Union[int, Sequence[int], None] = None,
                 function: Optional[TransferFunction] = None, *, input_shapes: Any = None,
                 default_variable: Any = None) -> None:
        if size is None:
            size = input_shapes if input_shapes is not None else (
                np.size(default_variable) if default_variable is not None else 1)
        super().__init__(name, size)
        if function is not None and isinstance(function, type):
            function = function()
        self.function: TransferFunction = function if function is not None else Linear()
        if not isinstance(self.function, TransferFunction):
            raise CompositionError(f"mechanism '{self.name}': function must be a transfer function such as "
                                   f"Logistic(gain=1), got {function!r}")


class BiasMechanism(Mechanism):
    """An explicit bias node: outputs a constant (1 by default) every trial; project it through a matrix.

    name: as Mechanism's (default None: automatic); size: the number of values (default 1); value: the constant
    each of them holds (default 1.0). A bias node cannot receive projections (flattening refuses it).
    """

    def __init__(self, name: Optional[str] = None, size: int = 1, value: float = 1.0) -> None:
        super().__init__(name, size)
        self.value = float(value)


Node = Union[Mechanism, "Composition"]


class MappingProjection(_Named):
    """Weights W from a sending to a receiving node, a (sending size x receiving size) array: the receiving node's
    input += the sending node's values @ W.

    sender, receiver: the sending and receiving node (default None: set later by Composition.add_projection or a
    pathway), each a mechanism or a nested composition (which stands for its single output / input node). matrix: a
    2-D array-like of shape (sender size, receiver size), or a spec filled in when the composition is flattened:
    'identity' (IDENTITY_MATRIX; equal sizes only), 'full' (FULL_CONNECTIVITY_MATRIX: all ones) or 'random'
    (RANDOM_CONNECTIVITY_MATRIX: uniform in [0, 1)) (default None: identity when the sizes are equal, else full,
    as PsyNeuLink's AUTO_ASSIGN_MATRIX). learnable: whether learn() trains it (default True: yes; False: a fixed
    matrix). name: the projection's name (default None: `MappingProjection_<n>`). seed: the 'random' matrix's
    seed (default None: the top-level composition's seed plus the projection's index in its flattened list).
    A matrix that is not 2-D or holds NaN/infinite values raises CompositionError; one whose shape does not match
    the end nodes' sizes is refused when the composition is flattened.
    """

    def __init__(self, sender: Optional[Node] = None, receiver: Optional[Node] = None, matrix: Any = None,
                 learnable: bool = True, name: Optional[str] = None, seed: Optional[int] = None) -> None:
        self.sender, self.receiver = sender, receiver
        self._init_name(name, "MappingProjection")
        self.learnable = bool(learnable)
        self._matrix_spec = matrix
        self.seed = seed
        self.matrix: Optional[np.ndarray] = None
        if matrix is not None and not isinstance(matrix, str):
            self.matrix = np.array(matrix, dtype=float)
            if self.matrix.ndim != 2:
                raise CompositionError(f"projection '{self.name}': matrix must be 2-D, got shape {self.matrix.shape}")
            if not np.all(np.isfinite(self.matrix)):
                raise CompositionError(f"projection '{self.name}': matrix contains NaN or infinite values")

    def __repr__(self) -> str:
        return f"MappingProjection({self.name!r})"

    def _initialise(self, rows: int, cols: int, seed: int) -> None:
        """Fill the matrix from its spec (PsyNeuLink's AUTO_ASSIGN_MATRIX when none was given)."""
        spec = self._matrix_spec
        if self.matrix is not None:
            if self.matrix.shape != (rows, cols):
                raise CompositionError(f"projection '{self.name}': matrix shape {self.matrix.shape} does not match "
                                       f"sender size x receiver size ({rows}, {cols})")
            return
        if spec is None:
            spec = IDENTITY_MATRIX if rows == cols else FULL_CONNECTIVITY_MATRIX
        if spec == IDENTITY_MATRIX:
            if rows != cols:
                raise CompositionError(
                    f"projection '{self.name}': identity matrix needs equal sizes, got {rows}x{cols}")
            self.matrix = np.eye(rows)
        elif spec == FULL_CONNECTIVITY_MATRIX:
            self.matrix = np.ones((rows, cols))
        elif spec == RANDOM_CONNECTIVITY_MATRIX:
            rng = np.random.default_rng(self.seed if self.seed is not None else seed)
            self.matrix = rng.uniform(0.0, 1.0, (rows, cols))
        else:
            raise CompositionError(f"projection '{self.name}': unknown matrix spec {spec!r} "
                                   f"(use an array, '{IDENTITY_MATRIX}', '{FULL_CONNECTIVITY_MATRIX}' or "
                                   f"'{RANDOM_CONNECTIVITY_MATRIX}')")


@dataclass
class FlatNode:
    """A mechanism of the flattened composition, with its MDF id and nesting path."""

    id: str
    mechanism: Mechanism
    path: Tuple[str, ...]


@dataclass
class FlatProjection:
    """A projection of the flattened composition between flat node ids."""

    id: str
    projection: MappingProjection
    sender: str
    receiver: str
    path: Tuple[str, ...]

    @property
    def matrix(self) -> np.ndarray:
        """The projection's matrix (the top-level flatten() fills every matrix from its spec)."""
        assert self.projection.matrix is not None, self.id
        return self.projection.matrix


class Composition(_Named):
    """Nodes (mechanisms or nested compositions) connected by projections; afferents into a node are summed.

    Nodes, projections and nested compositions created without a name get one when they are added:
    `<kind>_<n>` (`TransferMechanism_0`, `MappingProjection_1`, `Composition_0`), unique in the composition tree.

    name: the composition's name (default None: `Composition_<n>`); pathways: node sequences, each added with
    add_linear_processing_pathway (default None: none); seed: the base seed of 'random' projection matrices
    (default 0; projection k of the flattened composition draws from seed + k unless it has its own seed).
    """

    def __init__(self, name: Optional[str] = None, pathways: Optional[Iterable[Sequence[Any]]] = None,
                 seed: int = 0) -> None:
        self._init_name(name, "Composition")
        self.nodes: List[Node] = []
        self.projections: List[MappingProjection] = []
        self.seed = int(seed)
        self.results: List[List[np.ndarray]] = []
        self.losses: List[float] = []
        self.learn_result: Any = None
        self._program: Optional[Program] = None
        self._program_key: Any = None
        self.learning_settings: Dict[str, Any] = {}  # learn()'s defaults (AutodiffComposition's constructor sets them)
        self.device: Any = None  # learn()'s default torch device (AutodiffComposition's constructor sets it)
        for p in pathways or ():
            self.add_linear_processing_pathway(p)

    def __repr__(self) -> str:
        return f"Composition({self.name!r}, nodes={[n.name for n in self.nodes]})"

    @property
    def size(self) -> int:
        """Size of the single input node (for projections into a nested composition)."""
        return self._endpoint(self, "receiver").size  # type: ignore[union-attr]

    # ------------------------------------------------------------------ building
    def add_node(self, node: Node) -> Node:
        """Add a mechanism or a nested composition (once); returns it.

        node: a Mechanism or a Composition (nested; it must not contain this one). Adding a node already there does
        nothing; this composition itself, a composition containing it, or anything else raises CompositionError.
        """
        if node is self:
            raise CompositionError(f"composition '{self.name}' cannot contain itself")
        if not isinstance(node, (Mechanism, Composition)):
            raise CompositionError(f"cannot add {node!r} to '{self.name}': not a mechanism or composition")
        if isinstance(node, Composition) and self in node._all_compositions():
            raise CompositionError(f"nesting '{node.name}' in '{self.name}' would make a cycle of compositions")
        if node not in self.nodes:
            self.nodes.append(node)
            self._adopt(node)
        return node

    def add_nodes(self, nodes: Iterable[Node]) -> None:
        """Add several nodes, in order, as add_node does.

        nodes: an iterable of mechanisms and compositions."""
        for n in nodes:
            self.add_node(n)

    def add_projection(self, projection: Optional[MappingProjection] = None, sender: Optional[Node] = None,
                       receiver: Optional[Node] = None) -> MappingProjection:
        """Add a projection (creating a default MappingProjection if none given); adds missing end nodes; returns
        the projection.

        projection: a MappingProjection (default None: a new one with the default matrix); sender, receiver: its
        end nodes, replacing the projection's own when given (default None: the projection's). End nodes not yet
        in this composition (or one nested in it) are added to it; an end that is still missing raises
        CompositionError.
        """
        if projection is None:
            projection = MappingProjection(sender, receiver)
        projection.sender = sender if sender is not None else projection.sender
        projection.receiver = receiver if receiver is not None else projection.receiver
        for end in ("sender", "receiver"):
            n = getattr(projection, end)
            if n is None:
                raise CompositionError(f"projection '{projection.name}' has no {end}")
            if not self._contains(n):
                self.add_node(n)
        if projection not in self.projections:
            self.projections.append(projection)
            self._adopt(projection)
        return projection

    def add_linear_processing_pathway(self, pathway: Sequence[Any]) -> List[MappingProjection]:
        """Add `[A, (matrix or MappingProjection), B, ...]`: a projection between consecutive nodes; returns the
        projections added, in order.

        pathway: a sequence that starts and ends with a node (mechanism or composition), with at most one item
        between two nodes: a MappingProjection, or a matrix as MappingProjection's `matrix` takes it (an array or
        'identity' / 'full' / 'random'); no item there gives a default MappingProjection. Any other shape raises
        CompositionError.
        """
        items = list(pathway)
        if not items or not isinstance(items[0], (Mechanism, Composition)):
            raise CompositionError("a pathway starts with a node")
        added: List[MappingProjection] = []
        prev: Node = self.add_node(items[0])
        pending: Any = None
        for item in items[1:]:
            if isinstance(item, (Mechanism, Composition)):
                proj = pending if isinstance(pending, MappingProjection) else MappingProjection(matrix=pending)
                added.append(self.add_projection(proj, sender=prev, receiver=item))
                prev, pending = item, None
            else:
                if pending is not None:
                    raise CompositionError("two projections/matrices in a row in a pathway")
                pending = item
        if pending is not None:
            raise CompositionError("a pathway cannot end with a projection or matrix")
        return added

    def _adopt(self, obj: _Named) -> None:
        """Record that `obj` (a node or projection just added) is in this composition, and rename what is
        automatically named in it (itself, and for a nested composition everything inside) where its name is
        taken in a composition tree it now belongs to. Given names are never changed."""
        if not any(o is self for o in obj._owners):
            obj._owners.append(self)
        renamable = [o for o in _members(obj) if o._auto]
        moving = {id(o) for o in renamable}
        taken = {o.name for root in _roots([obj, *renamable]) for o in _members(root) if id(o) not in moving}
        for o in renamable:
            if o.name in taken:
                o._name = next(name for name in (f"{o._kind}_{k}" for k in itertools.count()) if name not in taken)
            taken.add(o.name)

    # ------------------------------------------------------------------ structure
    def _contains(self, node: Node) -> bool:
        return any(n is node or (isinstance(n, Composition) and n._contains(node)) for n in self.nodes)

    def _all_compositions(self) -> List["Composition"]:
        out = [self]
        for n in self.nodes:
            if isinstance(n, Composition):
                out += n._all_compositions()
        return out

    def _endpoint(self, node: Node, end: str) -> Mechanism:
        """The mechanism a projection to/from `node` attaches to (nested compositions: their single input/output)."""
        if isinstance(node, Mechanism):
            return node
        flat = node.flatten()
        role = "input" if end == "receiver" else "output"
        cands = [f.mechanism for f in flat[0] if f.id in node._roles(flat)[role]]
        if len(cands) != 1:
            raise CompositionError(f"projection {end} is composition '{node.name}' with {len(cands)} {role} nodes "
                                   f"({', '.join(c.name for c in cands)}); name the node itself")
        return cands[0]

    def flatten(self, _prefix: Tuple[str, ...] = ()) -> Tuple[List[FlatNode], List[FlatProjection]]:
        """Mechanisms and projections of this composition and every nested one, with flat MDF ids."""
        nodes: List[FlatNode] = []
        projs: List[FlatProjection] = []
        path = _prefix + (self.name,)
        pre = "__".join(identifier(p) for p in path[1:])
        for n in self.nodes:
            if isinstance(n, Composition):
                sub_nodes, sub_projs = n.flatten(path)
                nodes += sub_nodes
                projs += sub_projs
            else:
                nodes.append(FlatNode(f"{pre}__{identifier(n.name)}" if pre else identifier(n.name), n, path))
        ids = {id(f.mechanism): f.id for f in nodes}
        for p in self.projections:
            assert p.sender is not None and p.receiver is not None  # add_projection refuses a missing end
            s, r = self._endpoint(p.sender, "sender"), self._endpoint(p.receiver, "receiver")
            for m, end in ((s, "sender"), (r, "receiver")):
                if id(m) not in ids:
                    raise CompositionError(f"projection '{p.name}': {end} '{m.name}' is not in composition "
                                           f"'{self.name}'")
            if isinstance(r, BiasMechanism):
                raise CompositionError(f"projection '{p.name}': bias node '{r.name}' cannot receive projections")
            pid = f"{pre}__{identifier(p.name)}" if pre else identifier(p.name)
            projs.append(FlatProjection(pid, p, ids[id(s)], ids[id(r)], path))
        if not _prefix:
            seen: Dict[str, str] = {}
            for item in [*(f.id for f in nodes), *(f.id for f in projs)]:
                if item in seen:
                    raise CompositionError(f"two nodes/projections of '{self.name}' are both called '{item}'")
                seen[item] = item
            for k, fp in enumerate(projs):
                by = {f.id: f.mechanism for f in nodes}
                receiver = by[fp.receiver]  # a GRU block receives into its input node
                fp.projection._initialise(by[fp.sender].size, getattr(receiver, "input_size", receiver.size),
                                          self.seed + k)
        return nodes, projs

    def _roles(self, flat: Optional[Tuple[List[FlatNode], List[FlatProjection]]] = None) -> Dict[str, List[str]]:
        nodes, projs = flat or self.flatten()
        receivers = {p.receiver for p in projs}
        senders = {p.sender for p in projs}
        mechs = [f for f in nodes if not isinstance(f.mechanism, BiasMechanism)]
        return {"input": [f.id for f in mechs if f.id not in receivers],
                "output": [f.id for f in mechs if f.id not in senders]}

    def get_input_nodes(self) -> List[Mechanism]:
        """Mechanisms that receive no projection (they take the composition's inputs)."""
        flat = self.flatten()
        ids = self._roles(flat)["input"]
        return [f.mechanism for f in flat[0] if f.id in ids]

    def get_output_nodes(self) -> List[Mechanism]:
        """Mechanisms that send no projection (their values are the composition's outputs)."""
        flat = self.flatten()
        ids = self._roles(flat)["output"]
        return [f.mechanism for f in flat[0] if f.id in ids]

    # ------------------------------------------------------------------ MDF and running
    def to_mdf(self) -> Any:
        """This composition as a `modeci_mdf.mdf.Model` (nested compositions flattened, nesting in metadata)."""
        from .exporters.mdf import composition_to_mdf

        return composition_to_mdf(self)

    def as_mdf_model(self) -> Any:
        """PsyNeuLink's name for `to_mdf()`."""
        return self.to_mdf()

    def save_mdf(self, path: Any) -> None:
        """Write the composition as an MDF JSON or YAML file (from the extension), atomically.

        path: the file (str or path-like); `.json`, `.yaml` or `.yml` picks the format."""
        from .api import save_mdf
        from .exporters.mdf import composition_to_dict

        save_mdf(composition_to_dict(self), path)

    def save(self, path: Any) -> None:
        """Save the projection matrices in torch state_dict format (PsyNeuLink's AutodiffComposition.save).

        path: the file to write, atomically (str or path-like, e.g. `weights.pt`); keys are the projections' flat
        ids (see mdfbridge.exporters.weights)."""
        from .exporters.weights import save_weights

        save_weights(self.program(), path)

    def load(self, path: Any) -> None:
        """Load projection matrices saved by `save` (torch.load with weights_only=True).

        path: the file `save` wrote (str or path-like). Unreadable files, unknown or missing keys, other shapes and
        NaN/infinite values raise DataError (see mdfbridge.exporters.weights.load_weights)."""
        from .exporters.weights import load_weights

        prog = self.program()
        load_weights(prog, path)
        self._pull_matrices(prog)

    def _pull_matrices(self, prog: Any) -> None:
        """Copy the Program's matrix values into the projections (and GRU gate weights into their blocks)."""
        nodes, projs = self.flatten()
        for p in projs:
            p.projection.matrix = np.array(prog.params[f"{p.id}.matrix"].value, dtype=float)
        for f in nodes:
            m = f.mechanism
            if _is_gru(m):
                for name, pname in _gru_param_names(f).items():
                    m.gates[name] = np.array(prog.params[pname].value, dtype=float)

    def learn(self, inputs: Mapping[Any, Any], targets: Optional[Mapping[Any, Any]] = None, *,
              num_trials: Optional[int] = None, epochs: Optional[int] = 1, learning_rate: Optional[float] = None,
              minibatch_size: Optional[int] = None, patience: Optional[int] = None, min_delta: Optional[float] = 0,
              execution_mode: Any = None, randomize_minibatches: Optional[bool] = False,
              optimizations_per_minibatch: Optional[int] = None, optimizer_type: Any = None, loss_spec: Any = None,
              weight_decay: Optional[float] = None, synch_projection_matrices_with_torch: Any = None,
              seed: Optional[int] = None, backend: Optional[str] = None, dtype: Any = None, device: Any = None,
              callback: Optional[Callable[[int, int, float], None]] = None,
              randomize_minibatch: Optional[bool] = None, synch_projection_matrices: Any = None,
              **other: Any) -> Dict[str, np.ndarray]:
        """AutodiffComposition.learn: train on inputs/targets; returns the final epoch's outputs per output node
        (name -> (trials, size), trial order). Per-minibatch losses: `self.losses`; the LearnResult:
        `self.learn_result`. Inputs and targets are keyed by node (or its name); a nested composition stands for
        its single input node, and `{nested: {"inputs": ..., "targets": ...}}` (PsyNeuLink's nested form) is
        read as that dict form. A setting left at None takes the AutodiffComposition's constructor value where it
        has one, else learn()'s default (as said below). Raises DataError for data that do not fit the
        composition (naming the node), CompositionError for an unknown setting.
        """
        from .learning import backend_name, cycle_trials, make_config, read_learn_call, train_program

        inputs, targets, num_trials, execution_mode, settings = read_learn_call(_nested_dict_form(inputs), targets,
                                                                                locals(), other)
        config = make_config(None, {**self.learning_settings, **settings}, error=CompositionError)
        prog = self.program()
        x = cycle_trials(self.input_dict(inputs), num_trials)
        t = cycle_trials(self.input_dict(targets or {}, targets=True), num_trials, "targets")
        unknown = [k for k in t if k not in prog.outputs]
        if unknown:
            raise DataError(f"targets given for {unknown}, which are not output nodes of '{self.name}'")
        result = train_program(prog, x, t, config, backend=backend_name(backend, execution_mode), dtype=dtype,
                               device=device if device is not None else self.device, callback=callback,
                               on_synch=lambda: self._pull_matrices(prog))
        self.losses = result.losses
        self.learn_result = result
        return self._output_names(result.outputs)

    def program(self) -> Any:
        """The lowered Program (rebuilt when the structure changed; matrices refreshed every call)."""
        from .lowering import lower

        flat = self.flatten()
        key = (tuple((f.id, f.mechanism.size, repr(getattr(f.mechanism, "function", None)),
                      getattr(f.mechanism, "value", None)) for f in flat[0]),
               tuple((p.id, p.sender, p.receiver, p.projection.learnable) for p in flat[1]))
        if self._program is None or key != self._program_key:
            from .exporters.mdf import composition_to_dict

            self._program, self._program_key = lower(composition_to_dict(self)), key
        prog = self._program
        for p in flat[1]:
            prog.params[f"{p.id}.matrix"].value = p.matrix
        for f in flat[0]:
            m = f.mechanism
            if _is_gru(m):
                for name, pname in _gru_param_names(f).items():
                    prog.params[pname].value = m.gates[name]
        return prog

    @property
    def is_sequence(self) -> bool:
        """True when the composition holds a GRU block: inputs are (trials, time steps, size)."""
        return any(_is_gru(f.mechanism) for f in self.flatten()[0])

    def input_dict(self, inputs: Mapping[Any, Any], targets: bool = False) -> Dict[str, np.ndarray]:
        """Normalise `{node or name: trials}` to `{flat node id: (trials, size) array}`.

        inputs: {node: array-like}, the node a mechanism, a nested composition (standing for its single input
        node), a mechanism's name or its flat MDF id; a 1-D array is one trial, (trials, 1, size) is read as
        (trials, size). With a GRU block the arrays are sequences, (trials, time steps, size) ((time steps, size):
        one trial). targets: whether these are targets (default False: inputs); True maps a GRU block to its
        output node rather than its input node and checks its hidden size instead of its input size. An unknown
        node or a shape that does not fit raises DataError naming the node.
        """
        flat_nodes, _ = self.flatten()
        seq = any(_is_gru(f.mechanism) for f in flat_nodes)
        by_obj = {id(f.mechanism): f for f in flat_nodes}
        by_name: Dict[str, FlatNode] = {}
        for flat_node in flat_nodes:
            by_name.setdefault(flat_node.id, flat_node)
            by_name.setdefault(flat_node.mechanism.name, flat_node)
        out: Dict[str, np.ndarray] = {}
        for key, val in inputs.items():
            if isinstance(key, Composition):
                key = self._endpoint(key, "receiver")
            f = by_obj.get(id(key)) if isinstance(key, Mechanism) else by_name.get(str(key))
            if f is None:
                raise DataError(f"input for unknown node {getattr(key, 'name', key)!r}; composition "
                                f"'{self.name}' has {[n.mechanism.name for n in flat_nodes]}")
            arr = np.asarray(val, dtype=float)
            m = f.mechanism
            gru = _is_gru(m)
            size = m.input_size if _is_gru(m) and not targets else m.size
            if seq:
                arr = arr[None] if arr.ndim == 2 else arr
                if arr.ndim != 3 or arr.shape[2] != size:
                    raise DataError(f"data for '{f.mechanism.name}' has shape {np.shape(val)}; expected "
                                    f"(trials, time steps, {size}) (the composition holds a GRU block)")
            else:
                if arr.ndim == 3 and arr.shape[1] == 1:
                    arr = arr[:, 0, :]
                if arr.ndim <= 1:
                    arr = arr.reshape(1, -1)
                if arr.ndim != 2 or arr.shape[1] != size:
                    raise DataError(f"input for '{f.mechanism.name}' has shape {np.shape(val)}; expected "
                                    f"(trials, {size})")
            out[f"{f.id}__{'output' if targets else 'input'}" if gru else f.id] = arr
        return out

    def evaluate(self, inputs: Mapping[Any, Any], backend: str = "numpy", execution_mode: Any = None, *,
                 num_trials: Optional[int] = None, dtype: Any = None, device: Any = None) -> Dict[str, np.ndarray]:
        """Run every trial at once; returns output node name -> (trials, size) array.

        inputs: {input node or name: (trials, size)} ((trials, time steps, size) with a GRU block). backend: a
        registered backend, 'numpy' (the reference, default), 'torch', 'llvm' or 'onnxruntime'; execution_mode:
        PsyNeuLink's ExecutionMode instead (default None; Python is 'numpy', PyTorch 'torch', LLVMRun 'llvm').
        num_trials: PsyNeuLink's (default None: every input row; else row i % len for i < num_trials). dtype:
        'float32' | 'float64' or a numpy/torch float dtype (default None: the backend's own, float64 except
        onnxruntime's float32); device: the torch backend's device (default None: CPU).
        """
        from .learning import backend_name, cycle_trials

        name = backend_name(backend, execution_mode)
        options: Dict[str, Any] = {}
        if dtype is not None:
            options["dtype"] = dtype
        if device is not None:
            if name != "torch":
                raise CompositionError(f"device={device!r} is for backend 'torch', not {name!r}")
            options["device"] = device
        if dtype is not None and name == "numpy":
            from .dtypes import dtype_name

            dtype_name(dtype, ("float64",), "numpy backend dtype")  # the reference is float64
            options.pop("dtype")
        from .backends import get_backend

        prog = self.program()
        res = get_backend(name).prepare(prog, **options).run(cycle_trials(self.input_dict(inputs), num_trials))
        return self._output_names(res)

    def _output_names(self, res: Mapping[str, Any]) -> Dict[str, Any]:
        """Program output ids -> mechanism names."""
        names: Dict[str, str] = {}
        for f in self.flatten()[0]:
            names[f"{f.id}__output" if _is_gru(f.mechanism) else f.id] = f.mechanism.name
        return {names.get(k, k): v for k, v in res.items()}

    def run(self, inputs: Mapping[Any, Any], num_trials: Optional[int] = None, backend: str = "numpy",
            execution_mode: Any = None, *, dtype: Any = None, device: Any = None) -> List[np.ndarray]:
        """PsyNeuLink's run: executes the trials, appends each trial's outputs (one array per output node, in
        get_output_nodes() order) to `results`, returns the last trial's.

        inputs: as evaluate(); PsyNeuLink's {"inputs": {...}, ...} dict form is read too (its targets ignored).
        num_trials: trials to run (default None: as many as the inputs have); trial i uses input row i % len
        (PsyNeuLink: larger repeats the inputs, smaller runs the first num_trials). backend, execution_mode,
        dtype, device: as evaluate() (defaults 'numpy', None, None, None).
        """
        inputs, _, given = split_inputs_for_run(inputs)
        outs = self.evaluate(inputs, backend=backend, execution_mode=given.get("execution_mode", execution_mode),
                             num_trials=given.get("num_trials", num_trials), dtype=dtype, device=device)
        n = len(next(iter(outs.values())))
        names = [m.name for m in self.get_output_nodes()]
        for t in range(n):
            self.results.append([outs[k][t] for k in names])
        return self.results[-1]

    def show_graph(self, output_fmt: Optional[str] = None, filename: Optional[str] = None, *,
                   show_nested: bool = True, show_projections: bool = True) -> Any:
        """Draw the composition with graphviz (PsyNeuLink's show_graph): mechanisms as nodes, projections as edges
        (labelled with their names and shapes), nested compositions and GRU blocks as clusters. Returns the
        `graphviz.Digraph`.

        output_fmt: None (default: just return the Digraph), 'jupyter' (the same; it displays itself in a
        notebook), 'source' (returns the DOT text), or a file format: 'pdf', 'png', 'svg' (rendered by graphviz's
        `dot` program) or 'dot'/'gv' (the DOT text), written to `filename` (default '<name>'; the extension is
        added when missing). show_nested: nested compositions as clusters (default True; False: one box each).
        show_projections: label edges with projection names and matrix shapes (default True). Without the `dot`
        program a rendered format writes nothing and warns that rendering needs graphviz; the returned Digraph's
        `.source` is the DOT text.
        """
        from .graphviz_render import composition_digraph, render_digraph

        graph = composition_digraph(self, show_nested=show_nested, show_projections=show_projections)
        if output_fmt in (None, "jupyter"):
            return graph
        if output_fmt == "source":
            return graph.source
        render_digraph(graph, str(output_fmt), filename or identifier(self.name))
        return graph


def split_inputs_for_run(inputs: Any) -> tuple:
    """run()'s inputs: PsyNeuLink's {"inputs": {...}, "targets": ..., ...} dict form unpacked (see
    learning.split_inputs), else as given."""
    from .learning import split_inputs

    return split_inputs(_nested_dict_form(inputs), None)


def _nested_dict_form(inputs: Any) -> Any:
    """PsyNeuLink's {nested composition: {"inputs": ..., "targets": ..., "epochs": ...}} as the plain dict form
    (only when that is the whole of `inputs`); anything else as given."""
    if isinstance(inputs, Mapping) and len(inputs) == 1:
        (key, value), = inputs.items()
        if isinstance(key, Composition) and isinstance(value, Mapping) and "inputs" in value:
            return value
    return inputs


def composition_from_mdf(doc: Any) -> Composition:
    """Rebuild a Composition from an MDF document mdfbridge wrote (Model, dict, or path).

    doc: a `modeci_mdf.mdf.Model`, its serialised dict, or an MDF file path (str, bytes or path-like; read and
    validated as load_mdf does). A document without mdfbridge's composition metadata raises SchemaError (load it
    with load_program() instead)."""
    from .importers.composition import composition_from_mdf as _rebuild

    if isinstance(doc, (str, bytes)) or hasattr(doc, "__fspath__"):
        from .document import load_document_dict

        doc = load_document_dict(doc)
    return _rebuild(doc)


def _members(obj: _Named) -> List[_Named]:
    """`obj` and, for a composition, every node and projection in it (nested ones too), in order."""
    out: List[_Named] = [obj]
    if isinstance(obj, Composition):
        for n in obj.nodes:
            out += _members(n)
        out += obj.projections
    return out


def _roots(objs: Iterable[_Named]) -> List["Composition"]:
    """The outermost compositions the objects belong to (a composition in none is its own)."""
    roots: List[Composition] = []
    seen, work = set(), list(objs)
    while work:
        o = work.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if o._owners:
            work += o._owners
        elif isinstance(o, Composition):
            roots.append(o)
    return roots


def _is_gru(m: Any) -> TypeGuard[GRUBlock]:
    return hasattr(m, "gates") and hasattr(m, "hidden_size")


def _gru_param_names(f: FlatNode) -> Dict[str, str]:
    """A GRU block's gate weight name -> its Program parameter name (gate-form node ids); {} for others."""
    m = f.mechanism
    if not _is_gru(m):
        return {}
    node = {"r": "reset", "u": "update", "n": "new"}
    return {name: f"{f.id}__{node[name[-1]]}.{name}" for name in m.gates}


class AutodiffComposition(Composition):
    """PsyNeuLink's AutodiffComposition: a Composition whose constructor takes the learning settings `learn()` uses
    unless its own arguments override them.

    name, pathways, seed: as Composition. With PsyNeuLink's defaults: learning_rate (default None: learn()'s
    0.001), optimizer_type ('sgd' (default) | 'adam', any case, or the torch.optim class), loss_spec (a Loss member
    or name; default Loss.MSE), weight_decay (default 0), synch_projection_matrices_with_torch ('run' (default) |
    'epoch' | 'minibatch'), device (learn()'s torch device; default None: CPU); and minibatch_size (default None:
    learn()'s 1). An unknown setting is refused by learn() naming the valid ones.
    """

    def __init__(self, name: Optional[str] = None, pathways: Optional[Iterable[Sequence[Any]]] = None,
                 seed: int = 0, *, learning_rate: Optional[float] = None, optimizer_type: Any = "sgd",
                 loss_spec: Any = Loss.MSE, weight_decay: Optional[float] = 0,
                 synch_projection_matrices_with_torch: Any = "run", device: Any = None,
                 minibatch_size: Optional[int] = None) -> None:
        super().__init__(name, pathways, seed)
        given = {"learning_rate": learning_rate, "optimizer_type": optimizer_type, "loss_spec": loss_spec,
                 "weight_decay": weight_decay, "minibatch_size": minibatch_size,
                 "synch_projection_matrices": synch_projection_matrices_with_torch}
        self.learning_settings = {k: v for k, v in given.items() if v is not None}
        make_config(None, self.learning_settings, error=CompositionError, where=f"AutodiffComposition '{self.name}'"
                    ).check()  # a wrong spelling is refused here, naming the valid ones
        self.device = device


Composition.learn.__doc__ = (Composition.learn.__doc__ or "") + "\n        " + \
    LEARN_ARGUMENTS_DOC.replace("\n    ", "\n        ") + "\n"
