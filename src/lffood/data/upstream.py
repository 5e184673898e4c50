"""Small datasets in their exact upstream formats, and a loopback HTTP server to serve them.

Used by the rehearsal of the paper benchmarks (:mod:`lffood.rehearsal`) and by the tests: the
download and preprocessing code reads these bytes exactly as it reads the real archives.

Formats: CIFAR-10/100 python pickle batches in a tar.gz, the SVHN test .mat, ODIN image-folder
tarballs, the DTD r1.0.1 tarball layout, a Places365 test_256-style plain tar, MOS-style tar.gz,
and an ILSVRC-2012 folder (train/<wnid>/, val/<wnid>/ or flat val/ with the devkit).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np

from . import sources


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def jpeg(rng: np.random.Generator, w: int, h: int, fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    from PIL import Image

    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A decompression bomb: a valid 1-bit grayscale PNG of ``width`` x ``height`` zero pixels. Rows
    of zeros deflate about 1000:1, so 20000 x 20000 (400 Mpx, 1.2 GB once decoded as RGB) is ~50 KB."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed bits of one row
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * 256) for _ in range(height // 256))
    idat += z.compress(row * (height % 256)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ----------------------------------------------------------------------------- CIFAR / SVHN
def cifar_tgz(kind: str = "cifar10", per_batch: int = 20, n_test: int = 30, seed: int = 0, cover_classes: bool = False):
    """A cifar-10-python.tar.gz / cifar-100-python.tar.gz with tiny batches. Returns (bytes, attrs)
    where attrs are the torchvision class attributes (tgz_md5, train_list, test_list, meta) to patch.
    ``cover_classes``: labels cycle through the classes (every class has an image once there are
    as many images as classes) instead of being drawn at random."""
    rng = np.random.default_rng(seed)
    k = 10 if kind == "cifar10" else 100
    label_key = "labels" if kind == "cifar10" else "fine_labels"
    folder = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    train_names = [f"data_batch_{i}" for i in range(1, 6)] if kind == "cifar10" else ["train"]
    test_names = ["test_batch"] if kind == "cifar10" else ["test"]
    meta_name, meta_key = ("batches.meta", "label_names") if kind == "cifar10" else ("meta", "fine_label_names")
    members, train_list, test_list = {}, [], []
    for names, n, lst in ((train_names, per_batch, train_list), (test_names, n_test, test_list)):
        for i, name in enumerate(names):
            labels = (np.arange(i * n, (i + 1) * n) % k).tolist() if cover_classes else rng.integers(0, k, n).tolist()
            batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: labels, "batch_label": name}
            data = pickle.dumps(batch, protocol=2)
            members[f"{folder}/{name}"] = data
            lst.append([name, md5(data)])
    meta = pickle.dumps({meta_key: [f"class{i}" for i in range(k)]}, protocol=2)
    members[f"{folder}/{meta_name}"] = meta
    blob = tar_bytes(members)
    return blob, {"tgz_md5": md5(blob), "train_list": train_list, "test_list": test_list,
                  "meta": {"filename": meta_name, "key": meta_key, "md5": md5(meta)}}


def svhn_mat(n: int = 40, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """test_32x32.mat as SVHN ships it: X (32, 32, 3, N) uint8, y (N, 1) in 1..10. Returns (bytes, X)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"X": x, "y": y})
    return buf.getvalue(), x


# ----------------------------------------------------------------------------- image tarballs
def odin_tgz(folder: str = "LSUN/test", n: int = 12, size: int = 36, seed: int = 0) -> bytes:
    """ODIN release layout: one folder of 32x32-ish JPEGs (LSUN/test/*.jpg, LSUN_resize/*.jpg, ...)."""
    rng = np.random.default_rng(seed)
    members = {f"{folder}/{i:04d}.jpg": jpeg(rng, size, size) for i in range(n)}
    members[f"{folder}/._0000.jpg"] = b"\x00\x05\x16\x07 AppleDouble"  # macOS resource fork: must be skipped
    return tar_bytes(members)


def dtd_tgz(classes=("banded", "woven"), per_class: int = 4, seed: int = 0) -> bytes:
    """dtd-r1.0.1.tar.gz layout: dtd/images/<class>/<class>_NNNN.jpg, labels/ and imdb/ beside."""
    rng = np.random.default_rng(seed)
    members = {}
    for c in classes:
        for i in range(per_class):
            w, h = int(rng.integers(40, 70)), int(rng.integers(40, 70))
            members[f"dtd/images/{c}/{c}_{i:04d}.jpg"] = jpeg(rng, w, h)
    members["dtd/labels/labels_joint_anno.txt"] = b"banded/banded_0000.jpg banded\n"
    members["dtd/imdb/imdb.mat"] = b"not an image"
    # one grayscale image: readers must convert to RGB
    members[f"dtd/images/{classes[0]}/{classes[0]}_gray.jpg"] = jpeg(rng, 50, 44, mode="L")
    return tar_bytes(members)


def places_tar(n: int = 30, size: int = 48, seed: int = 0) -> bytes:
    """test_256.tar layout (plain tar): test_256/Places365_test_NNNNNNNN.jpg."""
    rng = np.random.default_rng(seed)
    return tar_bytes({f"test_256/Places365_test_{i + 1:08d}.jpg": jpeg(rng, size, size) for i in range(n)}, mode="w")


