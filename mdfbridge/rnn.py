"""Elman RNN and LSTM layers: the math (numpy, torch), the weight layouts and their conversions, and the RNN and
LSTM ops' implementations (their records are registered by mdfbridge.ops.recurrent).

Torch layout (torch.nn.RNN / torch.nn.LSTM, one layer): `weight_ih` (G*H x I), `weight_hh` (G*H x H), optional
`bias_ih`, `bias_hh` (G*H), G = 1 (RNN) or 4 (LSTM, gate rows i, f, g, o):

    RNN:  h' = act(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)        act = tanh | relu
    LSTM: i, f, g, o = split(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
          c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')

ONNX layout (ONNX RNN / LSTM): W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H) = [Wb; Rb], D directions (1: forward
or reverse, 2: bidirectional, forward first); LSTM gate rows i, o, f, c (torch's i, f, g, o reordered).

Axes: 'trial' (per trial X (T, I) from h0, c0 (H,); outputs Y (T, H), Y_h and Y_c (H,); forward) and 'onnx' (the
`onnx::RNN` / `onnx::LSTM` aliases: X (T, N, I) from initial_h, initial_c (D, N, H); Y (T, D, N, H), Y_h and Y_c
(D, N, H); the reverse direction runs on the time-reversed sequence). `output` picks which of Y, Y_h (, Y_c) a
call computes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from .errors import ShapeError, UnsupportedError


def static_value(args: Mapping[str, Any], params: Mapping[str, Any], arg: str) -> Optional[np.ndarray]:
    """The value of a call's argument `arg` known before running: a parameter's (a reference to one, by name), a
    constant's, None when absent or computed by the graph (args: the call's arguments; params: the Program's
    parameters by name)."""
    v = args.get(arg)
    name = getattr(v, "name", None)
    if name is not None:
        return params[name].value if name in params else None
    return None if v is None else np.asarray(v, dtype=float)

@dataclass(frozen=True)
class Nonlinearity:
    """An RNN nonlinearity: torch.nn.RNN's name, its numpy function, torch's fused kernel (torch._VF.<kernel>) and
    ONNX RNN's activation name."""

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    torch_kernel: str
    onnx: str


@dataclass(frozen=True)
class Cell:
    """What tells the recurrent ops apart (their records, in mdfbridge.ops.recurrent, hold one each): the op name,
    gates per step, the gate-block orders between torch's and ONNX's layouts (ONNX block k is torch's block
    `torch_to_onnx[k]`), the outputs, whether there is a cell state (LSTM), the nonlinearities (RNN) and the ONNX
    `activations` accepted (the default first)."""

    name: str
    gates: int
    torch_to_onnx: Tuple[int, ...]
    onnx_to_torch: Tuple[int, ...]
    outputs: Tuple[str, ...]
    has_cell: bool
    nonlinearities: Mapping[str, Nonlinearity]
    onnx_activations: Tuple[Tuple[str, ...], ...]


CELLS: Dict[str, Cell] = {}  # op name -> cell, filled by register_cell (the records' module)


def register_cell(cell: Cell) -> Cell:
    """Make `cell` known under its op name (for the ONNX exporter and the torch importer)."""
    CELLS[cell.name] = cell
    return cell


def cell_of(op: str) -> Cell:
    """The cell of recurrent op `op`."""
    return CELLS[op]


TORCH_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
ONNX_WEIGHTS = ("W", "R", "B")
WEIGHT_LAYOUTS = ("torch", "onnx")
AXES = ("trial", "onnx")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _blocks(a: Any, order: Tuple[int, ...], H: int, xp: Any = np) -> Any:
    """Rows of `a` (first axis G*H) reordered by gate block."""
    cat = xp.concatenate if xp is np else xp.cat
    return cat([a[k * H:(k + 1) * H] for k in order], 0)


