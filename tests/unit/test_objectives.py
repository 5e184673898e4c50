"""Training objectives (lffood.objectives) against hand-computed numbers and direct formulas:
LFF (eqs. 4-7), LogitNorm, SSOD's balanced OOD-head loss, ALPA's similarity and supervised
contrastive loss; degenerate batches; gradients flowing only where they should; the registry."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lffood.fields import registered_fields
from lffood.local import local_norms
from lffood.objectives import Forward, build_objective, objective_class, registered_objectives
from lffood.objectives.alpa import alpa_similarity, supcon_loss
from lffood.objectives.lff import background_mask, lff_loss
from lffood.objectives.logitnorm import logitnorm_loss
from lffood.objectives.ssod import balanced_ood_loss, sample_locations

torch.set_num_threads(1)


def fwd(logits, fmap, w, b, views=1):
    return Forward(logits, fmap.mean(dim=(2, 3)), fmap, w, b, views)


# ----------------------------------------------------------------------------- LFF
def test_background_mask_is_strict():
    p = torch.tensor([[0.05, 0.1, 0.1000001, 0.5]])
    assert background_mask(p, 0.1).tolist() == [[True, False, False, False]]


def test_lff_loss_empty_selection_is_zero_and_backpropagates_zeros():
    fmap = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(1), requires_grad=True)
    norms = local_norms(fmap)
    loss = lff_loss(norms, torch.zeros_like(norms, dtype=torch.bool), 1.0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(fmap.grad, torch.zeros_like(fmap))


def test_lff_loss_all_selected_hand():
    norms = torch.tensor([[3.0, 4.0], [6.0, 8.0], [0.0, 2.0]]).norm(dim=1)  # 5, 10, 2
    expected = ((5 - 1.0) + (10 - 1.0) + (2 - 1.0)) / 3
    assert lff_loss(norms, torch.ones(3, dtype=torch.bool), 1.0).item() == pytest.approx(expected)


def test_lff_loss_margin_and_partial_selection():
    norms = torch.tensor([[5.0, 0.5, 10.0, 2.0]])
    mask = torch.tensor([[True, True, False, True]])
    assert lff_loss(norms, mask, 3.0).item() == pytest.approx(2 / 3)  # relu(5-3)=2 over 3 selected
    assert lff_loss(norms, mask, 20.0).item() == 0.0


def _toy():
    """B=1, C=2, 2x2 map; head 5*I; target 0.

    loc0 (5, 0):   p0 ~ 1          -> unselected, norm 5
    loc1 (0, 3):   p0 = 1/(1+e^15) -> selected, norm 3 > mu = 1
    loc2 (0, 0.5): p0 = 0.076      -> selected, norm 0.5 < mu
    loc3 (0.4, 0.4): p0 = 0.5      -> unselected
    """
    fmap = torch.zeros(1, 2, 2, 2)
    for loc, v in enumerate([(5.0, 0.0), (0.0, 3.0), (0.0, 0.5), (0.4, 0.4)]):
        fmap[0, :, loc // 2, loc % 2] = torch.tensor(v)
    return fmap.requires_grad_(True), 5 * torch.eye(2), torch.zeros(2), torch.tensor([0])


def lff(delta=0.1, mu=1.0, lam=1.0):
    return build_objective("lff", {"delta": delta, "mu": mu, "lambda": lam}, feature_dim=2, num_classes=2)


def test_lff_lambda_zero_is_plain_ce_with_stats():
    fmap, w, b, y = _toy()
    logits = torch.tensor([[2.0, -1.0]], requires_grad=True)
    total, sums = lff(lam=0.0).loss(fwd(logits, fmap, w, b), y)
    assert total.item() == pytest.approx(F.cross_entropy(logits, y).item())
    assert sums["locations"] == 4 and float(sums["selected"]) == 2
    assert float(sums["norm_selected"]) == pytest.approx(3.0 + 0.5)
    assert float(sums["norm_unselected"]) == pytest.approx(5.0 + math.sqrt(0.32), rel=1e-6)
    assert float(sums["lff"]) == pytest.approx(((3 - 1) + 0) / 2)  # batch of 1
    total.backward()
    assert fmap.grad is None or torch.count_nonzero(fmap.grad) == 0


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_lff_total_is_ce_plus_lambda_lff(lam):
    fmap, w, b, y = _toy()
    logits = torch.tensor([[0.3, 0.7]])
    total, sums = lff(lam=lam).loss(fwd(logits, fmap, w, b), y)
    assert float(sums["lff"]) == pytest.approx(1.0)
    assert total.item() == pytest.approx(F.cross_entropy(logits, y).item() + lam * 1.0)


def test_lff_gradient_only_at_selected_locations_above_margin():
    fmap, w, b, y = _toy()
    total, _ = lff(lam=1.0).loss(fwd(torch.zeros(1, 2), fmap, w, b), y)
    total.backward()
    grad = fmap.grad[0].flatten(1).T  # (L, C)
    expected = torch.zeros(4, 2)
    expected[1] = torch.tensor([0.0, 1.0]) / 2  # d/dz (||z|| - mu) / n_selected at loc1 only
    torch.testing.assert_close(grad, expected)


def test_lff_selection_depends_on_delta():
    fmap, w, b, y = _toy()
    _, sums = lff(delta=0.05).loss(fwd(torch.zeros(1, 2), fmap, w, b), y)
    assert float(sums["selected"]) == 1  # loc2 (p0 = 0.076) is no longer below delta
    _, sums = lff(delta=0.6).loss(fwd(torch.zeros(1, 2), fmap, w, b), y)
    assert float(sums["selected"]) == 3  # loc3 (p0 = 0.5) joins


def test_lff_epoch_row_pools_sums():
    row = lff().epoch_row({"lff": 3.0, "locations": 40.0, "selected": 10.0, "norm_selected": 5.0,
                           "norm_unselected": 60.0}, 6)
    assert row == pytest.approx({"lff": 0.5, "frac_selected": 0.25, "norm_selected": 0.5, "norm_unselected": 2.0})


# ----------------------------------------------------------------------------- LogitNorm
def test_logitnorm_hand():
    logits = torch.tensor([[3.0, 4.0]])  # norm 5
    tau = 0.5
    # normalised logits / tau = (0.6, 0.8) / 0.5 = (1.2, 1.6); CE(target 1) = log(1 + e^(1.2 - 1.6))
    expected = math.log(1 + math.exp(-0.4))
    assert logitnorm_loss(logits, torch.tensor([1]), tau).item() == pytest.approx(expected, rel=1e-6)


def test_logitnorm_is_scale_invariant_and_logs_norms():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0])
    a, b = logitnorm_loss(logits, y, 0.04), logitnorm_loss(10 * logits, y, 0.04)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    obj = build_objective("logitnorm", {"tau": 0.04}, feature_dim=2, num_classes=4)
    fmap = torch.zeros(5, 2, 1, 1)
    _, sums = obj.loss(fwd(logits, fmap, torch.eye(4, 2), torch.zeros(4)), y)
    assert float(sums["logit_norm"]) == pytest.approx(float(logits.norm(dim=1).sum()), rel=1e-6)


# ----------------------------------------------------------------------------- SSOD
def test_ssod_sampling_rule():
    p = torch.tensor([[0.99, 0.95, 0.5, 0.05, 0.01]])
    idm, oodm = sample_locations(p, 0.95)
    assert idm.tolist() == [[True, True, False, False, False]]
    assert oodm.tolist() == [[False, False, False, True, True]]  # 1 - 0.95 = 0.05 is included


def test_ssod_balanced_loss_hand():
    # head logits per location (ID output is index 1): loc0 (0, ln 3) -> P_ID = 3/4; loc1 (ln 3, 0) -> P_ID = 1/4
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(3.0), 0.0], [0.0, 0.0]]])
    idm = torch.tensor([[True, False, False]])
    oodm = torch.tensor([[False, True, True]])
    expected = -math.log(0.75) + (-math.log(0.75) - math.log(0.5)) / 2
    assert balanced_ood_loss(logits, idm, oodm).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("empty", ["id", "ood", "both"])
def test_ssod_empty_sets_contribute_zero(empty):
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(3.0), 0.0]]], requires_grad=True)
    idm = torch.tensor([[True, False]]) if empty not in ("id", "both") else torch.zeros(1, 2, dtype=torch.bool)
    oodm = torch.tensor([[False, True]]) if empty not in ("ood", "both") else torch.zeros(1, 2, dtype=torch.bool)
    loss = balanced_ood_loss(logits, idm, oodm)
    expected = (-math.log(0.75) if idm.any() else 0.0) + (-math.log(0.75) if oodm.any() else 0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def _ssod_batch():
    fmap, w, b, y = _toy()  # loc0 p0 ~ 1 (ID at gamma 0.95), loc1 p0 ~ 0 (OOD), loc2 0.076 (ignored), loc3 0.5
    return fmap, w, b, y


def test_ssod_objective_stats_and_gradients():
    fmap, w, b, y = _ssod_batch()
    obj = build_objective("ssod", {"gamma": 0.95, "alpha": 1.0}, feature_dim=2, num_classes=2)
    logits = torch.zeros(1, 2, requires_grad=True)
    total, sums = obj.loss(fwd(logits, fmap, w, b), y)
    assert float(sums["id_locations"]) == 1 and float(sums["ood_locations"]) == 1 and sums["sampled_from"] == 4
    total.backward()
    grad = fmap.grad[0].flatten(1).T
    # L_OOD reaches the backbone only at the sampled locations (0: ID, 1: OOD); CE's logits are a
    # separate leaf here, so nothing else flows into the map
    assert (grad.abs().sum(1) > 0).tolist() == [True, True, False, False]
    assert obj.modules["ood_head"].weight.grad is not None
    row = obj.epoch_row({"l_ood": float(sums["l_ood"]), "id_locations": 1.0, "ood_locations": 1.0,
                         "sampled_from": 4.0}, 1)
    assert row["frac_id"] == 0.25 and obj.collapse(row) is None


def test_ssod_detach_features_trains_the_head_only():
    fmap, w, b, y = _ssod_batch()
    obj = build_objective("ssod", {"detach_features": True}, feature_dim=2, num_classes=2)
    total, _ = obj.loss(fwd(torch.zeros(1, 2), fmap, w, b), y)
    total.backward()
    assert fmap.grad is None or torch.count_nonzero(fmap.grad) == 0
    assert torch.count_nonzero(obj.modules["ood_head"].weight.grad) > 0


def test_ssod_collapse_names_gamma():
    obj = build_objective("ssod", {"gamma": 0.99}, feature_dim=2, num_classes=2)
    msg = obj.collapse({"l_ood": 0.1, "frac_id": 0.0, "frac_ood": 0.3})
    assert "ssod.gamma" in msg and "0.99" in msg and "ID" in msg
    assert obj.collapse({"l_ood": 0.1, "frac_id": 0.2, "frac_ood": 0.0}) is not None


def test_ssod_extract_outputs():
    obj = build_objective("ssod", {}, feature_dim=2, num_classes=2)
    with torch.no_grad():
        obj.modules["ood_head"].weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        obj.modules["ood_head"].bias.zero_()
    fmap = torch.zeros(1, 2, 1, 2)
    fmap[0, 0, 0, 0] = math.log(3.0)  # loc0: ID logit ln 3 -> P_ID 3/4; loc1: 1/2
    batch = SimpleNamespace(objective=obj, fmap=fmap, pooled=fmap.mean(dim=(2, 3)))
    out = {name: registered_fields()[name].compute(batch, None) for name in obj.provides}  # SSOD's fields
    assert set(out) == {"ood_head_global", "ood_head_local"}
    assert out["ood_head_local"].item() == pytest.approx((0.75 + 0.5) / 2)
    assert out["ood_head_global"].item() == pytest.approx(1 / (1 + math.exp(-math.log(3.0) / 2)))


# ----------------------------------------------------------------------------- ALPA
def _direct_alpa(q, k, v):
    n, _, d = q.shape
    s = torch.zeros(n, n, dtype=q.dtype)
    for a in range(n):
        for b in range(n):
            a_ab = torch.softmax(q[b] @ k[a].T / math.sqrt(d), -1) @ v[a]  # a aligned to b's locations
            a_ba = torch.softmax(q[a] @ k[b].T / math.sqrt(d), -1) @ v[b]
            s[a, b] = F.cosine_similarity(v[a], a_ba, dim=-1).mean() + F.cosine_similarity(v[b], a_ab, dim=-1).mean()
    return s


def test_alpa_similarity_against_direct_loops():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 3, 2, generator=g, dtype=torch.float64) for _ in range(3))
    s = alpa_similarity(q, k, v)
    torch.testing.assert_close(s, _direct_alpa(q, k, v))
    torch.testing.assert_close(s, s.T)
    assert (s.abs() <= 2 + 1e-9).all()


def test_alpa_similarity_tiny_map_hand():
    # one location per view (L = 1): attention is trivially 1, A_ab = V_a, s(a, b) = 2 cos(V_a, V_b)
    v = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]], [[-1.0, 0.0]]])
    q = torch.randn(3, 1, 2)
    s = alpa_similarity(q, q, v)
    expected = 2 * torch.tensor([[1.0, 2 ** -0.5, -1.0], [2 ** -0.5, 1.0, -(2 ** -0.5)], [-1.0, -(2 ** -0.5), 1.0]])
    torch.testing.assert_close(s, expected)


def test_supcon_loss_hand():
    # 3 samples, labels (0, 0, 1); logits symmetric: l01 = 2, l02 = 0, l12 = 1
    logits = torch.tensor([[9.0, 2.0, 0.0], [2.0, 9.0, 1.0], [0.0, 1.0, 9.0]])  # diagonal ignored
    labels = torch.tensor([0, 0, 1])
    a0 = -(2 - math.log(math.exp(2) + math.exp(0)))
    a1 = -(2 - math.log(math.exp(2) + math.exp(1)))
    # anchor 2 has no positive: contributes nothing
    assert supcon_loss(logits, labels).item() == pytest.approx((a0 + a1) / 2, rel=1e-6)


def test_supcon_loss_class_appearing_once_with_two_views():
    # two views per image, class 1 appears once: its two views are positives of each other
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 1, 0, 0, 1])
    loss = supcon_loss(logits, labels)
    assert torch.isfinite(loss)
    lp = logits.masked_fill(torch.eye(6, dtype=torch.bool), float("-inf"))
    lp = lp - torch.logsumexp(lp, dim=1, keepdim=True)
    # anchor 2's only positive is 5 (its other view)
    per = []
    for i in range(6):
        pos = [j for j in range(6) if j != i and labels[j] == labels[i]]
        per.append(-sum(lp[i, j] for j in pos) / len(pos))
    assert loss.item() == pytest.approx(float(torch.stack(per).mean()), rel=1e-5)


def test_alpa_objective_trains_projectors_and_backbone():
    torch.manual_seed(0)
    obj = build_objective("alpa", {"dim": 4}, feature_dim=3, num_classes=2)
    assert obj.two_views and not obj.accuracy_guard  # MODE-F: the head is not trained
    fmap = torch.randn(4, 3, 2, 2, requires_grad=True)  # 2 images x 2 views
    y = torch.tensor([0, 1, 0, 1])
    logits = torch.zeros(4, 2, requires_grad=True)
    total, sums = obj.loss(fwd(logits, fmap, torch.eye(2, 3), torch.zeros(2), views=2), y)
    total.backward()
    assert torch.count_nonzero(fmap.grad) > 0
    assert all(p.grad is not None for p in obj.modules.parameters())
    assert logits.grad is None or torch.count_nonzero(logits.grad) == 0  # ce_weight 0: no CE
    assert set(sums) == set(obj.stats)
    with_ce = build_objective("alpa", {"dim": 4, "ce_weight": 1.0}, feature_dim=3, num_classes=2)
    assert with_ce.accuracy_guard


def test_alpa_collapse_check():
    obj = build_objective("alpa", {}, feature_dim=3, num_classes=2)
    assert "collapsed" in obj.collapse({"alpa": 1.0, "sim_pos": 1.2, "sim_neg": 1.2})
    assert obj.collapse({"alpa": 1.0, "sim_pos": 1.5, "sim_neg": 0.2}) is None


# ----------------------------------------------------------------------------- registry
def test_registry_has_every_objective_with_documented_defaults():
    assert set(registered_objectives()) >= {"ce", "lff", "logitnorm", "ssod", "alpa"}
    for name, cls in registered_objectives().items():
        assert cls.__doc__ and "Usage" in (__import__(cls.__module__, fromlist=["x"]).__doc__ or "")
        for key, spec in cls.params_schema.items():
            assert "description" in spec and "default" in spec, (name, key)
    assert objective_class("lff").defaults() == {"delta": 0.1, "mu": 1.0, "lambda": 1.0}


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown parameter"):
        build_objective("lff", {"delta": 0.1, "margin": 2}, feature_dim=2, num_classes=2)


# ----------------------------------------------------------------------------- freshly initialised modules
@pytest.mark.parametrize("name,modules", [("ssod", ["ood_head"]), ("alpa", ["query", "key", "value"])])
def test_fresh_modules_and_their_learning_rate(name, modules):
    """SSOD's OOD head and ALPA's projectors are the objective's freshly initialised parameters; their rate is
    the parameter new_module_lr (null by default: the stage's rate); the objectives without modules have none."""
    cls = objective_class(name)
    spec = cls.params_schema["new_module_lr"]
    assert spec["default"] is None and spec["type"] == ["number", "null"] and spec["exclusiveMinimum"] == 0
    obj = build_objective(name, {}, feature_dim=4, num_classes=2)
    assert obj.new_module_lr() is None and list(obj.modules) == modules
    assert [id(p) for p in obj.new_parameters()] == [id(p) for p in obj.modules.parameters()]
    assert build_objective(name, {"new_module_lr": 0.1}, feature_dim=4, num_classes=2).new_module_lr() == 0.1
    assert obj.own_loss in obj.stats
    for other in ("ce", "lff", "logitnorm"):
        o = build_objective(other, {}, feature_dim=4, num_classes=2)
        assert o.new_parameters() == [] and o.new_module_lr() is None and "new_module_lr" not in o.params_schema


def test_not_learned_names_the_key_and_the_rate():
    obj = build_objective("ssod", {"new_module_lr": 0.001}, feature_dim=4, num_classes=2)
    msg = obj.not_learned(0.002, 0.01, 5e-5)
    assert "ssod.new_module_lr = 0.001" in msg and "ood_head" in msg and "0.2%" in msg and "raise ssod.new_module_lr" in msg
    assert obj.not_learned(0.5, 0.01, 5e-5) is None
    msg = build_objective("alpa", {}, feature_dim=4, num_classes=2).not_learned(0.0, 0.01, 5e-5)
    assert "the stage's lr 5e-05 (alpa.new_module_lr is null)" in msg and "query, key, value" in msg
