"""Data files for `mdfbridge train`, `run` and `data`: reading .npz, .npy and .csv files into arrays keyed by node
id, checking them against a model (errors name the file), and writing example files with the arrays a model takes.

Forms (one row / leading index per trial):

- ``.npz``: one array per input node and one per output node (the targets), keyed by node id (an input may also
  be keyed by its port id), shape (trials, *node shape); sequence models (trials, time steps, *node shape).
- ``.npy``: one array. For a model with one input node it holds that input's data; as `--targets` of a model
  with one output node, that output's targets. Models with several inputs or outputs need an .npz or a .csv.
- ``.csv``: a header row of column names, then one row of numbers per trial. A column is named ``<node id>`` for
  a node of one unit, or ``<node id>[i]`` (also accepted: ``<node id>_i``) for unit i of a node of several units
  (units of nodes with more than one axis are numbered in C order). Every unit of a node must have its column.
  Values are read as floats (Python's float(); nothing is evaluated). Sequence models need an .npz.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union, cast

import numpy as np

from .errors import DataError

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".npz", ".npy", ".csv")
TEMPLATE_FORMATS = ("npz", "csv", "npy")
Shape = Optional[Tuple[int, ...]]
Arrays = Dict[str, np.ndarray]
PathLike = Union[str, Path]
_INDEXED = (re.compile(r"^(?P<node>.+)\[(?P<unit>\d+)\]$"), re.compile(r"^(?P<node>.+)_(?P<unit>\d+)$"))


@dataclass
class DataSpec:
    """What a model's data files hold: input and output names with their per-trial shapes (None: unknown)."""

    inputs: Dict[str, Shape]
    outputs: Dict[str, Shape]
    ports: Dict[str, str] = field(default_factory=dict)  # input port id -> input name (an .npz may use either)
    sequence: bool = False  # inputs and targets are (trials, time steps, *shape)
    model: str = "the model"

    def input_name(self, key: str) -> Optional[str]:
        """The input a data key names (its node id or port id), or None.

    key: an array name or csv column node from a data file."""
        return key if key in self.inputs else self.ports.get(key)


def spec_of_program(program: Any) -> DataSpec:
    """The DataSpec of a lowered `mdfbridge.program.Program`.

    program: the Program; its inputs (with port ids), output shapes where known, sequence flag and model name
    (metadata 'model', else the Program's name) make the spec."""
    return DataSpec(
        inputs={k: (tuple(s.shape) if s.shape is not None else None) for k, s in program.inputs.items()},
        outputs={k: (tuple(program.shapes[t]) if t in program.shapes else None) for k, t in program.outputs.items()},
        ports={s.port: k for k, s in program.inputs.items() if s.port not in program.inputs},
        sequence=bool(program.sequence), model=f"model '{program.metadata.get('model', program.name)}'")


def spec_of_onnx_session(session: Any, path: str) -> DataSpec:
    """The DataSpec of an onnxruntime session (`mdfbridge.deploy.DeploymentSession`): the first axis is trials.

    session: the DeploymentSession (its `inputs` and the onnxruntime `session`'s outputs are read); path: the
    .onnx file, named in error messages ('ONNX model <path>'). A per-trial shape with a symbolic dimension is
    None (unknown)."""
    def per_trial(shape: Any) -> Shape:
        dims = list(shape or [])[1:]
        return tuple(dims) if all(isinstance(d, int) for d in dims) else None
    return DataSpec(inputs={k: per_trial(v.shape) for k, v in session.inputs.items()},
                    outputs={o.name: per_trial(o.shape) for o in session.session.get_outputs()},
                    model=f"ONNX model {path}")


# ------------------------------------------------------------------------------------------------ reading

def data_suffix(path: PathLike) -> str:
    """The data file's extension (.npz, .npy or .csv), lower-cased; any other raises DataError naming the file.

    path: the data file (str or Path; it need not exist)."""
    suffix = Path(path).suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise DataError(f"unsupported data file extension '{suffix or '(none)'}'; supported: .npz (one array per "
                        "node id), .npy (one array: a one-input model's inputs or a one-output model's targets), "
                        ".csv (a header row of column names <node id> or <node id>[i], one row per trial)",
                        where=str(path))
    return suffix


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
_FORMS = {".npz": "an .npz archive (named arrays)", ".npy": "an .npy array (one array)",
          ".csv": "csv text (a header row, one row per trial)"}


