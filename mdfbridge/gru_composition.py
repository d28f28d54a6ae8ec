"""PsyNeuLink's GRUComposition: a GRU block usable on its own or nested between other nodes."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from .composition import (
    Composition,
    CompositionError,
    FlatNode,
    Mechanism,
    ProjectionParameters,
    WeightMatrix,
    identifier,
)
from .errors import DataError
from .gru import BIAS_NAMES, PNL_GATE, WEIGHT_NAMES, gates_to_torch, torch_param_of, torch_to_gates

OPTIMIZER_KEYS = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}


class GRUWeights:
    """One gate weight or bias (e.g. `wts_ir`), a view on the block's arrays with PsyNeuLink's name."""

    def __init__(self, block: "GRUBlock", name: str) -> None:
        self.block, self.name = block, name

    @property
    def matrix(self) -> np.ndarray:
        """The (sender x receiver) matrix (or bias vector), a view whose `.base` is the array (PsyNeuLink's
        `proj.matrix.base`)."""
        return self.block.gates[self.name].view(WeightMatrix)

    @matrix.setter
    def matrix(self, value: Any) -> None:
        value = np.array(value, dtype=float)
        if value.shape != self.block.gates[self.name].shape:
            raise CompositionError(f"{self.name}: shape {value.shape}, expected {self.block.gates[self.name].shape}")
        self.block.gates[self.name] = value

    @property
    def parameters(self) -> ProjectionParameters:
        """PsyNeuLink's `proj.parameters.matrix.get(comp)` / `.set(value, comp)`."""
        return ProjectionParameters(self)

    @property
    def torch_slice(self) -> str:
        """Where this lives in torch.nn.GRU: e.g. 'weight_ih_l0[0:H].T' for wts_ir."""
        H = self.block.hidden_size
        k = "rzn".index({"r": "r", "u": "z", "n": "n"}[self.name[-1]])
        param = ("weight_" if self.name.startswith("wts") else "bias_") + ("ih" if self.name[-2] == "i" else "hh")
        return f"{param}_l0[{k * H}:{(k + 1) * H}]" + (".T" if self.name.startswith("wts") else "")

    def __repr__(self) -> str:
        return f"GRUWeights({self.name!r}, shape={self.matrix.shape})"


class GRUBlock(Mechanism):
    """The flattened form of a GRUComposition: one node of `hidden_size` values fed by `input_size` values.

    name: the block's name (GRUComposition passes its own); input_size, hidden_size: the sizes (ints >= 1);
    bias: whether the gates have biases (bias_ir ... bias_hn); seed: the seed of the initial weights and biases,
    drawn as torch.nn.GRU does, uniform in (-1/sqrt(hidden_size), 1/sqrt(hidden_size)) from
    numpy.random.default_rng(seed) (None: fresh entropy, different weights every time). All arguments are
    required. The initial hidden state `h0` is zeros.
    """

    def __init__(self, name: str, input_size: int, hidden_size: int, bias: bool, seed: Optional[int]) -> None:
        super().__init__(name, hidden_size)
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.hidden_size)  # torch.nn.GRU's initialisation: U(-1/sqrt(H), 1/sqrt(H))
        self.gates: Dict[str, np.ndarray] = {}
        for n in WEIGHT_NAMES:
            rows = self.input_size if n.startswith("wts_i") else self.hidden_size
            self.gates[n] = rng.uniform(-k, k, (rows, self.hidden_size))
        if self.bias:
            for n in BIAS_NAMES:
                self.gates[n] = rng.uniform(-k, k, self.hidden_size)
        self.h0 = np.zeros(self.hidden_size)
        self.enable_learning = True
        self.frozen: tuple = ()
        self.learning_rates: Dict[str, Optional[float]] = {}


def _trials(trials: Any) -> np.ndarray:
    """A (trials, size) float array from (trials, size) or (trials, 1, size); DataError otherwise."""
    arr = np.asarray(trials, dtype=float)
    if arr.ndim == 3 and arr.shape[1] == 1:
        arr = arr[:, 0, :]
    if arr.ndim != 2:
        raise DataError(f"PsyNeuLink's GRU trials are (trials, size) (one time step each), got shape {arr.shape}")
    return arr


