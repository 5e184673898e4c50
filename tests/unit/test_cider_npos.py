"""CIDER and NPOS (lffood.objectives.cider, lffood.objectives.npos) and their own KNN scores
(lffood.scorers.contrastive_knn): the losses on hand-computed tensors, the EMA against the official
sequential loop, degenerate batches (a class missing), the NPOS queue, boundary and candidate selection
against brute-force numpy, the gating of L_open, where the gradients go, the buffers through
state_dict and a resume, a two-epoch training run, no host synchronisation, and the scorers' scope."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lffood.objectives import Forward, build_objective, objective_class
from lffood.objectives.cider import (compactness_loss, dispersion_loss, ema_prototypes, first_occurrence_init,
                                     prototype_cosine)
from lffood.objectives.npos import (boundary_points, class_queues, kth_neighbour_distance, open_loss, push_queue,
                                    queue_state, synthesize_outliers)

torch.set_num_threads(1)
CPU = torch.device("cpu")
SMALL = {"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]}
#: NPOS scaled down for the toy data (4 classes x 16 images, two views: 32 features per class and epoch)
TOY_NPOS = {"queue_size": 8, "k": 3, "select": 4, "pick_nums": 2, "sample_from": 10, "id_points_num": 3,
            "start_epoch": 1, "proj_dim": 8}


def fwd(pooled, views=2):
    return Forward(torch.zeros(pooled.shape[0], 2), pooled, pooled[:, :, None, None], None, None, views)


# ----------------------------------------------------------------------------- official code, ported
def official_ema(prototypes, features, labels, m):
    """``DisLoss.forward``'s update (cider utils/losses.py), in place on a buffer, per sample with .item()."""
    prototypes = prototypes.clone()
    for j in range(len(features)):
        prototypes[labels[j].item()] = F.normalize(prototypes[labels[j].item()] * m + features[j] * (1 - m), dim=0)
    return prototypes


def official_dis(prototypes, tau):
    num_cls = prototypes.shape[0]
    labels = torch.arange(0, num_cls).view(-1, 1)
    mask = 1 - torch.eq(labels, labels.T).float()
    logits = torch.div(torch.matmul(prototypes, prototypes.T), tau)
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(num_cls).view(-1, 1), 0)
    mask = mask * logits_mask
    mean_prob_neg = torch.log((mask * torch.exp(logits)).sum(1) / mask.sum(1))
    mean_prob_neg = mean_prob_neg[~torch.isnan(mean_prob_neg)]
    return tau / 0.1 * mean_prob_neg.mean()


def official_comp(features, prototypes, labels, tau):
    prototypes = F.normalize(prototypes, dim=1)
    mask = torch.eq(labels.view(-1, 1), torch.arange(prototypes.shape[0]).view(-1, 1).T).float()
    feat_dot_prototype = torch.div(torch.matmul(features, prototypes.T), tau)
    logits_max, _ = torch.max(feat_dot_prototype, dim=1, keepdim=True)
    logits = feat_dot_prototype - logits_max.detach()
    log_prob = logits - torch.log(torch.exp(logits).sum(1, keepdim=True))
    return -(tau / 0.07) * (mask * log_prob).sum(1).mean()


# ----------------------------------------------------------------------------- CIDER's losses by hand
def test_compactness_hand_two_classes_three_samples():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    y = torch.tensor([0, 1, 0])
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    seen = torch.tensor([True, True])
    # logits /0.1: [10, 0], [0, 10], [6, 8]; own-class log-probabilities:
    expected = (1 / 0.7) * (2 * math.log1p(math.exp(-10)) + math.log1p(math.exp(2))) / 3
    assert compactness_loss(z, protos, y, seen, 0.1).item() == pytest.approx(expected, rel=1e-6)
    assert compactness_loss(z, protos, y, seen, 0.1).item() == pytest.approx(
        official_comp(z, protos, y, 0.1).item(), rel=1e-6)


