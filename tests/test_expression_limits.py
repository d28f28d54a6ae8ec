"""Expression budgets (mdfbridge.ops.budget, issue 12): integer sizes, exponents, array elements and nesting are
checked against mdfbridge.limits BEFORE anything is computed, and exceeding one raises ExpressionLimitError (a
LimitError and an ExpressionError) naming the place, the expression and the limit. The CLI side (exit 2, one line,
time and memory) is tests/data/hostile/expressions, run by tests/test_hostile_corpus.py."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from mdfbridge import limits
from mdfbridge.errors import ExpressionError
from mdfbridge.expressions import parse_expression
from mdfbridge.limits import LimitError
from mdfbridge.lowering import lower
from mdfbridge.ops import REGISTRY
from mdfbridge.ops.budget import Budget, ExpressionLimitError, check_int_op, check_power, result_shape

WHERE = "node 'n' function 'f'"


def doc(expr: str, shape=(2,)) -> dict:
    node = {"input_ports": {"x": {"shape": list(shape)}}, "functions": {"f": {"value": expr}},
            "output_ports": {"y": {"value": "f"}}}
    return {"m": {"format": "ModECI MDF v0.4", "graphs": {"g": {"nodes": {"n": node}}}}}


def refused(expr: str, limit: str, *fragments: str) -> str:
    """Lower a one-node model computing expr; it must raise ExpressionLimitError naming the node, the expression
    and `limit`; returns the message."""
    with pytest.raises(ExpressionLimitError) as info:
        lower(doc(expr))
    message = str(info.value)
    assert message.startswith(WHERE + ": "), message
    assert expr[:40] in message and limit in message, message
    for f in fragments:
        assert f in message, message
    return message


def test_the_error_is_a_limit_error_and_an_expression_error():
    with pytest.raises(LimitError) as info:
        parse_expression("x * 9**9**9", where="node 'a' parameter 'p'")
    assert isinstance(info.value, ExpressionError)
    assert str(info.value) == ("node 'a' parameter 'p': expression 'x * 9**9**9': exponent 387420489 is over the "
                               "limit max_exponent=1,024 (raise it with --limit max_exponent=N or MDFBRIDGE_LIMITS)")


@pytest.mark.parametrize("expr,limit,fragment", [
    ("x * 9**9**9", "max_exponent", "387420489"),
    ("x + 2**10**8", "max_exponent", "100000000"),
    ("x * (2**1000 * 3**1000 * 5**1000 * 7**1000)", "max_int_bits", "4,907 bits"),
    ("x * (10**200) ** 200", "max_int_bits", "132,801 bits"),
    ("x * 10**400", "too large to convert to float", "1,329 bits"),
    ("x * 99999999999**99 * 99999999999**99", "too large to convert to float", "3,618 bits"),
    ("x + outer(ones(10**5), ones(10**5))", "max_elements", "(100000, 100000)"),
    ("x + ones([100000, 1]) * ones([1, 100000])", "max_elements", "10,000,000,000 elements"),
    ("x + matmul(ones([20000, 1]), ones([1, 20000]))", "max_elements", "(20000, 20000)"),
    ("x + zeros([10**6, 10**6])", "max_elements", "1,000,000,000,000 elements"),
    ("x + full([10**5, 10**5], 1.0)", "max_elements", "(100000, 100000)"),
    ("tile(x, [10**9])", "max_elements", "1,000,000,000 elements"),
    ("x + concatenate([ones(10**8), ones(10**8)])", "max_elements", "(100000000,)"),
    ("x + concatenate([ones(2 * 10**7), ones(2 * 10**7)])", "max_elements", "held before it"),
    # per trial, from the shape rules (nothing is evaluated): tensors
    ("reshape(x, [2, 1, 1]) * ones([1, 100000, 1]) * ones([1, 1, 50000])", "max_elements", "per trial"),
    ("tile(tile(x, [5000]), [5000])", "max_elements", "(50000000,), per trial"),
    ("concatenate([tile(x, [10**7]), tile(x, [10**7]), tile(x, [10**7]), tile(x, [10**7])])", "max_elements",
     "(80000000,), per trial"),
])
def test_lowering_refuses_before_computing(expr, limit, fragment):
    tracemalloc.start()
    try:
        refused(expr, limit, fragment)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20, f"{peak / 2**20:.0f} MiB allocated before refusing"  # 160 MB: one ones(2e7)


def test_nothing_is_allocated_for_an_outer_product_refused():
    tracemalloc.start()
    try:
        with pytest.raises(ExpressionLimitError, match="over the limit max_elements"):
            parse_expression("outer(ones(10**4), ones(10**4))").evaluate({})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20  # the 800 MB result never existed


def test_overrides_move_the_limits_and_the_parse_cache_follows_them():
    with pytest.raises(ExpressionLimitError, match="max_exponent"):
        parse_expression("x ** 1500")
    with limits.override(max_exponent=2000):
        assert parse_expression("x ** 1500").evaluate({"x": 1.0}) == 1.0
    with pytest.raises(ExpressionLimitError, match="max_exponent"):
        parse_expression("x ** 1500")  # cached under the other limits only
    with limits.override(max_elements=100):
        with pytest.raises(ExpressionLimitError, match=r"1,000 elements, over the limit max_elements=100"):
            lower(doc("sum(x) + ones(1000)"))
    assert lower(doc("sum(x) + ones(1000)")).shapes["n.f"] == (1000,)


def test_evaluate_counts_what_it_holds_and_releases_what_it_drops():
    with limits.override(max_elements=1000):
        # three 400-element intermediates held at once (the list) exceed 1,000 ...
        with pytest.raises(ExpressionLimitError, match="the 800 elements held before it"):
            parse_expression("concatenate([ones(400), ones(400), ones(400)])").evaluate({})
        # ... reduced one at a time, they do not
        assert parse_expression("sum(ones(400)) + sum(ones(400)) + sum(ones(400))").evaluate({}) == 1200.0
        x = np.ones(900)  # the caller's data is not charged; what is computed from it is
        assert parse_expression("sum(x * 2)").evaluate({"x": x}) == 1800.0
        with pytest.raises(ExpressionLimitError, match=r"outer \(shape \(900, 900\)\)"):
            parse_expression("outer(x, x)", where="node 'n'").evaluate({"x": x})


def test_real_expressions_are_unchanged():
    x = np.arange(6.0).reshape(2, 3)
    assert parse_expression("sum(outer(x[0], x[1]) @ ones(3))").evaluate({"x": x}) == pytest.approx(
        float(np.sum(np.outer(x[0], x[1]) @ np.ones(3))))
    assert parse_expression("2**100 * 3 + 1").evaluate({}) == 2 ** 100 * 3 + 1  # exact Python ints
    assert parse_expression("x * 10**300").evaluate({"x": 2.0}) == 2e300  # fits a float64
    prog = lower(doc("x * 10**300 + tile(x, [2])[0:2]"))
    assert prog.shapes["n.f"] == (2,)


def test_integer_checks_estimate_before_computing():
    check_power(3, 1000)  # 1,585 bits: fine
    with pytest.raises(ExpressionLimitError, match="max_int_bits=4,096"):
        check_power(10 ** 200, 200)
    with pytest.raises(ExpressionLimitError, match="exponent 2,000 is over the limit max_exponent"):
        check_power(2.0, 2000)
    with pytest.raises(ExpressionLimitError, match="about 6,000 bits"):
        check_int_op(REGISTRY["Mul"], {"A": 2 ** 2999, "B": 2 ** 2999})
    check_int_op(REGISTRY["Mul"], {"A": 2.0 ** 1000, "B": 2.0 ** 23})  # floats overflow to inf, never grow
    with pytest.raises(ExpressionLimitError, match="max_int_bits"):  # the op itself, as the executor runs it
        REGISTRY["Pow"].numpy(A=10 ** 200, B=200)


def test_result_shapes_come_from_the_shape_rules():
    assert result_shape(REGISTRY["Outer"], {"A": np.ones(3), "B": np.ones(4)}) == (3, 4)
    assert result_shape(REGISTRY["Add"], {"A": np.ones((3, 1)), "B": np.ones(5)}) == (3, 5)
    assert result_shape(REGISTRY["Concat"], {"inputs": [np.ones(2), np.ones(3)], "axis": 0}) == (5,)
    assert result_shape(REGISTRY["Zeros"], {"shape": [10 ** 6, 10 ** 6]}) == (10 ** 6, 10 ** 6)
    assert result_shape(REGISTRY["MatMul"], {"A": np.ones((2, 3)), "B": np.ones((4, 5))}) is None  # op reports
    budget = Budget(limit=10)
    assert budget.charge(REGISTRY["Outer"], {"A": np.ones(3), "B": np.ones(3)}) == 9
    with pytest.raises(ExpressionLimitError, match="held before it"):
        budget.charge(REGISTRY["Outer"], {"A": np.ones(1), "B": np.ones(2)})
    budget.release(9)
    assert budget.charge(REGISTRY["Outer"], {"A": np.ones(1), "B": np.ones(2)}) == 2


def test_depth_and_length_limits_name_themselves():
    with pytest.raises(ExpressionLimitError, match="nested 151 deep, deeper than the limit max_expression_depth=100"):
        parse_expression("-" * 150 + "x")
    with limits.override(max_expression_depth=200):
        assert parse_expression("-" * 150 + "x").evaluate({"x": 1.0}) == 1.0
    with pytest.raises(ExpressionLimitError, match="12,001 characters is longer than the limit max_expression_length"):
        parse_expression("x" + " + x" * 3000)
