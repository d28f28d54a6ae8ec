"""One atomic writer for every file mdfbridge writes (MDF documents, ONNX models, .pt/.npz/.npy/.csv files, loss
plots, graph drawings).

A write goes to a temporary file in the folder of the file it replaces, is flushed and fsynced, given the target's
permissions (and, where allowed, its owner and group), renamed over the target (`os.replace`, atomic on POSIX),
and the folder is fsynced. So a reader, or a second writer of the same file, only ever sees the old file or one
complete new one; a failure (full disk, read-only folder or filesystem, an exception while serialising,
SIGTERM/SIGINT) leaves the target as it was and removes the temporary file.

- A symbolic link is written through: its target is replaced and the link stays a link (as editors do).
- A read-only target (no write permission; for root: no write bit at all) is refused, as `cp` refuses it, unless
  forced (`force=True`, the CLI's `--force`, or inside `replacing_read_only()`); a forced write keeps the mode.
- An existing target that is not a regular file (a folder, a device, a FIFO) is refused.
- Temporary files are named `.<target name>.mdfbridge-<host>-<pid>-<random>.tmp`; one left behind by a killed
  run (its process no longer alive on this host, or older than STALE_AFTER_S) is removed by the next write of
  the same target.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import logging
import os
import re
import secrets
import signal
import socket
import stat
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Union

from .errors import DocumentError

__all__ = ["STALE_AFTER_S", "TEMP_TAG", "atomic_write", "atomic_write_bytes", "check_writable", "replacing_read_only",
           "stale_temp_files", "remove_stale_temp_files", "temp_file_pattern"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

TEMP_TAG = "mdfbridge"
STALE_AFTER_S = 3600.0  # a temporary file this old is stale even if a process with its pid is alive (pid reuse)
_CLEANED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_FORCE: contextvars.ContextVar[bool] = contextvars.ContextVar("mdfbridge_force", default=False)


@contextlib.contextmanager
def replacing_read_only(enabled: bool = True) -> Iterator[None]:
    """Within the block, writes replace read-only targets too (what the CLI's --force does).

    enabled: whether to allow it (default True; False leaves the current setting)."""
    token = _FORCE.set(_FORCE.get() or enabled)
    try:
        yield
    finally:
        _FORCE.reset(token)


# --------------------------------------------------------------------------------------------- temp file names

def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


_TEMP_TAIL = re.compile(r"^(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]{1,10})-(?P<rand>[0-9a-f]{8,32})\.tmp$")


def temp_file_pattern(target: PathLike) -> str:
    """The glob pattern of the temporary files a write of target makes (in target's folder).

    target: the file written (str or path-like; a symlink's own name, not its target's)."""
    return f".{Path(target).name}.{TEMP_TAG}-*.tmp"


def _temp_path(real: Path) -> Path:
    return real.with_name(f".{real.name}.{TEMP_TAG}-{_host_tag()}-{os.getpid()}-{secrets.token_hex(6)}.tmp")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, OSError):
        return False
    return True


def stale_temp_files(target: PathLike, *, now: Optional[float] = None) -> List[Path]:
    """The temporary files of earlier writes of target that no live writer owns: their process is gone (same host)
    or they are older than STALE_AFTER_S seconds.

    target: the file written (str or path-like; the real file, a symlink is not followed here); now: the time to
    measure ages from (default None: time.time())."""
    real = Path(target)
    prefix = f".{real.name}.{TEMP_TAG}-"
    now = time.time() if now is None else now
    host = _host_tag()
    found: List[Path] = []
    try:
        entries = list(os.scandir(real.parent if str(real.parent) else "."))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = _TEMP_TAIL.match(entry.name[len(prefix):])
        if match is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        pid = int(match["pid"])
        mine = match["host"] == host
        gone = mine and pid != os.getpid() and not _pid_alive(pid)
        if gone or now - st.st_mtime > STALE_AFTER_S:
            found.append(Path(entry.path))
    return found


def remove_stale_temp_files(target: PathLike) -> int:
    """Remove stale_temp_files(target); returns how many were removed (failures are logged, not raised).

    target: the file written (str or path-like)."""
    removed = 0
    for path in stale_temp_files(target):
        try:
            os.unlink(path)
            removed += 1
            logger.info("removed %s, a temporary file a killed write of %s left", path, target)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not remove stale temporary file %s: %s", path, exc.strerror or exc)
    return removed


# --------------------------------------------------------------------------------------------- target checks

def _resolve(target: Path, shown: str) -> Path:
    """The file a write of target replaces: target itself, or the end of its symlink chain."""
    if not os.path.islink(target):
        return target
    real = Path(os.path.realpath(target))
    if os.path.islink(real):  # realpath stops on a loop
        raise DocumentError("cannot write file: a loop of symbolic links", path=shown)
    logger.debug("writing %s through its symbolic link to %s", shown, real)
    return real


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _read_only(real: Path, st: os.stat_result) -> bool:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return not st.st_mode & 0o222  # root may write anything: refuse what nobody may write, as cp -i warns
    return not os.access(real, os.W_OK)


def _existing(real: Path, shown: str, force: bool) -> Optional[os.stat_result]:
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DocumentError(f"cannot write file: {exc.strerror or exc}", path=shown) from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise DocumentError(f"is {kind}, not a regular file; refusing to replace it", path=shown)
    if not force and _read_only(real, st):
        raise DocumentError("is read-only (use --force to replace it)", path=shown)
    if st.st_nlink > 1:
        logger.warning("%s has %d hard links: the others keep the old contents", shown, st.st_nlink)
    return st


def check_writable(target: PathLike, *, force: bool = False) -> Path:
    """Check, before any work is done, that a write of target would be allowed (what atomic_write checks first:
    not read-only unless forced, a regular file if it exists, no symlink loop); returns the file that would be
    replaced (a symlink's target).

    target: the file (str or path-like); force: allow a read-only target (default False; also on inside
    `replacing_read_only()`). Raises DocumentError as atomic_write would."""
    shown = os.fspath(target)
    real = _resolve(Path(shown), shown)
    _existing(real, shown, force or _FORCE.get())
    return real


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _keep_owner(fd: int, st: os.stat_result, shown: str) -> None:
    if not hasattr(os, "fchown"):  # pragma: no cover - Windows
        return
    own = os.fstat(fd)
    if (own.st_uid, own.st_gid) == (st.st_uid, st.st_gid):
        return
    for uid in (st.st_uid, -1):
        try:
            os.fchown(fd, uid, st.st_gid)
            return
        except PermissionError:
            continue
    logger.warning("%s: could not keep its owner and group (uid %d, gid %d)", shown, st.st_uid, st.st_gid)


def _fsync_dir(directory: Path) -> None:
    try:  # makes the rename durable; not possible everywhere (e.g. Windows)
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------- signals

class _Signalled(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _TempGuard:
    """Removes the temp file on any exception and on SIGTERM/SIGINT, then re-delivers the signal to the handler
    installed before (the default one ends the process by the signal; Python's SIGINT one raises
    KeyboardInterrupt). Handlers are installed only for the duration of the write, in the main thread."""

    def __init__(self, tmp: Path, shown: str) -> None:
        self.tmp, self.shown = tmp, shown
        self.done = False
        self.armed = False
        self.pending: List[int] = []
        self.previous: Dict[int, Any] = {}

    def _handler(self, signum: int, frame: Optional[FrameType]) -> None:
        self.pending.append(signum)
        if self.armed:
            self.armed = False
            raise _Signalled(signum)

    def __enter__(self) -> "_TempGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in _CLEANED_SIGNALS:
                try:
                    prev = signal.getsignal(sig)
                    if prev in (signal.SIG_IGN, None):  # ignored, or a handler Python cannot restore
                        continue
                    signal.signal(sig, self._handler)
                except (ValueError, OSError):  # pragma: no cover - no signals here
                    continue
                self.previous[sig] = prev
        self.armed = True
        return self

    def remove_temp(self) -> None:
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - best effort
            logger.warning("could not remove temporary file %s: %s", self.tmp, exc.strerror or exc)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self.armed = False
        try:
            if exc_type is not None or not self.done:
                self.remove_temp()
        finally:
            for sig, prev in self.previous.items():
                signal.signal(sig, prev)
        if not self.pending:
            return False
        signum = self.pending[0]
        prev = self.previous.get(signum, signal.SIG_DFL)
        logger.debug("write of %s interrupted by signal %d: temporary file removed", self.tmp, signum)
        if prev == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # dies by the signal, as it would have without us
            raise SystemExit(128 + signum)  # pragma: no cover - only if the signal did not end the process
        if callable(prev):
            prev(signum, None)  # e.g. KeyboardInterrupt
        if self.done:
            return exc_type is _Signalled  # the file was written; the handler let the program go on
        if exc_type is _Signalled or exc_type is None:
            raise DocumentError(f"write interrupted by {signal.Signals(signum).name}; the file was left as it was",
                                path=self.shown)
        return False


# --------------------------------------------------------------------------------------------- writing

def atomic_write(target: PathLike, write: Callable[[IO[Any]], None], *, binary: bool = False,
                 force: bool = False) -> None:
    """Write a file through `write(fileobj)` into a temporary file beside it, fsync, then rename it over the
    target (see the module's docstring): on any failure the original file is untouched and no temporary file is
    left.

    target: the file (str or path-like; a symlink is written through); write: called once with the open file;
    binary: open it in binary mode (default False: text, UTF-8, '\\n' newlines); force: replace a read-only target
    too (default False: DocumentError '<target>: is read-only (use --force to replace it)'; also on inside
    `replacing_read_only()`). OS errors raise DocumentError naming the target."""
    shown = os.fspath(target)
    real = _resolve(Path(shown), shown)
    st = _existing(real, shown, force or _FORCE.get())
    remove_stale_temp_files(real)
    mode = stat.S_IMODE(st.st_mode) if st is not None else (0o666 & ~_current_umask())
    tmp = _temp_path(real)
    try:
        with _TempGuard(tmp, shown) as guard:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                         | getattr(os, "O_NOFOLLOW", 0), 0o600)
            opts: Dict[str, Any] = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8", "newline": "\n"}
            with os.fdopen(fd, **opts) as fh:
                write(fh)
                fh.flush()
                if st is not None:
                    _keep_owner(fh.fileno(), st, shown)
                if hasattr(os, "fchmod"):
                    os.fchmod(fh.fileno(), mode)
                else:  # pragma: no cover - Windows
                    os.chmod(tmp, mode)
                os.fsync(fh.fileno())
            os.replace(tmp, real)
            guard.done = True
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DocumentError("cannot write file: no space left on device (the file was left as it was)",
                                path=shown) from exc
        raise DocumentError(f"cannot write file: {exc.strerror or exc}", path=shown) from exc
    _fsync_dir(real.parent)


def atomic_write_bytes(target: PathLike, payload: bytes, *, force: bool = False) -> None:
    """Write bytes to target atomically (see atomic_write).

    target: the file (str or path-like); payload: its whole contents; force: replace a read-only target too
    (default False)."""
    def write(f: IO[Any]) -> None:
        f.write(payload)

    atomic_write(target, write, binary=True, force=force)
