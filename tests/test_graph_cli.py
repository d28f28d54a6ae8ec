"""`mdfbridge graph` (graphviz drawings of MDF and ONNX files), `mdfbridge info` on ONNX files, and `convert`
directions involving .pt files (issue 6.6)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import make_xor

from mdfbridge.cli import main
from mdfbridge.exporters.onnx import program_to_onnx, save_onnx

NEEDS_DOT = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="graphviz's `dot` program is not installed (apt-get install graphviz)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The XOR composition as MDF JSON and as ONNX."""
    d = tmp_path_factory.mktemp("graph")
    xor = make_xor()
    mdf = d / "xor.mdf.json"
    xor.save_mdf(str(mdf))
    onx = d / "xor.onnx"
    save_onnx(program_to_onnx(xor.program()), onx)
    return {"mdf": mdf, "onnx": onx}


def error_line(capsys) -> str:
    """The one `error: ...` line a failed command wrote."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    return lines[0]


# ------------------------------------------------------------------------------------------- graph

@NEEDS_DOT
@pytest.mark.parametrize("kind", ["mdf", "onnx"])
@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_graph_renders_mdf_and_onnx(files, kind, fmt, tmp_path, capsys):
    out = tmp_path / f"g.{fmt}"
    assert main(["graph", str(files[kind]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    data = out.read_bytes()
    if fmt == "png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    else:
        text = data.decode()
        assert "<svg" in text
        for name in (("input_to_hidden", "hidden_to_output", "bias_hidden") if kind == "mdf" else
                     ("MatMul", "Sigmoid", "float [batch, 2]")):
            assert name in text


def test_graph_dot_source_needs_no_dot_program(files, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    out = tmp_path / "g.dot"
    assert main(["graph", str(files["mdf"]), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("digraph") and "input_to_hidden" in text and "->" in text


@pytest.mark.parametrize("kind", ["mdf", "onnx"])
def test_graph_without_dot_is_one_clear_line(files, kind, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("dot") is None
    out = tmp_path / "g.png"
    assert main(["graph", str(files[kind]), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert "'dot' program is not installed" in line and "apt-get install graphviz" in line and str(out) in line
    assert not out.exists()


def test_graph_bad_extension_and_missing_directory(files, tmp_path, capsys):
    assert main(["graph", str(files["mdf"]), "--out", str(tmp_path / "g.jpeg")]) == 2
    assert "unsupported extension '.jpeg'" in error_line(capsys)
    assert main(["graph", str(files["mdf"]), "--out", str(tmp_path / "nope" / "g.dot")]) == 2
    assert "does not exist" in error_line(capsys)
    assert main(["graph", str(files["mdf"]), "--out", str(tmp_path / "g.dot"), "--graph", "other"]) == 2
    assert "no graph 'other'" in error_line(capsys)


# ------------------------------------------------------------------------------------------- info on ONNX

def test_info_on_onnx_lists_io_ops_opset_and_weights(files, capsys):
    assert main(["info", str(files["onnx"])]) == 0
    out = capsys.readouterr().out
    model = onnx.load(str(files["onnx"]))
    n_values = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    assert f"ir_version {model.ir_version}" in out and "opset ai.onnx 17" in out
    assert "inputs: input float [batch, 2]" in out and "outputs: output float [batch, 1]" in out
    assert f"ops ({len(model.graph.node)} nodes): " in out and "MatMul x" in out and "Sigmoid x2" in out
    assert f"initializers: {len(model.graph.initializer)} ({n_values} parameter values)" in out
    assert main(["info", "-v", str(files["onnx"])]) == 0
    assert "input_to_hidden.matrix: shape (2, 10)" in capsys.readouterr().out


def test_info_on_a_broken_onnx_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    assert main(["info", str(bad)]) == 2
    assert "bad.onnx" in error_line(capsys)


# ------------------------------------------------------------------------------------------- convert and .pt

def test_convert_torch_imported_mdf_to_pt_loads_strictly_into_the_original_module(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from torch import nn

    from mdfbridge.api import save_mdf
    from mdfbridge.importers.pytorch import module_to_mdf

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3), nn.Softmax(dim=-1)).double()
    doc = module_to_mdf(module, (torch.randn(2, 4, dtype=torch.float64),))
    # change the weights in the document, as training would, to see them arrive in the module
    graph = next(iter(next(iter(doc.values()))["graphs"].values()))
    proj = next(nid for nid, n in graph["nodes"].items()
                if n.get("metadata", {}).get("mdfbridge", {}).get("role") == "projection")
    matrix = np.asarray(graph["nodes"][proj]["parameters"]["matrix"]["value"]) * 0.5
    graph["nodes"][proj]["parameters"]["matrix"]["value"] = matrix.tolist()
    mdf = tmp_path / "net.mdf.json"
    save_mdf(doc, mdf)
    pt = tmp_path / "net.pt"
    assert main(["convert", str(mdf), str(pt)]) == 0
    assert "original torch module" in capsys.readouterr().out
    fresh = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3), nn.Softmax(dim=-1)).double()
    fresh.load_state_dict(torch.load(pt), strict=True)
    want = {k: v.clone() for k, v in module.state_dict().items()}
    key = next(k for k, v in want.items() if v.dim() == 2 and torch.allclose(v * 0.5, torch.as_tensor(matrix).T))
    want[key] = want[key] * 0.5
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, want[k], rtol=0, atol=1e-15)


def test_convert_onnx_to_pt_writes_mdfbridge_module_weights(files, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from mdfbridge.importers.onnx import onnx_to_mdf
    from mdfbridge.importers.torch_module import program_to_module
    from mdfbridge.lowering import lower

    pt = tmp_path / "xor.pt"
    assert main(["convert", str(files["onnx"]), str(pt)]) == 0
    assert "mdfbridge's torch module" in capsys.readouterr().out
    module = program_to_module(lower(onnx_to_mdf(str(files["onnx"]))))
    module.load_state_dict(torch.load(pt), strict=True)


@pytest.mark.parametrize("src,dst,needle", [
    ("model.pt", "model.json", "weights only"),
    ("model.pt", "model.onnx", "weights only"),
    ("model.pt", "model.pt", "weights only"),
    ("xor.mdf.json", "model.tflite", "unsupported file extension '.tflite'"),
    ("xor.mdf.json", "model", "unsupported file extension '(none)'"),
    ("model.h5", "model.onnx", "unsupported file extension '.h5'"),
])
def test_convert_directions_that_make_no_sense_are_one_line(files, tmp_path, src, dst, needle, capsys):
    source = files["mdf"] if src == "xor.mdf.json" else tmp_path / src
    if not Path(source).exists():
        Path(source).write_bytes(b"\x00")
    assert main(["convert", str(source), str(tmp_path / dst)]) == 2
    assert needle in error_line(capsys)
    assert not (tmp_path / dst).exists() or (tmp_path / dst) == Path(source)
