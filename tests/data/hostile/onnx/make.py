"""Builds the ONNX hostile corpus (tests/data/hostile/onnx/cases.json) with onnx.helper into `gen`: subgraphs that
capture graph inputs, constant folding beyond the budget, external data outside the model's folder, broken
protobufs, versions from the future, missing initializer data, empty models, and a 1,000-node chain."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR = 8


def _model(nodes: List[onnx.NodeProto], inputs: Optional[List[onnx.ValueInfoProto]] = None,
           outputs: Optional[List[onnx.ValueInfoProto]] = None, inits: Optional[List[onnx.TensorProto]] = None,
           name: str = "g", opset: int = OPSET, ir: int = IR, domains: Optional[dict] = None) -> onnx.ModelProto:
    ins = inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])]
    outs = outputs if outputs is not None else [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    g = helper.make_graph(nodes, name, ins, outs, inits or [])
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = ir
    return m


def _save(m: onnx.ModelProto, path: Path) -> None:
    path.write_bytes(m.SerializeToString())  # (no checker: some of these are meant to be wrong)


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name + "_v"))


def if_capturing_input() -> onnx.ModelProto:
    """If on a constant condition whose branches read the graph input x (then: x + 1, else: x * 2)."""
    then_g = helper.make_graph([helper.make_node("Add", ["x", "one"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    return _model([helper.make_node("If", ["cond"], ["y"], name="branch_on_x", then_branch=then_g,
                                    else_branch=else_g)],
                  inits=[numpy_helper.from_array(np.array(True), "cond"),
                         numpy_helper.from_array(np.float32(1), "one"), numpy_helper.from_array(np.float32(2), "two")])


def loop_capturing_input() -> onnx.ModelProto:
    """Loop of 3 constant iterations whose body adds the graph input x to the carried value."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["v_in", "x"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    return _model([helper.make_node("Loop", ["M", "cond", "v0"], ["y"], name="loop_over_x", body=body)],
                  inits=[numpy_helper.from_array(np.array(3, np.int64), "M"),
                         numpy_helper.from_array(np.array(True), "cond"),
                         numpy_helper.from_array(np.zeros((1, 4), np.float32), "v0")])


