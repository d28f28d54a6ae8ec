"""Hostile parser inputs too big or too odd to commit (tests/hostile_runner.py calls make(gen)): 100,000-deep
nesting, a FIFO, a symlink to /dev/zero, a folder named like a model, a 5,001-digit shape."""
from __future__ import annotations

import os
from pathlib import Path

BASE = Path(__file__).resolve().parent / "shape_1e12.json"


def make(gen: Path) -> None:
    """Write the generated probes into gen (idempotent)."""
    deep = 100_000
    (gen / "deep_100000.json").write_text("[" * deep + "]" * deep, encoding="utf-8")
    (gen / "deep_100000.yaml").write_text("[" * deep + "]" * deep + "\n", encoding="utf-8")
    (gen / "deep_1000_block.yaml").write_text("".join(" " * i + "a:\n" for i in range(1000)) + " " * 1000 + "b: 1\n",
                                              encoding="utf-8")
    (gen / "deep_100000_objects.json").write_text('{"a": ' * deep + "1" + "}" * deep, encoding="utf-8")
    (gen / "shape_5001_digits.json").write_text(
        BASE.read_text(encoding="utf-8").replace("[1000000, 1000000]", "[1" + "0" * 5000 + "]"), encoding="utf-8")
    for name, make_it in (("fifo.mdf.json", lambda p: os.mkfifo(p)),
                          ("devzero.mdf.json", lambda p: os.symlink("/dev/zero", p)),
                          ("devzero.mdf.yaml", lambda p: os.symlink("/dev/zero", p)),
                          ("folder.mdf.json", lambda p: os.mkdir(p))):
        path = gen / name
        if not os.path.lexists(path):
            make_it(path)
