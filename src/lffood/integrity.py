"""Every artifact proves its integrity on read: a sidecar manifest per file.

The one idea: the writer of an artifact (checkpoint, feature / statistics / score file, metrics CSV,
tidy metrics) writes, right after the file, its manifest ``<file>.sha256.json``::

    {"format": "lffood-integrity", "version": 1, "file": "<name>", "sha256": "...", "bytes": N,
     "inputs": {"<path of an input>": "<its sha256 when this file was made>"}, ...}

and every reader calls :func:`verify` before it trusts a byte of the file: the file's size and its
sha256 must be those of the manifest, and each recorded input that exists must still have the hash
recorded (read from the input's own manifest, so nothing is hashed twice). Anything else is refused
with an :class:`~lffood.errors.IntegrityError` naming the file, what differs, and the command that
rebuilds it (:func:`rebuild_hint`). A file without a manifest (damaged, copied without it, or written
by an lffood before manifests existed) is refused the same way: rebuilding it writes one.

Why a sidecar and not a hash inside the file: one streaming sha256 of the file's bytes is the
cheapest complete check (an HDF5 attribute over the datasets would need every dataset read and
decompressed by each reader, and misses damage in the HDF5 metadata), and it works alike for HDF5,
torch archives and CSV. The manifest cannot silently disagree with its file: any disagreement is an
error; a manifest left without its file is harmless (the next write of the file replaces it).
Written after the file (both atomically), an interruption between the two leaves a file whose
manifest is missing or old: refused on read, never trusted (and Snakemake reruns the interrupted
job, whose output it marked incomplete). The resume state of a training job, which Snakemake does
not track and which a kill must never make unusable, embeds its hash instead
(:class:`lffood.checkpoint.ResumeFile`).

Cost: the writer hashes the file it has just written (in the page cache) or the bytes it holds in
memory; a reader hashes a file once per process (:func:`verify` remembers files verified unchanged:
same inode, size and modification time), and a checkpoint from the bytes it loads anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .errors import IntegrityError
from .io import atomic_path, sha256_file, write_text_atomic

SUFFIX = ".sha256.json"
FORMAT, VERSION = "lffood-integrity", 1

#: files verified in this process: absolute path -> (stat signature, manifest)
_VERIFIED: dict[str, tuple[tuple, dict]] = {}
_UNCHECKED = [0]  # >0 inside :func:`unchecked`


def manifest_path(path: str | os.PathLike) -> Path:
    """Where the manifest of ``path`` lives: ``<path>.sha256.json``."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def rebuild_hint(path: str | os.PathLike) -> str:
    """The command that rebuilds ``path`` (and, by the run after it, what was made from it)."""
    return (f"Rebuild it: snakemake --force {path}, then run the workflow as usual (e.g. snakemake all) so that "
            f"what was made from it follows; or delete {path} and rerun.")


