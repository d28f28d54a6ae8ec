"""The model-zoo CNNs onnx ships (onnx/backend/test/data/light: ResNet-50, Inception v1/v2, DenseNet-121,
ShuffleNet; opset 9, batch size fixed at 1) through mdfbridge: ONNX -> MDF (batch_axis=False) -> the numpy
reference, the torch backend and the program's ONNX re-export, each against onnxruntime on the original model.

The light files hold ConstantOfShape fills instead of weights; each is replaced by seeded random weights (He-like
scale; BatchNormalization variances in [0.5, 1.5]) and the final Softmax is dropped, so the logits are compared (a
saturated softmax checks little). Prints one line per model: import and total seconds, the logits' scale and the
largest differences."""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, List

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import mdfbridge  # noqa: E402
from mdfbridge.api import run_with_backend  # noqa: E402
from mdfbridge.exporters.onnx import program_to_onnx  # noqa: E402
from mdfbridge.importers.onnx import onnx_to_mdf  # noqa: E402

LIGHT = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"
MODELS = ("light_resnet50.onnx", "light_inception_v1.onnx", "light_inception_v2.onnx", "light_densenet121.onnx",
          "light_shufflenet.onnx")


def with_random_weights(model: Any, seed: int = 0) -> Any:
    """The model with each ConstantOfShape weight fill replaced by a seeded random initializer and its final
    Softmax dropped (the graph output is then the logits)."""
    rng = np.random.default_rng(seed)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    variances = {n.input[4] for n in model.graph.node if n.op_type == "BatchNormalization"}
    keep: List[Any] = []
    for n in model.graph.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = tuple(int(d) for d in inits[n.input[0]])
            fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            value = (rng.uniform(0.5, 1.5, size=shape) if n.output[0] in variances
                     else rng.normal(size=shape) / np.sqrt(max(fan, 1)))
            model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), n.output[0]))
        else:
            keep.append(n)
    if keep[-1].op_type == "Softmax" and keep[-1].output[0] == model.graph.output[0].name:
        model.graph.output[0].name = keep[-1].input[0]
        keep = keep[:-1]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def row(name: str) -> str:
    """One model's line."""
    model = with_random_weights(onnx.load(str(LIGHT / name)))
    names = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in names)
    x = np.random.default_rng(1).normal(size=[d.dim_value for d in inp.type.tensor_type.shape.dim]).astype(np.float32)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    (want,) = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
        None, {inp.name: x})[:1]
    start = time.perf_counter()
    prog = mdfbridge.lower(onnx_to_mdf(model, batch_axis=False))
    imported = time.perf_counter() - start
    pin, out = next(iter(prog.inputs)), next(iter(prog.outputs))
    trial = {pin: x[None].astype(np.float64)}
    diffs = [float(np.abs(run_with_backend(prog, trial, backend)[out][0] - want).max())
             for backend in ("numpy", "torch")]
    back = program_to_onnx(prog)  # the original's interface: its input name and shapes
    (again,) = ort.InferenceSession(back.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
        None, {inp.name: x})[:1]
    diffs.append(float(np.abs(again - want).max()))
    return (f"{name[6:-5]:<14} import {imported:5.1f} s, all {time.perf_counter() - start:5.1f} s; logits max "
            f"{np.abs(want).max():8.3g}; max diff vs onnxruntime: numpy {diffs[0]:.1e}, torch {diffs[1]:.1e}, "
            f"re-export {diffs[2]:.1e}")


def main() -> None:
    """Print one line per model (models missing from the installed onnx are skipped)."""
    warnings.simplefilter("ignore")
    for name in MODELS:
        if (LIGHT / name).exists():
            print(row(name), flush=True)


if __name__ == "__main__":
    main()
