"""`mdfbridge` command line: validate, info, run, train, convert, graph, data (template, check)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, cast

import numpy as np

from .errors import DataError, MdfBridgeError

log = logging.getLogger("mdfbridge.cli")

EPILOG = """examples:
  mdfbridge validate examples/xor.mdf.json
  mdfbridge info examples/xor.mdf.json
  mdfbridge run examples/xor.mdf.json --input input='[[0,0],[0,1],[1,0],[1,1]]'
  mdfbridge data template examples/xor.mdf.json --trials 8        (writes examples/xor.template.npz)
  mdfbridge train examples/xor.mdf.json --data examples/xor_data.csv --epochs 1000 --lr 0.5 --plot
  mdfbridge run examples/xor.trained.mdf.json --inputs examples/xor_data.csv
  mdfbridge convert examples/xor.trained.mdf.json examples/xor.trained.onnx
  mdfbridge run examples/xor.trained.onnx --inputs examples/xor_data.csv
  mdfbridge convert examples/xor.trained.mdf.json examples/xor.trained.mdf.yaml
  mdfbridge graph examples/xor.mdf.json                            (writes examples/xor.png)

Data files (--data, --targets, --inputs): .npz (one array per input and output node id), .npy (one array: a
one-input model's inputs, or a one-output model's targets with --targets), .csv (a header row naming the
columns <node id> or <node id>[i], then one row per trial). `mdfbridge data template MODEL` writes an example.
Errors print one line (error: <file>[:<line>[:<col>]]: ...) and exit with status 2; add --debug for the traceback.
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


def _parse_inputs(args: argparse.Namespace, file_inputs: Optional[Dict[str, np.ndarray]] = None
                  ) -> Dict[str, np.ndarray]:
    """The inputs of `run`: those read from --inputs (`file_inputs`, already checked) and each --input NODE=JSON."""
    inputs: Dict[str, np.ndarray] = dict(file_inputs or {})
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
    from .data_files import checked_inputs

    prog = load_program(args.file)
    # a training file holds the targets too: they are not inputs (checked_inputs returns them apart)
    inputs = _parse_inputs(args, checked_inputs(prog, args.inputs)[0] if args.inputs else None)
    backend = get_backend(getattr(args, "backend", "numpy"))
    res = backend.prepare(prog).run(inputs, steps=args.steps, dt=args.dt,
                                    record=bool(args.out) and backend.records_trajectory)
    unfed = [k for k, s in prog.inputs.items() if k not in inputs and s.port not in inputs and s.default is None]
    if unfed:
        sys.stderr.write(f"warning: no value given for input(s) {', '.join(unfed)}: they ran on zeros "
                         "(give --input NODE=JSONLIST or --inputs DATA.npz|.csv|.npy)\n")
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


