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

from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from .errors import ShapeError, UnsupportedError
from .rnn import check_direction, directions, static_value

GATES = ("r", "z", "n")  # torch order
ONNX_GATES = ("z", "r", "n")  # ONNX order (z, r, h)
PNL_GATE = {"r": "r", "z": "u", "n": "n"}  # PsyNeuLink names the update gate 'u'
WEIGHT_NAMES = tuple(f"wts_i{PNL_GATE[g]}" for g in GATES) + tuple(f"wts_h{PNL_GATE[g]}" for g in GATES)
BIAS_NAMES = tuple(f"bias_i{PNL_GATE[g]}" for g in GATES) + tuple(f"bias_h{PNL_GATE[g]}" for g in GATES)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def gru_numpy(X: np.ndarray, h0: Any, gates: Mapping[str, Any]) -> np.ndarray:
    """Run a GRU over X (..., T, I) from h0 (..., H) with per-gate weights; returns Y (..., T, H)."""
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
        n = np.tanh(x @ gates["wts_in"] + b["bias_in"] + r * (h @ gates["wts_hn"] + b["bias_hn"]))
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
    "GRU (torch.nn.GRU's equations, ONNX GRU with linear_before_reset=1) over a whole sequence. "
    "weight_layout 'gates': PsyNeuLink per-gate (sender x receiver) weights wts_ir, wts_iu, wts_in, wts_hr, wts_hu, "
    "wts_hn and optional biases bias_i?, bias_h?; 'onnx': W (D, 3H, I), R (D, 3H, H), optional B (D, 6H) in ONNX's "
    "gate order z, r, h, D directions; 'torch': torch.nn.GRU's weight_ih (3H, I), weight_hh (3H, H), optional "
    "bias_ih, bias_hh (3H) (rows r, z, n). axes 'trial': X (T, I) per trial from h0 (H,), value (T, H), forward; "
    "'onnx' (the onnx::GRU alias): ONNX's X (T, N, I) from h0 = initial_h (D, N, H) (zeros when absent), value Y "
    "(T, D, N, H), direction forward, reverse or bidirectional (D = 2). output picks the value: Y (the sequence) or "
    "Y_h (the last hidden state: (H,), or (D, N, H)). The other ONNX attributes must have the values of torch's GRU "
    "(linear_before_reset 1, layout 0, default activations, no clip); sequence_lens is not supported.")


def _weights(weight_layout: str, weights: Mapping[str, Any]) -> Dict[str, Any]:
    """The per-gate weights of a GRU call (numpy), from either weight layout."""
    if weight_layout == "onnx":
        return onnx_to_gates(weights["W"], weights["R"], weights.get("B"))
    if weight_layout == "torch":
        return torch_to_gates({f"{k}_l0": weights.get(k) for k in TORCH_LAYOUT_ARGS})
    return {k: weights.get(k) for k in WEIGHT_NAMES + BIAS_NAMES}


def _last(Y: Any, axes: str, output: str, direction: Any = None) -> Any:
    """The value `output` picks from a GRU's Y: Y itself, or Y_h (its last time step; 'onnx' axes: each direction's
    last step, time 0 for the reverse direction)."""
    if output not in GRU_OUTPUTS:
        raise UnsupportedError(f"GRU output {output!r}; one of {', '.join(GRU_OUTPUTS)}")
    if output == "Y":
        return Y
    if axes != "onnx":
        return Y[..., -1, :]
    rows = [Y[..., 0 if name == "reverse" else -1, d, :, :] for d, name in enumerate(directions(direction))]
    return rows[0][..., None, :, :] if len(rows) == 1 else (
        np.stack(rows, -3) if isinstance(Y, np.ndarray) else _torch_stack(rows, -3))


def _torch_stack(rows: Any, axis: int) -> Any:
    import torch

    return torch.stack(rows, axis)


