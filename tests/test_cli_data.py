"""Data files for `mdfbridge train` / `run` (.npz, .csv, .npy pair), `mdfbridge data template|check`, the loss plot,
default output names, defaults in every --help, and one-line errors naming the file for every command."""
from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import XOR_INPUTS, XOR_TARGETS, make_xor

from mdfbridge import Composition, Logistic, MappingProjection, TransferMechanism
from mdfbridge.api import load_program
from mdfbridge.cli import build_parser, main
from mdfbridge.data_files import output_path, read_csv, spec_of_program, split_name
from mdfbridge.learning import learn
from mdfbridge.loss_plot import loss_figure

XOR_CSV = "input[0],input[1],output\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n"
TRAIN = ["--epochs", "5", "--lr", "0.2", "--optimizer", "sgd", "--loss", "mse", "--minibatch-size", "2", "--quiet"]
SETTINGS = dict(epochs=5, learning_rate=0.2, optimizer_type="sgd", loss_spec="mse", minibatch_size=2)
NEEDS_DOT = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's `dot` program is not installed")


def two_by_two() -> Composition:
    """Inputs a (2 units), b (3 units); outputs c (1 unit), d (2 units), each output fed by both inputs."""
    rng = np.random.default_rng(1)
    a, b = TransferMechanism("a", 2), TransferMechanism("b", 3)
    c, d = TransferMechanism("c", 1, Logistic()), TransferMechanism("d", 2, Logistic())
    comp = Composition("two")
    for s, r in ((a, c), (b, c), (a, d), (b, d)):
        comp.add_projection(MappingProjection(matrix=rng.uniform(-1, 1, (s.size, r.size)), name=f"{s.name}_{r.name}"),
                            s, r)
    return comp


@pytest.fixture
def xor(tmp_path) -> Path:
    path = tmp_path / "xor.mdf.json"
    make_xor().save_mdf(str(path))
    return path


@pytest.fixture
def two(tmp_path) -> Path:
    path = tmp_path / "two.mdf.json"
    two_by_two().save_mdf(str(path))
    return path


def ok(argv, capsys) -> str:
    """Run the command in process; it must succeed; returns stdout."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out


def error_line(argv, capsys) -> str:
    """Run the command; it must fail with exit 2 and exactly one `error: ...` line on stderr (no traceback)."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert rc == 2, (captured.out, captured.err)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    return lines[0]


def listing(d: Path) -> list:
    return sorted(p.name for p in d.iterdir())


def assert_same_weights(path: Path, program) -> None:
    got = load_program(path)
    for name, p in program.learnable_params().items():
        np.testing.assert_allclose(got.params[name].value, p.value, rtol=1e-12, atol=1e-12, err_msg=name)


# ------------------------------------------------------------------------------------------ training data forms

def test_npz_csv_and_npy_pair_train_to_the_in_process_weights(xor, tmp_path, capsys):
    np.savez(tmp_path / "d.npz", input=XOR_INPUTS, output=XOR_TARGETS)
    (tmp_path / "d.csv").write_text(XOR_CSV)
    np.save(tmp_path / "x.npy", XOR_INPUTS)
    np.save(tmp_path / "y.npy", XOR_TARGETS)
    expected = learn(xor, {"input": XOR_INPUTS}, {"output": XOR_TARGETS}, **SETTINGS).program
    for name, data in (("npz", ["--data", tmp_path / "d.npz"]), ("csv", ["--data", tmp_path / "d.csv"]),
                       ("npy", ["--data", tmp_path / "x.npy", "--targets", tmp_path / "y.npy"])):
        out = tmp_path / f"{name}.json"
        text = ok(["train", xor, *data, *TRAIN, "--out", out], capsys)
        assert f"wrote {out}" in text
        assert_same_weights(out, expected)


def test_csv_column_forms_and_order_read_the_same(xor, tmp_path):
    spec = spec_of_program(load_program(xor))
    forms = {"brackets.csv": XOR_CSV,
             "underscores.csv": "input_0,input_1,output\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n",
             "reordered.csv": " output , input[1],input[0]\n0,0,0\n1,1,0\n1,0,1\n0,1,1\n\n",
             "bom.csv": "\ufeffinput[0],input[1],output\r\n0,0,0\r\n0,1,1\r\n1,0,1\r\n1,1,0\r\n"}
    for name, text in forms.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        arrays = read_csv(tmp_path / name, spec)
        assert set(arrays) == {"input", "output"}, name
        np.testing.assert_array_equal(arrays["input"], XOR_INPUTS, err_msg=name)
        np.testing.assert_array_equal(arrays["output"], XOR_TARGETS, err_msg=name)


