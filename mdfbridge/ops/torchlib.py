"""Argument coercion for the torch implementations of expression ops: Python numbers, lists and numpy arrays
become tensors with numpy's dtype rules (float64 where numpy computes in float64), following the dtype and
device of the tensors they meet."""
from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Tuple

import numpy as np

from .base import torch_module


def has_tensor(x: Any) -> bool:
    """True when x (or an item of a list/tuple x, recursively) is a torch tensor."""
    torch = torch_module()
    return any(isinstance(v, torch.Tensor) or (isinstance(v, (list, tuple)) and has_tensor(v)) for v in x)


def tt(x: Any, like: Any = None) -> Any:
    """x as a tensor (floats -> float64, or the dtype/device of tensor `like`)."""
    torch = torch_module()
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (list, tuple)) and has_tensor(x):
        return torch.stack(tt_like(*x))
    a = np.asarray(x)
    if like is not None:
        if like.is_floating_point() or a.dtype.kind not in "fc":
            return torch.as_tensor(a, dtype=like.dtype, device=like.device)
        return torch.from_numpy(np.array(a)).to(like.device)
    return torch.from_numpy(np.array(a))


def tt_like(*xs: Any) -> Tuple[Any, ...]:
    """All args as tensors of one dtype: scalars follow the (first floating) tensor's dtype/device."""
    torch = torch_module()
    tensors = [x for x in xs if isinstance(x, torch.Tensor)]
    ref = next((t for t in tensors if t.is_floating_point()), tensors[0] if tensors else None)
    ts = tuple(x if isinstance(x, torch.Tensor) else tt(x, ref) for x in xs)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in ts)) if ts else None
    return tuple(t if t.dtype == dtype else t.to(dtype) for t in ts)


def _is_float(x: Any) -> bool:
    return isinstance(x, float) or (isinstance(x, torch_module().Tensor) and x.is_floating_point())


def arith(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A Python operator on tensors, keeping numpy's float64 where torch would pick float32 (int tensor with a
    float, or true division of integers)."""
    def f(A: Any, B: Any) -> Any:
        torch = torch_module()
        if isinstance(A, torch.Tensor) and not A.is_floating_point():
            if isinstance(B, float) or (op is operator.truediv and not _is_float(B)):
                A = A.to(torch.float64)
        elif isinstance(B, torch.Tensor) and not B.is_floating_point():
            if isinstance(A, float) or (op is operator.truediv and not _is_float(A)):
                B = B.to(torch.float64)
        return op(A, B)
    return f


def unary(name: str, floating: bool = True) -> Callable[[Any], Any]:
    """torch.<name> on x as a tensor; with `floating`, integer input computes in float64 as numpy does."""
    def f(X: Any) -> Any:
        torch = torch_module()
        x = tt(X)
        if floating and not x.is_floating_point():
            x = x.to(torch.float64)
        return getattr(torch, name)(x)
    f.__name__ = f"torch_{name}"
    return f


def binary(name: str) -> Callable[[Any, Any], Any]:
    """torch.<name> on two arguments coerced to one dtype."""
    def f(A: Any, B: Any) -> Any:
        return getattr(torch_module(), name)(*tt_like(A, B))
    f.__name__ = f"torch_{name}"
    return f


def shape_tuple(s: Any) -> Tuple[int, ...]:
    """A shape argument (int or sequence) as a tuple of ints."""
    return (int(s),) if np.ndim(s) == 0 else tuple(int(d) for d in s)
