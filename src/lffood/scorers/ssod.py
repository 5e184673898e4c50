"""SSOD's scores (reconstructed; see ``lffood.objectives.ssod``): the OOD factor P(x in S_ID | x)
of its extra OOD head, stored per image at extraction for SSOD models only.

* ``ssod_global``: P_ID(g(GAP(z))), the head applied to the pooled feature;
* ``ssod_local``: the mean over locations of P_ID(g(z_j));
* ``ssod`` (joint): the framework's full product max_i softmax_i(f(GAP(z))) * P_ID(g(GAP(z))).

Which of these the paper reports is not stated; all three are registered so the tables show them.
Higher = more ID. They apply only to models whose feature file has the OOD head's outputs.
"""

from __future__ import annotations

import numpy as np

from ..objectives import ssod as _objective  # noqa: F401  (registers the OOD head's fields these read)
from .base import FeatureSet, Scorer, register
from .logit_based import msp_score


@register("ssod_global", "SSOD (global)", order=140)
class SSODGlobal(Scorer):
    """P_ID of SSOD's OOD head on the pooled feature."""

    requires = ("ood_head_global",)

    def score(self, data: FeatureSet) -> np.ndarray:
        return np.asarray(data.extras["ood_head_global"], dtype=np.float64)


@register("ssod_local", "SSOD (local)", order=150)
class SSODLocal(Scorer):
    """Mean over the locations of P_ID of SSOD's OOD head on each local vector."""

    requires = ("ood_head_local",)

    def score(self, data: FeatureSet) -> np.ndarray:
        return np.asarray(data.extras["ood_head_local"], dtype=np.float64)


@register("ssod", "SSOD", order=130)
class SSODJoint(Scorer):
    """P(w_i | x) = P(w_i | x in S_ID, x) P(x in S_ID | x) at the predicted class: MSP times P_ID."""

    requires = ("ood_head_global",)

    def score(self, data: FeatureSet) -> np.ndarray:
        return msp_score(data.logits) * np.asarray(data.extras["ood_head_global"], dtype=np.float64)