class GRUNode:
    """A GRUComposition's input_node or output_node (PsyNeuLink's INPUT / OUTPUT ProcessingMechanisms): one side
    of the block, distinct objects so that `{g.input_node: X}` and `{g.output_node: T}` never collide.

    block: the GRUBlock; side: 'input' (size input_size) or 'output' (size hidden_size)."""

    def __init__(self, block: GRUBlock, side: str) -> None:
        self.block, self.side = block, side
        self.name = f"{block.name} {side.upper()}"
        self.size = block.input_size if side == "input" else block.hidden_size

    def __repr__(self) -> str:
        return f"GRUNode({self.block.name!r}, {self.side!r}, size={self.size})"


# PsyNeuLink's GRUComposition learning_rate dict keys (its INPUT_TO_HIDDEN ... constants) -> optimizer_params key
RATE_KEYS = {"INPUT TO HIDDEN": "w_ih", "HIDDEN TO HIDDEN": "w_hh", "BIAS INPUT TO HIDDEN": "b_ih",
             "BIAS HIDDEN TO HIDDEN": "b_hh"}
DEFAULT_LEARNING_RATE = "default_learning_rate"  # PsyNeuLink's DEFAULT_LEARNING_RATE key
# PsyNeuLink's names of the individual gate projections (its INPUT_TO_RESET ... constants): refused as keys
GATE_PROJECTION_NAMES = {"INPUT TO RESET WEIGHTS": "INPUT TO HIDDEN", "INPUT TO UPDATE WEIGHTS": "INPUT TO HIDDEN",
                         "INPUT TO NEW WEIGHTS": "INPUT TO HIDDEN", "HIDDEN TO RESET WEIGHTS": "HIDDEN TO HIDDEN",
                         "HIDDEN TO UPDATE WEIGHTS": "HIDDEN TO HIDDEN", "HIDDEN TO NEW WEIGHTS": "HIDDEN TO HIDDEN"}


def _read_rate_dict(name: str, rates: Mapping[Any, Any], optimizer_params: Optional[Mapping[str, Any]],
                    bias: bool) -> Tuple[Any, Dict[str, Any]]:
    """(default rate, optimizer_params) from PsyNeuLink's learning_rate dict: keys 'INPUT TO HIDDEN'
    (weight_ih_l0), 'HIDDEN TO HIDDEN' (weight_hh_l0), 'BIAS INPUT TO HIDDEN' (bias_ih_l0), 'BIAS HIDDEN TO
    HIDDEN' (bias_hh_l0) (or their constant names, 'INPUT_TO_HIDDEN', ...) and 'default_learning_rate'; values
    as optimizer_params takes them. Bias keys on a block without bias, gate projection names ('INPUT TO RESET
    WEIGHTS', ...: PsyNeuLink refuses them too), keys optimizer_params also sets, and other keys raise
    CompositionError."""
    params = dict(optimizer_params or {})
    default: Any = None
    for key, value in rates.items():
        text = str(getattr(key, "name", key))
        spaced = text.replace("_", " ").upper()
        if text == DEFAULT_LEARNING_RATE or spaced == "DEFAULT LEARNING RATE":
            default = value
            continue
        if spaced in GATE_PROJECTION_NAMES:
            raise CompositionError(f"GRUComposition '{name}': learning_rate for the single projection {text!r} "
                                   f"is not supported (as in PsyNeuLink); use '{GATE_PROJECTION_NAMES[spaced]}' "
                                   "for all such weights")
        short = RATE_KEYS.get(spaced)
        if short is None:
            raise CompositionError(f"GRUComposition '{name}': learning_rate dict key {text!r} unknown; use "
                                   f"{', '.join(map(repr, RATE_KEYS))} or {DEFAULT_LEARNING_RATE!r}")
        if short.startswith("b_") and not bias:
            raise CompositionError(f"GRUComposition '{name}': learning_rate for {text!r} but bias=False; remove it "
                                   "or set bias=True")
        if short in params:
            raise CompositionError(f"GRUComposition '{name}': {text!r} in learning_rate and '{short}' in "
                                   "optimizer_params both set that parameter's rate; give one")
        params[short] = value
    return default, params