def test_dispersion_hand():
    protos = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    seen = torch.tensor([True, True])
    # each row: log(exp(0.6 / 0.1) / 1) = 6
    assert dispersion_loss(protos, seen, 0.1).item() == pytest.approx(6.0, rel=1e-6)
    assert dispersion_loss(protos, seen, 0.2).item() == pytest.approx(2 * 3.0, rel=1e-6)  # (0.2/0.1) * 0.6/0.2
    three = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    rows = [math.log((math.exp(6) + math.exp(0)) / 2), math.log((math.exp(6) + math.exp(8)) / 2),
            math.log((math.exp(0) + math.exp(8)) / 2)]
    got = dispersion_loss(three, torch.ones(3, dtype=torch.bool), 0.1).item()
    assert got == pytest.approx(sum(rows) / 3, rel=1e-6)
    assert got == pytest.approx(official_dis(three, 0.1).item(), rel=1e-6)


def test_missing_class_is_masked_not_nan():
    """A class without a prototype (zero row, seen False) takes no part; one seen class alone gives 0."""
    protos = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 0.0]], requires_grad=True)
    seen = torch.tensor([True, True, False])
    assert dispersion_loss(protos, seen, 0.1).item() == pytest.approx(6.0, rel=1e-6)
    only = dispersion_loss(protos, torch.tensor([True, False, False]), 0.1)
    assert only.item() == 0.0
    only.backward()
    assert torch.isfinite(protos.grad).all()
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8]], requires_grad=True)
    comp = compactness_loss(z, protos.detach(), torch.tensor([0, 1]), seen, 0.1)
    # the zero prototype of class 2 is not in the softmax (it would add exp(0) = 1 to each denominator)
    expected = (1 / 0.7) * (math.log1p(math.exp(-4)) + math.log1p(math.exp(-4))) / 2
    assert comp.item() == pytest.approx(expected, rel=1e-5)
    comp.backward()
    assert torch.isfinite(z.grad).all()


def test_objective_with_a_class_missing_from_the_batch_stays_finite():
    torch.manual_seed(0)
    obj = build_objective("cider", {"proj_dim": 4}, feature_dim=6, num_classes=3)
    pooled = torch.randn(4, 6, requires_grad=True)
    loss, sums = obj.loss(fwd(pooled), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pooled.grad).all()
    st = obj.modules["state"]
    assert st.seen.tolist() == [True, True, False] and st.prototypes[2].abs().sum() == 0
    single = build_objective("cider", {"proj_dim": 4}, feature_dim=6, num_classes=3)
    loss, sums = single.loss(fwd(torch.randn(4, 6)), torch.tensor([2, 2, 2, 2]))
    assert float(sums["l_dis"]) == 0.0 and torch.isfinite(loss)


# ----------------------------------------------------------------------------- the EMA
def test_ema_equals_the_official_sequential_loop_values_and_gradients():
    gen = torch.Generator().manual_seed(3)
    z0 = F.normalize(torch.randn(12, 5, generator=gen), dim=1)
    y = torch.tensor([0, 2, 0, 1, 0, 2, 2, 0, 1, 1, 0, 2])
    protos = F.normalize(torch.randn(3, 5, generator=gen), dim=1)
    za, zb = z0.clone().requires_grad_(True), z0.clone().requires_grad_(True)
    ours = ema_prototypes(protos, za, y, 0.7)
    ref = official_ema(protos, zb, y, 0.7)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-7)
    dispersion_loss(ours, torch.ones(3, dtype=torch.bool), 0.1).backward()
    official_dis(ref, 0.1).backward()
    torch.testing.assert_close(za.grad, zb.grad, rtol=1e-5, atol=1e-7)
    assert za.grad.abs().sum() > 0  # L_dis reaches z through the chain of updates, as in the official code


