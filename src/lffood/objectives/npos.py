"""NPOS (Tao, Du, Zhu & Li, "Non-parametric Outlier Synthesis", ICLR 2023,
https://arxiv.org/abs/2303.02966; code: deeplearning-wisc/npos, snapshot 583c06d,
``training_from_scratch/train_CIFAR10.py`` / ``train_CIFAR100.py``, ``KNN.py``, ``losses.py``,
``models/resnet_outliers.py``).

What is implemented, as the official CIFAR code computes it:

* CIDER's two losses on a projection head (``lffood.objectives.cider``: z = normalize(head(h)),
  head ``C -> C -> ReLU -> 128``, EMA prototypes updated per sample, L_comp with factor tau / 0.07,
  L_dis with factor tau / 0.1), two views per image;
* a per-class FIFO queue (a BUFFER, ``queue_size`` per class) of the detached pooled penultimate
  features h of the batch (both views), always maintained;
* once every queue is full and from epoch ``start_epoch`` on (``start_epoch_KNN``), outlier
  synthesis per class c (``KNN.generate_outliers``): with Q_c the L2-normalised queue,
  d_K(x) = squared L2 distance of x / |x| to its K-th nearest neighbour in Q_c (self included, an
  exact search: ``torch.topk`` on the similarities, for faiss' ``IndexFlatL2``);
  the ``select`` queue points with the largest d_K are the boundary; ``pick_nums`` of them are drawn
  at random; around each, ``sample_from`` Gaussian candidates b + cov_mat * eps_r in the raw feature
  space (eps ~ N(0, I), shared by all classes and boundary points in a step, as the official code
  draws one set per step); of each boundary point's candidates the ``id_points_num`` with the
  largest d_K are kept: C x pick_nums x id_points_num outliers, detached;
* an outlier MLP on the pooled features, ``Linear(C, 128) -> ReLU -> Linear(128, 1)``, and
  L_open = BCEWithLogits over [mlp(h_batch) labelled 1, mlp(outliers) labelled 0] (mean over both
  sets together). The ID term trains the backbone; the outliers come from the detached queue, so the
  outlier term trains the MLP only;
* L = w_disp L_dis + w_comp L_comp + beta L_open (``train_CIFAR10.py``).

Before ``start_epoch`` no synthesis runs and L_open is exactly 0; from ``start_epoch`` on, while a queue
is not yet full, synthesis runs on the partly filled queues (finite: empty slots are zero vectors)
and L_open is masked to exactly 0 on the device (``torch.where``: no host synchronisation). Before
``start_epoch`` the MLP gets no gradient and stays as initialised, as in the official code (the training
loop gives a parameter whose first gradient comes late a zero momentum buffer: torch's own first step).

Official defects (baselines.md section 2), implemented as the paper intends:

* (a) the official loop re-zeroes the queues (``data_dict``) every epoch while their counters stay
  "full", so early-epoch synthesis runs on a partly zero queue: here the queues are never re-zeroed;
* (b) ``KNN_dis_search_distance`` ranks the candidates with ``view(length, -1)`` but indexes them
  boundary-point-major, so for pick_nums > 1 ranking and returned points do not correspond: here
  each boundary point's own candidates are ranked (``view(pick_nums, sample_from)``).

Other choices: the queue is a ring buffer per class, so a class that is full keeps its newest
``queue_size`` features while other classes still fill (the official queue only starts its FIFO once
every class is full; the same set once all are full). The queue holds the raw pooled features, as the
official ``data_dict`` does (they are L2-normalised for the k-NN search only, and the candidates are
drawn around the raw boundary points, where the MLP's ID inputs live); ``normalize_features: true``
instead keeps L2-normalised features in the queue and feeds the MLP L2-normalised batch features.
Prototypes are initialised at each class's first occurrence (CIDER's module docstring; the official
NPOS code initialises them from the *test* loader, defect (d)). The MLP's own learning rate
(official ``lr x 0.1``) is overwritten by the official schedule each epoch, so it trains at the
network's rate: ``new_module_lr: null``. Randomness (which boundary points, the Gaussian noise) comes
from torch's global generator on the device, which the resume state saves and restores.

The linear head gets no loss (official ``fc``: accuracy only): ``accuracy_guard = False``, and the
post-hoc scorers that read logits see an untrained or stale head. NPOS's own score is KNN on the
L2-normalised penultimate features with k = 300 (scorer ``npos_knn``, ``lffood.scorers.contrastive_knn``).

State in buffers (checkpoint and resume state): prototypes (C x 128), ``seen``, the queues
(C x queue_size x feature dim float32: 20 MB for CIFAR-10 ResNet-18/34, 205 MB for CIFAR-100,
819 MB for ImageNet-100 ResNet-50 at queue 1000), their write positions and fill counts.

Official hyperparameters (``train_npos_cifar10.sh``, ``train_npos_cifar100.sh``; baselines.md section 2):

==========================  ============  ============  ===============================================
                            CIFAR-10      CIFAR-100     ImageNet-100 (ResNet-101 from scratch)
==========================  ============  ============  ===============================================
net                         ResNet-18     ResNet-34     ResNet-101
proto_m                     0.95          0.5           0.95
tau                         0.1           0.1           0.1
k / sample_from / id pts    300/600/200   300/600/200   400/1000/300
select / pick_nums / cov    200 / 2 / 0.1 200 / 2 / 0.1 50 / 2 / 0.1
queue_size / start_epoch    1000 / 200    1000 / 200    1000 / 200
w_disp / w_comp / beta      0.5 / 1 / 0.1 0.5 / 1 / 0.1 0 / 1 / L_open not added (defect (c))
lr, batch, epochs           0.5, 256, 500 0.5, 256, 500 0.01, 512, 500
KNN k (test)                300           300           (not published for this net)
==========================  ============  ============  ===============================================

SGD, Nesterov, momentum 0.9, weight decay 1e-4, cosine to lr x 1e-3; two views with SupCon's
augmentation (random-resized crop, area 0.2-1; flip; colour jitter 0.4 p 0.8; grayscale p 0.2).

Usage (config; CIFAR-10)::

    npos: {w_disp: 0.5, w_comp: 1.0, beta: 0.1, tau: 0.1, proto_m: 0.95, proj_dim: 128, start_epoch: 200,
           queue_size: 1000, k: 300, select: 200, pick_nums: 2, sample_from: 600, id_points_num: 200,
           cov_mat: 0.1, normalize_features: false, new_module_lr: null}
    scorers: {params: {npos_knn: {k: 300}}}
    variants:
      npos: {objective: npos, label: NPOS, scorer: npos_knn, stage_overrides: {epochs: 500, lr: 0.5, ...}}
"""

