"""`mdfbridge` command line: validate, info, run, train, convert, graph."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, cast

import numpy as np

from .errors import DataError, MdfBridgeError

log = logging.getLogger("mdfbridge.cli")

EPILOG = """examples:
  mdfbridge validate examples/xor.mdf.json
  mdfbridge info examples/xor.mdf.json
  mdfbridge run examples/xor.mdf.json --input input='[[0,0],[0,1],[1,0],[1,1]]'
  mdfbridge run model.yaml --inputs data.npz --steps 10 --out out.npz
  mdfbridge convert examples/xor.mdf.json xor.mdf.yaml
  mdfbridge convert examples/xor.mdf.json xor.onnx && mdfbridge info xor.onnx
  mdfbridge graph examples/xor.mdf.json --out xor.svg
  mdfbridge train examples/xor.mdf.json --data examples/xor_data.npz --epochs 500 --lr 0.5 --out trained.json

Errors print one line and exit with status 2; add --debug for the traceback.
"""


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


# ---------------------------------------------------------------------------------------- commands

def cmd_validate(args: argparse.Namespace) -> int:
    """Parse, schema-check and lower a file (unknown functions, shapes, cycles); with --strict, also check the
    document against the form mdfbridge writes."""
    from .api import load_program
    from .document import load_document_dict

    if args.strict:
        load_document_dict(args.file, strict=True)
    prog = load_program(args.file)
    meta = prog.metadata
    _out(f"{args.file}: valid MDF (model '{meta['model']}', graph '{meta['graph']}', "
         f"{len(meta['order'])} nodes, {len(prog.inputs)} input(s), {len(prog.outputs)} output(s))")
    return 0


def _param_rows(prog: Any) -> List[str]:
    rows = []
    for name, p in prog.params.items():
        flag = " learnable" if p.learnable else ""
        rows.append(f"    {name}: shape {tuple(p.value.shape)}{flag}")
    return rows


def cmd_info(args: argparse.Namespace) -> int:
    """Describe graphs, nodes, functions, parameter counts and shapes (ONNX files: see cmd_info_onnx)."""
    if _is_onnx_path(args.file):
        return cmd_info_onnx(args)
    from .document import load_document_dict
    from .lowering import lower

    doc = load_document_dict(args.file)
    model_id, model = next(iter(doc.items()))
    _out(f"model '{model_id}' ({model.get('format', '?')}, written by {model.get('generating_application', '?')})")
    for gid, graph in (model.get("graphs") or {}).items():
        prog = lower(doc, gid)
        nodes = graph.get("nodes") or {}
        n_params = sum(int(p.value.size) for p in prog.params.values())
        n_learn = sum(int(p.value.size) for p in prog.learnable_params().values())
        _out(f"graph '{gid}': {len(nodes)} nodes, {len(graph.get('edges') or {})} edges, "
             f"{n_params} parameter values ({n_learn} learnable)")
        _out("  inputs: " + ", ".join(f"{k} {tuple(s.shape) if s.shape is not None else '?'}"
                                      for k, s in prog.inputs.items()))
        _out("  outputs: " + ", ".join(f"{k} {prog.shapes.get(t, '?')}" for k, t in prog.outputs.items()))
        _out("  nodes:")
        for nid, node in nodes.items():
            funcs = []
            for f in (node.get("functions") or {}).values():
                fn = f.get("function")
                transfer = ((f.get("metadata") or {}).get("mdfbridge") or {}).get("transfer")
                funcs.append(next(iter(fn)) if isinstance(fn, dict) else (fn or transfer or "value expression"))
            role = ((node.get("metadata") or {}).get("mdfbridge") or {}).get("role", "")
            _out(f"    {nid}{' [' + role + ']' if role else ''}: {', '.join(funcs) or 'no function'}")
        if prog.params:
            _out("  parameters:")
            for row in _param_rows(prog):
                _out(row)
        if prog.states:
            _out("  state: " + ", ".join(f"{k} ({s.kind})" for k, s in prog.states.items()))
    return 0


def _parse_inputs(args: argparse.Namespace) -> Dict[str, np.ndarray]:
    inputs: Dict[str, np.ndarray] = {}
    if args.inputs:
        try:
            with np.load(args.inputs, allow_pickle=False) as data:
                inputs.update({k: np.asarray(data[k]) for k in data.files})
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {args.inputs} as an .npz of arrays: {exc}") from exc
    for item in args.input or []:
        name, sep, text = item.partition("=")
        if not sep:
            raise DataError(f"--input {item!r}: expected NODE=JSONLIST, e.g. input='[[0, 1]]'")
        try:
            inputs[name] = np.asarray(json.loads(text), dtype=float)
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            raise DataError(f"--input {name}: not a JSON list of numbers: {exc}") from exc
    return inputs


PRINT_LIMIT = 20  # values per output `run` prints in full; larger outputs print their shape and first rows


def _print_outputs(res: Mapping[str, Any], print_all: bool) -> None:
    """Each output as a JSON list, or (above PRINT_LIMIT values, without --print-all) its shape and first rows."""
    for k, v in res.items():
        arr = np.asarray(v)
        if print_all or arr.size <= PRINT_LIMIT:
            _out(f"{k}: {json.dumps(arr.tolist())}")
        else:
            rows = json.dumps(np.round(arr[:3], 6).tolist())
            _out(f"{k}: shape {arr.shape}, first rows {rows[:300]} ... (--print-all prints every value)")


def cmd_run(args: argparse.Namespace) -> int:
    """Run a model on inputs (--backend: numpy reference by default, see mdfbridge.backends); print (and optionally
    save) outputs, with trajectories where the backend records them."""
    if _is_onnx_path(args.file):  # ONNX files run on onnxruntime (see "ONNX and .pt files" below)
        return cmd_run_onnx(args)
    from .api import load_program
    from .backends import get_backend

    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise DataError(f"--out {args.out}: directory {Path(args.out).parent} does not exist")
    prog = load_program(args.file)
    inputs = _parse_inputs(args)
    targets = [k for k in inputs if k in prog.outputs and k not in prog.inputs]
    for k in targets:  # a training .npz holds the targets too: they are not inputs
        del inputs[k]
    backend = get_backend(getattr(args, "backend", "numpy"))
    res = backend.prepare(prog).run(inputs, steps=args.steps, dt=args.dt,
                                    record=bool(args.out) and backend.records_trajectory)
    unfed = [k for k, s in prog.inputs.items() if k not in inputs and s.port not in inputs and s.default is None]
    if unfed:
        sys.stderr.write(f"warning: no value given for input(s) {', '.join(unfed)}: they ran on zeros "
                         "(give --input NODE=JSONLIST or --inputs DATA.npz)\n")
    traj: Any = res.pop("__trajectory__", None)  # a dict of arrays (run's result type names only the outputs)
    _print_outputs(res, args.print_all)
    if args.out:
        arrays = {k: np.asarray(v) for k, v in res.items()}
        if traj is not None and args.steps > 1:
            arrays.update({f"{k}__trajectory": v for k, v in traj.items()})
        import io

        from .document import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, **cast(Dict[str, Any], arrays))  # numpy's stub would match a key to allow_pickle: bool
        atomic_write_bytes(Path(args.out), buf.getvalue())
        _out(f"wrote {args.out}")
    return 0


def _load_training_data(path: str, program: Any) -> tuple:
    """(inputs, targets) from an .npz holding one array per input node and one per output node, by node id."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as an .npz of arrays: {exc}") from exc
    ports = {s.port: k for k, s in program.inputs.items()}
    inputs = {k: v for k, v in arrays.items() if k in program.inputs or k in ports}
    targets = {k: v for k, v in arrays.items() if k in program.outputs and k not in inputs}
    unknown = sorted(set(arrays) - set(inputs) - set(targets))
    if unknown:
        raise DataError(f"{path}: arrays {unknown} match no input or output node (inputs: {sorted(program.inputs)}, "
                        f"outputs: {sorted(program.outputs)})")
    return inputs, targets


