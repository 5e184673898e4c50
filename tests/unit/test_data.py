"""Split files, batched augmentation, the tensor loader and the embedded generator."""


import numpy as np
import pytest
import torch

from lffood.data import arrays, augment, embedded
from lffood.data.arrays import OOD_LABEL, Split, SplitWriter, load_split, save_split, verify_split
from lffood.data.loader import TensorImages
from lffood.errors import DataError

torch.set_num_threads(1)


def _images(n=6, h=5, w=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- split files
def test_save_load_split_round_trip(tmp_path):
    imgs = _images()
    labels = np.array([0, 1, 2, 0, 1, -1], dtype=np.int32)
    meta = {"role": "id_train", "mean": [0.1, 0.2, 0.3], "classes": ["a", "b"], "note": "ünïcode"}
    path = tmp_path / "sub" / "train.npz"
    save_split(path, Split(imgs, labels, meta))
    back = load_split(path)
    assert back.images.dtype == np.uint8
    np.testing.assert_array_equal(back.images, imgs)
    assert back.labels.dtype == np.int64
    np.testing.assert_array_equal(back.labels, labels)
    assert back.meta == meta
    assert len(back) == 6
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.npz"]  # no temporary left


def test_load_split_missing_names_path(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(DataError) as exc:
        load_split(path)
    assert str(path) in str(exc.value)


def test_load_split_corrupt(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, images=_images(), labels=np.zeros(6, np.int64))  # no meta
    with pytest.raises(DataError, match=str(path)):
        load_split(path)


@pytest.mark.parametrize("images", [
    np.zeros((2, 4, 4, 3), np.float32),   # float
    np.zeros((2, 4, 4), np.uint8),        # no channel axis
    np.zeros((2, 3, 4, 4), np.uint8),     # channels first
])
def test_split_rejects_bad_images(images):
    with pytest.raises(DataError):
        Split(images, np.zeros(2, np.int64))


def test_split_rejects_bad_labels():
    with pytest.raises(DataError):
        Split(_images(3), np.zeros(2, np.int64))


# ----------------------------------------------------------------------------- split checksums
def _flip_image_byte(path, k=37):
    """Flip one byte inside the images array of a split file, past the zip's CRC (as bit rot would)."""
    offset = arrays._mmap_member(path, "images.npy").offset + k
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x01]))


def _cli(*argv):
    from lffood.cli import main

    return main(["verify", *map(str, argv)])


def test_flipped_image_byte_is_caught_on_load_and_by_lffood_verify(tmp_path, capsys):
    path = tmp_path / "b" / "test.npz"
    save_split(path, Split(_images(8), np.arange(8), {"role": "id_test"}))
    assert isinstance(load_split(path).images, np.memmap)  # verified and still memory-mapped
    assert _cli(path) == 0
    out = capsys.readouterr().out
    assert f"OK    {path}" in out and "1 of 1 split files verified" in out
    _flip_image_byte(path)
    with pytest.raises(DataError) as exc:
        load_split(path)  # small: verified on load by default
    msg = str(exc.value)
    assert f"split {path} is corrupt: checksum mismatch in images" in msg and f"snakemake --force {path}" in msg
    assert _cli(path) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {path}" in out and "checksum mismatch" in out and "1 FAILED" in out
    assert load_split(path, verify=False).images.shape == (8, 5, 4, 3)  # an explicit opt-out still loads


def test_large_split_is_not_hashed_on_load_but_lffood_verify_checks_it(tmp_path, monkeypatch, caplog):
    path = tmp_path / "train.npz"
    save_split(path, Split(_images(8), np.arange(8), {}))
    _flip_image_byte(path, k=100)
    monkeypatch.setattr(arrays, "VERIFY_ON_LOAD_MAX_BYTES", _images(8).nbytes - 1)
    with caplog.at_level("INFO", logger="lffood.data"):
        load_split(path)  # over the threshold: not verified, and the log says so
    assert any("not verified on load" in r.getMessage() and "lffood verify" in r.getMessage() for r in caplog.records)
    with pytest.raises(DataError, match="checksum mismatch in images"):
        load_split(path, verify=True)
    with pytest.raises(DataError, match="checksum mismatch in images"):
        verify_split(path)


