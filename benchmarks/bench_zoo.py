"""Real models through the bridge (issue 13's "how to measure"): one run, one table per section, counts per column.

Sections
  zoo   small standard torch models (MLPs, 1-D/2-D CNNs with Conv+BatchNorm+ReLU+MaxPool+global pooling+Linear,
        LSTM 1/2 layers and bidirectional, GRU batch_first True/False and 2 layers, RNN tanh, Embedding + Linear on
        int64 token ids, LayerNorm+GELU MLP, nn.MultiheadAttention, nn.TransformerEncoderLayer, slicing/cat/reshape,
        permute+mean), each exported with `torch.onnx.export(dynamo=False)` (legacy) and `dynamo=True` (a failed
        export is a row whose cells say so). Columns, per exported file:
          export   the torch.onnx.export call itself
          import   `onnx_to_mdf(path)` -> `save_mdf(doc, out.json)` -> `load_program(out.json)`
          run      the Program on the numpy reference (`run_with_backend(prog, inputs, 'numpy')`) matches
                   onnxruntime on the original file
          onnx     `program_to_onnx(program)`, run by onnxruntime, matches onnxruntime on the original file
                   (`ok`: bit-exact; `ok (not exact)`: within tolerance)
          io       the re-exported model's graph inputs and outputs have the original's names, order and
                   element types
          train    `mdfbridge.learn(program, ...)`: 2 epochs on random targets, every loss finite and at least one
                   learnable parameter changed
          torch    torch.nn -> MDF directly (`module_to_program(module, inputs)`) on the numpy reference matches
                   the module's own output (one result per model kind; counted per kind)
          o2t      onnx2torch on the same file matches onnxruntime (see below)
  real  every `model.onnx` under the installed onnx package's backend test data (pytorch-converted,
        pytorch-operator, simple, real, light, node: whichever exist), `.onnx` files shipped by installed packages
        (onnxruntime's datasets), and small skl2onnx models made here when skl2onnx is installed. Inputs: the
        file's test_data_set_0 `input_*.pb` when present, else random values of the declared shapes (symbolic
        dimensions 3). Columns: import, run, onnx, io (as above), o2t.

"matches" is `np.allclose(ours, reference, rtol=1e-5, atol=1e-5)` (float32 graphs; integer/bool outputs equal);
outputs are paired by name (exact, then with non-identifier characters made `_`), then by position. A cell is `ok`
or the first line of the error (truncated to --width). Where an import fails, the first op it names is the
file's blocking op; the missing ops are ranked by how many files they block, with the op counts of files whose ops
are missing from the importer's table (`supported_onnx_ops()`). Files refused for their opset are imported once more
after `onnx.version_converter.convert_version(model, 17)`: the summary says how many that would recover.

Each file's checks run in a worker process (the repository's interpreter, `--worker mdf`) that streams one result
per check; a file that runs past --timeout seconds has its worker killed and its remaining checks marked
`timeout`, and the next file gets a fresh worker.

onnx2torch is not a dependency of mdfbridge: it runs in its own virtual environment, made by
`benchmarks/make_o2t_venv.sh` (torch, onnx, onnx2torch, onnxruntime, numpy; torchvision does not load beside the
CPU torch, so a stub package provides the names onnx2torch imports from it, raising NotImplementedError: only
its NMS and RoiAlign converters call them). --o2t-python names that venv's interpreter (default: $O2T_PYTHON, else
/work/o2t-venv/bin/python); when it is absent the column is left out with a note.

Usage: bench_zoo.py [--only zoo|real] [--limit N] [--timeout S] [--json OUT] [--width W] [--no-o2t]
                    [--o2t-python PY] [--opset N] [--extra PATH] [--max-memory-gb G] [--max-file-mb M] [--keep]
  --only runs one section (default both); --limit N keeps the first N zoo kinds and the first N real files
  (default: all); --timeout S per file and per zoo kind's exports (default 60); --json OUT writes every row's
  results; --width W: the widest cell (default 60); --opset N exports the zoo at that opset (default:
  torch.onnx.export's own); --extra PATH adds an .onnx file, or every .onnx under a folder, to the real files
  (repeatable); --max-memory-gb G / --max-file-mb M bound each worker's address space and the files it writes
  (default 6 GB and 2048 MB: a model past them fails with MemoryError / a write error in its cell). Generated
  files go to a temporary folder, removed at the end (--keep keeps it).
The default run (every file, both sections, onnx2torch; no sampling) takes about 1.5 minutes on a 2-core machine
today, most files stopping at their first unsupported op; as ops land, the model-zoo CNNs under light/ (224x224
inputs) run through the numpy reference, each bounded by --timeout.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RTOL = ATOL = 1e-5
VC_OPSET = 17  # the opset the version-converter probe converts old files to
BATCH = 3  # the batch size of zoo inputs, and of symbolic dimensions of real files' random inputs
SYMBOLIC = 3
DEFAULT_O2T = "/work/o2t-venv/bin/python"
ZOO_COLUMNS = ("export", "import", "run", "onnx", "io", "train", "torch", "o2t")
REAL_COLUMNS = ("import", "run", "onnx", "io", "o2t")
BACKEND_DATA = ("node", "pytorch-converted", "pytorch-operator", "real", "simple", "light")


# ----------------------------------------------------------------------------------------------------------- helpers

def first_line(exc: BaseException, limit: int = 400) -> str:
    """`Type: first line of the message`, shortened to `limit` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:limit]


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


def pair_names(wanted: Sequence[str], have: Sequence[str]) -> Dict[str, str]:
    """wanted name -> a name in `have`: exact, then with non-identifier characters made '_', then by position
    among those left."""
    out: Dict[str, str] = {}
    left = [h for h in have]
    for w in wanted:
        if w in left:
            out[w] = w
            left.remove(w)
    for w in wanted:
        if w not in out:
            hit = next((h for h in left if _ident(h) == _ident(w) or _ident(h).lstrip("_") == _ident(w).lstrip("_")),
                       None)
            if hit is not None:
                out[w] = hit
                left.remove(hit)
    for w in wanted:
        if w not in out and left:
            out[w] = left.pop(0)
    return out


