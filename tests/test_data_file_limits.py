"""Data-file limits (issue 12, mdfbridge.data_files): formats detected by content, .npy headers checked before any
data are read (real dtypes only, never pickles, not 0-d, within max_elements, not truncated), .npz archives refused
from their zip headers past max_decompressed_bytes, regular files only; torch weight files that are not a
state_dict. (The CLI side: tests/data/hostile/data, run by tests/test_hostile_corpus.py.)"""
from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mdfbridge import limits
from mdfbridge.api import load_program
from mdfbridge.data_files import DataSpec, checked_inputs, read_arrays, read_csv, read_npy, read_npz, sniff_data_file
from mdfbridge.errors import DataError
from mdfbridge.limits import LimitError

HOSTILE = Path(__file__).resolve().parent / "data" / "hostile" / "data"
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
SPEC = DataSpec(inputs={"input": (2,)}, outputs={"output": (1,)})


def _npy(path, arr, **kw):
    with open(path, "wb") as f:
        np.save(f, arr, **kw)
    return path


def _npz(path, compressed=False, **arrays):
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)
    return path


# ------------------------------------------------------------------------------------------------ content

def test_formats_are_sniffed_from_content(tmp_path):
    assert sniff_data_file(_npz(tmp_path / "a.bin", input=X)) == ".npz"
    assert sniff_data_file(_npy(tmp_path / "b.bin", X)) == ".npy"
    (tmp_path / "c.bin").write_text("input[0],input[1]\n0,1\n", encoding="utf-8")
    assert sniff_data_file(tmp_path / "c.bin") == ".csv"
    (tmp_path / "d.bin").write_bytes(pickle.dumps(os.system))
    with pytest.raises(DataError, match="binary data that is neither"):
        sniff_data_file(tmp_path / "d.bin")


@pytest.mark.parametrize("name, writer, says", [
    ("x.npz", lambda p: _npy(p, X), "is an .npy array (one array) by its content, not an .npz archive"),
    ("x.npy", lambda p: _npz(p, input=X), "is an .npz archive (named arrays) by its content, not an .npy array"),
    ("x.npz", lambda p: p.write_text("input[0],input[1]\n0,1\n"), "is csv text"),
])
def test_a_name_that_disagrees_with_the_content_is_one_clear_error(tmp_path, name, writer, says):
    path = tmp_path / name
    writer(path)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: {re.escape(says)}"):
        read_arrays(path, SPEC)


def test_read_npz_on_an_npy_says_what_it_is(tmp_path):
    with pytest.raises(DataError, match="is an .npy array.*; name it .npy"):
        read_npz(_npy(tmp_path / "x.npz", X))


# ------------------------------------------------------------------------------------------------ .npy headers

@pytest.mark.parametrize("arr, says", [
    (X.astype(complex), r"is complex \(complex128\); expected real numbers"),
    (np.array([{"a": 1}, None], dtype=object), "holds Python objects"),
    (np.float64(1.0), "is 0-d"),
    (np.array([["a", "b"]]), "has dtype <U1; expected real numbers"),
    (np.zeros(3, dtype=[("a", "<f8"), ("b", "<i4")]), "has dtype .*expected real numbers"),
])
def test_what_is_not_real_numbers_in_trials_is_refused_from_the_npy_header(tmp_path, arr, says):
    path = _npy(tmp_path / "x.npy", arr, allow_pickle=True)
    with pytest.raises(DataError, match=says):
        read_npy(path)
    with pytest.raises(DataError, match="array 'input' " + says.split(" ", 1)[0]):
        read_npz(_npz(tmp_path / "x.npz", input=arr) if arr.dtype != object else _zip_with(tmp_path, arr))


def _zip_with(tmp_path, arr):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "o.npz", "w") as z:
        z.writestr("input.npy", buf.getvalue())
    return tmp_path / "o.npz"


@pytest.mark.parametrize("arr", [X, X.astype(">f8"), X.astype(np.int16), X > 0,
                                 np.asfortranarray(np.arange(6.).reshape(2, 3)),
                                 np.arange(24, dtype=np.float32).reshape(2, 3, 4)])
def test_real_arrays_read_back_exactly(tmp_path, arr):
    got = read_npy(_npy(tmp_path / "x.npy", arr))
    np.testing.assert_array_equal(got, arr)
    assert got.dtype == arr.dtype
    got = read_npz(_npz(tmp_path / "x.npz", compressed=True, input=arr))["input"]
    np.testing.assert_array_equal(got, arr)


def test_a_header_claiming_1e12_elements_is_refused_before_allocating(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 6, 10 ** 6)})
    path = tmp_path / "x.npy"
    path.write_bytes(buf.getvalue() + bytes(64))
    with pytest.raises(LimitError, match=r"shape \(1000000, 1000000\) would have 1,000,000,000,000 elements"):
        read_npy(path)