def onnx_to_torch(cell: Cell, W: Any, R: Any, B: Any = None, xp: Any = np) -> Dict[str, Any]:
    """ONNX W (1, G*H, I), R (1, G*H, H), B (1, 2*G*H) -> torch's weight_ih, weight_hh (, bias_ih, bias_hh)."""
    H = R.shape[-1]
    order = cell.onnx_to_torch
    out = {"weight_ih": _blocks(W[0], order, H, xp), "weight_hh": _blocks(R[0], order, H, xp)}
    if B is not None:
        Bv = B.reshape(-1)
        n = cell.gates * H
        out["bias_ih"], out["bias_hh"] = _blocks(Bv[:n], order, H, xp), _blocks(Bv[n:], order, H, xp)
    return out


def torch_to_onnx(cell: Cell, p: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """torch's weight_ih, weight_hh (, bias_ih, bias_hh) (numpy) -> ONNX W, R, B (B zeros without biases)."""
    w_ih, w_hh = np.asarray(p["weight_ih"], dtype=float), np.asarray(p["weight_hh"], dtype=float)
    H = w_hh.shape[1]
    order = cell.torch_to_onnx
    if p.get("bias_ih") is not None:
        B = np.concatenate([_blocks(np.asarray(p["bias_ih"], dtype=float), order, H),
                            _blocks(np.asarray(p["bias_hh"], dtype=float), order, H)])
    else:
        B = np.zeros(2 * cell.gates * H)
    return {"W": _blocks(w_ih, order, H)[None], "R": _blocks(w_hh, order, H)[None], "B": B[None]}


# ------------------------------------------------------------------------------------------ numpy

def run_numpy(cell: Cell, X: np.ndarray, h0: Any, c0: Any, p: Mapping[str, Any], nonlinearity: str = "tanh"
              ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """One layer over X (..., T, I) from h0, c0 (..., H) (None: zeros), torch-layout weights `p`; returns
    (Y (..., T, H), h_T (..., H), c_T (..., H) or None for RNN). Leading axes broadcast."""
    w_ih, w_hh = np.asarray(p["weight_ih"], dtype=float), np.asarray(p["weight_hh"], dtype=float)
    w_hr = None if p.get("weight_hr") is None else np.asarray(p["weight_hr"], dtype=float)
    H, out = w_hh.shape[0] // cell.gates, w_hh.shape[1]  # cell size, output size (LSTM's proj_size, else H)
    b = 0.0 if p.get("bias_ih") is None else np.asarray(p["bias_ih"], dtype=float) + np.asarray(p["bias_hh"],
                                                                                                 dtype=float)
    X = np.asarray(X, dtype=float)
    h = np.zeros(out) if h0 is None else np.asarray(h0, dtype=float)
    c = np.zeros(H) if c0 is None else np.asarray(c0, dtype=float)
    lead = np.broadcast_shapes(X.shape[:-2], h.shape[:-1], c.shape[:-1] if cell.has_cell else ())
    X = np.broadcast_to(X, lead + X.shape[-2:])
    h = np.broadcast_to(h, lead + (out,)).astype(float)
    c = np.broadcast_to(c, lead + (H,)).astype(float)
    ys = []
    for t in range(X.shape[-2]):
        z = X[..., t, :] @ w_ih.T + h @ w_hh.T + b
        if cell.has_cell:
            i, f, g, o = (z[..., k * H:(k + 1) * H] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            if w_hr is not None:  # torch's proj_size
                h = h @ w_hr.T
        else:
            h = cell.nonlinearities[nonlinearity].numpy(z)
        ys.append(h)
    Y = np.stack(ys, axis=-2) if ys else np.zeros(lead + (0, out))
    return Y, h, (c if cell.has_cell else None)


def _torch_weights(cell: Cell, weight_layout: str, w: Mapping[str, Any], xp: Any) -> Dict[str, Any]:
    if weight_layout == "onnx":
        return onnx_to_torch(cell, w["W"], w["R"], w.get("B"), xp)
    return {k: w[k] for k in TORCH_WEIGHTS + ("weight_hr",) if w.get(k) is not None}


def _nonlinearity(cell: Cell, nonlinearity: str, activations: Any) -> str:
    """torch's nonlinearity of an RNN call: ONNX's `activations` (the onnx::RNN alias) when written."""
    return onnx_activation_nonlinearity(cell, activations) if activations else nonlinearity


def pick(cell: Cell, output: str, Y: Any, h: Any, c: Any) -> Any:
    """The value of the call's `output` (Y, Y_h or Y_c) from a layer's (Y, h_T, c_T)."""
    if output not in cell.outputs:
        raise UnsupportedError(f"{cell.name} output {output!r}; one of {', '.join(cell.outputs)}")
    return {"Y": Y, "Y_h": h, "Y_c": c}[output]


def op_numpy(cell: Cell, X: Any, h0: Any = None, c0: Any = None, weight_layout: str = "torch", axes: str = "trial",
             output: str = "Y", nonlinearity: str = "tanh", **w: Any) -> np.ndarray:
    """The RNN / LSTM op in numpy (see the module docstring); X may carry a leading batch axis (trials)."""
    p = functools.partial(_torch_weights, cell, weight_layout, w, np)
    nonlinearity = _nonlinearity(cell, nonlinearity, w.get("activations"))
    X = np.asarray(X, dtype=float)
    if axes != "onnx":
        return pick(cell, output, *run_numpy(cell, X, h0, c0, p(), nonlinearity))

    def run(x: Any, h: Any, c: Any, q: Mapping[str, Any]) -> Tuple[Any, Any, Any]:
        return run_numpy(cell, x, h, c, q, nonlinearity)
    return pick(cell, output, *onnx_axes(cell, X, h0, c0, w, run, NUMPY_ARRAYS, p))


class _Arrays:
    """The array functions `onnx_axes` needs, from numpy or torch."""

    def __init__(self, lib: Any, asarray: Callable[[Any], Any], flip: Callable[[Any, int], Any],
                 stack: Callable[[Any, int], Any], moveaxis: Callable[[Any, int, int], Any]) -> None:
        self.lib, self.asarray, self.flip, self.stack, self.moveaxis = lib, asarray, flip, stack, moveaxis


NUMPY_ARRAYS = _Arrays(np, lambda v: np.asarray(v, dtype=float), lambda v, a: np.flip(v, a),
                      lambda vs, a: np.stack(vs, a), np.moveaxis)


def direction_name(direction: Any) -> str:
    """ONNX's `direction` attribute as text (str or bytes; None: 'forward')."""
    return str(direction.decode() if isinstance(direction, bytes) else direction or "forward")


def directions(direction: Any) -> Tuple[str, ...]:
    """ONNX's `direction` attribute (str or bytes; None: forward) -> the directions a node runs, in ONNX's order."""
    d = direction_name(direction)
    return ("forward", "reverse") if d == "bidirectional" else (d,)


def check_direction(attrs: Mapping[str, Any], bad: Callable[[str, str], Exception]) -> None:
    """Refuse a `direction` that is not ONNX's, or one other than forward with 'trial' axes (`bad(attr, why)`
    makes the error naming node and function)."""
    direction = attrs.get("direction")
    if directions(direction)[0] not in ("forward", "reverse"):
        raise bad("direction", f"{direction!r}; one of forward, reverse, bidirectional")
    if directions(direction) != ("forward",) and attrs.get("axes", "trial") != "onnx":
        raise bad("direction", f"{direction!r} with 'trial' axes (a per-trial sequence runs forward; run the "
                               "reverse direction on x[::-1], as a bidirectional torch.nn layer's import does)")


def onnx_axes(cell: Cell, X: Any, h0: Any, c0: Any, w: Mapping[str, Any], run: Callable[..., Tuple[Any, Any, Any]],
              xp: _Arrays, torch_weights: Callable[[], Mapping[str, Any]]) -> Tuple[Any, Any, Any]:
    """The onnx:: aliases: (Y, Y_h, Y_c) of ONNX's node from X (..., T, N, I) and initial states (..., D, N, H)
    (layout 1: X (..., N, T, I), states (..., N, D, H)), each direction d with W[d], R[d], B[d]; the reverse
    direction runs on the time-reversed sequence and its Y is reversed back; Y (..., T, D, N, H) (layout 1:
    (..., N, T, D, H)), Y_h / Y_c (..., D, N, H) (layout 1: (..., N, D, H)). `run`: run_numpy or run_torch on
    X (..., N, T, I) and states (..., N, H) with torch-layout weights; `torch_weights`: makes the call's own, for a
    call without ONNX-layout weights (one direction; not made otherwise)."""
    layout1 = bool(w.get("layout"))
    X = xp.asarray(X)
    seq = X if layout1 else xp.moveaxis(X, -3, -2)  # (..., N, T, I)
    ys, hs, cs = [], [], []
    own = torch_weights() if w.get("W") is None else None
    for d, name in enumerate(directions(w.get("direction"))):
        B = w.get("B")
        p = (own if own is not None else
             onnx_to_torch(cell, w["W"][d:d + 1], w["R"][d:d + 1], None if B is None else B[d:d + 1], xp.lib))
        states = [None if s is None else xp.asarray(s)[..., :, d, :] if layout1 else xp.asarray(s)[..., d, :, :]
                  for s in (h0, c0)]
        Y, hT, cT = run(xp.flip(seq, -2) if name == "reverse" else seq, *states, p)  # Y (..., N, T, H)
        ys.append(xp.flip(Y, -2) if name == "reverse" else Y)
        hs.append(hT)
        cs.append(cT)
    if layout1:
        return xp.stack(ys, -2), xp.stack(hs, -2), None if cs[0] is None else xp.stack(cs, -2)
    return (xp.stack([xp.moveaxis(y, -2, -3) for y in ys], -3), xp.stack(hs, -3),
            None if cs[0] is None else xp.stack(cs, -3))


# ------------------------------------------------------------------------------------------ torch

def torch_arrays(dtype: Any) -> _Arrays:
    """The array functions `onnx_axes` needs, from torch (constants made tensors of `dtype`)."""
    import torch

    return _Arrays(torch, lambda v: torch.as_tensor(v, dtype=dtype), lambda v, a: torch.flip(v, [a]),
                   lambda vs, a: torch.stack(vs, a), torch.movedim)


def run_torch(cell: Cell, X: Any, h0: Any, c0: Any, p: Mapping[str, Any], nonlinearity: str = "tanh"
              ) -> Tuple[Any, Any, Any]:
    """torch's fused kernel (as torch.nn.RNN / LSTM run it) on X (..., T, I) from h0, c0 (..., H) or None;
    returns (Y (..., T, H), h_T, c_T or None). Differentiable in the weights, X, h0 and c0."""
    import torch

    H, out = p["weight_hh"].shape[0] // cell.gates, p["weight_hh"].shape[1]  # cell and output sizes
    h = X.new_zeros(out) if h0 is None else torch.as_tensor(h0, dtype=X.dtype, device=X.device)
    c = X.new_zeros(H) if c0 is None else torch.as_tensor(c0, dtype=X.dtype, device=X.device)
    lead = torch.broadcast_shapes(X.shape[:-2], h.shape[:-1], c.shape[:-1] if cell.has_cell else ())
    T, I = X.shape[-2:]
    x3 = X.expand(*lead, T, I).reshape(-1, T, I)
    n = x3.shape[0]
    hx = h.expand(*lead, out).reshape(1, n, out).contiguous()
    weights = [p["weight_ih"], p["weight_hh"]]
    has_bias = "bias_ih" in p
    if has_bias:
        weights += [p["bias_ih"], p["bias_hh"]]
    if p.get("weight_hr") is not None:  # (torch's kernel reads the projection from h's size: proj_size)
        weights.append(p["weight_hr"])
    if cell.has_cell:
        cx = c.expand(*lead, H).reshape(1, n, H).contiguous()
        Y, hT, cT = torch._VF.lstm(x3, (hx, cx), weights, has_bias, 1, 0.0, False, False, True)
        cT = cT[0].reshape(*lead, H)
    else:
        fn = getattr(torch._VF, cell.nonlinearities[nonlinearity].torch_kernel)
        Y, hT = fn(x3, hx, weights, has_bias, 1, 0.0, False, False, True)
        cT = None
    return Y.reshape(*lead, T, out), hT[0].reshape(*lead, out), cT


def op_torch(cell: Cell, X: Any, h0: Any = None, c0: Any = None, weight_layout: str = "torch", axes: str = "trial",
             output: str = "Y", nonlinearity: str = "tanh", **w: Any) -> Any:
    """The RNN / LSTM op in torch (see the module docstring), on any leading (batch) axes."""
    import torch

    p = functools.partial(_torch_weights, cell, weight_layout, w, torch)
    nonlinearity = _nonlinearity(cell, nonlinearity, w.get("activations"))
    if axes != "onnx":
        return pick(cell, output, *run_torch(cell, X, h0, c0, p(), nonlinearity))
    xp = torch_arrays(X.dtype)

    def run(x: Any, h: Any, c: Any, q: Mapping[str, Any]) -> Tuple[Any, Any, Any]:
        return run_torch(cell, x, h, c, q, nonlinearity)

    return pick(cell, output, *onnx_axes(cell, X, h0, c0, w, run, xp, p))


# ------------------------------------------------------------------------------------------ the records' hooks

def shape(cell: Cell, a: Mapping[str, Any], hidden: Optional[int] = None) -> Tuple[int, ...]:
    """Per-trial output shape: 'trial' axes Y (T, H), Y_h / Y_c (H,); 'onnx' Y (T, D, N, H), Y_h / Y_c (D, N, H)
    (layout 1: X (N, T, I), Y (N, T, D, H), Y_h / Y_c (N, D, H)), D the number of directions; H is `hidden`
    (default None: from R or weight_hh)."""
    output = a.get("output", "Y")
    if hidden is None:
        hidden = a["R"][-1] if a.get("weight_layout") == "onnx" else a["weight_hh"][-1]
        if output == "Y_c" and a.get("weight_hr") is not None:  # (the cell keeps its size; h is projected)
            hidden = a["weight_hr"][-1]
    x = tuple(a["X"])
    D = len(directions(a.get("direction")))
    if a.get("axes") == "onnx" and a.get("layout"):
        return (x[0], x[1], D, hidden) if output == "Y" else (x[0], D, hidden)
    if a.get("axes") == "onnx":
        return (x[0], D, x[1], hidden) if output == "Y" else (D, x[1], hidden)
    return x[:-1] + (hidden,) if output == "Y" else x[:-2] + (hidden,)


def validate(cell: Cell, node: str, args: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Check an RNN / LSTM call (lowering calls it): attributes, and the static weights' shapes against the hidden
    size, naming node and argument."""
    layout, axes = args.get("weight_layout", "torch"), args.get("axes", "trial")
    fn = f"onnx::{cell.name}" if axes == "onnx" else cell.name

    def bad(attr: str, why: str) -> UnsupportedError:
        return UnsupportedError(f"{fn} attribute {attr}: {why}", where=f"node '{node}'")

    for attr, value_, allowed in (("weight_layout", layout, WEIGHT_LAYOUTS), ("axes", axes, AXES),
                                  ("output", args.get("output", "Y"), cell.outputs)):
        if value_ not in allowed:
            raise bad(attr, f"{value_!r} (one of {', '.join(allowed)})")
    if cell.nonlinearities and args.get("nonlinearity") not in cell.nonlinearities:
        raise bad("nonlinearity", f"{args.get('nonlinearity')!r} (one of {', '.join(cell.nonlinearities)})")
    for name in ("sequence_lens", "P"):
        if args.get(name) is not None:
            raise UnsupportedError(f"{fn} input {name} is not supported", where=f"node '{node}'")
    check_onnx_attrs(cell, node, args, fn)

    def value(a: str) -> Optional[np.ndarray]:
        return static_value(args, params, a)

    G, D = cell.gates, len(directions(args.get("direction")))
    if D > 1 and layout != "onnx":
        raise bad("direction", "bidirectional needs ONNX-layout weights (W, R, B of both directions)")
    proj = value("weight_hr")
    if args.get("weight_hr") is not None and (layout != "torch" or axes != "trial"):
        raise bad("weight_hr", "a projection (torch's proj_size) needs torch-layout weights and 'trial' axes")
    rec = value("R" if layout == "onnx" else "weight_hh")
    if rec is None:
        return
    P = int(rec.shape[-1])  # the output size: H, or LSTM's proj_size
    H = int(proj.shape[-1]) if proj is not None and proj.ndim == 2 else P
    want = ({"W": lambda s: len(s) == 3 and s[:2] == (D, G * H), "R": lambda s: s == (D, G * H, H),
             "B": lambda s: s == (D, 2 * G * H)} if layout == "onnx" else
            {"weight_ih": lambda s: len(s) == 2 and s[0] == G * H, "weight_hh": lambda s: s == (G * H, P),
             "bias_ih": lambda s: s == (G * H,), "bias_hh": lambda s: s == (G * H,),
             "weight_hr": lambda s: s == (P, H)})
    for arg, ok in want.items():
        arr = value(arg)
        if arr is not None and not ok(tuple(arr.shape)):
            raise ShapeError(f"{fn} input {arg} has shape {tuple(arr.shape)}, which does not fit hidden size {H} "
                             f"({G} gate{'s' if G > 1 else ''}, {D} direction{'s' if D > 1 else ''})",
                             where=f"node '{node}'")


def check_onnx_attrs(cell: Cell, node: str, attrs: Mapping[str, Any], fn: str) -> None:
    """Refuse ONNX RNN / LSTM attributes mdfbridge does not implement, naming node, function and attribute."""
    def bad(attr: str, why: str) -> UnsupportedError:
        return UnsupportedError(f"{fn} attribute {attr}: {why}", where=f"node '{node}'")

    check_direction(attrs, bad)
    if attrs.get("layout", 0) not in (0, None) and not (attrs.get("layout") == 1 and attrs.get("axes") == "onnx"):
        raise bad("layout", f"{attrs.get('layout')!r}; 0, or 1 with ONNX's axes (the onnx:: alias)")
    if attrs.get("clip") is not None:
        raise bad("clip", "clipping is not implemented")
    if attrs.get("input_forget", 0) not in (0, None):
        raise bad("input_forget", "coupled input and forget gates are not implemented")
    if attrs.get("activation_alpha") is not None or attrs.get("activation_beta") is not None:
        raise bad("activation_alpha/beta", "not supported")
    acts = attrs.get("activations")
    if acts is not None:
        names = tuple(a.decode() if isinstance(a, bytes) else str(a) for a in acts)
        D = len(directions(attrs.get("direction")))
        if names not in cell.onnx_activations and names not in {a * D for a in cell.onnx_activations}:
            raise bad("activations", f"{list(names)}; only {' or '.join(str(list(a)) for a in cell.onnx_activations)}")
    hidden = attrs.get("hidden_size")
    if hidden is not None and isinstance(attrs.get("R"), np.ndarray) and int(hidden) != attrs["R"].shape[-1]:
        raise bad("hidden_size", f"{hidden} but R implies {attrs['R'].shape[-1]}")


def onnx_activation_nonlinearity(cell: Cell, acts: Any) -> str:
    """ONNX RNN `activations` -> torch's nonlinearity (the first, torch's default, when none are written)."""
    if not acts:
        return next(iter(cell.nonlinearities))
    name = acts[0].decode() if isinstance(acts[0], bytes) else str(acts[0])
    return next((n for n, v in cell.nonlinearities.items() if v.onnx == name), next(iter(cell.nonlinearities)))
