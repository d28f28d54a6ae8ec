"""Building blocks of the Program -> ONNX exporter: typed values with per-trial shapes and a graph builder
whose helpers keep mdfbridge's per-trial semantics on ONNX tensors that carry a leading batch axis.

A `Val` is an ONNX tensor: `batched` ones have the dynamic batch axis ("batch") first and `shape` is their
per-trial shape; unbatched ones (parameters and what is computed from them alone) have `shape` as their full
shape. Broadcasting between them follows numpy on per-trial shapes: the helpers insert axes after the batch
axis where ONNX's right-aligned broadcasting would otherwise pair a per-trial axis with the batch axis.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, overload

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..dtypes import stored_weight_dtype
from ..errors import UnsupportedError
from ..ops.onnx_rewrites import tensor_readers
from ..program import Op, Program, TensorRef

BATCH_DIM = "batch"
TIME_DIM = "time"
TIME = -1  # the dynamic time axis of sequence programs (GRU blocks), first in the per-trial shape
MIN_OPSET = 17

DTYPES = {"float32": (np.float32, TensorProto.FLOAT), "float64": (np.float64, TensorProto.DOUBLE)}
BACKENDS_HINT = "the numpy reference and torch backends run it"


@dataclass(frozen=True)
class Val:
    """An ONNX tensor of the graph being built: name, batch axis or not, per-trial (or full) shape, kind."""

    name: str
    batched: bool
    shape: Tuple[int, ...]
    kind: str = "float"  # float | bool | int64

    @property
    def rank(self) -> int:
        """Rank of the per-trial value (the full rank for unbatched tensors)."""
        return len(self.shape)

    def onnx_axis(self, axis: int) -> int:
        """A per-trial axis (negative allowed) -> the axis of the ONNX tensor (non-negative)."""
        a = int(axis)
        if not -self.rank <= a < self.rank:
            raise UnsupportedError(f"axis {axis} is out of range for a value of shape {self.shape}")
        a %= self.rank
        return a + 1 if self.batched else a


@dataclass(frozen=True)
class Const:
    """A constant known at export time (folded; emitted as an initializer only when a tensor needs it). `name`:
    the initializer's name when it becomes one (`<op output>.<argument>` for an op's static argument; None:
    a generated name)."""

    value: Any
    name: Optional[str] = field(default=None, compare=False)

    @property
    def array(self) -> np.ndarray:
        """The value as a numpy array."""
        return np.asarray(self.value)

    @property
    def shape(self) -> Tuple[int, ...]:
        """Its shape."""
        return tuple(np.shape(self.value))

    def is_scalar(self, number: Optional[float] = None) -> bool:
        """A numeric scalar (equal to `number` when given)."""
        a = self.array
        if a.ndim != 0 or a.dtype.kind not in "biuf":
            return False
        return number is None or float(a) == number


Operand = Union[Val, Const]


class OnnxGraphBuilder:
    """Accumulates nodes and initializers of one ONNX graph; helpers implement numpy semantics per trial."""

    def __init__(self, program: Program, dtype: str = "float32", opset: int = MIN_OPSET) -> None:
        if dtype not in DTYPES:
            raise UnsupportedError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.program = program
        self.dtype = dtype
        self.np_dtype, self.elem_type = DTYPES[dtype]
        self.opset = int(opset)
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self.env: Dict[str, Val] = {}  # program tensor -> value
        self.used_names: set = set()
        self.reserved: set = set()
        self._const_cache: Dict[Tuple[Any, ...], Val] = {}
        self._readers: Optional[Dict[str, int]] = None
        self._counter = itertools.count()
        self.node_context = ""  # program node id, for node names and error messages
        self.batch_source: Optional[Val] = None  # a graph input, to read the batch size from
        self._batch_shape: Optional[Val] = None

    # ------------------------------------------------------------------ names and emission
    def fresh(self, hint: str) -> str:
        """A tensor name not used yet (and not a graph input/output name unless asked for, nor a Program
        parameter's name, which `param` keeps for that parameter's initializer)."""
        base = hint or "t"
        name = base
        while name in self.used_names or name in self.reserved or name in self.program.params:
            name = f"{base}_{next(self._counter)}"
        self.used_names.add(name)
        return name

    def readers(self, tensor: str) -> int:
        """How many Program ops read `tensor` (an argument, or an item of a list argument), plus one when it is a
        Program output."""
        if self._readers is None:
            self._readers = tensor_readers(self.program)
        return self._readers.get(tensor, 0)

    def emit(self, op_type: str, inputs: Sequence[Optional[Union[Val, str]]], *, shape: Sequence[int],
             batched: bool, kind: str = "float", out: Optional[str] = None, **attrs: Any) -> Val:
        """Append one ONNX node with one output; returns that output."""
        name = out if out is not None else self.fresh(f"{self.node_context or 'graph'}/{op_type}")
        if out is not None:
            self.used_names.add(out)
        ins = ["" if v is None else (v if isinstance(v, str) else v.name) for v in inputs]
        while ins and ins[-1] == "":
            ins.pop()
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, ins, [name], name=f"{name}", **attrs))
        return Val(name, batched, tuple(int(d) for d in shape), kind)

    @property
    def where(self) -> Optional[str]:
        """'node X' for error messages."""
        return f"node '{self.node_context}'" if self.node_context else None

    def unsupported(self, what: str) -> UnsupportedError:
        """The error for a computation the ONNX export cannot write (`what` names it), naming the node."""
        return UnsupportedError(f"cannot export {what} to ONNX ({BACKENDS_HINT})", where=self.where)

    # ------------------------------------------------------------------ constants
    def initializer(self, name: str, value: np.ndarray, doc: Optional[str] = None) -> str:
        """Add an initializer under `name` (exactly); `doc` (default none) becomes its doc_string."""
        self.used_names.add(name)
        tensor = numpy_helper.from_array(np.asarray(value, order="C"), name)
        if doc:
            tensor.doc_string = doc
        self.initializers.append(tensor)
        return name

    def const(self, value: Any, kind: str = "float", name: Optional[str] = None, doc: Optional[str] = None) -> Val:
        """A constant tensor (float in the model's dtype, bool or int64), deduplicated by value and `name`.

        name: the initializer's name (made unique; None, the default: "const"); doc: its doc_string (default
        none)."""
        np_type = {"float": self.np_dtype, "bool": np.bool_, "int64": np.int64}[kind]
        arr: np.ndarray = np.asarray(value).astype(np_type)
        key = (kind, name, arr.shape, arr.tobytes()) if arr.size <= 64 else None
        if key is not None and key in self._const_cache:
            return self._const_cache[key]
        init = self.initializer(self.fresh(name or "const"), arr, doc)
        val = Val(init, False, arr.shape, kind)
        if key is not None:
            self._const_cache[key] = val
        return val

    def int64s(self, values: Sequence[int], name: Optional[str] = None) -> Val:
        """A 1-D int64 constant (axes, shapes, indices); `name`: what it is ("axes", "shape", ...; None, the
        default: "const"), the initializer's name."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1), "int64", name)

    def tensor(self, v: Operand, kind: str = "float") -> Val:
        """An operand as a tensor of `kind`: constants become initializers (named by `Const.name`), other kinds
        are cast."""
        if isinstance(v, Const):
            arr = v.array
            if arr.dtype.kind not in "biuf":
                raise UnsupportedError(f"constant {v.value!r} is not numeric", where=self.where)
            return self.const(arr, kind, v.name)
        if v.kind == kind:
            return v
        to = {"float": self.elem_type, "bool": TensorProto.BOOL, "int64": TensorProto.INT64}[kind]
        return self.emit("Cast", [v], shape=v.shape, batched=v.batched, kind=kind, to=to)

    def param(self, ref: TensorRef) -> Val:
        """The value of a program tensor (a parameter is added as an initializer the first time)."""
        val = self.env.get(ref.name)
        if val is not None:
            return val
        p = self.program.params.get(ref.name)
        if p is None:
            raise UnsupportedError(f"tensor '{ref.name}' is used before it is computed", where=self.where)
        arr = self.weights(ref.name, p.value)
        name = ref.name if ref.name not in self.used_names and ref.name not in self.reserved else self.fresh(ref.name)
        val = self.env[ref.name] = self.weight_initializer(name, p, arr)
        return val

    def weight_initializer(self, name: str, p: Any, arr: np.ndarray, doc: Optional[str] = None) -> Val:
        """Parameter `p` (its value `arr` in the model's dtype) as the initializer `name` (doc_string `doc`, default
        none): in float16 / bfloat16, cast to the model's dtype by a Cast node, where an ONNX import recorded a tensor
        of that dtype and the values are still numbers of it (training may have moved them), else in the model's
        dtype."""
        small = self.stored_dtype(p)
        stored = arr.astype(small) if small is not None else None
        if stored is None or not np.array_equal(stored.astype(np.float64), np.asarray(p.value, dtype=np.float64)):
            self.initializer(name, arr, doc)
            return Val(name, False, arr.shape)
        self.initializer(name, stored, doc)
        return self.emit("Cast", [name], shape=arr.shape, batched=False, to=self.elem_type,
                         out=self.fresh(f"{name}_as_{self.dtype}"))

    def stored_dtype(self, p: Any) -> Optional[np.dtype]:
        """The dtype (float16, bfloat16) an ONNX import recorded parameter `p`'s tensor in (`parameter_dtypes` in its
        node's metadata), else None."""
        loc: Tuple[str, ...] = tuple(p.location or ())
        if len(loc) < 6 or loc[2] != "nodes" or loc[4] != "parameters":
            return None
        node = (self.program.metadata.get("nodes") or {}).get(loc[3]) or {}
        return stored_weight_dtype((node.get("parameter_dtypes") or {}).get(loc[5]))

    def weights(self, name: str, value: Any) -> np.ndarray:
        """Parameter `name`'s value in the model's dtype; finite values that the dtype cannot hold (1e200 in float32)
        are refused, naming the parameter, rather than written as infinities."""
        with np.errstate(over="ignore"):
            arr = np.asarray(value, dtype=self.np_dtype)
        if arr.dtype != np.asarray(value).dtype and not np.all(np.isfinite(arr)):
            src = np.asarray(value)
            bad = np.isfinite(src) & ~np.isfinite(arr)
            if np.any(bad):
                raise UnsupportedError(f"parameter '{name}' holds {float(src[bad].flat[0])!r}, beyond {self.dtype}'s "
                                       "range; export with dtype='float64' (CLI: --dtype float64)", where=self.where)
        return arr

    def param_reshaped(self, ref: TensorRef, shape: Sequence[int], doc: Optional[str] = None) -> Val:
        """Parameter `ref` as an initializer of another shape (its values in their order) and `doc` its doc_string
        (default none), under the parameter's name when one op alone reads the parameter and the name is free
        (else a name made from it)."""
        p = self.program.params.get(ref.name)
        if p is None:
            raise UnsupportedError(f"'{ref.name}' is not a parameter", where=self.where)
        arr = self.weights(ref.name, p.value).reshape(tuple(int(d) for d in shape))
        free = ref.name not in self.used_names and ref.name not in self.reserved and self.readers(ref.name) <= 1
        name = ref.name if free else self.fresh(ref.name)
        return self.weight_initializer(name, p, arr, doc)

    # ------------------------------------------------------------------ op arguments (read by the ops' onnx_export)
    def operand(self, value: Any) -> Optional[Operand]:
        """A Program value as an operand: a tensor for a TensorRef, a folded constant otherwise, None for None
        (an operand already, as the expression exporter passes to records, stays as it is)."""
        if value is None or isinstance(value, (Val, Const)):
            return value
        if isinstance(value, TensorRef):
            return self.param(value)
        return Const(np.asarray(value) if isinstance(value, (list, tuple)) else value)

    @overload
    def arg(self, op: Op, name: str) -> Optional[Operand]: ...

    @overload
    def arg(self, op: Op, name: str, default: Union[float, int, np.ndarray]) -> Operand: ...

    def arg(self, op: Op, name: str, default: Any = None) -> Optional[Operand]:
        """Argument `name` of `op` as an operand: its `default` when absent or None (then None without a
        default); a list of tensors is refused. A static value is a constant named `<op output>.<name>`."""
        v = op.args.get(name)
        if v is None:
            v = default
        if isinstance(v, list) and v and all(isinstance(x, TensorRef) for x in v):
            raise UnsupportedError(f"argument '{name}' is a list of tensors", where=self.where)
        val = self.operand(v)
        if isinstance(val, Const) and val.name is None and not isinstance(v, Const):
            val = Const(val.value, f"{op.out}.{name}")
        return val

    def operands(self, op: Op, *names: str) -> List[Operand]:
        """Arguments `names` of `op` as operands (tensors of their own kind, constants folded); an absent one is
        an error."""
        out = []
        for name in names:
            v = self.arg(op, name)
            if v is None:
                raise UnsupportedError(f"{op.fn} needs argument '{name}'", where=self.where)
            out.append(v)
        return out

    def required_arg(self, op: Op, name: str, keep_kind: bool = False) -> Val:
        """Argument `name` of `op` as a float tensor (`keep_kind`: a bool or int64 tensor stays one); its absence
        is an error."""
        (v,) = self.operands(op, name)
        return v if keep_kind and isinstance(v, Val) else self.as_val(v)

    @staticmethod
    def static_arg(op: Op, name: str, default: Any = None) -> Any:
        """An attribute-like argument that must be static (axis, perm, shape), as a Python value."""
        v = op.args.get(name, default)
        if isinstance(v, TensorRef) or (isinstance(v, list) and any(isinstance(x, TensorRef) for x in v)):
            raise UnsupportedError(f"argument '{name}' of {op.fn} must be a constant", where=f"node '{op.node}'")
        return v.tolist() if isinstance(v, np.ndarray) else v

    def exact_attr(self, value: float) -> bool:
        """Can a float attribute (ONNX stores float32) carry `value` without changing the model's numbers?"""
        return self.dtype == "float32" or float(np.float32(value)) == float(value)

    @staticmethod
    def literal(value: Any) -> Const:
        """A constant folded at export time (an initializer only if a tensor op needs it)."""
        return Const(value)

    @staticmethod
    def is_scalar(v: Optional[Operand], number: Optional[float] = None) -> bool:
        """Is `v` a folded numeric scalar (equal to `number` when given)?"""
        return isinstance(v, Const) and v.is_scalar(number)

    # ------------------------------------------------------------------ shape helpers
    def unsqueeze(self, x: Val, onnx_axes: Sequence[int]) -> Val:
        """Insert axes of size 1 at these axes of the ONNX tensor."""
        if not onnx_axes:
            return x
        full = list(self.onnx_shape(x))
        for a in sorted(onnx_axes):
            full.insert(a, 1)
        shape = full[1:] if x.batched else full
        return self.emit("Unsqueeze", [x, self.int64s(onnx_axes)], shape=shape, batched=x.batched, kind=x.kind)

    def squeeze(self, x: Val, onnx_axes: Sequence[int]) -> Val:
        """Remove these (size 1) axes of the ONNX tensor."""
        if not onnx_axes:
            return x
        full = [d for i, d in enumerate(self.onnx_shape(x)) if i not in set(onnx_axes)]
        shape = full[1:] if x.batched else full
        return self.emit("Squeeze", [x, self.int64s(onnx_axes)], shape=shape, batched=x.batched, kind=x.kind)

    @staticmethod
    def onnx_shape(x: Val) -> Tuple[Any, ...]:
        """Shape of the ONNX tensor, with None for the batch axis."""
        return ((None,) if x.batched else ()) + tuple(x.shape)

    def align(self, *vals: Val) -> Tuple[List[Val], Tuple[int, ...]]:
        """Make per-trial numpy broadcasting hold under ONNX broadcasting; returns (values, result shape)."""
        target = max((v.rank for v in vals), default=0)
        shape = broadcast_shapes(*[v.shape for v in vals])
        out = []
        for v in vals:
            if v.batched and v.rank < target:
                v = self.unsqueeze(v, list(range(1, 1 + target - v.rank)))
            out.append(v)
        return out, shape

    def nary(self, op_type: str, operands: Sequence[Operand], kind: str = "float", out_kind: Optional[str] = None,
             **attrs: Any) -> Val:
        """A broadcasting elementwise ONNX op on operands cast to `kind`."""
        vals = [self.tensor(o, kind) for o in operands]
        try:
            vals, shape = self.align(*vals)
        except ValueError as exc:
            raise UnsupportedError(f"cannot broadcast shapes {[v.shape for v in vals]}: {exc}",
                                   where=self.where) from None
        return self.emit(op_type, vals, shape=shape, batched=any(v.batched for v in vals),
                         kind=out_kind or kind, **attrs)

    def unary(self, op_type: str, x: Operand, kind: str = "float", **attrs: Any) -> Val:
        """An elementwise unary ONNX op."""
        v = self.tensor(x, kind)
        return self.emit(op_type, [v], shape=v.shape, batched=v.batched, kind=kind, **attrs)

    # ------------------------------------------------------------------ arithmetic with identities
    def add(self, a: Operand, b: Operand) -> Operand:
        """a + b (adding a scalar 0 is skipped)."""
        if isinstance(b, Const) and b.is_scalar(0.0) and isinstance(a, Val):
            return a
        if isinstance(a, Const) and a.is_scalar(0.0) and isinstance(b, Val):
            return b
        if isinstance(a, Const) and isinstance(b, Const):
            return Const(a.array + b.array)
        return self.nary("Add", [a, b])

    def sub(self, a: Operand, b: Operand) -> Operand:
        """a - b (subtracting a scalar 0 is skipped)."""
        if isinstance(b, Const) and b.is_scalar(0.0) and isinstance(a, Val):
            return a
        if isinstance(a, Const) and isinstance(b, Const):
            return Const(a.array - b.array)
        return self.nary("Sub", [a, b])

    def mul(self, a: Operand, b: Operand) -> Operand:
        """a * b (multiplying by a scalar 1 is skipped)."""
        if isinstance(b, Const) and b.is_scalar(1.0) and isinstance(a, Val):
            return a
        if isinstance(a, Const) and a.is_scalar(1.0) and isinstance(b, Val):
            return b
        if isinstance(a, Const) and isinstance(b, Const):
            return Const(a.array * b.array)
        return self.nary("Mul", [a, b])

    def div(self, a: Operand, b: Operand) -> Operand:
        """a / b (dividing by a scalar 1 is skipped)."""
        if isinstance(b, Const) and b.is_scalar(1.0) and isinstance(a, Val):
            return a
        if isinstance(a, Const) and isinstance(b, Const):
            with np.errstate(all="ignore"):
                return Const(np.true_divide(a.array, b.array))
        return self.nary("Div", [a, b])

    def sqrt(self, a: Operand) -> Operand:
        """numpy.sqrt(a) (a constant is folded: numpy's float64 square root, correctly rounded as ONNX's)."""
        if isinstance(a, Const):
            with np.errstate(all="ignore"):
                return Const(np.sqrt(np.asarray(a.array, dtype=float)))
        return self.unary("Sqrt", a)

    def neg(self, a: Operand) -> Operand:
        """-a."""
        if isinstance(a, Const):
            return Const(-a.array)
        return self.unary("Neg", a)

    def as_val(self, a: Operand) -> Val:
        """A float tensor (constants become initializers)."""
        return self.tensor(a, "float")

    def select(self, cond: Operand, x: Operand, y: Operand) -> Operand:
        """numpy.where(cond, x, y) with per-trial broadcasting."""
        if isinstance(cond, Const) and isinstance(x, Const) and isinstance(y, Const):
            return Const(np.where(cond.array, x.array, y.array))
        vals = [self.tensor(cond, "bool"), self.tensor(x, "float"), self.tensor(y, "float")]
        vals, shape = self.align(*vals)
        return self.emit("Where", vals, shape=shape, batched=any(v.batched for v in vals))

    # ------------------------------------------------------------------ structural ops
    def matmul(self, a: Operand, b: Operand) -> Val:
        """numpy.matmul on per-trial values."""
        a, b = self.as_val(a), self.as_val(b)
        if a.rank == 0 or b.rank == 0:
            raise UnsupportedError(f"matmul of a scalar (shapes {a.shape} and {b.shape})", where=self.where)
        shape = _matmul_shape(a.shape, b.shape)
        batched = a.batched or b.batched
        if not batched or (a.rank == 1 and not b.batched and b.rank == 2):
            # unbatched, or (batch, k) @ (k, m): ONNX MatMul is numpy's matmul here
            return self.emit("MatMul", [a, b], shape=shape, batched=batched)
        first, last = a.rank == 1, b.rank == 1
        a2 = self.unsqueeze(a, [a.onnx_axis(0)]) if first else a
        b2 = self.unsqueeze(b, [b.onnx_axis(0) + 1]) if last else b
        target = max(a2.rank, b2.rank)
        a2, b2 = [self.unsqueeze(v, list(range(1, 1 + target - v.rank))) if v.batched and v.rank < target else v
                  for v in (a2, b2)]
        y = self.emit("MatMul", [a2, b2], shape=_matmul_shape(a2.shape, b2.shape), batched=True)
        drop = ([-2] if first else []) + ([-1] if last else [])
        if drop:
            r = y.rank + 1
            y = self.squeeze(y, sorted(d % r for d in drop))
        if tuple(y.shape) != tuple(shape):  # pragma: no cover - an exporter bug, not a user error
            raise AssertionError(f"matmul shape {y.shape} != {shape}")
        return y

    def transpose(self, x: Val, perm: Optional[Sequence[int]] = None) -> Val:
        """numpy.transpose with a per-trial permutation (reversed axes by default)."""
        perm = list(range(x.rank))[::-1] if perm is None else [int(p) % max(x.rank, 1) for p in perm]
        if sorted(perm) != list(range(x.rank)):
            raise UnsupportedError(f"transpose permutation {perm} does not fit shape {x.shape}", where=self.where)
        if perm == list(range(x.rank)):
            return x
        shape = [x.shape[p] for p in perm]
        onnx_perm = [0] + [p + 1 for p in perm] if x.batched else perm
        return self.emit("Transpose", [x], shape=shape, batched=x.batched, kind=x.kind, perm=onnx_perm)

    def reshape(self, x: Val, shape: Sequence[int]) -> Val:
        """Reshape the per-trial value to `shape` (-1 allowed once). A value with a time axis (first) keeps it
        when `shape` starts with it (TIME, or -1): each time step's values are reshaped."""
        if TIME in x.shape:
            return self._reshape_steps(x, shape)
        shape = resolve_shape(x.shape, shape)
        if tuple(shape) == tuple(x.shape):
            return x
        if x.batched and 0 in shape:
            raise UnsupportedError("reshape to an empty per-trial shape", where=self.where)
        target = ([-1] if x.batched else []) + list(shape)
        return self.emit("Reshape", [x, self.int64s(target)], shape=shape, batched=x.batched, kind=x.kind)

    def _reshape_steps(self, x: Val, shape: Sequence[int]) -> Val:
        """Reshape a batched value with a leading time axis time step by time step (ONNX: 0, 0 copy batch, time)."""
        shape = [int(d) for d in shape]
        if not x.batched or x.shape[0] != TIME or TIME in x.shape[1:] or not shape or shape[0] != TIME:
            raise UnsupportedError(f"reshape of a value with a time axis (shape {x.shape}) to {tuple(shape)}",
                                   where=self.where)
        step = resolve_shape(x.shape[1:], shape[1:])
        if tuple(step) == tuple(x.shape[1:]):
            return x
        if 0 in step:
            raise UnsupportedError("reshape to an empty per-trial shape", where=self.where)
        return self.emit("Reshape", [x, self.int64s([0, 0] + list(step))], shape=(TIME,) + tuple(step),
                         batched=True, kind=x.kind)

    def concat(self, vals: Sequence[Operand], axis: int) -> Val:
        """numpy.concatenate on per-trial values (unbatched ones are expanded over the batch when needed)."""
        vs = [self.as_val(v) for v in vals]
        rank = vs[0].rank
        if any(v.rank != rank for v in vs) or rank == 0:
            raise UnsupportedError(f"concatenate of shapes {[v.shape for v in vs]}", where=self.where)
        ax = int(axis) % rank
        batched = any(v.batched for v in vs)
        if batched:
            vs = [v if v.batched else self.expand_to_batch(v) for v in vs]
        shape = list(vs[0].shape)
        shape[ax] = sum(v.shape[ax] for v in vs)
        if len(vs) == 1:
            return vs[0]
        return self.emit("Concat", vs, shape=shape, batched=batched, axis=ax + (1 if batched else 0))

    def stack(self, vals: Sequence[Operand], axis: int) -> Val:
        """numpy.stack on per-trial values of one shape (a new per-trial axis `axis`)."""
        vs = [self.as_val(v) for v in vals]
        if not vs or len({v.shape for v in vs}) != 1:
            raise self.unsupported(f"stacking values of shapes {[v.shape for v in vs]}")
        ax = int(axis) % (vs[0].rank + 1)
        return self.concat([self.unsqueeze(v, [ax + (1 if v.batched else 0)]) for v in vs], ax)

    def getitem(self, x: Val, index: Any) -> Val:
        """x[index] per trial for a constant index: an int, a slice, or a tuple of them (Gather and Slice)."""
        items = index if isinstance(index, tuple) else (index,)
        if len(items) > x.rank:
            raise self.unsupported(f"{len(items)} indices into a value of shape {x.shape}")
        axis = 0
        for it in items:
            dim = x.shape[axis]
            if dim == TIME:
                raise self.unsupported("indexing the time axis of a sequence")
            if isinstance(it, (int, np.integer)) and not isinstance(it, (bool, np.bool_)):
                if not -dim <= it < dim:
                    raise self.unsupported(f"index {it} out of range for axis {axis} of size {dim}")
                x = self.emit("Gather", [x, self.const(np.asarray(int(it), dtype=np.int64), "int64")],
                              shape=x.shape[:axis] + x.shape[axis + 1:], batched=x.batched, kind=x.kind,
                              axis=x.onnx_axis(axis))
                continue
            if not isinstance(it, slice) or any(p is not None and not isinstance(p, (int, np.integer))
                                                for p in (it.start, it.stop, it.step)):
                raise self.unsupported(f"index {it!r} (only constant integers and slices)")
            start, stop, step = it.indices(dim)
            length = len(range(start, stop, step))
            if (start, length, step) != (0, dim, 1):
                end = stop if stop >= 0 else -dim - 1
                x = self.emit("Slice", [x, self.int64s([start]), self.int64s([end]), self.int64s([x.onnx_axis(axis)]),
                                        self.int64s([step])],
                              shape=x.shape[:axis] + (length,) + x.shape[axis + 1:], batched=x.batched, kind=x.kind)
            axis += 1
        return x

    def filled_like(self, x: Val, fill: float) -> Val:
        """A float tensor of x's shape (and batch axis) filled with `fill` (Shape, ConstantOfShape)."""
        shape = self.emit("Shape", [x], shape=[x.rank + (1 if x.batched else 0)], batched=False, kind="int64")
        return self.emit("ConstantOfShape", [shape], shape=x.shape, batched=x.batched,
                         value=helper.make_tensor("value", self.elem_type, [1], [fill]))

    def batch_shape(self) -> Optional[Val]:
        """A 1-element int64 tensor holding the batch size (None when the graph has no batched input)."""
        if self._batch_shape is None and self.batch_source is not None:
            self._batch_shape = self.emit("Shape", [self.batch_source], shape=[1], batched=False, kind="int64",
                                          start=0, end=1)
        return self._batch_shape

    def expand_to_batch(self, x: Val) -> Val:
        """An unbatched value repeated over the batch axis."""
        if x.batched:
            return x
        u = self.emit("Unsqueeze", [x, self.int64s([0])], shape=(1,) + tuple(x.shape), batched=False, kind=x.kind)
        bs = self.batch_shape()
        if bs is None:
            return Val(u.name, True, x.shape, x.kind)
        target = self.emit("Concat", [bs, self.int64s(x.shape)], shape=[1 + x.rank], batched=False, kind="int64",
                           axis=0) if x.rank else bs
        return self.emit("Expand", [u, target], shape=x.shape, batched=True, kind=x.kind)

    def reduce(self, op_type: str, x: Val, axes: Optional[Sequence[int]], keepdims: bool,
               axes_input_since: int = 18) -> Val:
        """numpy sum/max/min/mean/prod over per-trial axes (all of them when None) as the ONNX reduction
        `op_type`, which takes its axes as an input from opset `axes_input_since` on (an attribute before)."""
        per_trial = list(range(x.rank)) if axes is None else sorted({int(a) % max(x.rank, 1) for a in axes})
        if x.rank == 0 or not per_trial:
            return x
        if x.kind == "bool":
            x = self.tensor(x, "float")
        onnx_axes = [x.onnx_axis(a) for a in per_trial]
        shape = [1 if i in per_trial else d for i, d in enumerate(x.shape)] if keepdims else \
            [d for i, d in enumerate(x.shape) if i not in per_trial]
        if self.opset >= axes_input_since:
            return self.emit(op_type, [x, self.int64s(onnx_axes)], shape=shape, batched=x.batched,
                             keepdims=int(bool(keepdims)))
        return self.emit(op_type, [x], shape=shape, batched=x.batched, axes=onnx_axes, keepdims=int(bool(keepdims)))


