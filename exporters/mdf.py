"""Composition -> MDF, laid out as docs/ARCHITECTURE.md describes: the serialised dict is built directly
(fast, exact), and `composition_to_mdf` turns it into a `modeci_mdf.mdf.Model`."""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Dict, List, cast

from .. import __version__
from ..composition import BiasMechanism, Composition, FlatNode, FlatProjection, TransferMechanism, identifier
from ..transfer import TransferFunction

if TYPE_CHECKING:  # pragma: no cover
    from ..gru_composition import GRUBlock

MDF_FORMAT = "ModECI MDF v0.4"
OUTPUT_PORT = "output"


def projection_input(projection_id: str) -> str:
    """Id of a projection node's input port (PsyNeuLink's reader takes `<node>_InputPort_0` as the primary one)."""
    return f"{projection_id}_InputPort_0"

FUNCTION_ID = "function"
# the default scheduling, written out (PsyNeuLink's reader needs a graph's `conditions`)
DEFAULT_CONDITIONS = {"node_specific": {}, "termination": {
    "environment_sequence": {"type": "Never", "kwargs": {}},
    "environment_state_update": {"type": "AllHaveRun", "kwargs": {"dependencies": []}}}}
# what PsyNeuLink makes of an edge: a MappingProjection with its default (identity) matrix
PNL_EDGE = {"type": "MappingProjection"}


def external_port(node_id: str) -> str:
    """Id of the input port through which an input mechanism takes the composition's input."""
    return f"{node_id}_input"


def received(projection_id: str) -> str:
    """Id of the edge from a projection's node to its receiver."""
    return f"{projection_id}_received"


def afferent_port(projection_id: str, receiver_id: str) -> str:
    """Id of the input port through which a mechanism receives one projection.

    PsyNeuLink's id for one of several afferents into a mechanism's primary InputPort
    (`<receiver>_InputPort_0_input_port_from_<edge>`): its reader connects the edge there, and sums them.
    """
    return f"{receiver_id}_InputPort_0_input_port_from_{received(projection_id)}"


def pnl_function_metadata(fn: TransferFunction) -> Dict[str, Any]:
    """What PsyNeuLink's reader (`generate_script_from_mdf`) takes a transfer function's arguments from.

    PsyNeuLink merges a function's `metadata` over its `args`: `type` names its Function class, and a string value
    names a parameter of the node (resolved there). mdfbridge's transfer functions have PsyNeuLink's parameters
    and meanings (Logistic's offset is outside the sigmoid, as PsyNeuLink's), so each refers to its own parameter.
    """
    return {"type": fn.name, **{k: k for k in fn.params}}


def _nesting(comp: Composition) -> Dict[str, Any]:
    return {"name": comp.name,
            "nodes": [n.name for n in comp.nodes if not isinstance(n, Composition)],
            "projections": [p.name for p in comp.projections],
            "children": [_nesting(n) for n in comp.nodes if isinstance(n, Composition)]}


def _mechanism_node(f: FlatNode, afferents: List[FlatProjection], roles: Dict[str, List[str]]) -> Dict[str, Any]:
    m = f.mechanism
    meta: Dict[str, Any] = {"name": m.name, "composition": list(f.path), "size": m.size,
                            "input": f.id in roles["input"], "output": f.id in roles["output"]}
    if isinstance(m, BiasMechanism):
        meta.update(role="bias", value=m.value)
        # PsyNeuLink: a ProcessingMechanism whose Linear(slope=0, intercept=value) ignores its (default) input
        pnl_fn = {"type": "Linear", "slope": 0.0, "intercept": m.value}
        return {"metadata": {"mdfbridge": meta, "type": "ProcessingMechanism", "variable": [[0.0] * m.size]},
                "parameters": {"value": {"value": [m.value] * m.size}},
                "functions": {FUNCTION_ID: {"value": "value", "metadata": pnl_fn}},
                "output_ports": {OUTPUT_PORT: {"value": FUNCTION_ID, "shape": [m.size]}}}
    assert isinstance(m, TransferMechanism)
    meta.update(role="mechanism", function=m.function.name)
    ports = [afferent_port(p.id, f.id) for p in afferents] if afferents else [external_port(f.id)]
    function = m.function.mdf_function(" + ".join(ports))
    function["metadata"] = {**function.get("metadata", {}), **pnl_function_metadata(m.function)}
    return {"metadata": {"mdfbridge": meta, "type": "TransferMechanism", "variable": [[0.0] * m.size]},
            "input_ports": {pid: {"shape": [m.size]} for pid in ports},
            "functions": {FUNCTION_ID: function},
            "parameters": {k: {"value": v} for k, v in m.function.params.items()},
            "output_ports": {OUTPUT_PORT: {"value": FUNCTION_ID, "shape": [m.size]}}}


