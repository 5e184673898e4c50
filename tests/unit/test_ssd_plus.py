"""SSD+ (lffood.objectives.supcon, lffood.scorers.ssd): the SupCon loss against a hand-computed value and
an independent double loop, degenerate batches, where the gradients go, the objective's state and a toy
training run with a resume; SSD's one-cluster score against its official numpy formula."""

import math

import numpy as np
import pytest
import torch

import lffood.scorers
from lffood.data.arrays import Split
from lffood.data.loader import TensorImages
from lffood.models import build_model
from lffood.objectives import Forward, build_objective
from lffood.objectives.alpa import supcon_loss as alpa_supcon
from lffood.objectives.supcon import supcon_loss
from lffood.scorers import FeatureSet, Head, build_scorer

torch.set_num_threads(1)

CPU = torch.device("cpu")
SMALL = {"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]}
TAU, BASE = 0.5, 0.07


def loop_supcon(z, labels, tau=TAU, base=BASE):
    """SupContrast's loss written as the paper's sums, one anchor and one positive at a time."""
    z, labels = np.asarray(z, np.float64), list(labels)
    n, total = len(z), 0.0
    for i in range(n):
        denom = sum(math.exp(z[i] @ z[a] / tau) for a in range(n) if a != i)
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if positives:
            total += sum(math.log(math.exp(z[i] @ z[p] / tau) / denom) for p in positives) / len(positives)
    return -(tau / base) * total / n


# ----------------------------------------------------------------------------- the loss
def test_supcon_hand_2d():
    # two images (classes 0, 1), their views identical: z = e0, e1, e0, e1. Every anchor: one positive at
    # cos 1, two negatives at cos 0: -log(e^(1/tau) / (e^(1/tau) + 2)) = log(1 + 2 e^(-2)) at tau 0.5
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 0, 1])
    expected = (TAU / BASE) * math.log(1 + 2 * math.exp(-2))
    assert supcon_loss(z, y, TAU, BASE).item() == pytest.approx(expected, rel=1e-6)
    assert loop_supcon(z.numpy(), y.tolist()) == pytest.approx(expected, rel=1e-12)


def test_supcon_against_double_loop_and_alpa():
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(10, 3, generator=g, dtype=torch.float64), dim=1)
    y = torch.tensor([0, 1, 2, 0, 0, 1, 2, 0, 0, 1])
    for tau in (0.1, 0.5):
        got = supcon_loss(z, y, tau, BASE).item()
        assert got == pytest.approx(loop_supcon(z.numpy(), y.tolist(), tau), rel=1e-10)
        # every anchor has a positive: the same as ALPA's SupCon on these logits, times tau / 0.07
        assert got == pytest.approx((tau / BASE) * alpa_supcon(z @ z.T / tau, y).item(), rel=1e-10)


def test_class_appearing_once_with_two_views():
    # class 2 once in the batch: views 2 and 5 are each other's only positive
    g = torch.Generator().manual_seed(1)
    z = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1).requires_grad_(True)
    y = torch.tensor([0, 0, 2, 0, 0, 2])
    loss = supcon_loss(z, y, TAU, BASE)
    assert loss.item() == pytest.approx(loop_supcon(z.detach().numpy(), y.tolist()), rel=1e-10)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # pulling view 5 towards view 2 lowers the loss: the gradient at 2 has a negative component along z_5
    assert float(z.grad[2] @ z.detach()[5]) < 0


def test_anchor_without_positive_counts_zero_without_nan():
    # one view only (cannot happen in training): anchor 0 has no positive, contributes 0, counted in the mean
    g = torch.Generator().manual_seed(2)
    z = torch.nn.functional.normalize(torch.randn(3, 2, generator=g, dtype=torch.float64), dim=1).requires_grad_(True)
    y = torch.tensor([0, 1, 1])
    loss = supcon_loss(z, y, TAU, BASE)
    assert loss.item() == pytest.approx(loop_supcon(z.detach().numpy(), y.tolist()), rel=1e-10)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # every anchor alone in its class: 0, no NaN
    lone = supcon_loss(z.detach(), torch.tensor([0, 1, 2]), TAU, BASE)
    assert lone.item() == 0.0


