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
from onnx import TensorProto, helper

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


def recorded_interface(program: Program) -> Dict[str, Any]:
    """What an ONNX import recorded about the original model (`importers.onnx`, the graph's
    `metadata.mdfbridge.onnx`): 'inputs'/'outputs' (MDF node id -> ONNX name, in the ONNX graph's order),
    'input_types'/'output_types' (node id -> ONNX element type name), 'dtype', 'batch_axis'; {} for a Program
    not imported from ONNX."""
    meta = (program.metadata.get("graph_metadata") or {}).get("onnx")
    return meta if isinstance(meta, dict) else {}


def _restored_names(program: Program, recorded: Dict[str, Any]) -> "tuple[Dict[str, str], Dict[str, str]]":
    """The ONNX names of the Program's inputs and outputs (key -> name), in the order to write them: the original
    model's names and order where an ONNX import recorded them (ids the Program lacks are skipped; its other
    inputs/outputs follow under their own names), else the Program's. A recorded name that would clash is not
    restored (logged)."""
    def restore(keys: Any, mapping: Any) -> Dict[str, str]:
        mapping = mapping if isinstance(mapping, dict) else {}
        order = {k: i for i, k in enumerate(mapping)}
        ordered = sorted(keys, key=lambda k: order.get(k, len(order)))
        return {k: str(mapping.get(k, k)) for k in ordered}

    ins = restore(program.inputs, recorded.get("inputs"))
    outs = restore(program.outputs, recorded.get("outputs"))
    for table in (ins, outs):  # (an output may carry an input's name: an ONNX graph passing an input through)
        seen: Dict[str, str] = {}
        for key, name in list(table.items()):
            if name in seen and name != key:
                log.info("the ONNX name '%s' of '%s' is taken (by '%s'); writing '%s'", name, key, seen[name], key)
                table[key] = name = key
            seen.setdefault(name, key)
        if len(set(table.values())) != len(table):  # (a clash left after falling back: the Program's names)
            table.update({k: k for k in table})
    return ins, outs


def _output_names(program: Program, restored: Optional[Dict[str, str]] = None,
                  taken_names: Optional[set] = None) -> Dict[str, str]:
    """ONNX output name of each Program output: `restored`'s (default: its own), or `<name>_output` when an input
    has that name."""
    names: Dict[str, str] = {}
    taken = set(program.inputs) if taken_names is None else set(taken_names)
    restored = restored if restored is not None else {k: k for k in program.outputs}
    for key, base in restored.items():
        name, i = base, 1
        if name in taken:
            name = f"{base}_output"
            while name in taken or name in program.outputs or name in restored.values():
                i += 1
                name = f"{base}_output{i}"
            log.info("output '%s' is also an input's name; the ONNX output is called '%s'", base, name)
        taken.add(name)
        names[key] = name
    return names


