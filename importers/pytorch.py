"""torch.nn.Module -> MDF, traced with `torch.fx.symbolic_trace` (`torch.export.export` when fx cannot trace the
module; never TorchScript), weights kept, and the way back to the module's own `state_dict`.

Layout (the composition exporter's, ../shared/DESIGN.md): each `nn.Linear` becomes a projection node
`<path>_weight` holding W^T as its (in x out) `matrix` (`MatMul(A=input, B=matrix)`, role projection, learnable),
a bias node `<path>_bias_node` (value [1.0]) with a bias projection `<path>_bias` holding b as a (1 x out)
`matrix`, and a node `<path>` summing the two. Every weight's place in the document is then one Parameter, so
write-back and `learn()` work unchanged; each projection node records the torch key it came from
(`metadata.mdfbridge.torch_key`, `transpose`, `torch_shape`) so `program_state_dict` rebuilds a state_dict the
original module loads with `strict=True`. Activations are MDF standard functions (`Relu`, `logistic`, `tanh`) or
mdfbridge's value forms (`ReLU` with a leak, `SoftMax`); `nn.GRU` is a GRU block (`mdfbridge.gru_mdf`, gate
form by default) whose gate nodes record the GRU's module path. Graph inputs are nodes named after the fx
placeholders; outputs are nodes named after the fx output (`output`, or `output_<i>` for tuples).

Converters are registered per module type / function / method / aten op (onnx2torch style), so the graph walk
stays generic:

    @_module(nn.Tanh)
    def _tanh(b: _Builder, call: _Call) -> _Tensor: ...
"""
from __future__ import annotations

import io
import keyword
import logging
import operator
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .. import __version__
from ..errors import DataError, UnsupportedError
from ..program import Program

log = logging.getLogger(__name__)

MDF_FORMAT = "ModECI MDF v0.4"
SOURCE = "torch"
OUT = "output"
IN = "input"
FUNCTION = "function"

__all__ = ["module_to_mdf", "module_to_program", "program_state_dict", "save_state_dict", "supported_layers"]


def _ident(name: str) -> str:
    """`name` as a Python identifier that is not a keyword (MDF ids must be)."""
    ident = re.sub(r"\W", "_", str(name).strip()) or "node"
    if ident[0].isdigit():
        ident = "_" + ident
    return ident + "_" if keyword.iskeyword(ident) else ident


# ------------------------------------------------------------------------------------------- values

@dataclass(frozen=True)
class _Tensor:
    """An MDF value standing for a torch tensor: a node's output port and its per-trial shape."""

    node: str
    port: str
    shape: Tuple[int, ...]


@dataclass(frozen=True)
class _GruOutput:
    """What `nn.GRU(x)` returns: (output sequence, h_n); only the sequence has an MDF form."""

    seq: _Tensor
    path: str


@dataclass(frozen=True)
class _Weight:
    """A parameter tensor of the module (fx get_attr / export parameter placeholder) and its state_dict key."""

    key: str
    value: torch.Tensor


@dataclass
class _Call:
    """One traced call being converted: what it is, where it sits in the module, its resolved arguments."""

    name: str  # fx node name
    target: str  # printable target (module path + type, function or aten op name)
    path: str  # module path ('' for the root)
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    shape: Optional[Tuple[int, ...]]  # full shape of the (first) output, batch axes included
    module: Optional[nn.Module] = None
    leaf: bool = False  # the call is a torch.nn layer at `path` (names its MDF node after the path)

    @property
    def base(self) -> str:
        """The id an MDF node for this call starts from: the layer's path, else the fx node name."""
        return self.path if self.leaf else self.name

    @property
    def where(self) -> str:
        """Where this call is, for error messages."""
        return f"fx node '{self.name}' (target {self.target}, module path '{self.path or '<root>'}')"

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        """Positional argument i, or keyword `name`, or the default."""
        if len(self.args) > i:
            return self.args[i]
        return self.kwargs.get(name, default)

    def tensor(self, i: int = 0, name: str = "input") -> _Tensor:
        """An argument that must be a tensor computed by the graph."""
        v = self.arg(i, name)
        if isinstance(v, _GruOutput):
            raise UnsupportedError(f"the (output, h_n) tuple of GRU '{v.path}' is used as a tensor; index it: "
                                   "`out, _ = gru(x)` or `gru(x)[0]`", where=self.where)
        if not isinstance(v, _Tensor):
            raise UnsupportedError(f"argument '{name}' must be a tensor computed from the inputs, got "
                                   f"{type(v).__name__}", where=self.where)
        return v

    def unsupported(self, why: str) -> UnsupportedError:
        """An UnsupportedError naming this call."""
        return UnsupportedError(why, where=self.where)


# ------------------------------------------------------------------------------------------- builder

