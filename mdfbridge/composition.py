"""PsyNeuLink-style composition API: mechanisms, projections, pathways, nesting, bias nodes, run."""
from __future__ import annotations

import enum
import itertools
import keyword
import logging
import re
from dataclasses import dataclass, replace
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

from .errors import CompositionError, DataError, UnsupportedError
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


class NodeRole(enum.Enum):
    """PsyNeuLink's NodeRole (every member name of PsyNeuLink 0.21's), for Composition.get_nodes_by_role. Those
    with a meaning here: INPUT, ORIGIN, OUTPUT, TERMINAL, SINGLETON, INTERNAL, BIAS; the others name PsyNeuLink's
    learning, control and feedback machinery and are refused by get_nodes_by_role."""

    ORIGIN = 1
    INPUT = 2
    SINGLETON = 3
    BIAS = 4
    INTERNAL = 5
    CYCLE = 6
    FEEDBACK_SENDER = 7
    FEEDBACK_RECEIVER = 8
    CONTROL_OBJECTIVE = 9
    CONTROLLER = 10
    CONTROLLER_OBJECTIVE = 11
    LEARNING = 12
    SAMPLE = 13
    TARGET_INPUT = 14
    TARGET_INTERNAL = 15
    LEARNING_OBJECTIVE = 16
    PROBE = 17
    OUTPUT = 18
    TERMINAL = 19


_ROLE_FLAGS: Dict[NodeRole, Callable[[Dict[str, bool]], bool]] = {
    NodeRole.INPUT: lambda f: f["input"], NodeRole.ORIGIN: lambda f: f["input"],
    NodeRole.OUTPUT: lambda f: f["output"], NodeRole.TERMINAL: lambda f: f["output"],
    NodeRole.SINGLETON: lambda f: f["input"] and f["output"],
    NodeRole.INTERNAL: lambda f: not (f["input"] or f["output"] or f["bias"]),
    NodeRole.BIAS: lambda f: f["bias"]}


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


class ProcessingMechanism(TransferMechanism):
    """PsyNeuLink's ProcessingMechanism: a mechanism applying a transfer function (default Linear(), the identity)
    to the sum of its afferents; takes TransferMechanism's arguments (name, size, function, input_shapes,
    default_variable; see there). Written to MDF and rebuilt as a TransferMechanism (the same function)."""


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
        self._matrix: Optional[np.ndarray] = None
        if matrix is not None and not isinstance(matrix, str):
            self.matrix = np.array(matrix, dtype=float)
            assert self.matrix is not None
            if self.matrix.ndim != 2:
                raise CompositionError(f"projection '{self.name}': matrix must be 2-D, got shape {self.matrix.shape}")
            if not np.all(np.isfinite(self.matrix)):
                raise CompositionError(f"projection '{self.name}': matrix contains NaN or infinite values")

    def __repr__(self) -> str:
        return f"MappingProjection({self.name!r})"

    @property
    def matrix(self) -> Optional[np.ndarray]:
        """The (sender size x receiver size) weights, None until the composition is flattened when built from a
        spec. A WeightMatrix: a float ndarray whose `.base` is the array itself, as PsyNeuLink's
        `proj.matrix.base` reads it (numpy's own `.base` would be None)."""
        return self._matrix

    @matrix.setter
    def matrix(self, value: Any) -> None:
        self._matrix = None if value is None else np.array(value, dtype=float).view(WeightMatrix)

    @property
    def parameters(self) -> "ProjectionParameters":
        """PsyNeuLink's `proj.parameters.matrix.get(comp)` / `.set(value, comp)` (the context is not needed:
        mdfbridge keeps one value)."""
        return ProjectionParameters(self)

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


class WeightMatrix(np.ndarray):
    """A projection's matrix: a float ndarray whose `.base` is the array (PsyNeuLink's `proj.matrix.base`); the
    results of arithmetic on it are plain ndarrays."""

    @property  # type: ignore[override]
    def base(self) -> np.ndarray:  # type: ignore[override]
        """The weights as a plain ndarray (a view of this one)."""
        return self.view(np.ndarray)

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: bool = False) -> Any:
        return arr.view(np.ndarray) if isinstance(arr, np.ndarray) else arr


