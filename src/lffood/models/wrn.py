"""Wide residual network (Zagoruyko & Komodakis 2016), pre-activation, as used on CIFAR by the
OOD literature: WRN-28-10 has 3 groups of (28 - 4) / 6 = 4 blocks of widths 160, 320, 640, and its
last map relu(bn(group3)) is 640 x 8 x 8 at 32 x 32 input (64 local vectors for LFF).
Dropout is 0, as in the LFF paper's setting."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .base import FeatureMapClassifier, init_weights, subsample


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None
        self.stride = stride
        if stride != 1 or in_planes != planes:  # strided 1x1 as subsample + stride 1 (base.subsample)
            self.shortcut = nn.Conv2d(in_planes, planes, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        # when the shape changes, the projection sees the pre-activated input (original WRN code)
        shortcut = x if self.shortcut is None else self.shortcut(subsample(o, self.stride))
        out = self.conv1(o)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(FeatureMapClassifier, nn.Module):
    """``feature_map(x)`` -> relu(bn(last group)) (B, 64k, H/4, W/4); pooled = GAP; logits = head(pooled)."""

    cpu_channels_last = True  # no strided 1x1 convolution (PreActBlock)

    def __init__(self, depth: int, widen: int, num_classes: int, dropout: float = 0.0, in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ConfigError(f"model.depth: WRN depth must be 6n + 4 (e.g. 28), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        groups, in_planes = [], widths[0]
        for g, (w, stride) in enumerate(zip(widths[1:], (1, 2, 2))):
            layers = []
            for j in range(n):
                layers.append(PreActBlock(in_planes, w, stride if j == 0 else 1, dropout))
                in_planes = w
            groups.append(nn.Sequential(*layers))
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(in_planes)
        self.head = nn.Linear(in_planes, num_classes)
        self.feature_dim = in_planes
        self.num_classes = num_classes
        init_weights(self, zero_linear_bias=True)

    def blocks(self) -> list[nn.Module]:
        """The residual blocks in order (12 for WRN-28-10), e.g. for FeatureNorm's block selection."""
        return [b for g in self.groups for b in g]

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.groups(self.stem(x))))