def cmd_train(args: argparse.Namespace) -> int:
    """Train an MDF model on a data file (.npz, .csv, or an .npy pair) and write the trained weights back into MDF
    (default `<stem>.trained.<ext>` beside the model)."""
    from .api import load_program
    from .data_files import checked_training_data, output_path
    from .exporters.weights import write_back
    from .learning import LearnConfig, train_program

    out = args.out or (args.model if args.in_place else str(output_path(args.model, "trained")))
    plot = args.plot
    if plot == "":  # --plot without a file name
        plot = str(output_path(args.model, "loss", "png", directory=Path(out).parent))
    if plot and Path(plot).suffix.lower() != ".png":
        raise DataError(f"--plot {plot}: expected a .png file name (--plot alone writes <stem>.loss.png; put --plot "
                        "after MODEL)")
    for path in (out, plot):
        if path and not Path(path).resolve().parent.is_dir():
            raise DataError(f"directory {Path(path).parent} does not exist", where=path)
    from .atomic import check_writable

    for path in (out, plot):  # a read-only --in-place model is refused before training, not after
        if path:
            check_writable(path)
    from .learning.algorithms import PredictiveCoding, get_algorithm, parse_algorithm_args

    algorithm_args = parse_algorithm_args(args.algorithm_arg)
    if args.T is not None:
        if args.algorithm != "pc":
            raise DataError(f"--T {args.T}: the inference steps of predictive coding; give it with --algorithm pc")
        if "T" in algorithm_args:
            raise DataError("--T and --algorithm-arg T=... both given; give one")
        algorithm_args["T"] = args.T
    algorithm = get_algorithm(args.algorithm, **algorithm_args)
    if args.checkpoint and not Path(args.checkpoint).resolve().parent.is_dir():
        raise DataError(f"directory {Path(args.checkpoint).parent} does not exist", where=args.checkpoint)
    prog = load_program(args.model, learnable=args.learnable)
    inputs, targets = checked_training_data(prog, args.data, args.targets, over_time=algorithm.over_time)
    # the command line first, then what the document records (PsyNeuLink's AutodiffComposition settings), then
    # LearnConfig's defaults
    given = {"epochs": args.epochs, "learning_rate": args.lr, "minibatch_size": args.minibatch_size,
             "optimizer_type": args.optimizer, "loss_spec": args.loss}
    settings = dict(prog.metadata.get("learning_settings") or {})
    settings.update({k: v for k, v in given.items() if v is not None})
    recorded = sorted(k for k in prog.metadata.get("learning_settings") or {} if given.get(k) is None)
    config = LearnConfig(randomize_minibatch=args.randomize, weight_decay=args.weight_decay, patience=args.patience,
                         min_delta=args.min_delta, seed=args.seed, algorithm=algorithm,
                         learnable=tuple(args.learnable), checkpoint=args.checkpoint, resume=args.resume, **settings)
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
    if plot and isinstance(algorithm, PredictiveCoding):
        from .loss_plot import pc_figure, save_loss_plot

        save_loss_plot(pc_figure(algorithm.energies, algorithm.epoch_accuracy, result.epoch_losses, per_epoch,
                                 model=str(prog.metadata.get("model", "model")), T=algorithm.T), plot)
    elif plot:
        from .loss_plot import loss_figure, save_loss_plot
        from .losses import get_loss

        save_loss_plot(loss_figure(result.losses, result.epoch_losses, model=str(prog.metadata.get("model", "model")),
                                   optimizer=str(config.optimizer_type), learning_rate=float(config.learning_rate),
                                   loss=get_loss(config.loss_spec).name, minibatch_size=int(config.minibatch_size),
                                   stopped_early=result.stopped_early), plot)
    final = result.epoch_losses[-1] if result.epoch_losses else float("nan")
    by = "" if algorithm.name == "backprop" else f" by {algorithm.name}"
    _out(f"trained {result.epochs_run} epoch(s){' (stopped early)' if result.stopped_early else ''} in "
         f"{result.seconds:.2f} s on {args.backend}{by}: loss {result.epoch_losses[0]:.6g} -> {final:.6g}; wrote {out}"
         + (f" and the loss curve {plot}" if plot else "")
         + (f" (settings the document records: {', '.join(f'{k}={settings[k]}' for k in recorded)})"
            if recorded else ""))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert between MDF JSON and YAML (format from the extensions); --gru rewrites GRU blocks."""
    if (getattr(args, "no_batch_axis", False) or getattr(args, "input_shape", None)) and not _is_onnx_path(args.input):
        raise DataError(f"{args.input}: --no-batch-axis and --input-shape apply to ONNX (.onnx) input files")
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
    file_inputs = None
    if args.inputs:
        from .data_files import read_arrays, spec_of_onnx_session, split_arrays

        spec = spec_of_onnx_session(session, args.file)
        file_inputs = split_arrays(read_arrays(args.inputs, spec), spec, args.inputs)[0]  # targets are not inputs
    res = session.run(_parse_inputs(args, file_inputs))
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
    from .importers.onnx_safety import describe_subgraph_ops

    sub = list(describe_subgraph_ops(graph))
    if sub:  # (convert folds them only when they compute constants, else refuses them)
        _out(f"  subgraph ops ({len(sub)}; converted only when constant): " + ", ".join(sub))
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
    from .data_files import output_path

    out = args.out or str(output_path(args.file, None, "png"))
    render(digraph, out)
    _out(f"wrote {out}")
    return 0


def _onnx_import_options(args: argparse.Namespace) -> Dict[str, Any]:
    """`onnx_to_mdf`'s keyword arguments from convert's --no-batch-axis and --input-shape NAME=D1,D2,..."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    for item in getattr(args, "input_shape", None) or []:
        name, eq, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip()) if eq else None
        except ValueError:
            shape = None
        if not name or shape is None or any(d < 0 for d in shape):
            raise DataError(f"--input-shape {item}: expected NAME=D1,D2,... (non-negative integers, e.g. x=3,5,4)")
        shapes[name] = shape
    return {"batch_axis": not getattr(args, "no_batch_axis", False), "input_shapes": shapes or None}


