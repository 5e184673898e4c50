"""Process set-up shared by every rule script: logging, seeds, threads, device."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np

log = logging.getLogger("lffood")


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to ``log_path`` (the rule's ``log:``) and to stderr, with timestamps."""
    root = logging.getLogger()
    root.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level)
    return log


def seed_everything(seed: int, deterministic: bool = True) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # deterministic: no cuDNN autotuning (same algorithms, same numbers); otherwise let cuDNN pick the
    # fastest algorithms for the input sizes (config key `deterministic`)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = bool(deterministic)


# GPU slots: Snakemake's `--resources gpu=N` only counts GPU jobs, it does not tell a job which GPU
# to use (no CUDA_VISIBLE_DEVICES). With more than one visible GPU, or several slots per GPU
# (LFFOOD_JOBS_PER_GPU), each job claims the first free slot with an exclusive lock file per slot;
# the lock goes with the process (also on a crash). Slots are handed out GPU by GPU (slot 0 of every
# GPU first), so jobs share a GPU only once every GPU has one. Under SLURM (`--gpus=1`) a job sees
# exactly its own GPU, so there is nothing to claim.
GPU_LOCK_DIR_ENV = "LFFOOD_GPU_LOCK_DIR"
#: concurrent jobs per GPU (default 1): `LFFOOD_JOBS_PER_GPU=4 snakemake --resources gpu=4` runs four
#: GPU jobs side by side on one GPU (README "GPUs")
JOBS_PER_GPU_ENV = "LFFOOD_JOBS_PER_GPU"
_held_slot = None  # (GPU index, open lock file, slot on that GPU) of this process


def gpu_lock_dir() -> str:
    import tempfile

    return os.environ.get(GPU_LOCK_DIR_ENV) or os.path.join(tempfile.gettempdir(), "lffood-gpu-locks")


def jobs_per_gpu() -> int:
    """Concurrent jobs per GPU: LFFOOD_JOBS_PER_GPU (a positive integer), default 1."""
    from .errors import ConfigError

    raw = os.environ.get(JOBS_PER_GPU_ENV, "").strip() or "1"
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"environment variable {JOBS_PER_GPU_ENV}={raw!r}: must be a positive integer (jobs per GPU)")
    return n


def visible_gpu_ids(count: int) -> list[str]:
    """Machine-wide names of the ``count`` visible GPUs: the CUDA_VISIBLE_DEVICES entries (index or
    UUID) when set, else ``0..count-1``; lock files are named after them so that two jobs with
    different CUDA_VISIBLE_DEVICES still see each other's claims."""
    cvd = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if len(cvd) >= count:
        return cvd[:count]
    return [str(i) for i in range(count)]


def claim_gpu_slot(count: int, lock_dir: str | None = None, slots: int = 1) -> tuple[int, bool]:
    """Index (0..count-1) of a visible GPU with one of its ``slots`` slots free (no other lffood
    process holds it), and whether it was claimed exclusively. The claim lasts until the process
    exits (or ``release_gpu_slot``); ``held_gpu_slot()`` tells which slot. When every slot is taken
    (more concurrent GPU jobs than ``count x slots``), returns a shared GPU (pid modulo count) and False."""
    import fcntl

    global _held_slot
    if _held_slot is not None:
        return _held_slot[0], True
    lock_dir = lock_dir or gpu_lock_dir()
    os.makedirs(lock_dir, exist_ok=True)
    ids = visible_gpu_ids(count)
    for slot in range(max(1, slots)):
        for index, gpu_id in enumerate(ids):
            name = "gpu-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in gpu_id)
            fh = open(os.path.join(lock_dir, name + (f".slot{slot}" if slot else "") + ".lock"), "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            _held_slot = (index, fh, slot)
            return index, True
    return os.getpid() % count, False


def held_gpu_slot() -> int | None:
    """The slot (0..slots-1) on its GPU that this process holds, or None."""
    return None if _held_slot is None else (_held_slot[2] if len(_held_slot) > 2 else 0)


def release_gpu_slot() -> None:
    global _held_slot
    if _held_slot is not None:
        _held_slot[1].close()
        _held_slot = None


def select_device(requested: str = "auto"):
    """``auto`` -> CUDA when available (honouring CUDA_VISIBLE_DEVICES), else CPU; ``cuda`` fails
    without a CUDA device. With several visible GPUs the job takes a free one (``claim_gpu_slot``).
    Logs the device used and why."""
    import torch

    from .errors import ConfigError

    cvd = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
    if requested.startswith("cuda:"):  # one process of a multi-GPU job (lffood.ddp) names its GPU
        dev = torch.device(requested)
        torch.cuda.set_device(dev)
        log.info("device: %s (%s; CUDA_VISIBLE_DEVICES=%s)", dev, torch.cuda.get_device_name(dev), cvd)
        return dev
    available = requested != "cpu" and torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise ConfigError("config key 'device' is 'cuda' but no CUDA device is visible "
                          f"(CUDA_VISIBLE_DEVICES={cvd!r}). Set device: auto or cpu.")
    if not available:
        why = "config device: cpu" if requested == "cpu" else "no CUDA device visible"
        log.info("device: cpu (%s; CUDA_VISIBLE_DEVICES=%s; %d threads)", why, cvd, torch.get_num_threads())
        return torch.device("cpu")
    count, slots = torch.cuda.device_count(), jobs_per_gpu()
    index, exclusive = claim_gpu_slot(count, slots=slots) if count * slots > 1 else (0, True)
    dev = torch.device("cuda", index)
    torch.cuda.set_device(dev)
    if count * slots == 1:
        slot = ""
    elif not exclusive:
        slot = f"; all {count * slots} GPU slots claimed by other jobs, sharing GPU {index}"
    elif slots == 1:
        slot = f"; GPU slot {index} of {count}, lock in {gpu_lock_dir()}"
    else:
        slot = (f"; GPU slot {held_gpu_slot()} of {slots} on GPU {index} of {count} ({JOBS_PER_GPU_ENV}={slots}), "
                f"lock in {gpu_lock_dir()}")
    log.info("device: %s (%s; CUDA_VISIBLE_DEVICES=%s%s)", dev, torch.cuda.get_device_name(dev), cvd, slot)
    if not exclusive:
        log.warning("more concurrent GPU jobs than visible GPUs: use --resources gpu=N with N <= %d "
                    "(visible GPUs x %s)", count * slots, JOBS_PER_GPU_ENV)
    return dev


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(n)))


