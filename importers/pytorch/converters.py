"""The converters: one function per torch.nn layer / function / tensor method / aten op (or family of them), each
registered with `@add_converter` for the torch callables it stands for, writing MDF nodes into the `Builder`.

Activations are MDF standard functions (`Relu`, `logistic`, `tanh`) or mdfbridge's value forms (`ReLU` with a
leak, `SoftMax`); `nn.GRU` is a GRU block where it can be, else (like `nn.RNN` and `nn.LSTM`) recurrent op nodes
(`Builder.recurrent`); indexing takes items of tuples and ints / constant slices of tensors; layers that pass their
input through (Identity, flat Flatten, Dropout at inference) make no node.
"""
from __future__ import annotations

import operator
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...transfer import Logistic, ReLU, SoftMax, TransferFunction
from .builder import IN, Builder
from .registry import Converter, add_converter, aten
from .values import BatchSize, Call, GRUOutput, MDFTensor, Weight, Zeros

# --------------------------------------------------------------------------------------- shared conversions


def _transfer(b: Builder, call: Call, fn: TransferFunction, x: Optional[MDFTensor] = None) -> MDFTensor:
    """A node applying mdfbridge transfer function `fn` (its MDF form and parameters) to `x` (default: input 0)."""
    return b.elementwise(call, call.tensor() if x is None else x, fn.name, fn.mdf_function(IN), fn.params)


def _leaky(b: Builder, call: Call, slope: Any) -> MDFTensor:
    """LeakyReLU: mdfbridge's ReLU value form with leak = negative_slope."""
    if isinstance(slope, bool) or not isinstance(slope, (int, float)):
        raise call.unsupported(f"negative_slope {slope!r} is not a number")
    return _transfer(b, call, ReLU(leak=float(slope)))


def _softmax(b: Builder, call: Call, dim: Any) -> MDFTensor:
    """Softmax over the last dim: mdfbridge's SoftMax value form (gain 1)."""
    x = call.tensor()
    ndim = len(x.shape) + b.lead
    if dim is None:  # torch's legacy implicit dim
        dim = 0 if ndim in (0, 1, 3) else 1
    if not isinstance(dim, int) or dim % ndim != ndim - 1:
        raise call.unsupported(f"softmax over dim={dim!r} of a {ndim}-d tensor; only the last dim (dim=-1) is "
                               "supported")
    return _transfer(b, call, SoftMax(), x)


def _flatten(b: Builder, call: Call, start: Any, end: Any) -> MDFTensor:
    """Flatten of per-trial axes (a CNN's (C, 1, 1) before its Linear head): a reshape node; one that leaves the
    shape as it is: no node; flattening the batch axis into others is refused."""
    x = call.tensor()
    ndim = len(x.shape) + b.lead
    s, e = int(start) % ndim, int(end) % ndim
    if e <= s:
        return x
    x = _batch_first(b, call, x)
    if s < b.lead:
        raise call.unsupported(f"flatten(start_dim={start}, end_dim={end}) flattens the batch axis (axis 0) into "
                               f"others; MDF keeps the trials apart (start_dim=1 flattens each trial)")
    ps, pe = s - b.lead, e - b.lead
    shape = x.shape[:ps] + (int(np.prod(x.shape[ps:pe + 1])),) + x.shape[pe + 1:]
    return b.expression(call, "flatten", [x], f"reshape({{}}, {list(shape)})", shape)


def _batch_first(b: Builder, call: Call, x: MDFTensor) -> MDFTensor:
    """x, refused unless its batch axis is axis 0 (what the shape ops below convert)."""
    if x.batch_axis != 0 or b.lead != 1:
        raise call.unsupported(f"a shape op on a tensor whose batch axis is axis {x.batch_axis} (per-trial shape "
                               f"{x.shape}); only batch-first tensors are converted")
    return x


def _trial_axis(call: Call, x: MDFTensor, dim: Any) -> int:
    """torch dim of a batch-first tensor -> the per-trial axis (the batch axis itself refused)."""
    ndim = len(x.shape) + 1
    d = int(dim)
    if not -ndim <= d < ndim:
        raise call.unsupported(f"dim {d} is out of range for a tensor of {ndim} dimensions")
    if d % ndim == 0:
        raise call.unsupported(f"dim {d} is the batch axis; MDF keeps the trials apart")
    return d % ndim - 1