def test_truncated_files_and_members_are_one_error(tmp_path):
    whole = _npy(tmp_path / "w.npy", X).read_bytes()
    (tmp_path / "t.npy").write_bytes(whole[:-8])
    with pytest.raises(DataError, match=r"the array is truncated: its header says shape \(4, 2\)"):
        read_npy(tmp_path / "t.npy")
    archive = _npz(tmp_path / "w.npz", input=X).read_bytes()
    (tmp_path / "t.npz").write_bytes(archive[: len(archive) // 2])
    with pytest.raises(DataError, match="not a readable .npz archive"):
        read_npz(tmp_path / "t.npz")
    with zipfile.ZipFile(tmp_path / "m.npz", "w") as z:
        z.writestr("input.npy", whole[:-8])
    with pytest.raises(DataError, match="array 'input' is truncated"):
        read_npz(tmp_path / "m.npz")


# ------------------------------------------------------------------------------------------------ zip bombs

def test_an_archive_inflating_past_the_limit_is_refused_from_its_headers(tmp_path, monkeypatch):
    path = _npz(tmp_path / "z.npz", compressed=True, input=np.zeros((1 << 18, 2)))  # 4 MiB of zeros, ~4 KB deflated
    assert path.stat().st_size < 100_000

    def _no_inflating(*args, **kwargs):
        raise AssertionError("a member was opened")
    monkeypatch.setattr(zipfile.ZipFile, "open", _no_inflating)
    with limits.override(max_decompressed_bytes=1 << 20):
        with pytest.raises(LimitError, match=r"z.npz: archive would inflate to 4,194,4\d\d bytes, over the limit "
                                             "max_decompressed_bytes=1,048,576"):
            read_npz(path)


def test_the_generated_4_gib_bomb_is_refused_and_with_the_limit_raised_its_header_is(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("hostile_make_data", HOSTILE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._zip_bomb(tmp_path / "bomb.npz")
    assert (tmp_path / "bomb.npz").stat().st_size < 8 << 20
    with pytest.raises(LimitError, match="max_decompressed_bytes"):
        read_npz(tmp_path / "bomb.npz")
    with limits.override(max_decompressed_bytes=8 << 30):
        with pytest.raises(LimitError, match=r"shape \(268435456, 2\) would have 536,870,912 elements"):
            read_npz(tmp_path / "bomb.npz")


def test_the_bomb_generator_writes_a_valid_archive(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("hostile_make_data", HOSTILE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "BOMB_BYTES", 4 << 20)
    module._zip_bomb(tmp_path / "small.npz")
    with zipfile.ZipFile(tmp_path / "small.npz") as z:
        assert z.testzip() is None  # CRC and sizes as declared
    got = read_npz(tmp_path / "small.npz")["input"]
    assert got.shape == (1 << 18, 2) and not got.any()


# ------------------------------------------------------------------------------------------------ files

@pytest.mark.parametrize("name", ["f.npz", "f.npy", "f.csv"])
def test_fifos_devices_and_folders_are_refused_without_opening(tmp_path, hang_guard, name):
    os.mkfifo(tmp_path / name)
    with pytest.raises(DataError, match=r"is a FIFO \(named pipe\), expected a regular data file"):
        read_arrays(tmp_path / name, SPEC)
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / name).symlink_to("/dev/zero")
    with pytest.raises(DataError, match="is a character device"):
        read_arrays(tmp_path / "z" / name, SPEC)


def test_csv_cells_count_against_max_elements(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("input[0],input[1],output\n" + "0,1,1\n" * 10, encoding="utf-8")
    assert read_csv(path, SPEC)["input"].shape == (10, 2)
    with limits.override(max_elements=20):
        with pytest.raises(LimitError, match=r"the csv data \(10 rows x 3 columns\) would have 30 elements"):
            read_csv(path, SPEC)


def test_a_0d_input_through_checked_inputs_is_one_data_error(tmp_path):
    program = load_program(HOSTILE / "xor.mdf.json")
    with pytest.raises(DataError, match="array 'input' is 0-d"):
        checked_inputs(program, _npz(tmp_path / "d.npz", input=np.float64(1.0)))


# ------------------------------------------------------------------------------------------------ weights

class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mdfbridge_pwned_weights",))


@pytest.mark.parametrize("write, says", [
    (lambda p, torch: torch.save("hello", p), "holds str, not a state_dict"),
    (lambda p, torch: torch.save({"x": "y"}, p), "holds a dict that is not names -> tensors"),
    (lambda p, torch: p.write_bytes(pickle.dumps(_Payload())), "pickled Python objects, which are never loaded"),
])
def test_composition_load_of_a_pt_that_is_not_a_state_dict_says_so(tmp_path, write, says):
    torch = pytest.importorskip("torch")
    from mdfbridge.composition import Composition, TransferMechanism

    comp = Composition(pathways=[[TransferMechanism(name="a", size=2), TransferMechanism(name="b", size=2)]])
    path = tmp_path / "w.pt"
    write(path, torch)
    with pytest.raises(DataError, match=f"^{path}: .*{says}"):
        comp.load(path)
    assert not Path("/tmp/mdfbridge_pwned_weights").exists()


@pytest.mark.parametrize("header", [b"{'descr': '<f8', 'fortran_order': False, 'shape': [[[[", b"{'descr': (((",
                                    b"\xff\xfe", b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': "])
def test_a_broken_npy_header_is_one_clear_error(tmp_path, header):
    """numpy's header reader raises tokenize.TokenError on an unclosed bracket (found by the fuzz test)."""
    body = header + b" " * (63 - (10 + len(header)) % 64) + b"\n"
    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body)
    with pytest.raises(DataError, match="is not an .npy array"):
        read_npy(path)