def compare(ours: Any, ref: Any) -> Tuple[bool, str, float]:
    """(match, text, max abs difference) of one output against its reference."""
    a, b = np.asarray(ours), np.asarray(ref)
    note = ""
    if a.shape != b.shape:
        if a.size != b.size:
            return False, f"shape {a.shape} vs reference {b.shape}", float("inf")
        note = f" (shape {a.shape} vs {b.shape})"
        a = a.reshape(b.shape)
    if b.dtype.kind in "biu" or a.dtype.kind in "biuSUO":
        same = bool(np.array_equal(a, b))
        return same, ("equal" if same else "values differ") + note, 0.0 if same else float("inf")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore"):
        diff = float(np.max(np.abs(a64 - b64))) if a.size else 0.0
    if not np.isfinite(diff) and np.array_equal(np.isnan(a64), np.isnan(b64)):
        fin = np.isfinite(a64) & np.isfinite(b64)
        diff = float(np.max(np.abs(a64[fin] - b64[fin]))) if fin.any() else 0.0
    ok = bool(np.allclose(a64, b64, rtol=RTOL, atol=ATOL, equal_nan=True))
    return ok, (f"max diff {diff:.3g}" if ok else f"max diff {diff:.3g} > tol") + note, diff


def compare_all(ours: Dict[str, Any], ref: Dict[str, Any]) -> Tuple[bool, str, float]:
    """Every reference output against ours (paired by `pair_names`)."""
    pairs = pair_names(list(ref), list(ours))
    worst, texts = 0.0, []
    for name, value in ref.items():
        if name not in pairs:
            return False, f"output {name!r} missing (have {sorted(ours)})", float("inf")
        ok, text, diff = compare(ours[pairs[name]], value)
        worst = max(worst, diff)
        if not ok:
            return False, f"output {name!r}: {text}", diff
        texts.append(text)
    return True, f"max diff {worst:.3g}", worst


def load_npz(path: str) -> Dict[str, np.ndarray]:
    """An .npz file as a dict (keys in the stored order)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def ort_session(path_or_bytes: Any) -> Any:
    """A one-thread onnxruntime CPU session."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def ort_reference(path: str, inputs: Dict[str, np.ndarray], expected: Dict[str, np.ndarray]
                  ) -> Tuple[Dict[str, np.ndarray], str]:
    """onnxruntime's outputs of the original file (name -> array), or the file's stored outputs where onnxruntime
    refuses it; and a note saying which."""
    try:
        sess = ort_session(path)
        names = [o.name for o in sess.get_outputs()]
        feed = {i.name: inputs[k] for i, k in zip(sess.get_inputs(), pair_names([i.name for i in sess.get_inputs()],
                                                                             list(inputs)).values())}
        return dict(zip(names, sess.run(None, feed))), "onnxruntime"
    except Exception as exc:  # noqa: BLE001 - an old or odd file onnxruntime will not load
        if expected:
            return expected, f"stored outputs (onnxruntime: {first_line(exc, 120)})"
        raise RuntimeError(f"no reference: onnxruntime: {first_line(exc, 200)}") from exc


# ------------------------------------------------------------------------------------------------------------ zoo

def _zoo() -> Dict[str, Tuple[Callable[[], Any], List[Tuple[str, Tuple[Any, ...], str, int]], List[str]]]:
    """kind -> (module factory, inputs [(name, shape with 'B' for the batch axis, dtype, int high)], outputs)."""
    import torch
    from torch import nn

    class Rec(nn.Module):
        """A recurrent layer returning its output sequence (and h_n where `with_h`)."""

        def __init__(self, layer: nn.Module, with_h: bool = False) -> None:
            super().__init__()
            self.rnn, self.with_h = layer, with_h

        def forward(self, x: Any) -> Any:
            y, h = self.rnn(x)
            return (y, h) if self.with_h else y

    class Embed(nn.Module):
        def __init__(self, mean: bool) -> None:
            super().__init__()
            self.emb, self.fc, self.mean = nn.Embedding(50, 8), nn.Linear(8, 4), mean

        def forward(self, ids: Any) -> Any:
            e = self.emb(ids)
            return self.fc(e.mean(dim=1) if self.mean else e)

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x: Any) -> Any:
            return self.attn(x, x, x, need_weights=False)[0]

    class Slicing(nn.Module):
        def forward(self, x: Any) -> Any:
            c = torch.cat([x[:, 2:6], x[:, :4] * 2.0], dim=1)
            return c.reshape(-1, 2, 4).permute(0, 2, 1).flatten(1)

    class PermuteMean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: Any) -> Any:
            return self.fc(x.transpose(1, 2).mean(dim=1))

    def bn(layer: nn.Module) -> nn.Module:  # non-trivial running statistics
        with torch.no_grad():
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 1.5)
        return layer

    seq = nn.Sequential
    f32 = "float32"
    return {
        "mlp_2layer": (lambda: seq(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), [("x", ("B", 4), f32, 0)], ["y"]),
        "mlp_3layer_tanh_sigmoid": (lambda: seq(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Sigmoid(),
                                                nn.Linear(32, 10)), [("x", ("B", 16), f32, 0)], ["y"]),
        "mlp_softmax": (lambda: seq(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5), nn.Softmax(dim=-1)),
                        [("x", ("B", 10), f32, 0)], ["y"]),
        "mlp_wide_leaky": (lambda: seq(nn.Linear(64, 128), nn.LeakyReLU(0.1), nn.Linear(128, 64)),
                           [("x", ("B", 64), f32, 0)], ["y"]),
        "mlp_nobias": (lambda: seq(nn.Linear(8, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False)),
                       [("x", ("B", 8), f32, 0)], ["y"]),
        "mlp_flatten_dropout": (lambda: seq(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.5),
                                            nn.Linear(16, 4)), [("x", ("B", 3, 4), f32, 0)], ["y"]),
        "cnn1d": (lambda: seq(nn.Conv1d(3, 8, 3, padding=1), bn(nn.BatchNorm1d(8)), nn.ReLU(), nn.MaxPool1d(2),
                              nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 4)),
                  [("x", ("B", 3, 16), f32, 0)], ["y"]),
        "cnn2d": (lambda: seq(nn.Conv2d(3, 8, 3, padding=1), bn(nn.BatchNorm2d(8)), nn.ReLU(), nn.MaxPool2d(2),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)),
                  [("x", ("B", 3, 8, 8), f32, 0)], ["y"]),
        "cnn2d_stride_groups_avgpool": (lambda: seq(nn.Conv2d(4, 8, 3, stride=2, padding=1), bn(nn.BatchNorm2d(8)),
                                                    nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
                                                    nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32, 3)),
                                        [("x", ("B", 4, 8, 8), f32, 0)], ["y"]),
        "lstm_1layer": (lambda: Rec(nn.LSTM(4, 8, batch_first=True)), [("x", ("B", 5, 4), f32, 0)], ["y"]),
        "lstm_2layer": (lambda: Rec(nn.LSTM(4, 8, num_layers=2, batch_first=True)), [("x", ("B", 5, 4), f32, 0)],
                        ["y"]),
        "lstm_bidirectional": (lambda: Rec(nn.LSTM(4, 8, bidirectional=True, batch_first=True)),
                               [("x", ("B", 5, 4), f32, 0)], ["y"]),
        "gru_batch_first": (lambda: Rec(nn.GRU(4, 8, batch_first=True)), [("x", ("B", 5, 4), f32, 0)], ["y"]),
        "gru_seq_first": (lambda: Rec(nn.GRU(4, 8)), [("x", (5, "B", 4), f32, 0)], ["y"]),
        "gru_2layer_h_n": (lambda: Rec(nn.GRU(4, 8, num_layers=2, batch_first=True), with_h=True),
                           [("x", ("B", 5, 4), f32, 0)], ["y", "h_n"]),
        "rnn_tanh_h_n": (lambda: Rec(nn.RNN(4, 8, nonlinearity="tanh", batch_first=True), with_h=True),
                         [("x", ("B", 5, 4), f32, 0)], ["y", "h_n"]),
        "embedding_linear": (lambda: Embed(mean=False), [("ids", ("B", 6), "int64", 50)], ["y"]),
        "embedding_mean_linear": (lambda: Embed(mean=True), [("ids", ("B", 6), "int64", 50)], ["y"]),
        "layernorm_gelu_mlp": (lambda: seq(nn.Linear(8, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 4)),
                               [("x", ("B", 8), f32, 0)], ["y"]),
        "multihead_attention": (SelfAttention, [("x", ("B", 5, 16), f32, 0)], ["y"]),
        "transformer_encoder_layer": (lambda: nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0,
                                                                         batch_first=True),
                                      [("x", ("B", 5, 16), f32, 0)], ["y"]),
        "slicing_cat_reshape": (Slicing, [("x", ("B", 8), f32, 0)], ["y"]),
        "permute_mean_linear": (PermuteMean, [("x", ("B", 4, 6), f32, 0)], ["y"]),
    }


