"""Shape ops: ONNX's Transpose, Reshape, Concat, and the numpy array functions MDF expressions use (stack,
indexing, squeeze, expand_dims, tile, shape, len, array construction)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from . import from_onnx, to_onnx, to_onnx_expr, torchlib
from . import shape_rules as sr
from .base import Alias, OnnxImport, OpDef, check_size, keywords, never, register, shift_axis, torch_module
from .indexing import import_tile


def _target_shape(data: Any, shape: Any, allowzero: int) -> List[int]:
    """ONNX Reshape's target: a 0 copies the input's dimension unless `allowzero`."""
    dims = [int(s) for s in np.asarray(shape).reshape(-1)]
    return dims if allowzero else [data.shape[i] if s == 0 else s for i, s in enumerate(dims)]


def _reshape_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A per-trial reshape on a batch: keep the batch axis by prepending a 0 (copy) dimension."""
    if batched_args != {"data"} or attrs.get("allowzero"):
        return None
    return {**attrs, "shape": [0] + [int(s) for s in np.asarray(attrs["shape"]).reshape(-1)]}


def _t_transpose(data: Any, perm: Any = None) -> Any:
    x = torchlib.tt(data)
    return x.permute(*(reversed(range(x.ndim)) if perm is None else [int(a) for a in perm]))


def _t_concat(inputs: Any, axis: Any = 0) -> Any:
    ts = torchlib.tt_like(*inputs)
    if axis is None:
        return torch_module().cat([t.reshape(-1) for t in ts])
    return torch_module().cat(ts, dim=int(axis))


register(OpDef("Transpose", ("data", "perm"),
               lambda data, perm=None: np.transpose(data, None if perm is None else [int(a) for a in perm]),
               _t_transpose, defaults={"perm": None}, attrs=("perm",), batch_rule=never,
               description="ONNX Transpose / numpy.transpose(data, axes)",
               shape=lambda a: np.transpose(sr.view(a["data"]), a.get("perm")).shape,
               aliases=(Alias("onnx::Transpose"),),
               expr_names=("transpose",), onnx_export=to_onnx.transpose,
               onnx_import=(OnnxImport("Transpose", 1, None, from_onnx.transpose),)))


def _np_reshape(data: Any, shape: Any, allowzero: int = 0) -> Any:
    return np.reshape(data, _target_shape(np.asarray(data), shape, allowzero))


def _t_reshape(data: Any, shape: Any, allowzero: int = 0) -> Any:
    x = torchlib.tt(data)
    return x.reshape(_target_shape(x, shape, allowzero))


def _row(data: Any) -> Any:
    """A row (the commonest reshape: a bias node's weights), the executor's fast path (`specialise`)."""
    return data.reshape(-1)


register(OpDef("Reshape", ("data", "shape"), _np_reshape, _t_reshape,
               specialise=lambda static, tensors, lib: _row if tensors == ("data",) and not static.get("allowzero")
               and isinstance(static.get("shape"), list) and static["shape"] == [-1] else None,
               defaults={"allowzero": 0}, attrs=("shape", "allowzero"), batch_rule=_reshape_batched,
               description="ONNX Reshape (a 0 copies the input's dimension unless allowzero) / numpy.reshape",
               shape=lambda a: np.reshape(sr.view(a["data"]), _target_shape(sr.view(a["data"]), a["shape"],
                                                                           a.get("allowzero", 0))).shape,
               aliases=(Alias("onnx::Reshape"),), expr_names=("reshape",), onnx_export=to_onnx.reshape,
               onnx_import=(OnnxImport("Reshape", 5, None, from_onnx.reshape_to_output, constant_inputs=(1,)),
                            OnnxImport("Flatten", 1, None, from_onnx.reshape_to_output),
                            OnnxImport("Squeeze", 1, None, from_onnx.reshape_to_output, constant_inputs=(1,)),
                            OnnxImport("Unsqueeze", 1, None, from_onnx.reshape_to_output, constant_inputs=(1,)))))
register(OpDef("Concat", ("inputs", "axis"),
               lambda inputs, axis=0: np.concatenate(inputs, axis=None if axis is None else int(axis)), _t_concat,
               defaults={"axis": 0}, attrs=("axis",), batch_rule=never,
               description="ONNX Concat / numpy.concatenate (inputs is a list; axis None flattens)",
               shape=lambda a: _concat_shape(a["inputs"], a.get("axis", 0)),
               aliases=(Alias("onnx::Concat"),), expr_names=("concatenate",), onnx_export=to_onnx.concat))


