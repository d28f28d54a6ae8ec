"""The LLVM emitters of the optimizers (mdfbridge/optimizers.py's records name them).

Each updates the trainable prefix of P from GP after a minibatch's backward pass, as torch.optim does
(weight_decay: L2 added to the gradient; adamw: decoupled); `step` is the number of updates so far, this one included.
"""
from __future__ import annotations

from llvmlite import ir

from ..optimizers import ADAM_BETAS, ADAM_EPS
from .llvm_codegen import Codegen, f64, i64
from .llvm_scalar import DOUBLE, declare_math, declare_pow


def _elem(cg: Codegen, g: ir.GlobalVariable, i: ir.Value) -> ir.Value:
    return cg.b.gep(g, [i64(0), i], inbounds=True)


def sgd(cg: Codegen, step: ir.Value, lr: ir.Value, wd: ir.Value) -> None:
    """torch.optim.SGD without momentum: p += -lr * (grad + weight_decay * p)."""
    b = cg.b
    neg_lr = b.fneg(lr)
    with cg.loop(cg.plan.n_train, name="sgd") as i:
        p = _elem(cg, cg.P, i)
        w = b.load(p)
        g = b.fadd(b.load(_elem(cg, cg.GP, i)), b.fmul(wd, w))
        b.store(b.fadd(w, b.fmul(neg_lr, g)), p)


def adam(cg: Codegen, step: ir.Value, lr: ir.Value, wd: ir.Value, decoupled: bool = False) -> None:
    """torch.optim.Adam (single-tensor path, amsgrad off), step by step as torch computes it; decoupled (default
    False): torch.optim.AdamW's weight decay, the parameter times (1 - lr * weight_decay) before the step."""
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
    shrink = b.fsub(f64(1.0), b.fmul(lr, wd))
    with cg.loop(cg.plan.n_train, name="adam") as i:
        p, mp, vp = _elem(cg, cg.P, i), _elem(cg, cg.M, i), _elem(cg, cg.V, i)
        w = b.load(p)
        if decoupled:
            w = b.fmul(w, shrink)
            g = b.load(_elem(cg, cg.GP, i))
        else:
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


def adamw(cg: Codegen, step: ir.Value, lr: ir.Value, wd: ir.Value) -> None:
    """torch.optim.AdamW (single-tensor path, amsgrad off)."""
    adam(cg, step, lr, wd, decoupled=True)
