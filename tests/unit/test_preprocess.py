"""Upstream formats -> download -> verify -> read -> preprocess -> split file -> loader, through the real code."""

import dataclasses
import io

import numpy as np
import pytest
import torch

from data import fixtures as fx
from lffood.config import validate_config
from lffood.data import download as dl
from lffood.data import preprocess as pp
from lffood.data import sources
from lffood.data import upstream
from lffood.data.arrays import Split, SplitWriter, load_split, save_split
from lffood.data.loader import TensorImages
from lffood.errors import ConfigError, DataError

from conftest import SCHEMA

torch.set_num_threads(1)


def _cfg(tmp_path, source, ood, urls, **ds):
    return validate_config({"data_dir": str(tmp_path / "data"),
                            "downloads": {"lock_file": str(tmp_path / "checksums.lock"), "urls": urls, "retries": 0},
                            "run": ["b"], "benchmarks": {"b": {"dataset": {"source": source, "ood_sets": ood, **ds}}}},
                           SCHEMA)


def _patch_md5(monkeypatch, key, blob):
    """Fixture archives cannot match the real published md5: give the registry the fixture's."""
    monkeypatch.setitem(sources.ARCHIVES, key, dataclasses.replace(sources.ARCHIVES[key], md5=fx.md5(blob)))


# ----------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("w,h,resize,crop", [(50, 37, 32, 32), (37, 50, 32, 32), (300, 260, 256, 224),
                                             (32, 32, 32, 32), (81, 64, 40, 36)])
def test_resize_center_crop_matches_torchvision(w, h, resize, crop):
    from PIL import Image
    from torchvision import transforms as T

    img = Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8))
    want = np.asarray(T.Compose([T.Resize(resize), T.CenterCrop(crop)])(img))
    got = pp.resize_center_crop(img, resize, crop)
    assert got.dtype == np.uint8 and got.shape == (crop, crop, 3)
    np.testing.assert_array_equal(got, want)


def test_choose_subset_is_seeded_sorted_and_capped():
    a, b = pp.choose_subset(1000, 10, seed=3), pp.choose_subset(1000, 10, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(set(a)) == 10 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, pp.choose_subset(1000, 10, seed=4))
    np.testing.assert_array_equal(pp.choose_subset(5, 10, 0), np.arange(5))
    np.testing.assert_array_equal(pp.choose_subset(5, None, 0), np.arange(5))


# ----------------------------------------------------------------------------- CIFAR and SVHN
@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_end_to_end(tmp_path, monkeypatch, kind):
    import torchvision.datasets as tvd

    blob, attrs = fx.cifar_tgz(kind)
    cls = tvd.CIFAR10 if kind == "cifar10" else tvd.CIFAR100
    # the reader takes the member names from the (unpatched) class and checks no md5 of its own; the
    # download verifies the archive against the md5 it is given, here the fixture's
    assert [n for n, _ in cls.train_list] == [n for n, _ in attrs["train_list"]]
    assert all(m != tvd_md5 for (_, m), (_, tvd_md5) in zip(attrs["train_list"], cls.train_list))
    monkeypatch.setattr(cls, "tgz_md5", attrs["tgz_md5"])
    with fx.FixtureServer() as srv:
        cfg = _cfg(tmp_path, kind, ["svhn"], {kind: srv.add(cls.filename, blob)})
        path = dl.fetch_archive(cfg, kind)
        assert path.name == cls.filename
        out = {s: tmp_path / "data" / "b" / f"{s}.npz" for s in ("train", "test")}
        pp.prepare_cifar(cfg["benchmarks"]["b"]["dataset"], path, out)
        dl.fetch_archive(cfg, kind)  # re-run: verified, not downloaded again
        assert srv.count() == 1
    train, test = load_split(out["train"]), load_split(out["test"])
    n_train = 5 * 20 if kind == "cifar10" else 20
    assert train.images.shape == (n_train, 32, 32, 3) and test.images.shape == (30, 32, 32, 3)
    assert train.meta["role"] == "id_train" and test.meta["role"] == "id_test"
    assert len(train.meta["classes"]) == (10 if kind == "cifar10" else 100)
    # pixels: batch row 0 of the first pickle, CHW-flattened upstream, HWC here
    import pickle
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        name = [m for m in tf.getnames() if m.endswith(("data_batch_1", "/train"))][0]
        first = pickle.load(tf.extractfile(name), encoding="latin1")
    np.testing.assert_array_equal(train.images[0], first["data"][0].reshape(3, 32, 32).transpose(1, 2, 0))
    assert train.labels[0] == first["labels" if kind == "cifar10" else "fine_labels"][0]
    x = np.asarray(train.images, np.float64) / 255
    np.testing.assert_allclose(train.meta["mean"], x.reshape(-1, 3).mean(0), rtol=1e-6)
    np.testing.assert_allclose(train.meta["std"], x.reshape(-1, 3).std(0), rtol=1e-6)
    assert [p.name for p in path.parent.iterdir()] == [cls.filename]  # nothing extracted
    data = TensorImages(train, train.meta["mean"], train.meta["std"])
    xb, yb = data.batch(torch.arange(4))
    assert xb.shape == (4, 3, 32, 32) and yb.dtype == torch.int64