def _concat_shape(inputs: Any, axis: Any) -> Any:
    if axis is None:
        return (sum(int(np.prod(s)) for s in inputs),)
    first = tuple(inputs[0])
    ax = int(axis) % len(first)
    return first[:ax] + (sum(s[ax] for s in inputs),) + first[ax + 1:]


def _stack_shape(items: Any, axis: Any) -> Any:
    item = tuple(np.broadcast_shapes(*[tuple(s) for s in items]))
    ax = int(axis) % (len(item) + 1)
    return item[:ax] + (len(items),) + item[ax:]


def _stack_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return shift_axis(batched_args, {**attrs, "axis": attrs.get("axis", 0)})


def _np_stack(inputs: Any, axis: int = 0) -> Any:
    return np.stack(np.broadcast_arrays(*inputs), axis=int(axis))


def _t_stack(inputs: Any, axis: int = 0) -> Any:
    torch = torch_module()
    return torch.stack(torch.broadcast_tensors(*torchlib.tt_like(*inputs)), dim=int(axis))


register(OpDef("Stack", ("inputs", "axis"), _np_stack, _t_stack, defaults={"axis": 0}, attrs=("axis",),
               batch_rule=_stack_batched, description="numpy.stack(inputs, axis) (inputs broadcast to one shape)",
               shape=lambda a: _stack_shape(a["inputs"], a.get("axis", 0)),
               expr_names=("stack",), onnx_export=to_onnx_expr.stack))


def _np_asarray(X: Any, axis: int = 0) -> Any:
    if isinstance(X, (list, tuple)) and any(isinstance(x, np.ndarray) and x.ndim for x in X):
        return np.stack(np.broadcast_arrays(*X), axis=int(axis))
    return np.asarray(X)


def _t_asarray(X: Any, axis: int = 0) -> Any:
    if isinstance(X, (list, tuple)) and torchlib.has_tensor(X):
        return _t_stack(X, axis)
    return torchlib.tt(X)


register(OpDef("AsArray", ("X",), _np_asarray, _t_asarray, defaults={"axis": 0}, attrs=("axis",),
               batch_rule=_stack_batched,
               description="numpy.asarray(X): a list of values becomes an array (stacked along `axis`, 0)",
               shape=lambda a: _stack_shape(a["X"], a.get("axis", 0)) if isinstance(a["X"], list) else a["X"],
               expr_names=("array", "asarray"), onnx_export=to_onnx_expr.as_array))


def _getitem_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    index = attrs["index"]
    return {**attrs, "index": (slice(None),) + (index if isinstance(index, tuple) else (index,))}


def _t_getitem(X: Any, index: Any) -> Any:
    """X[index] in torch, whose slices only step forward: an axis a negative-step slice reads is flipped, and read
    by the forward slice of the same elements (x[::-1], x[3:0:-2])."""
    x = torchlib.tt(X)
    items = index if isinstance(index, tuple) else (index,)
    if not any(isinstance(i, slice) and i.step is not None and i.step < 0 for i in items):
        return x[index]
    def width(i: Any) -> int:  # the axes of X an index item reads
        return 0 if i is None or i is Ellipsis else int(np.ndim(i)) if np.asarray(i).dtype == bool else 1
    axis, flips, forward = 0, [], []
    for i in items:
        if i is Ellipsis:
            axis += x.dim() - sum(width(j) for j in items)
        elif isinstance(i, slice) and i.step is not None and i.step < 0:
            n = x.shape[axis]
            r = range(n)[i]
            flips.append(axis)
            i = slice(n - 1 - r[0], n - r[-1], -i.step) if len(r) else slice(0, 0)
        forward.append(i)
        axis += width(i)
    return torch_module().flip(x, flips)[tuple(forward) if isinstance(index, tuple) else forward[0]]


register(OpDef("Getitem", ("X", "index"), lambda X, index: X[index], _t_getitem,
               attrs=("index",), batch_rule=_getitem_batched,
               description="X[index] (index: an int, a slice, or a tuple of them)",
               shape=lambda a: sr.view(a["X"])[a["index"]].shape, onnx_export=to_onnx_expr.getitem))


def _np_squeeze(X: Any, axis: Any = None) -> Any:
    return np.squeeze(X, axis=tuple(axis) if isinstance(axis, list) else axis)


