"""Predictive coding in native code: the LLVM backend's run of PredictiveCoding (mode 'standard'; the algorithm is
mdfbridge/learning/predictive_coding.py), the whole training run in one call as for backprop (llvm_train.py's loop).

The training plan is rewritten (`pc_plan`): every reader of a value node's tensor reads the node's activity instead
(a tensor `pc.h:<tensor>` per vode), so the kernels that produce the vodes' tensors compute their predictions u
from the activities. Per minibatch (`PCStep`):
- init (`pc_init`): the kernels in order, each vode's activity set to its prediction as soon as it is computed,
  then the activities of the vodes with targets to the targets; these are the outputs the loss scores;
- T inference steps: the kernels computed from a free activity run again (`pc_predict`); the energy is recorded and
  its gradient seeds each vode's prediction (`pc_seed`); the backward pass of those kernels (`pc_bwd_h`) carries
  it to the activities, which take an SGD step on d E / d h (their own term plus what the backward pass brought);
- the weight step: predictions again, the energy recorded, the backward pass of the kernels computed from a
  trainable weight (`pc_bwd_w`) into the weights' gradients, then the optimizer record's update.
The energy is the torch path's: the mean over the minibatch's trials of the vodes' summed 'se' 0.5 (h - u)^2 or
'ce' -h log_softmax(u). Per minibatch the run also counts the trials whose output argmax matched the target's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from llvmlite import ir

from ..errors import UnsupportedError
from ..optimizers import OptimizerRecord
from .llvm_codegen import DPTR, Codegen, View, f64, i64
from .llvm_losses import log_sum_exp
from .llvm_plan import AFFINE, Plan, Tensor
from .llvm_scalar import DOUBLE, declare_math
from .llvm_train import MinibatchStep, NativeRun, _zero_grads

H_PREFIX = "pc.h:"


@dataclass(frozen=True)
class NativeVode:
    """A value node in the plan: its prediction's tensor, its activity's, its energy, frozen, target column."""

    u: str
    h: str
    energy: str
    frozen: bool
    target: Optional[Tuple[int, int]]  # (column, size) in the packed targets: the activity starts there


def pc_plan(plan: Plan, vodes: Sequence[Any]) -> Tuple[Plan, List[NativeVode], Dict[str, Set[str]]]:
    """The plan with the vodes' readers reading their activities, the NativeVodes, and the gradient sets
    {'h': tensors the inference steps' backward pass computes, 'w': the weight step's, 'moved': tensors computed
    from a free activity}. vodes: predictive_coding.Vode records. Raises UnsupportedError for a vode the plan has
    no batched tensor of its own for."""
    producers = {k.out: k for k in plan.kernels}
    columns = {name: (col, size) for name, _, col, size in plan.targets}
    tensors = {k: dataclasses.replace(t, grad=False) for k, t in plan.tensors.items()}
    natives: List[NativeVode] = []
    rename: Dict[str, str] = {}
    for v in vodes:
        u = plan.canon(v.tensor)
        if u not in producers or not tensors[u].batched or u in rename:
            raise UnsupportedError(f"value node '{v.name}' ('{v.tensor}') is not a per-trial tensor of its own in "
                                   "the llvm backend's plan; train predictive coding on backend 'torch'")
        rename[u] = H_PREFIX + u
        tensors[rename[u]] = Tensor(rename[u], tensors[u].size, True, "value")
        natives.append(NativeVode(u, rename[u], v.energy, v.frozen,
                                  columns.get(v.output) if v.output is not None else None))
    kernels = []
    for k in plan.kernels:
        inputs = {a: rename.get(t, t) for a, t in k.inputs.items()}
        coefs = {rename.get(t, t): c for t, c in k.coefs.items()} if k.kind == AFFINE else k.coefs
        kernels.append(dataclasses.replace(k, inputs=inputs, coefs=coefs))
    trainable = {name for name in plan.params if plan.tensors[name].grad}  # (analyse marked the trainable ones)
    reach = {n.u for n in natives}  # tensors the energy depends on
    for k in reversed(kernels):
        if k.out in reach:
            reach.update(k.inputs.values())

    def downstream(start: Set[str]) -> Set[str]:
        found = set(start)
        for k in kernels:
            if any(t in found for t in k.inputs.values()):
                found.add(k.out)
        return found
    moved = downstream({n.h for n in natives if not n.frozen})
    sets = {"h": moved & reach, "w": downstream(trainable) & reach, "moved": moved}
    for name in sets["h"] | sets["w"]:
        tensors[name] = dataclasses.replace(tensors[name], grad=True)
    return dataclasses.replace(plan, tensors=tensors, kernels=kernels), natives, sets


class PCStep(MinibatchStep):
    """Predictive coding's minibatch in emit_train's loop (see the module docstring). Extra arguments of `train`:
    energies (minibatches x (T + 1)), correct (minibatches: trials whose output argmax matched), pc_hyper."""

    extra_args = (DPTR, DPTR, DPTR)

    def __init__(self, cg: Codegen, optimizer: OptimizerRecord, natives: List[NativeVode],
                 sets: Dict[str, Set[str]], T: int) -> None:
        super().__init__(optimizer)
        self.natives, self.sets, self.T = natives, sets, int(T)
        kernels = cg.plan.kernels
        union = {name for name, t in cg.plan.tensors.items() if t.grad}
        self.init = self._function(cg, "pc_init", lambda rows: self._init(cg, rows))
        self.predict = self._function(cg, "pc_predict", lambda rows: self._forward(
            cg, rows, [k for k in kernels if k.out in sets["moved"]]))
        self.bwd_h = self._backward(cg, "pc_bwd_h", sets["h"], union)
        self.bwd_w = self._backward(cg, "pc_bwd_w", sets["w"], union)
        self.energy = self._energy_function(cg)

    # ------------------------------------------------------------------ functions
    @staticmethod
    def _function(cg: Codegen, name: str, body: Any) -> ir.Function:
        """void name(i64 rows) { body(rows) }."""
        fn = cg.function(name, ir.VoidType(), [ir.IntType(64)], internal=True, inline=False)
        body(fn.args[0])
        cg.b.ret_void()
        return fn

    @staticmethod
    def _forward(cg: Codegen, rows: ir.Value, kernels: Sequence[Any], after: Any = None) -> None:
        """The kernels' forward code in order, each followed by after(kernel) when given."""
        from .llvm_kernels import EMITTERS

        for k in kernels:
            EMITTERS[k.kind].forward(cg, k, cg.rows_for(k, rows))
            if after is not None:
                after(k)

    def _init(self, cg: Codegen, rows: ir.Value) -> None:
        """The kernels in order, each vode's activity set to its prediction once computed; then the targets."""
        by_u = {n.u: n for n in self.natives}

        def copy_to_h(k: Any) -> None:
            n = by_u.get(k.out)
            if n is not None:
                cg.copy_rows(rows, cg.val(n.h), cg.val(n.u), cg.plan.tensors[n.u].size)
        self._forward(cg, rows, cg.plan.kernels, copy_to_h)
        for n in self.natives:
            if n.target is not None:
                col, size = n.target
                cg.copy_rows(rows, cg.val(n.h), View(cg.at(cg.TB, col), cg.plan.n_target, size), size)

    def _backward(self, cg: Codegen, name: str, grads: Set[str], union: Set[str]) -> ir.Function:
        """The backward pass with only `grads` marked (the plan's flags restored after)."""
        from .llvm_kernels import EMITTERS

        tensors = cg.plan.tensors
        for t in tensors.values():
            t.grad = t.name in grads
        fn = cg.function(name, ir.VoidType(), [ir.IntType(64)], internal=True, inline=False)
        for k in reversed(cg.plan.kernels):
            if tensors[k.out].grad:
                EMITTERS[k.kind].backward(cg, k, cg.rows_for(k, fn.args[0]))
        cg.b.ret_void()
        for t in tensors.values():
            t.grad = t.name in union
        return fn

    def _energy_function(self, cg: Codegen) -> ir.Function:
        """double pc_energy(rows): the minibatch's energy; d E / d u into each vode's prediction gradient."""
        fn = cg.function("pc_energy", DOUBLE, [ir.IntType(64)], internal=True, inline=False)
        rows = fn.args[0]
        b = cg.b
        s = b.fdiv(f64(1.0), b.uitofp(rows, DOUBLE))
        total = cg.var(0.0)
        for n in self.natives:
            u, h, g = cg.val(n.u), cg.val(n.h), cg.grad(n.u)
            term = cg.var(0.0)
            with cg.loop(rows, name="er") as r:
                if n.energy == "se":
                    with cg.loop(u.size, name="ej") as j:
                        d = b.fsub(cg.load(u, r, j), cg.load(h, r, j))
                        b.store(b.fadd(b.load(term), b.fmul(d, d)), term)
                        cg.store(g, r, j, b.fmul(d, s))
                else:
                    self._ce(cg, u, h, g, r, s, term)
            value = b.load(term)
            b.store(b.fadd(b.load(total), b.fmul(value, f64(0.5)) if n.energy == "se" else value), total)
        b.ret(b.fmul(b.load(total), s))
        return fn

    def _ce(self, cg: Codegen, u: View, h: View, g: View, r: ir.Value, s: ir.Value, term: ir.Value) -> None:
        """Row r's -sum h log_softmax(u) into `term`; d E / d u (torch's backward through it, times s) into g."""
        b = cg.b
        exp = declare_math(cg.module, "exp")
        m, lse = log_sum_exp(cg, u, r, u.size)
        gsum = cg.var(0.0)
        with cg.loop(u.size, name="ej") as j:
            logp = b.fsub(b.fsub(cg.load(u, r, j), m), lse)
            y = cg.load(h, r, j)
            b.store(b.fsub(b.load(term), b.fmul(logp, y)), term)
            b.store(b.fadd(b.load(gsum), b.fmul(b.fneg(y), s)), gsum)
        with cg.loop(u.size, name="eg") as j:
            logp = b.fsub(b.fsub(cg.load(u, r, j), m), lse)
            gy = b.fmul(b.fneg(cg.load(h, r, j)), s)
            cg.store(g, r, j, b.fsub(gy, b.fmul(b.call(exp, [logp]), b.load(gsum))))

    # ------------------------------------------------------------------ the minibatch
    def forward(self, cg: Codegen, rows: ir.Value, args: List[ir.Value]) -> None:
        """The init step (its outputs are the minibatch's predictions)."""
        cg.b.call(self.init, [rows])

    def update(self, cg: Codegen, rows: ir.Value, step: ir.Value, index: ir.Value, lr: ir.Value, wd: ir.Value,
               args: List[ir.Value]) -> None:
        """Tally, T inference steps, the weight step (see the module docstring)."""
        b = cg.b
        energies, correct, hyper = args
        b.store(self._correct(cg, rows), b.gep(correct, [index], inbounds=True))
        lr_h = b.load(b.gep(hyper, [i64(0)], inbounds=True))
        per_trial = b.fcmp_ordered("!=", b.load(b.gep(hyper, [i64(1)], inbounds=True)), f64(0.0))
        lr_h = b.select(per_trial, b.fmul(lr_h, b.uitofp(rows, DOUBLE)), lr_h)
        neg_lr = b.fneg(lr_h)
        base = b.mul(index, i64(self.T + 1))
        s = b.fdiv(f64(1.0), b.uitofp(rows, DOUBLE))
        with cg.loop(self.T, name="pc_t") as t:
            b.call(self.predict, [rows])
            _zero_grads(cg, rows)
            e = b.call(self.energy, [rows])
            b.store(e, b.gep(energies, [b.add(base, t)], inbounds=True))
            b.call(self.bwd_h, [rows])
            for n in self.natives:
                if not n.frozen:
                    self._step_h(cg, n, rows, s, neg_lr)
        b.call(self.predict, [rows])
        _zero_grads(cg, rows)
        e = b.call(self.energy, [rows])
        b.store(e, b.gep(energies, [b.add(base, i64(self.T))], inbounds=True))
        b.call(self.bwd_w, [rows])
        self.step(cg, step, lr, wd)

    def _step_h(self, cg: Codegen, n: NativeVode, rows: ir.Value, s: ir.Value, neg_lr: ir.Value) -> None:
        """h += -lr_h * (own d E / d h + the backward pass's)."""
        b = cg.b
        u, h = cg.val(n.u), cg.val(n.h)
        gh = cg.grad(n.h) if cg.needs_grad(n.h) else None  # (None: no prediction reads this activity)
        with cg.loop(rows, name="hr") as r:
            if n.energy == "ce":
                m, lse = log_sum_exp(cg, u, r, u.size)
            with cg.loop(u.size, name="hj") as j:
                hv = cg.load(h, r, j)
                if n.energy == "se":
                    own = b.fmul(b.fsub(hv, cg.load(u, r, j)), s)
                else:  # d/dh of -h log_softmax(u)
                    own = b.fmul(b.fneg(b.fsub(b.fsub(cg.load(u, r, j), m), lse)), s)
                g = own if gh is None else b.fadd(own, cg.load(gh, r, j))
                cg.store(h, r, j, b.fadd(hv, b.fmul(neg_lr, g)))

    def _correct(self, cg: Codegen, rows: ir.Value) -> ir.Value:
        """Trials whose output argmax (first maximum) equals their target's, over the outputs of > 1 column."""
        b = cg.b
        count = cg.var(0.0)
        for _, t, col, size in cg.plan.targets:
            if size < 2:
                continue
            out, tgt = cg.val(t), View(cg.at(cg.TB, col), cg.plan.n_target, size)
            with cg.loop(rows, name="ar") as r:
                first = [self._argmax(cg, v, r, size) for v in (out, tgt)]
                hit = b.uitofp(b.icmp_signed("==", first[0], first[1]), DOUBLE)
                b.store(b.fadd(b.load(count), hit), count)
        return b.load(count)

    @staticmethod
    def _argmax(cg: Codegen, v: View, r: ir.Value, size: int) -> ir.Value:
        b = cg.b
        best, at = cg.var(cg.load(v, r, 0)), cg.var(0, ir.IntType(64))
        with cg.loop(size, start=1, name="am") as j:
            x = cg.load(v, r, j)
            with cg.when(b.fcmp_ordered(">", x, b.load(best))):
                b.store(x, best)
                b.store(j, at)
        return b.load(at)


