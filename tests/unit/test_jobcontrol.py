"""No orphans, no second writer, no leftovers (lffood.jobcontrol): a job whose Snakemake dies stops by
itself and cleans up; a second writer of an output fails at once naming the process that holds it;
the temporary files of interrupted writes are removed at the next run's start unless a live job may
own them; the outputs of failed jobs get their metadata and modification times back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import lffood
from lffood import jobcontrol
from lffood.io import atomic_path, is_temp_name
from lffood.jobcontrol import (WORKFLOW_PID_ENV, KeptOutputs, OutputBusyError, busy_outputs, lock_path,
                               output_locks, outputs_not_kept, remove_interrupted_temps)

SRC = str(Path(lffood.__file__).resolve().parents[1])


def _python(script: str, *args, env=None, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie nobody reaps counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


# --- a job ends with its Snakemake -------------------------------------------------------------

# The job: a rule script (run_rule) writing its output slowly through atomic_path.
JOB = """
    import os, sys, time
    from types import SimpleNamespace
    from lffood.io import atomic_path
    from lffood.runtime import run_rule

    def main():
        with atomic_path(sys.argv[1]) as tmp:
            with open(tmp, "w") as fh:
                fh.write("first half")
                fh.flush()
                print(tmp, flush=True)
                time.sleep(120)
                fh.write("second half")

    print(os.getpid(), flush=True)
    run_rule(SimpleNamespace(log=[sys.argv[2]], rule="slow", wildcards={}, output=[sys.argv[1]]), main)
"""

# A stand-in for Snakemake: names itself as the Snakefile does and starts the job through a shell
# (which stays, between the two: the job's Snakemake is an ancestor, not its parent).
STARTER = """
    import subprocess, sys
    from lffood.jobcontrol import mark_workflow_process
    mark_workflow_process()
    subprocess.run(["/bin/sh", "-c", '"$0" -c "$1" "$2" "$3"; exit $?', sys.executable, *sys.argv[1:]])
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks the process tree through /proc")
def test_job_stops_and_cleans_up_when_its_snakemake_is_killed(tmp_path):
    target, log = tmp_path / "out" / "slow.txt", tmp_path / "slow.log"
    starter = _python(STARTER, textwrap.dedent(JOB), target, log, start_new_session=True)
    try:
        job = int(starter.stdout.readline())  # the job inherited the starter's stdout
        tmp = Path(starter.stdout.readline().strip())
        assert tmp.exists() and lock_path(target).exists()
        starter.kill()  # SIGKILL: the starter cannot pass anything on
        starter.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not _gone(job) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(job), "the job outlived the Snakemake that started it"
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of the starter's group
            os.killpg(starter.pid, signal.SIGKILL)
    text = log.read_text()
    assert f"(pid {starter.pid}) has ended: stopping the job" in text and "received SIGTERM" in text
    assert not target.exists() and not tmp.exists()  # the atomic write cleaned up
    assert not lock_path(target).exists()  # and the lock went with the job


def test_a_job_not_started_by_a_local_snakemake_is_not_watched(monkeypatch):
    monkeypatch.delenv(WORKFLOW_PID_ENV, raising=False)
    assert jobcontrol.workflow_ancestor() is None
    monkeypatch.setenv(WORKFLOW_PID_ENV, str(os.getpid()))  # this process itself
    assert jobcontrol.workflow_ancestor() is None
    monkeypatch.setenv(WORKFLOW_PID_ENV, "not a pid")
    assert jobcontrol.workflow_ancestor() is None
    # a live process that is no ancestor: a SLURM job inherits the pid of a Snakemake on another
    # machine, which may name anything here
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        monkeypatch.setenv(WORKFLOW_PID_ENV, str(other.pid))
        assert jobcontrol.workflow_ancestor() is None
        assert jobcontrol.watch_workflow() is None
    finally:
        other.kill()
        other.wait()
    monkeypatch.setenv(WORKFLOW_PID_ENV, str(os.getppid()))  # the process that started pytest: watched
    assert jobcontrol.workflow_ancestor() == os.getppid()


# --- one writer per output ---------------------------------------------------------------------

HOLDER = """
    import sys, time
    from lffood.jobcontrol import output_locks
    with output_locks(sys.argv[1:]):
        print("locked", flush=True)
        time.sleep(120)
"""


def test_second_writer_fails_naming_the_file_and_the_holder(tmp_path):
    target, other = tmp_path / "a.h5", tmp_path / "b.h5"
    holder = _python(HOLDER, target)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputBusyError) as exc:
            with output_locks([other, target]):
                pytest.fail("a second writer got the lock")
        assert str(target) in str(exc.value) and f"pid {holder.pid}" in str(exc.value)
        assert f"kill {holder.pid}" in str(exc.value)
        assert not lock_path(other).exists()  # what it had taken it gave back
        busy = busy_outputs([target, other])
        assert str(target) in busy and str(other) not in busy and f"kill {holder.pid}" in busy
    finally:
        holder.kill()  # SIGKILL: its lock file stays, unheld
        holder.wait()
    assert lock_path(target).exists() and busy_outputs([target]) == ""
    with output_locks([target]):  # free again
        assert lock_path(target).read_text().split()[0] == str(os.getpid())
    assert not lock_path(target).exists()


# --- leftovers of interrupted writes -----------------------------------------------------------


