"""CSD, the cross-scale decision of MODE (Zhang et al., "From Global to Local: Multi-scale
Out-of-distribution Detection", arXiv 2308.10239; code: JimZAI/MODE-OOD ``CSD_STEP2.py``).

Every image has six region vectors from the last map z, stored at extraction (``multiscale``,
float16, :func:`lffood.local.multiscale_vectors`): the means of its four quadrants, the global mean
and the mean of the central window. The ID statistic is a bank of the L2-normalised six vectors of
every ID training image, read from the feature file (nothing is fitted or copied). A test image's
score is minus the smallest, over its six vectors, squared distance to the k-th nearest bank vector
(higher = more ID). It applies to any model: CE+CSD, LFF+CSD and MODE+CSD are comparable.

``bank: pooled`` (the official code's choice) searches one bank of all 6N vectors;
``bank: per_type`` searches each region type against the bank of that type only. The search is
exact and chunked (:func:`lffood.scorers.knn_search.kth_largest_similarity`, torch on the job's
threads, or on CUDA where the job has a GPU): on the CPU memory is the float16 bank plus about
``chunk_size x 8192 + 8192 x C`` floats, never a distance matrix.

Usage::

    scorers: {names: [..., csd], params: {csd: {k: 10, bank: pooled}}}
"""

from __future__ import annotations

import numpy as np

from ..checks import Issue, Param
from .base import FeatureSet, Scorer, register
from .feature_based import CHUNK_SIZE
from .knn_search import kth_largest_similarity

BANKS = ("pooled", "per_type")


def normalize_rows(x: np.ndarray, eps: float = 1e-10, chunk: int = 65536) -> np.ndarray:
    """L2-normalise the last axis of a (float16) array chunk by chunk, keeping its dtype."""
    out = np.empty_like(x)
    flat, dst = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1])
    for s in range(0, len(flat), chunk):
        v = flat[s:s + chunk].astype(np.float32)
        dst[s:s + chunk] = v / (np.linalg.norm(v, axis=1, keepdims=True) + eps)
    return out


@register("csd", "CSD", order=120)
class CSD(Scorer):
    """MODE's cross-scale decision: minus the smallest squared distance of an image's six region
    vectors to their k-th nearest neighbour in the ID bank of region vectors."""

    defaults = {"k": 10, "bank": "pooled", "chunk_size": 1024}
    params_spec = {"k": Param("int", 1, why="at most the vectors of the bank"), "bank": Param("choice", choices=BANKS),
                   "chunk_size": CHUNK_SIZE}
    uses_train_bank = True
    requires = ("multiscale",)

    @classmethod
    def check(cls, params, facts=None):
        """k at most the vectors of the bank: 6 per ID training image (pooled) or one (per_type)."""
        issues = super().check(params, facts)
        n = facts.train if facts is not None else None
        if issues or n is None:
            return issues
        pooled = params["bank"] == "pooled"
        bank = 6 * n if pooled else n
        if params["k"] > bank:
            issues.append(Issue("k", f"{params['k']} is larger than the {bank} vectors of CSD's bank "
                                     f"({'6 region vectors x ' if pooled else ''}{n} ID training images, "
                                     f"{facts.what}); lower it to at most {bank} (MODE: 10).", ("train", "bank")))
        return issues

    def set_bank(self, train: FeatureSet) -> "CSD":
        self.bank = normalize_rows(np.asarray(train.extras["multiscale"]))  # (N, 6, C), kept as stored
        return self

    def fit(self, train, head):
        super().fit(train, head)
        return self.set_bank(train)

    def score(self, data: FeatureSet) -> np.ndarray:
        q = normalize_rows(np.asarray(data.extras["multiscale"], dtype=np.float32))  # (M, 6, C)
        m, t, c = q.shape
        k, chunk = self.params["k"], self.params["chunk_size"]
        if self.params["bank"] == "pooled":
            sims = kth_largest_similarity(q.reshape(m * t, c), self.bank.reshape(-1, c), k, chunk_size=chunk,
                                          what="CSD").reshape(m, t)
        else:
            sims = np.stack([kth_largest_similarity(q[:, i], self.bank[:, i], k, chunk_size=chunk, what="CSD")
                             for i in range(t)], axis=1)
        return -np.min(np.maximum(2.0 - 2.0 * sims, 0.0), axis=1)  # unit vectors: |a - b|^2 = 2 - 2 a.b