from __future__ import annotations

import logging

from ..checks import Issue
from .base import F, Forward, new_module_lr_schema, nn, register, torch
from .cider import PROTO_SCHEMA, _PrototypeObjective, cider_terms, prototype_cosine

log = logging.getLogger("lffood.objectives.npos")

#: floats one chunk of classes may hold during synthesis (similarities, candidates): 256 MiB of float32
SYNTHESIS_FLOATS = 1 << 26


def outlier_mlp(dim: int, hidden: int):
    """NPOS's outlier MLP: ``Linear(dim, hidden) -> ReLU -> Linear(hidden, 1)`` (official hidden = feat_dim 128)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))


def queue_state(num_classes: int, size: int, dim: int):
    """The queue buffers: ``queue`` (C * size + 1, dim) float32, class c's slots at rows c * size ..
    c * size + size - 1 and one scratch row last (where the samples beyond a class's last ``size`` in
    one batch are written and never read); ``queue_ptr`` (C,) the next slot; ``queue_count`` (C,) the
    filled slots."""
    state = nn.Module()
    state.register_buffer("queue", torch.zeros(num_classes * size + 1, dim))
    state.register_buffer("queue_ptr", torch.zeros(num_classes, dtype=torch.long))
    state.register_buffer("queue_count", torch.zeros(num_classes, dtype=torch.long))
    return state


def push_queue(state, feats, labels, size: int) -> None:
    """Write the batch's ``feats`` (detached) into their classes' ring buffers, in batch order (the
    newest last, as the official FIFO appends), without a host synchronisation: each sample's rank
    among its class's samples in the batch gives its slot; when a class has more than ``size`` samples
    in the batch only its last ``size`` are kept (the others go to the scratch row)."""
    c = state.queue_ptr.shape[0]
    onehot = (labels[:, None] == torch.arange(c, device=labels.device)[None, :]).long()
    cum = onehot.cumsum(0)
    rank = cum.gather(1, labels[:, None]).squeeze(1) - 1
    per_class = cum[-1]
    keep = rank >= per_class.index_select(0, labels) - size
    slot = labels * size + (state.queue_ptr.index_select(0, labels) + rank) % size
    rows = torch.where(keep, slot, torch.full_like(slot, c * size))
    state.queue.index_copy_(0, rows, feats.detach().to(state.queue.dtype))
    state.queue_ptr.copy_((state.queue_ptr + per_class) % size)
    state.queue_count.copy_((state.queue_count + per_class).clamp(max=size))


def class_queues(state, size: int):
    """The queues as (C, size, dim) (a view of the buffer without its scratch row)."""
    c = state.queue_ptr.shape[0]
    return state.queue[:c * size].view(c, size, -1)


def kth_neighbour_distance(queries, keys, k: int):
    """Squared L2 distance from each L2-normalised query (c, q, d) to its k-th nearest L2-normalised key
    (c, n, d) of the same class, ``2 - 2 s_k`` with s_k the k-th largest dot product (exact; a query
    that is also a key counts itself, as faiss' flat index does). Returns (c, q)."""
    sims = torch.bmm(queries, keys.transpose(1, 2))
    return 2.0 - 2.0 * sims.topk(k, dim=2).values[..., -1]


def boundary_points(queue_n, k: int, select: int):
    """``(d_K (c, n), indices (c, select))``: every queue point's d_K within its class's queue and the
    ``select`` points with the largest d_K (the boundary), per class."""
    d = kth_neighbour_distance(queue_n, queue_n, k)
    return d, d.topk(select, dim=1).indices


def _chunk_classes(num_classes: int, size: int, candidates: int, dim: int) -> int:
    per_class = size * size + candidates * size + 2 * candidates * dim
    return max(1, min(num_classes, SYNTHESIS_FLOATS // max(per_class, 1)))


def synthesize_outliers(queues, noise, *, k: int, select: int, pick_nums: int, id_points_num: int,
                        cov_mat: float, generator=None):
    """NPOS's outliers from the class queues (C, n, d) (raw features; normalised for the search) and the
    step's Gaussian ``noise`` (sample_from, d): per class, ``pick_nums`` random boundary points, around
    each ``b + cov_mat * noise``, and of each boundary point's candidates the ``id_points_num`` with the
    largest d_K. Returns (C * pick_nums * id_points_num, d), class-major. Classes in chunks of bounded
    memory (a loop whose length the host knows: no synchronisation)."""
    c_all, n, d = queues.shape
    s = noise.shape[0]
    chunk = _chunk_classes(c_all, n, pick_nums * s, d)
    out = []
    for start in range(0, c_all, chunk):
        q = queues[start:start + chunk]
        c = q.shape[0]
        qn = F.normalize(q, dim=2)
        _, boundary = boundary_points(qn, k, select)
        order = torch.rand(c, select, device=q.device, generator=generator).argsort(dim=1)[:, :pick_nums]
        picked = boundary.gather(1, order)  # (c, pick_nums): a uniform draw without replacement
        points = q.gather(1, picked[..., None].expand(-1, -1, d))
        cand = points[:, :, None, :] + cov_mat * noise[None, None]  # (c, pick_nums, s, d)
        dist = kth_neighbour_distance(F.normalize(cand, dim=3).reshape(c, pick_nums * s, d), qn, k)
        keep = dist.view(c, pick_nums, s).topk(id_points_num, dim=2).indices
        out.append(cand.gather(2, keep[..., None].expand(-1, -1, -1, d)).reshape(-1, d))
    return torch.cat(out)


def open_loss(mlp, h, outliers):
    """L_open = BCEWithLogits(mlp([h; outliers]), [1...; 0...]), mean over both sets together. Also
    returns the MLP's logits on h and on the outliers (detached) for the statistics."""
    id_logits, ood_logits = mlp(h).squeeze(1), mlp(outliers.detach()).squeeze(1)
    logits = torch.cat([id_logits, ood_logits])
    target = torch.cat([torch.ones_like(id_logits), torch.zeros_like(ood_logits)])
    return F.binary_cross_entropy_with_logits(logits, target), id_logits.detach(), ood_logits.detach()


_BOUNDED = {"type": "integer", "minimum": 1, "maximum": 100000}


@register("npos", "NPOS")
class NPOS(_PrototypeObjective):
    """CIDER's losses plus an outlier MLP trained on outliers synthesised at the boundary of class queues."""

    params_schema = {
        "w_disp": {"description": "Weight of L_dis (official 0.5 on CIFAR).", "type": "number", "minimum": 0,
                   "maximum": 100, "default": 0.5},
        "w_comp": {"description": "Weight of L_comp (official 1).", "type": "number", "minimum": 0, "maximum": 100,
                   "default": 1.0},
        "beta": {"description": "Weight of L_open, the outlier MLP's BCE (official loss_weight 0.1).",
                 "type": "number", "minimum": 0, "maximum": 100, "default": 0.1},
        **PROTO_SCHEMA,
        "start_epoch": {"description": "First epoch (0-based) with outlier synthesis and L_open (official "
                                       "start_epoch_KNN 200 of 500 epochs; scale it with the stage's epochs). "
                                       "Before it L_open is 0.",
                        "type": "integer", "minimum": 0, "maximum": 100000, "default": 200},
        "queue_size": {**_BOUNDED, "description": "Features kept per class in the queue (official sample_number "
                                                  "1000). Synthesis waits until every class's queue is full.",
                       "default": 1000},
        "k": {**_BOUNDED, "description": "The k of the k-th-neighbour distance d_K within a class queue (official "
                                         "K 300 on CIFAR); at most queue_size.", "default": 300},
        "select": {**_BOUNDED, "description": "Boundary points per class: the queue points with the largest d_K "
                                              "(official 200); at most queue_size.", "default": 200},
        "pick_nums": {**_BOUNDED, "description": "Boundary points drawn per class and step to sample around "
                                                 "(official 2); at most select.", "default": 2},
        "sample_from": {**_BOUNDED, "description": "Gaussian candidates per boundary point (official 600).",
                        "default": 600},
        "id_points_num": {**_BOUNDED, "description": "Candidates kept per boundary point, those with the largest "
                                                     "d_K (official ID_points_num 200); at most sample_from.",
                          "default": 200},
        "cov_mat": {"description": "Standard deviation of the Gaussian candidates around a boundary point, in "
                                   "the feature space of the queue (official cov_mat 0.1).",
                    "type": "number", "exclusiveMinimum": 0, "maximum": 100, "default": 0.1},
        "normalize_features": {"description": "false (official): the queue and the MLP see the raw pooled features "
                                              "(normalised for the k-NN search only); true: L2-normalised ones.",
                               "type": "boolean", "default": False},
        "new_module_lr": new_module_lr_schema("the projection head and the outlier MLP"),
    }
    own_loss = "l_comp"
    stats = {"l_comp": "L_comp (compactness)", "l_dis": "L_dis (dispersion)", "l_open": "L_open (outlier BCE)",
             "proto_cos": "mean cosine between distinct class prototypes",
             "open_active": "fraction of images in steps with outlier synthesis (queues full, epoch >= start_epoch)",
             "queue_fill": "mean fill of the class queues",
             "p_id": "mean sigmoid of the MLP on ID features (steps with synthesis)",
             "p_ood": "mean sigmoid of the MLP on synthesised outliers (steps with synthesis)"}

    @classmethod
    def check(cls, params, facts=None):
        """k and select at most queue_size, pick_nums at most select, id_points_num at most sample_from."""
        issues = super().check(params, facts)
        if issues:
            return issues
        p = {**cls.defaults(), **params}
        for key, limit in (("k", "queue_size"), ("select", "queue_size"), ("pick_nums", "select"),
                           ("id_points_num", "sample_from")):
            if p[key] > p[limit]:
                issues.append(Issue(key, f"{p[key]} is larger than {limit} = {p[limit]}; NPOS draws {key} from "
                                         f"{limit} (official: k 300, select 200 of a queue of 1000; pick_nums 2 of "
                                         f"select; id_points_num 200 of sample_from 600).", (limit,)))
        return issues

    def __init__(self, params=None, *, feature_dim: int, num_classes: int):
        super().__init__(params, feature_dim=feature_dim, num_classes=num_classes)
        problems = self.check(self.params)
        if problems:
            raise ValueError("objective 'npos': " + "; ".join(f"{i.key}: {i.message}" for i in problems))
        self.synthesis = self.params["start_epoch"] <= 0  # until on_epoch_start says which epoch it is

    def build_modules(self, feature_dim, num_classes):
        p = self.params
        mods = self.head_modules(feature_dim, num_classes)
        mods["mlp"] = outlier_mlp(feature_dim, p["proj_dim"])
        for name, buf in queue_state(num_classes, p["queue_size"], feature_dim).named_buffers():
            mods["state"].register_buffer(name, buf)
        return mods

    def on_epoch_start(self, epoch, epochs):
        self.synthesis = epoch >= self.params["start_epoch"]
        if epoch == 0 and self.params["start_epoch"] >= epochs:
            log.warning("npos.start_epoch = %d is not below the stage's %d epochs: no outlier synthesis, L_open "
                        "stays 0 (the official recipe starts at epoch 200 of 500)", self.params["start_epoch"], epochs)

    def loss(self, out: Forward, targets):
        p, st = self.params, self.modules["state"]
        h = out.pooled.float()
        if p["normalize_features"]:
            h = F.normalize(h, dim=1)
        l_comp, l_dis, protos = cider_terms(self.embed(out), targets, st, p["proto_m"], p["tau"])
        push_queue(st, h, targets, p["queue_size"])
        n = targets.shape[0]
        zero = h.new_zeros(())
        with torch.no_grad():
            fill = st.queue_count.float().mean() / p["queue_size"]
        if self.synthesis:
            full = (st.queue_count == p["queue_size"]).all()
            with torch.no_grad():
                noise = torch.randn(p["sample_from"], h.shape[1], device=h.device)
                outliers = synthesize_outliers(class_queues(st, p["queue_size"]), noise, k=p["k"], select=p["select"],
                                               pick_nums=p["pick_nums"], id_points_num=p["id_points_num"],
                                               cov_mat=p["cov_mat"])
            bce, id_logits, ood_logits = open_loss(self.modules["mlp"], h, outliers)
            l_open = torch.where(full, bce, zero)
            active = full.float()
            p_id, p_ood = torch.sigmoid(id_logits).mean() * active, torch.sigmoid(ood_logits).mean() * active
        else:
            l_open, active, p_id, p_ood = zero, zero, zero, zero
        loss = p["w_disp"] * l_dis + p["w_comp"] * l_comp + p["beta"] * l_open
        with torch.no_grad():
            sums = {"l_comp": l_comp.detach() * n, "l_dis": l_dis.detach() * n, "l_open": l_open.detach() * n,
                    "proto_cos": prototype_cosine(protos, st.seen) * n, "open_active": active * n,
                    "queue_fill": fill * n, "p_id": p_id * n, "p_ood": p_ood * n}
        return loss, sums

    def epoch_row(self, sums, n):
        row = {k: sums[k] / max(n, 1) for k in ("l_comp", "l_dis", "l_open", "proto_cos", "open_active", "queue_fill")}
        active = sums["open_active"]
        row.update({k: sums[k] / active if active else 0.0 for k in ("p_id", "p_ood")})
        return row

    def log_line(self, row):
        return (f"L_comp {row['l_comp']:.4f} L_dis {row['l_dis']:.4f} L_open {row['l_open']:.4f} "
                f"proto cos {row['proto_cos']:.3f} queues {100 * row['queue_fill']:.0f}% synthesis "
                f"{100 * row['open_active']:.0f}% p_id ID/OOD {row['p_id']:.3f}/{row['p_ood']:.3f}")
