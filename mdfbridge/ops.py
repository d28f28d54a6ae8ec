"""The one registry of functions/ops every backend reads: MDF standard functions, `onnx::` ops and
mdfbridge transfer functions, each with its argument names, defaults, numpy and torch implementations
and how it behaves under a leading batch axis."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

Array = Any


@dataclass(frozen=True)
class OpDef:
    """One registered function: `args` in order, `defaults` for optional ones, `attrs` are static."""

    name: str
    args: Tuple[str, ...]
    numpy: Callable[..., Array]
    torch: Optional[Callable[..., Array]] = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    attrs: Tuple[str, ...] = ()  # arguments that must be static (ONNX attributes, shapes)
    elementwise: bool = False  # same per-row result on a batch as row by row
    # batch_rule(batched_args, attrs) -> the attrs to call with when the arguments named in batched_args
    # carry a leading batch axis, or None when the op cannot run on that batch (backends then loop
    # over trials). Elementwise ops need none.
    batch_rule: Optional[Callable[[frozenset, Dict[str, Any]], Optional[Dict[str, Any]]]] = None
    description: str = ""
    # The derivative as an MDF expression (mdfbridge.expressions syntax) over the op's arguments by name and
    # `out` (the op's value). Elementwise ops: d out / d (first argument), elementwise. Other ops (SoftMax):
    # the vector-Jacobian product, which also reads `grad` (d loss / d out) and gives d loss / d (first
    # argument). Read by the LLVM backend (compiled) and the gradient tests (evaluated); None: not given.
    derivative: Optional[str] = None

    @property
    def all_args(self) -> Tuple[str, ...]:
        """Positional arguments followed by attributes."""
        return self.args + tuple(a for a in self.attrs if a not in self.args)


REGISTRY: Dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add an op to the registry (one entry per name)."""
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} registered twice")
    REGISTRY[op.name] = op
    return op


def get_op(name: str) -> Optional[OpDef]:
    """The registered op called `name`, or None."""
    return REGISTRY.get(name)


def supported_functions() -> Tuple[str, ...]:
    """Sorted names of every registered function/op."""
    return tuple(sorted(REGISTRY))


def _torch():
    import torch

    return torch


# --------------------------------------------------------------------------- batching policies