class _MatrixParameter:
    """PsyNeuLink's `proj.parameters.matrix`: get(context) / set(value, context)."""

    def __init__(self, projection: Any) -> None:
        self.projection = projection

    def get(self, context: Any = None) -> np.ndarray:
        """The weights (a copy). context: PsyNeuLink's composition or context, accepted and not needed (default
        None). A matrix not yet made from its spec (the composition was never flattened) raises CompositionError."""
        matrix = self.projection.matrix
        if matrix is None:
            raise CompositionError(f"projection '{self.projection.name}': its matrix is made from a spec when its "
                                   "composition is first flattened (run, learn, program() or to_mdf())")
        return np.array(matrix, dtype=float)

    def set(self, value: Any, context: Any = None) -> None:
        """Set the weights. value: an array-like of the matrix's shape; context: accepted, not needed (default
        None). A shape that does not match raises CompositionError."""
        value = np.array(value, dtype=float)
        matrix = self.projection.matrix
        if matrix is not None and value.shape != matrix.shape:
            raise CompositionError(f"projection '{self.projection.name}': matrix shape {value.shape}, expected "
                                   f"{matrix.shape}")
        self.projection.matrix = value


class ProjectionParameters:
    """PsyNeuLink's `proj.parameters`: `.matrix` (get / set). projection: the MappingProjection (or GRU weight) whose
    matrix it reads and writes."""

    def __init__(self, projection: Any) -> None:
        self.matrix = _MatrixParameter(projection)


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
        self.results: List[np.ndarray] = []  # one entry per trial run or trained (PsyNeuLink's results)
        self.losses: List[float] = []
        self.learn_result: Any = None  # the last learn()'s LearnResult
        self.learning_results: Any = None  # the last learn()'s final-epoch results entries (PsyNeuLink's)
        self.torch_losses: np.ndarray = np.zeros((0, 1))
        self.torch_sample_values: List[np.ndarray] = []
        self.torch_targets: List[np.ndarray] = []
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
            n = _gru_side(n, end)
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
        node = _gru_side(node, end)
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

    def get_nodes_by_role(self, role: Any, scope: Any = None) -> List[Mechanism]:
        """PsyNeuLink's get_nodes_by_role: the mechanisms with a NodeRole, in flattened order.

        role: a NodeRole member, PsyNeuLink's own NodeRole member or its name ('OUTPUT'): INPUT and ORIGIN (the
        mechanisms receiving no projection, get_input_nodes()), OUTPUT and TERMINAL (sending none,
        get_output_nodes()), SINGLETON (receiving and sending none), INTERNAL (receiving and sending projections;
        bias nodes excluded), BIAS (BiasMechanism nodes). scope: PsyNeuLink's None (top level) or ALL (nested
        too), accepted; mdfbridge flattens nested compositions, so their mechanisms are returned in either case
        (PsyNeuLink returns a nested composition itself at top level). Roles of PsyNeuLink's learning, control
        and feedback machinery, which mdfbridge compositions do not hold, raise UnsupportedError naming what
        mdfbridge has instead."""
        name = str(getattr(role, "name", role)).split(".")[-1].upper()
        if name not in NodeRole.__members__:
            raise UnsupportedError(f"unknown NodeRole {role!r}; use one of {', '.join(NodeRole.__members__)}")
        member = NodeRole[name]
        if member not in _ROLE_FLAGS:
            raise UnsupportedError(
                f"NodeRole.{name} names PsyNeuLink's learning, control or feedback machinery, which an mdfbridge "
                "composition does not hold (targets go to learn() keyed by output node; compositions are "
                f"acyclic); roles here: {', '.join(r.name for r in _ROLE_FLAGS)}")
        flat = self.flatten()
        roles = self._roles(flat)
        inputs, outputs = set(roles["input"]), set(roles["output"])
        out: List[Mechanism] = []
        for f in flat[0]:
            bias = isinstance(f.mechanism, BiasMechanism)
            flags = {"input": f.id in inputs, "output": f.id in outputs, "bias": bias}
            if _ROLE_FLAGS[member](flags):
                out.append(f.mechanism)
        return out

    def infer_backpropagation_learning_pathways(self, execution_mode: Any = None, context: Any = None,
                                                base_context: Any = None) -> List[Any]:
        """PsyNeuLink's: builds the backpropagation pathways (input to output node) and their target nodes before
        learning. mdfbridge's learn() trains every learnable projection between the input and output nodes
        from the graph itself on each call, so this changes nothing; it returns [] (PsyNeuLink returns its target
        and loss mechanisms, which mdfbridge has none of: targets go to learn() keyed by output node).
        execution_mode, context, base_context: PsyNeuLink's, accepted (default None)."""
        log.debug("infer_backpropagation_learning_pathways: nothing to do (learn() reads the graph)")
        return []

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
              synch_node_values_with_torch: Any = "run", synch_node_variables_with_torch: Any = None,
              synch_results_with_torch: Any = "run", retain_torch_sample_values: Any = "minibatch",
              retain_torch_trained_outputs: Any = None, retain_torch_targets: Any = "minibatch",
              retain_torch_losses: Any = "minibatch", algorithm: Any = None, learnable: Optional[Any] = None,
              checkpoint: Optional[Any] = None, resume: Optional[bool] = None, **other: Any) -> np.ndarray:
        """AutodiffComposition.learn: train; returns, as PsyNeuLink 0.21 does, the last trained trial's output
        values: an ndarray with one row per output node (get_output_nodes() order), float of shape (outputs, size)
        when the output nodes have one size, else an object array of the per-node arrays.

        inputs: {node: trials}; targets: {output node: trials} (default None: none, an error unless the targets are
        in PsyNeuLink's inputs dict); epochs (default 1); minibatch_size (default None: 1); the other settings as in
        README's list (`learning.SETTING_ARGS`); algorithm, learnable, checkpoint, resume: as
        `mdfbridge.learning.learn`'s (default None each: Backprop, nothing more learnable, no checkpoint).

        Bookkeeping after learn, as PsyNeuLink's: `results` gets one entry per trained trial of every epoch (the
        outputs of its forward pass, before its minibatch's update, in training order; e.g. 12 after 3 epochs of 4
        trials), each in the form learn() returns; `learning_results` holds the final epoch's entries (trials,
        outputs, size) (PsyNeuLink, with minibatch_size > 1, keeps other values there); `torch_losses` (each
        minibatch's loss, (minibatches, 1)), `torch_sample_values` and `torch_targets` (lists, one (trials in the
        minibatch, outputs, size) array per minibatch) per the retain_* arguments. mdfbridge's own: `learn_result`
        (the LearnResult; its outputs and executed_outputs keyed by output node name), `learn_result.outputs`
        (output node name -> (trials, size), the final epoch in trial order; what learn() returned before) and
        `losses` (each minibatch's loss).

        PsyNeuLink's bookkeeping arguments, each a LearningScale name in any case ('minibatch', 'EPOCH', ...), its
        member, or None: synch_node_values_with_torch (default 'run') and synch_node_variables_with_torch (default
        None) change nothing here (mdfbridge's mechanisms hold no values; a log line says so);
        synch_results_with_torch (default 'run'): every scale gives the same `results` (as in PsyNeuLink 0.21);
        retain_torch_sample_values (0.13's spelling: retain_torch_trained_outputs, default None: the former),
        retain_torch_targets, retain_torch_losses (defaults 'minibatch'): None keeps nothing in
        torch_sample_values / torch_targets / torch_losses, any scale keeps every minibatch's (as PsyNeuLink 0.21).
        execution_mode=ExecutionMode.Python is refused (PsyNeuLink's Python-mode learning is not its PyTorch
        mode's arithmetic).

        Inputs and targets are keyed by node (or its name); a nested composition stands for its single input
        node, and `{nested: {"inputs": ..., "targets": ...}}` (PsyNeuLink's nested form) is read as that dict form.
        A setting left at None takes the AutodiffComposition's constructor value where it has one, else learn()'s
        default. Raises DataError for data that do not fit the composition (naming the node),
        CompositionError for an unknown
        setting.
        """
        from .learning import backend_name, cycle_trials, make_config, read_learn_call, train_program
        from .pnl_records import LearnRecords, refuse_python_mode_learning

        refuse_python_mode_learning(execution_mode, inputs)
        records = LearnRecords.from_arguments(
            synch_node_values_with_torch=synch_node_values_with_torch,
            synch_node_variables_with_torch=synch_node_variables_with_torch,
            synch_results_with_torch=synch_results_with_torch, retain_torch_sample_values=retain_torch_sample_values,
            retain_torch_trained_outputs=retain_torch_trained_outputs, retain_torch_targets=retain_torch_targets,
            retain_torch_losses=retain_torch_losses)
        inputs, targets, num_trials, execution_mode, settings = read_learn_call(_nested_dict_form(inputs), targets,
                                                                                locals(), other)
        config = make_config(None, {**self.learning_settings, **settings}, error=CompositionError)
        if config.randomize_minibatch and config.seed is None:  # a drawn seed, so the shuffled order is known
            config = make_config(config, {"seed": int(np.random.SeedSequence().generate_state(1)[0])})
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
        records.store(self, result, t, config, self._output_program_ids())
        self.learn_result = replace(result, outputs=self._output_names(result.outputs),
                                    executed_outputs=[self._output_names(o) for o in result.executed_outputs])
        return cast(np.ndarray, self.results[-1])

    def _output_program_ids(self) -> List[str]:
        """The Program output ids of get_output_nodes(), in that order."""
        ids = {id(f.mechanism): (f"{f.id}__output" if _is_gru(f.mechanism) else f.id) for f in self.flatten()[0]}
        return [ids[id(m)] for m in self.get_output_nodes()]

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
            prog.params[f"{p.id}.matrix"].value = np.asarray(p.matrix)
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
            side = getattr(key, "side", None) if hasattr(key, "block") else None
            if side is not None and (side == "output") != targets:
                raise DataError(f"{'targets' if targets else 'inputs'} given for {key.name!r}, the GRU block's "
                                f"{side} node; {'inputs' if side == 'input' else 'targets'} go there")
            if side is not None:
                key = key.block
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
                if arr.ndim == 2 and targets:
                    log.warning("targets for '%s' of shape %s are read as one sequence of %d time steps; "
                                "PsyNeuLink's learn() takes each row as a trial of one step from h0 (for that, pass "
                                "GRUComposition.trials_as_learning_sequences() of inputs and targets)",
                                f.mechanism.name, arr.shape, arr.shape[0])
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
            execution_mode: Any = None, *, dtype: Any = None, device: Any = None) -> np.ndarray:
        """PsyNeuLink's run: executes the trials, appends each trial's output values to `results` and returns the
        last trial's, as PsyNeuLink 0.21: an ndarray with one row per output node (get_output_nodes() order),
        float (outputs, size) when the output nodes have one size, else an object array of the per-node arrays
        (with a GRU block each row is the node's (time steps, size) sequence).

        inputs: as evaluate(); PsyNeuLink's {"inputs": {...}, ...} dict form is read too (its targets ignored).
        num_trials: trials to run (default None: as many as the inputs have); trial i uses input row i % len
        (PsyNeuLink: larger repeats the inputs, smaller runs the first num_trials). backend, execution_mode,
        dtype, device: as evaluate() (defaults 'numpy', None, None, None).
        """
        inputs, _, given = split_inputs_for_run(inputs)
        outs = self.evaluate(inputs, backend=backend, execution_mode=given.get("execution_mode", execution_mode),
                             num_trials=given.get("num_trials", num_trials), dtype=dtype, device=device)
        from .pnl_records import trial_value

        n = len(next(iter(outs.values())))
        names = [m.name for m in self.get_output_nodes()]
        for t in range(n):
            self.results.append(trial_value([outs[k][t] for k in names]))
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


