"""Scorers on cached penultimate features: Mahalanobis, ViM, KNN, DICE and DICE+ReAct.

All statistics are fitted from the ID training split's cached features (and the head); scoring
reads cached features only. Everything is vectorised: Mahalanobis is one matrix product per
split, KNN an exact search in bounded-memory chunks (:mod:`lffood.scorers.knn_search`: torch, on the
job's threads or on CUDA).
"""

from __future__ import annotations

import numpy as np

from ..checks import Issue, Param
from .base import FeatureSet, Head, Scorer, register
from .logit_based import CLIP_PERCENTILE, CLIP_THRESHOLD, clip_threshold, energy_score, logsumexp

#: A percentile above which weights or neurons are kept (DICE, LINe): at 100 nothing is above it, every
#: weight is zeroed and every score is the same.
MASK_PERCENTILE = Param("float", 0, 100, max_open=True,
                        why="at 100 nothing lies above the percentile: every weight is zeroed and every score ties")
#: Query rows per product of the k-NN search: chunk_size x 8192 float32 products (2 GiB at 65536).
CHUNK_SIZE = Param("int", 1, 65536, why="the search's buffer is chunk_size x 8192 floats (2 GiB at 65536)")


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------- Mahalanobis
#: Rows per float32 product in :func:`scatter` (32 MB of float32 at 2048 features).
SCATTER_ROWS = 4096


def centred_blocks(x: np.ndarray, centre):
    """The rows of ``x`` minus ``centre(rows)`` (a slice of rows -> float64 centres), block by block,
    each rounded once to float32: no float64 copy of all the features."""
    for start in range(0, len(x), SCATTER_ROWS):
        rows = slice(start, start + SCATTER_ROWS)
        yield (x[rows] - centre(rows)).astype(np.float32)


def scatter(blocks, dim: int) -> np.ndarray:
    """``sum B^T B`` over the float32 blocks ``B``: each product in float32, their sum in float64.

    Why: at 2048 features the float64 product of all rows took 40 s and 7.2 GB per model (float64
    copies of the features, 3 x N x C x 8 bytes); these products take a third of the time and no copy
    (2048 features, 20000 rows, one thread: 3.7 -> 1.4 s). The precision that matters is kept by the
    float64 pseudo-inverse (or eigendecomposition) of the result: scores stay equal to those of a
    float64 fit up to a few 1e-5 relative with eigenvalues over four decades (tests). Inverting in
    float32 would not: the pseudo-inverse drops the low-variance directions that Mahalanobis weighs
    most (Spearman 0.48 against the float64 scores)."""
    out = np.zeros((dim, dim))
    for b in blocks:
        out += b.T @ b
    return out


