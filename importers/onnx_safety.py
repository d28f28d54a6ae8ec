"""Reading ONNX files that may be broken or hostile: one `OnnxError` (or `LimitError`) line for each problem,
found before numpy, onnx's reference evaluator or onnxruntime touch the data.

`read_onnx` reads a file (a regular file within `max_file_bytes`), parses the protobuf without following
external data, refuses external data outside the model's folder (absolute paths, '..', symlinks leading out,
in every graph and subgraph, initializers and Constant attributes alike), then loads it and checks the model
(`check_model`): not empty, an IR version and default-domain opset the installed onnx knows, every tensor's data
as long as its dims say. `captured_names` / `node_inputs` give the tensors a node really reads, including those its
subgraphs (If branches, Loop and Scan bodies, recursively) capture from outer scopes. `GuardedEvaluator` is onnx's
reference evaluator with a budget: no Loop beyond `max_loop_iterations` (checked before it runs), no op whose
output would exceed `max_fold_elements` (constants) or `max_elements` (the rest), computed from shapes first.
`wrap_onnxruntime` turns onnxruntime's exceptions into OnnxError.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, NodeProto, TensorProto

from .. import limits
from ..errors import MdfBridgeError, OnnxError
from ..ops.onnx_probe import _SIZE_KEEPING, _element_count, _fast, _shape, node_label, predicted_elements  # noqa: F401

log = logging.getLogger(__name__)

MAX_MESSAGE = 300
KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")


def one_line(text: Any, limit: int = MAX_MESSAGE) -> str:
    """`text` as one line (whitespace runs made one space), cut to `limit` characters (default 300)."""
    flat = re.sub(r"\s+", " ", str(text)).strip()
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


# ----------------------------------------------------------------------------------------- graph structure
def subgraphs(node: NodeProto) -> Iterator[GraphProto]:
    """The graphs in a node's attributes (If's branches, Loop's and Scan's bodies, ...)."""
    for att in node.attribute:
        if att.type == AttributeProto.GRAPH:
            yield att.g
        elif att.type == AttributeProto.GRAPHS:
            yield from att.graphs


def captured_names(graph: GraphProto) -> Set[str]:
    """Names a (sub)graph reads that it does not define: the tensors it captures from outer scopes (through its
    nodes' inputs, its outputs, and the captures of nested subgraphs)."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    defined |= {i.values.name for i in graph.sparse_initializer}
    used: Set[str] = set()
    for node in graph.node:
        used.update(node_inputs(node))
        defined.update(o for o in node.output if o)
    used.update(o.name for o in graph.output)
    return {n for n in used if n and n not in defined}


def node_inputs(node: NodeProto) -> List[str]:
    """The tensors a node reads: its inputs, then the names its subgraphs capture from outer scopes (sorted)."""
    names = [n for n in node.input if n]
    if not node.attribute:  # (no attribute, no subgraph)
        return names
    captured: Set[str] = set()
    for g in subgraphs(node):
        captured |= captured_names(g)
    return names + sorted(captured - set(names))


def has_subgraphs(node: NodeProto) -> bool:
    """Whether the node carries graph attributes (If, Loop, Scan, ...)."""
    return any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute)


def all_graphs(graph: GraphProto) -> Iterator[GraphProto]:
    """The graph and every subgraph in it, recursively."""
    stack = [graph]
    while stack:
        g = stack.pop()
        yield g
        for node in g.node:
            if node.attribute:  # (no attribute, no subgraph: the common node costs one test)
                stack.extend(subgraphs(node))


def subgraph_nodes(graph: GraphProto) -> List[Tuple[NodeProto, int]]:
    """(node, number of nodes in its subgraphs) of each top-level node that has subgraphs."""
    out = []
    for node in graph.node:
        if has_subgraphs(node):
            out.append((node, sum(len(g.node) for sub in subgraphs(node) for g in all_graphs(sub))))
    return out




def all_tensors(model: onnx.ModelProto) -> Iterator[Tuple[TensorProto, str]]:
    """(tensor, what it is) for every initializer and tensor attribute, in every graph and subgraph."""
    for g in all_graphs(model.graph):
        for t in g.initializer:
            yield t, f"initializer '{t.name}'"
        for s in g.sparse_initializer:
            yield s.values, f"sparse initializer '{s.values.name}'"
        for node in g.node:
            for att in node.attribute if node.attribute else ():
                if att.type == AttributeProto.TENSOR:
                    yield att.t, f"attribute '{att.name}' of node '{node_label(node)}'"
                elif att.type == AttributeProto.TENSORS:
                    for t in att.tensors:
                        yield t, f"attribute '{att.name}' of node '{node_label(node)}'"