ZOO_KINDS = ("mlp_2layer", "mlp_3layer_tanh_sigmoid", "mlp_softmax", "mlp_wide_leaky", "mlp_nobias",
             "mlp_flatten_dropout", "cnn1d", "cnn2d", "cnn2d_stride_groups_avgpool", "lstm_1layer", "lstm_2layer",
             "lstm_bidirectional", "gru_batch_first", "gru_seq_first", "gru_2layer_h_n", "rnn_tanh_h_n",
             "embedding_linear", "embedding_mean_linear", "layernorm_gelu_mlp", "multihead_attention",
             "transformer_encoder_layer", "slicing_cat_reshape", "permute_mean_linear")


def _zoo_model(kind: str) -> Tuple[Any, Dict[str, np.ndarray], Dict[str, int], List[str]]:
    """(module in eval mode, inputs name -> array, input name -> batch axis, output names), seeded by the kind."""
    import torch

    factory, specs, outputs = _zoo()[kind]
    seed = sum(map(ord, kind))
    torch.manual_seed(seed)
    module = factory().eval()
    rng = np.random.default_rng(seed)
    inputs, axes = {}, {}
    for name, shape, dtype, high in specs:
        full = tuple(BATCH if d == "B" else d for d in shape)
        axes[name] = shape.index("B")
        inputs[name] = (rng.integers(0, high, size=full).astype(dtype) if dtype.startswith("int")
                        else rng.standard_normal(full).astype(dtype))
    return module, inputs, axes, outputs


def job_zoo(job: Dict[str, Any], emit: Callable[[str, Dict[str, Any]], None]) -> None:
    """One zoo kind: its inputs (.npz), legacy and dynamo exports, then torch -> MDF direct."""
    import torch

    kind, folder = job["kind"], Path(job["folder"])
    module, inputs, axes, outputs = _zoo_model(kind)
    np.savez(folder / f"{kind}.inputs.npz", **inputs)
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    for exporter in ("legacy", "dynamo"):
        path = folder / f"{kind}.{exporter}.onnx"
        t0 = time.perf_counter()
        try:
            _export(module, args, inputs, axes, outputs, path, exporter, job.get("opset"))
            emit(exporter, {"ok": True, "text": f"ok ({time.perf_counter() - t0:.1f} s)", "path": str(path)})
        except Exception as exc:  # noqa: BLE001 - the exporter's failure is the measurement
            emit(exporter, {"ok": False, "text": first_line(exc)})
    emit("torch", _torch_direct(module, args, axes))


def _export(module: Any, args: Tuple[Any, ...], inputs: Dict[str, np.ndarray], axes: Dict[str, int],
            outputs: List[str], path: Path, exporter: str, opset: Optional[int]) -> None:
    import torch

    names = list(inputs)
    more = {"opset_version": opset} if opset else {}
    if exporter == "legacy":
        dyn = {n: {axes[n]: "batch"} for n in names}
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=names, output_names=outputs,
                          dynamic_axes=dyn, **more)
        return
    batch = torch.export.Dim("batch", min=2)
    try:
        prog = torch.onnx.export(module, args, dynamo=True, input_names=names, output_names=outputs,
                                 dynamic_shapes=tuple({axes[n]: batch} for n in names), verbose=False,
                                 **more)
    except Exception:  # noqa: BLE001 - some layers export only with static shapes
        prog = torch.onnx.export(module, args, dynamo=True, input_names=names, output_names=outputs, verbose=False,
                                 **more)
    prog.save(str(path))


def _flat(prefix: str, value: Any) -> Iterator[Tuple[str, Any]]:
    """torch outputs named as the torch importer names them: output, output_<i>, output_<i>_<j>."""
    if isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            yield from _flat(f"{prefix}_{i}", v)
    else:
        yield prefix, value


