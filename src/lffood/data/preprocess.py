"""Readers of the paper's datasets in their upstream formats, written once as split files
(:mod:`lffood.data.arrays`) that the same loaders as the embedded benchmark read.

* CIFAR-10/100 (ID) and SVHN (OOD): read as torchvision's dataset classes read them, but straight from
  the downloaded file: the python pickle batches of the tar.gz in memory (member names and keys from
  ``torchvision.datasets.CIFAR10/100``), ``X`` of test_32x32.mat with scipy. The classes' hard-coded
  md5s are not used: the integrity guarantee is the archive's checksum, verified at download
  (:mod:`lffood.data.download`: the published md5, ``downloads.checksums.<key>`` or the lock file)
  before any reader touches the file. The batches are unpickled by :class:`_CifarUnpickler`, which
  builds nothing but numpy arrays, lists, dicts, strings and numbers (any other global is refused),
  so a batch cannot run code. ID splits keep the native 32x32 images.
* OOD sets from tar archives (LSUN-Crop/Resize, iSUN, DTD, Places365 test_256, the MOS ImageNet sets):
  every image member, read straight from the tar (no extraction, so benchmarks sharing an archive
  never race), optionally a seeded subset, then Resize(``ood_resize``) + CenterCrop(``ood_crop``)
  exactly as torchvision's transforms do on PIL images.
* ImageNet-100 from the user's ILSVRC-2012 folder: train at Resize+CenterCrop(``train_size``), test
  (the ILSVRC val images of the 100 classes, sorted in ``val/<wnid>/`` or flat and labelled by the
  devkit) at Resize(``ood_resize``)+CenterCrop(``ood_crop``), written in chunks so memory stays bounded.

Decoding is per file (PIL, threaded); there are no per-pixel Python loops.

Size limits (constants, not config keys: nothing in the paper's data sets comes near them, so a file
over a limit means a damaged or foreign archive, and the fix is a new download, not a bigger limit):
:data:`MAX_MEMBER_BYTES` for one member of an image archive (any member, checked from its tar header as
soon as the header is read, before its bytes are read or skipped) or one ILSVRC file, and
:data:`MAX_IMAGE_PIXELS` for one decoded image (decompression bombs: a few KB of PNG can declare
gigapixels), checked from the header before any pixel is decoded. Every tar is decompressed here, not
inside :mod:`tarfile`, through a counter that stops at :func:`max_decompressed_bytes` (a multiple of the
archive's size on disk): a tar.gz bomb (1 MB of gzip holding 1 GiB of zeros, in one member or spread
over many) is refused within seconds. All end in a :class:`~lffood.errors.DataError` naming the
archive, the member and what to do.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import logging
import lzma
import os
import pickle
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import write_text_atomic
from ..names import ood_set
from . import sources
from .arrays import OOD_LABEL, Split, SplitWriter, save_split

log = logging.getLogger("lffood.preprocess")

#: Largest image decoded, in pixels: 2**26 (8192 x 8192, 192 MiB as RGB). The paper's images are
#: 32 px (CIFAR, SVHN, ODIN sets), at most 640 px (DTD), 256 px (Places365 test_256), and ILSVRC-2012
#: and MOS photos of at most a few tens of megapixels. Below PIL's own warning threshold
#: (``Image.MAX_IMAGE_PIXELS``, ~89.5 Mpx), so such an image is refused here before PIL warns, and
#: PIL's ``DecompressionBombError`` (above twice its threshold) is turned into the same error.
MAX_IMAGE_PIXELS = 1 << 26
#: Largest image file read into memory: 64 MiB per tar member or ILSVRC file (the paper's image files
#: are at most a few MB). Checked from the tar header / file size before a byte is read.
MAX_MEMBER_BYTES = 64 << 20
#: Most bytes decompressed from one tar archive: ``MAX_EXPANSION`` x its size on disk +
#: ``EXPANSION_SLACK`` (:func:`max_decompressed_bytes`). A tar is its members plus 512-byte headers and
#: padding, so a plain .tar never expands, and the paper's tar.gz archives (JPEGs, CIFAR pickles) expand
#: less than 2x; gzip can expand ~1000x. The slack covers tiny archives (a tar is padded to 10 KB, and
#: a few small files are mostly headers). A 1 MB bomb is refused after ~70 MB, within a second.
MAX_EXPANSION = 4
EXPANSION_SLACK = 64 << 20
#: Undecoded tar members held at once before they are decoded (bounds memory with many threads).
_PENDING_BYTES = 256 << 20
#: What a damaged tar, tar.gz, tar.bz2 or tar.xz raises while it is read.
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)

_REDOWNLOAD = ("No image of the paper's data sets is this large: the archive is damaged or not the published "
               "one. Delete {archive} and download it again (lffood download, or re-run the workflow; the "
               "checksum is verified); if the fresh copy fails the same way, report it.")


# ----------------------------------------------------------------------------- transforms
def resize_center_crop(img, resize: int, crop: int) -> np.ndarray:
    """torchvision ``Resize(resize)`` (shorter side, bilinear, PIL) then ``CenterCrop(crop)`` -> uint8 HWC RGB."""
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short != resize:
        new_short, new_long = resize, int(resize * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        img = img.resize((new_w, new_h), Image.BILINEAR)
        w, h = new_w, new_h
    if crop > min(w, h):
        raise DataError(f"center crop {crop} is larger than the resized image {w}x{h}: set dataset.ood_crop "
                        f"<= dataset.ood_resize")
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def decode(data: bytes | str | os.PathLike, resize: int, crop: int, name: str = "", fix: str = "") -> np.ndarray:
    """Decode one image file (bytes or path) and apply :func:`resize_center_crop`.

    ``name`` says where the image comes from in errors (default: the path), ``fix`` what to do about a
    file over the size limits. A path over :data:`MAX_MEMBER_BYTES` is not read; an image over
    :data:`MAX_IMAGE_PIXELS` is refused from its header, before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    where = name or str(data)
    fix = fix or "Remove or replace that file: no image of the paper's data sets is this large."
    try:
        if not isinstance(data, bytes) and (size := os.stat(data).st_size) > MAX_MEMBER_BYTES:
            raise DataError(f"{where}: image file of {size:,} bytes is over the limit of {MAX_MEMBER_BYTES:,} "
                            f"bytes (lffood.data.preprocess.MAX_MEMBER_BYTES); it is not read. {fix}")
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise DataError(_too_many_pixels(where, f"declares {w} x {h} = {w * h:,} pixels", fix))
            return resize_center_crop(img, resize, crop)
    except Image.DecompressionBombError as exc:  # PIL's own guard (over twice its warning threshold)
        raise DataError(_too_many_pixels(where, f"was refused by PIL ({exc})", fix)) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{where}: cannot decode image ({exc}). The archive or folder is damaged: "
                        f"delete it and download/copy it again.") from exc