def _regular_size(path: PathLike) -> int:
    """The size of a data file that must be a regular file (stat before open: a FIFO, device or directory is never
    opened) within max_file_bytes; DataError/LimitError naming the file."""
    from . import limits
    from .parse_limits import file_kind

    where = str(path)
    try:
        info = os.stat(where)
    except FileNotFoundError:
        raise DataError("no such file", where=where) from None
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", where=where) from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"is {file_kind(info.st_mode)}, expected a regular data file (.npz, .npy or .csv)",
                        where=where)
    bound = limits.current().max_file_bytes
    if info.st_size > bound:
        raise limits.LimitError(f"file has {info.st_size:,} bytes, over the limit max_file_bytes={bound:,} (raise it "
                                f"with --limit max_file_bytes=N or {limits.ENV_VAR})", where=where)
    return info.st_size


def _open_data(path: PathLike) -> IO[bytes]:
    """The data file opened for reading, binary (a regular file: see _regular_size; O_NONBLOCK as well)."""
    _regular_size(path)
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", where=str(path)) from None
    return os.fdopen(fd, "rb")


def sniff_data_file(path: PathLike) -> str:
    """What a data file holds by its content (its first bytes), not its name: '.npz' (a zip archive), '.npy'
    (numpy's magic string) or '.csv' (anything else that starts as UTF-8 text); other binary data raise DataError.

    path: the file (str or Path); it must be a regular file (a FIFO or device is refused before it is opened)."""
    with _open_data(path) as f:
        head = f.read(512)
    if head.startswith(_NPY_MAGIC):
        return ".npy"
    if head.startswith(_ZIP_MAGICS):
        return ".npz"
    try:
        head.decode("utf-8")
        text = True
    except UnicodeDecodeError as exc:
        text = exc.start > len(head) - 4  # a character cut at the end of the sample
    if not text or b"\x00" in head:
        raise DataError("is binary data that is neither an .npz archive nor an .npy array (nor csv text)",
                        where=str(path))
    return ".csv"


def _check_array_header(name: str, shape: Tuple[int, ...], dtype: np.dtype, where: str) -> int:
    """Refuse, from an .npy header before its data are read, what is not a real numeric array of trials within
    max_elements; returns its size in bytes."""
    from . import limits

    what = f"array '{name}'" if name else "the array"
    if dtype.hasobject:
        raise DataError(f"{what} holds Python objects (pickled data, which are never loaded); expected real "
                        "numbers", where=where)
    if dtype.kind == "c":
        raise DataError(f"{what} is complex ({dtype}); expected real numbers (float or int)", where=where)
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise DataError(f"{what} has dtype {dtype}; expected real numbers (float, int or bool)", where=where)
    if len(shape) == 0:
        raise DataError(f"{what} is 0-d (a single number); expected (trials, ...) with one row per trial",
                        where=where)
    count = int(np.prod(shape, dtype=object))
    limits.check_elements(count, f"{what} of shape {shape}", where=where)
    return count * dtype.itemsize


