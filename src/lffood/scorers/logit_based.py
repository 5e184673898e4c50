"""MSP, Energy and Energy with ReAct (the LFF paper's default scorer)."""

from __future__ import annotations

import numpy as np

from ..checks import Param
from .base import FeatureSet, Head, Scorer, register

#: Softmax / energy temperature T: at 0 every score is NaN (logits / 0), and tiny values overflow
#: logits / T; the references use 1 (MSP, energy) and ODIN's grid 1..1000.
TEMPERATURE = Param("float", 1e-3, 1e5, why="T = 0 makes every score NaN and tiny T overflows logits / T; "
                                          "references: 1 for MSP and energy, 1..1000 for ODIN")
#: ReAct's clipping percentile of the ID training activations: at 0 every activation is clipped to the
#: smallest (0 after the ReLU), so every score is the same; null = no percentile (no clipping unless
#: a fixed threshold is set).
CLIP_PERCENTILE = Param("float", 0, 100, min_open=True, null=True,
                        why="at 0 every activation is clipped to the smallest one and every score ties")
#: A fixed clipping level: the features are non-negative (ReLU), so at or below 0 every score ties.
CLIP_THRESHOLD = Param("float", 0, None, min_open=True, null=True,
                       why="the features are non-negative: a level at or below 0 makes every score the same")


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


@register("msp", "MSP", order=10, in_paper=True)
class MSP(Scorer):
    """Maximum softmax probability (Hendrycks & Gimpel, 2017)."""

    defaults = {"temperature": 1.0}
    params_spec = {"temperature": TEMPERATURE}

    def score(self, data: FeatureSet) -> np.ndarray:
        return msp_score(data.logits, self.params["temperature"])


@register("energy", "Energy", order=40, in_paper=True)
class Energy(Scorer):
    """Energy score (Liu et al., 2020), eq. 8 of the LFF paper."""

    defaults = {"temperature": 1.0}
    params_spec = {"temperature": TEMPERATURE}

    def score(self, data: FeatureSet) -> np.ndarray:
        return energy_score(data.logits, self.params["temperature"])


@register("react", "ReAct", order=80, in_paper=True)
class ReActEnergy(Scorer):
    """Energy after clipping penultimate activations at the ``percentile``-th percentile of ID
    training activations (Sun et al., 2021); the LFF paper's default scorer. A fixed ``threshold``
    overrides the percentile (the ImageNet recipe uses 1.0)."""

    defaults = {"percentile": 90.0, "threshold": None, "temperature": 1.0}
    needs_fit = True
    fit_keys = ("percentile", "threshold")
    params_spec = {"percentile": CLIP_PERCENTILE, "threshold": CLIP_THRESHOLD, "temperature": TEMPERATURE}

    def compute_stats(self, train: FeatureSet, head: Head) -> dict:
        return {"threshold": clip_threshold(train.features, self.params["percentile"], self.params["threshold"])}

    @property
    def threshold(self) -> float:
        return float(self.stats["threshold"])

    def score(self, data: FeatureSet) -> np.ndarray:
        clipped = np.minimum(np.asarray(data.features, dtype=np.float64), self.threshold)
        return energy_score(self.head(clipped), self.params["temperature"])