@pytest.mark.parametrize("kind", ["cifar10", "cifar100", "svhn"])
def test_readers_match_torchvision_dataset_classes(tmp_path, monkeypatch, kind):
    """Reference only: torchvision's class, given the fixture's md5s, on the extracted fixture."""
    import tarfile

    import torchvision.datasets as tvd

    if kind == "svhn":
        blob, _ = fx.svhn_mat(7)
        (tmp_path / "test_32x32.mat").write_bytes(blob)
        monkeypatch.setitem(tvd.SVHN.split_list, "test", ["http://x/test_32x32.mat", "test_32x32.mat", fx.md5(blob)])
        ref = tvd.SVHN(tmp_path, split="test")
        np.testing.assert_array_equal(pp.read_svhn(tmp_path / "test_32x32.mat"), ref.data.transpose(0, 2, 3, 1))
        return
    blob, attrs = fx.cifar_tgz(kind, per_batch=3, n_test=4)
    cls = tvd.CIFAR10 if kind == "cifar10" else tvd.CIFAR100
    for name, value in attrs.items():
        monkeypatch.setattr(cls, name, value)
    path = tmp_path / cls.filename
    path.write_bytes(blob)
    with tarfile.open(path) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    train, test = pp.read_cifar(path, kind)
    for split, ref in ((train, cls(tmp_path / "x", train=True)), (test, cls(tmp_path / "x", train=False))):
        np.testing.assert_array_equal(split.images, ref.data)
        assert split.labels.tolist() == ref.targets and split.meta["classes"] == ref.classes


def _cifar_members(kind="cifar10"):
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(fx.cifar_tgz(kind)[0])) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}


class _Calls:
    def __reduce__(self):
        import os
        return os.getcwd, ()


def _damaged_batch(data_rows):
    import pickle

    return pickle.dumps({"data": data_rows, "labels": [0] * len(data_rows)}, protocol=2)


@pytest.mark.parametrize("damage,member,message", [
    ("missing", "cifar-10-batches-py/data_batch_3", "not found in the archive"),
    ("truncated", "cifar-10-batches-py/test_batch", "not a readable python pickle"),
    ("shape", "cifar-10-batches-py/data_batch_2", "not an \\(N, 3072\\) uint8 array"),
    ("labels", "cifar-10-batches-py/data_batch_1", "not 20 class indices in 0..9"),
    ("code", "cifar-10-batches-py/batches.meta", "getcwd is not part of a CIFAR batch; not loaded"),
])
def test_damaged_cifar_archive_is_a_data_error_naming_the_member(tmp_path, damage, member, message):
    import pickle

    members = _cifar_members()
    if damage == "missing":
        del members[member]
    elif damage == "truncated":
        members[member] = members[member][: len(members[member]) // 2]
    elif damage == "shape":
        members[member] = _damaged_batch(np.zeros((20, 3000), np.uint8))
    elif damage == "code":  # a pickle that calls a function when loaded is refused before the call
        members[member] = pickle.dumps({"label_names": _Calls()}, protocol=2)
    else:
        batch = pickle.loads(members[member], encoding="latin1")
        batch["labels"][3] = 10
        members[member] = pickle.dumps(batch, protocol=2)
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(fx.tar_bytes(members))
    with pytest.raises(DataError, match=message) as exc:
        pp.read_cifar(path, "cifar10")
    assert f"member {member} of {path}" in str(exc.value) and f"delete {path} and download it again" in str(exc.value)
    path.write_bytes(fx.tar_bytes(members)[:300])
    with pytest.raises(DataError, match=f"{path}: not a readable tar archive"):
        pp.read_cifar(path, "cifar10")


def test_damaged_svhn_file_is_a_data_error(tmp_path):
    import scipy.io

    blob, _ = fx.svhn_mat(5)
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=f"variable X of {path}: not a readable MATLAB file"):
        pp.read_svhn(path)
    scipy.io.savemat(path, {"X": np.zeros((32, 32, 5), np.uint8)})
    with pytest.raises(DataError, match=r"not a \(32, 32, 3, N\) uint8 array \(found \(32, 32, 5\)\)"):
        pp.read_svhn(path)


