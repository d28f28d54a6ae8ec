"""Compiled native code kept on disk between processes: the LLVM backend's object cache.

An entry is the object code MCJIT produced for one module, keyed by a SHA-256 of everything that decides it: the IR
text, the optimisation settings, the host's target (triple, CPU name and features) and the llvmlite/LLVM versions.
A later process compiling the same IR (the same model structure, settings and minibatch size: weights are not in
the IR) loads it instead of optimising and generating code again, as numba's `cache=True` and JAX's persistent
compilation cache do.

Where: $MDFBRIDGE_CACHE_DIR/llvm, else $XDG_CACHE_HOME/mdfbridge/llvm, else ~/.cache/mdfbridge/llvm;
MDFBRIDGE_LLVM_CACHE=0 (or off, no, false) turns it off. The folder is created private (0700); a folder or entry
another user owns or others may write to is not read (a warning says so), since its code would run in this
process. Each entry carries the SHA-256 of its code, checked before use (a torn or damaged entry is compiled
again and replaced); entries are written to a temporary file and renamed into place, and the oldest are removed
past MAX_ENTRIES. Nothing here is required: a folder that cannot be created or written only costs the compile.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

MAGIC = b"mdfbridge-llvm-object 1\n"
MAX_ENTRIES = 512  # entries kept (the oldest by modification time go first)
MAX_ENTRY_BYTES = 64 << 20  # an entry larger than this is not read


def cache_dir() -> Optional[Path]:
    """The cache folder from the environment (see the module docstring), or None when the cache is off."""
    if os.environ.get("MDFBRIDGE_LLVM_CACHE", "").strip().lower() in ("0", "off", "no", "false"):
        return None
    root = os.environ.get("MDFBRIDGE_CACHE_DIR")
    if root:
        return Path(root) / "llvm"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mdfbridge" / "llvm"


def cache_key(ir_text: str, *settings: object) -> str:
    """The SHA-256 (hex) of the IR text and whatever else decides the object code."""
    from llvmlite import __version__ as llvmlite_version
    from llvmlite import binding as llvm

    h = hashlib.sha256()
    target = (llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten())
    h.update(repr((llvmlite_version, llvm.llvm_version_info, target, settings)).encode())
    h.update(ir_text.encode())
    return h.hexdigest()


def _private(path: Path) -> bool:
    """Owned by this user and writable by no one else (on systems with owners)."""
    if not hasattr(os, "getuid"):
        return True
    st = path.stat()
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def load(key: str) -> Optional[bytes]:
    """The cached object code for `key`, or None (no cache, no entry, or one that fails its checks)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{key}.o"
    try:
        if not path.is_file():
            return None
        if not (_private(folder) and _private(path)):
            log.warning("llvm object cache: %s is not private to this user; not read (compiling instead)", path)
            return None
        if path.stat().st_size > MAX_ENTRY_BYTES:
            return None
        data = path.read_bytes()
    except OSError as exc:
        log.debug("llvm object cache: cannot read %s: %s", path, exc)
        return None
    head, _, rest = data.partition(b"\n")
    digest, _, code = rest.partition(b"\n")
    if head + b"\n" != MAGIC or hashlib.sha256(code).hexdigest().encode() != digest or not code:
        log.warning("llvm object cache: %s is damaged; compiling again", path)
        return None
    return code


def store(key: str, code: bytes) -> None:
    """Keep `code` under `key` (atomically; failures are logged and ignored)."""
    folder = cache_dir()
    if folder is None or not code:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _private(folder):
            log.warning("llvm object cache: %s is not private to this user; not written", folder)
            return
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".o", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + hashlib.sha256(code).hexdigest().encode() + b"\n" + code)
            os.replace(tmp, folder / f"{key}.o")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _trim(folder)
    except OSError as exc:
        log.debug("llvm object cache: cannot write to %s: %s", folder, exc)


def _trim(folder: Path) -> None:
    """Remove the oldest entries past MAX_ENTRIES, and temporary files a killed writer left over an hour ago."""
    import time

    entries = sorted(folder.glob("*.o"), key=lambda p: p.stat().st_mtime)
    stale = [p for p in entries if p.name.startswith(".tmp-") and p.stat().st_mtime < time.time() - 3600]
    kept = [p for p in entries if not p.name.startswith(".tmp-")]
    for old in stale + kept[:max(0, len(kept) - MAX_ENTRIES)]:
        old.unlink(missing_ok=True)