def _t_squeeze(X: Any, axis: Any = None) -> Any:
    x = torchlib.tt(X)
    return torch_module().squeeze(x) if axis is None else torch_module().squeeze(x, dim=torchlib.shape_tuple(axis))


def _t_expand_dims(X: Any, axis: Any) -> Any:
    x = torchlib.tt(X)
    for a in sorted(torchlib.shape_tuple(axis)):
        x = torch_module().unsqueeze(x, a)
    return x


register(OpDef("Squeeze", ("X", "axis"), _np_squeeze, _t_squeeze, defaults={"axis": None}, attrs=("axis",),
               batch_rule=shift_axis, description="numpy.squeeze(X, axis)", expr_names=("squeeze",),
               shape=lambda a: _np_squeeze(sr.view(a["X"]), a.get("axis")).shape, onnx_export=to_onnx_expr.squeeze))
register(OpDef("Unsqueeze", ("X", "axis"),
               lambda X, axis: np.expand_dims(X, tuple(axis) if isinstance(axis, list) else axis), _t_expand_dims,
               attrs=("axis",), batch_rule=shift_axis, description="numpy.expand_dims(X, axis)",
               expr_names=("expand_dims",),
               shape=lambda a: np.expand_dims(sr.view(a["X"]), tuple(a["axis"]) if isinstance(a["axis"], list)
                                              else a["axis"]).shape, onnx_export=to_onnx_expr.unsqueeze))


def _np_tile(X: Any, reps: Any) -> Any:
    check_size(reps, np.size(X))
    return np.tile(X, reps)


def _tile_shape(x: Any, reps: Any) -> Any:
    r = torchlib.shape_tuple(reps)
    n = max(len(x), len(r))
    xs, rs = (1,) * (n - len(x)) + tuple(x), (1,) * (n - len(r)) + r
    return tuple(a * b for a, b in zip(xs, rs))


def _t_tile(X: Any, reps: Any) -> Any:
    x = torchlib.tt(X)
    check_size(reps, x.numel())
    return torch_module().tile(x, torchlib.shape_tuple(reps))


register(OpDef("Tile", ("X", "reps"), _np_tile, _t_tile, attrs=("reps",), batch_rule=never,
               description="numpy.tile(X, reps)", expr_names=("tile",), shape=lambda a: _tile_shape(a["X"], a["reps"]),
               onnx_export=to_onnx_expr.tile,
               onnx_import=(OnnxImport("Tile", 6, None, import_tile, constant_inputs=(1,)),)))
register(OpDef("Shape", ("X",), keywords(np.shape, ("X",)), lambda X: tuple(torchlib.tt(X).shape), batch_rule=never,
               description="the shape of X as a tuple", expr_names=("shape",), shape=lambda a: (len(a["X"]),),
               onnx_export=to_onnx_expr.shape_of))
register(OpDef("Len", ("X",), keywords(len, ("X",)), keywords(len, ("X",)), batch_rule=never,
               description="len(X): the length of X's first axis",
               expr_names=("len",), shape=lambda a: (), onnx_export=to_onnx_expr.length))


def _sized(fn: Any) -> Any:
    def f(shape: Any, **kw: Any) -> Any:
        check_size(shape)
        return fn(shape, **kw)
    return f


def _t_full(shape: Any, fill_value: Any) -> Any:
    check_size(shape)
    return torchlib.tt(fill_value).expand(torchlib.shape_tuple(shape)).clone()


def _t_sized(name: str) -> Any:
    def f(shape: Any) -> Any:
        check_size(shape)
        return getattr(torch_module(), name)(torchlib.shape_tuple(shape), dtype=torch_module().float64)
    return f


register(OpDef("Zeros", ("shape",), _sized(np.zeros), _t_sized("zeros"), attrs=("shape",),
               description="numpy.zeros(shape)", expr_names=("zeros",),
               shape=lambda a: torchlib.shape_tuple(a["shape"])))
register(OpDef("Ones", ("shape",), _sized(np.ones), _t_sized("ones"), attrs=("shape",),
               description="numpy.ones(shape)", expr_names=("ones",),
               shape=lambda a: torchlib.shape_tuple(a["shape"])))
register(OpDef("Full", ("shape", "fill_value"), _sized(np.full), _t_full, attrs=("shape",),
               description="numpy.full(shape, fill_value)", expr_names=("full",),
               shape=lambda a: torchlib.shape_tuple(a["shape"])))
