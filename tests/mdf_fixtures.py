"""Documents and compositions several test modules use."""
from __future__ import annotations

from typing import Optional

from mdfbridge import BiasMechanism, Composition, Logistic, MappingProjection, ReLU, SoftMax, Tanh, TransferMechanism


def doc(nodes: dict, edges: Optional[dict] = None, gid: str = "g") -> dict:
    """A one-graph MDF document dict."""
    graph = {"nodes": nodes}
    if edges:
        graph["edges"] = edges
    return {"m": {"format": "ModECI MDF v0.4", "generating_application": "test", "graphs": {gid: graph}}}


def edge(s, sp, r, rp, **params) -> dict:
    """An edge from node s port sp to node r port rp (parameters such as weight)."""
    e = {"sender": s, "sender_port": sp, "receiver": r, "receiver_port": rp}
    if params:
        e["parameters"] = params
    return e


def standard_functions_doc() -> dict:
    """Two nodes using MatMul, logistic, Relu, sin, value expressions with subscripts and an edge weight."""
    return doc({
        "A": {"input_ports": {"A_in": {"shape": [3]}},
              "parameters": {"W": {"value": [[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]]}, "k": {"value": 2.0}},
              "functions": {"mm": {"function": "MatMul", "args": {"A": "A_in", "B": "W"}},
                            "lg": {"function": "logistic", "args": {"variable0": "mm * k", "gain": 1.5, "bias": 0.1,
                                                                    "offset": 0.0}}},
              "output_ports": {"out": {"value": "lg + 1"}}},
        "B": {"input_ports": {"B_in": {"shape": [2]}},
              "functions": {"r": {"function": "Relu", "args": {"A": "B_in - 0.5"}},
                            "s": {"function": "sin", "args": {"variable0": "r", "scale": 2.0}},
                            "e": {"value": "numpy.exp(s) * 0.5 + r[0]"}},
              "output_ports": {"y": {"value": "e"}}},
    }, {"e1": edge("A", "out", "B", "B_in", weight=0.5)})


def nested_composition() -> tuple:
    """(outer, a, o): a -> inner(h1 Tanh -> h2 Logistic) -> deeper(d ReLU) -> o SoftMax, an edge across two nesting
    boundaries, and a bias node into o."""
    inner = Composition("inner")
    h1, h2 = TransferMechanism("h1", 3, Tanh()), TransferMechanism("h2", 2, Logistic())
    inner.add_linear_processing_pathway([h1, "random", h2])
    deeper = Composition("deeper")
    d = TransferMechanism("d", 2, ReLU(leak=0.1))
    deeper.add_node(d)
    inner.add_projection(MappingProjection(matrix="random"), h2, deeper)
    a, o = TransferMechanism("a", 2), TransferMechanism("o", 2, SoftMax())
    outer = Composition("outer", seed=5)
    outer.add_linear_processing_pathway([a, "random", inner])
    outer.add_projection(MappingProjection(matrix="random"), d, o)  # an edge across two nesting boundaries
    outer.add_projection(MappingProjection(matrix=[[0.5, -0.5]], name="b_o"), BiasMechanism("b"), o)
    return outer, a, o
