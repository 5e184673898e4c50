"""CSI, labelled version (Tack et al., "CSI: Novelty Detection via Contrastive Learning on Distributionally
Shifted Instances", NeurIPS 2020, https://arxiv.org/abs/2007.08176; code: alinlab/CSI, modes
``sup_simclr_CSI`` then ``sup_CSI_linear``; facts: ``../shared/reference/baselines.md`` section 5).

Two objectives, trained one after the other (the second from the first's checkpoint):

``csi`` (stage 1, ``training/sup/sup_simclr_CSI.py``): each image's two views (the loop's two augmented
views; official: two random-hflip copies) are rotated by k * 90 degrees, k = 0..3, giving 8B images
ordered [view 1 at k = 0, 1, 2, 3 | view 2 at k = 0, 1, 2, 3] (blocks of B), with the joint labels
y + C k: a rotated copy is a negative of its unrotated image. z = normalize(simclr_layer(h)),
simclr_layer = Linear(d, d) -> ReLU -> Linear(d, 128) on the pooled features h, and the loss is the
official ``Supervised_NT_xent`` (``training/contrastive_loss.py``) with tau = 0.07 (hard-coded there;
a parameter here, default 0.07): with s_ij = z_i . z_j and M the same-joint-label mask,

    L = (1/8B) sum_i sum_j M_ij / (sum_a M_ia + 1e-8) * -log(p_ij + 1e-8),
    p_ij = exp(s_ij/tau) [i != j] / sum_{a != i} exp(s_ia/tau)

(after subtracting each row's max, as the code does). M includes i = j, as in the official code: p_ii = 0,
so the diagonal adds the constant (1/8B) sum_i -log(1e-8) / |P(i)| (|P(i)| = i's positives including itself;
no gradient) and every true positive is weighted 1/|P(i)| instead of SupCon's 1/(|P(i)| - 1).
``sup_simclr_CSI`` has **no** shift-classification loss (the rotation CE term belongs to the unlabelled
``simclr_CSI``; its code asserts sim_lambda = 1 and logs the classification loss as 0). What it adds is a
linear evaluation: the classifier ``model.linear`` is trained by CE on the **detached** penultimate features
of the unrotated copies of both views (``linear_eval``, default true), which never reaches the encoder; here
it is the model's head, at the stage's rate in the one optimiser (official: its own Adam, lr 1e-3). So the
stage-1 checkpoint has a working classifier, and stage 2 continues it as the official code does.

``csi_linear`` (stage 2, ``training/sup/sup_CSI_linear.py``): the encoder is frozen (``freeze_backbone``:
network in eval mode, no gradient); the batch is the 4 rotations of each image, [k = 0 | 1 | 2 | 3]; three
linear heads on the pooled features are trained by CE and summed: the model's head (C classes) on the k = 0
copies, a shift head Linear(d, 4) on k and a joint head Linear(d, 4C) on y + C k. Official: one SGD
optimiser per head, all at lr 0.1, momentum 0, wd 1e-6, x0.1 at 60/75/90% of 100 epochs; the heads' parameters
are disjoint, so one SGD optimiser over the summed losses makes the same updates as three with one learning
rate (the loop's one optimiser: a deviation only in form). Its own score (``provides``: the field
``csi_joint_score`` below; scorer ``csi``) is CSI's ``baseline_marginalized`` (``evals/evals.py``):
max_y softmax((1/4) sum_k joint(rot_k(x))[k C + y]), four forward passes per image.

Labels. The loop computes its own CE and accuracy of the model's head, and hooks see the labels, so
``transform_batch`` returns the **class** labels of the transformed batch (repeated per rotation and view);
each ``loss`` rebuilds the rotation index and the joint labels from the fixed layout
(:func:`rotation_index`, :func:`joint_labels`). The loop's ``acc``/``ce`` columns are then the head's on all
rotated copies; ``acc_0deg`` is the head's accuracy on the unrotated copies (CSI's classifier).

Deviations, all stated in ``/tmp/recipes/csi.md``: the augmentation (SimCLR's crop, jitter, greyscale) is the
stage's ``augment``, drawn once per view before the rotations (official: drawn independently for each of the
8B rotated copies, after rotating) and without the hue jitter; no LARS (the project's optimisers are SGD and
AdamW); under DDP the contrastive loss is per process (official: gathered over the GPUs).

Usage (config; CIFAR-10, CIFAR-100 and ImageNet take the same values: tau 0.07 is hard-coded, no per-dataset
setting exists)::

    csi: {tau: 0.07, simclr_dim: 128, linear_eval: true, new_module_lr: null}
    csi_linear: {new_module_lr: null}
    variants:
      csi_pre: {objective: csi, label: CSI (stage 1), scorer: msp, stage_overrides: {...}}
      csi: {objective: csi_linear, parent: csi_pre, label: CSI, scorer: csi, stage_overrides: {...}}
"""

