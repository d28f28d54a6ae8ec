"""LLVM IR (llvmlite.ir) for a Plan: forward over a batch, and a whole training run in one native call.

Memory: every tensor lives in module globals sized for `cap` rows (the minibatch size, or the forward
chunk): P (parameters, trainable ones first), A (values), G (gradients of values), GP (gradients of
trainable parameters), M/V (Adam moments), WT (a transposed matrix), TB (a minibatch of targets), ROW
(the trial of each minibatch row). A compiled module therefore runs one call at a time (the Python side
holds a lock). Parameters are copied in at the start of a call and out at its end (and before each hook).

Kernels are emitted by the class registered for their kind (`EMITTERS`), losses and optimizers by the LLVM
emitters of their records (mdfbridge/losses.py, mdfbridge/optimizers.py). Matrix products go through one register-tiled
micro-kernel (`Codegen.gemm`) whose inner loop is a contiguous vector axpy; every output element is
still summed in plain index order, so no fast-math flags are needed.
"""
from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from llvmlite import ir

from ..errors import UnsupportedError
from ..ops import get_op
from .llvm_plan import PROJECTION, Kernel, Plan
from .llvm_scalar import DOUBLE, ScalarIR, compile_tree, over_vector, reductions

log = logging.getLogger(__name__)

I64 = ir.IntType(64)
VOID = ir.VoidType()
DPTR = DOUBLE.as_pointer()
IPTR = I64.as_pointer()
Index = Union[int, ir.Value]


def i64(v: int) -> ir.Constant:
    """An i64 constant."""
    return ir.Constant(I64, int(v))


def f64(v: float) -> ir.Constant:
    """A double constant."""
    return ir.Constant(DOUBLE, float(v))


class View:
    """Rows of `size` doubles at `base`, `stride` doubles apart (0: one row every trial shares)."""

    def __init__(self, base: ir.Value, stride: int, size: int) -> None:
        self.base, self.stride, self.size = base, stride, size


def _at_offset(b: ir.IRBuilder, array: ir.Value, start: ir.Value, i: ir.Value) -> ir.Value:
    """Pointer to element start + i of a packed buffer."""
    return b.gep(array, [b.add(start, i)], inbounds=True)