def library_versions() -> dict[str, str]:
    """Versions of the libraries an artifact was made with, from the installed distributions' metadata
    (importing torchvision just to read its version would cost seconds per job)."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"lffood": __version__, "python": sys.version.split()[0]}
    for dist in ("numpy", "torch", "h5py", "torchvision"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - torchvision is optional for the library itself
            pass
    return out


#: signals that cancel a job (SLURM's scancel and time limit, Snakemake on shutdown, a closed
#: terminal); by default they end Python at once, without running ``finally`` blocks or cleanup
TERMINATION_SIGNALS = ("SIGTERM", "SIGHUP")


def _raise_on_signal(signum, frame) -> None:
    name = signal.Signals(signum).name
    if signum == signal.SIGINT:
        log.error("received %s: stopping; temporary files of unfinished outputs are removed", name)
        raise KeyboardInterrupt
    log.error("received %s: stopping with exit status %d; temporary files of unfinished outputs are removed",
              name, 128 + signum)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into ``SystemExit(128 + signum)`` (and log SIGINT before its usual
    KeyboardInterrupt) while the block runs, so that ``finally`` blocks and
    :func:`lffood.io.atomic_path`'s cleanup run when a job is cancelled; the exit status is the
    shell's convention for a signal. SIGKILL cannot be caught (what a killed writer left is removed
    by the next run, :func:`lffood.jobcontrol.remove_interrupted_temps`). Ignored signals stay ignored (``nohup``). Python runs
    signal handlers in the main thread only: elsewhere this does nothing. The previous handlers are
    restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for name in (*TERMINATION_SIGNALS, "SIGINT"):
        signum = getattr(signal, name, None)
        # keep ignored signals ignored (nohup ignores SIGHUP, a background shell job SIGINT) and
        # handlers someone else installed; replace only Python's defaults
        if signum is not None and signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler):
            previous[name] = signal.signal(signum, _raise_on_signal)
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), handler)


def run_rule(smk, main) -> None:
    """Entry point of every rule script: log to the rule's log file, turn library errors into a
    clear message and a non-zero exit instead of a traceback, and turn SIGTERM / SIGHUP into an
    exception (:func:`signals_raise`) so a cancelled job leaves no temporary files. The job stops
    when the Snakemake process that started it ends, and holds the lock of each of its outputs while
    it runs, failing at once when another live job holds one (:mod:`lffood.jobcontrol`)."""
    from .errors import LffoodError
    from .jobcontrol import output_locks, watch_workflow

    logger = setup_logging(smk.log[0] if len(smk.log) else None)
    logger.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))
    with signals_raise():
        try:
            watch_workflow()
            with output_locks(getattr(smk, "output", ())):
                main()
        except LffoodError as exc:
            logger.error("%s", exc)
            raise SystemExit(1) from None
        except Exception:  # a defect, not a user error: its traceback belongs in the rule's log too
            logger.exception("unexpected error in rule %s", smk.rule)
            raise


def bench_setting(smk, *keys):
    """A setting of the job's benchmark that a rule script reads from the config instead of receiving
    it as a param (batch sizes of inference): changing it changes how fast, not what is computed, so
    it must not rerun the job. ``bench_setting(smk, "extraction", "batch_size")``."""
    value = smk.config["benchmarks"][smk.wildcards.bench]
    for key in keys:
        value = value[key]
    return value


def provenance(repo: str | Path) -> str:
    """Commit (and whether the tree had changes), machine and date."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"commit {commit}{dirty}; {cpu}, {os.cpu_count()} CPU cores, {platform.system()} "
            f"{platform.release().split('-')[0]}, Python {platform.python_version()}; {date.today().isoformat()}")


def workflow_checkout(start: str | os.PathLike | None = None) -> Path:
    """The clone of this repository that commands running its Snakefile use (``lffood rehearse``,
    ``lffood gpu-check``): ``start`` (default: the current folder) or the nearest folder above it that
    holds ``Snakefile`` and ``workflow/rules/``. An installed lffood ships the library, not the workflow,
    so it is looked up here, never next to the package. Raises :class:`LffoodError` when there is none."""
    from .errors import LffoodError

    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Snakefile").is_file() and (folder / "workflow" / "rules").is_dir():
            return folder
    raise LffoodError(f"no clone of the lffood workflow (a folder with Snakefile and workflow/rules/) at or above "
                      f"{here}: run the command inside your clone of the repository, or pass --repo <clone>")


def export_pythonpath(path: str) -> None:
    """Prepend ``path`` to PYTHONPATH so that rule scripts (local, cluster or conda jobs, which
    inherit the environment) import this checkout's library without installing it."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != path]
    os.environ["PYTHONPATH"] = os.pathsep.join([path, *parts])
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")  # HDF5 locks fail on NFS/Lustre
