"""What keeps a job's results safe from the job's failure, its orphaning and a second writer.

* **A job ends with the Snakemake process that started it.** The Snakefile names its own process
  in ``LFFOOD_WORKFLOW_PID`` (:func:`mark_workflow_process`); every rule script (through
  :func:`lffood.runtime.run_rule`) watches that process when it is one of the job's ancestors
  (:func:`watch_workflow`) and, once it is gone (SIGKILL, a crash, a closed session), stops the job
  as SIGTERM does: atomic writes remove their temporary files, training keeps its last saved epoch.
  Jobs whose starter is not an ancestor (a SLURM job on another node) are not watched: the cluster
  ends them.
* **One writer per output.** Each job holds an exclusive lock (``flock``) on ``.<name>.lock`` beside
  each of its outputs for its whole life (:func:`output_locks`); a second job that finds one held
  fails at once, naming the file and the process that holds it, and a new run refuses to start
  while a live job of an earlier run still writes one of its outputs (:func:`busy_outputs`, from
  the Snakefile's ``onstart``). The lock goes with the process, whatever ends it.
* **No leftovers.** At the start of every run the temporary files of interrupted atomic writes
  (:func:`lffood.io.atomic_path`) under the results and data folders are removed, whatever the run
  builds, except in folders where a live job holds a lock (:func:`remove_interrupted_temps`).
* **A failed job costs no good result.** Every rule's outputs are ``update()`` outputs: Snakemake
  keeps them when a job starts (instead of deleting them), copies them to ``.snakemake/backups`` and
  copies them back when the job fails. Two things it then gets wrong are put right at the end of
  the run (:class:`KeptOutputs`, the Snakefile's ``onstart``/``onerror``): it records the failed
  job's parameters, code and inputs as the metadata of the restored files, and the copy back gives
  them a new modification time, either of which would rerun the job and everything downstream
  although nothing changed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import LffoodError
from .integrity import manifest_path

log = logging.getLogger(__name__)

#: pid of the Snakemake process that runs the workflow (set by the Snakefile, inherited by its jobs)
WORKFLOW_PID_ENV = "LFFOOD_WORKFLOW_PID"
#: how long a job may take to stop after SIGTERM once its Snakemake is gone, before it exits at once
STOP_GRACE_S = 30.0


class OutputBusyError(LffoodError):
    """An output is being written by another live job."""


# ----------------------------------------------------------------------------- the job's Snakemake


def mark_workflow_process() -> None:
    """Name this process (the one running the Snakefile) as the starter of the jobs it runs."""
    os.environ[WORKFLOW_PID_ENV] = str(os.getpid())


def _parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` (from /proc), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[1])  # the command may hold spaces and ')'
    except (IndexError, ValueError):
        return None


def _is_ancestor(pid: int) -> bool:
    """Whether ``pid`` is this process's parent, grandparent, ... (the parent only without /proc)."""
    current = os.getppid()
    for _ in range(128):
        if current == pid:
            return True
        if current <= 1:
            return False
        current = _parent_pid(current)
        if current is None:
            return False
    return False


def workflow_ancestor() -> int | None:
    """The pid named by ``LFFOOD_WORKFLOW_PID`` when that process is an ancestor of this one (a
    local job of that Snakemake), else None (unset, this process itself, or a job started elsewhere:
    a SLURM job inherits the variable of a process on another machine)."""
    try:
        pid = int(os.environ.get(WORKFLOW_PID_ENV, ""))
    except ValueError:
        return None
    if pid <= 1 or pid == os.getpid():
        return None
    return pid if _is_ancestor(pid) else None


def _wait_until_gone(pid: int, poll_s: float) -> None:
    """Return once process ``pid`` has ended: a pidfd (Linux) wakes at once; elsewhere, or where a
    pidfd cannot be had, poll whether it is still an ancestor (a dead one is not: its children are
    handed to init, and a reused pid is no ancestor)."""
    fd = None
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = None
    if fd is not None and not _is_ancestor(pid):  # gone before the pidfd was had: its pid may be another's
        os.close(fd)
        return
    if fd is not None:
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not poller.poll(None):
                pass
        finally:
            os.close(fd)
        return
    while _is_ancestor(pid):
        time.sleep(poll_s)


def _stop_job(pid: int, grace_s: float) -> None:
    log.error("the Snakemake process that started this job (pid %d) has ended: stopping the job", pid)
    # to the main thread: it runs Python's signal handlers (lffood.runtime.signals_raise), and a
    # blocking call there is interrupted
    signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
    time.sleep(grace_s)
    log.error("the job did not stop within %.0f s of SIGTERM: exiting now", grace_s)
    os._exit(128 + signal.SIGTERM)