class GRUComposition(Composition):
    """GRU block (PsyNeuLink's GRUComposition): reset, update and new gates, a recurrent hidden layer.

    Runs as one torch GRU in learn(); in MDF it is written in gate form (modeci-mdf's engine steps it) or, with
    `convert --gru onnx`, as one `onnx::GRU` node. Inputs are sequences: (trials, time steps, input_size).

    input_size: values per time step of the input (default 1); hidden_size: units of the hidden layer, the
    output's size (default 1); bias: gate biases bias_ir ... bias_hn (default False: none, as PsyNeuLink's);
    enable_learning: whether learn() trains the block (default True; False freezes every weight);
    learning_rate: the block's own rate for learn() (default None: learn()'s; True: the same; False: frozen; a
    number: that rate; a dict: PsyNeuLink's per-parameter rates keyed 'INPUT TO HIDDEN' (weight_ih_l0), 'HIDDEN TO
    HIDDEN' (weight_hh_l0), 'BIAS INPUT TO HIDDEN' (bias_ih_l0), 'BIAS HIDDEN TO HIDDEN' (bias_hh_l0) and
    'default_learning_rate' (the others' rate; default None), read as optimizer_params); optimizer_params:
    per-parameter overrides keyed 'w_ih', 'w_hh', 'b_ih', 'b_hh' (torch's weight_ih_l0 ... bias_hh_l0), each a
    rate, None/True (learning_rate's) or False (frozen) (default None: none; other keys raise CompositionError);
    name: the composition's and block's name (default 'GRU'); seed: the seed of the initial weights, as
    torch.nn.GRU draws them (default None: fresh entropy, so two unseeded blocks differ; the composition's own
    seed is then 0); initial_hidden: the hidden state before the first time step,
    a scalar or a (hidden_size,) array-like (default None: zeros).
    """

    def __init__(self, input_size: int = 1, hidden_size: int = 1, bias: bool = False, enable_learning: bool = True,
                 learning_rate: Any = None, optimizer_params: Optional[Mapping[str, Any]] = None,
                 name: str = "GRU", seed: Optional[int] = None, initial_hidden: Any = None) -> None:
        if isinstance(learning_rate, Mapping):
            learning_rate, optimizer_params = _read_rate_dict(name, learning_rate, optimizer_params, bias)
        super().__init__(name, seed=seed or 0)
        self.block = GRUBlock(name, input_size, hidden_size, bias, seed)
        if initial_hidden is not None:
            self.block.h0 = np.broadcast_to(np.asarray(initial_hidden, dtype=float), (hidden_size,)).copy()
        self.add_node(self.block)
        self._input_node, self._output_node = GRUNode(self.block, "input"), GRUNode(self.block, "output")
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        self.enable_learning = enable_learning
        self.learning_rate = learning_rate
        self.optimizer_params = dict(optimizer_params or {})
        unknown = set(self.optimizer_params) - set(OPTIMIZER_KEYS)
        if unknown:
            raise CompositionError(f"GRUComposition optimizer_params keys {sorted(unknown)} unknown; use "
                                   f"{sorted(OPTIMIZER_KEYS)}")
        for n in WEIGHT_NAMES + (BIAS_NAMES if bias else ()):
            setattr(self, n, GRUWeights(self.block, n))
        self.block.enable_learning = bool(enable_learning)
        self.block.learning_rates = self.parameter_learning_rates()
        self.block.frozen = tuple(n for n in WEIGHT_NAMES + BIAS_NAMES
                                  if self.block.learning_rates.get(torch_param_of(n)) is False)

    def flatten(self, _prefix: tuple = ()) -> tuple:
        """One flat node, the block, with id = the nesting path (`GRU`, or `outer_child__GRU` ...); no projections.
        Returns ([FlatNode], [])."""
        path = _prefix + (self.name,)
        fid = "__".join(identifier(p) for p in path[1:]) or identifier(self.name)
        return [FlatNode(fid, self.block, path)], []

    # PsyNeuLink's node attributes: distinct input and output nodes (PsyNeuLink's INPUT and OUTPUT
    # ProcessingMechanisms), each standing for one side of the block in inputs, targets and projections
    @property
    def input_node(self) -> "GRUNode":
        """PsyNeuLink's INPUT node: the block's input (input_size values per time step). As a key of inputs it
        takes the input sequences; as a projection's receiver it is the block."""
        return self._input_node

    @property
    def output_node(self) -> "GRUNode":
        """PsyNeuLink's OUTPUT node: the block's hidden state at every time step (hidden_size values). As a key of
        targets it takes the target sequences; as a projection's sender it is the block. Given as a key of
        inputs it raises DataError (targets go in learn()'s targets)."""
        return self._output_node

    @property
    def hidden_layer_node(self) -> GRUBlock:
        """The recurrent hidden layer (its values are the output node's)."""
        return self.block

    reset_node = update_node = new_node = hidden_layer_node

    # PsyNeuLink's trial-per-time-step form. PsyNeuLink runs a GRUComposition one time step per trial: run() over
    # trials (T, input_size) carries the hidden state from trial to trial (one sequence of T steps; measured equal
    # to mdfbridge's (1, T, input_size) to 1e-15), while learn() starts every trial from h0 (N sequences of one
    # step each). mdfbridge takes (trials, time steps, size) sequences; these give PsyNeuLink's layouts in it.
    @staticmethod
    def trials_as_sequence(trials: Any) -> np.ndarray:
        """PsyNeuLink run()'s trials, one time step each, as mdfbridge's one sequence: (T, size) -> (1, T, size).

        trials: a (T, size) array-like (a (T, 1, size) one is read as (T, size)); anything else raises DataError.
        mdfbridge's run() then steps the T time steps from h0, as PsyNeuLink's run() steps its T trials (PsyNeuLink
        also carries the hidden state into a following run() call; mdfbridge starts each run from h0)."""
        return _trials(trials)[None]

    @staticmethod
    def trials_as_learning_sequences(trials: Any) -> np.ndarray:
        """PsyNeuLink learn()'s trials, each from h0, as mdfbridge's sequences of one step: (N, size) ->
        (N, 1, size), for inputs (input_size) and targets (hidden_size) alike.

        trials: a (N, size) array-like (a (N, 1, size) one is taken as it is); anything else raises DataError."""
        return _trials(trials)[:, None, :]

    def parameter_learning_rates(self) -> Dict[str, Any]:
        """torch GRU parameter -> learning rate (None: learn()'s rate; False: frozen), by PsyNeuLink's rules."""
        default: Any = self.learning_rate
        if default is True:
            default = None
        out: Dict[str, Any] = {}
        for key, param in OPTIMIZER_KEYS.items():
            spec = self.optimizer_params.get(key, None)
            if not self.enable_learning:
                out[param] = False
            elif spec is False:
                out[param] = False
            elif spec is None or spec is True:
                out[param] = False if default is False else default
            else:
                out[param] = float(spec)
        return out

    def torch_parameters(self) -> Dict[str, np.ndarray]:
        """The block's weights as torch.nn.GRU's parameters (weight_ih_l0, ...)."""
        return gates_to_torch(self.block.gates)

    def set_torch_parameters(self, params: Mapping[str, Any]) -> None:
        """Set the block's weights from torch.nn.GRU parameters (numpy or tensors).

        params: torch.nn.GRU parameter name -> array or tensor: weight_ih_l0 (3 * hidden_size, input_size) and
        weight_hh_l0 (3 * hidden_size, hidden_size), gates in torch's r, z, n order, and for a block with bias
        bias_ih_l0 / bias_hh_l0 (3 * hidden_size,), e.g. `dict(torch.nn.GRU(...).named_parameters())` or
        `torch_parameters()`'s. Raises CompositionError, naming the block, for missing or extra names (biases on
        a block without bias, or none on one with bias) and for shapes that do not match the block's sizes."""
        H, I = self.block.hidden_size, self.block.input_size
        want: Dict[str, Tuple[int, ...]] = {"weight_ih_l0": (3 * H, I), "weight_hh_l0": (3 * H, H)}
        if self.block.bias:
            want.update({"bias_ih_l0": (3 * H,), "bias_hh_l0": (3 * H,)})
        if set(params) != set(want):
            raise CompositionError(f"GRU block '{self.name}' (bias={self.block.bias}) takes torch.nn.GRU parameters "
                                   f"{', '.join(want)}; got {', '.join(params) or 'none'}")
        arrays = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=float)
                  for k, v in params.items()}
        for k, shape in want.items():
            if arrays[k].shape != shape:
                raise CompositionError(f"GRU block '{self.name}' (input_size={I}, hidden_size={H}): {k} has shape "
                                       f"{arrays[k].shape}, expected {shape}")
        for n, v in torch_to_gates(arrays).items():
            self.block.gates[n] = v.astype(float)


__all__ = ["GRUComposition", "GRUBlock", "GRUNode", "GRUWeights", "PNL_GATE"]