class Codegen:
    """Builds one LLVM module for a Plan with room for `cap` rows."""

    def __init__(self, plan: Plan, cap: int, vector_width: int = 4, name: str = "mdfbridge",
                 training: bool = False, passes: bool = True) -> None:
        """plan: what to compile; cap: rows per pass; vector_width: doubles per SIMD vector (default 4); name: the
        module's (default 'mdfbridge'); training: allocate gradients and optimizer state (default False); passes:
        emit `fwd` (and `bwd` when training) now (default True; False: the caller emits its own passes)."""
        self.plan, self.cap, self.vw, self.training = plan, int(cap), int(vector_width), training
        self.module = ir.Module(name=name)
        self.b: ir.IRBuilder = None  # type: ignore[assignment]
        self.entry_block: Optional[ir.Block] = None
        tensors = plan.tensors
        self.a_off: Dict[str, int] = {}
        self.g_off: Dict[str, int] = {}
        a_size = g_size = 0
        for t in tensors.values():
            if t.kind == "param":
                continue
            n = _round_up(self.rows_of(t.name) * t.size)
            self.a_off[t.name] = a_size
            a_size += n
            if training and t.grad:
                self.g_off[t.name] = g_size
                g_size += n
        self.P = self.global_array("P", plan.n_params)
        self.A = self.global_array("A", a_size)
        if training:
            wt = max([plan.tensors[k.inputs["B"]].size for k in plan.kernels
                      if k.kind == PROJECTION and tensors[k.inputs["A"]].grad] or [1])
            self.G = self.global_array("G", g_size)
            self.GP = self.global_array("GP", plan.n_train)
            self.M = self.global_array("M", plan.n_train)
            self.V = self.global_array("V", plan.n_train)
            self.WT = self.global_array("WT", wt)
            self.TB = self.global_array("TB", self.cap * max(plan.n_target, 1))
            self.ROW = ir.GlobalVariable(self.module, ir.ArrayType(I64, self.cap), "ROW")
            self.ROW.initializer = ir.Constant(ir.ArrayType(I64, self.cap), None)
            self.ROW.linkage = "internal"
        if passes:
            self.emit_fwd()
            if training:
                self.emit_bwd()

    # ------------------------------------------------------------------ memory
    def rows_of(self, tensor: str) -> int:
        """Rows a tensor's buffer holds: `cap` with the batch axis, else 1."""
        return self.cap if self.plan.tensors[tensor].batched else 1

    def global_array(self, name: str, n: int) -> ir.GlobalVariable:
        """A zeroed, 64-byte aligned module-internal array of n doubles."""
        ty = ir.ArrayType(DOUBLE, max(int(n), 1))
        g = ir.GlobalVariable(self.module, ty, name)
        g.initializer = ir.Constant(ty, None)
        g.linkage = "internal"
        g.align = 64
        return g

    @staticmethod
    def at(g: ir.GlobalVariable, offset: int) -> ir.Constant:
        """Constant pointer to element `offset` of a global array."""
        return g.gep([i64(0), i64(offset)])

    def val(self, tensor: str) -> View:
        """Where a tensor's values are."""
        t = self.plan.tensors[tensor]
        if t.kind == "param":
            return View(self.at(self.P, self.plan.param_offset[tensor]), 0, t.size)
        return View(self.at(self.A, self.a_off[tensor]), t.size if t.batched else 0, t.size)

    def grad(self, tensor: str) -> View:
        """Where a tensor's gradient is (trainable parameters: GP)."""
        t = self.plan.tensors[tensor]
        if t.kind == "param":
            return View(self.at(self.GP, self.plan.param_offset[tensor]), 0, t.size)
        return View(self.at(self.G, self.g_off[tensor]), t.size if t.batched else 0, t.size)

    def ptr(self, v: View, row: Index, j: Index) -> ir.Value:
        """Pointer to element j of row `row` of a view."""
        b = self.b
        row, j = _ir(row), _ir(j)
        if v.stride == 0:
            idx = j
        elif isinstance(row, ir.Constant) and row.constant == 0:
            idx = j
        else:
            idx = b.add(b.mul(row, i64(v.stride)), j)
        return b.gep(v.base, [idx], inbounds=True)

    def load(self, v: View, row: Index, j: Index) -> ir.Value:
        """v[row, j]."""
        return self.b.load(self.ptr(v, row, j))

    def store(self, v: View, row: Index, j: Index, x: ir.Value) -> None:
        """v[row, j] = x."""
        self.b.store(x, self.ptr(v, row, j))

    def add_to(self, v: View, row: Index, j: Index, x: ir.Value) -> None:
        """v[row, j] += x."""
        p = self.ptr(v, row, j)
        self.b.store(self.b.fadd(self.b.load(p), x), p)

    def var(self, init: Union[float, ir.Value], ty: ir.Type = DOUBLE) -> ir.AllocaInstr:
        """A local variable (an alloca in the entry block; promoted to a register by the optimizer)."""
        with self.b.goto_block(self.entry_block):
            self.b.position_at_start(self.entry_block)
            slot = self.b.alloca(ty)
        self.b.store(ir.Constant(ty, init) if not isinstance(init, ir.Value) else init, slot)
        return slot

    # ------------------------------------------------------------------ control flow
    @contextmanager
    def loop(self, stop: Index, start: Index = 0, step: int = 1, name: str = "i") -> Iterator[ir.Value]:
        """for (i = start; i < stop; i += step) — yields i (i64)."""
        b = self.b
        pre = b.block
        head = b.append_basic_block(f"{name}.head")
        body = b.append_basic_block(f"{name}.body")
        done = b.append_basic_block(f"{name}.done")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name)
        i.add_incoming(_ir(start), pre)
        b.cbranch(b.icmp_signed("<", i, _ir(stop)), body, done)
        b.position_at_end(body)
        yield i
        i.add_incoming(b.add(i, i64(step)), b.block)
        b.branch(head)
        b.position_at_end(done)

    @contextmanager
    def when(self, cond: ir.Value) -> Iterator[None]:
        """if (cond) { ... }."""
        with self.b.if_then(cond):
            yield

    def function(self, name: str, ret: ir.Type, args: List[ir.Type], internal: bool = False,
                 inline: bool = True) -> ir.Function:
        """Start a new function; the builder is at its entry. internal: module-private (default False); inline:
        an internal one is always inlined (default True; False: never, so that its code exists once)."""
        fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        if internal:
            fn.linkage = "internal"
            fn.attributes.add("alwaysinline" if inline else "noinline")
        fn.attributes.add("nounwind")
        self.entry_block = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry_block)
        return fn

    def copy(self, dst: Callable[[ir.Value], ir.Value], src: Callable[[ir.Value], ir.Value], n: Index) -> None:
        """dst[i] = src[i] for i < n (pointer makers)."""
        with self.loop(n, name="cp") as i:
            self.b.store(self.b.load(src(i)), dst(i))

    def copy_rows(self, rows: Index, dst: View, src: View, size: int, add: bool = False,
                  dst_at: Optional[ir.Value] = None, src_at: Optional[ir.Value] = None) -> None:
        """dst[r, dst_at + j] = src[r, src_at + j] (+= with `add`, default False) for r < rows, j < size; the
        offsets default to None: 0."""
        b = self.b
        with self.loop(rows, name="cr") as r:
            with self.loop(size, name="cj") as j:
                dj = j if dst_at is None else b.add(dst_at, j)
                sj = j if src_at is None else b.add(src_at, j)
                x = self.load(src, r, sj)
                self.store(dst, r, dj, b.fadd(self.load(dst, r, dj), x) if add else x)

    def zero(self, ptr: Callable[[ir.Value], ir.Value], n: Index) -> None:
        """ptr(i) = 0 for i < n."""
        with self.loop(n, name="z") as i:
            self.b.store(f64(0.0), ptr(i))

    def rows_for(self, k: Kernel, rows: ir.Value) -> ir.Value:
        """Rows a kernel computes: the minibatch's, or 1 when its output has no batch axis."""
        return rows if self.plan.tensors[k.out].batched else i64(1)

    # ------------------------------------------------------------------ matrix products
    def gemm(self, m: Index, k: Index, n: int, a_at: Callable[[ir.Value, ir.Value], ir.Value],
             b_row: Callable[[ir.Value], ir.Value], c_row: Callable[[ir.Value], ir.Value], accumulate: bool,
             m_max: Optional[int] = None) -> None:
        """C[i, :n] (+)= sum over kk < k of A(i, kk) * B[kk, :n], for i < m (at most m_max); each sum in kk order.

        Register tiles of up to 4 rows x U vectors of `vw` doubles; the kk loop loads U vectors of a B row
        and broadcasts one A value per row, so the inner work is a contiguous vector multiply-add.
        """
        vw = self.vw
        m_max = m if isinstance(m, int) else (m_max or self.cap)
        tile = 4 if m_max >= 4 else 1
        vecs = 4 if vw >= 8 else 2
        block = vw * vecs
        full = n // block
        if full:
            with self.loop(full, name="jb") as jb:
                j0 = self.b.mul(jb, i64(block))
                self._gemm_rows(m, k, a_at, b_row, c_row, accumulate, j0, vw, vecs, tile)
        j = full * block
        rest_vecs = (n - j) // vw
        if rest_vecs:
            self._gemm_rows(m, k, a_at, b_row, c_row, accumulate, i64(j), vw, rest_vecs, tile)
            j += rest_vecs * vw
        if n - j:
            self._gemm_rows(m, k, a_at, b_row, c_row, accumulate, i64(j), 1, n - j, tile)

    def _gemm_rows(self, m: Index, k: Index, a_at, b_row, c_row, accumulate: bool, j0: ir.Value, width: int,
                   vecs: int, tile: int) -> None:
        b = self.b
        if tile == 1:
            whole: Index = 0
        elif isinstance(m, int):
            whole = (m // tile) * tile
        else:
            whole = b.mul(b.udiv(m, i64(tile)), i64(tile))
        if not (isinstance(whole, int) and whole == 0):
            with self.loop(whole, step=tile, name="ib") as i0:
                self._gemm_tile(k, a_at, b_row, c_row, accumulate, i0, tile, j0, width, vecs)
        if not (isinstance(m, int) and isinstance(whole, int) and whole == m):
            with self.loop(m, start=whole, name="ir") as i:
                self._gemm_tile(k, a_at, b_row, c_row, accumulate, i, 1, j0, width, vecs)

    def _gemm_tile(self, k: Index, a_at, b_row, c_row, accumulate: bool, i0: ir.Value, rows: int,
                   j0: ir.Value, width: int, vecs: int) -> None:
        b = self.b
        ty = ir.VectorType(DOUBLE, width) if width > 1 else DOUBLE
        zero = ir.Constant(ty, None) if width > 1 else f64(0.0)
        ri = [i0 if r == 0 else b.add(i0, i64(r)) for r in range(rows)]
        acc = [[self.var(zero, ty) for _ in range(vecs)] for _ in range(rows)]
        with self.loop(k, name="kk") as kk:
            brow = b_row(kk)
            bv = [self._vload(b.gep(brow, [b.add(j0, i64(q * width))], inbounds=True), width) for q in range(vecs)]
            for r in range(rows):
                a = self._splat(a_at(ri[r], kk), width)
                for q in range(vecs):
                    b.store(b.fadd(b.load(acc[r][q]), b.fmul(a, bv[q])), acc[r][q])
        for r in range(rows):
            crow = c_row(ri[r])
            for q in range(vecs):
                p = b.gep(crow, [b.add(j0, i64(q * width))], inbounds=True)
                x = b.load(acc[r][q])
                if accumulate:
                    x = b.fadd(self._vload(p, width), x)
                self._vstore(p, x, width)

    def _vload(self, p: ir.Value, width: int) -> ir.Value:
        if width == 1:
            return self.b.load(p)
        return self.b.load(self.b.bitcast(p, ir.VectorType(DOUBLE, width).as_pointer()), align=8)

    def _vstore(self, p: ir.Value, x: ir.Value, width: int) -> None:
        if width == 1:
            self.b.store(x, p)
        else:
            self.b.store(x, self.b.bitcast(p, ir.VectorType(DOUBLE, width).as_pointer()), align=8)

    def _splat(self, x: ir.Value, width: int) -> ir.Value:
        if width == 1:
            return x
        ty = ir.VectorType(DOUBLE, width)
        v = self.b.insert_element(ir.Constant(ty, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
        return self.b.shuffle_vector(v, ir.Constant(ty, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), width),
                                                                                  [0] * width))

    # ------------------------------------------------------------------ elementwise loops
    def elementwise(self, k: Kernel, rows: ir.Value, tree: Any, size: int,
                    extra: Dict[str, View], body: Callable[[ir.Value, ir.Value, ir.Value], None]) -> None:
        """For each row and element: evaluate expression tree `tree` over the kernel's inputs and statics (plus
        `extra` views, e.g. out and grad) and hand the value to `body(row, j, value)`; reductions over the
        trial's vector (numpy.sum(...)) are computed per row first."""
        e = ScalarIR(self.b, k.where)
        folds = reductions(tree)
        for node in folds:
            if not over_vector(node):
                raise e.unsupported(f"reduction '{node.op.name}' over an axis other than the trial's vector")
        views = {a: self.val(t) for a, t in k.inputs.items()}
        views.update(extra)

        def binder(row: ir.Value, j: ir.Value) -> Callable[[str], Optional[ir.Value]]:
            def bind(name: str) -> Optional[Union[float, ir.Value]]:
                if name in views:
                    v = views[name]
                    return self.load(v, row, j if v.size > 1 else 0)
                return k.statics.get(name)
            return bind

        with self.loop(rows, name="row") as row:
            reduced: Dict[int, ir.Value] = {}
            for node in folds:
                assert node.op.fold is not None  # reductions() collects ops with a fold
                combine, init = node.op.fold
                total = self.var(float(init))
                with self.loop(size, name="fold") as j:
                    x = compile_tree(e, node.args["X"], binder(row, j), reduced)
                    combine_op = get_op(combine)
                    assert combine_op is not None and combine_op.llvm is not None, combine
                    acc = combine_op.llvm(e, A=self.b.load(total), B=x)
                    self.b.store(e.ir(acc), total)
                reduced[id(node)] = self.b.load(total)
            with self.loop(size, name="j") as j:
                body(row, j, compile_tree(e, tree, binder(row, j), reduced))

    # ------------------------------------------------------------------ forward and backward
    def emit_fwd(self) -> None:
        """`fwd(rows)`: every kernel's forward code, in program order."""
        from .llvm_kernels import EMITTERS

        fn = self.function("fwd", VOID, [I64], internal=True)
        rows = fn.args[0]
        for k in self.plan.kernels:
            EMITTERS[k.kind].forward(self, k, self.rows_for(k, rows))
        self.b.ret_void()
        self.fwd = fn

    def emit_bwd(self) -> None:
        """`bwd(rows)`: the backward code of every kernel whose output has a gradient, in reverse order."""
        from .llvm_kernels import EMITTERS

        fn = self.function("bwd", VOID, [I64], internal=True)
        rows = fn.args[0]
        for k in reversed(self.plan.kernels):
            if self.plan.tensors[k.out].grad:
                EMITTERS[k.kind].backward(self, k, self.rows_for(k, rows))
        self.b.ret_void()
        self.bwd = fn

    def needs_grad(self, tensor: str) -> bool:
        """Does training compute this tensor's gradient?"""
        return self.plan.tensors[tensor].grad

    # ------------------------------------------------------------------ entry points
    def gather(self, X: ir.Value, trial: ir.Value, r: ir.Value) -> None:
        """Copy trial `trial` of the packed inputs into row r of the input tensors."""
        b = self.b
        row_start = b.mul(trial, i64(self.plan.n_in))
        for _, t, col, size in self.plan.inputs:
            v = self.val(t)
            src = b.add(row_start, i64(col))
            self.copy(functools.partial(self.ptr, v, r), functools.partial(_at_offset, b, X, src), size)

    def scatter_outputs(self, Y: ir.Value, trial: ir.Value, r: ir.Value) -> None:
        """Copy row r of the output tensors into trial `trial` of the packed outputs."""
        b = self.b
        row_start = b.mul(trial, i64(self.plan.n_out))
        for _, t, col, size in self.plan.outputs:
            v = self.val(t)
            dst = b.add(row_start, i64(col))
            self.copy(functools.partial(_at_offset, b, Y, dst), functools.partial(self.ptr, v, r), size)

    def params_in(self, params: ir.Value) -> None:
        """P = params (the caller's parameter buffer)."""
        self.copy(lambda i: self.b.gep(self.P, [i64(0), i], inbounds=True),
                  lambda i: self.b.gep(params, [i], inbounds=True), self.plan.n_params)

    def params_out(self, params: ir.Value) -> None:
        """params = P."""
        self.copy(lambda i: self.b.gep(params, [i], inbounds=True),
                  lambda i: self.b.gep(self.P, [i64(0), i], inbounds=True), self.plan.n_params)

    def emit_forward_entry(self) -> None:
        """void forward(double* params, const double* X, double* Y, i64 n): outputs of n trials."""
        fn = self.function("forward", VOID, [DPTR, DPTR, DPTR, I64])
        params, X, Y, n = fn.args
        b = self.b
        self.params_in(params)
        with self.loop(n, step=self.cap, name="chunk") as start:
            left = b.sub(n, start)
            rows = b.select(b.icmp_signed("<", left, i64(self.cap)), left, i64(self.cap))
            with self.loop(rows, name="r") as r:
                self.gather(X, b.add(start, r), r)
            b.call(self.fwd, [rows])
            with self.loop(rows, name="r") as r:
                self.scatter_outputs(Y, b.add(start, r), r)
        b.ret_void()


def _ir(v: Index) -> ir.Value:
    return i64(v) if isinstance(v, int) else v


def _round_up(n: int, to: int = 8) -> int:
    return max(-(-n // to) * to, to)


def check_supported(plan: Plan, loss: Optional[str] = None, optimizer_name: Optional[str] = None) -> None:
    """Raise UnsupportedError for a loss/optimizer/kernel with no emitter (loss, optimizer_name: record names)."""
    from ..losses import get_loss
    from ..optimizers import get_optimizer
    from .llvm_kernels import EMITTERS

    for k in plan.kernels:
        if k.kind not in EMITTERS:
            raise UnsupportedError(f"kernel '{k.kind}' has no llvm emitter", where=k.where)
    if loss is not None and get_loss(loss).llvm is None:
        raise UnsupportedError(f"loss '{loss}' is not supported by the llvm backend; use backend 'torch'")
    if optimizer_name is not None and get_optimizer(optimizer_name).llvm is None:
        raise UnsupportedError(f"optimizer '{optimizer_name}' is not supported by the llvm backend; "
                               "use backend 'torch'")


def build_module(plan: Plan, cap: int, vector_width: int, *, loss: Optional[str] = None,
                 optimizer_name: Optional[str] = None) -> Tuple[ir.Module, Tuple[str, ...]]:
    """The LLVM module of a plan: `train` when a loss and optimizer (names of their records) are given, else
    `forward`."""
    from ..losses import get_loss
    from ..optimizers import get_optimizer
    from .llvm_train import emit_train

    check_supported(plan, loss, optimizer_name)
    training = loss is not None
    cg = Codegen(plan, cap, vector_width, training=training)
    if training:
        emit_train(cg, get_loss(loss), get_optimizer(optimizer_name))
        return cg.module, ("train",)
    cg.emit_forward_entry()
    return cg.module, ("forward",)