def _read_npy_stream(f: IO[bytes], name: str, where: str, available: Optional[int]) -> np.ndarray:
    """One array from an open .npy stream: header checked first (dtype, 0-d, elements, that `available` bytes, if
    known, hold its data), then the data read (no pickle)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:  # pragma: no cover - read_magic accepts these only
            raise ValueError(f"unknown .npy version {version}")
    except Exception as exc:  # noqa: BLE001 - whatever numpy's header reader raises on bad text (ValueError,
        # SyntaxError, tokenize.TokenError on an unclosed bracket, ...): the file is not an .npy array
        what = f"member '{name}'" if name else "file"
        raise DataError(f"{what} is not an .npy array ({_first_line(exc)})", where=where) from None
    nbytes = _check_array_header(name, tuple(shape), dtype, where)
    header_end = f.tell()
    if available is not None and available - header_end < nbytes:
        what = f"array '{name}'" if name else "the array"
        raise DataError(f"{what} is truncated: its header says shape {tuple(shape)} ({nbytes:,} bytes of data), "
                        f"{max(available - header_end, 0):,} follow", where=where)
    data = f.read(nbytes)
    if len(data) < nbytes:
        raise DataError(f"array '{name}' is truncated ({len(data):,} of {nbytes:,} bytes)" if name else
                        f"the array is truncated ({len(data):,} of {nbytes:,} bytes)", where=where)
    arr = np.frombuffer(data, dtype=dtype).copy()
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def read_npz(path: PathLike) -> Arrays:
    """Every array of an .npz file (no pickled objects), by name.

    path: the .npz file (str or Path). Read member by member from the zip headers: a member that would inflate
    past max_decompressed_bytes is refused before it is inflated (and inflating stops at its declared size), each
    array's .npy header is checked before its data are read (real dtypes only, not 0-d, within max_elements). A
    missing or non-regular file, an .npy or csv file, a truncated or corrupt archive, anything numpy cannot read
    without pickle raise DataError (or LimitError) naming the file."""
    import zipfile

    from . import limits

    where = str(path)
    kind = sniff_data_file(path)
    if kind != ".npz":
        raise DataError(f"is {_FORMS[kind]} by its content, not an .npz archive of named arrays"
                        + ("; name it .npy" if kind == ".npy" else ""), where=where)
    bound = limits.current().max_decompressed_bytes
    out: Arrays = {}
    try:
        with _open_data(path) as raw, zipfile.ZipFile(raw) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if total > bound:
                raise limits.LimitError(f"archive would inflate to {total:,} bytes, over the limit "
                                        f"max_decompressed_bytes={bound:,} (raise it with --limit "
                                        f"max_decompressed_bytes=N or {limits.ENV_VAR})", where=where)
            for m in members:
                if m.is_dir():
                    continue
                key = m.filename[:-4] if m.filename.endswith(".npy") else m.filename
                if key in out:
                    raise DataError(f"holds array '{key}' twice", where=where)
                with archive.open(m) as member:  # stops at the declared size; a CRC mismatch is BadZipFile
                    out[key] = _read_npy_stream(member, key, where, m.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"not a readable .npz archive (truncated or corrupt: {_first_line(exc)})",
                        where=where) from None
    return out


def read_npy(path: PathLike) -> np.ndarray:
    """The one array of an .npy file (no pickled objects).

    path: the .npy file (str or Path). The header is checked before the data are read (real dtypes only, not 0-d,
    within max_elements, not truncated). A missing or non-regular file, an .npz or csv file, or anything numpy
    cannot read without pickle raise DataError naming the file."""
    where = str(path)
    kind = sniff_data_file(path)
    if kind != ".npy":
        raise DataError(f"is {_FORMS[kind]} by its content, not an .npy array"
                        + ("; name it .npz (one array per node id)" if kind == ".npz" else ""), where=where)
    size = _regular_size(path)
    with _open_data(path) as f:
        return _read_npy_stream(f, "", where, size)


def _numpy_reason(exc: BaseException) -> str:
    """numpy's reason a file did not load, in a few words (it reads anything it cannot parse as pickled data)."""
    text = _first_line(exc)
    return "not numpy's format, or pickled objects, which are never loaded" if "pickle" in text else text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _column_target(name: str, spec: DataSpec) -> Optional[Tuple[str, Optional[int]]]:
    """(node id, unit or None for a whole one-unit node) a csv column names, or None."""
    if name in spec.inputs or name in spec.outputs or name in spec.ports:
        return name, None
    for pattern in _INDEXED:
        m = pattern.match(name)
        if m and (m["node"] in spec.inputs or m["node"] in spec.outputs or m["node"] in spec.ports):
            return m["node"], int(m["unit"])
    return None


def _node_shape(spec: DataSpec, node: str) -> Shape:
    name = spec.input_name(node)
    return spec.inputs[name] if name is not None else spec.outputs.get(node)


def column_names(node: str, shape: Shape) -> List[str]:
    """The csv column names of a node: `node` for one unit, else node[0], node[1], ... (C order).

    node: the node id; shape: its per-trial shape (None: unknown, taken as one unit)."""
    size = int(np.prod(shape)) if shape is not None else 1
    return [node] if size == 1 else [f"{node}[{i}]" for i in range(size)]