def _torch_direct(module: Any, args: Tuple[Any, ...], axes: Dict[str, int]) -> Dict[str, Any]:
    """torch.nn -> MDF (module_to_mdf, lower) on the numpy reference vs the module itself."""
    import torch

    from mdfbridge.api import run_with_backend
    from mdfbridge.importers.pytorch import module_to_mdf
    from mdfbridge.lowering import lower

    try:
        with torch.no_grad():
            ref = dict(_flat("output", module(*args)))
        doc = module_to_mdf(module, args)
        graph = next(iter(next(iter(doc.values()))["graphs"].values()))
        batch_axes = graph.get("metadata", {}).get("mdfbridge", {}).get("torch", {}).get("batch_axes", {})
        prog = lower(doc)
        feed = {}
        for name, arg in zip(pair_names(list(axes), list(prog.inputs)).values(), args):
            feed[name] = np.moveaxis(arg.numpy(), batch_axes.get(name, 0), 0)
        outs = run_with_backend(prog, feed, "numpy")
        outs = {k: np.moveaxis(np.asarray(v), 0, batch_axes.get(k, 0)) for k, v in outs.items()}
        ok, text, diff = compare_all(outs, {k: v.numpy() for k, v in ref.items()})
        return {"ok": ok, "text": "ok" if ok else text, "maxdiff": diff}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "text": first_line(exc)}


# ------------------------------------------------------------------------------------------------- one ONNX file

def job_onnx(job: Dict[str, Any], emit: Callable[[str, Dict[str, Any]], None]) -> None:
    """import, run, onnx (and train) checks of one ONNX file, each emitted as it finishes."""
    import onnx

    import mdfbridge
    from mdfbridge.api import run_with_backend
    from mdfbridge.exporters.onnx import program_to_onnx
    from mdfbridge.importers.onnx import onnx_to_mdf

    path, folder = job["path"], Path(job["folder"])
    inputs = load_npz(job["inputs"]) if job.get("inputs") else {}
    expected = load_npz(job["expected"]) if job.get("expected") else {}
    emit_raw = emit
    emitted = set()

    def emit(check: str, result: Dict[str, Any]) -> None:  # cells without the file's (temporary) path
        emitted.add(check)
        if "text" in result:
            result["text"] = result["text"].replace(f"{path}: ", "").replace(path, "<file>")
        emit_raw(check, result)

    try:
        ref, ref_note = ort_reference(path, inputs, expected)
    except Exception as exc:  # noqa: BLE001
        ref, ref_note = {}, first_line(exc)
    emit("reference", {"ok": bool(ref), "text": ref_note})

    out_json = folder / (job["stem"] + ".mdf.json")
    batch_axis = True
    t_import = time.perf_counter()
    try:
        try:
            doc = onnx_to_mdf(path)
        except mdfbridge.MdfBridgeError as exc:
            if "batch_axis" not in str(exc):
                raise
            # (as `mdfbridge convert --no-batch-axis --input-shape NAME=D1,D2,...` would: the inputs' own shapes)
            doc, batch_axis = onnx_to_mdf(path, batch_axis=False,
                                          input_shapes={k: np.shape(v) for k, v in inputs.items()} or None), False
        mdfbridge.save_mdf(doc, out_json)
        prog = mdfbridge.load_program(out_json)
        emit("import", {"ok": True, "text": "ok" if batch_axis else "ok (batch_axis=False)",
                        "mdf_bytes": out_json.stat().st_size, "onnx_bytes": os.path.getsize(path),
                        "seconds": round(time.perf_counter() - t_import, 3)})
    except Exception as exc:  # noqa: BLE001
        emit("import", {"ok": False, "text": first_line(exc), "error": str(exc)[:2000]})
        if "(opset" in (blocking_op(str(exc)) or ""):  # an op the importer has, at another opset
            emit("import_vc", _import_converted(path))
        return
    if not ref:
        for check in ("run", "onnx", "io", "train"):
            emit(check, {"ok": False, "text": "no reference outputs"})
        return

    def lead(x: np.ndarray) -> np.ndarray:
        return x if batch_axis else x[None]

    feed = {p: lead(inputs[o]) for o, p in pair_names(list(inputs), list(prog.inputs)).items()}
    try:
        outs = run_with_backend(prog, feed, "numpy")
        outs = {k: np.asarray(v) if batch_axis else np.asarray(v)[0] for k, v in outs.items()}
        ok, text, diff = compare_all(outs, ref)
        emit("run", {"ok": ok, "text": "ok" if ok else text, "maxdiff": diff})
    except Exception as exc:  # noqa: BLE001
        emit("run", {"ok": False, "text": first_line(exc)})

    try:
        model = program_to_onnx(prog)
        onnx.save(model, str(folder / (job["stem"] + ".roundtrip.onnx")))
        emit("io", _same_interface(onnx.load(path, load_external_data=False), model))
        sess = ort_session(model.SerializeToString())
        by_name = {i.name: i for i in sess.get_inputs()}
        pairs = pair_names(list(inputs), list(by_name))
        # (a batch_axis=False import re-exports one trial: the original's shapes, no leading trial axis)
        one_trial = not batch_axis and all(len(by_name[n].shape) == np.ndim(inputs[o]) for o, n in pairs.items())
        feed_back = {n: (inputs[o] if one_trial else lead(inputs[o])).astype(_ort_type(by_name[n].type))
                     for o, n in pairs.items()}
        back = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed_back)))
        back = {k: v if batch_axis or one_trial else v[0] for k, v in back.items()}
        ok, text, diff = compare_all(back, ref)
        emit("onnx", {"ok": ok, "text": ("ok" if diff == 0 else "ok (not exact)") if ok else text, "maxdiff": diff,
                      "exact": ok and diff == 0})
    except Exception as exc:  # noqa: BLE001
        emit("onnx", {"ok": False, "text": first_line(exc)})
        if "io" not in emitted:
            emit("io", {"ok": False, "text": "no re-exported model"})

    if job.get("train"):
        emit("train", _train(prog, feed, ref, batch_axis))


def _import_converted(path: str, opset: int = VC_OPSET) -> Dict[str, Any]:
    """Would `onnx.version_converter` to `opset` before the import recover this file (issue 13 item 2)?"""
    import onnx
    from onnx import version_converter

    from mdfbridge.importers.onnx import onnx_to_mdf

    try:
        converted = version_converter.convert_version(onnx.load(path), opset)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "text": f"version_converter: {first_line(exc, 200)}"}
    try:
        onnx_to_mdf(converted)
        return {"ok": True, "text": "ok"}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "text": first_line(exc, 300)}


def _interface(model: Any) -> Tuple[List[Tuple[str, int]], List[Tuple[str, int]]]:
    inits = {t.name for t in model.graph.initializer}
    return ([(i.name, i.type.tensor_type.elem_type) for i in model.graph.input if i.name not in inits],
            [(o.name, o.type.tensor_type.elem_type) for o in model.graph.output])