# ----------------------------------------------------------------------------------------- reading files
def read_onnx(path: Union[str, "os.PathLike[str]"]) -> onnx.ModelProto:
    """The checked ModelProto of an ONNX file (external data loaded from the model's folder only).

    path: the .onnx file. Not a regular file, over `max_file_bytes`, not a protobuf, external data outside the
    model's folder, and what `check_model` refuses raise OnnxError or LimitError naming the file."""
    where = os.fspath(path)
    try:
        info = os.stat(where)
    except OSError as exc:
        raise OnnxError(f"cannot read ONNX model: {exc.strerror or exc}", where=where) from None
    if not stat.S_ISREG(info.st_mode):
        raise OnnxError("not a regular file (a folder, device or FIFO); expected an ONNX model file", where=where)
    if info.st_size > limits.current().max_file_bytes:
        raise limits.LimitError(f"the file has {info.st_size:,} bytes, over the limit max_file_bytes="
                                f"{limits.current().max_file_bytes:,} (raise it with --limit max_file_bytes=N)",
                                where=where)
    try:
        with open(where, "rb") as fh:
            data = fh.read(limits.current().max_file_bytes + 1)
    except OSError as exc:
        raise OnnxError(f"cannot read ONNX model: {exc.strerror or exc}", where=where) from None
    model = parse_onnx(data, where)
    check_external_data(model, Path(where).resolve().parent, where)
    if any(onnx.external_data_helper.uses_external_data(t) for t, _ in all_tensors(model)):
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(Path(where).resolve().parent))
        except Exception as exc:  # noqa: BLE001 - onnx's own refusals (missing file, bounds)
            raise OnnxError(f"cannot load external data: {one_line(exc)}", where=where) from None
    check_model(model, where)
    return model


