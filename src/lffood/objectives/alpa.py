"""ALPA, the training objective of MODE (Zhang et al., "From Global to Local: Multi-scale
Out-of-distribution Detection", arXiv 2308.10239; code: JimZAI/MODE-OOD). MODE-F fine-tunes a
pretrained model with L_ALPA alone; its test-time score is CSD (``lffood.scorers.csd``), which
applies to any model.

Attention-based local propagation on the last map z (N views x L locations x C):

* projectors Q, K, V per location: ``Linear(C, C, no bias) -> ReLU -> Linear(C, d, no bias)``;
* for views a and b, ``A_ab = softmax(Q_b K_a^T / sqrt(d)) V_a`` is a aligned to b's locations;
  ``s(a, b) = mean_l cos(V_a[l], A_ba[l]) + mean_l cos(V_b[l], A_ab[l])`` lies in [-2, 2];
* the loss is supervised contrastive over all pairs of the 2B views (each image twice, the views
  ordered all first views, then all second views) with logits ``scale * s``: positives are the
  other views of the same class (the image's own other view included), self-pairs excluded.

The all-pairs similarity is one fused attention call over all (view, location) pairs: its cost grows
as N^2 L^2 d (N = 2B views, L locations) and its memory as N^2 L d. On a CPU this is the most
expensive objective by far (docs/methods.md gives the figures); the embedded benchmark uses a small d.

Degenerate batches: every anchor has at least its own other view as a positive, so a class that
appears once in the batch still contributes (its two views attract); anchors without positives
(impossible with two views) would contribute 0. With ``ce_weight: 0`` (MODE-F) the classifier head
is not trained: the head's logits, the logit-based scores and the ID accuracy of such a model are
those of a stale head (MODE uses CSD only), and the accuracy guard is replaced by a check that the
similarities do not collapse to one value.

The projectors start from a random initialisation: ``new_module_lr`` gives them a learning rate of
their own (null: the stage's; MODE's code trains them at the network's rate, 0.1 on CIFAR).

Usage (config; MODE: d = 80, scale 10)::

    alpa: {dim: 80, scale: 10.0, ce_weight: 0.0, new_module_lr: null}
    variants:
      mode: {objective: alpa, parent: ce, label: MODE-F, scorer: csd}
"""

from __future__ import annotations

import math

from ..checks import Issue
from ..local import local_vectors
from .base import F, Forward, Objective, new_module_lr_schema, nn, register, torch


def projector(dim: int, out: int):
    return nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(inplace=True), nn.Linear(dim, out, bias=False))


def alpa_similarity(q, k, v, eps: float = 1e-8):
    """s(a, b) for every pair of the N views: ``q``, ``k``, ``v`` are (N, L, d); returns (N, N).

    One fused attention call (``scaled_dot_product_attention``, batched over a): the queries of every
    view's locations attend over view a's locations, giving ``A_ab`` for every b at once; no N x N x
    L x L attention matrix is kept in memory, and the same call runs the fused CPU and GPU kernels."""
    n, l, d = q.shape
    queries = q.reshape(1, 1, n * l, d).expand(n, 1, n * l, d)  # the same queries for every a
    aligned = F.scaled_dot_product_attention(queries, k.unsqueeze(1), v.unsqueeze(1)).view(n, n, l, d)
    # cos(V_b[l], A_ab[l]) = <A_ab[l], V_b[l] / |V_b[l]|> / |A_ab[l]|, (a, b, l)
    cos = (aligned * F.normalize(v, dim=-1, eps=eps).unsqueeze(0)).sum(-1) / aligned.norm(dim=-1).clamp_min(eps)
    c = cos.mean(-1)  # c[a, b] = mean_l cos(V_b[l], A_ab[l])
    return c + c.transpose(0, 1)


