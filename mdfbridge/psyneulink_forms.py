"""Forms of PsyNeuLink's MDF export that are about learning, not about what the composition computes.

After `AutodiffComposition.learn()`, PsyNeuLink 0.21's export (`get_mdf_serialized`) also holds the learning
pathway it built: a `TARGET_for_<node>` ProcessingMechanism (NodeRole.TARGET_INPUT) and a `LOSS_for_<node>`
LossMechanism (NodeRole.LEARNING_OBJECTIVE, function `lossfunction`), with edges from the output node and the
target node into the loss (tests/data/psyneulink/README.md, "Learning"). They are not nodes of the composition's
run: `comp.run()` computes the output nodes without them, and they are not outputs. `drop_learning_pathway`
removes them (their edges and their scheduling conditions) from a graph before lowering, so such a file runs
like the composition; the nodes are recognised by the graph's `metadata.required_node_roles` (TARGET_INPUT,
LEARNING_OBJECTIVE) and by a node's `metadata.type` 'LossMechanism', never by their names; only in documents
whose `generating_application` is PsyNeuLink.

(Note: that export holds the *initial* matrices, not the trained ones, so it computes the numbers from before
learning; PsyNeuLink writes no trained weights.)
"""
from __future__ import annotations

from typing import Any, Dict, Mapping

LEARNING_ROLES = frozenset({"NodeRole.TARGET_INPUT", "NodeRole.LEARNING_OBJECTIVE"})


def _learning_nodes(graph: Mapping[str, Any]) -> frozenset:
    meta = graph.get("metadata") or {}
    nodes = graph.get("nodes") or {}
    named = {r[0] for r in meta.get("required_node_roles") or []
             if isinstance(r, (list, tuple)) and len(r) == 2 and r[1] in LEARNING_ROLES}
    typed = {n for n, d in nodes.items() if isinstance(d, Mapping)
             and (d.get("metadata") or {}).get("type") == "LossMechanism"}
    return frozenset((named | typed) & set(nodes))


def drop_learning_pathway(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The document without PsyNeuLink's learning pathway nodes and their edges (the same object when it has
    none, or when its `generating_application` is not PsyNeuLink)."""
    if not isinstance(doc, Mapping) or len(doc) != 1:
        return doc
    mid, model = next(iter(doc.items()))
    graphs = model.get("graphs") if isinstance(model, Mapping) else None
    if not isinstance(graphs, Mapping) or not str(model.get("generating_application", "")).startswith("PsyNeuLink"):
        return doc
    new_graphs: Dict[str, Any] = {}
    changed = False
    for gid, g in graphs.items():
        drop = _learning_nodes(g) if isinstance(g, Mapping) else frozenset()
        if not drop:
            new_graphs[gid] = g
            continue
        changed = True
        edges = {e: d for e, d in (g.get("edges") or {}).items()
                 if d.get("sender") not in drop and d.get("receiver") not in drop}
        nodes = {n: d for n, d in (g.get("nodes") or {}).items() if n not in drop}
        new_graphs[gid] = {**g, "nodes": nodes, "edges": edges}
        conditions = g.get("conditions")
        if isinstance(conditions, Mapping) and isinstance(conditions.get("node_specific"), Mapping):
            specific = {n: c for n, c in conditions["node_specific"].items() if n not in drop}
            new_graphs[gid]["conditions"] = {**conditions, "node_specific": specific}
    return {mid: {**model, "graphs": new_graphs}} if changed else doc
