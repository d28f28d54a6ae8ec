"""Indexing and broadcasting ops of neural-network graphs, with ONNX's semantics: Gather (`numpy.take`; an
embedding lookup when the data is a weight table and the indices are token ids), GatherElements
(`numpy.take_along_axis`, torch.gather), Slice (ONNX's starts/ends/axes/steps, negative and clamped), Expand
(numpy broadcasting to a shape) and Einsum (`numpy.einsum`, one or two operands). Their ONNX imports (Gather,
GatherElements, Slice, Split as one Slice per output, Tile, Expand, Einsum) and exports live here too.

Axes are per-trial axes (the importer rewrites ONNX's, refusing the batch axis); indices are read as integers
(mdfbridge values are floats, so a document's token ids are float64 numbers: they must be whole numbers in
range, or DataError names the op).
"""
from __future__ import annotations

import dataclasses
import string
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import shape_rules as sr
from . import torchlib
from .base import Alias, OnnxImport, OpDef, check_size, never, register, shift_axis, torch_module

if TYPE_CHECKING:
    from ..exporters.onnx_graph import OnnxGraphBuilder, Operand, Val
    from ..importers.onnx_node import Emitted, NodeImport
    from ..program import Op

_HUGE = 2 ** 62  # a Slice bound at least this large (ONNX writes INT64_MAX for "to the end") means "all"


def _data_error(message: str) -> Exception:
    from ..errors import DataError

    return DataError(message)


