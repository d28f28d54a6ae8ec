"""The LLVM backend's op records: scalar forms, formulas and per-argument derivatives, and Programs of call ops.

- every record with a scalar LLVM form (`OpDef.llvm`) or a `formula`, compiled and run by the backend on
  random inputs (NaN, zeros and ties included), equals the record's numpy implementation to 1e-12;
- every `formula` is what the numpy implementation computes (bit for bit);
- every per-argument derivative (`OpDef.partial`) equals torch autograd of the record's torch implementation;
- Programs built from `call` ops Add/Sub/Mul/Div/Neg/Identity (tensor, parameter and static arguments): affine
  chains fuse into one affine kernel, forward equals the numpy reference, and one training step equals the
  torch backend's (gradients through every argument); expression trees reading a value several times too.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mdfbridge import UnsupportedError, lower
from mdfbridge.api import run_with_backend
from mdfbridge.expressions import parse_expression
from mdfbridge.importers.llvm_plan import AFFINE, ELEMENTWISE, analyse
from mdfbridge.learning import LearnConfig, train_program
from mdfbridge.ops import REGISTRY
from mdfbridge.program import InputSpec, Op, Param, Program, TensorRef

N = 23  # values per input vector

COMPILED = sorted(k for k, v in REGISTRY.items() if v.elementwise and (v.llvm is not None or v.formula is not None))
WITH_FORMULA = sorted(k for k, v in REGISTRY.items() if v.formula is not None)
PARTIALS = sorted((k, a) for k, v in REGISTRY.items() if v.elementwise for a in v.args if v.partial(a) is not None)


def program(ops: list, inputs: dict, outputs: dict, params: dict | None = None, shapes: dict | None = None) -> Program:
    """A Program whose inputs are vectors: `inputs` name -> size (tensor '<name>.v')."""
    specs = {name: InputSpec(name, name, "v", (size,)) for name, size in inputs.items()}
    all_shapes = {f"{name}.v": (size,) for name, size in inputs.items()}
    all_shapes.update(shapes or {})
    return Program("p", ops, params or {}, specs, outputs, shapes=all_shapes)


def test_the_backend_compiles_the_expected_records():
    for name in ("Add", "Sub", "Mul", "Div", "Neg", "Pow", "Exp", "Log", "Sqrt", "Abs", "Sin", "Cos", "Tan", "Asin",
                 "Acos", "Atan", "Sinh", "Cosh", "Tanh", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal",
                 "NotEqual", "Where", "Maximum", "Minimum", "Sigmoid", "And", "Or", "Not", "Identity", "Square",
                 "linear", "logistic", "exponential", "tanh", "Relu", "ReLU"):
        assert name in COMPILED


# ----------------------------------------------------------------------------------------- forms against numpy

def _inputs(name: str, rng: np.random.Generator) -> dict:
    """Random per-argument vectors with NaN, zeros and ties among them."""
    op = REGISTRY[name]
    values = {}
    for i, a in enumerate(op.args):
        x = rng.uniform(-2.0, 2.0, N)
        x[0], x[1], x[2] = np.nan, 0.0, 1.0
        if i:
            x[3] = np.nan  # NaN in the other argument only
            x[4:7] = values[op.args[0]][4:7]  # ties
        values[a] = x
    return values


@pytest.mark.slow  # compiles a kernel per record (tests/test_ops.py runs every op on llvm too)
@pytest.mark.parametrize("name", COMPILED)
def test_scalar_form_matches_numpy(name):
    """The backend's compiled form of the record (llvm form or formula) equals its numpy implementation.

    Inputs cannot hold NaN, so each argument is input + a parameter holding the NaNs (0 elsewhere)."""
    op = REGISTRY[name]
    values = _inputs(name, np.random.default_rng(len(name)))
    nans = {a: np.where(np.isnan(v), np.nan, 0.0) for a, v in values.items()}
    ops = [Op(f"{a}.x", {"A": TensorRef(f"{a}.v"), "B": TensorRef(f"{a}.nan")}, "n", fn="Add")
           for a in op.args]
    ops.append(Op("f", {a: TensorRef(f"{a}.x") for a in op.args}, "n", fn=name))
    params = {f"{a}.nan": Param(f"{a}.nan", v) for a, v in nans.items()}
    prog = program(ops, {a: N for a in op.args}, {"f": "f"}, params,
                   shapes={"f": (N,), **{f"{a}.x": (N,) for a in op.args}})
    x = {a: np.nan_to_num(v, nan=0.5)[None] for a, v in values.items()}
    got = run_with_backend(prog, x, "llvm")["f"][0]
    with np.errstate(all="ignore"):
        want = np.asarray(op.numpy(**{a: x[a][0] + nans[a] for a in op.args}), dtype=float)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("name", WITH_FORMULA)
def test_formula_is_what_numpy_computes(name):
    op = REGISTRY[name]
    rng = np.random.default_rng(3)
    env = {a: rng.uniform(-0.9, 0.9, N) for a in op.args}
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(parse_expression(op.formula).evaluate(env), op.numpy(**env))


# ----------------------------------------------------------------------------------------- derivatives

_POSITIVE = {"Log", "Log2", "Log10", "Sqrt", "Pow"}
_UNIT = {"Asin", "Acos", "arcsin", "arccos"}


@pytest.mark.parametrize("name,arg", PARTIALS)
def test_partial_matches_torch_autograd(name, arg):
    """d out / d arg from the record (times the incoming gradient) against torch autograd of op.torch."""
    op = REGISTRY[name]
    rng = np.random.default_rng(11)
    lo, hi = (0.2, 2.0) if name in _POSITIVE else (-0.9, 0.9) if name in _UNIT else (-2.0, 2.0)
    values = {a: rng.uniform(lo, hi, N) for a in op.args}
    grad = rng.normal(size=N)
    tensors = {a: torch.tensor(v, requires_grad=True) for a, v in values.items()}
    out_t = op.torch(**tensors)
    if out_t.requires_grad:  # comparisons and logic give their inputs no gradient in torch
        (out_t * torch.tensor(grad)).sum().backward()
    want = tensors[arg].grad.numpy() if tensors[arg].grad is not None else np.zeros(N)
    env = {**values, "out": np.asarray(op.numpy(**values), dtype=float)}
    d = np.broadcast_to(np.asarray(parse_expression(op.partial(arg)).evaluate(env), dtype=float), (N,))
    np.testing.assert_allclose(grad * d, want, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------- programs of call ops

def _chain_program(seed: int = 0) -> Program:
    """inp (3) @ W (learnable) = h; an affine chain of call ops over h, a parameter vector c and static numbers;
    products and quotients of tensors; a logistic output and an output of the affine chain itself."""
    rng = np.random.default_rng(seed)
    T = TensorRef
    params = {"W": Param("W", rng.normal(0, 0.6, (3, 4)), learnable=True),
              "c": Param("c", rng.normal(size=4))}
    ops = [
        Op("h", {"A": T("inp.v"), "B": T("W")}, "proj", fn="MatMul"),
        Op("a", {"A": T("h"), "B": T("c")}, "n1", fn="Add"),        # tensor + parameter
        Op("b", {"A": T("a"), "B": 2.0}, "n1", fn="Mul"),           # times a static number
        Op("d", {"A": 1.5, "B": T("b")}, "n1", fn="Sub"),           # static - tensor
        Op("n", {"X": T("d")}, "n1", fn="Neg"),
        Op("g", {"A": T("n"), "B": 4.0}, "n1", fn="Div"),
        Op("i", {"X": T("g")}, "n1", fn="Identity"),
        Op("p", {"A": T("i"), "B": T("h")}, "n2", fn="Mul"),        # tensor * tensor
        Op("s", {"A": T("h"), "B": T("h")}, "n2", fn="Mul"),        # the same tensor twice
        Op("s1", {"A": T("s"), "B": 1.0}, "n2", fn="Add"),
        Op("q", {"A": T("p"), "B": T("s1")}, "n2", fn="Div"),       # tensor / tensor
        Op("y", {"variable0": T("q"), "gain": 1.3, "bias": 0.1, "offset": 0.0}, "out", fn="logistic"),
    ]
    shapes = {name: (4,) for name in ("h", "a", "b", "d", "n", "g", "i", "p", "s", "s1", "q", "y")}
    return program(ops, {"inp": 3}, {"y": "y", "g": "g"}, params, shapes)


def test_affine_call_chains_fuse_into_one_kernel():
    plan = analyse(_chain_program())
    kinds = [(k.kind, k.out) for k in plan.kernels]
    affine = [k for k in plan.kernels if k.kind == AFFINE]
    # a + c, * 2, 1.5 -, - and / 4: one kernel computing g (an output, so computed once for Identity too)
    assert [k.out for k in affine] == ["g", "s1"], kinds
    assert affine[0].coefs == {"h": pytest.approx(0.5), "c": pytest.approx(0.5)}
    assert [k.out for k in plan.kernels if k.kind == ELEMENTWISE] == ["p", "s", "q", "y"], kinds
    assert plan.kernels[2].inputs == {"A": "g", "B": "h"}  # i = Identity(g) is g


@pytest.mark.parametrize("trials", [1, 6])
def test_call_chain_forward_matches_numpy(trials):
    prog = _chain_program()
    x = {"inp": np.random.default_rng(trials).normal(size=(trials, 3))}
    ref, got = run_with_backend(prog, x, "numpy"), run_with_backend(prog, x, "llvm")
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, atol=1e-12, err_msg=k)


def _one_step(build, inputs: dict, targets: dict, param: str = "W") -> list:
    """W_before - W_after after one full-batch SGD step with lr 1 on the torch and llvm backends."""
    steps = []
    for backend in ("torch", "llvm"):
        prog = build()
        before = prog.params[param].value.copy()
        train_program(prog, inputs, targets, LearnConfig(epochs=1, learning_rate=1.0, minibatch_size=5),
                      backend=backend)
        steps.append(before - prog.params[param].value)
    assert np.abs(steps[0]).max() > 1e-6
    return steps


def test_call_chain_gradients_match_torch_autograd():
    rng = np.random.default_rng(4)
    x, t = {"inp": rng.normal(size=(5, 3))}, {"y": rng.uniform(0.1, 0.9, (5, 4)), "g": rng.normal(size=(5, 4))}
    torch_step, llvm_step = _one_step(_chain_program, x, t)
    np.testing.assert_allclose(llvm_step, torch_step, rtol=1e-10, atol=1e-10)


def _doc(value: str) -> dict:
    """inp (3) -> two learnable projections into ports a and b of node f; function v = a + b, function fn =
    `value` (of v)."""
    rng = np.random.default_rng(2)

    def proj() -> dict:
        return {"metadata": {"mdfbridge": {"role": "projection", "learnable": True}},
                "input_ports": {"input": {"shape": [3]}},
                "parameters": {"matrix": {"value": rng.normal(0, 0.5, (3, 4)).tolist()}},
                "functions": {"function": {"function": "MatMul", "args": {"A": "input", "B": "matrix"}}},
                "output_ports": {"output": {"value": "function"}}}
    nodes = {"inp": {"input_ports": {"x": {"shape": [3]}}, "output_ports": {"out": {"value": "x"}}},
             "p1": proj(), "p2": proj(),
             "f": {"input_ports": {"a": {"shape": [4]}, "b": {"shape": [4]}},
                   "functions": {"v": {"value": "a + b"}, "fn": {"value": value}},
                   "output_ports": {"out": {"value": "fn"}}}}
    edges = {f"e{i}": {"sender": s, "sender_port": sp, "receiver": r, "receiver_port": rp}
             for i, (s, sp, r, rp) in enumerate([("inp", "out", "p1", "input"), ("inp", "out", "p2", "input"),
                                                 ("p1", "output", "f", "a"), ("p2", "output", "f", "b")])}
    return {"m": {"format": "ModECI MDF v0.4", "generating_application": "test",
                  "graphs": {"g": {"nodes": nodes, "edges": edges}}}}


@pytest.mark.parametrize("value", ["(v + 1.0) * (v - 2.0) / (1.0 + v * v)",
                                   "numpy.where(v > 0, numpy.tanh(v), 0.5 * v) + numpy.maximum(v, -0.2) ** 2",
                                   "2.0 * v - 1.0", "v"])
def test_expression_trees_forward_and_gradients(value):
    """`expr` ops lower as their trees of registry ops; the summed afferents (an affine value) are read several
    times."""
    x, t = np.random.default_rng(5).normal(size=(5, 3)), np.random.default_rng(6).normal(size=(5, 4))
    prog = lower(_doc(value))
    ref, got = run_with_backend(prog, {"inp": x}, "numpy"), run_with_backend(prog, {"inp": x}, "llvm")
    np.testing.assert_allclose(got["f"], ref["f"], rtol=1e-12, atol=1e-12)
    torch_step, llvm_step = _one_step(lambda: lower(_doc(value)), {"inp": x}, {"f": t}, "p1.matrix")
    np.testing.assert_allclose(llvm_step, torch_step, rtol=1e-10, atol=1e-10)


def test_gradient_through_an_argument_without_derivative_is_unsupported():
    """Heaviside has no derivative in the registry: forward runs, training says what is missing."""
    prog = lower(_doc("numpy.heaviside(v, 0.5) + v"))
    x, t = np.ones((2, 3)), np.ones((2, 4))
    np.testing.assert_allclose(run_with_backend(prog, {"inp": x}, "llvm")["f"],
                               run_with_backend(prog, {"inp": x}, "numpy")["f"], rtol=1e-12)
    with pytest.raises(UnsupportedError, match="argument 'A' of Heaviside.*torch") as info:
        train_program(prog, {"inp": x}, {"f": t}, LearnConfig(epochs=1), backend="llvm")
    assert "node 'f'" in str(info.value)


def test_a_fused_value_read_twice_by_one_op():
    """linear(x, 1, 0) is x itself; x + x and x * x read it twice."""
    T = TensorRef
    ops = [Op("l", {"variable0": T("inp.v"), "slope": 1.0, "intercept": 0.0}, "n", fn="linear"),
           Op("y", {"A": T("l"), "B": T("l")}, "n", fn="Add"),
           Op("z", {"A": T("l"), "B": T("l")}, "n", fn="Mul")]
    prog = program(ops, {"inp": 3}, {"y": "y", "z": "z"}, shapes={"l": (3,), "y": (3,), "z": (3,)})
    plan = analyse(prog)
    assert [(k.kind, k.out, k.inputs, k.coefs) for k in plan.kernels] == [  # y is computed when it is needed
        (ELEMENTWISE, "z", {"A": "inp.v", "B": "inp.v"}, {}), (AFFINE, "y", {"inp.v": "inp.v"}, {"inp.v": 2.0})]
    x = {"inp": np.random.default_rng(0).normal(size=(4, 3))}
    got = run_with_backend(prog, x, "llvm")
    np.testing.assert_allclose(got["y"], 2 * x["inp"], rtol=1e-15)
    np.testing.assert_allclose(got["z"], x["inp"] ** 2, rtol=1e-15)
