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
        pooled = z.mean(dim=(2, 3))
        logits = self.head(pooled)
        if return_features:
            return logits, pooled, z
        return logits


def subsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Every ``stride``-th row and column: a 1x1 convolution with stride s equals a stride-1 one on
    ``subsample(x, s)`` (same output size, ceil(H / s)), which avoids the strided 1x1 kernel."""
    return x if stride == 1 else x[:, :, ::stride, ::stride]


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
