"""Atomic writes: permissions follow the umask, data is synced before the rename, and no temporary
file outlives a failed, cancelled (SIGTERM, SIGHUP, SIGINT) or killed (SIGKILL) write."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import lffood
from lffood import h5schema
from lffood.io import atomic_path, remove_stale_temps, write_text_atomic
from lffood.runtime import signals_raise

SRC = str(Path(lffood.__file__).resolve().parents[1])


def _python(script: str, *args, **kw) -> subprocess.Popen:
    """Start ``script`` in a fresh interpreter that imports this checkout's lffood."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


# --- permissions -------------------------------------------------------------------------------

UMASK_SCRIPT = """
    import json, os, sys, tempfile
    import numpy as np
    os.umask(int(sys.argv[2], 8))
    from lffood import h5schema
    from lffood.io import atomic_path, write_text_atomic
    d = sys.argv[1]
    with open(os.path.join(d, "plain.txt"), "w") as fh:
        fh.write("x")
    write_text_atomic(os.path.join(d, "text.txt"), "x")
    h5schema.write_scores(os.path.join(d, "scores.h5"), {"test": np.zeros(2)}, scorer="msp", params={},
                          features_file="f.h5")
    with atomic_path(os.path.join(d, "replaced.bin")) as tmp:  # a writer that swaps in its own 0600 file
        fd, other = tempfile.mkstemp(dir=d)
        os.write(fd, b"x")
        os.close(fd)
        os.replace(other, tmp)
    print(json.dumps({name: os.stat(os.path.join(d, name)).st_mode & 0o777 for name in sorted(os.listdir(d))}))
"""


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_permissions_follow_umask(tmp_path, umask):
    # in a subprocess: the umask is per process, and this one's must stay as it is
    proc = _python(UMASK_SCRIPT, tmp_path, oct(umask)[2:])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    modes = json.loads(out)
    expected = 0o666 & ~umask
    assert modes["plain.txt"] == expected, "the test directory applies a default ACL, not the umask"
    assert modes == {name: expected for name in ("plain.txt", "text.txt", "scores.h5", "scores.h5.sha256.json",
                                                 "replaced.bin")}, \
        {k: oct(v) for k, v in modes.items()}


# --- durability --------------------------------------------------------------------------------

def _write_bytes(path: Path) -> bytes:
    data = b"payload " * 1000
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # the writer's own handle, closed before atomic_path syncs
            fh.write(data)
    return data


def _write_h5(path: Path) -> bytes:
    h5schema.write_scores(path, {"test": np.arange(100.0)}, scorer="msp", params={}, features_file="f.h5")
    return path.read_bytes()


@pytest.mark.parametrize("writer", [_write_bytes, _write_h5])
def test_data_synced_before_rename_and_directory_after(tmp_path, monkeypatch, writer):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino, st.st_size))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(src).name, Path(dst).name))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "out" / "a.h5"
    data = writer(target)
    final = target.stat()
    kinds = [e[0] for e in events]
    # an artifact's integrity manifest (lffood.integrity) follows it, written the same way
    assert kinds == ["file", "replace", "dir"] * (2 if writer is _write_h5 else 1), events
    if writer is _write_h5:
        assert events[4][2] == "a.h5.sha256.json" and events[4][1].startswith(".a.h5.sha256.json.")
    # the file synced is the one renamed onto the target, complete when synced
    assert events[0][1] == final.st_ino and events[0][2] == len(data) == final.st_size
    assert events[1][2] == "a.h5" and events[1][1].startswith(".a.h5.")
    assert events[2][1] == target.parent.stat().st_ino


def test_failed_sync_fails_the_write_and_leaves_no_file(tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_text_atomic(tmp_path / "a.txt", "data")
    assert list(tmp_path.iterdir()) == []


# --- exceptions and signals --------------------------------------------------------------------

@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(143)])
def test_exception_removes_temp_and_keeps_previous_file(tmp_path, exc):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "old")
    with pytest.raises(type(exc)):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            assert tmp.exists()
            raise exc
    assert target.read_text() == "old"
    assert _temps(tmp_path) == []


