"""Tracing a torch module: `torch.fx.symbolic_trace` first, `torch.export.export` when fx cannot trace it (never
TorchScript), and what the graph walk reads off a traced node (shape, module path, printable target)."""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import torch
from torch import nn

from ...errors import UnsupportedError
from .registry import callable_name
from .values import Weight

log = logging.getLogger(__name__)

# aten ops of recurrent layers (torch.export); with one of them every tensor has a time axis after the batch axis
_RECURRENT_ATEN = (torch.ops.aten.gru, torch.ops.aten.gru_cell, torch.ops.aten.lstm, torch.ops.aten.lstm_cell,
                   torch.ops.aten.rnn_tanh, torch.ops.aten.rnn_tanh_cell, torch.ops.aten.rnn_relu,
                   torch.ops.aten.rnn_relu_cell)

_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


@dataclass
class Trace:
    """A traced graph with what the walk needs: tensor shapes, parameter values, module paths."""

    graph: Any  # torch.fx.Graph
    tracer: str  # 'fx' | 'export'
    root: nn.Module  # where call_module targets and get_attr paths resolve (the GraphModule for fx)
    module: nn.Module  # the module given (its state_dict is what program_state_dict rebuilds)
    user_inputs: List[str]  # placeholder names that are user inputs
    weights: Dict[str, Weight] = field(default_factory=dict)  # placeholder name -> parameter (export)


def _fx_trace(module: nn.Module, example_inputs: Tuple[Any, ...]) -> Trace:
    """Trace with torch.fx.symbolic_trace and record tensor shapes with ShapeProp."""
    from torch.fx.passes.shape_prop import ShapeProp

    gm = torch.fx.symbolic_trace(module)
    ShapeProp(gm).propagate(*example_inputs)
    placeholders = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    return Trace(gm.graph, "fx", gm, module, placeholders)


def _export_trace(module: nn.Module, example_inputs: Tuple[Any, ...]) -> Trace:
    """Trace with torch.export.export (parameters become placeholders mapped to state_dict keys)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module, tuple(example_inputs))
    sig = ep.graph_signature
    state = dict(ep.state_dict)
    state.update(getattr(ep, "constants", {}) or {})
    weights = {}
    lifted = getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {}
    for ph, key in [*sig.inputs_to_parameters.items(), *sig.inputs_to_buffers.items(), *lifted.items()]:
        if key in state:
            weights[ph] = Weight(key, state[key])
    return Trace(ep.graph, "export", module, module, list(sig.user_inputs), weights)


class _RecurrentRoot(nn.Module):
    """A torch.nn recurrent (or transformer) layer given as the module itself, wrapped so fx sees it as a layer
    call."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, input: Any) -> Any:  # noqa: A002 - torch's argument name
        return self.layer(input)


class _RecurrentRootWithState(_RecurrentRoot):
    def forward(self, input: Any, hx: Any) -> Any:  # type: ignore[override]  # noqa: A002
        return self.layer(input, hx)


class _LSTMRootWithState(_RecurrentRoot):
    def forward(self, input: Any, h0: Any, c0: Any) -> Any:  # type: ignore[override]  # noqa: A002
        return self.layer(input, (h0, c0))


class _TwoInputRoot(_RecurrentRoot):
    """A layer of two inputs given as the module itself (a transformer decoder: tgt, memory; nn.Transformer)."""

    def forward(self, first: Any, second: Any) -> Any:  # type: ignore[override]
        return self.layer(first, second)


class _AttentionRoot(_RecurrentRoot):
    """nn.MultiheadAttention given as the module itself (its forward has control flow fx cannot trace)."""

    def forward(self, query: Any, key: Any, value: Any) -> Any:  # type: ignore[override]
        return self.layer(query, key, value)


ATTENTION_LAYERS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder,
                    nn.TransformerDecoderLayer, nn.TransformerDecoder, nn.Transformer)
