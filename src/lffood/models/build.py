"""The one place that turns a config ``model`` section into a network."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..errors import ConfigError
from .resnet import PRESETS, ResNet
from .wrn import WideResNet

#: Architectures the config key ``model.arch`` accepts.
ARCHS = ("resnet", *PRESETS, "wrn", "wrn28_10", "resnet50")


def build_model(model_cfg: Mapping, num_classes: int) -> nn.Module:
    """``{arch: resnet34}``, ``{arch: resnet, blocks, widths}`` (CIFAR ResNet family),
    ``{arch: wrn28_10}`` or ``{arch: wrn, depth, widen, dropout}`` (pre-activation WRN), or
    ``{arch: resnet50}`` (torchvision ResNet-50)."""
    arch = model_cfg["arch"]
    if arch in PRESETS:
        return ResNet(PRESETS[arch]["blocks"], PRESETS[arch]["widths"], num_classes)
    if arch == "resnet":
        missing = [k for k in ("blocks", "widths") if k not in model_cfg]
        if missing:
            raise ConfigError(f"model: arch 'resnet' needs keys {missing} (e.g. blocks: [1, 1, 1], widths: [16, 32, 64])")
        return ResNet(model_cfg["blocks"], model_cfg["widths"], num_classes)
    if arch == "wrn28_10":
        return WideResNet(28, 10, num_classes, dropout=float(model_cfg.get("dropout", 0.0)))
    if arch == "wrn":
        return WideResNet(int(model_cfg.get("depth", 28)), int(model_cfg.get("widen", 10)), num_classes,
                          dropout=float(model_cfg.get("dropout", 0.0)))
    if arch == "resnet50":
        from .tv_resnet import resnet50

        return resnet50(num_classes)
    raise ConfigError(f"model.arch: unknown architecture '{arch}'. Known: {list(ARCHS)}")