def _too_many_pixels(where: str, what: str, fix: str) -> str:
    return (f"{where}: the image {what}, over the limit of {MAX_IMAGE_PIXELS:,} pixels "
            f"(lffood.data.preprocess.MAX_IMAGE_PIXELS, a guard against decompression bombs); it is not "
            f"decoded. {fix}")


def _check_member_size(path, m: tarfile.TarInfo, limit: int) -> None:
    """Refuse a member larger than ``limit`` from its tar header, before it is read or skipped."""
    if m.size > limit:
        what = "image file" if sources.is_image_member(m.name) else "file"
        raise DataError(f"member {m.name} of {path}: {what} of {m.size:,} bytes (from its tar header) is over the "
                        f"limit of {limit:,} bytes for one member (lffood.data.preprocess.MAX_MEMBER_BYTES); it "
                        f"is not read. " + _REDOWNLOAD.format(archive=path))


def max_decompressed_bytes(path: str | os.PathLike) -> int:
    """The most bytes read out of the (decompressed) tar ``path``: see :data:`MAX_EXPANSION`."""
    return MAX_EXPANSION * os.stat(path).st_size + EXPANSION_SLACK


class _CappedReader:
    """The decompressed bytes of an archive, counted: reading past ``limit`` is a :class:`DataError`
    naming the archive and the member being read (``member``, kept up to date by :func:`_open_tar`)."""

    def __init__(self, stream, path, limit: int):
        self.stream, self.path, self.limit = stream, path, limit
        self.count = 0
        self.member = "(the first header)"

    @property
    def remaining(self) -> int:
        return self.limit - self.count

    def read(self, n: int = -1) -> bytes:
        want = self.remaining + 1 if n is None or n < 0 else min(n, self.remaining + 1)
        data = self.stream.read(want)
        self.count += len(data)
        if self.count > self.limit:
            raise self.too_much(f"more than {self.limit:,} bytes decompressed, reached at member {self.member} "
                                f"(or in the header after it)")
        return data

    def too_much(self, what: str) -> DataError:
        return DataError(
            f"{self.path}: {what}. The limit is {MAX_EXPANSION} x the archive's {os.stat(self.path).st_size:,} "
            f"bytes on disk + {EXPANSION_SLACK >> 20} MiB (lffood.data.preprocess.MAX_EXPANSION, EXPANSION_SLACK); "
            f"no archive of images expands that much, so this is a decompression bomb or not the published "
            f"archive, and nothing more is read. " + _DAMAGED.format(archive=self.path))