def _program_of(path: str, args: Optional[argparse.Namespace] = None) -> Any:
    """The Program of an MDF or ONNX file (`args`: convert's ONNX import options, default None: none)."""
    if _is_onnx_path(path):
        from .importers.onnx import onnx_to_mdf
        from .lowering import lower

        return lower(onnx_to_mdf(path, **(_onnx_import_options(args) if args is not None else {})), source=path)
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

        save_mdf(onnx_to_mdf(args.input, arrays=True, **_onnx_import_options(args)), args.output, plain=True)
    elif dst == ".onnx":
        from .exporters.onnx import program_to_onnx, save_onnx

        save_onnx(program_to_onnx(_program_of(args.input, args), dtype=getattr(args, "dtype", None),
                                  opset=getattr(args, "opset", None) or 17), args.output)
    else:  # dst == ".pt"
        return _write_pt(args.input, args.output, args)
    _out(f"wrote {args.output}")
    return 0


def _write_pt(src: str, dst: str, args: Optional[argparse.Namespace] = None) -> int:
    """The weights as a torch state_dict: the original module's keys for a model imported from torch, else the
    keys of mdfbridge's torch module of the Program (`importers.torch_module.program_to_module`). src, dst: the
    model and .pt paths; args: convert's ONNX import options (default None: none)."""
    import io

    import torch

    from .document import atomic_write_bytes

    program = _program_of(src, args)
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


# ---------------------------------------------------------------------------------------- data files