def _plot_losses(losses: List[float], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(losses) + 1), losses)
    ax.set_xlabel("minibatch")
    ax.set_ylabel("loss")
    ax.set_yscale("log" if min(losses) > 0 else "linear")
    ax.set_title("training loss")
    fig.tight_layout()
    buf = __import__("io").BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    from .document import atomic_write_bytes

    atomic_write_bytes(Path(path), buf.getvalue())


def cmd_train(args: argparse.Namespace) -> int:
    """Train an MDF model on an .npz of inputs/targets and write the trained weights back into MDF."""
    from .api import load_program
    from .exporters.weights import write_back
    from .learning import LearnConfig, train_program

    out = args.out
    if out is None:
        if not args.in_place:
            p = Path(args.model)
            out = str(p.with_name(p.name.replace(".json", ".trained.json").replace(".yaml", ".trained.yaml")
                                  if p.suffix in (".json", ".yaml", ".yml") else p.name + ".trained.json"))
        else:
            out = args.model
    prog = load_program(args.model)
    inputs, targets = _load_training_data(args.data, prog)
    # the command line first, then what the document records (PsyNeuLink's AutodiffComposition settings), then
    # LearnConfig's defaults
    given = {"epochs": args.epochs, "learning_rate": args.lr, "minibatch_size": args.minibatch_size,
             "optimizer_type": args.optimizer, "loss_spec": args.loss}
    settings = dict(prog.metadata.get("learning_settings") or {})
    settings.update({k: v for k, v in given.items() if v is not None})
    recorded = sorted(k for k in prog.metadata.get("learning_settings") or {} if given.get(k) is None)
    config = LearnConfig(randomize_minibatch=args.randomize, weight_decay=args.weight_decay, patience=args.patience,
                         min_delta=args.min_delta, seed=args.seed, **settings)
    config.check()
    n = len(next(iter(inputs.values()))) if inputs else 0
    per_epoch = -(-n // config.minibatch_size) if n else 0
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=config.epochs, unit="epoch", desc="training", file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.25, disable=None)  # disable=None: no bar when stderr is not a terminal

    def progress(epoch: int, k: int, loss: float) -> None:
        if bar is not None and per_epoch and (k + 1) % per_epoch == 0:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")

    try:
        result = train_program(prog, inputs, targets, config, backend=args.backend,
                               callback=progress if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    write_back(args.model, prog, out)
    if args.plot:
        _plot_losses(result.losses, args.plot)
    final = result.epoch_losses[-1] if result.epoch_losses else float("nan")
    _out(f"trained {result.epochs_run} epoch(s){' (stopped early)' if result.stopped_early else ''} in "
         f"{result.seconds:.2f} s on {args.backend}: loss {result.epoch_losses[0]:.6g} -> {final:.6g}; wrote {out}"
         + (f" and the loss curve {args.plot}" if args.plot else "")
         + (f" (settings the document records: {', '.join(f'{k}={settings[k]}' for k in recorded)})"
            if recorded else ""))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert between MDF JSON and YAML (format from the extensions); --gru rewrites GRU blocks."""
    if any(Path(p).suffix.lower() not in _MDF_SUFFIXES for p in (args.input, args.output)):
        return cmd_convert_formats(args)  # .onnx / .pt, or an unknown extension (see "ONNX and .pt files")
    from .document import convert_document, load_document_dict, save_document

    if args.gru:
        from .gru_mdf import convert_blocks

        save_document(convert_blocks(load_document_dict(args.input), "gates" if args.gru == "gates" else "onnx"),
                      args.output)
    else:
        convert_document(args.input, args.output)
    _out(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------------------------------- ONNX and .pt files

_MDF_SUFFIXES = (".json", ".yaml", ".yml")


def _is_onnx_path(path: str) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def cmd_run_onnx(args: argparse.Namespace) -> int:
    """Run an ONNX model on onnxruntime (provider auto/cpu/cuda); print (and optionally save) the outputs."""
    from .deploy import DeploymentSession

    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise DataError(f"--out {args.out}: directory {Path(args.out).parent} does not exist")
    if getattr(args, "steps", 1) != 1:
        raise DataError("--steps applies to stateful MDF models; an ONNX model runs one step")
    session = DeploymentSession(args.file, getattr(args, "provider", None) or "auto")
    res = session.run(_parse_inputs(args))
    _print_outputs(res, args.print_all)
    sys.stderr.write(f"ran on onnxruntime {session.provider}\n")
    if args.out:
        import io

        from .document import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, **cast(Dict[str, Any], {k: np.asarray(v) for k, v in res.items()}))  # (see cmd_run)
        atomic_write_bytes(Path(args.out), buf.getvalue())
        _out(f"wrote {args.out}")
    return 0


def cmd_info_onnx(args: argparse.Namespace) -> int:
    """Describe an ONNX file: inputs/outputs with types and shapes, ops with counts, opset, IR version, weights."""
    from collections import Counter

    from onnx import numpy_helper

    from .graphviz_render import onnx_type_text
    from .importers.onnx import load_onnx

    model = load_onnx(args.file)
    graph = model.graph
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    producer = f"{model.producer_name} {model.producer_version}".strip() or "?"
    _out(f"ONNX model '{graph.name}' (ir_version {model.ir_version}, opset {opsets}, produced by {producer})")
    inits = {i.name: i for i in graph.initializer}
    _out("  inputs: " + (", ".join(f"{i.name} {onnx_type_text(i)}" for i in graph.input if i.name not in inits)
                         or "none"))
    _out("  outputs: " + (", ".join(f"{o.name} {onnx_type_text(o)}" for o in graph.output) or "none"))
    counts = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in graph.node)
    _out(f"  ops ({len(graph.node)} nodes): " + (", ".join(f"{op} x{k}" for op, k in counts.most_common())
                                                   or "none"))
    n_values = 0
    for init in graph.initializer:
        n_values += int(np.prod(init.dims)) if init.dims else 1
    _out(f"  initializers: {len(inits)} ({n_values} parameter values)")
    if args.verbose:
        for name, init in inits.items():
            _out(f"    {name}: shape {tuple(numpy_helper.to_array(init).shape)}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    """Draw the graph of an MDF or ONNX file with graphviz (.png/.svg/.pdf need the `dot` program; .dot does not)."""
    from .graphviz_render import mdf_digraph, onnx_digraph, render

    if _is_onnx_path(args.file):
        from .importers.onnx import load_onnx

        digraph = onnx_digraph(load_onnx(args.file))
    else:
        from .document import load_document_dict

        digraph = mdf_digraph(load_document_dict(args.file), args.graph)
    render(digraph, args.out)
    _out(f"wrote {args.out}")
    return 0


def _program_of(path: str) -> Any:
    """The Program of an MDF or ONNX file."""
    if _is_onnx_path(path):
        from .importers.onnx import onnx_to_mdf
        from .lowering import lower

        return lower(onnx_to_mdf(path), source=path)
    from .api import load_program

    return load_program(path)


def cmd_convert_formats(args: argparse.Namespace) -> int:
    """MDF <-> ONNX, ONNX -> ONNX (through MDF), MDF/ONNX -> .pt (a state_dict, see `_write_pt`)."""
    from .errors import DocumentError, UnsupportedError

    src, dst = Path(args.input).suffix.lower(), Path(args.output).suffix.lower()
    if src == ".pt":
        raise UnsupportedError(f"{args.input}: a .pt file holds weights only, not the model's structure; convert "
                               "from an MDF (.json/.yaml) or ONNX (.onnx) file")
    known = _MDF_SUFFIXES + (".onnx", ".pt")
    for path, suffix in ((args.input, src), (args.output, dst)):
        if suffix not in known:
            raise DocumentError(f"unsupported file extension '{suffix or '(none)'}'; supported: "
                                f"{', '.join(known)}", path=path)
    if src == ".onnx" and dst in _MDF_SUFFIXES:
        from .api import save_mdf
        from .importers.onnx import onnx_to_mdf

        save_mdf(onnx_to_mdf(args.input), args.output)
    elif dst == ".onnx":
        from .exporters.onnx import program_to_onnx, save_onnx

        save_onnx(program_to_onnx(_program_of(args.input), dtype=getattr(args, "dtype", None) or "float32",
                                  opset=getattr(args, "opset", None) or 17), args.output)
    else:  # dst == ".pt"
        return _write_pt(args.input, args.output)
    _out(f"wrote {args.output}")
    return 0


def _write_pt(src: str, dst: str) -> int:
    """The weights as a torch state_dict: the original module's keys for a model imported from torch, else the
    keys of mdfbridge's torch module of the Program (`importers.torch_module.program_to_module`)."""
    import io

    import torch

    from .document import atomic_write_bytes

    program = _program_of(src)
    if (program.metadata.get("graph_metadata") or {}).get("source") == "torch":
        from .importers.pytorch import save_state_dict

        save_state_dict(program, dst)
        _out(f"wrote {dst} (state_dict of the original torch module: load it with module.load_state_dict)")
        return 0
    from .importers.torch_module import program_to_module

    buf = io.BytesIO()
    torch.save(program_to_module(program).state_dict(), buf)
    atomic_write_bytes(Path(dst), buf.getvalue())
    _out(f"wrote {dst} (state_dict of mdfbridge's torch module for this model, as "
         "mdfbridge.importers.torch_module.program_to_module builds it; the model was not imported from torch)")
    return 0


# ---------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `mdfbridge` command."""
    from .backends import BACKENDS, training_backend_names
    from .losses import loss_names
    from .optimizers import optimizer_names

    p = argparse.ArgumentParser(prog="mdfbridge", description="Move models between MDF, PyTorch and ONNX.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    p.add_argument("--version", action="version", version=_version_line(),
                   help="print mdfbridge's version (and those of the libraries it runs on) and exit")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help_: str, example: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        sp.set_defaults(func=func)
        return sp

    sp = add("validate", cmd_validate, "check an MDF file: syntax, schema, functions, shapes, cycles",
             "mdfbridge validate examples/xor.mdf.json")
    sp.add_argument("file")
    sp.add_argument("--strict", action="store_true",
                    help="also refuse what mdfbridge reads but does not write (e.g. `notes` fields)")
    sp = add("info", cmd_info, "describe an MDF or ONNX file: graphs, nodes/ops, functions, parameters",
             "mdfbridge info examples/xor.mdf.json")
    sp.add_argument("file")
    sp.add_argument("--verbose", "-v", action="store_true", help="ONNX files: list every initializer's shape")
    sp = add("graph", cmd_graph, "draw the graph of an MDF or ONNX file (graphviz; .png/.svg/.pdf need 'dot')",
             "mdfbridge graph examples/xor.mdf.json --out xor.png")
    sp.add_argument("file")
    sp.add_argument("--out", required=True, metavar="G.png|G.svg|G.pdf|G.dot", help="the drawing (format from the "
                    "extension; .dot writes the graphviz source)")
    sp.add_argument("--graph", default=None, help="MDF files: the graph to draw (default: the first)")
    sp = add("run", cmd_run, "run an MDF file on inputs with the numpy reference interpreter",
             "mdfbridge run examples/xor.mdf.json --input input='[[0,0],[1,1]]' --out out.npz")
    sp.add_argument("file")
    sp.add_argument("--input", action="append", metavar="NODE=JSONLIST",
                    help="inputs of a node as a JSON list of trials (repeatable)")
    sp.add_argument("--inputs", metavar="DATA.npz", help="an .npz with one array (trials, ...) per input node")
    sp.add_argument("--steps", type=int, default=1, help="time steps to run (stateful models), default 1")
    sp.add_argument("--dt", type=float, default=1.0, help="time increment for time derivatives, default 1")
    sp.add_argument("--out", metavar="OUT.npz", help="save outputs (and trajectories if --steps > 1)")
    sp.add_argument("--print-all", action="store_true",
                    help=f"print every output value (default: outputs of more than {PRINT_LIMIT} values print "
                         "their shape and first rows)")
    sp.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                    help="onnxruntime execution provider for .onnx files (default auto: CUDA if available)")
    sp.add_argument("--backend", choices=tuple(BACKENDS), default="numpy",
                    help=", ".join(f"{b.name} ({b.summary})" for b in BACKENDS.values()) + "; default numpy")
    sp = add("train", cmd_train, "train an MDF model and write the trained weights back into MDF",
             "mdfbridge train examples/xor.mdf.json --data examples/xor_data.npz --epochs 500 --lr 0.5 "
             "--optimizer sgd --loss mse --out xor.trained.json --plot loss.png")
    sp.add_argument("model")
    sp.add_argument("--data", required=True, metavar="DATA.npz",
                    help="one array per input node and one per output (target) node, keyed by node id")
    recorded = "; default: what the document records (a PsyNeuLink AutodiffComposition export), else "
    sp.add_argument("--epochs", type=int, default=None, help="epochs (default 1)")
    sp.add_argument("--lr", type=float, default=None, help="learning rate" + recorded + "0.001")
    sp.add_argument("--optimizer", choices=optimizer_names(), default=None, help="optimizer (default sgd)")
    sp.add_argument("--loss", default=None, help=" | ".join(loss_names()) + recorded + "mse")
    sp.add_argument("--minibatch-size", type=int, default=None, help="trials per optimizer step" + recorded + "1")
    sp.add_argument("--randomize", action="store_true", help="shuffle trials every epoch (seeded by --seed)")
    sp.add_argument("--seed", type=int, default=None)
    sp.add_argument("--weight-decay", type=float, default=0.0)
    sp.add_argument("--patience", type=int, default=None, help="early stopping: epochs without improvement")
    sp.add_argument("--min-delta", type=float, default=0.0)
    sp.add_argument("--backend", choices=training_backend_names(), default="torch")
    sp.add_argument("--out", help="where to write the trained MDF (default MODEL.trained.json)")
    sp.add_argument("--in-place", action="store_true", help="overwrite MODEL when --out is omitted")
    sp.add_argument("--plot", metavar="LOSS.png", help="save the loss curve as a PNG")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp = add("convert", cmd_convert, "convert between formats: MDF .json/.yaml <-> .onnx, and MDF/ONNX -> .pt "
             "(weights: the original module's state_dict for a model imported from torch, else that of mdfbridge's "
             "torch module); a .pt file cannot be converted from (weights only)",
             "mdfbridge convert examples/xor.mdf.json xor.mdf.yaml")
    sp.add_argument("input")
    sp.add_argument("output")
    sp.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="ONNX output: tensor type")
    sp.add_argument("--opset", type=int, default=17, help="ONNX output: opset (>= 17, default 17)")
    sp.add_argument("--gru", choices=("onnx", "gates"),
                    help="write GRU blocks as one onnx::GRU node (onnx) or as reset/update/new/hidden nodes (gates)")
    return p


def _version_line() -> str:
    """'mdfbridge X (modeci-mdf Y, torch Z, onnx W, onnxruntime V)': the versions a bug report needs."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "absent"
    deps = ", ".join(f"{d} {of(d)}" for d in ("modeci-mdf", "graph-scheduler", "torch", "onnx", "onnxruntime"))
    return f"mdfbridge {__version__} ({deps})"


def _misspelled_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Optional[str]:
    """One error line for a subcommand that does not exist, with the closest one, or None."""
    import difflib

    words = [a for a in argv if not a.startswith("-")]
    commands = next((list(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), [])
    if not words or words[0] in commands:
        return None
    close = difflib.get_close_matches(words[0], commands, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"error: unknown command '{words[0]}' (commands: {', '.join(commands)}){hint}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: run the command; errors print one line and return 2."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    wrong = _misspelled_command(parser, argv)
    if wrong is not None:
        sys.stderr.write(wrong + "\n")
        return 2
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except MdfBridgeError as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except (OSError, KeyboardInterrupt) as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
