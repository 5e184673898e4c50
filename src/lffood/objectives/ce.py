"""Cross-entropy: the CE pretraining objective and the CE control.

The CE control is this objective fine-tuned from the CE checkpoint with exactly the schedule and
augmentation of LFF (a variant with ``objective: ce, parent: ce, stage: finetune``): extra CE
epochs help on their own, so LFF's gain is measured against it, not against the CE model.

Usage (config)::

    variants:
      ce:         {objective: ce}                                  # from scratch, stage pretrain
      ce_control: {objective: ce, parent: ce, label: CE control}   # stage finetune
"""

from __future__ import annotations

from .base import F, Forward, Objective, register


@register("ce", "CE")
class CrossEntropy(Objective):
    """Cross-entropy of the pooled logits with the labels."""

    def loss(self, out: Forward, targets):
        return F.cross_entropy(out.logits, targets), {}