def program_to_onnx(program: Program, *, dtype: Any = None, opset: int = MIN_OPSET,
                    name: Optional[str] = None, check: bool = True,
                    batch_axis: Optional[bool] = None, restore: bool = True) -> onnx.ModelProto:
    """One ONNX model computing `program` on a batch (inputs/outputs named as the Program's, batch axis first).

    program: a stateless Program whose schedule is the topological order (stateful ones raise UnsupportedError);
    dtype: the element type of the model's computation and weights, 'float32' or 'float64' (a string, numpy or
    torch dtype; default None: the float type an ONNX import recorded, a float64 model staying float64, else
    'float32'); opset: the ONNX opset to write, from 17 (the default, `MIN_OPSET`) to the installed onnx's latest;
    name: the ONNX graph's name (default None: the Program's name); check: run
    `onnx.checker.check_model(full_check=True)` on the result (default True); batch_axis: True gives the graph
    inputs and outputs a leading dynamic batch axis ("batch"), False gives them one trial's shape (each run of the
    model is one trial: what an ONNX import with batch_axis=False read), None (the default) does what the document
    records (False for a model imported with batch_axis=False, else True); restore: give a Program imported from
    ONNX the original model's interface back (default True, see below; False: the Program's own input and output
    names and order, element types of `dtype`, as mdfbridge's onnxruntime backend runs a Program). An op without
    an ONNX exporter raises UnsupportedError naming the node.

    A Program imported from ONNX (`importers.onnx.onnx_to_mdf`) gets the original graph's input and output names
    back, in the original order, with their element types (a float16 input is cast to `dtype` inside the graph
    and an output back to float16; inputs and outputs of the model's own float type take `dtype`). An output
    whose node is also an input (a one-node model) is called
    `<name>_output`, since ONNX names each tensor once.
    """
    from ..dtypes import dtype_name

    recorded = recorded_interface(program) if restore else {}
    default = str(recorded["dtype"]) if recorded.get("dtype") in ("float32", "float64") else "float32"
    dtype = dtype_name(dtype, ("float32", "float64"), "ONNX export dtype", default=default)
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
    if batch_axis is None:
        batch_axis = recorded.get("batch_axis") is not False
    one_trial = not batch_axis
    if one_trial and program.sequence:
        raise UnsupportedError("a sequence program's ONNX inputs are (batch, time, ...); export it with "
                               "batch_axis=True")
    in_names, restored_outs = _restored_names(program, recorded)
    out_names = _output_names(program, restored_outs, set(in_names.values()))
    # (the recorded element types where they differ from the recorded model's float type: a float16 interface of a
    # model computed in float32; interfaces of the model's own type take `dtype`)
    own = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[default]
    in_types = {k: t for k, t in _elem_types(recorded.get("input_types")).items() if t != own}
    out_types = {k: t for k, t in _elem_types(recorded.get("output_types")).items() if t != own}
    b.reserved = set(in_names.values()) | set(out_names.values())
    batched = batched_tensors(program)
    graph_inputs = []
    for key, onnx_name in in_names.items():
        spec = program.inputs[key]
        tensor = f"{spec.node}.{spec.port}"
        shape = tuple(program.shapes.get(tensor, spec.shape if spec.shape is not None else ()))
        b.used_names.add(onnx_name)
        elem = in_types.get(key, b.elem_type)
        graph_inputs.append(helper.make_tensor_value_info(onnx_name, elem, list(shape) if one_trial else
                                                          _dims(lead + shape)))
        b.env[tensor] = Val(onnx_name, not one_trial, lead + shape)
        if elem != b.elem_type:  # (the original's element type at the interface, the model's dtype inside)
            b.env[tensor] = b.emit("Cast", [onnx_name], shape=lead + shape, batched=not one_trial, to=b.elem_type,
                                   out=b.fresh(f"{onnx_name}_as_{dtype}"))
        if one_trial:  # (inside, the one trial is a batch of one)
            b.env[tensor] = b.emit("Unsqueeze", [b.env[tensor], b.int64s([0], "axes")], shape=shape, batched=True,
                                   out=b.fresh(f"{onnx_name}_trials"))
        if b.batch_source is None:
            b.batch_source = b.env[tensor]
    for op in program.ops:
        b.env[op.out] = _export_op(b, op, batched)
    b.node_context = ""
    graph_outputs = []
    for key in out_names:
        tensor = program.outputs[key]
        if tensor in b.env:
            val = b.env[tensor]
        elif tensor in program.params:
            val = b.param(TensorRef(tensor))
        else:
            raise UnsupportedError(f"output '{key}' reads '{tensor}', which nothing computes")
        val = b.tensor(val, "float")  # a comparison's bools are 0.0 and 1.0, as the numpy reference gives them
        val = b.expand_to_batch(val) if not val.batched else val
        elem = out_types.get(key, b.elem_type)
        if restored_outs[key] != out_names[key] and val.name == restored_outs[key] and elem == b.elem_type \
                and not one_trial:  # the original graph's output is its input of that name, passed through
            graph_outputs.append(helper.make_tensor_value_info(val.name, elem, _dims(val.shape)))
            continue
        if one_trial:
            val = b.emit("Squeeze", [val, b.int64s([0], "axes")], shape=val.shape, batched=False,
                         out=out_names[key] if elem == b.elem_type else None)
        if elem != b.elem_type:
            b.emit("Cast", [val], shape=val.shape, batched=val.batched, to=elem, out=out_names[key])
        elif not one_trial and not _rename_output(b, val.name, out_names[key]):
            b.emit("Identity", [val], shape=val.shape, batched=True, out=out_names[key])
        graph_outputs.append(helper.make_tensor_value_info(out_names[key], elem, list(val.shape) if one_trial else
                                                           _dims(val.shape)))
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


def _elem_types(recorded: Any) -> Dict[str, int]:
    """Node id -> ONNX element type of the recorded interface types the exporter can write (float types; names
    onnx does not know are skipped)."""
    out: Dict[str, int] = {}
    for key, type_name in (recorded.items() if isinstance(recorded, dict) else ()):
        if type_name in ("FLOAT", "DOUBLE", "FLOAT16", "BFLOAT16"):
            out[str(key)] = int(TensorProto.DataType.Value(type_name))
    return out


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
    `program_to_onnx`'s keyword arguments (dtype, default None: the recorded float type, else 'float32'; opset,
    default 17; name, default None; check, default True; batch_axis, default None: as the document records;
    restore, default True)."""
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
