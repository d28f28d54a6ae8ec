"""Disk safety of every write (issue 12, items 6 and 7; mdfbridge/atomic.py): permissions and owner kept,
read-only targets refused unless forced, symlinks written through, file and folder fsynced, the temp file removed
on errors and on SIGTERM/SIGINT, stale temp files of killed runs removed by the next write, concurrent writers
never interleave, and kill -9 never leaves a torn target."""
from __future__ import annotations

import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mdfbridge import atomic
from mdfbridge.atomic import atomic_write, atomic_write_bytes, replacing_read_only, stale_temp_files
from mdfbridge.cli import main
from mdfbridge.document import convert_document, load_document_dict, save_document
from mdfbridge.errors import DocumentError

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.mdf.json"
XOR_DATA = ROOT / "examples" / "xor_data.csv"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HANG_GUARD_S = 120


def temps(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------------ permissions, owner

def test_permissions_of_an_existing_target_are_kept(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "new.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640


@pytest.mark.skipif(not IS_ROOT, reason="only root may give a file to another owner")
def test_owner_and_group_are_kept(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    os.chown(target, 12345, 23456)
    atomic_write_bytes(target, b"new")
    st = target.stat()
    assert (st.st_uid, st.st_gid) == (12345, 23456)


# ------------------------------------------------------------------------------------------ read-only targets

def test_read_only_target_is_refused_and_untouched(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("keep")
    os.chmod(target, 0o444)
    with pytest.raises(DocumentError, match=r"m\.json: is read-only \(use --force to replace it\)"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "keep"
    assert temps(tmp_path) == []


def test_force_replaces_a_read_only_target_and_keeps_its_mode(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    os.chmod(target, 0o444)
    atomic_write_bytes(target, b"new", force=True)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o444
    os.chmod(target, 0o400)
    with replacing_read_only():
        atomic_write_bytes(target, b"newer")
    assert target.read_bytes() == b"newer"
    with pytest.raises(DocumentError, match="is read-only"):  # the block's setting ended with it
        atomic_write_bytes(target, b"newest")


def test_save_and_convert_take_force(tmp_path):
    data = load_document_dict(XOR)
    target = tmp_path / "m.yaml"
    target.write_text("old: 1\n")
    os.chmod(target, 0o444)
    with pytest.raises(DocumentError, match="is read-only"):
        save_document(data, target)
    with pytest.raises(DocumentError, match="is read-only"):
        convert_document(XOR, target)
    assert target.read_text() == "old: 1\n"
    convert_document(XOR, target, force=True)
    assert load_document_dict(target) == data


def test_cli_refuses_a_read_only_target_with_one_line_and_force_replaces_it(tmp_path, capsys):
    target = tmp_path / "out.yaml"
    target.write_text("old: 1\n")
    os.chmod(target, 0o444)
    assert main(["convert", str(XOR), str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {target}: is read-only (use --force to replace it)\n"
    assert target.read_text() == "old: 1\n"
    assert main(["convert", str(XOR), str(target), "--force"]) == 0
    assert load_document_dict(target) == load_document_dict(XOR)
    assert stat.S_IMODE(target.stat().st_mode) == 0o444


def test_train_in_place_refuses_a_read_only_model_unless_forced(tmp_path, capsys):
    model = tmp_path / "xor.mdf.json"
    model.write_bytes(XOR.read_bytes())
    os.chmod(model, 0o444)
    argv = ["train", str(model), "--data", str(XOR_DATA), "--epochs", "2", "--in-place", "--quiet"]
    assert main(argv) == 2
    assert "is read-only (use --force to replace it)" in capsys.readouterr().err
    assert model.read_bytes() == XOR.read_bytes()
    assert main(argv + ["--force"]) == 0
    assert model.read_bytes() != XOR.read_bytes()
    assert stat.S_IMODE(model.stat().st_mode) == 0o444
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xor.mdf.json"]


def test_train_refuses_a_read_only_target_before_training(tmp_path, monkeypatch, capsys):
    import mdfbridge.learning

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the target")

    monkeypatch.setattr(mdfbridge.learning, "train_program", no_training)
    model = tmp_path / "xor.mdf.json"
    model.write_bytes(XOR.read_bytes())
    os.chmod(model, 0o444)
    assert main(["train", str(model), "--data", str(XOR_DATA), "--in-place", "--quiet"]) == 2
    assert capsys.readouterr().err.endswith("is read-only (use --force to replace it)\n")
    plot = tmp_path / "loss.png"
    plot.write_bytes(b"png")
    os.chmod(plot, 0o444)
    out = tmp_path / "out.mdf.json"
    assert main(["train", str(model), "--data", str(XOR_DATA), "--out", str(out), "--plot", str(plot)]) == 2
    assert "loss.png: is read-only" in capsys.readouterr().err
    assert not out.exists()


def test_check_writable_names_the_file_a_write_replaces(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("x")
    link = tmp_path / "link.json"
    link.symlink_to("real.json")
    assert atomic.check_writable(link) == real
    assert atomic.check_writable(tmp_path / "new.json") == tmp_path / "new.json"
    os.chmod(real, 0o444)
    with pytest.raises(DocumentError, match="link.json: is read-only"):
        atomic.check_writable(link)
    assert atomic.check_writable(link, force=True) == real


@pytest.mark.skipif(IS_ROOT, reason="root may write into a read-only folder")
def test_read_only_folder_is_one_clean_error(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("keep")
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(DocumentError, match="cannot write file: Permission denied"):
            atomic_write_bytes(target, b"new")
    finally:
        os.chmod(tmp_path, 0o755)
    assert target.read_text() == "keep"


def test_not_a_regular_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(DocumentError, match="is a FIFO, not a regular file"):
        atomic_write_bytes(tmp_path / "fifo.json", b"x")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(DocumentError, match="is a directory, not a regular file"):
        atomic_write_bytes(tmp_path / "dir.json", b"x")
    assert stat.S_ISFIFO((tmp_path / "fifo.json").lstat().st_mode)


# ------------------------------------------------------------------------------------------ symbolic links

def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "m.json"
    real.write_text("old")
    os.chmod(real, 0o600)
    link = tmp_path / "link.json"
    link.symlink_to(Path("real") / "m.json")
    chain = tmp_path / "chain.json"
    chain.symlink_to("link.json")
    atomic_write_bytes(chain, b"new")
    assert chain.is_symlink() and link.is_symlink()
    assert os.readlink(link) == str(Path("real") / "m.json")
    assert real.read_bytes() == b"new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert temps(tmp_path) == [] and temps(tmp_path / "real") == []


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to("made.json")
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and (tmp_path / "made.json").read_bytes() == b"new"


def test_a_symlink_loop_is_refused(tmp_path):
    loop = tmp_path / "loop.json"
    loop.symlink_to("loop.json")
    with pytest.raises(DocumentError, match="loop of symbolic links"):
        atomic_write_bytes(loop, b"x")
    assert loop.is_symlink()


def test_train_in_place_on_a_symlinked_model_updates_the_link_target(tmp_path, capsys):
    (tmp_path / "models").mkdir()
    real = tmp_path / "models" / "xor.mdf.json"
    real.write_bytes(XOR.read_bytes())
    link = tmp_path / "xor.mdf.json"
    link.symlink_to(Path("models") / "xor.mdf.json")
    assert main(["train", str(link), "--data", str(XOR_DATA), "--epochs", "2", "--in-place", "--quiet"]) == 0
    assert link.is_symlink()
    assert real.read_bytes() != XOR.read_bytes()
    assert load_document_dict(link) == load_document_dict(real)


# ------------------------------------------------------------------------------------------ fsync, errors

def test_file_and_folder_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(stat.S_IFMT(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording_fsync)
    atomic_write_bytes(tmp_path / "m.bin", b"payload")
    assert synced == [stat.S_IFREG, stat.S_IFDIR]


def test_temp_file_is_removed_on_an_exception(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("keep")

    def failing(f):
        f.write("partial")
        raise RuntimeError("serialiser broke")

    with pytest.raises(RuntimeError, match="serialiser broke"):
        atomic_write(target, failing)
    assert target.read_text() == "keep"
    assert temps(tmp_path) == []


def test_a_full_disk_is_one_clean_error(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("keep")

    def full(f):
        f.write("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DocumentError, match=r"m\.json: cannot write file: no space left on device"):
        atomic_write(target, full)
    assert target.read_text() == "keep"
    assert temps(tmp_path) == []


def test_signal_handlers_are_restored_after_a_write(tmp_path):
    def mine(signum, frame):  # pragma: no cover - never called
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        atomic_write_bytes(tmp_path / "m.bin", b"x")
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, before)


SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from mdfbridge.atomic import atomic_write
    def write(f):
        f.write("partial " * 1000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
    try:
        atomic_write(sys.argv[1], write)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(7)
""")


@pytest.mark.parametrize("signum,returncode", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 7)])
def test_temp_file_is_removed_on_a_signal_and_the_signal_takes_effect(tmp_path, signum, returncode):
    target = tmp_path / "m.json"
    target.write_text("keep")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                            env=child_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        assert len(temps(tmp_path)) == 1
        proc.send_signal(signum)
        proc.wait(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == returncode
    assert target.read_text() == "keep"
    assert temps(tmp_path) == []


# ------------------------------------------------------------------------------------------ stale temp files

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "m.json"
    host = atomic._host_tag()
    dead = tmp_path / f".m.json.mdfbridge-{host}-{_dead_pid()}-0123456789ab.tmp"
    old = tmp_path / f".m.json.mdfbridge-{host}-{os.getppid()}-00000000aaaa.tmp"
    live = tmp_path / f".m.json.mdfbridge-{host}-{os.getppid()}-11111111bbbb.tmp"   # a live writer's
    other_host = tmp_path / ".m.json.mdfbridge-ffffffff-1-22222222cccc.tmp"         # perhaps alive elsewhere
    other_target = tmp_path / f".n.json.mdfbridge-{host}-{_dead_pid()}-33333333dddd.tmp"
    not_ours = tmp_path / ".m.json.notes.tmp"
    for p in (dead, old, live, other_host, other_target, not_ours):
        p.write_text("partial")
    long_ago = time.time() - atomic.STALE_AFTER_S - 60
    os.utime(old, (long_ago, long_ago))
    assert sorted(stale_temp_files(target)) == sorted([dead, old])
    atomic_write_bytes(target, b"new")
    assert temps(tmp_path) == sorted(p.name for p in (live, other_host, other_target, not_ours))
    assert target.read_bytes() == b"new"


def test_temp_file_names_are_recognisable(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def recording_replace(src, dst):
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", recording_replace)
    atomic_write_bytes(tmp_path / "m.json", b"x")
    assert len(seen) == 1
    assert seen[0].startswith(f".m.json.mdfbridge-{atomic._host_tag()}-{os.getpid()}-")
    assert Path(tmp_path / seen[0]).match(atomic.temp_file_pattern(tmp_path / "m.json"))


# ------------------------------------------------------------------------------------------ concurrency, kill -9

CONCURRENT_WRITER = textwrap.dedent("""
    import sys
    from mdfbridge.atomic import atomic_write
    target, tag, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    line = (tag * 64 + "\\n")
    def write(f):
        f.write("[\\n")
        for i in range(20000):           # ~1.3 MB, many write calls: interleaving would show
            f.write('"' + line[:-1] + '",\\n')
        f.write('"' + tag + '"]\\n')
    for _ in range(rounds):
        atomic_write(target, write)
""")


def _expected(tag: str) -> list:
    return [tag * 64] * 20000 + [tag]


def test_concurrent_writers_never_interleave(tmp_path):
    target = tmp_path / "shared.json"
    tags = ["a", "b", "c"]
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(target), t, "12"], env=child_env())
             for t in tags]
    reads = 0
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if target.exists():
                data = json.loads(target.read_text())  # a reader always sees one complete document
                assert data in [_expected(t) for t in tags]
                reads += 1
            time.sleep(0.01)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert json.loads(target.read_text()) in [_expected(t) for t in tags]
    assert reads > 0
    assert temps(tmp_path) == []


KILLED_WRITER = textwrap.dedent("""
    import sys
    from mdfbridge.atomic import atomic_write
    def write(f):
        print("writing", flush=True)
        for i in range(200):
            f.write("x" * 10000 + "\\n")
    while True:
        atomic_write(sys.argv[1], write)
""")


def test_kill_9_never_tears_the_target_and_the_next_write_cleans_up(tmp_path):
    target = tmp_path / "m.txt"
    complete = "x" * 10000 + "\n"
    rng = random.Random(12)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE,
                                text=True, env=child_env())
        try:
            assert proc.stdout is not None
            for _ in range(rng.randint(1, 4)):
                assert proc.stdout.readline().strip() == "writing"
            time.sleep(rng.uniform(0, 0.02))
        finally:
            proc.kill()
            proc.wait()
        left = temps(tmp_path)
        assert len(left) <= 1 and all(f"-{proc.pid}-" in name for name in left)
        if target.exists():
            text = target.read_text()
            assert text == complete * 200, "a torn target"
    atomic_write_bytes(target, b"final")
    assert temps(tmp_path) == []
    assert target.read_bytes() == b"final"


def _ballasted(tmp_path: Path, name: str, seed: int, size: int = 120) -> Path:
    """examples/xor.mdf.json with a size x size parameter of seeded values on node hidden (a larger document)."""
    data = json.loads(XOR.read_text(encoding="utf-8"))
    graph = next(iter(next(iter(data.values()))["graphs"].values()))
    rng = random.Random(seed)
    graph["nodes"]["hidden"].setdefault("parameters", {})["ballast"] = {
        "value": [[round(rng.random(), 6) for _ in range(size)] for _ in range(size)]}
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=4), encoding="utf-8")
    return path


CONVERTER = textwrap.dedent("""
    import sys
    from mdfbridge.document import convert_document
    for _ in range(int(sys.argv[3])):
        convert_document(sys.argv[1], sys.argv[2])
""")


@pytest.mark.slow  # three processes convert a document four times each
def test_concurrent_converts_onto_one_file_end_with_one_of_the_documents(tmp_path):
    sources = [_ballasted(tmp_path, f"src{i}.mdf.json", seed=i) for i in range(3)]
    expected = [load_document_dict(s) for s in sources]
    target = tmp_path / "out.mdf.yaml"
    procs = [subprocess.Popen([sys.executable, "-c", CONVERTER, str(s), str(target), "4"], env=child_env())
             for s in sources]
    try:
        for p in procs:
            p.wait(timeout=HANG_GUARD_S * 2)
            if target.exists():
                assert load_document_dict(target) in expected
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert load_document_dict(target) in expected
    assert temps(tmp_path) == []


@pytest.mark.slow  # five CLI runs
def test_kill_9_during_cli_convert_leaves_at_most_its_own_temp_file(tmp_path):
    src = _ballasted(tmp_path, "src.mdf.json", seed=0, size=200)
    target = tmp_path / "out.mdf.yaml"
    assert main(["convert", str(src), str(target)]) == 0
    complete = target.read_bytes()
    rng = random.Random(3)
    killed_in_write = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "mdfbridge.cli", "convert", str(src), str(target)],
                                env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + HANG_GUARD_S
            while proc.poll() is None and time.monotonic() < deadline:
                if any(f"-{proc.pid}-" in n for n in temps(tmp_path)):  # its write began
                    time.sleep(rng.uniform(0, 0.3))
                    break
                time.sleep(0.002)
        finally:
            proc.kill()
            proc.wait()
        left = temps(tmp_path)
        killed_in_write += bool(left)
        assert all(f"-{proc.pid}-" in name for name in left) and len(left) <= 1
        assert target.read_bytes() == complete, "a torn target"
    assert killed_in_write >= 1  # the kills did land inside writes (else the test shows nothing)
    assert main(["convert", str(src), str(target)]) == 0
    assert temps(tmp_path) == []
    assert target.read_bytes() == complete