def gru_op_numpy(X: Any, h0: Any = None, weight_layout: str = "gates", axes: str = "trial", output: str = "Y",
                 sequence_lens: Any = None, direction: Any = None, **weights: Any) -> np.ndarray:
    """The GRU op in numpy (see GRU_DESCRIPTION); X may carry a leading batch axis (trials)."""
    return _last(_gru_op_numpy(X, h0, weight_layout, axes, sequence_lens, direction, **weights), axes, output,
                 direction)


def _gru_op_numpy(X: Any, h0: Any = None, weight_layout: str = "gates", axes: str = "trial",
                  sequence_lens: Any = None, direction: Any = None, **weights: Any) -> np.ndarray:
    if sequence_lens is not None:
        raise UnsupportedError("GRU sequence_lens is not supported")
    X = np.asarray(X, dtype=float)
    if axes == "onnx":  # (..., T, N, I) -> (..., N, T, I); initial_h (D, N, H) -> h0 (N, H) per direction
        ys, seq = [], np.moveaxis(X, -3, -2)
        for d, name in enumerate(directions(direction)):
            gates = _weights(weight_layout, _direction_weights(weight_layout, weights, d))
            H = np.shape(gates["wts_hr"])[0]
            h = np.zeros((X.shape[-2], H)) if h0 is None else np.asarray(h0, dtype=float)[..., d, :, :]
            Y = gru_numpy(seq[..., ::-1, :] if name == "reverse" else seq, h, gates)  # (..., N, T, H)
            ys.append(np.moveaxis(Y[..., ::-1, :] if name == "reverse" else Y, -2, -3))  # (..., T, N, H)
        return np.stack(ys, -3)  # (..., T, D, N, H)
    return gru_numpy(X, 0.0 if h0 is None else h0, _weights(weight_layout, weights))


def _direction_weights(weight_layout: str, weights: Mapping[str, Any], d: int) -> Dict[str, Any]:
    """ONNX-layout W, R, B of direction d (as the forward-only layout holds them: (1, ...)); others as they are."""
    if weight_layout != "onnx":
        return dict(weights)
    return {**weights, **{k: weights[k][d:d + 1] for k in ("W", "R", "B") if weights.get(k) is not None}}


def onnx_to_torch(W: Any, R: Any, B: Any = None) -> Dict[str, Any]:
    """ONNX GRU W, R, B (torch tensors) -> torch.nn.GRU's parameters (rows z, r, h -> r, z, n)."""
    import torch

    H = R.shape[-1]
    perm = torch.cat([torch.arange(H, 2 * H), torch.arange(0, H), torch.arange(2 * H, 3 * H)])
    p = {"weight_ih_l0": W[0][perm], "weight_hh_l0": R[0][perm]}
    if B is not None:
        Bv = B.reshape(-1)
        p["bias_ih_l0"], p["bias_hh_l0"] = Bv[:3 * H][perm], Bv[3 * H:][perm]
    return p


def gru_op_torch(X: Any, h0: Any = None, weight_layout: str = "gates", axes: str = "trial", output: str = "Y",
                 sequence_lens: Any = None, direction: Any = None, **weights: Any) -> Any:
    """The GRU op in torch (see GRU_DESCRIPTION) on a batch: X (B, T, I), or (B, T, N, I) / (T, N, I) for 'onnx'
    axes."""
    if sequence_lens is not None:
        raise UnsupportedError("GRU sequence_lens is not supported")
    if axes != "onnx":
        return _last(_gru_op_torch(X, h0, weight_layout, axes, **weights), axes, output)
    import torch

    ys = []
    for d, name in enumerate(directions(direction)):
        h = None if h0 is None else torch.as_tensor(h0, dtype=X.dtype, device=X.device)[..., d:d + 1, :, :]
        x = torch.flip(X, [-3]) if name == "reverse" else X
        Y = _gru_op_torch(x, h, weight_layout, axes, **_direction_weights(weight_layout, weights, d))
        ys.append(torch.flip(Y, [-4]) if name == "reverse" else Y)  # (..., T, 1, N, H)
    return _last(torch.cat(ys, -3), axes, output, direction)