def test_several_inputs_and_outputs_train_from_csv_and_refuse_npy(two, tmp_path, capsys):
    rng = np.random.default_rng(3)
    a, b, c, d = rng.random((5, 2)), rng.random((5, 3)), rng.random((5, 1)), rng.random((5, 2))
    header = "a[0],a[1],b[0],b[1],b[2],c,d[0],d[1]"
    rows = np.concatenate([a, b, c, d], axis=1)
    (tmp_path / "d.csv").write_text(header + "\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in rows))
    expected = learn(two, {"a": a, "b": b}, {"c": c, "d": d}, **SETTINGS).program
    ok(["train", two, "--data", tmp_path / "d.csv", *TRAIN, "--out", tmp_path / "t.json"], capsys)
    assert_same_weights(tmp_path / "t.json", expected)
    np.save(tmp_path / "x.npy", a)
    line = error_line(["train", two, "--data", tmp_path / "x.npy", "--targets", tmp_path / "x.npy", *TRAIN], capsys)
    assert line.startswith(f"error: {tmp_path / 'x.npy'}: an .npy file holds one array")
    assert "2 input nodes (a, b)" in line and ".npz" in line and ".csv" in line
    line = error_line(["run", two, "--inputs", tmp_path / "x.npy"], capsys)
    assert "x.npy" in line and ".npz" in line


# case -> (file name, contents (text, or arrays for .npz/.npy), where the error is (file[:line[:col]]), what it says)
BAD_DATA = {
    "unknown_column": ("d.csv", "input[0],input[1],outptu\n0,0,0\n", "d.csv:1:3", r"'outptu' names no input or output"),
    "missing_unit": ("d.csv", "input[0],input[2],output\n0,0,0\n", "d.csv", r"no column input\[1\].*input\[0\], "
                     r"input\[1\]"),
    "not_a_number": ("d.csv", "input[0],input[1],output\n0,0,0\n0,abc,1\n", "d.csv:3:2",
                     r"column 'input\[1\]': 'abc' is not a number"),
    "short_row": ("d.csv", "input[0],input[1],output\n0,0\n", "d.csv:2", r"2 values; the header has 3 columns"),
    "whole_node_of_two_units": ("d.csv", "input,output\n0,0\n", "d.csv", r"column 'input' holds one unit.*\(2,\)"),
    "no_header": ("d.csv", "0,1,0\n1,1,0\n", "d.csv:1:1", r"first row must be a header"),
    "repeated_column": ("d.csv", "input[0],input[0],input[1],output\n0,0,0,0\n", "d.csv:1:2", r"repeats column 1"),
    "no_targets_csv": ("d.csv", "input[0],input[1]\n0,1\n", "d.csv", r"no targets.*output"),
    "empty": ("d.csv", "", "d.csv", r"empty; expected a header row"),
    "header_only": ("d.csv", "input[0],input[1],output\n", "d.csv", r"no rows of data"),
    "nan_in_csv": ("d.csv", "input[0],input[1],output\nnan,0,0\n", "d.csv", r"'input'.*NaN"),
    "wrong_shape_npz": ("d.npz", dict(input=np.zeros((4, 3)), output=XOR_TARGETS), "d.npz", r"input.*\(4, 3\)"),
    "wrong_target_shape": ("d.npz", dict(input=XOR_INPUTS, output=np.zeros((4, 2))), "d.npz", r"output.*\(4, 2\)"),
    "unknown_array": ("d.npz", dict(input=XOR_INPUTS, output=XOR_TARGETS, outptu=XOR_TARGETS), "d.npz",
                      r"'outptu' name no input or output node"),
    "not_an_npz": ("d.npz", "this is text", "d.npz", r"not an .npz archive"),
    "npy_inputs_only": ("d.npy", XOR_INPUTS, "d.npy", r"holds the inputs only.*--targets"),
    "bad_extension": ("d.txt", "input,output", "d.txt", r"unsupported data file extension '.txt'.*\.npz.*\.csv"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_file_is_one_line_naming_the_file_and_writes_nothing(case, xor, tmp_path, capsys):
    name, contents, where, what = BAD_DATA[case]
    path = tmp_path / name
    if isinstance(contents, str):
        path.write_text(contents)
    elif isinstance(contents, dict):
        np.savez(path, **contents)
    else:
        np.save(path, contents)
    before = listing(tmp_path)
    line = error_line(["train", xor, "--data", path, *TRAIN, "--plot"], capsys)
    assert line.startswith(f"error: {tmp_path / where}: "), line
    assert re.search(what, line), line
    assert listing(tmp_path) == before


def test_missing_data_file_names_it(xor, tmp_path, capsys):
    for name in ("nope.csv", "nope.npz", "nope.npy"):
        line = error_line(["train", xor, "--data", tmp_path / name, *TRAIN], capsys)
        assert line == f"error: {tmp_path / name}: no such file"
        line = error_line(["run", xor, "--inputs", tmp_path / name], capsys)
        assert line == f"error: {tmp_path / name}: no such file"


def test_targets_given_twice_are_refused(xor, tmp_path, capsys):
    np.savez(tmp_path / "d.npz", input=XOR_INPUTS, output=XOR_TARGETS)
    np.save(tmp_path / "y.npy", XOR_TARGETS)
    line = error_line(["train", xor, "--data", tmp_path / "d.npz", "--targets", tmp_path / "y.npy", *TRAIN], capsys)
    assert str(tmp_path / "y.npy") in line and "'output'" in line and "once" in line


def test_a_bad_targets_file_is_named(xor, tmp_path, capsys):
    np.save(tmp_path / "x.npy", XOR_INPUTS)
    np.save(tmp_path / "y.npy", XOR_TARGETS[:3])
    line = error_line(["train", xor, "--data", tmp_path / "x.npy", "--targets", tmp_path / "y.npy", *TRAIN], capsys)
    assert line.startswith(f"error: {tmp_path / 'y.npy'}: ") and "3 trials" in line


# ------------------------------------------------------------------------------------------ run --inputs

def test_run_reads_csv_npy_and_npz_alike_and_ignores_targets(xor, tmp_path, capsys):
    (tmp_path / "d.csv").write_text(XOR_CSV)
    np.save(tmp_path / "x.npy", XOR_INPUTS)
    np.savez(tmp_path / "d.npz", input=XOR_INPUTS, output=XOR_TARGETS)
    want = make_xor().evaluate({"input": XOR_INPUTS})["output"]
    for data in ("d.csv", "x.npy", "d.npz"):
        out = tmp_path / f"{data}.out.npz"
        ok(["run", xor, "--inputs", tmp_path / data, "--out", out], capsys)
        with np.load(out) as got:
            np.testing.assert_allclose(got["output"], want, rtol=0, atol=1e-12, err_msg=data)


def test_run_onnx_reads_a_csv(xor, tmp_path, capsys):
    onnx = tmp_path / "xor.onnx"
    ok(["convert", xor, onnx], capsys)
    (tmp_path / "d.csv").write_text(XOR_CSV)
    ok(["run", onnx, "--inputs", tmp_path / "d.csv", "--provider", "cpu", "--out", tmp_path / "o.npz"], capsys)
    want = make_xor().evaluate({"input": XOR_INPUTS})["output"]
    with np.load(tmp_path / "o.npz") as got:
        np.testing.assert_allclose(got["output"], want, rtol=0, atol=1e-6)
    (tmp_path / "bad.csv").write_text("input[0],input[1],output\n0,x,0\n")
    line = error_line(["run", onnx, "--inputs", tmp_path / "bad.csv", "--provider", "cpu"], capsys)
    assert line.startswith(f"error: {tmp_path / 'bad.csv'}:2:2: ")


# ------------------------------------------------------------------------------------------ data template / check

def test_template_writes_the_model_arrays_and_train_reads_it(xor, tmp_path, capsys):
    text = ok(["data", "template", xor, "--trials", "6"], capsys)
    path = tmp_path / "xor.template.npz"
    assert f"wrote {path}:" in text
    assert "input: shape (6, 2)" in text and "output: shape (6, 1)" in text
    assert f"mdfbridge train {xor} --data {path}" in text
    with np.load(path) as npz:
        assert set(npz.files) == {"input", "output"}
        assert npz["input"].shape == (6, 2) and npz["output"].shape == (6, 1)
        assert 0 <= npz["input"].min() and npz["input"].max() < 1 and npz["input"].std() > 0
        npz_values = {k: npz[k] for k in npz.files}
    # the same values as csv (same seed), read back through the csv reader
    ok(["data", "template", xor, "--trials", "6", "--format", "csv"], capsys)
    csv_path = tmp_path / "xor.template.csv"
    assert csv_path.read_text().splitlines()[0] == "input[0],input[1],output"
    back = read_csv(csv_path, spec_of_program(load_program(xor)))
    for k, v in npz_values.items():
        np.testing.assert_array_equal(back[k], v)
    assert "6 trials for training" in ok(["data", "check", xor, "--data", csv_path], capsys)
    ok(["train", xor, "--data", path, *TRAIN], capsys)
    assert (tmp_path / "xor.trained.mdf.json").is_file()


def test_template_npy_pair_zeros_and_out(xor, two, tmp_path, capsys):
    text = ok(["data", "template", xor, "--format", "npy", "--zeros", "--out", tmp_path / "pair.npy"], capsys)
    x, y = tmp_path / "pair.inputs.npy", tmp_path / "pair.targets.npy"
    assert f"--data {x} --targets {y}" in text
    np.testing.assert_array_equal(np.load(x), np.zeros((4, 2)))
    np.testing.assert_array_equal(np.load(y), np.zeros((4, 1)))
    ok(["train", xor, "--data", x, "--targets", y, *TRAIN], capsys)
    line = error_line(["data", "template", two, "--format", "npy"], capsys)
    assert "inputs a, b" in line and "outputs c, d" in line
    text = ok(["data", "template", two, "--out", tmp_path / "two.csv"], capsys)
    assert (tmp_path / "two.csv").read_text().splitlines()[0] == "a[0],a[1],b[0],b[1],b[2],c,d[0],d[1]"
    assert "b: shape (4, 3)" in text and "d: shape (4, 2)" in text
    assert "4 trials for training" in ok(["data", "check", two, "--data", tmp_path / "two.csv"], capsys)


def test_template_of_an_onnx_model(xor, tmp_path, capsys):
    onnx = tmp_path / "xor.onnx"
    ok(["convert", xor, onnx], capsys)
    text = ok(["data", "template", onnx, "--format", "csv"], capsys)
    assert "input: shape (4, 2)" in text and "output: shape (4, 1)" in text
    ok(["run", onnx, "--inputs", tmp_path / "xor.template.csv", "--provider", "cpu"], capsys)


# ------------------------------------------------------------------------------------------ default output names

def test_output_names():
    assert split_name("a/xor.mdf.json") == ("xor", "mdf.json")
    assert split_name("model.json") == ("model", "json")
    assert output_path("ex/xor.mdf.json", "trained") == Path("ex/xor.trained.mdf.json")
    assert output_path("ex/model.yaml", "trained") == Path("ex/model.trained.yaml")
    assert output_path("ex/xor.mdf.json", None, "png") == Path("ex/xor.png")
    assert output_path("ex/xor.mdf.json", "loss", "png", directory="o") == Path("o/xor.loss.png")
    assert output_path("ex/xor.onnx", "template", "csv") == Path("ex/xor.template.csv")


def test_train_defaults_write_beside_the_model(xor, tmp_path, capsys):
    (tmp_path / "d.csv").write_text(XOR_CSV)
    text = ok(["train", xor, "--data", tmp_path / "d.csv", *TRAIN, "--plot"], capsys)
    assert f"wrote {tmp_path / 'xor.trained.mdf.json'} and the loss curve {tmp_path / 'xor.loss.png'}" in text
    assert listing(tmp_path) == ["d.csv", "xor.loss.png", "xor.mdf.json", "xor.trained.mdf.json"]
    assert (tmp_path / "xor.loss.png").read_bytes().startswith(b"\x89PNG")
    (tmp_path / "o").mkdir()
    ok(["train", xor, "--data", tmp_path / "d.csv", *TRAIN, "--out", tmp_path / "o" / "t.json", "--plot"], capsys)
    assert listing(tmp_path / "o") == ["t.json", "xor.loss.png"]


def test_train_plot_into_a_missing_directory_writes_nothing(xor, tmp_path, capsys):
    (tmp_path / "d.csv").write_text(XOR_CSV)
    line = error_line(["train", xor, "--data", tmp_path / "d.csv", *TRAIN, "--plot", tmp_path / "no" / "l.png"],
                      capsys)
    assert str(tmp_path / "no" / "l.png") in line and "does not exist" in line
    assert listing(tmp_path) == ["d.csv", "xor.mdf.json"]


@NEEDS_DOT
def test_graph_defaults_to_stem_png(xor, tmp_path, capsys):
    assert ok(["graph", xor], capsys).strip() == f"wrote {tmp_path / 'xor.png'}"
    assert (tmp_path / "xor.png").read_bytes().startswith(b"\x89PNG")


# ------------------------------------------------------------------------------------------ loss plot

def test_loss_figure_has_minibatch_and_epoch_lines_and_a_full_title():
    losses = [1.0, 0.8, 0.5, 0.4, 0.3, 0.25]  # 3 epochs of 2 minibatches
    epoch = [0.9, 0.45, 0.275]
    fig = loss_figure(losses, epoch, model="xor_model", optimizer="adam", learning_rate=0.05, loss="mse",
                      minibatch_size=2)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2
    mini, mean = lines
    np.testing.assert_allclose(mini.get_xdata(), [0.5, 1, 1.5, 2, 2.5, 3])
    np.testing.assert_allclose(mini.get_ydata(), losses)
    np.testing.assert_allclose(mean.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(mean.get_ydata(), epoch)
    assert mean.get_linewidth() > mini.get_linewidth() and mini.get_alpha() < 1
    assert ax.get_title() == "xor_model: adam, lr 0.05, mse loss, minibatch 2, 3 epochs"
    assert ax.get_xlabel() == "epoch" and ax.get_yscale() == "linear"  # 0.25 .. 1: under 2 decades
    wide = loss_figure([1.0, 1e-3], [1.0, 1e-3], model="m", optimizer="sgd", learning_rate=0.5, loss="mse",
                       minibatch_size=4, stopped_early=True)
    assert wide.axes[0].get_yscale() == "log"  # 3 decades
    assert wide.axes[0].get_title().endswith("2 epochs (stopped early)")


# ------------------------------------------------------------------------------------------ help

def _subparsers(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                yield prefix + (name,), sp
                yield from _subparsers(sp, prefix + (name,))


def test_every_help_shows_defaults_and_describes_what_it_takes():
    commands = dict(_subparsers(build_parser()))
    assert {("data",), ("data", "template"), ("data", "check"), ("train",), ("graph",)} <= set(commands)
    for name, sp in commands.items():
        text = sp.format_help().split("\noptions:", 1)[1]
        for action in sp._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, (name, action.dest)
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                block = text.split("\n  " + ", ".join(action.option_strings), 1)[1].split("\n  -", 1)[0]
                assert "default" in block, (name, action.option_strings, block)


def test_help_texts_name_files_that_exist():
    from conftest import REPO

    texts = [build_parser().format_help()] + [sp.format_help() for _, sp in _subparsers(build_parser())]
    named = {m for t in texts for m in re.findall(r"examples/[\w.]+", t)}
    generated = {"examples/xor.template.npz", "examples/xor.template.csv", "examples/xor.trained.mdf.json",
                 "examples/xor.loss.png", "examples/xor.trained.onnx", "examples/xor.png",
                 "examples/xor.trained.mdf.yaml", "examples/xor.trained.out.npz"}
    assert {"examples/xor.mdf.json", "examples/xor_data.csv"} <= named
    for path in named - generated:
        assert (REPO / path).is_file(), path


def test_shipped_xor_data_is_the_xor_truth_table():
    from conftest import REPO

    arrays = read_csv(REPO / "examples" / "xor_data.csv", spec_of_program(load_program(REPO / "examples" /
                                                                                        "xor.mdf.json")))
    np.testing.assert_array_equal(arrays["input"], XOR_INPUTS)
    np.testing.assert_array_equal(arrays["output"], XOR_TARGETS)


# ------------------------------------------------------------------------------------------ errors name the file

def _argv(command: str, model: Path, tmp: Path) -> list:
    data = tmp / "d.csv"
    data.write_text(XOR_CSV)
    return {"validate": ["validate", model], "info": ["info", model], "run": ["run", model],
            "graph": ["graph", model, "--out", tmp / "g.dot"], "convert": ["convert", model, tmp / "o.yaml"],
            "train": ["train", model, "--data", data, *TRAIN, "--out", tmp / "t.json"],
            "data template": ["data", "template", model, "--out", tmp / "t.npz"],
            "data check": ["data", "check", model, "--data", data]}[command]


COMMANDS = ["validate", "info", "run", "graph", "convert", "train", "data template", "data check"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_names_a_missing_or_unreadable_model_file(command, tmp_path, capsys):
    missing = tmp_path / "missing.json"
    assert error_line(_argv(command, missing, tmp_path), capsys).startswith(f"error: {missing}: ")
    text = tmp_path / "model.txt"
    text.write_text("{}")
    line = error_line(_argv(command, text, tmp_path), capsys)
    assert line.startswith(f"error: {text}: unsupported file extension '.txt'"), line
    broken = tmp_path / "broken.json"
    broken.write_text('{"m": {"format": "ModECI MDF v0.4",\n  "graphs": [1, }}')
    line = error_line(_argv(command, broken, tmp_path), capsys)
    assert line.startswith(f"error: {broken}:2:"), line
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "o.yaml").exists()


def test_a_misspelled_data_command_names_the_closest_one(capsys):
    line = error_line(["data", "tempalte", "model.json"], capsys)
    assert "unknown mdfbridge data command 'tempalte'" in line and "did you mean 'template'?" in line


def test_sequence_models_take_time_steps_and_refuse_csv(tmp_path):
    from mdfbridge.data_files import DataSpec, template_arrays, write_template
    from mdfbridge.errors import DataError

    spec = DataSpec(inputs={"x": (3,)}, outputs={"h": (2,)}, sequence=True, model="model 'gru'")
    inputs, targets = template_arrays(spec, trials=4, time_steps=6)
    assert inputs["x"].shape == (4, 6, 3) and targets["h"].shape == (4, 6, 2)
    (tmp_path / "d.csv").write_text("x[0],x[1],x[2],h[0],h[1]\n0,0,0,0,0\n")
    with pytest.raises(DataError, match=r"d.csv: model 'gru' takes \(trials, time steps, ...\).*\.npz"):
        read_csv(tmp_path / "d.csv", spec)
    with pytest.raises(DataError, match=r"csv file cannot hold them"):
        write_template(spec, tmp_path / "t.csv", "csv")
    assert not (tmp_path / "t.csv").exists()
    written = write_template(spec, tmp_path / "t.npz", "npz", trials=2, time_steps=3)
    assert [(w.name, w.shape, w.role) for w in written] == [("x", (2, 3, 3), "input"), ("h", (2, 3, 2), "target")]


def test_csv_units_of_a_multi_axis_node_are_in_c_order(tmp_path):
    from mdfbridge.data_files import DataSpec, column_names

    spec = DataSpec(inputs={"m": (2, 3)}, outputs={"y": ()})
    assert column_names("m", (2, 3)) == [f"m[{i}]" for i in range(6)] and column_names("y", ()) == ["y"]
    values = np.arange(12.0).reshape(2, 6)
    (tmp_path / "d.csv").write_text("y," + ",".join(f"m[{i}]" for i in range(6)) + "\n"
                                    + "\n".join("7," + ",".join(map(str, r)) for r in values))
    arrays = read_csv(tmp_path / "d.csv", spec)
    np.testing.assert_array_equal(arrays["m"], values.reshape(2, 2, 3))
    np.testing.assert_array_equal(arrays["y"], [7.0, 7.0])


def test_plot_takes_a_png_name(xor, tmp_path, capsys):
    (tmp_path / "d.csv").write_text(XOR_CSV)
    line = error_line(["train", "--data", tmp_path / "d.csv", *TRAIN, "--plot", xor, xor], capsys)
    assert "expected a .png file name" in line
    assert listing(tmp_path) == ["d.csv", "xor.mdf.json"]
