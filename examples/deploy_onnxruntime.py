"""Deployment: a classifier trained with mdfbridge (3 Gaussian blobs, 2 -> 16 tanh -> 3 softmax, cross-entropy),
exported to ONNX, and served by a DeploymentSession (onnxruntime; CUDA first when it is available, else CPU) on
batches of new points; outputs are checked against the numpy reference and batch timings printed.

    python examples/deploy_onnxruntime.py [--out DIR]   (writes blobs.trained.onnx)
"""
from __future__ import annotations

import sys
import time

import numpy as np
from example_paths import output_dir

from mdfbridge import BiasMechanism, Composition, MappingProjection, SoftMax, Tanh, TransferMechanism
from mdfbridge.deploy import DeploymentSession, available_providers
from mdfbridge.exporters.onnx import program_to_onnx, save_onnx

EPOCHS, BATCH = 15, 20
CENTRES = np.array([[0.0, 2.0], [-1.7, -1.0], [1.7, -1.0]])


def blobs(n: int, rng: np.random.Generator):
    """n points around the three centres, and their one-hot classes."""
    labels = rng.integers(0, 3, n)
    return CENTRES[labels] + rng.normal(scale=0.8, size=(n, 2)), np.eye(3)[labels]


def main() -> int:
    out = output_dir(__doc__.splitlines()[0])
    rng = np.random.default_rng(0)
    X, Y = blobs(300, rng)
    x, h, y = TransferMechanism("x", 2), TransferMechanism("hidden", 16, Tanh()), TransferMechanism("y", 3, SoftMax())
    comp = Composition("blobs", seed=0)
    comp.add_linear_processing_pathway([x, MappingProjection(matrix=rng.uniform(-1, 1, (2, 16))), h,
                                        MappingProjection(matrix=rng.uniform(-1, 1, (16, 3))), y])
    comp.add_projection(MappingProjection(matrix=np.zeros((1, 16))), BiasMechanism("bias"), h)
    t0 = time.perf_counter()
    comp.learn({x: X}, {y: Y}, epochs=EPOCHS, learning_rate=0.05, optimizer_type="adam", minibatch_size=BATCH,
               loss_spec="cross_entropy")
    per_epoch = np.asarray(comp.losses).reshape(EPOCHS, -1).mean(axis=1)  # comp.losses: one per minibatch
    print(f"trained on {len(X)} points: {EPOCHS} epochs adam, minibatch {BATCH}, cross-entropy, "
          f"{time.perf_counter() - t0:.1f} s; epoch loss {per_epoch[0]:.3f} -> {per_epoch[-1]:.3f}")
    # (PsyNeuLink's CROSS_ENTROPY is torch's cross_entropy applied to the SoftMax outputs, so it cannot go below
    # log(1 + 2 / e) = 0.551 here, the value for outputs (1, 0, 0))

    path = out / "blobs.trained.onnx"
    save_onnx(program_to_onnx(comp.program()), path)
    session = DeploymentSession(str(path))  # provider='auto': CUDA first when onnxruntime offers it
    print(f"exported {path.name} (float32); onnxruntime providers available {available_providers()}, "
          f"session runs on {session.provider}")

    Xnew, Ynew = blobs(100_000, np.random.default_rng(1))
    session.run({"x": Xnew[:10]})  # warm-up
    for batch in (1, 100, 10_000, 100_000):
        reps = max(1, 20_000 // batch)
        t0 = time.perf_counter()
        for _ in range(reps):
            session.run({"x": Xnew[:batch]})
        per = (time.perf_counter() - t0) / reps
        print(f"   batch {batch:>7}: {per * 1e3:8.3f} ms per call, {batch / per:12,.0f} points/s")
    probs = session.run({"x": Xnew})["y"]
    ref = comp.evaluate({x: Xnew})["y"]
    err = float(np.max(np.abs(probs - ref)))
    acc = float(np.mean(probs.argmax(1) == Ynew.argmax(1)))
    print(f"100,000 new points: accuracy {acc:.3f}; max |onnxruntime (float32) - numpy reference (float64)| = "
          f"{err:.1e} (tolerance 1e-6)")
    ok = err < 1e-6 and acc > 0.9 and per_epoch[-1] < per_epoch[0] and per_epoch[-1] < 0.6
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