def parse_onnx(data: bytes, where: str = "<bytes>") -> onnx.ModelProto:
    """The ModelProto of serialised bytes, external data not followed. data: the bytes; where: the file, for the
    message (default '<bytes>'). Bytes that are not an ONNX protobuf raise OnnxError."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError (and RuntimeError from the C++ parser)
        raise OnnxError(f"not an ONNX model: the protobuf does not parse ({type(exc).__name__}: {one_line(exc, 120)}); "
                        "is the file truncated or not .onnx?", where=where) from None
    return model


def check_external_data(model: onnx.ModelProto, folder: Optional[Path], where: str) -> None:
    """Refuse external data that is not a relative path inside `folder` (the model's folder, symlinks resolved;
    None: the model came as bytes, so no external data is allowed)."""
    for tensor, what in all_tensors(model):
        if not onnx.external_data_helper.uses_external_data(tensor):
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        if folder is None:
            raise OnnxError(f"{what} keeps its data in external file '{location}'; give the model as a file "
                            "path so the file is looked up next to it", where=where)
        parts = Path(location).parts
        if not location or os.path.isabs(location) or ".." in parts or "\\" in location or ":" in location:
            raise OnnxError(f"{what}: external data location '{location}' is not a relative path inside the "
                            "model's folder (refused)", where=where)
        target = (folder / location).resolve()
        if folder != target and folder not in target.parents:
            raise OnnxError(f"{what}: external data '{location}' leads outside the model's folder (a symlink to "
                            f"{target}; refused)", where=where)
        if not target.is_file():
            raise OnnxError(f"{what}: external data file '{location}' is missing or not a regular file",
                            where=where)
        try:
            offset = int(entries.get("offset", "0") or 0)
            length = int(entries["length"]) if entries.get("length") else None
        except ValueError:
            raise OnnxError(f"{what}: external data offset/length are not integers", where=where) from None
        size = target.stat().st_size
        if offset < 0 or (length is not None and (length < 0 or offset + length > size)) or offset > size:
            raise OnnxError(f"{what}: external data offset {offset} length {length} outside '{location}' "
                            f"({size} bytes)", where=where)




def check_tensor(tensor: TensorProto, what: str, where: str) -> None:
    """Refuse a tensor whose element type is unknown or whose data (raw or typed) is not as long as its dims say."""
    if any(d < 0 for d in tensor.dims):
        raise OnnxError(f"{what} has negative dims {list(tensor.dims)}", where=where)
    if tensor.data_location == TensorProto.EXTERNAL and not tensor.HasField("raw_data"):
        return  # not loaded (a check of the model before its external data): checked when loaded
    n = _element_count(tensor.dims)
    try:
        np_type = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
    except Exception:  # noqa: BLE001 - KeyError / ValueError for an unknown or undefined data type
        raise OnnxError(f"{what} has unknown element type {tensor.data_type}", where=where) from None
    name = TensorProto.DataType.Name(tensor.data_type).lower()
    four_bit = name in ("int4", "uint4", "float4e2m1")
    if tensor.data_type == TensorProto.STRING:
        have, want = len(tensor.string_data), n
    elif tensor.HasField("raw_data"):
        have = len(tensor.raw_data)
        want = (n + 1) // 2 if four_bit else n * np.dtype(np_type).itemsize
    else:
        have = len(getattr(tensor, field))
        want = (n + 1) // 2 if four_bit else 2 * n if name.startswith("complex") else n
    if have != want:
        raise OnnxError(f"{what}: dims {list(tensor.dims)} ({name}) need {want:,} "
                        f"{'bytes' if tensor.HasField('raw_data') else 'values'} of data, the file holds {have:,} "
                        "(missing or short data)", where=where)


def check_model(model: onnx.ModelProto, where: str = "<model>") -> None:
    """Refuse an empty model, an IR version or default-domain opset newer than the installed onnx reads, and
    tensors whose data is missing or short. model: the ModelProto (external data loaded); where: the file."""
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise OnnxError("empty ONNX model (no graph, nodes or outputs)", where=where)
    if model.ir_version <= 0:
        raise OnnxError("the model has no IR version (ir_version 0): not a valid ONNX model", where=where)
    if model.ir_version > onnx.IR_VERSION:
        raise OnnxError(f"IR version {model.ir_version} is newer than the installed onnx {onnx.__version__} reads "
                        f"(up to {onnx.IR_VERSION})", where=where)
    newest = onnx.defs.onnx_opset_version()
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version > newest:
            raise OnnxError(f"opset {o.version} of the default ONNX domain is newer than the installed onnx "
                            f"{onnx.__version__} knows (up to {newest})", where=where)
    for tensor, what in all_tensors(model):
        check_tensor(tensor, what, where)
    check_names(model, where)


def check_names(model: onnx.ModelProto, where: str = "<model>") -> None:
    """Refuse a name that is not text: protobuf hands a string field holding invalid UTF-8 back as bytes. The
    names that become MDF ids or select an op are checked (a node's input and output names are only looked up:
    one of bytes is a tensor no node computes, refused as such). model: the ModelProto; where: the file."""
    for graph in all_graphs(model.graph):
        named = itertools.chain(graph.input, graph.output, graph.initializer, graph.value_info)
        names = itertools.chain([graph.name], (v.name for v in named), (n.name for n in graph.node),
                                (n.op_type for n in graph.node))
        bad = next((n for n in names if type(n) is not str), None)
        if bad is not None:
            raise OnnxError(f"the name {bad[:40]!r} in graph '{graph.name!s}' is not valid UTF-8 text", where=where)


def load_model(model: Union[str, "os.PathLike[str]", bytes, onnx.ModelProto], where: Optional[str] = None
               ) -> onnx.ModelProto:
    """A checked ModelProto from a path (`read_onnx`), serialised bytes (no external data allowed) or a ModelProto
    (checked as it is). where: the name for messages (default: the path, or '<bytes>' / '<model>')."""
    if isinstance(model, onnx.ModelProto):
        check_external_data(model, None, where or "<model>")  # (onnx.load loads it; unloaded data is not followed)
        check_model(model, where or "<model>")
        return model
    if isinstance(model, (bytes, bytearray)):
        proto = parse_onnx(bytes(model), where or "<bytes>")
        check_external_data(proto, None, where or "<bytes>")
        check_model(proto, where or "<bytes>")
        return proto
    return read_onnx(model)


# ----------------------------------------------------------------------------------------- onnxruntime
def is_onnxruntime_error(exc: BaseException) -> bool:
    """Whether `exc` is one of onnxruntime's own exceptions (onnxruntime.capi.onnxruntime_pybind11_state.*)."""
    return type(exc).__module__.startswith("onnxruntime")


