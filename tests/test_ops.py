"""Every registered op on every backend (numpy reference, torch, llvm, onnxruntime) against the op's own numpy
implementation applied trial by trial, and every derivative against torch autograd.

Each op runs as a one-op Program whose first tensor argument is a batched input (4 trials) and whose other
tensor arguments are parameters, so the backends' batch handling is tested too. The (op, backend) pairs a
backend does not support are listed in UNSUPPORTED with the reason; those must raise UnsupportedError (so the
table cannot go stale: a pair that starts working fails here until it is removed from the table).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np
import pytest

from mdfbridge.backends import get_backend
from mdfbridge.errors import UnsupportedError
from mdfbridge.expressions import parse_expression
from mdfbridge.ops import REGISTRY
from mdfbridge.ops.arithmetic import NO_GRADIENT
from mdfbridge.program import InputSpec, Op, Param, Program, TensorRef
from mdfbridge.shapes import infer_shapes

torch = pytest.importorskip("torch")

BATCH = 4
BACKENDS = ("numpy", "torch", "llvm", "onnxruntime")
TOLERANCE = {"numpy": 1e-12, "torch": 1e-12, "llvm": 1e-12, "onnxruntime": 2e-5}  # onnxruntime runs float32


@dataclass(frozen=True)
class In:
    """The op's batched input: per-trial shape, values uniform in [lo, hi)."""

    shape: Tuple[int, ...]
    lo: float = 0.2
    hi: float = 0.9


@dataclass(frozen=True)
class P:
    """A parameter of the given shape, values uniform in [lo, hi)."""

    shape: Tuple[int, ...]
    lo: float = 0.2
    hi: float = 0.9


def _gru_gates(i: int, h: int) -> Dict[str, Any]:
    from mdfbridge.gru import BIAS_NAMES, WEIGHT_NAMES

    return {**{w: P((i if w[4] == "i" else h, h), -0.5, 0.5) for w in WEIGHT_NAMES},
            **{b: P((h,), -0.5, 0.5) for b in BIAS_NAMES}}