def _first_arg_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Matrix products: fine on a batch when only the left operand carries the batch axis."""
    return attrs if batched_args <= {"A"} else None


def _never(batched_args: frozenset, attrs: Dict[str, Any]) -> None:
    """Shape-dependent ops: run trial by trial."""
    return None


def _always(batched_args: frozenset, attrs: Dict[str, Any]) -> Dict[str, Any]:
    """Ops that act on the last axis only."""
    return attrs


# --------------------------------------------------------------------------- MDF standard functions

def _elementwise(name: str, args: Tuple[str, ...], np_fn: Callable, torch_fn: Callable,
                 description: str, defaults: Optional[Mapping[str, Any]] = None,
                 derivative: Optional[str] = None) -> None:
    register(OpDef(name, args, np_fn, torch_fn, defaults=defaults or {}, elementwise=True,
                   description=description, derivative=derivative))


def _is(v: Any, number: float) -> bool:
    """True when v is the plain number `number` (not a tensor that training may change)."""
    return isinstance(v, (int, float)) and v == number


def _linear_torch(variable0, slope, intercept):
    if _is(slope, 1.0) and _is(intercept, 0.0):
        return variable0
    return variable0 * slope + intercept


def _logistic_torch(variable0, gain, bias, offset):
    # 1/(1 + exp(-gain*(x + bias) + offset)) == sigmoid(gain*(x + bias) - offset); torch.sigmoid is one
    # autograd node instead of five
    z = variable0 if _is(bias, 0.0) else variable0 + bias
    z = z if _is(gain, 1.0) else gain * z
    return _torch().sigmoid(z if _is(offset, 0.0) else z - offset)


_elementwise("linear", ("variable0", "slope", "intercept"),
             lambda variable0, slope, intercept: variable0 * slope + intercept, _linear_torch,
             "variable0 * slope + intercept", {"slope": 1.0, "intercept": 0.0}, derivative="slope")
_elementwise("logistic", ("variable0", "gain", "bias", "offset"),
             lambda variable0, gain, bias, offset: 1.0 / (1.0 + np.exp(-gain * (variable0 + bias) + offset)),
             _logistic_torch, "1/(1 + exp(-gain*(variable0 + bias) + offset))",
             {"gain": 1.0, "bias": 0.0, "offset": 0.0}, derivative="gain * out * (1.0 - out)")
_elementwise("exponential", ("variable0", "scale", "rate", "bias", "offset"),
             lambda variable0, scale, rate, bias, offset: scale * np.exp(rate * variable0 + bias) + offset,
             lambda variable0, scale, rate, bias, offset: scale * _torch().exp(rate * variable0 + bias) + offset,
             "scale * exp(rate * variable0 + bias) + offset",
             {"scale": 1.0, "rate": 1.0, "bias": 0.0, "offset": 0.0},
             derivative="scale * rate * numpy.exp(rate * variable0 + bias)")
_TRIG_DERIVATIVES = {
    "sin": "scale * numpy.cos(variable0)", "cos": "-scale * numpy.sin(variable0)",
    "tan": "scale / numpy.cos(variable0) ** 2", "sinh": "scale * numpy.cosh(variable0)",
    "cosh": "scale * numpy.sinh(variable0)", "tanh": "scale * (1.0 - numpy.tanh(variable0) ** 2)",
    "arctan": "scale / (1.0 + variable0 ** 2)", "arcsin": "scale / numpy.sqrt(1.0 - variable0 ** 2)",
    "arccos": "-scale / numpy.sqrt(1.0 - variable0 ** 2)"}
for _trig in ("sin", "cos", "tan", "sinh", "cosh", "tanh", "arctan", "arcsin", "arccos"):
    _tname = {"arctan": "atan", "arcsin": "asin", "arccos": "acos"}.get(_trig, _trig)
    _elementwise(_trig, ("variable0", "scale"),
                 (lambda f: lambda variable0, scale: scale * f(variable0))(getattr(np, _trig)),
                 (lambda n: lambda variable0, scale: scale * getattr(_torch(), n)(variable0))(_tname),
                 f"scale * {_trig}(variable0)", {"scale": 1.0}, derivative=_TRIG_DERIVATIVES[_trig])
register(OpDef("MatMul", ("A", "B"), lambda A, B: A @ B, lambda A, B: A @ B,
               batch_rule=_first_arg_batched, description="A @ B"))
_elementwise("Relu", ("A",), lambda A: A * (A > 0), lambda A: _torch().relu(A), "A * (A > 0)",
             derivative="numpy.where(A > 0, 1.0, 0.0)")


# --------------------------------------------------------------------------- mdfbridge transfer functions
# Written to MDF as a `value` expression modeci-mdf can evaluate, with metadata naming the function; the
# lowering uses these registry entries when the written expression is exactly the one they generate.

def _relu_np(variable0, gain, bias, leak):
    x = variable0 - bias
    return gain * np.where(x > 0, x, leak * x)


def _relu_torch(variable0, gain, bias, leak):
    x = variable0 if _is(bias, 0.0) else variable0 - bias
    if _is(leak, 0.0):
        y = _torch().relu(x)
    elif isinstance(leak, (int, float)):
        y = _torch().nn.functional.leaky_relu(x, float(leak))
    else:
        y = _torch().where(x > 0, x, leak * x)
    return y if _is(gain, 1.0) else gain * y


def _softmax_np(variable0, gain, axis=-1):
    z = gain * variable0
    z = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def _softmax_torch(variable0, gain, axis=-1):
    return _torch().softmax(gain * variable0, dim=axis)


register(OpDef("ReLU", ("variable0", "gain", "bias", "leak"), _relu_np, _relu_torch,
               defaults={"gain": 1.0, "bias": 0.0, "leak": 0.0}, elementwise=True,
               description="gain * (x - bias) if x > bias else leak * gain * (x - bias)",
               derivative="gain * numpy.where(variable0 - bias > 0, 1.0, leak)"))
register(OpDef("SoftMax", ("variable0", "gain"), _softmax_np, _softmax_torch, defaults={"gain": 1.0},
               batch_rule=_always,
               description="exp(gain*x) / sum(exp(gain*x)) over the last axis",
               derivative="gain * out * (grad - numpy.sum(grad * out, axis=-1, keepdims=True))"))


# --------------------------------------------------------------------------- onnx:: ops (per trial shapes)

def _gemm_np(A, B, C=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    A = A.T if transA else A
    B = B.T if transB else B
    y = alpha * (A @ B)
    return y if C is None else y + beta * C


def _gemm_torch(A, B, C=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    A = A.transpose(-1, -2) if transA else A
    B = B.transpose(-1, -2) if transB else B
    y = alpha * (A @ B)
    return y if C is None else y + beta * C


def _gemm_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return attrs if batched_args <= {"A"} and not attrs.get("transA") else None


def _softmax_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Dict[str, Any]:
    axis = int(attrs.get("axis", -1))
    return {**attrs, "axis": axis + 1 if axis >= 0 else axis}


def _softmax_onnx_np(input, axis=-1):
    z = np.exp(input - np.max(input, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def _concat_np(*inputs, axis=0):
    return np.concatenate(inputs, axis=axis)


def _reshape_np(data, shape, allowzero=0):
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not allowzero:
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return np.reshape(data, shape)


def _reshape_torch(data, shape, allowzero=0):
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not allowzero:
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return data.reshape(shape)


def _transpose_np(data, perm=None):
    return np.transpose(data, perm)


def _transpose_torch(data, perm=None):
    perm = list(perm) if perm is not None else list(range(data.dim()))[::-1]
    return data.permute(perm)


_binary = {"Add": (np.add, "add"), "Sub": (np.subtract, "sub"), "Mul": (np.multiply, "mul"),
           "Div": (np.divide, "div")}
for _n, (_f, _t) in _binary.items():
    _elementwise(f"onnx::{_n}", ("A", "B"), (lambda f: lambda A, B: f(A, B))(_f),
                 (lambda t: lambda A, B: getattr(_torch(), t)(A, B))(_t), f"ONNX {_n}")
_unary = {"Relu": ("X", lambda x: np.maximum(x, 0), "relu"),
          "Sigmoid": ("X", lambda x: 1.0 / (1.0 + np.exp(-x)), "sigmoid"),
          "Neg": ("X", np.negative, "neg"),
          "Tanh": ("input", np.tanh, "tanh"), "Exp": ("input", np.exp, "exp"),
          "Log": ("input", np.log, "log"), "Identity": ("input", lambda x: x, None)}


def _by_name(arg: str, f: Callable[[Array], Array]) -> Callable[..., Array]:
    """A one-argument function called by keyword `arg` (the executor passes arguments by name)."""
    def call(**kw: Array) -> Array:
        return f(kw[arg])
    return call


for _n, (_a, _f, _t) in _unary.items():
    _elementwise(f"onnx::{_n}", (_a,), _by_name(_a, _f),
                 _by_name(_a, (lambda t: (lambda x: getattr(_torch(), t)(x)) if t else (lambda x: x))(_t)),
                 f"ONNX {_n}")
register(OpDef("onnx::MatMul", ("A", "B"), lambda A, B: np.matmul(A, B), lambda A, B: A @ B,
               batch_rule=_first_arg_batched, description="ONNX MatMul"))
register(OpDef("onnx::Gemm", ("A", "B", "C"), _gemm_np, _gemm_torch,
               defaults={"C": None, "alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
               attrs=("alpha", "beta", "transA", "transB"), batch_rule=_gemm_batched, description="ONNX Gemm"))
register(OpDef("onnx::Softmax", ("input",), _softmax_onnx_np,
               lambda input, axis=-1: _torch().softmax(input, dim=axis), defaults={"axis": -1},
               attrs=("axis",), batch_rule=_softmax_batched, description="ONNX Softmax"))
register(OpDef("onnx::Transpose", ("data",), _transpose_np, _transpose_torch, defaults={"perm": None},
               attrs=("perm",), batch_rule=_never, description="ONNX Transpose"))
def _reshape_batched(batched_args: frozenset, attrs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A per-trial reshape on a batch: keep the batch axis by prepending a 0 (copy) dimension."""
    if batched_args != {"data"} or attrs.get("allowzero"):
        return None
    return {**attrs, "shape": [0] + [int(s) for s in np.asarray(attrs["shape"]).reshape(-1)]}


