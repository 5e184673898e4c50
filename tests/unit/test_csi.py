"""CSI, labelled (lffood.objectives.csi, lffood.scorers.csi): rotations and joint labels, the official
supervised contrastive loss against an independent double loop, degenerate batches, the frozen linear
stage, the joint-score field against a direct computation, and both stages through the one loop."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lffood.data.arrays import Split
from lffood.data.loader import TensorImages
from lffood.extraction import extract_split
from lffood.models import build_model
from lffood.objectives import Forward, build_objective
from lffood.objectives.alpa import supcon_loss
from lffood.objectives.csi import joint_labels, rotation_index, rotations, supervised_nt_xent
from lffood.scorers.base import FeatureSet, build_scorer, scorer_applies
from lffood.training import train

torch.set_num_threads(1)

CPU = torch.device("cpu")
SMALL = {"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]}
NO_GUARD = {"enabled": False}


def _stage(**kw):
    st = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "epochs": 2,
          "batch_size": 8, "schedule": {"type": "cosine"}, "augment": {"crop_padding": 1, "hflip": True}}
    st.update(kw)
    return st


def _data(n=32, k=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    split = Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % k)
    return TensorImages(split, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


def obj(name, params=None, classes=4, dim=8):
    return build_objective(name, params, feature_dim=dim, num_classes=classes)


# ----------------------------------------------------------------------------- rotations and joint labels
def test_rotation_moves_pixels_as_rot90_says():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    r = rotations(x)
    assert r.shape == (8, 1, 3, 3)
    for k in range(4):
        for i in range(2):
            assert torch.equal(r[2 * k + i], torch.rot90(x[i], k, (1, 2)))
    # by hand: rot90 (k = 1) turns the image counter-clockwise: the top-right pixel goes to the top left,
    # the top-left one to the bottom left; k = 2 sends the top left to the bottom right
    assert r[2, 0, 0, 0] == x[0, 0, 0, 2] == 2.0
    assert r[2, 0, 2, 0] == x[0, 0, 0, 0] == 0.0
    assert r[4, 0, 2, 2] == x[0, 0, 0, 0] and r[4, 0, 0, 0] == x[0, 0, 2, 2] == 8.0
    assert r[6, 0, 0, 0] == x[0, 0, 2, 0] == 6.0  # k = 3 (clockwise): bottom left -> top left
    with pytest.raises(ValueError, match="square"):
        rotations(torch.zeros(1, 1, 2, 3))


def test_rotations_keep_the_memory_format():
    x = torch.randn(3, 3, 4, 4)
    cl = x.contiguous(memory_format=torch.channels_last)
    out = rotations(cl)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert torch.equal(out, rotations(x)) and rotations(x).is_contiguous()
    xs, ys = obj("csi").transform_batch(torch.cat([cl, cl]).contiguous(memory_format=torch.channels_last),
                                        torch.zeros(6, dtype=torch.long), None)
    assert xs.shape == (24, 3, 4, 4) and xs.is_contiguous(memory_format=torch.channels_last)
    xl, _ = obj("csi_linear").transform_batch(cl, torch.zeros(3, dtype=torch.long), None)
    assert xl.is_contiguous(memory_format=torch.channels_last)


def test_stage1_layout_and_joint_labels():
    """Two views of B = 2 images (classes 0 and 2, C = 3) -> 16 images [view 1 at k = 0..3 | view 2 at k = 0..3]."""
    v1, v2 = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    y = torch.tensor([0, 2])
    x, labels = obj("csi", classes=3).transform_batch(torch.cat([v1, v2]), torch.cat([y, y]), None)
    assert x.shape == (16, 1, 3, 3)
    for view, v in enumerate((v1, v2)):
        for k in range(4):
            for i in range(2):
                assert torch.equal(x[8 * view + 2 * k + i], torch.rot90(v[i], k, (1, 2)))
    assert labels.tolist() == [0, 2] * 8  # class labels for the loop's CE and accuracy
    assert rotation_index(16, 2).tolist() == [0, 0, 1, 1, 2, 2, 3, 3] * 2
    assert joint_labels(labels, 3, 2).tolist() == [0, 2, 3, 5, 6, 8, 9, 11] * 2  # y + C k
    xl, yl = obj("csi_linear", classes=3).transform_batch(v1, y, None)
    assert xl.shape == (8, 1, 3, 3) and torch.equal(xl[5], torch.rot90(v1[1], 2, (1, 2)))
    assert joint_labels(yl, 3, 1).tolist() == [0, 2, 3, 5, 6, 8, 9, 11]
    with pytest.raises(ValueError, match="rotations"):
        rotation_index(12, 2)


# ----------------------------------------------------------------------------- the contrastive loss
def _numpy_loss(z, labels, tau, eps=1e-8):
    """CSI's Supervised_NT_xent written out as a double loop over anchors i and candidates j."""
    n = len(z)
    s = z @ z.T
    total = 0.0
    for i in range(n):
        m = max(s[i])
        e = [0.0 if j == i else np.exp((s[i, j] - m) / tau) for j in range(n)]
        denom = sum(e)
        pos = [j for j in range(n) if labels[j] == labels[i]]  # i itself included
        for j in pos:
            total += 1.0 / (len(pos) + eps) * -np.log(e[j] / (denom + eps) + eps)
    return total / n


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_supervised_nt_xent_against_a_double_loop(tau):
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(8, 3, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2])
    got = supervised_nt_xent(z @ z.T, labels, tau).item()
    assert got == pytest.approx(_numpy_loss(z.numpy(), labels.numpy(), tau), rel=1e-10)
    # the i = j term is the constant -log(eps) / |P(i)|; the rest is SupCon with weights (|P|-1)/|P|
    # (label 3 occurs once: that anchor has only the constant term). Only where no positive's probability is
    # near eps = 1e-8: -log(p + eps) caps each term at 18.4 (at tau = 0.07 this example has such pairs)
    if tau < 0.5:
        return
    eye = torch.eye(8, dtype=torch.bool)
    p = (labels[:, None] == labels[None, :]).sum(1).double()
    sim = (z @ z.T / tau).masked_fill(eye, float("-inf"))
    logp = sim - torch.logsumexp(sim, 1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    sup_i = -(logp.masked_fill(~pos, 0)).sum(1) / pos.sum(1).clamp(min=1)
    expected = ((-np.log(1e-8) + (p - 1) * sup_i) / p).mean().item()
    assert got == pytest.approx(expected, rel=1e-6)
    assert sup_i[p > 1].mean().item() == pytest.approx(supcon_loss(z @ z.T / tau, labels).item())


def test_single_sample_class_has_only_its_other_view_as_positive():
    """B = 3 images, one of class 0: among the 24 rotated views, each copy of it has exactly one positive,
    its other view at the same rotation; its own rotated copies are negatives."""
    y = torch.tensor([0, 1, 1])
    x, labels = obj("csi", classes=2).transform_batch(torch.randn(6, 1, 4, 4), torch.cat([y, y]), None)
    joint = joint_labels(labels, 2, 2)
    for i in range(24):
        view, k, img = i // 12, i // 3 % 4, i % 3
        positives = [j for j in range(24) if j != i and joint[j] == joint[i]]
        if img == 0:
            assert positives == [12 * (1 - view) + 3 * k + img]
        else:  # the other image of class 1 (both views) and its own other view, all at rotation k
            assert len(positives) == 3 and all(j // 3 % 4 == k for j in positives)
    g = torch.Generator().manual_seed(1)
    z = F.normalize(torch.randn(24, 5, generator=g, dtype=torch.float64), dim=1).requires_grad_(True)
    loss = supervised_nt_xent(z @ z.T, joint, 0.07)
    assert loss.item() == pytest.approx(_numpy_loss(z.detach().numpy(), joint.numpy(), 0.07), rel=1e-10)
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def _forward(n, dim=8, classes=4, views=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    pooled = torch.randn(n, dim, generator=g).abs().requires_grad_(True)
    head = torch.nn.Linear(dim, classes)
    logits = head(pooled)
    return Forward(logits, pooled, pooled[:, :, None, None], head.weight, head.bias, views), head


def test_csi_loss_and_where_its_gradients_go():
    o = obj("csi")
    y = torch.tensor([0, 1, 2, 3]).repeat(4 * 2)  # B = 4, 8B = 32
    out, head = _forward(32, views=2)
    loss, sums = o.loss(out, y)
    z = F.normalize(o.modules["simclr_layer"](out.pooled), dim=1)
    l_sim = supervised_nt_xent(z @ z.T, joint_labels(y, 4, 2), 0.07)
    rows = torch.cat([torch.arange(4), torch.arange(16, 20)])
    ce = F.cross_entropy(F.linear(out.pooled[rows], head.weight, head.bias), y[rows])
    assert loss.item() == pytest.approx(l_sim.item() + ce.item(), rel=1e-6)
    assert float(sums["supcon"]) == pytest.approx(32 * l_sim.item(), rel=1e-6) and sums["seen_0deg"] == 8
    loss.backward()
    grad_with = out.pooled.grad.clone()
    assert head.weight.grad.abs().sum() > 0  # the linear evaluation trains the head ...
    out2, head2 = _forward(32, views=2)
    o2 = obj("csi", {"linear_eval": False})
    o2.modules.load_state_dict(o.modules.state_dict())
    o2.loss(out2, y)[0].backward()
    assert torch.allclose(out2.pooled.grad, grad_with)  # ... and never the features
    assert head2.weight.grad is None
    row = o.epoch_row({k: float(v) for k, v in sums.items()}, 32)
    assert 0 <= row["acc_0deg"] <= 1 and -1 <= row["sim_neg"] <= 1 and o.collapse(row) is None


def test_csi_linear_loss_by_hand():
    o = obj("csi_linear", classes=3)
    y = torch.tensor([0, 2]).repeat(4)
    out, head = _forward(8, classes=3)
    loss, sums = o.loss(out, y)
    h = out.pooled.detach()
    k = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    expected = (F.cross_entropy(head(h[:2]), y[:2]) + F.cross_entropy(o.modules["shift"](h), k)
                + F.cross_entropy(o.modules["joint"](h), y + 3 * k))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert out.pooled.grad is None or out.pooled.grad[2:].abs().sum() == 0  # rotated copies reach no feature
    assert all(p.grad is not None for p in o.modules.parameters()) and head.weight.grad is not None
    row = o.epoch_row({k_: float(v) for k_, v in sums.items()}, 8)
    assert row["ce_0deg"] == pytest.approx(F.cross_entropy(head(h[:2]), y[:2]).item(), rel=1e-6)


# ----------------------------------------------------------------------------- the field and the scorer
def test_joint_score_field_against_a_direct_computation():
    torch.manual_seed(0)
    model = build_model(SMALL, 4).eval()
    o = obj("csi_linear")
    data = _data(n=6)
    out = extract_split(model, data, batch_size=4, device=CPU, role="ood", requests={"csi_joint_score": True},
                        objective=o)
    assert out["csi_joint_score"].dtype == np.float32 and out["csi_joint_score"].shape == (6,)
    x, _ = data.batch(torch.arange(6))
    with torch.no_grad():
        total = sum(o.modules["joint"](model(torch.rot90(x, k, (2, 3)), return_features=True)[1])[:, 4 * k:4 * k + 4]
                    for k in range(4))
        expected = F.softmax(total / 4, dim=1).max(1).values.numpy()
    np.testing.assert_allclose(out["csi_joint_score"], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="joint head"):
        extract_split(model, data, batch_size=4, device=CPU, role="ood", requests={"csi_joint_score": True},
                      objective=obj("csi"))
    s = build_scorer("csi")
    fs = FeatureSet(np.zeros((6, 4)), np.zeros((6, 8)), extras={"csi_joint_score": out["csi_joint_score"]})
    np.testing.assert_array_equal(s.score(fs), out["csi_joint_score"].astype(np.float64))
    assert scorer_applies("csi", o.provides, "csi_linear")
    assert not scorer_applies("csi", o.provides, "csi") and not scorer_applies("csi", (), "csi_linear")


# ----------------------------------------------------------------------------- both stages through the loop
def test_two_stages_train_resume_and_freeze(tmp_path):
    from lffood.checkpoint import ResumeFile

    class Killed(Exception):
        pass

    def stage1(resume=None, kill_at=None):
        from lffood.hooks import OnEpoch

        def progress(row):
            if row["epoch"] == kill_at:
                raise Killed

        torch.manual_seed(0)
        model, o = build_model(SMALL, 4), obj("csi")
        try:
            hist = train(model, _data(), _stage(), objective=o, seed=0, device=CPU, guard=NO_GUARD, resume=resume,
                         hooks=[OnEpoch(progress)])
        except Killed:
            return None
        return model, o, hist

    model, o, hist = stage1()
    assert len(hist) == 2
    for key in ("supcon", "sim_pos", "sim_neg", "acc_0deg", "loss", "new_modules_change"):
        assert all(np.isfinite(h[key]) for h in hist), key
    assert hist[0]["new_modules_change"] > 0
    # resumed after epoch 1: the same weights and projection head as the uninterrupted run
    resume = ResumeFile(tmp_path / "csi.resume.pt", "fp", max_cost=None)
    assert stage1(resume, kill_at=2) is None
    model_r, o_r, hist_r = stage1(resume)
    for a, b in zip(model.state_dict().values(), model_r.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(o.modules.state_dict().values(), o_r.modules.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["supcon"] for h in hist_r] == [h["supcon"] for h in hist]
    o2 = obj("csi")
    o2.load_state_dict(o.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(o.modules.state_dict().values(), o2.modules.state_dict().values()))

    # stage 2 from stage 1's weights: only the head and the shift/joint heads move, BN statistics stay
    parent = copy.deepcopy(model)
    lin = obj("csi_linear")
    before_mods = [p.detach().clone() for p in lin.modules.parameters()]
    hist2 = train(model, _data(), _stage(lr=0.1, momentum=0.0), objective=lin, seed=1, device=CPU, guard=NO_GUARD)
    assert len(hist2) == 2
    for key in ("ce_0deg", "l_shift", "l_joint", "acc_joint", "loss"):
        assert all(np.isfinite(h[key]) for h in hist2), key
    head = {n for n, _ in model.head.named_parameters(prefix="head")}
    after = model.state_dict()
    for name, value in parent.state_dict().items():
        if name in head:
            assert not torch.equal(value, after[name]), name
        else:  # convolutions, BN weights and running statistics, num_batches_tracked
            assert torch.equal(value, after[name]), name
    assert all(not torch.equal(a, b) for a, b in zip(before_mods, lin.modules.parameters()))


@pytest.mark.parametrize("name", ["csi", "csi_linear"])
def test_training_step_makes_no_host_synchronisation(name):
    from lffood.bench import syncs_per_step

    def epoch(steps):
        torch.manual_seed(0)
        train(build_model(SMALL, 4), _data(n=4 * steps), _stage(epochs=1, batch_size=4), objective=obj(name),
              seed=0, device=CPU, guard=NO_GUARD)

    assert syncs_per_step(epoch, 2, 4) == 0
