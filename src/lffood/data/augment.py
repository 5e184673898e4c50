"""Batched, vectorised image transforms on tensors (no per-sample Python loops).

Images arrive as ``uint8`` tensors ``(B, H, W, 3)`` and leave as normalised ``float32`` tensors
``(B, 3, H, W)``. Randomness comes from an explicit ``torch.Generator`` so that runs are repeatable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def random_crop(x: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to the original size at a random offset per sample."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=gen.device).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=gen.device).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device)[None, :])  # (B, H)
    cols = (ox[:, None] + torch.arange(w, device=x.device)[None, :])  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_hflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=gen, device=gen.device) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def color_jitter(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation jitter, each factor uniform in [1-s, 1+s] per sample."""
    if strength <= 0:
        return x
    b = x.shape[0]

    def factors():
        f = 1.0 + (torch.rand(b, generator=gen, device=gen.device) * 2 - 1) * strength
        return f.to(x.device)[:, None, None, None]

    x = x * factors()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factors() + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * factors() + gray
    return x.clamp_(0.0, 1.0)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device)[None, :, None, None]
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x - m) / s


def apply_train_augment(x: torch.Tensor, aug: Mapping, gen: torch.Generator) -> torch.Tensor:
    """The training pipeline: crop (padding), horizontal flip, colour jitter, as configured."""
    x = random_crop(x, int(aug.get("crop_padding", 0)), gen)
    if aug.get("hflip", False):
        x = random_hflip(x, gen)
    return color_jitter(x, float(aug.get("color_jitter", 0.0)), gen)