def test_split_without_checksum_loads_with_a_warning_and_fails_lffood_verify(tmp_path, caplog, capsys):
    import json

    path = tmp_path / "old.npz"  # the format before checksums
    np.savez(path, images=_images(), labels=np.zeros(6, np.int64), meta=np.array(json.dumps({"role": "ood"})))
    with caplog.at_level("WARNING", logger="lffood.data"):
        s = load_split(path)
    assert s.meta == {"role": "ood"} and len(s) == 6
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "has no checksum" in warned[0] and f"snakemake --force {path}" in warned[0]
    with pytest.raises(DataError, match="no checksum"):
        verify_split(path)
    assert _cli(path) == 1
    assert f"FAIL  {path}" in capsys.readouterr().out


def test_split_writer_checksum_is_computed_chunk_by_chunk(tmp_path):
    import zipfile

    imgs, labels, meta = _images(10), np.arange(10) % 3, {"role": "id_train"}
    save_split(tmp_path / "a.npz", Split(imgs, labels, meta))
    for name, cuts in (("b.npz", [3, 10]), ("c.npz", [1, 2, 9, 10])):
        with SplitWriter(tmp_path / name, labels, (5, 4), meta) as w:
            start = 0
            for stop in cuts:
                w.write(imgs[start:stop])
                start = stop
    records = []
    for name in ("a.npz", "b.npz", "c.npz"):
        with zipfile.ZipFile(tmp_path / name) as zf:
            records.append(zf.read("checksum.npy"))
        assert "sha256" in verify_split(tmp_path / name)
    assert records[0] == records[1] == records[2]  # same content, same checksum, however it was written
    _flip_image_byte(tmp_path / "c.npz", k=5 * 4 * 3 * 9)  # a byte of the last image
    with pytest.raises(DataError, match="checksum mismatch in images"):
        load_split(tmp_path / "c.npz")


def test_lffood_verify_defaults_to_every_split_under_data_dir(tmp_path, capsys):
    data = tmp_path / "data"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {data}\nbenchmarks: {{b: {{dataset: {{source: embedded, ood_sets: [far]}}}}}}\n"
                   "run: [b]\n")
    assert _cli("--config", cfg) == 1  # no split yet: nothing verified is not a success
    assert "nothing verified" in capsys.readouterr().err
    good, bad = data / "b" / "train.npz", data / "c" / "far.npz"
    save_split(good, Split(_images(4), np.arange(4), {}))
    save_split(bad, Split(_images(4, seed=1), np.full(4, -1), {}))
    (data / "b" / ".train.npz.x1y2.tmp.npz").write_bytes(b"an unfinished atomic write")  # skipped
    assert _cli("--config", cfg) == 0
    assert capsys.readouterr().out.count("OK    ") == 2
    _flip_image_byte(bad)
    assert _cli("--config", cfg) == 1
    out = capsys.readouterr().out
    assert f"OK    {good}" in out and f"FAIL  {bad}" in out and "1 of 2 split files verified, 1 FAILED" in out
    assert _cli(tmp_path / "nope.npz") == 1  # a missing file is a failure too
    assert "split file not found" in capsys.readouterr().out


# ----------------------------------------------------------------------------- augmentation
def _x(b=5, c=3, h=6, w=7, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_to_float():
    imgs = torch.from_numpy(_images(2, 3, 4))
    x = augment.to_float(imgs)
    assert x.shape == (2, 3, 3, 4) and x.dtype == torch.float32
    torch.testing.assert_close(x[1, 2, 0, 3], imgs[1, 0, 3, 2].float() / 255)


def test_random_crop_padding_zero_is_identity():
    x = _x()
    assert torch.equal(augment.random_crop(x, 0, torch.Generator().manual_seed(0)), x)


@pytest.mark.parametrize("padding", [1, 2])
def test_random_crop_is_a_shifted_crop_of_padded_input(padding):
    x = _x(b=8)
    out = augment.random_crop(x, padding, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    xp = torch.nn.functional.pad(x, (padding,) * 4)
    _, _, h, w = x.shape
    offsets = []
    for i in range(len(x)):
        matches = [(oy, ox) for oy in range(2 * padding + 1) for ox in range(2 * padding + 1)
                   if torch.equal(out[i], xp[i, :, oy:oy + h, ox:ox + w])]
        assert matches, f"sample {i} is not a crop of its padded input"
        offsets.append(matches[0])
    assert len(set(offsets)) > 1  # offsets are random per sample


def test_random_crop_one_sample_explicit():
    x = torch.arange(1 * 1 * 3 * 3, dtype=torch.float32).view(1, 1, 3, 3) + 1
    gen = torch.Generator().manual_seed(11)
    out = augment.random_crop(x, 1, gen)
    # replay the generator: offsets drawn oy then ox
    g2 = torch.Generator().manual_seed(11)
    oy = int(torch.randint(0, 3, (1,), generator=g2))
    ox = int(torch.randint(0, 3, (1,), generator=g2))
    xp = torch.zeros(1, 1, 5, 5)
    xp[:, :, 1:4, 1:4] = x
    assert torch.equal(out, xp[:, :, oy:oy + 3, ox:ox + 3])


def test_random_hflip():
    x = _x()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment.random_hflip(x, g, p=1.0), x.flip(-1))
    assert torch.equal(augment.random_hflip(x, g, p=0.0), x)
    out = augment.random_hflip(_x(b=64), torch.Generator().manual_seed(1), p=0.5)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, _x(b=64))]
    assert 0 < sum(flipped) < 64


