"""Draw an MDF graph or an ONNX graph with graphviz (`mdfbridge graph FILE --out g.png`).

The `graphviz` Python package builds the DOT source; the `dot` program renders it (PNG, SVG, PDF). Writing
`.dot`/`.gv` needs no `dot`. Labels show ids, roles, functions and shapes, never weight values, so huge models
stay readable.
"""
from __future__ import annotations

import logging
import os
import shutil
from typing import Any, Dict, Mapping, Optional, Union

from .errors import DataError, UnsupportedError

log = logging.getLogger(__name__)

RENDERED = ("png", "svg", "pdf")
SOURCE_ONLY = ("dot", "gv")
DOT_MISSING = ("the graphviz 'dot' program is not installed, so {out} cannot be drawn; install graphviz "
               "(apt-get install graphviz, brew install graphviz or conda install graphviz), or write .dot")
_ROLE_STYLE = {"input": ("lightblue", "box"), "output": ("palegreen", "box"), "projection": ("lightyellow", "box"),
               "bias": ("lightgrey", "box"), "onnx": ("white", "box")}
_SHAPES_MAX = 6  # parameters listed in a node label before "..."


def _digraph(name: str) -> Any:
    try:
        import graphviz
    except ImportError as exc:  # pragma: no cover - a dependency of modeci-mdf
        raise UnsupportedError("the graphviz Python package is not installed (pip install graphviz)") from exc
    g = graphviz.Digraph(name=name)
    g.attr(rankdir="TB", fontname="Helvetica")
    g.attr("node", fontname="Helvetica", fontsize="10", style="filled", fillcolor="white", shape="box")
    g.attr("edge", fontname="Helvetica", fontsize="9")
    return g


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _shape_of(value: Any) -> str:
    """'(3, 4)' for nested lists of numbers, 'scalar' for numbers, 'expr' for expression strings."""
    if isinstance(value, str):
        return "expr"
    dims = []
    while isinstance(value, list):
        dims.append(len(value))
        value = value[0] if value else None
    return f"({', '.join(map(str, dims))})" if dims else "scalar"


def mdf_digraph(doc: Mapping[str, Any], graph: Optional[str] = None) -> Any:
    """A graphviz Digraph of one graph of an MDF document dict: nodes (role, functions, parameters), edges."""
    model_id, model = next(iter(doc.items()))
    graphs = model.get("graphs") or {}
    if not graphs:
        raise DataError(f"model '{model_id}' has no graph to draw")
    gid = graph if graph is not None else next(iter(graphs))
    if gid not in graphs:
        raise DataError(f"no graph '{gid}' in model '{model_id}' (graphs: {', '.join(graphs)})")
    g = _digraph(gid)
    g.attr(label=f"{model_id} / {gid}", labelloc="t")
    for nid, node in (graphs[gid].get("nodes") or {}).items():
        meta = ((node.get("metadata") or {}).get("mdfbridge") or {})
        role = str(meta.get("role") or "")
        lines = [nid + (f"  [{role}]" if role else "")]
        for fid, f in (node.get("functions") or {}).items():
            fn = f.get("function")
            name = next(iter(fn)) if isinstance(fn, dict) and fn else (fn or (meta.get("transfer") or "value"))
            lines.append(f"{fid}: {name}")
        params = list((node.get("parameters") or {}).items())
        for pid, p in params[:_SHAPES_MAX]:
            lines.append(f"{pid} {_shape_of(p.get('value'))}")
        if len(params) > _SHAPES_MAX:
            lines.append(f"... {len(params) - _SHAPES_MAX} more parameters")
        color, shape = _ROLE_STYLE.get(role, ("white", "box"))
        g.node(nid, "\n".join(_escape(s) for s in lines), fillcolor=color, shape=shape)
    for e in (graphs[gid].get("edges") or {}).values():
        weight = (e.get("parameters") or {}).get("weight")
        label = f"{e.get('sender_port', '')} -> {e.get('receiver_port', '')}"
        if weight is not None:
            label += f"\nweight {_shape_of(weight)}"
        g.edge(str(e.get("sender")), str(e.get("receiver")), label=_escape(label))
    return g