def scan_capturing_input() -> onnx.ModelProto:
    """Scan over a constant sequence whose body adds the graph input x."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x"], ["s_mid"]), helper.make_node("Add", ["s_mid", "e"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["scan_out"])],
        "body", [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, None),
                 helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("scan_out", TensorProto.FLOAT, None)])
    return _model([helper.make_node("Scan", ["s0", "seq"], ["y", "ys"], name="scan_over_x", body=body,
                                    num_scan_inputs=1)],
                  inits=[numpy_helper.from_array(np.zeros((1, 4), np.float32), "s0"),
                         numpy_helper.from_array(np.ones((3, 4), np.float32), "seq")])


def constant_if(y_from_x: bool = True) -> onnx.ModelProto:
    """A genuinely constant If (its branches read only constants), added to the graph input: y = x + If(...)."""
    then_g = helper.make_graph([helper.make_node("Mul", ["w", "two"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Neg", ["w"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    return _model([helper.make_node("If", ["cond"], ["k"], name="const_if", then_branch=then_g,
                                    else_branch=else_g),
                   helper.make_node("Add", ["x", "k"], ["y"], name="add_k")],
                  inits=[numpy_helper.from_array(np.array(True), "cond"),
                         numpy_helper.from_array(np.arange(4, dtype=np.float32) / 4, "w"),
                         numpy_helper.from_array(np.float32(2), "two")],
                  outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])


def _counting_body() -> onnx.GraphProto:
    """A Loop body that keeps its condition and adds 1 to a (4,) carried value."""
    return helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [4])])


def constant_loop(trips: int) -> onnx.ModelProto:
    """y = x + Loop(trips){v += 1}: a constant Loop folded by the importer."""
    body = _counting_body()
    return _model([helper.make_node("Loop", ["M", "cond", "v0"], ["k"], name="const_loop", body=body),
                   helper.make_node("Add", ["x", "k"], ["y"], name="add_k")],
                  inits=[numpy_helper.from_array(np.array(trips, np.int64), "M"),
                         numpy_helper.from_array(np.array(True), "cond"),
                         numpy_helper.from_array(np.zeros(4, np.float32), "v0"),
                         numpy_helper.from_array(np.float32(1), "one")],
                  outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])


def while_loop() -> onnx.ModelProto:
    """A constant Loop with no trip count whose condition stays true forever."""
    body = _counting_body()
    return _model([helper.make_node("Loop", ["", "cond", "v0"], ["k"], name="forever", body=body),
                   helper.make_node("Add", ["x", "k"], ["y"], name="add_k")],
                  inits=[numpy_helper.from_array(np.array(True), "cond"),
                         numpy_helper.from_array(np.zeros(4, np.float32), "v0"),
                         numpy_helper.from_array(np.float32(1), "one")],
                  outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])


def huge_fold(op: str) -> onnx.ModelProto:
    """A constant op whose output would have 1e10 elements (ConstantOfShape, Expand, Tile or an outer-product
    Add), added to x."""
    if op == "ConstantOfShape":
        nodes = [_const("shape", np.array([100000, 100000], np.int64)),
                 helper.make_node("ConstantOfShape", ["shape"], ["big"], name="big_zeros")]
    elif op == "Expand":
        nodes = [_const("one", np.ones((1,), np.float32)), _const("shape", np.array([100000, 100000], np.int64)),
                 helper.make_node("Expand", ["one", "shape"], ["big"], name="big_expand")]
    elif op == "Tile":
        nodes = [_const("one", np.ones((1, 1), np.float32)), _const("reps", np.array([100000, 100000], np.int64)),
                 helper.make_node("Tile", ["one", "reps"], ["big"], name="big_tile")]
    else:
        nodes = [_const("col", np.ones((100000, 1), np.float32)), _const("row", np.ones((1, 100000), np.float32)),
                 helper.make_node("Add", ["col", "row"], ["big"], name="big_outer")]
    nodes += [helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0, name="sum_big"),
              helper.make_node("Add", ["x", "s"], ["y"], name="add_s")]
    return _model(nodes)


def external(location: str) -> onnx.ModelProto:
    """y = x + w with w's data in the external file `location`."""
    w = numpy_helper.from_array(np.ones(4, np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        w.external_data.add(key=k, value=v)
    return _model([helper.make_node("Add", ["x", "w"], ["y"], name="add_w")], inits=[w])


def external_in_subgraph(location: str) -> onnx.ModelProto:
    """A constant If whose branch holds an initializer with external data at `location`."""
    w = numpy_helper.from_array(np.ones(4, np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        w.external_data.add(key=k, value=v)
    then_g = helper.make_graph([helper.make_node("Identity", ["w"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)], [w])
    else_g = helper.make_graph([helper.make_node("Identity", ["w2"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
                               [numpy_helper.from_array(np.zeros(4, np.float32), "w2")])
    return _model([helper.make_node("If", ["cond"], ["k"], name="if_ext", then_branch=then_g, else_branch=else_g),
                   helper.make_node("Add", ["x", "k"], ["y"], name="add_k")],
                  inits=[numpy_helper.from_array(np.array(True), "cond")])


def simple(opset: int = OPSET, ir: int = IR) -> onnx.ModelProto:
    """y = relu(x @ W + b)."""
    return _model([helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
                   helper.make_node("Add", ["h", "b"], ["z"], name="add_b"),
                   helper.make_node("Relu", ["z"], ["y"], name="relu")],
                  inits=[numpy_helper.from_array(np.eye(4, dtype=np.float32), "W"),
                         numpy_helper.from_array(np.ones(4, np.float32), "b")], opset=opset, ir=ir)


def custom_domain() -> onnx.ModelProto:
    """A node of an unknown custom domain."""
    return _model([helper.make_node("Frobnicate", ["x"], ["y"], name="frob", domain="com.example.evil")],
                  domains={"com.example.evil": 1})


def short_initializer(missing: bool) -> onnx.ModelProto:
    """W of dims (4, 4) with no data (missing) or 8 bytes of raw data (short)."""
    w = onnx.TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 4])
    if not missing:
        w.raw_data = b"\0" * 8
    return _model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], inits=[w])


def chain(n: int) -> onnx.ModelProto:
    """An n-node Relu/Add/MatMul chain on (N, 4) tensors (the import-scale probe)."""
    nodes, prev = [], "x"
    inits = [numpy_helper.from_array(np.eye(4, dtype=np.float32) * 0.5, "W"),
             numpy_helper.from_array(np.full(4, 0.1, np.float32), "b")]
    for i in range(n):
        op = ("Relu", "Add", "MatMul")[i % 3]
        out = "y" if i == n - 1 else f"t{i}"
        ins = [prev] if op == "Relu" else [prev, "b" if op == "Add" else "W"]
        nodes.append(helper.make_node(op, ins, [out], name=f"n{i}"))
        prev = out
    return _model(nodes, outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits=inits)


def make(gen: Path) -> None:
    """Write every generated file of the corpus into gen."""
    gen.mkdir(parents=True, exist_ok=True)
    for name, model in {
        "if_captures_input": if_capturing_input(), "loop_captures_input": loop_capturing_input(),
        "scan_captures_input": scan_capturing_input(), "constant_if": constant_if(),
        "constant_loop_1e12": constant_loop(10 ** 12), "constant_loop_5": constant_loop(5),
        "while_true": while_loop(), "fold_constantofshape": huge_fold("ConstantOfShape"),
        "fold_expand": huge_fold("Expand"), "fold_tile": huge_fold("Tile"), "fold_outer_add": huge_fold("Add"),
        "opset999": simple(opset=999), "ir99": simple(ir=99), "custom_domain": custom_domain(),
        "init_missing": short_initializer(True), "init_short": short_initializer(False), "good": simple(),
        "chain1000": chain(1000),
    }.items():
        _save(model, gen / f"{name}.onnx")
    data = simple().SerializeToString()
    (gen / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (gen / "garbage.onnx").write_bytes(np.random.default_rng(12).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (gen / "empty.onnx").write_bytes(b"")
    (gen / "folder.onnx").mkdir(exist_ok=True)
    empty = onnx.ModelProto(ir_version=IR)
    empty.opset_import.add(domain="", version=OPSET)
    _save(empty, gen / "empty_graph.onnx")
    outside = gen / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "w.bin").write_bytes(np.ones(4, np.float32).tobytes())
    models = gen / "models"
    models.mkdir(exist_ok=True)
    (models / "w.bin").write_bytes(np.ones(4, np.float32).tobytes())
    link = models / "link.bin"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(outside / "w.bin", link)
    _save(external(str(outside / "w.bin")), models / "ext_absolute.onnx")
    _save(external("../outside/w.bin"), models / "ext_dotdot.onnx")
    _save(external("link.bin"), models / "ext_symlink.onnx")
    _save(external("absent.bin"), models / "ext_missing.onnx")
    _save(external("w.bin"), models / "ext_inside.onnx")
    _save(external_in_subgraph("../outside/w.bin"), models / "ext_subgraph_dotdot.onnx")
