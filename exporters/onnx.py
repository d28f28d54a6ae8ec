"""`Program` -> one ONNX `ModelProto` that onnxruntime runs with the numpy reference's numbers.

Graph inputs and outputs carry the Program's input/output names with a dynamic batch axis ("batch") first;
parameters become initializers (without the batch axis; broadcasting does the rest). Each registry op is
translated by an exporter registered under the op's registry name:

    @register_onnx("logistic")
    def _logistic(b: OnnxGraphBuilder, op: Op) -> Operand: ...

An exporter reads `op.args` through `arg(b, op, name)` and emits nodes through the builder
(`exporters/onnx_graph.py`), returning the op's value. 'expr' ops (MDF value expressions) are translated by
`exporters/onnx_expr.py`. What has no translation raises `UnsupportedError` naming the node.

Plug-ins: an op's record may carry its own exporter (`OpDef.onnx_export`, same signature), which takes
precedence over this table; exporters that live in other modules may also register themselves with
`register_onnx` when imported (`program_to_onnx` imports the modules named in `PLUGINS` first).
Sequence programs (`program.sequence`) take inputs (batch, time, ...): their batched values carry the time axis
first in the per-trial shape, as `TIME` (-1), and ONNX names it "time".
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import onnx
from onnx import helper

from ..errors import UnsupportedError
from ..executor import batched_tensors
from ..ops import REGISTRY, get_op
from ..program import Op, Program, TensorRef
from .onnx_expr import BACKENDS_HINT, elementwise_fn, translate_expression, where
from .onnx_graph import BATCH_DIM, MIN_OPSET, TIME, TIME_DIM, Const, OnnxGraphBuilder, Operand, Val

log = logging.getLogger(__name__)

ExportFn = Callable[[OnnxGraphBuilder, Op], Operand]
ONNX_EXPORTERS: Dict[str, ExportFn] = {}
PLUGINS: tuple = ()  # modules registering more exporters (imported when present)

__all__ = ["program_to_onnx", "mdf_to_onnx", "save_onnx", "register_onnx", "ONNX_EXPORTERS", "onnx_ir_version",
           "OnnxGraphBuilder", "Val", "Const", "arg"]


def register_onnx(name: str, *, replace: bool = False) -> Callable[[ExportFn], ExportFn]:
    """Decorator: register the ONNX exporter of registry op `name` (one per op unless `replace`)."""
    def deco(fn: ExportFn) -> ExportFn:
        if name in ONNX_EXPORTERS and not replace:
            raise ValueError(f"ONNX exporter for {name!r} registered twice")
        ONNX_EXPORTERS[name] = fn
        return fn
    return deco


def load_plugins() -> None:
    """Import the exporter plug-in modules that exist (a missing one is skipped; a broken one raises)."""
    import importlib
    import importlib.util

    for mod in PLUGINS:
        if mod not in __import__("sys").modules and importlib.util.find_spec(mod) is not None:
            importlib.import_module(mod)


def onnx_ir_version(opset: int) -> int:
    """The lowest ONNX IR version that allows `opset` (IR 8 for opset 17; onnxruntime accepts up to 13)."""
    return int(helper.find_min_ir_version_for([helper.make_opsetid("", int(opset))]))


def arg(b: OnnxGraphBuilder, op: Op, name: str, default: Any = None) -> Optional[Operand]:
    """An op argument as an operand: a tensor (Val), a folded constant (Const), or None when absent."""
    v = op.args.get(name, default)
    if v is None:
        return None
    if isinstance(v, TensorRef):
        return b.param(v)
    if isinstance(v, list) and v and all(isinstance(x, TensorRef) for x in v):
        raise UnsupportedError(f"argument '{name}' is a list of tensors", where=b.where)
    return Const(np.asarray(v) if isinstance(v, (list, tuple)) else v)


def static_arg(op: Op, name: str, default: Any = None) -> Any:
    """An attribute-like argument that must be static (axis, perm, shape)."""
    v = op.args.get(name, default)
    if isinstance(v, TensorRef) or (isinstance(v, list) and any(isinstance(x, TensorRef) for x in v)):
        raise UnsupportedError(f"argument '{name}' of {op.fn} must be a constant", where=f"node '{op.node}'")
    return v.tolist() if isinstance(v, np.ndarray) else v


def _x(b: OnnxGraphBuilder, op: Op, name: str) -> Val:
    v = arg(b, op, name)
    if v is None:
        raise UnsupportedError(f"{op.fn} needs argument '{name}'", where=b.where)
    return b.as_val(v)


def _exact_attr(b: OnnxGraphBuilder, value: float) -> bool:
    """Can a float attribute (ONNX stores float32) carry `value` without changing the model's numbers?"""
    return b.dtype == "float32" or float(np.float32(value)) == float(value)


