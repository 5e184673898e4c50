from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

_REGISTRY: dict[str, type["Scorer"]] = {}


@dataclass
class FeatureSet:
    """What a scorer sees of one split: logits (N, K) and penultimate features (N, C)."""

    logits: np.ndarray
    features: np.ndarray
    labels: np.ndarray | None = None


@dataclass
class Head:
    """The linear classifier ``logits = features @ weight.T + bias``."""

    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T.astype(np.float64) + self.bias.astype(np.float64)


class Scorer:
    name: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}
    needs_fit: ClassVar[bool] = False

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"scorer '{self.name}': unknown parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}
        self.head: Head | None = None

    def fit(self, train: FeatureSet, head: Head) -> "Scorer":
        self.head = head
        return self

    def score(self, data: FeatureSet) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def register(name: str):
    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"scorer '{name}' registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_scorers() -> dict[str, type[Scorer]]:
    return dict(_REGISTRY)


def build_scorer(name: str, params: Mapping | None = None) -> Scorer:
    if name not in _REGISTRY:
        raise KeyError(f"unknown scorer '{name}'; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**dict(params or {}))
