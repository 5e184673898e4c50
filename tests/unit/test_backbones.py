"""The paper's backbones (CIFAR ResNet-34, WRN-28-10, torchvision ResNet-50), the ImageNet crops,
and starting from a CE checkpoint trained elsewhere."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lffood.checkpoint import import_checkpoint, save_checkpoint
from lffood.data.arrays import Split
from lffood.data.augment import apply_train_augment, center_crop, random_resized_crop
from lffood.data.loader import TensorImages
from lffood.errors import ConfigError, LffoodError
from lffood.models import ARCHS, build_model

torch.set_num_threads(1)


def _forward(model, size):
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, size, size), return_features=True)


def test_wrn28_10_shapes_params_and_blocks():
    model = build_model({"arch": "wrn28_10"}, 10)
    logits, pooled, fmap = _forward(model, 32)
    assert fmap.shape == (2, 640, 8, 8)  # 64 local vectors for LFF
    assert pooled.shape == (2, 640) and logits.shape == (2, 10)
    torch.testing.assert_close(logits, model.head(pooled))
    assert float(fmap.min()) >= 0.0  # relu(bn(.)) is the last map
    assert len(model.blocks()) == 12  # FeatureNorm's reference picks block 10 of 12
    n = sum(p.numel() for p in model.parameters())
    assert 36.4e6 < n < 36.6e6  # the published WRN-28-10 size (36.5M)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())  # dropout 0


def test_wrn_generic_depth_and_dropout():
    model = build_model({"arch": "wrn", "depth": 10, "widen": 1, "dropout": 0.3}, 3)
    assert len(model.blocks()) == 3
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in model.modules())
    with pytest.raises(ConfigError, match="6n"):
        build_model({"arch": "wrn", "depth": 12, "widen": 1}, 3)


def test_resnet50_is_torchvision_layout():
    import torchvision

    model = build_model({"arch": "resnet50"}, 100)
    logits, pooled, fmap = _forward(model, 224)
    assert fmap.shape == (2, 2048, 7, 7) and logits.shape == (2, 100)
    assert model.head is model.fc and model.feature_dim == 2048 and model.num_classes == 100
    assert len(model.blocks()) == 16
    tv = torchvision.models.resnet50(num_classes=100)
    assert list(model.state_dict()) == list(tv.state_dict())
    model.load_state_dict(tv.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), tv.eval()(x))


def test_every_arch_builds():
    for arch in ARCHS:
        cfg = {"arch": arch, "blocks": [1], "widths": [4], "depth": 10, "widen": 1}
        model = build_model(cfg, 3)
        assert model.head.out_features == 3 and len(model.blocks()) >= 1


# ----------------------------------------------------------------------------- importing a CE checkpoint
SMALL = {"arch": "wrn", "depth": 10, "widen": 1}


def test_import_plain_state_dict_with_module_prefix(tmp_path):
    torch.manual_seed(0)
    src = build_model(SMALL, 4)
    path = tmp_path / "dp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 99}, path)
    model = import_checkpoint(path, SMALL, 4)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), src.eval()(x))


def test_import_lffood_checkpoint_and_mismatch(tmp_path):
    src = build_model(SMALL, 4)
    path = tmp_path / "ce.pt"
    save_checkpoint(path, src, {"model": SMALL, "num_classes": 4})
    assert import_checkpoint(path, SMALL, 4).head.out_features == 4
    with pytest.raises(LffoodError, match="num_classes|classes"):
        import_checkpoint(path, SMALL, 5)


def test_import_wrong_class_count_names_the_head(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(build_model(SMALL, 10).state_dict(), path)
    with pytest.raises(LffoodError, match=r"head\.weight.*\(10, 64\) vs \(4, 64\)"):
        import_checkpoint(path, SMALL, 4)


def test_import_errors_name_the_key(tmp_path):
    with pytest.raises(LffoodError, match="checkpoint"):
        import_checkpoint(tmp_path / "missing.pt", SMALL, 4)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(LffoodError, match="checkpoint"):
        import_checkpoint(junk, SMALL, 4)
    torch.save({"epoch": 3}, tmp_path / "nostate.pt")
    with pytest.raises(LffoodError, match="no state_dict"):
        import_checkpoint(tmp_path / "nostate.pt", SMALL, 4)


# ----------------------------------------------------------------------------- ImageNet crops
def test_random_resized_crop_full_box_is_identity():
    x = torch.rand(3, 3, 8, 8)
    y = random_resized_crop(x, 8, (1.0, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, x)


def test_random_resized_crop_picks_a_quadrant_when_area_is_a_quarter():
    # a 2x2 block image: with area 1/4 and ratio 1 the crop is one block's worth of area
    x = torch.zeros(64, 1, 16, 16)
    y = random_resized_crop(x + 1.0, 4, (0.25, 0.25), (1.0, 1.0), torch.Generator().manual_seed(1))
    assert y.shape == (64, 1, 4, 4)
    torch.testing.assert_close(y, torch.ones_like(y))
    ramp = torch.linspace(0, 1, 16).expand(64, 1, 16, 16).contiguous()  # value = column position
    y = random_resized_crop(ramp, 4, (0.25, 0.25), (1.0, 1.0), torch.Generator().manual_seed(2))
    # a crop half the image wide, sampled at 4 pixel centres: first to last centre spans 3/4 of the
    # crop = 6 input pixels, i.e. 6/15 of the ramp (bilinear sampling of a linear ramp is exact)
    width = y[:, 0, 0, -1] - y[:, 0, 0, 0]
    np.testing.assert_allclose(width.numpy(), 6 / 15, atol=1e-5)
    assert float(y[:, 0, 0, 0].std()) > 0.05  # positions vary per sample


def test_random_resized_crop_deterministic_per_generator():
    x = torch.rand(4, 3, 32, 32)
    a = random_resized_crop(x, 16, (0.08, 1.0), (0.75, 4 / 3), torch.Generator().manual_seed(5))
    b = random_resized_crop(x, 16, (0.08, 1.0), (0.75, 4 / 3), torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (4, 3, 16, 16)
    aug = {"random_resized_crop": {"size": 16}, "hflip": True, "color_jitter": 0.0, "crop_padding": 4}
    out = apply_train_augment(x, aug, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_center_crop():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    assert torch.equal(center_crop(x, 2), x[..., 2:4, 2:4])
    assert center_crop(x, 6) is x and center_crop(x, None) is x and center_crop(x, 8) is x


def test_extraction_center_crops_larger_stored_images():
    from lffood.extraction import extract_split

    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "blocks": [1], "widths": [4]}, 2)
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (3, 10, 10, 3), dtype=np.uint8), np.array([0, 1, 0]), {})
    data = TensorImages(split, [0.5] * 3, [0.25] * 3)
    out = extract_split(model, data, batch_size=2, device=torch.device("cpu"), role="ood", center_crop=6)
    assert out["local_norms"].shape == (3, 36)  # 6x6 map: the crop happened
    small = Split(split.images[:, 2:8, 2:8].copy(), split.labels, {})
    ref = extract_split(model, TensorImages(small, [0.5] * 3, [0.25] * 3), batch_size=3, device=torch.device("cpu"),
                      role="ood")
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-5, atol=1e-6)


def test_run_training_imports_a_ce_checkpoint_instead_of_training(tmp_path):
    from lffood import pipeline
    from lffood.config import validate_config
    from lffood.checkpoint import load_checkpoint
    from lffood.data.arrays import save_split

    rng = np.random.default_rng(0)
    meta = {"role": "id_train", "classes": ["a", "b", "c", "d"], "mean": [0.5] * 3, "std": [0.25] * 3}
    save_split(tmp_path / "train.npz", Split(rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
                                             rng.integers(0, 4, 8), meta))
    torch.manual_seed(3)
    src = build_model(SMALL, 4)
    torch.save(src.state_dict(), tmp_path / "external.pth")
    cfg = validate_config({"run": ["b"], "benchmarks": {"b": {
        "dataset": {"source": "embedded", "ood_sets": ["far"]}, "model": SMALL, "pretrain": {"epochs": 50},
        "variants": {"ce": {"objective": "ce", "checkpoint": str(tmp_path / "external.pth")}}}}},
        Path(__file__).resolve().parents[2] / "src" / "lffood" / "resources" / "config.schema.yaml")
    from lffood.variants import training_spec

    hist = pipeline.run_training(training_spec(cfg["benchmarks"]["b"], "ce"), variant="ce", seed=0,
                                 train_path=str(tmp_path / "train.npz"), ckpt_out=str(tmp_path / "ce.pt"),
                                 history_out=str(tmp_path / "h.csv"), monitor_out=str(tmp_path / "m.csv"),
                                 device_name="cpu")
    assert len(hist) == 1 and hist[0]["imported_from"].endswith("external.pth")  # no 50 epochs of training
    assert (tmp_path / "m.csv").read_text().strip() == "epoch,bin,count,norm_sum"  # no training: no monitor rows
    model, ck_meta = load_checkpoint(tmp_path / "ce.pt")
    assert ck_meta["parent_sha256"] == hist[0]["imported_sha256"]
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_smoke_reports_every_stage():
    from lffood.throughput import smoke

    res = smoke({"arch": "resnet", "blocks": [1], "widths": [4]}, size=8, classes=3, n=24, batch=8, device_name="cpu")
    from lffood.objectives import registered_objectives

    assert [r.stage for r in res] == ["train (ce)", *(f"train ({o})" for o in registered_objectives() if o != "ce"),
                                      "extract"]
    assert all(r.images == 24 for r in res) and all(r.images_per_s > 0 for r in res)
    res = smoke({"arch": "resnet", "blocks": [1], "widths": [4]}, size=12, crop=8, classes=3, n=10, batch=4,
                device_name="cpu", objectives={"ce": {}})
    assert res[0].images == 8  # drop_last: two full batches of 4


@pytest.mark.parametrize("cfg", [{"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]},
                                 {"arch": "wrn", "depth": 10, "widen": 1}])
def test_shortcut_projection_is_the_strided_1x1_convolution(cfg):
    """The projection shortcut (subsample + stride-1 1x1 convolution) computes exactly what the
    usual strided 1x1 convolution computes with the same weight, and keeps the usual parameter names."""
    model = build_model(cfg, num_classes=3).eval()
    blocks = [b for b in model.blocks() if getattr(b, "stride", 1) == 2]
    assert blocks
    for block in blocks:
        conv = block.shortcut[0] if isinstance(block.shortcut, torch.nn.Sequential) else block.shortcut
        x = torch.randn(2, conv.in_channels, 7, 7)  # odd size: ceil(7 / 2) = 4 either way
        strided = torch.nn.functional.conv2d(x, conv.weight, stride=2)
        assert torch.allclose(conv(x[:, :, ::2, ::2]), strided, atol=1e-6)
    assert any(k.endswith("shortcut.0.weight") or k.endswith("shortcut.weight") for k in model.state_dict())


def test_subsample_and_pool_gradients_are_exact_and_keep_the_layout():
    """The shortcut's subsample and the global average pool have their own backward (so that a
    channels-last network gets channels-last gradients, not autograd's NCHW ones): exact gradients
    (gradcheck) in either layout, and the input's layout kept."""
    from lffood.models.base import global_average_pool, subsample

    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: subsample(t, 2), (x,))
    assert torch.autograd.gradcheck(global_average_pool, (x,))
    for fmt in (torch.channels_last, torch.contiguous_format):
        xf = x.detach().contiguous(memory_format=fmt).requires_grad_()
        for fn, plain in ((lambda t: subsample(t, 2), lambda t: t[:, :, ::2, ::2]),
                          (global_average_pool, lambda t: t.mean(dim=(2, 3)))):
            xf.grad = None
            fn(xf).pow(2).sum().backward()
            assert xf.grad.is_contiguous(memory_format=fmt)
            ref = x.detach().clone().requires_grad_()
            plain(ref).pow(2).sum().backward()  # autograd's own backward
            torch.testing.assert_close(xf.grad, ref.grad)
    assert torch.equal(subsample(x, 2), x[:, :, ::2, ::2]) and subsample(x, 1) is x
    assert torch.equal(global_average_pool(x), x.mean(dim=(2, 3)))