def _decompressed(fh):
    """``fh`` (a binary file) decompressed by its magic bytes: gzip, bzip2, xz, or as it is."""
    head = fh.peek(6)[:6]
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh, mode="rb")
    if head[:3] == b"BZh":
        return bz2.BZ2File(fh, "rb")
    if head == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(fh, "rb")
    return contextlib.nullcontext(fh)


@contextlib.contextmanager
def _open_tar(path, member_limit: int | None = None) -> Iterator[tuple[tarfile.TarFile, Iterator[tarfile.TarInfo]]]:
    """``(tar, members)`` of the tar / tar.gz / tar.bz2 / tar.xz ``path``, read as one stream. The caps
    are checked as each header is read, before the member's bytes are read or skipped: every member
    over ``member_limit`` (when given) is refused, and so is one larger than what is left of
    :func:`max_decompressed_bytes`; the decompressed stream itself stops at that limit too (headers of
    long names and pax records, padding). Errors of a damaged archive are the caller's to catch
    (:data:`_TAR_ERRORS`)."""
    with open(path, "rb") as raw, _decompressed(raw) as stream:
        reader = _CappedReader(stream, path, max_decompressed_bytes(path))
        with tarfile.open(fileobj=reader, mode="r|") as tf:

            def members():
                for m in tf:
                    reader.member = m.name
                    if member_limit is not None:
                        _check_member_size(path, m, member_limit)
                    if m.size > reader.remaining + tarfile.RECORDSIZE:
                        raise reader.too_much(f"member {m.name} declares {m.size:,} bytes (from its tar header), "
                                              f"more than the {max(reader.remaining, 0):,} bytes left of the "
                                              f"archive's decompression limit of {reader.limit:,} bytes")
                    yield m

            yield tf, members()


def _map_threads(fn: Callable, items: Iterable, threads: int) -> Iterable:
    """``map`` in ``threads`` threads, in order, with at most a few chunks in flight (PIL releases the GIL)."""
    items = list(items)
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        step = 16 * threads
        for start in range(0, len(items), step):
            yield from pool.map(fn, items[start:start + step])