def test_svhn_end_to_end_with_seeded_cap(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    blob, x = fx.svhn_mat(40)
    url_name = "test_32x32.mat"
    # the download's file name and md5 come from torchvision's (patched) class attribute, its http:// URL is
    # fetched over https; the reader itself uses neither
    monkeypatch.setitem(tvd.SVHN.split_list, "test", ["http://svhn.example.org/x/" + url_name, url_name, fx.md5(blob)])
    assert dl.spec("svhn").url == "https://svhn.example.org/x/" + url_name
    with fx.FixtureServer() as srv:
        cfg = _cfg(tmp_path, "cifar10", ["svhn"], {"svhn": srv.add(url_name, blob)}, ood_max_images=25, seed=7)
        path = dl.fetch_archive(cfg, "svhn")
        assert srv.count() == 1
    ds = cfg["benchmarks"]["b"]["dataset"]
    out, files = tmp_path / "svhn.npz", tmp_path / "svhn.files.txt"
    pp.prepare_ood(ds, "svhn", path, out, files)
    s = load_split(out)
    idx = pp.choose_subset(40, 25, 7)
    assert s.images.shape == (25, 32, 32, 3) and (s.labels == -1).all() and s.meta["role"] == "ood"
    np.testing.assert_array_equal(s.images, x.transpose(3, 0, 1, 2)[idx])
    assert files.read_text().split() == [f"test_32x32.mat#{i}" for i in idx] == s.meta["files"]


# ----------------------------------------------------------------------------- tar archives
TAR_CASES = {
    # key: (fixture bytes, resize, crop, cap, expected count)
    "lsun_crop": (lambda: fx.odin_tgz("LSUN/test", 12, 36), 32, 32, None, 12),
    "isun": (lambda: fx.odin_tgz("iSUN/iSUN_patches", 9, 32), 32, 32, None, 9),
    "textures": (lambda: fx.dtd_tgz(), 32, 32, None, 9),
    "places365": (lambda: fx.places_tar(30), 32, 32, 10, 10),
    "inaturalist": (lambda: fx.mos_tgz("iNaturalist", 6), 64, 56, None, 6),
}


@pytest.mark.parametrize("split", list(TAR_CASES))
def test_tar_ood_sets_end_to_end(tmp_path, monkeypatch, split):
    make, resize, crop, cap, n = TAR_CASES[split]
    blob = make()
    source = "imagenet100" if split == "inaturalist" else "cifar10"
    key = sources.ood_archive(source, split)
    if sources.archive(key).md5:
        _patch_md5(monkeypatch, key, blob)
    else:  # a plain-http mirror needs a pinned checksum: here an entry of the lock file
        import hashlib

        dl.record_lock(tmp_path / "checksums.lock", key,
                       {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)})
    with fx.FixtureServer() as srv:
        cfg = _cfg(tmp_path, source, [split], {key: srv.add(sources.archive(key).filename, blob)},
                   ood_resize=resize, ood_crop=crop, ood_max_images=cap, seed=1)
        path = dl.fetch_archive(cfg, key)
        dl.fetch_archive(cfg, key)
        assert srv.count() == 1  # re-run: nothing downloaded twice
    if not sources.archive(key).md5:
        assert key in dl.read_lock(tmp_path / "checksums.lock")
    out, files = tmp_path / "o" / f"{split}.npz", tmp_path / "o" / f"{split}.files.txt"
    pp.prepare_ood(cfg["benchmarks"]["b"]["dataset"], split, path, out, files, threads=2)
    s = load_split(out)
    assert s.images.shape == (n, crop, crop, 3) and s.images.dtype == np.uint8 and (s.labels == -1).all()
    names = files.read_text().split()
    assert names == s.meta["files"] and len(names) == n and names == sorted(names)
    assert not any("/._" in m or not m.lower().endswith((".jpg", ".jpeg")) for m in names)
    # each image is the upstream member decoded with the same Resize+CenterCrop
    import tarfile

    from PIL import Image
    with tarfile.open(path) as tf:
        ref = pp.resize_center_crop(Image.open(tf.extractfile(names[-1])), resize, crop)
    np.testing.assert_array_equal(s.images[-1], ref)
    if cap:  # the seeded subset is reproducible
        pp.prepare_ood(cfg["benchmarks"]["b"]["dataset"], split, path, tmp_path / "again.npz", tmp_path / "again.txt")
        assert (tmp_path / "again.txt").read_text() == files.read_text()