def test_color_jitter_zero_is_identity_and_range():
    x = _x()
    assert torch.equal(augment.color_jitter(x, 0.0, torch.Generator().manual_seed(0)), x)
    y = augment.color_jitter(x.clone(), 0.9, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)


def test_normalize():
    x = torch.ones(1, 3, 2, 2)
    out = augment.normalize(x, [0.5, 1.0, 0.0], [0.5, 2.0, 4.0])
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.25]))


def test_normalize_from_device_tensors_equals_normalize_from_lists():
    """The loader keeps mean and std as device tensors (no copy per batch): the same numbers."""
    x = _x(b=4)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    out = augment.normalize(x, torch.tensor(mean), torch.tensor(std))
    assert torch.equal(out, augment.normalize(x, mean, std))


AUG = {"crop_padding": 2, "hflip": True, "color_jitter": 0.4}


def test_apply_train_augment_deterministic_and_in_range():
    x = _x(b=10)
    a = augment.apply_train_augment(x, AUG, torch.Generator().manual_seed(5))
    b = augment.apply_train_augment(x, AUG, torch.Generator().manual_seed(5))
    c = augment.apply_train_augment(x, AUG, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # input untouched
    assert torch.equal(x, _x(b=10))


def test_apply_train_augment_noop_config():
    x = _x()
    assert torch.equal(augment.apply_train_augment(x, {"crop_padding": 0, "hflip": False, "color_jitter": 0.0},
                                                   torch.Generator().manual_seed(0)), x)


# ----------------------------------------------------------------------------- loader
def _tensor_images(n=11):
    return TensorImages(Split(_images(n, 4, 4), np.arange(n) % 3), mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5])


def test_tensor_images_batch():
    data = _tensor_images()
    idx = torch.tensor([3, 0, 7])
    x, y = data.batch(idx)
    assert x.shape == (3, 3, 4, 4) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 1]
    raw = torch.from_numpy(data.images.numpy()[[3, 0, 7]]).permute(0, 3, 1, 2).float() / 255
    expected = (raw - torch.tensor([0.5, 0.4, 0.3])[None, :, None, None]) / torch.tensor([0.2, 0.25, 0.5])[None, :, None, None]
    torch.testing.assert_close(x, expected)
    xa, _ = data.batch(idx, augment=AUG, gen=torch.Generator().manual_seed(0))
    assert xa.shape == x.shape


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [1, 4, 11, 20])
def test_index_batches_cover_every_index_once(shuffle, batch_size):
    data = _tensor_images(11)
    batches = list(data.index_batches(batch_size, shuffle=shuffle, gen=torch.Generator().manual_seed(0)))
    allidx = torch.cat(batches).tolist()
    assert sorted(allidx) == list(range(11))
    assert all(len(b) <= batch_size for b in batches)
    if not shuffle:
        assert allidx == list(range(11))


def test_index_batches_shuffle_and_drop_last():
    data = _tensor_images(11)
    order = torch.cat(list(data.index_batches(11, shuffle=True, gen=torch.Generator().manual_seed(0)))).tolist()
    assert order != list(range(11))
    batches = list(data.index_batches(4, shuffle=True, gen=torch.Generator().manual_seed(0), drop_last=True))
    assert [len(b) for b in batches] == [4, 4]
    assert len(set(torch.cat(batches).tolist())) == 8