def _dropout(b: Builder, call: Call, p: Any, training: bool) -> MDFTensor:
    """Dropout at inference (eval mode or p = 0): no node."""
    if training and float(p) > 0:
        raise call.unsupported(f"dropout (p={p}) in training mode; call module.eval() first (MDF has no dropout)")
    return call.tensor()


def _check_gru(call: Call, *, batch_first: bool, num_layers: int, bidirectional: bool, proj_size: int = 0) -> None:
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


def _gru_weight_names(bias: bool) -> List[str]:
    """torch.nn.GRU's parameter names of a 1-layer GRU, in aten.gru's order."""
    return ["weight_ih_l0", "weight_hh_l0"] + (["bias_ih_l0", "bias_hh_l0"] if bias else [])


# --------------------------------------------------------------------------------------- linear layers

@add_converter(nn.Linear)
def _linear_module(b: Builder, call: Call) -> MDFTensor:
    """nn.Linear: weight and bias projections (see `Builder.linear`)."""
    m = call.module
    assert isinstance(m, nn.Linear)  # add_converter(nn.Linear) dispatches on the module class
    bias = Weight(b.key(call.path, "bias"), m.bias) if m.bias is not None else None
    return b.linear(call, call.tensor(), Weight(b.key(call.path, "weight"), m.weight), bias)


@add_converter(F.linear, aten("linear.default"))
def _linear_function(b: Builder, call: Call) -> MDFTensor:
    """F.linear / aten.linear on parameters of the module."""
    w, bias = call.arg(1, "weight"), call.arg(2, "bias")
    if not isinstance(w, Weight) or not (bias is None or isinstance(bias, Weight)):
        raise call.unsupported("linear() with weights that are not parameters of the module")
    return b.linear(call, call.tensor(), w, bias)


# --------------------------------------------------------------------------------------- activations

@add_converter(nn.ReLU, F.relu, torch.relu, torch.Tensor.relu, aten("relu.default"))
def _relu(b: Builder, call: Call) -> MDFTensor:
    """ReLU (nn.ReLU, F.relu, torch.relu, Tensor.relu): MDF standard `Relu`."""
    return b.elementwise(call, call.tensor(), "Relu", {"function": "Relu", "args": {"A": IN}})


@add_converter(nn.Sigmoid, torch.sigmoid, F.sigmoid, torch.Tensor.sigmoid, aten("sigmoid.default"))
def _sigmoid(b: Builder, call: Call) -> MDFTensor:
    """Sigmoid: MDF standard `logistic` with gain 1, bias 0, offset 0 (mdfbridge's Logistic)."""
    return _transfer(b, call, Logistic())


@add_converter(nn.Tanh, torch.tanh, F.tanh, torch.Tensor.tanh, aten("tanh.default"))
def _tanh(b: Builder, call: Call) -> MDFTensor:
    """Tanh: MDF standard `tanh` with scale 1."""
    return b.elementwise(call, call.tensor(), "Tanh",
                         {"function": "tanh", "args": {"variable0": IN, "scale": "scale"}}, {"scale": 1.0})


@add_converter(nn.LeakyReLU)
def _leaky_module(b: Builder, call: Call) -> MDFTensor:
    """nn.LeakyReLU."""
    m = call.module
    assert isinstance(m, nn.LeakyReLU)  # add_converter(nn.LeakyReLU) dispatches on the module class
    return _leaky(b, call, m.negative_slope)


@add_converter(F.leaky_relu, aten("leaky_relu.default"))
def _leaky_function(b: Builder, call: Call) -> MDFTensor:
    """F.leaky_relu / aten.leaky_relu."""
    return _leaky(b, call, call.arg(1, "negative_slope", 0.01))


@add_converter(nn.Softmax)
def _softmax_module(b: Builder, call: Call) -> MDFTensor:
    """nn.Softmax."""
    m = call.module
    assert isinstance(m, nn.Softmax)  # add_converter(nn.Softmax) dispatches on the module class
    return _softmax(b, call, m.dim)


@add_converter(F.softmax, torch.softmax, aten("softmax.int"), aten("_softmax.default"))
def _softmax_function(b: Builder, call: Call) -> MDFTensor:
    """F.softmax / torch.softmax / aten softmax."""
    if call.kwargs.get("dtype") is not None:
        raise call.unsupported("softmax with a dtype argument")
    return _softmax(b, call, call.arg(1, "dim"))


@add_converter(torch.Tensor.softmax)
def _softmax_method(b: Builder, call: Call) -> MDFTensor:
    """Tensor.softmax."""
    return _softmax(b, call, call.arg(1, "dim"))