register(OpDef("onnx::Reshape", ("data", "shape"), _reshape_np, _reshape_torch, defaults={"allowzero": 0},
               attrs=("shape", "allowzero"), batch_rule=_reshape_batched, description="ONNX Reshape"))
register(OpDef("onnx::Concat", ("inputs",), _concat_np,
               lambda *inputs, axis=0: _torch().cat(inputs, dim=axis), defaults={"axis": 0},
               attrs=("axis",), batch_rule=_never, description="ONNX Concat (inputs is a list)"))


def softmax_value_expression(x: str, gain: str = "gain") -> str:
    """The per-trial MDF `value` expression of SoftMax (modeci-mdf evaluates it)."""
    z = f"numpy.exp({gain} * ({x}) - numpy.max({gain} * ({x})))"
    return f"{z} / numpy.sum({z})"


def relu_value_expression(x: str, gain: str = "gain", bias: str = "bias", leak: str = "leak") -> str:
    """The MDF `value` expression of ReLU with gain, bias and leak (modeci-mdf evaluates it)."""
    d = f"(({x}) - {bias})"
    return f"{gain} * ({d} * ({d} > 0) + {leak} * {d} * ({d} <= 0))"


VALUE_FORMS: Dict[str, Callable[[str], str]] = {"SoftMax": softmax_value_expression,
                                                 "ReLU": relu_value_expression}