def native_settings(algorithm: Any, config: Any) -> Dict[str, Any]:
    """What the native run of a PredictiveCoding needs from its settings: the weights' optimizer record name, lr,
    weight decay (optim_w's, or with optim_w None learn()'s, from `config`, as on torch); the activities' lr and
    whether it scales with the minibatch's trials. Settings native code does not run raise UnsupportedError naming
    them and backend 'torch'."""
    import inspect

    import torch

    from ..learning.predictive_coding import resolve_optimizer
    from ..optimizers import get_optimizer

    use_torch = "; train it on backend 'torch'"
    if algorithm.mode != "standard":
        raise UnsupportedError(f"predictive coding's mode {algorithm.mode!r} is not compiled by the llvm backend"
                               f"{use_torch}")
    out: Dict[str, Any] = {}
    if algorithm.optim_h is None:
        out["lr_h"], out["per_trial"] = 0.01, 1.0
    else:
        cls, extra = resolve_optimizer(algorithm.optim_h, "optim_h")
        if cls is not torch.optim.SGD or set(extra) - {"lr"} or "lr" not in extra:
            raise UnsupportedError(f"optim_h={algorithm.optim_h!r}: the llvm backend steps the activities with "
                                   f"plain SGD, ('sgd', lr){use_torch}")
        out["lr_h"], out["per_trial"] = extra["lr"], 0.0
    if algorithm.optim_w is None:  # learn()'s optimizer
        out["optimizer"] = get_optimizer(config.optimizer_type).name
        out["lr"], out["weight_decay"] = config.learning_rate, config.weight_decay
        return out
    records = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}
    cls, extra = resolve_optimizer(algorithm.optim_w, "optim_w")
    if cls not in records or set(extra) - {"lr", "weight_decay"}:
        raise UnsupportedError(f"optim_w={algorithm.optim_w!r}: the llvm backend updates the weights with "
                               f"('sgd' | 'adam' | 'adamw', lr[, {{'weight_decay': w}}]){use_torch}")
    out["optimizer"] = records[cls]
    out["lr"] = float(extra.get("lr", inspect.signature(cls).parameters["lr"].default))  # (torch's default)
    out["weight_decay"] = float(extra.get("weight_decay", 0.0))
    return out


