"""The LLVM backend: a `Program` compiled with llvmlite to native code for forward runs and whole training runs.

`train_llvm` (the trainer of backend 'llvm', mdfbridge/backends/llvm_backend.py, which `learn(..., backend='llvm')`
reaches) runs every epoch, minibatch, forward pass, backward pass and optimizer step in one native call, with
PsyNeuLink AutodiffComposition / torch semantics (see mdfbridge/learning/__init__.py): the losses of mdfbridge/losses.py
with their torch reductions, the optimizers of mdfbridge/optimizers.py (sgd, adam with torch's `weight_decay`, L2
added to the gradient), early stopping on
the epoch loss (mean of the minibatch losses), per-minibatch losses and final-epoch outputs (each taken
before that minibatch's update) returned to Python. Float64 throughout.

Notes
- Shuffling (`randomize_minibatch`): the epochs' orders are drawn in Python before the run, exactly as
  the torch backend does (`rng = np.random.default_rng(seed)`, one `rng.permutation(n)` per epoch), and
  passed to native code as an (epochs, n) int64 array (8 bytes per trial per epoch); both backends see
  the same order for a seed (and, as there, `seed=None` draws a fresh order).
- `synch_projection_matrices` and `callback`: the trained values reach `program.params` (then `on_synch`)
  at the end of the run. With a `callback`, or 'minibatch' / 'epoch' synching and an `on_synch` (or a
  callback) to observe it, native code calls back into Python after each minibatch / epoch: `callback`
  (epoch, minibatch index, loss) as the torch backend calls it, and at each synch point the current
  values are written to the Program and `on_synch` runs, in the torch backend's order. Without a callback
  or on_synch no Python runs between trials.
- Compiled code is cached per process by content: `program.fingerprint()` plus what else changes the
  code (tensor shapes, mode, loss, optimizer, minibatch size, which outputs have targets), and on disk between
  processes by the IR's hash (importers/llvm_cache.py; MDFBRIDGE_LLVM_CACHE=0 turns it off). `stats` counts
  compiles, disk loads and cache hits and keeps the last compile and run times; `LearnResult.seconds` is the
  native run alone (compile time excluded).
- Supported programs: see importers/llvm_plan.py; anything else raises UnsupportedError naming the node.
"""
from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Type

import numpy as np

from ..errors import UnsupportedError
from ..learning import LearnConfig, LearnResult, TrainingData
from ..losses import get_loss
from ..optimizers import get_optimizer
from ..program import Program
from ..scheduling import require_static
from .llvm_codegen import build_module
from .llvm_jit import Compiled, compile_module, vector_width
from .llvm_plan import analyse
from .llvm_train import HOOK_EPOCH, HOOK_MINIBATCH, USE_PERM, NativeRun

log = logging.getLogger(__name__)

FORWARD_CHUNK = 64  # rows per forward pass in `run_llvm`
CACHE_SIZE = 64  # compiled modules kept (least recently used dropped)

# compiles: modules built in this process (disk_hits of them loaded from the disk cache, importers/llvm_cache.py);
# cache_hits: calls that found their module built; the compile seconds include a disk load's
stats: Dict[str, float] = {"compiles": 0, "cache_hits": 0, "disk_hits": 0, "last_compile_seconds": 0.0,
                           "total_compile_seconds": 0.0, "last_run_seconds": 0.0}

_cache: "OrderedDict[Tuple[Any, ...], Compiled]" = OrderedDict()
_cache_lock = threading.Lock()

_D = ctypes.POINTER(ctypes.c_double)
_I = ctypes.POINTER(ctypes.c_int64)
HOOK = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_double)


def clear_cache() -> None:
    """Drop every compiled module (the next call compiles again)."""
    with _cache_lock:
        _cache.clear()


def cache_key(program: Program, mode: str, *extra: Any) -> Tuple[Any, ...]:
    """What identifies compiled code: the Program's content hash (plus its tensor shapes, which the hash leaves
    to the parameters), the mode and mode-specific settings."""
    shapes = hash(tuple(sorted((k, tuple(v)) for k, v in program.shapes.items())))
    return (program.fingerprint(), mode, shapes, vector_width()) + tuple(extra)


def _compiled(key: Tuple[Any, ...], build: Callable[[], Tuple[Any, Any, Tuple[str, ...]]], label: str = "",
              speed_level: int = 3, unroll: bool = True) -> Compiled:
    """The cached module for `key`, or build (plan, ir module, names) and compile it at LLVM's O`speed_level`
    (default 3), with loop unrolling unless `unroll` is False."""
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            stats["cache_hits"] += 1
            return hit
    plan, module, names = build()
    compiled = compile_module(module, names, speed_level, unroll)
    compiled.plan = plan
    with _cache_lock:
        _cache[key] = compiled
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        stats["compiles"] += 1
        stats["disk_hits"] += int(compiled.from_disk)
        stats["last_compile_seconds"] = compiled.compile_seconds
        stats["total_compile_seconds"] += compiled.compile_seconds
    log.info("llvm: %s %s of '%s' in %.3f s", "loaded" if compiled.from_disk else "compiled", key[1], label,
             compiled.compile_seconds)
    return compiled