# Arguments of the ops that are not elementwise (elementwise ops get In((3,)) for their first argument,
# P((3,)) for other tensor arguments without a default, and their defaults otherwise).
SAMPLES: Dict[str, Dict[str, Any]] = {
    "MatMul": {"A": In((3,)), "B": P((3, 2))},
    "Dot": {"A": In((3,)), "B": P((3, 2))},
    "Outer": {"A": In((3,)), "B": P((2,))},
    "Gemm": {"A": In((3,)), "B": P((2, 3)), "C": P((2,)), "alpha": 0.5, "beta": 2.0, "transB": 1},
    "ReduceSum": {"X": In((2, 3)), "axis": -1, "keepdims": True},
    "ReduceMean": {"X": In((2, 3)), "axis": 0},
    "ReduceMax": {"X": In((2, 3)), "axis": 1},
    "ReduceMin": {"X": In((2, 3)), "axis": (0, 1)},
    "ReduceProd": {"X": In((2, 3)), "axis": -1},
    "ArgMax": {"X": In((2, 3)), "axis": 1},
    "ArgMin": {"X": In((2, 3)), "axis": 0},
    "Transpose": {"data": In((2, 3)), "perm": [1, 0]},
    "Reshape": {"data": In((2, 3)), "shape": [3, -1]},
    "Concat": {"inputs": [In((2,)), P((3,))], "axis": 0},
    "Stack": {"inputs": [In((3,)), P((3,))], "axis": 1},
    "AsArray": {"X": [In(()), P(())]},
    "Getitem": {"X": In((3, 2)), "index": (slice(1, None), 0)},
    "Squeeze": {"X": In((1, 3)), "axis": 0},
    "Unsqueeze": {"X": In((3,)), "axis": 1},
    "Tile": {"X": In((2,)), "reps": [2]},
    "Shape": {"X": In((2, 3))},
    "Len": {"X": In((2, 3))},
    "Zeros": {"shape": [2, 3]},
    "Ones": {"shape": [2]},
    "Full": {"shape": [2], "fill_value": 1.5},
    "SoftMax": {"variable0": In((3,), -2.0, 2.0), "gain": 0.7},
    "GRU": {"X": In((5, 2), -1.0, 1.0), "h0": P((3,), -0.5, 0.5), **_gru_gates(2, 3)},
    "Conv": {"X": In((2, 7), -1.0, 1.0), "W": P((4, 1, 3), -0.5, 0.5), "B": P((4,)), "strides": [2], "pads": [1, 2],
             "dilations": [2], "group": 2},
    "LayerNormalization": {"X": In((2, 3), -1.0, 1.0), "Scale": P((2, 3)), "B": P((3,)), "axis": 0,
                           "epsilon": 0.25},
    "MaxPool": {"X": In((2, 7), -1.0, 1.0), "kernel_shape": [3], "strides": [2], "pads": [1, 1], "ceil_mode": 1},
    "AveragePool": {"X": In((2, 7), -1.0, 1.0), "kernel_shape": [2], "strides": [2], "pads": [1, 0],
                    "count_include_pad": 1},
    "GlobalAveragePool": {"X": In((2, 5), -1.0, 1.0), "spatial": 1},
    "GlobalMaxPool": {"X": In((2, 3, 2), -1.0, 1.0), "spatial": 2},
    "BatchNormalization": {"X": In((2, 4), -1.0, 1.0), "scale": P((2,)), "B": P((2,)), "input_mean": P((2,)),
                           "input_var": P((2,)), "epsilon": 0.25},
    "InstanceNormalization": {"X": In((2, 4), -1.0, 1.0), "scale": P((2,)), "B": P((2,)), "epsilon": 0.25},
    "MultiheadAttention": {"X": In((3, 4), -1.0, 1.0), "in_proj_weight": P((12, 4), -0.5, 0.5),
                           "in_proj_bias": P((12,)), "out_proj_weight": P((4, 4), -0.5, 0.5), "num_heads": 2},
    "GroupNormalization": {"X": In((4, 3), -1.0, 1.0), "scale": P((4,)), "B": P((4,)), "num_groups": 2,
                           "epsilon": 0.25},
    "Pad": {"X": In((3, 4), -1.0, 1.0), "pads": [1, -1, 0, 2], "mode": "reflect"},
    "ConvTranspose": {"X": In((2, 4), -1.0, 1.0), "W": P((2, 2, 3), -0.5, 0.5), "B": P((4,)), "strides": [2],
                      "pads": [1, 0], "group": 2, "output_padding": [1]},
    "LRN": {"X": In((4, 2), -1.0, 1.0), "size": 3, "alpha": 0.5, "beta": 0.75, "bias": 1.5},
    # per-trial sequences X (T, I) (not sequence programs); torch-layout weights
    "RNN": {"X": In((5, 2), -1.0, 1.0), "h0": P((3,), -0.5, 0.5), "weight_ih": P((3, 2), -0.5, 0.5),
            "weight_hh": P((3, 3), -0.5, 0.5), "bias_ih": P((3,), -0.5, 0.5), "bias_hh": P((3,), -0.5, 0.5)},
    "LSTM": {"X": In((5, 2), -1.0, 1.0), "h0": P((3,), -0.5, 0.5), "c0": P((3,), -0.5, 0.5),
             "weight_ih": P((12, 2), -0.5, 0.5), "weight_hh": P((12, 3), -0.5, 0.5), "bias_ih": P((12,), -0.5, 0.5),
             "bias_hh": P((12,), -0.5, 0.5), "output": "Y_c"},
    "Gather": {"data": In((4, 3)), "indices": [[2, 0], [-1, 2]], "axis": 1},
    "GatherElements": {"data": In((3, 2)), "indices": [[0, 1], [2, -1]], "axis": 0},
    "Slice": {"data": In((4, 5)), "starts": [1, -1], "ends": [3, -2 ** 63], "axes": [0, 1], "steps": [1, -2]},
    "Expand": {"X": In((3, 1)), "shape": [2, 3, 4]},
    "Einsum": {"A": In((2, 3)), "B": P((3, 4)), "equation": "ij,jk->ik"},
    "LogSoftmax": {"X": In((2, 3), -2.0, 2.0), "axis": 1},
}
# Elementwise ops whose arguments need a domain other than [0.2, 0.9)
DOMAINS: Dict[str, Dict[str, Any]] = {
    "Relu": {"A": In((3,), -1.0, 1.0)},
    "ReLU": {"variable0": In((3,), -1.0, 1.0), "leak": 0.1, "gain": 1.5, "bias": 0.1},
    "Sign": {"X": In((3,), -1.0, 1.0)},
    "Gelu": {"X": In((3,), -2.0, 2.0)},
    "Heaviside": {"A": In((3,), -1.0, 1.0), "B": 0.5},
    "Where": {"condition": In((3,), -1.0, 1.0), "X": P((3,)), "Y": P((3,))},
    "Clip": {"X": In((3,), -1.0, 2.0), "lo": 0.0, "hi": 1.0},
    "Elu": {"X": In((3,), -1.0, 1.0), "alpha": 0.7},
    "LeakyRelu": {"X": In((3,), -1.0, 1.0), "alpha": 0.2},
    "Selu": {"X": In((3,), -1.0, 1.0)},
    "HardSigmoid": {"X": In((3,), -4.0, 4.0), "alpha": 0.25, "beta": 0.4},
    "PRelu": {"X": In((3,), -1.0, 1.0), "slope": P((3,), 0.1, 0.5)},
    # PsyNeuLink's arguments at values that are not the identity (tests/test_psyneulink_exports.py has its numbers)
    "linear": {"variable0": In((3,), -1.0, 1.0), "slope": 0.7, "intercept": 0.3, "scale": 1.25, "offset": -0.4},
    "tanh": {"variable0": In((3,), -1.0, 1.0), "gain": 0.8, "bias": -0.2, "x_0": 0.1, "offset": 0.05, "scale": 1.3},
    "PsyNeuLinkLogistic": {"variable0": In((3,), -1.0, 1.0), "gain": 1.7, "bias": -0.1, "x_0": 0.2, "scale": 1.2,
                           "offset": 0.1},
    "PsyNeuLinkReLU": {"variable0": In((3,), -1.0, 1.0), "gain": -1.4, "bias": 0.1, "leak": 0.05},
    "gaussian": {"variable0": In((3,), -1.0, 1.0), "standard_deviation": 1.5, "bias": 0.2, "scale": 1.1,
                 "offset": -0.1},
}

