"""What objectives, extraction and scorers compute from the last feature map's local vectors.

The last map z of a backbone is (B, C, H, W); its L = H * W local vectors z_j each live in the
same space as the pooled feature GAP(z), so the model's own linear head applies to each of them
(LFF eq. 4, SSOD's sampling rule). Everything here is a batched tensor operation: no Python loops
over samples or locations, and no host synchronisation. torch is imported on first use
(``lffood.lazy``): the objective registry imports this module at workflow parse time.
"""

from __future__ import annotations

from .lazy import F, torch


def local_vectors(fmap: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C); locations in row-major (H, W) order."""
    return fmap.flatten(2).transpose(1, 2)


def local_logits(fmap: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Apply the linear head to every local vector: (B, C, H, W) -> (B, H*W, K)."""
    return F.linear(local_vectors(fmap), weight, bias)


def local_gt_prob(fmap: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  targets: torch.Tensor) -> torch.Tensor:
    """p_j(y = y_i | x_i) for every location: (B, H*W), computed in float32 (LFF eq. 4)."""
    probs = local_logits(fmap.float(), weight.float(), None if bias is None else bias.float()).softmax(-1)
    idx = targets.view(-1, 1, 1).expand(-1, probs.shape[1], 1)
    return probs.gather(-1, idx).squeeze(-1)


def local_norms(fmap: torch.Tensor) -> torch.Tensor:
    """L2 norm of every local vector: (B, C, H, W) -> (B, H*W), float32."""
    return fmap.float().flatten(2).norm(dim=1)


def background_sums(norms: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sums for the per-epoch log of background selection: locations (a host number: the shape is
    known there), selected locations and the norms of selected and unselected vectors (0-d device
    tensors, pooled over batches and read once per epoch)."""
    m = mask.to(norms.dtype)
    return {"locations": float(mask.numel()), "selected": m.sum(),
            "norm_selected": (norms * m).sum(), "norm_unselected": (norms * (1 - m)).sum()}


def background_row(sums) -> dict[str, float]:
    """The per-epoch log fields from :func:`background_sums` pooled over an epoch."""
    loc, sel = sums["locations"], sums["selected"]
    return {"frac_selected": sel / max(loc, 1.0),
            "norm_selected": sums["norm_selected"] / sel if sel else float("nan"),
            "norm_unselected": sums["norm_unselected"] / (loc - sel) if loc > sel else float("nan")}


def center_window(size: int) -> slice:
    """The central window of a side of ``size`` locations used by MODE's centre vector: half the
    side (at least one), centred; 4 -> 1:3 (the reference's CIFAR window), 7 -> 2:5, 8 -> 2:6."""
    w = max(size // 2, 1)
    start = (size - w) // 2
    return slice(start, start + w)


def multiscale_vectors(fmap: torch.Tensor) -> torch.Tensor:
    """MODE's six region vectors per image (B, 6, C): the means of the 4 quadrants (adaptive
    average pooling to 2 x 2, row-major), the global mean and the mean of the central window."""
    quads = F.adaptive_avg_pool2d(fmap.float(), 2).flatten(2).transpose(1, 2)  # (B, 4, C)
    glob = fmap.float().mean(dim=(2, 3))[:, None]
    h, w = fmap.shape[-2:]
    centre = fmap[:, :, center_window(h), center_window(w)].float().mean(dim=(2, 3))[:, None]
    return torch.cat([quads, glob, centre], dim=1)