def test_corrupt_tar_is_a_clear_error(tmp_path):
    bad = tmp_path / "LSUN.tar.gz"
    bad.write_bytes(fx.odin_tgz()[:200])
    with pytest.raises(DataError, match="LSUN.tar.gz"):
        pp.tar_image_names(bad)


# ----------------------------------------------------------------------------- size limits
def _tar_with(tmp_path, extra: dict, name="LSUN.tar.gz"):
    rng = np.random.default_rng(0)
    members = {f"LSUN/test/{i:04d}.jpg": fx.jpeg(rng, 36, 36) for i in range(3)}
    path = tmp_path / name
    path.write_bytes(fx.tar_bytes({**members, **extra}))
    return path


def test_decompression_bomb_in_a_tar_is_a_data_error_naming_archive_and_member(tmp_path):
    bomb = fx.bomb_png(20000, 20000)  # 400 Mpx: over twice PIL's threshold, so PIL itself refuses it
    assert len(bomb) < 100_000
    path = _tar_with(tmp_path, {"LSUN/test/0002_bomb.png": bomb})
    names = pp.tar_image_names(path)
    assert "LSUN/test/0002_bomb.png" in names
    for threads in (1, 2):
        with pytest.raises(DataError) as exc:
            pp.read_tar_images(path, names, 32, 32, threads=threads)
        msg = str(exc.value)
        assert f"member LSUN/test/0002_bomb.png of {path}" in msg and "MAX_IMAGE_PIXELS" in msg
        assert f"Delete {path} and download it again" in msg


def test_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    import warnings

    big = fx.bomb_png(9000, 9000)  # 81 Mpx: over lffood's limit, under PIL's warning threshold
    assert 9000 * 9000 > pp.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before PIL warns or decodes
        with pytest.raises(DataError, match="declares 9000 x 9000 = 81,000,000 pixels, over the limit"):
            pp.decode(big, 32, 32, "member x.png of a.tar")
    ok = fx.bomb_png(64, 48)
    assert pp.decode(ok, 32, 32).shape == (32, 32, 3)
    # an ILSVRC-style file on disk: same limits, the error names the file
    f = tmp_path / "n0001_1.JPEG"
    f.write_bytes(big)
    with pytest.raises(DataError, match=f"{f}: the image declares"):
        pp.decode(str(f), 32, 32)


def test_oversized_tar_member_is_refused_before_reading(tmp_path):
    huge = b"\0" * (pp.MAX_MEMBER_BYTES + 1)  # deflates to ~64 KB in the .tar.gz
    path = _tar_with(tmp_path, {"LSUN/test/0001_huge.jpg": huge})
    assert path.stat().st_size < 1_000_000
    for call in (lambda: pp.tar_image_names(path),
                 lambda: pp.read_tar_images(path, ["LSUN/test/0000.jpg", "LSUN/test/0001_huge.jpg"], 32, 32)):
        with pytest.raises(DataError) as exc:
            call()
        msg = str(exc.value)
        assert f"member LSUN/test/0001_huge.jpg of {path}" in msg and f"{pp.MAX_MEMBER_BYTES + 1:,} bytes" in msg
        assert "MAX_MEMBER_BYTES" in msg and f"Delete {path}" in msg


