"""The training run in native code: the `train` entry point of the LLVM backend.

`emit_train` writes the epoch loop (minibatches gathered in order or by a precomputed permutation, forward,
loss, backward, optimizer step, per-minibatch and epoch losses, early stopping, optional hooks into Python). A
learning algorithm other than backprop gives a `MinibatchStep`: its own forward pass and update in place of the
backward pass and optimizer step (importers/llvm_pc.py, predictive coding), with extra arguments of its own.
The loss and the optimizer step come from their records' LLVM emitters (mdfbridge/losses.py and
mdfbridge/optimizers.py; the emitters are in llvm_losses.py and llvm_optimizers.py).
"""
from __future__ import annotations

import functools
from typing import Any, List, Optional, Sequence, Tuple

from llvmlite import ir

from ..losses import LossRecord
from ..optimizers import OptimizerRecord
from .llvm_codegen import DPTR, I64, IPTR, Codegen, i64
from .llvm_scalar import DOUBLE

HOOK_TYPE = ir.FunctionType(I64, [I64, I64, I64, DOUBLE])  # (kind 0 minibatch | 1 epoch, epoch, index, loss)
HOOK_MINIBATCH, HOOK_EPOCH, USE_PERM = 2, 4, 1  # bits of `flags`


def _at(b: ir.IRBuilder, array: ir.Value, i: ir.Value) -> ir.Value:
    """Pointer to element i of a global array."""
    return b.gep(array, [i64(0), i], inbounds=True)


def _at_offset(b: ir.IRBuilder, array: ir.Value, off: int, i: ir.Value) -> ir.Value:
    """Pointer to element off + i of a global array."""
    return b.gep(array, [i64(0), b.add(i64(off), i)], inbounds=True)


class MinibatchStep:
    """What a learning algorithm does with a gathered minibatch (the default: backprop's)."""

    extra_args: Sequence[ir.Type] = ()  # arguments `train` takes after its own

    def __init__(self, optimizer: OptimizerRecord) -> None:
        """optimizer: the record whose LLVM emitter steps the weights."""
        assert optimizer.llvm is not None  # refused before compiling (llvm_codegen.check_supported)
        self.step = optimizer.llvm

    def forward(self, cg: Codegen, rows: ir.Value, args: List[ir.Value]) -> None:
        """The forward pass whose outputs are scattered and scored by the loss; args: the values of
        `extra_args`."""
        cg.b.call(cg.fwd, [rows])

    def update(self, cg: Codegen, rows: ir.Value, step: ir.Value, index: ir.Value, lr: ir.Value, wd: ir.Value,
               args: List[ir.Value]) -> None:
        """After the loss (whose gradient is in G): the weights' update. step: the update's number (from 1);
        index: the minibatch's over the run; args: the values of `extra_args`."""
        cg.b.call(cg.bwd, [rows])
        self.step(cg, step, lr, wd)


class NativeRun:
    """The Python side of a native training run: what importers/llvm.py's train_llvm asks of the learning algorithm
    (here, backprop's: learn()'s optimizer settings, no extra arguments, the module build_module makes).

    algorithm: the LearningAlgorithm; program: the Program; data: prepare_data's TrainingData; config: the
    LearnConfig. Subclasses raise UnsupportedError for settings native code does not run."""

    stateful = False  # the plan is one time step of a stateful program (llvm_plan.analyse's `stateful`)
    speed = (3, True)  # compile_module's (speed_level, unroll)
    steps = 0  # time steps of each trial's outputs (0: one row of outputs per trial)

    def __init__(self, algorithm: Any, program: Any, data: Any, config: Any) -> None:
        self.algorithm, self.program, self.data, self.config = algorithm, program, data, config

    def key(self) -> Tuple[Any, ...]:
        """What besides the program and learn()'s settings changes the compiled code."""
        return ()

    def build(self, plan: Any, cap: int, vector_width: int, loss: str, optimizer_name: str) -> Tuple[Any, Any]:
        """(the plan the module computes, the llvmlite module with `train`) from analyse's training plan."""
        from .llvm_codegen import build_module

        module, _ = build_module(plan, cap, vector_width, loss=loss, optimizer_name=optimizer_name)
        return plan, module

    def hyper(self) -> Tuple[float, float]:
        """The weights' learning rate and weight decay."""
        return self.config.learning_rate, self.config.weight_decay

    def arrays(self, n_minibatches: int) -> List[Any]:
        """The buffers of the step's `extra_args` (float64 numpy arrays), for a run of n_minibatches."""
        return []

    def observe(self, index: int) -> None:
        """Before a callback on minibatch `index` (nothing here)."""

    def finish(self, minibatches: int, nb: int, n: int, plan: Any) -> None:
        """After a run of `minibatches` minibatches (nb an epoch, n trials an epoch): the algorithm's own results
        (nothing here)."""


def emit_train(cg: Codegen, loss: LossRecord, optimizer: OptimizerRecord,
               minibatch: Optional[MinibatchStep] = None) -> None:
    """i64 train(params, X, T, perm, n, epochs, hyper[lr, weight_decay, min_delta, ...], patience, flags,
    losses, epoch_losses, Y, hook, stopped, *minibatch.extra_args): the whole run; returns epochs run (-1: a hook
    asked to stop).

    loss, optimizer: records whose `llvm` emitters compute the loss (and its gradient) and the update; minibatch:
    the algorithm's forward pass and update (default None: backprop's, MinibatchStep(optimizer))."""
    minibatch = minibatch or MinibatchStep(optimizer)
    fn = cg.function("train", I64, [DPTR, DPTR, DPTR, IPTR, I64, I64, DPTR, I64, I64, DPTR, DPTR, DPTR,
                                    HOOK_TYPE.as_pointer(), IPTR, *minibatch.extra_args])
    params, X, T, perm, n, epochs, hyper, patience, flags, losses, elosses, Y, hook, stopped = fn.args[:14]
    extra = list(fn.args[14:])
    for a in (params, X, T, perm, hyper, losses, elosses, Y, stopped):
        a.add_attribute("noalias")
    emit_loss = loss.llvm
    assert emit_loss is not None  # refused before compiling (llvm_codegen.check_supported)
    b = cg.b
    lr, wd, min_delta = (b.load(b.gep(hyper, [i64(i)])) for i in range(3))
    plan, cap = cg.plan, cg.cap
    cg.params_in(params)
    for g in (cg.M, cg.V):
        cg.zero(functools.partial(_at, b, g), plan.n_train)
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
            minibatch.forward(cg, rows, extra)
            with cg.loop(rows, name="r") as r:
                cg.scatter_outputs(Y, b.load(b.gep(cg.ROW, [i64(0), r], inbounds=True)), r)
            _zero_grads(cg, rows)
            loss_value = None
            for _, t, col, size in plan.targets:
                term = emit_loss(cg, t, col, size, rows)
                loss_value = term if loss_value is None else b.fadd(loss_value, term)
            k = b.add(b.mul(epoch, nb), mb)
            b.store(b.add(b.load(step), i64(1)), step)
            minibatch.update(cg, rows, b.load(step), k, lr, wd, extra)
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
        cg.zero(functools.partial(_at_offset, b, cg.G, off), n)
    cg.zero(lambda i: b.gep(cg.GP, [i64(0), i], inbounds=True), cg.plan.n_train)
