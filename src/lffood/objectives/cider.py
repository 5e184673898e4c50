"""CIDER (Ming, Sun, Dia & Li, "How to Exploit Hyperspherical Embeddings for Out-of-Distribution
Detection?", ICLR 2023, https://arxiv.org/abs/2203.04450; code: deeplearning-wisc/cider, snapshot
dce8ad3: ``train_cider.py``, ``utils/losses.py`` ``CompLoss`` / ``DisLoss``).

What is implemented, as the official code computes it:

* a projection head on the pooled penultimate features h, ``Linear(C, C) -> ReLU -> Linear(C, 128)``
  (``models/resnet.py``), and z = normalize(head(h)); two augmented views per image (all first
  views, then all second views, labels repeated: ``torch.cat([input[0], input[1]])``);
* class prototypes mu (C x 128, a BUFFER: saved with the checkpoint and the resume state), updated
  by an EMA **sequentially per sample** in batch order, mu_y <- normalize(m mu_y + (1 - m) z_i)
  (``DisLoss.forward``). The update is not detached: the dispersion loss differentiates through the
  chain of updates back to the z's of the batch; the compactness loss uses the updated, detached mu;
* L_comp = -(tau / 0.07) mean_i log softmax_j(z_i . mu_j / tau)[y_i] (``CompLoss``: temperature tau,
  base temperature 0.07, so a factor 1.43 at tau = 0.1);
* L_dis = (tau / 0.1) mean_c log[(1 / (C - 1)) sum_{j != c} exp(mu_c . mu_j / tau)] (``DisLoss``:
  temperature tau, base temperature 0.1, so a factor 1 at tau = 0.1);
* L = w L_comp + L_dis (``train_cider.py``: ``loss = args.w * comp_loss + dis_loss``).

The EMA is a sequential recurrence through a normalisation: each step's norm depends on the
previous prototype, so it has no closed form over a class's samples and cannot be vectorised exactly
without knowing (on the host) how often each class occurs in the batch. It runs as a loop over the
batch on device tensors (:func:`ema_prototypes`), with no host synchronisation; its result and its
gradients equal the official per-sample loop (tests). Cost: about eight small kernels per sample
forward and as many backward (2B samples a step); the official loop also reads each label to the
host (two synchronisations per sample).

Deviations (documented choices):

* **Prototype initialisation.** The official code initialises mu_c once, before training, as the
  normalised mean head feature of class c over the training set under the test transform, with the
  initial model. An objective does not see the dataset, so here each class prototype is initialised
  at the class's first occurrence in training from that sample's (detached) z, and the regular EMA
  step with the same sample follows (so the first occurrence behaves like an init pass followed by
  the update). A buffer ``seen`` records which classes have a prototype. Under the official init
  every class has one from the start; here the classes that have not occurred yet are left out of
  both losses (masked, never NaN): of L_comp's softmax and of L_dis's rows and sums. The official
  code would divide 0/0 for a class missing from its init pass (NaN in every row of L_dis).
* The linear classifier head (``model.head``) gets no loss, as in the official code (``fc`` there is
  trained by nothing; accuracy only): ``accuracy_guard = False``. Post-hoc scorers that read the
  logits (MSP, Energy, ODIN, ...) see an untrained (from scratch) or stale (fine-tuned) head on CIDER
  models; CIDER's own score is KNN on the L2-normalised penultimate features (scorer ``cider_knn``,
  ``lffood.scorers.contrastive_knn``: k = 100 on CIFAR-10, 300 on CIFAR-100 and ImageNet-100).
* Under DDP (torchrun) each process keeps and updates its own prototypes from its share of the batch
  (the official code runs one process, DataParallel).

Official hyperparameters (``scripts/train_cider_*.sh``; baselines.md section 3):

============  ==========  ==========  ==============================================
              CIFAR-10    CIFAR-100   ImageNet-100
============  ==========  ==========  ==============================================
net           ResNet-18   ResNet-34   ResNet-34 pretrained, layer4 + head trained
w             2           1           2
proto_m       0.95        0.5         0.95
tau           0.1         0.1         0.1
epochs / lr   500 / 0.5   500 / 0.5   10 / 0.01 (paper, maintainer); script 20 / 0.005
batch         512         512         512
KNN k         100         300         300
============  ==========  ==========  ==============================================

SGD, Nesterov, momentum 0.9, weight decay 1e-4, cosine to lr x 1e-3 with a 10-epoch warm-up from
1e-3 (batch > 256); SupCon's two-view augmentation (random-resized crop, area 0.2-1; flip; colour
jitter 0.4 p 0.8; grayscale p 0.2).

Usage (config; CIFAR-10)::

    cider: {w: 2.0, proto_m: 0.95, tau: 0.1, proj_dim: 128, new_module_lr: null}
    scorers: {params: {cider_knn: {k: 100}}}
    variants:
      cider: {objective: cider, label: CIDER, scorer: cider_knn, stage_overrides: {epochs: 500, lr: 0.5, ...}}
"""