def _zeros_tgz(path, members, first=()):
    """A tar.gz of ``first`` (name, bytes) members, then ``members`` (name, size) of zeros, written as a
    stream of gzip members: 1 MiB of zeros gzips to ~1 KB once and is repeated, so a GiB of zeros takes
    ~1 MB and a few milliseconds to write (gzip readers, Python's included, read concatenated members)."""
    import gzip
    import tarfile

    mib = 1 << 20
    block = gzip.compress(b"\0" * mib, 9)
    with open(path, "wb") as f:
        for name, data in first:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            f.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)))
        for name, size in members:
            info = tarfile.TarInfo(name)
            info.size = size
            f.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
            full, rest = divmod(size, mib)
            f.write(block * full)
            f.write(gzip.compress(b"\0" * (rest + -size % 512)))
        f.write(gzip.compress(b"\0" * 1024))  # end of archive
    return path


def _one_image():
    return ("LSUN/test/0000.jpg", fx.jpeg(np.random.default_rng(0), 36, 36))


@pytest.mark.parametrize("member", ["LSUN/test/0001_bomb.jpg", "LSUN/test/README.bin"])
def test_tar_bomb_of_one_member_is_refused_from_its_header_within_seconds(tmp_path, member):
    """1 MB of tar.gz holding 1 GiB of zeros in one member, image or not: refused as soon as its header is
    read, without decompressing it (it used to take a CPU-minute to skip it)."""
    import time

    path = _zeros_tgz(tmp_path / "LSUN.tar.gz", [(member, 1 << 30)], first=[_one_image()])
    assert path.stat().st_size < 2_000_000
    calls = {"tar_image_names": lambda: pp.tar_image_names(path),
             "read_tar_images": lambda: pp.read_tar_images(path, ["LSUN/test/0000.jpg"], 32, 32),
             "read_tar_members": lambda: pp.read_tar_members(path, ["LSUN/test/0000.jpg"])}
    for name, call in calls.items():
        t0 = time.monotonic()
        with pytest.raises(DataError) as exc:
            call()
        assert time.monotonic() - t0 < 5, name
        msg = str(exc.value)
        assert f"{member} of {path}" in msg or (f"{path}: member {member}" in msg), name
        assert "1,073,741,824 bytes (from its tar header)" in msg and "download it again" in msg.lower(), name


def test_tar_bomb_spread_over_members_stops_at_the_archive_limit_within_seconds(tmp_path):
    """1 GiB of zeros in 48 MiB members (each under the per-member limit): the archive's decompressed
    bytes are capped (MAX_EXPANSION x its size on disk + EXPANSION_SLACK), naming archive and member."""
    import time

    members = [(f"LSUN/test/{i:04d}.jpg", 48 << 20) for i in range(1, 23)]
    path = _zeros_tgz(tmp_path / "LSUN.tar.gz", members, first=[_one_image()])
    limit = pp.max_decompressed_bytes(path)
    assert limit == pp.MAX_EXPANSION * path.stat().st_size + pp.EXPANSION_SLACK < 200 << 20
    for call in (lambda: pp.tar_image_names(path),
                 lambda: pp.read_tar_images(path, ["LSUN/test/0000.jpg"], 32, 32),
                 lambda: pp.read_tar_members(path, ["LSUN/test/0000.jpg"])):
        t0 = time.monotonic()
        with pytest.raises(DataError) as exc:
            call()
        assert time.monotonic() - t0 < 5
        msg = str(exc.value)
        assert f"{path}: member LSUN/test/" in msg and f"decompression limit of {limit:,} bytes" in msg
        assert "MAX_EXPANSION" in msg and f"delete {path} and download it again" in msg


