"""The scorer registry: one place that maps a name to a post-hoc OOD scorer.

A scorer is a class (see :class:`lffood.scorers.base.Scorer`) with

* ``defaults``: its hyperparameters (config ``benchmarks.<b>.scorers.params.<name>`` overrides them);
* ``fit(train: FeatureSet, head: Head)``: fit ID statistics once from the ID training split
  (``needs_fit``; stored as an artifact by the workflow and reloaded with ``load``);
* ``score(data: FeatureSet) -> np.ndarray``: one score per sample, higher = more ID;
* or, for a scorer that needs the network to score (``score_on == "network"``: ODIN),
  ``score_network`` on a model and a ``TensorImages`` split.

Adding a scorer is one module in this package with a class decorated by :func:`register` (its
name, label and place in the table order): every module here is imported below. This package
imports numpy only: network scorers import torch inside their functions.
"""

from __future__ import annotations

from .base import (FeatureSet, Head, Scorer, build_scorer, fit_params, paper_scorers, param_problems,  # noqa: F401
                   register, registered_scorers, resolved_params, scorer_applies, scorer_class, scorer_names)
from ..plugins import import_all  # noqa: E402

#: every module of the package, so that a new scorer is one new file (base and the shared search
#: code register nothing and are imported like the others)
SCORER_MODULES = import_all(__name__, __path__)