"""Layers with a batch_first of their own besides the recurrent ones (sequence_layout reads it)."""
WRAPPED_ROOTS = (nn.RNNBase,) + ATTENTION_LAYERS
"""Layers traced as one layer call (wrapped, state_dict keys under ROOT_PREFIX) when given as the module itself."""


ROOT_PREFIX = "layer."  # state_dict keys of a wrapped root layer start with it; the module's own keys do not


def trace(module: nn.Module, example_inputs: Tuple[Any, ...]) -> Trace:
    """fx symbolic tracing first; torch.export when fx cannot trace (data-dependent Python control flow). A
    recurrent layer given as the module (nn.GRU, nn.RNN, nn.LSTM) is traced as one layer call (its initial state,
    if given, as further inputs: hx, or LSTM's h0 and c0), and so are attention and transformer layers
    (WRAPPED_ROOTS)."""
    if isinstance(module, WRAPPED_ROOTS):
        roots = ((_RecurrentRoot, _RecurrentRootWithState, _LSTMRootWithState) if isinstance(module, nn.RNNBase)
                 else (_RecurrentRoot, _TwoInputRoot, _AttentionRoot))  # (by the number of inputs)
        wrapped = roots[min(len(example_inputs), 3) - 1](module)
        tr = _fx_trace(wrapped, example_inputs)
        tr.module = module
        return tr
    try:
        return _fx_trace(module, example_inputs)
    except Exception as fx_exc:  # noqa: BLE001 - fx raises TraceError, TypeError, ... on untraceable code
        log.info("torch.fx could not trace %s (%s); trying torch.export", type(module).__name__, fx_exc)
        try:
            return _export_trace(module, example_inputs)
        except Exception as ex_exc:  # noqa: BLE001
            log.debug("torch.export failed on %s", type(module).__name__, exc_info=True)
            raise UnsupportedError(f"cannot trace {type(module).__name__} (data-dependent control flow?): torch.fx: "
                                   f"{_first_line(fx_exc)}; torch.export: {_first_line(ex_exc)}",
                                   where=f"module {type(module).__name__}") from ex_exc


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message, shortened."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------- reading traced nodes

def shape_of(node: Any) -> Optional[Tuple[int, ...]]:
    """The full shape of a traced node's (first) tensor output, from ShapeProp or export's fake values."""
    meta = node.meta.get("tensor_meta")
    if meta is None:
        val = node.meta.get("val")
        if isinstance(val, (tuple, list)) and val:
            val = val[0]
        return tuple(int(s) for s in val.shape) if hasattr(val, "shape") else None
    if isinstance(meta, (tuple, list)) and not hasattr(meta, "shape"):  # (TensorMetadata is a NamedTuple itself)
        meta = meta[0] if meta else None
    return tuple(int(s) for s in meta.shape) if hasattr(meta, "shape") else None


def path_of(node: Any) -> Tuple[str, bool]:
    """(module path the traced node belongs to, whether that module is a torch.nn layer the node stands for)."""
    if node.op == "call_module":
        return str(node.target), True
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", False
    entry = list(stack.values())[-1]
    path, typ = (entry[0], entry[1]) if isinstance(entry, tuple) else (entry, "")
    path = re.sub(r"^L__self__\.?|^L\['self'\]\.?", "", str(path))
    typ = getattr(typ, "__module__", "") + "." + getattr(typ, "__name__", "") if isinstance(typ, type) else str(typ)
    leaf = typ.startswith("torch.nn.modules.") and not typ.endswith(_CONTAINERS)
    return path, leaf and bool(path)


def target_name(node: Any, module: Optional[nn.Module]) -> str:
    """A printable target of a traced node (module path and type, function or aten op, method)."""
    if node.op == "call_module":
        return f"{node.target} ({type(module).__name__})"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return callable_name(node.target)


def fetch_attr(root: nn.Module, target: str) -> Any:
    """The attribute at dotted path `target` of `root`."""
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------------------- whole-graph facts