# (op, backend) pairs a backend does not support, and why. Later issues shrink this table.
SEQUENCE_OPS = ("GRU",)  # whole-sequence ops: sequence programs (inputs (trials, time, ...))
UNSUPPORTED: Dict[Tuple[str, str], str] = {}


def _not_supported(backend: str, names: Any, why: str) -> None:
    for n in names:
        UNSUPPORTED[(n, backend)] = why


# the llvm backend compiles vectors: projections, elementwise ops with an LLVM form, SoftMax
_not_supported("llvm", ("Dot", "Outer", "Gemm", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                        "ArgMax", "ArgMin", "Transpose", "Reshape", "Concat", "Stack", "AsArray", "Getitem",
                        "Squeeze", "Unsqueeze", "Tile", "Shape", "Len", "Zeros", "Ones", "Full"),
               "not a vector kernel of the llvm backend (torch runs it)")
_not_supported("llvm", ("Gather", "GatherElements", "Slice", "Expand", "Einsum", "LogSoftmax"),
               "not a vector kernel of the llvm backend (torch runs it)")
_not_supported("llvm", ("GRU", "RNN", "LSTM"), "recurrent layers run on torch (its fused kernels)")
_not_supported("llvm", ("Conv", "LayerNormalization", "BatchNormalization", "MaxPool", "AveragePool",
                        "GlobalAveragePool", "GlobalMaxPool", "InstanceNormalization", "GroupNormalization", "Pad",
                        "ConvTranspose", "LRN"),
               "no llvm kernel: convolution, pooling and normalization run on torch")