def _np_indices(indices: Any, dim: int, what: str) -> np.ndarray:
    """Integer indices (floats must be whole numbers) in [-dim, dim), negative ones counted from the end."""
    a = np.asarray(indices)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            raise _data_error(f"{what}: indices must be whole numbers")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iub":
        raise _data_error(f"{what}: indices must be integers, got {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < -dim or a.max() >= dim):
        raise _data_error(f"{what}: index {int(a.min() if a.min() < -dim else a.max())} is out of range for an axis "
                          f"of size {dim}")
    return np.where(a < 0, a + dim, a)


def _t_indices(indices: Any, dim: int, what: str, device: Any) -> Any:
    """The torch form of `_np_indices` (an int64 tensor on `device`)."""
    torch = torch_module()
    t = indices if isinstance(indices, torch.Tensor) else torch.as_tensor(np.asarray(indices))
    t = t.detach()
    if t.is_floating_point():
        if not bool(torch.all(t == torch.round(t))):
            raise _data_error(f"{what}: indices must be whole numbers")
    t = t.to(torch.int64).to(device)
    if t.numel() and (int(t.min()) < -dim or int(t.max()) >= dim):
        raise _data_error(f"{what}: index out of range for an axis of size {dim}")
    return torch.where(t < 0, t + dim, t)


def _axis(axis: Any, rank: int, what: str) -> int:
    a = int(axis)
    if not -rank <= a < max(rank, 1):
        raise _data_error(f"{what}: axis {axis} is out of range for rank {rank}")
    return a % max(rank, 1)


# --------------------------------------------------------------------------- Gather

def gather_shape(data: Sequence[int], indices: Sequence[int], axis: Any) -> Tuple[int, ...]:
    """Gather's output shape: data's shape with axis `axis` replaced by the indices' shape."""
    a = _axis(axis, len(data), "Gather")
    return tuple(data[:a]) + tuple(indices) + tuple(data[a + 1:])


def gather_numpy(data: Any, indices: Any, axis: int = 0) -> Any:
    """ONNX Gather / numpy.take(data, indices, axis) (negative indices count from the end)."""
    x = np.asarray(data)
    a = _axis(axis, x.ndim, "Gather")
    idx = _np_indices(indices, x.shape[a], "Gather")
    check_size(gather_shape(x.shape, idx.shape, a), what="Gather output")
    return np.take(x, idx, axis=a)


def gather_torch(data: Any, indices: Any, axis: int = 0) -> Any:
    """Gather in torch: index_select along `axis` (differentiable in data, as an embedding lookup is)."""
    x = torchlib.tt(data)
    a = _axis(axis, x.ndim, "Gather")
    idx = _t_indices(indices, x.shape[a], "Gather", x.device)
    out_shape = gather_shape(tuple(x.shape), tuple(idx.shape), a)
    check_size(out_shape, what="Gather output")
    return torch_module().index_select(x, a, idx.reshape(-1)).reshape(out_shape)


def _gather_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Batched data: the axis moves past the batch axis; batched indices into unbatched data along axis 0 (an
    embedding lookup): the batch axis comes first as it is; anything else trial by trial."""
    if batched_args == {"data"}:
        return shift_axis(batched_args, {**attrs, "axis": attrs.get("axis", 0)})
    if batched_args == {"indices"} and int(attrs.get("axis", 0)) == 0:
        return attrs
    return None


def _export_indices(b: OnnxGraphBuilder, v: Operand) -> Val:
    """Indices as an int64 tensor (a constant converted, a float tensor cast)."""
    from ..exporters.onnx_graph import Const

    if isinstance(v, Const):
        return b.const(np.asarray(v.value).astype(np.int64), "int64")
    return b.tensor(v, "int64")


def _gather_operands(b: OnnxGraphBuilder, op: Op, name: str) -> Tuple[Val, Val, int]:
    """(data, int64 indices, the axis) of a Gather-like op being exported as ONNX `name`."""
    data = b.required_arg(op, "data", keep_kind=True)
    raw = b.arg(op, "indices")
    if raw is None:
        raise b.unsupported(f"{name} without indices")
    return data, _export_indices(b, raw), _axis(b.static_arg(op, "axis", 0), data.rank, name)


def export_gather(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Gather node (indices cast to int64)."""
    data, idx, a = _gather_operands(b, op, "Gather")
    if data.batched and idx.batched:
        raise b.unsupported("Gather of per-trial data with per-trial indices")
    if idx.batched and a != 0:
        raise b.unsupported(f"Gather of per-trial indices along axis {a} of a constant")
    onnx_axis = data.onnx_axis(a) if data.rank else 0
    return b.emit("Gather", [data, idx], shape=gather_shape(data.shape, idx.shape, a),
                  batched=data.batched or idx.batched, kind=data.kind, axis=onnx_axis)


def import_gather(n: NodeImport) -> Emitted:
    """Gather: per-trial data with constant indices (any axis but the batch axis), or a constant table indexed
    along axis 0 by per-trial indices (an embedding: the table is learnable)."""
    data, idx = n.input(0), n.input(1)
    if data is None or idx is None or "shape" in (data.kind, idx.kind):
        raise n.fail("data and indices must be tensors (not derived from tensor shapes)")
    axis = int(n.attr("axis", 0))
    learn: List[str] = []
    if data.kind == "dynamic" and idx.kind == "dynamic":
        if n.batch_axis:
            raise n.fail("data and indices are both computed from the graph inputs: the output pairs every "
                         "trial's data with every trial's indices (import with batch_axis=False)")
        a = n.axis(axis, data)
    elif data.kind == "dynamic":
        a = n.axis(axis, data)
    else:
        assert data.value is not None
        a = n.axis(axis, data)
        if n.batch_axis and a != 0:
            raise n.fail(f"per-trial indices into a constant along axis {axis}: the output's batch axis would not "
                         "come first (only axis 0, an embedding lookup, keeps it)")
        if np.asarray(data.value).dtype.kind == "f":
            learn = ["data"]
    return n.call("onnx::Gather", {"data": data, "indices": idx, "axis": a}, learn)


register(OpDef("Gather", ("data", "indices"), gather_numpy, gather_torch, defaults={"axis": 0}, attrs=("axis",),
               batch_rule=_gather_batched,
               description="ONNX Gather / numpy.take(data, indices, axis): an embedding lookup for a weight table "
                           "and token ids (negative indices count from the end)",
               shape=lambda a: gather_shape(a["data"], a["indices"], a.get("axis", 0)),
               aliases=(Alias("onnx::Gather"),), onnx_export=export_gather,
               onnx_import=(OnnxImport("Gather", 1, None, import_gather),)))


# --------------------------------------------------------------------------- GatherElements

def _elements_shape(data: Sequence[int], indices: Sequence[int], axis: Any) -> Tuple[int, ...]:
    if len(data) != len(indices):
        raise ValueError(f"GatherElements: indices of rank {len(indices)} for data of rank {len(data)}")
    a = _axis(axis, len(data), "GatherElements")
    if any(i > d for k, (i, d) in enumerate(zip(indices, data)) if k != a):
        raise ValueError(f"GatherElements: indices of shape {tuple(indices)} exceed data of shape {tuple(data)}")
    return tuple(indices)


def gather_elements_numpy(data: Any, indices: Any, axis: int = 0) -> Any:
    """ONNX GatherElements / torch.gather: out[i][j] = data[indices[i][j]][j] along `axis` (indices no larger
    than data on the other axes)."""
    x = np.asarray(data)
    a = _axis(axis, x.ndim, "GatherElements")
    idx = _np_indices(indices, x.shape[a], "GatherElements")
    _elements_shape(x.shape, idx.shape, a)
    x = x[tuple(slice(None) if k == a else slice(0, d) for k, d in enumerate(idx.shape))]
    return np.take_along_axis(x, idx, axis=a)


def gather_elements_torch(data: Any, indices: Any, axis: int = 0) -> Any:
    """torch.gather (differentiable in data)."""
    x = torchlib.tt(data)
    a = _axis(axis, x.ndim, "GatherElements")
    idx = _t_indices(indices, x.shape[a], "GatherElements", x.device)
    _elements_shape(tuple(x.shape), tuple(idx.shape), a)
    return torch_module().gather(x, a, idx)


def _elements_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Both data and indices batched: the axis moves past the batch axis; else trial by trial."""
    if batched_args == {"data", "indices"}:
        return shift_axis(batched_args, {**attrs, "axis": attrs.get("axis", 0)})
    return None


def export_gather_elements(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One GatherElements node (an unbatched operand repeated over the batch when the other is batched)."""
    data, idx, a = _gather_operands(b, op, "GatherElements")
    if data.batched != idx.batched:
        data, idx = b.expand_to_batch(data), b.expand_to_batch(idx)
    return b.emit("GatherElements", [data, idx], shape=_elements_shape(data.shape, idx.shape, a),
                  batched=data.batched, kind=data.kind, axis=data.onnx_axis(a))


def import_gather_elements(n: NodeImport) -> Emitted:
    """GatherElements: with batch_axis=True both data and indices must be computed from the graph inputs (the
    output has the indices' shape, batch axis included)."""
    data, idx = n.input(0), n.input(1)
    if data is None or idx is None or "shape" in (data.kind, idx.kind):
        raise n.fail("data and indices must be tensors (not derived from tensor shapes)")
    if n.batch_axis and (data.kind != "dynamic" or idx.kind != "dynamic"):
        raise n.fail("with batch_axis=True both data and indices must be computed from the graph inputs (a "
                     "constant has no batch axis to pair trials with)")
    a = n.axis(int(n.attr("axis", 0)), data)
    learn = ["data"] if data.kind == "const" and np.asarray(data.value).dtype.kind == "f" else []
    return n.call("onnx::GatherElements", {"data": data, "indices": idx, "axis": a}, learn)


register(OpDef("GatherElements", ("data", "indices"), gather_elements_numpy, gather_elements_torch,
               defaults={"axis": 0}, attrs=("axis",), batch_rule=_elements_batched,
               description="ONNX GatherElements / torch.gather(data, axis, indices)",
               shape=lambda a: _elements_shape(a["data"], a["indices"], a.get("axis", 0)),
               aliases=(Alias("onnx::GatherElements"),), onnx_export=export_gather_elements,
               onnx_import=(OnnxImport("GatherElements", 11, None, import_gather_elements),)))


# --------------------------------------------------------------------------- Slice

def slice_ranges(shape: Sequence[int], starts: Sequence[int], ends: Sequence[int], axes: Optional[Sequence[int]],
                 steps: Optional[Sequence[int]]) -> List[Tuple[int, int, int, int]]:
    """ONNX Slice's (axis, start, end, step) per sliced axis, bounds clamped as ONNX clamps them (end -1 with a
    negative step: through index 0)."""
    r = len(shape)
    starts, ends = [int(s) for s in starts], [int(e) for e in ends]
    if len(starts) != len(ends):
        raise ValueError(f"Slice: {len(starts)} starts and {len(ends)} ends")
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    if len(axes) != len(starts) or len(steps) != len(starts):
        raise ValueError(f"Slice: {len(starts)} starts, {len(axes)} axes and {len(steps)} steps")
    out = []
    seen = set()
    for s, e, a, st in zip(starts, ends, axes, steps):
        if not -r <= a < r:
            raise ValueError(f"Slice: axis {a} is out of range for rank {r}")
        a %= r
        if a in seen:
            raise ValueError(f"Slice: axis {a} is sliced twice")
        seen.add(a)
        if st == 0:
            raise ValueError("Slice: a step of 0")
        d = int(shape[a])
        s = s + d if s < 0 else s
        e = e + d if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), d), min(max(e, 0), d)
        else:
            s, e = min(max(s, 0), d - 1), min(max(e, -1), d - 1)
        out.append((a, s, e, st))
    return out