def test_cider_loss_equals_the_official_losses_with_initialised_prototypes():
    torch.manual_seed(1)
    obj = build_objective("cider", {"proj_dim": 4, "proto_m": 0.5, "w": 2.0}, feature_dim=6, num_classes=3)
    st = obj.modules["state"]
    init = F.normalize(torch.randn(3, 4), dim=1)
    st.prototypes.copy_(init)
    st.seen.fill_(True)
    pooled = torch.randn(8, 6)
    y = torch.tensor([0, 1, 2, 0, 0, 1, 2, 0])
    loss, sums = obj.loss(fwd(pooled), y)
    z = F.normalize(obj.modules["head"](pooled), dim=1)
    updated = official_ema(init, z, y, 0.5)
    expected = 2.0 * official_comp(z, updated.detach(), y, 0.1) + official_dis(updated, 0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(st.prototypes, updated.detach())
    assert float(sums["proto_cos"]) / 8 == pytest.approx(float(prototype_cosine(updated, st.seen)), rel=1e-5)


def test_first_occurrence_initialises_from_the_detached_z():
    z = F.normalize(torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [-1.0, 1.0]]), dim=1)
    y = torch.tensor([1, 0, 1, 0])
    protos, seen = first_occurrence_init(torch.zeros(3, 2), torch.tensor([False, False, True]), z, y)
    torch.testing.assert_close(protos[1], z[0])
    torch.testing.assert_close(protos[0], z[1])
    assert protos[2].abs().sum() == 0 and seen.tolist() == [True, True, True]
    # a class seen before keeps its prototype
    kept, _ = first_occurrence_init(torch.ones(3, 2), torch.tensor([True, True, True]), z, y)
    assert torch.equal(kept, torch.ones(3, 2))
    # the first occurrence's own EMA step leaves the prototype at z (init, then the update with the same z)
    torch.testing.assert_close(ema_prototypes(protos, z[:1], y[:1], 0.95)[1], z[0])


# ----------------------------------------------------------------------------- NPOS: queue
def test_queue_is_a_per_class_fifo_of_the_newest_features():
    size, c, d = 4, 3, 2
    st = queue_state(c, size, d)
    reference = {k: [] for k in range(c)}
    gen = torch.Generator().manual_seed(0)
    for step, n in enumerate([5, 3, 11]):  # the last batch has more than `size` samples of a class
        y = torch.randint(0, 2, (n,), generator=gen) if step < 2 else torch.zeros(n, dtype=torch.long)
        feats = torch.randn(n, d, generator=gen)
        push_queue(st, feats, y, size)
        for f, label in zip(feats, y.tolist()):
            reference[label] = (reference[label] + [f.tolist()])[-size:]
        q = class_queues(st, size)
        for k in range(c):
            assert int(st.queue_count[k]) == len(reference[k])
            rows = sorted(map(tuple, q[k, :len(reference[k])].tolist())) if len(reference[k]) == size else None
            if rows is not None:
                assert rows == sorted(map(tuple, reference[k]))
    assert st.queue_count.tolist() == [4, 4, 0]


# ----------------------------------------------------------------------------- NPOS: boundary and candidates
def _np_kth(queries, keys, k):
    qn = queries / np.linalg.norm(queries, axis=-1, keepdims=True)
    kn = keys / np.linalg.norm(keys, axis=-1, keepdims=True)
    d2 = ((qn[:, None, :] - kn[None, :, :]) ** 2).sum(-1)
    return np.sort(d2, axis=1)[:, k - 1]


def test_boundary_selection_against_brute_force():
    rng = np.random.default_rng(0)
    queue = rng.normal(size=(2, 12, 5)).astype(np.float32)
    d, idx = boundary_points(F.normalize(torch.from_numpy(queue), dim=2), k=3, select=4)
    for c in range(2):
        ref = _np_kth(queue[c].astype(np.float64), queue[c].astype(np.float64), 3)
        np.testing.assert_allclose(d[c].numpy(), ref, atol=1e-5)
        # d_K ties within mutual k-th neighbours are common (the pair's distance): compare as sets, with the
        # selection's border free of ties
        top = np.sort(ref)[::-1]
        assert top[3] - top[4] > 1e-4
        assert set(idx[c].tolist()) == set(np.argsort(-ref)[:4].tolist())
        np.testing.assert_allclose(d[c, idx[c]].numpy(), top[:4], atol=1e-5)  # in decreasing d_K


