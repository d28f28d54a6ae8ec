"""Compile a Program's ops into closures over an environment, for one array library (numpy or torch).

Both the numpy reference and the torch module run through this, so batching rules (elementwise ops on a
batch, registry batch rules, a per-trial loop otherwise) are decided in one place.
"""
from __future__ import annotations

from typing import AbstractSet, Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

import numpy as np

from .errors import MdfBridgeError, ShapeError
from .ops import get_op
from .program import Op, Program, TensorRef

Env = Dict[str, Any]
Step = Tuple[Op, Callable[[Env], Any]]


def fetch(v: Any, env: Env) -> Any:
    """The value of an op argument: a tensor from env, a list of tensors, or a static value."""
    if isinstance(v, TensorRef):
        return env[v.name]
    if isinstance(v, list) and v and all(isinstance(x, TensorRef) for x in v):
        return [env[x.name] for x in v]
    return v


def _is_tensor_arg(v: Any) -> bool:
    return isinstance(v, TensorRef) or (isinstance(v, list) and bool(v) and isinstance(v[0], TensorRef))


def batched_tensors(program: Program, also: Iterable[str] = ()) -> Set[str]:
    """Names of the tensors that carry the batch axis (inputs, state, the names in `also` (default none) and what
    depends on them)."""
    batched = set(program.states) | {f"{s.node}.{s.port}" for s in program.inputs.values()} | set(also)
    for op in program.ops:
        for v in op.args.values():
            if (v.name in batched) if type(v) is TensorRef else _refs_batched(v, batched):
                batched.add(op.out)
                break
    return batched


def _refs_batched(v: Any, batched: Set[str]) -> bool:
    if isinstance(v, list):
        return any(_refs_batched(x, batched) for x in v)
    return isinstance(v, TensorRef) and v.name in batched


def compile_program(program: Program, lib: str = "numpy", batched_too: Iterable[str] = ()
                    ) -> Tuple[List[Step], Set[str]]:
    """(op, closure) pairs in program order for `lib` ('numpy' or 'torch'), and the batched tensor names.
    batched_too: parameters to treat as batched too, given one value per trial (default none; e-prop's per-trial
    copies)."""
    batched = batched_tensors(program, batched_too)
    stack = np.stack if lib == "numpy" else _torch_stack
    lead = 2 if program.sequence else 1
    steps = [(op, _compile_op(_simplify(op, program), lib, batched, stack, lead)) for op in program.ops]
    return steps, batched


def _simplify(op: Op, program: Program) -> Op:
    """The op as its record's exact algebraic simplification rewrites it (e.g. a bias node's constant `[1.] @ W`
    is W viewed as a vector), or the op itself."""
    opdef = get_op(op.fn)
    assert opdef is not None, op.fn  # lowering emits registered ops only
    simplify = opdef.simplify
    if simplify is None:
        return op
    constants = {k: program.params[v.name].value for k, v in op.args.items()
                 if isinstance(v, TensorRef) and v.name in program.params and not program.params[v.name].learnable}
    rewritten = simplify(op.args, constants)
    return op if rewritten is None else Op(op.out, rewritten[1], op.node, fn=rewritten[0])


def _torch_stack(rows: List[Any]) -> Any:
    import torch

    return torch.stack([torch.as_tensor(r) for r in rows])


def align_ranks(values: List[Any], batched: List[bool], lead: int = 1, rank: int = 0) -> List[Any]:
    """Per-trial broadcasting: batched values of lower per-trial rank than the op's highest (over batched and
    unbatched values) get axes inserted after the batch axis; unbatched values are left to numpy's/torch's
    broadcasting, which aligns them with the per-trial axes (`rank`: that of static array arguments)."""
    top = max([rank] + [v.ndim - lead if b else np.ndim(v) for v, b in zip(values, batched)]) + lead
    return [v[(slice(None),) * lead + (None,) * (top - v.ndim) + (Ellipsis,)]
            if b and v.ndim != top else v for v, b in zip(values, batched)]


def _broadcast_per_trial(run: Callable[[Env], Any], items: List[Tuple[str, Any]], batched: Set[str], lead: int,
                         call: Callable[[Dict[str, Any]], Any]) -> Callable[[Env], Any]:
    """An elementwise op whose arguments may differ in per-trial rank: `run` when the batched ones have the
    highest per-trial rank of all (one `ndim` compare for two tensors), else the batched arguments aligned by
    `align_ranks` and passed to `call` (a per-trial scalar times an unbatched (8,) vector is (trials, 8), not
    numpy's right-aligned broadcast of (trials,) with (8,))."""
    tensors = [(k, v.name) for k, v in items if isinstance(v, TensorRef)]
    flags = [n in batched for _, n in tensors]
    statics = [np.ndim(v) for _, v in items if isinstance(v, np.ndarray)]
    static_rank = max(statics, default=0)
    if sum(flags) < 2 and not (any(flags) and (len(flags) > 1 or static_rank)):
        return run

    def aligned_call(env: Env) -> Any:
        vals = [env[n] for _, n in tensors]
        kw = {k: fetch(v, env) for k, v in items}
        kw.update(zip([k for k, _ in tensors], align_ranks(vals, flags, lead, static_rank)))
        return call(kw)

    names = [n for (_, n), b in zip(tensors, flags) if b]
    others = [n for (_, n), b in zip(tensors, flags) if not b]
    if len(names) == 2 and not others and not static_rank:  # the common case: one compare
        n1, n2 = names
        return lambda env: run(env) if env[n1].ndim == env[n2].ndim else aligned_call(env)
    if len(names) == 1 and len(others) == 1 and not static_rank:  # a batched value with an unbatched one
        (b1,), (u1,) = names, others
        return lambda env: run(env) if env[b1].ndim - lead >= np.ndim(env[u1]) else aligned_call(env)

    def aligned(env: Env) -> Any:
        ranks = {env[n].ndim for n in names}
        top = max(max(ranks) - lead, static_rank, max((np.ndim(env[n]) for n in others), default=0))
        if len(ranks) > 1 or min(ranks) - lead < top:
            return aligned_call(env)
        return run(env)
    return aligned


