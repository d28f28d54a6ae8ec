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