def onnx_digraph(model: Any) -> Any:
    """A graphviz Digraph of an ONNX ModelProto: graph inputs/outputs, one box per node, edges per tensor."""
    from onnx import numpy_helper

    graph = model.graph
    g = _digraph(graph.name or "onnx")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
    g.attr(label=f"{graph.name or 'ONNX graph'} (opset {opset})", labelloc="t")
    inits = {i.name: tuple(numpy_helper.to_array(i).shape) if not i.external_data else tuple(i.dims)
             for i in graph.initializer}
    producer: Dict[str, str] = {}
    for i, inp in enumerate(graph.input):
        if inp.name in inits:
            continue
        nid = f"graph_input{i}"
        g.node(nid, _escape(f"{inp.name}\n{onnx_type_text(inp)}"), fillcolor=_ROLE_STYLE["input"][0], shape="ellipse")
        producer[inp.name] = nid
    for i, node in enumerate(graph.node):
        nid = f"node{i}"
        lines = [node.op_type + (f"  ({node.name})" if node.name else "")]
        weights = [f"{n} {inits[n]}" for n in node.input if n in inits]
        lines += weights[:_SHAPES_MAX] + ([f"... {len(weights) - _SHAPES_MAX} more"] if len(weights) > _SHAPES_MAX
                                          else [])
        g.node(nid, "\n".join(_escape(s) for s in lines))
        for n in node.input:
            if n in producer:
                g.edge(producer[n], nid, label="" if producer[n].startswith("graph_input") else _escape(n))
        for o in node.output:
            if o:
                producer[o] = nid
    for i, out in enumerate(graph.output):
        nid = f"graph_output{i}"
        g.node(nid, _escape(f"{out.name}\n{onnx_type_text(out)}"), fillcolor=_ROLE_STYLE["output"][0], shape="ellipse")
        if out.name in producer:
            g.edge(producer[out.name], nid)
    return g


def onnx_type_text(value_info: Any) -> str:
    """'float [batch, 4]' for a tensor value info."""
    from onnx import TensorProto

    tt = value_info.type.tensor_type
    if value_info.type.WhichOneof("value") != "tensor_type":
        return str(value_info.type.WhichOneof("value") or "?")
    dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in tt.shape.dim]
    return f"{TensorProto.DataType.Name(tt.elem_type).lower()} [{', '.join(dims)}]"


def dot_available() -> bool:
    """Is graphviz's `dot` program on PATH?"""
    return shutil.which("dot") is not None


def render(digraph: Any, out: Union[str, "os.PathLike[str]"]) -> str:
    """Write the digraph to `out`: .png/.svg/.pdf rendered by `dot`, .dot/.gv as DOT source. Returns the format."""
    from .document import atomic_write_bytes

    path = os.fspath(out)
    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    if fmt not in RENDERED + SOURCE_ONLY:
        raise DataError(f"cannot draw to '{path}': unsupported extension '.{fmt}' (use "
                        f"{', '.join('.' + f for f in RENDERED + SOURCE_ONLY)})")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise DataError(f"cannot write {path}: directory {parent} does not exist")
    if fmt in SOURCE_ONLY:
        atomic_write_bytes(path, digraph.source.encode())
        return fmt
    if not dot_available():
        raise UnsupportedError(DOT_MISSING.format(out=path))
    try:
        payload = digraph.pipe(format=fmt)
    except Exception as exc:  # noqa: BLE001 - graphviz.ExecutableNotFound / CalledProcessError
        raise UnsupportedError(f"graphviz's dot failed drawing {path}: {str(exc).strip().splitlines()[0]}") from exc
    atomic_write_bytes(path, payload)
    log.info("drew %s (%d bytes)", path, len(payload))
    return fmt



# ---------------------------------------------------------------------------------------------- compositions
GRU_NODES = ("input", "reset", "update", "new", "hidden", "output")  # PsyNeuLink's GRUComposition nodes
_GRU_EDGES = (("input", "reset"), ("input", "update"), ("input", "new"), ("reset", "new"), ("update", "hidden"),
              ("new", "hidden"), ("hidden", "hidden"), ("hidden", "reset"), ("hidden", "update"), ("hidden", "new"),
              ("hidden", "output"))
JUPYTER_FORMATS = ("jupyter", "source")


