"""Backbones. Every model exposes ``forward(x, return_features=True)`` ->
``(logits, pooled_features, feature_map)`` and a linear ``head`` so that LFF can apply the
classifier to every local vector of the last feature map."""

from .resnet import ResNet, build_model, PRESETS  # noqa: F401
