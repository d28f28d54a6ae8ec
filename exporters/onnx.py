"""`Program` -> one ONNX `ModelProto` that onnxruntime runs with the numpy reference's numbers.

Graph inputs and outputs carry the Program's input/output names with a dynamic batch axis ("batch") first;
parameters become initializers (without the batch axis; broadcasting does the rest). Each registry op is
translated by its record's `onnx_export(builder, op)` (mdfbridge/ops/to_onnx.py; the GRU blocks'
exporters/onnx_gru.py), which reads the op's arguments and emits nodes through the builder
(`exporters/onnx_graph.py`), returning the op's value (MDF value expressions arrive lowered to registry ops).
What has no translation raises `UnsupportedError` naming the node.

Sequence programs (`program.sequence`) take inputs (batch, time, ...): their batched values carry the time axis
first in the per-trial shape, as `TIME` (-1), and ONNX names it "time".
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Union

import onnx
from onnx import helper

from ..errors import UnsupportedError
from ..executor import batched_tensors
from ..ops import REGISTRY, get_op
from ..ops.onnx_rewrites import rewrite_for_onnx
from ..program import Op, Program, TensorRef
from ..scheduling import require_static
from ..shapes import infer_shapes
from .onnx_graph import BACKENDS_HINT, BATCH_DIM, MIN_OPSET, TIME, TIME_DIM, Const, OnnxGraphBuilder, Val

log = logging.getLogger(__name__)

__all__ = ["program_to_onnx", "mdf_to_onnx", "save_onnx", "onnx_ir_version", "OnnxGraphBuilder", "Val", "Const"]


def onnx_ir_version(opset: int) -> int:
    """The lowest ONNX IR version that allows `opset` (IR 8 for opset 17; onnxruntime accepts up to 13)."""
    return int(helper.find_min_ir_version_for([helper.make_opsetid("", int(opset))]))


# --------------------------------------------------------------------------- the Program

def _unsupported_op(op: Op) -> UnsupportedError:
    opdef = get_op(op.fn)
    runs = [n for n, f in (("numpy reference", opdef and opdef.numpy), ("torch", opdef and opdef.torch)) if f]
    hint = f"backends that can run it: {', '.join(runs)}" if runs else "no backend implements it"
    exported = sorted(name for name, d in REGISTRY.items() if d.onnx_export is not None)
    return UnsupportedError(f"function '{op.fn}' has no ONNX exporter ({hint}); ONNX exporters exist for "
                            f"{', '.join(exported)}", where=f"node '{op.node}'")


def _export_op(b: OnnxGraphBuilder, op: Op, batched: set) -> Val:
    """The value of one Program op (a float tensor, or a bool one for comparisons and logic), with the batch axis
    where the program has one."""
    b.node_context = op.node
    opdef = get_op(op.fn)
    if opdef is None or opdef.onnx_export is None:
        raise _unsupported_op(op)
    value = opdef.onnx_export(b, op)
    if isinstance(value, Const):
        arr = value.array
        if arr.dtype.kind not in "biuf":
            raise UnsupportedError(f"'{op.out}' is not numeric", where=f"node '{op.node}'")
        value = b.const(arr.astype(float), name=op.out)
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


def program_to_onnx(program: Program, *, dtype: Any = "float32", opset: int = MIN_OPSET,
                    name: Optional[str] = None, check: bool = True) -> onnx.ModelProto:
    """One ONNX model computing `program` on a batch (inputs/outputs named as the Program's, batch axis first).

    program: a stateless Program whose schedule is the topological order (stateful ones raise UnsupportedError);
    dtype: the element type of the model's inputs, outputs and weights, 'float32' (default) or 'float64'; opset:
    the ONNX opset to write, from 17 (the default, `MIN_OPSET`) to the installed onnx's latest; name: the ONNX
    graph's name (default None: the Program's name); check: run `onnx.checker.check_model(full_check=True)` on
    the result (default True). An op without an ONNX exporter raises UnsupportedError naming the node.

    An output whose node is also an input (a one-node model) is called `<name>_output`, since ONNX names
    each tensor once. dtype: the tensor type, 'float32' (default) or 'float64' as a string, numpy or torch dtype.
    """
    from ..dtypes import dtype_name

    dtype = dtype_name(dtype, ("float32", "float64"), "ONNX export dtype", default="float32")
    require_static(program.schedule, 1, "onnx")
    if program.states:
        kinds = sorted({s.kind for s in program.states.values()})
        raise UnsupportedError(f"stateful programs cannot be exported to ONNX yet (state {sorted(program.states)} "
                               f"of kind {', '.join(kinds)}); run them with the numpy reference or torch backends")
    if not MIN_OPSET <= int(opset) <= onnx.defs.onnx_opset_version():
        raise UnsupportedError(f"opset must be between {MIN_OPSET} and {onnx.defs.onnx_opset_version()}, got {opset}")
    if not program.shapes:  # Programs lowered by `mdfbridge.lower` carry their shapes
        infer_shapes(program)
    program = rewrite_for_onnx(program)  # exact rewrites to fewer nodes (a copy; the caller's Program unchanged)
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
        val = b.tensor(val, "float")  # a comparison's bools are 0.0 and 1.0, as the numpy reference gives them
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
    """Lower an MDF document and export it (see `program_to_onnx`).

    doc: an MDF file path (str or path-like), a serialised document dict, a modeci-mdf Model, or a Program
    (exported as it is); graph: the id of the graph to lower (default None: the first); kwargs:
    `program_to_onnx`'s keyword arguments (dtype, default 'float32'; opset, default 17; name, default None;
    check, default True)."""
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


def save_onnx(model: onnx.ModelProto, path: Union[str, "os.PathLike[str]"], *, force: bool = False) -> None:
    """Write an ONNX model atomically (temporary file + rename).

    model: the `onnx.ModelProto`; path: the file to write (str or path-like, e.g. `model.onnx`); force: replace a
    read-only file too (default False)."""
    from ..document import atomic_write_bytes

    atomic_write_bytes(path, model.SerializeToString(), force=force)