def _gru_op_torch(X: Any, h0: Any = None, weight_layout: str = "gates", axes: str = "trial", **weights: Any) -> Any:
    import torch

    if weight_layout == "onnx":
        p = onnx_to_torch(weights["W"], weights["R"], weights.get("B"))
    elif weight_layout == "torch":
        p = {f"{k}_l0": weights[k] for k in TORCH_LAYOUT_ARGS if weights.get(k) is not None}
    else:
        p = gates_to_torch({k: weights.get(k) for k in WEIGHT_NAMES + BIAS_NAMES}, torch)
    H = p["weight_hh_l0"].shape[1]
    if axes != "onnx":
        if X.dim() == 2:  # one trial (T, I): the executor's per-trial loop
            return _torch_gru(X[None], X.new_zeros(H) if h0 is None else h0, p)[0][0]
        return _torch_gru(X, X.new_zeros(H) if h0 is None else h0, p)[0]
    single = X.dim() == 3  # (T, N, I): one trial
    x4 = X[None] if single else X
    bt, T, n, i = x4.shape  # trials and ONNX's batch axis fold into one batch
    h = x4.new_zeros(H) if h0 is None else torch.as_tensor(h0, dtype=X.dtype, device=X.device)[0].repeat(bt, 1)
    Y, _ = _torch_gru(x4.permute(0, 2, 1, 3).reshape(bt * n, T, i), h, p)
    Y = Y.reshape(bt, n, T, H).permute(0, 2, 1, 3)[:, :, None]  # (bt, T, 1, N, H)
    return Y[0] if single else Y


def _torch_gru(X: Any, h0: Any, p: Mapping[str, Any]) -> Tuple[Any, Any]:
    """torch's fused GRU kernel on X (B, T, I) batch-first from h0 (H,) or (B, H)."""
    import torch

    batch = X.shape[0]
    H = p["weight_hh_l0"].shape[1]
    h0 = torch.as_tensor(h0, dtype=X.dtype, device=X.device)
    hx = h0.expand(batch, H).unsqueeze(0).contiguous()
    weights = [p["weight_ih_l0"], p["weight_hh_l0"]]
    if "bias_ih_l0" in p:
        weights += [p["bias_ih_l0"], p["bias_hh_l0"]]
    out, h = torch._VF.gru(X, hx, weights, "bias_ih_l0" in p, 1, 0.0, False, False, True)
    return out, h[0]


def check_onnx_gru_attrs(node: str, attrs: Mapping[str, Any], hidden: int, fn: str = "onnx::GRU") -> None:
    """Refuse ONNX GRU attributes mdfbridge does not implement, naming node, function and attribute."""
    def bad(attr: str, why: str) -> UnsupportedError:
        return UnsupportedError(f"{fn} attribute {attr}: {why}", where=f"node '{node}'")

    if attrs.get("linear_before_reset") not in (1, True):
        raise bad("linear_before_reset", f"{attrs.get('linear_before_reset')!r} is not supported (only 1, torch's GRU)")
    check_direction(attrs, bad)
    if attrs.get("layout", 0) not in (0, None):
        raise bad("layout", "only layout=0 (onnxruntime rejects layout=1)")
    if attrs.get("clip") is not None:
        raise bad("clip", "clipping is not implemented")
    from .ops.recurrent import ONNX_ACTIVATIONS  # the GRU record imports this module

    acts = attrs.get("activations")
    if acts is not None and tuple(a.decode() if isinstance(a, bytes) else a for a in acts) != ONNX_ACTIVATIONS:
        raise bad("activations", f"{acts!r}; only the default {list(ONNX_ACTIVATIONS)}")
    if attrs.get("activation_alpha") is not None or attrs.get("activation_beta") is not None:
        raise bad("activation_alpha/beta", "not supported")
    if attrs.get("hidden_size") is not None and int(attrs["hidden_size"]) != hidden:
        raise bad("hidden_size", f"{attrs['hidden_size']} but R implies {hidden}")


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
    if axes == "onnx":  # (argument, name as written, shape test)
        checks = [("h0", "initial_h", lambda s: len(s) == 3 and s[0] == D and s[2] == hidden)]
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