# --------------------------------------------------------------------------------------- pass-through layers

@add_converter(nn.Identity, aten("clone.default"), aten("alias.default"))
def _identity(b: Builder, call: Call) -> MDFTensor:
    """A layer that passes its input through: no node."""
    return call.tensor()


@add_converter(nn.Flatten)
def _flatten_module(b: Builder, call: Call) -> MDFTensor:
    """nn.Flatten."""
    m = call.module
    assert isinstance(m, nn.Flatten)  # add_converter(nn.Flatten) dispatches on the module class
    return _flatten(b, call, m.start_dim, m.end_dim)


@add_converter(torch.flatten, torch.Tensor.flatten, aten("flatten.using_ints"))
def _flatten_function(b: Builder, call: Call) -> MDFTensor:
    """torch.flatten / Tensor.flatten / aten.flatten."""
    return _flatten(b, call, call.arg(1, "start_dim", 0), call.arg(2, "end_dim", -1))


@add_converter(torch.cat, torch.concat, aten("cat.default"))
def _cat(b: Builder, call: Call) -> MDFTensor:
    """torch.cat of batch-first tensors along a per-trial axis: one Concat node."""
    items = call.arg(0, "tensors")
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(t, MDFTensor) for t in items):
        raise call.unsupported("torch.cat of values that are not all tensors computed from the inputs")
    xs = [_batch_first(b, call, t) for t in items]
    axis = _trial_axis(call, xs[0], call.arg(1, "dim", 0))
    rest = {t.shape[:axis] + t.shape[axis + 1:] for t in xs}
    if len({len(t.shape) for t in xs}) != 1 or len(rest) != 1:
        raise call.unsupported(f"torch.cat of per-trial shapes {[t.shape for t in xs]} along axis {axis + 1}")
    shape = xs[0].shape[:axis] + (sum(t.shape[axis] for t in xs),) + xs[0].shape[axis + 1:]
    parts = ", ".join("{}" for _ in xs)
    return b.expression(call, "cat", xs, f"concatenate([{parts}], axis={axis})", shape)


@add_converter(torch.transpose, torch.Tensor.transpose, aten("transpose.int"))
def _transpose(b: Builder, call: Call) -> MDFTensor:
    """transpose(dim0, dim1) of two per-trial axes: a Transpose node."""
    x = _batch_first(b, call, call.tensor())
    a, c = _trial_axis(call, x, call.arg(1, "dim0")), _trial_axis(call, x, call.arg(2, "dim1"))
    perm = list(range(len(x.shape)))
    perm[a], perm[c] = perm[c], perm[a]
    return _permuted(b, call, x, perm)


@add_converter(torch.permute, torch.Tensor.permute, aten("permute.default"))
def _permute(b: Builder, call: Call) -> MDFTensor:
    """permute(dims) that keeps the batch axis first: a Transpose node of the per-trial axes."""
    x = _batch_first(b, call, call.tensor())
    dims = call.arg(1, "dims")
    dims = list(dims) if isinstance(dims, (list, tuple)) else [dims, *call.args[2:]]
    ndim = len(x.shape) + 1
    if sorted(int(d) % ndim for d in dims) != list(range(ndim)) or int(dims[0]) % ndim != 0:
        raise call.unsupported(f"permute{tuple(dims)}: the batch axis must stay first (MDF's trial axis)")
    return _permuted(b, call, x, [int(d) % ndim - 1 for d in dims[1:]])


def _permuted(b: Builder, call: Call, x: MDFTensor, perm: List[int]) -> MDFTensor:
    if perm == sorted(perm):
        return x
    return b.expression(call, "transpose", [x], f"transpose({{}}, {perm})", tuple(x.shape[p] for p in perm))


@add_converter(torch.mean, torch.Tensor.mean, aten("mean.dim"))
def _mean(b: Builder, call: Call) -> MDFTensor:
    """mean over per-trial axes (dim an int or a tuple; keepdim either): a ReduceMean node."""
    x = _batch_first(b, call, call.tensor())
    dim = call.arg(1, "dim")
    if dim is None:
        raise call.unsupported("mean over every axis, the batch axis too; give the per-trial dims")
    axes = sorted({_trial_axis(call, x, d) for d in (dim if isinstance(dim, (list, tuple)) else [dim])})
    keep = bool(call.arg(2, "keepdim", False))
    if call.kwargs.get("dtype") is not None:
        raise call.unsupported("mean with a dtype")
    shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape) if keep or i not in axes)
    return b.expression(call, "mean", [x], f"mean({{}}, axis={axes if len(axes) > 1 else axes[0]}, "
                                           f"keepdims={keep})", shape)