def choose_subset(n: int, cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``cap`` out of ``n`` (all of them when ``cap`` is None or >= n)."""
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


# ----------------------------------------------------------------------------- tar archives
def tar_image_names(path: str | os.PathLike) -> list[str]:
    """Every image member of a tar / tar.gz, sorted by name (one streaming pass). A member over
    :data:`MAX_MEMBER_BYTES`, or an archive past :func:`max_decompressed_bytes`, stops here, before any
    image is decoded."""
    names = set()
    try:
        with _open_tar(path, MAX_MEMBER_BYTES) as (_, members):
            for m in members:
                if m.isfile() and sources.is_image_member(m.name):
                    names.add(m.name)
    except _TAR_ERRORS as exc:
        raise DataError(f"{path}: not a readable tar archive ({exc}). Delete it and run the download again.") from exc
    if not names:
        raise DataError(f"{path}: the archive holds no image files ({', '.join(sources.IMAGE_EXTENSIONS)}).")
    return sorted(names)


def read_tar_images(path: str | os.PathLike, names: Sequence[str], resize: int, crop: int,
                    threads: int = 1) -> np.ndarray:
    """Decode the members ``names`` of a tar (one streaming pass), in the order of ``names``. Members
    over :data:`MAX_MEMBER_BYTES` (any member, listed or not) are refused before they are read or
    skipped, an archive past :func:`max_decompressed_bytes` as soon as it passes it, images over
    :data:`MAX_IMAGE_PIXELS` before they are decoded."""
    pos = {n: i for i, n in enumerate(names)}
    out = np.empty((len(names), crop, crop, 3), dtype=np.uint8)
    seen = np.zeros(len(names), dtype=bool)
    pending: list[tuple[int, bytes, str]] = []
    pending_bytes = 0
    fix = _REDOWNLOAD.format(archive=path)

    def one(t):
        return decode(t[1], resize, crop, f"member {t[2]} of {path}", fix)

    def flush(pool):
        nonlocal pending_bytes
        for (i, _, _), arr in zip(pending, pool.map(one, pending)):
            out[i] = arr
        pending.clear()
        pending_bytes = 0

    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool, \
                _open_tar(path, MAX_MEMBER_BYTES) as (tf, members):
            for m in members:
                i = pos.get(m.name)
                if i is None or seen[i] or not m.isfile():
                    continue
                seen[i] = True
                pending.append((i, tf.extractfile(m).read(), m.name))
                pending_bytes += m.size
                if len(pending) >= 64 * max(1, threads) or pending_bytes >= _PENDING_BYTES:
                    flush(pool)
            flush(pool)
    except _TAR_ERRORS as exc:
        raise DataError(f"{path}: the tar archive is damaged ({exc}). Delete it and run the download again.") from exc
    if not seen.all():
        raise DataError(f"{path}: {int((~seen).sum())} listed images not found in the archive "
                        f"(first: {[names[i] for i in np.flatnonzero(~seen)[:3]]}).")
    return out


# ----------------------------------------------------------------------------- CIFAR, SVHN, devkit
_DAMAGED = ("The file is damaged or not the published one: delete {archive} and download it again "
            "(lffood download, or re-run the workflow; the checksum is verified).")


def _damaged(archive, where: str, what: str, fix: str = "") -> DataError:
    return DataError(f"{where} of {archive}: {what}. " + (fix or _DAMAGED.format(archive=archive)))


def read_tar_members(path: str | os.PathLike, names: Sequence[str], fix: str = "") -> dict[str, bytes]:
    """The members ``names`` of a tar / tar.gz, read into memory in one streaming pass (no extraction).
    A missing member or an unreadable archive is a :class:`DataError`; ``fix`` says what to do
    (default: delete the archive and download it again). No per-member limit (CIFAR-100's ``train``
    batch is 155 MB), but the archive stops at :func:`max_decompressed_bytes`."""
    fix = fix or _DAMAGED.format(archive=path)
    wanted, out = set(names), {}
    try:
        with _open_tar(path) as (tf, members):
            for m in members:
                if m.name in wanted and m.isfile():
                    out[m.name] = tf.extractfile(m).read()
    except _TAR_ERRORS as exc:
        raise DataError(f"{path}: not a readable tar archive ({exc}). {fix}") from exc
    missing = [n for n in names if n not in out]
    if missing:
        raise _damaged(path, f"member {missing[0]}", f"not found in the archive ({len(missing)} of the "
                       f"{len(names)} members needed are missing: {missing[:3]})", fix)
    return out


class _CifarUnpickler(pickle.Unpickler):
    """``pickle.load(f, encoding="latin1")`` as torchvision calls it on a CIFAR batch, but resolving
    only the globals a pickled numpy array needs (numpy 1.x/2.x names; ``_codecs.encode`` for bytes
    pickled by Python 3): a pickle naming any other callable is refused before anything runs."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not part of a CIFAR batch; not loaded")
        return super().find_class(module, name)


def _unpickle(archive, member: str, data: bytes) -> dict:
    try:
        obj = _CifarUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # damaged bytes can fail almost any way inside pickle
        raise _damaged(archive, f"member {member}", f"not a readable python pickle ({type(exc).__name__}: "
                       f"{exc})") from exc
    if not isinstance(obj, dict):
        raise _damaged(archive, f"member {member}", f"holds a {type(obj).__name__}, not a CIFAR dict")
    return obj


def _cifar_batches(archive, members: Sequence[str], raw: dict[str, bytes], n_classes: int):
    """Images (N, 32, 32, 3) and labels of the pickle batches ``members``, as torchvision reads them."""
    xs, ys = [], []
    for name in members:
        entry = _unpickle(archive, name, raw.pop(name))
        data = entry.get("data")
        labels = np.asarray(entry["labels"] if "labels" in entry else entry.get("fine_labels", []))
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == 3 * 32 * 32):
            raise _damaged(archive, f"member {name}", f"'data' is not an (N, 3072) uint8 array "
                           f"(found {getattr(data, 'shape', type(data).__name__)})")
        if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) \
                or (len(labels) and not 0 <= labels.min() <= labels.max() < n_classes):
            raise _damaged(archive, f"member {name}", f"'labels' / 'fine_labels' are not {len(data)} class "
                           f"indices in 0..{n_classes - 1}")
        xs.append(data)
        ys.append(labels)
    x = np.concatenate(xs).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> HWC, as torchvision
    return np.ascontiguousarray(x), np.concatenate(ys).astype(np.int64)