def _same_interface(original: Any, exported: Any) -> Dict[str, Any]:
    """Does the re-exported model have the original's graph inputs and outputs: names, order, element types?"""
    import onnx

    for what, a, b in zip(("inputs", "outputs"), _interface(original), _interface(exported)):
        if [n for n, _ in a] != [n for n, _ in b]:
            return {"ok": False, "text": f"{what} {[n for n, _ in b]} vs original {[n for n, _ in a]}"}
        types = [(n, t, u) for (n, t), (_, u) in zip(a, b) if t != u]
        if types:
            n, t, u = types[0]
            name = onnx.helper.tensor_dtype_to_np_dtype
            return {"ok": False, "text": f"{what[:-1]} {n!r} is {name(u)}, was {name(t)}"}
    return {"ok": True, "text": "ok"}


def _ort_type(type_text: str) -> Any:
    return {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
            "tensor(int32)": np.int32, "tensor(bool)": np.bool_}.get(type_text, np.float32)


def _train(prog: Any, feed: Dict[str, np.ndarray], ref: Dict[str, np.ndarray], batch_axis: bool) -> Dict[str, Any]:
    """2 epochs of `mdfbridge.learn` on random targets of the reference outputs' shapes."""
    import mdfbridge

    try:
        before = {k: np.array(p.value, copy=True) for k, p in prog.learnable_params().items()}
        if not before:
            return {"ok": False, "text": "no learnable parameters"}
        rng = np.random.default_rng(0)
        pairs = pair_names(list(ref), list(prog.outputs))
        targets = {pairs[k]: rng.standard_normal(v.shape if batch_axis else (1,) + v.shape) for k, v in ref.items()
                   if k in pairs and v.dtype.kind == "f"}
        result = mdfbridge.learn(prog, feed, targets, epochs=2, learning_rate=0.01)
        losses = np.asarray(result.losses, dtype=float)
        if losses.size == 0 or not np.all(np.isfinite(losses)):
            return {"ok": False, "text": f"losses {losses.tolist()[:4]}"}
        after = result.program.learnable_params()
        changed = sum(not np.array_equal(before[k], after[k].value) for k in before if k in after)
        if not changed:
            return {"ok": False, "text": f"no parameter changed ({len(before)} learnable)"}
        return {"ok": True, "text": "ok", "changed": f"{changed}/{len(before)}", "loss": float(losses[-1])}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "text": first_line(exc)}


def job_o2t(job: Dict[str, Any], emit: Callable[[str, Dict[str, Any]], None]) -> None:
    """onnx2torch.convert on one file, its output vs onnxruntime (run in the onnx2torch venv)."""
    import onnx2torch
    import torch

    inputs = load_npz(job["inputs"]) if job.get("inputs") else {}
    expected = load_npz(job["expected"]) if job.get("expected") else {}
    try:
        ref, _ = ort_reference(job["path"], inputs, expected)
        module = onnx2torch.convert(job["path"]).eval()
        with torch.no_grad():
            out = module(*(torch.from_numpy(v) for v in inputs.values()))
        outs = [out] if torch.is_tensor(out) else list(out)
        got = {name: o.numpy() for name, o in zip(ref, outs)}
        ok, text, diff = compare_all(got, ref)
        emit("o2t", {"ok": ok, "text": "ok" if ok else text, "maxdiff": diff})
    except Exception as exc:  # noqa: BLE001
        emit("o2t", {"ok": False, "text": first_line(exc)})


def job_skl(job: Dict[str, Any], emit: Callable[[str, Dict[str, Any]], None]) -> None:
    """Small scikit-learn models converted by skl2onnx into the folder (one emit per file, or the import error)."""
    try:
        from skl2onnx import to_onnx
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        from sklearn.preprocessing import MinMaxScaler, StandardScaler
        from sklearn.tree import DecisionTreeRegressor
    except Exception as exc:  # noqa: BLE001
        emit("skl2onnx", {"ok": False, "text": first_line(exc)})
        return
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 0.0], np.float32) + 0.1
    cls = (y > 0).astype(np.int64)
    models = {"linear_regression": LinearRegression().fit(x, y), "ridge": Ridge().fit(x, y),
              "logistic_regression": LogisticRegression().fit(x, cls),
              "mlp_regressor": MLPRegressor(hidden_layer_sizes=(8,), max_iter=50).fit(x, y),
              "mlp_classifier": MLPClassifier(hidden_layer_sizes=(8,), max_iter=50).fit(x, cls),
              "standard_scaler": StandardScaler().fit(x), "minmax_scaler": MinMaxScaler().fit(x),
              "pca": PCA(2).fit(x), "decision_tree": DecisionTreeRegressor(max_depth=3).fit(x, y)}
    import warnings

    for name, est in models.items():
        path = Path(job["folder"]) / f"skl2onnx_{name}.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opts = {id(est): {"zipmap": False}} if hasattr(est, "predict_proba") else None
                model = to_onnx(est, x[:1], options=opts, target_opset=17)
            path.write_bytes(model.SerializeToString())
            emit(name, {"ok": True, "path": str(path)})
        except Exception as exc:  # noqa: BLE001
            emit(name, {"ok": False, "text": first_line(exc)})


JOBS = {"zoo": job_zoo, "onnx": job_onnx, "o2t": job_o2t, "skl": job_skl}


def worker_main(mode: str) -> None:
    """Read one JSON job a line on stdin; write `{"check": .., ...}` lines and `{"done": true}` per job."""
    import logging
    import signal
    import warnings

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the file-size limit a write fails (EFBIG), not the process
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # libraries that print (torch.onnx's progress) write to stderr, not the result stream
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import torch

    torch.set_num_threads(1)
    if mode == "mdf":
        import mdfbridge.api  # noqa: F401 - loaded before "ready": import time is not the first file's
        import mdfbridge.importers.onnx  # noqa: F401
    else:
        import onnx2torch  # noqa: F401
    out.write(json.dumps({"ready": True}) + "\n")

    def emit(check: str, result: Dict[str, Any]) -> None:
        out.write(json.dumps({"check": check, **result}, default=str) + "\n")

    for line in sys.stdin:
        job = json.loads(line)
        try:
            JOBS[job["job"]](job, emit)
        except BaseException as exc:  # noqa: BLE001 - reported, the worker goes on
            emit("job", {"ok": False, "text": first_line(exc)})
        out.write(json.dumps({"done": True}) + "\n")


# ------------------------------------------------------------------------------------------------ the main process

