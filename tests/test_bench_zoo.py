"""benchmarks/bench_zoo.py (issue 13's measurement): the zoo section runs end to end on the first MLP kinds and
its table says they pass every check; its helpers pair outputs, catch mismatches and read the blocking op."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_zoo  # noqa: E402


def test_zoo_part_prints_the_table_and_the_mlps_pass(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_zoo.py"), "--only", "zoo", "--limit", "2",
                           "--no-o2t", "--json", str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert "== Own zoo" in text and "== Summary" in text
    header = next(line for line in text.splitlines() if line.startswith("file "))
    for column in ("export", "import", "run", "onnx", "io", "train", "torch"):
        assert column in header
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows] == ["mlp_2layer [legacy]", "mlp_2layer [dynamo]",
                                         "mlp_3layer_tanh_sigmoid [legacy]", "mlp_3layer_tanh_sigmoid [dynamo]"]
    for r in rows:
        for check in ("export", "import", "run", "onnx", "io", "train", "torch"):
            assert r["checks"][check]["ok"], (r["name"], check, r["checks"][check])
        assert r["checks"]["run"]["maxdiff"] <= 1e-5 and r["checks"]["onnx"]["exact"]
        assert r["name"] in text
    assert ("zoo  : export 4/4, import 4/4, run 4/4, onnx 4/4, onnx exact 4/4, io 4/4, train 4/4, torch 2/2 kinds"
            in text)


def test_compare_catches_mismatches() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 4)).astype(np.float32)
    assert bench_zoo.compare(ref.astype(np.float64), ref)[0]
    assert not bench_zoo.compare(ref + 1e-3, ref)[0]
    assert not bench_zoo.compare(ref[:, :3], ref)[0]
    assert bench_zoo.compare(ref.reshape(3, 2, 2), ref)[0]  # same values, another shape: noted, compared
    assert not bench_zoo.compare(np.array([1, 2]), np.array([1, 3]))[0]
    ok, text, _ = bench_zoo.compare_all({"n_a": ref + 1.0, "b": ref}, {"b": ref, "a:0": ref})
    assert not ok and "'a:0'" in text  # paired by sanitised name, not by position


def test_pair_names_exact_then_sanitised_then_position() -> None:
    assert bench_zoo.pair_names(["y", "h.n", "z"], ["h_n", "other", "y"]) == {"y": "y", "h.n": "h_n", "z": "other"}


@pytest.mark.parametrize("op", ["NoSuchOp", "Shrink"])
def test_blocking_op_read_from_the_importers_error(tmp_path: Path, op: str) -> None:
    from mdfbridge.errors import MdfBridgeError
    from mdfbridge.importers.onnx import onnx_to_mdf

    node = helper.make_node(op, ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(MdfBridgeError) as err:
        onnx_to_mdf(path)
    assert bench_zoo.blocking_op(str(err.value)) == op
    assert bench_zoo.missing_ops(str(path)) == [op]


def _identity_model(outputs: list, dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    nodes = [helper.make_node("Identity", ["x"], [o]) for o in outputs]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, ["N", 2])],
                              [helper.make_tensor_value_info(o, dtype, ["N", 2]) for o in outputs])
    return helper.make_model(graph)


def test_interface_check_sees_order_names_and_dtypes() -> None:
    same = bench_zoo._same_interface(_identity_model(["3", "4", "5"]), _identity_model(["3", "4", "5"]))
    assert same["ok"]
    moved = bench_zoo._same_interface(_identity_model(["3", "4", "5"]), _identity_model(["4", "5", "3"]))
    assert not moved["ok"] and "outputs" in moved["text"]
    narrowed = bench_zoo._same_interface(_identity_model(["y"], TensorProto.DOUBLE), _identity_model(["y"]))
    assert not narrowed["ok"] and "float64" in narrowed["text"]