@add_converter(nn.Dropout)
def _dropout_module(b: Builder, call: Call) -> MDFTensor:
    """nn.Dropout."""
    m = call.module
    assert isinstance(m, nn.Dropout)  # add_converter(nn.Dropout) dispatches on the module class
    return _dropout(b, call, m.p, m.training)


@add_converter(F.dropout, aten("dropout.default"))
def _dropout_function(b: Builder, call: Call) -> MDFTensor:
    """F.dropout / aten.dropout."""
    return _dropout(b, call, call.arg(1, "p", 0.5), bool(call.arg(2, "training", True)))


# --------------------------------------------------------------------------------------- arithmetic, indexing

_PYTHON_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def _binary_converter(symbol: str) -> Converter:
    """The converter of an elementwise binary operator (+, -, *) between tensors and numbers; between two sizes
    (`x.size(1) * x.size(2)`), the number."""
    def convert(b: Builder, call: Call) -> Any:
        """a <symbol> alpha * b (alpha from torch.add/torch.sub)."""
        alpha = call.kwargs.get("alpha", 1)
        x, y = call.arg(0, "input"), call.arg(1, "other")
        if BatchSize() in (x, y):
            raise call.unsupported(f"arithmetic ({symbol}) on the batch size (x.size(0) / x.shape[0]): MDF's "
                                   "trial count is not a value of the graph; use -1 in view/reshape")
        if all(type(v) is int for v in (x, y)) and type(alpha) is int:
            return _PYTHON_OPS[symbol](x, alpha * y)
        return b.binary(call, x, y, symbol, alpha)
    return convert


add_converter(operator.add, torch.add, torch.Tensor.add, aten("add.Tensor"))(_binary_converter("+"))
add_converter(operator.sub, torch.sub, torch.Tensor.sub, aten("sub.Tensor"))(_binary_converter("-"))
add_converter(operator.mul, torch.mul, torch.Tensor.mul, aten("mul.Tensor"))(_binary_converter("*"))


# --------------------------------------------------------------------------------------- sizes, view, reshape

def _sizes(b: Builder, call: Call, x: MDFTensor) -> Tuple[Any, ...]:
    """x's full size as `x.size()` gives it: BatchSize() on the batch axis, ints elsewhere (batch-first tensors
    of per-trial data only)."""
    x = _batch_first(b, call, x)
    return (BatchSize(),) + tuple(x.shape)


@add_converter(torch.Tensor.size, aten("sym_size.int"))
def _size(b: Builder, call: Call) -> Any:
    """x.size() (a tuple) or x.size(dim): an int, or BatchSize() for the batch axis."""
    sizes = _sizes(b, call, call.tensor())
    dim = call.arg(1, "dim")
    return sizes if dim is None else sizes[int(dim)]


@add_converter(getattr)
def _getattr(b: Builder, call: Call) -> Any:
    """`x.shape` (fx traces it as getattr(x, 'shape')): as x.size()."""
    name = call.arg(1, "name")
    if name != "shape" or not isinstance(call.arg(0, "object"), MDFTensor):
        raise call.unsupported(f"attribute {name!r} of a traced value (only a tensor's .shape)")
    return _sizes(b, call, call.tensor())


@add_converter(torch.Tensor.view, torch.Tensor.reshape, torch.reshape, aten("view.default"),
               aten("reshape.default"), aten("_unsafe_view.default"))
