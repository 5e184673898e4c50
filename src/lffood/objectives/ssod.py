"""SSOD, reconstructed: "Image Background Serves as Good Proxy for Out-of-distribution Data"
(Sen Pei, ICLR 2024; OpenReview). No official code and no full
text were available; this follows the abstract, the public reviews and one small public
re-implementation (``../shared/reference/methods.md``). Every choice the sources leave open is a
parameter below or stated here.

* An extra binary OOD head g (``Linear(C, 2)``; output 1 = ID) on the local vectors z_j of the last
  map. Sampling without gradient, with the classifier's own head (LFF's eq. 4): location j is ID
  when p_j(y|x) >= gamma, OOD when p_j(y|x) <= 1 - gamma, else ignored.
* Loss: CE(f(GAP(z)), y) + alpha * L_OOD, L_OOD = mean over the batch's ID locations of
  CE(g(z_j), 1) + mean over its OOD locations of CE(g(z_j), 0) (each mean over the whole batch's
  locations, like LFF's eq. 6). A set that is empty in a batch contributes exactly 0.
* ``detach_features: false`` (default): L_OOD trains the backbone too, so the background
  evidence is pushed out of the ID features, which is SSOD's claim; ``true`` trains the head only.
* At test time the OOD head's outputs are stored per image (``provides``; the two feature-file
  fields registered here, :mod:`lffood.fields`): P_ID(g(GAP(z))) and the
  mean over locations of P_ID(g(z_j)); the scorers ``ssod_global``, ``ssod_local`` and ``ssod``
  (the framework's product max_i softmax_i(f(GAP(z))) * P_ID(g(GAP(z)))) read them.
* Schedule: fine-tuned from the CE checkpoint with LFF's schedule (like for like); SSOD's own is
  not published. The OOD head starts from a random initialisation: ``new_module_lr`` gives it a
  learning rate of its own (null: the stage's), for fine-tuning schedules whose rate suits a
  pretrained network but not a fresh layer (LFF's ImageNet fine-tuning: 5e-5).

Usage (config)::

    ssod: {gamma: 0.95, alpha: 1.0, new_module_lr: null}
    variants:
      ssod: {objective: ssod, parent: ce, label: SSOD, scorer: ssod}
"""

from __future__ import annotations

import numpy as np

from ..fields import Field, register_field
from ..local import local_gt_prob, local_vectors
from .base import F, Forward, Objective, new_module_lr_schema, nn, register, torch

#: index of the OOD head's "in-distribution" output
ID_OUTPUT = 1


def balanced_ood_loss(head_logits, id_mask, ood_mask):
    """Mean CE(g(z_j), 1) over ID locations + mean CE(g(z_j), 0) over OOD locations; a term whose
    set is empty is 0 (masked reductions, no host synchronisation). ``head_logits`` (..., 2)."""
    logp = F.log_softmax(head_logits.float(), dim=-1)
    idm, oodm = id_mask.to(logp.dtype), ood_mask.to(logp.dtype)
    l_id = -(logp[..., ID_OUTPUT] * idm).sum() / idm.sum().clamp(min=1.0)
    l_ood = -(logp[..., 1 - ID_OUTPUT] * oodm).sum() / oodm.sum().clamp(min=1.0)
    return l_id + l_ood


def sample_locations(gt_prob, gamma: float):
    """SSOD's sampling rule: (ID mask, OOD mask) of the locations, from p_j(y|x)."""
    return gt_prob >= gamma, gt_prob <= 1.0 - gamma


def p_id(objective, vectors):
    """P_ID of the OOD head of an SSOD ``objective`` on ``vectors`` (..., C), computed in float32."""
    if objective is None or "ood_head" not in objective.modules:
        raise ValueError(f"the OOD head's outputs are those of SSOD models; this model's objective is "
                         f"{getattr(objective, 'name', None)!r}")
    return F.softmax(objective.modules["ood_head"](vectors.float()), dim=-1)[..., ID_OUTPUT]


#: the feature-file fields of SSOD models (``provides``), computed with the checkpoint's OOD head
OOD_HEAD_FIELDS = (
    register_field(Field("ood_head_global", np.float32, ("N",), "P_ID of the OOD head on the pooled feature "
                         "(SSOD models)", lambda b, _: p_id(b.objective, b.pooled), optional=True)),
    register_field(Field("ood_head_local", np.float32, ("N",), "mean over locations of P_ID of the OOD head "
                         "(SSOD models)", lambda b, _: p_id(b.objective, local_vectors(b.fmap.float())).mean(dim=1),
                         optional=True)),
)


@register("ssod", "SSOD")
class SSOD(Objective):
    """CE + alpha * a class-balanced ID/OOD loss of an extra head on sampled local vectors."""

    params_schema = {
        "gamma": {"description": "Sampling threshold: ID where p_j(y|x) >= gamma, OOD where <= 1 - gamma. "
                                 "0.95 per the public reviews (a re-implementation uses 0.99). At or below 0.5 "
                                 "the two sets overlap.",
                  "type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 1, "default": 0.95},
        "alpha": {"description": "Weight of L_OOD (not published; the re-implementation uses 1). At most 100.",
                  "type": "number", "minimum": 0, "maximum": 100, "default": 1.0},
        "detach_features": {"description": "true: L_OOD trains the OOD head only; false: the backbone too "
                                           "(not stated by the sources; this project's default).",
                            "type": "boolean", "default": False},
        "new_module_lr": new_module_lr_schema("the OOD head g"),
    }
    provides = tuple(f.name for f in OOD_HEAD_FIELDS)
    own_loss = "l_ood"
    stats = {"l_ood": "L_OOD, mean over batches weighted by batch size",
             "frac_id": "fraction of locations sampled as ID", "frac_ood": "fraction sampled as OOD"}

    def build_modules(self, feature_dim, num_classes):
        return {"ood_head": nn.Linear(feature_dim, 2)}

    def loss(self, out: Forward, targets):
        ce = F.cross_entropy(out.logits, targets)
        with torch.no_grad():
            id_mask, ood_mask = sample_locations(local_gt_prob(out.fmap, out.weight, out.bias, targets),
                                                 self.params["gamma"])
        z = local_vectors(out.fmap.float())
        if self.params["detach_features"]:
            z = z.detach()
        l_ood = balanced_ood_loss(self.modules["ood_head"](z), id_mask, ood_mask)
        n = targets.shape[0]
        sums = {"l_ood": l_ood.detach() * n, "id_locations": id_mask.sum().float(),
                "ood_locations": ood_mask.sum().float(),
                "sampled_from": float(id_mask.numel())}
        return ce + self.params["alpha"] * l_ood, sums

    def epoch_row(self, sums, n):
        loc = max(sums["sampled_from"], 1.0)
        return {"l_ood": sums["l_ood"] / max(n, 1), "frac_id": sums["id_locations"] / loc,
                "frac_ood": sums["ood_locations"] / loc}

    def collapse(self, row):
        empty = [name for name, key in (("ID (p >= gamma)", "frac_id"), ("OOD (p <= 1 - gamma)", "frac_ood"))
                 if row[key] == 0.0]
        if empty:
            return (f"no location was sampled as {' or '.join(empty)} in the epoch, so the OOD head learns one "
                    f"class only; lower ssod.gamma (now {self.params['gamma']}) or train the CE model longer")
        return None

    def log_line(self, row):
        return (f"L_ood {row['l_ood']:.4f} sampled ID {100 * row['frac_id']:.1f}% "
                f"OOD {100 * row['frac_ood']:.1f}%")
