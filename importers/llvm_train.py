"""The training run in native code: the `train` entry point, losses and optimizers of the LLVM backend.

`emit_train` writes the epoch loop (minibatches gathered in order or by a precomputed permutation, forward,
loss, backward, optimizer step, per-minibatch and epoch losses, early stopping, optional hooks into Python).
Losses (`LOSSES`, keyed by mdfbridge.learning's names) and optimizers (`OPTIMIZERS`: sgd, adam) follow torch:
mean reduction, weight_decay as L2 added to the gradient, Adam's bias corrections and lerp as torch.optim.
"""
from __future__ import annotations

from typing import Callable, Dict

from llvmlite import ir

from .llvm_codegen import DPTR, I64, IPTR, Codegen, View, f64, i64
from .llvm_scalar import DOUBLE, declare_math, declare_pow

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam defaults (LearnConfig does not expose them)
ADAM_EPS = 1e-8
HOOK_TYPE = ir.FunctionType(I64, [I64, I64, I64, DOUBLE])  # (kind 0 minibatch | 1 epoch, epoch, index, loss)
HOOK_MINIBATCH, HOOK_EPOCH, USE_PERM = 2, 4, 1  # bits of `flags`


def emit_train(cg: Codegen, loss: str, optimizer: str) -> None:
    """i64 train(params, X, T, perm, n, epochs, hyper[lr, weight_decay, min_delta], patience, flags,
    losses, epoch_losses, Y, hook, stopped): the whole run; returns epochs run (-1: a hook asked to stop)."""
    fn = cg.function("train", I64, [DPTR, DPTR, DPTR, IPTR, I64, I64, DPTR, I64, I64, DPTR, DPTR, DPTR,
                                    HOOK_TYPE.as_pointer(), IPTR])
    params, X, T, perm, n, epochs, hyper, patience, flags, losses, elosses, Y, hook, stopped = fn.args
    for a in (params, X, T, perm, hyper, losses, elosses, Y, stopped):
        a.add_attribute("noalias")
    b = cg.b
    lr, wd, min_delta = (b.load(b.gep(hyper, [i64(i)])) for i in range(3))
    plan, cap = cg.plan, cg.cap
    cg.params_in(params)
    for g in (cg.M, cg.V):
        cg.zero(lambda i, g=g: b.gep(g, [i64(0), i], inbounds=True), plan.n_train)
    step = cg.var(0, I64)
    best = cg.var(float("inf"))
    waited = cg.var(0, I64)
    ran = cg.var(epochs, I64)
    b.store(i64(0), stopped)
    nb = b.udiv(b.add(n, i64(cap - 1)), i64(cap))
    use_perm = b.icmp_signed("!=", b.and_(flags, i64(USE_PERM)), i64(0))
    done = b.append_basic_block("done")
    with cg.loop(epochs, name="epoch") as epoch:
        esum = cg.var(0.0)
        with cg.loop(nb, name="mb") as mb:
            start = b.mul(mb, i64(cap))
            left = b.sub(n, start)
            rows = b.select(b.icmp_signed("<", left, i64(cap)), left, i64(cap))
            with cg.loop(rows, name="r") as r:
                pos = b.add(start, r)
                slot = cg.var(pos, I64)
                with cg.when(use_perm):  # perm holds epochs x n trial indices (precomputed in Python)
                    b.store(b.load(b.gep(perm, [b.add(b.mul(epoch, n), pos)], inbounds=True)), slot)
                trial = b.load(slot)
                b.store(trial, b.gep(cg.ROW, [i64(0), r], inbounds=True))
                cg.gather(X, trial, r)
                tsrc = b.mul(trial, i64(plan.n_target))
                tdst = b.mul(r, i64(plan.n_target))
                cg.copy(lambda i: b.gep(cg.TB, [i64(0), b.add(tdst, i)], inbounds=True),
                        lambda i: b.gep(T, [b.add(tsrc, i)], inbounds=True), plan.n_target)
            b.call(cg.fwd, [rows])
            with cg.loop(rows, name="r") as r:
                cg.scatter_outputs(Y, b.load(b.gep(cg.ROW, [i64(0), r], inbounds=True)), r)
            _zero_grads(cg, rows)
            loss_value = None
            for _, t, col, size in plan.targets:
                term = LOSSES[loss](cg, t, col, size, rows)
                loss_value = term if loss_value is None else b.fadd(loss_value, term)
            b.call(cg.bwd, [rows])
            b.store(b.add(b.load(step), i64(1)), step)
            OPTIMIZERS[optimizer](cg, b.load(step), lr, wd)
            k = b.add(b.mul(epoch, nb), mb)
            b.store(loss_value, b.gep(losses, [k], inbounds=True))
            b.store(b.fadd(b.load(esum), loss_value), esum)
            _hook(cg, flags, HOOK_MINIBATCH, 0, epoch, k, loss_value, params, hook, done, ran)
        eloss = b.fdiv(b.load(esum), b.uitofp(nb, DOUBLE))
        b.store(eloss, b.gep(elosses, [epoch], inbounds=True))
        _hook(cg, flags, HOOK_EPOCH, 1, epoch, epoch, eloss, params, hook, done, ran)
        with cg.when(b.icmp_signed(">=", patience, i64(0))):
            improved = b.fcmp_ordered("<", eloss, b.fsub(b.load(best), min_delta))
            with b.if_else(improved) as (then, otherwise):
                with then:
                    b.store(eloss, best)
                    b.store(i64(0), waited)
                with otherwise:
                    b.store(b.add(b.load(waited), i64(1)), waited)
                    with cg.when(b.icmp_signed(">=", b.load(waited), patience)):
                        b.store(i64(1), stopped)
                        b.store(b.add(epoch, i64(1)), ran)
                        b.branch(done)
                        b.position_at_end(b.append_basic_block("unreachable"))
    b.branch(done)
    b.position_at_end(done)
    cg.params_out(params)
    b.ret(b.load(ran))