def read_csv(path: PathLike, spec: DataSpec) -> Arrays:
    """Arrays by node id from a csv file (see the module docstring for the form), shaped (trials, *node shape).

    path: the .csv file (str or Path; UTF-8, a BOM allowed; blank lines skipped); spec: the model's DataSpec,
    which names the valid columns and the node shapes. Anything that does not fit (unknown or repeated column,
    missing unit, a cell that is not a number, a sequence model) raises DataError naming the file, line and
    column."""
    where = str(path)
    if spec.sequence:
        raise DataError(f"{spec.model} takes (trials, time steps, ...) arrays, which a csv file (one row per "
                        "trial) cannot hold; use an .npz", where=where)
    try:
        with _open_data(path) as raw:  # a regular file within max_file_bytes
            text = raw.read().decode("utf-8-sig")
        rows = [(i, r) for i, r in enumerate(csv.reader(io.StringIO(text, newline="")), start=1)
                if any(c.strip() for c in r)]
    except FileNotFoundError:
        raise DataError("no such file", where=where) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read as csv text ({_first_line(exc)})", where=where) from None
    if not rows:
        raise DataError("empty; expected a header row of column names (<node id> or <node id>[i]) and one row "
                        "of numbers per trial", where=where)
    header_line, header = rows[0]
    names = [c.strip() for c in header]
    known = sorted(set(spec.inputs) | set(spec.outputs))
    columns: Dict[str, Dict[Optional[int], int]] = {}  # node -> unit -> column index
    for col, name in enumerate(names):
        target = _column_target(name, spec)
        if target is None:
            kind = "a number, so the first row must be a header" if _is_number(name) else "no input or output node"
            raise DataError(f"column {col + 1} '{name}' names {kind}; columns are <node id> (a one-unit node) or "
                            f"<node id>[i] (unit i); nodes of {spec.model}: {', '.join(known)}",
                            where=f"{where}:{header_line}:{col + 1}")
        node, unit = target
        units = columns.setdefault(node, {})
        if unit in units:
            raise DataError(f"column {col + 1} '{name}' repeats column {units[unit] + 1}",
                            where=f"{where}:{header_line}:{col + 1}")
        units[unit] = col
    if len(rows) < 2:
        raise DataError("has a header row but no rows of data (one row per trial)", where=where)
    from . import limits

    limits.check_elements((len(rows) - 1) * len(names), f"the csv data ({len(rows) - 1} rows x {len(names)} columns)",
                          where=where)
    values = np.empty((len(rows) - 1, len(names)))
    for r, (line, row) in enumerate(rows[1:]):
        if len(row) != len(names):
            raise DataError(f"{len(row)} values; the header has {len(names)} columns", where=f"{where}:{line}")
        for col, cell in enumerate(row):
            try:
                values[r, col] = float(cell.strip())
            except ValueError:
                raise DataError(f"column '{names[col]}': {cell.strip()!r} is not a number",
                                where=f"{where}:{line}:{col + 1}") from None
    return {node: _node_array(where, node, units, values, _node_shape(spec, node))
            for node, units in columns.items()}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _node_array(where: str, node: str, units: Dict[Optional[int], int], values: np.ndarray,
                shape: Shape) -> np.ndarray:
    """One node's (trials, *shape) array from its csv columns."""
    size = int(np.prod(shape)) if shape is not None else None
    expected = (f"columns {', '.join(column_names(node, shape))}" if size is not None and size <= 4 else
                f"columns {node}[0] .. {node}[{size - 1}]" if size is not None else f"columns {node}[0], ...")
    if None in units:
        if len(units) > 1:
            raise DataError(f"columns for node '{node}' mix '{node}' and '{node}[i]'; expected {expected}",
                            where=where)
        if size is not None and size != 1:
            raise DataError(f"column '{node}' holds one unit, but '{node}' has shape {shape}; expected {expected}",
                            where=where)
        arr = values[:, units[None]]
        return arr.reshape((len(arr),) + tuple(shape)) if shape is not None else arr[:, None]
    n = size if size is not None else max(u for u in units if u is not None) + 1
    missing = [i for i in range(n) if i not in units]
    extra = sorted(u for u in units if u is not None and u >= n)
    if missing or extra:
        what = f"no column {node}[{missing[0]}]" if missing else f"column {node}[{extra[0]}] is past its last unit"
        raise DataError(f"{what}; '{node}' has shape {shape}: expected {expected}", where=where)
    arr = values[:, [units[i] for i in range(n)]]
    return arr.reshape((len(arr),) + tuple(shape)) if shape is not None else arr


