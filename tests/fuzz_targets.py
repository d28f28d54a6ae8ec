"""Hypothesis fuzzing of everything that reads a user's file: the MDF loader (JSON and YAML text), lowering and the
numpy reference run, the expression evaluator, the ONNX importer and the data-file readers. Each property asserts
that only an `MdfBridgeError` ever escapes (or the call succeeds); hypothesis's per-example deadline bounds the time
of each example; the memory bound is checked on the process that runs them (tests/test_fuzz.py runs this file in
a child and reads its peak RSS).

Not collected by pytest directly (the name does not start with test_): tests/test_fuzz.py runs it in a child with
MDFBRIDGE_FUZZ_EXAMPLES examples per property (default 150 there); `make fuzz` runs many more."""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdfbridge import api
from mdfbridge.data_files import read_arrays, spec_of_program
from mdfbridge.errors import MdfBridgeError
from mdfbridge.expressions import parse_expression

REPO = Path(__file__).resolve().parents[1]
XOR = (REPO / "examples" / "xor.mdf.json").read_text(encoding="utf-8")
EXAMPLES = int(os.environ.get("MDFBRIDGE_FUZZ_EXAMPLES", "40"))
# per-example time bound: 5 s in `make fuzz`; tests/test_fuzz.py gives 20 s (a hang guard on a loaded CI machine)
DEADLINE_S = float(os.environ.get("MDFBRIDGE_FUZZ_DEADLINE_S", "5"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=DEADLINE_S), derandomize=False, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def _only_ours(call, *args, **kwargs):
    """Run call; an MdfBridgeError is a correct outcome, anything else escapes and fails the property."""
    try:
        return call(*args, **kwargs)
    except MdfBridgeError:
        return None


def _in_file(data: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="fuzz_")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(name)


def _mutated(text: bytes, edits: list) -> bytes:
    """text with each (position fraction, kind, payload) edit applied: delete, insert or replace bytes."""
    out = bytearray(text)
    for frac, kind, payload in edits:
        at = int(frac * len(out)) if out else 0
        if kind == 0:
            del out[at:at + len(payload)]
        elif kind == 1:
            out[at:at] = payload
        else:
            out[at:at + len(payload)] = payload
    return bytes(out)


EDITS = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 2),
                           st.one_of(st.binary(min_size=1, max_size=8),
                                     st.sampled_from([b"9" * 400, b"[" * 200, b"\x00", b'"\\ud800"', b"1e400",
                                                      b"&a [*a, *a]", b"-1", b"null", b"{}", b"[]", b'"x"']))),
                 min_size=1, max_size=6)


def _load_and_run(path: Path) -> None:
    prog = api.load_program(path)
    inputs = {}
    for name, shape in spec_of_program(prog).inputs.items():
        inputs[name] = np.ones((2, *[d if isinstance(d, int) and 0 < d < 64 else 1 for d in (shape or ())]))
    api.run_with_backend(prog, inputs, "numpy")


@FUZZ
@given(EDITS, st.sampled_from([".json", ".yaml"]))
def test_mdf_text_mutations(edits, suffix):
    text = XOR.encode() if suffix == ".json" else _yaml_xor()
    path = _in_file(_mutated(text, edits), suffix)
    try:
        _only_ours(_load_and_run, path)
    finally:
        path.unlink()


_YAML = []


def _yaml_xor() -> bytes:
    if not _YAML:
        import yaml
        _YAML.append(yaml.safe_dump(json.loads(XOR)).encode())
    return _YAML[0]


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True) |
                       st.text(max_size=12),
                       lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=5), max_leaves=40)
SPOTS = ["$.xor_model.graphs.xor.nodes.hidden.parameters.gain.value",
         "$.xor_model.graphs.xor.nodes.hidden.input_ports",
         "$.xor_model.graphs.xor.nodes.input.input_ports.input_input.shape",
         "$.xor_model.graphs.xor.edges",
         "$.xor_model.graphs.xor.nodes.hidden.functions.function.args.variable0",
         "$.xor_model.graphs.xor.nodes.input_to_hidden.parameters",
         "$.xor_model.graphs.xor"]


def _set(doc, spot, value):
    keys = spot.split(".")[1:]
    node = doc
    for k in keys[:-1]:
        if not isinstance(node, dict) or k not in node:
            return
        node = node[k]
    if isinstance(node, dict):
        node[keys[-1]] = value


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(SPOTS), JSONISH), min_size=1, max_size=3))
def test_mdf_structure_replacements(changes):
    doc = json.loads(XOR)
    for spot, value in changes:
        _set(doc, spot, value)
    try:
        text = json.dumps(doc, allow_nan=True).encode()
    except (ValueError, OverflowError):
        return
    path = _in_file(text, ".json")
    try:
        _only_ours(_load_and_run, path)
    finally:
        path.unlink()