def wrap_onnxruntime(call: Callable[[], Any], where: str, doing: str) -> Any:
    """call() with onnxruntime's exceptions raised as one-line OnnxError. where: the file; doing: what was being
    done, for the message (e.g. 'loading the model')."""
    try:
        return call()
    except MdfBridgeError:
        raise
    except Exception as exc:  # noqa: BLE001
        if not is_onnxruntime_error(exc):
            raise
        text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", str(exc))
        raise OnnxError(f"onnxruntime refused the model while {doing}: {type(exc).__name__}: {one_line(text)}",
                        where=where) from None


# ----------------------------------------------------------------------------------------- folding budget
def _guard(node: NodeProto, run: Callable[..., Any], limit_name: str, where: str, opset: Optional[int]
           ) -> Callable[..., Any]:
    label = f"ONNX node '{node_label(node)}' ({node.op_type})"

    def guarded(*args: Any, **kwargs: Any) -> Any:
        count = predicted_elements(node, args, opset)
        if count is not None:
            limits.check_elements(count, f"{label}'s output", where=where, limit=limit_name)
        out = run(*args, **kwargs)
        for v in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(v, np.ndarray):
                limits.check_elements(int(v.size), f"{label}'s output", where=where, limit=limit_name)
        return out

    return guarded


def guarded_evaluator(model: onnx.ModelProto, const_outputs: Set[str], where: str) -> Any:
    """onnx's ReferenceEvaluator for `model` with the folding budget (see the module docstring). const_outputs:
    tensors that are constants (their nodes get `max_fold_elements`; the others `max_elements`; nodes inside
    subgraphs are folded constants); where: the file, for messages."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops.op_loop import Loop as _Loop

    class Loop(_Loop):  # (the class name is the op type onnx's evaluator replaces)
        def _run(self, M: Any, cond: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N803 - ONNX's names
            bound = limits.current().max_loop_iterations
            label = f"ONNX node '{node_label(self.onnx_node)}' (Loop)"
            trips = None if M is None else int(np.asarray(M).reshape(-1)[0]) if np.size(M) else None
            if trips is not None and trips > bound:
                raise limits.LimitError(f"{label} would run {trips:,} iterations to fold, over the limit "
                                        f"max_loop_iterations={bound:,} (raise it with --limit "
                                        "max_loop_iterations=N)", where=where)
            self._mdfbridge_iterations = 0
            return super()._run(M, cond, *args, **kwargs)

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            body = getattr(self, "_run_body", None)  # (onnx sets it per instance, when loading the body)
            if body is not None:
                self._run_body = self._count(body)

        def _count(self, body: Callable[..., Any]) -> Callable[..., Any]:
            def counted(*args: Any, **kwargs: Any) -> Any:
                self._mdfbridge_iterations = getattr(self, "_mdfbridge_iterations", 0) + 1
                bound = limits.current().max_loop_iterations
                if self._mdfbridge_iterations > bound:
                    raise limits.LimitError(
                        f"ONNX node '{node_label(self.onnx_node)}' (Loop) runs more than {bound:,} iterations to "
                        "fold (its condition stays true), over the limit max_loop_iterations (raise it with "
                        "--limit max_loop_iterations=N)", where=where)
                return body(*args, **kwargs)

            return counted

    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    top = [True]  # (the first evaluator built is the model's; those of its subgraphs come after)

    class Guarded(ReferenceEvaluator):
        def __init__(self, *a: Any, **kw: Any) -> None:
            outer = top[0]
            top[0] = False
            super().__init__(*a, **kw)
            for rt in self.rt_nodes_:
                proto = rt.onnx_node
                const = not outer or any(o in const_outputs for o in proto.output if o)
                rt.run = _guard(proto, rt.run, "max_fold_elements" if const else "max_elements", where, opset)

    return Guarded(model, new_ops=[Loop])


def describe_subgraph_ops(graph: GraphProto) -> Iterable[str]:
    """'Op 'name' (k subgraph nodes)' for each top-level node with subgraphs."""
    for node, count in subgraph_nodes(graph):
        yield f"{node.op_type} '{node_label(node)}' ({count} subgraph nodes)"


def external_locations(model: onnx.ModelProto) -> Dict[str, str]:
    """Tensor description -> external data location, for every tensor kept outside the file."""
    out = {}
    for tensor, what in all_tensors(model):
        if onnx.external_data_helper.uses_external_data(tensor):
            out[what] = next((e.value for e in tensor.external_data if e.key == "location"), "")
    return out


# ----------------------------------------------------------------------------------------- probe runs

class ProbeNodeError(RuntimeError):
    """One node of a probe run failed: `node` (its label), `op_type`, and `reason`, the innermost error's first
    line (the reference evaluator's own wrapping and tracebacks left out)."""

    def __init__(self, node: str, op_type: str, reason: str) -> None:
        super().__init__(f"ONNX node '{node}' ({op_type}): {reason}")
        self.node, self.op_type, self.reason = node, op_type, reason


def root_reason(exc: BaseException, limit: int = 160) -> str:
    """The innermost cause of `exc` as one short line: its type and the first line of its message."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if inner is None or isinstance(inner, MdfBridgeError):  # (an error of ours being handled: not a cause)
            break
        exc = inner
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return one_line(f"{type(exc).__name__}: {first}" if first else type(exc).__name__, limit)


class GuardedRunner:
    """Runs a model's graph on probe inputs with the folding budget: common float ops directly in numpy (the
    reference evaluator's per-node overhead dominates large graphs), every other node by onnx's reference
    evaluator (built once, for those nodes only, guarded as `guarded_evaluator`). model: the ModelProto;
    const_outputs: the tensors that are constants; inits: initializer name -> array; where: the file."""

    def __init__(self, model: onnx.ModelProto, const_outputs: Set[str], inits: Dict[str, np.ndarray],
                 where: str) -> None:
        self.model, self.const_outputs, self.inits, self.where = model, const_outputs, inits, where
        self.nodes = list(model.graph.node)
        # each node's input and output names, read from the protobuf once for all the probe runs
        self.ins = [list(n.input) for n in self.nodes]
        self.outs = [list(n.output) for n in self.nodes]
        self.fast = [_fast(n) for n in self.nodes]
        self.limit = ["max_fold_elements" if any(o in const_outputs for o in outs if o) else "max_elements"
                      for outs in self.outs]
        slow = [i for i, f in enumerate(self.fast) if f is None]
        self.rt: Dict[int, Any] = dict(zip(slow, self._evaluate([self.nodes[i] for i in slow]))) if slow else {}

    def _evaluate(self, nodes: List[NodeProto]) -> List[Any]:
        """The reference evaluator's (guarded) runtime nodes for `nodes`, in order."""
        produced = {o for n in nodes for o in n.output if o}
        needed = sorted({i for n in nodes for i in node_inputs(n)} - produced)
        graph = onnx.helper.make_graph(nodes, "probe", [onnx.helper.make_empty_tensor_value_info(n) for n in needed],
                                       [])
        sub = onnx.helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                     functions=list(self.model.functions))
        sub.ir_version = self.model.ir_version
        return list(guarded_evaluator(sub, self.const_outputs, self.where).rt_nodes_)

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, Any]:
        """Every tensor's value (inputs and initializers included) for the graph inputs `feeds`."""
        results: Dict[str, Any] = {"": None}
        results.update(self.inits)
        results.update(feeds)
        for i, node in enumerate(self.nodes):
            try:
                args = [results[n] for n in self.ins[i]]
            except KeyError as exc:
                raise RuntimeError(f"input {exc} of node '{node_label(node)}' is neither a graph input, an "
                                   "initializer nor computed before it") from None
            try:
                fast = self.fast[i]
                out = fast(args, self.limit[i], self.where) if fast is not None else None
                if out is None:
                    rt = self.rt.get(i)
                    if rt is None:
                        rt = self.rt[i] = self._evaluate([node])[0]
                    out = rt.run(*args, context=results) if rt.need_context() else rt.run(*args)
            except (MdfBridgeError, MemoryError, RecursionError):
                raise
            except Exception as exc:  # noqa: BLE001 - numpy's and the reference evaluator's errors: one line
                raise ProbeNodeError(node_label(node), node.op_type, root_reason(exc)) from exc
            for name, value in zip(self.outs[i], out):
                if name:
                    results[name] = value
        return results