def _compile_op(op: Op, lib: str, batched: Set[str], stack: Callable, lead: int = 1) -> Callable[[Env], Any]:
    batched_args = frozenset(k for k, v in op.args.items() if _refs_batched(v, batched))
    items = list(op.args.items())
    opdef = get_op(op.fn)
    assert opdef is not None, op.fn  # lowering emits registered ops only
    fn = opdef.numpy if lib == "numpy" else opdef.torch
    if fn is None:
        from .errors import UnsupportedError

        raise UnsupportedError(f"function '{op.fn}' has no {lib} implementation", where=f"node '{op.node}'")
    if not batched_args or opdef.elementwise:
        direct = _direct(fn, items, opdef.specialise, lib)
        return _broadcast_per_trial(direct, items, batched, lead, lambda kw: fn(**kw)) if batched_args else direct
    attrs = {k: v for k, v in items if not _is_tensor_arg(v)}
    rule = opdef.batch_rule(batched_args, attrs) if opdef.batch_rule else None
    if rule is not None:
        extra = [(k, v) for k, v in rule.items() if k not in op.args]  # attributes a batch rule adds
        return _direct(fn, [(k, rule.get(k, v) if k in attrs else v) for k, v in items] + extra,
                       opdef.specialise, lib)
    return _per_trial(items, batched_args, lambda kw: fn(**kw), stack, lead, batched)


def _direct(fn: Callable, items: List[Tuple[str, Any]], specialise: Optional[Callable] = None,
            lib: str = "numpy") -> Callable[[Env], Any]:
    """A closure calling `fn` with the op's arguments from env: the record's specialised positional function
    when it has one for these static arguments, else `fn` by keyword."""
    tensors = [(k, v.name) for k, v in items if isinstance(v, TensorRef)]
    others = [(k, v) for k, v in items if not isinstance(v, TensorRef)]
    if any(_is_tensor_arg(v) for _, v in others):
        return lambda env: fn(**{k: fetch(v, env) for k, v in items})
    static = dict(others)
    fast = specialise(static, tuple(k for k, _ in tensors), lib) if specialise is not None else None
    if fast is not None and len(tensors) == 1:
        (_, n1), = tensors
        return lambda env: fast(env[n1])
    if fast is not None and len(tensors) == 2:
        (_, n1), (_, n2) = tensors
        return lambda env: fast(env[n1], env[n2])
    if len(tensors) == 1:  # the common cases, without building a dict per call
        (k1, n1), = tensors
        return lambda env: fn(**{k1: env[n1]}, **static)
    if len(tensors) == 2:
        (k1, n1), (k2, n2) = tensors
        return lambda env: fn(**{k1: env[n1], k2: env[n2]}, **static)
    return lambda env: fn(**static, **{k: env[n] for k, n in tensors})


def _per_trial(items: List[Tuple[str, Any]], batched_args: frozenset, call: Callable[[Dict[str, Any]], Any],
               stack: Callable, lead: int = 1, batched: AbstractSet[str] = frozenset()) -> Callable[[Env], Any]:
    """Run an op trial by trial (ops whose meaning depends on the per-trial shape); with lead=2 (sequences)
    trial by trial and time step by time step. In a list of tensors only the batched items are sliced."""
    item_flags = {k: [isinstance(x, TensorRef) and x.name in batched for x in v]
                  for k, v in items if k in batched_args and isinstance(v, list)}

    def rows_of(v: Any) -> Any:
        return v.reshape((-1,) + tuple(v.shape[2:])) if lead == 2 else v

    def run(env: Env) -> Any:
        kw = {k: fetch(v, env) for k, v in items}
        first = kw[min(batched_args)]
        if isinstance(first, list):
            first = next(x for x, f in zip(first, item_flags[min(batched_args)]) if f)
        head = tuple(first.shape[:lead])
        flat = {k: ([rows_of(x) if f else x for x, f in zip(v, item_flags[k])] if isinstance(v, list)
                    else rows_of(v)) if k in batched_args else v
                for k, v in kw.items()}
        n = int(np.prod(head))
        rows = []
        for b in range(n):
            row = {k: (([x[b] if f else x for x, f in zip(v, item_flags[k])] if isinstance(v, list) else v[b])
                       if k in batched_args else v)
                   for k, v in flat.items()}
            rows.append(call(row))
        out = stack(rows)
        return out.reshape(head + tuple(out.shape[1:])) if lead == 2 else out
    return run


def execute(steps: List[Step], env: Env) -> None:
    """Run compiled steps once over env; numpy/torch errors become ShapeError naming node and shapes."""
    for op, f in steps:
        try:
            env[op.out] = f(env)
        except MdfBridgeError:
            raise
        except (ValueError, TypeError, IndexError, RuntimeError) as exc:
            shapes = {k: _shape(fetch(v, env)) for k, v in op.args.items() if _is_tensor_arg(v)}
            raise ShapeError(f"{op.fn} failed on argument shapes {shapes}: {exc}", where=f"node '{op.node}'") from exc


def _shape(v: Any) -> Any:
    if isinstance(v, list):
        return [_shape(x) for x in v]
    return tuple(getattr(v, "shape", np.shape(v)))