# --------------------------------------------------------------------------- MDF standard functions

@register_onnx("linear")
def _linear(b: OnnxGraphBuilder, op: Op) -> Operand:
    return b.add(b.mul(_x(b, op, "variable0"), arg(b, op, "slope", 1.0)), arg(b, op, "intercept", 0.0))


@register_onnx("logistic")
def _logistic(b: OnnxGraphBuilder, op: Op) -> Operand:
    # 1/(1 + exp(-gain*(x + bias) + offset)) == sigmoid(gain*(x + bias) - offset)
    z = b.add(_x(b, op, "variable0"), arg(b, op, "bias", 0.0))
    z = b.sub(b.mul(z, arg(b, op, "gain", 1.0)), arg(b, op, "offset", 0.0))
    return b.unary("Sigmoid", z)


@register_onnx("exponential")
def _exponential(b: OnnxGraphBuilder, op: Op) -> Operand:
    z = b.add(b.mul(_x(b, op, "variable0"), arg(b, op, "rate", 1.0)), arg(b, op, "bias", 0.0))
    return b.add(b.mul(b.unary("Exp", z), arg(b, op, "scale", 1.0)), arg(b, op, "offset", 0.0))


def _trig(name: str) -> ExportFn:
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        return b.mul(elementwise_fn(b, name, _x(b, op, "variable0")), arg(b, op, "scale", 1.0))
    export.__name__ = f"_export_{name}"
    return export


for _name in ("sin", "cos", "tan", "sinh", "cosh", "tanh", "arctan", "arcsin", "arccos"):
    register_onnx(_name)(_trig(_name))


@register_onnx("MatMul")
def _matmul(b: OnnxGraphBuilder, op: Op) -> Operand:
    return b.matmul(_x(b, op, "A"), _x(b, op, "B"))


@register_onnx("Relu")
def _relu_standard(b: OnnxGraphBuilder, op: Op) -> Operand:
    return b.unary("Relu", _x(b, op, "A"))


@register_onnx("ReLU")
def _relu(b: OnnxGraphBuilder, op: Op) -> Operand:
    x = b.sub(_x(b, op, "variable0"), arg(b, op, "bias", 0.0))
    leak = arg(b, op, "leak", 0.0)
    if isinstance(leak, Const) and leak.is_scalar(0.0):
        y: Operand = b.unary("Relu", x)
    elif isinstance(leak, Const) and leak.is_scalar() and _exact_attr(b, float(leak.value)):
        y = b.unary("LeakyRelu", x, alpha=float(leak.value))
    else:
        y = where(b, b.nary("Greater", [x, Const(0.0)], out_kind="bool"), x, b.mul(x, leak))
    return b.mul(y, arg(b, op, "gain", 1.0))


@register_onnx("SoftMax")
def _softmax(b: OnnxGraphBuilder, op: Op) -> Operand:
    x, gain = _x(b, op, "variable0"), arg(b, op, "gain", 1.0)
    if not (isinstance(gain, Const) and gain.is_scalar(1.0)):
        x = b.as_val(b.mul(x, gain))
    axis = static_arg(op, "axis", -1)
    return b.emit("Softmax", [x], shape=x.shape, batched=x.batched, axis=x.onnx_axis(axis))


# --------------------------------------------------------------------------- onnx:: ops (per-trial semantics)

def _binary(op_type: str) -> ExportFn:
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        return b.nary(op_type, [_x(b, op, "A"), _x(b, op, "B")])
    export.__name__ = f"_export_{op_type}"
    return export


