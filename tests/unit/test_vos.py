"""VOS (lffood.objectives.vos) against hand-computed numbers, NumPy and a literal re-implementation of
the official queue loop: the weighted log-sum-exp and L_unc; the queue's fill and FIFO roll; the tied
covariance; the lowest-density selection; both samplers' distribution; the gate (L_unc exactly 0
before every queue is full and before start_epoch); where gradients go; buffers and resume; a toy
training run; no host synchronisation per step."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from lffood.data.arrays import Split
from lffood.data.loader import TensorImages
from lffood.hooks import OnEpoch
from lffood.models import build_model
from lffood.objectives import Forward, build_objective, objective_class
from lffood.objectives.vos import (RIDGE, cholesky, draw_gaussian, draw_radial, enqueue, lowest_density,
                                   ordered_queue, sample_outliers, tied_gaussian, uncertainty_loss,
                                   weighted_logsumexp)
from lffood.training import train

torch.set_num_threads(1)

SMALL = {"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]}
CPU = torch.device("cpu")
NO_GUARD = {"enabled": False}


def vos(classes=4, dim=8, **params):
    return build_objective("vos", params, feature_dim=dim, num_classes=classes)


def _data(n=64, k=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    split = Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % k)
    return TensorImages(split, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


def _stage(**kw):
    st = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True, "epochs": 2,
          "batch_size": 16, "schedule": {"type": "cosine"}, "augment": {"crop_padding": 1, "hflip": True,
                                                                         "color_jitter": 0.0}}
    st.update(kw)
    return st


def _forward(logits, pooled, classes=None):
    d = pooled.shape[1]
    c = classes or logits.shape[1]
    w = torch.randn(c, d, generator=torch.Generator().manual_seed(3))
    return Forward(logits, pooled, pooled[:, :, None, None], w, torch.zeros(c))


# ----------------------------------------------------------------------------- registry and parameters
def test_registered_with_the_official_defaults_and_checks():
    cls = objective_class("vos")
    assert cls.label == "VOS"
    assert cls.defaults() == {"queue_size": 1000, "start_epoch": 40, "sample_from": 10000, "select": 1,
                              "loss_weight": 0.1, "sampler": "gaussian", "new_module_lr": None}
    assert cls.check({}) == []
    issues = cls.check({"select": 20, "sample_from": 10})
    assert [i.key for i in issues] == ["select"] and "sample_from" in issues[0].depends
    assert [i.key for i in cls.check({"sampler": "uniform"})] == ["sampler"]
    assert [i.key for i in cls.check({"loss_weight": -1.0})] == ["loss_weight"]
    o = vos(classes=3, dim=5, queue_size=7)
    assert o.modules["queue"].queue.shape == (3, 7, 5) and o.modules["queue"].count.dtype == torch.long
    w = o.modules["energy_weight"].weight
    assert w.shape == (1, 3) and bool((w >= 0).all() and (w <= 1).all())  # U(0, 1)
    assert o.modules["logistic"].weight.shape == (2, 1)
    # the parameters that start fresh: w (and its unused bias) and LR; the queue has none
    assert len(o.new_parameters()) == 4


def test_schema_is_documented_and_bounded_as_every_objective_s():
    import lffood.objectives.vos as mod

    cls = objective_class("vos")
    assert "Usage" in mod.__doc__ and cls.own_loss in cls.stats
    for key, spec in cls.params_schema.items():
        assert "description" in spec and "default" in spec, key
        types = spec.get("type") if isinstance(spec.get("type"), list) else [spec.get("type")]
        if {"number", "integer"} & set(types):
            assert "minimum" in spec or "exclusiveMinimum" in spec, key
            assert "maximum" in spec or "exclusiveMaximum" in spec, key
            assert cls.check({key: spec.get("maximum", 1e300) * 10 + 1}), key


# ----------------------------------------------------------------------------- losses, by hand
def test_weighted_logsumexp_hand():
    f = torch.tensor([[0.0, math.log(2.0)], [1.0, 1.0], [3.0, 0.0]])
    w = torch.tensor([[0.5, 2.0]])
    expected = [math.log(0.5 + 2.0 * 2.0), 1.0 + math.log(2.5), math.log(0.5 * math.exp(3.0) + 2.0)]
    assert weighted_logsumexp(f, w).tolist() == pytest.approx(expected, rel=1e-6)
    # ReLU(w): a negative weight drops its class
    neg = weighted_logsumexp(f, torch.tensor([[-1.0, 1.0]]))
    assert neg.tolist() == pytest.approx([math.log(2.0), 1.0, 0.0], abs=1e-6)
    # w = 1: the plain log-sum-exp (the energy score at T = 1)
    assert torch.allclose(weighted_logsumexp(f, torch.ones(1, 2)), torch.logsumexp(f, 1))
    # large logits stay finite
    assert torch.isfinite(weighted_logsumexp(torch.tensor([[1000.0, 999.0]]), w)).all()


def test_uncertainty_loss_hand():
    lr = torch.nn.Linear(1, 2)
    with torch.no_grad():
        lr.weight.copy_(torch.tensor([[0.0], [1.0]]))
        lr.bias.copy_(torch.tensor([0.0, 0.5]))
    e_id, e_ood = torch.tensor([1.0, -0.5]), torch.tensor([2.0, 0.0, 3.0])

    def softplus(x):
        return math.log1p(math.exp(x))

    # logits (0, s + 0.5): CE(label 1) = softplus(-(s + 0.5)), CE(label 0) = softplus(s + 0.5)
    expected = (softplus(-1.5) + softplus(0.0) + softplus(2.5) + softplus(0.5) + softplus(3.5)) / 5
    assert uncertainty_loss(e_id, e_ood, lr).item() == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- queue
def _official_queue(batches, classes, size):
    """The official loop (train_virtual.py L189-266), literally, with lists: returns the queues (oldest
    first) and the 'all full before the step' flag of every step."""
    data = [[None] * size for _ in range(classes)]
    number = [0] * classes
    flags = []
    for feats, labels in batches:
        full = sum(number) == classes * size
        flags.append(full)
        for f, y in zip(feats, labels):
            if full:
                data[y] = data[y][1:] + [f]
            elif number[y] < size:
                data[y][number[y]] = f
                number[y] += 1
    return data, number, flags


def _run_queue(batches, classes, size, dim):
    state = vos(classes=classes, dim=dim, queue_size=size).modules["queue"]
    flags = []
    for feats, labels in batches:
        flags.append(bool(enqueue(state.queue, state.count, state.ptr, torch.tensor(feats, dtype=torch.float32),
                                  torch.tensor(labels))))
    return state, flags


def test_queue_fill_then_fifo_roll_hand_traced():
    batches = [([[1.0], [2.0], [3.0], [4.0]], [0, 0, 0, 1]),  # class 0 full: 3 dropped; class 1 slot 0
               ([[5.0], [6.0], [7.0]], [0, 1, 1]),            # not all full before: 5 and 7 dropped
               ([[8.0], [9.0], [10.0], [11.0]], [1, 0, 1, 1]),  # all full: roll; class 1 keeps its last two
               ([[12.0], [13.0], [14.0], [15.0], [16.0]], [0, 0, 0, 0, 0])]
    state, flags = _run_queue(batches[:1], 2, 2, 1)
    assert ordered_queue(state.queue, state.ptr)[..., 0].tolist() == [[1.0, 2.0], [4.0, 0.0]]
    assert state.count.tolist() == [2, 1]
    state, flags = _run_queue(batches[:2], 2, 2, 1)
    assert ordered_queue(state.queue, state.ptr)[..., 0].tolist() == [[1.0, 2.0], [4.0, 6.0]]
    assert state.count.tolist() == [2, 2] and flags == [False, False]
    state, flags = _run_queue(batches[:3], 2, 2, 1)
    assert ordered_queue(state.queue, state.ptr)[..., 0].tolist() == [[2.0, 9.0], [10.0, 11.0]]
    assert flags == [False, False, True] and state.ptr.tolist() == [1, 1]
    state, flags = _run_queue(batches, 2, 2, 1)
    assert ordered_queue(state.queue, state.ptr)[..., 0].tolist() == [[15.0, 16.0], [10.0, 11.0]]
    assert state.count.tolist() == [2, 2] and flags == [False, False, True, True]


def test_queue_matches_the_official_loop_on_random_batches():
    rng = np.random.default_rng(5)
    classes, size, dim = 3, 4, 2
    batches = []
    for _ in range(25):
        b = int(rng.integers(1, 9))
        # a skewed label distribution: class 2 is rare, so the others are dropped for a while
        labels = rng.choice(classes, size=b, p=[0.5, 0.4, 0.1]).tolist()
        batches.append((rng.standard_normal((b, dim)).astype(np.float32).tolist(), labels))
    data, number, flags_ref = _official_queue(batches, classes, size)
    state, flags = _run_queue(batches, classes, size, dim)
    assert flags == flags_ref and True in flags and False in flags
    assert state.count.tolist() == number
    np.testing.assert_array_equal(ordered_queue(state.queue, state.ptr).numpy(), np.array(data, dtype=np.float32))


# ----------------------------------------------------------------------------- Gaussians and sampling
def test_tied_covariance_matches_numpy():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((3, 6, 4)) * np.array([1.0, 2.0, 0.5, 3.0]) + rng.standard_normal((3, 1, 4)) * 5
    mu, sigma = tied_gaussian(torch.tensor(q, dtype=torch.float32))
    # the mean of the per-class (biased) covariances, plus the ridge
    expected = np.mean([np.cov(q[c].T, bias=True) for c in range(3)], axis=0) + RIDGE * np.eye(4)
    assert sigma.dtype == torch.float64
    np.testing.assert_allclose(sigma.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mu.numpy(), q.mean(1), rtol=1e-5, atol=1e-6)
    chol = cholesky(sigma)
    np.testing.assert_allclose((chol.double() @ chol.double().T).numpy(), expected, rtol=1e-5, atol=1e-5)
    # a constant queue: Sigma is the ridge alone, still positive definite
    _, s0 = tied_gaussian(torch.ones(2, 3, 4))
    np.testing.assert_allclose(s0.numpy(), RIDGE * np.eye(4))
    assert torch.isfinite(cholesky(s0)).all()


def test_selection_keeps_the_lowest_log_density_draws():
    rng = np.random.default_rng(2)
    c, s, d, select = 3, 40, 4, 3
    mu = rng.standard_normal((c, d)) * 3
    a = rng.standard_normal((d, d))
    sigma = a @ a.T + 0.5 * np.eye(d)
    eps = rng.standard_normal((c, s, d))
    chol = cholesky(torch.tensor(sigma))
    ours = sample_outliers(torch.tensor(mu, dtype=torch.float32), chol,
                           lowest_density(torch.tensor(eps, dtype=torch.float32), select)).numpy().reshape(c, select, d)
    # NumPy: the same draws as points, their log-density under N(mu_c, Sigma), the lowest `select` per class
    points = mu[:, None, :] + eps @ np.linalg.cholesky(sigma).T
    inv, (_, logdet) = np.linalg.inv(sigma), np.linalg.slogdet(sigma)
    diff = points - mu[:, None, :]
    logp = -0.5 * (d * np.log(2 * np.pi) + logdet + np.einsum("csi,ij,csj->cs", diff, inv, diff))
    for k in range(c):
        lowest = points[k][np.argsort(logp[k])[:select]]
        order = np.argsort(lowest[:, 0])
        np.testing.assert_allclose(ours[k][np.argsort(ours[k][:, 0])], lowest[order], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("draw", [draw_gaussian, draw_radial])
def test_both_samplers_keep_the_largest_of_sample_from_chi2_radii(draw):
    """|e|^2 of the kept draw is the largest of S chi^2_d draws: CDF F_chi2(x)^S; directions uniform."""
    torch.manual_seed(0)
    c, s, d = 3000, 20, 3
    eps = draw(c, s, d, 1, CPU)
    assert eps.shape == (c, 1, d)
    r2 = eps.pow(2).sum(-1).flatten().double().numpy()
    assert stats.kstest(r2, lambda x: stats.chi2.cdf(x, d) ** s).pvalue > 1e-3
    u = F.normalize(eps[:, 0], dim=-1)
    assert u.mean(0).abs().max().item() < 0.06  # uniform directions: mean 0 (standard error 0.01)
    assert (u.T @ u / c - torch.eye(d) / d).abs().max().item() < 0.03  # isotropic: E[u u^T] = I / d


def test_gaussian_draw_in_chunks_keeps_its_shape(monkeypatch):
    import lffood.objectives.vos as mod

    monkeypatch.setattr(mod, "CHUNK", 50)  # one class per chunk
    torch.manual_seed(0)
    assert draw_gaussian(3, 10, 4, 2, CPU).shape == (3, 2, 4)


# ----------------------------------------------------------------------------- the gate
def _fill(o, steps=6, classes=4, dim=8, seed=0):
    """Feed ``o`` batches that hold every class, until its queues are full."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        y = torch.arange(classes).repeat(2)
        o.loss(_forward(torch.randn(len(y), classes, generator=g), torch.randn(len(y), dim, generator=g)), y)


