"""The on-disk format of a preprocessed split, shared by every benchmark.

One split is one uncompressed ``.npz`` file holding

* ``images``: ``uint8`` array of shape ``(N, H, W, 3)`` (RGB, channels last);
* ``labels``: ``int64`` array of shape ``(N,)``; class index for ID splits, ``-1`` for OOD splits;
* ``meta``: a 0-d string array with a JSON object (dataset name, role, source, class names, ...);
* ``checksum``: a 0-d string array with a JSON object: the sha256 of the images' bytes (C order), of
  the labels (int64 little-endian), of the meta text, and the images' shape (:func:`content_checksum`).

Uncompressed so that loading is a memory copy; written atomically. Because the members are stored
(not deflated), ``images`` is contiguous inside the file: :func:`load_split` memory-maps it by default,
so opening a 25 GB ImageNet-100 split costs nothing until batches are read. Splits too big for memory
are written in chunks with :class:`SplitWriter` (same file format as :func:`save_split`), which
hashes each chunk as it writes it.

Integrity: :func:`load_split` verifies the checksum of every split whose images take at most
:data:`VERIFY_ON_LOAD_MAX_BYTES` (every split of the paper's benchmarks except ImageNet-100 train,
~25 GB, which would cost minutes per load; that one is logged as not verified). :func:`verify_split`
(``lffood verify``) checks any split fully. The checksum lives inside the ``.npz`` as its own member,
after ``images``, so memory-mapping is unchanged and there is no second file to keep in step. A split
written before checksums existed has no ``checksum`` member: it still loads, with a WARNING saying it
cannot be verified and how to rebuild it, and ``lffood verify`` reports it as a failure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_path

log = logging.getLogger("lffood.data")

OOD_LABEL = -1
#: :func:`load_split` verifies splits whose images take at most this many bytes (2 GiB): CIFAR train
#: (150 MB), every OOD set (up to 1.5 GB at 224 px for ImageNet) and ImageNet-100 test (0.75 GB);
#: hashing runs at about 1 GB/s, a small cost next to a pass of a network over the same images.
VERIFY_ON_LOAD_MAX_BYTES = 2 << 30
_HASH_BLOCK = 64 << 20


@dataclass
class Split:
    images: np.ndarray
    labels: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise DataError(f"split images must be uint8 (N, H, W, 3); got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"labels shape {self.labels.shape} does not match {self.images.shape[0]} images")
        self.labels = self.labels.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ----------------------------------------------------------------------------- checksums
def _sha256_rows(arr: np.ndarray, h=None):
    """sha256 of ``arr``'s bytes in C order, a block of rows at a time (a memmap is read, not copied whole)."""
    h = h or hashlib.sha256()
    if arr.ndim == 0 or arr.size == 0:
        h.update(np.ascontiguousarray(arr).tobytes())
        return h
    step = max(1, _HASH_BLOCK // max(1, arr[:1].nbytes))
    for start in range(0, arr.shape[0], step):
        h.update(memoryview(np.ascontiguousarray(arr[start:start + step])).cast("B"))
    return h


def _labels_bytes(labels: np.ndarray) -> bytes:
    return np.ascontiguousarray(labels, dtype="<i8").tobytes()


def _record(images_sha: str, shape, labels: np.ndarray, meta_text: str) -> dict:
    return {"algorithm": "sha256", "images": images_sha, "shape": [int(n) for n in shape],
            "labels": hashlib.sha256(_labels_bytes(labels)).hexdigest(),
            "meta": hashlib.sha256(meta_text.encode("utf-8")).hexdigest()}


def content_checksum(images: np.ndarray, labels: np.ndarray, meta_text: str) -> dict:
    """The ``checksum`` record of a split's content: sha256 of images, labels and meta text, and the shape."""
    return _record(_sha256_rows(images).hexdigest(), images.shape, labels, meta_text)


def _rebuild(path: Path) -> str:
    return (f"rebuild it with `snakemake --force {path}` (the data rule that writes it runs again; jobs that "
            f"read it re-run on the next `snakemake` because it is newer)")


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(f"split {path} is corrupt: {what}. Do not trust results made from it: {_rebuild(path)}.")


def _check(path: Path, images: np.ndarray, labels: np.ndarray, meta_text: str, record_text: str | None,
           strict: bool) -> str:
    """Compare a split's content with its ``checksum`` record. Corrupt: DataError. No record (a split
    written before checksums): DataError when ``strict``, else a WARNING. Returns what was checked."""
    if record_text is None:
        msg = (f"split {path} has no checksum (written by an older lffood), so it cannot be verified; "
               f"to add one, {_rebuild(path)}.")
        if strict:
            raise DataError(msg)
        log.warning("%s", msg)
        return "no checksum"
    try:
        want = json.loads(record_text)
        algorithm = want["algorithm"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _corrupt(path, f"its checksum record is unreadable ({exc})") from None
    if algorithm != "sha256":
        raise DataError(f"split {path}: its checksum uses {algorithm!r}, which this lffood does not know (written "
                        f"by a newer version?). Update lffood, or {_rebuild(path)}.")
    if list(images.shape) != want.get("shape"):
        raise _corrupt(path, f"checksum mismatch: images have shape {list(images.shape)}, {want.get('shape')} "
                             f"when written")
    got = content_checksum(images, labels, meta_text)
    bad = [k for k in ("images", "labels", "meta") if got[k] != want.get(k)]
    if bad:
        which = ", ".join(f"{k} (sha256 {got[k]}, written as {want.get(k)})" for k in bad)
        raise _corrupt(path, f"checksum mismatch in {which}")
    return f"sha256 {got['images']} ok"


# ----------------------------------------------------------------------------- save / load
def save_split(path: str | Path, split: Split) -> None:
    """Write ``split`` atomically, with the checksum of its content."""
    meta_text = json.dumps(split.meta)
    record = content_checksum(split.images, split.labels, meta_text)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=split.images, labels=split.labels, meta=np.array(meta_text),
                     checksum=np.array(json.dumps(record)))


def _read(path: Path, mmap: bool) -> tuple[Split, str, str | None]:
    """The split, its meta text and its checksum record text (None when the file has none)."""
    if not path.exists():
        raise DataError(f"{path}: split file not found. Build it with the workflow's data rules "
                        f"(snakemake {path}) or check data_dir in the config.")
    try:
        with np.load(path, allow_pickle=False) as z:
            labels, meta_text = z["labels"], str(z["meta"])
            meta = json.loads(meta_text)
            record = str(z["checksum"]) if "checksum" in z.files else None
            images = _mmap_member(path, "images.npy") if mmap else None
            if images is None:
                images = z["images"]
        return Split(images=images, labels=labels, meta=meta), meta_text, record
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a valid split file ({exc}). Delete it and rebuild it with snakemake.") from exc


def load_split(path: str | Path, mmap: bool = True, verify: bool | None = None) -> Split:
    """Read a split. With ``mmap`` (the default) ``images`` is a read-only ``np.memmap`` into the file
    (falls back to reading it when the member is compressed or empty); labels and meta are read.

    ``verify``: check the content against the split's checksum (a mismatch is a DataError saying how
    to rebuild it). ``None`` (default): only when the images take at most :data:`VERIFY_ON_LOAD_MAX_BYTES`;
    a larger split is logged as not verified (``lffood verify`` checks it). A split without a checksum
    loads with a WARNING."""
    path = Path(path)
    split, meta_text, record = _read(path, mmap)
    if verify is None:
        verify = split.images.nbytes <= VERIFY_ON_LOAD_MAX_BYTES
        if not verify:
            log.info("%s: %.1f GB of images, not verified on load (over %.1f GB); `lffood verify %s` checks it",
                     path, split.images.nbytes / 1e9, VERIFY_ON_LOAD_MAX_BYTES / 1e9, path)
    if verify:
        _check(path, split.images, split.labels, meta_text, record, strict=False)
    return split


def verify_split(path: str | Path) -> str:
    """Check every byte of a split against its checksum, whatever its size; returns what was checked.
    A corrupt split or one without a checksum is a DataError (``lffood verify``)."""
    path = Path(path)
    split, meta_text, record = _read(path, mmap=True)
    what = _check(path, split.images, split.labels, meta_text, record, strict=True)
    return f"{len(split)} images {tuple(split.images.shape[1:])}, {what}"


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header (30 bytes), as in zipfile


def _mmap_member(path: Path, member: str) -> np.ndarray | None:
    """Memory-map the ``.npy`` member of an uncompressed ``.npz``: a ZIP_STORED member is its raw bytes,
    starting after the local header (whose name and extra-field lengths may differ from the central
    directory's, so they are read from the local header itself)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        head = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
        if head[0] != b"PK\x03\x04":
            raise ValueError(f"bad zip local header for {member}")
        fh.seek(info.header_offset + _LOCAL_HEADER.size + head[10] + head[11])
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if dtype.hasobject or 0 in shape:
        return None
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)


class SplitWriter:
    """Write a split chunk by chunk (for splits larger than memory), in :func:`save_split`'s format.

    ::

        with SplitWriter(path, labels, (256, 256)) as w:
            for chunk in chunks:          # uint8 (n, 256, 256, 3), in label order
                w.write(chunk)
            w.meta.update(role="id_train", mean=w.mean(), std=w.std())

    The file appears at ``path`` only when every image was written and the block exits cleanly.
    ``mean()``/``std()`` are per-channel statistics in [0, 1] units over every pixel written.
    """

    def __init__(self, path: str | Path, labels: np.ndarray, size: tuple[int, int], meta: dict | None = None):
        self.path = Path(path)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.n = int(self.labels.shape[0])
        self.shape = (self.n, int(size[0]), int(size[1]), 3)
        self.meta = dict(meta or {})
        self.written = 0
        self._sum = np.zeros(3)
        self._sumsq = np.zeros(3)
        self._hash = hashlib.sha256()  # of the images, chunk by chunk (the checksum member)
        self._atomic = None

    def __enter__(self) -> SplitWriter:
        self._atomic = atomic_path(self.path, suffix=".npz")
        tmp = self._atomic.__enter__()
        self._zip = zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._member = self._zip.open("images.npy", "w", force_zip64=True)
        np.lib.format.write_array_header_1_0(self._member, {"descr": np.dtype(np.uint8).str,
                                                            "fortran_order": False, "shape": self.shape})
        return self

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk)
        if chunk.dtype != np.uint8 or chunk.shape[1:] != self.shape[1:]:
            raise DataError(f"{self.path}: chunk of {chunk.dtype} {chunk.shape[1:]}, expected uint8 {self.shape[1:]}")
        if self.written + len(chunk) > self.n:
            raise DataError(f"{self.path}: more images than the {self.n} labels")
        for start in range(0, len(chunk), 64):  # float statistics on small blocks: bounded memory
            x = chunk[start:start + 64].reshape(-1, 3).astype(np.float32) / 255.0
            self._sum += x.sum(0, dtype=np.float64)
            self._sumsq += np.square(x).sum(0, dtype=np.float64)
        self._member.write(memoryview(chunk).cast("B"))
        _sha256_rows(chunk, self._hash)
        self.written += len(chunk)

    def mean(self) -> list[float]:
        return (self._sum / max(self._count(), 1)).tolist()

    def std(self) -> list[float]:
        m = self._sum / max(self._count(), 1)
        return np.sqrt(np.maximum(self._sumsq / max(self._count(), 1) - m ** 2, 0.0)).tolist()

    def _count(self) -> int:
        return self.written * self.shape[1] * self.shape[2]

    def __exit__(self, exc_type, exc, tb):
        try:
            self._member.close()
            if exc_type is None:
                if self.written != self.n:
                    raise DataError(f"{self.path}: {self.written} images written for {self.n} labels")
                meta_text = json.dumps(self.meta)
                record = _record(self._hash.hexdigest(), self.shape, self.labels, meta_text)
                for name, arr in (("labels", self.labels), ("meta", np.array(meta_text)),
                                  ("checksum", np.array(json.dumps(record)))):
                    with self._zip.open(f"{name}.npy", "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, arr, allow_pickle=False)
        except BaseException as err:
            self._zip.close()
            self._atomic.__exit__(type(err), err, err.__traceback__)  # removes the temporary file
            raise
        self._zip.close()
        return self._atomic.__exit__(exc_type, exc, tb)
