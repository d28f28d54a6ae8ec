"""Composition -> MDF, laid out as docs/ARCHITECTURE.md describes: the serialised dict is built directly
(fast, exact), and `composition_to_mdf` turns it into a `modeci_mdf.mdf.Model`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, cast

from .. import __version__
from ..composition import BiasMechanism, Composition, FlatNode, FlatProjection, TransferMechanism, identifier

if TYPE_CHECKING:  # pragma: no cover
    from ..gru_composition import GRUBlock

MDF_FORMAT = "ModECI MDF v0.4"
OUTPUT_PORT = "output"
PROJECTION_INPUT = "input"
FUNCTION_ID = "function"


def external_port(node_id: str) -> str:
    """Id of the input port through which an input mechanism takes the composition's input."""
    return f"{node_id}_input"


def afferent_port(projection_id: str) -> str:
    """Id of the input port through which a mechanism receives one projection."""
    return f"from_{projection_id}"


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
        return {"metadata": {"mdfbridge": meta},
                "parameters": {"value": {"value": [m.value] * m.size}},
                "output_ports": {OUTPUT_PORT: {"value": "value", "shape": [m.size]}}}
    assert isinstance(m, TransferMechanism)
    meta.update(role="mechanism", function=m.function.name)
    ports = [afferent_port(p.id) for p in afferents] if afferents else [external_port(f.id)]
    return {"metadata": {"mdfbridge": meta},
            "input_ports": {pid: {"shape": [m.size]} for pid in ports},
            "functions": {FUNCTION_ID: m.function.mdf_function(" + ".join(ports))},
            "parameters": {k: {"value": v} for k, v in m.function.params.items()},
            "output_ports": {OUTPUT_PORT: {"value": FUNCTION_ID, "shape": [m.size]}}}


def _projection_node(p: FlatProjection) -> Dict[str, Any]:
    proj = p.projection
    rows, cols = p.matrix.shape
    return {"metadata": {"mdfbridge": {"role": "projection", "name": proj.name, "learnable": proj.learnable,
                                       "sender": p.sender, "receiver": p.receiver, "composition": list(p.path)}},
            "input_ports": {PROJECTION_INPUT: {"shape": [rows]}},
            "functions": {FUNCTION_ID: {"function": "MatMul", "args": {"A": PROJECTION_INPUT, "B": "matrix"}}},
            "parameters": {"matrix": {"value": p.matrix.tolist()}},
            "output_ports": {OUTPUT_PORT: {"value": FUNCTION_ID, "shape": [cols]}}}


def _gru_block(f: FlatNode, afferents: List[FlatProjection], roles: Dict[str, List[str]], form: str) -> tuple:
    """(nodes, edges) of a GRU block in the gate form (default) or the fused onnx::GRU form."""
    from ..gru_mdf import fused_form_nodes, gate_form_nodes

    b = cast("GRUBlock", f.mechanism)  # the caller checked: it has gates
    in_id = f"{f.id}__input"
    ports = [afferent_port(p.id) for p in afferents] if afferents else [external_port(in_id)]
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
                                 "sender_port": OUTPUT_PORT, "receiver_port": PROJECTION_INPUT}
        edges[f"{p.id}_received"] = {"sender": p.id, "receiver": ends.get(p.receiver, (p.receiver,))[0],
                                     "sender_port": OUTPUT_PORT, "receiver_port": afferent_port(p.id)}
    graph = {"metadata": {"mdfbridge": {"composition": _nesting(comp), "version": __version__}},
             "nodes": graph_nodes, "edges": edges}
    return {f"{gid}_model": {"format": MDF_FORMAT, "generating_application": f"mdfbridge {__version__}",
                             "graphs": {gid: graph}}}


def composition_to_mdf(comp: Composition) -> Any:
    """The composition as a `modeci_mdf.mdf.Model` (validated against the schema on the way)."""
    from ..document import model_from_dict

    return model_from_dict(composition_to_dict(comp))
