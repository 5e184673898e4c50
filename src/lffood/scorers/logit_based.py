"""MSP, Energy and Energy with ReAct (the LFF paper's default scorer)."""

from __future__ import annotations

import numpy as np

from .base import FeatureSet, Head, Scorer, register


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))).squeeze(axis)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy: T * logsumexp(logits / T) (higher = more ID)."""
    t = float(temperature)
    return t * logsumexp(np.asarray(logits, dtype=np.float64) / t)


def msp_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Maximum of softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    return np.exp(z.max(1) - logsumexp(z))


def clip_threshold(train_features: np.ndarray, percentile: float | None, threshold: float | None) -> float:
    """ReAct's clipping level: a fixed ``threshold`` if given, else the ``percentile``-th percentile of
    every entry of the ID training features (the TagFog/FodFoM reading of ReAct's rule)."""
    if threshold is not None:
        return float(threshold)
    if percentile is None:
        return float("inf")
    return float(np.percentile(np.asarray(train_features, dtype=np.float64), percentile))


@register("msp", "MSP")
class MSP(Scorer):
    """Maximum softmax probability (Hendrycks & Gimpel, 2017)."""

    defaults = {"temperature": 1.0}

    def score(self, data: FeatureSet) -> np.ndarray:
        return msp_score(data.logits, self.params["temperature"])


@register("energy", "Energy")
class Energy(Scorer):
    """Energy score (Liu et al., 2020), eq. 8 of the LFF paper."""

    defaults = {"temperature": 1.0}

    def score(self, data: FeatureSet) -> np.ndarray:
        return energy_score(data.logits, self.params["temperature"])


@register("react", "ReAct")
class ReActEnergy(Scorer):
    """Energy after clipping penultimate activations at the ``percentile``-th percentile of ID
    training activations (Sun et al., 2021); the LFF paper's default scorer. A fixed ``threshold``
    overrides the percentile (the ImageNet recipe uses 1.0)."""

    defaults = {"percentile": 90.0, "threshold": None, "temperature": 1.0}
    needs_fit = True
    fit_keys = ("percentile", "threshold")
    percentile_keys = ("percentile",)

    def compute_stats(self, train: FeatureSet, head: Head) -> dict:
        return {"threshold": clip_threshold(train.features, self.params["percentile"], self.params["threshold"])}

    @property
    def threshold(self) -> float:
        return float(self.stats["threshold"])

    def score(self, data: FeatureSet) -> np.ndarray:
        clipped = np.minimum(np.asarray(data.features, dtype=np.float64), self.threshold)
        return energy_score(self.head(clipped), self.params["temperature"])
