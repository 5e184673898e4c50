"""LINe (Ahn, Park & Kim, CVPR 2023): leveraging important neurons.

Importance of neuron j for class c is the first-order Taylor (Shapley) approximation
``activation_j x d logit_c / d activation_j`` at the pooled penultimate layer, averaged over the ID
training images of class c (YongHyun-Ahn/LINe: a forward hook on the average pool, backward of the
ground-truth logit). Every backbone here ends in ``logits = head(pooled)`` with a linear head, so the
gradient of logit c with respect to the pooled activations is exactly ``W[c]`` and the importance is
``mean_{i: y_i = c}(f_i) * W[c]``: it is computed from the cached features, with no network pass
(``tests/unit/test_scorers_network.py`` checks it against autograd on a model).

Scoring (the reference's ``RouteLUNCH``): clip the features (ReAct), predict c = argmax of the
clipped logits, keep the neurons whose importance for c is above its ``p_a``-th percentile, keep the
weights whose ``|importance_c| * W`` is above the ``p_w``-th percentile of that K x C matrix, and
take the energy of the resulting logits.

The clipping level is by default ReAct's own rule, the ``clip_percentile``-th percentile (90) of every
entry of the ID training features, so that it follows each model's feature scale: the reference's
fixed values (1.0 for CIFAR, 0.8 for ImageNet) were tuned for its own networks, and LFF fine-tuning
changes the scale. A number in ``clip_threshold`` selects such a fixed value instead.
"""

from __future__ import annotations

import numpy as np

from .base import FeatureSet, Head, Scorer, register
from .feature_based import MASK_PERCENTILE
from .logit_based import CLIP_PERCENTILE, CLIP_THRESHOLD, clip_threshold, energy_score


def class_importance(features: np.ndarray, labels: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(K, C) mean over ID training images of class c of activation x gradient of logit c."""
    x, y, w = np.asarray(features, np.float64), np.asarray(labels), np.asarray(weight, np.float64)
    k = w.shape[0]
    counts = np.bincount(y, minlength=k)
    if y.min() < 0 or len(counts) > k or (counts == 0).any():
        raise ValueError(f"LINe needs ID training labels in 0..{k - 1} with every class present; "
                         f"class counts {counts.tolist()}")
    sums = np.zeros_like(w)
    np.add.at(sums, y, x)
    return sums / counts[:, None] * w


def line_masks(importance: np.ndarray, weight: np.ndarray, p_w: float, p_a: float, c: int):
    """Activation mask (C,) and masked weight (K, C) used for samples predicted as class ``c``."""
    imp = importance[c]
    act_mask = imp > np.percentile(imp, p_a)
    contrib = np.abs(imp)[None, :] * weight
    return act_mask, weight * (contrib > np.percentile(contrib, p_w))


@register("line", "LiNe", order=110, in_paper=True)  # Table I's spelling (II, III: "LINE")
class LINe(Scorer):
    """LINe: class-wise important neurons (activation x gradient) mask features and weights, on
    ReAct-clipped features; energy score. The clip is the ``clip_percentile``-th percentile of the ID
    training activations (default 90, as ReAct); a fixed ``clip_threshold`` (the reference's 1.0 on
    CIFAR, 0.8 on ImageNet) overrides it; both null = no clipping."""

    defaults = {"p_w": 90.0, "p_a": 90.0, "clip_threshold": None, "clip_percentile": 90.0}
    needs_fit = True
    fit_keys = ("clip_threshold", "clip_percentile")
    params_spec = {"p_w": MASK_PERCENTILE, "p_a": MASK_PERCENTILE, "clip_threshold": CLIP_THRESHOLD,
                   "clip_percentile": CLIP_PERCENTILE}

    def compute_stats(self, train: FeatureSet, head: Head) -> dict:
        if train.labels is None:
            raise ValueError("LINe needs the labels of the ID training split")
        return {"importance": class_importance(train.features, train.labels, head.weight),
                "threshold": clip_threshold(train.features, self.params["clip_percentile"],
                                            self.params["clip_threshold"])}

    def score(self, data: FeatureSet) -> np.ndarray:
        w, b = np.asarray(self.head.weight, np.float64), np.asarray(self.head.bias, np.float64)
        x = np.minimum(np.asarray(data.features, np.float64), float(self.stats["threshold"]))
        pred = (x @ w.T + b).argmax(1)
        logits = np.empty((len(x), w.shape[0]))
        for c in np.unique(pred):  # one masked head per predicted class, not per sample
            rows = pred == c
            act_mask, w_c = line_masks(self.stats["importance"], w, self.params["p_w"], self.params["p_a"], c)
            logits[rows] = (x[rows] * act_mask) @ w_c.T + b
        return energy_score(logits)