def test_candidate_selection_against_brute_force():
    """Per class: pick_nums random boundary points (the generator's draw), sample_from candidates around each,
    and of each boundary point's own candidates the id_points_num with the largest d_K (defect (b) fixed)."""
    rng = np.random.default_rng(1)
    c, n, d, k, select, pick, s, keep, cov = 2, 10, 4, 3, 5, 2, 7, 3, 0.5
    queue = rng.normal(size=(c, n, d)).astype(np.float32)
    noise = rng.normal(size=(s, d)).astype(np.float32)
    out = synthesize_outliers(torch.from_numpy(queue), torch.from_numpy(noise), k=k, select=select, pick_nums=pick,
                              id_points_num=keep, cov_mat=cov, generator=torch.Generator().manual_seed(5))
    assert out.shape == (c * pick * keep, d)
    order = torch.rand(c, select, generator=torch.Generator().manual_seed(5)).argsort(dim=1)[:, :pick].numpy()
    _, ordered = boundary_points(F.normalize(torch.from_numpy(queue), dim=2), k, select)  # the order of ties
    expected = []
    for cl in range(c):
        q = queue[cl].astype(np.float64)
        boundary = np.argsort(-_np_kth(q, q, k))[:select]
        assert set(boundary.tolist()) == set(ordered[cl].tolist())
        for b in ordered[cl].numpy()[order[cl]]:
            cand = q[b][None, :] + cov * noise.astype(np.float64)
            dist = _np_kth(cand, q, k)
            expected.append(cand[np.argsort(-dist)[:keep]])
    np.testing.assert_allclose(out.numpy(), np.concatenate(expected), atol=1e-5)


def test_kth_neighbour_distance_counts_the_query_itself():
    keys = F.normalize(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]]), dim=2)
    assert kth_neighbour_distance(keys, keys, 1).tolist() == [[0.0, 0.0, 0.0]]
    torch.testing.assert_close(kth_neighbour_distance(keys, keys, 3), torch.tensor([[4.0, 2.0, 4.0]]))


# ----------------------------------------------------------------------------- NPOS: L_open
def _npos(**kw):
    return build_objective("npos", {**TOY_NPOS, **kw}, feature_dim=6, num_classes=2)


def _fill(obj, steps=2, gen_seed=0):
    gen = torch.Generator().manual_seed(gen_seed)
    for _ in range(steps):
        obj.loss(fwd(torch.randn(8, 6, generator=gen)), torch.tensor([0, 1] * 4))


def test_l_open_is_zero_before_the_start_epoch():
    obj = _npos(start_epoch=3)
    obj.on_epoch_start(2, 10)
    _fill(obj, steps=3)
    assert obj.modules["state"].queue_count.tolist() == [8, 8]  # queues full, but epoch 2 < 3
    loss, sums = obj.loss(fwd(torch.randn(8, 6)), torch.tensor([0, 1] * 4))
    loss.backward()
    assert float(sums["l_open"]) == 0.0 and float(sums["open_active"]) == 0.0
    # no gradient before the start epoch: the MLP stays as initialised, as in the official code
    assert all(p.grad is None for p in obj.modules["mlp"].parameters())
    obj.on_epoch_start(3, 10)
    loss, sums = obj.loss(fwd(torch.randn(8, 6)), torch.tensor([0, 1] * 4))
    assert float(sums["l_open"]) > 0.0 and float(sums["open_active"]) == 8.0


def test_l_open_is_zero_while_a_queue_is_not_full():
    obj = _npos(start_epoch=0)
    obj.on_epoch_start(0, 10)
    loss, sums = obj.loss(fwd(torch.randn(8, 6)), torch.tensor([0, 1] * 4))  # 4 of 8 per class
    loss.backward()
    assert obj.modules["state"].queue_count.tolist() == [4, 4]
    assert float(sums["l_open"]) == 0.0 and float(sums["p_id"]) == 0.0 and torch.isfinite(loss)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in obj.modules["mlp"].parameters())
    _, sums = obj.loss(fwd(torch.randn(8, 6)), torch.tensor([0, 1] * 4))  # now full: active in this step
    assert float(sums["l_open"]) > 0.0


def test_outlier_term_trains_the_mlp_only_and_the_id_term_reaches_the_backbone():
    torch.manual_seed(0)
    obj = _npos(start_epoch=0, w_disp=0.0, w_comp=0.0, beta=1.0)
    obj.on_epoch_start(0, 10)
    _fill(obj)
    st = obj.modules["state"]
    outliers = synthesize_outliers(class_queues(st, 8), torch.randn(10, 6), k=3, select=4, pick_nums=2,
                                   id_points_num=3, cov_mat=0.1)
    assert not outliers.requires_grad  # from the (detached) queue buffer
    mlp = obj.modules["mlp"]
    # the outlier half alone: gradients for the MLP, nothing else takes part
    ood = F.binary_cross_entropy_with_logits(mlp(outliers).squeeze(1), torch.zeros(len(outliers)))
    ood.backward()
    assert all(p.grad.abs().sum() > 0 for p in mlp.parameters())
    mlp.zero_grad()
    # the whole objective with only L_open: the pooled features (the backbone's output) get its ID term's gradient
    pooled = torch.randn(8, 6, requires_grad=True)
    loss, _ = obj.loss(fwd(pooled), torch.tensor([0, 1] * 4))
    loss.backward()
    assert pooled.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in mlp.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in obj.modules["head"].parameters())
    # and that gradient is the ID term's: BCE(mlp(h), 1) over the joint mean
    h = pooled.detach().clone().requires_grad_(True)
    bce, _, _ = open_loss(mlp, h, torch.zeros(2 * 2 * 3, 6))
    bce.backward()
    torch.testing.assert_close(pooled.grad, h.grad)


