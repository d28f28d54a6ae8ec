"""Backpropagation through time in native code: the LLVM backend's run of BPTT (mdfbridge/learning/algorithms.py)
on a stateful Program, the whole training run in one call (importers/llvm_train.py's loop with `BPTTStep`).

The plan is one time step (llvm_plan.analyse(..., stateful=True): each state a per-trial tensor the step reads,
`dt` a one-value tensor); `bptt_plan` adds a sequence tensor per input and per output (T steps of values per trial,
what the training loop gathers, scores with the loss and scatters). Per minibatch:
- forward: the states at their initial values; then per time step t, as modeci-mdf's engine and the torch
  backend's `ProgramModule.step` do: dt (0 at the first step), the step's inputs, every kernel, the outputs read
  (before the states advance), each state replaced by its update; every tensor of the step is kept on a tape;
- the loss of the whole sequence (the loss record's emitter over the output sequences, so its reduction is over
  trials x steps x units, as torch's over a (trials, steps, units) tensor);
- backward from the last step to the first: the step's tensors back from the tape, the loss's gradient for the
  step's outputs and the gradient the next step passed to each state's update, the kernels' backward pass, the
  state's gradient carried to the step before; the weights' gradients summed over the steps;
- NeuroTorch's gradient safeguards (non-finite values replaced, then the total norm clipped), the optimizer step.
Losses whose value over a flattened sequence equals torch's over (trials, steps, units) run here: mse, sse, l1.
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Sequence, Tuple

import numpy as np
from llvmlite import ir

from ..errors import UnsupportedError
from ..optimizers import OptimizerRecord
from .llvm_codegen import DPTR, Codegen, View, f64, i64
from .llvm_plan import Plan, Tensor
from .llvm_scalar import declare_math
from .llvm_train import MinibatchStep, NativeRun

SEQUENCE_LOSSES = ("mse", "sse", "l1")
SEQ_IN, SEQ_OUT = "seq.in:", "seq.out:"
MAX_TAPE_BYTES = 1 << 30  # the tape of a minibatch's steps (refused beyond, naming backend 'torch')


def bptt_plan(plan: Plan, steps: int) -> Plan:
    """The one-step plan with a sequence tensor (steps x the tensor's size per trial) for each input and output;
    the packed inputs, outputs and targets are the sequences (columns in the same order)."""
    tensors = dict(plan.tensors)

    def sequences(items: Sequence[Tuple[str, str, int, int]], prefix: str, grad: bool
                  ) -> List[Tuple[str, str, int, int]]:
        out, col = [], 0
        for name, _, _, size in items:
            seq = prefix + name
            tensors.setdefault(seq, Tensor(seq, steps * size, True, "input", grad=grad))
            out.append((name, seq, col, steps * size))
            col += steps * size
        return out
    targeted = {name for name, *_ in plan.targets}
    outputs = sequences(plan.outputs, SEQ_OUT, False)
    for name, seq, *_ in outputs:
        if name in targeted:
            tensors[seq] = dataclasses.replace(tensors[seq], grad=True)
    return dataclasses.replace(plan, tensors=tensors, inputs=sequences(plan.inputs, SEQ_IN, False), outputs=outputs,
                               targets=sequences(plan.targets, SEQ_OUT, True))


class BPTTStep(MinibatchStep):
    """BPTT's minibatch in emit_train's loop (see the module docstring). Extra arguments of `train`: the states'
    initial values (packed per state, one trial's), bptt_hyper [dt, grad_norm_clip_value, nan, posinf, neginf].

    cg: the Codegen of bptt_plan's plan; step_plan: the one-step plan (its inputs and outputs name the step's
    tensors); states: (state tensor, its update's tensor) pairs; steps: time steps."""

    extra_args = (DPTR, DPTR)

    def __init__(self, cg: Codegen, optimizer: OptimizerRecord, step_plan: Plan, states: List[Tuple[str, str]],
                 steps: int) -> None:
        super().__init__(optimizer)
        self.step_plan, self.states, self.T = step_plan, states, int(steps)
        seqs = [name for name in cg.a_off if name.startswith((SEQ_IN, SEQ_OUT))]
        # the tape holds the step's tensors: A up to the sequences (bptt_plan added them last)
        self.width = min(cg.a_off[name] for name in seqs)
        tape = self.T * self.width * 8
        if tape > MAX_TAPE_BYTES:
            raise UnsupportedError(f"backprop through time on the llvm backend would keep {tape / 2**20:.0f} MiB of "
                                   f"steps (limit {MAX_TAPE_BYTES >> 20} MiB); use a smaller minibatch, or "
                                   "backend 'torch'")
        self.tape = cg.global_array("TAPE", self.T * self.width)
        self.carry = {s: cg.global_array(f"CARRY{i}", cg.cap * cg.plan.tensors[s].size) for i, (s, _) in
                      enumerate(states)}

    def _tape(self, cg: Codegen, t: ir.Value, save: bool) -> None:
        """Step t's tensors onto the tape (save) or back from it."""
        b = cg.b
        base = b.mul(t, i64(self.width))

        def tape_at(i: ir.Value) -> ir.Value:
            return b.gep(self.tape, [i64(0), b.add(base, i)], inbounds=True)

        def a_at(i: ir.Value) -> ir.Value:
            return b.gep(cg.A, [i64(0), i], inbounds=True)
        if save:
            cg.copy(tape_at, a_at, self.width)
        else:
            cg.copy(a_at, tape_at, self.width)

    def forward(self, cg: Codegen, rows: ir.Value, args: List[ir.Value]) -> None:
        """The sequence: initial states, then every time step (see the module docstring)."""
        b = cg.b
        initial, hyper = args
        off = 0
        for state, _ in self.states:
            view, size = cg.val(state), cg.plan.tensors[state].size
            with cg.loop(rows, name="ir") as r:
                with cg.loop(size, name="ij") as j:
                    cg.store(view, r, j, b.load(b.gep(initial, [b.add(i64(off), j)], inbounds=True)))
            off += size
        dt = b.load(b.gep(hyper, [i64(0)], inbounds=True))
        seq_in = {name: seq for name, seq, *_ in cg.plan.inputs}
        seq_out = {name: seq for name, seq, *_ in cg.plan.outputs}
        with cg.loop(self.T, name="t") as t:
            cg.store(cg.val("dt"), 0, 0, b.select(b.icmp_signed("==", t, i64(0)), f64(0.0), dt))
            for name, tensor, _, size in self.step_plan.inputs:
                cg.copy_rows(rows, cg.val(tensor), cg.val(seq_in[name]), size, src_at=b.mul(t, i64(size)))
            b.call(cg.fwd, [rows])
            self._tape(cg, t, save=True)
            for name, tensor, _, size in self.step_plan.outputs:
                cg.copy_rows(rows, cg.val(seq_out[name]), cg.val(tensor), size, dst_at=b.mul(t, i64(size)))
            for state, update in self.states:
                cg.copy_rows(rows, cg.val(state), cg.val(update), cg.plan.tensors[state].size)

    def update(self, cg: Codegen, rows: ir.Value, step: ir.Value, index: ir.Value, lr: ir.Value, wd: ir.Value,
               args: List[ir.Value]) -> None:
        """Backward through the steps, the safeguards, the optimizer step (see the module docstring)."""
        b = cg.b
        seq_out = {name: seq for name, seq, *_ in cg.plan.targets}
        def element(array: ir.Value, start: int) -> Any:
            return lambda k: b.gep(array, [i64(0), b.add(i64(start), k)], inbounds=True)
        for state, _ in self.states:
            cg.zero(element(self.carry[state], 0), cg.cap * cg.plan.tensors[state].size)
        with cg.loop(self.T, name="bt") as i:
            t = b.sub(i64(self.T - 1), i)
            self._tape(cg, t, save=False)
            for name, off in cg.g_off.items():  # (the sequences' gradients, the loss's, stay)
                info = cg.plan.tensors[name]
                if not name.startswith(SEQ_OUT):
                    cg.zero(element(cg.G, off), b.mul(rows, i64(info.size)) if info.batched else i64(info.size))
            for name, tensor, _, size in self.step_plan.targets:
                if cg.needs_grad(tensor):
                    cg.copy_rows(rows, cg.grad(tensor), cg.grad(seq_out[name]), size, add=True,
                                    src_at=b.mul(t, i64(size)))
            for state, update in self.states:
                carry = View(cg.at(self.carry[state], 0), cg.plan.tensors[state].size, cg.plan.tensors[state].size)
                if cg.needs_grad(update):
                    cg.copy_rows(rows, cg.grad(update), carry, cg.plan.tensors[state].size, add=True)
            b.call(cg.bwd, [rows])
            for state, _ in self.states:
                if cg.needs_grad(state):
                    carry = View(cg.at(self.carry[state], 0), cg.plan.tensors[state].size,
                                 cg.plan.tensors[state].size)
                    cg.copy_rows(rows, carry, cg.grad(state), cg.plan.tensors[state].size)
        self._guards(cg, args[1])
        self.step(cg, step, lr, wd)

    @staticmethod
    def _guards(cg: Codegen, hyper: ir.Value) -> None:
        """torch.nan_to_num_ on every gradient, then torch.nn.utils.clip_grad_norm_ when the clip value is finite."""
        b = cg.b
        clip, nan, posinf, neginf = (b.load(b.gep(hyper, [i64(k)], inbounds=True)) for k in (1, 2, 3, 4))
        total = cg.var(0.0)
        with cg.loop(cg.plan.n_train, name="gg") as i:
            p = b.gep(cg.GP, [i64(0), i], inbounds=True)
            g = b.load(p)
            g = b.select(b.fcmp_unordered("uno", g, g), nan, g)
            g = b.select(b.fcmp_ordered("==", g, f64(float("inf"))), posinf, g)
            g = b.select(b.fcmp_ordered("==", g, f64(float("-inf"))), neginf, g)
            b.store(g, p)
            b.store(b.fadd(b.load(total), b.fmul(g, g)), total)
        sqrt = declare_math(cg.module, "llvm.sqrt.f64")
        finite = b.fcmp_ordered("<", clip, f64(float("inf")))
        with cg.when(finite):
            norm = b.call(sqrt, [b.load(total)])
            coef = b.fdiv(clip, b.fadd(norm, f64(1e-6)))
            coef = b.select(b.fcmp_ordered("<", coef, f64(1.0)), coef, f64(1.0))
            with cg.loop(cg.plan.n_train, name="gc") as i:
                p = b.gep(cg.GP, [i64(0), i], inbounds=True)
                b.store(b.fmul(b.load(p), coef), p)


class BPTTRun(NativeRun):
    """The Python side of a native BPTT run (importers/llvm.py's train_llvm calls it); arguments as NativeRun's,
    the algorithm a BPTT, the program stateful, the data sequences."""

    stateful = True
    speed = (2, False)  # (as predictive coding's: several passes over the kernels)

    def __init__(self, algorithm: Any, program: Any, data: Any, config: Any) -> None:
        from ..losses import get_loss

        super().__init__(algorithm, program, data, config)
        loss = get_loss(config.loss_spec).name
        use_torch = "; train it on backend 'torch'"
        if program.sequence:
            raise UnsupportedError(f"a GRU block (a whole sequence per step) is not compiled by the llvm backend"
                                   f"{use_torch}")
        if not program.states:
            raise UnsupportedError(f"BPTT on the llvm backend needs a stateful program (this one has no state; "
                                   f"plain backprop runs there){use_torch}")
        if loss not in SEQUENCE_LOSSES:
            raise UnsupportedError(f"loss '{loss}' over sequences is not compiled by the llvm backend (it runs "
                                   f"{', '.join(SEQUENCE_LOSSES)}){use_torch}")
        for name, target in data.targets.items():  # (prepare_data took them per step or for the last step)
            if target.shape[1:] != (data.steps,) + tuple(program.shapes.get(program.outputs[name], ())):
                raise UnsupportedError(f"targets for '{name}' of the last step only are not compiled by the llvm "
                                       f"backend (give one per step){use_torch}")
        for name, st in program.states.items():
            if not np.all(np.isfinite(np.asarray(st.initial, dtype=float))):
                raise UnsupportedError(f"state '{name}' has a non-finite initial value{use_torch}")
        self.steps = int(data.steps)

    def key(self) -> Tuple[Any, ...]:
        """What besides the program changes the compiled code."""
        return ("bptt", self.steps)

    def build(self, plan: Plan, cap: int, vector_width: int, loss: str, optimizer_name: str) -> Tuple[Plan, ir.Module]:
        """The sequence plan and the module with `train`."""
        from ..losses import get_loss
        from ..optimizers import get_optimizer
        from .llvm_codegen import check_supported
        from .llvm_train import emit_train

        seq = bptt_plan(plan, self.steps)
        check_supported(seq, loss, optimizer_name)
        cg = Codegen(seq, cap, vector_width, training=True)
        states = [(name, plan.canon(st.update)) for name, st in self.program.states.items()]
        optimizer = get_optimizer(optimizer_name)
        emit_train(cg, get_loss(loss), optimizer, BPTTStep(cg, optimizer, plan, states, self.steps))
        self.step_plan = plan
        return seq, cg.module

    def arrays(self, n_minibatches: int) -> List[np.ndarray]:
        """The extra arguments' buffers: the states' initial values, bptt_hyper (n_minibatches: unused)."""
        initial = np.concatenate([np.asarray(st.initial, dtype=np.float64).reshape(-1)
                                  for st in self.program.states.values()])
        g = self.algorithm.guards
        return [np.ascontiguousarray(initial), np.array([self.algorithm.dt, g.grad_norm_clip_value, g.nan, g.posinf,
                                                          g.neginf], dtype=np.float64)]