def broadcast_shapes(*shapes: Sequence[int]) -> Tuple[int, ...]:
    """numpy's broadcasting of shapes, with TIME (-1) as a dimension that broadcasts with 1 and itself."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {int(s[len(s) - rank + i]) for s in shapes if len(s) - rank + i >= 0} - {1}
        if len(dims) > 1:
            raise UnsupportedError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def resolve_shape(old: Sequence[int], new: Any) -> Tuple[int, ...]:
    """numpy's reshape rule: `new` with its -1 filled in (ValueError-like UnsupportedError when it cannot fit)."""
    new = [int(d) for d in (new if np.ndim(new) else [new])]
    size = int(np.prod(old, dtype=np.int64))
    if new.count(-1) > 1 or any(d < -1 for d in new):
        raise UnsupportedError(f"cannot reshape {tuple(old)} to {tuple(new)}")
    if -1 in new:
        rest = int(np.prod([d for d in new if d != -1], dtype=np.int64))
        if rest == 0 or size % rest:
            raise UnsupportedError(f"cannot reshape {tuple(old)} to {tuple(new)}")
        new[new.index(-1)] = size // rest
    if int(np.prod(new, dtype=np.int64)) != size:
        raise UnsupportedError(f"cannot reshape {tuple(old)} to {tuple(new)}")
    return tuple(new)


def _matmul_shape(a: Sequence[int], b: Sequence[int]) -> Tuple[int, ...]:
    """numpy.matmul's result shape (raises ValueError when the shapes do not fit)."""
    a, b = tuple(a), tuple(b)
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise UnsupportedError(f"matmul shapes {a} and {b} do not fit")
    lead = broadcast_shapes(a2[:-2], b2[:-2])
    out = lead + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out

