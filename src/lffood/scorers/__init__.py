"""The scorer registry: one place that maps a name to a post-hoc OOD scorer.

A scorer is a class (see :class:`lffood.scorers.base.Scorer`) with

* ``defaults``: its hyperparameters (config ``benchmarks.<b>.scorers.params.<name>`` overrides them);
* ``fit(train: FeatureSet, head: Head)``: fit ID statistics once from the ID training split
  (``needs_fit``; stored as an artifact by the workflow and reloaded with ``load``);
* ``score(data: FeatureSet) -> np.ndarray``: one score per sample, higher = more ID;
* or, for a scorer that needs the network to score (``score_on == "network"``: ODIN),
  ``score_network`` on a model and a ``TensorImages`` split.

Adding a scorer is one module with a class decorated by :func:`register` (its name, label and place
in the table order), imported below. This
package imports numpy only: network scorers import torch inside their functions.
"""

from __future__ import annotations

from .base import (FeatureSet, Head, Scorer, build_scorer, fit_params, paper_scorers, param_problems,  # noqa: F401
                   register, registered_scorers, resolved_params, scorer_applies, scorer_class, scorer_names)
from . import logit_based  # noqa: F401,E402  (msp, energy, react)
from . import odin  # noqa: F401,E402  (odin)
from . import feature_based  # noqa: F401,E402  (mahalanobis, vim, knn, dice, dice_react)
from . import featurenorm  # noqa: F401,E402  (featurenorm)
from . import line  # noqa: F401,E402  (line)
from . import csd  # noqa: F401,E402  (csd: MODE's cross-scale decision)
from . import ssod  # noqa: F401,E402  (ssod, ssod_global, ssod_local: SSOD's OOD head)
