"""Reductions over axes (numpy's semantics: `axis` None reduces every axis, `keepdims`): sum, mean, max, min,
prod, argmax, argmin."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from . import shape_rules as sr
from . import to_onnx_expr, torchlib
from .base import Alias, OpDef, register, shift_axis, torch_module


def _t_reduce(name: str) -> Callable[..., Any]:
    """torch's reduction `name` with numpy's axis/keepdims arguments."""
    dim_fn = {"max": "amax", "min": "amin"}.get(name, name)  # torch.max(x, dim) returns (values, indices)

    def f(X: Any, axis: Any = None, keepdims: bool = False) -> Any:
        torch = torch_module()
        x = torchlib.tt(X)
        if name == "mean" and not x.is_floating_point():
            x = x.to(torch.float64)
        if axis is None:
            r = getattr(torch, name)(x)
            return r.reshape([1] * x.ndim) if keepdims else r
        dims = tuple(int(a) for a in axis) if isinstance(axis, (list, tuple)) else (int(axis),)
        if name in ("sum", "mean", "max", "min"):
            return getattr(torch, dim_fn)(x, dim=dims, keepdim=bool(keepdims))
        if len(dims) != 1:
            raise ValueError(f"{name} takes a single axis")
        return getattr(torch, dim_fn)(x, dim=dims[0], keepdim=bool(keepdims))
    f.__name__ = f"torch_{name}"
    return f


def _np_reduce(fn: Callable[..., Any]) -> Callable[..., Any]:
    def f(X: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return fn(X, axis=tuple(axis) if isinstance(axis, list) else axis, keepdims=bool(keepdims))
    return f


def _np_arg(fn: Callable[..., Any]) -> Callable[..., Any]:
    def f(X: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return fn(X, axis=None if axis is None else int(axis), keepdims=bool(keepdims))
    return f


# (op, numpy, expression name, fold, the ONNX opset from which the ONNX reduction takes its axes as an input)
for _name, _np, _expr, _fold, _axes_input in (("ReduceSum", np.sum, "sum", ("Add", 0.0), 13),
                                              ("ReduceMean", np.mean, "mean", None, 18),
                                              ("ReduceMax", np.max, "max", ("Maximum", -math.inf), 18),
                                              ("ReduceMin", np.min, "min", ("Minimum", math.inf), 18),
                                              ("ReduceProd", np.prod, "prod", ("Mul", 1.0), 18)):
    register(OpDef(_name, ("X",), _np_reduce(_np), _t_reduce(_expr), defaults={"axis": None, "keepdims": False},
                   attrs=("axis", "keepdims"), batch_rule=shift_axis, expr_names=(_expr,), shape=sr.reduce,
                   description=f"numpy.{_expr}(X, axis, keepdims)", fold=_fold,
                   # the ONNX op as an MDF function (PsyNeuLink's input-port combination: `onnx::ReduceSum(data,
                   # axes=0)`); ONNX keeps the reduced axes by default
                   aliases=(Alias(f"onnx::{_name}", {"data": "X", "axes": "axis"}, defaults={"keepdims": True}),),
                   onnx_export=to_onnx_expr.reduce(_name, _axes_input)))
for _name, _np_index, _expr in (("ArgMax", np.argmax, "argmax"), ("ArgMin", np.argmin, "argmin")):
    register(OpDef(_name, ("X",), _np_arg(_np_index), _t_reduce(_expr), defaults={"axis": None, "keepdims": False},
                   attrs=("axis", "keepdims"), batch_rule=shift_axis, expr_names=(_expr,), shape=sr.reduce,
                   description=f"numpy.{_expr}(X, axis): the index of the first extreme value",
                   onnx_export=to_onnx_expr.arg_extreme(_name)))
