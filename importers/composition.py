"""MDF written by mdfbridge -> `Composition` again (mechanisms, projections, bias nodes, nesting)."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from ..composition import BiasMechanism, Composition, MappingProjection, Mechanism, TransferMechanism
from ..errors import SchemaError, UnsupportedError
from ..gru_composition import OPTIMIZER_KEYS, GRUComposition
from ..lowering import model_to_dict
from ..transfer import TRANSFER_FUNCTIONS, transfer_from_metadata


def _meta(obj: Mapping[str, Any]) -> Dict[str, Any]:
    return (obj.get("metadata") or {}).get("mdfbridge") or {}


def _node_meta(node: Mapping[str, Any], keys: Tuple[str, ...], where: str) -> Dict[str, Any]:
    """The node's mdfbridge metadata, refused (SchemaError at `where`) when it lacks one of `keys`."""
    meta = _meta(node)
    missing = [k for k in keys if k not in meta]
    if missing:
        raise SchemaError(f"metadata.mdfbridge lacks {', '.join(missing)}; cannot rebuild the composition",
                          json_path=where)
    return meta


def composition_from_mdf(doc: Any) -> Composition:
    """Rebuild the Composition an mdfbridge MDF document was written from (its metadata must be present).

    doc: a `modeci_mdf.mdf.Model` or its serialised dict ({model id: {...}}); a file path is read by
    mdfbridge.composition.composition_from_mdf, which calls this. The first graph is rebuilt: mechanisms,
    bias nodes, projections (matrices and learnable flags as written), nesting, and GRU blocks (gate form or the
    fused `onnx::GRU` form). A document without metadata.mdfbridge.composition, or GRU block metadata that is
    missing, raises SchemaError; GRU gate nodes edited away from the form mdfbridge writes raise
    UnsupportedError."""
    data = model_to_dict(doc)
    model_id, model = next(iter(data.items()))
    gid, graph = next(iter((model.get("graphs") or {}).items()))
    tree = _meta(graph).get("composition")
    if not tree:
        raise SchemaError("not written by mdfbridge's composition exporter (no metadata.mdfbridge.composition); "
                          "load it with load_program() instead", json_path=f"$.{model_id}.graphs.{gid}.metadata")
    nodes = graph.get("nodes") or {}
    at = f"$.{model_id}.graphs.{gid}.nodes"
    tree_at = f"$.{model_id}.graphs.{gid}.metadata.mdfbridge.composition"
    mechanisms: Dict[tuple, Mechanism] = {}
    projections: Dict[tuple, MappingProjection] = {}
    by_id: Dict[str, Mechanism] = {}
    gru_blocks = _gru_compositions(nodes, f"$.{model_id}.graphs.{gid}.nodes")
    for block_id, (gru, _) in gru_blocks.items():
        by_id[block_id] = gru.block
    for nid, node in nodes.items():
        role = _meta(node).get("role")
        if role not in ("mechanism", "bias"):
            continue
        where = f"{at}.{nid}.metadata.mdfbridge"
        meta = _node_meta(node, ("name", "size") + (("function",) if role == "mechanism" else ()), where)
        path = tuple(meta.get("composition") or ())
        params = {p: v.get("value") for p, v in (node.get("parameters") or {}).items()}
        if role == "mechanism":
            try:
                fn = transfer_from_metadata(meta["function"], params)
            except KeyError:
                raise SchemaError(f"unknown transfer function {meta['function']!r}; one of "
                                  f"{', '.join(TRANSFER_FUNCTIONS)}", json_path=f"{where}.function") from None
            m: Mechanism = TransferMechanism(meta["name"], int(meta["size"]), fn)
        else:
            m = BiasMechanism(meta["name"], int(meta["size"]), float(meta.get("value", 1.0)))
        mechanisms[path + (meta["name"],)] = m
        by_id[nid] = m
    for nid, node in nodes.items():
        if _meta(node).get("role") != "projection":
            continue
        where = f"{at}.{nid}.metadata.mdfbridge"
        meta = _node_meta(node, ("name", "sender", "receiver"), where)
        ends = [by_id.get(meta[k]) for k in ("sender", "receiver")]
        if None in ends or "matrix" not in (node.get("parameters") or {}):
            bad = "its matrix parameter" if None not in ends else \
                f"a node {meta['sender'] if ends[0] is None else meta['receiver']!r} among the mechanisms"
            raise SchemaError(f"projection {meta['name']!r} names {bad} that the document lacks", json_path=where)
        matrix = np.asarray(node["parameters"]["matrix"]["value"], dtype=float)
        proj = MappingProjection(ends[0], ends[1], matrix=matrix,
                                 learnable=bool(meta.get("learnable", True)), name=meta["name"])
        projections[tuple(meta.get("composition") or ()) + (meta["name"],)] = proj

    grus_by_path = {path: gru for gru, path in gru_blocks.values()}

    def build(t: Mapping[str, Any], prefix: tuple) -> Composition:
        path = prefix + (t["name"],)
        if path in grus_by_path:  # a GRUComposition: rebuilt whole from its block's nodes
            return grus_by_path[path]
        comp = Composition(t["name"])
        order: List[Any] = []
        for name in t.get("nodes", []):
            if path + (name,) not in mechanisms:
                raise SchemaError(f"composition {'/'.join(path)!r} lists node {name!r}, which no node's metadata "
                                  "names", json_path=tree_at)
            order.append(mechanisms[path + (name,)])
        for child in t.get("children", []):
            order.append(build(child, path))
        comp.add_nodes(order)
        for name in t.get("projections", []):
            if path + (name,) not in projections:
                raise SchemaError(f"composition {'/'.join(path)!r} lists projection {name!r}, which no node's "
                                  "metadata names", json_path=tree_at)
            comp.projections.append(projections[path + (name,)])
        return comp

    return build(tree, ())


