"""GRU blocks: the math (numpy, torch), the weight layouts and their conversions, and the GRU op's implementations
(its record is registered by mdfbridge.ops.recurrent).

Per-gate layout (PsyNeuLink's GRUComposition, MDF gate form): `wts_i?` (input x hidden) and `wts_h?` (hidden x
hidden) are (sender x receiver) matrices, biases have `hidden` entries, gates r (reset), z (update), n (new):

    r = logistic(x @ wts_ir + bias_ir + h @ wts_hr + bias_hr)
    z = logistic(x @ wts_iu + bias_iu + h @ wts_hu + bias_hu)
    n = tanh(x @ wts_in + bias_in + r * (h @ wts_hn + bias_hn))
    h' = (1 - z) * n + z * h

torch.nn.GRU: weight_ih_l0 (3H x I) rows r, z, n; weight_hh_l0 (3H x H); bias_ih_l0, bias_hh_l0 (3H).
ONNX GRU (linear_before_reset=1 is torch's GRU): W (1, 3H, I) rows z, r, h; R (1, 3H, H); B (1, 6H) = [Wb; Rb].
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from .errors import ShapeError, UnsupportedError
from .rnn import (
    NUMPY_ARRAYS,
    Cell,
    cell_of,
    check_onnx_attrs,
    directions,
    onnx_axes,
    onnx_to_torch,
    pick,
    static_value,
    torch_arrays,
)

GATES = ("r", "z", "n")  # torch order
ONNX_GATES = ("z", "r", "n")  # ONNX order (z, r, h)
PNL_GATE = {"r": "r", "z": "u", "n": "n"}  # PsyNeuLink names the update gate 'u'
WEIGHT_NAMES = tuple(f"wts_i{PNL_GATE[g]}" for g in GATES) + tuple(f"wts_h{PNL_GATE[g]}" for g in GATES)
BIAS_NAMES = tuple(f"bias_i{PNL_GATE[g]}" for g in GATES) + tuple(f"bias_h{PNL_GATE[g]}" for g in GATES)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def gru_numpy(X: np.ndarray, h0: Any, gates: Mapping[str, Any], linear_before_reset: int = 1) -> np.ndarray:
    """Run a GRU over X (..., T, I) from h0 (..., H) with per-gate weights; returns Y (..., T, H).
    linear_before_reset: 1 (default: torch's GRU, the reset gate scales h @ wts_hn + bias_hn) or 0 (ONNX's
    default: n = tanh(x @ wts_in + bias_in + (r * h) @ wts_hn + bias_hn))."""
    H = np.shape(gates["wts_hr"])[0]
    h = np.asarray(h0, dtype=float)
    lead = np.broadcast_shapes(X.shape[:-2], h.shape[:-1])  # trials on X, on h0 (a module input) or on both
    X = np.broadcast_to(X, lead + X.shape[-2:])
    h = np.broadcast_to(h, lead + (H,)).astype(float)
    b = {k: (gates.get(k) if gates.get(k) is not None else 0.0) for k in BIAS_NAMES}
    ys = []
    for t in range(X.shape[-2]):
        x = X[..., t, :]
        r = _sigmoid(x @ gates["wts_ir"] + b["bias_ir"] + h @ gates["wts_hr"] + b["bias_hr"])
        z = _sigmoid(x @ gates["wts_iu"] + b["bias_iu"] + h @ gates["wts_hu"] + b["bias_hu"])
        if linear_before_reset:
            n = np.tanh(x @ gates["wts_in"] + b["bias_in"] + r * (h @ gates["wts_hn"] + b["bias_hn"]))
        else:
            n = np.tanh(x @ gates["wts_in"] + b["bias_in"] + (r * h) @ gates["wts_hn"] + b["bias_hn"])
        h = (1.0 - z) * n + z * h
        ys.append(h)
    return np.stack(ys, axis=-2)


# ------------------------------------------------------------------------------------ layouts

def torch_param_of(gate_name: str) -> str:
    """wts_ir -> weight_ih_l0, bias_hu -> bias_hh_l0: the torch.nn.GRU parameter a gate weight is a slice of."""
    kind = "weight" if gate_name.startswith("wts") else "bias"
    return f"{kind}_{'ih' if gate_name[-2] == 'i' else 'hh'}_l0"


def gates_to_torch(gates: Mapping[str, Any], xp: Any = np) -> Dict[str, Any]:
    """Per-gate (sender x receiver) weights -> torch.nn.GRU's weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0."""
    cat = xp.concatenate if xp is np else xp.cat
    out = {"weight_ih_l0": cat([gates[f"wts_i{PNL_GATE[g]}"].T for g in GATES], 0),
           "weight_hh_l0": cat([gates[f"wts_h{PNL_GATE[g]}"].T for g in GATES], 0)}
    if gates.get("bias_ir") is not None:
        out["bias_ih_l0"] = cat([gates[f"bias_i{PNL_GATE[g]}"] for g in GATES], 0)
        out["bias_hh_l0"] = cat([gates[f"bias_h{PNL_GATE[g]}"] for g in GATES], 0)
    return out


