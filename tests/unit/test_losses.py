"""The LFF loss (eqs. 4-7) against explicit loops and hand-computed numbers."""

import math

import pytest
import torch
import torch.nn.functional as F

from lffood import losses

torch.set_num_threads(1)


def test_local_logits_equals_linear_per_location():
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(2, 3, 2, 2, generator=g)
    lin = torch.nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(4, 3, generator=g))
        lin.bias.copy_(torch.randn(4, generator=g))
    out = losses.local_logits(fmap, lin.weight, lin.bias)
    assert out.shape == (2, 4, 4)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                expected = lin(fmap[b, :, i, j])
                # location index is row-major over (H, W)
                torch.testing.assert_close(out[b, i * 2 + j], expected)


def test_local_logits_without_bias():
    fmap = torch.arange(12.0).view(1, 3, 2, 2)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    out = losses.local_logits(fmap, w, None)
    # location 0 vector = (0, 4, 8) -> (0, 12); location 3 = (3, 7, 11) -> (3, 18)
    torch.testing.assert_close(out[0, 0], torch.tensor([0.0, 12.0]))
    torch.testing.assert_close(out[0, 3], torch.tensor([3.0, 18.0]))


def test_local_gt_prob_hand_checked():
    # B=1, C=2, H=1, W=2; identity head: local logits are the vectors themselves
    fmap = torch.tensor([[[[0.0, 2.0]], [[math.log(3.0), 0.0]]]])  # loc0 = (0, ln3), loc1 = (2, 0)
    w, b = torch.eye(2), torch.zeros(2)
    p0 = losses.local_gt_prob(fmap, w, b, torch.tensor([0]))
    assert p0.shape == (1, 2)
    assert p0.dtype == torch.float32
    # loc0: softmax(0, ln3) = (1/4, 3/4); loc1: softmax(2, 0)[0] = e^2/(e^2+1)
    torch.testing.assert_close(p0, torch.tensor([[0.25, math.exp(2) / (math.exp(2) + 1)]]))
    p1 = losses.local_gt_prob(fmap, w, b, torch.tensor([1]))
    torch.testing.assert_close(p1, 1 - p0)
    # bias shifts the local logits
    pb = losses.local_gt_prob(fmap, w, torch.tensor([math.log(3.0), 0.0]), torch.tensor([0]))
    torch.testing.assert_close(pb[0, 0], torch.tensor(0.5))


def test_local_gt_prob_per_sample_targets():
    fmap = torch.zeros(2, 2, 1, 1)
    fmap[0, 0] = 5.0
    fmap[1, 0] = 5.0
    p = losses.local_gt_prob(fmap, torch.eye(2), torch.zeros(2), torch.tensor([0, 1]))
    hi = 1 / (1 + math.exp(-5))
    torch.testing.assert_close(p, torch.tensor([[hi], [1 - hi]]))


def test_background_mask_is_strict():
    p = torch.tensor([[0.05, 0.1, 0.1000001, 0.5]])
    assert losses.background_mask(p, 0.1).tolist() == [[True, False, False, False]]


def test_local_norms():
    fmap = torch.zeros(1, 2, 1, 3)
    fmap[0, :, 0, 0] = torch.tensor([3.0, 4.0])
    fmap[0, :, 0, 2] = torch.tensor([-6.0, 8.0])
    torch.testing.assert_close(losses.local_norms(fmap), torch.tensor([[5.0, 0.0, 10.0]]))


def test_lff_loss_empty_selection_is_zero_and_backpropagates_zeros():
    fmap = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(1), requires_grad=True)
    norms = losses.local_norms(fmap)
    mask = torch.zeros_like(norms, dtype=torch.bool)
    loss = losses.lff_loss(norms, mask, 1.0)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert fmap.grad is not None
    assert torch.equal(fmap.grad, torch.zeros_like(fmap))


def test_lff_loss_all_selected_hand():
    z = torch.tensor([[3.0, 4.0], [6.0, 8.0], [0.0, 2.0]])  # norms 5, 10, 2
    norms = z.norm(dim=1)
    mask = torch.ones(3, dtype=torch.bool)
    mu = 1.0
    expected = ((5 - mu) + (10 - mu) + (2 - mu)) / 3
    assert losses.lff_loss(norms, mask, mu).item() == pytest.approx(expected)