for _name in ("Add", "Sub", "Mul", "Div"):
    register_onnx(_name)(_binary(_name))

def _unary(op_type: str) -> ExportFn:
    def export(b: OnnxGraphBuilder, op: Op) -> Operand:
        x = _x(b, op, "X")
        return x if op_type == "Identity" else b.unary(op_type, x)
    export.__name__ = f"_export_{op_type}"
    return export


for _name in ("Sigmoid", "Neg", "Tanh", "Exp", "Log", "Identity"):
    register_onnx(_name)(_unary(_name))


def _gemm_direct(a: Val, w: Val, c: Optional[Val], trans_a: int, trans_b: int) -> bool:
    """Is ONNX Gemm itself the per-trial computation (A a matrix per batch, C broadcastable one way)?"""
    if w.batched or w.rank != 2 or (a.batched and (a.rank != 1 or trans_a)) or (not a.batched and a.rank != 2):
        return False
    m = w.shape[0] if trans_b else w.shape[1]
    if c is None:
        return True
    if a.batched:
        return c.shape == (m,) or (not c.batched and c.shape in ((), (1,)))
    rows = a.shape[1] if trans_a else a.shape[0]
    return not c.batched and c.rank <= 2 and tuple(np.broadcast_shapes((rows, m), c.shape)) == (rows, m)


@register_onnx("Gemm")
def _gemm(b: OnnxGraphBuilder, op: Op) -> Operand:
    a, w, c = _x(b, op, "A"), _x(b, op, "B"), arg(b, op, "C")
    alpha, beta = float(static_arg(op, "alpha", 1.0)), float(static_arg(op, "beta", 1.0))
    trans_a, trans_b = int(static_arg(op, "transA", 0)), int(static_arg(op, "transB", 0))
    cv = b.as_val(c) if c is not None else None
    if _gemm_direct(a, w, cv, trans_a, trans_b) and _exact_attr(b, alpha) and _exact_attr(b, beta):
        m = w.shape[0] if trans_b else w.shape[1]
        shape = (m,) if a.batched else ((a.shape[1] if trans_a else a.shape[0]), m)
        return b.emit("Gemm", [a, w, cv], shape=shape, batched=a.batched, alpha=alpha, beta=beta,
                      transA=trans_a or None, transB=trans_b or None)
    if trans_a and a.rank >= 2:
        a = b.transpose(a, list(range(a.rank - 2)) + [a.rank - 1, a.rank - 2])
    if trans_b and w.rank >= 2:
        w = b.transpose(w, list(range(w.rank - 2)) + [w.rank - 1, w.rank - 2])
    y = b.mul(b.matmul(a, w), Const(alpha))
    return y if c is None else b.add(y, b.mul(c, Const(beta)))


@register_onnx("Transpose")
def _onnx_transpose(b: OnnxGraphBuilder, op: Op) -> Operand:
    return b.transpose(_x(b, op, "data"), static_arg(op, "perm"))


@register_onnx("Reshape")
def _onnx_reshape(b: OnnxGraphBuilder, op: Op) -> Operand:
    x = _x(b, op, "data")
    shape = [int(s) for s in np.asarray(static_arg(op, "shape")).reshape(-1)]
    if not int(static_arg(op, "allowzero", 0) or 0):
        shape = [x.shape[i] if s == 0 and i < x.rank else s for i, s in enumerate(shape)]
    return b.reshape(x, shape)


@register_onnx("Concat")
def _onnx_concat(b: OnnxGraphBuilder, op: Op) -> Operand:
    items = op.args.get("inputs")
    if not isinstance(items, list) or not items:
        raise UnsupportedError("onnx::Concat needs a list of tensors as 'inputs'", where=b.where)
    vals = [b.param(v) if isinstance(v, TensorRef) else Const(np.asarray(v)) for v in items]
    return b.concat(vals, int(static_arg(op, "axis", 0)))


# --------------------------------------------------------------------------- the Program

