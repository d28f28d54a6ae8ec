"""Shape rules of ops: the per-trial shape of an op's output from its arguments' shapes, without running it.

A rule receives the op's arguments by name: tensor arguments (and constant arrays passed where a tensor goes)
as `Shape` tuples, lists of tensors as lists of `Shape`, attributes as their values. Elementwise ops without a
rule broadcast their tensor arguments' shapes (numpy's rule).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence, Tuple

import numpy as np


class Shape(tuple):
    """The per-trial shape of a tensor argument (a tuple of ints)."""


Args = Mapping[str, Any]


def shapes_in(args: Args) -> list:
    """Every Shape among the arguments (lists included), in order."""
    out: list = []
    for v in args.values():
        if isinstance(v, Shape):
            out.append(v)
        elif isinstance(v, list):
            out.extend(x for x in v if isinstance(x, Shape))
    return out


def broadcast(args: Args) -> Tuple[int, ...]:
    """numpy broadcasting of every tensor argument's shape."""
    shapes = shapes_in(args)
    if not shapes:
        return ()
    widest = max(shapes, key=len)
    if all(s == widest or not s for s in shapes):  # the common case (equal shapes, scalars): no numpy call
        return tuple(widest)
    return tuple(np.broadcast_shapes(*shapes))


def matmul(a: Sequence[int], b: Sequence[int]) -> Tuple[int, ...]:
    """numpy.matmul's output shape."""
    a, b = tuple(a), tuple(b)
    if not a or not b:
        raise ValueError("matmul of a scalar")
    a2, b2 = (a if len(a) > 1 else (1,) + a), (b if len(b) > 1 else b + (1,))
    if a2[-1] != b2[-2]:
        raise ValueError(f"matmul of shapes {a} and {b}")
    out = tuple(np.broadcast_shapes(a2[:-2], b2[:-2])) + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def dot(a: Sequence[int], b: Sequence[int]) -> Tuple[int, ...]:
    """numpy.dot's output shape."""
    a, b = tuple(a), tuple(b)
    if not a or not b:
        return tuple(np.broadcast_shapes(a, b))
    if len(b) == 1:
        return a[:-1]
    return a[:-1] + b[:-2] + b[-1:]


def reduce(args: Args) -> Tuple[int, ...]:
    """numpy reductions with `axis` (None: every axis) and `keepdims`."""
    x, axis, keep = args["X"], args.get("axis"), bool(args.get("keepdims"))
    n = len(x)
    axes = (set(range(n)) if axis is None
            else {int(a) % n for a in (axis if isinstance(axis, (list, tuple)) else [axis])})
    return tuple(1 if i in axes else d for i, d in enumerate(x) if keep or i not in axes)


def view(x: Sequence[int]) -> np.ndarray:
    """A zero-strided array of shape x (no memory): numpy's own indexing rules then give result shapes."""
    return np.broadcast_to(np.zeros(()), tuple(x))
