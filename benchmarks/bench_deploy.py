"""Deployment and conversion, side by side in one run (issue 6.7).

1. Inference, 2-10-1 and 784-128-10 MLPs (built with the Composition API, random weights, no bias), batch 1 and
   64, float32: mdfbridge's onnxruntime deployment (`program_to_onnx` + `DeploymentSession`, CPU provider) vs
   torch (`torch.no_grad()`, an equivalent nn.Sequential) vs modeci-mdf's execution engine
   (`EvaluableGraph.evaluate`, one trial per call). Fairness: onnxruntime runs with intra_op_num_threads=1 and
   inter_op_num_threads=1, torch with torch.set_num_threads(1). modeci-mdf's engine evaluates one trial per call,
   so its batch-64 time is the time of `MODECI_TRIALS` trials scaled to 64 (stated in the output). Times are the
   best of several repeats, microseconds per call (per batch). Every runner's outputs are checked against
   mdfbridge's numpy reference first.
2. Conversion of a ~10-million-parameter MDF JSON to ONNX (a 3000-3000-334 logistic MLP built with the
   Composition API and saved with `save_mdf` in a temporary directory): MB of JSON, seconds and MB/s for load
   (read + parse + validate), lower and export (`program_to_onnx` + serialisation) separately, each file
   converted in a fresh process (so one measurement's memory does not slow the next), best of 2. Linearity: the
   same for a ~2.5-million-parameter MLP (1500-1500-167) and the ratio of seconds per MB. Target: >= 50 MB/s.

Run: python benchmarks/bench_deploy.py [--quick]   (--quick: smaller conversion models, fewer repeats)
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from timing import best_of

from mdfbridge import Composition, Logistic, MappingProjection, ReLU, SoftMax, TransferMechanism

MODECI_TRIALS = 8  # modeci-mdf trials timed for the batch-64 figure (then scaled to 64)
TARGET_MB_S = 50.0


def number_for(seconds_per_call: float, budget: float = 0.2) -> int:
    """Calls per repeat so that one repeat takes about `budget` seconds."""
    return max(1, int(budget / max(seconds_per_call, 1e-7)))


def mlp(sizes: Sequence[int], hidden: Any, output: Any, seed: int = 0, name: str = "mlp") -> Composition:
    """An MLP composition: linear input, `hidden` transfer in hidden layers, `output` at the end."""
    rng = np.random.default_rng(seed)
    mechs = [TransferMechanism("input", sizes[0])]
    mechs += [TransferMechanism(f"hidden{i}", n, hidden) for i, n in enumerate(sizes[1:-1], start=1)]
    mechs.append(TransferMechanism("output", sizes[-1], output))
    pathway: List[Any] = []
    for i, m in enumerate(mechs):
        pathway.append(m)
        if i + 1 < len(mechs):
            scale = 1.0 / np.sqrt(sizes[i])
            pathway.append(MappingProjection(matrix=rng.uniform(-scale, scale, (sizes[i], sizes[i + 1])),
                                             name=f"proj{i}"))
    comp = Composition(name, seed=seed)
    comp.add_linear_processing_pathway(pathway)
    return comp


def torch_mlp(comp: Composition, sizes: Sequence[int], kinds: Sequence[str]) -> Any:
    """The same MLP as torch.nn.Sequential (float32): Linear(no bias) weights are the matrices transposed."""
    import torch
    from torch import nn

    prog = comp.program()
    layers: List[Any] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1], bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(prog.params[f"proj{i}.matrix"].value.T, dtype=torch.float32))
        layers.append(lin)
        layers.append({"logistic": nn.Sigmoid(), "relu": nn.ReLU(), "softmax": nn.Softmax(dim=-1)}[kinds[i]])
    return nn.Sequential(*layers).eval()


def inference(quick: bool) -> None:
    """Part 1: per-call times of onnxruntime (mdfbridge), torch and modeci-mdf's engine."""
    import onnxruntime as ort
    import torch
    from modeci_mdf.execution_engine import EvaluableGraph

    from mdfbridge.deploy import DeploymentSession
    from mdfbridge.exporters.onnx import program_to_onnx
    from mdfbridge.importers.reference import run_program

    torch.set_num_threads(1)
    repeat = 3 if quick else 5
    cases = [("2-10-1", (2, 10, 1), Logistic(), Logistic(), ("logistic", "logistic")),
             ("784-128-10", (784, 128, 10), ReLU(), SoftMax(), ("relu", "softmax"))]
    print("1. inference, float32, microseconds per call (best of repeats); onnxruntime CPU with "
          "intra_op_num_threads=1, inter_op_num_threads=1; torch.set_num_threads(1), no_grad")
    print(f"   modeci-mdf's engine runs one trial per call: batch 64 = {MODECI_TRIALS} trials timed, scaled to 64")
    header = (f"   {'model':<11}{'batch':>6}{'mdfbridge ORT':>15}{'raw ORT':>10}{'torch':>10}{'modeci-mdf':>13}"
              f"{'torch/ORT':>11}{'modeci/ORT':>12}")
    print(header)
    for label, sizes, hidden, output, kinds in cases:
        comp = mlp(sizes, hidden, output, name=f"mlp_{label.replace('-', '_')}")
        prog = comp.program()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = DeploymentSession(program_to_onnx(prog, dtype="float32"), "cpu", session_options=opts)
        raw = session.session
        net = torch_mlp(comp, sizes, kinds)
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()):  # modeci-mdf prints while it builds and evaluates
            engine = EvaluableGraph(comp.to_mdf().graphs[0], verbose=False)
        rng = np.random.default_rng(1)
        for batch in (1, 64):
            x64 = rng.uniform(-1, 1, (batch, sizes[0]))
            x = x64.astype(np.float32)
            want = run_program(prog, {"input": x.astype(np.float64)})["output"]
            feeds = {"input": x}
            got_ort = session.run(feeds)["output"]
            with torch.no_grad():
                xt = torch.from_numpy(x)
                got_torch = net(xt).numpy()
            with contextlib.redirect_stdout(io.StringIO()):
                engine.evaluate(initializer={"input_input": x64[0]})
            got_modeci = np.asarray(engine.enodes["output"].evaluable_outputs["output"].curr_value, dtype=float)
            np.testing.assert_allclose(got_ort, want, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got_torch, want, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got_modeci.reshape(-1), run_program(prog, {"input": x64[:1]})["output"][0],
                                       rtol=1e-9, atol=1e-12)

            # loop variables bound by default argument (B023); best_of calls these at once, so nothing was late-bound
            t_ort = best_of(lambda session=session, feeds=feeds: session.run(feeds), repeat, number_for(2e-5))
            t_raw = best_of(lambda raw=raw, feeds=feeds: raw.run(["output"], feeds), repeat, number_for(1e-5))

            def torch_call(net: Any = net, xt: Any = xt) -> Any:
                with torch.no_grad():
                    return net(xt)
            t_torch = best_of(torch_call, repeat, number_for(2e-5))
            trials = 1 if batch == 1 else MODECI_TRIALS
            rows = x64[:trials]

            def modeci_call(engine: Any = engine, rows: Any = rows) -> None:
                with contextlib.redirect_stdout(io.StringIO()):
                    for row in rows:
                        engine.evaluate(initializer={"input_input": row})
            t_modeci = best_of(modeci_call, max(2, repeat - 2), 1) * (batch / trials)
            print(f"   {label:<11}{batch:>6}{t_ort * 1e6:>15.1f}{t_raw * 1e6:>10.1f}{t_torch * 1e6:>10.1f}"
                  f"{t_modeci * 1e6:>13.0f}{t_torch / t_ort:>10.2f}x{t_modeci / t_ort:>11.0f}x")
    print("   (mdfbridge ORT: DeploymentSession.run, which checks and casts inputs; raw ORT: the same "
          "InferenceSession.run called directly)")


