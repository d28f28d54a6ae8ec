"""Hostile data files too big or too odd to commit (tests/hostile_runner.py calls make(gen)): an .npz zip bomb
(one all-zeros float64 member of 4 GiB, deflated to a few MB, written streaming so this stays small in memory),
a FIFO, a symlink to /dev/zero and a folder, each named as a data file."""
from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import List, Tuple

import numpy as np

BOMB_BYTES = 4 << 30  # the zeros of the bomb's member (plus its 128-byte .npy header)
CHUNK = 1 << 20


def _affine_crc_of_zeros(n: int) -> Tuple[List[int], int]:
    """crc32(b"\\0" * n, c) as an affine map of c over GF(2): (32 columns, offset), for a power-of-two n, by
    doubling from one chunk (zlib has crc32_combine; Python does not expose it)."""
    zero = bytes(CHUNK)
    offset = zlib.crc32(zero, 0)
    columns = [zlib.crc32(zero, 1 << i) ^ offset for i in range(32)]
    size = CHUNK
    while size < n:
        def apply(c: int, cols: List[int] = columns, off: int = offset) -> int:
            out = off
            for i in range(32):
                if c >> i & 1:
                    out ^= cols[i]
            return out
        new_offset = apply(offset)
        columns = [apply(columns[i]) ^ apply(0) for i in range(32)]  # the linear part of g∘g
        offset, size = new_offset, size * 2
    return columns, offset


def _crc_zeros(crc: int, n: int) -> int:
    columns, offset = _affine_crc_of_zeros(n)
    out = offset
    for i in range(32):
        if crc >> i & 1:
            out ^= columns[i]
    return out


def _zip_bomb(path: Path) -> None:
    """One stored .npy member of (2**28, 2) float64 zeros, deflated: the deflate stream of a chunk of zeros after a
    full flush is the same every time, so it is computed once and repeated; the zip64 headers are written here."""
    header_io = io.BytesIO()
    np.lib.format.write_array_header_1_0(header_io, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (BOMB_BYTES // 16, 2)})
    header = header_io.getvalue()
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(bytes(CHUNK)) + comp.flush(zlib.Z_FULL_FLUSH)
    assert comp.compress(bytes(CHUNK)) + comp.flush(zlib.Z_FULL_FLUSH) == block
    last = comp.flush()
    repeats = BOMB_BYTES // CHUNK
    csize = len(first) + len(block) * repeats + len(last)
    usize = len(header) + BOMB_BYTES
    crc = _crc_zeros(zlib.crc32(header), BOMB_BYTES)
    name = b"input.npy"
    extra = struct.pack("<HHQQ", 1, 16, usize, csize)
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name),
                        len(extra)) + name + extra
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                          len(name), len(extra), 0, 0, 0, 0, 0) + name + extra
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        f.write(local + first)
        for _ in range(repeats):
            f.write(block)
        f.write(last)
        cd_offset = f.tell()
        f.write(central)
        eocd64 = f.tell()
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, len(central), cd_offset))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), min(cd_offset, 0xFFFFFFFF), 0))
    assert local and csize == cd_offset - len(local)
    os.replace(tmp, path)


def make(gen: Path) -> None:
    """Write the generated probes into gen (the zip bomb once: it takes some seconds)."""
    if not (gen / "zip_bomb.npz").exists():
        _zip_bomb(gen / "zip_bomb.npz")
    for name, make_it in (("fifo.npz", lambda p: os.mkfifo(p)), ("fifo.csv", lambda p: os.mkfifo(p)),
                          ("devzero.npy", lambda p: os.symlink("/dev/zero", p)),
                          ("devzero.csv", lambda p: os.symlink("/dev/zero", p)),
                          ("folder.npz", lambda p: os.mkdir(p))):
        path = gen / name
        if not os.path.lexists(path):
            make_it(path)