def test_npos_parameter_relations_are_checked():
    issues = objective_class("npos").check({"k": 50, "queue_size": 20, "select": 10, "pick_nums": 2})
    assert [i.key for i in issues] == ["k"]
    assert objective_class("npos").check({}) == []
    with pytest.raises(ValueError, match="id_points_num"):
        build_objective("npos", {"id_points_num": 700}, feature_dim=4, num_classes=2)


def test_official_defaults():
    assert objective_class("cider").defaults() == {"w": 2.0, "tau": 0.1, "proto_m": 0.95, "proj_dim": 128,
                                                   "new_module_lr": None}
    npos = objective_class("npos").defaults()
    assert {k: npos[k] for k in ("k", "sample_from", "id_points_num", "select", "pick_nums", "cov_mat", "queue_size",
                                 "start_epoch", "w_disp", "w_comp", "beta", "proto_m", "tau")} == {
        "k": 300, "sample_from": 600, "id_points_num": 200, "select": 200, "pick_nums": 2, "cov_mat": 0.1,
        "queue_size": 1000, "start_epoch": 200, "w_disp": 0.5, "w_comp": 1.0, "beta": 0.1, "proto_m": 0.95,
        "tau": 0.1}
    for name in ("cider", "npos"):
        cls = objective_class(name)
        assert cls.two_views and not cls.accuracy_guard


# ----------------------------------------------------------------------------- state
def test_buffers_round_trip_through_state_dict():
    torch.manual_seed(0)
    obj = _npos(start_epoch=0)
    obj.on_epoch_start(0, 10)
    _fill(obj, steps=3)
    state = obj.state_dict()
    assert {"state.prototypes", "state.seen", "state.queue", "state.queue_ptr", "state.queue_count"} <= set(state)
    other = _npos(start_epoch=0)
    other.on_epoch_start(0, 10)
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        assert torch.equal(v, state[k]), k
    pooled = torch.randn(8, 6)
    torch.manual_seed(7)
    a, _ = obj.loss(fwd(pooled), torch.tensor([0, 1] * 4))
    torch.manual_seed(7)
    b, _ = other.loss(fwd(pooled), torch.tensor([0, 1] * 4))
    assert a.item() == b.item()


def _data(n=64, k=4, size=8, seed=0):
    from lffood.data.arrays import Split
    from lffood.data.loader import TensorImages

    rng = np.random.default_rng(seed)
    split = Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % k)
    return TensorImages(split, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


def _stage(**kw):
    st = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": True, "epochs": 2,
          "batch_size": 16, "schedule": {"type": "cosine"},
          "augment": {"crop_padding": 1, "hflip": True, "color_jitter": 0.0}}
    st.update(kw)
    return st


def _run(name, params, resume=None, kill_at=None, epochs=2, n=64):
    from lffood.hooks import OnEpoch
    from lffood.models import build_model
    from lffood.training import train

    class Killed(Exception):
        pass

    def progress(row):
        if row["epoch"] == kill_at:
            raise Killed

    torch.manual_seed(0)
    model = build_model(SMALL, 4)
    obj = build_objective(name, params, feature_dim=8, num_classes=4)
    try:
        hist = train(model, _data(n=n), _stage(epochs=epochs), objective=obj, seed=0, device=CPU,
                     guard={"enabled": False}, hooks=[OnEpoch(progress)], resume=resume)
    except Killed:
        return None, None, None
    return model, obj, hist