def _time_conversion(path: str, warmup: str, repeat: int = 2) -> Tuple[float, float, float, int]:
    """(load, lower, export seconds, ONNX bytes) of one MDF JSON file: the fastest of `repeat` runs in this (fresh)
    process; `warmup`, a tiny MDF file, is converted first, untimed, so imports and one-time caches do not count."""
    import gc

    from mdfbridge.document import load_document_dict
    from mdfbridge.exporters.onnx import program_to_onnx
    from mdfbridge.lowering import lower

    program_to_onnx(lower(load_document_dict(warmup)), dtype="float32").SerializeToString()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        doc = load_document_dict(path)
        t1 = time.perf_counter()
        prog = lower(doc, source=path)
        t2 = time.perf_counter()
        payload = program_to_onnx(prog, dtype="float32").SerializeToString()
        t3 = time.perf_counter()
        runs.append((t1 - t0, t2 - t1, t3 - t2, len(payload)))
        del doc, prog, payload
        gc.collect()
    return min(runs, key=lambda r: r[0] + r[1] + r[2])


def _write_mlp_json(sizes: Sequence[int], path: str) -> float:
    """Build the MLP composition and save it as MDF JSON; returns the seconds save_mdf took."""
    comp = mlp(sizes, Logistic(), Logistic(), name="big")
    t0 = time.perf_counter()
    comp.save_mdf(path)
    return time.perf_counter() - t0