def _hook(cg: Codegen, flags: ir.Value, bit: int, kind: int, epoch: ir.Value, index: ir.Value, loss: ir.Value,
          params: ir.Value, hook: ir.Value, done: ir.Block, ran: ir.Value) -> None:
    """When `bit` is set in flags: parameters out, call the hook; a non-zero answer ends the run (returns -1)."""
    b = cg.b
    with cg.when(b.icmp_signed("!=", b.and_(flags, i64(bit)), i64(0))):
        cg.params_out(params)
        rc = b.call(hook, [i64(kind), epoch, index, loss])
        with cg.when(b.icmp_signed("!=", rc, i64(0))):
            b.store(i64(-1), ran)
            b.branch(done)
            b.position_at_end(b.append_basic_block("unreachable"))


def _zero_grads(cg: Codegen, rows: ir.Value) -> None:
    """Clear the gradients of the minibatch's rows and of the trainable parameters."""
    b = cg.b
    for name, off in cg.g_off.items():
        t = cg.plan.tensors[name]
        n = b.mul(rows, i64(t.size)) if t.batched else i64(t.size)
        cg.zero(lambda i, off=off: b.gep(cg.G, [i64(0), b.add(i64(off), i)], inbounds=True), n)
    cg.zero(lambda i: b.gep(cg.GP, [i64(0), i], inbounds=True), cg.plan.n_train)


# ------------------------------------------------------------------------------------------ losses
# Each takes (codegen, output tensor, target column, size, rows), adds d loss / d output into the output's
# gradient (when it has one) and returns the loss value: torch's function of that name, mean reduction.

LOSSES: Dict[str, Callable[[Codegen, str, int, int, ir.Value], ir.Value]] = {}


def loss_fn(name: str) -> Callable:
    """Register a loss emitter under `name` (mdfbridge.learning's loss names)."""
    def deco(fn):
        LOSSES[name] = fn
        return fn
    return deco


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


