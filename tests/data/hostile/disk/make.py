"""Files for the disk-safety probes (issue 12, item 6), made at test time: read-only targets (git keeps no 0444
mode), a FIFO, a folder and a symlink loop in the place of an output file, and a model and its data to write from."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def make(gen: Path) -> None:
    """Fill gen: src.json and xor_data.csv (copies of the examples), ro.yaml / ro.onnx / ro.npz / ro.dot /
    ro_out.npz (mode 0444), ro_model.json (a read-only model for train --in-place), fifo.json (a FIFO),
    dir.json (a folder) and loop.json (a symbolic link to itself). Files already there are replaced (a run by an
    older checkout may have replaced the FIFO or the folder)."""
    for name in ("src.json", "xor_data.csv", "ro.yaml", "ro.onnx", "ro.npz", "ro.dot", "ro_out.npz", "ro_model.json",
                 "fifo.json", "dir.json", "loop.json"):
        _clear(gen / name)
    shutil.copyfile(EXAMPLES / "xor.mdf.json", gen / "src.json")
    shutil.copyfile(EXAMPLES / "xor_data.csv", gen / "xor_data.csv")
    for name in ("ro.yaml", "ro.onnx", "ro.npz", "ro.dot", "ro_out.npz"):
        (gen / name).write_bytes(b"read-only: keep me\n")
        os.chmod(gen / name, 0o444)
    shutil.copyfile(EXAMPLES / "xor.mdf.json", gen / "ro_model.json")
    os.chmod(gen / "ro_model.json", 0o444)
    os.mkfifo(gen / "fifo.json")
    (gen / "dir.json").mkdir()
    os.symlink("loop.json", gen / "loop.json")
