"""Lower an MDF document (modeci-mdf `Model` or its serialised dict) to a `Program`.

Plug-ins (mdfbridge.block_lowering) fuse groups of nodes into ops of their own and say which parameters their
metadata marks learnable; op records validate their calls (`OpDef.validate`).
"""
from __future__ import annotations

import collections
import contextlib
import functools
import gc
import logging
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .block_lowering import FusedBlock, block_lowerings
from .block_lowering import mdf_meta as _mdf_meta
from .errors import CycleError, ExpressionError, SchemaError, UnknownFunctionError, UnsupportedError
from .expression_lowering import ExpressionLowering
from .expressions import Expression, expression_names, parse_expression
from .nesting import flatten
from .ops import get_op, read_call, resolve, supported_functions
from .ops.budget import Budget
from .program import InputSpec, Location, Op, Param, Program, State, TensorRef
from .psyneulink_forms import drop_learning_pathway
from .recorded_settings import learning_settings
from .scheduling import read_schedule

log = logging.getLogger(__name__)

Value = Union[TensorRef, Any]  # a tensor reference or a static value


def model_to_dict(model: Any) -> Dict[str, Any]:
    """The serialised dict of a modeci-mdf Model (as its JSON would hold), or the dict itself."""
    if isinstance(model, dict):
        return model
    from .document import model_to_dict as serialise

    return serialise(model)


def _is_number_like(v: Any) -> bool:
    return isinstance(v, (int, float, bool, list, np.ndarray)) and not isinstance(v, str)


def _is_tensor_list(v: Any) -> bool:
    """A list argument naming tensors (at least one item is a name or expression string)."""
    return isinstance(v, list) and any(isinstance(x, str) for x in v)


def _split_function(fdef: Mapping[str, Any]) -> Tuple[Optional[str], Dict[str, Any], Tuple[str, ...]]:
    """(function name or None, args, path to the args dict inside the function entry)."""
    fn = fdef.get("function")
    if isinstance(fn, dict):
        if len(fn) != 1:
            raise SchemaError("a function entry names exactly one function", json_path="function")
        name = next(iter(fn))
        return name, dict(fn[name] or {}), ("function", name)
    return fn, dict(fdef.get("args") or {}), ("args",)