def test_long_header_bomb_stops_in_the_decompressed_stream(tmp_path):
    """A GNU long-name header of 200 MiB is read by tarfile before any member is yielded: the counter
    under the stream stops it, naming the member before it."""
    import gzip
    import tarfile

    name, data = _one_image()
    path = tmp_path / "LSUN.tar.gz"
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, 200 << 20
    with open(path, "wb") as f:
        head = tarfile.TarInfo(name)
        head.size = len(data)
        f.write(gzip.compress(head.tobuf(format=tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)))
        f.write(gzip.compress(info._create_header(info.get_info(), tarfile.GNU_FORMAT, "utf-8", "surrogateescape")))
        f.write(gzip.compress(b"\0" * (1 << 20), 9) * 200)
        f.write(gzip.compress(b"\0" * 1024))
    with pytest.raises(DataError) as exc:
        pp.tar_image_names(path)
    msg = str(exc.value)
    assert f"more than {pp.max_decompressed_bytes(path):,} bytes decompressed, reached at member {name}" in msg


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_tar_readers_read_every_compression(tmp_path, mode):
    rng = np.random.default_rng(0)
    members = {f"LSUN/test/{i:04d}.jpg": fx.jpeg(rng, 36, 36) for i in range(3)}
    path = tmp_path / "LSUN.tar"
    path.write_bytes(fx.tar_bytes({**members, "LSUN/notes.txt": b"x"}, mode=mode))
    assert pp.tar_image_names(path) == sorted(members)
    assert pp.read_tar_images(path, sorted(members), 32, 32).shape == (3, 32, 32, 3)
    assert pp.read_tar_members(path, ["LSUN/notes.txt"]) == {"LSUN/notes.txt": b"x"}
    path.write_bytes(path.read_bytes()[:-700])  # truncated: a clear error, whatever the compression
    with pytest.raises(DataError, match=f"{path}: "):
        pp.read_tar_members(path, ["LSUN/notes.txt", "LSUN/zzz"])


def test_oversized_image_file_in_a_folder_is_not_read(tmp_path, monkeypatch):
    f = tmp_path / "n0001_1.JPEG"
    f.write_bytes(fx.jpeg(np.random.default_rng(0), 40, 40))
    assert pp.decode(str(f), 32, 32).shape == (32, 32, 3)
    monkeypatch.setattr(pp, "MAX_MEMBER_BYTES", f.stat().st_size - 1)
    with pytest.raises(DataError, match=f"{f}: image file of .* bytes is over the limit"):
        pp.decode(str(f), 32, 32)


def test_size_limits_are_generous_for_the_paper_sets():
    assert pp.MAX_IMAGE_PIXELS >= 8192 * 8192 and pp.MAX_MEMBER_BYTES >= 64 << 20


# ----------------------------------------------------------------------------- ImageNet-100
def _imagenet_ds(root, **kw):
    cfg = validate_config({"run": ["b"], "benchmarks": {"b": {"dataset": {
        "source": "imagenet100", "ood_sets": ["sun"], "imagenet_root": str(root) if root else None,
        "ood_resize": 24, "ood_crop": 20, "train_size": 16, **kw}}}}, SCHEMA)
    return cfg["benchmarks"]["b"]["dataset"]