def _unsupported_op(op: Op) -> UnsupportedError:
    opdef = get_op(op.fn)
    runs = [n for n, f in (("numpy reference", opdef and opdef.numpy), ("torch", opdef and opdef.torch)) if f]
    hint = f"backends that can run it: {', '.join(runs)}" if runs else "no backend implements it"
    known = set(ONNX_EXPORTERS) | {n for n, d in REGISTRY.items() if d.onnx_export is not None}
    return UnsupportedError(f"function '{op.fn}' has no ONNX exporter ({hint}); ONNX exporters exist for "
                            f"{', '.join(sorted(known))}", where=f"node '{op.node}'")


def _export_op(b: OnnxGraphBuilder, op: Op, batched: set) -> Val:
    b.node_context = op.node
    if op.kind == "expr":
        value = translate_expression(b, op)
    elif op.kind == "call":
        opdef = get_op(op.fn)
        fn = (opdef.onnx_export if opdef is not None else None) or ONNX_EXPORTERS.get(op.fn)
        if fn is None:
            raise _unsupported_op(op)
        value = fn(b, op)
    else:
        raise UnsupportedError(f"op kind '{op.kind}' has no ONNX translation", where=f"node '{op.node}'")
    if isinstance(value, Const):
        arr = value.array
        if arr.dtype.kind not in "biuf":
            raise UnsupportedError(f"'{op.out}' is not numeric", where=f"node '{op.node}'")
        value = b.const(arr.astype(float))
    value = b.tensor(value, "float")
    want_batched = op.out in batched
    if want_batched and not value.batched:
        value = b.expand_to_batch(value)
    want = b.program.shapes.get(op.out)
    if want is not None and b.program.sequence and value.batched:
        want = (TIME,) + tuple(want)
    if want is not None and tuple(want) != tuple(value.shape):
        raise UnsupportedError(f"exported '{op.out}' has per-trial shape {value.shape} but the program computes "
                               f"{tuple(want)} (an mdfbridge exporter bug; {BACKENDS_HINT})",
                               where=f"node '{op.node}'")
    return value


def _dims(shape: Any) -> list:
    """ONNX dims of a batched value: "batch", then the per-trial shape with TIME as "time"."""
    return [BATCH_DIM] + [TIME_DIM if d == TIME else int(d) for d in shape]


def _ensure_shapes(program: Program) -> None:
    """Programs lowered by `mdfbridge.lower` carry per-trial shapes; others get them by a one-trial dry run."""
    if program.shapes:
        return
    from ..importers.reference import runner_for

    runner = runner_for(program)
    lead = (1, 2) if program.sequence else (1,)
    inputs = {k: np.zeros(lead + tuple(s.shape if s.shape is not None else s.default.shape))
              for k, s in program.inputs.items()}
    with np.errstate(all="ignore"):
        env = runner.run(inputs, keep_env=True)["__env__"]
    program.shapes = {k: tuple(np.shape(v)[len(lead):] if k in runner.batched else np.shape(v))
                      for k, v in env.items() if not isinstance(v, list)}


def _output_names(program: Program) -> Dict[str, str]:
    """ONNX output name of each Program output: its own, or `<name>_output` when an input has that name."""
    names: Dict[str, str] = {}
    taken = set(program.inputs)
    for key in program.outputs:
        name, i = key, 1
        if name in taken:
            name = f"{key}_output"
            while name in taken or name in program.outputs:
                i += 1
                name = f"{key}_output{i}"
            log.info("output '%s' is also an input's name; the ONNX output is called '%s'", key, name)
        taken.add(name)
        names[key] = name
    return names


