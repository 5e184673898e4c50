"""CSI's own score for its labelled models (``lffood.objectives.csi``, stage 2 ``csi_linear``): the official
``baseline_marginalized`` score (alinlab/CSI ``evals/evals.py``), max_y softmax((1/4) sum_k
joint(rot_k(x))[k C + y]) of the joint (class x rotation) head over the 4 rotations of the image. It needs
three extra forward passes per image, so it is computed at extraction (the feature-file field
``csi_joint_score``) and read from there. Higher = more ID; it applies to ``csi_linear`` models only.

(OpenOOD scores CSI by the MSP of the unrotated linear head instead: that is the ``msp`` row of the same model.)
"""

from __future__ import annotations

import numpy as np

from ..objectives import csi as _objective  # noqa: F401  (registers the field this reads)
from .base import FeatureSet, Scorer, register


@register("csi", "CSI")
class CSIJoint(Scorer):
    """CSI's marginalised joint-head score, read from the feature file."""

    requires = ("csi_joint_score",)
    objectives = ("csi_linear",)

    def score(self, data: FeatureSet) -> np.ndarray:
        return np.asarray(data.extras["csi_joint_score"], dtype=np.float64)
