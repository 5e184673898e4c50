"""SSD+'s own score (Sehwag et al., ICLR 2021; inspire-group/SSD ``eval_ssd.py``, ``utils.py``): the
Mahalanobis distance to one Gaussian fitted to the ID training features, as ``eval_ssd.py`` runs it
with its default ``--clusters 1``:

1. the penultimate features h (the encoder's output, before the projection MLP), L2-normalised
   (``h / (||h|| + 1e-10)``);
2. standardised per dimension with the ID training mean m and standard deviation s (1/N):
   ``x = (h - m) / (s + 1e-10)``;
3. score = -(x - mu)^T pinv(Sigma) (x - mu), mu and Sigma the mean and the biased (1/N) covariance
   of the standardised training features (``np.cov(x.T, bias=True)``). mu is zero by construction
   (the training features are centred by step 2) and is left out. Higher = more ID (SSD reports the
   distance, higher = OOD).

Numerics as the project's Mahalanobis (:mod:`lffood.scorers.feature_based`): mean and standard
deviation in float64; the covariance from float32 products of row blocks summed in float64
(:func:`scatter`: no float64 copy of the features); its pseudo-inverse in float64 with pinvh's
cutoff (:func:`pinv_symmetric`; numpy's ``pinv``, which SSD calls, cuts at 1e-15 of the largest
singular value instead: the two agree unless the covariance has eigenvalues between those cutoffs);
scoring in float64. A dimension constant over the training features (a dead unit) has s = 0 and
zero variance: the pseudo-inverse gives it no weight, as in SSD.

It scores SSD+ models only (``objectives``): on a CE model the same formula is a one-class
Mahalanobis variant that no method reports. With ``clusters > 1`` SSD uses k-means clusters of the
training features (not labels) for SupCon models; that variant is not implemented (SSD's default and
its SSD+ numbers use one cluster).
"""

from __future__ import annotations

import numpy as np

from .base import FeatureSet, Head, Scorer, register
from .feature_based import SCATTER_ROWS, pinv_symmetric, scatter

#: SSD's eps in the L2 normalisation and the standardisation (eval_ssd.py)
EPS = 1e-10


def _blocks(x: np.ndarray):
    """Row blocks of ``x`` (float64, L2-normalised with SSD's eps): bounded memory at any N."""
    for start in range(0, len(x), SCATTER_ROWS):
        b = np.asarray(x[start:start + SCATTER_ROWS], dtype=np.float64)
        yield b / (np.linalg.norm(b, axis=1, keepdims=True) + EPS)


def ssd_stats(features: np.ndarray) -> dict[str, np.ndarray]:
    """The ID statistics of SSD's one-cluster score from the training features (N, C): per-dimension
    mean and standard deviation of the L2-normalised features, and the pseudo-inverse of the biased
    covariance of the standardised features."""
    x = np.asarray(features)
    n, c = x.shape
    if n < 2:
        raise ValueError(f"SSD needs at least 2 ID training features (got {n})")
    mean = sum(b.sum(0) for b in _blocks(x)) / n
    std = np.sqrt(sum(((b - mean) ** 2).sum(0) for b in _blocks(x)) / n)
    cov = scatter((((b - mean) / (std + EPS)).astype(np.float32) for b in _blocks(x)), c) / n
    return {"mean": mean, "std": std, "precision": pinv_symmetric(cov)}


def ssd_score(features: np.ndarray, mean: np.ndarray, std: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Minus the squared Mahalanobis distance of the standardised, L2-normalised ``features``."""
    out = []
    for b in _blocks(np.asarray(features)):
        z = (b - mean) / (std + EPS)
        out.append(-np.einsum("nc,nc->n", z @ precision, z))
    return np.concatenate(out) if out else np.zeros(0)


@register("ssd", "SSD+")
class SSD(Scorer):
    """SSD's score with one cluster: minus the Mahalanobis distance of the standardised, L2-normalised
    penultimate feature to the ID training features' Gaussian (SSD+ models only)."""

    defaults: dict = {}
    needs_fit = True
    objectives = ("ssd_plus",)

    cost_as = "mahalanobis"  # one scatter and one eigendecomposition of C x C; scoring C^2 per image

    def compute_stats(self, train: FeatureSet, head: Head) -> dict:
        return ssd_stats(train.features)

    def score(self, data: FeatureSet) -> np.ndarray:
        s = self.stats
        return ssd_score(data.features, s["mean"], s["std"], s["precision"])