def read_cifar(archive_path: str | os.PathLike, source: str) -> tuple[Split, Split]:
    """CIFAR-10/100 train and test from the pickle batches of the verified tar.gz, read in memory as
    ``torchvision.datasets.CIFAR10/100`` reads them once extracted: members ``base_folder``/ each name
    of ``train_list`` / ``test_list`` (the class's names, not its md5s), ``data`` (N, 3072) reshaped to
    (N, 3, 32, 32) and made HWC, labels ``labels`` (CIFAR-10) / ``fine_labels`` (CIFAR-100), class
    names under ``meta['key']`` of the ``meta['filename']`` pickle."""
    import torchvision.datasets as tvd

    archive_path = Path(archive_path)
    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[source]
    train_names = [f"{cls.base_folder}/{n}" for n, _ in cls.train_list]
    test_names = [f"{cls.base_folder}/{n}" for n, _ in cls.test_list]
    meta_name = f"{cls.base_folder}/{cls.meta['filename']}"
    raw = read_tar_members(archive_path, [*train_names, *test_names, meta_name])
    classes = _unpickle(archive_path, meta_name, raw.pop(meta_name)).get(cls.meta["key"])
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise _damaged(archive_path, f"member {meta_name}", f"'{cls.meta['key']}' is not a list of class names")
    tr_x, tr_y = _cifar_batches(archive_path, train_names, raw, len(classes))
    te_x, te_y = _cifar_batches(archive_path, test_names, raw, len(classes))
    x = tr_x.reshape(-1, 3).astype(np.float64) / 255.0
    common = {"benchmark": source, "dataset": source, "classes": classes, "image_size": int(tr_x.shape[1]),
              "source": archive_path.name}
    return (Split(tr_x, tr_y, {**common, "role": "id_train", "mean": x.mean(0).tolist(), "std": x.std(0).tolist()}),
            Split(te_x, te_y, {**common, "role": "id_test"}))


def read_svhn(archive_path: str | os.PathLike) -> np.ndarray:
    """SVHN test images (N, 32, 32, 3) from the verified test_32x32.mat, read with ``scipy.io.loadmat``
    as ``torchvision.datasets.SVHN`` reads it: ``X`` is (32, 32, 3, N) uint8."""
    import scipy.io

    try:
        x = scipy.io.loadmat(archive_path, variable_names=["X"]).get("X")
    except Exception as exc:  # a damaged .mat fails in many ways inside scipy
        raise _damaged(archive_path, "variable X", f"not a readable MATLAB file ({type(exc).__name__}: "
                       f"{exc})") from exc
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4 and x.shape[:3] == (32, 32, 3)):
        raise _damaged(archive_path, "variable X", f"not a (32, 32, 3, N) uint8 array (found "
                       f"{getattr(x, 'shape', 'nothing')})")
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2))


def read_devkit(path: str | os.PathLike) -> list[str]:
    """The WNID of every ILSVRC-2012 validation image, from the devkit ``ILSVRC2012_devkit_t12.tar.gz``,
    read as ``torchvision.datasets.imagenet.parse_devkit_archive`` reads it (members in memory, no
    extraction): ``data/meta.mat`` maps the ILSVRC2012_ID of each leaf synset (``num_children`` 0) to
    its WNID, and line i of ``data/ILSVRC2012_validation_ground_truth.txt`` is the ILSVRC2012_ID of
    ``ILSVRC2012_val_{i:08d}.JPEG``. Returns the WNIDs in line order (item 0 is image 1)."""
    import scipy.io

    fix = (f"Replace {path} with the ILSVRC-2012 devkit from image-net.org (ILSVRC2012_devkit_t12.tar.gz), "
           f"or sort val/ into one folder per WNID with {sources.VALPREP_URL} and remove the devkit.")
    raw = read_tar_members(path, [sources.DEVKIT_META, sources.DEVKIT_GROUND_TRUTH], fix)
    try:
        synsets = np.atleast_1d(scipy.io.loadmat(io.BytesIO(raw[sources.DEVKIT_META]), squeeze_me=True)["synsets"])
        id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except Exception as exc:  # damaged .mat, or no synsets table with these fields
        raise _damaged(path, f"member {sources.DEVKIT_META}", f"not the devkit's synset table "
                       f"({type(exc).__name__}: {exc})", fix) from exc
    wnids = []
    for i, line in enumerate(raw[sources.DEVKIT_GROUND_TRUTH].decode("latin1").splitlines(), 1):
        try:
            wnids.append(id_to_wnid[int(line)])
        except (ValueError, KeyError):
            raise _damaged(path, f"member {sources.DEVKIT_GROUND_TRUTH}", f"line {i} ({line!r}) is not the "
                           f"ILSVRC2012_ID of a leaf synset of {sources.DEVKIT_META}", fix) from None
    return wnids