_not_supported("llvm", ("MultiheadAttention",), "no llvm kernel: attention runs on torch")
_not_supported("llvm", ("FloorDiv", "Mod", "Int", "Round", "ZerosLike", "OnesLike"), "no LLVM form in its record yet")
_not_supported("onnxruntime", ("Zeros", "Ones", "Full"),
               "creates an array of a static shape: lowering folds it when its arguments are constants, and it has no "
               "ONNX exporter for a tensor fill value")


def _sample(name: str) -> Dict[str, Any]:
    op = REGISTRY[name]
    if name in SAMPLES:
        return SAMPLES[name]
    args: Dict[str, Any] = {}
    for i, a in enumerate(op.args):
        if a in op.defaults:
            args[a] = op.defaults[a]
        else:
            args[a] = In((3,)) if i == 0 else P((3,))
    args.update(DOMAINS.get(name, {}))
    return args


def _build(name: str, seed: int = 0) -> Tuple[Program, Dict[str, np.ndarray], Dict[str, Any]]:
    """A one-op Program computing op `name`, its batched inputs, and the per-trial argument values."""
    rng = np.random.default_rng(seed)
    params: Dict[str, Param] = {}
    inputs: Dict[str, InputSpec] = {}
    feeds: Dict[str, np.ndarray] = {}
    per_trial: Dict[str, Any] = {}
    seq = name in SEQUENCE_OPS
    head = (BATCH,)

    def value(spec: Any, key: str) -> Any:
        if isinstance(spec, In):
            shape = spec.shape[1:] if seq else spec.shape  # sequence inputs: (trials, time, ...)
            data = rng.uniform(spec.lo, spec.hi, head + ((spec.shape[0],) if seq else ()) + shape)
            inputs[key] = InputSpec(key, "n", key, shape)
            feeds[key] = data
            per_trial[key] = data
            return TensorRef(f"n.{key}")
        if isinstance(spec, P):
            v = rng.uniform(spec.lo, spec.hi, spec.shape)
            params[f"n.{key}"] = Param(f"n.{key}", v)
            return TensorRef(f"n.{key}")
        return spec

    args: Dict[str, Any] = {}
    for a, spec in _sample(name).items():
        if isinstance(spec, list):
            args[a] = [value(s, f"{a}{i}") for i, s in enumerate(spec)]
        else:
            args[a] = value(spec, a)
    prog = Program(name.replace(":", "_"), [Op("n.y", args, "n", fn=name)], params, inputs, {"y": "n.y"},
                   sequence=seq)
    infer_shapes(prog)
    return prog, feeds, args


def _expected(name: str, prog: Program, feeds: Dict[str, np.ndarray], args: Dict[str, Any]) -> np.ndarray:
    """The op's numpy implementation called trial by trial (the oracle; no batch rules involved)."""
    op = REGISTRY[name]
    params = {k: p.value for k, p in prog.params.items()}

    def fetch(v: Any, b: int) -> Any:
        if isinstance(v, TensorRef):
            key = v.name[2:]
            return feeds[key][b] if key in feeds else params[v.name]
        if isinstance(v, list):
            return [fetch(x, b) for x in v]
        return v
    trials = BATCH if feeds else 1  # an op of constants only runs once
    rows = [np.asarray(op.numpy(**{k: fetch(v, b) for k, v in args.items()}), dtype=float) for b in range(trials)]
    return np.stack(rows)


CASES = [(n, b) for n in sorted(REGISTRY) for b in BACKENDS]


@pytest.mark.parametrize("name,backend", CASES, ids=[f"{n}-{b}" for n, b in CASES])
def test_op_on_backend_matches_numpy_trial_by_trial(name: str, backend: str) -> None:
    prog, feeds, args = _build(name)
    if (name, backend) in UNSUPPORTED:
        with pytest.raises(UnsupportedError):
            get_backend(backend).prepare(prog).run(feeds)
        return
    got = np.asarray(get_backend(backend).prepare(prog).run(feeds)["y"], dtype=float)
    want = _expected(name, prog, feeds, args)
    assert got.shape == want.shape, (got.shape, want.shape)
    tol = TOLERANCE[backend]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_every_op_has_a_sample_or_a_default_one():
    for name in REGISTRY:
        _build(name)  # a missing shape rule, sample or argument fails here