def test_l_unc_is_exactly_zero_until_every_queue_is_full_and_the_start_epoch():
    g = torch.Generator().manual_seed(1)
    logits, pooled = torch.randn(6, 3, generator=g), torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, 0, 1, 0, 1])  # class 2 never queued
    o = vos(classes=3, dim=5, queue_size=2, start_epoch=1, sample_from=50)
    ce = F.cross_entropy(logits, y)
    # before the start epoch: nothing is sampled (no draw from the global generator), loss == CE
    o.on_epoch_start(0, 3)
    rng = torch.get_rng_state()
    loss, sums = o.loss(_forward(logits, pooled), y)
    assert torch.equal(loss, ce) and torch.equal(torch.get_rng_state(), rng)
    assert float(sums["l_unc"]) == 0.0 and float(sums["vos_active"]) == 0.0
    assert float(sums["queue_fill"]) == pytest.approx(6 * 4 / 6)  # 4 of 6 slots, times the batch
    # at the start epoch, one class's queue still empty: sampled, but L_unc exactly 0 and loss == CE
    o.on_epoch_start(1, 3)
    loss, sums = o.loss(_forward(logits, pooled), y)
    assert torch.equal(loss, ce) and float(sums["l_unc"]) == 0.0 and float(sums["vos_active"]) == 0.0
    # class 2 fills in this step: still 0 (the official code checks the count before the step's update) ...
    y2 = torch.tensor([2, 2, 0, 1, 0, 1])
    loss, sums = o.loss(_forward(logits, pooled), y2)
    assert torch.equal(loss, F.cross_entropy(logits, y2)) and float(sums["vos_active"]) == 0.0
    # ... and active from the next step on
    loss, sums = o.loss(_forward(logits, pooled), y2)
    assert float(sums["vos_active"]) == 6.0 and float(sums["l_unc"]) > 0.0
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y2).item() + 0.1 * float(sums["l_unc"]) / 6)
    # full queues before the start epoch: still plain CE
    o2 = vos(classes=3, dim=5, queue_size=2, start_epoch=5, sample_from=50)
    o2.on_epoch_start(2, 10)
    for _ in range(3):
        loss, sums = o2.loss(_forward(logits, pooled), y2)
    assert bool((o2.modules["queue"].count == 2).all()) and torch.equal(loss, F.cross_entropy(logits, y2))