@pytest.mark.parametrize("cfg", [{"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]},
                                 {"arch": "resnet", "blocks": [1, 1, 1], "widths": [4, 8, 16]},
                                 {"arch": "wrn", "depth": 10, "widen": 1}])
def test_cpu_channels_last_training_matches_nchw(cfg):
    """Models that opt in train in channels-last layout on the CPU: the same losses and gradients as
    in NCHW, for small widths and odd batch sizes (a strided 1x1 convolution here made torch 2.12
    abort with a corrupted heap)."""
    torch.manual_seed(0)
    ref = build_model(cfg, num_classes=3)
    assert ref.cpu_channels_last
    cl = build_model(cfg, num_classes=3)
    cl.load_state_dict(ref.state_dict())
    cl.to(memory_format=torch.channels_last)
    for bs in (16, 7, 1, 3):
        x = torch.randn(bs, 3, 16, 16)
        y = torch.randint(0, 3, (bs,))
        losses = []
        for model, inp in ((ref, x), (cl, x.contiguous(memory_format=torch.channels_last))):
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inp), y)
            loss.backward()
            losses.append(loss)
        assert torch.allclose(losses[0], losses[1], atol=1e-5)
        for (name, a), b in zip(ref.named_parameters(), cl.parameters()):
            assert torch.allclose(a.grad, b.grad, atol=1e-4, rtol=1e-4), name