def supcon_loss(logits, labels):
    """Supervised contrastive loss over all pairs (Khosla et al., 2020) with the given pair logits:
    per anchor, minus the mean log-probability of its positives (same label, not itself) among all
    other samples; mean over anchors that have a positive. Masked reductions only."""
    n = logits.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    posf = pos.to(log_prob.dtype)
    n_pos = posf.sum(1)
    per_anchor = -(log_prob.masked_fill(~pos, 0.0) * posf).sum(1) / n_pos.clamp(min=1.0)
    has_pos = (n_pos > 0).to(log_prob.dtype)
    return (per_anchor * has_pos).sum() / has_pos.sum().clamp(min=1.0)


@register("alpa", "ALPA (MODE)")
class ALPA(Objective):
    """Supervised contrastive loss on attention-aligned local similarities of two views per image."""

    params_schema = {
        "dim": {"description": "Projection dimension d of Q, K, V (MODE: 80); at most the feature dimension C "
                           "(checked against the benchmark's model).", "type": "integer", "minimum": 1,
                "default": 80},
        "scale": {"description": "Inverse temperature: pair logits = scale * s(a, b), s in [-2, 2] (MODE: 10).",
                  "type": "number", "exclusiveMinimum": 0, "maximum": 1000, "default": 10.0},
        "ce_weight": {"description": "Weight of a CE term added to L_ALPA; MODE-F trains with L_ALPA alone (0).",
                      "type": "number", "minimum": 0, "maximum": 100, "default": 0.0},
        "new_module_lr": new_module_lr_schema("the projectors Q, K, V"),
    }
    two_views = True
    own_loss = "alpa"
    stats = {"alpa": "L_ALPA", "sim_pos": "mean s over positive pairs", "sim_neg": "mean s over negative pairs"}

    @classmethod
    def check(cls, params, facts=None):
        """``dim`` at most the feature dimension of the benchmark's model (Q, K, V project C features)."""
        issues = super().check(params, facts)
        c = facts.feature_dim if facts is not None else None
        if not issues and c is not None and params.get("dim", cls.defaults()["dim"]) > c:
            issues.append(Issue("dim", f"{params.get('dim', cls.defaults()['dim'])} is larger than the feature "
                                       f"dimension {c} of model.arch '{facts.arch}': Q, K and V project the C "
                                       f"features to d; use at most {c} (MODE: 80 of 512).", ("feature_dim",)))
        return issues

    def __init__(self, params=None, *, feature_dim: int, num_classes: int):
        super().__init__(params, feature_dim=feature_dim, num_classes=num_classes)
        self.accuracy_guard = self.params["ce_weight"] > 0

    def build_modules(self, feature_dim, num_classes):
        d = self.params["dim"]
        return {"query": projector(feature_dim, d), "key": projector(feature_dim, d), "value": projector(feature_dim, d)}

    def loss(self, out: Forward, targets):
        z = local_vectors(out.fmap.float())
        m = self.modules
        s = alpa_similarity(m["query"](z), m["key"](z), m["value"](z))
        l_alpa = supcon_loss(self.params["scale"] * s, targets)
        loss = l_alpa
        if self.params["ce_weight"]:
            loss = loss + self.params["ce_weight"] * F.cross_entropy(out.logits, targets)
        n = targets.shape[0]
        with torch.no_grad():
            same = (targets[:, None] == targets[None, :]).float()
            off = 1.0 - torch.eye(n, device=s.device)
            pos, neg = same * off, (1.0 - same)
            sums = {"alpa": l_alpa.detach() * n, "sim_pos": (s * pos).sum() / pos.sum().clamp(min=1.0) * n,
                    "sim_neg": (s * neg).sum() / neg.sum().clamp(min=1.0) * n}
        return loss, sums

    def collapse(self, row):
        if abs(row["sim_pos"] - row["sim_neg"]) < 1e-3:
            return (f"the local similarities collapsed to one value (positive pairs {row['sim_pos']:.4f}, "
                    f"negative {row['sim_neg']:.4f}); lower the learning rate or alpa.scale")
        return None

    def log_line(self, row):
        return f"L_alpa {row['alpa']:.4f} s pos/neg {row['sim_pos']:.3f}/{row['sim_neg']:.3f}"
