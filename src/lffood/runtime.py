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
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from pathlib import Path

import numpy as np

log = logging.getLogger("lffood")


def setup_logging(log_path: str | None = None, level: int = logging.INFO, job: str = "") -> logging.Logger:
    """Log to ``log_path`` (the rule's ``log:``) and to stderr, with timestamps. ``job`` (:func:`job_label`)
    starts every line with ``[<job>]``: jobs that run side by side write to the same terminal, and a
    line there must say which benchmark, seed and model it is about (a line that names the job itself
    already, such as training's epoch line, is left as it is)."""
    root = logging.getLogger()
    root.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(job_prefix)s%(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    prefix = _JobPrefix(job)
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(prefix)
        root.addHandler(h)
    root.setLevel(level)
    return log


def job_label(wildcards: Mapping) -> str:
    """``<bench> seed <seed> <variant>``: what names a job of the workflow in its log lines, from its
    wildcards (those it has: ``embedded`` for a table, ``embedded seed 0 lff`` for a training, extraction
    or scoring job; empty for a download). Training's epoch lines use the same words."""
    w = dict(wildcards)
    parts = [w.get("bench"), f"seed {w['seed']}" if w.get("seed") not in (None, "") else None, w.get("variant")]
    return " ".join(str(p) for p in parts if p)


class _JobPrefix(logging.Filter):
    """Sets ``record.job_prefix`` (the format's field before the message): ``[<job>] ``, or nothing when
    there is no job or the message already starts with that mark."""

    def __init__(self, job: str):
        super().__init__()
        self.mark = f"[{job}]" if job else ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_prefix = (f"{self.mark} " if self.mark and not record.getMessage().startswith(self.mark)
                             else "")
        return True


#: seconds between the progress lines within one long loop (a training epoch, the extraction or ODIN
#: scoring of one split); a loop that ends sooner writes none (an embedded epoch takes seconds)
PROGRESS_EVERY_S = 30.0


class Progress:
    """When a long loop of ``total`` steps is due for a progress line, and its words. ``due(done)`` costs one
    ``time.monotonic()`` per step and reads nothing from the device: the caller reads its numbers (a
    loss on the GPU) only when a line is due. Never due within the first :data:`PROGRESS_EVERY_S`
    seconds (short loops stay quiet), nor at the last step (the loop's own closing line follows)."""

    def __init__(self, total: int, every: float | None = None):
        self.total = max(int(total), 1)
        self.every = PROGRESS_EVERY_S if every is None else float(every)
        self.started = time.monotonic()
        self._next = self.started + self.every

    def due(self, done: int) -> bool:
        if done >= self.total:
            return False
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every
        return True

    def text(self, done: int, unit: str = "steps") -> str:
        """``120/500 steps (24%), 30s elapsed, about 1m35s left``: the rest at the pace so far."""
        elapsed = time.monotonic() - self.started
        left = elapsed / max(done, 1) * (self.total - done)
        return (f"{done}/{self.total} {unit} ({100 * done / self.total:.0f}%), {duration(elapsed)} elapsed, "
                f"about {duration(left)} left")


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h10m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


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
#: GPU jobs side by side on one GPU (docs/compute.md, "GPUs")
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

    logger = setup_logging(smk.log[0] if len(smk.log) else None, job=job_label(smk.wildcards.items()))
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


#: x86 and Arm vector extensions, widest first, by their /proc/cpuinfo flag: which of them a CPU has
#: decides which kernels OpenBLAS, MKL and PyTorch pick, and so the last bits of every float they compute
INSTRUCTION_SETS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"),
                    ("sse2", "SSE2"), ("sve", "SVE"), ("asimd", "NEON"))


def cpu_info(path: str | os.PathLike = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """The CPU's model name and its feature flags, from the first processor of ``path`` (Linux; x86
    ``flags`` or Arm ``Features``); ``platform``'s name and no flags elsewhere."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return model, flags
    found_model = False
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not found_model:
            model, found_model = value.strip(), True
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def instruction_set(flags: Iterable[str]) -> str:
    """The widest vector extension among the CPU's ``flags`` (:data:`INSTRUCTION_SETS`), or ``""``."""
    flags = set(flags)
    return next((name for flag, name in INSTRUCTION_SETS if flag in flags), "")


def torch_blas(config: str) -> str:
    """PyTorch's BLAS from its build summary (``torch.__config__.show()``): ``MKL 2024.2``, ``OpenBLAS``..."""
    import re

    found = re.search(r"BLAS_INFO=(\w+)", config)
    if not found:
        return ""
    name = {"mkl": "MKL", "open": "OpenBLAS", "openblas": "OpenBLAS", "accelerate": "Accelerate",
            "blis": "BLIS", "eigen": "Eigen"}.get(found.group(1).lower(), found.group(1))
    version = re.search(r"Math Kernel Library Version ([\d.]+)", config) if name == "MKL" else None
    return f"{name} {version.group(1)}" if version else name


def numpy_blas() -> str:
    """numpy's BLAS as loaded (threadpoolctl, when installed: the library, its version, the kernel
    family it chose for this CPU and its threads), else as numpy was built with it."""
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            if lib.get("user_api") == "blas":
                name = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(lib.get("internal_api"),
                                                                                 lib.get("internal_api", "BLAS"))
                arch = f" {lib['architecture']}" if lib.get("architecture") else ""
                return f"{name} {lib.get('version') or ''}{arch}, {_threads(lib.get('num_threads'))}".replace("  ", " ")
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', 'BLAS')} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 1.26 has no mode="dicts"; the line then goes without it
        return ""


def numeric_stack(load_torch: bool = True) -> str:
    """What changes the floats besides the code: torch's version, BLAS, the CPU kernels it chose
    (``torch.backends.cpu.get_cpu_capability``) and its threads; numpy's version and BLAS; the thread
    variables of OpenMP and MKL where set. Without ``load_torch`` torch is not imported (it costs a
    second) unless it already is, and only its installed version is named."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    if load_torch or "torch" in sys.modules:
        import torch

        details = [torch_blas(torch.__config__.show()), f"CPU kernels {torch.backends.cpu.get_cpu_capability()}",
                   f"{_threads(torch.get_num_threads())}"]
        parts.append(f"torch {torch.__version__} ({', '.join(d for d in details if d)})")
    else:
        try:
            parts.append(f"torch {version('torch')}")
        except PackageNotFoundError:
            pass
    blas = numpy_blas()
    parts.append(f"numpy {np.__version__}" + (f" ({blas})" if blas else ""))
    parts += [f"{var}={os.environ[var]}" for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(var)]
    return ", ".join(parts)


def _threads(n) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def provenance(repo: str | Path, load_torch: bool = True) -> str:
    """One line: the commit (and whether the tree had changes), the machine (CPU model and its widest
    vector extension, cores, OS, Python), what else changes the floats (:func:`numeric_stack`) and the
    date. ``load_torch=False`` where importing torch would slow every call (the Snakefile)."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    cpu, flags = cpu_info()
    isa = instruction_set(flags)
    return (f"commit {commit}{dirty}; {cpu}{f' ({isa})' if isa else ''}, {os.cpu_count()} CPU cores, "
            f"{platform.system()} {platform.release().split('-')[0]}, Python {platform.python_version()}; "
            f"{numeric_stack(load_torch)}; {date.today().isoformat()}")


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
