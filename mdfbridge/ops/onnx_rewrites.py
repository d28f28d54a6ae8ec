"""Exact rewrites of a `Program` that the ONNX export applies before translating it, so that common forms export
as fewer ONNX nodes with the numpy reference's numbers.

- PsyNeuLink's input-port combination of several afferents, `AsArray([a, b, ...])` -> `ReduceSum(axis 0,
  keepdims)` -> `Getitem(0)` (or a ReduceSum without keepdims), is `a + b + ...`: Add ops summing in the order
  numpy's reduction does for fewer than 8 items (one after the other; numpy sums 8 or more in blocks, so those
  stay a ReduceSum), instead of Unsqueeze, Concat, ReduceSum and Gather.

The Program given is not changed; a rewritten one is a copy. Like the export functions in to_onnx.py, nothing
here imports onnx.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, List, Optional, Set

import numpy as np

from ..program import Op, Program, TensorRef

log = logging.getLogger(__name__)

MAX_SEQUENTIAL_SUM = 7  # numpy sums up to 7 values along an axis one after the other (pairwise blocks from 8)


def tensor_readers(program: Program) -> Dict[str, int]:
    """How many ops of `program` read each tensor (an argument, or an item of a list argument), plus one for each
    output naming it."""
    counts: Dict[str, int] = {}
    for op in program.ops:
        for v in op.args.values():
            for ref in (v if isinstance(v, list) else [v]):
                if isinstance(ref, TensorRef):
                    counts[ref.name] = counts.get(ref.name, 0) + 1
    for t in program.outputs.values():
        counts[t] = counts.get(t, 0) + 1
    return counts


def _is_axis0(value: Any) -> bool:
    """A static axis argument that is exactly axis 0 (0 or [0])."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 1 and _is_axis0(value[0])
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) == 0


def _is_index0(value: Any) -> bool:
    """A Getitem index that is exactly 0 (or (0,))."""
    if isinstance(value, tuple):
        return len(value) == 1 and _is_index0(value[0])
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) == 0


def _stacked_sum(program: Program, op: Op, producers: Dict[str, Op], readers: Dict[str, int]
                 ) -> Optional[List[Op]]:
    """For a ReduceSum `op` over axis 0 of an AsArray of 2 to 7 items that nothing else reads: the ops it and
    the AsArray stand for ([AsArray, ReduceSum] or, with keepdims, [AsArray, ReduceSum, Getitem(0)]), else None."""
    src = op.args.get("X")
    if op.fn != "ReduceSum" or not isinstance(src, TensorRef) or not _is_axis0(op.args.get("axis")):
        return None
    stack = producers.get(src.name)
    if stack is None or stack.fn != "AsArray" or not _is_axis0(stack.args.get("axis", 0)):
        return None
    items = stack.args.get("X")
    if not isinstance(items, list) or not 2 <= len(items) <= MAX_SEQUENTIAL_SUM or readers.get(src.name) != 1:
        return None
    if not op.args.get("keepdims", False):
        return [stack, op]
    pick = [o for o in program.ops if o.fn == "Getitem" and isinstance(o.args.get("X"), TensorRef)
            and o.args["X"].name == op.out]
    if readers.get(op.out) != 1 or len(pick) != 1 or not _is_index0(pick[0].args.get("index")):
        return None
    return [stack, op, pick[0]]


def stacked_sums_as_adds(program: Program) -> Program:
    """`program` with each stacked sum (see the module docstring) written as Add ops (a copy; `program` itself
    when it has none). The sum keeps its tensor name and node; partial sums are `<name>~sum<k>`."""
    producers = {op.out: op for op in program.ops}
    readers = tensor_readers(program)
    drop: Set[int] = set()
    replace: Dict[int, List[Op]] = {}
    shapes = dict(program.shapes)
    taken = set(producers) | set(program.params) | {f"{s.node}.{s.port}" for s in program.inputs.values()}
    for op in program.ops:
        found = _stacked_sum(program, op, producers, readers)
        if found is None or any(id(o) in drop for o in found):
            continue
        final = found[-1]
        items = list(found[0].args["X"])
        adds: List[Op] = []
        total: Any = items[0]
        for k, item in enumerate(items[1:], start=1):
            out = final.out
            if k < len(items) - 1:
                out = f"{final.out}~sum{k}"
                while out in taken:
                    out += "_"
                taken.add(out)
                if final.out in shapes:
                    shapes[out] = shapes[final.out]
            adds.append(Op(out, {"A": total, "B": item}, final.node, fn="Add"))
            total = TensorRef(out)
        drop.update(id(o) for o in found)
        replace[id(final)] = adds
        log.debug("ONNX export: the sum of %d stacked values '%s' (node '%s') as Add ops", len(items), final.out,
                  final.node)
    if not replace:
        return program
    ops: List[Op] = []
    for op in program.ops:
        if id(op) in replace:
            ops.extend(replace[id(op)])
        elif id(op) not in drop:
            ops.append(op)
    for o in program.ops:
        if id(o) in drop and id(o) not in replace:
            shapes.pop(o.out, None)
    return dataclasses.replace(program, ops=ops, shapes=shapes)


def rewrite_for_onnx(program: Program) -> Program:
    """Every rewrite of this module applied to `program` (a copy when any applies)."""
    return stacked_sums_as_adds(program)
