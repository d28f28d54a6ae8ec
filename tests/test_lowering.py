"""Generic MDF (as modeci-mdf and PsyNeuLink write it) lowered to a Program and run by the numpy reference,
compared with modeci-mdf's own engine."""
from __future__ import annotations

import numpy as np
import pytest
from mdf_fixtures import doc, edge, standard_functions_doc
from oracles import modeci_outputs

from mdfbridge import CycleError, ShapeError, UnknownFunctionError, lower
from mdfbridge.importers.reference import run_program


def both(d, inputs=None, steps=1, dt=None):
    """(ours, modeci's) outputs for a document."""
    prog = lower(d)
    ours = run_program(prog, {k: v for k, v in (inputs or {}).items()}, steps=steps, dt=dt or 1.0,
                       record=steps > 1)
    if steps > 1:
        ours = ours["__trajectory__"]
    theirs = modeci_outputs(d, {k.split(".")[-1]: v for k, v in (inputs or {}).items()}, steps=steps, dt=dt)
    return ours, theirs


def test_standard_functions_expressions_and_edge_weight():
    d = standard_functions_doc()
    x = np.random.default_rng(0).normal(size=(5, 3))
    ours, theirs = both(d, {"A_in": x})
    np.testing.assert_allclose(ours["B"], theirs["B"], rtol=1e-12, atol=1e-12)


def test_stateful_counter_and_time_derivative():
    d = doc({
        "counter": {"parameters": {"increment": {"value": 1.5},
                                   "count": {"value": "count + increment"}},
                    "output_ports": {"c": {"value": "count"}}},
        "decay": {"input_ports": {"drive": {"shape": [1]}},
                  "parameters": {"rate": {"value": 0.5},
                                 "x": {"default_initial_value": [1.0, -1.0], "time_derivative": "-rate * x + drive"}},
                  "output_ports": {"x_out": {"value": "x"}}},
    }, {"e": edge("counter", "c", "decay", "drive")})
    ours, theirs = both(d, steps=6, dt=0.1)
    np.testing.assert_allclose(ours["decay"], theirs["decay"], rtol=1e-12, atol=1e-12)
    prog = lower(d)
    assert prog.stateful and prog.uses_dt


def test_cycle_with_default_value_runs_like_modeci():
    d = doc({
        "a": {"input_ports": {"a_in": {"shape": [1], "default_value": [1.0]}},
              "functions": {"f": {"function": "linear", "args": {"variable0": "a_in", "slope": 0.5, "intercept": 1.0}}},
              "output_ports": {"o": {"value": "f"}}},
        "b": {"input_ports": {"b_in": {"shape": [1]}},
              "functions": {"f": {"function": "tanh", "args": {"variable0": "b_in", "scale": 2.0}}},
              "output_ports": {"o": {"value": "f"}}},
    }, {"ab": edge("a", "o", "b", "b_in"), "ba": edge("b", "o", "a", "a_in")})
    prog = lower(d)
    res = run_program(prog, {}, steps=5, record=True)["__trajectory__"]
    # oracle by hand: a(t) = 0.5 * b(t-1) + 1, b(t) = 2 tanh(a(t)), b(-1) from default 1.0 -> a(0) = 1.5
    a_prev_in, as_, bs = 1.0, [], []
    for _ in range(5):
        a = 0.5 * a_prev_in + 1.0
        b = 2 * np.tanh(a)
        as_.append(a)
        bs.append(b)
        a_prev_in = b
    assert set(res) == {"a", "b"}  # a fully cyclic graph reports every node
    np.testing.assert_allclose(res["a"][:, 0, 0], as_, rtol=1e-12)
    np.testing.assert_allclose(res["b"][:, 0, 0], bs, rtol=1e-12)


def test_cycle_without_initial_value_names_the_nodes():
    d = doc({n: {"input_ports": {"i": {"shape": [1]}}, "output_ports": {"o": {"value": "i"}}} for n in "abc"},
            {"ab": edge("a", "o", "b", "i"), "bc": edge("b", "o", "c", "i"), "ca": edge("c", "o", "a", "i")})
    with pytest.raises(CycleError, match="a -> b -> c -> a"):
        lower(d)