def _ptr(a: np.ndarray, ty: Any = _D) -> Any:
    return a.ctypes.data_as(ty)


def _pack_params(program: Program, plan: Any) -> np.ndarray:
    buf = np.empty(max(plan.n_params, 1))
    for name in plan.params:
        off = plan.param_offset[name]
        v = np.asarray(program.params[name].value, dtype=np.float64).reshape(-1)
        buf[off:off + v.size] = v
    return buf


def _write_params(program: Program, plan: Any, buf: np.ndarray) -> None:
    """Copy the parameter buffer into the Program's parameter table (float64 copies, as the torch backend)."""
    for name in plan.params:
        p = program.params[name]
        off = plan.param_offset[name]
        shape = np.shape(p.value)
        p.value = buf[off:off + int(np.prod(shape, dtype=int))].reshape(shape).astype(np.float64, copy=True)


def _pack_rows(arrays: Mapping[str, np.ndarray], columns: Any, n: int) -> np.ndarray:
    if not columns:
        return np.zeros((n, 1))
    return np.ascontiguousarray(np.concatenate([np.asarray(arrays[name], dtype=np.float64).reshape(n, -1)
                                                for name, *_ in columns], axis=1))


def _split_outputs(program: Program, plan: Any, y: np.ndarray, n: int, steps: int = 0) -> Dict[str, np.ndarray]:
    """Output name -> (trials, ...) from the packed outputs; (trials, steps, ...) with `steps` (default 0: none)."""
    lead = (n, steps) if steps else (n,)
    out = {}
    for name, _, col, size in plan.outputs:
        shape = tuple(program.shapes.get(program.outputs[name], (size // max(steps, 1),)))
        out[name] = y[:, col:col + size].reshape(lead + shape).copy()
    return out


# ------------------------------------------------------------------------------------------ forward

def run_llvm(program: Program, inputs: Mapping[str, Any], *, steps: int = 1, dt: float = 1.0) -> Dict[str, np.ndarray]:
    """Run a (stateless) Program on a batch of inputs with compiled native code; outputs as numpy arrays."""
    from .reference import runner_for

    require_static(program.schedule, steps, "llvm")
    key = cache_key(program, "forward", FORWARD_CHUNK)

    def build():
        plan = analyse(program)
        module, names = build_module(plan, FORWARD_CHUNK, vector_width())
        return plan, module, names
    compiled = _compiled(key, build, program.name)  # unsupported programs fail here, before the data is read
    plan = compiled.plan
    env, n = runner_for(program).prepare_inputs(inputs)
    x = _pack_rows({name: env[t] for name, t, *_ in plan.inputs}, plan.inputs, n)
    y = np.empty((n, max(plan.n_out, 1)))
    params = _pack_params(program, plan)
    fn = compiled.function("forward", None, _D, _D, _D, ctypes.c_int64)
    start = time.perf_counter()
    with compiled.lock:
        fn(_ptr(params), _ptr(x), _ptr(y), n)
    stats["last_run_seconds"] = time.perf_counter() - start
    return _split_outputs(program, plan, y, n)


# ------------------------------------------------------------------------------------------ training

def train_llvm(program: Program, data: TrainingData, config: LearnConfig,
               callback: Optional[Callable[[int, int, float], None]] = None,
               on_synch: Optional[Callable[[], None]] = None) -> LearnResult:
    """Train the Program's learnable parameters in one native call; the Program holds the trained values.

    data: from learning.prepare_data; config: checked settings (config.algorithm: Backprop, or a BPTT or
    PredictiveCoding, run by their `NATIVE_RUNS` entry); callback(epoch, minibatch index, loss) after each minibatch
    and on_synch() after each write of the trained values to the Program (both default None)."""
    require_static(program.schedule, 1, "llvm")
    loss = get_loss(config.loss_spec).name
    opt = get_optimizer(config.optimizer_type).name
    x, t, n = data.inputs, data.targets, data.n
    mb = int(config.minibatch_size)
    target_names = tuple(t)
    native = native_run(config.algorithm.name)(config.algorithm, program, data, config)
    key = cache_key(program, "train", loss, opt, mb, target_names, native.key())

    def build():
        plan, module = native.build(analyse(program, target_names, stateful=native.stateful), mb, vector_width(),
                                    loss, opt)
        return plan, module, ("train",)
    compiled = _compiled(key, build, program.name, *native.speed)
    plan = compiled.plan
    epochs = int(config.epochs)
    nb = -(-n // mb)
    xs = _pack_rows(x, plan.inputs, n)
    ts = _pack_rows(t, plan.targets, n)
    params = _pack_params(program, plan)
    perm = _orders(data, config)
    lr, wd = native.hyper()
    hyper = np.array([lr, wd, config.min_delta], dtype=np.float64)
    extra = native.arrays(epochs * nb)
    if callback is not None:
        callback = _observed(callback, native.observe)
    losses = np.zeros(epochs * nb)
    epoch_losses = np.zeros(epochs)
    y = np.zeros((n, max(plan.n_out, 1)))
    stopped = np.zeros(1, dtype=np.int64)
    hook = _PythonHook(program, plan, params, str(config.synch_projection_matrices).lower(), callback, on_synch)
    flags = (USE_PERM if config.randomize_minibatch else 0) | hook.flags()
    c_hook = HOOK(hook)
    fn = compiled.function("train", ctypes.c_int64, _D, _D, _D, _I, ctypes.c_int64, ctypes.c_int64, _D,
                           ctypes.c_int64, ctypes.c_int64, _D, _D, _D, HOOK, _I, *([_D] * len(extra)))
    patience = -1 if config.patience is None else int(config.patience)
    start = time.perf_counter()
    with compiled.lock:
        ran = fn(_ptr(params), _ptr(xs), _ptr(ts), _ptr(perm, _I), n, epochs, _ptr(hyper), patience, flags,
                 _ptr(losses), _ptr(epoch_losses), _ptr(y), c_hook, _ptr(stopped, _I), *map(_ptr, extra))
    seconds = time.perf_counter() - start
    stats["last_run_seconds"] = seconds
    if hook.errors:
        raise hook.errors[0]
    if ran < 0:
        raise UnsupportedError("llvm training stopped by a callback")
    _write_params(program, plan, params)
    native.finish(max(ran, 0) * nb, nb, n, plan)
    if on_synch is not None:
        on_synch()
    loss_list = losses[:ran * nb].tolist()
    # the epoch loss as the torch backend reports it (numpy's mean of that epoch's minibatch losses)
    epoch_list = losses[:ran * nb].reshape(ran, nb).mean(axis=1).tolist()
    log.info("llvm: trained %d epoch(s) x %d minibatch(es) in %.4f s", ran, nb, seconds)
    return LearnResult(_split_outputs(program, plan, y, n, native.steps), loss_list, program, int(ran),
                       bool(stopped[0]), seconds, epoch_list)


def native_run(name: str) -> Type[NativeRun]:
    """The NativeRun class of a learning algorithm's name (backprop's, NativeRun itself, for any other: the
    backend protocol lets only Backprop, BPTT and PredictiveCoding through)."""
    from .llvm_bptt import BPTTRun
    from .llvm_pc import PCRun

    return {"bptt": BPTTRun, "pc": PCRun}.get(name, NativeRun)


def _observed(callback: Callable[[int, int, float], None], observe: Callable[[int], None]
              ) -> Callable[[int, int, float], None]:
    """callback, with observe(minibatch index) before each call."""
    def call(epoch: int, index: int, loss: float) -> None:
        observe(index)
        callback(epoch, index, loss)
    return call


def _orders(data: TrainingData, config: LearnConfig) -> np.ndarray:
    """The epochs' trial orders as one (epochs, n) int64 array when shuffling (else a placeholder)."""
    if not config.randomize_minibatch:
        return np.zeros(1, dtype=np.int64)
    orders = []
    for order in data.epoch_orders(config):
        assert order is not None  # randomize_minibatch: a permutation each epoch
        orders.append(order)
    return np.ascontiguousarray(np.stack(orders), dtype=np.int64)


class _PythonHook:
    """What native code calls after a minibatch (kind 0) or an epoch (kind 1) when its flags ask: the callback, and at
    the synch points the current values to the Program then on_synch, in the torch backend's order. An exception
    ends the run (answer 1) and is kept in `errors` to be raised once the native call has returned."""

    def __init__(self, program: Program, plan: Any, params: np.ndarray, synch: str,
                 callback: Optional[Callable[[int, int, float], None]],
                 on_synch: Optional[Callable[[], None]]) -> None:
        self.program, self.plan, self.params, self.synch = program, plan, params, synch
        self.callback, self.on_synch = callback, on_synch
        self.errors: list = []

    def flags(self) -> int:
        """The hook bits of `flags`: call back only where something observes it."""
        flags = 0
        if self.callback is not None or (self.synch == "minibatch" and self.on_synch is not None):
            flags |= HOOK_MINIBATCH
        if self.synch == "epoch" and (self.on_synch is not None or self.callback is not None):
            flags |= HOOK_EPOCH
        return flags

    def __call__(self, kind: int, epoch: int, index: int, value: float) -> int:
        try:
            if kind == 0 and self.callback is not None:
                self.callback(int(epoch), int(index), float(value))
            if (kind == 0 and self.synch == "minibatch") or (kind == 1 and self.synch == "epoch"):
                _write_params(self.program, self.plan, self.params)
                if self.on_synch is not None:
                    self.on_synch()
        except BaseException as exc:  # noqa: BLE001 - re-raised after the native call returns
            self.errors.append(exc)
            return 1
        return 0
