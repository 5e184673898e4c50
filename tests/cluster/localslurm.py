"""A throw-away single-node SLURM cluster on localhost, for tests.

Everything lives in one temporary directory: munge key and socket, slurm.conf and gres.conf, state,
spool, daemon logs, and a ``bin/`` of shims for the SLURM client commands. Nothing is written to
/etc or /run, and the daemons listen on free ports, so a cluster the machine may already run is not
touched. The daemons run in the foreground as children of this process (their ids are known) and
``stop()`` ends them, and any job process left in the directory, even after a failure.

Why shims: the client commands find the cluster through ``SLURM_CONF``, but the SLURM jobstep
executor removes every ``SLURM_*`` variable before it calls ``srun`` inside a job, so a nested
``srun`` would look for /etc/slurm/slurm.conf. Shims on ``PATH`` (which jobs inherit: sbatch
exports the environment) set ``SLURM_CONF`` for each call; the ``sbatch`` shim also records every
submission's arguments; ``sacct``/``sacctmgr``/``sshare`` answer at once with an error, as there is
no accounting database (the real ``sacct`` must not be reached: status checks use ``squeue``).

Needs root, Linux and Debian's ``slurmctld slurmd slurm-client munge`` (installed by
``ensure_packages`` with apt-get when missing). When another apt or dpkg holds the package
manager's lock (an unattended upgrade, a second test run), ``ensure_packages`` waits for it, bounded,
and says every 30 s which process holds it, instead of failing at once (``wait_for_locks``,
``apt_get``).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
NO_ACCOUNTING = ("sacct", "sacctmgr", "sshare")


# the package manager's locks: dpkg's (which apt's frontend takes first), the package lists' (apt-get
# update) and the download cache's (apt-get install)
APT_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock",
             "/var/cache/apt/archives/lock")
LOCK_WAIT = 600  # seconds to wait, in all, for another apt/dpkg to let go of the locks
LOCK_REPORT_EVERY = 30  # seconds between "still waiting for <process>" lines
# what apt-get says when it finds a lock taken (apt 2.x; without DPkg::Lock::Timeout, or for the
# lists and archives locks, which that option does not cover)
APT_LOCK_ERROR = re.compile(r"Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock")
_FLOCK = "hhqqi4x"  # struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid


class SlurmUnavailable(RuntimeError):
    """The cluster cannot be brought up here; the message says why (the test skips with it, or fails
    in CI as root: see tests/cluster/test_slurm.py)."""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]


def _stderr(line: str) -> None:
    print(f"localslurm: {line}", file=sys.stderr, flush=True)


def lock_holder(path: str | os.PathLike) -> int | None:
    """The process whose lock on ``path`` would stop apt or dpkg from taking it: its pid, 0 when the
    kernel does not say (a holder in another pid namespace, an open-file-description lock); None when
    the file is absent or not locked. apt and dpkg lock with fcntl(F_SETLK); this asks with F_GETLK,
    which takes no lock, so it never stands in their way."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:  # absent: nothing has locked it yet
        return None
    try:
        got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    finally:
        os.close(fd)
    l_type, _, _, _, pid = struct.unpack(_FLOCK, got)
    return None if l_type == fcntl.F_UNLCK else max(pid, 0)


def describe_process(pid: int) -> str:
    """``pid 812 (apt-get install -y foo)``, from /proc."""
    if pid <= 0:
        return "a process this pid namespace cannot name"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    return f"pid {pid} ({cmd or 'gone'})"


def held_locks(paths: Iterable[str | os.PathLike]) -> dict[str, int]:
    """Lock file -> holding pid, for those of ``paths`` that are held."""
    return {str(p): pid for p in paths if (pid := lock_holder(p)) is not None}


def wait_for_locks(paths: Iterable[str | os.PathLike] = APT_LOCKS, timeout: float = LOCK_WAIT, *,
                   poll: float = 1.0, report_every: float = LOCK_REPORT_EVERY,
                   report: Callable[[str], None] = _stderr) -> float:
    """Wait until none of ``paths`` is locked, at most ``timeout`` seconds; report which process holds
    which lock at once and every ``report_every`` seconds. Returns the seconds waited; raises
    SlurmUnavailable naming the holders when the time is up."""
    paths = list(paths)
    t0 = time.monotonic()
    next_report = t0
    while True:
        held = held_locks(paths)
        now = time.monotonic()
        if not held:
            if next_report > t0:  # reported that it waits: say that it is over
                report(f"the package manager's lock is free after {now - t0:.0f} s")
            return now - t0
        who = "; ".join(f"{p} held by {describe_process(pid)}" for p, pid in held.items())
        if now - t0 >= timeout:
            raise SlurmUnavailable(f"the package manager's lock is still held after {timeout:.0f} s: {who}")
        if now >= next_report:
            report(f"waiting for the package manager's lock ({now - t0:.0f} of at most {timeout:.0f} s): {who}")
            next_report = now + report_every
        time.sleep(max(0.0, min(poll, t0 + timeout - now)))


