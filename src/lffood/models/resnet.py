"""CIFAR-style ResNet family: 3x3 stride-1 stem, no max-pool, BasicBlock stages.

One class, parameterised by the number of blocks and the width of each stage. The paper's CIFAR
ResNet-34 is ``blocks=[3, 4, 6, 3], widths=[64, 128, 256, 512]`` (layer4 map 512 x 4 x 4 at 32 x 32
input); the embedded benchmark uses a narrow member of the same family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .base import FeatureMapClassifier, init_weights, subsample

PRESETS: dict[str, dict] = {
    "resnet18": {"blocks": [2, 2, 2, 2], "widths": [64, 128, 256, 512]},
    "resnet34": {"blocks": [3, 4, 6, 3], "widths": [64, 128, 256, 512]},
}


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        self.stride = stride
        if stride != 1 or in_planes != planes:
            # the strided 1x1 projection as subsample + stride-1 convolution: the same function and
            # parameters (see base.subsample), and safe in channels-last layout on the CPU
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, 1, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(subsample(x, self.stride)))


class ResNet(FeatureMapClassifier, nn.Module):
    """``feature_map(x)`` -> last map z (B, C, H, W); pooled = GAP(z); logits = head(pooled)."""

    cpu_channels_last = True  # no strided 1x1 convolution (BasicBlock)

    def __init__(self, blocks: Sequence[int], widths: Sequence[int], num_classes: int, in_channels: int = 3):
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ConfigError(f"model: 'blocks' {list(blocks)} and 'widths' {list(widths)} need the same, non-zero length")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, in_planes = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(in_planes, w, stride=(2 if i > 0 and j == 0 else 1)))
                in_planes = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_planes, num_classes)
        self.feature_dim = in_planes
        self.num_classes = num_classes
        init_weights(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def blocks(self) -> list[nn.Module]:
        """The residual blocks in forward order, stem excluded (FeatureNorm's block candidates)."""
        return [blk for stage in self.stages for blk in stage]
