"""The two MDF forms of a GRU block and how lowering recognises them.

Gate form (default, modeci-mdf's engine steps it trial by trial): nodes `<b>__input`, `<b>__reset`,
`<b>__update`, `<b>__new`, `<b>__hidden`, `<b>__output`; the gate weights are parameters of the gate nodes; the
hidden node's value reaches reset/update/new/hidden through recurrent edges into ports whose `default_value` is
the initial hidden state. Fused form: `<b>__input`, `<b>__gru` running `onnx::GRU` (W, R, B in ONNX layout,
linear_before_reset=1) on the input sequence, `<b>__output`. Both carry `metadata.mdfbridge.gru` so lowering runs
the block as one fused GRU op over whole sequences.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from .gru import BIAS_NAMES, PNL_GATE, WEIGHT_NAMES, gates_to_onnx, onnx_to_gates

ROLES = ("input", "reset", "update", "new", "hidden", "output")
OUT = "output"

GATE_VALUES = {
    "reset": "1 / (1 + numpy.exp(-(x @ wts_ir + h @ wts_hr{b_r})))",
    "update": "1 / (1 + numpy.exp(-(x @ wts_iu + h @ wts_hu{b_u})))",
    "new": "numpy.tanh(x @ wts_in{b_in} + r * (h @ wts_hn{b_hn}))",
    "hidden": "(1 - z) * n + z * h",
}


def gate_value(role: str, bias: bool) -> str:
    """The MDF `value` expression of one gate node (with or without bias parameters)."""
    fill = {"b_r": " + bias_ir + bias_hr", "b_u": " + bias_iu + bias_hu", "b_in": " + bias_in",
            "b_hn": " + bias_hn"} if bias else {"b_r": "", "b_u": "", "b_in": "", "b_hn": ""}
    return GATE_VALUES[role].format(**fill)


def _meta(block: str, role: str, info: Mapping[str, Any]) -> Dict[str, Any]:
    return {"mdfbridge": {"gru": {"block": block, "role": role, **info}}}


def _port(shape: int, default: Optional[np.ndarray] = None) -> Dict[str, Any]:
    p: Dict[str, Any] = {"shape": [shape]}
    if default is not None:
        p["default_value"] = np.asarray(default, dtype=float).tolist()
    return p


def gate_form_nodes(block: str, input_size: int, hidden_size: int, gates: Mapping[str, np.ndarray],
                    h0: np.ndarray, input_ports: Mapping[str, Any], info: Mapping[str, Any]
                    ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(nodes, edges) of the gate form; `input_ports` are the input node's ports (afferents or external)."""
    bias = gates.get("bias_ir") is not None
    I, H = input_size, hidden_size
    ids = {r: f"{block}__{r}" for r in ROLES}
    x_sum = " + ".join(input_ports)
    nodes: Dict[str, Any] = {
        ids["input"]: {"metadata": _meta(block, "input", info), "input_ports": dict(input_ports),
                       "functions": {"function": {"value": x_sum}}, "output_ports": {OUT: {"value": "function"}}}}
    for role, g in (("reset", "r"), ("update", "z"), ("new", "n")):
        names = [f"wts_i{PNL_GATE[g]}", f"wts_h{PNL_GATE[g]}"]
        if bias:
            names += [f"bias_i{PNL_GATE[g]}", f"bias_h{PNL_GATE[g]}"]
        ports = {"x": _port(I), "h": _port(H, h0)}
        if role == "new":
            ports["r"] = _port(H)
        nodes[ids[role]] = {"metadata": _meta(block, role, info), "input_ports": ports,
                            "parameters": {n: {"value": np.asarray(gates[n]).tolist()} for n in names},
                            "functions": {"function": {"value": gate_value(role, bias)}},
                            "output_ports": {OUT: {"value": "function"}}}
    nodes[ids["hidden"]] = {"metadata": _meta(block, "hidden", info),
                            "input_ports": {"n": _port(H), "z": _port(H), "h": _port(H, h0)},
                            "functions": {"function": {"value": gate_value("hidden", bias)}},
                            "output_ports": {OUT: {"value": "function"}}}
    nodes[ids["output"]] = {"metadata": _meta(block, "output", info), "input_ports": {"hidden": _port(H)},
                            "output_ports": {OUT: {"value": "hidden"}}}
    wiring = [("input", "reset", "x"), ("input", "update", "x"), ("input", "new", "x"),
              ("hidden", "reset", "h"), ("hidden", "update", "h"), ("hidden", "new", "h"),
              ("reset", "new", "r"), ("new", "hidden", "n"), ("update", "hidden", "z"), ("hidden", "hidden", "h"),
              ("hidden", "output", "hidden")]
    edges = {f"{block}__{s}_to_{r}_{p}": {"sender": ids[s], "sender_port": OUT, "receiver": ids[r], "receiver_port": p}
             for s, r, p in wiring}
    return nodes, edges


