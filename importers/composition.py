"""MDF written by mdfbridge -> `Composition` again (mechanisms, projections, bias nodes, nesting)."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

import numpy as np

from ..composition import BiasMechanism, Composition, MappingProjection, Mechanism, TransferMechanism
from ..errors import SchemaError
from ..lowering import model_to_dict
from ..transfer import transfer_from_metadata


def _meta(obj: Mapping[str, Any]) -> Dict[str, Any]:
    return (obj.get("metadata") or {}).get("mdfbridge") or {}


def composition_from_mdf(doc: Any) -> Composition:
    """Rebuild the Composition an mdfbridge MDF document was written from (its metadata must be present)."""
    data = model_to_dict(doc)
    model_id, model = next(iter(data.items()))
    gid, graph = next(iter((model.get("graphs") or {}).items()))
    tree = _meta(graph).get("composition")
    if not tree:
        raise SchemaError("not written by mdfbridge's composition exporter (no metadata.mdfbridge.composition); "
                          "load it with load_program() instead", json_path=f"$.{model_id}.graphs.{gid}.metadata")
    nodes = graph.get("nodes") or {}
    mechanisms: Dict[tuple, Mechanism] = {}
    projections: Dict[tuple, MappingProjection] = {}
    by_id: Dict[str, Mechanism] = {}
    for nid, node in nodes.items():
        meta = _meta(node)
        path = tuple(meta.get("composition") or ())
        params = {p: v.get("value") for p, v in (node.get("parameters") or {}).items()}
        if meta.get("role") == "mechanism":
            fn = transfer_from_metadata(meta["function"], params)
            m: Mechanism = TransferMechanism(meta["name"], int(meta["size"]), fn)
        elif meta.get("role") == "bias":
            m = BiasMechanism(meta["name"], int(meta["size"]), float(meta.get("value", 1.0)))
        else:
            continue
        mechanisms[path + (meta["name"],)] = m
        by_id[nid] = m
    for node in nodes.values():
        meta = _meta(node)
        if meta.get("role") != "projection":
            continue
        matrix = np.asarray(node["parameters"]["matrix"]["value"], dtype=float)
        proj = MappingProjection(by_id[meta["sender"]], by_id[meta["receiver"]], matrix=matrix,
                                 learnable=bool(meta.get("learnable", True)), name=meta["name"])
        projections[tuple(meta.get("composition") or ()) + (meta["name"],)] = proj

    def build(t: Mapping[str, Any], prefix: tuple) -> Composition:
        path = prefix + (t["name"],)
        comp = Composition(t["name"])
        order: List[Any] = []
        for name in t.get("nodes", []):
            order.append(mechanisms[path + (name,)])
        for child in t.get("children", []):
            order.append(build(child, path))
        comp.add_nodes(order)
        for name in t.get("projections", []):
            comp.projections.append(projections[path + (name,)])
        return comp

    return build(tree, ())