# ----------------------------------------------------------------------------- the objective
def test_gradients_reach_mlp_and_backbone_not_the_head():
    torch.manual_seed(0)
    model = build_model(SMALL, 3)
    o = build_objective("ssd_plus", {}, feature_dim=model.feature_dim, num_classes=3)
    assert o.two_views and not o.accuracy_guard and o.own_loss == "supcon"
    head = o.modules["head"]
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear"]
    assert (head[0].in_features, head[0].out_features, head[2].out_features) == (8, 8, 128)
    x = torch.randn(8, 3, 8, 8)
    logits, pooled, fmap = model(x, return_features=True)
    y = torch.tensor([0, 1, 2, 0, 0, 1, 2, 0])
    loss, sums = o.loss(Forward(logits, pooled, fmap, model.head.weight, model.head.bias, 2), y)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    backbone = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    assert sum(float(p.grad.abs().sum()) for p in backbone if p.grad is not None) > 0
    assert model.head.weight.grad is None and model.head.bias.grad is None  # no CE: the head is not trained
    z = torch.nn.functional.normalize(head(pooled.detach()), dim=1)
    assert float(sums["supcon"]) == pytest.approx(8 * loop_supcon(z.detach().numpy(), y.tolist()), rel=1e-5)
    assert set(sums) == set(o.stats) and all(v.dim() == 0 for v in sums.values())


def test_parameters_state_and_collapse():
    o = build_objective("ssd_plus", {"temperature": 0.1, "feat_dim": 16}, feature_dim=4, num_classes=2)
    assert o.params == {"temperature": 0.1, "base_temperature": 0.07, "feat_dim": 16, "new_module_lr": None}
    assert o.modules["head"][2].out_features == 16
    other = build_objective("ssd_plus", {"temperature": 0.1, "feat_dim": 16}, feature_dim=4, num_classes=2)
    other.load_state_dict(o.state_dict())
    for a, b in zip(o.modules.state_dict().values(), other.modules.state_dict().values()):
        assert torch.equal(a, b)
    assert "collapsed" in o.collapse({"supcon": 1.0, "sim_pos": 0.9993, "sim_neg": 0.9995})
    assert o.collapse({"supcon": 1.0, "sim_pos": 0.9, "sim_neg": 0.1}) is None
    assert o.check({"temperature": 0.0}) and not o.check({"temperature": 0.5})


def _data(n=32, k=4, size=8):
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % k)
    return TensorImages(split, [0.5] * 3, [0.25] * 3)


STAGE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "epochs": 2,
         "batch_size": 8, "schedule": {"type": "cosine"},
         "augment": {"random_resized_crop": {"size": 8, "scale": [0.2, 1.0], "ratio": [0.75, 4 / 3]}, "hflip": True,
                     "color_jitter": 0.4, "color_jitter_p": 0.8, "grayscale_p": 0.2}}


def test_train_two_epochs_finite_and_resume(tmp_path):
    from lffood.checkpoint import ResumeFile
    from lffood.hooks import OnEpoch
    from lffood.training import train

    class Killed(Exception):
        pass

    def run(resume=None, kill_at=None):
        torch.manual_seed(0)
        model = build_model(SMALL, 4)
        o = build_objective("ssd_plus", {}, feature_dim=model.feature_dim, num_classes=4)

        def progress(row):
            if row["epoch"] == kill_at:
                raise Killed

        try:
            hist = train(model, _data(), STAGE, objective=o, seed=0, device=CPU, guard={"enabled": False},
                         hooks=[OnEpoch(progress)], resume=resume)
        except Killed:
            return None, None, None
        return model, o, hist

    ref_model, ref_obj, ref_hist = run()
    assert [h["epoch"] for h in ref_hist] == [1, 2]
    for h in ref_hist:
        assert all(np.isfinite(h[k]) for k in ("loss", "supcon", "sim_pos", "sim_neg"))
        assert h["loss"] == pytest.approx(h["supcon"], rel=1e-5)
        assert h["new_modules_change"] > 0
    resume = ResumeFile(tmp_path / "s.resume.pt", "fp-ssd", max_cost=None)
    assert run(resume, kill_at=2)[0] is None  # the state after epoch 1 is on disk
    model, o, hist = run(resume)
    assert [h["supcon"] for h in hist] == [h["supcon"] for h in ref_hist]
    for a, b in zip([*ref_model.state_dict().values(), *ref_obj.modules.state_dict().values()],
                    [*model.state_dict().values(), *o.modules.state_dict().values()]):
        assert torch.equal(a, b)


