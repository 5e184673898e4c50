"""SSD+: supervised contrastive training (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020)
scored with one Gaussian on the encoder's features (Sehwag et al., "SSD: A Unified Framework for
Self-Supervised Outlier Detection", ICLR 2021, https://arxiv.org/abs/2103.12051; code:
inspire-group/SSD, ``train.py --training-mode SupCon``, ``losses.py``, ``trainers.py``, ``models.py``).

* Two views per image (``two_views``: the loop feeds all first views, then all second views, labels
  repeated, as SSD's ``trainers.supervised`` concatenates them).
* z = normalize(MLP(h)), h the pooled penultimate feature (C), MLP ``Linear(C, C) -> ReLU ->
  Linear(C, 128)`` with biases (SSD's ``SSLResNet`` head, ``models.py``): an objective module,
  saved with the checkpoint, used by the loss only.
* L = -(tau / tau_base) (1/2B) sum_i (1/|P(i)|) sum_{p in P(i)} log[exp(z_i.z_p / tau) /
  sum_{a != i} exp(z_i.z_a / tau)] over the 2B views: positives P(i) are the other views of i's
  class (i's own other view included, i itself excluded), the denominator runs over every view but i
  (SupContrast's ``SupConLoss``, contrast_mode "all", as SSD's ``losses.py`` copies it).
  tau = 0.5 (SSD's ``train.py`` default), tau_base = 0.07 (``losses.py``): the loss is scaled by
  tau / 0.07 = 7.14. CIDER's ``--loss supcon`` runs the same loss with tau = 0.1 (its CIFAR and
  ImageNet-100 pipeline, ``cider:train_cider.py``); set ``ssd_plus.temperature: 0.1`` for that one.
* Degenerate batches: a class that appears once in the batch still has its image's other view as
  its positive. An anchor without any positive (impossible with two views) contributes 0 and still
  counts in the mean over the 2B anchors: SupContrast's later fix of the NaN (0/0) that SSD's copy of
  the loss gives there (``mask_pos_pairs`` clamped to 1). Masked reductions only: no host sync.
* No cross-entropy: the linear head is not trained (``accuracy_guard = False``). Its logits, the
  logit-based post-hoc scores (MSP, ODIN, energy, ReAct, DICE, ViM...) and the ID accuracy of an
  SSD+ model are those of a stale head: the parent's (fine-tuned from CE), or a random one (trained
  from scratch). SSD+'s own score is ``lffood.scorers.ssd`` (Mahalanobis distance to one Gaussian of
  the standardised, L2-normalised penultimate features), which applies to SSD+ models only; KNN and
  Mahalanobis (features only) are meaningful too. The collapse check replaces the accuracy guard:
  positive and negative pairs with the same mean cosine similarity in z.
* State: none besides the MLP (no queue, no prototypes). The MLP starts from a random
  initialisation; ``new_module_lr`` gives it a rate of its own (null: the stage's; SSD trains it at
  the network's rate).

Official recipes (SSD ``train.py``; CIFAR-10 and CIFAR-100 alike): CIFAR ResNet-50, 500 epochs,
batch 512 images (two views each), SGD lr 0.5, momentum 0.9, weight decay 1e-4, no Nesterov, cosine
per step down to 1e-4 (optional 10 warm-up epochs); two views of RandomResizedCrop(32, 0.2-1),
flip, ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale p 0.2. tau 0.5 on both CIFARs. SSD
has no ImageNet-100 recipe; CIDER's SupCon variant there uses tau 0.1 and RandomResizedCrop(224,
0.4-1) (``cider:util.py``). The project's shortened recipes: config.yaml, and docs/methods.md says why.

Usage (config)::

    ssd_plus: {temperature: 0.5, base_temperature: 0.07, feat_dim: 128, new_module_lr: null}
    variants:
      ssd_plus: {objective: ssd_plus, parent: ce, label: SSD+, scorer: ssd}
"""

from __future__ import annotations

from .base import F, Forward, Objective, new_module_lr_schema, nn, projection_head, register, torch


def supcon_loss(z, labels, temperature: float, base_temperature: float):
    """SupCon over all anchors (SupContrast's ``SupConLoss``, contrast_mode "all", with its
    no-positive fix): ``z`` (N, d) unit vectors (every view of the batch), ``labels`` (N,).

    Per anchor i: minus the mean over its positives p (same label, p != i) of
    ``log softmax_{a != i}(z_i.z_a / tau)[p]``, times ``tau / base_temperature``; the mean over all N
    anchors, an anchor without positives counting 0. Masked reductions only (no host sync)."""
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    posf = pos.to(log_prob.dtype)
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1) / posf.sum(1).clamp(min=1.0)
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()


@register("ssd_plus", "SSD+")
class SupCon(Objective):
    """Supervised contrastive loss on normalize(MLP(pooled features)) of two views per image; no CE."""

    params_schema = {
        "temperature": {"description": "Temperature tau of the pair logits z_i.z_a / tau (SSD's train.py: 0.5 on "
                                       "both CIFARs; CIDER's SupCon variant: 0.1).",
                        "type": "number", "exclusiveMinimum": 0, "maximum": 10, "default": 0.5},
        "base_temperature": {"description": "The loss is multiplied by temperature / base_temperature (SupContrast's "
                                            "losses.py, as SSD copies it: 0.07).",
                             "type": "number", "exclusiveMinimum": 0, "maximum": 10, "default": 0.07},
        "feat_dim": {"description": "Output dimension of the projection MLP C -> C -> ReLU -> feat_dim (SSD: 128).",
                     "type": "integer", "minimum": 1, "maximum": 65536, "default": 128},
        "new_module_lr": new_module_lr_schema("the projection MLP"),
    }
    two_views = True
    accuracy_guard = False  # no CE: the linear head is not trained
    own_loss = "supcon"
    stats = {"supcon": "L_SupCon (scaled by tau / base_temperature)",
             "sim_pos": "mean cosine similarity of z over positive pairs",
             "sim_neg": "mean cosine similarity of z over negative pairs"}

    def build_modules(self, feature_dim, num_classes):
        return {"head": projection_head(feature_dim, self.params["feat_dim"])}

    def loss(self, out: Forward, targets):
        # the loop calls the loss outside autocast: the MLP and the loss run in float32
        z = F.normalize(self.modules["head"](out.pooled.float()), dim=1)
        loss = supcon_loss(z, targets, self.params["temperature"], self.params["base_temperature"])
        n = targets.shape[0]
        with torch.no_grad():
            s = z @ z.T
            same = (targets[:, None] == targets[None, :]).float()
            pos, neg = same * (1.0 - torch.eye(n, device=s.device)), 1.0 - same
            sums = {"supcon": loss.detach() * n,
                    "sim_pos": (s * pos).sum() / pos.sum().clamp(min=1.0) * n,
                    "sim_neg": (s * neg).sum() / neg.sum().clamp(min=1.0) * n}
        return loss, sums

    def collapse(self, row):
        if abs(row["sim_pos"] - row["sim_neg"]) < 1e-3:
            return (f"the projections z collapsed: positive and negative pairs have the same mean cosine similarity "
                    f"({row['sim_pos']:.4f}, {row['sim_neg']:.4f})")
        return None

    def collapse_advice(self):
        return ("Lower the learning rate, or raise ssd_plus.temperature (docs/troubleshooting.md, 'When training collapses'); the "
                "classification accuracy of SSD+ models is that of an untrained head and is not checked.")

    def log_line(self, row):
        return f"L_supcon {row['supcon']:.4f} cos pos/neg {row['sim_pos']:.3f}/{row['sim_neg']:.3f}"
