"""The own inference scores of CIDER and NPOS: KNN on the L2-normalised penultimate features.

Both methods score a test image by minus the distance from its L2-normalised pooled penultimate
feature to the k-th nearest L2-normalised ID training feature (CIDER ``eval_ood.py``, NPOS
``evaluation/eval_utils.py``), exactly what the ``knn`` scorer computes
(:class:`lffood.scorers.feature_based.KNN`). They are registered separately so that the tables carry
each method's own score with the method's own k, next to the generic ``knn`` (k = 50, every model),
and apply to their method's models only (``objectives``):

* ``cider_knn``: k = 100 (CIDER's CIFAR-10 value, ``scripts/eval_ckpt_cifar10.sh``); 300 on CIFAR-100
  (``eval_ckpt_cifar100.sh``) and ImageNet-100 (``eval_ood.py`` default): set
  ``scorers.params.cider_knn.k`` per benchmark;
* ``npos_knn``: k = 300 (``test_npos_cifar10.sh``, ``test_npos_cifar100.sh``).

The projection head serves the training losses only: the score uses the backbone's features (as the
official evaluations do). The ID training bank is the feature file's training split (no fit), so these
run in the workflow's k-NN search jobs like ``knn`` (``uses_train_bank``).
"""

from __future__ import annotations

from .base import register
from .feature_based import KNN


class _OwnKNN(KNN):
    """KNN with a method's own k, for that method's models only."""

    cost_as = "knn"  # the same search


@register("cider_knn", "KNN (CIDER)")
class CIDERKNN(_OwnKNN):
    """CIDER's score: KNN on L2-normalised penultimate features, k = 100 (CIFAR-10; 300 on CIFAR-100)."""

    defaults = {**KNN.defaults, "k": 100}
    objectives = ("cider",)


@register("npos_knn", "KNN (NPOS)")
class NPOSKNN(_OwnKNN):
    """NPOS's score: KNN on L2-normalised penultimate features, k = 300."""

    defaults = {**KNN.defaults, "k": 300}
    objectives = ("npos",)
