"""Local-vector primitives (lffood.local) against explicit loops and hand-computed numbers."""

import math

import pytest
import torch
import torch.nn.functional as F

from lffood import local as losses

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


def test_local_norms():
    fmap = torch.zeros(1, 2, 1, 3)
    fmap[0, :, 0, 0] = torch.tensor([3.0, 4.0])
    fmap[0, :, 0, 2] = torch.tensor([-6.0, 8.0])
    torch.testing.assert_close(losses.local_norms(fmap), torch.tensor([[5.0, 0.0, 10.0]]))


def test_multiscale_vectors_hand():
    # C=1, 4x4 map with values 0..15: quadrants, global mean, centre window 1:3 x 1:3
    fmap = torch.arange(16.0).view(1, 1, 4, 4)
    v = losses.multiscale_vectors(fmap)
    assert v.shape == (1, 6, 1)
    quads = [fmap[0, 0, :2, :2].mean(), fmap[0, 0, :2, 2:].mean(), fmap[0, 0, 2:, :2].mean(), fmap[0, 0, 2:, 2:].mean()]
    expected = torch.tensor([*quads, fmap.mean(), fmap[0, 0, 1:3, 1:3].mean()])
    torch.testing.assert_close(v[0, :, 0], expected)


@pytest.mark.parametrize("size,window", [(4, (1, 3)), (7, (2, 5)), (8, (2, 6)), (1, (0, 1)), (2, (0, 1))])
def test_center_window(size, window):
    w = losses.center_window(size)
    assert (w.start, w.stop) == window


def test_background_sums_and_row():
    norms = torch.tensor([[5.0, 0.5, 10.0, 2.0]])
    mask = torch.tensor([[True, True, False, True]])
    sums = losses.background_sums(norms, mask)
    assert sums["locations"] == 4.0 and float(sums["selected"]) == 3.0
    assert float(sums["norm_selected"]) == pytest.approx(7.5) and float(sums["norm_unselected"]) == pytest.approx(10.0)
    row = losses.background_row({k: float(v) for k, v in sums.items()})
    assert row == pytest.approx({"frac_selected": 0.75, "norm_selected": 2.5, "norm_unselected": 10.0})
    none = losses.background_row({"locations": 4.0, "selected": 0.0, "norm_selected": 0.0, "norm_unselected": 8.0})
    assert math.isnan(none["norm_selected"]) and none["norm_unselected"] == 2.0