class _Builder:
    """Accumulates MDF nodes and edges (serialised dict form) for one traced module."""

    def __init__(self, lead: int, dtype: torch.dtype, gru_form: str) -> None:
        self.lead = lead  # leading axes that are not part of a trial's shape: 1 (batch) or 2 (batch, time)
        self.dtype = dtype
        self.gru_form = gru_form
        self.nodes: Dict[str, Dict[str, Any]] = {}
        self.edges: Dict[str, Dict[str, Any]] = {}
        self.used_keys: Dict[str, str] = {}  # torch state_dict key -> node that holds it

    # ---------------------------------------------------------------- ids, edges
    def new_id(self, base: str) -> str:
        """A fresh node id from `base` (sanitised, made unique)."""
        ident = _ident(base)
        out, i = ident, 1
        while out in self.nodes:
            out = f"{ident}_{i}"
            i += 1
        self.nodes[out] = {}
        return out

    def connect(self, src: _Tensor, node: str, port: str) -> None:
        """An edge carrying `src` into `node.port`."""
        eid = _ident(f"{src.node}_to_{node}")
        k, i = eid, 1
        while k in self.edges:
            k = f"{eid}_{i}"
            i += 1
        self.edges[k] = {"sender": src.node, "receiver": node, "sender_port": src.port, "receiver_port": port}

    def per_trial(self, shape: Optional[Sequence[int]], where: _Call) -> Tuple[int, ...]:
        """A full torch shape without its leading batch (and time) axes."""
        if shape is None:
            raise where.unsupported("the traced call produced no tensor shape")
        if len(shape) <= self.lead:
            raise where.unsupported(f"output of shape {tuple(shape)} has no per-trial axes after the "
                                    f"{'batch and time axes' if self.lead == 2 else 'batch axis'}")
        return tuple(int(s) for s in shape[self.lead:])

    def claim(self, key: str, node: str, call: _Call) -> None:
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
    def input_node(self, name: str, shape: Tuple[int, ...]) -> _Tensor:
        """A graph input: node `name` with one external input port."""
        nid = self.new_id(name)
        port = f"{nid}_input"
        self.nodes[nid] = {"metadata": {"mdfbridge": {"role": "input", "input": True, "torch_input": name}},
                           "input_ports": {port: {"shape": list(shape)}},
                           "output_ports": {OUT: {"value": port, "shape": list(shape)}}}
        return _Tensor(nid, OUT, shape)

    def output_node(self, name: str, src: _Tensor) -> str:
        """A graph output: node `name` passing `src` through; returns its id."""
        nid = self.new_id(name)
        self.nodes[nid] = {"metadata": {"mdfbridge": {"role": "output", "output": True, "torch_output": name}},
                           "input_ports": {IN: {"shape": list(src.shape)}},
                           "output_ports": {OUT: {"value": IN, "shape": list(src.shape)}}}
        self.connect(src, nid, IN)
        return nid

    def projection(self, base: str, src: _Tensor, matrix: np.ndarray, meta: Dict[str, Any]) -> _Tensor:
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
        return _Tensor(nid, OUT, src.shape[:-1] + (cols,))

    def linear(self, call: _Call, x: _Tensor, weight: _Weight, bias: Optional[_Weight]) -> _Tensor:
        """y = x @ W^T + b as weight projection, bias node + bias projection, and a summing node."""
        W = self._array(weight.value)
        if W.ndim != 2 or x.shape[-1:] != (W.shape[1],):
            raise call.unsupported(f"linear weight '{weight.key}' of shape {tuple(W.shape)} does not fit an input "
                                   f"of per-trial shape {x.shape}")
        base = _ident(call.base)
        out_id = self.new_id(base)
        wproj = self.projection(_ident(weight.key), x, W.T.copy(),
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
            bproj = self.projection(_ident(bias.key), _Tensor(unit, OUT, (1,)), b[None, :].copy(),
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
        return _Tensor(out_id, OUT, shape)

    def elementwise(self, call: _Call, x: _Tensor, kind: str, function: Dict[str, Any],
                    params: Optional[Dict[str, float]] = None) -> _Tensor:
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
        return _Tensor(nid, OUT, x.shape)

    def binary(self, call: _Call, a: Any, b: Any, symbol: str, alpha: Any = 1) -> _Tensor:
        """a (+|-|*) b where at least one side is a tensor of the graph and the other a tensor or a number."""
        tensors = [v for v in (a, b) if isinstance(v, _Tensor)]
        for v in (a, b):
            if not isinstance(v, (_Tensor, int, float)) or isinstance(v, bool):
                raise call.unsupported(f"operand of type {type(v).__name__} (only graph tensors and numbers)")
        if not tensors:
            raise call.unsupported("no operand is computed from the inputs")
        if len(tensors) == 2 and a.shape != b.shape:
            raise call.unsupported(f"operands of per-trial shapes {a.shape} and {b.shape} (broadcasting between "
                                   "branches is not supported)")
        nid = self.new_id(call.name)
        ports: Dict[str, Any] = {}
        params: Dict[str, Any] = {}
        terms = []
        for pid, v in (("a", a), ("b", b)):
            if isinstance(v, _Tensor):
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
        return _Tensor(nid, OUT, shape)

    def gru(self, call: _Call, x: _Tensor, params: Mapping[str, _Weight], prefix: str, hidden: int,
            bias: bool) -> _GruOutput:
        """A GRU block (gate or fused form) over the input sequence, h0 = 0; returns its output sequence."""
        from ..gru import torch_to_gates
        from ..gru_mdf import fused_form_nodes, gate_form_nodes

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
        return _GruOutput(_Tensor(f"{block}__output", OUT, (hidden,)), call.path or call.name)


# ------------------------------------------------------------------------------------------- registries

Converter = Callable[[_Builder, _Call], Any]
MODULE_CONVERTERS: Dict[type, Converter] = {}
FUNCTION_CONVERTERS: Dict[Any, Converter] = {}
METHOD_CONVERTERS: Dict[str, Converter] = {}


def _module(*types: type) -> Callable[[Converter], Converter]:
    """Register the converter of torch.nn module types (fx call_module)."""
    def deco(fn: Converter) -> Converter:
        for t in types:
            MODULE_CONVERTERS[t] = fn
        return fn
    return deco


def _function(*targets: Any) -> Callable[[Converter], Converter]:
    """Register the converter of functions (fx call_function) and aten ops (torch.export)."""
    def deco(fn: Converter) -> Converter:
        for t in targets:
            if t is not None:
                FUNCTION_CONVERTERS[t] = fn
        return fn
    return deco


def _method(*names: str) -> Callable[[Converter], Converter]:
    """Register the converter of tensor methods (fx call_method)."""
    def deco(fn: Converter) -> Converter:
        for n in names:
            METHOD_CONVERTERS[n] = fn
        return fn
    return deco


def _aten(name: str) -> Any:
    """torch.ops.aten.<op>.<overload> by dotted name, or None when this torch lacks it."""
    op, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, op, None)
    return getattr(packet, overload or "default", None) if packet is not None else None


def _callable_name(f: Any) -> str:
    """A readable name of a function or aten op: torch.relu, torch.nn.functional.softmax, aten.tanh.default."""
    if isinstance(f, torch._ops.OpOverload):
        return f"aten.{str(f).split('::', 1)[-1]}" if "::" in str(f) else str(f)
    raw = getattr(f, "__module__", None) or ""
    mod = {"_operator": "operator", "torch._C._nn": "torch.nn.functional",
           "torch._C._VariableFunctions": "torch"}.get(raw, raw)
    name = getattr(f, "__name__", None) or str(f)
    return f"{mod}.{name}" if mod else name


def supported_layers() -> Dict[str, List[str]]:
    """What the importer converts: torch.nn module types, functions (fx), aten ops (torch.export), tensor methods."""
    names = sorted({_callable_name(f) for f in FUNCTION_CONVERTERS})
    return {"modules": sorted(t.__name__ for t in MODULE_CONVERTERS),
            "functions": [n for n in names if not n.startswith("aten.")],
            "aten": [n for n in names if n.startswith("aten.")],
            "methods": sorted(METHOD_CONVERTERS)}


# ------------------------------------------------------------------------------------------- converters

def _relu_fn(b: _Builder, call: _Call) -> _Tensor:
    """ReLU (nn.ReLU, F.relu, torch.relu, Tensor.relu): MDF standard `Relu`."""
    return b.elementwise(call, call.tensor(), "Relu", {"function": "Relu", "args": {"A": IN}})


def _sigmoid_fn(b: _Builder, call: _Call) -> _Tensor:
    """Sigmoid: MDF standard `logistic` with gain 1, bias 0, offset 0."""
    return b.elementwise(call, call.tensor(), "Logistic",
                         {"function": "logistic", "args": {"variable0": IN, "gain": "gain", "bias": "bias",
                                                           "offset": "offset"}},
                         {"gain": 1.0, "bias": 0.0, "offset": 0.0})


def _tanh_fn(b: _Builder, call: _Call) -> _Tensor:
    """Tanh: MDF standard `tanh` with scale 1."""
    return b.elementwise(call, call.tensor(), "Tanh",
                         {"function": "tanh", "args": {"variable0": IN, "scale": "scale"}}, {"scale": 1.0})


def _leaky(b: _Builder, call: _Call, slope: Any) -> _Tensor:
    """LeakyReLU: mdfbridge's ReLU value form with leak = negative_slope."""
    from ..transfer import ReLU

    if isinstance(slope, bool) or not isinstance(slope, (int, float)):
        raise call.unsupported(f"negative_slope {slope!r} is not a number")
    fn = ReLU(leak=float(slope))
    return b.elementwise(call, call.tensor(), "ReLU", fn.mdf_function(IN), fn.params)


def _softmax(b: _Builder, call: _Call, dim: Any) -> _Tensor:
    """Softmax over the last dim: mdfbridge's SoftMax value form (gain 1)."""
    from ..transfer import SoftMax

    x = call.tensor()
    ndim = len(x.shape) + b.lead
    if dim is None:  # torch's legacy implicit dim
        dim = 0 if ndim in (0, 1, 3) else 1
    if not isinstance(dim, int) or dim % ndim != ndim - 1:
        raise call.unsupported(f"softmax over dim={dim!r} of a {ndim}-d tensor; only the last dim (dim=-1) is "
                               "supported")
    fn = SoftMax()
    return b.elementwise(call, x, "SoftMax", fn.mdf_function(IN), fn.params)


def _identity(b: _Builder, call: _Call) -> _Tensor:
    """A layer that passes its input through: no node."""
    return call.tensor()


def _flatten(b: _Builder, call: _Call, start: Any, end: Any) -> _Tensor:
    """Flatten that leaves the shape as it is (already flat): no node; anything else is refused."""
    x = call.tensor()
    ndim = len(x.shape) + b.lead
    s, e = int(start) % ndim, int(end) % ndim
    if e > s:
        raise call.unsupported(f"flatten(start_dim={start}, end_dim={end}) of a tensor with per-trial shape "
                               f"{x.shape} changes its shape; only flattening an already flat input is supported")
    return x


def _dropout(b: _Builder, call: _Call, p: Any, training: bool) -> _Tensor:
    """Dropout at inference (eval mode or p = 0): no node."""
    if training and float(p) > 0:
        raise call.unsupported(f"dropout (p={p}) in training mode; call module.eval() first (MDF has no dropout)")
    return call.tensor()


@_module(nn.Linear)
def _linear_module(b: _Builder, call: _Call) -> _Tensor:
    """nn.Linear: weight and bias projections (see `_Builder.linear`)."""
    m = call.module
    bias = _Weight(f"{call.path}.bias", m.bias) if m.bias is not None else None
    return b.linear(call, call.tensor(), _Weight(f"{call.path}.weight", m.weight), bias)


@_function(F.linear, _aten("linear.default"))
def _linear_function(b: _Builder, call: _Call) -> _Tensor:
    """F.linear / aten.linear on parameters of the module."""
    w, bias = call.arg(1, "weight"), call.arg(2, "bias")
    if not isinstance(w, _Weight) or not (bias is None or isinstance(bias, _Weight)):
        raise call.unsupported("linear() with weights that are not parameters of the module")
    return b.linear(call, call.tensor(), w, bias)


_module(nn.ReLU)(_relu_fn)
_function(F.relu, torch.relu, _aten("relu.default"))(_relu_fn)
_method("relu")(_relu_fn)
_module(nn.Sigmoid)(_sigmoid_fn)
_function(torch.sigmoid, F.sigmoid, _aten("sigmoid.default"))(_sigmoid_fn)
_method("sigmoid")(_sigmoid_fn)
_module(nn.Tanh)(_tanh_fn)
_function(torch.tanh, F.tanh, _aten("tanh.default"))(_tanh_fn)
_method("tanh")(_tanh_fn)
_module(nn.Identity)(_identity)
_function(_aten("clone.default"), _aten("alias.default"))(_identity)


@_module(nn.LeakyReLU)
def _leaky_module(b: _Builder, call: _Call) -> _Tensor:
    """nn.LeakyReLU."""
    return _leaky(b, call, call.module.negative_slope)


@_function(F.leaky_relu, _aten("leaky_relu.default"))
def _leaky_function(b: _Builder, call: _Call) -> _Tensor:
    """F.leaky_relu / aten.leaky_relu."""
    return _leaky(b, call, call.arg(1, "negative_slope", 0.01))


@_module(nn.Softmax)
def _softmax_module(b: _Builder, call: _Call) -> _Tensor:
    """nn.Softmax."""
    return _softmax(b, call, call.module.dim)


@_function(F.softmax, torch.softmax, _aten("softmax.int"), _aten("_softmax.default"))
def _softmax_function(b: _Builder, call: _Call) -> _Tensor:
    """F.softmax / torch.softmax / aten softmax."""
    if call.kwargs.get("dtype") is not None:
        raise call.unsupported("softmax with a dtype argument")
    return _softmax(b, call, call.arg(1, "dim"))


@_method("softmax")
def _softmax_method(b: _Builder, call: _Call) -> _Tensor:
    """Tensor.softmax."""
    return _softmax(b, call, call.arg(1, "dim"))


@_module(nn.Flatten)
def _flatten_module(b: _Builder, call: _Call) -> _Tensor:
    """nn.Flatten."""
    return _flatten(b, call, call.module.start_dim, call.module.end_dim)


@_function(torch.flatten, _aten("flatten.using_ints"))
@_method("flatten")
def _flatten_function(b: _Builder, call: _Call) -> _Tensor:
    """torch.flatten / Tensor.flatten / aten.flatten."""
    return _flatten(b, call, call.arg(1, "start_dim", 0), call.arg(2, "end_dim", -1))


@_module(nn.Dropout)
def _dropout_module(b: _Builder, call: _Call) -> _Tensor:
    """nn.Dropout."""
    return _dropout(b, call, call.module.p, call.module.training)


@_function(F.dropout, _aten("dropout.default"))
def _dropout_function(b: _Builder, call: _Call) -> _Tensor:
    """F.dropout / aten.dropout."""
    return _dropout(b, call, call.arg(1, "p", 0.5), bool(call.arg(2, "training", True)))


def _binary_converter(symbol: str) -> Converter:
    """The converter of an elementwise binary operator (+, -, *) between tensors and numbers."""
    def convert(b: _Builder, call: _Call) -> _Tensor:
        """a <symbol> alpha * b (alpha from torch.add/torch.sub)."""
        alpha = call.kwargs.get("alpha", 1)
        return b.binary(call, call.arg(0, "input"), call.arg(1, "other"), symbol, alpha)
    return convert


_function(operator.add, torch.add, _aten("add.Tensor"))(_binary_converter("+"))
_method("add")(_binary_converter("+"))
_function(operator.sub, torch.sub, _aten("sub.Tensor"))(_binary_converter("-"))
_method("sub")(_binary_converter("-"))
_function(operator.mul, torch.mul, _aten("mul.Tensor"))(_binary_converter("*"))
_method("mul")(_binary_converter("*"))


@_function(operator.getitem)
def _getitem(b: _Builder, call: _Call) -> Any:
    """Indexing: item 0 of a GRU's (output, h_n), items of Python tuples; tensor indexing is refused."""
    src, index = call.arg(0, "a"), call.arg(1, "b")
    if isinstance(src, _GruOutput):
        if index == 0:
            return src.seq
        raise call.unsupported(f"the final hidden state h_n (item {index!r}) of GRU '{src.path}' is not "
                               "supported; use the output sequence (item 0)")
    if isinstance(src, (tuple, list)):
        return src[index]
    raise call.unsupported(f"indexing a tensor ([{index!r}]) is not supported")


def _check_gru(call: _Call, *, batch_first: bool, num_layers: int, bidirectional: bool, proj_size: int = 0,
               nonlinearity: Optional[str] = None) -> None:
    """Refuse GRU configurations the MDF GRU block does not express, naming them."""
    bad = []
    if not batch_first:
        bad.append("batch_first=False")
    if num_layers != 1:
        bad.append(f"num_layers={num_layers}")
    if bidirectional:
        bad.append("bidirectional=True")
    if proj_size:
        bad.append(f"proj_size={proj_size}")
    if bad:
        raise call.unsupported(f"GRU with {', '.join(bad)}; only batch_first=True, 1 layer, unidirectional GRUs are "
                               "supported")


@_module(nn.GRU)
def _gru_module(b: _Builder, call: _Call) -> _GruOutput:
    """nn.GRU (batch_first, 1 layer, unidirectional, h0 = 0): a GRU block."""
    m = call.module
    _check_gru(call, batch_first=m.batch_first, num_layers=m.num_layers, bidirectional=m.bidirectional,
               proj_size=getattr(m, "proj_size", 0))
    if call.arg(1, "hx") is not None:
        raise call.unsupported("an initial hidden state argument (hx); only h0 = 0 is supported")
    names = ["weight_ih_l0", "weight_hh_l0"] + (["bias_ih_l0", "bias_hh_l0"] if m.bias else [])
    params = {n: _Weight(f"{call.path}.{n}", getattr(m, n)) for n in names}
    return b.gru(call, call.tensor(), params, call.path, m.hidden_size, bool(m.bias))


@_function(_aten("gru.input"))
def _gru_aten(b: _Builder, call: _Call) -> _GruOutput:
    """aten.gru.input from torch.export (same restrictions as nn.GRU)."""
    x, hx, weights, has_bias, layers, _dropout_p, _train, bidi, batch_first = call.args[:9]
    _check_gru(call, batch_first=bool(batch_first), num_layers=int(layers), bidirectional=bool(bidi))
    if not isinstance(hx, _Zeros):
        raise call.unsupported("an initial hidden state argument (hx); only h0 = 0 is supported")
    names = ["weight_ih_l0", "weight_hh_l0"] + (["bias_ih_l0", "bias_hh_l0"] if has_bias else [])
    if len(weights) != len(names) or not all(isinstance(w, _Weight) for w in weights):
        raise call.unsupported("GRU weights that are not the module's parameters")
    params = dict(zip(names, weights))
    prefix = weights[0].key.rsplit(".", 1)[0] if "." in weights[0].key else ""
    hidden = int(weights[1].value.shape[1])
    return b.gru(call, call.tensor(), params, prefix, hidden, bool(has_bias))


@dataclass(frozen=True)
class _Zeros:
    """A zeros tensor created inside the traced graph (torch.export writes GRU's default hx this way)."""

    shape: Tuple[int, ...]


@_function(_aten("zeros.default"))
def _zeros(b: _Builder, call: _Call) -> _Zeros:
    """aten.zeros (torch.export's default GRU hx): a marker, not a node."""
    return _Zeros(tuple(call.arg(0, "size")))


# ------------------------------------------------------------------------------------------- tracing

@dataclass
class _Trace:
    """A traced graph with what the walk needs: tensor shapes, parameter values, module paths."""

    graph: Any  # torch.fx.Graph
    tracer: str  # 'fx' | 'export'
    root: nn.Module  # where call_module targets and get_attr paths resolve (the GraphModule for fx)
    module: nn.Module  # the module given (its state_dict is what program_state_dict rebuilds)
    user_inputs: List[str]  # placeholder names that are user inputs
    weights: Dict[str, _Weight] = field(default_factory=dict)  # placeholder name -> parameter (export)


def _fx_trace(module: nn.Module, example_inputs: Tuple[Any, ...]) -> _Trace:
    """Trace with torch.fx.symbolic_trace and record tensor shapes with ShapeProp."""
    from torch.fx.passes.shape_prop import ShapeProp

    gm = torch.fx.symbolic_trace(module)
    ShapeProp(gm).propagate(*example_inputs)
    placeholders = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    return _Trace(gm.graph, "fx", gm, module, placeholders)


def _export_trace(module: nn.Module, example_inputs: Tuple[Any, ...]) -> _Trace:
    """Trace with torch.export.export (parameters become placeholders mapped to state_dict keys)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module, tuple(example_inputs))
    sig = ep.graph_signature
    state = dict(ep.state_dict)
    state.update(getattr(ep, "constants", {}) or {})
    weights = {}
    lifted = getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {}
    for ph, key in [*sig.inputs_to_parameters.items(), *sig.inputs_to_buffers.items(), *lifted.items()]:
        if key in state:
            weights[ph] = _Weight(key, state[key])
    return _Trace(ep.graph, "export", module, module, list(sig.user_inputs), weights)


def _trace(module: nn.Module, example_inputs: Tuple[Any, ...]) -> _Trace:
    """fx symbolic tracing first; torch.export when fx cannot trace (data-dependent Python control flow)."""
    try:
        return _fx_trace(module, example_inputs)
    except Exception as fx_exc:  # noqa: BLE001 - fx raises TraceError, TypeError, ... on untraceable code
        log.info("torch.fx could not trace %s (%s); trying torch.export", type(module).__name__, fx_exc)
        try:
            return _export_trace(module, example_inputs)
        except Exception as ex_exc:  # noqa: BLE001
            log.debug("torch.export failed on %s", type(module).__name__, exc_info=True)
            raise UnsupportedError(f"cannot trace {type(module).__name__} (data-dependent control flow?): torch.fx: "
                                   f"{_first_line(fx_exc)}; torch.export: {_first_line(ex_exc)}",
                                   where=f"module {type(module).__name__}") from ex_exc


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message, shortened."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape_of(node: Any) -> Optional[Tuple[int, ...]]:
    """The full shape of a traced node's (first) tensor output, from ShapeProp or export's fake values."""
    meta = node.meta.get("tensor_meta")
    if meta is None:
        val = node.meta.get("val")
        if isinstance(val, (tuple, list)) and val:
            val = val[0]
        return tuple(int(s) for s in val.shape) if hasattr(val, "shape") else None
    if isinstance(meta, (tuple, list)):
        meta = meta[0] if meta else None
    return tuple(int(s) for s in meta.shape) if hasattr(meta, "shape") else None


_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def _path_of(node: Any) -> Tuple[str, bool]:
    """(module path the traced node belongs to, whether that module is a torch.nn layer the node stands for)."""
    if node.op == "call_module":
        return str(node.target), True
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", False
    entry = list(stack.values())[-1]
    path, typ = (entry[0], entry[1]) if isinstance(entry, tuple) else (entry, "")
    path = re.sub(r"^L__self__\.?|^L\['self'\]\.?", "", str(path))
    typ = getattr(typ, "__module__", "") + "." + getattr(typ, "__name__", "") if isinstance(typ, type) else str(typ)
    leaf = typ.startswith("torch.nn.modules.") and not typ.endswith(_CONTAINERS)
    return path, leaf and bool(path)


def _target_name(node: Any, module: Optional[nn.Module]) -> str:
    """A printable target of a traced node (module path and type, function or aten op, method)."""
    if node.op == "call_module":
        return f"{node.target} ({type(module).__name__})"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return _callable_name(node.target)


def _needed(graph: Any) -> set:
    """Nodes the output depends on (others, such as an unused h_n, are not converted)."""
    out = next(n for n in graph.nodes if n.op == "output")
    seen, work = {out}, [out]
    while work:
        n = work.pop()
        for m in n.all_input_nodes:
            if m not in seen:
                seen.add(m)
                work.append(m)
    return seen


def _has_gru(trace: _Trace, needed: set) -> bool:
    """Does the output depend on a recurrent layer (then every tensor has a time axis after the batch axis)?"""
    for n in needed:
        if n.op == "call_module" and isinstance(trace.root.get_submodule(n.target), nn.RNNBase):
            return True
        if n.op == "call_function" and str(n.target).startswith(("aten.gru", "aten.lstm", "aten.rnn")):
            return True
    return False


def _output_items(value: Any) -> List[Tuple[str, Any]]:
    """(suffix, fx arg) of each tensor the module returns."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return [("", value[0])]
        return [(f"_{i}", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return [(f"_{_ident(k)}", v) for k, v in value.items()]
    return [("", value)]


def _convert(trace: _Trace, example_inputs: Tuple[Any, ...], gru_form: str) -> Tuple[_Builder, Dict[str, Any]]:
    """Walk the traced graph in order, converting each needed node; returns the builder and graph metadata."""
    graph = trace.graph
    needed = _needed(graph)
    lead = 2 if _has_gru(trace, needed) else 1
    dtype = next((p.dtype for p in trace.module.parameters() if p.is_floating_point()),
                 next((x.dtype for x in example_inputs if torch.is_tensor(x)), torch.float32))
    b = _Builder(lead, dtype, gru_form)
    env: Dict[Any, Any] = {}
    examples = iter(example_inputs)
    inputs, outputs = [], []
    for node in graph.nodes:
        if node.op == "placeholder":
            if node.name not in trace.user_inputs:
                env[node] = trace.weights.get(node.name)
                continue
            example = next(examples, None)
            if node not in needed:
                log.warning("input '%s' is not used by the module's output; it is left out of the MDF graph",
                            node.name)
                continue
            shape = _shape_of(node) or (tuple(example.shape) if torch.is_tensor(example) else None)
            if shape is None or len(shape) <= lead:
                want = "(batch, time, features...)" if lead == 2 else "(batch, features...)"
                raise UnsupportedError(f"input '{node.name}' has shape {shape}; expected {want}",
                                       where=f"fx placeholder '{node.name}'")
            arg_name = str(node.target).lstrip("*") if trace.tracer == "fx" else node.name
            env[node] = b.input_node(arg_name, tuple(shape[lead:]))
            inputs.append(env[node].node)
            continue
        if node.op == "output":
            for suffix, arg in _output_items(node.args[0]):
                value = torch.fx.node.map_arg(arg, lambda n: env[n])
                if isinstance(value, _GruOutput):
                    raise UnsupportedError("the module returns a GRU's (output, h_n) tuple; return the output "
                                           "sequence (item 0)", where=f"fx output '{node.name}'")
                if not isinstance(value, _Tensor):
                    raise UnsupportedError(f"output{suffix} is a {type(value).__name__}, not a tensor computed from "
                                           "the inputs", where=f"fx output '{node.name}'")
                outputs.append(b.output_node(f"{node.name}{suffix}", value))
            continue
        if node not in needed:
            continue
        if node.op == "get_attr":
            value = _fetch_attr(trace.root, str(node.target))
            if isinstance(value, torch.Tensor):
                env[node] = _Weight(str(node.target), value)
                continue
            raise UnsupportedError(f"attribute '{node.target}' of type {type(value).__name__}",
                                   where=f"fx node '{node.name}'")
        module = trace.root.get_submodule(node.target) if node.op == "call_module" else None
        args = torch.fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
        path, leaf = _path_of(node)
        call = _Call(node.name, _target_name(node, module), path, tuple(args), dict(kwargs), _shape_of(node),
                     module, leaf)
        if node.op == "call_module":
            conv = MODULE_CONVERTERS.get(type(module))
            what = f"torch.nn module {type(module).__module__}.{type(module).__name__}"
        elif node.op == "call_method":
            conv = METHOD_CONVERTERS.get(str(node.target))
            what = f"tensor method '{node.target}'"
        else:
            conv = FUNCTION_CONVERTERS.get(node.target)
            what = f"function {call.target}" if node.op == "call_function" else f"{node.op} {call.target}"
        if conv is None:
            raise UnsupportedError(f"{what} is not supported; supported: " + _supported_summary(), where=call.where)
        env[node] = conv(b, call)
        if isinstance(env[node], _Tensor) and call.shape is not None and node.op != "placeholder":
            got = env[node].shape
            want = b.per_trial(call.shape, call)
            if got != want:
                raise call.unsupported(f"converted to per-trial shape {got}, torch computes {want}")
    full_state = trace.module.state_dict()
    unused = {k: v for k, v in full_state.items() if k not in b.used_keys}
    meta = {"tracer": trace.tracer, "module": f"{type(trace.module).__module__}.{type(trace.module).__qualname__}",
            "dtype": str(dtype).replace("torch.", ""), "inputs": inputs, "outputs": outputs,
            "sequence": lead == 2, "state_dict_keys": list(full_state.keys())}
    if unused:
        log.warning("state_dict entries %s are not used by the module's forward; they are kept in the graph's "
                    "metadata so program_state_dict gives a complete state_dict", sorted(unused))
        meta["unused_state"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
                                    "value": v.detach().cpu().double().reshape(-1).tolist()}
                                for k, v in unused.items()}
    return b, meta


def _fetch_attr(root: nn.Module, target: str) -> Any:
    """The attribute at dotted path `target` of `root`."""
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _supported_summary() -> str:
    """One line listing what the importer converts (for error messages)."""
    s = supported_layers()
    return ("modules " + ", ".join(s["modules"]) + "; functions " + ", ".join(s["functions"]) + "; tensor methods "
            + ", ".join(s["methods"]))


# ------------------------------------------------------------------------------------------- public API

def module_to_mdf(module: nn.Module, example_inputs: Union[Tuple[Any, ...], torch.Tensor], *,
                  name: Optional[str] = None, gru_form: str = "gates") -> Dict[str, Any]:
    """The MDF document (serialised dict) of a torch module traced on `example_inputs` (batch axis first).

    GRU blocks are written in `gru_form`: 'gates' (default; modeci-mdf's engine steps it) or 'onnx' (fused).
    """
    if not isinstance(module, nn.Module):
        raise DataError(f"module_to_mdf expects a torch.nn.Module, got {type(module).__name__}")
    if gru_form not in ("gates", "onnx"):
        raise DataError(f"gru_form must be 'gates' or 'onnx', got {gru_form!r}")
    if torch.is_tensor(example_inputs):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    trace = _trace(module, example_inputs)
    builder, meta = _convert(trace, example_inputs, gru_form)
    gid = _ident(name or type(module).__name__)
    graph = {"metadata": {"mdfbridge": {"source": SOURCE, "version": __version__, "torch": meta}},
             "nodes": builder.nodes, "edges": builder.edges}
    log.info("imported %s from torch (%s): %d nodes, %d edges, %d weights", meta["module"], trace.tracer,
             len(builder.nodes), len(builder.edges), len(builder.used_keys))
    return {f"{gid}_model": {"format": MDF_FORMAT, "generating_application": f"mdfbridge {__version__}",
                             "graphs": {gid: graph}}}


def module_to_program(module: nn.Module, example_inputs: Union[Tuple[Any, ...], torch.Tensor], *,
                      name: Optional[str] = None, gru_form: str = "gates") -> Program:
    """The lowered Program of a torch module (see `module_to_mdf`)."""
    from ..lowering import lower

    return lower(module_to_mdf(module, example_inputs, name=name, gru_form=gru_form))


def _torch_meta(program: Program) -> Dict[str, Any]:
    """The graph's metadata.mdfbridge.torch, or an error when the model was not imported from torch."""
    gmeta = program.metadata.get("graph_metadata") or {}
    if gmeta.get("source") != SOURCE or "torch" not in gmeta:
        raise UnsupportedError("this model was not imported from a torch module (no metadata.mdfbridge.source = "
                               "'torch' on its graph); save its weights with mdfbridge.exporters.weights."
                               "save_weights instead", where=f"model '{program.name}'")
    return gmeta["torch"]


def program_state_dict(program: Union[Program, Mapping[str, Any]], dtype: Optional[torch.dtype] = None
                       ) -> "OrderedDict[str, torch.Tensor]":
    """The program's (current, e.g. trained) weights under the original module's state_dict keys.

    The original module loads it with `load_state_dict(..., strict=True)`. `dtype` defaults to the module's.
    """
    from ..gru import gates_to_torch, onnx_to_gates

    if not isinstance(program, Program):
        from ..lowering import lower

        program = lower(program)
    tmeta = _torch_meta(program)
    dtype = dtype or getattr(torch, str(tmeta.get("dtype", "float64")), torch.float64)
    nodes = program.metadata.get("nodes") or {}
    state: Dict[str, np.ndarray] = {}
    grus: Dict[str, Dict[str, np.ndarray]] = {}
    for p in program.params.values():
        loc = p.location or ()
        if len(loc) < 6 or loc[2] != "nodes" or loc[4] != "parameters":
            continue
        nid, pid = loc[3], loc[5]
        meta = nodes.get(nid) or {}
        value = np.asarray(p.value, dtype=float)
        if meta.get("torch_key") and meta.get("role") == "projection" and pid == "matrix":
            if meta.get("transpose"):
                value = value.T
            state[meta["torch_key"]] = value.reshape(meta.get("torch_shape", value.shape))
        gru = meta.get("gru") or {}
        if "torch_key" in gru and pid != "initial_h":
            grus.setdefault(gru["torch_key"], {})[pid] = value
    for prefix, parts in grus.items():
        gates = onnx_to_gates(parts["W"], parts["R"], parts.get("B")) if "W" in parts else parts
        for k, v in gates_to_torch(gates).items():
            state[f"{prefix}.{k}" if prefix else k] = v
    for k, entry in (tmeta.get("unused_state") or {}).items():
        state[k] = np.asarray(entry["value"], dtype=float).reshape(entry["shape"])
    keys = list(tmeta.get("state_dict_keys") or sorted(state))
    missing = [k for k in keys if k not in state]
    if missing:
        raise DataError(f"the program has no values for state_dict entries {missing} (was a projection node "
                        "removed or renamed?)", where=f"model '{program.name}'")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k in keys:
        out[k] = torch.as_tensor(np.ascontiguousarray(state[k]), dtype=dtype)
    return out


def save_state_dict(program: Union[Program, Mapping[str, Any]], path: Any,
                    dtype: Optional[torch.dtype] = None) -> None:
    """Write `program_state_dict(program)` with torch.save, atomically (for `mdfbridge convert model.json model.pt`)."""
    from ..document import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(program_state_dict(program, dtype), buf)
    atomic_write_bytes(path, buf.getvalue())