def fused_form_nodes(block: str, input_size: int, hidden_size: int, gates: Mapping[str, np.ndarray],
                     h0: np.ndarray, input_ports: Mapping[str, Any], info: Mapping[str, Any]
                     ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(nodes, edges) of the fused form: one `onnx::GRU` node between the input and output nodes."""
    onnx = gates_to_onnx(gates)
    H = hidden_size
    ids = {"input": f"{block}__input", "gru": f"{block}__gru", "output": f"{block}__output"}
    nodes: Dict[str, Any] = {
        ids["input"]: {"metadata": _meta(block, "input", info), "input_ports": dict(input_ports),
                       "functions": {"function": {"value": " + ".join(input_ports)}},
                       "output_ports": {OUT: {"value": "function"}}},
        ids["gru"]: {"metadata": _meta(block, "gru", info), "input_ports": {"x": {"shape": [input_size]}},
                     "parameters": {"W": {"value": onnx["W"].tolist()}, "R": {"value": onnx["R"].tolist()},
                                    "B": {"value": onnx["B"].tolist()},
                                    "initial_h": {"value": np.asarray(h0, dtype=float).reshape(1, 1, H).tolist()}},
                     "functions": {
                         "x3": {"function": {"onnx::Reshape": {"data": "x", "shape": [0, 1, -1]}}},
                         "gru": {"function": {"onnx::GRU": {"X": "x3", "W": "W", "R": "R", "B": "B",
                                                            "initial_h": "initial_h", "hidden_size": H,
                                                            "linear_before_reset": 1}}},
                         "y": {"function": {"onnx::Reshape": {"data": "gru", "shape": [0, -1]}}}},
                     "output_ports": {OUT: {"value": "y"}}},
        ids["output"]: {"metadata": _meta(block, "output", info), "input_ports": {"hidden": _port(H)},
                        "output_ports": {OUT: {"value": "hidden"}}},
    }
    edges = {f"{block}__input_to_gru": {"sender": ids["input"], "sender_port": OUT, "receiver": ids["gru"],
                                        "receiver_port": "x"},
             f"{block}__gru_to_output": {"sender": ids["gru"], "sender_port": OUT, "receiver": ids["output"],
                                         "receiver_port": "hidden"}}
    return nodes, edges


def find_blocks(nodes: Mapping[str, Any]) -> Dict[str, Dict[str, str]]:
    """block name -> role -> node id, from `metadata.mdfbridge.gru`."""
    blocks: Dict[str, Dict[str, str]] = {}
    for nid, node in nodes.items():
        g = ((node.get("metadata") or {}).get("mdfbridge") or {}).get("gru")
        if g:
            blocks.setdefault(g["block"], {})[g["role"]] = nid
    return blocks


def block_gates(nodes: Mapping[str, Any], roles: Mapping[str, str]) -> Optional[Dict[str, Tuple[Any, tuple]]]:
    """Gate parameter name -> (value, location under the node) for a gate-form block, or None if not gate form."""
    if set(roles) != set(ROLES):
        return None
    out: Dict[str, Tuple[Any, tuple]] = {}
    bias = "bias_ir" in (nodes[roles["reset"]].get("parameters") or {})
    for role in ("reset", "update", "new", "hidden"):
        node = nodes[roles[role]]
        fn = (node.get("functions") or {}).get("function") or {}
        if fn.get("value") != gate_value(role, bias):
            return None  # edited by hand: lower node by node, as written
        for pid, p in (node.get("parameters") or {}).items():
            out[pid] = (p.get("value"), (roles[role], "parameters", pid, "value"))
    if not set(WEIGHT_NAMES) <= set(out) or (bias and not set(BIAS_NAMES) <= set(out)):
        return None
    return out


def gates_from_fused(node: Mapping[str, Any], bias: bool = True) -> Dict[str, np.ndarray]:
    """Per-gate weights of a fused-form node (for `convert --gru gates`); no biases for a block without."""
    p = {k: np.asarray(v["value"], dtype=float) for k, v in (node.get("parameters") or {}).items()}
    return onnx_to_gates(p["W"], p["R"], p.get("B"), bias=bias)


def h0_of(nodes: Mapping[str, Any], roles: Mapping[str, str]) -> np.ndarray:
    """Initial hidden state of a block (gate form: the hidden node's recurrent port default; fused: initial_h)."""
    if "gru" in roles:
        return np.asarray(nodes[roles["gru"]]["parameters"]["initial_h"]["value"], dtype=float).reshape(-1)
    return np.asarray(nodes[roles["hidden"]]["input_ports"]["h"]["default_value"], dtype=float).reshape(-1)


def convert_blocks(doc: Mapping[str, Any], form: str) -> Dict[str, Any]:
    """A copy of an MDF dict with every GRU block rewritten in `form` ('gates' or 'onnx')."""
    import copy

    out = copy.deepcopy(dict(doc))
    model = next(iter(out.values()))
    for graph in (model.get("graphs") or {}).values():
        nodes, edges = graph.get("nodes") or {}, graph.get("edges") or {}
        for block, roles in find_blocks(nodes).items():
            info = dict(nodes[roles["input"]]["metadata"]["mdfbridge"]["gru"])
            for k in ("block", "role"):
                info.pop(k, None)
            if "gru" in roles:
                gates = gates_from_fused(nodes[roles["gru"]], bias=bool(info.get("bias", True)))
            else:
                gates = {k: np.asarray(v, dtype=float) for k, (v, _) in (block_gates(nodes, roles) or {}).items()}
            h0 = h0_of(nodes, roles)
            in_ports = nodes[roles["input"]].get("input_ports") or {}
            make = gate_form_nodes if form == "gates" else fused_form_nodes
            new_nodes, new_edges = make(block, int(info["input_size"]), int(info["hidden_size"]), gates, h0,
                                        in_ports, info)
            inside = set(roles.values())
            # keep edges crossing the block boundary; rename the output node's id is stable (<b>__output)
            kept = {k: e for k, e in edges.items() if not (e["sender"] in inside and e["receiver"] in inside)}
            rebuilt = {k: v for k, v in nodes.items() if k not in inside}
            # preserve node order: block nodes where the input node stood
            ordered: Dict[str, Any] = {}
            for k in nodes:
                if k == roles["input"]:
                    ordered.update(new_nodes)
                elif k in rebuilt:
                    ordered[k] = rebuilt[k]
            graph["nodes"] = ordered
            graph["edges"] = {**kept, **new_edges}
    return out


def is_fused_form(node: Mapping[str, Any]) -> bool:
    """True when a block's `onnx::GRU` node has exactly the functions `fused_form_nodes` writes."""
    fns = node.get("functions") or {}
    gru = ((fns.get("gru") or {}).get("function") or {}).get("onnx::GRU") or {}
    x3 = ((fns.get("x3") or {}).get("function") or {}).get("onnx::Reshape") or {}
    y = ((fns.get("y") or {}).get("function") or {}).get("onnx::Reshape") or {}
    return (set(fns) == {"x3", "gru", "y"} and x3.get("data") == "x" and list(x3.get("shape") or []) == [0, 1, -1]
            and gru.get("X") == "x3" and gru.get("W") == "W" and gru.get("R") == "R"
            and gru.get("B") in ("B", None) and gru.get("initial_h") == "initial_h"
            and set(gru) <= {"X", "W", "R", "B", "initial_h", "hidden_size", "linear_before_reset"}
            and gru.get("linear_before_reset") == 1 and y.get("data") == "gru"
            and list(y.get("shape") or []) == [0, -1]
            and (node.get("output_ports") or {}).get(OUT, {}).get("value") == "y")
