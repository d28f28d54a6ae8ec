"""GRU inference and training, side by side in one run.

Inference: GRU 3/5 (sequence 100, batch 1) and 64/128 (sequence 100, batch 32): mdfbridge's onnxruntime deployment
(composition -> MDF -> Program -> ONNX with one GRU op -> DeploymentSession) vs torch.nn.GRU vs a hand-built
onnxruntime graph (onnx.helper: Transpose, GRU, Squeeze, Transpose). Targets: >= 20x torch at 3/5 batch 1; within
1.2x of the hand-built graph. Training a 3/5 GRU on sequences: mdfbridge learn() vs a hand-written torch loop
(<= 1.2x).
"""
from __future__ import annotations

import argparse
import time
from typing import Dict

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from timing import best_of

from mdfbridge.deploy import DeploymentSession
from mdfbridge.exporters.onnx import program_to_onnx
from mdfbridge.gru import gates_to_onnx
from mdfbridge.gru_composition import GRUComposition


def hand_built_gru(comp: GRUComposition) -> onnx.ModelProto:
    """The same GRU written directly with onnx.helper (batch-first in and out, float32, opset 17)."""
    g = gates_to_onnx(comp.block.gates)
    H, I = comp.hidden_size, comp.input_size
    inits = [numpy_helper.from_array(g[k].astype(np.float32), k) for k in ("W", "R", "B")]
    inits.append(numpy_helper.from_array(np.asarray(comp.block.h0, np.float32).reshape(1, 1, H), "h0_row"))
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_tbi"], perm=[1, 0, 2]),
        helper.make_node("Shape", ["x"], ["batch"], start=0, end=1),
        helper.make_node("Concat", ["one", "batch", "hidden"], ["h0_shape"], axis=0),
        helper.make_node("Expand", ["h0_row", "h0_shape"], ["h0"]),
        helper.make_node("GRU", ["x_tbi", "W", "R", "B", "", "h0"], ["y"], hidden_size=H, linear_before_reset=1),
        helper.make_node("Squeeze", ["y", "axis1"], ["y_tbh"]),
        helper.make_node("Transpose", ["y_tbh"], ["out"], perm=[1, 0, 2]),
    ]
    inits += [numpy_helper.from_array(np.array([1], np.int64), "one"),
              numpy_helper.from_array(np.array([H], np.int64), "hidden"),
              numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    graph = helper.make_graph(nodes, "hand_gru", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", I])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "t", H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def inference(I: int, H: int, T: int, B: int, number: int) -> Dict[str, float]:
    """Time the three implementations of one GRU on the same random data; check they agree."""
    comp = GRUComposition(I, H, bias=True, seed=0, initial_hidden=np.linspace(-0.5, 0.5, H))
    x = np.random.default_rng(1).normal(size=(B, T, I))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # both sessions single-threaded, like torch below
    ours = DeploymentSession(program_to_onnx(comp.program()), provider="cpu", session_options=opts)
    feed = {ours.input_names[0]: x.astype(np.float32)}
    hand = ort.InferenceSession(hand_built_gru(comp).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    gru = torch.nn.GRU(I, H, batch_first=True).float()
    with torch.no_grad():
        for k, v in comp.torch_parameters().items():
            getattr(gru, k).copy_(torch.as_tensor(v))
    xt = torch.as_tensor(x, dtype=torch.float32)
    h0 = torch.as_tensor(comp.block.h0, dtype=torch.float32).expand(1, B, H).contiguous()
    with torch.no_grad():
        ref = gru(xt, h0)[0].numpy()
    a = next(iter(ours.run(feed).values()))
    b = hand.run(None, {"x": x.astype(np.float32)})[0]
    assert np.allclose(a, ref, atol=1e-5) and np.allclose(b, ref, atol=1e-5), "implementations disagree"

    def run_torch() -> None:
        with torch.no_grad():
            gru(xt, h0)

    return {"mdfbridge": best_of(lambda: ours.run(feed), number=number),
            "torch": best_of(run_torch, number=number),
            "hand": best_of(lambda: hand.run(None, {"x": feed[ours.input_names[0]]}), number=number)}


def training(epochs: int) -> Dict[str, float]:
    """GRU 3/5 on 16 sequences of length 20, minibatch 4, adam: mdfbridge learn() vs a hand-written torch loop."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 20, 3)), rng.uniform(-0.5, 0.5, size=(16, 20, 5))
    comp = GRUComposition(3, 5, bias=True, seed=0)
    gru = torch.nn.GRU(3, 5, batch_first=True).double()
    with torch.no_grad():
        for k, v in comp.torch_parameters().items():
            getattr(gru, k).copy_(torch.as_tensor(v))
    opt = torch.optim.Adam(gru.parameters(), lr=0.01)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    h0 = torch.zeros(1, 4, 5, dtype=torch.float64)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for b in range(0, 16, 4):
            loss = torch.nn.functional.mse_loss(gru(xt[b:b + 4], h0)[0], yt[b:b + 4])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            float(loss.detach())
    t_hand = time.perf_counter() - t0
    t0 = time.perf_counter()
    comp.learn({comp.input_node: x}, {comp.output_node: y}, epochs=epochs, minibatch_size=4, learning_rate=0.01,
               optimizer_type="adam")
    t_ours = time.perf_counter() - t0
    trained = comp.torch_parameters()
    for k, v in gru.named_parameters():
        assert np.allclose(trained[k], v.detach().numpy(), atol=1e-9), f"trained {k} differs from the torch loop"
    return {"mdfbridge": t_ours / epochs, "torch": t_hand / epochs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = 20 if args.quick else 200
    print(f"bench_gru (torch {torch.__version__}, onnxruntime {ort.__version__}, CPU, 1 thread)")
    for I, H, B, number in ((3, 5, 1, n), (64, 128, 32, max(5, n // 20))):
        t = inference(I, H, 100, B, number)
        r_torch, r_hand = t["torch"] / t["mdfbridge"], t["mdfbridge"] / t["hand"]
        print(f"  GRU {I}/{H}, sequence 100, batch {B:2d}: mdfbridge onnxruntime {t['mdfbridge'] * 1e6:9.1f} us, "
              f"torch.nn.GRU {t['torch'] * 1e6:9.1f} us, hand-built onnxruntime {t['hand'] * 1e6:9.1f} us; "
              f"{r_torch:5.1f}x faster than torch{' (target >= 20x)' if H == 5 else ''}, "
              f"{r_hand:4.2f}x the hand-built graph (target <= 1.2x)")
    t = training(5 if args.quick else 30)
    print(f"  training GRU 3/5 (16 sequences x 20, minibatch 4, adam): mdfbridge {t['mdfbridge'] * 1e3:.2f} ms/epoch, "
          f"hand-written torch {t['torch'] * 1e3:.2f} ms/epoch: ratio {t['mdfbridge'] / t['torch']:.2f}x "
          f"(target <= 1.2x)")


if __name__ == "__main__":
    main()
