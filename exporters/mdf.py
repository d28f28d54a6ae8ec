"""Composition -> MDF (`modeci_mdf.mdf.Model`), laid out as ../shared/DESIGN.md recommends."""
from __future__ import annotations

from typing import Any, Dict, List

from modeci_mdf.mdf import Edge, Function, Graph, InputPort, Model, Node, OutputPort, Parameter

from .. import __version__
from ..composition import BiasMechanism, Composition, FlatNode, FlatProjection, TransferMechanism, identifier

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


def _mechanism_node(f: FlatNode, afferents: List[FlatProjection], roles: Dict[str, List[str]]) -> Node:
    m = f.mechanism
    meta: Dict[str, Any] = {"name": m.name, "composition": list(f.path), "size": m.size,
                            "input": f.id in roles["input"], "output": f.id in roles["output"]}
    node = Node(id=f.id)
    if isinstance(m, BiasMechanism):
        meta.update(role="bias", value=m.value)
        node.parameters.append(Parameter(id="value", value=[m.value] * m.size))
        node.output_ports.append(OutputPort(id=OUTPUT_PORT, value="value", shape=(m.size,)))
        node.metadata = {"mdfbridge": meta}
        return node
    assert isinstance(m, TransferMechanism)
    meta.update(role="mechanism", function=m.function.name)
    if afferents:
        ports = [afferent_port(p.id) for p in afferents]
    else:
        ports = [external_port(f.id)]
    for pid in ports:
        node.input_ports.append(InputPort(id=pid, shape=(m.size,)))
    for k, v in m.function.params.items():
        node.parameters.append(Parameter(id=k, value=v))
    node.functions.append(Function(id=FUNCTION_ID, **m.function.mdf_function(" + ".join(ports))))
    node.output_ports.append(OutputPort(id=OUTPUT_PORT, value=FUNCTION_ID, shape=(m.size,)))
    node.metadata = {"mdfbridge": meta}
    return node


def _projection_node(p: FlatProjection) -> Node:
    proj = p.projection
    node = Node(id=p.id, metadata={"mdfbridge": {
        "role": "projection", "name": proj.name, "learnable": proj.learnable, "sender": p.sender,
        "receiver": p.receiver, "composition": list(p.path)}})
    rows, cols = proj.matrix.shape
    node.input_ports.append(InputPort(id=PROJECTION_INPUT, shape=(rows,)))
    node.parameters.append(Parameter(id="matrix", value=proj.matrix.tolist()))
    node.functions.append(Function(id=FUNCTION_ID, function="MatMul",
                                 args={"A": PROJECTION_INPUT, "B": "matrix"}))
    node.output_ports.append(OutputPort(id=OUTPUT_PORT, value=FUNCTION_ID, shape=(cols,)))
    return node


def composition_to_mdf(comp: Composition) -> Model:
    """The composition as an MDF Model: a node per mechanism and per projection, edges carrying values."""
    nodes, projs = comp.flatten()
    roles = comp._roles((nodes, projs))
    gid = identifier(comp.name)
    graph = Graph(id=gid, metadata={"mdfbridge": {"composition": _nesting(comp), "version": __version__}})
    by_receiver: Dict[str, List[FlatProjection]] = {}
    for p in projs:
        by_receiver.setdefault(p.receiver, []).append(p)
    for f in nodes:
        graph.nodes.append(_mechanism_node(f, by_receiver.get(f.id, []), roles))
    for p in projs:
        graph.nodes.append(_projection_node(p))
        graph.edges.append(Edge(id=f"{p.id}_sent", sender=p.sender, sender_port=OUTPUT_PORT,
                                receiver=p.id, receiver_port=PROJECTION_INPUT))
        graph.edges.append(Edge(id=f"{p.id}_received", sender=p.id, sender_port=OUTPUT_PORT,
                                receiver=p.receiver, receiver_port=afferent_port(p.id)))
    model = Model(id=f"{gid}_model", format=MDF_FORMAT, generating_application=f"mdfbridge {__version__}")
    model.graphs.append(graph)
    return model