def pinv_symmetric(a: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a symmetric matrix in float64, with ``scipy.linalg.pinvh``'s cutoff
    (eigenvalues up to ``dim * eps * max|eigenvalue|`` dropped), through numpy's divide-and-conquer
    eigensolver: pinvh's QR-iteration driver took 10.8 s at 2048 x 2048 on one thread, this 2.0 s."""
    s, u = np.linalg.eigh(a)
    keep = np.abs(s) > len(s) * np.finfo(np.float64).eps * np.abs(s).max(initial=0.0)
    return (u[:, keep] / s[keep]) @ u[:, keep].T


def class_means_and_precision(features: np.ndarray, labels: np.ndarray, num_classes: int):
    """Class means and the precision (pseudo-inverse) of one covariance shared by all classes,
    estimated from the class-centred features with 1/N normalisation (sklearn's
    EmpiricalCovariance, as in OpenOOD's MDS postprocessor). Means and pseudo-inverse in float64,
    the covariance from float32 products (:func:`scatter`); the means class by class (``np.add.at``
    took 2.4 s for 20000 x 2048, this 0.05 s). (sklearn also subtracts the mean of the class-centred
    features: zero up to rounding, left out.)"""
    x, y = np.asarray(features), np.asarray(labels)
    counts = np.bincount(y, minlength=num_classes)
    if y.min() < 0 or len(counts) > num_classes or (counts == 0).any():
        raise ValueError(f"Mahalanobis needs ID training labels in 0..{num_classes - 1} with every class present; "
                         f"class counts {counts.tolist()}")
    means = np.stack([x[y == k].mean(0, dtype=np.float64) for k in range(num_classes)])
    cov = scatter(centred_blocks(x, lambda rows: means[y[rows]]), x.shape[1]) / len(x)
    return means, pinv_symmetric(cov)


def mahalanobis_score(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """max_c -(x - mu_c)^T P (x - mu_c), as (N, C) x (C, C) and (N, C) x (C, K) products."""
    x = _f64(features)
    xp = x @ precision
    d2 = (np.einsum("nc,nc->n", xp, x)[:, None] - 2.0 * xp @ means.T
          + np.einsum("kc,kc->k", means @ precision, means)[None, :])
    return -d2.min(1)


@register("mahalanobis", "Mahalanobis", order=30, in_paper=True)
class Mahalanobis(Scorer):
    """Mahalanobis distance to the closest class mean under one shared covariance, on penultimate
    features and without input pre-processing (Lee et al., 2018; the OpenOOD / TagFog variant)."""

    defaults: dict = {}
    needs_fit = True

    def compute_stats(self, train: FeatureSet, head: Head) -> dict:
        if train.labels is None:
            raise ValueError("Mahalanobis needs the labels of the ID training split")
        means, precision = class_means_and_precision(train.features, train.labels, head.weight.shape[0])
        return {"means": means, "precision": precision}

    def score(self, data: FeatureSet) -> np.ndarray:
        return mahalanobis_score(data.features, self.stats["means"], self.stats["precision"])


# ----------------------------------------------------------------------------- ViM
def vim_dim(feature_dim: int, dim: int | None = None) -> int:
    """Dimension D of the principal subspace: ``dim`` if given, else ViM's rule (1000 if the feature
    dimension is >= 2048, 512 if >= 768, else half of it)."""
    if dim is not None:
        d = int(dim)
    elif feature_dim >= 2048:
        d = 1000
    elif feature_dim >= 768:
        d = 512
    else:
        d = feature_dim // 2
    if not 0 < d < feature_dim:
        raise ValueError(f"ViM: principal dimension {d} must lie in 1..{feature_dim - 1} (feature dimension "
                         f"{feature_dim}); set scorers.params.vim.dim")
    return d


@register("vim", "ViM", order=50, in_paper=True)
class ViM(Scorer):
    """Virtual-logit matching (Wang et al., 2022): energy minus alpha times the norm of the feature's
    residual off the principal subspace of the ID training features, origin u = -pinv(W) b."""

    defaults = {"dim": None}
    params_spec = {"dim": Param("int", 1, null=True, why="null: ViM's rule by the feature dimension")}
    needs_fit = True
    fit_keys = ("dim",)

    @classmethod
    def check(cls, params, facts=None):
        """``dim`` below the feature dimension of the benchmark's model."""
        issues = super().check(params, facts)
        c = facts.feature_dim if facts is not None else None
        if issues or c is None:
            return issues
        d = params["dim"]
        if d is not None and d >= c:
            issues.append(Issue("dim", f"{d} must lie below the feature dimension {c} of model.arch "
                                       f"'{facts.arch}'; lower it, or null for ViM's rule (D = {c // 2} here).",
                                ("feature_dim",)))
        elif d is None and c // 2 < 1:
            issues.append(Issue("dim", f"null (ViM's rule) gives no principal subspace for the feature dimension "
                                       f"{c} of model.arch '{facts.arch}': ViM needs at least 2 features.",
                                ("feature_dim",)))
        return issues

    def compute_stats(self, train: FeatureSet, head: Head) -> dict:
        """Origin, principal subspace and alpha in float64 from float32 products (:func:`scatter`).
        Those products see the features about their mean: about the origin ``u``, the mean's
        magnitude would bury the low-variance directions (the residual) in float32 rounding; the
        mean's own part is added in float64."""
        w, b = _f64(head.weight), _f64(head.bias)
        u = -np.linalg.pinv(w) @ b
        x = np.asarray(train.features)
        n, c = x.shape
        d = vim_dim(c, self.params["dim"])
        m = x.mean(0, dtype=np.float64)
        # about u (EmpiricalCovariance(assume_centered=True)): the scatter about m plus n (m - u)(m - u)^T
        cov = (scatter(centred_blocks(x, lambda rows: m), c) + n * np.outer(m - u, m - u)) / n
        _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
        residual_basis = vecs[:, : c - d]  # the (C - D) least-variance directions
        basis32, offset = residual_basis.astype(np.float32), (m - u) @ residual_basis
        vlogit = np.concatenate([np.linalg.norm(blk @ basis32 + offset, axis=1)
                                 for blk in centred_blocks(x, lambda rows: m)])
        alpha = _f64(train.logits).max(1).mean() / vlogit.mean()
        return {"u": u, "residual_basis": residual_basis, "alpha": alpha, "dim": d}

    def score(self, data: FeatureSet) -> np.ndarray:
        s = self.stats
        residual = np.linalg.norm((_f64(data.features) - s["u"]) @ s["residual_basis"], axis=1)
        return logsumexp(_f64(data.logits)) - float(s["alpha"]) * residual


# ----------------------------------------------------------------------------- KNN
def l2_normalize(x: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + eps)


@register("knn", "KNN", order=60)  # not in the paper: after ViM
class KNN(Scorer):
    """Deep nearest neighbours (Sun et al., 2022): minus the distance from the L2-normalised feature to
    its k-th nearest L2-normalised ID training feature (exact search, chunked). The ID statistic is
    the training bank itself, which the feature file already holds: nothing is copied or refitted."""

    defaults = {"k": 50, "chunk_size": 1024}
    params_spec = {"k": Param("int", 1, why="at most the ID training images"), "chunk_size": CHUNK_SIZE}
    uses_train_bank = True

    @classmethod
    def check(cls, params, facts=None):
        """k at most the ID training images (the bank)."""
        issues = super().check(params, facts)
        n = facts.train if facts is not None else None
        if not issues and n is not None and params["k"] > n:
            issues.append(Issue("k", f"{params['k']} is larger than the {n} ID training images ({facts.what}); "
                                     f"KNN's k must be at most {n}. Lower it (reference: 50 for CIFAR-10, 300 for "
                                     "CIFAR-100).", ("train",)))
        return issues

    def set_bank(self, train: FeatureSet) -> "KNN":
        self.bank = l2_normalize(train.features)
        return self

    def fit(self, train, head):
        super().fit(train, head)
        return self.set_bank(train)

    def score(self, data: FeatureSet) -> np.ndarray:
        from .knn_search import kth_largest_similarity as search  # torch: the job's threads, or CUDA

        s = search(l2_normalize(data.features), self.bank, self.params["k"], chunk_size=self.params["chunk_size"])
        return -np.sqrt(np.maximum(2.0 - 2.0 * s, 0.0))  # unit vectors: |a - b|^2 = 2 - 2 a.b


# ----------------------------------------------------------------------------- DICE (+ ReAct)
def dice_weight(weight: np.ndarray, mean_activation: np.ndarray, percentile: float) -> np.ndarray:
    """DICE's sparsified head: keep the weights whose contribution ``mean_activation * w`` exceeds the
    ``percentile``-th percentile of all K x C contributions; zero the others."""
    w = _f64(weight)
    contrib = _f64(mean_activation)[None, :] * w
    return w * (contrib > np.percentile(contrib, percentile))


@register("dice", "DICE", order=70, in_paper=True)
class DICE(Scorer):
    """Directed sparsification (Sun & Li, 2022): energy of the logits of a head whose weights with the
    lowest contribution (mean ID training activation x weight) are zeroed."""

    defaults = {"percentile": 90.0}
    params_spec = {"percentile": MASK_PERCENTILE}
    needs_fit = True

    def compute_stats(self, train: FeatureSet, head: Head) -> dict:
        return {"mean_activation": _f64(train.features).mean(0)}

    def score(self, data: FeatureSet) -> np.ndarray:
        w = dice_weight(self.head.weight, self.stats["mean_activation"], self.params["percentile"])
        return energy_score(_f64(data.features) @ w.T + _f64(self.head.bias))


@register("dice_react", "DICE+ReAct", order=90, in_paper=True)
class DICEReAct(Scorer):
    """DICE on ReAct-clipped features: clip at ``react_threshold`` (or the ``react_percentile``-th
    percentile of ID training activations), then DICE's sparsified head, then energy. The mean
    activation for DICE's contribution is that of the unclipped training features."""

    defaults = {"dice_percentile": 90.0, "react_percentile": 90.0, "react_threshold": None}
    needs_fit = True
    fit_keys = ("react_percentile", "react_threshold")
    params_spec = {"dice_percentile": MASK_PERCENTILE, "react_percentile": CLIP_PERCENTILE,
                   "react_threshold": CLIP_THRESHOLD}

    def compute_stats(self, train: FeatureSet, head: Head) -> dict:
        return {"mean_activation": _f64(train.features).mean(0),
                "threshold": clip_threshold(train.features, self.params["react_percentile"],
                                            self.params["react_threshold"])}

    def score(self, data: FeatureSet) -> np.ndarray:
        w = dice_weight(self.head.weight, self.stats["mean_activation"], self.params["dice_percentile"])
        x = np.minimum(_f64(data.features), float(self.stats["threshold"]))
        return energy_score(x @ w.T + _f64(self.head.bias))