def _signature(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def input_hashes(inputs: Mapping | Iterable | None) -> dict[str, str]:
    """``{path: sha256}`` of a writer's inputs: given hashes kept, the others taken from the input's
    manifest (an lffood artifact) or computed (a file from outside, e.g. an imported checkpoint);
    inputs that do not exist (tests' placeholder names) are left out."""
    if not inputs:
        return {}
    items = inputs.items() if isinstance(inputs, Mapping) else ((p, None) for p in inputs)
    out = {}
    for p, sha in items:
        if p is None:
            continue
        if sha is None:
            sha = current_hash(p)
        if sha is not None:
            out[str(p)] = str(sha)
    return out


def current_hash(path: str | os.PathLike) -> str | None:
    """The sha256 of ``path`` as of now: from its manifest (as verified in this process, or as
    recorded), else computed; None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    cached = _VERIFIED.get(os.path.abspath(path))
    if cached is not None and cached[0] == _signature(path.stat()):
        return cached[1]["sha256"]
    m = _read_manifest(path, missing_ok=True)
    return m["sha256"] if m is not None else sha256_file(path)


def seal(path: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
         inputs: Mapping | Iterable | None = None, extra: Mapping | None = None) -> dict:
    """Write the manifest of ``path`` (already written): its sha256 and size (computed unless given,
    e.g. from the bytes the writer holds), the hashes of its ``inputs`` and ``extra`` keys."""
    path = Path(path)
    if sha256 is None:
        sha256 = sha256_file(path)
    if size is None:
        size = path.stat().st_size
    manifest = {"format": FORMAT, "version": VERSION, "file": path.name, "sha256": sha256, "bytes": int(size),
                "inputs": input_hashes(inputs), **(extra or {})}
    write_text_atomic(manifest_path(path), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    _VERIFIED.pop(os.path.abspath(path), None)
    return manifest


@contextlib.contextmanager
def sealed_path(path: str | os.PathLike, suffix: str | None = None, *, inputs: Mapping | Iterable | None = None,
                extra: Mapping | None = None) -> Iterator[Path]:
    """:func:`lffood.io.atomic_path`, then :func:`seal`: the writer writes to the yielded temporary
    path; its bytes are hashed before the rename (one streaming read, from the page cache) and the
    manifest written after it."""
    inputs = input_hashes(inputs)  # before the write: an input may be the file's own previous version
    with atomic_path(path, suffix) as tmp:
        yield tmp
        sha, size = sha256_file(tmp), os.stat(tmp).st_size
    seal(path, sha256=sha, size=size, inputs=inputs, extra=extra)


def write_bytes_sealed(path: str | os.PathLike, data, *, suffix: str | None = None,
                       inputs: Mapping | Iterable | None = None, extra: Mapping | None = None) -> str:
    """Write ``data`` (bytes or a buffer) atomically with its manifest; hashed in memory. Returns the sha256."""
    sha = hashlib.sha256(data).hexdigest()
    inputs = input_hashes(inputs)
    with atomic_path(path, suffix) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    seal(path, sha256=sha, size=memoryview(data).nbytes, inputs=inputs, extra=extra)
    return sha


def _read_manifest(path: Path, missing_ok: bool = False) -> dict | None:
    mpath = manifest_path(path)
    try:
        text = mpath.read_text()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise IntegrityError(
            f"{path}: no integrity manifest ({mpath.name} is missing), so its content cannot be verified: it was "
            "copied without its manifest, its write was interrupted, or it was written by an lffood without manifests "
            "(results of such a version: rebuild them all with snakemake --forceall all). " + rebuild_hint(path)) from None
    try:
        m = json.loads(text)
        if m.get("format") != FORMAT or not isinstance(m.get("sha256"), str) or not isinstance(m.get("bytes"), int):
            raise ValueError("not an lffood integrity manifest")
    except (ValueError, AttributeError) as exc:
        raise IntegrityError(f"{path}: its integrity manifest {mpath} is unreadable ({exc}). "
                             + rebuild_hint(path)) from None
    if m.get("file") != path.name:
        raise IntegrityError(f"{path}: its integrity manifest {mpath} describes another file ({m.get('file')!r}). "
                             + rebuild_hint(path))
    return m


def _check_inputs(path: Path, m: Mapping) -> None:
    for inp, recorded in (m.get("inputs") or {}).items():
        p = Path(inp)
        if not p.exists():
            continue  # moved or removed: nothing to disagree with (its readers need it, not this file's)
        now = _read_manifest(p, missing_ok=True)
        if now is None:
            continue  # a file from outside the workflow (an imported checkpoint): hashed when it was used
        if now["sha256"] != recorded:
            raise IntegrityError(
                f"{path}: made from {inp} with sha256 {recorded}, but {inp} now has sha256 {now['sha256']}: "
                f"{path} is stale (its input was rebuilt or replaced after it was made). " + rebuild_hint(path))


def verify(path: str | os.PathLike, data: bytes | memoryview | None = None) -> dict:
    """Check ``path`` against its manifest (size, sha256, the recorded inputs' current hashes) and
    return the manifest; :class:`IntegrityError` on any difference. ``data``: the file's bytes when the
    caller has read them anyway (hashed instead of the file). A file verified before in this process
    and unchanged since (same inode, size, times) is not hashed again."""
    path = Path(path)
    key = os.path.abspath(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IntegrityError(f"{path}: not found. Build it with snakemake {path}.") from None
    sig = _signature(st)
    cached = _VERIFIED.get(key)
    if data is None and cached is not None and cached[0] == sig:
        return cached[1]
    if _UNCHECKED[0]:
        with contextlib.suppress(IntegrityError):
            return _read_manifest(path, missing_ok=True) or {}
        return {}
    m = _read_manifest(path)
    size = memoryview(data).nbytes if data is not None else st.st_size
    if size != m["bytes"]:
        raise IntegrityError(
            f"{path}: {size} bytes, but its manifest records {m['bytes']} bytes: the file was "
            f"{'truncated' if size < m['bytes'] else 'extended'} after it was written. " + rebuild_hint(path))
    sha = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)
    if sha != m["sha256"]:
        raise IntegrityError(
            f"{path}: content sha256 {sha}, but its manifest records {m['sha256']}: the file changed after it was "
            "written (damaged bytes on disk or in a copy, or an edit). " + rebuild_hint(path))
    _check_inputs(path, m)
    if _signature(path.stat()) == sig:
        _VERIFIED[key] = (sig, m)
    return m


def forget() -> None:
    """Forget which files were verified in this process (tests that change a file in place)."""
    _VERIFIED.clear()


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """Read without verifying (``lffood inspect`` shows a file after reporting it damaged)."""
    _UNCHECKED[0] += 1
    try:
        yield
    finally:
        _UNCHECKED[0] -= 1