def torch_to_gates(params: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """torch.nn.GRU parameters (numpy arrays) -> per-gate (sender x receiver) weights and biases."""
    w_ih, w_hh = np.asarray(params["weight_ih_l0"]), np.asarray(params["weight_hh_l0"])
    H = w_hh.shape[1]
    out: Dict[str, np.ndarray] = {}
    for k, g in enumerate(GATES):
        out[f"wts_i{PNL_GATE[g]}"] = w_ih[k * H:(k + 1) * H].T.copy()
        out[f"wts_h{PNL_GATE[g]}"] = w_hh[k * H:(k + 1) * H].T.copy()
        if params.get("bias_ih_l0") is not None:
            out[f"bias_i{PNL_GATE[g]}"] = np.asarray(params["bias_ih_l0"])[k * H:(k + 1) * H].copy()
            out[f"bias_h{PNL_GATE[g]}"] = np.asarray(params["bias_hh_l0"])[k * H:(k + 1) * H].copy()
    return out


def gates_to_onnx(gates: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Per-gate weights -> ONNX GRU W (1, 3H, I), R (1, 3H, H), B (1, 6H) (gate order z, r, h)."""
    W = np.concatenate([gates[f"wts_i{PNL_GATE[g]}"].T for g in ONNX_GATES], 0)[None]
    R = np.concatenate([gates[f"wts_h{PNL_GATE[g]}"].T for g in ONNX_GATES], 0)[None]
    H = R.shape[2]
    if gates.get("bias_ir") is not None:
        B = np.concatenate([gates[f"bias_i{PNL_GATE[g]}"] for g in ONNX_GATES]
                           + [gates[f"bias_h{PNL_GATE[g]}"] for g in ONNX_GATES])[None]
    else:
        B = np.zeros((1, 6 * H))
    return {"W": W, "R": R, "B": B}


def onnx_to_gates(W: Any, R: Any, B: Any = None, bias: Optional[bool] = None) -> Dict[str, np.ndarray]:
    """ONNX GRU W, R, B -> per-gate weights (biases omitted when B is None, or all zero and bias is False)."""
    W, R = np.asarray(W, dtype=float)[0], np.asarray(R, dtype=float)[0]
    H = R.shape[1]
    out: Dict[str, np.ndarray] = {}
    Bv = None if B is None else np.asarray(B, dtype=float).reshape(-1)
    for k, g in enumerate(ONNX_GATES):
        out[f"wts_i{PNL_GATE[g]}"] = W[k * H:(k + 1) * H].T.copy()
        out[f"wts_h{PNL_GATE[g]}"] = R[k * H:(k + 1) * H].T.copy()
        if Bv is not None and bias is not False:
            out[f"bias_i{PNL_GATE[g]}"] = Bv[k * H:(k + 1) * H].copy()
            out[f"bias_h{PNL_GATE[g]}"] = Bv[3 * H + k * H:3 * H + (k + 1) * H].copy()
    return out


# ------------------------------------------------------------------------------------ the GRU op

WEIGHT_LAYOUTS = ("gates", "onnx", "torch")
TORCH_LAYOUT_ARGS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # 'torch' layout: torch.nn.GRU's
AXES = ("trial", "onnx")
ONNX_GRU_ATTRS = ("hidden_size", "linear_before_reset", "direction", "layout", "activations", "clip",
                  "activation_alpha", "activation_beta")
GRU_ARGS = ("X", "h0") + WEIGHT_NAMES + BIAS_NAMES + ("W", "R", "B", "sequence_lens") + TORCH_LAYOUT_ARGS
GRU_ATTRS = ("weight_layout", "axes", "output") + ONNX_GRU_ATTRS
GRU_OUTPUTS = ("Y", "Y_h")
GRU_DEFAULTS: Dict[str, Any] = {**{k: None for k in GRU_ARGS[1:]}, "weight_layout": "gates", "axes": "trial",
                                "output": "Y", "hidden_size": None, "linear_before_reset": 1, "direction": "forward",
                                "layout": 0,
                                "activations": None, "clip": None, "activation_alpha": None,
                                "activation_beta": None}
GRU_DESCRIPTION = (
    "GRU (torch.nn.GRU's equations; linear_before_reset 1, torch's, by default, 0 as ONNX's GRU defaults to) over "
    "a whole sequence. weight_layout 'gates': PsyNeuLink per-gate (sender x receiver) weights wts_ir, wts_iu, wts_in, "
    "wts_hr, wts_hu, wts_hn and optional biases bias_i?, bias_h?; 'onnx': W (D, 3H, I), R (D, 3H, H), optional B "
    "(D, 6H) in ONNX's gate order z, r, h, D directions; 'torch': torch.nn.GRU's weight_ih (3H, I), weight_hh (3H, H), "
    "optional bias_ih, bias_hh (3H) (rows r, z, n). axes 'trial': X (T, I) per trial from h0 (H,), value (T, H), "
    "forward; 'onnx' (the onnx::GRU alias): ONNX's X (T, N, I) from h0 = initial_h (D, N, H) (zeros when absent), "
    "value Y (T, D, N, H) (layout 1: X (N, T, I), initial_h (N, D, H), Y (N, T, D, H)), direction forward, reverse "
    "or bidirectional (D = 2). output picks the value: Y (the sequence) or Y_h (the last hidden state: (H,), or "
    "(D, N, H), layout 1 (N, D, H)). ONNX attributes: default activations, no clip; sequence_lens is not "
    "supported.")


def _cell() -> Cell:
    """The GRU's rnn.Cell (gate orders, outputs, ONNX activations), registered with the op's record."""
    return cell_of("GRU")


def _torch_layout(weight_layout: str, weights: Mapping[str, Any], xp: Any) -> Dict[str, Any]:
    """torch.nn.GRU's weight_ih, weight_hh (, bias_ih, bias_hh) of a call (numpy or torch arrays, `xp` the library);
    'onnx' weights (with 'trial' axes): their first direction's."""
    if weight_layout == "onnx":
        return onnx_to_torch(_cell(), weights["W"], weights["R"], weights.get("B"), xp)
    if weight_layout == "torch":
        return {k: weights[k] for k in TORCH_LAYOUT_ARGS if weights.get(k) is not None}
    p = gates_to_torch({k: weights.get(k) for k in WEIGHT_NAMES + BIAS_NAMES}, xp)
    return {k[:-3]: v for k, v in p.items()}  # (weight_ih_l0 -> weight_ih)


def _check_call(sequence_lens: Any, output: str) -> None:
    if sequence_lens is not None:
        raise UnsupportedError("GRU sequence_lens is not supported")
    if output not in GRU_OUTPUTS:
        raise UnsupportedError(f"GRU output {output!r}; one of {', '.join(GRU_OUTPUTS)}")


def run_gru_numpy(X: np.ndarray, h0: Any, p: Mapping[str, Any], linear_before_reset: int = 1
                  ) -> Tuple[np.ndarray, np.ndarray, None]:
    """One direction over X (..., T, I) from h0 (..., H) (None: zeros) with torch-layout weights `p` (weight_ih,
    weight_hh, optional bias_ih, bias_hh); returns (Y (..., T, H), h_T (..., H), None), as rnn.run_numpy does."""
    gates = torch_to_gates({f"{k}_l0": v for k, v in p.items()})
    Y = gru_numpy(X, 0.0 if h0 is None else h0, gates, linear_before_reset)
    return Y, Y[..., -1, :], None


def gru_op_numpy(X: Any, h0: Any = None, weight_layout: str = "gates", axes: str = "trial", output: str = "Y",
                 sequence_lens: Any = None, linear_before_reset: Any = 1, **weights: Any) -> np.ndarray:
    """The GRU op in numpy (see GRU_DESCRIPTION); X may carry a leading batch axis (trials)."""
    _check_call(sequence_lens, output)
    lbr = int(linear_before_reset or 0)
    X = np.asarray(X, dtype=float)

    def run(x: Any, h: Any, c: Any, q: Mapping[str, Any]) -> Tuple[Any, Any, Any]:
        return run_gru_numpy(x, h, q, lbr)

    p = functools.partial(_torch_layout, weight_layout, weights, np)
    if axes != "onnx":
        return pick(_cell(), output, *run(X, h0, None, p()))
    return pick(_cell(), output, *onnx_axes(_cell(), X, h0, None, weights, run, NUMPY_ARRAYS, p))


def run_gru_torch(X: Any, h0: Any, p: Mapping[str, Any], linear_before_reset: int = 1) -> Tuple[Any, Any, None]:
    """One direction over X (..., T, I) from h0 (..., H) (None: zeros) with torch-layout weights `p`; returns
    (Y (..., T, H), h_T (..., H), None). linear_before_reset 1 is torch's fused GRU kernel; 0 (ONNX's default,
    which torch has no kernel for) runs the steps as tensor ops. Differentiable in the weights, X and h0."""
    import torch

    H = p["weight_hh"].shape[1]
    h = X.new_zeros(H) if h0 is None else torch.as_tensor(h0, dtype=X.dtype, device=X.device)
    lead = torch.broadcast_shapes(X.shape[:-2], h.shape[:-1])
    T, I = X.shape[-2:]
    x3 = X.expand(*lead, T, I).reshape(-1, T, I)
    hx = h.expand(*lead, H).reshape(-1, H)
    if linear_before_reset:
        weights = [p["weight_ih"], p["weight_hh"]] + ([p["bias_ih"], p["bias_hh"]] if "bias_ih" in p else [])
        Y, hT = torch._VF.gru(x3, hx[None].contiguous(), weights, "bias_ih" in p, 1, 0.0, False, False, True)
        hT = hT[0]
    else:
        Y, hT = _gru_steps(x3, hx, p)
    return Y.reshape(*lead, T, H), hT.reshape(*lead, H), None


def _gru_steps(x: Any, h: Any, p: Mapping[str, Any]) -> Tuple[Any, Any]:
    """GRU with linear_before_reset=0 on x (n, T, I) from h (n, H), torch-layout weights (rows r, z, n)."""
    import torch

    H = h.shape[-1]
    gi = x @ p["weight_ih"].T  # (n, T, 3H): the input's share of every step at once
    w_rz, w_n = p["weight_hh"][:2 * H], p["weight_hh"][2 * H:]
    b_rz = b_n = None
    if "bias_ih" in p:
        gi = gi + p["bias_ih"]
        b_rz, b_n = p["bias_hh"][:2 * H], p["bias_hh"][2 * H:]
    ys = []
    for t in range(x.shape[1]):
        a = gi[:, t]
        hh = h @ w_rz.T if b_rz is None else torch.addmm(b_rz, h, w_rz.T)
        r = torch.sigmoid(a[:, :H] + hh[:, :H])
        z = torch.sigmoid(a[:, H:2 * H] + hh[:, H:])
        rh = (r * h) @ w_n.T if b_n is None else torch.addmm(b_n, r * h, w_n.T)
        n = torch.tanh(a[:, 2 * H:] + rh)
        h = (1 - z) * n + z * h
        ys.append(h)
    return (torch.stack(ys, 1) if ys else x.new_zeros(x.shape[0], 0, H)), h


def gru_op_torch(X: Any, h0: Any = None, weight_layout: str = "gates", axes: str = "trial", output: str = "Y",
                 sequence_lens: Any = None, linear_before_reset: Any = 1, **weights: Any) -> Any:
    """The GRU op in torch (see GRU_DESCRIPTION) on any leading (batch) axes: X (..., T, I), or ONNX's
    (..., T, N, I) (layout 1: (..., N, T, I)) for 'onnx' axes."""
    import torch

    _check_call(sequence_lens, output)
    lbr = int(linear_before_reset or 0)

    def run(x: Any, h: Any, c: Any, q: Mapping[str, Any]) -> Tuple[Any, Any, Any]:
        return run_gru_torch(x, h, q, lbr)

    p = functools.partial(_torch_layout, weight_layout, weights, torch)
    if axes != "onnx":
        return pick(_cell(), output, *run(X, h0, None, p()))
    return pick(_cell(), output, *onnx_axes(_cell(), X, h0, None, weights, run, torch_arrays(X.dtype), p))


def check_onnx_gru_attrs(node: str, attrs: Mapping[str, Any], hidden: int, fn: str = "onnx::GRU") -> None:
    """Refuse ONNX GRU attributes mdfbridge does not implement, naming node, function and attribute."""
    if attrs.get("linear_before_reset") not in (0, 1, True, False):
        raise UnsupportedError(f"{fn} attribute linear_before_reset: {attrs.get('linear_before_reset')!r}; 0 or 1",
                               where=f"node '{node}'")
    check_onnx_attrs(_cell(), node, {k: v for k, v in attrs.items() if k != "R"}, fn)
    if attrs.get("hidden_size") is not None and int(attrs["hidden_size"]) != hidden:
        raise UnsupportedError(f"{fn} attribute hidden_size: {attrs['hidden_size']} but R implies {hidden}",
                               where=f"node '{node}'")


def validate_gru(node: str, args: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Check a GRU call (lowering calls it): layouts, attributes, and the static weights' and initial state's shapes
    against the hidden size, naming node and argument."""
    def value(a: str) -> Optional[np.ndarray]:
        return static_value(args, params, a)

    layout, axes = args.get("weight_layout", "gates"), args.get("axes", "trial")
    fn = "onnx::GRU" if axes == "onnx" else "GRU"  # the onnx::GRU alias is the one call with ONNX's axes
    for attr, value_, allowed in (("weight_layout", layout, WEIGHT_LAYOUTS), ("axes", axes, AXES),
                                  ("output", args.get("output", "Y"), GRU_OUTPUTS)):
        if value_ not in allowed:
            raise UnsupportedError(f"{fn} attribute {attr}: {value_!r} (one of {', '.join(allowed)})",
                                   where=f"node '{node}'")
    if args.get("sequence_lens") is not None:
        raise UnsupportedError(f"{fn} input sequence_lens is not supported", where=f"node '{node}'")
    recurrent = value({"onnx": "R", "torch": "weight_hh"}.get(layout, "wts_hr"))
    hidden = int(args.get("hidden_size") or (recurrent.shape[-1] if recurrent is not None else 0))
    check_onnx_gru_attrs(node, args, hidden, fn)
    D = len(directions(args.get("direction")))
    d_axis = 1 if args.get("layout") else 0  # initial_h (D, N, H), layout 1 (N, D, H)
    if axes == "onnx":  # (argument, name as written, shape test)
        checks = [("h0", "initial_h", lambda s: len(s) == 3 and s[d_axis] == D and s[2] == hidden)]
    else:
        checks = [("h0", "h0", lambda s: s == (hidden,))]
    if layout == "onnx":
        checks += [("W", "W", lambda s: len(s) == 3 and s[0] == D and s[1] == 3 * hidden),
                   ("R", "R", lambda s: s == (D, 3 * hidden, hidden)),
                   ("B", "B", lambda s: s == (D, 6 * hidden))]
    if layout == "torch":
        checks += [("weight_ih", "weight_ih", lambda s: len(s) == 2 and s[0] == 3 * hidden),
                   ("weight_hh", "weight_hh", lambda s: s == (3 * hidden, hidden)),
                   ("bias_ih", "bias_ih", lambda s: s == (3 * hidden,)),
                   ("bias_hh", "bias_hh", lambda s: s == (3 * hidden,))]
    for arg, written, ok in checks:
        arr = value(arg)
        if arr is not None and hidden and not ok(tuple(arr.shape)):
            raise ShapeError(f"{fn} input {written} has shape {tuple(arr.shape)}, which does not fit hidden_size "
                             f"{hidden}", where=f"node '{node}'")