def composition_digraph(comp: Any, *, show_nested: bool = True, show_projections: bool = True) -> Any:
    """A graphviz Digraph of a Composition (`Composition.show_graph`): a node per mechanism (name, function, size;
    input nodes blue, output nodes green, bias nodes grey), an edge per projection (its name and matrix shape when
    `show_projections`, default True), each nested composition a cluster (`cluster_<flat path>`) holding its nodes
    (show_nested False: one box standing for it), each GRU block (GRUComposition) a cluster of PsyNeuLink's
    input, reset, update, new, hidden and output nodes with their recurrent wiring."""
    flat_nodes, flat_projs = comp.flatten()
    roles = comp._roles((flat_nodes, flat_projs))
    flat_id = {id(f.mechanism): f.id for f in flat_nodes}
    g = _digraph(comp.name)
    g.attr(label=f"{type(comp).__name__} {comp.name}", labelloc="t", compound="true")
    ends: Dict[str, tuple] = {}  # flat node id -> (node drawn receiving its afferents, node sending its efferents)

    def draw(graph: Any, c: Any, path: tuple, collapsed: Optional[str]) -> None:
        for node in c.nodes:
            if hasattr(node, "nodes"):  # a nested composition
                sub_path = path + (node.name,)
                if getattr(node, "block", None) is not None:
                    _draw_gru(graph, node.block, flat_id[id(node.block)], ends, collapsed, roles)
                elif show_nested or collapsed is not None:
                    if collapsed is not None:
                        draw(graph, node, sub_path, collapsed)
                        continue
                    with graph.subgraph(name=_cluster_id("__".join(sub_path))) as sub:
                        sub.attr(label=f"{type(node).__name__} {node.name}", style="rounded", color="grey40")
                        draw(sub, node, sub_path, None)
                else:
                    box = "box_" + _cluster_id("__".join(sub_path))[len("cluster_"):]
                    graph.node(box, _escape(f"{type(node).__name__} {node.name}"), shape="box3d",
                               fillcolor="lavender")
                    draw(graph, node, sub_path, box)
                continue
            fid = flat_id[id(node)]
            if hasattr(node, "gates"):  # a GRU block (a GRUComposition drawn on its own)
                _draw_gru(graph, node, fid, ends, collapsed, roles)
                continue
            ends[fid] = (collapsed or fid, collapsed or fid)
            if collapsed is not None:
                continue
            role = "bias" if hasattr(node, "value") and not hasattr(node, "function") else (
                "input" if fid in roles["input"] else "output" if fid in roles["output"] else "")
            fn = getattr(node, "function", None)
            label = f"{node.name}\n{getattr(fn, 'name', type(node).__name__)} ({node.size})"
            graph.node(fid, _escape(label), fillcolor=_ROLE_STYLE.get(role, ("white", "box"))[0])

    draw(g, comp, (comp.name,), None)
    for p in flat_projs:
        sender, receiver = ends[p.sender][1], ends[p.receiver][0]
        if sender == receiver and sender.startswith("box_"):
            continue  # inside a composition drawn as one box
        label = f"{p.projection.name}\n{tuple(p.matrix.shape)}" if show_projections else ""
        g.edge(sender, receiver, label=_escape(label), style="solid" if p.projection.learnable else "dashed")
    return g


def _cluster_id(text: str) -> str:
    """A graphviz cluster name (clusters are subgraphs whose names start with 'cluster')."""
    return "cluster_" + "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text)


def _draw_gru(graph: Any, gru: Any, fid: str, ends: Dict[str, tuple], collapsed: Optional[str],
              roles: Mapping[str, Any]) -> None:
    """A GRU block (GRUBlock: name, input_size, hidden_size, bias) as a cluster of its gate nodes (or nothing when
    drawn inside a collapsed composition); its input/output nodes coloured when the block is one."""
    if collapsed is not None:
        ends[fid] = (collapsed, collapsed)
        return
    ends[fid] = (f"{fid}__input", f"{fid}__output")
    with graph.subgraph(name=_cluster_id(fid + "__GRU")) as sub:
        sub.attr(label=_escape(f"GRUComposition {gru.name} (input {gru.input_size}, hidden {gru.hidden_size}"
                               f"{', bias' if gru.bias else ''})"), style="rounded", color="darkorange")
        for role in GRU_NODES:
            size = gru.input_size if role == "input" else gru.hidden_size
            color = "moccasin" if role in ("reset", "update", "new") else "white"
            if role in ("input", "output") and fid in roles[role]:
                color = _ROLE_STYLE[role][0]
            sub.node(f"{fid}__{role}", _escape(f"{role.upper()}_NODE ({size})"), fillcolor=color)
        for s, r in _GRU_EDGES:
            sub.edge(f"{fid}__{s}", f"{fid}__{r}", style="dashed" if s == "hidden" and r != "output" else "solid")


def render_digraph(digraph: Any, output_fmt: str, filename: str) -> Optional[str]:
    """Write a digraph as `filename` (its extension added when missing) in `output_fmt` ('pdf', 'png', 'svg',
    'dot', 'gv'); returns the path written, or None when the format needs graphviz's `dot` program and it is not
    installed: then a warning says so (the Digraph's `.source` still holds the DOT text)."""
    import warnings

    fmt = str(output_fmt).lower().lstrip(".")
    if fmt not in RENDERED + SOURCE_ONLY:
        raise DataError(f"show_graph: output_fmt {output_fmt!r} unknown; use None or one of "
                        f"{', '.join(map(repr, JUPYTER_FORMATS + RENDERED + SOURCE_ONLY))}")
    path = filename if os.path.splitext(filename)[1].lower() == "." + fmt else f"{filename}.{fmt}"
    if fmt in RENDERED and not dot_available():
        message = DOT_MISSING.format(out=path) + "; the returned Digraph's .source is the DOT text"
        log.warning(message)
        warnings.warn(message, stacklevel=3)
        return None
    render(digraph, path)
    return path
