"""Batched, vectorised image transforms on tensors (no per-sample Python loops).

Images arrive as ``uint8`` tensors ``(B, H, W, 3)`` and leave as normalised ``float32`` tensors
``(B, 3, H, W)``. Randomness comes from an explicit ``torch.Generator`` so that runs are repeatable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1], contiguous. (The permuted view alone keeps channels-last
    strides, which silently sends CPU convolutions down the channels-last path: torch 2.12's CPU
    backward of a small 1x1 stride-2 convolution in that layout corrupts memory. On CUDA the batch
    is converted to channels-last explicitly where that is faster.)"""
    return images.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


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


def random_resized_crop(x: torch.Tensor, size: int, scale: Sequence[float], ratio: Sequence[float],
                        gen: torch.Generator) -> torch.Tensor:
    """Inception-style crop: per sample, an area fraction in ``scale`` and an aspect ratio
    (log-uniform) in ``ratio``, at a uniform position, resized to ``size`` x ``size`` (bilinear).
    One ``grid_sample`` call for the whole batch. Unlike torchvision's rejection sampling, a box
    that does not fit is clamped to the image (same distribution whenever it fits)."""
    b, _, h, w = x.shape
    dev = gen.device

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen, device=dev)

    area = uniform(float(scale[0]), float(scale[1]))
    # host scalars (0-dim CPU tensors, usable with any device's tensors) rather than float() of them: the
    # same float32 values, and no value read that a sync counter must tell from a GPU one
    log_r = uniform(torch.log(torch.tensor(ratio[0])), torch.log(torch.tensor(ratio[1])))
    r = torch.exp(log_r)
    cw = torch.sqrt(area * r).clamp(max=1.0)  # crop width / image width
    ch = torch.sqrt(area / r).clamp(max=1.0)
    cx = (1 - cw) * torch.rand(b, generator=gen, device=dev) + cw / 2  # crop centre in [0, 1]
    cy = (1 - ch) * torch.rand(b, generator=gen, device=dev) + ch / 2
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = cw, 2 * cx - 1
    theta[:, 1, 1], theta[:, 1, 2] = ch, 2 * cy - 1
    grid = torch.nn.functional.affine_grid(theta.to(x.device, x.dtype), [b, x.shape[1], size, size],
                                           align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def center_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Central ``size`` x ``size`` window (no-op when ``size`` is None or the image is not larger)."""
    if size is None:
        return x
    h, w = x.shape[-2:]
    if h <= size and w <= size:
        return x
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return x[..., top:top + size, left:left + size]


def random_hflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=gen, device=gen.device) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def color_jitter(x: torch.Tensor, strength: float, gen: torch.Generator, p: float = 1.0) -> torch.Tensor:
    """Brightness, contrast and saturation jitter, each factor uniform in [1-s, 1+s] per sample,
    applied to each image with probability ``p`` (SupCon/MODE: 0.8; no random draw when p = 1)."""
    if strength <= 0 or p <= 0:
        return x
    if p < 1:
        keep = (torch.rand(x.shape[0], generator=gen, device=gen.device) >= p).to(x.device)[:, None, None, None]
        return torch.where(keep, x, color_jitter(x, strength, gen))
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


def random_grayscale(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Replace each image by its luma (ITU-R 601, as torchvision) in all channels with probability ``p``."""
    if p <= 0:
        return x
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    flip = (torch.rand(x.shape[0], generator=gen, device=gen.device) < p).to(x.device)[:, None, None, None]
    return torch.where(flip, gray, x)


def normalize(x: torch.Tensor, mean: Sequence[float] | torch.Tensor,
              std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel. In a training step pass tensors already on ``x``'s device and
    dtype (as :class:`lffood.data.loader.TensorImages` keeps them): from a list, each call copies them
    from pageable host memory, which on CUDA makes the host wait for the GPU."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return (x - m) / s


def apply_train_augment(x: torch.Tensor, aug: Mapping, gen: torch.Generator) -> torch.Tensor:
    """The training pipeline: random-resized crop (ImageNet) or padded random crop (CIFAR),
    horizontal flip, colour jitter, random greyscale, as configured."""
    rrc = aug.get("random_resized_crop")
    if rrc:
        x = random_resized_crop(x, int(rrc["size"]), rrc.get("scale", (0.08, 1.0)), rrc.get("ratio", (3 / 4, 4 / 3)), gen)
    else:
        x = random_crop(x, int(aug.get("crop_padding", 0)), gen)
    if aug.get("hflip", False):
        x = random_hflip(x, gen)
    x = color_jitter(x, float(aug.get("color_jitter", 0.0)), gen, float(aug.get("color_jitter_p", 1.0)))
    return random_grayscale(x, float(aug.get("grayscale_p", 0.0)), gen)
