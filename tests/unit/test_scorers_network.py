"""What scorers need of the network: ODIN's perturbation, FeatureNorm's jigsaw, block norms (recorded
by extraction) and block selection, LINe's importance against autograd, and the stage functions."""

import numpy as np
import pytest
import torch
from torch import nn

from lffood import h5schema, pipeline
from lffood.checkpoint import save_checkpoint
from lffood.data.arrays import Split, load_split, save_split
from lffood.data.loader import TensorImages
from lffood.errors import SchemaError
from lffood.extraction import extract_split
from lffood.models import ResNet
from lffood.scorers import FeatureSet, Head, build_scorer
from lffood.scorers.featurenorm import block_norms, feature_norm, jigsaw
from lffood.scorers.odin import odin_perturb, odin_score_batch


class Linear1x1(nn.Module):
    """logits = A x for inputs of shape (B, C, 1, 1): a tiny linear model with a closed-form gradient."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a, dtype=torch.float64))

    def forward(self, x):
        return x.flatten(1) @ self.a.T


def test_odin_perturbation_direction_on_linear_model():
    torch.manual_seed(0)
    a = torch.randn(3, 2, dtype=torch.float64)
    model = Linear1x1(a)
    x = torch.randn(5, 2, 1, 1, dtype=torch.float64)
    t, eps, std = 2.0, 0.01, [0.5, 0.25]
    # closed form: d CE(A x / T, yhat) / dx = A^T (softmax(A x / T) - onehot(yhat)) / T
    z = x.flatten(1) @ a.T
    p = torch.softmax(z / t, 1)
    onehot = torch.nn.functional.one_hot(z.argmax(1), 3).double()
    grad = (p - onehot) @ a / t
    expected = x.flatten(1) - eps * torch.sign(grad) / torch.tensor(std, dtype=torch.float64)
    got = odin_perturb(model, x, t, eps, std)
    torch.testing.assert_close(got.flatten(1), expected)
    # the step raises the confidence of the predicted class
    before = torch.softmax(z / t, 1).max(1).values
    after = odin_score_batch(model, x, t, eps, std)
    assert bool((after > before).all())


def test_odin_zero_gradient_counts_as_positive_and_eps0_is_tempered_msp():
    model = Linear1x1(torch.zeros(2, 2, dtype=torch.float64))  # constant logits: zero gradient
    x = torch.zeros(1, 2, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(odin_perturb(model, x, 1000.0, 0.1, [1.0, 0.5]).flatten(),
                               torch.tensor([-0.1, -0.2], dtype=torch.float64))
    a = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    x = torch.tensor([[[[2.0]], [[1.0]]]], dtype=torch.float64)
    s = odin_score_batch(Linear1x1(a), x, 10.0, 0.0, [1.0, 1.0])
    assert float(s) == pytest.approx(float(torch.softmax(torch.tensor([0.2, 0.3]), 0).max()))


def test_odin_softmax_at_t1000_has_no_float32_ties():
    """At T = 1000 the tempered softmax of nearby logits differ by ~1e-9: float32 rounds them to one
    value (ties that blur AUROC and FPR95); the score is computed in float64."""
    model = nn.Flatten()  # a float32 "network" whose logits are its input
    x = torch.tensor([[[[5.0]], [[0.0]]], [[[5.0 + 1e-5]], [[0.0]]]], dtype=torch.float32)
    s = odin_score_batch(model, x, 1000.0, 0.0, [1.0, 1.0])
    assert s.dtype == torch.float64 and s[1] > s[0]
    f32 = torch.softmax(model(x) / 1000.0, dim=1).max(1).values
    assert f32[1] == f32[0]  # what float32 gave


def test_jigsaw_permutes_patches_and_keeps_border():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 7 * 7, dtype=torch.float32).reshape(2, 1, 7, 7)
    y = jigsaw(x, 3, g)  # patches 2 x 2 on the top-left 6 x 6; last row/column stay
    torch.testing.assert_close(y[:, :, 6, :], x[:, :, 6, :])
    torch.testing.assert_close(y[:, :, :, 6], x[:, :, :, 6])

    def patches(t):
        return sorted(tuple(t[0, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].flatten().tolist()) for i in range(3) for j in range(3))

    assert patches(y[:1]) == patches(x[:1])  # same patches ...
    assert not torch.equal(y, x)  # ... in another order


def test_feature_norm_hand_example():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0] = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # norm 5
    a[0, 1] = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])  # relu -> norm 1
    assert float(feature_norm(a)[0]) == pytest.approx(3.0)


def _tiny_resnet(seed=0, k=3):
    torch.manual_seed(seed)
    return ResNet([1, 2], [4, 8], k).eval()


def test_resnet_blocks_in_order():
    m = _tiny_resnet()
    blocks = m.blocks()
    assert len(blocks) == 3 and blocks[-1] is m.stages[-1][-1]
    x = torch.randn(2, 3, 8, 8)
    norms = block_norms(m, x)
    assert norms.shape == (3, 2)
    with torch.no_grad():
        last = m.feature_map(x)
    torch.testing.assert_close(norms[-1], feature_norm(last))


def _images(n, seed, size=8, k=3):
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, k, n).astype(np.int64),
                 {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "role": "id_train", "classes": list("abc")})


def _extract(m, data, batch_size, grid=3):
    return extract_split(m, data, batch_size=batch_size, device=torch.device("cpu"), amp=False, role="id_train",
                         requests={"block_norms": {"jigsaw_grid": grid, "jigsaw_seed": 0}})


def test_extraction_records_block_norms_and_jigsaw_norms():
    """Extraction's block norms are FeatureNorm of each block on the images, and its jigsaw norms the
    same on the images shuffled with keys drawn once per split (so the batch size does not matter)."""
    m = _tiny_resnet(1)
    data = TensorImages(_images(20, 1), [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    out = _extract(m, data, 8)
    x, _ = data.batch(torch.arange(len(data)))
    assert out["block_norms"].shape == out["jigsaw_block_norms"].shape == (20, 3)
    np.testing.assert_allclose(out["block_norms"], block_norms(m, x).T.numpy(), rtol=1e-5)
    keys = torch.rand(20, 9, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(out["jigsaw_block_norms"], block_norms(m, jigsaw(x, 3, keys=keys)).T.numpy(), rtol=1e-5)
    assert not np.allclose(out["jigsaw_block_norms"], out["block_norms"])
    again = _extract(m, data, 20)
    np.testing.assert_allclose(again["jigsaw_block_norms"], out["jigsaw_block_norms"], rtol=1e-5)
    plain = extract_split(m, data, batch_size=8, device=torch.device("cpu"), amp=False, role="id_train")
    assert "block_norms" not in plain and "jigsaw_block_norms" not in plain
    np.testing.assert_array_equal(plain["logits"], out["logits"])  # the hooks change nothing else


def test_featurenorm_selects_block_with_largest_ratio():
    """Hand-made norms: block 1's ID / jigsaw ratio (4 / 1) is the largest, so it is selected."""
    norms = np.array([[1.0, 3.0, 2.0], [3.0, 5.0, 2.0]])  # mean per block: 2, 4, 2
    jig = np.array([[1.0, 1.0, 0.5], [1.0, 1.0, 1.5]])    # mean per block: 1, 1, 1
    train = FeatureSet(np.zeros((2, 3)), np.zeros((2, 4)), np.array([0, 1]),
                       {"block_norms": norms, "jigsaw_block_norms": jig})
    head = Head(np.zeros((3, 4)), np.zeros(3))
    st = build_scorer("featurenorm").fit(train, head).stats
    np.testing.assert_allclose(st["id_norm"], [2.0, 4.0, 2.0])
    np.testing.assert_allclose(st["ratios"], [2.0, 4.0, 2.0])
    assert int(st["block"]) == 1
    test = FeatureSet(np.zeros((2, 3)), np.zeros((2, 4)), None, {"block_norms": np.array([[7.0, 8.0, 9.0], [1.0, 2.0, 3.0]])})
    np.testing.assert_array_equal(build_scorer("featurenorm").load(head, st).score(test), [8.0, 2.0])
    fixed = build_scorer("featurenorm", {"block": 2}).fit(train, head)
    assert int(fixed.stats["block"]) == 2
    np.testing.assert_array_equal(fixed.score(test), [9.0, 3.0])
    with pytest.raises(ValueError, match="out of range"):
        build_scorer("featurenorm", {"block": 3}).fit(train, head)


