"""Backbones. Every model exposes ``forward(x, return_features=True)`` ->
``(logits, pooled_features, feature_map)``, a linear ``head`` (so that LFF can apply the classifier
to every local vector of the last feature map), ``feature_dim``, ``num_classes`` and ``blocks()``
(its residual blocks in order)."""

from .build import ARCHS, build_model  # noqa: F401
from .resnet import PRESETS, ResNet  # noqa: F401
from .wrn import WideResNet  # noqa: F401