class _NodeLowering:
    """Lowers one MDF node into ops, parameters and state of the program under construction."""

    def __init__(self, lw: "Lowering", nid: str, node: Mapping[str, Any]) -> None:
        self.lw, self.nid, self.node = lw, nid, node
        self.where = f"node '{nid}'"
        self.env: Dict[str, Value] = {}
        self.base: Location = lw.paths[nid]
        self.fn_args: Dict[str, Dict[str, Value]] = {}  # function id -> its arguments' values (first lowering)
        self.local_ids = frozenset(_local_ids(node))
        self.learnable: Optional[Sequence[str]] = None  # the node's learnable parameters (lower_item reads them)

    # ---------------------------------------------------------------- helpers
    def tensor(self, local: str) -> str:
        """Global tensor name for a name local to this node."""
        return f"{self.nid}.{local}"

    def resolve(self, name: str, where: str, bindings: Mapping[str, Value] = {}) -> Value:
        """A local name -> tensor ref or static value (`bindings`: names bound for one expression, first)."""
        if name in bindings:
            return bindings[name]
        if name in self.env:
            return self.env[name]
        known = sorted(set(self.env) | set(bindings))
        raise ExpressionError(f"unknown name '{name}' (known here: {', '.join(known) or 'none'})",
                              where=f"{self.where} {where}")

    def value_of(self, v: Any, out: str, where: str, location: Optional[Location],
                 learnable: bool = False, static: bool = False) -> Value:
        """Turn an MDF value (number, list, expression string) into a tensor ref or a static value."""
        if isinstance(v, str) and v in self.env:  # a name as a whole (other writers' ids need not be identifiers)
            return self.env[v]
        if isinstance(v, str):
            expr = parse_expression(v, where=f"{self.where} {where}")
            if expr.source.strip() in self.env and expr.source.strip().isidentifier():
                return self.env[expr.source.strip()]
            return self.lw.emit_expr(self, out, expr, where)
        if v is None:
            return None
        if _is_tensor_list(v):  # e.g. onnx::Concat's `inputs`: a list of names (or expressions, or constants)
            items: List[TensorRef] = []
            for i, x in enumerate(v):
                ref = self.value_of(x, f"{out}.item{i}", f"{where} item {i}",
                                    None if location is None else location + (str(i),), learnable=False)
                items.append(ref if isinstance(ref, TensorRef) else self.lw.emit_const(f"{out}.item{i}", ref, self.nid))
            return items
        arr = self.lw.finite(v, location)
        if static or (arr.ndim == 0 and not learnable):
            return v if not isinstance(v, list) else arr
        self.lw.params[out] = Param(out, arr, location=location, learnable=learnable)
        return TensorRef(out)

    # ---------------------------------------------------------------- node parts
    def lower(self) -> None:
        """Emit the node: ports, parameters (with state), functions, output ports."""
        params = self.node.get("parameters") or {}
        for pid, p in params.items():  # a nested graph held in a value (ONNX's Loop/If/Scan bodies)
            if (isinstance(p, Mapping) and isinstance(p.get("value"), Mapping)
                    and any(str(k).startswith("graph") for k in p["value"])):
                fns = [str(f.get("function")) for f in params.values()
                       if isinstance(f, Mapping) and isinstance(f.get("function"), str)]
                raise UnsupportedError(f"{' / '.join(fns) or 'a function'} with a nested graph "
                                       f"({', '.join(map(str, p['value']))}) in parameter '{pid}' is not supported",
                                       where=self.where)
        self.lower_inputs()
        functions = self.node.get("functions") or {}
        stateful = {pid: p for pid, p in params.items() if self.lw.is_stateful(self.nid, pid, p)}
        for pid, p in stateful.items():
            self.env[pid] = self.lw.add_state(self, pid, p)
        pending: List[Tuple[str, str, Mapping[str, Any]]] = [
            ("parameter", pid, p) for pid, p in params.items() if pid not in stateful]
        pending += [("function", fid, f) for fid, f in functions.items()]
        self.lower_in_dependency_order(pending)
        if stateful:  # (without state, nothing changes in the second pass)
            self.update_parameters(params, stateful)
        for oid, port in (self.node.get("output_ports") or {}).items():
            val = port.get("value", oid)
            ref = (self.env[val] if type(val) is str and val in self.env else  # (a name: no strings built)
                   self.value_of(val, self.tensor(oid), f"output port '{oid}'",
                                 self.base + ("output_ports", oid, "value")))
            if not isinstance(ref, TensorRef):
                ref = self.lw.emit_const(self.tensor(oid), ref, self.nid)
            self.lw.port_tensor[(self.nid, oid)] = ref.name
        self.lw.static_values.update({self.tensor(k): v for k, v in self.env.items()
                                      if k in params and not isinstance(v, (TensorRef, list))})

    def update_parameters(self, params: Mapping[str, Any], stateful: Mapping[str, Any]) -> None:
        """modeci-mdf's second pass over a node's parameters, in document order, each seeing the ones before it
        anew: stateful parameters take their new values, and expressions reading a changed one are recomputed
        (output ports read these values)."""
        changed: set = set()
        for pid, p in params.items():
            if pid in stateful:
                self.lw.update_state(self, pid, p)
                changed.add(pid)
            elif isinstance(p.get("value"), str) and p.get("function") is None:
                where = f"parameter '{pid}'"
                if changed & self.names_in(p["value"], where):
                    self.env[pid] = self.value_of(p["value"], self.tensor(pid) + ".updated", where,
                                                  self.base + ("parameters", pid, "value"))
                    changed.add(pid)
            elif p.get("function") is not None and changed & self.item_names("parameter", pid, p)[0]:
                # a function parameter (RNNs' r = tanh(x)) sees the new values too; the arguments that read no
                # changed name keep their first-pass values (no second copy of an inline parameter)
                where = f"parameter '{pid}'"
                _, args, _ = _split_function(p)
                keep = [w for w, v in args.items()
                        if not any(isinstance(x, str) and changed & self.names_in(x, f"{where} argument '{w}'")
                                   for x in (v if _is_tensor_list(v) else [v]))]
                self.env[pid] = self.lower_function(pid, p, self.base + ("parameters", pid), where,
                                                    suffix=".updated", keep=keep)
                changed.add(pid)

    def names_in(self, text: str, where: Union[str, Callable[[], str]]) -> frozenset:
        """The names an expression reads: the text itself when it is one of the node's ids as a whole. where: the
        place named in an error (or a function making it: built only then)."""
        if text in self.local_ids:
            return frozenset((text,))
        try:
            return expression_names(text)  # (from the parse cache, no copy for the place)
        except ExpressionError:  # the same error, naming the place
            place = where if isinstance(where, str) else where()
            return parse_expression(text, where=f"{self.where} {place}").names

    def lower_inputs(self) -> None:
        """Bind each input port to its incoming edges' values or to an external input."""
        for pid, port in (self.node.get("input_ports") or {}).items():
            self.env[pid] = self.lw.input_port_value(self, pid, port)

    def item_names(self, kind: str, iid: str, item: Mapping[str, Any]) -> Tuple[frozenset, Tuple[str, ...]]:
        """(names an item reads, names it defines locally) for ordering within the node."""
        names: set = set()
        own: Tuple[str, ...] = ()
        if kind == "parameter" and isinstance(item.get("value"), str):
            names |= self.names_in(item["value"], f"{kind} '{iid}'")
        if item.get("function") is not None or kind == "function":
            fname, args, _ = _split_function(item)
            own = tuple(args)
            hit = resolve(fname) if fname is not None else None
            static, renames = (set(hit[0].attrs), hit[1]) if hit is not None else (set(), {})
            for a, v in args.items():
                attr = renames.get(a, a) in static
                for x in (v if _is_tensor_list(v) else [v]):
                    if isinstance(x, str) and attr and not x.isidentifier():
                        continue  # an attribute's text (an Einsum equation): static, no expression
                    if isinstance(x, str):
                        names |= self.names_in(x, functools.partial("{} '{}' argument '{}'".format, kind, iid, a))
            if isinstance(item.get("value"), str):
                names |= self.names_in(item["value"], f"{kind} '{iid}'")
        return frozenset(names) - set(own), own

    def lower_in_dependency_order(self, pending: List[Tuple[str, str, Mapping[str, Any]]]) -> None:
        """Emit parameters and functions once all the names they read are known."""
        ids = {iid for _, iid, _ in pending}
        while pending:
            progressed = False
            for entry in list(pending):
                kind, iid, item = entry
                needed, _ = self.item_names(kind, iid, item)
                if any(n in ids and n not in self.env for n in needed):
                    continue
                self.lower_item(kind, iid, item)
                pending.remove(entry)
                progressed = True
            if not progressed:
                missing = {iid: sorted(n for n in self.item_names(k, iid, it)[0] if n in ids and n not in self.env)
                           for k, iid, it in pending}
                raise CycleError([f"{self.nid}.{i}" for i in missing], where=self.where)

    def lower_item(self, kind: str, iid: str, item: Mapping[str, Any]) -> None:
        """Emit one non-stateful parameter or one function."""
        loc = self.base + (("parameters" if kind == "parameter" else "functions"), iid)
        where = f"{kind} '{iid}'"
        if kind == "parameter" and item.get("function") is None:
            if self.learnable is None:  # (once a node)
                self.learnable = self.lw.learnable_params_of(self.nid, self.node)
            learnable = iid in self.learnable
            self.env[iid] = self.value_of(item.get("value"), self.tensor(iid), where, loc + ("value",),
                                          learnable=learnable)
            rate = self.lw.param_learning_rate(self.node, iid)
            if rate is not None and self.tensor(iid) in self.lw.params:
                self.lw.params[self.tensor(iid)].learning_rate = rate
            if iid in (_mdf_meta(self.node).get("running_statistics") or ()) and self.tensor(iid) in self.lw.params:
                self.lw.params[self.tensor(iid)].running = True
            return
        self.env[iid] = self.lower_function(iid, item, loc, where)

    def lower_function(self, fid: str, fdef: Mapping[str, Any], loc: Location, where: str, suffix: str = "",
                       keep: Sequence[str] = ()) -> Value:
        """A function (standard, onnx::, or `value` expression with args) -> op (named `fid` + `suffix`; the
        arguments written `keep` reuse the values of the first lowering of `fid`)."""
        name, args, args_path = _split_function(fdef)
        out = self.tensor(fid) + suffix
        first = self.fn_args.setdefault(fid, {})
        call = read_call(name, args, where=lambda: f"{self.where} {where}") if name is not None else None
        if name is not None and call is None:
            raise UnknownFunctionError(name, node=self.nid, supported=supported_functions())
        op, renames = (call.op, call.renames) if call is not None else (None, {})
        defaults = call.defaults if call is not None else {}
        arg_vals: Dict[str, Value] = {}
        for written, v in args.items():
            if call is not None and written in call.ignored:  # another writer's extras that change nothing here
                continue
            a = renames.get(written, written)  # an alias's argument names -> the op's
            args_path_a = args_path + (written,)
            if op is not None and a in op.attrs:  # an ONNX attribute: static, as written (a name may refer to
                arg_vals[a] = self.env[v] if isinstance(v, str) and v in self.env else v  # a parameter)
                continue
            if written in keep and a in first:
                arg_vals[a] = first[a]
                continue
            if type(v) is str and v in self.env:  # a name as a whole (value_of's first case, no strings built)
                arg_vals[a] = self.env[v]
                if not suffix:
                    first[a] = arg_vals[a]
                continue
            learnable = self.lw.inline_learnable(self.nid, op.name if op else None, a)
            arg_vals[a] = self.value_of(v, f"{out}.{a}", f"{where} argument '{written}'", loc + args_path_a,
                                        learnable=learnable)
            rate = (self.node.get("metadata") or {}).get("learning_rate") if learnable else None
            if isinstance(rate, (int, float)) and not isinstance(rate, bool) and f"{out}.{a}" in self.lw.params:
                self.lw.params[f"{out}.{a}"].learning_rate = float(rate)  # PsyNeuLink's per-projection rate
            if not suffix:
                first[a] = arg_vals[a]
        if name is None:
            value = fdef.get("value")
            if value is None:
                raise SchemaError("a function needs 'function' or 'value'", json_path=".".join(loc))
            fast = self.transfer_fast_path(fdef, value, arg_vals, out)
            if fast is not None:
                return fast
            return self.lw.emit_expr(self, out, parse_expression(value, where=f"{self.where} {where}"), where,
                                     arg_vals)
        assert op is not None  # name is not None here: resolve() found it
        unknown = set(arg_vals) - set(op.all_args) - set(defaults)
        if unknown:
            written_as = {c: w for w, c in renames.items()}
            raise UnsupportedError(f"function '{name}' has no argument(s) {sorted(unknown)}; "
                                   f"it takes {[written_as.get(a, a) for a in op.all_args]}",
                                   where=f"{self.where} {where}")
        call_args: Dict[str, Value] = {}
        for a in op.all_args:
            if a in arg_vals:
                call_args[a] = arg_vals[a]
            elif a in defaults:
                call_args[a] = defaults[a]
            elif a in self.env:  # modeci-mdf lets a standard function read a node parameter of that name
                call_args[a] = self.env[a]
            else:
                raise UnsupportedError(f"function '{name}' needs argument '{a}'", where=f"{self.where} {where}")
        if op.validate is not None:
            op.validate(self.nid, call_args, self.lw.params)
        return self.lw.emit_call(self, out, op.name, call_args)

    def transfer_fast_path(self, fdef: Mapping[str, Any], value: str, arg_vals: Dict[str, Value],
                           out: str) -> Optional[TensorRef]:
        """A `value` written by mdfbridge for a registry transfer function (ReLU, SoftMax) runs as that op."""
        op = get_op(_mdf_meta(fdef).get("transfer") or "")
        if op is None or op.value_form is None or value != op.value_form("variable0") or "variable0" not in arg_vals:
            return None
        call_args: Dict[str, Value] = {"variable0": arg_vals["variable0"]}
        for a in op.args[1:]:
            call_args[a] = self.env.get(a, op.defaults.get(a))
        return self.lw.emit_call(self, out, op.name, call_args)


