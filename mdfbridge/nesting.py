"""Nested graphs: a node that holds a graph of its own (PsyNeuLink writes a nested Composition so), flattened.

A nested node's own nodes and edges join the graph that holds it (recursively), under their own ids; the document
keeps its nesting, and every flattened node remembers its path in the document (`FlatGraph.paths`), so parameters
are read from and trained values written back to where they stand. Edges of the outer graph may name an inner
node directly, or the nested node itself with a port id of one of its inner nodes (of its outputs, the inner
nodes that send to no inner node, or inputs, that receive from none, when several have that port). The inner
graph's node conditions join the outer schedule; termination conditions other than graph-scheduler's defaults
(AllHaveRun per trial, Never per sequence) are refused: the flat graph runs one schedule.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple

from .errors import SchemaError, UnsupportedError

log = logging.getLogger(__name__)

GRAPH_KEYS = ("nodes", "edges", "conditions")  # a node holding any of these holds a graph
_DEFAULT_TERMINATION = {"Never", "AllHaveRun"}
Path = Tuple[str, ...]


def is_nested(node: Any) -> bool:
    """True for a node that holds a graph (nodes, edges or conditions of its own)."""
    if type(node) is not dict and not isinstance(node, Mapping):
        return False
    return "nodes" in node or "edges" in node or "conditions" in node  # (GRAPH_KEYS, unrolled: once a node)


@dataclass
class FlatGraph:
    """A graph with its nested graphs flattened into it."""

    nodes: Dict[str, Mapping[str, Any]] = field(default_factory=dict)
    edges: Dict[str, Mapping[str, Any]] = field(default_factory=dict)
    conditions: Dict[str, Any] = field(default_factory=dict)  # the graph's own, with the inner node conditions
    paths: Dict[str, Path] = field(default_factory=dict)  # node id -> its place in the document (keys)
    nested: Dict[str, List[str]] = field(default_factory=dict)  # nested node id -> the node ids it held


def flatten(graph: Mapping[str, Any], base: Path) -> FlatGraph:
    """`graph` (at document keys `base`, e.g. ("graphs", "g")) with every nested graph flattened into it."""
    flat = FlatGraph()
    conditions = dict(graph.get("conditions") or {})
    node_specific = dict(conditions.get("node_specific") or {})
    _hoist(graph, base, flat, node_specific)
    for nested in flat.nested:
        if nested in node_specific:
            raise UnsupportedError(f"a scheduling condition on nested graph '{nested}' (conditions of its nodes are "
                                   "read; one on the graph as a whole is not)", where="/".join(base))
    if node_specific or conditions:
        conditions["node_specific"] = node_specific
    flat.conditions = conditions
    flat.edges = {eid: _resolve_edge(eid, e, flat, base) for eid, e in flat.edges.items()}
    for nested, members in flat.nested.items():
        touching = [eid for eid, e in flat.edges.items()
                    if (e.get("sender") in members) != (e.get("receiver") in members)]
        if not touching:
            log.warning("nested graph '%s' has no edges into or out of it, so it runs on its own (PsyNeuLink 0.21's "
                        "exporter drops the projections into and out of a nested composition)", nested)
    return flat


def _hoist(graph: Mapping[str, Any], base: Path, flat: FlatGraph, node_specific: Dict[str, Any]) -> List[str]:
    """Add the nodes and edges of `graph` to `flat`, nested graphs recursively; returns the plain node ids."""
    members: List[str] = []
    for nid, node in (graph.get("nodes") or {}).items():
        path = base + ("nodes", nid)
        if is_nested(node):
            flat.nested[nid] = []  # filled below: the nodes it holds, at any depth
            flat.nested[nid] = inner = _hoist(node, path, flat, node_specific)
            members += inner
            _check_termination(node, path)
            for n, c in ((node.get("conditions") or {}).get("node_specific") or {}).items():
                node_specific.setdefault(n, c)
            continue
        if nid in flat.nodes or nid in flat.nested:
            raise SchemaError(f"node id '{nid}' is used both inside a nested graph and outside it; the flattened "
                              "graph needs each id once", json_path="$." + ".".join(path))
        flat.nodes[nid] = node
        flat.paths[nid] = path
        members.append(nid)
    for eid, e in (graph.get("edges") or {}).items():
        if eid in flat.edges:
            raise SchemaError(f"edge id '{eid}' is used in two of the nested graphs",
                              json_path="$." + ".".join(base + ("edges", eid)))
        flat.edges[eid] = e
    return members


def _check_termination(node: Mapping[str, Any], path: Path) -> None:
    termination = (node.get("conditions") or {}).get("termination") or {}
    for scale, cond in termination.items():
        ctype = cond.get("type") if isinstance(cond, Mapping) else cond
        if ctype not in _DEFAULT_TERMINATION:
            raise UnsupportedError(f"the nested graph's termination condition '{ctype}' ({scale}) ends only the "
                                   "nested graph's runs, which a flattened graph cannot do",
                                   where="$." + ".".join(path + ("conditions", "termination", str(scale))))


def _resolve_edge(eid: str, e: Mapping[str, Any], flat: FlatGraph, base: Path) -> Mapping[str, Any]:
    """An edge naming a nested node (with a port of one of its inner nodes) names that inner node instead."""
    out = dict(e)
    for end, port_end, ports in (("sender", "sender_port", "output_ports"), ("receiver", "receiver_port",
                                                                             "input_ports")):
        nid = e.get(end)
        if nid not in flat.nested:
            continue
        port = e.get(port_end)
        members = flat.nested[nid]
        owners = [m for m in members if port in (flat.nodes[m].get(ports) or {})]
        if len(owners) > 1:  # the nested graph's outputs send to no inner node; its inputs receive from none
            inner = [x for x in flat.edges.values() if x.get("sender") in members and x.get("receiver") in members]
            owners = [m for m in owners if not any(x.get(end) == m for x in inner)]
        if len(owners) != 1:
            raise SchemaError(f"edge '{eid}' names nested graph '{nid}' with {port_end} '{port}', which "
                              f"{'no' if not owners else 'more than one'} node inside it has "
                              f"({', '.join(owners) or 'inner nodes: ' + ', '.join(flat.nested[nid])})",
                              json_path="$." + ".".join(base + ("edges", eid)))
        out[end] = owners[0]
    return out


def flatten_document(doc: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of an MDF dict with every graph flattened (for validation: the schema knows only flat graphs)."""
    out: Dict[str, Any] = {}
    for mid, model in doc.items():
        if not isinstance(model, Mapping) or not isinstance(model.get("graphs"), Mapping):
            out[mid] = model
            continue
        graphs = {}
        for gid, graph in model["graphs"].items():
            nodes = graph.get("nodes") if isinstance(graph, Mapping) else None
            if not isinstance(nodes, Mapping) or not any(is_nested(n) for n in nodes.values()):
                graphs[gid] = graph
                continue
            flat = flatten(graph, (str(mid), "graphs", str(gid)))
            g = {k: v for k, v in graph.items() if k not in GRAPH_KEYS}
            g["nodes"] = flat.nodes
            if flat.edges:
                g["edges"] = flat.edges
            if flat.conditions:
                g["conditions"] = flat.conditions
            graphs[gid] = g
        out[mid] = dict(model, graphs=graphs)
    return out