@pytest.mark.parametrize("cfg", [{"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]},
                                 {"arch": "wrn", "depth": 10, "widen": 1}])
def test_cpu_inference_runs_channels_last_with_nchw_results(cfg):
    """Extraction and the network scorers (ODIN's input gradient) run models that opt in
    channels-last on the CPU too: the same logits, features, local norms and ODIN scores as NCHW."""
    from lffood.extraction import extract_split
    from lffood.scorers.odin import odin_score_batch

    torch.manual_seed(0)
    ref = build_model(cfg, num_classes=3).eval()
    model = build_model(cfg, num_classes=3)
    model.load_state_dict(ref.state_dict())
    rng = np.random.default_rng(1)
    split = Split(rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8), np.array([0, 1, 2] * 3), {})
    data = TensorImages(split, [0.5] * 3, [0.25] * 3)
    out = extract_split(model, data, batch_size=4, device=torch.device("cpu"), role="id_test")
    first_conv = next(p for p in model.parameters() if p.dim() == 4)
    assert first_conv.is_contiguous(memory_format=torch.channels_last)  # it ran channels-last
    x, _ = data.batch(torch.arange(9))
    with torch.no_grad():
        logits, pooled, fmap = ref(x, return_features=True)
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["features"], pooled.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["local_norms"], fmap.flatten(2).norm(dim=1).numpy(), rtol=1e-5, atol=1e-5)
    odin = [odin_score_batch(m, x, 1000.0, 0.0014, data.std).numpy() for m in (ref, model)]
    np.testing.assert_allclose(odin[1], odin[0], rtol=1e-6, atol=1e-9)


def test_torchvision_resnet50_keeps_nchw_on_the_cpu():
    """ResNet-50 (torchvision's strided 1x1 downsample convolutions) does not opt in."""
    assert not build_model({"arch": "resnet50"}, num_classes=3).cpu_channels_last
