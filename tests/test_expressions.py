"""Tests for mdfbridge.expressions: the safe ast-based evaluator of MDF expressions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mdfbridge.errors import ExpressionError
from mdfbridge.expressions import (
    FUNCTIONS,
    SUPPORTED_FUNCTIONS,
    Expression,
    expression_names,
    parse_expression,
)

try:
    import torch
except ImportError:  # the numpy half of the tests still runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")

X = np.array([-1.5, -0.25, 0.5, 2.0])
Y = np.array([0.3, -0.7, 1.2, 2.5])
A = np.array([[1.0, -2.0, 3.0], [-0.5, 4.0, 0.25]])
B = np.array([[0.5, 1.0], [-1.0, 2.0], [3.0, -0.25]])
ENV = dict(x=X, y=Y, A=A, B=B, variable0=X, gain=2.0, bias=0.1, offset=-0.2, scale=1.5, rate=0.3,
           slope=0.7, intercept=-1.1, i=1, n=3)

# expression -> hand-written numpy equivalent
CASES = [
    ("variable0 * slope + intercept", lambda: X * 0.7 - 1.1),
    ("1/(1 + exp(-1*gain*(variable0 + bias) + offset))", lambda: 1 / (1 + np.exp(-2.0 * (X + 0.1) - 0.2))),
    ("scale * exp((rate * variable0) + bias) + offset", lambda: 1.5 * np.exp(0.3 * X + 0.1) - 0.2),
    ("scale * arctan(variable0)", lambda: 1.5 * np.arctan(X)),
    ("scale * sin(variable0) + cos(y) * tanh(x)", lambda: 1.5 * np.sin(X) + np.cos(Y) * np.tanh(X)),
    ("sinh(y) + cosh(y) - tan(y)", lambda: np.sinh(Y) + np.cosh(Y) - np.tan(Y)),
    ("arcsin(y / 3) + arccos(y / 3)", lambda: np.arcsin(Y / 3) + np.arccos(Y / 3)),
    ("A @ B", lambda: A @ B),
    ("A * (A > 0)", lambda: A * (A > 0)),
    ("numpy.maximum(x, 0)", lambda: np.maximum(X, 0)),
    ("np.minimum(x, y) + math.exp(y)", lambda: np.minimum(X, Y) + np.exp(Y)),
    ("x[0]", lambda: X[0]),
    ("x[-1] + x[i]", lambda: X[-1] + X[1]),
    ("x[1:3]", lambda: X[1:3]),
    ("A[:, 0]", lambda: A[:, 0]),
    ("A[1, ::2]", lambda: A[1, ::2]),
    ("A[i, :n - 1]", lambda: A[1, :2]),
    ("x if x > 0 else -x", lambda: np.where(X > 0, X, -X)),
    ("1 if gain > 1 else 0", lambda: 1),
    ("0 < x < 1", lambda: (0 < X) & (X < 1)),
    ("x < y <= 2 != x", lambda: (X < Y) & (Y <= 2) & (2 != X)),
    ("x > 0 and y > 0", lambda: (X > 0) & (Y > 0)),
    ("x > 0 or y > 0", lambda: (X > 0) | (Y > 0)),
    ("not (x > 0)", lambda: ~(X > 0)),
    ("x == y", lambda: X == Y),
    ("x ** 2 + 2 * x * y - y / 4", lambda: X**2 + 2 * X * Y - Y / 4),
    ("x // 0.5 + x % 0.7", lambda: X // 0.5 + X % 0.7),
    ("-x + +y", lambda: -X + Y),
    ("2 ** 10 * x", lambda: 1024 * X),
    ("sum(x)", lambda: X.sum()),
    ("sum(A, axis=0)", lambda: A.sum(axis=0)),
    ("mean(A, axis=1, keepdims=True)", lambda: A.mean(axis=1, keepdims=True)),
    ("max(x)", lambda: X.max()),
    ("min(A, axis=1)", lambda: A.min(axis=1)),
    ("max(A, axis=(0, 1))", lambda: A.max()),
    ("max(x, y)", lambda: np.maximum(X, Y)),
    ("min(x, y, 0.5)", lambda: np.minimum(np.minimum(X, Y), 0.5)),
    ("prod(y)", lambda: Y.prod()),
    ("argmax(x) + argmin(y)", lambda: 3 + 1),
    ("dot(x, y)", lambda: X @ Y),
    ("dot(A, B)", lambda: A @ B),
    ("matmul(A, B)", lambda: A @ B),
    ("transpose(A)", lambda: A.T),
    ("transpose(A, (1, 0)) @ A", lambda: A.T @ A),
    ("reshape(A, (3, 2))", lambda: A.reshape(3, 2)),
    ("concatenate([x, y])", lambda: np.concatenate([X, Y])),
    ("concatenate((A, A), axis=1)", lambda: np.concatenate([A, A], axis=1)),
    ("stack((x, y), axis=1)", lambda: np.stack([X, Y], axis=1)),
    ("array([1.0, 2.0]) * gain", lambda: np.array([2.0, 4.0])),
    ("[gain, bias] + 1", lambda: np.array([3.0, 1.1])),
    ("[[1, 2], [3, 4]] @ [gain, bias]", lambda: np.array([[1, 2], [3, 4]]) @ np.array([2.0, 0.1])),
    ("zeros((2, 3))", lambda: np.zeros((2, 3))),
    ("ones(3) * gain", lambda: np.full(3, 2.0)),
    ("full((2,), 7.5)", lambda: np.full(2, 7.5)),
    ("zeros_like(x) + ones_like(x)", lambda: np.ones(4)),
    ("shape(A)[0] * len(x)", lambda: 8),
    ("clip(x, -1, 1)", lambda: np.clip(X, -1, 1)),
    ("where(x > 0, x, y)", lambda: np.where(X > 0, X, Y)),
    ("power(y, 2) + square(x)", lambda: Y**2 + X**2),
    ("sign(x) + floor(x) + ceil(y) + round(y)", lambda: np.sign(X) + np.floor(X) + np.ceil(Y) + np.round(Y)),
    ("round(y, 1)", lambda: np.round(Y, 1)),
    ("sqrt(abs(x)) + log(1 + abs(x)) + log2(2 + x) + log10(3 + x)",
     lambda: np.sqrt(abs(X)) + np.log(1 + abs(X)) + np.log2(2 + X) + np.log10(3 + X)),
    ("heaviside(x, 0.5)", lambda: np.heaviside(X, 0.5)),
    ("tile(x, 2)", lambda: np.tile(X, 2)),
    ("squeeze(expand_dims(x, 0))", lambda: X),
    ("expand_dims(x, 1)", lambda: X[:, None]),
    ("outer(x, y)", lambda: np.outer(X, Y)),
    ("erf(x)", lambda: np.array([math.erf(v) for v in X])),
    ("sigmoid(x)", lambda: 1 / (1 + np.exp(-X))),
    ("relu(x)", lambda: np.maximum(X, 0)),
    ("float(gain) + int(2.7) + int(-2.7)", lambda: 2.0),
    ("float(i) / 4", lambda: 0.25),
    ("pi * e + x * inf", lambda: math.pi * math.e + X * np.inf),
    ("np.pi + math.e", lambda: math.pi + math.e),
    ("logical_and(x > 0, y > 0) * 1.0 + logical_or(x > 1, y > 1)",
     lambda: np.logical_and(X > 0, Y > 0) * 1.0 + np.logical_or(X > 1, Y > 1)),
    ("logical_not(x > 0)", lambda: X <= 0),
    ("True + False * 2", lambda: 1),
    ("2.5", lambda: 2.5),
]


def _close(actual, expected, atol=1e-12):
    if torch is not None and isinstance(actual, torch.Tensor):
        actual = actual.detach().numpy()
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=1e-12, atol=atol)
    assert np.shape(actual) == np.shape(expected)


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] for c in CASES])
def test_numpy_matches_hand_computed(text, expected):
    _close(parse_expression(text).evaluate(ENV), expected())


def _to_torch(env, scalars=False):
    out = {}
    for k, v in env.items():
        if isinstance(v, np.ndarray) or (scalars and isinstance(v, float)):
            out[k] = torch.as_tensor(v, dtype=torch.float64)
        else:
            out[k] = v
    return out


@needs_torch
@pytest.mark.parametrize("scalars", [False, True], ids=["array-tensors", "all-tensors"])
@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] for c in CASES])
def test_torch_matches_numpy(text, expected, scalars):
    expr = parse_expression(text)
    ref = expr.evaluate(ENV)
    got = expr.evaluate(_to_torch(ENV, scalars), lib="torch")
    _close(got, ref)
    if isinstance(got, torch.Tensor) and got.is_floating_point() and (scalars or np.ndim(ref) > 0):
        assert got.dtype == torch.float64


@needs_torch
def test_torch_accepts_numpy_env_values():
    got = parse_expression("x * 2 + gain").evaluate(ENV, lib="torch")
    assert isinstance(got, torch.Tensor)
    _close(got, X * 2 + 2.0)


@needs_torch
@pytest.mark.parametrize("text", ["1/(1 + exp(-x))", "maximum(x, 0) + where(x > 0, x, 0.5)",
                                  "clip(x, -1, 1) * 2.0", "sum(x * x, axis=0)", "[x[0], 1.5]",
                                  "erf(x) + sigmoid(x)", "concatenate([x, zeros_like(x)])"])
def test_torch_float32_stays_float32(text):
    x = torch.tensor([-1.0, 0.25, 2.0], dtype=torch.float32)
    got = parse_expression(text).evaluate({"x": x}, lib="torch")
    assert got.dtype == torch.float32
    ref = parse_expression(text).evaluate({"x": x.double().numpy()})
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-6)


GRAD_CASES = [
    ("1/(1 + exp(-1*gain*(variable0 + bias) + offset))", ["variable0", "gain", "bias", "offset"]),
    ("scale * exp((rate * variable0) + bias) + offset", ["variable0", "scale", "rate", "bias"]),
    ("A @ B", ["A", "B"]),
    ("numpy.maximum(x, 0) + max(x, y)", ["x", "y"]),
    ("x if x > 0 else -x * y", ["x", "y"]),
    ("sum(x * y) + mean(A, axis=0)[1] + dot(x, y)", ["x", "y", "A"]),
    ("erf(x) + clip(y, -1, 1) + sigmoid(x) * tanh(y)", ["x", "y"]),
    ("concatenate([x, y]) * [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]", ["x", "y"]),
    ("transpose(reshape(A, (3, 2))) * full((2, 3), gain) + stack((x[:3], y[:3]))", ["A", "gain", "x", "y"]),
]


@needs_torch
@pytest.mark.parametrize("text,inputs", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_torch_gradcheck(text, inputs):
    expr = parse_expression(text)
    base = _to_torch(ENV, scalars=True)
    # keep clear of the kinks of max/abs/clip so finite differences are valid
    base["x"] = torch.tensor([-1.5, -0.6, 0.5, 2.0], dtype=torch.float64)
    base["y"] = torch.tensor([0.3, -0.7, 1.2, 2.5], dtype=torch.float64)
    leaves = [base[k].clone().requires_grad_(True) for k in inputs]

    def f(*vals):
        return expr.evaluate({**base, **dict(zip(inputs, vals))}, lib="torch")

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("text,names", [
    ("a + b * c", {"a", "b", "c"}),
    ("exp(x) + numpy.maximum(y, 0)", {"x", "y"}),
    ("pi * r ** 2", {"r"}),
    ("np.pi + math.e * t", {"t"}),
    ("A[i, 1:j]", {"A", "i", "j"}),
    ("sum(x, axis=k)", {"x", "k"}),
    ("x if c else y", {"x", "c", "y"}),
    ("[p, q] @ M", {"p", "q", "M"}),
    ("max + min", {"max", "min"}),
    ("3", set()),
    (2.5, set()),
    (7, set()),
])
def test_names(text, names):
    assert parse_expression(text).names == frozenset(names)
    assert expression_names(text) == frozenset(names)


def test_constants_resolve_unless_env_defines_them():
    expr = parse_expression("e * 2 + pi")
    assert expr.names == frozenset() and expr.constants == {"e", "pi"}
    assert expr.evaluate({}) == pytest.approx(2 * math.e + math.pi)
    assert expr.evaluate({"e": 10.0}) == pytest.approx(20 + math.pi)
    assert math.isnan(parse_expression("nan").evaluate({}))


def test_numbers_are_constant_expressions():
    assert parse_expression(3).evaluate({}) == 3
    assert parse_expression(2.5).evaluate({}) == 2.5
    assert parse_expression(np.float64(0.5)).evaluate({}) == 0.5
    assert parse_expression(3).is_elementwise()
    with pytest.raises(ExpressionError):
        parse_expression([1, 2])  # type: ignore[arg-type]


ELEMENTWISE = ["x * 2 + y", "1/(1 + exp(-1*gain*(x + bias) + offset))", "x if x > 0 else -x",
               "numpy.maximum(x, 0)", "max(x, y)", "where(x > y, x, y)", "clip(x, -1, 1)", "0 < x < 1",
               "x > 0 and not y > 0", "erf(x) + relu(y) + sigmoid(x)", "power(x, 2) ** 2",
               "heaviside(x, 0.5) + logical_or(x > 0, y > 0)", "zeros_like(x) + float(gain)", "3.5"]
NOT_ELEMENTWISE = ["sum(x)", "max(x)", "min(x, axis=0)", "mean(x)", "prod(x)", "argmax(x)", "x[0]",
                   "x[1:]", "M @ x", "dot(x, y)", "transpose(M)", "reshape(x, (-1,))", "len(x)",
                   "shape(x)", "concatenate([x, y])", "[x, y]", "outer(x, y)", "exp(sum(x)) * x",
                   "x - mean(x)", "tile(x, 2)", "matmul(M, x)"]


@pytest.mark.parametrize("text", ELEMENTWISE)
def test_is_elementwise_true_and_batch_matches_rows(text):
    expr = parse_expression(text)
    assert expr.is_elementwise()
    rng = np.random.default_rng(0)
    xb, yb = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    env = dict(gain=2.0, bias=0.1, offset=-0.2)
    batch = expr.evaluate({**env, "x": xb, "y": yb})
    rows = [expr.evaluate({**env, "x": xb[r], "y": yb[r]}) for r in range(5)]
    rows = np.array(rows).reshape(5, -1)
    np.testing.assert_allclose(np.broadcast_to(batch, (5, 3)), np.broadcast_to(rows, (5, 3)))


@pytest.mark.parametrize("text", NOT_ELEMENTWISE)
def test_is_elementwise_false(text):
    assert not parse_expression(text).is_elementwise()


REJECTED = [
    ("__import__('os').system('touch {marker}')", "not allowed"),
    ("().__class__.__bases__", "attribute access"),
    ("x.__class__", "attribute access"),
    ("x.T.__class__", "attribute access"),
    ("x.T", "attribute access"),
    ("numpy.load('f')", "not supported"),
    ("numpy.load(f)", "not supported"),
    ("np.random.rand(3)", "not allowed"),
    ("os.system(cmd)", "call of 'os.system' is not allowed"),
    ("open('x')", "not supported"),
    ("exp('x')", "string constants"),
    ("open(x)", "not supported"),
    ("getattr(x, 'y')", "not supported"),
    ("getattr(x, y)", "not supported"),
    ("eval(x)", "not supported"),
    ("lambda: 1", "lambda"),
    ("[i for i in x]", "comprehension"),
    ("sum(i for i in x)", "comprehension"),
    ("{k: 1 for k in x}", "comprehension"),
    ("'abc'", "string constants"),
    ("f'{x}'", "f-string"),
    ("b'abc'", "string constants"),
    ("9**9**9", "exponent"),
    ("x ** 1025", "exponent"),  # over max_exponent (1024)
    ("2 ** -5000", "exponent"),
    ("(10**200) ** 200", "over the limit max_int_bits"),
    ("(y := 2)", "assignment expression"),
    ("exp(*x)", "starred"),
    ("sum(x, dtype=float)", "keyword argument 'dtype'"),
    ("sum(**k)", "keyword argument"),
    ("exp(x, y)", "positional"),
    ("maximum(x, y, z)", "positional"),
    ("_x + 1", "reserved"),
    ("__builtins__", "reserved"),
    ("numpy.__dict__", "attribute access"),
    ("np._exp(x)", "not allowed"),
    ("{1: 2}", "dict literal"),
    ("{1, 2}", "set literal"),
    ("x is y", "comparison Is"),
    ("x in y", "comparison In"),
    ("x << 2", "operator LShift"),
    ("x & y", "operator BitAnd"),
    ("~x", "operator Invert"),
    ("None", "constant None"),
    ("1j * x", "constant 1j"),
    ("x[1.5]", "not an integer"),
    ("zeros((10**5, 10**5))", "over the limit max_elements"),
    ("ones(10**9)", "over the limit max_elements"),
    ("tile(x, (10**5, 10**4))", "over the limit max_elements"),
    ("x +", "syntax error"),
    ("x = 1", "syntax error"),
    ("import os", "syntax error"),
    ("", "empty expression"),
    ("x" * 10_001, "longer than the limit max_expression_length"),
    ("-" * 150 + "x", "deeper than the limit max_expression_depth"),
    ("+".join(["x"] * 150), "deeper than the limit max_expression_depth"),
    ("foo(x)", "not supported"),
    ("x(1)", "not supported"),
    ("(lambda: 0)()", "not allowed"),
]


@pytest.mark.parametrize("text,fragment", REJECTED, ids=[r[0][:40] for r in REJECTED])
def test_rejected_at_parse_time(text, fragment, tmp_path):
    marker = tmp_path / "pwned"
    text = text.replace("{marker}", str(marker))
    with pytest.raises(ExpressionError) as info:
        parse_expression(text, where="node 'A' parameter 'p'")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("node 'A' parameter 'p': ")
    if text:
        assert text[:30] in message  # names the expression
    assert not marker.exists()


def test_rejects_deeply_nested_input_without_crashing():
    with pytest.raises(ExpressionError):
        parse_expression("(" * 5000 + "x" + ")" * 5000)
    with pytest.raises(ExpressionError):
        parse_expression("1+" * 4999 + "1")


def test_missing_variable_names_variable_and_expression():
    expr = parse_expression("a + bee * 2", where="node 'A' parameter 'slope'")
    for lib in ("numpy", "torch") if torch is not None else ("numpy",):
        with pytest.raises(ExpressionError) as info:
            expr.evaluate({"a": 1.0}, lib=lib)
        message = str(info.value)
        assert message.startswith("node 'A' parameter 'slope': ")
        assert "'bee'" in message and "a + bee * 2" in message


def test_runtime_failures_are_expression_errors():
    with pytest.raises(ExpressionError, match="A @ x"):
        parse_expression("A @ x").evaluate({"A": A, "x": X})
    with pytest.raises(ExpressionError, match="limit"):
        parse_expression("x ** y").evaluate({"x": 10, "y": 10**6})
    for lib in ("numpy", "torch") if torch is not None else ("numpy",):
        with pytest.raises(ExpressionError, match="over the limit max_elements"):
            parse_expression("zeros(k) + full((k, k), 1.0)").evaluate({"k": 10**5}, lib=lib)
    with pytest.raises(ExpressionError, match="unknown lib"):
        parse_expression("x").evaluate({"x": 1}, lib="jax")


def test_env_lists_become_arrays():
    _close(parse_expression("x * 2").evaluate({"x": [1.0, 2.0]}), [2.0, 4.0])
    if torch is not None:
        _close(parse_expression("x * 2").evaluate({"x": [1.0, 2.0]}, lib="torch"), [2.0, 4.0])


def test_scalar_conditional_takes_one_branch():
    # with a scalar condition only the chosen branch runs (no error from the other one)
    assert parse_expression("x if k > 0 else missing").evaluate({"x": 1.5, "k": 1}) == 1.5


def test_parse_is_cached():
    assert parse_expression("x + 1") is parse_expression("x + 1")
    assert parse_expression(1) is not parse_expression(True)
    assert isinstance(parse_expression("x + 1"), Expression)


def test_registry_is_complete():
    wanted = ("exp log log2 log10 sqrt abs sin cos tan arcsin arccos arctan sinh cosh tanh sign floor ceil "
              "round maximum minimum where clip power square sum max min mean prod argmax argmin dot matmul "
              "transpose reshape concatenate stack array asarray zeros ones zeros_like ones_like full shape "
              "len float int logical_and logical_or logical_not heaviside tile squeeze expand_dims outer "
              "erf sigmoid relu").split()
    assert set(wanted) == set(FUNCTIONS)
    assert list(SUPPORTED_FUNCTIONS) == sorted(wanted)
    for fn in FUNCTIONS.values():
        assert callable(fn.numpy) and callable(fn.torch) and isinstance(fn.elementwise, bool)


def test_torch_is_imported_lazily():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import mdfbridge.expressions as m; m.parse_expression('exp(x)').evaluate({'x': 1.0}); "
            "print(m.torch is None)")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "True"


def test_a_negative_dimension_is_an_expression_error_naming_the_shape():
    from mdfbridge.ops.base import check_size

    with pytest.raises(ExpressionError, match=r"negative dimension -3 in array shape \(2, -3\)"):
        check_size((2, -3))