class Lowering:
    """Builds a Program from one graph of an MDF document; `fuse_blocks`: block lowerings fuse their blocks."""

    def __init__(self, doc: Mapping[str, Any], graph: Optional[str] = None, source: Optional[str] = None,
                 fuse_blocks: bool = True, learnable: Sequence[str] = ()) -> None:
        self.source = source
        self.fuse_blocks = fuse_blocks
        self.extra_learnable: Dict[str, Tuple[str, ...]] = {}  # node id -> parameters named learnable by the caller
        for name in learnable:
            nid, _, pid = name.rpartition(".")
            self.extra_learnable[nid] = self.extra_learnable.get(nid, ()) + (pid,)
        self.sequence = False
        if not isinstance(doc, Mapping) or len(doc) != 1:
            raise SchemaError("an MDF document holds exactly one model", json_path="$")
        self.model_id, self.model = next(iter(doc.items()))
        graphs = self.model.get("graphs") or {}
        if not graphs:
            raise SchemaError("the model has no graph", json_path=f"$.{self.model_id}.graphs")
        if graph is None:
            graph = next(iter(graphs))
            if len(graphs) > 1:
                log.warning("model '%s' has %d graphs; lowering the first, '%s'", self.model_id, len(graphs), graph)
        if graph not in graphs:
            raise SchemaError(f"no graph '{graph}' (graphs: {', '.join(graphs)})",
                              json_path=f"$.{self.model_id}.graphs")
        self.gid, self.graph = graph, graphs[graph]
        flat = flatten(self.graph, ("graphs", graph))  # nested graphs' nodes join it, each keeping its document path
        self.nodes: Dict[str, Mapping[str, Any]] = flat.nodes
        self.edges: Dict[str, Mapping[str, Any]] = flat.edges
        self.paths: Dict[str, Location] = flat.paths
        self.conditions = flat.conditions
        self.incoming: Dict[Tuple[Any, Any], List[Tuple[str, Mapping[str, Any]]]] = {}  # (node, port) -> its edges
        for eid, e in self.edges.items():
            self.incoming.setdefault((e.get("receiver"), e.get("receiver_port")), []).append((eid, e))
        self.ops: List[Op] = []
        self.params: Dict[str, Param] = {}
        self.inputs: Dict[str, InputSpec] = {}
        self.states: Dict[str, State] = {}
        self.port_tensor: Dict[Tuple[str, str], str] = {}
        self.static_values: Dict[str, Any] = {}  # "node.param" -> the value of a parameter folded to a constant
        self.uses_dt = False
        self.delayed: set = set()
        self.budget = Budget()  # the elements of the constants folding holds (mdfbridge.ops.budget)
        self.op_sources: Dict[str, Tuple[str, str]] = {}  # op output -> (place, expression) for error messages

    # ---------------------------------------------------------------- graph level
    def order_nodes(self) -> List[str]:
        """Topological order of nodes; edges closing a cycle into a port with default_value are delayed."""
        for eid, e in self.edges.items():
            for end in ("sender", "receiver"):
                if e.get(end) not in self.nodes:
                    raise SchemaError(f"edge '{eid}' {end} '{e.get(end)}' is not a node of the graph",
                                      json_path=f"$.{self.model_id}.graphs.{self.gid}.edges.{eid}")
        succ: Dict[str, List[Tuple[str, str]]] = {n: [] for n in self.nodes}
        for eid, e in self.edges.items():
            succ[e["sender"]].append((e["receiver"], eid))
        acyclic = self._kahn(succ)  # no cycle (the common case): no edge is delayed, and no SCCs to find
        if acyclic is not None:
            return acyclic
        sccs = _strongly_connected(list(self.nodes), {n: [r for r, _ in s] for n, s in succ.items()})
        comp = {n: i for i, c in enumerate(sccs) for n in c}
        for eid, e in self.edges.items():
            if comp[e["sender"]] == comp[e["receiver"]]:
                port = ((self.nodes[e["receiver"]].get("input_ports") or {}).get(e["receiver_port"]) or {})
                if port.get("default_value") is not None:
                    self.delayed.add(eid)
        order = self._kahn(succ)
        if order is None:
            left = set(self.nodes) - set(self._kahn(succ, partial=True) or [])
            path = _a_cycle([n for n in self.nodes if n in left],
                            lambda n: [r for r, e in succ[n] if e not in self.delayed and r in left])
            raise CycleError(path, where=f"graph '{self.gid}' (give a receiving input port a default_value)")
        return order

    def _kahn(self, succ: Mapping[str, List[Tuple[str, str]]], partial: bool = False) -> Optional[List[str]]:
        """Kahn's topological order of the nodes over the edges not delayed (document order among ready nodes),
        or None when a cycle leaves nodes unordered (partial=True: the nodes it did order)."""
        indeg = {n: 0 for n in self.nodes}
        for eid, e in self.edges.items():
            if eid not in self.delayed:
                indeg[e["receiver"]] += 1
        order: List[str] = []
        ready = collections.deque(n for n in self.nodes if indeg[n] == 0)
        while ready:
            n = ready.popleft()
            order.append(n)
            for r, eid in succ[n]:
                if eid in self.delayed:
                    continue
                indeg[r] -= 1
                if indeg[r] == 0:
                    ready.append(r)
        if len(order) != len(self.nodes):
            return order if partial else None
        return order

    def lower(self) -> Program:
        """Run the lowering and return the Program (shapes checked by a dry run)."""
        order = self.order_nodes()
        schedule = read_schedule(self.conditions, self.gid, self.nodes, self.edges, order, self.delayed)
        blocks = self.plan_blocks()
        skip = {nid for b in blocks for nid in b.members}  # run as the blocks' own ops
        for nid in order:
            if nid in skip:
                continue
            _NodeLowering(self, nid, self.nodes[nid]).lower()
            for block in blocks:
                if block.entry == nid:
                    block.emit(self)
        for eid in self.delayed:
            e = self.edges[eid]
            st = self.states.get(f"delay.{eid}")
            if st is not None:
                st.update = self.port_tensor[(e["sender"], e["sender_port"])]
        senders = {e["sender"] for e in self.edges.values()}
        outputs: Dict[str, str] = {}
        sinks = [n for n in order if n not in senders] or order  # a fully cyclic graph: report every node
        for nid in sinks:
            ports = list((self.nodes[nid].get("output_ports") or {}))
            for pid in ports:
                outputs[nid if len(ports) == 1 else f"{nid}.{pid}"] = self.port_tensor[(nid, pid)]
        recorded = (_mdf_meta(self.graph).get("onnx") or {}).get("outputs")
        if isinstance(recorded, dict) and recorded:  # an ONNX import: the ONNX graph's output order
            rank = {k: i for i, k in enumerate(recorded)}
            outputs = dict(sorted(outputs.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        meta = {"model": self.model_id, "graph": self.gid,
                "nodes": {n: m for n, d in self.nodes.items() if (m := _mdf_meta(d))},
                "graph_metadata": _mdf_meta(self.graph), "order": order,
                "ports": {f"{n}.{p}": t for (n, p), t in self.port_tensor.items()},
                "learning_settings": learning_settings(self.graph), "static_values": self.static_values}
        prog = Program(self.model_id, self.ops, self.params, self.inputs, outputs, self.states,
                       metadata=meta, uses_dt=self.uses_dt, sequence=self.sequence, schedule=schedule)
        if self.sequence and self.states:
            raise UnsupportedError("a whole-sequence block together with step-by-step state "
                                   f"({', '.join(self.states)}) in one graph is not supported; lower with "
                                   "fuse_gru=False to step the block's nodes", where=f"graph '{self.gid}'")
        from .shapes import infer_shapes

        infer_shapes(prog, self)
        return prog

    def plan_blocks(self) -> List[FusedBlock]:
        """Ask every block lowering which nodes it fuses (and whether the graph is a sequence program)."""
        blocks: List[FusedBlock] = []
        taken: set = set()
        for plugin in block_lowerings():
            plan = plugin.plan(self)
            self.sequence = self.sequence or plan.sequence
            for block in plan.blocks:
                nodes = {block.entry, *block.members}
                if taken & nodes:
                    raise UnsupportedError(f"block '{block.name}' shares nodes {sorted(taken & nodes)} with another "
                                           "block", where=f"graph '{self.gid}'")
                taken |= nodes
                blocks.append(block)
        return blocks

    def finite(self, v: Any, location: Optional[Location]) -> np.ndarray:
        """A numeric document value as a float array; NaN/infinity or non-numbers are refused where they stand."""
        def path() -> str:
            return "$." + ".".join((self.model_id,) + tuple(location or ()))
        try:
            arr = np.asarray(float(v) if isinstance(v, bool) else v, dtype=float)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SchemaError(f"expected numbers (or an expression string), got {str(v)[:60]!r}: {exc}",
                              path=self.source, json_path=path()) from None
        if not np.isfinite(arr).all():
            raise SchemaError("NaN or infinite value in the document", path=self.source, json_path=path())
        return arr

    # ---------------------------------------------------------------- emitters
    def emit_call(self, nl: _NodeLowering, out: str, fn: str, args: Dict[str, Value]) -> TensorRef:
        """Append a registry call op."""
        self.ops.append(Op(out, args, nl.nid, fn=fn))
        return TensorRef(out)

    def emit_expr(self, nl: _NodeLowering, out: str, expr: Expression, where: str,
                  bindings: Mapping[str, Value] = {}) -> Value:
        """Append the call ops of an expression (names bound to the node's scope, `bindings` first); constants
        fold."""
        place = f"{nl.where} {where}"

        def emit(op: Op) -> None:
            self.ops.append(op)
            self.op_sources[op.out] = (place, expr.source)

        return ExpressionLowering(expr, out, nl.nid, place, lambda n: nl.resolve(n, where, bindings), emit,
                                  lambda name, v: self.emit_const(name, v, nl.nid), self.budget).lower()

    def emit_const(self, out: str, value: Any, node: str) -> TensorRef:
        """A constant as a (non-learnable) parameter tensor."""
        try:
            self.params[out] = Param(out, np.asarray(value, dtype=float))
        except OverflowError as exc:  # a Python int beyond float64 (the expression checks refuse most earlier)
            raise ExpressionError(f"constant '{out}' does not fit a float64: {exc}", where=f"node '{node}'") from None
        return TensorRef(out)

    # ---------------------------------------------------------------- ports, state
    def input_port_value(self, nl: _NodeLowering, pid: str, port: Mapping[str, Any]) -> Value:
        """Value of an input port: its edges reduced, or an external input."""
        incoming = self.incoming.get((nl.nid, pid), [])
        if not incoming:
            default = port.get("default_value")
            shape = tuple(port["shape"]) if port.get("shape") is not None else None
            name = f"{nl.nid}.{pid}"
            ext = [p for p in (nl.node.get("input_ports") or {}) if (nl.nid, p) not in self.incoming]
            key = nl.nid if len(ext) == 1 else name
            dflt = None
            if default is not None:
                if isinstance(default, str):
                    raise UnsupportedError("an expression as an input port's default_value is not supported",
                                           where=f"{nl.where} input port '{pid}'")
                dflt = np.asarray(default, dtype=float)
                shape = shape if shape is not None else dflt.shape
            self.inputs[key] = InputSpec(key, nl.nid, pid, shape, dflt)
            return TensorRef(name)
        values: List[Value] = []
        for eid, e in incoming:
            self._refuse_edge_matrix(eid, e)
            if eid in self.delayed:
                name = f"delay.{eid}"
                self.states[name] = State(name, np.asarray(port["default_value"], dtype=float), "", nl.nid, "delay")
                src: Value = TensorRef(name)
            else:
                sender = (e["sender"], e["sender_port"])
                if sender not in self.port_tensor:
                    raise SchemaError(f"edge '{eid}': node '{e['sender']}' has no output port '{e['sender_port']}'",
                                      json_path=f"$.{self.model_id}.graphs.{self.gid}.edges.{eid}")
                src = TensorRef(self.port_tensor[sender])
            weight = (e.get("parameters") or {}).get("weight")
            if weight is not None:
                w = nl.value_of(weight, f"edge.{eid}.weight", f"edge '{eid}' weight",
                                ("graphs", self.gid, "edges", eid, "parameters", "weight"))
                src = self._weighted(nl, eid, src, w)
            values.append(src)
        if len(values) == 1:
            return values[0]
        reduce = port.get("reduce") or "overwrite"
        if reduce == "overwrite":
            return values[-1]
        sym = {"add": " + ", "multiply": " * "}.get(reduce)
        if sym is None:
            raise UnsupportedError(f"reduce '{reduce}' is not supported (add, multiply, overwrite)",
                                   where=f"{nl.where} input port '{pid}'")
        names = [f"v{i}" for i in range(len(values))]
        return self.emit_expr(nl, f"{nl.nid}.{pid}", parse_expression(sym.join(names)), f"input port '{pid}'",
                              dict(zip(names, values)))

    def _refuse_edge_matrix(self, eid: str, e: Mapping[str, Any]) -> None:
        """PsyNeuLink keeps a projection's matrix in the edge's metadata where it is the identity (simple edge
        format) or, in its other edge format, any matrix: running without a non-identity one would be wrong."""
        for fid, f in ((e.get("metadata") or {}).get("functions") or {}).items():
            matrix = (f.get("args") or {}).get("B") if isinstance(f, Mapping) else None
            if matrix is None or isinstance(matrix, str):
                continue
            m = np.asarray(matrix, dtype=float)
            if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.array_equal(m, np.eye(m.shape[0])):
                raise UnsupportedError(f"edge '{eid}' holds a matrix of shape {m.shape} in its metadata "
                                       f"(function '{fid}'), which is not applied; write the projection as a node "
                                       "(PsyNeuLink: get_mdf_serialized with simple_edge_format=True)",
                                       where=f"graph '{self.gid}'")

    def _weighted(self, nl: _NodeLowering, eid: str, src: Value, w: Value) -> Value:
        return self.emit_expr(nl, f"edge.{eid}", parse_expression("weight * x"), f"edge '{eid}'",
                              {"weight": w, "x": src})

    def is_stateful(self, nid: str, pid: str, p: Mapping[str, Any]) -> bool:
        """modeci-mdf's rule: time_derivative, default_initial_value, or a value that reads itself; and conditions
        (a value they set holds until they set another)."""
        if p.get("time_derivative") is not None or p.get("default_initial_value") is not None or p.get("conditions"):
            return True
        v = p.get("value")
        if not isinstance(v, str):
            return False
        return v == pid or pid in parse_expression(v, where=f"node '{nid}' parameter '{pid}'").names

    def add_state(self, nl: _NodeLowering, pid: str, p: Mapping[str, Any]) -> TensorRef:
        """Declare the state tensor of a stateful parameter (its value during the step is the previous one)."""
        name = nl.tensor(pid)
        init = p.get("default_initial_value")
        if init is None:
            initial = np.asarray(0.0)  # modeci-mdf's default initial value
        elif isinstance(init, str):
            expr = parse_expression(init, where=f"{nl.where} parameter '{pid}' default_initial_value")
            consts = {}
            for n in expr.names:
                pv = (nl.node.get("parameters") or {}).get(n, {})
                if n == pid or not _is_number_like(pv.get("value")):
                    raise UnsupportedError("default_initial_value may only read constant parameters",
                                           where=f"{nl.where} parameter '{pid}'")
                consts[n] = np.asarray(pv["value"], dtype=float)
            initial = np.asarray(expr.evaluate(consts), dtype=float)
        else:
            initial = np.asarray(init, dtype=float)
        kind = "derivative" if p.get("time_derivative") is not None else "parameter"
        self.states[name] = State(name, initial, "", nl.nid, kind)
        return TensorRef(name)

    def update_state(self, nl: _NodeLowering, pid: str, p: Mapping[str, Any]) -> None:
        """Emit the end-of-step update of a stateful parameter (value expression or Euler step)."""
        name = nl.tensor(pid)
        where = f"parameter '{pid}'"
        if p.get("time_derivative") is not None:
            self.uses_dt = True
            deriv = parse_expression(p["time_derivative"], where=f"{nl.where} {where} time_derivative")
            d = self.emit_expr(nl, f"{name}.derivative", deriv, where)
            new = self._euler(nl, name, d)
        elif p.get("value") is not None:
            new = nl.value_of(p["value"], f"{name}.next", where, nl.base + ("parameters", pid, "value"))
            if not isinstance(new, TensorRef):
                new = self.emit_const(f"{name}.next", new, nl.nid)
        else:
            new = TensorRef(name)
        conditions = p.get("conditions") or []
        if isinstance(conditions, Mapping):  # {id: {test, value}}, as modeci-mdf also reads them
            conditions = [dict(c, id=k) if isinstance(c, Mapping) else c for k, c in conditions.items()]
        for i, cond in enumerate(conditions):
            new = self._condition(nl, pid, i, cond, new)
        self.states[name].update = new.name
        nl.env[pid] = new

    def _condition(self, nl: _NodeLowering, pid: str, i: int, cond: Any, current: TensorRef) -> TensorRef:
        """modeci-mdf's parameter condition: where `test` holds the parameter takes `value` (both read the node's
        values as the update sees them: this parameter's previous one)."""
        where = f"parameter '{pid}' condition {i}"
        loc = nl.base + ("parameters", pid, "conditions", str(i))
        if not isinstance(cond, Mapping) or cond.get("test") is None or cond.get("value") is None:
            raise SchemaError("a parameter condition is {\"id\": ..., \"test\": expression, \"value\": expression}",
                              path=self.source, json_path="$." + ".".join((self.model_id,) + loc))
        base = nl.tensor(pid) + f".condition{i}"
        test = nl.value_of(cond["test"], f"{base}.test", f"{where} test", loc + ("test",), static=True)
        value = nl.value_of(cond["value"], f"{base}.value", f"{where} value", loc + ("value",), static=True)
        out = self.emit_expr(nl, base, parse_expression("where(test, value, current)"), where,
                             {"test": test, "value": value, "current": current})
        return out if isinstance(out, TensorRef) else self.emit_const(base, out, nl.nid)

    def _euler(self, nl: _NodeLowering, name: str, d: Value) -> TensorRef:
        return self.emit_expr(nl, f"{name}.next", parse_expression("x + dt * d"), "Euler step",
                              {"x": TensorRef(name), "d": d, "dt": TensorRef("dt")})

    def learnable_params_of(self, nid: str, node: Mapping[str, Any]) -> Sequence[str]:
        """Parameters of a node marked learnable in mdfbridge metadata (projection matrices, a block lowering's),
        and those the caller named (`lower(..., learnable=)`)."""
        return self._marked_learnable(node) + self.extra_learnable.get(nid, ())

    def _marked_learnable(self, node: Mapping[str, Any]) -> Tuple[str, ...]:
        meta = _mdf_meta(node)
        if meta.get("role") == "projection" and meta.get("learnable", True):
            return ("matrix",)
        for plugin in block_lowerings():
            names = plugin.learnable_parameters(node)
            if names is not None:
                return tuple(names)
        return tuple(meta.get("learnable_parameters") or ())

    def param_learning_rate(self, node: Mapping[str, Any], pid: str) -> Optional[float]:
        """A per-parameter learning rate from metadata (a block lowering reads it), or None."""
        for plugin in block_lowerings():
            rate = plugin.learning_rate(node, pid)
            if rate is not None:
                return rate
        return None

    def inline_learnable(self, nid: str, fn: Optional[str], arg: str) -> bool:
        """PsyNeuLink writes projections as `<proj>_dummy_node` running onnx::MatMul with B inline (learnable unless
        the node's metadata says `learnable: false`)."""
        if not nid.endswith("_dummy_node"):
            return False
        op = get_op(fn) if fn else None
        meta = self.nodes[nid].get("metadata") or {}
        return op is not None and op.weight_arg == arg and meta.get("learnable", True) is not False


def _local_ids(node: Mapping[str, Any]) -> List[str]:
    """The names a node's expressions can read: its ports, parameters and functions."""
    return [k for part in ("input_ports", "parameters", "functions", "output_ports") for k in (node.get(part) or {})]


def _a_cycle(roots: List[str], successors: Callable[[str], List[str]]) -> List[str]:
    """A cycle as the path it follows, [n0, n1, ..., n0], found by depth-first search from `roots` in order
    (iteratively); [] when there is none."""
    state: Dict[str, int] = {}  # 1: on the search path, 2: done
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(successors(root)))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:  # back to a node on the path: that stretch of the path is the cycle
                path = [n for n, _ in stack]
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(successors(nxt))))
    return []