class PCRun(NativeRun):
    """The Python side of a native predictive-coding run (importers/llvm.py's train_llvm calls it); arguments as
    NativeRun's, the algorithm a PredictiveCoding."""

    # (several passes over the kernels: at O2 without loop unrolling the module compiles in a third of O3's time and
    # runs as fast, the matrix products being register-tiled already)
    speed = (2, False)

    def __init__(self, algorithm: Any, program: Any, data: Any, config: Any) -> None:
        from ..learning.predictive_coding import find_vodes

        super().__init__(algorithm, program, data, config)
        self.settings = native_settings(algorithm, config)
        if algorithm.optim_w is not None:
            algorithm.warn_unused(config)
        self.vodes = find_vodes(program, algorithm.vodes, algorithm.frozen, algorithm.energy, set(data.targets))

    def key(self) -> Tuple[Any, ...]:
        """What besides the program changes the compiled code."""
        return ("pc", self.algorithm.T, self.settings["optimizer"],
                tuple((v.tensor, v.energy, v.frozen, v.output) for v in self.vodes))

    def build(self, plan: Plan, cap: int, vector_width: int, loss: str, optimizer_name: str) -> Tuple[Plan, ir.Module]:
        """The rewritten plan and the module with `train` (optimizer_name: learn()'s, unused: optim_w steps)."""
        from ..losses import get_loss
        from ..optimizers import get_optimizer
        from .llvm_codegen import check_supported
        from .llvm_train import emit_train

        pc, natives, sets = pc_plan(plan, self.vodes)
        optimizer = get_optimizer(self.settings["optimizer"])
        check_supported(pc, loss, optimizer.name)
        cg = Codegen(pc, cap, vector_width, training=True, passes=False)
        step = PCStep(cg, optimizer, natives, sets, self.algorithm.T)
        emit_train(cg, get_loss(loss), optimizer, step)
        return pc, cg.module

    def arrays(self, n_minibatches: int) -> List[np.ndarray]:
        """The extra arguments' buffers: energies, correct counts, pc_hyper."""
        self.energies = np.zeros((max(n_minibatches, 1), self.algorithm.T + 1))
        self.correct = np.zeros(max(n_minibatches, 1))
        return [self.energies, self.correct, np.array([self.settings["lr_h"], self.settings["per_trial"]])]

    def hyper(self) -> Tuple[float, float]:
        """The weights' learning rate and weight decay (optim_w's)."""
        return self.settings["lr"], self.settings["weight_decay"]

    def observe(self, index: int) -> None:
        """Before a callback on minibatch `index`: the algorithm's energies up to it."""
        self.algorithm.energies = self.energies[:index + 1].tolist()

    def finish(self, minibatches: int, nb: int, n: int, plan: Plan) -> None:
        """After the run of `minibatches` minibatches (nb an epoch, n trials an epoch): the algorithm's energies,
        epoch_energy and epoch_accuracy (outputs of more than one column)."""
        alg = self.algorithm
        alg.energies = self.energies[:minibatches].tolist()
        epochs = minibatches // nb if nb else 0
        final = self.energies[:epochs * nb, -1].reshape(epochs, nb)
        alg.epoch_energy = final.mean(axis=1).tolist()
        classified = sum(1 for *_, size in plan.targets if size > 1)
        if classified:
            hits = self.correct[:epochs * nb].reshape(epochs, nb).sum(axis=1)
            alg.epoch_accuracy = (hits / (n * classified)).tolist()
        else:
            alg.epoch_accuracy = []