def apt_get(*args: str, lock_wait: float = LOCK_WAIT, timeout: int = 600, lock_paths=APT_LOCKS,
            report: Callable[[str], None] = _stderr, apt: str = "apt-get",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``apt-get *args`` once the package manager's locks are free: waits for them (``wait_for_locks``),
    lets apt-get itself wait for dpkg's lock (``-o DPkg::Lock::Timeout``) should another apt take it in
    between, and runs it again when apt-get still finds a lock taken (that option does not cover the
    lists and archives locks), all within ``lock_wait`` seconds. ``timeout`` bounds apt-get's own work
    per run (it is killed after that plus the lock wait it was allowed). Raises SlurmUnavailable with
    apt-get's message when the locks stay held."""
    deadline = time.monotonic() + lock_wait
    while True:
        wait_for_locks(lock_paths, max(0.0, deadline - time.monotonic()), report=report)
        left = max(1, int(deadline - time.monotonic()))
        cmd = ["timeout", "-s", "KILL", str(timeout + left), apt, "-o", f"DPkg::Lock::Timeout={left}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        out = (proc.stderr or "") + (proc.stdout or "")
        if proc.returncode == 0 or not APT_LOCK_ERROR.search(out):
            return proc
        if time.monotonic() >= deadline:
            raise SlurmUnavailable(f"apt-get {' '.join(args)}: the package manager's lock stayed taken for "
                                   f"{lock_wait:.0f} s: {out.strip()[-800:]}")
        report(f"apt-get {args[0] if args else ''} found a lock taken ({APT_LOCK_ERROR.search(out).group(0)}); "
               "waiting again")
        time.sleep(1)


def ensure_packages(install: bool = True, timeout: int = 600, lock_wait: float = LOCK_WAIT,
                    lock_paths=APT_LOCKS, report: Callable[[str], None] = _stderr) -> None:
    """Install Debian's SLURM and munge packages when missing (root + apt-get), else raise
    SlurmUnavailable with the reason. Another apt or dpkg holding the package manager's lock is waited
    for (at most ``lock_wait`` seconds in all), not taken as a reason to give up."""
    if os.name != "posix" or not Path("/proc").is_dir():
        raise SlurmUnavailable("needs Linux")
    if os.geteuid() != 0:
        raise SlurmUnavailable("needs root (starts munged, slurmctld and slurmd)")
    if not missing_binaries():
        return
    if not install:
        raise SlurmUnavailable(f"SLURM binaries missing ({', '.join(missing_binaries())}) and "
                               "installing is switched off (LFFOOD_SLURM_INSTALL=0)")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"SLURM binaries missing ({', '.join(missing_binaries())}) and no apt-get to "
                               f"install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + lock_wait
    apt = lambda *a: apt_get(*a, lock_wait=max(0.0, deadline - time.monotonic()), timeout=timeout,  # noqa: E731
                             lock_paths=lock_paths, report=report, env=env)
    install_cmd = ("install", "-y", "-q", "--no-install-recommends", *PACKAGES)
    proc = apt(*install_cmd)
    if proc.returncode != 0:  # a fresh container may have no package lists yet
        apt("update", "-q")
        proc = apt(*install_cmd)
    if proc.returncode != 0 or missing_binaries():
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout)[-800:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4000


FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full")


class LocalSlurm:
    """``with LocalSlurm(root) as slurm:`` a running cluster with one node, ``localhost``, one
    partition ``lffood`` (default), ``gpus`` fake GPUs (gres backed by /dev/null, /dev/zero, ...) and
    all CPUs."""

    NODE = "localhost"
    PARTITION = "lffood"

    def __init__(self, root: Path, gpus: int = 1, min_job_age: int = 3600):
        self.root = Path(root).resolve()
        self.gpus = gpus
        self.min_job_age = min_job_age
        self.conf = self.root / "etc" / "slurm.conf"
        self.bin = self.root / "bin"
        self.sbatch_log = self.root / "sbatch_calls.log"
        self.procs: dict[str, subprocess.Popen] = {}

    # ---------------------------------------------------------------- set-up
    def _write_files(self) -> None:
        for d in ("etc", "munge", "state", "spool", "log", "bin"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        munge = self.root / "munge"
        munge.chmod(0o711)  # munged wants its socket directory not writable by others
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        r = self.root
        self.conf.write_text(f"""\
ClusterName=lffoodtest
SlurmctldHost={socket.gethostname()}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
MinJobAge={self.min_job_age}
GresTypes=gpu
NodeName={self.NODE} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={int(_mem_mb() * 0.9)} \
Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName={self.PARTITION} Nodes={self.NODE} Default=YES MaxTime=INFINITE State=UP
""")
        # fake GPUs: one character device each (slurmd refuses the same file twice); jobs get
        # CUDA_VISIBLE_DEVICES but no CUDA device
        if self.gpus > len(FAKE_GPU_FILES):
            raise ValueError(f"at most {len(FAKE_GPU_FILES)} fake GPUs (one per file of {FAKE_GPU_FILES})")
        (self.root / "etc" / "gres.conf").write_text(
            "".join(f"NodeName={self.NODE} Name=gpu File={f}\n" for f in FAKE_GPU_FILES[:self.gpus]))
        for name in CLIENTS:
            real = shutil.which(name)
            log = f'printf "%s\\n" "SBATCH $*" >> "{self.sbatch_log}"\n' if name == "sbatch" else ""
            self._shim(name, f'export SLURM_CONF="{self.conf}"\n{log}exec "{real}" "$@"\n')
        for name in NO_ACCOUNTING:
            self._shim(name, f'echo "{name}: no accounting database in the lffood test cluster" >&2\nexit 1\n')

    def _shim(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)

    @property
    def env(self) -> dict[str, str]:
        """Environment for commands that talk to this cluster (shims first on PATH)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def run(self, *cmd: str, timeout: int = 20) -> subprocess.CompletedProcess:
        return subprocess.run(["timeout", "-s", "KILL", str(timeout), *cmd], capture_output=True, text=True,
                              env=self.env)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.stdout", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**self.env, "SLURM_CONF": str(self.conf)},
                                            start_new_session=True)
        out.close()
        time.sleep(0.5)
        if self.procs[name].poll() is not None:
            raise SlurmUnavailable(f"{name} exited at start ({self.procs[name].returncode}): {self.logs()}")

    def start(self, timeout: float = 60) -> "LocalSlurm":
        self._write_files()
        munge = self.root / "munge"
        sbin = lambda b: shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")  # noqa: E731
        # --force: run as root with a key and socket outside /etc and /run
        self._spawn("munged", [sbin("munged"), "--foreground", "--force", f"--socket={munge}/munge.socket",
                               f"--key-file={munge}/munge.key", f"--log-file={munge}/munged.log",
                               f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/munged.seed"])
        self._spawn("slurmctld", [sbin("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [sbin("slurmd"), "-D", "-f", str(self.conf), "-N", self.NODE])
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-N", "-o", "%T").stdout.strip()
            if state in ("idle", "mixed", "allocated"):
                return self
            time.sleep(1)
        raise SlurmUnavailable(f"node not ready after {timeout:.0f} s (state {state!r}): {self.logs()}")

    # ---------------------------------------------------------------- queries
    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones stay MinJobAge seconds), as key=value dicts."""
        out = self.run("scontrol", "show", "job", "-o").stdout
        jobs = []
        for line in out.splitlines():
            if line.startswith("JobId="):
                fields = {}
                for tok in line.split():
                    k, _, v = tok.partition("=")
                    fields.setdefault(k, v)
                jobs.append(fields)
        return jobs

    def sbatch_calls(self) -> list[str]:
        if not self.sbatch_log.exists():
            return []
        return [ln[len("SBATCH "):] for ln in self.sbatch_log.read_text().splitlines() if ln.startswith("SBATCH ")]

    def logs(self, tail: int = 1500) -> str:
        parts = []
        for p in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if p.exists():
                parts.append(f"--- {p.name}:\n{p.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    # ---------------------------------------------------------------- teardown
    def stop(self) -> None:
        """Cancel jobs, stop the daemons this object started (by pid), then end any process still
        running inside the cluster directory or a job directory (cwd under ``root``)."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--partition", self.PARTITION, timeout=10)
            self.run("scontrol", "shutdown", timeout=10)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            try:
                proc.wait(timeout=0 if name == "munged" else 5)  # `scontrol shutdown` ends the other two
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        for pid in self._leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _leftover_pids(self) -> list[int]:
        """Processes (job steps, Snakemake job processes) whose working directory is inside ``root``
        or inside one of the extra job directories: started by this cluster, never anything else."""
        roots = [str(self.root), *map(str, getattr(self, "job_dirs", []))]
        pids = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit() or int(p.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(p / "cwd")
            except OSError:
                continue
            if any(cwd == r or cwd.startswith(r + "/") for r in roots):
                pids.append(int(p.name))
        return pids

    def __enter__(self) -> "LocalSlurm":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