def test_line_importance_equals_activation_times_gradient():
    """The reference hooks the pooled activations and backpropagates the ground-truth logit: with a
    linear head that is pooled * W[y]; the class mean of it is what LINe fits from cached features."""
    m = _tiny_resnet(2)
    x = torch.randn(12, 3, 8, 8)
    y = torch.tensor([0, 1, 2] * 4)
    with torch.no_grad():
        _, pooled, _ = m(x, return_features=True)
    imp = np.zeros((3, 8))
    for i in range(len(x)):  # per image, as the reference does (batch size 1)
        logits, p, _ = m(x[i:i + 1], return_features=True)
        p.retain_grad()
        logits[0, y[i]].backward()
        imp[y[i]] += (p * p.grad).detach().numpy()[0] / 4
        m.zero_grad()
    head = Head(m.head.weight.detach().numpy(), m.head.bias.detach().numpy())
    f = pooled.numpy()
    sc = build_scorer("line").fit(FeatureSet(head(f), f, y.numpy()), head)
    np.testing.assert_allclose(sc.stats["importance"], imp, rtol=1e-4, atol=1e-6)


@pytest.fixture
def tiny_run(tmp_path):
    m = _tiny_resnet(3)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, m, {"model": {"arch": "resnet", "blocks": [1, 2], "widths": [4, 8]}, "num_classes": 3,
                              "classes": list("abc")})
    paths = {}
    for name, n, seed in (("train", 24, 4), ("test", 10, 5), ("far", 9, 6)):
        sp = _images(n, seed)
        sp.meta["role"] = {"train": "id_train", "test": "id_test", "far": "ood"}[name]
        if name == "far":
            sp.labels[:] = -1
        paths[name] = str(tmp_path / f"{name}.npz")
        save_split(paths[name], sp)
    return m, str(ckpt), paths