from __future__ import annotations

from .base import F, Forward, Objective, new_module_lr_schema, nn, projection_head, register, torch

#: CompLoss's base temperature (L_comp's factor is tau / COMP_BASE_TEMPERATURE)
COMP_BASE_TEMPERATURE = 0.07
#: DisLoss's base temperature (L_dis's factor is tau / DIS_BASE_TEMPERATURE)
DIS_BASE_TEMPERATURE = 0.1
#: mean cosine between distinct prototypes above which an epoch counts as collapsed (all z on one point: 1; a
#: random head on CE features: 0.5-0.97; separated classes: about -1 / (C - 1))
COLLAPSED_COSINE = 0.999
#: a logit that takes no part in a softmax (finite: no inf * 0 in any product or gradient)
_MASKED = -1e9


def prototype_state(num_classes: int, dim: int):
    """A module holding the prototype buffers: ``prototypes`` (C, dim) float32 and ``seen`` (C,) bool."""
    state = nn.Module()
    state.register_buffer("prototypes", torch.zeros(num_classes, dim))
    state.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))
    return state


def first_occurrence_init(prototypes, seen, z, labels):
    """``(prototypes, seen)`` after initialising every class that occurs in the batch but has no prototype
    yet (``~seen``) from the detached z of its first occurrence in batch order. Vectorised, no host
    synchronisation (the first position of each class by a scatter-min)."""
    n, c = labels.shape[0], prototypes.shape[0]
    pos = torch.arange(n, device=labels.device)
    first = torch.full((c,), n, dtype=torch.long, device=labels.device).scatter_reduce(0, labels, pos, "amin")
    present = first < n
    init = z.detach().to(prototypes.dtype).index_select(0, first.clamp(max=n - 1))
    fresh = present & ~seen
    return torch.where(fresh[:, None], init, prototypes), seen | present


def ema_prototypes(prototypes, z, labels, m: float):
    """The official per-sample EMA, in batch order: for each i, ``mu_{y_i} <- normalize(m mu_{y_i} + (1 - m) z_i)``.

    Differentiable in ``z`` through the whole chain of updates (as the official in-place updates of a
    buffer are), not in ``prototypes``. A loop over the batch on device tensors: the row index stays
    a device tensor (``index_select`` / ``index_copy``), so no value is read to the host."""
    protos = prototypes.detach()
    for i in range(labels.shape[0]):
        idx = labels[i:i + 1]
        mixed = protos.index_select(0, idx) * m + z[i:i + 1] * (1 - m)
        protos = protos.index_copy(0, idx, F.normalize(mixed, dim=1))
    return protos


def compactness_loss(z, prototypes, labels, seen, tau: float):
    """L_comp = -(tau / 0.07) mean_i log softmax_j(z_i . mu_j / tau)[y_i], over the classes that have a
    prototype (``seen``; every sample's own class has one once the batch has updated the prototypes)."""
    logits = z @ F.normalize(prototypes, dim=1).t() / tau
    logits = torch.where(seen[None, :], logits, torch.full_like(logits, _MASKED))
    log_prob = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return -(tau / COMP_BASE_TEMPERATURE) * log_prob.mean()


def dispersion_loss(prototypes, seen, tau: float):
    """L_dis = (tau / 0.1) mean_c log[(1 / n_c) sum_{j != c, j seen} exp(mu_c . mu_j / tau)] over the seen
    classes c that have at least one other seen class (n_c of them); 0 when there is none. Classes
    without a prototype take no part (masked: no NaN from a zero prototype)."""
    c = prototypes.shape[0]
    pair = seen[:, None] & seen[None, :] & ~torch.eye(c, dtype=torch.bool, device=prototypes.device)
    logits = prototypes @ prototypes.t() / tau
    logits = torch.where(pair, logits, torch.full_like(logits, _MASKED))
    others = pair.sum(1)
    rows = torch.logsumexp(logits, dim=1) - others.clamp(min=1).to(logits.dtype).log()
    valid = (seen & (others > 0)).to(logits.dtype)
    return (tau / DIS_BASE_TEMPERATURE) * (rows * valid).sum() / valid.sum().clamp(min=1.0)


