"""The ONNX importer's probe-pass knowledge of ONNX ops (kept here with the op records): which ops keep or
broadcast their inputs' size (to predict an output's elements before it is computed, for the folding budget), and
direct numpy implementations of common attribute-free float ops (the probe's fast path; the reference evaluator
runs the rest). Used by mdfbridge.importers.onnx_safety."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import NodeProto

from .. import limits


def node_label(node: NodeProto) -> str:
    """How a message names a node: its name, else its first output."""
    return node.name or next((o for o in node.output if o), "") or node.op_type


def _element_count(dims: Sequence[int]) -> int:
    return math.prod(int(d) for d in dims)


_SIZE_KEEPING = frozenset("""Abs Acos Acosh Asin Asinh Atan Atanh Ceil Cos Cosh Erf Exp Floor Identity IsInf IsNaN
Log Neg Not Reciprocal Relu Round Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Tan Tanh Elu Selu LeakyRelu
ThresholdedRelu HardSigmoid HardSwish Gelu Mish Celu Softmax LogSoftmax Hardmax Cast CastLike Reshape Flatten
Squeeze Unsqueeze Transpose Shape Size Slice Split ReduceMax ReduceMin ReduceMean ReduceSum ReduceProd ReduceL1
ReduceL2 ReduceLogSum ReduceLogSumExp ReduceSumSquare ArgMax ArgMin Concat Clip Dropout BatchNormalization
LayerNormalization InstanceNormalization LpNormalization GlobalAveragePool GlobalMaxPool MaxPool AveragePool
Constant Gather GatherElements Where Sum Max Min Mean Add Sub Mul Div Pow Mod And Or Xor Equal Less Greater
LessOrEqual GreaterOrEqual PRelu BitShift If Loop Scan""".split())
_BROADCASTING = frozenset("Add Sub Mul Div Pow Mod And Or Xor Equal Less Greater LessOrEqual GreaterOrEqual PRelu "
                          "Where Sum Max Min Mean BitShift".split())


def _shape(v: Any) -> Optional[Tuple[int, ...]]:
    return tuple(v.shape) if isinstance(v, np.ndarray) else (() if np.isscalar(v) else None)


def predicted_elements(node: NodeProto, args: Sequence[Any], opset: Optional[int] = None) -> Optional[int]:
    """Elements the node's largest output will have, computed from its inputs' shapes (and, for ops whose output
    size depends on input values, from those values by onnx's shape inference at `opset`, default None: the newest
    onnx knows), before running it; None when not known."""
    shapes = [_shape(a) for a in args]
    op = node.op_type
    if op in _BROADCASTING:
        try:
            return _element_count(np.broadcast_shapes(*[s for s in shapes if s is not None]))
        except ValueError:
            return None
    if op in ("MatMul", "Gemm") and len(shapes) >= 2 and shapes[0] and shapes[1]:
        a, b = shapes[0], shapes[1]
        if op == "Gemm":
            ta = any(x.name == "transA" and x.i for x in node.attribute)
            tb = any(x.name == "transB" and x.i for x in node.attribute)
            return (a[1] if ta else a[0]) * (b[0] if tb else b[1]) if len(a) == 2 and len(b) == 2 else None
        try:
            batch = np.broadcast_shapes(a[:-2], b[:-2]) if len(a) > 1 and len(b) > 1 else ()
        except ValueError:
            return None
        rows = a[-2] if len(a) > 1 else 1
        cols = b[-1] if len(b) > 1 else 1
        return _element_count(batch) * rows * cols
    if op in _SIZE_KEEPING and op not in ("Gather", "Concat", "If", "Loop", "Scan"):
        return max((_element_count(s) for s in shapes if s is not None), default=0)
    if op in ("If", "Loop", "Scan"):
        return None  # their nodes are guarded one by one
    return _inferred_elements(node, args, opset)




def _float_arrays(args: Sequence[Any], count: int) -> bool:
    return (len(args) == count and all(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in args)
            and all(a.dtype == args[0].dtype for a in args))


_UNARY: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Relu": lambda x: np.maximum(x, x.dtype.type(0)), "Identity": lambda x: x, "Neg": np.negative,
    "Abs": np.abs, "Exp": np.exp, "Tanh": np.tanh, "Sqrt": np.sqrt, "Log": np.log,
    "Sigmoid": lambda x: (1 / (1 + np.exp(-x))).astype(x.dtype, copy=False),
    # (onnx's reference evaluator reduces the wrong axes of 1-D and 3-D inputs)
    "GlobalMaxPool": lambda x: x.max(axis=tuple(range(2, x.ndim)), keepdims=True),
    "GlobalAveragePool": lambda x: x.mean(axis=tuple(range(2, x.ndim)), keepdims=True),
}
_BINARY: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "MatMul": np.matmul,
}


def _fast(node: NodeProto) -> Optional[Callable[[Sequence[Any], str, str], Optional[Tuple[np.ndarray, ...]]]]:
    """A direct numpy implementation of a common attribute-free op on float tensors (None: the reference
    evaluator runs it); it returns None for inputs it does not take (other types), so the evaluator runs those."""
    if node.op_type in _RECORD_PROBES and node.domain in ("", "ai.onnx") and len(node.output) == 1:
        return _record_probe(node)
    if node.attribute or node.domain not in ("", "ai.onnx") or len(node.output) != 1:
        return None
    unary, binary = _UNARY.get(node.op_type), _BINARY.get(node.op_type)
    if unary is not None:
        def run_unary(args: Sequence[Any], limit: str, where: str) -> Optional[Tuple[np.ndarray, ...]]:
            return (np.asarray(unary(args[0])),) if _float_arrays(args, 1) else None

        return run_unary
    if binary is not None:
        def run_binary(args: Sequence[Any], limit: str, where: str) -> Optional[Tuple[np.ndarray, ...]]:
            if not _float_arrays(args, 2):
                return None
            bound = getattr(limits.current(), limit)
            if args[0].size * args[1].size > bound and (node.op_type == "MatMul" or args[0].shape != args[1].shape):
                count = predicted_elements(node, args)  # (the output has at most the product of the input sizes)
                if count is None:
                    return None
                limits.check_elements(count, f"ONNX node '{node_label(node)}' ({node.op_type})'s output",
                                      where=where, limit=limit)
            return (np.asarray(binary(args[0], args[1])),)

        return run_binary
    return None


def _probe_pool(node: NodeProto, attrs: Dict[str, Any], args: Sequence[Any]) -> Optional[np.ndarray]:
    from .pooling import probe_pool

    return probe_pool(node.op_type, attrs, args[0]) if _float_arrays(args[:1], 1) and args[0].ndim >= 3 else None


def _probe_pad(node: NodeProto, attrs: Dict[str, Any], args: Sequence[Any]) -> Optional[np.ndarray]:
    from .padding import probe_pad

    return probe_pad(attrs, args) if args and _float_arrays(args[:1], 1) else None


def _probe_group_norm(node: NodeProto, attrs: Dict[str, Any], args: Sequence[Any]) -> Optional[np.ndarray]:
    from .normalization import probe_group_norm

    return probe_group_norm(attrs, args) if len(args) == 3 and _float_arrays(args[:1], 1) else None


def _probe_conv_transpose(node: NodeProto, attrs: Dict[str, Any], args: Sequence[Any]) -> Optional[np.ndarray]:
    from .convolution import probe_conv_transpose

    return probe_conv_transpose(attrs, args) if 2 <= len(args) <= 3 and _float_arrays(args[:2], 2) else None


def _probe_lrn(node: NodeProto, attrs: Dict[str, Any], args: Sequence[Any]) -> Optional[np.ndarray]:
    from .normalization import lrn_numpy

    if not _float_arrays(args, 1) or args[0].ndim < 3 or "size" not in attrs:
        return None
    x = args[0]
    return lrn_numpy(x, int(attrs["size"]), float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)),
                     float(attrs.get("bias", 1.0)), 1).astype(x.dtype)


# ops the probe runs by mdfbridge's own numpy implementations: onnx's reference evaluator sizes some SAME_LOWER
# pools unlike onnxruntime, refuses Pad's negative (cropping) pads, cannot expand GroupNormalization-21, runs LRN on
# 4-D inputs only and ConvTranspose with groups or output_shape wrongly
_RECORD_PROBES: Dict[str, Callable[[NodeProto, Dict[str, Any], Sequence[Any]], Optional[np.ndarray]]] = {
    "MaxPool": _probe_pool, "AveragePool": _probe_pool, "Pad": _probe_pad, "GroupNormalization": _probe_group_norm,
    "ConvTranspose": _probe_conv_transpose, "LRN": _probe_lrn,
}


def _record_probe(node: NodeProto) -> Callable[[Sequence[Any], str, str], Optional[Tuple[np.ndarray, ...]]]:
    """A node of _RECORD_PROBES run by mdfbridge's numpy; inputs it does not take (or that do not fit: the
    evaluator then says why) go to the evaluator."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    probe = _RECORD_PROBES[node.op_type]

    def run(args: Sequence[Any], limit: str, where: str) -> Optional[Tuple[np.ndarray, ...]]:
        try:
            out = probe(node, attrs, args)
        except ValueError:
            return None
        return None if out is None else (out,)
    return run


def _inferred_elements(node: NodeProto, args: Sequence[Any], opset: Optional[int] = None) -> Optional[int]:
    """onnx's shape inference of one node on the actual input types (small integer inputs given as data), with the
    op's schema at `opset` (default None: the newest)."""
    try:
        version = opset if node.domain in ("", "ai.onnx") and opset else onnx.defs.onnx_opset_version()
        schema = onnx.defs.get_schema(node.op_type, version, node.domain)
        types, data = {}, {}
        for name, value in zip(node.input, args):
            if not name or not isinstance(value, np.ndarray) or value.dtype == object:
                continue
            elem = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
            types[name] = onnx.helper.make_tensor_type_proto(elem, value.shape)
            if value.dtype.kind in "iu" and value.size <= 64:
                data[name] = onnx.numpy_helper.from_array(value, name)
        out = onnx.shape_inference.infer_node_outputs(schema, node, types, data)
    except Exception:  # noqa: BLE001 - inference unavailable for this op: checked after running
        return None
    best: Optional[int] = None
    for tp in out.values():
        dims = tp.tensor_type.shape.dim if tp.HasField("tensor_type") else ()
        if not tp.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
            return None
        count = _element_count([d.dim_value for d in dims])
        best = count if best is None else max(best, count)
    return best