def test_lff_loss_margin_and_partial_selection():
    norms = torch.tensor([[5.0, 0.5, 10.0, 2.0]])
    mask = torch.tensor([[True, True, False, True]])
    # mu = 3: relu(5-3)=2, relu(0.5-3)=0, relu(2-3)=0 -> mean over 3 selected = 2/3
    assert losses.lff_loss(norms, mask, 3.0).item() == pytest.approx(2 / 3)
    # all selected norms below mu -> 0
    assert losses.lff_loss(norms, mask, 20.0).item() == 0.0


def _toy():
    """B=1, C=2, 2x2 map; head 5*I; target 0.

    loc0 (5, 0):   p0 ~ 1        -> unselected, norm 5
    loc1 (0, 3):   p0 = 1/(1+e^15) -> selected, norm 3 > mu = 1
    loc2 (0, 0.5): p0 = 1/(1+e^2.5) = 0.076 -> selected, norm 0.5 < mu
    loc3 (0.4, 0.4): p0 = 0.5    -> unselected
    """
    fmap = torch.zeros(1, 2, 2, 2)
    vecs = [(5.0, 0.0), (0.0, 3.0), (0.0, 0.5), (0.4, 0.4)]
    for loc, v in enumerate(vecs):
        fmap[0, :, loc // 2, loc % 2] = torch.tensor(v)
    return fmap.requires_grad_(True), 5 * torch.eye(2), torch.zeros(2), torch.tensor([0])


def test_lff_objective_lambda_zero_is_plain_ce_with_stats():
    fmap, w, b, y = _toy()
    logits = torch.tensor([[2.0, -1.0]], requires_grad=True)
    total, ce, l_lff, st = losses.lff_objective(logits, fmap, w, b, y, delta=0.1, mu=1.0, lam=0.0)
    expected_ce = F.cross_entropy(logits, y)
    assert total.item() == pytest.approx(expected_ce.item())
    assert total.item() == ce.item()
    # stats still measured
    assert st.n_locations == 4
    assert st.n_selected == 2
    assert st.norm_selected_sum == pytest.approx(3.0 + 0.5)
    assert st.norm_unselected_sum == pytest.approx(5.0 + math.sqrt(0.32), rel=1e-6)
    assert l_lff.item() == pytest.approx(((3 - 1) + 0) / 2)
    # lambda = 0: the total has no gradient path to the feature map
    total.backward()
    assert fmap.grad is None or torch.count_nonzero(fmap.grad) == 0


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_lff_objective_total_is_ce_plus_lambda_lff(lam):
    fmap, w, b, y = _toy()
    logits = torch.tensor([[0.3, 0.7]])
    total, ce, l_lff, st = losses.lff_objective(logits, fmap, w, b, y, delta=0.1, mu=1.0, lam=lam)
    assert l_lff.item() == pytest.approx(1.0)
    assert total.item() == pytest.approx(ce.item() + lam * 1.0)
    assert ce.item() == pytest.approx(F.cross_entropy(logits, y).item())


def test_lff_gradient_only_at_selected_locations_above_margin():
    fmap, w, b, y = _toy()
    logits = torch.zeros(1, 2)
    _, _, l_lff, st = losses.lff_objective(logits, fmap, w, b, y, delta=0.1, mu=1.0, lam=1.0)
    l_lff.backward()
    grad = fmap.grad[0].flatten(1).T  # (L, C)
    # only loc1 (selected, norm 3 > mu): d/dz (||z|| - mu) / n_selected = z / ||z|| / 2
    expected = torch.zeros(4, 2)
    expected[1] = torch.tensor([0.0, 1.0]) / 2
    torch.testing.assert_close(grad, expected)
    nonzero = (grad.abs().sum(1) > 0).tolist()
    assert nonzero == [False, True, False, False]


def test_lff_objective_selection_depends_on_delta():
    fmap, w, b, y = _toy()
    _, _, _, st = losses.lff_objective(torch.zeros(1, 2), fmap, w, b, y, delta=0.05, mu=1.0, lam=1.0)
    assert st.n_selected == 1  # loc2 (p0 = 0.076) is no longer below delta
    _, _, _, st = losses.lff_objective(torch.zeros(1, 2), fmap, w, b, y, delta=0.6, mu=1.0, lam=1.0)
    assert st.n_selected == 3  # loc3 (p0 = 0.5) joins
