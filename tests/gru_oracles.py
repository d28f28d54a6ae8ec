"""Independent GRU oracles for tests/test_gru.py: torch.nn.GRU, a hand-built ONNX GRU on onnxruntime, and the
GRU equations written out by hand (numpy), none of them going through mdfbridge's own GRU code paths.

Layouts: torch.nn.GRU rows are r, z, n; ONNX GRU rows are z, r, h; torch's GRU is ONNX GRU
with linear_before_reset=1.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

TORCH_ROW = {"r": 0, "z": 1, "n": 2}  # block index of each gate in weight_ih_l0 / weight_hh_l0 / biases
ONNX_ROW = {"z": 0, "r": 1, "n": 2}  # block index of each gate in ONNX W / R / B halves


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def torch_gru(params: Mapping[str, np.ndarray], h0: np.ndarray, X: np.ndarray, dtype: Any = None) -> np.ndarray:
    """torch.nn.GRU (batch_first) with these torch-layout parameters on X (B, T, I) from h0 (H,): Y (B, T, H)."""
    import torch

    dtype = dtype or torch.float64
    w = np.asarray(params["weight_ih_l0"])
    H, I = w.shape[0] // 3, w.shape[1]
    gru = torch.nn.GRU(I, H, bias="bias_ih_l0" in params, batch_first=True).to(dtype)
    with torch.no_grad():
        for k, v in params.items():
            getattr(gru, k).copy_(torch.as_tensor(np.asarray(v), dtype=dtype))
        x = torch.as_tensor(np.asarray(X), dtype=dtype)
        hx = torch.as_tensor(np.asarray(h0), dtype=dtype).reshape(1, 1, H).expand(1, x.shape[0], H).contiguous()
        y, _ = gru(x, hx)
    return y.numpy().astype(np.float64)


def onnx_gru_model(W: np.ndarray, R: np.ndarray, B: Optional[np.ndarray], input_size: int, hidden_size: int) -> Any:
    """A hand-built ONNX model: X (batch, T, I) batch-first -> Transpose -> GRU (linear_before_reset=1, written
    explicitly) -> Squeeze(num_directions) -> Transpose -> Y (batch, T, H); initial_h (1, batch, H) is an input.
    float32, opset 17, IR version 10 (onnxruntime rejects layout=1 and float64 GRU on CPU)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f32 = lambda a, name: numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)  # noqa: E731
    inits = [f32(W, "W"), f32(R, "R"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")]
    gru_inputs = ["X_tbi", "W", "R"]
    if B is not None:
        inits.append(f32(B, "B"))
        gru_inputs.append("B")
    else:
        gru_inputs.append("")
    gru_inputs += ["", "initial_h"]  # no sequence_lens
    nodes = [
        helper.make_node("Transpose", ["X"], ["X_tbi"], perm=[1, 0, 2], name="to_seq_first"),
        helper.make_node("GRU", gru_inputs, ["Y", "Y_h"], hidden_size=hidden_size, linear_before_reset=1,
                         direction="forward", name="gru"),
        helper.make_node("Squeeze", ["Y", "axis1"], ["Y_tbh"], name="drop_directions"),
        helper.make_node("Transpose", ["Y_tbh"], ["Yb"], perm=[1, 0, 2], name="to_batch_first"),
    ]
    graph = helper.make_graph(
        nodes, "gru_oracle",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", "T", input_size]),
         helper.make_tensor_value_info("initial_h", TensorProto.FLOAT, [1, "batch", hidden_size])],
        [helper.make_tensor_value_info("Yb", TensorProto.FLOAT, ["batch", "T", hidden_size])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test_gru")
    model.ir_version = 10  # onnxruntime accepts IR <= 13; onnx's helper writes a newer one
    onnx.checker.check_model(model, full_check=True)
    return model


def onnxruntime_gru(W: np.ndarray, R: np.ndarray, B: Optional[np.ndarray], h0: np.ndarray, X: np.ndarray
                    ) -> np.ndarray:
    """Run the hand-built ONNX GRU on onnxruntime's CPU provider (float32): Y (B, T, H) as float64."""
    import onnxruntime as ort

    I, H = X.shape[-1], np.asarray(R).shape[-1]
    model = onnx_gru_model(W, R, B, I, H)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    h = np.broadcast_to(np.asarray(h0, dtype=np.float32), (1, X.shape[0], H)).copy()
    (y,) = sess.run(["Yb"], {"X": np.asarray(X, dtype=np.float32), "initial_h": h})
    return y.astype(np.float64)


def gru_by_hand(X: np.ndarray, h0: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
                b_ih: Optional[np.ndarray] = None, b_hh: Optional[np.ndarray] = None) -> np.ndarray:
    """torch.nn.GRU's documented equations, written out on torch-layout parameters (rows r, z, n)."""
    H = w_hh.shape[1]
    b_ih = np.zeros(3 * H) if b_ih is None else b_ih
    b_hh = np.zeros(3 * H) if b_hh is None else b_hh
    sl = {g: slice(k * H, (k + 1) * H) for g, k in TORCH_ROW.items()}
    h = np.broadcast_to(h0, X.shape[:-2] + (H,)).astype(float)
    ys = []
    for t in range(X.shape[-2]):
        x = X[..., t, :]
        gi = {g: x @ w_ih[s].T + b_ih[s] for g, s in sl.items()}
        gh = {g: h @ w_hh[s].T + b_hh[s] for g, s in sl.items()}
        r = sigmoid(gi["r"] + gh["r"])
        z = sigmoid(gi["z"] + gh["z"])
        n = np.tanh(gi["n"] + r * gh["n"])
        h = (1 - z) * n + z * h
        ys.append(h)
    return np.stack(ys, axis=-2)