def test_training_step_makes_no_host_synchronisation():
    from lffood.bench import syncs_per_step
    from lffood.training import train

    def epoch(steps):
        torch.manual_seed(0)
        model = build_model(SMALL, 4)
        train(model, _data(n=8 * steps), {**STAGE, "epochs": 1},
              objective=build_objective("ssd_plus", {}, feature_dim=model.feature_dim, num_classes=4),
              seed=0, device=CPU, guard={"enabled": False})

    assert syncs_per_step(epoch, 2, 4) == 0


# ----------------------------------------------------------------------------- the score
def official_ssd(ftrain, ftest):
    """SSD's eval_ssd.get_eval_results + utils.get_scores_one_cluster, verbatim in numpy (distance: higher = OOD)."""
    ftrain = ftrain / (np.linalg.norm(ftrain, axis=-1, keepdims=True) + 1e-10)
    ftest = ftest / (np.linalg.norm(ftest, axis=-1, keepdims=True) + 1e-10)
    m, s = np.mean(ftrain, axis=0, keepdims=True), np.std(ftrain, axis=0, keepdims=True)
    ftrain, ftest = (ftrain - m) / (s + 1e-10), (ftest - m) / (s + 1e-10)
    mu, prec = np.mean(ftrain, axis=0, keepdims=True), np.linalg.pinv(np.cov(ftrain.T, bias=True))
    return np.sum((ftest - mu) * (prec.dot((ftest - mu).T)).T, axis=-1)


def _head(c, k=3):
    return Head(np.zeros((k, c), np.float32), np.zeros(k, np.float32))


def test_ssd_score_matches_official_formula_with_a_dead_unit():
    rng = np.random.default_rng(3)
    n, c = 200, 6
    train = np.abs(rng.normal(size=(n, c)) @ rng.normal(size=(c, c))).astype(np.float32)
    train[:, 4] = 0.0  # a dead ReLU unit: zero standard deviation, no weight in the pseudo-inverse
    test = np.abs(rng.normal(size=(9, c))).astype(np.float32)
    test[:3, 4] = 0.0
    head = _head(c)
    sc = build_scorer("ssd").fit(FeatureSet(head(train), train), head)
    got = sc.score(FeatureSet(head(test), test))
    np.testing.assert_allclose(got, -official_ssd(train.astype(np.float64), test.astype(np.float64)), rtol=1e-4)
    # the statistics reload (the statistics artifact) and score the same
    again = build_scorer("ssd").load(head, {k: v.copy() for k, v in sc.stats.items()})
    np.testing.assert_array_equal(again.score(FeatureSet(head(test), test)), got)
    # training features score about -rank (C - 1 here) on average: E[x^T pinv(Sigma) x] = rank
    assert -sc.score(FeatureSet(head(train), train)).mean() == pytest.approx(c - 1, rel=1e-4)


def test_ssd_score_is_scale_invariant_and_ranks_far_points_lower():
    rng = np.random.default_rng(4)
    train = rng.normal(loc=3.0, size=(300, 5)).astype(np.float32)
    head = _head(5)
    sc = build_scorer("ssd").fit(FeatureSet(head(train), train), head)
    near = rng.normal(loc=3.0, size=(20, 5)).astype(np.float32)
    far = np.concatenate([near[:10] * [[1, 1, 1, 1, -1]], near[10:] * [[-1, 1, 1, 1, 1]]]).astype(np.float32)
    s_near = sc.score(FeatureSet(head(near), near))
    np.testing.assert_allclose(sc.score(FeatureSet(head(7 * near), 7 * near)), s_near, rtol=1e-5)  # L2 normalised
    assert s_near.mean() > sc.score(FeatureSet(head(far), far)).mean()


def test_ssd_scores_ssd_plus_models_only():
    assert not lffood.scorers.scorer_applies("ssd", (), "ce")
    assert not lffood.scorers.scorer_applies("ssd", (), "lff")
    assert lffood.scorers.scorer_applies("ssd", (), "ssd_plus")
    cls = lffood.scorers.scorer_class("ssd")
    assert cls.label == "SSD+" and cls.needs_fit and cls.objectives == ("ssd_plus",)