def test_unsupported_table_names_registered_ops_and_backends():
    for name, backend in UNSUPPORTED:
        assert name in REGISTRY, name
        assert backend in BACKENDS, backend


WITH_DERIVATIVE = sorted(n for n, op in REGISTRY.items() if op.derivative is not None)


@pytest.mark.parametrize("name", WITH_DERIVATIVE)
def test_derivative_matches_torch_autograd(name: str) -> None:
    """`derivative`: elementwise ops give d out / d (first argument); others the vector-Jacobian product."""
    op = REGISTRY[name]
    rng = np.random.default_rng(1)
    args = {a: (v.lo + (v.hi - v.lo) * rng.random(v.shape) if isinstance(v, (In, P)) else v)
            for a, v in _sample(name).items()}
    first = op.args[0]
    x = torch.tensor(args[first], dtype=torch.float64, requires_grad=True)
    out = op.torch(**{**args, first: x})
    grad = rng.normal(size=tuple(out.shape))
    (g,) = torch.autograd.grad(out, x, torch.as_tensor(grad))
    env = {**args, "out": out.detach().numpy(), "grad": grad}
    d = np.asarray(parse_expression(op.derivative).evaluate(env), dtype=float)
    vjp = grad * np.broadcast_to(d, x.shape) if op.elementwise else d
    np.testing.assert_allclose(vjp, g.numpy(), rtol=1e-10, atol=1e-12)


def _trains_on_llvm(op: Any) -> bool:
    """Does a gradient flow through the op's first argument, and can the llvm backend compute it (a scalar form
    or formula, and a derivative)? Comparisons and logic pass no gradient (as in torch)."""
    return (op.elementwise and (op.llvm is not None or op.formula is not None)
            and op.partial(op.args[0]) not in (None, NO_GRADIENT))


TRAINABLE = sorted(n for n, op in REGISTRY.items() if _trains_on_llvm(op))


@pytest.mark.parametrize("name", TRAINABLE)
def test_elementwise_op_trains_on_llvm_like_torch(name: str) -> None:
    """y = op(x @ W, other arguments as in the sample): three SGD epochs on MSE give the same W on both backends."""
    from mdfbridge.learning import LearnConfig

    rng = np.random.default_rng(3)
    x = rng.uniform(0.2, 0.9, (6, 2))
    target = rng.uniform(0.2, 0.9, (6, 3))
    weights = {}
    for backend in ("torch", "llvm"):
        sample = dict(_sample(name))
        first = REGISTRY[name].args[0]
        ops = [Op("n.z", {"A": TensorRef("n.x"), "B": TensorRef("n.W")}, "n", fn="MatMul")]
        params = {"n.W": Param("n.W", np.full((2, 3), 0.25) + 0.1 * np.arange(6).reshape(2, 3), learnable=True)}
        args: Dict[str, Any] = {first: TensorRef("n.z")}
        for a, spec in sample.items():
            if a == first:
                continue
            if isinstance(spec, (In, P)):
                params[f"n.{a}"] = Param(f"n.{a}", np.full(spec.shape, 0.5 * (spec.lo + spec.hi)))
                args[a] = TensorRef(f"n.{a}")
            else:
                args[a] = spec
        ops.append(Op("n.y", args, "n", fn=name))
        prog = Program("t", ops, params, {"x": InputSpec("x", "n", "x", (2,))}, {"y": "n.y"})
        infer_shapes(prog)
        get_backend(backend).prepare(prog).train({"x": x}, {"y": target},
                                                 LearnConfig(epochs=3, learning_rate=0.05, minibatch_size=2))
        weights[backend] = prog.params["n.W"].value
    np.testing.assert_allclose(weights["llvm"], weights["torch"], rtol=1e-9, atol=1e-12)
