"""torch.nn.Module -> MDF document: trace the module, walk the traced graph in order handing each needed call to
its registered converter, and wrap the builder's nodes and edges in an MDF model."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ... import __version__
from ...composition import identifier
from ...errors import DataError, UnsupportedError
from ...program import Program
from . import activation_converters, attention_converters, converters, layer_converters  # noqa: F401 - registers
from .builder import MDF_FORMAT, SOURCE, Builder
from .registry import converter_for, supported_summary
from .tracing import (
    ROOT_PREFIX,
    WRAPPED_ROOTS,
    Trace,
    fetch_attr,
    needed_nodes,
    path_of,
    sequence_layout,
    shape_of,
    state_inputs,
    target_name,
    trace,
)
from .values import Call, GRUOutput, MDFTensor, Weight

log = logging.getLogger(__name__)


def _output_items(value: Any) -> List[Tuple[str, Any]]:
    """(suffix, fx arg) of each tensor the module returns."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return [("", value[0])]
        return [(f"_{i}", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return [(f"_{identifier(str(k))}", v) for k, v in value.items()]
    return [("", value)]


def _flat_outputs(suffix: str, value: Any) -> List[Tuple[str, Any]]:
    """(suffix, value) of each tensor in a (nested) tuple the module returns (an LSTM's (output, (h_n, c_n)) gives
    _0, _1_0, _1_1)."""
    if isinstance(value, (tuple, list)):
        out: List[Tuple[str, Any]] = []
        for i, v in enumerate(value):
            out += _flat_outputs(f"{suffix}_{i}", v)
        return out
    return [(suffix, value)]


def _walk(tr: Trace, example_inputs: Tuple[Any, ...], gru_form: str) -> Tuple[Builder, Dict[str, Any]]:
    """Walk the traced graph in order, converting each needed node; returns the builder and graph metadata."""
    graph = tr.graph
    needed = needed_nodes(graph)
    lead, data_axis = sequence_layout(tr, needed)
    states = state_inputs(tr, needed) if lead == 1 else set()
    dtype = next((p.dtype for p in tr.module.parameters() if p.is_floating_point()),
                 next((x.dtype for x in example_inputs if torch.is_tensor(x)), torch.float32))
    b = Builder(lead, dtype, gru_form)
    if isinstance(tr.module, WRAPPED_ROOTS):  # traced wrapped (tracing._RecurrentRoot): keys are the layer's own
        b.key_prefix = ROOT_PREFIX
    env: Dict[Any, Any] = {}
    examples = iter(example_inputs)
    inputs, outputs = [], []
    batch_axes: Dict[str, int] = {}  # input/output node -> the torch tensor's batch axis, where it is not 0
    for node in graph.nodes:
        if node.op == "placeholder":
            if node.name not in tr.user_inputs:
                env[node] = tr.weights.get(node.name)
                continue
            example = next(examples, None)
            if node not in needed:
                log.warning("input '%s' is not used by the module's output; it is left out of the MDF graph",
                            node.name)
                continue
            shape = shape_of(node) or (tuple(example.shape) if torch.is_tensor(example) else None)
            in_axis = 1 if node.name in states else data_axis
            if shape is None or len(shape) <= max(lead, in_axis + 1):
                want = ("(batch, time, features...)" if lead == 2 else "(time, batch, features...)" if in_axis
                        else "(batch, features...)")
                raise UnsupportedError(f"input '{node.name}' has shape {shape}; expected {want}",
                                       where=f"fx placeholder '{node.name}'")
            arg_name = str(node.target).lstrip("*") if tr.tracer == "fx" else node.name
            per = tuple(shape[lead:]) if lead == 2 else tuple(shape[:in_axis]) + tuple(shape[in_axis + 1:])
            env[node] = b.input_node(arg_name, per, in_axis)
            inputs.append(env[node].node)
            if in_axis:
                batch_axes[env[node].node] = in_axis
            continue
        if node.op == "output":
            items = [(s + s2, v) for suffix, arg in _output_items(node.args[0])
                     for s, v in [(suffix, torch.fx.node.map_arg(arg, lambda n: env[n]))]
                     for s2, v in _flat_outputs("", v)]
            for suffix, value in items:
                if isinstance(value, GRUOutput):
                    raise UnsupportedError("the module returns a GRU's (output, h_n) tuple; return the output "
                                           "sequence (item 0)", where=f"fx output '{node.name}'")
                if not isinstance(value, MDFTensor):
                    raise UnsupportedError(f"output{suffix} is a {type(value).__name__}, not a tensor computed from "
                                           "the inputs", where=f"fx output '{node.name}'")
                outputs.append(b.output_node(f"{node.name}{suffix}", value))
                if value.batch_axis:
                    batch_axes[outputs[-1]] = value.batch_axis
            continue
        if node not in needed:
            continue
        if node.op == "get_attr":
            value = fetch_attr(tr.root, str(node.target))
            if isinstance(value, torch.Tensor):
                env[node] = Weight(str(node.target), value)
                continue
            raise UnsupportedError(f"attribute '{node.target}' of type {type(value).__name__}",
                                   where=f"fx node '{node.name}'")
        module = tr.root.get_submodule(node.target) if node.op == "call_module" else None
        args = torch.fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
        path, leaf = path_of(node)
        call = Call(node.name, target_name(node, module), path, tuple(args), dict(kwargs), shape_of(node),
                    module, leaf, node)
        conv, what = converter_for(node.op, node.target, module)
        if conv is None:
            raise UnsupportedError(f"{what} is not supported; supported: " + supported_summary(), where=call.where)
        env[node] = conv(b, call)
        if isinstance(env[node], MDFTensor) and call.shape is not None:
            got = env[node].shape
            per_trial = b.per_trial(call.shape, call, env[node].batch_axis)
            if got != per_trial:
                raise call.unsupported(f"converted to per-trial shape {got}, torch computes {per_trial}")
    meta = _graph_metadata(tr, b, dtype, inputs, outputs)
    if batch_axes:
        meta["batch_axes"] = batch_axes
    return b, meta


def _graph_metadata(tr: Trace, b: Builder, dtype: torch.dtype, inputs: List[str], outputs: List[str]
                    ) -> Dict[str, Any]:
    """The graph's metadata.mdfbridge.torch: tracer, module, dtype, inputs/outputs and the state_dict layout
    (entries the forward does not use are kept with their values, so program_state_dict stays complete)."""
    full_state = tr.module.state_dict()
    unused = {k: v for k, v in full_state.items() if k not in b.used_keys}
    meta = {"tracer": tr.tracer, "module": f"{type(tr.module).__module__}.{type(tr.module).__qualname__}",
            "dtype": str(dtype).replace("torch.", ""), "inputs": inputs, "outputs": outputs,
            "sequence": b.lead == 2, "state_dict_keys": list(full_state.keys())}
    if unused:
        log.warning("state_dict entries %s are not used by the module's forward; they are kept in the graph's "
                    "metadata so program_state_dict gives a complete state_dict", sorted(unused))
        meta["unused_state"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
                                    "value": v.detach().cpu().double().reshape(-1).tolist()}
                                for k, v in unused.items()}
    return meta


def module_to_mdf(module: nn.Module, example_inputs: Union[Tuple[Any, ...], torch.Tensor], *,
                  name: Optional[str] = None, gru_form: str = "gates") -> Dict[str, Any]:
    """The MDF document (serialised dict) of a torch module traced on `example_inputs` (batch axis first).

    module: the torch.nn.Module (in eval mode where it has dropout or batch norm); example_inputs: one tensor or a
    tuple of tensors, one per `forward` argument, with the batch axis first (their per-trial shapes become the
    input ports' shapes); name: the graph's id (default None: the module's class name, made an identifier);
    gru_form: how a batch-first nn.GRU whose output sequence alone is used is written: 'gates' (default; the gate
    form modeci-mdf's engine steps) or 'onnx' (one fused onnx::GRU node). Traced with torch.fx, falling back to
    torch.export; a module or function the converters do not take raises UnsupportedError naming its module
    path.
    """
    if not isinstance(module, nn.Module):
        raise DataError(f"module_to_mdf expects a torch.nn.Module, got {type(module).__name__}")
    if gru_form not in ("gates", "onnx"):
        raise DataError(f"gru_form must be 'gates' or 'onnx', got {gru_form!r}")
    if torch.is_tensor(example_inputs):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    tr = trace(module, example_inputs)
    builder, meta = _walk(tr, example_inputs, gru_form)
    gid = identifier(str(name or type(module).__name__))
    graph = {"metadata": {"mdfbridge": {"source": SOURCE, "version": __version__, "torch": meta}},
             "nodes": builder.nodes, "edges": builder.edges}
    log.info("imported %s from torch (%s): %d nodes, %d edges, %d weights", meta["module"], tr.tracer,
             len(builder.nodes), len(builder.edges), len(builder.used_keys))
    return {f"{gid}_model": {"format": MDF_FORMAT, "generating_application": f"mdfbridge {__version__}",
                             "graphs": {gid: graph}}}


def module_to_program(module: nn.Module, example_inputs: Union[Tuple[Any, ...], torch.Tensor], *,
                      name: Optional[str] = None, gru_form: str = "gates") -> Program:
    """The lowered Program of a torch module: `lower(module_to_mdf(module, example_inputs, name=name,
    gru_form=gru_form))`; the arguments and their defaults are `module_to_mdf`'s (name None: the class name;
    gru_form 'gates')."""
    from ...lowering import lower

    return lower(module_to_mdf(module, example_inputs, name=name, gru_form=gru_form))
