"""What every backbone shares: the forward contract LFF, extraction and the scorers rely on, and
the usual initialisation."""

from __future__ import annotations

import torch
from torch import nn


class FeatureMapClassifier:
    """Mixin: a model with ``feature_map(x)`` (the last map z, B x C x H x W) and a linear ``head``.
    ``forward(x, return_features=True)`` -> ``(logits, pooled, z)`` with pooled = GAP(z) and
    logits = head(pooled); LFF applies the same head to every local vector of z."""

    def forward(self, x: torch.Tensor, return_features: bool = False):
        z = self.feature_map(x)
        pooled = z.mean(dim=(2, 3))
        logits = self.head(pooled)
        if return_features:
            return logits, pooled, z
        return logits


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