SLOW_RULE = """
    import sys, time
    from types import SimpleNamespace
    from lffood.io import atomic_path
    from lffood.runtime import run_rule

    def main():
        with atomic_path(sys.argv[1]) as tmp:
            with open(tmp, "w") as fh:
                fh.write("first half")
                fh.flush()
                print(tmp, flush=True)  # tells the test that the write is under way
                time.sleep(60)
                fh.write("second half")

    run_rule(SimpleNamespace(log=[sys.argv[2]], rule="slow_write", wildcards={}), main)
"""


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGHUP, 128 + signal.SIGHUP),
                                         (signal.SIGINT, -signal.SIGINT)])
def test_signal_to_rule_removes_temp(tmp_path, sig, status):
    out, logs = tmp_path / "results", tmp_path / "logs"
    target, log = out / "slow.txt", logs / "slow.log"
    # the job starts with the default handling of the signal, as Snakemake's jobs do: a test run under
    # nohup or as a background job inherits an ignored SIGHUP or SIGINT, which run_rule keeps ignored
    # (as it should: test_signals_raise_converts_restores_and_keeps_ignored)
    proc = _python(SLOW_RULE, target, log, preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.parent == out and tmp.exists(), proc.communicate(timeout=30)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert not target.exists()
    assert list(out.iterdir()) == [], "the temporary file of the cancelled write remains"
    assert f"received {sig.name}" in log.read_text()


def test_signals_raise_converts_restores_and_keeps_ignored(tmp_path):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with signals_raise():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            with pytest.raises(SystemExit) as exc:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # interrupted by the handler
            assert exc.value.code == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGHUP, before[1])


# --- leftovers of killed writers ---------------------------------------------------------------

KILLED_WRITER = """
    import sys, time
    from lffood.io import atomic_path

    with atomic_path(sys.argv[1]) as tmp:
        with open(tmp, "w") as fh:
            fh.write("half")
            fh.flush()
            print(tmp, flush=True)
            time.sleep(60)
"""


def test_sigkill_leftover_removed_by_next_successful_write(tmp_path):
    target = tmp_path / "out.txt"
    proc = _python(KILLED_WRITER, target)
    leftover = Path(proc.stdout.readline().strip())
    proc.kill()  # SIGKILL: no handler runs, the temporary file stays
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert leftover.exists() and not target.exists()
    # file timestamps are coarse (a few ms): date the leftover back as if the job had died a minute ago
    past = time.time() - 60
    os.utime(leftover, (past, past))
    other_target_tmp = tmp_path / ".other.txt.abcdefgh.tmp.txt"  # a leftover of another target: not ours
    backup = tmp_path / "out.txt.bak"
    for p in (other_target_tmp, backup):
        p.write_text("keep")
        os.utime(p, (past, past))
    concurrent = tmp_path / ".out.txt.zzzzzzzz.tmp.txt"  # modified after our write began: spared
    concurrent.write_text("being written")
    os.utime(concurrent, (time.time() + 60, time.time() + 60))
    with pytest.raises(RuntimeError):  # a failed write does not clean up
        with atomic_path(target):
            raise RuntimeError
    assert leftover.exists()
    write_text_atomic(target, "complete")
    assert target.read_text() == "complete"
    assert not leftover.exists()
    assert other_target_tmp.exists() and backup.exists() and concurrent.exists()


def test_remove_stale_temps_matches_only_temps_of_the_target_older_than_the_write(tmp_path):
    past = time.time() - 60
    names = {
        ".a.h5.abcdefgh.tmp.h5": True,   # a temporary of a.h5
        ".a.h5.x1_y2z3w.tmp": True,      # with another suffix, still a.h5's
        ".a.h5.abc.tmp.h5": False,       # random part of the wrong length: not atomic_path's
        ".ba.h5.abcdefgh.tmp.h5": False,  # a temporary of ba.h5
        ".a.h5.abcdefgh.tmp.h5.keep/": False,  # a directory
        "a.h5": False,
        ".a.h5.abcdefgh.tmp.npz": "fresh",  # modified after the write began: a concurrent writer's
    }
    for name, what in names.items():
        p = tmp_path / name.rstrip("/")
        p.mkdir() if name.endswith("/") else p.write_text("x")
        if what != "fresh":
            os.utime(p, (past, past))
    cutoff = time.time_ns() - 10 ** 9
    removed = remove_stale_temps(tmp_path / "a.h5", older_than_ns=cutoff)
    assert sorted(p.name for p in removed) == sorted(n for n, what in names.items() if what is True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n.rstrip("/") for n, w in names.items() if w is not True)