@loss_fn("mse")
def _mse(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
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


@loss_fn("sse")
def _sse(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """Sum of squared differences (PsyNeuLink's SSE: `((o - t) ** 2).sum()`)."""
    b = cg.b

    def sq(o, y):
        d = b.fsub(o, y)
        return b.fmul(d, d)
    loss = _sum_rows(cg, t, col, size, rows, sq)
    _grad_rows(cg, t, col, size, rows, lambda o, y: b.fmul(f64(2.0), b.fsub(o, y)))
    return loss


@loss_fn("l1")
def _l1(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """torch's l1_loss: mean absolute difference."""
    b = cg.b
    n = _count(cg, rows, size)
    fabs = declare_math(cg.module, "llvm.fabs.f64")
    loss = b.fdiv(_sum_rows(cg, t, col, size, rows, lambda o, y: b.call(fabs, [b.fsub(o, y)])), n)
    inv = b.fdiv(f64(1.0), n)

    def sign(o, y):  # torch: (1 / numel) * sgn(input - target), sgn(0) = 0
        d = b.fsub(o, y)
        s = b.select(b.fcmp_ordered(">", d, f64(0.0)), f64(1.0),
                     b.select(b.fcmp_ordered("<", d, f64(0.0)), f64(-1.0), f64(0.0)))
        return b.fmul(inv, s)
    _grad_rows(cg, t, col, size, rows, sign)
    return loss


@loss_fn("poisson_nll")
def _poisson(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """torch's poisson_nll_loss (log_input=True, full=False): mean of exp(o) - t * o."""
    b = cg.b
    n = _count(cg, rows, size)
    exp = declare_math(cg.module, "exp")
    loss = b.fdiv(_sum_rows(cg, t, col, size, rows,
                            lambda o, y: b.fsub(b.call(exp, [o]), b.fmul(y, o))), n)
    inv = b.fdiv(f64(1.0), n)
    _grad_rows(cg, t, col, size, rows,
               lambda o, y: b.fsub(b.fmul(inv, b.call(exp, [o])), b.fmul(inv, y)))
    return loss


@loss_fn("cross_entropy")
def _cross_entropy(cg: Codegen, t: str, col: int, size: int, rows: ir.Value) -> ir.Value:
    """torch's cross_entropy with class-probability targets: -(log_softmax(o) * t).sum() / rows."""
    b = cg.b
    out, tgt = cg.val(t), _target(cg, col)
    exp, logf = declare_math(cg.module, "exp"), declare_math(cg.module, "log")
    total = cg.var(0.0)
    nrows = b.uitofp(rows, DOUBLE)
    grad = cg.grad(t) if cg.needs_grad(t) else None
    with cg.loop(rows, name="cr") as r:
        top = cg.var(float("-inf"))
        with cg.loop(size, name="cm") as j:
            o, m = cg.load(out, r, j), b.load(top)
            b.store(b.select(b.fcmp_unordered("uno", o, o), o, b.select(b.fcmp_ordered(">", o, m), o, m)), top)
        m = b.load(top)
        se = cg.var(0.0)
        with cg.loop(size, name="cs") as j:
            b.store(b.fadd(b.load(se), b.call(exp, [b.fsub(cg.load(out, r, j), m)])), se)
        lse = b.call(logf, [b.load(se)])
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


# ------------------------------------------------------------------------------------------ optimizers
# Each updates the trainable prefix of P from GP, as torch.optim does (weight_decay: L2 added to the gradient).

OPTIMIZERS: Dict[str, Callable[[Codegen, ir.Value, ir.Value, ir.Value], None]] = {}


def optimizer(name: str) -> Callable:
    """Register an optimizer emitter under `name` (LearnConfig.optimizer_type)."""
    def deco(fn):
        OPTIMIZERS[name] = fn
        return fn
    return deco


def _elem(cg: Codegen, g: ir.GlobalVariable, i: ir.Value) -> ir.Value:
    return cg.b.gep(g, [i64(0), i], inbounds=True)


@optimizer("sgd")
def _sgd(cg: Codegen, step: ir.Value, lr: ir.Value, wd: ir.Value) -> None:
    """torch.optim.SGD without momentum: p += -lr * (grad + weight_decay * p)."""
    b = cg.b
    neg_lr = b.fneg(lr)
    with cg.loop(cg.plan.n_train, name="sgd") as i:
        p = _elem(cg, cg.P, i)
        w = b.load(p)
        g = b.fadd(b.load(_elem(cg, cg.GP, i)), b.fmul(wd, w))
        b.store(b.fadd(w, b.fmul(neg_lr, g)), p)


@optimizer("adam")
def _adam(cg: Codegen, step: ir.Value, lr: ir.Value, wd: ir.Value) -> None:
    """torch.optim.Adam (single-tensor path, amsgrad off), step by step as torch computes it."""
    b = cg.b
    beta1, beta2 = ADAM_BETAS
    pow_fn = declare_pow(cg.module)
    t = b.sitofp(step, DOUBLE)
    bc1 = b.fsub(f64(1.0), b.call(pow_fn, [f64(beta1), t]))
    bc2 = b.fsub(f64(1.0), b.call(pow_fn, [f64(beta2), t]))
    neg_step = b.fneg(b.fdiv(lr, bc1))
    bc2_sqrt = b.call(pow_fn, [bc2, f64(0.5)])  # torch: bias_correction2 ** 0.5
    sqrt = declare_math(cg.module, "llvm.sqrt.f64")
    w1 = 1.0 - beta1
    with cg.loop(cg.plan.n_train, name="adam") as i:
        p, mp, vp = _elem(cg, cg.P, i), _elem(cg, cg.M, i), _elem(cg, cg.V, i)
        w = b.load(p)
        g = b.fadd(b.load(_elem(cg, cg.GP, i)), b.fmul(wd, w))
        m = b.load(mp)
        if abs(w1) < 0.5:  # torch's lerp
            m = b.fadd(m, b.fmul(f64(w1), b.fsub(g, m)))
        else:
            m = b.fsub(g, b.fmul(b.fsub(g, m), f64(1.0 - w1)))
        v = b.fadd(b.fmul(b.load(vp), f64(beta2)), b.fmul(b.fmul(f64(1.0 - beta2), g), g))
        b.store(m, mp)
        b.store(v, vp)
        denom = b.fadd(b.fdiv(b.call(sqrt, [v]), bc2_sqrt), f64(ADAM_EPS))
        b.store(b.fadd(w, b.fmul(neg_step, b.fdiv(m, denom))), p)
