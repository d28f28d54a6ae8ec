"""Kernel emitters of the LLVM backend: forward and backward IR of each kernel kind (llvm_plan.Kernel.kind).

One class per kind, registered by `@emitter(kind)`: projection (through Codegen.gemm), affine (fused chains of
affine ops: the kernel's tree forward, its constant coefficients backward), elementwise (a registry op: its
scalar form or formula forward, its derivatives from the registry backward) and softmax. Backward code adds
into gradients.
"""
from __future__ import annotations

from typing import Callable, Dict

from llvmlite import ir

from ..expressions import parse_expression
from .llvm_codegen import Codegen, f64, i64
from .llvm_plan import AFFINE, ELEMENTWISE, PROJECTION, SOFTMAX, Kernel
from .llvm_scalar import declare_math


class KernelEmitter:
    """Forward and backward code of one kernel kind."""

    def forward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        """Compute k.out for `rows` rows."""
        raise NotImplementedError

    def backward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        """Add d loss / d input into the gradient of every input that has one."""
        raise NotImplementedError


EMITTERS: Dict[str, KernelEmitter] = {}


def emitter(kind: str) -> Callable:
    """Register a KernelEmitter class for kernels of `kind`."""
    def deco(cls):
        EMITTERS[kind] = cls()
        return cls
    return deco


@emitter(PROJECTION)
class ProjectionEmitter(KernelEmitter):
    """out = A @ B with B a (k, m) parameter matrix."""

    def forward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        a, w, out = cg.val(k.inputs["A"]), cg.val(k.inputs["B"]), cg.val(k.out)
        kin, m = a.size, out.size
        b = cg.b
        cg.gemm(rows, kin, m, lambda i, p: cg.load(a, i, p),
                lambda p: b.gep(w.base, [b.mul(p, i64(m))], inbounds=True),
                lambda i: cg.ptr(out, i, 0), accumulate=False)

    def backward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        a_name, w_name = k.inputs["A"], k.inputs["B"]
        a, w, gout = cg.val(a_name), cg.val(w_name), cg.grad(k.out)
        kin, m = a.size, gout.size
        b = cg.b
        if cg.needs_grad(w_name):  # dB[p, :] += sum over rows of A[r, p] * dOut[r, :]
            gw = cg.grad(w_name)
            cg.gemm(kin, rows, m, lambda p, r: cg.load(a, r, p), lambda r: cg.ptr(gout, r, 0),
                    lambda p: b.gep(gw.base, [b.mul(p, i64(m))], inbounds=True), accumulate=True)
        if cg.needs_grad(a_name):  # dA[r, :] += dOut[r, :] @ B^T, through a transposed copy of B
            wt = cg.at(cg.WT, 0)
            with cg.loop(kin, name="tp") as p:
                with cg.loop(m, name="tj") as j:
                    x = b.load(b.gep(w.base, [b.add(b.mul(p, i64(m)), j)], inbounds=True))
                    b.store(x, b.gep(wt, [b.add(b.mul(j, i64(kin)), p)], inbounds=True))
            ga = cg.grad(a_name)
            cg.gemm(rows, m, kin, lambda r, j: cg.load(gout, r, j),
                    lambda j: b.gep(wt, [b.mul(j, i64(kin))], inbounds=True),
                    lambda r: cg.ptr(ga, r, 0), accumulate=True)


@emitter(AFFINE)
class AffineEmitter(KernelEmitter):
    """An affine expression of tensors (sums of afferents, `gain * (x + bias) + offset`)."""

    def forward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        out = cg.val(k.out)
        cg.elementwise(k, rows, k.tree, out.size, {}, lambda r, j, x: cg.store(out, r, j, x))

    def backward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        gout = cg.grad(k.out)
        b = cg.b
        for t, c in k.coefs.items():
            if not cg.needs_grad(t) or c == 0.0:
                continue
            gin = cg.grad(t)
            with cg.loop(rows, name="row") as r:
                with cg.loop(gout.size, name="j") as j:
                    g = cg.load(gout, r, j)
                    cg.add_to(gin, r, j if gin.size > 1 else 0, g if c == 1.0 else b.fmul(g, f64(c)))


@emitter(ELEMENTWISE)
class ElementwiseEmitter(KernelEmitter):
    """A registry op: forward its scalar form (or formula), backward d out / d argument from the registry."""

    def forward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        out = cg.val(k.out)
        cg.elementwise(k, rows, k.tree, out.size, {}, lambda r, j, x: cg.store(out, r, j, x))

    def backward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        gout = cg.grad(k.out)
        b = cg.b
        for arg, t in k.inputs.items():
            if not cg.needs_grad(t):
                continue
            gin = cg.grad(t)

            def body(r: ir.Value, j: ir.Value, d: ir.Value, gin=gin) -> None:
                cg.add_to(gin, r, j if gin.size > 1 else 0, b.fmul(cg.load(gout, r, j), d))
            tree = parse_expression(k.partial(arg), where=k.where).tree
            cg.elementwise(k, rows, tree, gout.size, {"out": cg.val(k.out)}, body)


@emitter(SOFTMAX)
class SoftMaxEmitter(KernelEmitter):
    """exp(gain * x - max) / sum over the trial's vector; backward: the registry's vector-Jacobian product."""

    def forward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        x_arg, gain_arg = k.record.args
        x, out = cg.val(k.inputs[x_arg]), cg.val(k.out)
        gain = cg.val(k.inputs[gain_arg]) if gain_arg in k.inputs else None
        b, n = cg.b, out.size

        def z(r: ir.Value, j: ir.Value) -> ir.Value:
            g = cg.load(gain, r, j if gain.size > 1 else 0) if gain else f64(k.statics[gain_arg])
            return b.fmul(g, cg.load(x, r, j))
        with cg.loop(rows, name="row") as r:
            top = cg.var(float("-inf"))
            with cg.loop(n, name="mx") as j:  # numpy.max propagates NaN
                zj, t = z(r, j), b.load(top)
                b.store(b.select(b.fcmp_unordered("uno", zj, zj), zj,
                                 b.select(b.fcmp_ordered(">", zj, t), zj, t)), top)
            total = cg.var(0.0)
            exp = declare_math(cg.module, "exp")
            with cg.loop(n, name="ex") as j:
                e = b.call(exp, [b.fsub(z(r, j), b.load(top))])
                cg.store(out, r, j, e)
                b.store(b.fadd(b.load(total), e), total)
            s = b.load(total)
            with cg.loop(n, name="dv") as j:
                cg.store(out, r, j, b.fdiv(cg.load(out, r, j), s))

    def backward(self, cg: Codegen, k: Kernel, rows: ir.Value) -> None:
        gin = cg.grad(k.inputs[k.record.args[0]])
        extra = {"out": cg.val(k.out), "grad": cg.grad(k.out)}
        tree = parse_expression(k.partial(k.record.args[0]), where=k.where).tree
        cg.elementwise(k, rows, tree, gin.size, extra, lambda r, j, d: cg.add_to(gin, r, j, d))
