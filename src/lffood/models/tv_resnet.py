"""torchvision's ResNet-50 (ImageNet stem: 7x7 stride-2 conv + max-pool), as used for ImageNet-100.

A subclass, not a wrapper, so that its ``state_dict`` keys are exactly torchvision's: a ResNet-50
checkpoint trained elsewhere (torchvision, timm's torchvision-compatible weights, another OOD
repository) loads as a CE starting point (config key ``pretrain.checkpoint``). The last map is
layer4, 2048 x 7 x 7 at 224 x 224 input (49 local vectors for LFF); ``head`` is torchvision's ``fc``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from .base import FeatureMapClassifier


@lru_cache(maxsize=1)
def _resnet50_class():
    from torchvision.models.resnet import Bottleneck, ResNet

    class TorchvisionResNet50(FeatureMapClassifier, ResNet):  # the mixin's forward wins
        def __init__(self, num_classes: int):
            super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)
            self.feature_dim = self.fc.in_features
            self.num_classes = num_classes

        @property
        def head(self) -> nn.Linear:
            return self.fc

        def blocks(self) -> list[nn.Module]:
            """The 16 bottleneck blocks of layer1-layer4 in order."""
            return [b for layer in (self.layer1, self.layer2, self.layer3, self.layer4) for b in layer]

        def feature_map(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    return TorchvisionResNet50


def resnet50(num_classes: int) -> nn.Module:
    """torchvision ResNet-50 with a ``num_classes``-way head (torchvision imported lazily)."""
    return _resnet50_class()(num_classes)