def prototype_cosine(prototypes, seen):
    """Mean cosine between distinct seen prototypes (0 with fewer than two): 1 means they collapsed."""
    c = prototypes.shape[0]
    pair = (seen[:, None] & seen[None, :] & ~torch.eye(c, dtype=torch.bool, device=prototypes.device)).float()
    p = F.normalize(prototypes.detach(), dim=1)
    return ((p @ p.t()) * pair).sum() / pair.sum().clamp(min=1.0)


def cider_terms(z, labels, state, m: float, tau: float):
    """The shared part of CIDER and NPOS: updates ``state``'s prototype buffers (first-occurrence init,
    then the sequential EMA) and returns ``(L_comp, L_dis, updated prototypes detached)``."""
    protos, seen = first_occurrence_init(state.prototypes, state.seen, z, labels)
    updated = ema_prototypes(protos, z.float(), labels, m)
    fixed = updated.detach()
    with torch.no_grad():
        state.prototypes.copy_(fixed)
        state.seen.copy_(seen)
    return compactness_loss(z.float(), fixed, labels, seen, tau), dispersion_loss(updated, seen, tau), fixed


PROTO_SCHEMA = {
    "tau": {"description": "Temperature tau of both losses (official 0.1 on every dataset); L_comp is scaled by "
                           "tau / 0.07 and L_dis by tau / 0.1 (the official base temperatures).",
            "type": "number", "exclusiveMinimum": 0, "maximum": 10, "default": 0.1},
    "proto_m": {"description": "Prototype EMA momentum m: mu <- normalize(m mu + (1 - m) z), per sample. Official: "
                               "0.95 on CIFAR-10 and ImageNet-100, 0.5 on CIFAR-100.",
                "type": "number", "minimum": 0, "maximum": 1, "default": 0.95},
    "proj_dim": {"description": "Output dimension of the projection head dim -> dim -> ReLU -> proj_dim "
                                "(official feat_dim 128).",
                 "type": "integer", "minimum": 2, "maximum": 4096, "default": 128},
}


class _PrototypeObjective(Objective):
    """What CIDER and NPOS share: two views, the projection head, the prototype buffers, the collapse check."""

    two_views = True
    accuracy_guard = False  # the linear head gets no loss (official): its accuracy says nothing

    def head_modules(self, feature_dim: int, num_classes: int) -> dict:
        d = self.params["proj_dim"]
        return {"head": projection_head(feature_dim, d), "state": prototype_state(num_classes, d)}

    def embed(self, out: Forward):
        """z = normalize(head(h)) of the pooled features (float32, also under mixed precision)."""
        return F.normalize(self.modules["head"](out.pooled.float()), dim=1)

    def collapse(self, row):
        if row.get("proto_cos", 0.0) > COLLAPSED_COSINE:
            return (f"the class prototypes collapsed onto one direction (mean cosine between prototypes "
                    f"{row['proto_cos']:.4f}); lower the learning rate or raise {self.name}.tau")
        return None

    def collapse_advice(self) -> str:
        return (f"Lower the learning rate (stage lr; the official recipes warm up for 10 epochs) or raise "
                f"{self.name}.tau (docs/troubleshooting.md, 'When training collapses').")


@register("cider", "CIDER")
class CIDER(_PrototypeObjective):
    """Compactness to EMA class prototypes plus dispersion between them, on a projection head's hypersphere."""

    params_schema = {
        "w": {"description": "Weight of L_comp: L = w L_comp + L_dis. Official: 2 on CIFAR-10 and ImageNet-100, "
                             "1 on CIFAR-100 (docs/methods.md).",
              "type": "number", "minimum": 0, "maximum": 100, "default": 2.0},
        **PROTO_SCHEMA,
        "new_module_lr": new_module_lr_schema("the projection head"),
    }
    own_loss = "l_comp"
    stats = {"l_comp": "L_comp (compactness)", "l_dis": "L_dis (dispersion)",
             "proto_cos": "mean cosine between distinct class prototypes"}

    def build_modules(self, feature_dim, num_classes):
        return self.head_modules(feature_dim, num_classes)

    def loss(self, out: Forward, targets):
        p = self.params
        z = self.embed(out)
        l_comp, l_dis, protos = cider_terms(z, targets, self.modules["state"], p["proto_m"], p["tau"])
        n = targets.shape[0]
        with torch.no_grad():
            sums = {"l_comp": l_comp.detach() * n, "l_dis": l_dis.detach() * n,
                    "proto_cos": prototype_cosine(protos, self.modules["state"].seen) * n}
        return p["w"] * l_comp + l_dis, sums

    def log_line(self, row):
        return f"L_comp {row['l_comp']:.4f} L_dis {row['l_dis']:.4f} proto cos {row['proto_cos']:.3f}"
