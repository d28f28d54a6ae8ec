"""The LLVM emitters of the training losses (mdfbridge/losses.py's records name them).

Each takes (codegen, output tensor, target column, size, rows), adds d loss / d output into the output's gradient
(when it has one) and returns the minibatch's loss value: torch's function of that name with its reduction.
"""
from __future__ import annotations

from typing import Callable, Tuple

from llvmlite import ir

from .llvm_codegen import Codegen, View, f64, i64
from .llvm_scalar import DOUBLE, declare_math


def _target(cg: Codegen, col: int) -> View:
    """The minibatch's targets of one output (columns from `col` of the packed target rows)."""
    return View(cg.at(cg.TB, col), cg.plan.n_target, 0)


def _sum_rows(cg: Codegen, t: str, col: int, size: int, rows: ir.Value,
              term: Callable[[ir.Value, ir.Value], ir.Value]) -> ir.Value:
    """sum over rows and elements of term(output, target)."""
    out, tgt = cg.val(t), _target(cg, col)
    total = cg.var(0.0)
    with cg.loop(rows, name="lr") as r:
        with cg.loop(size, name="lj") as j:
            cg.b.store(cg.b.fadd(cg.b.load(total), term(cg.load(out, r, j), cg.load(tgt, r, j))), total)
    return cg.b.load(total)


def _grad_rows(cg: Codegen, t: str, col: int, size: int, rows: ir.Value,
               term: Callable[[ir.Value, ir.Value], ir.Value]) -> None:
    """Add term(output, target) into the output's gradient (when it has one)."""
    if not cg.needs_grad(t):
        return
    out, tgt, g = cg.val(t), _target(cg, col), cg.grad(t)
    with cg.loop(rows, name="gr") as r:
        with cg.loop(size, name="gj") as j:
            cg.add_to(g, r, j, term(cg.load(out, r, j), cg.load(tgt, r, j)))


def _count(cg: Codegen, rows: ir.Value, size: int) -> ir.Value:
    return cg.b.uitofp(cg.b.mul(rows, i64(size)), DOUBLE)


