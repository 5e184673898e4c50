"""Process set-up shared by every rule script: logging, seeds, threads, device."""

from __future__ import annotations

import logging
import os
import random
import sys

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
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def select_device(requested: str = "auto"):
    """``auto`` -> CUDA when available (honouring CUDA_VISIBLE_DEVICES), else CPU; logs the choice."""
    import torch

    from .errors import ConfigError

    if requested == "cpu":
        dev = torch.device("cpu")
    elif requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("config key 'device' is 'cuda' but no CUDA device is visible "
                              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). "
                              "Set device: auto or cpu.")
        dev = torch.device("cuda")
    else:
        dev = torch.device("cpu")
    if dev.type == "cuda":
        log.info("device: cuda (%s; CUDA_VISIBLE_DEVICES=%s)", torch.cuda.get_device_name(dev),
                 os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
    else:
        log.info("device: cpu (%d threads)", torch.get_num_threads())
    return dev


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(n)))


def library_versions() -> dict[str, str]:
    import h5py
    import torch

    from . import __version__

    out = {"lffood": __version__, "python": sys.version.split()[0], "numpy": np.__version__,
           "torch": torch.__version__, "h5py": h5py.__version__}
    try:
        import torchvision

        out["torchvision"] = torchvision.__version__
    except Exception:  # pragma: no cover - torchvision is optional for the library itself
        pass
    return out


def run_rule(smk, main) -> None:
    """Entry point of every rule script: log to the rule's log file, turn library errors into a
    clear message and a non-zero exit instead of a traceback."""
    from .errors import LffoodError

    logger = setup_logging(smk.log[0] if len(smk.log) else None)
    logger.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))
    try:
        main()
    except LffoodError as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None


def export_pythonpath(path: str) -> None:
    """Prepend ``path`` to PYTHONPATH so that rule scripts (local, cluster or conda jobs, which
    inherit the environment) import this checkout's library without installing it."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != path]
    os.environ["PYTHONPATH"] = os.pathsep.join([path, *parts])
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")  # HDF5 locks fail on NFS/Lustre