def _strongly_connected(nodes: List[str], succ: Mapping[str, List[str]]) -> List[List[str]]:
    """Tarjan's strongly connected components, iteratively; components keep document order."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: set = set()
    stack: List[str] = []
    out: List[List[str]] = []
    counter = 0
    position = {n: i for i, n in enumerate(nodes)}
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            recurse = False
            for j in range(i, len(succ[v])):
                w = succ[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp, key=position.__getitem__))
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
    return out


def lower(doc: Any, graph: Optional[str] = None, source: Optional[str] = None, fuse_gru: bool = True,
          learnable: Sequence[str] = ()) -> Program:
    """Lower an MDF document (Model or serialised dict) to a Program; `source` names its file in errors.

    Blocks that block lowerings recognise run fused (their own ops, e.g. one op over whole sequences) unless
    `fuse_gru=False` (the keyword keeps its first plug-in's name), which lowers their nodes one by one.
    learnable: MDF parameters, 'node.param', to make learnable besides those the document marks (default none:
    e.g. a time constant, kept a parameter instead of being folded into the expressions); a name that is no such
    parameter raises DataError (Program.mark_learnable).
    """
    with gc_paused():
        prog = Lowering(drop_learning_pathway(model_to_dict(doc)), graph, source, fuse_gru, learnable).lower()
    prog.mark_learnable(learnable)
    return prog


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Within the block, Python's cyclic garbage collector does not run (it runs once after, if it was on).

    Reading and lowering a large document allocates millions of objects that all stay alive; each of the
    collector's passes walks all of them, which makes a 100,000-node document several times slower. Nothing in
    the block depends on cycles being collected early."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