def test_temp_names_are_those_of_atomic_path(tmp_path):
    with atomic_path(tmp_path / "features.h5") as tmp:
        assert is_temp_name(tmp.name)
        tmp.write_text("x")
    for name in ("features.h5", ".features.h5.lock", ".hidden", "x.tmp", ".a.b.tmp"):
        assert not is_temp_name(name), name
    assert is_temp_name(".ce.resume.pt.abcd_123.tmp.pt")


def test_next_run_removes_temps_of_interrupted_writes_unless_a_live_job_may_own_them(tmp_path):
    results, data = tmp_path / "results", tmp_path / "data"
    models, features, splits = results / "m" / "models", results / "m" / "features", data / "m"
    for d in (models, features, splits):
        d.mkdir(parents=True)
    stale = [features / ".ce.h5.abcdefgh.tmp.h5",  # its target was never rebuilt
             features / ".gone.h5.zzzzzzzz.tmp.h5",  # nor will be
             splits / ".test.npz.a1b2c3d4.tmp.npz",
             features / ".ce.h5.lock"]  # the lock of a killed job: nobody holds it
    kept = [features / "lff.h5", features / ".hidden", splits / "test.npz"]
    for p in stale + kept:
        p.write_text("x")
    # a live training job: holds its checkpoint's lock, writes its resume state beside it
    own = models / ".ce.resume.pt.q1w2e3r4.tmp.pt"
    own.write_text("x")
    holder = _python(HOLDER, models / "ce.pt")
    try:
        assert holder.stdout.readline().strip() == "locked"
        removed = remove_interrupted_temps([results, data, data / "m"])
        assert sorted(removed) == sorted(stale)
        assert not any(p.exists() for p in stale)
        assert all(p.exists() for p in kept) and own.exists() and lock_path(models / "ce.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    # the job is gone: what it left goes too
    assert sorted(remove_interrupted_temps([results])) == sorted([own, lock_path(models / "ce.pt")])


# --- outputs of failed jobs --------------------------------------------------------------------


class FakePersistence:
    def __init__(self, records):
        self.records = dict(records)

    def metadata(self, f):
        return self.records.get(str(f))

    def _get_key(self, f):
        return str(f)

    def _write_record(self, key, record):
        self.records[key] = record

    def _delete_record(self, key):
        return self.records.pop(key, None) is not None


def test_failed_jobs_outputs_get_their_metadata_and_mtime_back(tmp_path):
    kept, new, ok = tmp_path / "kept.h5", tmp_path / "new.h5", tmp_path / "ok.h5"
    kept.write_text("good")
    ok.write_text("good")
    os.utime(kept, ns=(1_000_000_000, 2_000_000_000))
    persistence = FakePersistence({str(kept): "record of the good job", str(ok): "old record of ok"})
    failed = SimpleNamespace(output=[str(kept), str(new)])
    succeeded = SimpleNamespace(output=[str(ok)])
    workflow = SimpleNamespace(persistence=persistence, dag=SimpleNamespace(needrun_jobs=lambda: [failed, succeeded]),
                               scheduler=SimpleNamespace(failed=[failed]))
    outputs = KeptOutputs()
    outputs.snapshot(workflow)
    # what Snakemake does for a failed job: copies the backup back (new mtime), records the job
    kept.write_text("good")
    persistence.records.update({str(kept): "record of the failed job", str(new): "record of the failed job",
                                str(ok): "record of the new ok job"})
    assert outputs.restore_failed(workflow) == [str(kept)]
    assert persistence.records == {str(kept): "record of the good job", str(ok): "record of the new ok job"}
    assert kept.stat().st_mtime_ns == 2_000_000_000


def test_failed_jobs_restored_outputs_get_their_integrity_manifests_back(tmp_path):
    """A failed job may seal a new version of one output before failing: Snakemake copies the old file
    back, and the manifest must describe it again (lffood.integrity), or every later read refuses it."""
    from lffood import integrity

    kept, new = tmp_path / "kept.h5", tmp_path / "new.h5"
    integrity.write_bytes_sealed(kept, b"good")
    good_manifest = integrity.manifest_path(kept).read_bytes()
    failed = SimpleNamespace(output=[str(kept), str(new)])
    workflow = SimpleNamespace(persistence=FakePersistence({str(kept): "record"}),
                               dag=SimpleNamespace(needrun_jobs=lambda: [failed]),
                               scheduler=SimpleNamespace(failed=[failed]))
    outputs = KeptOutputs()
    outputs.snapshot(workflow)
    integrity.write_bytes_sealed(kept, b"BAD!")  # the failed job sealed its own version ...
    integrity.write_bytes_sealed(new, b"half")
    new.unlink()  # ... of both outputs; Snakemake removes the one without a backup
    kept.write_bytes(b"good")  # and copies the backup of the other back
    assert outputs.restore_failed(workflow) == [str(kept)]
    assert integrity.manifest_path(kept).read_bytes() == good_manifest
    integrity.verify(kept)
    assert not integrity.manifest_path(new).exists()


def test_every_output_must_be_kept():
    flagged = SimpleNamespace(flags={"update": True})
    rules = [SimpleNamespace(name="a", output=[flagged, SimpleNamespace(flags={})]),
             SimpleNamespace(name="b", output=[flagged]), SimpleNamespace(name="all", output=[])]
    assert outputs_not_kept(rules) == ["rule a (1 of its 2 outputs)"]