def _one_composition(compositions: Any, fn: str, simple_edge_format: bool) -> "Composition":
    """The single composition of PsyNeuLink's get_mdf_serialized / write_mdf_file arguments."""
    comps = list(compositions) if isinstance(compositions, (list, tuple)) else [compositions]
    if len(comps) == 1 and isinstance(comps[0], (list, tuple)):
        comps = list(comps[0])
    if len(comps) != 1 or not isinstance(comps[0], Composition):
        raise UnsupportedError(f"{fn}: mdfbridge writes one composition per MDF document, got "
                               f"{len(comps)} object(s); call it once per composition")
    if simple_edge_format is not True:
        raise UnsupportedError(f"{fn}: simple_edge_format=False (PsyNeuLink's edges through extra nodes) is not "
                               "written by mdfbridge; its documents use plain MDF edges")
    return cast(Composition, comps[0])


def get_mdf_serialized(*compositions: Any, fmt: str = "json", simple_edge_format: bool = True) -> str:
    """PsyNeuLink's get_mdf_serialized: the composition's MDF document as JSON (or YAML) text, the same text
    `comp.save_mdf(path)` writes.

    compositions: one Composition (PsyNeuLink takes several disjoint ones; mdfbridge writes one per document and
    raises UnsupportedError for more); fmt: 'json' (default), 'yaml' or 'yml'; simple_edge_format: PsyNeuLink's,
    only its default True (mdfbridge's plain edges) is accepted. Another fmt raises UnsupportedError."""
    import tempfile
    from pathlib import Path

    comp = _one_composition(compositions, "get_mdf_serialized", simple_edge_format)
    ext = {"json": "json", "yaml": "yaml", "yml": "yaml"}.get(str(fmt).lower())
    if ext is None:
        raise UnsupportedError(f"get_mdf_serialized: fmt must be 'json', 'yaml' or 'yml', got {fmt!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"model.{ext}"
        comp.save_mdf(path)
        return path.read_text(encoding="utf-8")


def write_mdf_file(compositions: Any, filename: str, path: Optional[str] = None, fmt: Optional[str] = None,
                   simple_edge_format: bool = True) -> None:
    """PsyNeuLink's write_mdf_file: write the composition's MDF document (as `comp.save_mdf`).

    compositions: a Composition or a list of one (more raise UnsupportedError); filename: the file name; path:
    its folder (default None: filename as given, relative to the working directory); fmt: 'json', 'yaml' or
    'yml' (default None: from filename's extension, 'json' when it has none (the name gets '.json' then));
    simple_edge_format: only PsyNeuLink's default True is accepted. A fmt that does not match filename's
    extension raises UnsupportedError (mdfbridge picks the format from the extension)."""
    import os

    comp = _one_composition(compositions, "write_mdf_file", simple_edge_format)
    target = os.path.join(path, filename) if path is not None else filename
    ext = os.path.splitext(target)[1].lstrip(".").lower()
    if fmt is not None:
        want = str(fmt).lower()
        if want not in ("json", "yaml", "yml"):
            raise UnsupportedError(f"write_mdf_file: fmt must be 'json', 'yaml' or 'yml', got {fmt!r}")
        if ext and {ext, want} - {"yaml", "yml"} and ext != want:
            raise UnsupportedError(f"write_mdf_file: fmt={fmt!r} does not match {target!r}'s extension; mdfbridge "
                                   "picks the format from the extension")
        if not ext:
            target, ext = f"{target}.{want}", want
    if not ext:
        target += ".json"
    comp.save_mdf(target)


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


def _gru_side(node: Any, end: str) -> Any:
    """A GRUComposition's input_node / output_node (a GRUNode) as its block; anything else as given. end: the
    projection end it is used as ('sender' or 'receiver'); a GRU input node as a sender, or an output node as a
    receiver, raises CompositionError."""
    if hasattr(node, "block") and hasattr(node, "side") and _is_gru(node.block):
        if (node.side == "input") != (end == "receiver"):
            raise CompositionError(f"{node.name!r} is the GRU block's {node.side} node; it cannot be a projection's "
                                   f"{end}")
        return node.block
    return node


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
    0.001), optimizer_type ('sgd' (default) | 'adam' | 'adamw', any case, or the torch.optim class), loss_spec (a
    Loss member or name; default Loss.MSE), weight_decay (default 0), synch_projection_matrices_with_torch ('run'
    (default) | 'epoch' | 'minibatch'), device (learn()'s torch device; default None: CPU); and minibatch_size
    (default None: learn()'s 1). An unknown setting is refused by learn() naming the valid ones.
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
