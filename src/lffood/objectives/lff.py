"""LFF: local background feature fine-tuning (Ye et al., "Local Background Features Matter in
Out-of-Distribution Detection", arXiv 2510.12259, eqs. 4-7).

For every local vector z_j of the last feature map, the model's own linear head gives local
probabilities p_j(y | x) (eq. 4). Background vectors are those whose ground-truth probability is
below ``delta`` (eq. 5); L_LFF is the mean hinge of their L2 norms above the margin ``mu`` over all
selected vectors of the batch (eq. 6), zero when none is selected; the loss is
CE + lambda * L_LFF (eq. 7). OOD images, which share such backgrounds, then get small feature norms
and low energy scores.

Usage (config; paper V.A values per benchmark: delta 0.1 / 0.01 / 0.01, mu 1 / 2 / 3, lambda 1 for
CIFAR-10 / CIFAR-100 / ImageNet-100)::

    lff: {delta: 0.1, mu: 1.0, lambda: 1.0}
    variants:
      lff: {objective: lff, parent: ce, label: LFF}
"""

from __future__ import annotations

from ..local import background_row, background_sums, local_gt_prob, local_norms
from .base import F, Forward, Objective, register, torch


def background_mask(gt_prob, delta: float):
    """Eq. 5: a location is background when its ground-truth probability is below ``delta``."""
    return gt_prob < delta


def lff_loss(norms, mask, mu: float):
    """Eq. 6: mean over selected locations of max(||z_j|| - mu, 0); exactly 0 (with a graph) when
    none is selected. A masked reduction: no data-dependent shapes, no host synchronisation."""
    m = mask.to(norms.dtype)
    return (torch.clamp(norms - mu, min=0.0) * m).sum() / m.sum().clamp(min=1.0)


@register("lff", "LFF")
class LFF(Objective):
    """CE + lambda * L_LFF on the local vectors the head does not assign to the ground truth."""

    params_schema = {
        "delta": {"description": "Probability threshold of background selection (eq. 5); paper V.A: 0.1 "
                                 "(CIFAR-10), 0.01 (CIFAR-100, ImageNet-100). Must stay below 1: at 1 every "
                                 "location is background.",
                  "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.1},
        "mu": {"description": "L2-norm margin (eq. 6); paper V.A: 1 / 2 / 3. At most 100: local vectors' norms are "
                             "O(1-10), and above them the hinge is always 0 (LFF trains the CE control).",
               "type": "number", "minimum": 0, "maximum": 100, "default": 1.0},
        "lambda": {"description": "Weight of L_LFF (eq. 7); paper V.A: 1. At most 100 (0: the CE control).",
                   "type": "number", "minimum": 0, "maximum": 100, "default": 1.0},
    }
    stats = {"lff": "L_LFF (eq. 6), mean over batches weighted by batch size"}

    def loss(self, out: Forward, targets):
        ce = F.cross_entropy(out.logits, targets)
        norms = local_norms(out.fmap)
        with torch.no_grad():
            mask = background_mask(local_gt_prob(out.fmap, out.weight, out.bias, targets), self.params["delta"])
        l_lff = lff_loss(norms, mask, self.params["mu"])
        n = targets.shape[0]
        with torch.no_grad():
            sums = {"lff": l_lff.detach() * n, **background_sums(norms.detach(), mask)}
        return ce + self.params["lambda"] * l_lff, sums

    def collapse_advice(self):
        n = self.name
        return (f"A margin {n}.mu far below the feature scale or a large {n}.lambda pushes all local vectors to zero; "
                f"once local predictions are near uniform (1/K > {n}.delta) nothing is selected and training cannot "
                f"recover. Lower {n}.lambda, raise {n}.mu, or lower the learning rate (docs/troubleshooting.md: 'When training "
                "collapses').")

    def epoch_row(self, sums, n):
        return {"lff": sums["lff"] / max(n, 1), **background_row(sums)}

    def log_line(self, row):
        line = (f"L_lff {row['lff']:.4f} selected {100 * row['frac_selected']:.1f}% "
                f"norm sel/unsel {row['norm_selected']:.3f}/{row['norm_unselected']:.3f}")
        if row["frac_selected"] == 0.0:
            line += f" (nothing selected: no p_j(y|x) < lff.delta = {self.params['delta']}, L_LFF = 0)"
        return line