def read_arrays(path: PathLike, spec: DataSpec, *, role: str = "inputs") -> Arrays:
    """Arrays by name from an .npz, .csv or .npy file (by its extension, see data_suffix).

    path: the data file (str or Path); spec: the model's DataSpec (csv columns, and the node an .npy is for);
    role: what an .npy holds (default 'inputs': the data of the model's one input; 'targets': the targets of its
    one output); a model with several refuses an .npy with DataError naming the file. .npz arrays are returned
    as named, unchecked (see split_arrays)."""
    suffix = data_suffix(path)
    kind = sniff_data_file(path)
    if kind != suffix:
        raise DataError(f"is {_FORMS[kind]} by its content, not {_FORMS[suffix]} as its name says; rename it "
                        f"{kind}, or give the right file", where=str(path))
    if suffix == ".npz":
        return read_npz(path)
    if suffix == ".csv":
        return read_csv(path, spec)
    names = spec.inputs if role == "inputs" else spec.outputs
    if len(names) != 1:
        kind = "input" if role == "inputs" else "output"
        raise DataError(f"an .npy file holds one array, but {spec.model} has {len(names)} {kind} nodes "
                        f"({', '.join(names) or 'none'}); use an .npz (one array per node id) or a .csv (columns "
                        "<node id>[i]); `mdfbridge data template MODEL` writes one", where=str(path))
    return {next(iter(names)): read_npy(path)}


def split_arrays(arrays: Mapping[str, np.ndarray], spec: DataSpec, path: PathLike) -> Tuple[Arrays, Arrays]:
    """(inputs, targets): arrays named by an input node (or port) id, and by an output node id that is not an
    input; any other name raises DataError naming the file and the array.

    arrays: name -> array, as read_arrays returns them; spec: the model's DataSpec; path: the file they came
    from, for the error message."""
    inputs = {k: v for k, v in arrays.items() if spec.input_name(k) is not None}
    targets = {k: v for k, v in arrays.items() if k in spec.outputs and k not in inputs}
    unknown = sorted(set(arrays) - set(inputs) - set(targets))
    if unknown:
        raise DataError(f"array(s) {', '.join(map(repr, unknown))} name no input or output node of {spec.model} "
                        f"(inputs: {', '.join(spec.inputs) or 'none'}; outputs: {', '.join(spec.outputs) or 'none'})",
                        where=str(path))
    return inputs, targets


def _in_file(path: PathLike, exc: DataError) -> DataError:
    """`exc` with the data file it came from in front."""
    return DataError(str(exc), where=str(path))


def checked_inputs(program: Any, path: PathLike) -> Tuple[Arrays, Arrays]:
    """(inputs, targets found too) from a data file for `mdfbridge run`, the inputs checked against the Program
    (shapes, trial counts, NaN) with errors naming the file.

    program: the lowered Program the data are for; path: the data file (.npz, .npy or .csv; str or Path).
    Raises DataError naming the file."""
    from .importers.reference import runner_for

    spec = spec_of_program(program)
    inputs, targets = split_arrays(read_arrays(path, spec, role="inputs"), spec, path)
    try:
        runner_for(program).prepare_inputs(inputs)
    except DataError as exc:
        raise _in_file(path, exc) from exc
    return inputs, targets


def checked_training_data(program: Any, data: PathLike, targets_path: Optional[PathLike] = None, *,
                          over_time: bool = False) -> Tuple[Arrays, Arrays]:
    """(inputs, targets) for training, checked against the Program (shapes, trials, NaN, every input and output)
    with errors naming the file at fault.

    program: the lowered Program to train; data: the data file (.npz, .npy or .csv; str or Path) holding the
    inputs, and the targets too unless targets_path holds them; targets_path: a second file holding the
    targets (default None: the targets are in `data`; an array both files hold is refused); over_time: sequences
    for an algorithm that steps the program through time (default False; see learning.prepare_data). Raises
    DataError."""
    from .learning import prepare_data

    spec = spec_of_program(program)
    inputs, targets = split_arrays(read_arrays(data, spec, role="inputs"), spec, data)
    if targets_path is not None:
        extra_inputs, more = split_arrays(read_arrays(targets_path, spec, role="targets"), spec, targets_path)
        clash = sorted(set(more) & set(targets)) or sorted(extra_inputs)
        if clash:
            held = "targets for" if set(more) & set(targets) else "inputs"
            raise DataError(f"holds {held} {', '.join(map(repr, clash))}, which {data} holds too; give each array "
                            "once", where=str(targets_path))
        targets.update(more)
    elif not targets and Path(data).suffix.lower() == ".npy":
        raise DataError(f"holds the inputs only; give the targets with --targets TARGETS.npy (output node "
                        f"{', '.join(map(repr, spec.outputs))}), or use an .npz/.csv holding both", where=str(data))
    try:
        prepare_data(program, inputs, {}, over_time=over_time)
    except DataError as exc:
        if "no targets given" not in str(exc):  # the inputs' checks come first
            raise _in_file(data, exc) from exc
    if not targets:
        raise DataError(f"holds no targets; expected an array for output node(s) {', '.join(spec.outputs)} "
                        f"({'columns' if Path(data).suffix.lower() == '.csv' else 'arrays'} named by output node "
                        "id), or --targets FILE", where=str(data))
    try:
        prepare_data(program, inputs, targets, over_time=over_time)
    except DataError as exc:
        raise _in_file(targets_path or data, exc) from exc
    return inputs, targets