def watch_workflow(grace_s: float = STOP_GRACE_S, poll_s: float = 1.0) -> int | None:
    """Stop this job when the Snakemake process that started it ends: a daemon thread waits for it
    and then sends SIGTERM to the main thread (and exits the process ``grace_s`` later if that did
    not end it). Returns the pid watched, or None when the job was not started by a local Snakemake
    (:func:`workflow_ancestor`)."""
    pid = workflow_ancestor()
    if pid is None:
        return None

    def watch():
        _wait_until_gone(pid, poll_s)
        _stop_job(pid, grace_s)

    threading.Thread(target=watch, name="lffood-workflow-watch", daemon=True).start()
    return pid


# ----------------------------------------------------------------------------- one writer per output

#: errors of file systems that cannot lock (some network mounts): the job runs unprotected, with a warning
_NO_LOCKING = {errno.ENOLCK, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of output ``path``: ``.<name>.lock`` beside it (so jobs of any working
    directory that write the same file see each other)."""
    p = Path(path)
    return p.parent / f".{p.name}.lock"


def _holder(lock: Path) -> str:
    try:
        text = lock.read_text().split()
    except OSError:
        text = []
    if len(text) >= 2:
        return f"pid {text[0]} on {text[1]}"
    return f"pid {text[0]}" if text else "a process"


def _busy_message(target: str, lock: Path) -> str:
    holder = _holder(lock)
    pid = holder.split()[1] if holder.startswith("pid ") else "<pid>"
    return (f"{target} is being written by another job that is still running ({holder}; lock {lock}), for "
            f"example a job of a Snakemake that was killed. Wait for it to end, or stop it (kill {pid}), then "
            f"run again.")


def _acquire(target: str, attempts: int = 20, wait_s: float = 0.05) -> int | None:
    """An open descriptor holding the exclusive lock of ``target``, or None where the file system
    cannot lock. Raises OutputBusyError when another process holds it (after ``attempts`` tries:
    a run's start-up check holds a lock for an instant)."""
    lock = lock_path(target)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if attempt + 1 < attempts:
                time.sleep(wait_s)
                continue
            raise OutputBusyError(_busy_message(target, lock)) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_LOCKING:
                log.warning("cannot lock %s (%s): the file system does not support locks, so a second "
                            "writer of %s would not be noticed", lock, exc, target)
                return None
            raise
        # the previous holder removes the file before it lets go: a lock on a removed file is no
        # lock, take the file that is there now
        try:
            st = os.stat(lock)
        except FileNotFoundError:
            st = None
        own = os.fstat(fd)
        if st is None or (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino):
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return fd
    raise OutputBusyError(_busy_message(target, lock))


def _release(target: str, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock_path(target))
    os.close(fd)


@contextlib.contextmanager
def output_locks(paths: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Hold the exclusive lock of every path in ``paths`` while the block runs (in sorted order);
    raise :class:`OutputBusyError` naming the file and the holder when another process holds one."""
    held = []
    try:
        for target in sorted({os.path.abspath(p) for p in paths}):
            fd = _acquire(target)
            if fd is not None:
                held.append((target, fd))
        yield
    finally:
        for target, fd in reversed(held):
            _release(target, fd)


def _lock_is_held(lock: Path) -> bool:
    """Whether a live process holds ``lock`` (False when it does not exist or cannot be tested)."""
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing lets go of the shared lock, if taken
    return False


def busy_outputs(paths: Iterable[str | os.PathLike]) -> str:
    """What a run must not start with: the paths among ``paths`` that live jobs are writing (their
    locks held), by job, with what to do; empty when there are none."""
    by_holder: dict[str, list[str]] = {}
    for p in paths:
        if _lock_is_held(lock_path(p)):
            by_holder.setdefault(_holder(lock_path(p)), []).append(str(p))
    if not by_holder:
        return ""
    lines = [f"{len(v)} output(s) of this run are being written by a job that is still running ({holder}), for "
             f"example one of a Snakemake that was killed: {', '.join(v)}" for holder, v in by_holder.items()]
    pids = " ".join(h.split()[1] for h in by_holder if h.startswith("pid "))
    return "\n".join(lines + [f"Wait for it to end, or stop it (kill {pids or '<pid>'}), then run again."])


# ----------------------------------------------------------------------------- leftovers of interrupted writes


def remove_interrupted_temps(roots: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the temporary files of interrupted atomic writes (:func:`lffood.io.is_temp_name`) under
    ``roots``, and lock files that no process holds; return what was removed. A folder where a live
    job holds a lock is left alone (its temporary files may be that job's: a training job's resume
    state is written beside its checkpoint). Run at the start of a run, before its jobs start."""
    from .io import is_temp_name

    removed = []
    tops: list[str] = []
    for root in sorted({os.path.abspath(r) for r in roots}):
        if not any(root == t or root.startswith(t + os.sep) for t in tops):  # a folder inside another: once
            tops.append(root)
    for root in tops:
        for folder, _, files in os.walk(root):
            temps = [f for f in files if is_temp_name(f)]
            locks = [f for f in files if f.startswith(".") and f.endswith(".lock")]
            if not temps and not locks:
                continue
            held = [f for f in locks if _lock_is_held(Path(folder, f))]
            if held:
                log.info("%s: kept %d temporary file(s): a live job holds %s", folder, len(temps), held[0])
                continue
            for name in temps + locks:
                path = Path(folder, name)
                try:
                    if name in locks:
                        _remove_free_lock(path)
                    else:
                        os.unlink(path)
                except OSError as exc:
                    log.debug("could not remove %s: %s", path, exc)
                    continue
                removed.append(path)
                if name in temps:
                    log.info("removed %s: temporary file of an interrupted write", path)
    return removed


def _remove_free_lock(lock: Path) -> None:
    """Remove a lock file that no process holds (taking it first, so that a job taking it at this
    moment keeps a valid lock: it checks that its file is still there, :func:`_acquire`)."""
    fd = os.open(lock, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(lock)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- outputs of failed jobs


class KeptOutputs:
    """The metadata record and modification time of every existing output of a run's jobs, taken
    before any job starts (:meth:`snapshot`, from ``onstart``) and put back for the outputs of the
    jobs that failed (:meth:`restore_failed`, from ``onerror``).

    Why (Snakemake 9, snakemake/jobs.py ``Job.postprocess``): for a failed job with ``update()``
    outputs Snakemake copies the backups back (``persistence.restore_output``: ``shutil.copy``, a
    new mtime) and then calls ``persistence.finished(job)`` anyway, which records the failed job's
    params, code and inputs for every output. Restored files would look changed (newer than what was
    built from them, or made with other params): the next run would redo the job and everything
    downstream. Uses the persistence backend's record interface (``metadata``, ``_write_record``,
    ``_delete_record``), which both of Snakemake's backends (file, database) implement."""

    def __init__(self) -> None:
        self.before: dict[str, tuple[object, int, int, int] | None] = {}
        #: each output's integrity manifest as it was (:mod:`lffood.integrity`; not a Snakemake output, so
        #: Snakemake's restore does not cover it): its bytes, or None where it had none
        self.manifests: dict[str, bytes | None] = {}

    def snapshot(self, workflow) -> None:
        persistence = workflow.persistence
        for job in workflow.dag.needrun_jobs():
            for f in job.output:
                path = str(f)
                try:
                    st = os.stat(path)
                except OSError:
                    self.before[path] = None
                    continue
                self.before[path] = (persistence.metadata(f), st.st_size, st.st_atime_ns, st.st_mtime_ns)
                manifest = manifest_path(path)
                self.manifests[path] = manifest.read_bytes() if manifest.is_file() else None

    def restore_failed(self, workflow) -> list[str]:
        """Put back the record and mtime of the restored outputs of every failed job, and remove the
        failed job's record of outputs that do not exist; return the paths put back."""
        persistence = workflow.persistence
        if not all(hasattr(persistence, a) for a in ("_get_key", "_write_record", "_delete_record")):
            log.warning("this Snakemake's metadata store has no record interface: the outputs of failed jobs "
                        "keep the metadata Snakemake gave them (their next run may redo them)")
            return []
        scheduler = getattr(workflow, "scheduler", None)
        failed = [j for job in getattr(scheduler, "failed", ()) for j in getattr(job, "jobs", [job])]
        restored = []
        for job in failed:
            for f in job.output:
                path = str(f)
                if path not in self.before:
                    continue
                key = persistence._get_key(f)
                try:
                    st = os.stat(path)
                except OSError:
                    st = None
                before = self.before[path]
                if st is None:  # nothing there: no record of a job that wrote nothing, and no manifest
                    persistence._delete_record(key)
                    manifest_path(path).unlink(missing_ok=True)
                elif before is not None and st.st_size == before[1]:  # the previous version, copied back
                    record, _, atime, mtime = before
                    if record is None:
                        persistence._delete_record(key)
                    else:
                        persistence._write_record(key, record)
                    os.utime(path, ns=(atime, mtime))
                    self._put_back_manifest(path)
                    restored.append(path)
        return restored

    def _put_back_manifest(self, path: str) -> None:
        """The restored output's manifest as it was before the failed job (which may have sealed its new
        version before failing), so that the file and its manifest agree again."""
        from .io import atomic_path

        before = self.manifests.get(path)
        manifest = manifest_path(path)
        if before is None:
            manifest.unlink(missing_ok=True)
        elif not manifest.is_file() or manifest.read_bytes() != before:
            with atomic_path(manifest) as tmp:
                tmp.write_bytes(before)


def outputs_not_kept(rules: Iterable) -> list[str]:
    """``rule <name> (<n> of its outputs)`` for every one of Snakemake ``rules`` with outputs not
    flagged ``update()`` (every rule's must be: :class:`KeptOutputs`)."""
    out = []
    for rule in rules:
        n = sum(not (getattr(f, "flags", None) or {}).get("update") for f in rule.output)
        if n:
            out.append(f"rule {rule.name} ({n} of its {len(rule.output)} outputs)")
    return out