def test_network_stage_functions(tiny_run, tmp_path):
    """FeatureNorm through extraction and the cached-feature stages; ODIN against the checkpoint; a
    feature file extracted for another jigsaw grid is refused with the command that rebuilds it."""
    m, ckpt, paths = tiny_run
    features = str(tmp_path / "features.h5")
    request = build_scorer("featurenorm").extraction_request(build_scorer("featurenorm").params)
    pipeline.run_extraction({"multiscale": False, **request}, checkpoint=ckpt, split_paths=paths, out=features,
                            attrs={}, amp=False, batch_size=7, device_name="cpu")
    assert h5schema.read_split(features, "train", ["jigsaw_block_norms"])["jigsaw_block_norms"].shape == (24, 3)
    assert "jigsaw_block_norms" not in h5schema.read_split(features, "test")
    stats = tmp_path / "stats" / "featurenorm.h5"
    pipeline.run_fit_stats(features, "featurenorm", {"block": None, "jigsaw_grid": 3}, str(stats))
    st, attrs = h5schema.read_stats(stats, scorer="featurenorm", params={"block": None, "jigsaw_grid": 3})
    assert attrs["source"] == features and st["ratios"].shape == (3,)
    out = tmp_path / "scores" / "featurenorm.h5"
    scores = pipeline.run_scoring(features, "featurenorm", {}, str(out), stats_path=str(stats))
    assert set(scores) == {"test", "far"} and scores["far"].shape == (9,)
    x, _ = TensorImages(load_split(paths["far"]), [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]).batch(torch.arange(9))
    np.testing.assert_allclose(scores["far"], block_norms(m, x)[int(st["block"])].double().numpy(), rtol=1e-5)
    with pytest.raises(SchemaError, match="jigsaw_grid.*Rebuild the feature file"):
        pipeline.run_fit_stats(features, "featurenorm", {"jigsaw_grid": 2}, str(tmp_path / "s2.h5"))
    odin = pipeline.run_scoring_network("odin", {"epsilon": 0.002}, checkpoint=ckpt, split_paths=paths,
                                        out=str(tmp_path / "odin.h5"), batch_size=4, device_name="cpu")
    assert np.all((odin["test"] > 0) & (odin["test"] <= 1))
    with pytest.raises(ValueError, match="run_scoring_network"):
        pipeline.run_scoring("unused.h5", "odin", {}, str(tmp_path / "y.h5"))
