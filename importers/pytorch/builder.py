"""The MDF document builder the converters write into: nodes and edges in serialised dict form, with the
node kinds a torch module becomes (graph inputs and outputs, learnable projections, linear layers, transfer
functions, elementwise arithmetic, GRU blocks)."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ...composition import identifier
from ...errors import UnsupportedError
from .values import Call, GRUOutput, MDFTensor, Weight

MDF_FORMAT = "ModECI MDF v0.4"
SOURCE = "torch"  # metadata.mdfbridge.source of the graphs this importer writes
OUT = "output"  # the output port of every node
IN = "input"  # the input port of single-input nodes
FUNCTION = "function"  # the function id of every computing node


class Builder:
    """Accumulates MDF nodes and edges (serialised dict form) for one traced module."""

    def __init__(self, lead: int, dtype: torch.dtype, gru_form: str) -> None:
        self.lead = lead  # leading axes that are not part of a trial's shape: 1 (batch) or 2 (batch, time)
        self.dtype = dtype
        self.gru_form = gru_form
        self.nodes: Dict[str, Dict[str, Any]] = {}
        self.edges: Dict[str, Dict[str, Any]] = {}
        self.used_keys: Dict[str, str] = {}  # torch state_dict key -> node that holds it
        self.key_prefix = ""  # a prefix of module paths that the module's state_dict keys do not have

    def key(self, path: str, name: str) -> str:
        """The state_dict key of parameter `name` of the layer at module path `path`."""
        full = f"{path}.{name}" if path else name
        return full[len(self.key_prefix):] if self.key_prefix and full.startswith(self.key_prefix) else full

    # ---------------------------------------------------------------- ids, edges
    def new_id(self, base: str) -> str:
        """A fresh node id from `base` (sanitised, made unique)."""
        stem = identifier(base)
        out, i = stem, 1
        while out in self.nodes:
            out = f"{stem}_{i}"
            i += 1
        self.nodes[out] = {}
        return out

    def connect(self, src: MDFTensor, node: str, port: str) -> None:
        """An edge carrying `src` into `node.port`."""
        eid = identifier(f"{src.node}_to_{node}")
        k, i = eid, 1
        while k in self.edges:
            k = f"{eid}_{i}"
            i += 1
        self.edges[k] = {"sender": src.node, "receiver": node, "sender_port": src.port, "receiver_port": port}

    def per_trial(self, shape: Optional[Sequence[int]], where: Call, batch_axis: int = 0) -> Tuple[int, ...]:
        """A full torch shape without its leading batch (and time) axes (without axis `batch_axis` where the batch
        axis is not first)."""
        if shape is None:
            raise where.unsupported("the traced call produced no tensor shape")
        if batch_axis and self.lead == 1 and len(shape) > batch_axis:
            return tuple(int(s) for i, s in enumerate(shape) if i != batch_axis)
        if len(shape) <= self.lead:
            raise where.unsupported(f"output of shape {tuple(shape)} has no per-trial axes after the "
                                    f"{'batch and time axes' if self.lead == 2 else 'batch axis'}")
        return tuple(int(s) for s in shape[self.lead:])

    def claim(self, key: str, node: str, call: Call) -> None:
        """Record that a state_dict entry lives in `node`; a weight used twice cannot be one Parameter."""
        if key in self.used_keys:
            raise call.unsupported(f"weight '{key}' is used more than once (a module called twice / shared "
                                   f"weights); MDF keeps one Parameter per use")
        self.used_keys[key] = node

    @staticmethod
    def _array(t: torch.Tensor) -> np.ndarray:
        """A tensor as a float64 numpy array (exact for float32/float16 values)."""
        return t.detach().to("cpu", torch.float64).numpy()

    # ---------------------------------------------------------------- node kinds
    def input_node(self, name: str, shape: Tuple[int, ...], batch_axis: int = 0) -> MDFTensor:
        """A graph input: node `name` with one external input port (`batch_axis`: the torch input's)."""
        nid = self.new_id(name)
        port = f"{nid}_input"
        self.nodes[nid] = {"metadata": {"mdfbridge": {"role": "input", "input": True, "torch_input": name}},
                           "input_ports": {port: {"shape": list(shape)}},
                           "output_ports": {OUT: {"value": port, "shape": list(shape)}}}
        return MDFTensor(nid, OUT, shape, batch_axis)

    def output_node(self, name: str, src: MDFTensor) -> str:
        """A graph output: node `name` passing `src` through; returns its id."""
        nid = self.new_id(name)
        self.nodes[nid] = {"metadata": {"mdfbridge": {"role": "output", "output": True, "torch_output": name}},
                           "input_ports": {IN: {"shape": list(src.shape)}},
                           "output_ports": {OUT: {"value": IN, "shape": list(src.shape)}}}
        self.connect(src, nid, IN)
        return nid

    def projection(self, base: str, src: MDFTensor, matrix: np.ndarray, meta: Dict[str, Any]) -> MDFTensor:
        """A learnable projection node `src @ matrix` (matrix is sender x receiver)."""
        nid = self.new_id(base)
        rows, cols = matrix.shape
        self.nodes[nid] = {
            "metadata": {"mdfbridge": {"role": "projection", "learnable": True, "sender": src.node, **meta}},
            "input_ports": {IN: {"shape": list(src.shape)}},
            "functions": {FUNCTION: {"function": "MatMul", "args": {"A": IN, "B": "matrix"}}},
            "parameters": {"matrix": {"value": matrix.tolist()}},
            "output_ports": {OUT: {"value": FUNCTION, "shape": list(src.shape[:-1]) + [cols]}}}
        if src.shape[-1:] != (rows,):
            raise UnsupportedError(f"internal: matrix of shape {matrix.shape} after a value of shape {src.shape}",
                                   where=f"node '{nid}'")
        self.connect(src, nid, IN)
        return MDFTensor(nid, OUT, src.shape[:-1] + (cols,), src.batch_axis)

    def linear(self, call: Call, x: MDFTensor, weight: Weight, bias: Optional[Weight]) -> MDFTensor:
        """y = x @ W^T + b as weight projection, bias node + bias projection, and a summing node."""
        W = self._array(weight.value)
        if W.ndim != 2 or x.shape[-1:] != (W.shape[1],):
            raise call.unsupported(f"linear weight '{weight.key}' of shape {tuple(W.shape)} does not fit an input "
                                   f"of per-trial shape {x.shape}")
        base = identifier(call.base)
        out_id = self.new_id(base)
        wproj = self.projection(identifier(weight.key), x, W.T.copy(),
                                {"torch_key": weight.key, "transpose": True, "torch_shape": list(W.shape),
                                 "layer": call.path})
        self.claim(weight.key, wproj.node, call)
        parts = [wproj]
        if bias is not None:
            b = self._array(bias.value).reshape(-1)
            if b.shape != (W.shape[0],):
                raise call.unsupported(f"linear bias '{bias.key}' has shape {b.shape}, expected ({W.shape[0]},)")
            unit = self.new_id(f"{base}_bias_node")
            self.nodes[unit] = {"metadata": {"mdfbridge": {"role": "bias", "value": 1.0, "size": 1,
                                                           "layer": call.path}},
                                "parameters": {"value": {"value": [1.0]}},
                                "output_ports": {OUT: {"value": "value", "shape": [1]}}}
            bproj = self.projection(identifier(bias.key), MDFTensor(unit, OUT, (1,)), b[None, :].copy(),
                                    {"torch_key": bias.key, "transpose": False, "torch_shape": [int(b.shape[0])],
                                     "layer": call.path})
            self.claim(bias.key, bproj.node, call)
            parts.append(bproj)
        shape = x.shape[:-1] + (int(W.shape[0]),)
        ports = {f"from_{p.node}": p for p in parts}
        for pid, p in ports.items():
            self.connect(p, out_id, pid)
            self.nodes[p.node]["metadata"]["mdfbridge"]["receiver"] = out_id
        self.nodes[out_id] = {
            "metadata": {"mdfbridge": {"role": "mechanism", "function": "Linear", "layer": call.path,
                                       "torch_type": "Linear"}},
            "input_ports": {pid: {"shape": list(p.shape)} for pid, p in ports.items()},
            "functions": {FUNCTION: {"value": " + ".join(ports)}},
            "output_ports": {OUT: {"value": FUNCTION, "shape": list(shape)}}}
        return MDFTensor(out_id, OUT, shape, x.batch_axis)

    def elementwise(self, call: Call, x: MDFTensor, kind: str, function: Dict[str, Any],
                    params: Optional[Dict[str, float]] = None) -> MDFTensor:
        """A node applying one transfer function to `x` (same shape out)."""
        nid = self.new_id(call.base)
        node: Dict[str, Any] = {
            "metadata": {"mdfbridge": {"role": "mechanism", "function": kind, "layer": call.path}},
            "input_ports": {IN: {"shape": list(x.shape)}},
            "functions": {FUNCTION: function},
            "output_ports": {OUT: {"value": FUNCTION, "shape": list(x.shape)}}}
        if params:
            node["parameters"] = {k: {"value": float(v)} for k, v in params.items()}
        self.nodes[nid] = node
        self.connect(x, nid, IN)
        return MDFTensor(nid, OUT, x.shape, x.batch_axis)

    def binary(self, call: Call, a: Any, b: Any, symbol: str, alpha: Any = 1) -> MDFTensor:
        """a (+|-|*) b where at least one side is a tensor of the graph and the other a tensor or a number."""
        tensors = [v for v in (a, b) if isinstance(v, MDFTensor)]
        for v in (a, b):
            if not isinstance(v, (MDFTensor, int, float)) or isinstance(v, bool):
                raise call.unsupported(f"operand of type {type(v).__name__} (only graph tensors and numbers)")
        if not tensors:
            raise call.unsupported("no operand is computed from the inputs")
        if len(tensors) == 2 and (a.shape != b.shape or a.batch_axis != b.batch_axis):
            raise call.unsupported(f"operands of per-trial shapes {a.shape} and {b.shape} (broadcasting between "
                                   "branches is not supported)")
        nid = self.new_id(call.name)
        ports: Dict[str, Any] = {}
        params: Dict[str, Any] = {}
        terms = []
        for pid, v in (("a", a), ("b", b)):
            if isinstance(v, MDFTensor):
                ports[pid] = {"shape": list(v.shape)}
                self.connect(v, nid, pid)
                terms.append(pid)
            else:
                params[f"{pid}_value"] = {"value": float(v)}
                terms.append(f"{pid}_value")
        if alpha != 1:
            params["alpha"] = {"value": float(alpha)}
            terms[1] = f"alpha * {terms[1]}"
        shape = tensors[0].shape
        node: Dict[str, Any] = {"metadata": {"mdfbridge": {"role": "mechanism", "function": call.target,
                                                           "layer": call.path}},
                                "input_ports": ports,
                                "functions": {FUNCTION: {"value": f"{terms[0]} {symbol} {terms[1]}"}},
                                "output_ports": {OUT: {"value": FUNCTION, "shape": list(shape)}}}
        if params:
            node["parameters"] = params
        self.nodes[nid] = node
        return MDFTensor(nid, OUT, shape, tensors[0].batch_axis)

    def gru(self, call: Call, x: MDFTensor, params: Mapping[str, Weight], prefix: str, hidden: int,
            bias: bool) -> GRUOutput:
        """A GRU block (gate or fused form) over the input sequence, h0 = 0; returns its output sequence."""
        from ...gru import torch_to_gates
        from ...gru_mdf import fused_form_nodes, gate_form_nodes

        if self.lead != 2:
            raise call.unsupported("internal: GRU outside a sequence model")
        arrays = {k: self._array(w.value) for k, w in params.items()}
        I = int(arrays["weight_ih_l0"].shape[1])
        if x.shape != (I,):
            raise call.unsupported(f"GRU input has per-step shape {x.shape}, the GRU takes ({I},)")
        for w in params.values():
            self.claim(w.key, prefix, call)
        block = self.new_id(prefix or call.name)
        del self.nodes[block]  # the block's nodes are <block>__<role>
        info = {"input_size": I, "hidden_size": hidden, "bias": bias, "name": prefix or call.name,
                "composition": [], "enable_learning": True, "frozen": [], "learning_rates": {},
                "input": False, "output": False, "torch_key": prefix, "layer": call.path,
                "torch_keys": sorted(w.key for w in params.values())}
        make = gate_form_nodes if self.gru_form == "gates" else fused_form_nodes
        nodes, edges = make(block, I, hidden, torch_to_gates(arrays), np.zeros(hidden), {"x": {"shape": [I]}}, info)
        clash = set(nodes) & set(self.nodes)
        if clash:
            raise call.unsupported(f"node ids {sorted(clash)} of GRU block '{block}' are taken")
        self.nodes.update(nodes)
        self.edges.update(edges)
        self.connect(x, f"{block}__input", "x")
        return GRUOutput(MDFTensor(f"{block}__output", OUT, (hidden,)), call.path or call.name)

    def weighted_op(self, call: Call, x: MDFTensor, function: str, args: Dict[str, Any],
                    weights: Mapping[str, Optional[Weight]], shape: Tuple[int, ...], kind: str,
                    running: Mapping[str, Weight] = {}, fixed: Mapping[str, Any] = {},
                    extra_inputs: Mapping[str, MDFTensor] = {}) -> MDFTensor:
        """A node applying registry function `function` to `x` (its argument `args`'s IN) with the module's
        weights as learnable parameters: `weights` maps the function's argument to the Weight it takes (None:
        the argument is left out); each parameter records its torch key (`metadata.mdfbridge.torch_keys`), so
        `program_state_dict` writes it back. `running`: arguments taking buffers that training updates
        (BatchNorm's running statistics: `metadata.mdfbridge.running_statistics`, not learnable; default none);
        `fixed`: arguments taking constant arrays of no torch key (default none); `extra_inputs`: further graph
        tensors by input port (attention's key and value; default none: x alone). The result has x's batch axis."""
        nid = self.new_id(call.base)
        params: Dict[str, Any] = {}
        keys: Dict[str, Any] = {}
        fargs = dict(args)
        for arg, w in list(weights.items()) + list(running.items()):
            if w is None:
                continue
            params[arg] = {"value": self._array(w.value).tolist()}
            keys[arg] = {"key": w.key, "shape": [int(d) for d in w.value.shape]}
            fargs[arg] = arg
            self.claim(w.key, nid, call)
        for arg, value in fixed.items():
            params[arg] = {"value": np.asarray(value, dtype=float).tolist()}
            fargs[arg] = arg
        meta: Dict[str, Any] = {"role": "mechanism", "function": kind, "layer": call.path, "torch_type": kind,
                                "learnable_parameters": [a for a, w in weights.items() if w is not None],
                                "torch_keys": keys}
        if running:
            meta["running_statistics"] = list(running)
        node: Dict[str, Any] = {
            "metadata": {"mdfbridge": meta},
            "input_ports": {IN: {"shape": list(x.shape)},
                            **{port: {"shape": list(t.shape)} for port, t in extra_inputs.items()}},
            "functions": {FUNCTION: {"function": {function: fargs}}},
            "output_ports": {OUT: {"value": FUNCTION, "shape": list(shape)}}}
        if params:
            node["parameters"] = params
        self.nodes[nid] = node
        self.connect(x, nid, IN)
        for port, t in extra_inputs.items():
            self.connect(t, nid, port)
        return MDFTensor(nid, OUT, tuple(int(d) for d in shape), x.batch_axis)

    def recurrent(self, call: Call, kind: str, x: MDFTensor, layers: Sequence[Mapping[str, Weight]], hidden: int,
                  state: Sequence[Optional[MDFTensor]], options: Mapping[str, Any], used: Tuple[bool, bool],
                  bidirectional: bool = False, out: Optional[int] = None) -> Tuple[Any, ...]:
        """A recurrent layer (`kind` GRU, RNN or LSTM; one MDF node per stacked layer, each running the op over the
        whole per-trial sequence x (T, I) with torch-layout weights as learnable parameters). `layers`: per layer,
        torch name without the _l<k> suffix -> weight (with `bidirectional` (default False) also the reverse
        direction's, named with torch's _reverse suffix: that op runs on the time-reversed sequence, and the layer's
        output is both directions' outputs side by side, as torch's); `state`: h0 (and c0), per trial
        (num_layers x directions, H), or None (zeros); `options`: the op's static arguments (RNN's nonlinearity).
        Returns what the module returns: (output, h_n) or (output, (h_n, c_n)), h_n and c_n per trial (num_layers x
        directions, H) with torch's batch axis 1; the cell states are computed only where `used` (h_n, c_n) says
        the graph uses them. `out`: the size of the outputs and h_n (LSTM's proj_size; default None:
        hidden)."""
        if self.lead != 1 or len(x.shape) != 2:
            raise call.unsupported(f"{kind} input of per-trial shape {x.shape}; expected (time, features)")
        base = identifier(call.base)
        seq, finals, cells = x, [], []
        names = ("h0", "c0")
        h_used, cell_used = used
        directions = ("", "_reverse") if bidirectional else ("",)
        size = out or hidden
        for k, weights in enumerate(layers):
            nid = self.new_id(f"{base}_l{k}" if len(layers) > 1 else base)
            I = int(weights["weight_ih"].value.shape[1])
            if seq.shape[-1] != I:
                raise call.unsupported(f"{kind} layer {k} takes {I} features, its input has per-step shape "
                                       f"{seq.shape[-1:]}")
            ports: Dict[str, Any] = {"x": {"shape": list(seq.shape)}}
            fns: Dict[str, Any] = {}
            outs: Dict[str, Any] = {}
            for i, d in enumerate(directions):
                j = k * len(directions) + i  # this direction's row of h0 / h_n (torch's order)
                if d:
                    fns["x_reverse"] = {"value": "x[::-1]"}
                own = {w[:len(w) - len(d)]: w for w in weights if w.endswith("_reverse") == bool(d)}
                args: Dict[str, Any] = {"X": f"x{d}", **own, "weight_layout": "torch", **options}
                for name, s in zip(names, state):
                    if s is not None:
                        ports[name] = {"shape": list(s.shape)}
                        fns[f"{name}_l{j}"] = {"value": f"{name}[{j}]"}
                        args[name] = f"{name}_l{j}"
                fns[f"y{d}"] = {"function": {kind: args}}
                outs[f"h_n{d}"] = {"value": f"y{d}[-1]", "shape": [size]}
                if cell_used:
                    fns[f"c{d}"] = {"function": {kind: {**args, "output": "Y_c"}}}
                    outs[f"c_n{d}"] = {"value": f"c{d}", "shape": [hidden]}
                finals.append(MDFTensor(nid, f"h_n{d}", (size,)))
                cells.append(MDFTensor(nid, f"c_n{d}", (hidden,)))
            width = size * len(directions)
            outs = {OUT: {"value": "concatenate([y, y_reverse[::-1]], axis=-1)" if bidirectional else "y",
                          "shape": list(seq.shape[:-1]) + [width]}, **outs}
            for w in weights.values():
                self.claim(w.key, nid, call)
            self.nodes[nid] = {
                "metadata": {"mdfbridge": {"role": "recurrent", "function": kind, "layer": call.path,
                                           "torch_type": kind, "learnable_parameters": list(weights),
                                           "torch_params": {w: weights[w].key for w in weights}}},
                "input_ports": ports,
                "parameters": {w: {"value": self._array(v.value).tolist()} for w, v in weights.items()},
                "functions": fns, "output_ports": outs}
            self.connect(seq, nid, "x")
            for name, s in zip(names, state):
                if s is not None:
                    self.connect(s, nid, name)
            seq = MDFTensor(nid, OUT, seq.shape[:-1] + (width,), x.batch_axis)
        h_n = (self.stack(call, f"{base}_h_n", finals) if h_used
               else _Unused(f"the final hidden state h_n of {kind} '{call.path}'"))
        if len(state) == 1:  # no cell state (GRU, RNN)
            return seq, h_n
        c_n = (self.stack(call, f"{base}_c_n", cells) if cell_used
               else _Unused(f"the cell state c_n of LSTM '{call.path}'"))
        return seq, (h_n, c_n)

    def stack(self, call: Call, base: str, parts: Sequence[MDFTensor]) -> MDFTensor:
        """A node stacking per-layer final states (H,) into torch's (num_layers, H) per trial (batch axis 1)."""
        nid = self.new_id(base)
        ports = {f"l{k}": p for k, p in enumerate(parts)}
        H = parts[0].shape[-1]
        self.nodes[nid] = {"metadata": {"mdfbridge": {"role": "mechanism", "function": "stack", "layer": call.path}},
                           "input_ports": {k: {"shape": list(p.shape)} for k, p in ports.items()},
                           "functions": {FUNCTION: {"value": f"stack([{', '.join(ports)}], axis=0)"}},
                           "output_ports": {OUT: {"value": FUNCTION, "shape": [len(parts), H]}}}
        for k, p in ports.items():
            self.connect(p, nid, k)
        return MDFTensor(nid, OUT, (len(parts), H), 1)

    def index(self, call: Call, x: MDFTensor, index: Tuple[Any, ...]) -> MDFTensor:
        """x[index] with a torch index of ints and slices whose entry on the batch axis is `:` (the batch stays)."""
        if len(index) > x.batch_axis and index[x.batch_axis] != slice(None):
            raise call.unsupported(f"indexing [{_index_text(index)}] selects along the batch axis (axis "
                                   f"{x.batch_axis}); MDF keeps every trial")
        per = tuple(e for i, e in enumerate(index) if i != x.batch_axis)
        batch_axis = x.batch_axis - sum(1 for e in index[:x.batch_axis] if isinstance(e, int))
        return self.expression(call, "getitem", [x], f"{{}}[{_index_text(per)}]", np.zeros(x.shape)[per].shape,
                               batch_axis)

    def expression(self, call: Call, function: str, inputs: Sequence[MDFTensor], value: str,
                   shape: Tuple[int, ...], batch_axis: int = 0) -> MDFTensor:
        """A node computing the MDF expression `value` (its `{}`s the input ports: `input` for one input, `input<i>`
        for several) with per-trial output `shape`, whose torch tensor has the batch on `batch_axis` (default 0);
        `function` names it in the metadata."""
        nid = self.new_id(call.name)
        ports = [IN] if len(inputs) == 1 else [f"{IN}{i}" for i in range(len(inputs))]
        self.nodes[nid] = {"metadata": {"mdfbridge": {"role": "mechanism", "function": function, "layer": call.path}},
                           "input_ports": {p: {"shape": list(t.shape)} for p, t in zip(ports, inputs)},
                           "functions": {FUNCTION: {"value": value.format(*ports)}},
                           "output_ports": {OUT: {"value": FUNCTION, "shape": list(shape)}}}
        for p, t in zip(ports, inputs):
            self.connect(t, nid, p)
        return MDFTensor(nid, OUT, tuple(int(d) for d in shape), batch_axis)


class _Unused:
    """A value the converted graph does not compute (named for the error if it is used)."""

    def __init__(self, what: str) -> None:
        self.what = what


def _index_text(index: Tuple[Any, ...]) -> str:
    """An index of ints and slices as Python text."""
    def one(e: Any) -> str:
        if isinstance(e, slice):
            parts = ["" if v is None else str(int(v)) for v in (e.start, e.stop)]
            return ":".join(parts) + ("" if e.step is None else f":{int(e.step)}")
        return str(int(e))
    return ", ".join(one(e) for e in index)