# ----------------------------------------------------------------------------- gradients
def _model_step(o, seed=0):
    torch.manual_seed(seed)
    model = build_model(SMALL, 4)
    x = torch.randn(8, 3, 8, 8)
    logits, pooled, fmap = model(x, return_features=True)
    return model, Forward(logits.float(), pooled, fmap, model.head.weight, model.head.bias)


def test_outlier_term_reaches_only_the_head_w_and_lr_the_id_term_the_network():
    o = vos(classes=4, dim=8, queue_size=3, start_epoch=0, sample_from=30)
    _fill(o)
    model, out = _model_step(o)
    backbone = next(p for n, p in model.named_parameters() if not n.startswith("head"))
    w, lr = o.modules["energy_weight"].weight, o.modules["logistic"]
    v = o.outliers()
    assert not v.requires_grad and v.shape == (4, 8)
    e_id = weighted_logsumexp(out.logits, w)
    e_ood = weighted_logsumexp(v @ out.weight.T + out.bias, w)
    # the outlier term alone: the head, w and LR; not the backbone
    uncertainty_loss(e_id.detach(), e_ood, lr).backward()
    assert backbone.grad is None
    for p in (model.head.weight, model.head.bias, w, lr.weight, lr.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # the ID term: the backbone too
    model.zero_grad(set_to_none=True)
    uncertainty_loss(weighted_logsumexp(out.logits, w), e_ood.detach(), lr).backward()
    assert backbone.grad is not None and backbone.grad.abs().sum() > 0
    # the whole loss, active: every part of the network, w and LR get a gradient; the queue none
    model.zero_grad(set_to_none=True)
    o.modules.zero_grad(set_to_none=True)
    _, out = _model_step(o)
    out = Forward(out.logits, out.pooled, out.fmap, model.head.weight, model.head.bias)
    o.on_epoch_start(0, 1)
    loss, sums = o.loss(out, torch.arange(4).repeat(2))
    loss.backward()
    assert float(sums["vos_active"]) == 8.0 and w.grad.abs().sum() > 0 and lr.weight.grad.abs().sum() > 0


def test_outlier_gradient_on_the_head_is_that_of_fc_applied_to_v():
    """E'(fc(v)) as the loss computes it equals the model head applied to v (same gradient path)."""
    o = vos(classes=4, dim=8, queue_size=3, start_epoch=0, sample_from=30)
    _fill(o)
    model, _ = _model_step(o)
    v = o.outliers()
    w = o.modules["energy_weight"].weight
    a = weighted_logsumexp(v @ model.head.weight.T + model.head.bias, w)
    b = weighted_logsumexp(model.head(v), w)
    assert torch.allclose(a, b, atol=1e-6)


# ----------------------------------------------------------------------------- state
def test_buffers_round_trip_and_the_next_step_is_the_same():
    o = vos(classes=4, dim=8, queue_size=3, start_epoch=1, sample_from=30)
    o.on_epoch_start(2, 5)
    _fill(o, steps=5)
    state = o.state_dict()
    assert {"queue.queue", "queue.count", "queue.ptr", "queue.epoch", "energy_weight.weight",
            "logistic.weight"} <= set(state)
    p = vos(classes=4, dim=8, queue_size=3, start_epoch=1, sample_from=30)
    assert p._epoch == 0
    p.load_state_dict(state)
    assert p._epoch == 2 and p.sampling()
    for k, v in o.state_dict().items():
        assert torch.equal(v, p.state_dict()[k]), k
    g = torch.Generator().manual_seed(9)
    logits, pooled, y = torch.randn(8, 4, generator=g), torch.randn(8, 8, generator=g), torch.arange(4).repeat(2)
    torch.manual_seed(4)
    la, sa = o.loss(_forward(logits, pooled), y)
    torch.manual_seed(4)
    lb, sb = p.loss(_forward(logits, pooled), y)
    assert torch.equal(la, lb) and float(sa["vos_active"]) == 8.0


# ----------------------------------------------------------------------------- guard hooks
def test_guard_hooks_wait_for_the_regulariser():
    o = vos(classes=4, dim=8, queue_size=3, start_epoch=1)
    o.on_epoch_start(0, 2)
    row = o.epoch_row({"l_unc": 0.0, "vos_active": 0.0, "e_id": 0.0, "e_ood": 0.0, "queue_fill": 10.0}, 10)
    assert row["vos_active"] == 0.0 and row["queue_fill"] == 1.0 and "VOS off" in o.log_line(row)
    assert o.collapse(row) is None  # not the last epoch
    assert o.not_learned(0.0, 0.01, 0.1) is None  # w and LR have had no gradient yet
    o.on_epoch_start(1, 2)
    assert "not active in the last epoch" in o.collapse(row)
    row = o.epoch_row({"l_unc": 3.0, "vos_active": 5.0, "e_id": 10.0, "e_ood": 5.0, "queue_fill": 10.0}, 10)
    assert row["l_unc"] == 0.6 and row["vos_active"] == 0.5 and row["e_id"] == 2.0 and row["e_ood"] == 1.0
    assert o.collapse(row) is None and "L_unc 0.6" in o.log_line(row)
    assert o.not_learned(0.0, 0.01, 0.1) is not None  # active, and w and LR did not move
    off = vos(classes=4, dim=8, loss_weight=0.0)
    off.epoch_row({"l_unc": 3.0, "vos_active": 5.0, "e_id": 10.0, "e_ood": 5.0, "queue_fill": 10.0}, 10)
    assert off.not_learned(0.0, 0.01, 0.1) is None  # loss_weight 0: w and LR get zero gradients by design


# ----------------------------------------------------------------------------- training
class _Killed(Exception):
    pass


def _train(resume=None, kill_at=None, sampler="gaussian", new_module_lr=0.05):
    """2 epochs, L_unc from the second. w and LR at the stage's rate 0.05, in a group of their own: fused SGD
    (training.build_optimizer) crashes on a parameter whose first gradient comes after the other parameters'
    of its group (torch._fused_sgd_); in a group of their own they take their first step together."""
    torch.manual_seed(0)
    model = build_model(SMALL, 4)
    o = vos(classes=4, dim=8, queue_size=4, start_epoch=1, sample_from=200, sampler=sampler,
            new_module_lr=new_module_lr)

    def progress(row):
        if row["epoch"] == kill_at:
            raise _Killed

    try:
        hist = train(model, _data(), _stage(), objective=o, seed=0, device=CPU, guard=NO_GUARD,
                     hooks=[OnEpoch(progress)], resume=resume)
    except _Killed:
        return None, None, None
    return model, o, hist


def test_toy_training_activates_in_epoch_two_and_resumes_to_the_same_state(tmp_path):
    from lffood.checkpoint import ResumeFile

    model, o, hist = _train()
    assert [h["epoch"] for h in hist] == [1, 2]
    assert hist[0]["vos_active"] == 0.0 and hist[0]["l_unc"] == 0.0 and hist[0]["queue_fill"] > 0.5
    assert hist[1]["vos_active"] == 1.0 and hist[1]["queue_fill"] == 1.0
    assert math.isfinite(hist[1]["l_unc"]) and hist[1]["l_unc"] > 0.0
    for h in hist:
        assert math.isfinite(h["loss"]) and math.isfinite(h["ce"])
    assert hist[0]["loss"] == pytest.approx(hist[0]["ce"], rel=1e-6)
    assert hist[1]["loss"] == pytest.approx(hist[1]["ce"] + 0.1 * hist[1]["l_unc"], rel=1e-5)
    assert hist[1]["new_modules_change"] > 0.0
    # killed in epoch 2: the state after epoch 1 (queue included) is on disk; the rerun ends where the
    # uninterrupted run did, the sampling's draws included
    resume = ResumeFile(tmp_path / "v.resume.pt", "fp-vos", max_cost=None)
    assert _train(resume, kill_at=2)[0] is None
    assert resume.load(CPU)["epoch"] == 1
    model2, o2, hist2 = _train(resume)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    for k, v in o.state_dict().items():
        assert torch.equal(v, o2.state_dict()[k]), k
    assert [h["l_unc"] for h in hist2] == [h["l_unc"] for h in hist]


def test_toy_training_with_the_radial_sampler():
    _, o, hist = _train(sampler="radial")
    assert hist[1]["vos_active"] == 1.0 and math.isfinite(hist[1]["l_unc"]) and math.isfinite(hist[1]["loss"])


def test_toy_training_with_w_and_lr_in_the_networks_group():
    """Fused SGD and a parameter whose first gradient comes late (w and LR in the network's group):
    training.py gives it a zero momentum buffer (torch's own first step)."""
    _, o, hist = _train(new_module_lr=None)
    assert hist[1]["vos_active"] == 1.0 and math.isfinite(hist[1]["loss"])


def test_training_step_makes_no_host_synchronisation():
    from lffood.bench import syncs_per_step

    def epoch(steps):
        torch.manual_seed(0)
        train(build_model(SMALL, 4), _data(n=8 * steps), _stage(epochs=1, batch_size=8),
              objective=vos(queue_size=1, start_epoch=0, sample_from=50), seed=0, device=CPU, guard=NO_GUARD)

    assert syncs_per_step(epoch, 2, 5) == 0