# ----------------------------------------------------------------------------- benchmark splits
def _write_files(path: str | os.PathLike | None, names: Sequence[str]) -> None:
    if path is not None:
        write_text_atomic(path, "".join(f"{n}\n" for n in names))


def prepare_ood(dataset: Mapping, split: str, archive_path: str | os.PathLike, out: str | os.PathLike,
                files_out: str | os.PathLike | None = None, threads: int = 1) -> Split:
    """One OOD split of a paper benchmark: read, seeded cap (``dataset.ood_max_images``), test
    preprocessing (``dataset.ood_resize`` / ``ood_crop``), written to ``out`` with its file list."""
    from PIL import Image

    source, seed = dataset["source"], int(dataset["seed"])
    resize, crop, cap = int(dataset["ood_resize"]), int(dataset["ood_crop"]), dataset.get("ood_max_images")
    entry = ood_set(source, split)
    if entry.preprocess != "resize_crop":
        raise DataError(f"OOD set '{split}' of dataset source '{source}' is {entry.preprocess}, not read from "
                        "an archive")
    key = entry.archive
    a = sources.archive(key)
    archive_path = Path(archive_path)
    if a.kind == "svhn":
        all_images = read_svhn(archive_path)
        names = [f"{a.filename}#{i}" for i in range(len(all_images))]
        idx = choose_subset(len(names), cap, seed)
        chosen = [names[i] for i in idx]
        images = np.stack([resize_center_crop(Image.fromarray(all_images[i]), resize, crop) for i in idx]) \
            if len(idx) else np.empty((0, crop, crop, 3), np.uint8)
    elif a.kind == "tar":
        names = tar_image_names(archive_path)
        idx = choose_subset(len(names), cap, seed)
        chosen = [names[i] for i in idx]
        images = read_tar_images(archive_path, chosen, resize, crop, threads)
    else:
        raise DataError(f"OOD set '{split}' maps to archive '{key}' of kind {a.kind!r}, which is not an OOD reader")
    meta = {"benchmark": source, "dataset": split, "role": "ood", "description": a.description,
            "source": a.filename, "image_size": crop, "seed": seed,
            "preprocess": {"resize": resize, "center_crop": crop, "max_images": cap},
            "available": len(names), "files": chosen}
    result = Split(images, np.full(len(chosen), OOD_LABEL, dtype=np.int64), meta)
    _write_files(files_out, chosen)
    save_split(out, result)
    log.info("wrote %s: %d of %d images of %s at %dx%d", out, len(result), len(names), split, crop, crop)
    return result


def prepare_cifar(dataset: Mapping, archive_path: str | os.PathLike, outputs: Mapping[str, str]) -> dict[str, Split]:
    train, test = read_cifar(archive_path, dataset["source"])
    for split in (train, test):
        split.meta["seed"] = int(dataset["seed"])
    out = {"train": train, "test": test}
    for name, path in outputs.items():
        save_split(path, out[name])
        log.info("wrote %s: %d images, %d classes", path, len(out[name]), len(out[name].meta["classes"]))
    return out


_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")