def _gru_compositions(nodes: Mapping[str, Any], where: str) -> Dict[str, Tuple[GRUComposition, tuple]]:
    """block id -> (the GRUComposition its nodes were written from (gate form or `convert --gru onnx`'s fused
    form), with its sizes, bias, weights, initial hidden state and learning-rate settings; its nesting path).
    A block whose gate nodes were edited by hand (no longer the form mdfbridge writes) is refused, naming it."""
    from ..gru_mdf import block_gates, find_blocks, gates_from_fused, h0_of, is_fused_form

    out: Dict[str, Tuple[GRUComposition, tuple]] = {}
    for block, roles in find_blocks(nodes).items():
        if "input" not in roles:
            raise SchemaError(f"GRU block '{block}' has no input node", json_path=f"{where}")
        info = _meta(nodes[roles["input"]]).get("gru") or {}
        place = f"{where}.{roles['input']}.metadata.mdfbridge.gru"
        missing = [k for k in ("name", "input_size", "hidden_size", "composition") if k not in info]
        if missing:
            raise SchemaError(f"GRU block '{block}' metadata lacks {missing}; cannot rebuild its GRUComposition",
                              json_path=place)
        bias = bool(info.get("bias", False))
        if "gru" in roles:
            if not is_fused_form(nodes[roles["gru"]]):
                raise UnsupportedError(f"GRU block '{block}': node '{roles['gru']}' is not the onnx::GRU form "
                                       "mdfbridge writes; cannot rebuild its GRUComposition (load_program() runs it)")
            gates = gates_from_fused(nodes[roles["gru"]], bias=bias)
        else:
            found = block_gates(nodes, roles)
            if found is None:
                raise UnsupportedError(f"GRU block '{block}': its gate nodes are not the form mdfbridge writes "
                                       "(edited?); cannot rebuild its GRUComposition (load_program() runs it)")
            gates = {k: np.asarray(v, dtype=float) for k, (v, _) in found.items()}
        rates = dict(info.get("learning_rates") or {})
        per_key = {key: rates.get(param) for key, param in OPTIMIZER_KEYS.items()}
        values = set(map(repr, per_key.values()))
        shared = next(iter(per_key.values())) if len(values) == 1 else None
        gru = GRUComposition(int(info["input_size"]), int(info["hidden_size"]), bias=bias,
                             enable_learning=bool(info.get("enable_learning", True)),
                             learning_rate=shared, optimizer_params={} if len(values) == 1 else per_key,
                             name=str(info["name"]), initial_hidden=h0_of(nodes, roles))
        for name, value in gates.items():
            if name in gru.block.gates:
                if value.shape != gru.block.gates[name].shape:
                    raise SchemaError(f"GRU block '{block}': {name} has shape {value.shape}, expected "
                                      f"{gru.block.gates[name].shape}", json_path=place)
                gru.block.gates[name] = value
        out[block] = (gru, tuple(info["composition"]))
    return out