def _reshape(b: Builder, call: Call) -> MDFTensor:
    """view / reshape keeping the batch axis first: the first size x.size(0), x.shape[0] or -1 (a traced
    torch.export graph, which fixes shapes, may give the example's batch size), the others ints (one -1) that keep
    each trial's element count: a reshape node of the per-trial shape."""
    x = _batch_first(b, call, call.tensor())
    sizes = call.arg(1, "shape", call.kwargs.get("size"))
    if not isinstance(sizes, (tuple, list)):
        sizes = call.args[1:]
    sizes = list(sizes)
    written = "(" + ", ".join("x.size(0)" if s == BatchSize() else repr(s) for s in sizes) + ")"
    per = int(np.prod(x.shape, dtype=np.int64))
    exported = isinstance(getattr(call.fx_node, "target", None), torch._ops.OpOverload)
    first, rest = (sizes[0], sizes[1:]) if sizes else (None, [])
    batch_first = first == BatchSize() or first == -1 or (
        exported and call.shape is not None and type(first) is int and first == call.shape[0])
    if not batch_first:
        raise call.unsupported(f"view/reshape to {written}: the first size must be the batch (x.size(0), "
                               "x.shape[0] or -1); a constant would fix the number of trials")
    if not all(type(v) is int and (v > 0 or v == -1) for v in rest):
        raise call.unsupported(f"view/reshape to {written}: the sizes after the batch must be positive ints "
                               "(one may be -1)")
    if rest.count(-1) > (0 if first == -1 else 1):
        raise call.unsupported(f"view/reshape to {written}: only one size may be -1")
    known = int(np.prod([v for v in rest if v != -1], dtype=np.int64))
    if -1 in rest:
        if per % known:
            raise call.unsupported(f"view/reshape of per-trial shape {x.shape} to {written}: {per} elements a "
                                   f"trial do not divide into {known}")
        rest[rest.index(-1)] = per // known
    elif known != per:
        raise call.unsupported(f"view/reshape of per-trial shape {x.shape} ({per} elements a trial) to {written}: "
                               "each trial must keep its elements (the batch axis stays first)")
    shape = tuple(rest)
    if shape == x.shape:
        return x
    return b.expression(call, "reshape", [x], f"reshape({{}}, {list(shape)})", shape)


@add_converter(operator.getitem)
def _getitem(b: Builder, call: Call) -> Any:
    """Indexing: item 0 of a GRU's (output, h_n), items of Python tuples; tensor indexing is refused."""
    src, index = call.arg(0, "a"), call.arg(1, "b")
    if isinstance(src, GRUOutput):
        if index == 0:
            return src.seq
        raise call.unsupported(f"the final hidden state h_n (item {index!r}) of GRU '{src.path}' is not "
                               "supported; use the output sequence (item 0)")
    if isinstance(src, (tuple, list)):
        return src[index]
    if isinstance(src, MDFTensor) and b.lead == 1:
        items = index if isinstance(index, tuple) else (index,)
        if all(isinstance(e, int) and not isinstance(e, bool) or isinstance(e, slice) and all(
                v is None or isinstance(v, int) for v in (e.start, e.stop, e.step)) for e in items):
            return b.index(call, src, items)
    raise call.unsupported(f"indexing a tensor ([{index!r}]) is not supported (ints and constant slices are, with "
                           "':' on the batch axis)")


# --------------------------------------------------------------------------------------- GRU

def _item_used(node: Any, path: Tuple[int, ...]) -> bool:
    """Does the traced graph use item `path` of a call's (nested, pairs) tuple result: indexed down to it, or the
    result (or a tuple holding the item) used whole (an index nothing reads is no use)? True when unknown (no
    traced node)."""
    if node is None:
        return True
    for u in node.users:
        if not (u.op == "call_function" and u.target is operator.getitem and isinstance(u.args[1], int)):
            return True
        if u.args[1] % 2 == path[0] and (bool(u.users) if len(path) == 1 else _item_used(u, path[1:])):
            return True
    return False


def _states(call: Call, kind: str, has_cell: bool, layers: int, hidden: int, out: Optional[int] = None
            ) -> List[Optional[MDFTensor]]:
    """The initial state argument: [h0] (or LSTM's [h0, c0]), each torch (num_layers, batch, size) or None; h0's
    size is `out` (LSTM's proj_size; default None: hidden), c0's hidden."""
    hx = call.arg(1, "hx")
    count = 2 if has_cell else 1
    if hx is None:
        return [None] * count
    parts = list(hx) if isinstance(hx, (tuple, list)) else [hx]
    if len(parts) != count or not all(isinstance(p, MDFTensor) for p in parts):
        raise call.unsupported(f"{kind} initial state hx must be {'(h0, c0), tensors' if count == 2 else 'a tensor'} "
                               "computed from the inputs (or absent: zeros)")
    for p, size in zip(parts, (out or hidden, hidden)):
        if p.batch_axis != 1 or p.shape != (layers, size):
            raise call.unsupported(f"{kind} initial state of per-trial shape {p.shape} (batch axis {p.batch_axis}); "
                                   f"torch's (num_layers={layers}, batch, {size}) passed as a module input is "
                                   "supported")
    return parts


