"""The on-disk format of a preprocessed split, shared by every benchmark.

One split is one uncompressed ``.npz`` file holding

* ``images``: ``uint8`` array of shape ``(N, H, W, 3)`` (RGB, channels last);
* ``labels``: ``int64`` array of shape ``(N,)``; class index for ID splits, ``-1`` for OOD splits;
* ``meta``: a 0-d string array with a JSON object (dataset name, role, source, class names, ...).

Uncompressed so that loading is a memory copy; written atomically. Because the members are stored
(not deflated), ``images`` is contiguous inside the file: :func:`load_split` memory-maps it by default,
so opening a 25 GB ImageNet-100 split costs nothing until batches are read. Splits too big for memory
are written in chunks with :class:`SplitWriter` (same file format as :func:`save_split`).
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_path

OOD_LABEL = -1


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


def save_split(path: str | Path, split: Split) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=split.images, labels=split.labels, meta=np.array(json.dumps(split.meta)))


def load_split(path: str | Path, mmap: bool = True) -> Split:
    """Read a split. With ``mmap`` (the default) ``images`` is a read-only ``np.memmap`` into the file
    (falls back to reading it when the member is compressed or empty); labels and meta are read."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: split file not found. Build it with the workflow's data rules "
                        f"(snakemake {path}) or check data_dir in the config.")
    try:
        with np.load(path, allow_pickle=False) as z:
            labels, meta = z["labels"], json.loads(str(z["meta"]))
            images = _mmap_member(path, "images.npy") if mmap else None
            if images is None:
                images = z["images"]
        return Split(images=images, labels=labels, meta=meta)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a valid split file ({exc}). Delete it and rebuild it with snakemake.") from exc


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
                for name, arr in (("labels", self.labels), ("meta", np.array(json.dumps(self.meta)))):
                    with self._zip.open(f"{name}.npy", "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, arr, allow_pickle=False)
        except BaseException as err:
            self._zip.close()
            self._atomic.__exit__(type(err), err, err.__traceback__)  # removes the temporary file
            raise
        self._zip.close()
        return self._atomic.__exit__(exc_type, exc, tb)