class Worker:
    """A worker process running jobs with a deadline; killed and restarted after a timeout."""

    def __init__(self, python: str, mode: str, log: Path, memory_gb: float = 6.0, file_mb: float = 2048.0) -> None:
        self.python, self.mode, self.log = python, mode, log
        self.limits = (int(memory_gb * (1 << 30)), int(file_mb * (1 << 20)))
        self.proc: Optional[subprocess.Popen] = None
        self.buffer = b""

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1",
                   PYTHONWARNINGS="ignore")
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([self.python, str(Path(__file__).resolve()), "--worker", self.mode],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         cwd=str(REPO), env=env, bufsize=0, preexec_fn=self._limit)
        self.buffer = b""
        line = self._readline(300)
        if not line or not json.loads(line).get("ready"):
            self.stop()
            raise RuntimeError(f"the {self.mode} worker did not start (see {self.log})")

    def _limit(self) -> None:
        """In the child: address space and file size bounded (a huge model fails with MemoryError / EFBIG
        instead of exhausting a shared machine)."""
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (self.limits[0], self.limits[0]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limits[1], self.limits[1]))

    def _readline(self, timeout: float) -> Optional[str]:
        """The worker's next line ('' when it exited), or None past `timeout` seconds (own buffer: select()
        sees the pipe, not what a buffered reader already holds)."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(deadline - time.monotonic(), 0.0))
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return ""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode() + "\n"

    def run(self, job: Dict[str, Any], timeout: float) -> Dict[str, Dict[str, Any]]:
        """check -> result of one job; checks not reached by the deadline are absent and 'timeout' is set."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()
        results: Dict[str, Dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while True:
            line = self._readline(deadline - time.monotonic())
            if line is None:
                self.stop()
                results["timeout"] = {"ok": False, "text": f"timeout ({timeout:g} s)"}
                return results
            if not line:
                rc = self.proc.wait()
                self.proc = None
                results["timeout"] = {"ok": False, "text": f"worker died (exit {rc})"}
                return results
            msg = json.loads(line)
            if msg.get("done"):
                return results
            results[msg.pop("check")] = msg

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        self.buffer = b""


def _cell(results: Dict[str, Dict[str, Any]], check: str) -> Dict[str, Any]:
    if check in results:
        return results[check]
    for failure in ("timeout", "job"):  # the worker stopped, or the job raised before this check
        if failure in results:
            return results[failure]
    return {"ok": False, "text": "-", "skipped": True}


def real_files(limit: Optional[int]) -> List[Path]:
    """The real ONNX files in installed packages (onnx's backend test data, onnxruntime's datasets), sorted."""
    import onnx

    site = Path(onnx.__file__).resolve().parent.parent
    data = site / "onnx" / "backend" / "test" / "data"
    files: List[Path] = []
    for sub in BACKEND_DATA:
        files += sorted((data / sub).glob("**/model.onnx"))
        files += sorted(p for p in (data / sub).glob("*.onnx"))
    files += sorted(p for p in site.glob("*/**/*.onnx") if data not in p.parents)
    return files[:limit] if limit is not None else files


def _file_inputs(path: Path, folder: Path, stem: str) -> Tuple[Optional[str], Optional[str], str]:
    """(inputs .npz, expected outputs .npz or None, where the inputs came from) for a real file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    case = path.parent / "test_data_set_0"
    inputs: Dict[str, np.ndarray] = {}
    expected: Dict[str, np.ndarray] = {}
    origin = "random"
    if case.is_dir() and sorted(case.glob("input_*.pb")):
        for inp, pb in zip(graph_inputs, sorted(case.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))):
            t = onnx.TensorProto()
            t.ParseFromString(pb.read_bytes())
            value = numpy_helper.to_array(t)
            inputs[inp.name] = value.astype(str) if value.dtype == object else value
        for out, pb in zip(model.graph.output, sorted(case.glob("output_*.pb"),
                                                      key=lambda p: int(p.stem.split("_")[1]))):
            t = onnx.TensorProto()
            t.ParseFromString(pb.read_bytes())
            value = numpy_helper.to_array(t)
            expected[out.name] = value.astype(str) if value.dtype == object else value
        origin = "test_data_set_0"
    else:
        rng = np.random.default_rng(0)
        for inp in graph_inputs:
            tt = inp.type.tensor_type
            if not inp.type.HasField("tensor_type"):
                return None, None, f"input {inp.name!r} is not a tensor"
            shape = tuple(d.dim_value if d.HasField("dim_value") else SYMBOLIC for d in tt.shape.dim)
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
            if dtype.kind == "f":
                inputs[inp.name] = rng.standard_normal(shape).astype(dtype)
            elif dtype.kind == "b":
                inputs[inp.name] = rng.integers(0, 2, size=shape).astype(bool)
            elif dtype.kind in "iu":
                inputs[inp.name] = rng.integers(0, 2, size=shape).astype(dtype)
            else:
                return None, None, f"input {inp.name!r} of type {dtype}"
    np.savez(folder / f"{stem}.inputs.npz", **inputs)
    exp_path = None
    if expected:
        np.savez(folder / f"{stem}.expected.npz", **expected)
        exp_path = str(folder / f"{stem}.expected.npz")
    return str(folder / f"{stem}.inputs.npz"), exp_path, origin


OP_REFUSED = re.compile(r"ONNX op '([\w.]+)' \(opset (\d+)\) is not supported")
OPS_REFUSED = re.compile(r"unsupported ONNX ops \(opset (\d+)\): ([\w.]+) x\d+")
OP_FORM = re.compile(r"ONNX node '[^']*': ONNX (?:op )?'?([A-Z][\w]*)'? \(opset \d+\)")
OP_DOMAIN = re.compile(r"is op '([\w.]+)' of domain '([\w.]+)'")
OP_OPSET = re.compile(r"\b([A-Z][A-Za-z0-9]+) is imported from opset")


def blocking_op(text: str) -> Optional[str]:
    """What an import error names as the first obstacle: an op the importer lacks ('Conv'), an op it has but
    not at this opset ('Add (opset 6)'), an op it has refusing this form ('Transpose (form)'); else the error's
    first words ('graph input ... is not a float tensor' -> 'graph input: not a float tensor')."""
    from mdfbridge.importers.onnx import supported_onnx_ops

    m = OP_REFUSED.search(text)
    if m:
        return f"{m.group(1)} (opset {m.group(2)})" if m.group(1) in supported_onnx_ops() else m.group(1)
    m = OPS_REFUSED.search(text)
    if m:
        return m.group(2)
    m = OP_DOMAIN.search(text)
    if m:
        return f"{m.group(2)}::{m.group(1)}"
    m = OP_OPSET.search(text)
    if m:
        return f"{m.group(1)} (opset)"
    m = OP_FORM.search(text)
    if m:
        return f"{m.group(1)} (form)"
    if "not a float tensor" in text:
        return "graph input: not a float tensor"
    if "symbolic dimensions" in text:
        return "graph input: symbolic non-leading dimension"
    return None


def missing_ops(path: str) -> List[str]:
    """The file's op types (default domain) that are not in the importer's table."""
    import onnx

    from mdfbridge.importers.onnx import supported_onnx_ops

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001
        return []
    known = set(supported_onnx_ops()) | {"Constant"}  # Constant nodes are folded into values
    return sorted({(n.domain + "::" if n.domain not in ("", "ai.onnx") else "") + n.op_type
                   for n in model.graph.node if n.op_type not in known or n.domain not in ("", "ai.onnx")})


class Bench:
    """The run: workers, rows, tables."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args, self.folder = args, folder
        self.mdf = Worker(sys.executable, "mdf", folder / "mdf_worker.log", args.max_memory_gb, args.max_file_mb)
        self.o2t: Optional[Worker] = None
        if not args.no_o2t and args.o2t_python and Path(args.o2t_python).exists():
            self.o2t = Worker(args.o2t_python, "o2t", folder / "o2t_worker.log", args.max_memory_gb, args.max_file_mb)
        self.rows: List[Dict[str, Any]] = []

    def o2t_cell(self, job: Dict[str, Any]) -> Dict[str, Any]:
        if self.o2t is None:
            return {"ok": False, "text": "-", "skipped": True}
        try:
            return _cell(self.o2t.run(dict(job, job="o2t"), self.args.timeout), "o2t")
        except RuntimeError as exc:
            self.o2t = None
            print(f"note: onnx2torch column dropped: {exc}", file=sys.stderr)
            return {"ok": False, "text": "-", "skipped": True}

    def zoo(self) -> None:
        kinds = ZOO_KINDS[: self.args.limit] if self.args.limit is not None else ZOO_KINDS
        for kind in kinds:
            t0 = time.perf_counter()
            job = {"job": "zoo", "kind": kind, "folder": str(self.folder), "opset": self.args.opset}
            built = self.mdf.run(job, self.args.timeout)
            torch_cell = _cell(built, "torch")
            for exporter in ("legacy", "dynamo"):
                row: Dict[str, Any] = {"section": "zoo", "name": f"{kind} [{exporter}]", "kind": kind,
                                       "exporter": exporter, "checks": {"export": _cell(built, exporter),
                                                                        "torch": torch_cell}}
                path = built.get(exporter, {}).get("path")
                if path:
                    row["path"] = path
                    job = {"job": "onnx", "path": path, "folder": str(self.folder), "train": True,
                           "inputs": str(self.folder / f"{kind}.inputs.npz"), "stem": f"{kind}.{exporter}"}
                    res = self.mdf.run(job, self.args.timeout)
                    row["checks"].update({c: _cell(res, c) for c in ("import", "run", "onnx", "io", "train")})
                    row["checks"]["o2t"] = self.o2t_cell(job)
                    row["reference"] = res.get("reference", {}).get("text")
                    row["missing_ops"] = missing_ops(path)
                else:
                    for c in ("import", "run", "onnx", "io", "train", "o2t"):
                        row["checks"][c] = {"ok": False, "text": "no file (export failed)", "skipped": True}
                self._finish(row, t0)
                t0 = time.perf_counter()

    def real(self) -> None:
        files: List[Tuple[str, Path]] = [(str(p), p) for p in real_files(None)]
        for extra in self.args.extra:
            found = sorted(Path(extra).glob("**/*.onnx")) if Path(extra).is_dir() else [Path(extra)]
            files += [(f"extra/{p.name}", p) for p in found]
        skl = self.mdf.run({"job": "skl", "folder": str(self.folder)}, max(self.args.timeout, 120))
        files += [(f"skl2onnx/{Path(r['path']).name}", Path(r["path"])) for r in skl.values() if r.get("path")]
        for name, r in skl.items():
            if not r.get("path"):
                print(f"note: skl2onnx {name}: {r.get('text')}", file=sys.stderr)
        if self.args.limit is not None:
            files = files[: self.args.limit]
        for i, (label, path) in enumerate(files):
            t0 = time.perf_counter()
            short = re.sub(r".*/site-packages/", "", label).replace("onnx/backend/test/data/", "")
            short = short.replace("/model.onnx", "")
            stem = f"real{i:03d}"
            row: Dict[str, Any] = {"section": "real", "name": short, "path": str(path), "checks": {}}
            try:
                inputs, expected, origin = _file_inputs(path, self.folder, stem)
            except Exception as exc:  # noqa: BLE001
                inputs, expected, origin = None, None, first_line(exc)
            row["inputs"] = origin
            job = {"job": "onnx", "path": str(path), "folder": str(self.folder), "train": False, "inputs": inputs,
                   "expected": expected, "stem": stem}
            res = self.mdf.run(job, self.args.timeout)
            row["checks"] = {c: _cell(res, c) for c in ("import", "run", "onnx", "io")}
            if "import_vc" in res:
                row["import_after_version_converter"] = res["import_vc"]
            row["reference"] = res.get("reference", {}).get("text")
            row["checks"]["o2t"] = self.o2t_cell(job) if inputs is not None else {"ok": False, "text": origin}
            row["missing_ops"] = missing_ops(str(path))
            self._finish(row, t0)

    def _finish(self, row: Dict[str, Any], t0: float) -> None:
        row["seconds"] = round(time.perf_counter() - t0, 2)
        imp = row["checks"].get("import", {})
        if not imp.get("ok") and not imp.get("skipped"):
            row["blocking_op"] = blocking_op(imp.get("error") or imp.get("text", ""))
        self.rows.append(row)
        columns = ZOO_COLUMNS if row["section"] == "zoo" else REAL_COLUMNS
        if len([r for r in self.rows if r["section"] == row["section"]]) == 1:
            self._header(row["section"], columns)
        print(self._line(row, columns), flush=True)

    def _widths(self, section: str) -> int:
        return 44 if section == "zoo" else 52

    def _header(self, section: str, columns: Sequence[str]) -> None:
        title = {"zoo": "Own zoo (torch.onnx.export legacy and dynamo)", "real": "Real files (installed packages)"}
        print(f"\n== {title[section]} ==")
        print(f"{'file':{self._widths(section)}s} | " + " | ".join(f"{c:{self._col(c)}s}" for c in columns
                                                                 if self._shown(c)))

    def _col(self, c: str) -> int:
        return min(self.args.width, 24) if c in ("export", "torch") else self.args.width

    def _shown(self, c: str) -> bool:
        return c != "o2t" or self.o2t is not None

    def _line(self, row: Dict[str, Any], columns: Sequence[str]) -> str:
        cells = []
        for c in columns:
            if not self._shown(c):
                continue
            r = row["checks"].get(c, {"text": "-"})
            text = "ok" if r.get("ok") and c != "onnx" else str(r.get("text", ""))
            if c == "onnx" and r.get("ok"):
                text = "ok" if r.get("exact") else "ok (not exact)"
            cells.append(f"{text[: self._col(c)]:{self._col(c)}s}")
        return f"{row['name'][: self._widths(row['section'])]:{self._widths(row['section'])}s} | " + " | ".join(cells)

    def summary(self) -> List[str]:
        lines = ["", "== Summary (ok / files) =="]
        for section, columns in (("zoo", ZOO_COLUMNS), ("real", REAL_COLUMNS)):
            rows = [r for r in self.rows if r["section"] == section]
            if not rows:
                continue
            parts = []
            for c in columns:
                if not self._shown(c):
                    continue
                if c == "torch":
                    kinds = {r["kind"]: r["checks"]["torch"].get("ok", False) for r in rows}
                    parts.append(f"torch {sum(kinds.values())}/{len(kinds)} kinds")
                    continue
                oks = sum(bool(r["checks"].get(c, {}).get("ok")) for r in rows)
                parts.append(f"{c} {oks}/{len(rows)}")
                if c == "onnx":
                    parts.append(f"onnx exact {sum(bool(r['checks'].get(c, {}).get('exact')) for r in rows)}"
                                 f"/{len(rows)}")
            lines.append(f"{section:5s}: " + ", ".join(parts))
            sized = [r["checks"]["import"] for r in rows if r["checks"].get("import", {}).get("mdf_bytes")]
            if sized:
                mdf_b, onnx_b = sum(c["mdf_bytes"] for c in sized), sum(c["onnx_bytes"] for c in sized)
                secs = sum(c["seconds"] for c in sized)
                lines.append(f"  imported files: ONNX {onnx_b / 1e6:.2f} MB -> MDF JSON {mdf_b / 1e6:.2f} MB "
                             f"({mdf_b / max(onnx_b, 1):.1f}x), import+save+load {secs:.1f} s")
            vc = [r["import_after_version_converter"] for r in rows if "import_after_version_converter" in r]
            if vc:
                recovered = sum(bool(v.get("ok")) for v in vc)
                lines.append(f"  refused for their opset: {len(vc)} files; importing after onnx.version_converter to "
                             f"opset {VC_OPSET} would import {recovered} (import only, not run)")
            if section == "zoo":
                for exporter in ("legacy", "dynamo"):
                    sub = [r for r in rows if r["exporter"] == exporter]
                    cells = ", ".join(f"{c} {sum(bool(r['checks'].get(c, {}).get('ok')) for r in sub)}"
                                      for c in ("export", "import", "run", "onnx", "io", "train", "o2t")
                                      if self._shown(c))
                    lines.append(f"  {exporter:6s}: {cells} (of {len(sub)})")
                full = {r["kind"] for r in rows if all(r["checks"].get(c, {}).get("ok")
                                                      for c in ("import", "run", "onnx", "train"))}
                lines.append(f"  kinds with a file passing import+run+onnx+train: {len(full)}/"
                             f"{len({r['kind'] for r in rows})} ({', '.join(sorted(full)) or 'none'})")
            ranked: Dict[str, int] = {}
            for r in rows:
                if r.get("blocking_op"):
                    ranked[r["blocking_op"]] = ranked.get(r["blocking_op"], 0) + 1
            other: Dict[str, int] = {}
            for r in rows:
                imp = r["checks"].get("import", {})
                if not imp.get("ok") and not r.get("blocking_op") and not imp.get("skipped"):
                    other[imp.get("text", "")[:70]] = other.get(imp.get("text", "")[:70], 0) + 1
            text = ", ".join(f"{op} {n}" for op, n in sorted(ranked.items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"  import blocked by (first op named, files): {text or 'none'}")
            for reason, n in sorted(other.items(), key=lambda kv: -kv[1]):
                lines.append(f"  other import failure ({n}): {reason}")
            absent: Dict[str, int] = {}
            for r in rows:
                for op in r.get("missing_ops", []):
                    absent[op] = absent.get(op, 0) + 1
            if absent:
                lines.append("  ops not in the importer's table (files containing them; constant-only nodes are "
                             "folded, so not all of these block): "
                             + ", ".join(f"{op} {n}" for op, n in sorted(absent.items(),
                                                                         key=lambda kv: (-kv[1], kv[0]))))
        if self.o2t is None:
            why = "--no-o2t" if self.args.no_o2t else f"no interpreter at {self.args.o2t_python}: make one with " \
                "benchmarks/make_o2t_venv.sh, or pass --o2t-python"
            lines.append(f"note: onnx2torch column skipped ({why})")
        return lines

    def close(self) -> None:
        self.mdf.stop()
        if self.o2t is not None:
            self.o2t.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark (see the module docstring); 0 once the tables are printed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("zoo", "real"), default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--width", type=int, default=60)
    ap.add_argument("--opset", type=int, default=None)
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--max-memory-gb", type=float, default=6.0)
    ap.add_argument("--max-file-mb", type=float, default=2048.0)
    ap.add_argument("--o2t-python", default=os.environ.get("O2T_PYTHON", DEFAULT_O2T))
    ap.add_argument("--no-o2t", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--worker", choices=("mdf", "o2t"), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="bench_zoo_"))
    bench = Bench(args, folder)
    t0 = time.perf_counter()
    try:
        if args.only in (None, "zoo"):
            bench.zoo()
        if args.only in (None, "real"):
            bench.real()
    finally:
        bench.close()
    lines = bench.summary()
    lines.append(f"total {time.perf_counter() - t0:.0f} s; tolerance rtol=atol={RTOL:g}")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": bench.rows, "summary": lines}, indent=1, default=str))
    if args.keep:
        print(f"files kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