def conversion(quick: bool) -> None:
    """Part 2: MDF JSON -> ONNX conversion throughput, at ~10M and ~2.5M parameters."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    models = [("~10M", (3000, 3000, 334)), ("~2.5M", (1500, 1500, 167))]
    if quick:
        models = [("~1M", (950, 950, 100)), ("~0.25M", (475, 475, 50))]
    print(f"\n2. MDF JSON -> ONNX conversion (float32 ONNX; JSON written by save_mdf, indent 4); target >= "
          f"{TARGET_MB_S:.0f} MB/s; each file written, then converted (best of 2) in a fresh process")
    print(f"   {'model':<8}{'params':>12}{'JSON MB':>9}{'load s':>8}{'lower s':>8}{'export s':>9}{'total s':>8}"
          f"{'load MB/s':>10}{'lower MB/s':>11}{'export MB/s':>12}{'total MB/s':>11}")
    per_mb: Dict[str, float] = {}
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench_deploy_") as tmp:
        warmup = os.path.join(tmp, "warmup.mdf.json")
        _write_mlp_json((3, 4, 2), warmup)
        for label, sizes in models:
            path = os.path.join(tmp, f"mlp_{label.strip('~').replace('.', '_')}.mdf.json")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                t_save = pool.submit(_write_mlp_json, sizes, path).result()
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                load, low, exp, onnx_bytes = pool.submit(_time_conversion, path, warmup).result()
            mb = os.path.getsize(path) / 1e6
            params = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
            total = load + low + exp
            per_mb[label] = total / mb
            print(f"   {label:<8}{params:>12,}{mb:>9.1f}{load:>8.2f}{low:>8.2f}{exp:>9.2f}{total:>8.2f}"
                  f"{mb / load:>10.1f}{mb / low:>11.0f}{mb / exp:>12.0f}{mb / total:>11.1f}"
                  f"{'' if mb / total >= TARGET_MB_S else '   BELOW TARGET'}")
            print(f"   {'':<8}(ONNX {onnx_bytes / 1e6:.1f} MB; writing the JSON with save_mdf took {t_save:.1f} s, "
                  "not counted)")
            os.remove(path)
    (big, big_t), (small, small_t) = list(per_mb.items())
    print(f"   linearity: seconds per MB {big} / {small} = {big_t / small_t:.2f} (1.00 = linear in size)")


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    inference(quick)
    conversion(quick)


if __name__ == "__main__":
    main()