@pytest.mark.parametrize("class_list", ["I", "II"])
def test_imagenet100_from_ilsvrc_folder(tmp_path, class_list):
    wnids = sources.read_class_list(class_list)
    root = fx.ilsvrc_folder(tmp_path / "ILSVRC", wnids + ["n99999999"], train_per_class=2, val_per_class=1)
    ds = _imagenet_ds(root, class_list=class_list)
    out = tmp_path / "b"
    pp.prepare_imagenet(ds, "train", out / "train.npz", out / "train.files.txt", threads=2, chunk=37)
    pp.prepare_imagenet(ds, "test", out / "test.npz", out / "test.files.txt", threads=2)
    train, test = load_split(out / "train.npz"), load_split(out / "test.npz")
    assert isinstance(train.images, np.memmap)
    assert train.images.shape == (200, 16, 16, 3) and test.images.shape == (100, 20, 20, 3)
    assert train.meta["classes"] == wnids and train.meta["role"] == "id_train" and test.meta["role"] == "id_test"
    np.testing.assert_array_equal(train.labels, np.repeat(np.arange(100), 2))
    files = (out / "train.files.txt").read_text().split()
    assert files[0].startswith(f"train/{wnids[0]}/") and not any("n99999999" in f for f in files)
    x = np.asarray(train.images, np.float64).reshape(-1, 3) / 255
    np.testing.assert_allclose(train.meta["mean"], x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(train.meta["std"], x.std(0), rtol=1e-5)
    from PIL import Image
    ref = pp.resize_center_crop(Image.open(root / (out / "test.files.txt").read_text().split()[5]), 24, 20)
    np.testing.assert_array_equal(test.images[5], ref)


def test_imagenet100_flat_val_with_devkit_is_the_sorted_layout(tmp_path):
    wnids = sources.read_class_list("II")
    extra = ["n99999998", "n99999999"]  # in the devkit and in val/, not in the class list
    sorted_root = fx.ilsvrc_folder(tmp_path / "sorted", extra[:1] + wnids + extra[1:], 1, val_per_class=3)
    flat_root = fx.ilsvrc_folder(tmp_path / "flat", extra[:1] + wnids + extra[1:], 1, val_per_class=3, flat_val=True)
    assert not (flat_root / "val" / wnids[0]).exists() and (flat_root / sources.DEVKIT).is_file()
    assert sources.check_imagenet_root(str(flat_root), wnids) == []
    files, labels = pp.imagenet_files(flat_root, wnids, "test")
    assert files[:3] == ["val/ILSVRC2012_val_00000002.JPEG", "val/ILSVRC2012_val_00000104.JPEG",
                         "val/ILSVRC2012_val_00000206.JPEG"]  # the classes are interleaved, as upstream
    out = {}
    for name, root in (("sorted", sorted_root), ("flat", flat_root)):
        pp.prepare_imagenet(_imagenet_ds(root, class_list="II"), "test", tmp_path / f"{name}.npz",
                            tmp_path / f"{name}.files.txt", threads=2)
        out[name] = load_split(tmp_path / f"{name}.npz")
    assert out["flat"].images.shape == (300, 20, 20, 3)
    np.testing.assert_array_equal(out["flat"].images, out["sorted"].images)
    np.testing.assert_array_equal(out["flat"].labels, out["sorted"].labels)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(100), 3))
    assert (tmp_path / "flat.files.txt").read_text().split() == files
    assert [f.split("/")[-1] for f in (tmp_path / "sorted.files.txt").read_text().split()] == \
        [f.split("/")[-1] for f in files]
    assert out["flat"].meta["val_labels"] == str(flat_root / sources.DEVKIT) and "val_labels" not in out["sorted"].meta


def test_imagenet_missing_root_and_flat_val_without_devkit_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="dataset.imagenet_root.*not set"):
        pp.prepare_imagenet(_imagenet_ds(None), "train", tmp_path / "t.npz")
    with pytest.raises(ConfigError, match="not an existing folder"):
        pp.prepare_imagenet(_imagenet_ds(tmp_path / "nope"), "train", tmp_path / "t.npz")
    wnids = sources.read_class_list("I")
    root = fx.ilsvrc_folder(tmp_path / "flat", wnids[:3], flat_val=True)
    (root / sources.DEVKIT).unlink()
    problems = sources.check_imagenet_root(str(root), wnids)
    flat = [p for p in problems if "holds the validation images flat" in p]
    assert len(flat) == 1 and f"place the ILSVRC-2012 devkit (from image-net.org) at {root / sources.DEVKIT}" in flat[0]
    assert "valprep.sh" in flat[0]
    assert any("97 of the 100" in p for p in problems)  # train has only 3 of the classes
    with pytest.raises(ConfigError, match="ILSVRC2012_devkit_t12.tar.gz"):
        pp.prepare_imagenet(_imagenet_ds(root, class_list="I"), "test", tmp_path / "t.npz")
    assert not (tmp_path / "t.npz").exists()