def _flat_val_files(root: Path, wnids: Sequence[str]) -> dict[str, list[str]]:
    """``{wnid: [val/ILSVRC2012_val_N.JPEG, ...]}`` (sorted by name) of a flat ``val/``, labelled by the
    devkit in ``root``; other files in ``val/`` are ignored."""
    devkit = root / sources.DEVKIT
    truth = read_devkit(devkit)
    out = {w: [] for w in wnids}
    for name in sorted(os.listdir(root / "val")):
        if not (m := _VAL_NAME.fullmatch(name)):
            continue
        i = int(m.group(1))
        if not 1 <= i <= len(truth):
            raise DataError(f"{root / 'val' / name} has no label: the ground truth of {devkit} has {len(truth)} "
                            f"lines (images 1..{len(truth)}). Use the ILSVRC-2012 devkit of these images (from "
                            f"image-net.org), or sort val/ into one folder per WNID with {sources.VALPREP_URL}.")
        if truth[i - 1] in out:
            out[truth[i - 1]].append(f"val/{name}")
    return out


def imagenet_files(root: str | os.PathLike, wnids: Sequence[str], split: str) -> tuple[list[str], np.ndarray]:
    """Relative paths (``train/<wnid>/x.JPEG``) and labels (index in ``wnids``) of one ILSVRC split,
    class by class, each class's files sorted by name. A flat ``val/`` (as ILSVRC-2012 ships it) is
    labelled by the devkit (:func:`read_devkit`): paths ``val/ILSVRC2012_val_N.JPEG``, otherwise the
    same images in the same order as the sorted ``val/<wnid>/`` layout."""
    root = Path(root)
    sub = {"train": "train", "test": "val"}[split]
    flat = sub == "val" and sources.flat_val(root, wnids)
    by_class = _flat_val_files(root, wnids) if flat else {}
    files, labels = [], []
    for label, w in enumerate(wnids):
        d = root / sub / w
        if flat:
            found, where = by_class[w], f"{root / sub} (labelled by {root / sources.DEVKIT})"
        else:
            found = [f"{sub}/{w}/{p.name}" for p in sorted(d.iterdir())
                     if p.suffix.lower() in (".jpeg", ".jpg", ".png")] if d.is_dir() else []
            where = d
        if not found:
            raise DataError(f"{where}: no images for class {w}. Check dataset.imagenet_root ({root}) and "
                            f"dataset.class_list.")
        files += found
        labels += [label] * len(found)
    return files, np.asarray(labels, dtype=np.int64)


def prepare_imagenet(dataset: Mapping, split: str, out: str | os.PathLike, files_out: str | os.PathLike | None = None,
                     threads: int = 1, chunk: int = 512) -> None:
    """ImageNet-100 ``train`` or ``test`` from ``dataset.imagenet_root``, streamed to ``out`` in chunks."""
    root = dataset.get("imagenet_root")
    wnids = sources.read_class_list(dataset["class_list"])
    problems = sources.check_imagenet_root(root, wnids)
    if problems:
        raise ConfigError("ImageNet-100 cannot be built:\n" + "\n".join(f"  - {p}" for p in problems))
    root = Path(root).expanduser()
    files, labels = imagenet_files(root, wnids, split)
    if split == "train":
        resize = crop = int(dataset["train_size"])
    else:
        resize, crop = int(dataset["ood_resize"]), int(dataset["ood_crop"])
    meta = {"benchmark": "imagenet100", "dataset": "imagenet100", "classes": list(wnids),
            "class_list": dataset["class_list"], "image_size": crop, "seed": int(dataset["seed"]),
            "role": "id_train" if split == "train" else "id_test",
            "source": str(root), "preprocess": {"resize": resize, "center_crop": crop}}
    if split == "test" and sources.flat_val(root, wnids):
        meta["val_labels"] = str(root / sources.DEVKIT)
    log.info("ImageNet-100 %s: %d images of %d classes from %s -> %dx%d", split, len(files), len(wnids), root,
             crop, crop)

    def load(rel):
        return decode(str(root / rel), resize, crop,
                      fix=f"Remove or replace that file under dataset.imagenet_root ({root}): no ILSVRC-2012 image "
                          f"is this large, so it is damaged or not part of ImageNet.")

    _write_files(files_out, files)
    with SplitWriter(out, labels, (crop, crop), meta) as w:
        buf = []
        for arr in _map_threads(load, files, threads):
            buf.append(arr)
            if len(buf) == chunk:
                w.write(np.stack(buf))
                buf.clear()
                if w.written % (chunk * 20) == 0:
                    log.info("  %d / %d images", w.written, len(files))
        if buf:
            w.write(np.stack(buf))
        if split == "train":
            w.meta.update(mean=w.mean(), std=w.std())
    log.info("wrote %s: %d images", out, len(files))