# ----------------------------------------------------------------------------- embedded generator
SMALL = {"train_per_class": 5, "test_per_class": 3, "ood_size": 20}


@pytest.fixture(scope="module")
def generated():
    # speed is measured by benchmarks (lffood bench, lffood benchmarks), not by timed unit tests that
    # fail on a loaded machine
    return embedded.generate(SMALL, seed=1), None


def test_embedded_same_seed_byte_identical(generated):
    a = generated[0]
    b = embedded.generate(SMALL, seed=1)
    assert list(a) == list(b)
    for name in a:
        assert a[name].images.tobytes() == b[name].images.tobytes()
        assert a[name].labels.tobytes() == b[name].labels.tobytes()
        assert a[name].meta == b[name].meta


def test_embedded_different_seed_differs(generated):
    a = generated[0]
    c = embedded.generate(SMALL, seed=2)
    for name in a:
        assert a[name].images.tobytes() != c[name].images.tobytes()


def test_embedded_splits_and_labels(generated):
    s = generated[0]
    assert tuple(s) == embedded.SPLITS
    k = embedded.DEFAULTS["num_classes"]
    size = embedded.DEFAULTS["image_size"]
    for name, per in (("train", 5), ("test", 3)):
        lab = s[name].labels
        assert lab.dtype == np.int64
        assert lab.min() >= 0 and lab.max() <= k - 1
        np.testing.assert_array_equal(np.bincount(lab, minlength=k), np.full(k, per))
        assert s[name].images.shape == (k * per, size, size, 3)
    for name in embedded.OOD_SETS:
        assert s[name].images.shape == (20, size, size, 3)
        assert np.all(s[name].labels == OOD_LABEL)
        assert s[name].meta["role"] == "ood"
    assert s["train"].meta["role"] == "id_train" and s["test"].meta["role"] == "id_test"
    assert len(s["train"].meta["mean"]) == 3 and len(s["train"].meta["std"]) == 3
    assert all(0 < v < 1 for v in s["train"].meta["mean"] + s["train"].meta["std"])
    assert s["train"].meta["classes"] == [str(c) for c in range(k)]


def test_embedded_train_is_shuffled(generated):
    lab = generated[0]["train"].labels
    assert not np.array_equal(lab, np.sort(lab))


def test_embedded_bad_num_classes():
    with pytest.raises(ValueError):
        embedded.generate({"num_classes": 9}, seed=0)


def test_index_batches_refuse_an_unseeded_shuffle():
    with pytest.raises(ValueError, match="seeded torch.Generator"):
        next(_tensor_images(4).index_batches(2, shuffle=True))


@pytest.mark.parametrize("on_device", [True, False])
def test_prefetched_batches_equal_serial_ones(on_device):
    """The background gather of host-kept splits hands out exactly the batches, in order, that a serial
    gather would (the thread changes when, not what)."""
    data = _tensor_images(23)
    if not on_device:
        data.on_device = False  # as a split above device_max_bytes
    gen = torch.Generator().manual_seed(3)
    serial = [(idx, data.gather(idx)) for idx in data.index_batches(5, shuffle=True, gen=gen)]
    gen = torch.Generator().manual_seed(3)
    fetched = list(data.prefetched(data.index_batches(5, shuffle=True, gen=gen), depth=2))
    assert len(fetched) == len(serial) == 5
    for (i1, x1), (i2, x2) in zip(serial, fetched):
        assert torch.equal(i1, i2) and torch.equal(x1, x2)
    x, y = data.batch(fetched[0][0], gathered=fetched[0][1])
    x_ref, y_ref = data.batch(fetched[0][0])
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)


def test_to_float_gives_standard_nchw_layout():
    """A permuted view would keep channels-last strides and send CPU convolutions down a path that
    corrupts memory in torch 2.12 for small 1x1 stride-2 convolutions."""
    from lffood.data.augment import to_float

    x = to_float(torch.zeros(2, 8, 8, 3, dtype=torch.uint8))
    assert x.shape == (2, 3, 8, 8) and x.is_contiguous()
    assert not x.is_contiguous(memory_format=torch.channels_last)