NAMES = st.sampled_from(["x", "y", "a", "numpy", "np", "math", "__class__", "__import__", "open", "e", "pi"])
FUNCS = st.sampled_from(["exp", "log", "sin", "tanh", "sqrt", "maximum", "ones", "zeros", "outer", "matmul", "dot",
                         "tile", "repeat", "concatenate", "arange", "eye", "full", "sum", "transpose", "reshape",
                         "numpy.exp", "np.ones", "math.factorial", "getattr", "eval", "exec"])
NUMBERS = st.one_of(st.integers(-10, 10), st.sampled_from(["9**9**9", "10**5", "10**10", "1e308", "1e400", "2**64",
                                                           "-1", "0", "0.5", "10**4000"]).map(str))
ATOMS = st.one_of(NAMES, NUMBERS.map(str))


def _exprs():
    def extend(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**", "//", "%", "@", "<", "and", "if"]), inner)
            .map(lambda t: f"({t[0]} {t[1]} {t[2]} else 0)" if t[1] == "if" else f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(FUNCS, st.lists(inner, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.lists(inner, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
            inner.map(lambda s: f"{s}.__class__"),
        )
    return st.recursive(ATOMS, extend, max_leaves=12)


@FUZZ
@given(st.one_of(_exprs(), st.text(max_size=40)))
def test_expressions(text):
    env = {"x": np.ones(3), "y": np.ones((3, 3)), "a": 2.0}
    expr = _only_ours(parse_expression, text, "fuzz")
    if expr is not None:
        _only_ours(expr.evaluate, env)


def _xor_onnx() -> bytes:
    from mdfbridge.exporters.onnx import program_to_onnx

    if not _ONNX:
        _ONNX.append(program_to_onnx(api.load_program(REPO / "examples" / "xor.mdf.json")).SerializeToString())
    return _ONNX[0]


_ONNX: list = []


@FUZZ
@given(EDITS)
def test_onnx_bytes_mutations(edits):
    from mdfbridge.importers.onnx import onnx_to_mdf

    _only_ours(onnx_to_mdf, _mutated(_xor_onnx(), edits))


def _random_graph(draw):
    import onnx
    from onnx import TensorProto, helper

    ops = draw(st.lists(st.sampled_from(["Relu", "Sigmoid", "Tanh", "Add", "Mul", "MatMul", "Softmax", "Exp",
                                         "Transpose", "Reshape", "Concat", "Identity", "Gemm", "If", "Loop",
                                         "Unknown", "Neg"]), min_size=1, max_size=6))
    nodes, names = [], ["x"]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [3, 3], np.ones(9).tolist()),
             helper.make_tensor("shape", TensorProto.INT64, [2], [draw(st.integers(-2, 10**6)), 3])]
    for i, op in enumerate(ops):
        a = draw(st.sampled_from(names + ["w"]))
        b = draw(st.sampled_from(names + ["w", "shape"]))
        arity = {"Add": 2, "Mul": 2, "MatMul": 2, "Gemm": 2, "Reshape": 2, "Concat": 2}.get(op, 1)
        attrs = {"axis": draw(st.integers(-3, 3))} if op in ("Softmax", "Concat") else {}
        nodes.append(helper.make_node(op, [a, b][:arity], [f"t{i}"], **attrs))
        names.append(f"t{i}")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, None)], inits)
    opset = draw(st.sampled_from([13, 17, 999]))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=draw(st.sampled_from([8, 99]))).SerializeToString(), onnx


@FUZZ
@given(st.data())
def test_onnx_random_graphs(data):
    from mdfbridge.importers.onnx import onnx_to_mdf

    payload, _ = _random_graph(data.draw)
    _only_ours(onnx_to_mdf, payload)


def _npz_bytes(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


ARRAYS = st.dictionaries(st.sampled_from(["input", "output", "input_input", "x", ""]),
                         st.one_of(st.just(np.ones((4, 2))), st.just(np.ones(())), st.just(np.ones((4, 3))),
                                   st.just(np.ones((4, 2), dtype=complex)), st.just(np.array(["a"])),
                                   st.just(np.zeros((0, 2)))), max_size=3)


@FUZZ
@given(ARRAYS, EDITS, st.booleans(), st.sampled_from([".npz", ".npy", ".csv"]))
def test_data_files(arrays, edits, mutate, suffix):
    prog = api.load_program(REPO / "examples" / "xor.mdf.json")
    spec = spec_of_program(prog)
    if suffix == ".npz":
        payload = _npz_bytes(arrays)
    elif suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, next(iter(arrays.values()), np.ones((4, 2))))
        payload = buf.getvalue()
    else:
        payload = (REPO / "examples" / "xor_data.csv").read_bytes()
    if mutate:
        payload = _mutated(payload, edits)
    path = _in_file(payload, suffix)
    try:
        _only_ours(read_arrays, path, spec)
    finally:
        path.unlink()


@FUZZ
@given(st.binary(max_size=300))
def test_zip_containers(junk):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("input.npy", junk)
    path = _in_file(buf.getvalue(), ".npz")
    try:
        _only_ours(read_arrays, path, spec_of_program(api.load_program(REPO / "examples" / "xor.mdf.json")))
    finally:
        path.unlink()