def _recurrent(b: Builder, call: Call, kind: str, has_cell: bool = False) -> Any:
    """nn.GRU / nn.RNN / nn.LSTM as per-trial sequence ops (one node per stacked layer): returns (output, h_n) or
    (output, (h_n, c_n)) as the module does."""
    m = call.module
    assert isinstance(m, nn.RNNBase)
    bad = []
    if m.num_layers > 1 and m.dropout and m.training:
        bad.append(f"dropout={m.dropout} in training mode (call module.eval() first)")
    if bad:
        raise call.unsupported(f"{kind} with {', '.join(bad)} is not supported")
    x = call.tensor()
    if x.batch_axis != (0 if m.batch_first else 1):
        raise call.unsupported(f"{kind} input has its batch axis at {x.batch_axis}, batch_first={m.batch_first}")
    proj = int(getattr(m, "proj_size", 0))  # (nn.LSTM's: h projected to proj_size by weight_hr)
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if m.bias else []) + (["weight_hr"] if proj else [])
    directions = ("", "_reverse") if m.bidirectional else ("",)  # (torch's suffixes of the two directions)
    layers = [{f"{n}{d}": Weight(b.key(call.path, f"{n}_l{k}{d}"), getattr(m, f"{n}_l{k}{d}"))
               for d in directions for n in names} for k in range(m.num_layers)]
    options = {"nonlinearity": m.nonlinearity} if isinstance(m, nn.RNN) else {}
    state = _states(call, kind, has_cell, m.num_layers * len(directions), m.hidden_size, proj or None)
    used = (_item_used(call.fx_node, (1, 0) if has_cell else (1,)), has_cell and _item_used(call.fx_node, (1, 1)))
    return b.recurrent(call, kind, x, layers, m.hidden_size, state, options, used, bidirectional=m.bidirectional,
                       out=proj or None)


@add_converter(nn.RNN)
def _rnn_module(b: Builder, call: Call) -> Any:
    """nn.RNN (tanh or relu; any number of layers; batch_first either; bidirectional or not; hx optional): RNN
    ops."""
    return _recurrent(b, call, "RNN")


@add_converter(nn.LSTM)
def _lstm_module(b: Builder, call: Call) -> Any:
    """nn.LSTM (any number of layers; batch_first either; bidirectional or not; (h0, c0) optional): LSTM ops."""
    return _recurrent(b, call, "LSTM", has_cell=True)


@add_converter(nn.GRU)
def _gru_module(b: Builder, call: Call) -> Any:
    """nn.GRU: a GRU block (batch_first, 1 layer, h0 = 0, only the output sequence used: the sequence program
    modeci-mdf's engine steps), else GRU ops over per-trial sequences as for nn.RNN."""
    m = call.module
    assert isinstance(m, nn.GRU)  # add_converter(nn.GRU) dispatches on the module class
    if b.lead == 1:
        return _recurrent(b, call, "GRU")
    _check_gru(call, batch_first=m.batch_first, num_layers=m.num_layers, bidirectional=m.bidirectional,
               proj_size=getattr(m, "proj_size", 0))
    if call.arg(1, "hx") is not None:
        raise call.unsupported("an initial hidden state argument (hx); only h0 = 0 is supported")
    params = {n: Weight(f"{call.path}.{n}", getattr(m, n)) for n in _gru_weight_names(m.bias)}
    return b.gru(call, call.tensor(), params, call.path, m.hidden_size, bool(m.bias))


@add_converter(aten("gru.input"))
def _gru_aten(b: Builder, call: Call) -> GRUOutput:
    """aten.gru.input from torch.export (same restrictions as nn.GRU)."""
    x, hx, weights, has_bias, layers, _dropout_p, _train, bidi, batch_first = call.args[:9]
    _check_gru(call, batch_first=bool(batch_first), num_layers=int(layers), bidirectional=bool(bidi))
    if not isinstance(hx, Zeros):
        raise call.unsupported("an initial hidden state argument (hx); only h0 = 0 is supported")
    names = _gru_weight_names(has_bias)
    if len(weights) != len(names) or not all(isinstance(w, Weight) for w in weights):
        raise call.unsupported("GRU weights that are not the module's parameters")
    params = dict(zip(names, weights))
    prefix = weights[0].key.rsplit(".", 1)[0] if "." in weights[0].key else ""
    hidden = int(weights[1].value.shape[1])
    return b.gru(call, call.tensor(), params, prefix, hidden, bool(has_bias))


@add_converter(aten("zeros.default"))
def _zeros(b: Builder, call: Call) -> Zeros:
    """aten.zeros (torch.export's default GRU hx): a marker, not a node."""
    return Zeros(tuple(call.arg(0, "size")))