def _projection_node(p: FlatProjection) -> Dict[str, Any]:
    proj = p.projection
    rows, cols = p.matrix.shape
    # PsyNeuLink: a ProcessingMechanism with a MatrixTransform function (B resolves to the node's `matrix`), the
    # edges into and out of it identity MappingProjections. (Not its `<proj>_dummy_node` form: PsyNeuLink 0.21's
    # reader hands a dummy node's parameters to another projection, so the matrix would land on the wrong one.)
    pnl_fn = {"type": "MatrixTransform", "A": [0.0] * rows}
    return {"metadata": {"mdfbridge": {"role": "projection", "name": proj.name, "learnable": proj.learnable,
                                       "sender": p.sender, "receiver": p.receiver, "composition": list(p.path)},
                         "type": "ProcessingMechanism", "variable": [[0.0] * rows]},
            "input_ports": {projection_input(p.id): {"shape": [rows]}},
            "functions": {FUNCTION_ID: {"function": "MatMul", "args": {"A": projection_input(p.id), "B": "matrix"},
                                        "metadata": pnl_fn}},
            "parameters": {"matrix": {"value": p.matrix.tolist()}},
            "output_ports": {OUTPUT_PORT: {"value": FUNCTION_ID, "shape": [cols]}}}


def _gru_block(f: FlatNode, afferents: List[FlatProjection], roles: Dict[str, List[str]], form: str) -> tuple:
    """(nodes, edges) of a GRU block in the gate form (default) or the fused onnx::GRU form."""
    from ..gru_mdf import fused_form_nodes, gate_form_nodes

    b = cast("GRUBlock", f.mechanism)  # the caller checked: it has gates
    in_id = f"{f.id}__input"
    ports = [afferent_port(p.id, in_id) for p in afferents] if afferents else [external_port(in_id)]
    info = {"input_size": b.input_size, "hidden_size": b.hidden_size, "bias": b.bias, "name": b.name,
            "composition": list(f.path), "enable_learning": b.enable_learning, "frozen": list(b.frozen),
            "learning_rates": dict(b.learning_rates), "input": f.id in roles["input"],
            "output": f.id in roles["output"]}
    make = gate_form_nodes if form == "gates" else fused_form_nodes
    return make(f.id, b.input_size, b.hidden_size, b.gates, b.h0, {p: {"shape": [b.input_size]} for p in ports}, info)


def composition_to_dict(comp: Composition, gru_form: str = "gates") -> Dict[str, Any]:
    """The composition as a serialised MDF dict: a node per mechanism and per projection, edges carrying values.

    GRU blocks are written in `gru_form`: 'gates' (default; modeci-mdf's engine steps it) or 'onnx' (fused).
    """
    form = gru_form
    nodes, projs = comp.flatten()
    roles = comp._roles((nodes, projs))
    gid = identifier(comp.name)
    by_receiver: Dict[str, List[FlatProjection]] = {}
    for p in projs:
        by_receiver.setdefault(p.receiver, []).append(p)
    graph_nodes: Dict[str, Any] = {}
    edges: Dict[str, Any] = {}
    ends: Dict[str, tuple] = {}  # flat id -> (node receiving its afferents, node sending its efferents)
    for f in nodes:
        if hasattr(f.mechanism, "gates"):
            gnodes, gedges = _gru_block(f, by_receiver.get(f.id, []), roles, form)
            graph_nodes.update(gnodes)
            edges.update(gedges)
            ends[f.id] = (f"{f.id}__input", f"{f.id}__output")
        else:
            graph_nodes[f.id] = _mechanism_node(f, by_receiver.get(f.id, []), roles)
    for p in projs:
        graph_nodes[p.id] = _projection_node(p)
        edges[f"{p.id}_sent"] = {"sender": ends.get(p.sender, (p.sender, p.sender))[1], "receiver": p.id,
                                 "sender_port": OUTPUT_PORT, "receiver_port": projection_input(p.id),
                                 "metadata": dict(PNL_EDGE)}
        receiver = ends.get(p.receiver, (p.receiver,))[0]
        edges[received(p.id)] = {"sender": p.id, "receiver": receiver, "sender_port": OUTPUT_PORT,
                                 "receiver_port": afferent_port(p.id, receiver), "metadata": dict(PNL_EDGE)}
    graph: Dict[str, Any] = {"metadata": {"mdfbridge": {"composition": _nesting(comp), "version": __version__}},
                             "nodes": graph_nodes, "edges": edges}
    if not any(hasattr(f.mechanism, "gates") for f in nodes):
        # what PsyNeuLink's reader needs of a graph (not with a GRU block, which it cannot read: there the graph
        # stays as the block converters write it, and modeci-mdf's engine refuses explicit conditions on its cycle)
        graph["metadata"].update(type="Composition", node_ordering=list(graph_nodes), required_node_roles=[],
                                 excluded_node_roles=[])
        graph["conditions"] = copy.deepcopy(DEFAULT_CONDITIONS)
    return {f"{gid}_model": {"format": MDF_FORMAT, "generating_application": f"mdfbridge {__version__}",
                             "graphs": {gid: graph}}}


def composition_to_mdf(comp: Composition) -> Any:
    """The composition as a `modeci_mdf.mdf.Model` (validated against the schema on the way)."""
    from ..document import model_from_dict

    return model_from_dict(composition_to_dict(comp))
