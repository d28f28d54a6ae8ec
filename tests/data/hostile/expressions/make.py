"""Writes the expression probes of tests/data/hostile/expressions/cases.json into `gen`: one small MDF model per
probe (`<name>.json`), node 'n' with input port x (shape [2]) and function 'f' whose `value` is the probe's
expression (output port y), plus chain_<N>.json, a chain of N such nodes (the scale probes)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

SIX = ", ".join(["ones(10**8)"] * 6)
SIX_SMALL = ", ".join(["ones(2 * 10**7)"] * 6)
SIX_TILES = ", ".join(["tile(x, [10**7])"] * 6)

PROBES: Dict[str, str] = {
    "int_tower": "x * 9**9**9",
    "int_tower_2_10_8": "x + 2**10**8",
    "int_product": "x * (2**1000 * 3**1000 * 5**1000 * 7**1000)",
    "int_power_of_power": "x * (10**200) ** 200",
    "int_too_large_for_float": "x * 10**400",
    "int_product_too_large_for_float": "x * 99999999999**99 * 99999999999**99",
    "outer_constants": "x + outer(ones(10**5), ones(10**5))",
    "outer_tensor": "outer(tile(x, [10**5]), ones(10**5))",
    "broadcast_constants": "x + ones([100000, 1]) * ones([1, 100000])",
    "broadcast_tensor": "reshape(x, [2, 1, 1]) * ones([1, 100000, 1]) * ones([1, 1, 50000])",
    "matmul_1e4": "x + matmul(ones([10000, 10000]), ones([10000, 10000]))",
    "matmul_result": "x + matmul(ones([20000, 1]), ones([1, 20000]))",
    "matmul_tensor": "matmul(reshape(tile(x, [10000]), [20000, 1]), ones([1, 20000]))",
    "concatenate_6x800MB": f"x + concatenate([{SIX}])",
    "concatenate_6x160MB": f"x + concatenate([{SIX_SMALL}])",
    "concatenate_tensors": f"concatenate([{SIX_TILES}])",
    "tile_huge": "tile(x, [10**9])",
    "tile_nested": "tile(tile(x, [5000]), [5000])",
    "zeros_huge": "x + zeros([10**6, 10**6])",
    "ones_huge": "x + ones(10**10)",
    "full_huge": "x + full([10**5, 10**5], 1.0)",
    "zeros_like_of_huge": "x + zeros_like(outer(ones(10**5), ones(10**5)))",
    "stack_huge": "stack([ones(10**7), ones(10**7), ones(10**7), ones(10**7)])",
    "repeat_huge": "repeat(x, 10**10)",
    "arange_huge": "x + arange(10**12)",
    "eye_huge": "x + eye(10**6)",
    "deep_nesting": "-" * 150 + "x",
    "long_expression": "x" + " + x" * 3000,
    "ones_1000": "sum(x) + ones(1000)",  # fits the default limits (and not max_elements=100)
}


def model(expr: str, shape: list = [2]) -> Dict[str, Any]:
    node = {"input_ports": {"x": {"shape": shape}}, "functions": {"f": {"value": expr}},
            "output_ports": {"y": {"value": "f"}}}
    return {"m": {"format": "ModECI MDF v0.4", "generating_application": "hostile corpus (expressions)",
                  "graphs": {"g": {"nodes": {"n": node}}}}}


def chain(n: int) -> Dict[str, Any]:
    """n nodes in a chain: node i's y feeds node i+1's x (each computes 2 * x + 1)."""
    nodes = {f"n{i}": {"input_ports": {"x": {"shape": [2]}}, "functions": {"f": {"value": "2 * x + 1"}},
                       "output_ports": {"y": {"value": "f"}}} for i in range(n)}
    edges = {f"e{i}": {"sender": f"n{i}", "sender_port": "y", "receiver": f"n{i + 1}", "receiver_port": "x"}
             for i in range(n - 1)}
    return {"chain": {"format": "ModECI MDF v0.4", "generating_application": "hostile corpus (expressions)",
                      "graphs": {"g": {"nodes": nodes, "edges": edges}}}}


def make(gen: Path) -> None:
    """Write every probe model (and the chains) into the folder gen."""
    for name, expr in PROBES.items():
        (gen / f"{name}.json").write_text(json.dumps(model(expr)), encoding="utf-8")
    for n in (10_000,):
        (gen / f"chain_{n}.json").write_text(json.dumps(chain(n)), encoding="utf-8")