def _slice_index(shape: Sequence[int], **kw: Any) -> Tuple[Any, ...]:
    idx: List[Any] = [slice(None)] * len(shape)
    for a, s, e, st in slice_ranges(shape, kw["starts"], kw["ends"], kw.get("axes"), kw.get("steps")):
        idx[a] = slice(s, None if e < 0 else e, st)
    return tuple(idx)


def slice_numpy(data: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    """ONNX Slice (opset 10 on): data[starts:ends:steps] along `axes` (default the first len(starts) axes)."""
    x = np.asarray(data)
    return x[_slice_index(x.shape, starts=starts, ends=ends, axes=axes, steps=steps)]


def slice_torch(data: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    """ONNX Slice in torch (negative steps by index_select, which torch's slicing lacks)."""
    torch = torch_module()
    x = torchlib.tt(data)
    for a, s, e, st in slice_ranges(tuple(x.shape), starts, ends, axes, steps):
        if st > 0:
            x = x.narrow(a, s, 0) if e <= s else x[(slice(None),) * a + (slice(s, e, st),)]
        else:
            idx = torch.arange(s, e, st, device=x.device)
            x = torch.index_select(x, a, idx)
    return x


def _slice_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    return tuple(sr.view(a["data"])[_slice_index(a["data"], **a)].shape)


def export_slice(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Slice node (ONNX's own semantics; the per-trial axes become ONNX axes)."""
    x = b.required_arg(op, "data", keep_kind=True)
    kw = {k: b.static_arg(op, k) for k in ("starts", "ends", "axes", "steps")}
    ranges = slice_ranges(x.shape, kw["starts"], kw["ends"], kw["axes"], kw["steps"])
    if not ranges:
        return x
    shape = sr.view(x.shape)[_slice_index(x.shape, **kw)].shape
    return b.emit("Slice", [x, b.int64s([r[1] for r in ranges], "starts"),
                            b.int64s([r[2] if r[2] >= 0 else -_HUGE for r in ranges], "ends"),
                            b.int64s([x.onnx_axis(r[0]) for r in ranges], "axes"),
                            b.int64s([r[3] for r in ranges], "steps")],
                  shape=shape, batched=x.batched, kind=x.kind)


def _whole(start: int, end: int, step: int) -> bool:
    """Does a slice keep an axis of any size as it is?"""
    return step == 1 and (start == 0 or start <= -_HUGE) and end >= _HUGE


def import_slice(n: NodeImport) -> Emitted:
    """Slice (attributes before opset 10, constant inputs from then on) in the per-trial frame: a slice of the
    batch axis that keeps it whole is dropped, any other is refused."""
    x = n.dynamic(0, "data")
    given: List[Any]
    if n.opset < 10:
        given = [n.attr("starts"), n.attr("ends"), n.attr("axes"), None]
    else:
        given = [n.const(i, w) for i, w in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps"))]
    if given[0] is None or given[1] is None:
        raise n.fail("starts and ends are required")
    starts, ends = ([int(v) for v in np.asarray(g).reshape(-1)] for g in given[:2])
    r = n.full_rank(x)
    axes = list(range(len(starts))) if given[2] is None else [int(a) for a in np.asarray(given[2]).reshape(-1)]
    steps = [1] * len(starts) if given[3] is None else [int(s) for s in np.asarray(given[3]).reshape(-1)]
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise n.fail(f"{len(starts)} starts, {len(ends)} ends, {len(axes)} axes and {len(steps)} steps")
    kept: Dict[str, List[int]] = {"starts": [], "ends": [], "axes": [], "steps": []}
    for s, e, a, st in zip(starts, ends, axes, steps):
        full = a + r if a < 0 else a
        if n.batch_axis and full == 0:
            if not _whole(s, e, st):
                raise n.fail(f"slices the batch axis (axis 0: starts {s}, ends {e}, step {st}), which would drop or "
                             "reorder trials; import with batch_axis=False to treat each ONNX tensor as one trial")
            continue
        if st == 0:
            raise n.fail("a step of 0")
        for k, v in (("starts", s), ("ends", e), ("axes", n.axis(a, x)), ("steps", st)):
            kept[k].append(v)
    if not kept["axes"]:
        from .from_onnx import identity

        return identity(n, x)
    return n.call("onnx::Slice", {"data": x, **kept})


def import_split(n: NodeImport) -> Emitted:
    """Split (attribute `split` before opset 13, input `split` from 13, `num_outputs` from 18) as one Slice per
    used output along the per-trial axis, the pieces' sizes those the probe runs found."""
    x = n.dynamic(0, "input")
    a = n.axis(int(n.attr("axis", 0)), x)
    calls: List[Tuple[int, Emitted]] = []
    offset = 0
    for i, shape in enumerate(n.out_shapes):
        if shape is None:
            raise n.fail(n.batch_problem or f"the shape of output {i} is unknown")
        size = int(shape[a])
        if i < len(n.used_outputs) and n.used_outputs[i]:
            calls.append((i, n.call("onnx::Slice", {"data": x, "starts": [offset], "ends": [offset + size],
                                                    "axes": [a], "steps": [1]})))
        offset += size
    if not calls:
        raise n.fail("no output is used")
    first = next((c for i, c in calls if i == 0), None)
    extra = tuple((i, c) for i, c in calls if i != 0)
    if first is None:  # output 0 unused: its slice still computes (the node's first function)
        first = n.call("onnx::Slice", {"data": x, "starts": [0], "ends": [int(n.out_shapes[0][a])],  # type: ignore
                                       "axes": [a], "steps": [1]})
    return dataclasses.replace(first, extra=extra)


register(OpDef("Slice", ("data",), slice_numpy, slice_torch, defaults={"axes": None, "steps": None},
               attrs=("starts", "ends", "axes", "steps"),
               batch_rule=lambda batched, attrs: (shift_axis(batched, attrs, "axes")
                                                  if attrs.get("axes") is not None else None),
               description="ONNX Slice: data[starts:ends:steps] along axes (bounds clamped; negative ones count "
                           "from the end)",
               shape=_slice_shape, aliases=(Alias("onnx::Slice"),), onnx_export=export_slice,
               onnx_import=(OnnxImport("Slice", 1, None, import_slice, constant_inputs=(1, 2, 3, 4)),
                            OnnxImport("Split", 2, None, import_split, constant_inputs=(1,)))))


# --------------------------------------------------------------------------- Expand, and Tile's import

def _expand_target(x: Sequence[int], shape: Any) -> Tuple[int, ...]:
    return tuple(np.broadcast_shapes(tuple(x), torchlib.shape_tuple(shape)))


def expand_numpy(X: Any, shape: Any) -> Any:
    """ONNX Expand: X broadcast (numpy's rule) with `shape` (a copy)."""
    x = np.asarray(X)
    target = _expand_target(x.shape, shape)
    check_size(target, what="Expand output")
    return np.array(np.broadcast_to(x, target))


def expand_torch(X: Any, shape: Any) -> Any:
    """torch.broadcast_to (differentiable: gradients sum over the broadcast axes)."""
    x = torchlib.tt(X)
    target = _expand_target(tuple(x.shape), shape)
    check_size(target, what="Expand output")
    return torch_module().broadcast_to(x, target)


def export_expand(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Expand node (X given leading axes of size 1 first when the shape is longer)."""
    x = b.required_arg(op, "X", keep_kind=True)
    target = _expand_target(x.shape, b.static_arg(op, "shape"))
    if len(target) > x.rank:
        x = b.reshape(x, [1] * (len(target) - x.rank) + list(x.shape))
    return b.emit("Expand", [x, b.int64s(([1] if x.batched else []) + list(target), "shape")], shape=target,
                  batched=x.batched, kind=x.kind)


def import_expand(n: NodeImport) -> Emitted:
    """Expand to the per-trial shape the probe runs found (the shape input may be computed from shapes)."""
    x = n.dynamic(0, "input")
    shape = n.out_shapes[0]
    if shape is None:
        raise n.fail(n.batch_problem or "output shape unknown")
    if tuple(shape) == tuple(x.shape):
        from .from_onnx import identity

        return identity(n, x)
    return n.call("onnx::Expand", {"input": x, "shape": [int(d) for d in shape]})


def import_tile(n: NodeImport) -> Emitted:
    """Tile: the per-trial repeats are the output's sizes over the input's (the batch axis must repeat once, which
    the probe runs check)."""
    x = n.dynamic(0, "input")
    shape = n.out_shapes[0]
    if shape is None:
        raise n.fail(n.batch_problem or "output shape unknown")
    if len(shape) != x.rank or any(d == 0 for d in x.shape):
        raise n.fail(f"cannot tell the repeats of input shape {x.shape} and output shape {tuple(shape)}")
    reps = [int(o) // int(i) for o, i in zip(shape, x.shape)]
    return n.call("Tile", {"X": x, "reps": reps})


register(OpDef("Expand", ("X",), expand_numpy, expand_torch, attrs=("shape",), batch_rule=never,
               description="ONNX Expand / numpy.broadcast_to(X, broadcast_shapes(X.shape, shape))",
               shape=lambda a: _expand_target(a["X"], a["shape"]), aliases=(Alias("onnx::Expand", {"input": "X"}),),
               onnx_export=export_expand,
               onnx_import=(OnnxImport("Expand", 8, None, import_expand, constant_inputs=(1,)),)))


# --------------------------------------------------------------------------- Einsum

def _letters(t: str) -> bool:
    return all(c in string.ascii_letters for c in t)


def _parse_equation(equation: str, operands: int) -> Tuple[List[str], str]:
    """(input terms, output term) of an explicit einsum equation over letters (no ellipsis: the ONNX import
    writes equations through `explicit_equation`)."""
    eq = str(equation).replace(" ", "")
    if eq.count("->") != 1 or "." in eq:
        raise ValueError(f"Einsum equation {equation!r}: the op takes explicit ('->') equations without '...'")
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != operands or not all(_letters(t) for t in terms + [out]):
        raise ValueError(f"Einsum equation {equation!r} for {operands} operand(s)")
    return terms, out


def explicit_equation(equation: str, ranks: Sequence[int]) -> str:
    """An einsum equation as ONNX (and numpy) read it, written explicitly for operands of ranks `ranks`: each
    '...' becomes letters of its own (the broadcast axes, aligned from the right) and an implicit output is the
    '...' axes followed by the letters used once, in alphabetical order. ValueError when it does not fit."""
    eq = str(equation).replace(" ", "")
    lhs, out = eq.split("->", 1) if "->" in eq else (eq, None)
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"Einsum equation {equation!r} for {len(ranks)} operand(s)")
    if not all(_letters(t.replace("...", "", 1)) for t in terms + ([out] if out is not None else [])):
        raise ValueError(f"Einsum equation {equation!r}: terms are letters and at most one '...' each")
    widths = [r - len(t.replace("...", "")) for t, r in zip(terms, ranks)]
    ell_rank = max([w for t, w in zip(terms, widths) if "..." in t], default=0)
    spare = [c for c in string.ascii_letters if c not in eq]
    if ell_rank > len(spare):
        raise ValueError(f"Einsum equation {equation!r}: too many axes")
    ell = "".join(spare[:ell_rank])
    written = []
    for t, r, w in zip(terms, ranks, widths):
        if "..." in t:
            if w < 0:
                raise ValueError(f"Einsum term {t!r} for an operand of rank {r}")
            t = t.replace("...", ell[ell_rank - w:])
        if len(t) != r:
            raise ValueError(f"Einsum term {t!r} for an operand of rank {r}")
        written.append(t)
    if out is None:
        labels = "".join(terms).replace("...", "")
        out = ell + "".join(sorted(c for c in set(labels) if labels.count(c) == 1))
    else:
        out = out.replace("...", ell)
    return ",".join(written) + "->" + out


def _einsum_shape(a: Mapping[str, Any]) -> Tuple[int, ...]:
    shapes = [a["A"]] + ([a["B"]] if a.get("B") is not None else [])
    terms, out = _parse_equation(a["equation"], len(shapes))
    sizes: Dict[str, int] = {}
    for t, s in zip(terms, shapes):
        if len(t) != len(s):
            raise ValueError(f"Einsum term {t!r} for a value of shape {tuple(s)}")
        for c, d in zip(t, s):
            if sizes.get(c, d) != d and 1 not in (d, sizes[c]):
                raise ValueError(f"Einsum: index {c!r} has sizes {sizes[c]} and {d}")
            sizes[c] = max(d, sizes.get(c, d))
    return tuple(sizes[c] for c in out)


def einsum_numpy(A: Any, B: Any = None, equation: str = "") -> Any:
    """numpy.einsum(equation, A[, B]) (explicit equations of one or two operands)."""
    ops = [np.asarray(A)] + ([] if B is None else [np.asarray(B)])
    _parse_equation(equation, len(ops))
    check_size(_einsum_shape({"A": ops[0].shape, "B": ops[1].shape if B is not None else None,
                              "equation": equation}), what="Einsum output")
    return np.einsum(equation, *ops)


def einsum_torch(A: Any, B: Any = None, equation: str = "") -> Any:
    """torch.einsum."""
    ops = [A] if B is None else list(torchlib.tt_like(A, B))
    _parse_equation(equation, len(ops))
    return torch_module().einsum(equation, *[torchlib.tt(o) for o in ops])


def _fresh_letter(equation: str) -> str:
    return next(c for c in string.ascii_letters if c not in equation)


def batched_equation(equation: str, batched: Sequence[bool]) -> str:
    """The equation with a new leading index on the batched operands and the output (when any is batched)."""
    terms, out = _parse_equation(equation, len(batched))
    z = _fresh_letter(equation)
    terms = [z + t if bt else t for t, bt in zip(terms, batched)]
    return ",".join(terms) + "->" + (z if any(batched) else "") + out


def _einsum_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    eq = attrs.get("equation", "")
    two = "," in str(eq)
    return {**attrs, "equation": batched_equation(eq, ["A" in batched_args] + (["B" in batched_args] if two else []))}


def export_einsum(b: OnnxGraphBuilder, op: Op) -> Operand:
    """One Einsum node (the batch axis a new leading index of the batched operands and the output)."""
    eq = str(b.static_arg(op, "equation", ""))
    ops = [b.required_arg(op, "A")] + ([b.required_arg(op, "B")] if op.args.get("B") is not None else [])
    shape = _einsum_shape({"A": ops[0].shape, "B": ops[1].shape if len(ops) > 1 else None, "equation": eq})
    return b.emit("Einsum", ops, shape=shape, batched=any(v.batched for v in ops),
                  equation=batched_equation(eq, [v.batched for v in ops]))


def import_einsum(n: NodeImport) -> Emitted:
    """Einsum of one or two operands (the equation written explicitly: `explicit_equation`); with
    batch_axis=True every operand computed from the graph inputs must lead with one index, which leads the output
    and appears nowhere else (a batched matmul's 'bij,bjk->bik'): the per-trial equation drops it."""
    ins = [n.input(i) for i in range(len(n.node.input))]
    if not 1 <= len(ins) <= 2 or any(t is None or t.kind == "shape" for t in ins):
        raise n.fail("only one or two tensor operands are supported")
    written = str(n.attr("equation", ""))
    try:
        equation = explicit_equation(written, [n.full_rank(t) for t in ins if t is not None])
        terms, out = _parse_equation(equation, len(ins))
    except ValueError as exc:
        raise n.fail(str(exc)) from None
    if n.batch_axis:
        lead = {t[0] for t, v in zip(terms, ins) if v is not None and v.kind == "dynamic" and t}
        if len(lead) != 1:
            raise n.fail(f"equation {written!r}: the operands computed from the graph inputs must share their "
                         "leading (batch) index")
        (z,) = lead
        dyn_terms = [t for t, v in zip(terms, ins) if v is not None and v.kind == "dynamic"]
        if not out.startswith(z) or any(z in t[1:] for t in dyn_terms) or z in out[1:] or any(
                z in t for t, v in zip(terms, ins) if v is not None and v.kind == "const"):
            raise n.fail(f"equation {written!r} mixes the batch index {z!r} with the other indices (it must lead "
                         "the batched operands and the output and appear nowhere else)")
        terms = [t[1:] if v is not None and v.kind == "dynamic" else t for t, v in zip(terms, ins)]
        out = out[1:]
    args: Dict[str, Any] = {"A": ins[0], "equation": ",".join(terms) + "->" + out}
    if len(ins) == 2:
        args["B"] = ins[1]
    learn = [k for k in ("A", "B") if k in args and getattr(args[k], "kind", "") == "const"]
    return n.call("onnx::Einsum", args, learn)


register(OpDef("Einsum", ("A", "B"), einsum_numpy, einsum_torch, defaults={"B": None}, attrs=("equation",),
               batch_rule=_einsum_batched,
               description="ONNX Einsum / numpy.einsum(equation, A[, B]) (explicit equations, no '...')",
               shape=_einsum_shape, aliases=(Alias("onnx::Einsum"),), onnx_export=export_einsum,
               onnx_import=(OnnxImport("Einsum", 12, None, import_einsum),)))