def mos_tgz(name: str = "iNaturalist", n: int = 10, seed: int = 0) -> bytes:
    """MOS ImageNet OOD set layout: <Name>/images/*.jpg, various sizes."""
    rng = np.random.default_rng(seed)
    return tar_bytes({f"{name}/images/{i:05d}.jpg": jpeg(rng, int(rng.integers(60, 90)), int(rng.integers(60, 90)))
                      for i in range(n)})


def ilsvrc_devkit(wnids, val_wnids) -> bytes:
    """ILSVRC2012_devkit_t12.tar.gz reduced to what readers use: ``data/meta.mat`` (``synsets``, the
    fields of the real file in its order, read by name or by position as torchvision does: leaf
    synsets ``wnids`` with ILSVRC2012_ID 1..N, then one parent synset) and
    ``data/ILSVRC2012_validation_ground_truth.txt`` (line i: the ILSVRC2012_ID of
    ILSVRC2012_val_{i:08d}.JPEG, whose WNID is ``val_wnids[i - 1]``)."""
    import scipy.io

    fields = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images")
    rows = [(i, w, f"{w} words, {w} synonym", f"gloss of {w}", 0, np.zeros((1, 0)), 0, 1300)
            for i, w in enumerate(wnids, 1)]
    n = len(wnids)
    rows.append((n + 1, "n00001740", "entity", "the root", n, np.arange(1, n + 1, dtype=float), 1, 0))
    synsets = np.empty((len(rows), 1), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for f, v in zip(fields, row):
            synsets[i, 0][f] = v
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": synsets})
    ids = {w: i for i, w in enumerate(wnids, 1)}
    truth = "".join(f"{ids[w]}\n" for w in val_wnids).encode()
    return tar_bytes({sources.DEVKIT_META: buf.getvalue(), sources.DEVKIT_GROUND_TRUTH: truth,
                      "ILSVRC2012_devkit_t12/readme.txt": b"ILSVRC2012 development kit (fixture)\n"})


def ilsvrc_folder(root: Path, wnids, train_per_class: int = 2, val_per_class: int = 1, flat_val: bool = False,
                  seed: int = 0) -> Path:
    """An ILSVRC-2012 folder: train/<wnid>/<wnid>_N.JPEG and val/<wnid>/ILSVRC2012_val_N.JPEG, or with
    ``flat_val`` val/ILSVRC2012_val_N.JPEG and the devkit (:func:`ilsvrc_devkit`) that labels them in
    the root. N runs over 1..K with the classes interleaved, as in ILSVRC-2012 (image j of class c is
    number j * len(wnids) + c + 1); both layouts hold the same images under the same names."""
    rng = np.random.default_rng(seed)
    for c, w in enumerate(wnids):
        (root / "train" / w).mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class):
            (root / "train" / w / f"{w}_{i}.JPEG").write_bytes(jpeg(rng, int(rng.integers(20, 30)), 24))
        vdir = root / "val" if flat_val else root / "val" / w
        vdir.mkdir(parents=True, exist_ok=True)
        for j in range(val_per_class):
            k = j * len(wnids) + c + 1
            (vdir / f"ILSVRC2012_val_{k:08d}.JPEG").write_bytes(jpeg(rng, 26, int(rng.integers(20, 30))))
    if flat_val:
        (root / sources.DEVKIT).write_bytes(ilsvrc_devkit(wnids, list(wnids) * val_per_class))
    return root


# ----------------------------------------------------------------------------- HTTP server
class FixtureServer:
    """A loopback HTTP server in a thread serving in-memory files, with optional Range support,
    redirects and injected failures. ``requests`` records (path, Range header) of every GET;
    ``redirects`` maps a path to the URL it answers with a 302."""

    def __init__(self, range_support: bool = True):
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.range_support = range_support
        self.cut_after: dict[str, list[int]] = {}  # path -> byte counts at which to drop the next responses
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                rng = self.headers.get("Range")
                server.requests.append((path, rng))
                if path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if rng and server.range_support:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                    self.send_header("Accept-Ranges", "bytes" if server.range_support else "none")
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cuts = server.cut_after.get(path)
                if cuts:
                    self.wfile.write(body[:cuts.pop(0)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add(self, name: str, data: bytes) -> str:
        self.files[f"/{name}"] = data
        return self.url(name)

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        """The URL of ``name``; ``host="localhost"`` reaches the same server under another host name."""
        return f"http://{host}:{self.httpd.server_address[1]}/{name}"

    def redirect(self, name: str, target: str) -> str:
        """Answer ``name`` with a 302 to ``target``; returns the URL of ``name``."""
        self.redirects[f"/{name}"] = target
        return self.url(name)

    def count(self, name: str | None = None) -> int:
        return len(self.requests) if name is None else Counter(p for p, _ in self.requests)[f"/{name}"]

    def __enter__(self) -> FixtureServer:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def torchvision_weights(arch: str = "resnet50", num_classes: int = 1000, seed: int = 0) -> bytes:
    """A torchvision ``state_dict`` file as download.pytorch.org serves it (``torch.save`` of the plain
    dict, torchvision's key names, a ``num_classes``-way ``fc``), with seeded random weights."""
    import io

    import torch
    import torchvision

    gen = torch.Generator().manual_seed(seed)
    state = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes).state_dict()
    state = {k: (0.02 * torch.randn(v.shape, generator=gen) if v.is_floating_point() and "running_var" not in k
                 else v) for k, v in state.items()}  # seeded values, whatever torch's global generator holds
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()