def test_imagenet_devkit_that_does_not_label_every_image_is_a_data_error(tmp_path):
    wnids = sources.read_class_list("I")
    root = fx.ilsvrc_folder(tmp_path / "flat", wnids, 1, val_per_class=2, flat_val=True)
    devkit = root / sources.DEVKIT
    devkit.write_bytes(upstream.ilsvrc_devkit(wnids, (wnids * 2)[:-1]))  # ground truth one line short
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000200.JPEG has no label: the ground truth of .* has "
                                        r"199 lines") as exc:
        pp.imagenet_files(root, wnids, "test")
    assert str(devkit) in str(exc.value) and "valprep.sh" in str(exc.value)
    devkit.write_bytes(fx.tar_bytes({sources.DEVKIT_META: b"not a mat file", sources.DEVKIT_GROUND_TRUTH: b"1\n"}))
    with pytest.raises(DataError, match=f"member {sources.DEVKIT_META} of {devkit}: not the devkit's synset table"):
        pp.imagenet_files(root, wnids, "test")
    devkit.write_bytes(fx.tar_bytes({sources.DEVKIT_META: b"x"}))
    with pytest.raises(DataError, match="validation_ground_truth.txt of .*: not found in the archive"):
        pp.imagenet_files(root, wnids, "test")


def test_class_lists_are_the_published_ones():
    one, two = sources.read_class_list("I"), sources.read_class_list("II")
    # first and last WNIDs of deeplearning-wisc/MCM data/ImageNet100/class_list.txt and of
    # TagFog data/ImageNet100/ImageNet100-II_class_list.txt (= FodFoM's list)
    assert (one[0], one[-1]) == ("n03877845", "n03594945")
    assert (two[0], two[-1]) == ("n02279972", "n03595614")
    assert len(set(one) & set(two)) == 6


# ----------------------------------------------------------------------------- split files and loader
def test_split_writer_matches_save_split_and_failure_leaves_nothing(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (10, 5, 4, 3), dtype=np.uint8)
    labels = np.arange(10)
    save_split(tmp_path / "a.npz", Split(imgs, labels, {"role": "ood"}))
    with SplitWriter(tmp_path / "b.npz", labels, (5, 4), {"role": "ood"}) as w:
        w.write(imgs[:3])
        w.write(imgs[3:])
    a, b = load_split(tmp_path / "a.npz"), load_split(tmp_path / "b.npz", mmap=False)
    np.testing.assert_array_equal(a.images, b.images)
    assert not isinstance(b.images, np.memmap) and isinstance(a.images, np.memmap)
    np.testing.assert_array_equal(a.labels, b.labels)
    with pytest.raises(DataError, match="3 images written for 10"):
        with SplitWriter(tmp_path / "c.npz", labels, (5, 4)) as w:
            w.write(imgs[:3])
    with pytest.raises(RuntimeError):
        with SplitWriter(tmp_path / "d.npz", labels, (5, 4)) as w:
            w.write(imgs)
            raise RuntimeError("crash mid-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]


def test_load_split_falls_back_for_compressed_npz(tmp_path):
    import json
    imgs = np.random.default_rng(0).integers(0, 256, (4, 3, 3, 3), dtype=np.uint8)
    np.savez_compressed(tmp_path / "z.npz", images=imgs, labels=np.zeros(4, np.int64), meta=np.array(json.dumps({})))
    s = load_split(tmp_path / "z.npz")
    assert not isinstance(s.images, np.memmap)
    np.testing.assert_array_equal(s.images, imgs)


def test_tensor_images_host_residency_gives_the_same_batches(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    save_split(tmp_path / "s.npz", Split(imgs, np.arange(50) % 5, {"role": "id_train"}))
    split = load_split(tmp_path / "s.npz")
    dev = TensorImages(split, [0.5] * 3, [0.25] * 3)                      # default: small -> device
    host = TensorImages(split, [0.5] * 3, [0.25] * 3, device_max_bytes=imgs.nbytes - 1)
    assert dev.on_device and not host.on_device
    assert host.images.data_ptr() != 0 and host.images.shape == (50, 8, 8, 3)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    aug = {"crop_padding": 2, "hflip": True, "color_jitter": 0.0}
    for i1, i2 in zip(dev.index_batches(16, shuffle=True, gen=g1), host.index_batches(16, shuffle=True, gen=g2)):
        torch.testing.assert_close(dev.batch(i1, augment=aug, gen=torch.Generator().manual_seed(1)),
                                   host.batch(i2, augment=aug, gen=torch.Generator().manual_seed(1)))
    x, y = host.batch(torch.tensor([3, 1]))
    torch.testing.assert_close(x[0], (torch.from_numpy(imgs[3]).permute(2, 0, 1).float() / 255 - 0.5) / 0.25)
    assert y.tolist() == [3, 1]