from __future__ import annotations

import numpy as np

from ..fields import Field, register_field
from .base import F, Forward, Objective, new_module_lr_schema, nn, projection_head, register, torch

#: the shifts: rotations by k * 90 degrees, k = 0..3 (CSI's ``rotation`` shift)
ROTATIONS = 4
#: ``Supervised_NT_xent``'s eps (inside the log and in the mask's normalisation)
EPS = 1e-8


# ----------------------------------------------------------------------------- rotations and labels
def _memory_format(x):
    return (torch.channels_last if x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)


def rotate(x, k: int):
    """``torch.rot90(x, k, (2, 3))`` of an NCHW batch, contiguous in ``x``'s memory format."""
    return torch.rot90(x, k, (2, 3)).contiguous(memory_format=_memory_format(x))


def rotations(x):
    """The 4 rotations of the NCHW batch ``x``, [k = 0 | 1 | 2 | 3] (CSI's order), contiguous in the memory
    format of ``x`` (channels-last batches stay channels-last). Square images only."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"CSI rotates images by 90 degrees: they must be square, got {tuple(x.shape[-2:])}")
    fmt = _memory_format(x)
    return torch.cat([torch.rot90(x, k, (2, 3)) for k in range(ROTATIONS)]).contiguous(memory_format=fmt)


def rotation_index(n: int, views: int, device=None):
    """The rotation k of each of the ``n`` images of a transformed batch: ``views`` groups, each the 4
    rotations of a block of n / (4 views) images ([k = 0 | 1 | 2 | 3] per view)."""
    if n % (ROTATIONS * views):
        raise ValueError(f"a batch of {n} images is not {views} view(s) x {ROTATIONS} rotations")
    block = n // (ROTATIONS * views)
    return torch.arange(n, device=device) // block % ROTATIONS


def joint_labels(y, num_classes: int, views: int):
    """Joint labels y + C k of a transformed batch whose class labels are ``y`` (layout: :func:`rotation_index`)."""
    return y + num_classes * rotation_index(y.shape[0], views, y.device)


# ----------------------------------------------------------------------------- losses
def supervised_nt_xent(sim, labels, tau: float):
    """CSI's ``Supervised_NT_xent`` on the similarity matrix ``sim`` (n, n) of unit vectors with ``labels``
    (n,): -log(p_ij + eps) weighted by the row-normalised same-label mask (i = j included, p_ii = 0),
    summed and divided by n. Masked reductions only."""
    n = sim.shape[0]
    sim = sim - sim.max(dim=1, keepdim=True).values.detach()
    off = 1.0 - torch.eye(n, device=sim.device, dtype=sim.dtype)
    e = torch.exp(sim / tau) * off
    loss_matrix = -torch.log(e / (e.sum(dim=1, keepdim=True) + EPS) + EPS)
    mask = (labels[:, None] == labels[None, :]).to(sim.dtype)
    mask = mask / (mask.sum(dim=1, keepdim=True) + EPS)
    return (mask * loss_matrix).sum() / n


@register("csi", "CSI")
class CSI(Objective):
    """Stage 1 of labelled CSI: supervised contrastive loss over the joint (class, rotation) labels of 2 views x 4
    rotations per image, plus (``linear_eval``) CE of the head on the detached features of the unrotated copies."""

    params_schema = {
        "tau": {"description": "Temperature of the contrastive loss (CSI hard-codes 0.07 for sup_simclr_CSI, on every "
                               "dataset).", "type": "number", "exclusiveMinimum": 0, "maximum": 10, "default": 0.07},
        "simclr_dim": {"description": "Output dimension of the projection head simclr_layer (CSI: 128).",
                       "type": "integer", "minimum": 1, "maximum": 8192, "default": 128},
        "linear_eval": {"description": "Train the model's head by CE on the detached pooled features of the unrotated "
                                       "copies (CSI's linear evaluation during sup_simclr_CSI; it never reaches the "
                                       "encoder). false: the head keeps its initialisation.",
                        "type": "boolean", "default": True},
        "new_module_lr": new_module_lr_schema("the projection head simclr_layer"),
    }
    two_views = True
    accuracy_guard = False
    own_loss = "supcon"
    stats = {"supcon": "the contrastive loss (official form, with its constant diagonal term)",
             "sim_pos": "mean cosine similarity of positive pairs (same joint label, i != j)",
             "sim_neg": "mean cosine similarity of negative pairs",
             "acc_0deg": "accuracy of the head on the unrotated copies"}

    def build_modules(self, feature_dim, num_classes):
        return {"simclr_layer": projection_head(feature_dim, self.params["simclr_dim"])}

    def transform_batch(self, x, y, gen):
        """[view 1 | view 2] (B each) -> [rotations of view 1 | rotations of view 2] (8B), class labels to match."""
        b = x.shape[0] // 2
        out = torch.cat([rotations(x[:b]), rotations(x[b:])]).contiguous(memory_format=_memory_format(x))
        return out, torch.cat([y[:b].repeat(ROTATIONS), y[b:].repeat(ROTATIONS)])

    def loss(self, out: Forward, targets):
        n = targets.shape[0]
        joint = joint_labels(targets, self.num_classes, out.views)
        z = F.normalize(self.modules["simclr_layer"](out.pooled.float()), dim=1)
        sim = z @ z.t()
        l_sim = supervised_nt_xent(sim, joint, self.params["tau"])
        # the unrotated copies of both views (k = 0): rows [0, B) and [4B, 5B)
        b = n // (2 * ROTATIONS)
        h0 = torch.cat([out.pooled[:b], out.pooled[ROTATIONS * b:(ROTATIONS + 1) * b]]).float().detach()
        y0 = torch.cat([targets[:b], targets[ROTATIONS * b:(ROTATIONS + 1) * b]])
        logits0 = F.linear(h0, out.weight.float(), out.bias.float())
        loss = l_sim
        if self.params["linear_eval"]:
            loss = loss + F.cross_entropy(logits0, y0)
        with torch.no_grad():
            s = sim.detach()
            same = (joint[:, None] == joint[None, :]).to(s.dtype)
            pos = same * (1.0 - torch.eye(n, device=s.device, dtype=s.dtype))
            neg = 1.0 - same
            sums = {"supcon": l_sim.detach() * n,
                    "sim_pos": (s * pos).sum() / pos.sum().clamp(min=1.0) * n,
                    "sim_neg": (s * neg).sum() / neg.sum().clamp(min=1.0) * n,
                    "correct_0deg": (logits0.argmax(1) == y0).sum().float(), "seen_0deg": float(2 * b)}
        return loss, sums

    def epoch_row(self, sums, n):
        return {"supcon": sums["supcon"] / max(n, 1), "sim_pos": sums["sim_pos"] / max(n, 1),
                "sim_neg": sums["sim_neg"] / max(n, 1),
                "acc_0deg": sums["correct_0deg"] / max(sums["seen_0deg"], 1.0)}

    def collapse(self, row):
        if abs(row["sim_pos"] - row["sim_neg"]) < 1e-3:
            return (f"the projected features collapsed: positive and negative pairs have the same mean cosine "
                    f"similarity ({row['sim_pos']:.4f} vs {row['sim_neg']:.4f})")
        return None

    def collapse_advice(self):
        return "Lower the learning rate or raise csi.tau (docs/troubleshooting.md, 'When training collapses')."

    def log_line(self, row):
        return (f"L_supcon {row['supcon']:.4f} cos pos/neg {row['sim_pos']:.3f}/{row['sim_neg']:.3f} "
                f"acc(0 deg) {100 * row['acc_0deg']:.1f}%")


# ----------------------------------------------------------------------------- stage 2 and its score
def _pooled_of(batch, x):
    """The pooled features of the model on ``x`` through ``batch.forward`` (the extraction's mixed precision):
    the input of the linear head, caught by a forward hook."""
    seen = []
    handle = batch.model.head.register_forward_hook(lambda m, inputs, output: seen.append(inputs[0]))
    try:
        batch.forward(x)
    finally:
        handle.remove()
    return seen[-1]


def joint_score(batch, _state=None):
    """CSI's ``baseline_marginalized`` score of the batch's images: max_y softmax((1/4) sum_k
    joint(rot_k(x))[k C + y]). k = 0 reuses the batch's own forward pass; k = 1..3 run the model again."""
    obj = batch.objective
    if obj is None or "joint" not in getattr(obj, "modules", {}):
        raise ValueError(f"the CSI joint score needs the joint head of a csi_linear model; this model's objective "
                         f"is {getattr(obj, 'name', None)!r}")
    c, head = obj.num_classes, obj.modules["joint"]
    total = head(batch.pooled.float())[:, :c]
    for k in range(1, ROTATIONS):
        total = total + head(_pooled_of(batch, rotate(batch.x, k)).float())[:, k * c:(k + 1) * c]
    return F.softmax(total / ROTATIONS, dim=1).max(dim=1).values


#: the feature-file field of CSI (stage 2) models, computed with the checkpoint's joint head
JOINT_SCORE = register_field(Field(
    "csi_joint_score", np.float32, ("N",), "CSI's score: max_y softmax of the joint head's class-y logits of the "
    "4 rotations, averaged (csi_linear models)", joint_score, optional=True))


@register("csi_linear", "CSI (linear stage)")
class CSILinear(Objective):
    """Stage 2 of labelled CSI: on a frozen encoder, CE of the head (unrotated copies), of a shift head (rotation)
    and of a joint head (class x rotation), summed."""

    params_schema = {"new_module_lr": new_module_lr_schema("the shift and joint heads")}
    freeze_backbone = True
    accuracy_guard = False
    provides = (JOINT_SCORE.name,)
    own_loss = "l_joint"
    stats = {"ce_0deg": "CE of the head on the unrotated copies", "l_shift": "CE of the shift head",
             "l_joint": "CE of the joint head", "acc_0deg": "accuracy of the head on the unrotated copies",
             "acc_shift": "accuracy of the shift head", "acc_joint": "accuracy of the joint head"}

    def build_modules(self, feature_dim, num_classes):
        return {"shift": nn.Linear(feature_dim, ROTATIONS), "joint": nn.Linear(feature_dim, ROTATIONS * num_classes)}

    def transform_batch(self, x, y, gen):
        """B images -> their 4 rotations [k = 0 | 1 | 2 | 3] (4B), class labels to match."""
        return rotations(x), y.repeat(ROTATIONS)

    def loss(self, out: Forward, targets):
        n = targets.shape[0]
        b = n // ROTATIONS
        k = rotation_index(n, 1, targets.device)
        joint = targets + self.num_classes * k
        h = out.pooled.float().detach()
        logits_shift, logits_joint = self.modules["shift"](h), self.modules["joint"](h)
        ce0 = F.cross_entropy(out.logits[:b], targets[:b])
        l_shift = F.cross_entropy(logits_shift, k)
        l_joint = F.cross_entropy(logits_joint, joint)
        with torch.no_grad():
            sums = {"ce_0deg": ce0.detach() * b, "l_shift": l_shift.detach() * n, "l_joint": l_joint.detach() * n,
                    "correct_0deg": (out.logits[:b].detach().argmax(1) == targets[:b]).sum().float(),
                    "correct_shift": (logits_shift.argmax(1) == k).sum().float(),
                    "correct_joint": (logits_joint.argmax(1) == joint).sum().float(), "seen_0deg": float(b)}
        return ce0 + l_shift + l_joint, sums

    def epoch_row(self, sums, n):
        n0 = max(sums["seen_0deg"], 1.0)
        return {"ce_0deg": sums["ce_0deg"] / n0, "l_shift": sums["l_shift"] / max(n, 1),
                "l_joint": sums["l_joint"] / max(n, 1), "acc_0deg": sums["correct_0deg"] / n0,
                "acc_shift": sums["correct_shift"] / max(n, 1), "acc_joint": sums["correct_joint"] / max(n, 1)}

    def collapse(self, row):
        chance = 1.0 / self.num_classes
        if row["acc_0deg"] <= chance and row["acc_joint"] <= chance / ROTATIONS:
            return (f"the heads are at chance on the frozen features (head {100 * row['acc_0deg']:.1f}% on the "
                    f"unrotated images, joint head {100 * row['acc_joint']:.1f}%): check the stage-1 checkpoint")
        return None

    def collapse_advice(self):
        return "Check the parent (stage-1) model, or raise the learning rate of this linear stage."

    def log_line(self, row):
        return (f"CE(0 deg) {row['ce_0deg']:.4f} L_shift {row['l_shift']:.4f} L_joint {row['l_joint']:.4f} "
                f"acc 0deg/shift/joint {100 * row['acc_0deg']:.1f}/{100 * row['acc_shift']:.1f}/"
                f"{100 * row['acc_joint']:.1f}%")
