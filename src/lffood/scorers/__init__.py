"""The scorer registry: one place that maps a name to a post-hoc OOD scorer.

A scorer is a class with

* ``params``: its hyperparameters (from the config's ``benchmarks.<b>.scorers.params.<name>``);
* ``fit(train: FeatureSet, head: Head)``: fit ID statistics once from the ID training split;
* ``score(data: FeatureSet) -> np.ndarray``: one score per sample, higher = more ID.

Scorers read cached features and logits (see ``lffood.h5schema``), never the network. Adding a
scorer is one module with a class decorated by :func:`register`, imported below.
"""

from __future__ import annotations

from .base import FeatureSet, Head, Scorer, build_scorer, register, registered_scorers  # noqa: F401
from . import logit_based  # noqa: F401,E402  (registers msp, energy, react)
