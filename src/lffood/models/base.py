"""What every backbone shares: the forward contract LFF, extraction and the scorers rely on, and
the usual initialisation."""

from __future__ import annotations

import torch
from torch import nn


class FeatureMapClassifier:
    """Mixin: a model with ``feature_map(x)`` (the last map z, B x C x H x W) and a linear ``head``.
    ``forward(x, return_features=True)`` -> ``(logits, pooled, z)`` with pooled = GAP(z) and
    logits = head(pooled); LFF applies the same head to every local vector of z."""

    #: the model may train in channels-last layout on the CPU (measured 1.2x faster for the embedded
    #: model). Only models whose shortcut projections are written as :func:`subsample` + a stride-1
    #: 1x1 convolution: torch 2.12's CPU channels-last backward of a strided 1x1 convolution with few
    #: channels corrupts memory (an abort at best). CUDA trains in channels-last whatever this says.
    cpu_channels_last = False

    def forward(self, x: torch.Tensor, return_features: bool = False):
        z = self.feature_map(x)
        pooled = global_average_pool(z)
        logits = self.head(pooled)
        if return_features:
            return logits, pooled, z
        return logits


def _layout(x: torch.Tensor) -> torch.memory_format:
    return (torch.channels_last if x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)


class _Subsample(torch.autograd.Function):
    """``x[:, :, ::s, ::s]`` whose gradient keeps ``x``'s memory layout. Autograd's own slice backward
    returns a contiguous (NCHW) gradient even for a channels-last ``x``; added to the main branch's
    channels-last gradient it sends the residual sum and the ReLU backward into PyTorch's slow
    mixed-layout loops (about 10x slower per element on the CPU; 8% of the embedded model's
    training step, `lffood bench`)."""

    @staticmethod
    def forward(ctx, x, stride):
        ctx.shape, ctx.stride, ctx.layout = x.shape, stride, _layout(x)
        return x[:, :, ::stride, ::stride]

    @staticmethod
    def backward(ctx, grad):
        s = ctx.stride
        out = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.layout).zero_()
        out[:, :, ::s, ::s] = grad
        return out, None


class _GlobalAveragePool(torch.autograd.Function):
    """``z.mean(dim=(2, 3))`` whose gradient keeps ``z``'s memory layout (autograd's own is an NCHW
    tensor, which meets the channels-last ReLU of the last block in the slow mixed-layout loop)."""

    @staticmethod
    def forward(ctx, z):
        ctx.shape, ctx.layout = z.shape, _layout(z)
        return z.mean(dim=(2, 3))

    @staticmethod
    def backward(ctx, grad):
        h, w = ctx.shape[2:]
        return (grad / (h * w))[:, :, None, None].expand(ctx.shape).contiguous(memory_format=ctx.layout)


def subsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Every ``stride``-th row and column: a 1x1 convolution with stride s equals a stride-1 one on
    ``subsample(x, s)`` (same output size, ceil(H / s)), which avoids the strided 1x1 kernel. The
    gradient keeps ``x``'s memory layout (:class:`_Subsample`)."""
    return x if stride == 1 else _Subsample.apply(x, stride)


def global_average_pool(z: torch.Tensor) -> torch.Tensor:
    """GAP over the spatial dimensions, (B, C, H, W) -> (B, C); the gradient keeps ``z``'s layout."""
    return _GlobalAveragePool.apply(z)


def init_weights(model: nn.Module, zero_linear_bias: bool = False) -> None:
    """Kaiming-normal convolutions (fan-out), unit/zero batch-norm affine parameters, and optionally
    zero linear biases (the WRN reference does; the CIFAR ResNet keeps PyTorch's default)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif zero_linear_bias and isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
