"""Atomic file writing: an artifact either exists complete or not at all.

The contract of :func:`atomic_path`, which every artifact of the workflow is written through:

* **Permissions follow the umask.** The file gets the mode a plain ``open(path, "w")`` would give
  (``0o666 & ~umask``, or what a default ACL of the directory says), so collaborators sharing a
  project folder can read results.
* **Durable.** The data is synced to disk before the rename and the directory after it, so a power
  loss never leaves a renamed but empty file.
* **No leftovers.** On any exception the temporary file is removed; rule scripts turn SIGTERM and
  SIGHUP into an exception (:func:`lffood.runtime.run_rule`) and SIGINT is a KeyboardInterrupt, so
  the same cleanup runs when Snakemake or SLURM cancels a job. SIGKILL cannot be caught: the
  temporary files of killed writers are removed by the next successful write of the same target.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# Alphabet and length of the random part of temporary names: those of ``tempfile.mkstemp``, which
# earlier versions used, so that their leftovers are recognised (and removed) as well.
_RANDOM_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_RANDOM_LEN = 8


def _temp_name(target: Path, suffix: str) -> str:
    rand = "".join(secrets.choice(_RANDOM_CHARS) for _ in range(_RANDOM_LEN))
    return f".{target.name}.{rand}.tmp{suffix}"


def _temp_pattern(target: Path) -> re.Pattern:
    """Names of temporary files of ``target`` (any suffix): ``.<name>.<8 random chars>.tmp<suffix>``."""
    return re.compile(rf"\.{re.escape(target.name)}\.[{_RANDOM_CHARS}]{{{_RANDOM_LEN}}}\.tmp[^/]*\Z")


_ANY_TEMP = re.compile(rf"\..+\.[{_RANDOM_CHARS}]{{{_RANDOM_LEN}}}\.tmp[^/]*\Z")


def is_temp_name(name: str) -> bool:
    """Whether file name ``name`` is that of a temporary file of :func:`atomic_path` (of any target):
    what a run removes at its start when no live job may be writing it (lffood.jobcontrol)."""
    return bool(_ANY_TEMP.match(name))


def _create_temp(target: Path, suffix: str) -> tuple[Path, os.stat_result]:
    """Create an empty temporary file next to ``target`` with mode 0o666 filtered by the kernel.

    Creating the file with ``O_CREAT | O_EXCL`` and mode 0o666 lets the kernel apply the umask (or
    the directory's default ACL) exactly as it does for ``open(path, "w")``. This needs no reading
    of the umask: ``os.umask`` can only read it by setting it, a process-wide change that races
    with other threads creating files. (``tempfile.mkstemp`` forces 0o600, hence the own name.)
    """
    for _ in range(100):
        tmp = target.parent / _temp_name(target, suffix)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        try:
            return tmp, os.fstat(fd)
        finally:
            os.close(fd)
    raise FileExistsError(errno.EEXIST, f"no free temporary name next to {target}")


def _fsync_path(path: Path) -> None:
    """Flush a file's data to disk, reopening it by path: h5py, torch.save and numpy write through
    their own handles, already closed here. Errors (EIO, ENOSPC) propagate: the data is not safe."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable. Some filesystems (certain FUSE and network mounts)
    cannot sync a directory; there the rename is as durable as the filesystem makes it."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:  # pragma: no cover - platform dependent
        log.debug("cannot open %s to sync it: %s", directory, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EISDIR):
            raise
        log.debug("%s: directory sync not supported (%s)", directory, exc)
    finally:
        os.close(fd)


def remove_stale_temps(target: str | os.PathLike, older_than_ns: int | None = None) -> list[Path]:
    """Remove temporary files that killed writers of ``target`` left next to it; return them.

    Only files named like :func:`atomic_path`'s temporaries *of this target* are candidates, and
    only those last modified before ``older_than_ns`` (``st_mtime_ns``; all when None).

    Why this is safe: :func:`atomic_path` calls it right after a write of ``target`` succeeded,
    with the creation time of its own temporary file. Snakemake never runs two jobs writing the
    same output (one job per output in a DAG, and a second Snakemake in the same working directory
    refuses to start while the first holds a lock on that output), so any other temporary of this target is
    left by an earlier writer that died without cleaning up: SIGKILL, the out-of-memory killer, a
    node failure. The time guard spares a writer outside Snakemake that is writing the same file
    at the same moment; should one still lose its temporary, it fails loudly at its own rename
    instead of producing a partial file, and ``target`` always holds a complete file.
    """
    target = Path(target)
    pattern = _temp_pattern(target)
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or (older_than_ns is not None and st.st_mtime_ns >= older_than_ns):
                continue
            os.unlink(entry.path)
        except OSError as exc:  # gone already, or not ours to remove: never fail a completed write
            log.debug("could not remove stale temporary file %s: %s", entry.path, exc)
            continue
        log.info("removed %s: temporary file of an interrupted write of %s", entry.path, target.name)
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary file (``.<name>.<random>.tmp<suffix>``, ``suffix`` defaulting to the target's
    for writers that infer the format from it) lives in the same directory (same filesystem), so
    the final ``os.replace`` is atomic. The caller writes to the yielded path by any means and
    closes its handles; then the data is synced, the file renamed, the directory synced, and stale
    temporaries of killed writers of ``path`` removed (:func:`remove_stale_temps`). On any
    exception, SystemExit and KeyboardInterrupt included, the temporary file is removed and
    ``path`` is left untouched, so a crashed or cancelled job never leaves a half-written artifact.
    The final mode is that of a file newly created by ``open(path, "w")`` under the current umask
    (see :func:`_create_temp`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    tmp_path, created = _create_temp(path, suffix)
    try:
        yield tmp_path
        st = os.stat(tmp_path)
        if stat.S_IMODE(st.st_mode) != stat.S_IMODE(created.st_mode):
            os.chmod(tmp_path, stat.S_IMODE(created.st_mode))  # a writer that replaced the file
        _fsync_path(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    remove_stale_temps(path, older_than_ns=created.st_mtime_ns)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def replace_marked(text: str, block: str, start: str, end: str, where: str, what: str) -> str:
    """``text`` with everything from marker ``start`` to marker ``end`` (both included) replaced by
    ``block``, which carries the markers itself: the generated blocks of the README and the docs
    pages. ``where`` (the file) and ``what`` (what belongs there) go into the error when a marker is
    missing."""
    if start not in text or end not in text:
        raise ValueError(f"{where} has no {start} ... {end} markers: add them where {what} belong")
    a, b = text.index(start), text.index(end) + len(end)
    return text[:a] + block + text[b:]
