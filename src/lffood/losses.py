"""The LFF loss (paper eqs. 4-7).

For every local vector z_j of the last feature map, the model's own linear head gives local
logits f(z_j) and probabilities p_j(y | x) (eq. 4). Background vectors are those whose
ground-truth probability is below ``delta`` (eq. 5); L_LFF is the mean hinge of their L2 norms
above the margin ``mu`` (eq. 6), zero when none is selected; the total loss is
CE + lambda * L_LFF (eq. 7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def local_logits(fmap: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Apply the linear head to every local vector: (B, C, H, W) -> (B, H*W, K)."""
    z = fmap.flatten(2).transpose(1, 2)  # (B, HW, C)
    return F.linear(z, weight, bias)


def local_gt_prob(fmap: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  targets: torch.Tensor) -> torch.Tensor:
    """p_j(y = y_i | x_i) for every location: (B, H*W), computed in float32."""
    probs = local_logits(fmap.float(), weight.float(), None if bias is None else bias.float()).softmax(-1)
    idx = targets.view(-1, 1, 1).expand(-1, probs.shape[1], 1)
    return probs.gather(-1, idx).squeeze(-1)


def background_mask(gt_prob: torch.Tensor, delta: float) -> torch.Tensor:
    """Eq. 5: a location is background when its ground-truth probability is below ``delta``."""
    return gt_prob < delta


def local_norms(fmap: torch.Tensor) -> torch.Tensor:
    """L2 norm of every local vector: (B, C, H, W) -> (B, H*W), float32."""
    return fmap.float().flatten(2).norm(dim=1)


def lff_loss(norms: torch.Tensor, mask: torch.Tensor, mu: float) -> torch.Tensor:
    """Eq. 6: mean over selected locations of max(||z_j|| - mu, 0); exactly 0 when none is selected."""
    selected = norms[mask]
    if selected.numel() == 0:
        return norms.sum() * 0.0  # keeps the graph (and the dtype/device) without contributing gradient
    return torch.clamp(selected - mu, min=0.0).mean()


@dataclass
class LFFStats:
    """Batch statistics for the per-epoch log (sums, so they can be pooled over batches)."""

    n_locations: int
    n_selected: int
    norm_selected_sum: float
    norm_unselected_sum: float


def lff_objective(logits, fmap, weight, bias, targets, delta: float, mu: float, lam: float):
    """Eq. 7. Returns ``(total, ce, l_lff, stats)``. With ``lam == 0`` this is plain CE (the control),
    and the background statistics are still measured so control and LFF logs are comparable."""
    ce = F.cross_entropy(logits, targets)
    norms = local_norms(fmap)
    with torch.no_grad():
        mask = background_mask(local_gt_prob(fmap, weight, bias, targets), delta)
    l_lff = lff_loss(norms, mask, mu)
    total = ce + lam * l_lff if lam else ce
    with torch.no_grad():
        n_sel = int(mask.sum())
        stats = LFFStats(n_locations=mask.numel(), n_selected=n_sel,
                         norm_selected_sum=float(norms[mask].sum()),
                         norm_unselected_sum=float(norms[~mask].sum()))
    return total, ce, l_lff, stats