def mse(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """torch's mse_loss: mean of squared differences."""
    b = cg.b
    n = _count(cg, rows, size)

    def sq(o, y):
        d = b.fsub(o, y)
        return b.fmul(d, d)
    loss = b.fdiv(_sum_rows(cg, t, col, size, rows, sq), n)
    norm = b.fdiv(f64(2.0), n)  # torch: 2 / numel * (input - target)
    _grad_rows(cg, t, col, size, rows, lambda o, y: b.fmul(norm, b.fsub(o, y)))
    return loss


def sse(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """Sum of squared differences (PsyNeuLink's SSE: `((o - t) ** 2).sum()`)."""
    b = cg.b

    def sq(o, y):
        d = b.fsub(o, y)
        return b.fmul(d, d)
    loss = _sum_rows(cg, t, col, size, rows, sq)
    _grad_rows(cg, t, col, size, rows, lambda o, y: b.fmul(f64(2.0), b.fsub(o, y)))
    return loss


def l1(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """PsyNeuLink's L1 (torch's L1Loss(reduction='sum')): sum of absolute differences."""
    b = cg.b
    fabs = declare_math(cg.module, "llvm.fabs.f64")
    loss = _sum_rows(cg, t, col, size, rows, lambda o, y: b.call(fabs, [b.fsub(o, y)]))

    def sign(o, y):  # torch: sgn(input - target), sgn(0) = 0
        d = b.fsub(o, y)
        return b.select(b.fcmp_ordered(">", d, f64(0.0)), f64(1.0),
                        b.select(b.fcmp_ordered("<", d, f64(0.0)), f64(-1.0), f64(0.0)))
    _grad_rows(cg, t, col, size, rows, sign)
    return loss


def poisson_nll(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """PsyNeuLink's POISSON_NLL (torch's poisson_nll_loss, log_input=True, full=False, reduction='sum'): sum of
    exp(o) - t * o."""
    b = cg.b
    exp = declare_math(cg.module, "exp")
    loss = _sum_rows(cg, t, col, size, rows, lambda o, y: b.fsub(b.call(exp, [o]), b.fmul(y, o)))
    _grad_rows(cg, t, col, size, rows, lambda o, y: b.fsub(b.call(exp, [o]), y))
    return loss


def log_sum_exp(cg: Codegen, v: View, r: ir.Value, size: int) -> Tuple[ir.Value, ir.Value]:
    """(max, log sum exp(x - max)) of row r's `size` values x of view v (a NaN propagates through the max, as
    numpy's and torch's do)."""
    b = cg.b
    exp, logf = declare_math(cg.module, "exp"), declare_math(cg.module, "log")
    top = cg.var(float("-inf"))
    with cg.loop(size, name="lm") as j:
        o, t = cg.load(v, r, j), b.load(top)
        b.store(b.select(b.fcmp_unordered("uno", o, o), o, b.select(b.fcmp_ordered(">", o, t), o, t)), top)
    m = b.load(top)
    total = cg.var(0.0)
    with cg.loop(size, name="ls") as j:
        b.store(b.fadd(b.load(total), b.call(exp, [b.fsub(cg.load(v, r, j), m)])), total)
    return m, b.call(logf, [b.load(total)])


def cross_entropy(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """torch's cross_entropy with class-probability targets: -(log_softmax(o) * t).sum() / rows."""
    b = cg.b
    out, tgt = cg.val(t), _target(cg, col)
    exp = declare_math(cg.module, "exp")
    total = cg.var(0.0)
    nrows = b.uitofp(rows, DOUBLE)
    grad = cg.grad(t) if cg.needs_grad(t) else None
    with cg.loop(rows, name="cr") as r:
        m, lse = log_sum_exp(cg, out, r, size)
        gsum = cg.var(0.0)
        with cg.loop(size, name="cl") as j:
            logp = b.fsub(b.fsub(cg.load(out, r, j), m), lse)
            y = cg.load(tgt, r, j)
            b.store(b.fadd(b.load(total), b.fmul(logp, y)), total)
            b.store(b.fadd(b.load(gsum), b.fdiv(b.fneg(y), nrows)), gsum)
        if grad is not None:  # log_softmax backward of g = -t / rows: g - exp(logp) * sum(g)
            s = b.load(gsum)
            with cg.loop(size, name="cg") as j:
                logp = b.fsub(b.fsub(cg.load(out, r, j), m), lse)
                g = b.fdiv(b.fneg(cg.load(tgt, r, j)), nrows)
                cg.add_to(grad, r, j, b.fsub(g, b.fmul(b.call(exp, [logp]), s)))
    return b.fdiv(b.fneg(b.load(total)), nrows)


def nll(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """PsyNeuLink's NLL, torch's nll_loss(o, class, reduction='sum') on one-hot targets (learn() checks them):
    -sum(o * t); its gradient is -t."""
    b = cg.b
    loss = _sum_rows(cg, t, col, size, rows, lambda o, y: b.fmul(y, o))
    _grad_rows(cg, t, col, size, rows, lambda o, y: b.fneg(y))
    return b.fneg(loss)


def kl_div(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """PsyNeuLink's KL_DIV, torch's kl_div(o, t, reduction='sum'): sum of t * (log t - o), 0 where t = 0 (torch's
    xlogy); its gradient is -t."""
    b = cg.b
    logf = declare_math(cg.module, "log")

    def term(o: ir.Value, y: ir.Value) -> ir.Value:
        positive = b.fcmp_ordered(">", y, f64(0.0))
        safe = b.select(positive, y, f64(1.0))  # log(1) = 0: no 0 * -inf
        return b.select(positive, b.fsub(b.fmul(y, b.call(logf, [safe])), b.fmul(y, o)), f64(0.0))
    loss = _sum_rows(cg, t, col, size, rows, term)
    _grad_rows(cg, t, col, size, rows, lambda o, y: b.fneg(y))
    return loss


def binary_cross_entropy(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """torch's binary_cross_entropy (mean): mean of -(t * max(log o, -100) + (1 - t) * max(log(1 - o), -100));
    torch's gradient (o - t) / max(o (1 - o), 1e-12) / numel."""
    b = cg.b
    n = _count(cg, rows, size)
    logf = declare_math(cg.module, "log")

    def clamped_log(v: ir.Value) -> ir.Value:
        lv = b.call(logf, [v])
        return b.select(b.fcmp_unordered("<", lv, f64(-100.0)), f64(-100.0), lv)

    def term(o: ir.Value, y: ir.Value) -> ir.Value:
        one_minus_o = b.fsub(f64(1.0), o)
        return b.fsub(b.fmul(b.fsub(y, f64(1.0)), clamped_log(one_minus_o)), b.fmul(y, clamped_log(o)))
    loss = b.fdiv(_sum_rows(cg, t, col, size, rows, term), n)

    def grad(o: ir.Value, y: ir.Value) -> ir.Value:
        w = b.fmul(b.fsub(f64(1.0), o), o)
        w = b.select(b.fcmp_ordered("<", w, f64(1e-12)), f64(1e-12), w)
        return b.fdiv(b.fdiv(b.fsub(o, y), w), n)
    _grad_rows(cg, t, col, size, rows, grad)
    return loss