# ------------------------------------------------------------------------------------------------ templates

@dataclass
class WrittenArray:
    """One array a template file holds: its file, name, shape, and what it is for."""

    path: Path
    name: str
    shape: Tuple[int, ...]
    role: str  # 'input' or 'target'


def template_arrays(spec: DataSpec, trials: int = 4, *, zeros: bool = False, seed: int = 0,
                    time_steps: int = 5) -> Tuple[Arrays, Arrays]:
    """(inputs, targets) of the shapes the model takes: (trials, *shape), (trials, time_steps, *shape) for a
    sequence model. zeros: all zeros (default False: uniform in [0, 1) rounded to 4 decimals, from
    numpy.random.default_rng(seed)); trials: default 4; seed: default 0; time_steps: default 5.

    spec: the model's DataSpec; every shape must be known, else DataError (as for trials or time_steps < 1)."""
    if trials < 1 or time_steps < 1:
        raise DataError(f"trials and time steps must be >= 1, got {trials} and {time_steps}")
    unknown = [k for k, s in {**spec.inputs, **spec.outputs}.items() if s is None]
    if unknown:
        raise DataError(f"the shape of {', '.join(map(repr, unknown))} is not known in {spec.model}; "
                        "cannot write a template")
    rng = np.random.default_rng(seed)
    lead = (trials, time_steps) if spec.sequence else (trials,)

    def make(shape: Tuple[int, ...]) -> np.ndarray:
        return np.zeros(lead + shape) if zeros else np.round(rng.random(lead + shape), 4)
    return ({k: make(tuple(s or ())) for k, s in spec.inputs.items()},
            {k: make(tuple(s or ())) for k, s in spec.outputs.items()})


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **cast(Dict[str, Any], dict(arrays)))  # numpy's stub would match a key to allow_pickle: bool
    return buf.getvalue()


def _csv_text(arrays: Mapping[str, np.ndarray], spec: DataSpec) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header: List[str] = []
    for name in arrays:
        header += column_names(name, _node_shape(spec, name))
    writer.writerow(header)
    flat = np.concatenate([a.reshape(len(a), -1) for a in arrays.values()], axis=1)
    for row in flat:
        writer.writerow([repr(float(v)) for v in row])
    return buf.getvalue()


def template_paths(out: PathLike, fmt: str, split: bool) -> Tuple[Path, Path]:
    """(inputs file, targets file) of a template written to `out`: the same file unless `split` (an .npy pair, or a
    node that is both an input and an output): then `<out stem>.inputs.<fmt>` and `<out stem>.targets.<fmt>`.

    out: the requested file (str or Path); fmt: the format, 'npz', 'csv' or 'npy' (an `out` ending in `.<fmt>`
    loses that suffix before the tags go in); split: whether inputs and targets go to two files."""
    out = Path(out)
    if not split:
        return out, out
    base = out.with_suffix("") if out.suffix.lower() == f".{fmt}" else out
    return base.with_name(f"{base.name}.inputs.{fmt}"), base.with_name(f"{base.name}.targets.{fmt}")