def cmd_data_template(args: argparse.Namespace) -> int:
    """Write an example data file for a model: one array per input node and one (targets) per output node."""
    from .data_files import describe, output_path, spec_of_onnx_session, spec_of_program, write_template

    fmt = args.format or (Path(args.out).suffix.lower().lstrip(".") if args.out else "npz")
    if fmt not in ("npz", "csv", "npy"):
        raise DataError(f"unsupported data file extension '.{fmt}'; use .npz, .csv or .npy (or --format)",
                        where=args.out)
    out = args.out or str(output_path(args.model, "template", fmt))
    if _is_onnx_path(args.model):
        from .deploy import DeploymentSession

        spec = spec_of_onnx_session(DeploymentSession(args.model, "cpu"), args.model)
    else:
        from .api import load_program

        spec = spec_of_program(load_program(args.model))
    written = write_template(spec, out, fmt, trials=args.trials, zeros=args.zeros, seed=args.seed,
                             time_steps=args.time_steps)
    values = "zeros" if args.zeros else f"random values in [0, 1), seed {args.seed}"
    for line in describe(written):
        _out(line)
    files = list(dict.fromkeys(str(w.path) for w in written))
    data = f"--data {files[0]}" + (f" --targets {files[1]}" if len(files) > 1 else "")
    _out(f"{args.trials} trials of {values}; replace them with your data, then: mdfbridge train {args.model} {data}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    """Read a data file as `train` (with targets) or `run` (--inputs-only) would, and say what it holds."""
    from .api import load_program
    from .data_files import checked_inputs, checked_training_data

    prog = load_program(args.model)
    if args.inputs_only:
        inputs, targets = checked_inputs(prog, args.data)
        targets = {}
    else:
        inputs, targets = checked_training_data(prog, args.data, args.targets)
    trials = len(next(iter(inputs.values()))) if inputs else 0
    _out(f"{args.data}{' and ' + args.targets if args.targets else ''}: {trials} trials for "
         f"{'running' if args.inputs_only else 'training'} {args.model}")
    for k, v in inputs.items():
        _out(f"  input {k}: shape {tuple(np.shape(v))}")
    for k, v in targets.items():
        _out(f"  targets for {k}: shape {tuple(np.shape(v))}")
    return 0


# ---------------------------------------------------------------------------------------- parser

class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; every option with a default shows it ("(default: X)"), unless its help
    already says its default. Flags (store_true) and options without a default (None) show none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings
                or isinstance(action, (argparse._StoreTrueAction, argparse._VersionAction, argparse._HelpAction))):
            return text
        return text + " (default: %(default)s)"


MODEL_HELP = "an MDF file (.json, .yaml, .yml)"
ANY_MODEL_HELP = "an MDF file (.json, .yaml, .yml) or an ONNX file (.onnx)"
DATA_FORMS = ("DATA.npz|.csv|.npy")
FORCE_HELP = ("replace a read-only output file too (default: refuse it, as cp does); writes are atomic, keep the "
              "file's permissions and go through a symbolic link to its target")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `mdfbridge` command."""
    from .backends import BACKENDS, training_backend_names
    from .learning.algorithms import ALGORITHMS
    from .losses import loss_names
    from .optimizers import optimizer_names

    p = argparse.ArgumentParser(prog="mdfbridge", description="Move models between MDF, PyTorch and ONNX.",
                                epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                   help="raise or lower a resource limit for input files (repeatable; names and defaults: "
                        "mdfbridge.limits.Limits; also the MDFBRIDGE_LIMITS environment variable)")
    p.add_argument("--version", action="version", version=_version_line(),
                   help="print mdfbridge's version (and those of the libraries it runs on) and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Any, help_: str, example: str, parent: Any = sub) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                               formatter_class=HelpFormatter)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        sp.set_defaults(func=func)
        return sp

    sp = add("validate", cmd_validate, "check an MDF file: syntax, schema, functions, shapes, cycles",
             "mdfbridge validate examples/xor.mdf.json")
    sp.add_argument("file", help=MODEL_HELP)
    sp.add_argument("--strict", action="store_true",
                    help="also refuse what mdfbridge reads but does not write (e.g. `notes` fields)")
    sp = add("info", cmd_info, "describe an MDF or ONNX file: graphs, nodes/ops, functions, parameters",
             "mdfbridge info examples/xor.mdf.json")
    sp.add_argument("file", help=ANY_MODEL_HELP)
    sp.add_argument("--verbose", "-v", action="store_true", help="ONNX files: list every initializer's shape")
    sp = add("graph", cmd_graph, "draw the graph of an MDF or ONNX file (graphviz; .png/.svg/.pdf need 'dot')",
             "mdfbridge graph examples/xor.mdf.json            (writes examples/xor.png)")
    sp.add_argument("file", help=ANY_MODEL_HELP)
    sp.add_argument("--out", metavar="G.png|G.svg|G.pdf|G.dot", help="the drawing (format from the extension; .dot "
                    "writes the graphviz source); default: <stem>.png beside FILE (xor.mdf.json -> xor.png)")
    sp.add_argument("--graph", default=None, help="MDF files: the graph to draw (default: the first)")
    sp.add_argument("--force", action="store_true", help=FORCE_HELP)
    sp = add("run", cmd_run, "run an MDF file on inputs (numpy reference interpreter by default, see --backend), or "
             "an ONNX file on onnxruntime; print the outputs",
             "mdfbridge run examples/xor.trained.mdf.json --inputs examples/xor_data.csv "
             "--out examples/xor.trained.out.npz")
    sp.add_argument("file", help=ANY_MODEL_HELP)
    sp.add_argument("--input", action="append", metavar="NODE=JSONLIST",
                    help="inputs of a node as a JSON list of trials (repeatable)")
    sp.add_argument("--inputs", metavar=DATA_FORMS, help="a data file: .npz (one array (trials, ...) per input node "
                    "id), .csv (columns <node id> or <node id>[i], one row per trial) or .npy (a one-input model); "
                    "arrays for output nodes (a training file's targets) are ignored")
    sp.add_argument("--steps", type=int, default=1, help="time steps to run (stateful models)")
    sp.add_argument("--dt", type=float, default=1.0, help="time increment for time derivatives")
    sp.add_argument("--out", metavar="OUT.npz", help="save outputs (and trajectories if --steps > 1); default: "
                    "print only")
    sp.add_argument("--force", action="store_true", help=FORCE_HELP)
    sp.add_argument("--print-all", action="store_true",
                    help=f"print every output value (default: outputs of more than {PRINT_LIMIT} values print "
                         "their shape and first rows)")
    sp.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                    help="onnxruntime execution provider for .onnx files (auto: CUDA if available)")
    sp.add_argument("--backend", choices=tuple(BACKENDS), default="numpy",
                    help="MDF files: " + ", ".join(f"{b.name} ({b.summary})" for b in BACKENDS.values()))
    sp = add("train", cmd_train, "train an MDF model on a data file and write the trained weights back into MDF",
             "mdfbridge train examples/xor.mdf.json --data examples/xor_data.csv --epochs 1000 --lr 0.5 "
             "--optimizer sgd --loss mse --plot\n  (writes examples/xor.trained.mdf.json and examples/xor.loss.png; "
             "`mdfbridge data template MODEL` writes an example data file)")
    sp.add_argument("model", help=MODEL_HELP)
    sp.add_argument("--data", required=True, metavar=DATA_FORMS,
                    help="inputs and targets: .npz (one array per input node id and per output node id), .csv (a "
                         "header row of columns <node id> or <node id>[i] / <node id>_i, one row per trial), or .npy "
                         "(a one-input model's inputs; targets then from --targets)")
    sp.add_argument("--targets", metavar="TARGETS.npy|.npz|.csv",
                    help="the targets, when --data holds the inputs only (.npy: a one-output model)")
    recorded = "; default: what the document records (a PsyNeuLink AutodiffComposition export), else "
    sp.add_argument("--epochs", type=int, default=None, help="epochs" + recorded + "1")
    sp.add_argument("--lr", type=float, default=None, help="learning rate" + recorded + "0.001")
    sp.add_argument("--optimizer", choices=optimizer_names(), default=None, help="optimizer" + recorded + "sgd")
    sp.add_argument("--loss", default=None, help=" | ".join(loss_names()) + recorded + "mse")
    sp.add_argument("--minibatch-size", type=int, default=None, help="trials per optimizer step" + recorded + "1")
    sp.add_argument("--randomize", action="store_true", help="shuffle trials every epoch (seeded by --seed)")
    sp.add_argument("--seed", type=int, default=None, help="seed of --randomize's shuffles (default: none, fresh "
                    "randomness)")
    sp.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay of the optimizer")
    sp.add_argument("--patience", type=int, default=None,
                    help="early stopping: epochs without improvement (default: none, train every epoch)")
    sp.add_argument("--min-delta", type=float, default=0.0, help="early stopping: the improvement that counts")
    sp.add_argument("--backend", choices=training_backend_names(), default="torch", help="training backend")
    sp.add_argument("--algorithm", default="backprop", type=str.lower, metavar="|".join(ALGORITHMS),
                    help="learning algorithm (default backprop; bptt, tbptt, eprop and rls train a stateful model on "
                         "sequences: "
                         "inputs (trials, time steps, size), targets per step or for the last step; pc: predictive "
                         "coding of a feedforward model)")
    sp.add_argument("--T", type=int, default=None, metavar="STEPS",
                    help="--algorithm pc: inference steps per minibatch (default 8)")
    sp.add_argument("--algorithm-arg", action="append", default=[], metavar="NAME=VALUE",
                    help="an argument of the algorithm, e.g. backward_time_steps=10 or dt=0.1 (repeatable)")
    sp.add_argument("--learnable", action="append", default=[], metavar="NODE.PARAM",
                    help="also train this MDF parameter, e.g. cell.tau (repeatable)")
    sp.add_argument("--checkpoint", metavar="CKPT.npz", default=None,
                    help="write a checkpoint (weights, optimizer and algorithm state) after every epoch")
    sp.add_argument("--resume", action="store_true",
                    help="continue from --checkpoint when it exists (--epochs counts the epochs trained before)")
    sp.add_argument("--out", help="where to write the trained MDF (default: <stem>.trained.<ext> beside MODEL, "
                    "e.g. xor.mdf.json -> xor.trained.mdf.json)")
    sp.add_argument("--in-place", action="store_true", help="overwrite MODEL when --out is omitted")
    sp.add_argument("--plot", nargs="?", const="", default=None, metavar="LOSS.png",
                    help="save the loss curve as a PNG (--plot alone: <stem>.loss.png beside the trained file; "
                         "default: no plot); with --algorithm pc the energy over the inference steps and the "
                         "accuracy over the epochs")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--force", action="store_true", help=FORCE_HELP)
    sp = add("convert", cmd_convert, "convert between formats: MDF .json/.yaml <-> .onnx, and MDF/ONNX -> .pt "
             "(weights: the original module's state_dict for a model imported from torch, else that of mdfbridge's "
             "torch module); a .pt file cannot be converted from (weights only)",
             "mdfbridge convert examples/xor.trained.mdf.json examples/xor.trained.mdf.yaml")
    sp.add_argument("input", help=ANY_MODEL_HELP)
    sp.add_argument("output", help="the file to write (.json, .yaml, .yml, .onnx or .pt; format from the extension)")
    sp.add_argument("--dtype", choices=("float32", "float64"), default=None,
                    help="ONNX output: tensor type (default: the model's own, float64 for a float64 ONNX model, "
                         "else float32)")
    sp.add_argument("--opset", type=int, default=17, help="ONNX output: opset (>= 17)")
    sp.add_argument("--no-batch-axis", action="store_true",
                    help="ONNX input: treat every ONNX tensor as one trial's value (for graphs that fix the batch "
                         "size or move the batch axis, e.g. RNNs and attention; default: the leading axis of the "
                         "graph inputs is the trial axis)")
    sp.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                    help="ONNX input: the shape of graph input NAME, for inputs with symbolic dimensions "
                         "(per trial; with --no-batch-axis the whole tensor's; repeatable)")
    sp.add_argument("--gru", choices=("onnx", "gates"),
                    help="write GRU blocks as one onnx::GRU node (onnx) or as reset/update/new/hidden nodes (gates) "
                         "(default: as they are)")
    sp.add_argument("--force", action="store_true", help=FORCE_HELP)

    dp = sub.add_parser("data", help="data files for train and run: write a template, check a file",
                        description="Data files for `train --data` and `run --inputs`: .npz (one array per input "
                        "and output node id), .csv (a header row of columns <node id> for a one-unit node or <node "
                        "id>[i] / <node id>_i for unit i, then one row of numbers per trial), .npy (one array: a "
                        "one-input model's inputs, or with train --targets a one-output model's targets).",
                        epilog="examples:\n  mdfbridge data template examples/xor.mdf.json --trials 8\n"
                        "  mdfbridge data check examples/xor.mdf.json --data examples/xor_data.csv",
                        formatter_class=HelpFormatter)
    dp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    dsub = dp.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    sp = add("template", cmd_data_template, "write an example data file with the arrays a model takes (inputs and "
             "targets, by node id) and print their names and shapes",
             "mdfbridge data template examples/xor.mdf.json --trials 8 --format csv   "
             "(writes examples/xor.template.csv)", parent=dsub)
    sp.add_argument("model", help=ANY_MODEL_HELP)
    sp.add_argument("--out", metavar="FILE", help="the file to write (default: <stem>.template.<format> beside "
                    "MODEL; npy writes <out stem>.inputs.npy and <out stem>.targets.npy)")
    sp.add_argument("--format", choices=("npz", "csv", "npy"), default=None,
                    help="file format (default: from --out's extension, else npz)")
    sp.add_argument("--trials", type=int, default=4, help="trials (rows) to write")
    sp.add_argument("--time-steps", type=int, default=5, help="time steps per trial (sequence models only)")
    sp.add_argument("--zeros", action="store_true", help="write zeros (default: random values in [0, 1))")
    sp.add_argument("--seed", type=int, default=0, help="seed of the random values")
    sp.add_argument("--force", action="store_true", help=FORCE_HELP)
    sp = add("check", cmd_data_check, "read a data file as train (or run, --inputs-only) reads it and list its "
             "arrays, or print the one error line that train/run would",
             "mdfbridge data check examples/xor.mdf.json --data examples/xor_data.csv", parent=dsub)
    sp.add_argument("model", help=MODEL_HELP)
    sp.add_argument("--data", required=True, metavar=DATA_FORMS, help="the data file (as train --data takes it)")
    sp.add_argument("--targets", metavar="TARGETS.npy|.npz|.csv", help="as train --targets takes it")
    sp.add_argument("--inputs-only", action="store_true", help="read it as run --inputs does (no targets needed)")
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
    """One error line for a (sub)command that does not exist (`mdfbridge trian`, `mdfbridge data tempalte`), with
    the closest one, or None."""
    import difflib

    words, skip = [], False
    for a in argv:  # the words before the first option of a subcommand; the top-level --limit takes a value
        if skip:
            skip = False
        elif a == "--limit":
            skip = True
        elif not a.startswith("-"):
            words.append(a)
    path: List[str] = []
    for word in words:
        commands = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if not commands:
            return None
        if word not in commands:
            close = difflib.get_close_matches(word, list(commands), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            kind = " ".join(["mdfbridge", *path]) + " command" if path else "command"
            return f"error: unknown {kind} '{word}' (commands: {', '.join(commands)}){hint}"
        parser = cast(argparse.ArgumentParser, commands[word])
        path.append(word)
    return None


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
        from . import limits

        settings: Dict[str, str] = {}
        for item in args.limit:
            settings.update(limits.parse_settings(item, where="--limit"))
        limits.set_limits(limits.current().replace(**settings))  # MDFBRIDGE_LIMITS is checked here too
        from .atomic import replacing_read_only

        with replacing_read_only(bool(getattr(args, "force", False))):
            return int(args.func(args) or 0)
    except MdfBridgeError as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except (OSError, KeyboardInterrupt) as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {str(exc) or 'interrupted'}\n")
        return 2
    except (RecursionError, MemoryError) as exc:  # a last resort: readers check limits before these can happen
        if debug:
            raise
        what = "nested too deeply" if isinstance(exc, RecursionError) else "too large for memory"
        sys.stderr.write(f"error: {_input_file(args)}: input {what} to process ({type(exc).__name__}); see "
                         f"mdfbridge.limits for the limits that refuse such input earlier\n")
        return 2


def _input_file(args: argparse.Namespace) -> str:
    """The file a command reads (for an error line), or '<input>'."""
    for name in ("file", "model", "input"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            return value
    return "<input>"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