def test_onnx_ops_match_modeci():
    d = doc({
        "g": {"input_ports": {"x": {"shape": [1, 3]}},
              "parameters": {"W": {"value": np.arange(12.0).reshape(3, 4).tolist()},
                             "b": {"value": [0.1, 0.2, 0.3, 0.4]}},
              "functions": {
                  "gemm": {"function": {"onnx::Gemm": {"A": "x", "B": "W", "C": "b", "alpha": 0.5, "beta": 2.0}}},
                  "sig": {"function": {"onnx::Sigmoid": {"X": "gemm"}}},
                  "sm": {"function": {"onnx::Softmax": {"input": "sig", "axis": 1}}},
                  "tr": {"function": {"onnx::Transpose": {"data": "sm", "perm": [1, 0]}}},
                  "rs": {"function": {"onnx::Reshape": {"data": "tr", "shape": [2, 2]}}},
              },
              "output_ports": {"y": {"value": "rs"}}},
    })
    ours = run_program(lower(d), {"g": np.random.default_rng(1).normal(size=(4, 1, 3))})["g"]
    assert ours.shape == (4, 2, 2)
    x = np.random.default_rng(1).normal(size=(4, 1, 3))
    for t in range(4):
        z = 0.5 * x[t] @ np.arange(12.0).reshape(3, 4) + 2.0 * np.array([0.1, 0.2, 0.3, 0.4])
        s = 1 / (1 + np.exp(-z))
        sm = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(ours[t], sm.T.reshape(2, 2), rtol=1e-12)


def test_psyneulink_dummy_node_matrix_is_learnable():
    d = doc({
        "A": {"input_ports": {"A_in": {"shape": [2]}}, "output_ports": {"o": {"value": "A_in"}}},
        "P_dummy_node": {"input_ports": {"p_in": {"shape": [2]}},
                         "functions": {"mm": {"function": {"onnx::MatMul": {"A": "p_in",
                                                                             "B": [[1.0, 2.0], [3.0, 4.0]]}}}},
                         "output_ports": {"o": {"value": "mm"}}},
    }, {"e": edge("A", "o", "P_dummy_node", "p_in")})
    prog = lower(d)
    learn = prog.learnable_params()
    assert len(learn) == 1
    (p,) = learn.values()
    assert p.location == ("graphs", "g", "nodes", "P_dummy_node", "functions", "mm", "function", "onnx::MatMul", "B")
    out = run_program(prog, {"A": [[1.0, 1.0]]})["P_dummy_node"]
    np.testing.assert_array_equal(out, [[4.0, 6.0]])


def test_unknown_function_names_node_and_supported():
    d = doc({"n1": {"input_ports": {"i": {"shape": [1]}},
                    "functions": {"f": {"function": "frobnicate", "args": {"variable0": "i"}}},
                    "output_ports": {"o": {"value": "f"}}}})
    with pytest.raises(UnknownFunctionError) as ei:
        lower(d)
    msg = str(ei.value)
    assert "n1" in msg and "frobnicate" in msg and "logistic" in msg


def test_shape_mismatch_names_edge_ports_and_shapes():
    d = doc({"a": {"input_ports": {"i": {"shape": [3]}}, "output_ports": {"o": {"value": "i"}}},
             "b": {"input_ports": {"j": {"shape": [2]}}, "output_ports": {"o": {"value": "j"}}}},
            {"ab": edge("a", "o", "b", "j")})
    with pytest.raises(ShapeError, match=r"edge 'ab'.*\(3,\).*'b\.j'.*\(2,\)"):
        lower(d)


def test_matmul_mismatch_names_node():
    d = doc({"a": {"input_ports": {"i": {"shape": [3]}}, "parameters": {"W": {"value": [[1.0, 2.0]]}},
                   "functions": {"f": {"function": "MatMul", "args": {"A": "i", "B": "W"}}},
                   "output_ports": {"o": {"value": "f"}}}})
    with pytest.raises(ShapeError, match="node 'a'.*MatMul"):
        lower(d)


def test_per_trial_semantics_for_reductions():
    d = doc({"a": {"input_ports": {"i": {"shape": [3]}},
                   "functions": {"f": {"value": "i / numpy.sum(i)"}}, "output_ports": {"o": {"value": "f"}}}})
    x = np.random.default_rng(0).uniform(1, 2, size=(4, 3))
    ours, theirs = both(d, {"i": x})
    np.testing.assert_allclose(ours["a"], x / x.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(ours["a"], theirs["a"], rtol=1e-12)


def test_cycle_error_names_the_path_the_cycle_follows_not_document_order():
    nodes = {n: {"input_ports": {"x": {"shape": [1]}}, "output_ports": {"y": {"value": "x"}}} for n in "abc"}
    edges = {f"{s}_{r}": {"sender": s, "sender_port": "y", "receiver": r, "receiver_port": "x"}
             for s, r in (("a", "c"), ("c", "b"), ("b", "a"))}
    d = {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": nodes, "edges": edges}}}}
    with pytest.raises(CycleError) as info:
        lower(d)
    assert info.value.nodes == ["a", "c", "b", "a"]
    assert "a -> c -> b -> a" in str(info.value)