def write_template(spec: DataSpec, out: PathLike, fmt: str = "npz", *, force: bool = False,
                   **options: Any) -> List[WrittenArray]:
    """Write example data for the model to `out` in `fmt` ('npz', default; 'csv'; 'npy': an inputs/targets pair,
    one-input one-output models only); options as `template_arrays` takes them. Returns what was written.

    spec: the model's DataSpec; out: the file to write (str or Path; its directory must exist), or the stem of
    the pair (see template_paths) for 'npy' or a node that is both an input and an output. Files are written
    atomically (a symlink written through); bad arguments raise DataError; force: replace read-only files too
    (default False: DocumentError '<file>: is read-only')."""
    from .atomic import atomic_write_bytes

    if fmt not in TEMPLATE_FORMATS:
        raise DataError(f"unknown data format '{fmt}'; formats: {', '.join(TEMPLATE_FORMATS)}")
    if not Path(out).resolve().parent.is_dir():
        raise DataError(f"directory {Path(out).parent} does not exist", where=str(out))
    inputs, targets = template_arrays(spec, **options)
    if fmt == "npy" and (len(inputs) != 1 or len(targets) != 1):
        raise DataError(f"an .npy pair holds one input and one output, but {spec.model} has inputs "
                        f"{', '.join(inputs) or 'none'} and outputs {', '.join(targets) or 'none'}; use npz or csv")
    split = fmt == "npy" or bool(set(inputs) & set(targets))
    in_path, target_path = template_paths(out, fmt, split)
    files: Dict[Path, Dict[str, np.ndarray]] = {}
    files.setdefault(in_path, {}).update(inputs)
    files.setdefault(target_path, {}).update(targets)
    if fmt == "csv" and spec.sequence:
        raise DataError(f"{spec.model} takes (trials, time steps, ...) arrays; a csv file cannot hold them: use npz")
    for path, arrays in files.items():
        if fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, next(iter(arrays.values())))
            payload = buf.getvalue()
        elif fmt == "csv":
            payload = _csv_text(arrays, spec).encode("utf-8")
        else:
            payload = _npz_bytes(arrays)
        atomic_write_bytes(path, payload, force=force)
        log.info("wrote %s", path)
    return ([WrittenArray(in_path, k, v.shape, "input") for k, v in inputs.items()]
            + [WrittenArray(target_path, k, v.shape, "target") for k, v in targets.items()])


def default_template_path(model: PathLike, fmt: str) -> Path:
    """`<model stem>.template.<fmt>` next to the model (see `output_path`).

    model: the model file (str or Path); fmt: the data format, used as the extension ('npz', 'csv' or 'npy')."""
    return output_path(model, "template", fmt)


_MDF_DOUBLE = (".mdf.json", ".mdf.yaml", ".mdf.yml")


def split_name(path: PathLike) -> Tuple[str, str]:
    """(stem, extension without the dot) of a file, `.mdf.json`/`.mdf.yaml`/`.mdf.yml` counting as one extension:
    'xor.mdf.json' -> ('xor', 'mdf.json'), 'model.json' -> ('model', 'json').

    path: the file (str or Path; only its name is read); no extension gives ''."""
    name = Path(path).name
    for ext in _MDF_DOUBLE:
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[:-len(ext)], ext[1:]
    p = Path(name)
    return (p.stem, p.suffix[1:]) if p.suffix else (name, "")


def output_path(source: PathLike, tag: Optional[str], ext: Optional[str] = None,
                directory: Optional[PathLike] = None) -> Path:
    """`<stem>.<tag>.<ext>` beside `source` (or in `directory`): tag None leaves it out, ext None keeps the
    source's. E.g. ('xor.mdf.json', 'trained') -> 'xor.trained.mdf.json', ('xor.mdf.json', None, 'png') ->
    'xor.png', ('xor.mdf.json', 'loss', 'png') -> 'xor.loss.png'.

    source: the file the output derives from (str or Path); tag: the inserted tag, or None; ext: the extension
    without the dot (default None: the source's, see split_name); directory: where the file goes (default None:
    the source's directory)."""
    stem, own = split_name(source)
    ext = own if ext is None else ext
    parts = [stem] + ([tag] if tag else []) + ([ext] if ext else [])
    return Path(directory if directory is not None else Path(source).parent) / ".".join(parts)


def describe(written: Sequence[WrittenArray]) -> List[str]:
    """Lines saying what a template holds, file by file.

    written: the WrittenArray list write_template returns. Returns 'wrote <file>:' then one indented line per
    array (name, shape, and whether it is an input or a target)."""
    lines = []
    for path in dict.fromkeys(w.path for w in written):
        lines.append(f"wrote {path}:")
        for w in (w for w in written if w.path == path):
            what = "input node" if w.role == "input" else "targets for output node"
            lines.append(f"  {w.name}: shape {w.shape} ({what} '{w.name}')")
    return lines