@pytest.mark.parametrize("name,params", [("cider", {"proj_dim": 8}), ("npos", TOY_NPOS)])
def test_two_epoch_training_and_resume(tmp_path, name, params):
    from lffood.checkpoint import ResumeFile

    model, obj, hist = _run(name, params)
    assert len(hist) == 2
    for row in hist:
        assert all(np.isfinite(row[k]) for k in obj.stats if k in row) and np.isfinite(row["loss"])
        assert row["new_modules_change"] > 0
    if name == "npos":
        assert hist[0]["l_open"] == 0.0 and hist[0]["queue_fill"] > 0.5  # start_epoch 1
        assert hist[1]["open_active"] == 1.0 and hist[1]["l_open"] > 0.0
    assert bool(obj.modules["state"].seen.all())
    resume = ResumeFile(tmp_path / f"{name}.resume.pt", "fp", max_cost=None)
    assert _run(name, params, resume=resume, kill_at=2)[0] is None  # killed in epoch 2: state after epoch 1 saved
    model2, obj2, hist2 = _run(name, params, resume=resume)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    for k, v in obj.state_dict().items():
        assert torch.equal(v, obj2.state_dict()[k]), k
    assert [h["loss"] for h in hist2] == [h["loss"] for h in hist]


@pytest.mark.parametrize("name,params", [("cider", {"proj_dim": 8}),
                                         ("npos", {**TOY_NPOS, "start_epoch": 0})])
def test_training_step_makes_no_host_synchronisation(name, params):
    from lffood.bench import syncs_per_step

    def epoch(steps):
        _run(name, params, epochs=1, n=16 * steps)

    assert syncs_per_step(epoch, 2, 4) == 0


# ----------------------------------------------------------------------------- own scores
def test_own_knn_scorers_apply_to_their_method_only_and_equal_knn():
    from lffood.scorers import FeatureSet, build_scorer, scorer_applies, scorer_class

    for scorer, own, k in (("cider_knn", "cider", 100), ("npos_knn", "npos", 300)):
        assert scorer_applies(scorer, (), own)
        assert not any(scorer_applies(scorer, (), other) for other in ("ce", "lff", "cider", "npos") if other != own)
        assert scorer_class(scorer).defaults["k"] == k and scorer_class(scorer).uses_train_bank
    assert scorer_applies("knn", (), "cider") and scorer_applies("knn", (), "npos")
    rng = np.random.default_rng(0)
    train = FeatureSet(rng.normal(size=(40, 3)), rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % 3)
    test = FeatureSet(rng.normal(size=(9, 3)), rng.normal(size=(9, 6)).astype(np.float32))
    own = build_scorer("cider_knn", {"k": 7}).fit(train, None).score(test)
    ref = build_scorer("knn", {"k": 7}).fit(train, None).score(test)
    np.testing.assert_array_equal(own, ref)


def test_own_knn_cost_is_knn_cost():
    from lffood.costs import Sizes, scorer_cost

    sizes = Sizes(train=50000, test=10000, ood=(10000,), dim=512, classes=10)
    assert scorer_cost("npos_knn", {"k": 300}, sizes) == scorer_cost("knn", {"k": 300}, sizes)


def test_collapse_check_and_epoch_rows():
    cider = build_objective("cider", {}, feature_dim=4, num_classes=3)
    assert "collapsed" in cider.collapse({"proto_cos": 0.9999}) and "cider.tau" in cider.collapse({"proto_cos": 1.0})
    assert cider.collapse({"proto_cos": 0.9}) is None
    npos = _npos()
    sums = {"l_comp": 8.0, "l_dis": 4.0, "l_open": 2.0, "proto_cos": 0.0, "open_active": 4.0, "queue_fill": 8.0,
            "p_id": 3.0, "p_ood": 1.0}
    row = npos.epoch_row(sums, 8)
    assert row["l_open"] == 0.25 and row["open_active"] == 0.5 and row["p_id"] == 0.75 and row["p_ood"] == 0.25
    assert npos.epoch_row({**sums, "open_active": 0.0}, 8)["p_id"] == 0.0
    for name in ("cider", "npos"):  # the registry's documentation rules (tests/unit/test_objectives.py)
        cls = objective_class(name)
        assert cls.__doc__ and "Usage" in __import__(cls.__module__, fromlist=["x"]).__doc__
        assert all("description" in s and "default" in s for s in cls.params_schema.values())
        assert cls.own_loss in cls.stats