def program_to_onnx(program: Program, *, dtype: str = "float32", opset: int = MIN_OPSET,
                    name: Optional[str] = None, check: bool = True) -> onnx.ModelProto:
    """One ONNX model computing `program` on a batch (inputs/outputs named as the Program's, batch axis first).

    An output whose node is also an input (a one-node model) is called `<name>_output`, since ONNX names
    each tensor once.
    """
    if program.states:
        kinds = sorted({s.kind for s in program.states.values()})
        raise UnsupportedError(f"stateful programs cannot be exported to ONNX yet (state {sorted(program.states)} "
                               f"of kind {', '.join(kinds)}); run them with the numpy reference or torch backends")
    if not MIN_OPSET <= int(opset) <= onnx.defs.onnx_opset_version():
        raise UnsupportedError(f"opset must be between {MIN_OPSET} and {onnx.defs.onnx_opset_version()}, got {opset}")
    load_plugins()
    _ensure_shapes(program)
    b = OnnxGraphBuilder(program, dtype, int(opset))
    lead = (TIME,) if program.sequence else ()
    out_names = _output_names(program)
    b.reserved = set(program.inputs) | set(out_names.values())
    batched = batched_tensors(program)
    graph_inputs = []
    for key, spec in program.inputs.items():
        tensor = f"{spec.node}.{spec.port}"
        shape = tuple(program.shapes.get(tensor, spec.shape if spec.shape is not None else ()))
        b.used_names.add(key)
        b.env[tensor] = Val(key, True, lead + shape)
        graph_inputs.append(helper.make_tensor_value_info(key, b.elem_type, _dims(lead + shape)))
        if b.batch_source is None:
            b.batch_source = b.env[tensor]
    for op in program.ops:
        b.env[op.out] = _export_op(b, op, batched)
    b.node_context = ""
    graph_outputs = []
    for key, tensor in program.outputs.items():
        if tensor in b.env:
            val = b.env[tensor]
        elif tensor in program.params:
            val = b.param(TensorRef(tensor))
        else:
            raise UnsupportedError(f"output '{key}' reads '{tensor}', which nothing computes")
        val = b.expand_to_batch(val) if not val.batched else val
        if not _rename_output(b, val.name, out_names[key]):
            b.emit("Identity", [val], shape=val.shape, batched=True, out=out_names[key])
        graph_outputs.append(helper.make_tensor_value_info(out_names[key], b.elem_type, _dims(val.shape)))
    graph = helper.make_graph(b.nodes, name or program.name, graph_inputs, graph_outputs, initializer=b.initializers)
    from .. import __version__

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(opset))], producer_name="mdfbridge",
                              producer_version=__version__,
                              doc_string=f"mdfbridge export of MDF model '{program.name}' ({dtype})")
    model.ir_version = onnx_ir_version(opset)
    helper.set_model_props(model, {"mdfbridge.dtype": dtype, "mdfbridge.model": str(program.name)})
    if check:
        onnx.checker.check_model(model, full_check=True)
    log.debug("exported program '%s' to ONNX: %d nodes, %d initializers, opset %d, IR %d", program.name,
              len(b.nodes), len(b.initializers), opset, model.ir_version)
    return model


def _rename_output(b: OnnxGraphBuilder, name: str, out: str) -> bool:
    """Name the node output `name` `out` (no Identity node) when only nodes of this graph produce/read it."""
    producers = [n for n in b.nodes if name in n.output]
    if len(producers) != 1 or name == out or out in b.used_names - {out} and out != name:
        return False
    if any(name == i.name for i in b.initializers):
        return False
    for n in b.nodes:
        for seq in (n.input, n.output):
            for i, v in enumerate(seq):
                if v == name:
                    seq[i] = out
    for k, v in list(b.env.items()):
        if v.name == name:
            b.env[k] = Val(out, v.batched, v.shape, v.kind)
    b.used_names.add(out)
    return True


def mdf_to_onnx(doc: Any, *, graph: Optional[str] = None, **kwargs: Any) -> onnx.ModelProto:
    """Lower an MDF document (path, dict or modeci-mdf Model) and export it (see `program_to_onnx`)."""
    from ..program import Program as _Program

    if isinstance(doc, _Program):
        return program_to_onnx(doc, **kwargs)
    if isinstance(doc, (str, os.PathLike)):
        from ..api import load_program

        program = load_program(doc, graph)
    else:
        from ..lowering import lower

        program = lower(doc, graph)
    return program_to_onnx(program, **kwargs)


def save_onnx(model: onnx.ModelProto, path: Union[str, "os.PathLike[str]"]) -> None:
    """Write an ONNX model atomically (temporary file + rename)."""
    from ..document import atomic_write_bytes

    atomic_write_bytes(path, model.SerializeToString())