def needed_nodes(graph: Any) -> Set[Any]:
    """Nodes the output depends on (others, such as an unused h_n, are not converted)."""
    out = next(n for n in graph.nodes if n.op == "output")
    seen, work = {out}, [out]
    while work:
        n = work.pop()
        for m in n.all_input_nodes:
            if m not in seen:
                seen.add(m)
                work.append(m)
    return seen


def has_recurrent_layer(tr: Trace, needed: Set[Any]) -> bool:
    """Does the output depend on a recurrent layer (then every tensor has a time axis after the batch axis)?"""
    for n in needed:
        if n.op == "call_module" and isinstance(tr.root.get_submodule(n.target), nn.RNNBase):
            return True
        if n.op == "call_function" and getattr(n.target, "overloadpacket", None) in _RECURRENT_ATEN:
            return True
    return False


def _gru_block_compatible(tr: Trace, node: Any, needed: Set[Any]) -> bool:
    """Can a recurrent call be an MDF GRU block (a sequence program: batch_first nn.GRU, one layer, forward, no
    initial state argument, only the output sequence used)? torch.export's aten GRU calls always are (the GRU
    converters refuse what they cannot write)."""
    if node.op != "call_module":
        return True
    m = tr.root.get_submodule(node.target)
    if type(m) is not nn.GRU or not m.batch_first or m.num_layers != 1 or m.bidirectional:
        return False
    if len(node.args) > 1 or node.kwargs.get("hx") is not None:
        return False
    import operator

    users = [u for u in node.users if u in needed]
    return all(u.op == "call_function" and u.target is operator.getitem and u.args[1] == 0 for u in users)


def state_inputs(tr: Trace, needed: Set[Any]) -> Set[str]:
    """Placeholders passed as a recurrent layer's initial state (hx, or LSTM's (h0, c0)): torch's (num_layers,
    batch, hidden), batch axis 1."""
    out: Set[str] = set()
    for n in needed:
        if n.op == "call_module" and isinstance(tr.root.get_submodule(n.target), nn.RNNBase):
            hx = n.args[1] if len(n.args) > 1 else n.kwargs.get("hx")
            torch.fx.node.map_arg(hx, lambda m: out.add(m.name) if m.op == "placeholder" else None)
    return out


def sequence_layout(tr: Trace, needed: Set[Any]) -> Tuple[int, int]:
    """(lead, input batch axis) of a traced module: (2, 0) when every recurrent layer can be a GRU block (inputs
    (batch, time, ...), every tensor keeps the time axis); otherwise (1, axis): per-trial sequences, the recurrent
    layers' ops over whole sequences (X (T, I) per trial), the inputs' batch axis 1 for time-major layers
    (batch_first=False), else 0; attention and transformer layers likewise. Layers that disagree on batch_first
    are refused."""
    attention = [n for n in needed if n.op == "call_module"
                 and isinstance(tr.root.get_submodule(n.target), ATTENTION_LAYERS)]
    if not has_recurrent_layer(tr, needed) and not attention:
        return 1, 0
    layers = [n for n in needed if n.op == "call_module" and isinstance(tr.root.get_submodule(n.target), nn.RNNBase)]
    if not attention and all(_gru_block_compatible(tr, n, needed) for n in layers):
        return 2, 0
    firsts = {_batch_first(tr.root.get_submodule(n.target)) for n in layers + attention}
    if len(firsts) > 1:
        raise UnsupportedError("recurrent or attention layers with batch_first=True and batch_first=False in one "
                               "module; the inputs need one batch axis", where=f"module {type(tr.module).__name__}")
    return 1, 0 if firsts == {True} else 1


def _batch_first(layer: nn.Module) -> bool:
    """A recurrent, attention or transformer layer's batch_first (a stack's: its first layer's)."""
    if isinstance(layer, nn.Transformer):
        layer = layer.encoder
    if isinstance(layer, (nn.TransformerEncoder, nn.TransformerDecoder)):
        layer = layer.layers[0]
    if isinstance(layer, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
        layer = layer.self_attn
    return bool(layer.batch_first)
