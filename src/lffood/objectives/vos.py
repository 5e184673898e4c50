"""VOS: virtual outlier synthesis (Du, Wang, Cai and Li, "VOS: Learning What You Don't Know by Virtual
Outlier Synthesis", ICLR 2022, https://arxiv.org/abs/2202.01197; code: deeplearning-wisc/vos, the
classification version ``classification/CIFAR/train_virtual.py``; facts:
``../shared/reference/baselines.md`` section 1).

What the official code does, and this module with it (h: the pooled penultimate features, f = fc(h)
the logits, fc the model's own linear head ``model.head``):

* a per-class FIFO queue of detached h (buffers ``queue`` C x N x d and ``count`` C): while some class
  holds fewer than N, a sample goes to its class's next free slot and samples of classes already full
  are dropped; once every class is full, every sample enters its class's queue and the oldest leaves.
  (The official code rolls the tensor; here a ring buffer with a per-class ``ptr`` to the oldest slot
  holds the same features: :func:`ordered_queue` gives them oldest first.)
* tied covariance of the queues: Sigma = 1/(C N) sum_c sum_q (q - mu_c)(q - mu_c)^T + 1e-4 I
  (:func:`tied_gaussian`, in float64: float32 resolves a Sigma with entries of order 100 only to about
  1e-5, near the ridge, and its Cholesky factor could fail);
* per class, ``sample_from`` draws v ~ N(mu_c, Sigma), keeping the ``select`` with the lowest
  log-density: C x select virtual outliers per step (:func:`sample_outliers`). Sigma is factorised
  once per step (Cholesky), not once per class. Under one Sigma, log N(mu + L e; mu, Sigma) =
  const - |e|^2 / 2, so the lowest densities are the draws with the largest |e| (the selection is that
  of the log-density; ``tests/unit/test_vos.py`` checks it against NumPy's log-density).
  ``sampler: gaussian`` draws the C x sample_from x d normals as the official code does;
  ``sampler: radial`` draws the same distribution at 1/d of the cost: a standard normal e is |e| u with
  |e|^2 ~ chi^2_d independent of the uniform direction u, so the kept draws are the ``select`` largest of
  ``sample_from`` chi^2_d radii, each with its own uniform direction (exact in distribution; the
  embedded benchmark's training step costs 1.6x CE's with ``gaussian`` on one CPU thread, 1.1x with
  ``radial``).
* the learnable weighted log-sum-exp E'(f) = log sum_k ReLU(w_k) exp(f_k), w the weight of
  ``Linear(C, 1)`` initialised U(0, 1) (its bias is unused, as in the official code);
* L_unc = CE(LR([E'(f(x)); E'(fc(v))]), [1...1; 0...0]), LR = ``Linear(1, 2)``, ID = class 1;
* L = CE(f, y) + loss_weight * L_unc. L_unc is exactly 0 until every queue was full before the step
  AND the epoch (0-based) is at least ``start_epoch``; the queue is updated with the batch before the
  covariance is taken, as in the official code.
* Gradients: E'(f(x)) reaches the whole network, w and LR; E'(fc(v)) only the head fc, w and LR (v is
  drawn from a detached queue; fc is applied to it as ``out.weight`` / ``out.bias``).

No host synchronisation: the queue update is vectorised (per-class ranks within the batch, index
additions whose colliding entries add exact zeros), the "every queue full" condition is a device tensor
and the gate is ``torch.where``. The epoch is known on the host (:meth:`VOS.on_epoch_start`, also kept
in the buffer ``epoch``): before ``start_epoch`` nothing is sampled. From ``start_epoch`` on the
covariance, its Cholesky factor and the draws are computed every step; in a step whose queues were not
all full yet they are computed and discarded (L_unc = 0 exactly) — the cost of not reading the count on
the host, paid only in the first steps of a run with ``start_epoch`` 0.

Random draws: torch's global generator on the model's device (``torch.randn``; ``radial``: also
``torch._standard_gamma``), no generator of their own. The workflow seeds torch globally per job
(``lffood.runtime.seed_everything``) and the resume state saves and restores the global CPU and CUDA
generators (``lffood.checkpoint.rng_state``), so a run is reproducible and a resumed run draws what the
uninterrupted one would. The draws do shift dropout's (same generator) relative to a CE run.

Deviations and choices:

* Under DDP each process keeps a queue of its own share of the batch (the official code runs one GPU);
  the checkpoint keeps rank 0's.
* The queue lives in the checkpoint: C x N x d float32 (CIFAR-100 ResNet-34: 205 MB; ImageNet-100
  ResNet-50: 820 MB).
* From ``start_epoch`` on, a step whose queues are not all full yet gives w and LR zero gradients (the
  official code gives none), so weight decay touches them; only in such steps.
* w and LR get their first gradient only once L_unc is active. The loop's fused SGD
  (``training.build_optimizer``) crashes on a parameter whose first gradient comes after the others' of its
  parameter group (``torch._fused_sgd_``: a missing momentum buffer), so the recipes set ``new_module_lr``
  (w and LR in a group of their own; at the stage's rate it is the official single optimiser) until the loop
  gives such parameters a zero momentum buffer (the same first step as torch's).
* The collapse guard's "freshly initialised modules did not learn" check waits for the first epoch in
  which L_unc was active (before, w and LR get no gradient by design); a run whose last epoch had no
  active step stops with a message (``start_epoch`` beyond the epochs, or queues never full): its model
  would be plain CE.
* Inference: the energy score at T = 1 on the plain logits, logsumexp(f(x)) (official ``test.py``); the
  learned w is not used. That is the existing scorer ``energy`` (``lffood.scorers.logit_based``) at its
  default temperature 1: no scorer of its own.

Official values (README L225-243, argparse L34-56): CIFAR-10 and CIFAR-100 alike: queue 1000 per class,
start_epoch 40, sample_from 10000, select 1, loss_weight 0.1; WRN-40-2 (dropout 0.3) from scratch,
SGD Nesterov 0.1, momentum 0.9, wd 5e-4, batch 128, 100 epochs, per-step cosine to 1e-6, flip + crop.
No ImageNet-100 values; OpenOOD's ImageNet-1k run fine-tunes a pretrained ResNet-50 at lr 1e-3 for 30
epochs, batch 128, start_epoch 0, with the same queue and sampling values (its trainer detaches the
energies: baselines.md section 8). This project's ImageNet-100 choice: fine-tuned from the CE checkpoint
with that recipe, start_epoch 0, ``sampler: radial`` (docs/methods.md).

Usage (config; CIFAR-10 and CIFAR-100: the defaults, from scratch with the official recipe; ImageNet-100:
``{start_epoch: 0, sampler: radial, new_module_lr: 0.1}``, fine-tuned from ``ce`` at lr 1e-3 for 30 epochs)::

    vos: {queue_size: 1000, start_epoch: 40, sample_from: 10000, select: 1, loss_weight: 0.1,
          sampler: gaussian, new_module_lr: 0.1}   # new_module_lr = the stage's lr (fused SGD: above)
    variants:
      vos:
        objective: vos
        label: VOS
        scorer: energy
        stage_overrides: {optimizer: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0005,
                          epochs: 100, batch_size: 128, schedule: {type: cosine},
                          augment: {crop_padding: 4, hflip: true, color_jitter: 0.0}}
"""

from __future__ import annotations

from ..checks import Issue
from .base import F, Forward, Objective, new_module_lr_schema, nn, register, torch

#: the logistic regression's output for in-distribution inputs (official labels: ID 1, outliers 0)
ID_OUTPUT = 1
#: ridge added to the tied covariance (official: 0.0001 * eye)
RIDGE = 1e-4
#: at most this many standard normals per chunk of the ``gaussian`` sampler (256 MB of float32)
CHUNK = 1 << 26


# ----------------------------------------------------------------------------- queue
def new_queue(num_classes: int, size: int, dim: int):
    """The queue's state as a module of buffers (saved with the checkpoint and the resume state):
    ``queue`` (C, N, d) float32, ``count`` (C,) queued per class (at most N), ``ptr`` (C,) the slot of
    each class's oldest feature once every class is full, ``epoch`` the current 0-based epoch."""
    m = nn.Module()
    m.register_buffer("queue", torch.zeros(num_classes, size, dim))
    m.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))
    m.register_buffer("ptr", torch.zeros(num_classes, dtype=torch.long))
    m.register_buffer("epoch", torch.zeros((), dtype=torch.long))
    return m


def enqueue(queue, count, ptr, feats, labels):
    """Put the batch's ``feats`` (B, d), detached, into the class queues in place, as the official loop
    does sample by sample in batch order; returns whether every class was full before (0-d bool).

    Not all full: a sample goes to slot ``count[y]`` of its class while that is below N, else it is
    dropped. All full: each sample replaces its class's oldest feature (slot ``ptr[y]``, which then
    advances); of more than N samples of one class only the last N stay. Vectorised without a host
    synchronisation: the written slots are distinct, and a dropped sample adds exact zeros to some slot."""
    c, n, d = queue.shape
    onehot = labels[:, None] == torch.arange(c, device=labels.device)          # (B, C)
    oh = onehot.long()
    rank = ((oh.cumsum(0) - oh) * oh).sum(1)                                    # earlier samples of its class
    per_class = oh.sum(0)                                                       # (C,)
    full = (count == n).all()
    cnt_y, ptr_y, n_y = count[labels], ptr[labels], per_class[labels]
    slot = torch.where(full, (ptr_y + rank) % n, (cnt_y + rank).clamp(max=n - 1))
    keep = torch.where(full, rank >= n_y - n, cnt_y + rank < n)
    flat = labels * n + slot
    q = queue.view(c * n, d)
    k = keep.to(q.dtype)[:, None]
    q.index_add_(0, flat, -q.index_select(0, flat) * k)                      # kept slots to exactly 0
    q.index_add_(0, flat, feats.detach().to(q.dtype) * k)                     # 0 + h = h exactly
    count.copy_(torch.where(full, count, (count + per_class).clamp(max=n)))
    ptr.copy_(torch.where(full, (ptr + per_class) % n, ptr))
    return full


def ordered_queue(queue, ptr):
    """Each class's queued features oldest first (C, N, d): the official code's ``data_dict``."""
    n = queue.shape[1]
    idx = (ptr[:, None] + torch.arange(n, device=queue.device)) % n
    return queue.gather(1, idx[:, :, None].expand(-1, -1, queue.shape[2]))


# ----------------------------------------------------------------------------- class-conditional Gaussians
def tied_gaussian(queue, ridge: float = RIDGE):
    """Class means (C, d) float32 and the tied covariance (d, d) float64 of the queues ``queue`` (C, N, d):
    Sigma = 1/(C N) sum_c sum_q (q - mu_c)(q - mu_c)^T + ridge I (official L213-225)."""
    q = queue.double()
    mu = q.mean(1)
    x = (q - mu[:, None]).reshape(-1, q.shape[-1])
    sigma = x.T @ x / x.shape[0]
    sigma.diagonal().add_(ridge)
    return mu.float(), sigma


def cholesky(sigma):
    """The lower Cholesky factor (float32) of ``sigma`` (computed in float64, without the error check's
    host synchronisation: ``sigma`` is positive definite by the ridge)."""
    return torch.linalg.cholesky_ex(sigma.double()).L.float()


def lowest_density(eps, select: int):
    """Of standard-normal draws ``eps`` (C, S, d) the ``select`` per class whose points mu_c + L eps have
    the lowest density under N(mu_c, L L^T): those with the largest |eps| (C, select, d)."""
    idx = eps.pow(2).sum(-1).topk(select, dim=1).indices
    return eps.gather(1, idx[:, :, None].expand(-1, -1, eps.shape[-1]))


def draw_gaussian(classes: int, sample_from: int, dim: int, select: int, device):
    """The official draw: ``sample_from`` standard normals per class, keeping the ``select`` of lowest
    density (:func:`lowest_density`); in chunks of classes of at most :data:`CHUNK` numbers."""
    per = max(1, CHUNK // max(sample_from * dim, 1))
    return torch.cat([lowest_density(torch.randn(min(per, classes - c0), sample_from, dim, device=device), select)
                      for c0 in range(0, classes, per)])


def draw_radial(classes: int, sample_from: int, dim: int, select: int, device):
    """The same distribution as :func:`draw_gaussian` at 1/d of the cost: the ``select`` largest of
    ``sample_from`` chi^2_d radii per class, each along its own uniform direction."""
    r2 = torch._standard_gamma(torch.full((classes, sample_from), dim / 2.0, device=device)) * 2.0
    radius = r2.topk(select, dim=1).values.sqrt()
    return radius[:, :, None] * F.normalize(torch.randn(classes, select, dim, device=device), dim=-1)


DRAWS = {"gaussian": draw_gaussian, "radial": draw_radial}


def sample_outliers(mu, chol, eps):
    """The virtual outliers mu_c + L eps_c (C * select, d) from selected draws ``eps`` (C, select, d)."""
    return (mu[:, None, :] + eps @ chol.T).reshape(-1, mu.shape[-1])


# ----------------------------------------------------------------------------- losses
def weighted_logsumexp(logits, weight):
    """E'(f) = log sum_k ReLU(w_k) exp(f_k) per row, ``weight`` (1, C) (official ``log_sum_exp``)."""
    m = logits.max(dim=1, keepdim=True).values.detach()
    return m.squeeze(1) + torch.log((F.relu(weight) * torch.exp(logits - m)).sum(1))


def uncertainty_loss(e_id, e_ood, logistic):
    """L_unc: CE of the logistic regression ``logistic`` (Linear(1, 2)) on the energies, ID = 1, outliers = 0."""
    scores = torch.cat([e_id, e_ood])[:, None]
    labels = torch.cat([torch.full_like(e_id, ID_OUTPUT, dtype=torch.long),
                        torch.full_like(e_ood, 1 - ID_OUTPUT, dtype=torch.long)])
    return F.cross_entropy(logistic(scores), labels)


@register("vos", "VOS")
class VOS(Objective):
    """CE + loss_weight * an energy-based uncertainty loss against virtual outliers drawn from the
    low-density region of class-conditional Gaussians of the penultimate features."""

    params_schema = {
        "queue_size": {"description": "Features queued per class, N (official sample_number: 1000 on CIFAR-10 and "
                                      "CIFAR-100; a class with fewer training images fills over several epochs, and "
                                      "L_unc waits for every class).",
                       "type": "integer", "minimum": 1, "maximum": 100000, "default": 1000},
        "start_epoch": {"description": "First 0-based epoch with L_unc (official: 40 of 100). Before it nothing is "
                                       "sampled; at or beyond the stage's epochs VOS is plain CE (the run stops "
                                       "at its last epoch).",
                        "type": "integer", "minimum": 0, "maximum": 100000, "default": 40},
        "sample_from": {"description": "Draws per class from N(mu_c, Sigma) per step (official: 10000).",
                        "type": "integer", "minimum": 1, "maximum": 1000000, "default": 10000},
        "select": {"description": "Lowest-density draws kept per class per step (official: 1); at most sample_from.",
                   "type": "integer", "minimum": 1, "maximum": 100000, "default": 1},
        "loss_weight": {"description": "Weight of L_unc (official: 0.1). 0: plain CE with the queue kept.",
                        "type": "number", "minimum": 0, "maximum": 100, "default": 0.1},
        "sampler": {"description": "gaussian: the official draw of sample_from d-dimensional normals per class; "
                                   "radial: the same distribution of kept outliers from sample_from chi^2_d radii "
                                   "and select directions per class (1/d of the cost; module docstring).",
                    "enum": ["gaussian", "radial"], "default": "gaussian"},
        "new_module_lr": new_module_lr_schema("the energy weights w and the logistic regression"),
    }
    own_loss = "l_unc"
    stats = {"l_unc": "L_unc, mean over the steps in which it was active (weighted by batch size)",
             "vos_active": "fraction of images in steps with L_unc active",
             "e_id": "mean E'(f(x)) of the ID images, active steps",
             "e_ood": "mean E'(fc(v)) of the virtual outliers, active steps",
             "queue_fill": "queued features over C x N (mean over the epoch's steps)"}

    @classmethod
    def check(cls, params, facts=None):
        """``select`` at most ``sample_from``."""
        issues = super().check(params, facts)
        if not issues:
            p = {**cls.defaults(), **dict(params)}
            if p["select"] > p["sample_from"]:
                issues.append(Issue("select", f"{p['select']} is more than sample_from = {p['sample_from']}: "
                                              f"VOS keeps select of the sample_from draws per class.",
                                    ("sample_from",)))
        return issues

    def __init__(self, params=None, *, feature_dim: int, num_classes: int):
        super().__init__(params, feature_dim=feature_dim, num_classes=num_classes)
        self._epoch, self._epochs = 0, None
        self._ever_active = False

    def build_modules(self, feature_dim, num_classes):
        energy = nn.Linear(num_classes, 1)  # its default weights: U(-1/sqrt(C), 1/sqrt(C)), from the job's seed
        with torch.no_grad():  # official: U(0, 1), mapped from the default draw; the bias is unused
            energy.weight.mul_(num_classes ** 0.5).add_(1.0).div_(2.0).clamp_(0.0, 1.0)
        return {"energy_weight": energy, "logistic": nn.Linear(1, 2),
                "queue": new_queue(num_classes, self.params["queue_size"], feature_dim)}

    # ------------------------------------------------------------------ epoch
    def on_epoch_start(self, epoch, epochs):
        self._epoch, self._epochs = int(epoch), int(epochs)
        self.modules["queue"].epoch.fill_(int(epoch))

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._epoch = int(self.modules["queue"].epoch)  # one read at load time, never in the loss

    def sampling(self) -> bool:
        """Whether this epoch samples outliers (host-side: epoch >= start_epoch)."""
        return self._epoch >= self.params["start_epoch"]

    # ------------------------------------------------------------------ loss
    def outliers(self):
        """This step's virtual outliers (C * select, d) from the current queues."""
        state = self.modules["queue"]
        mu, sigma = tied_gaussian(state.queue)
        c, d = mu.shape
        eps = DRAWS[self.params["sampler"]](c, self.params["sample_from"], d, self.params["select"], mu.device)
        return sample_outliers(mu, cholesky(sigma), eps)

    def loss(self, out: Forward, targets):
        state = self.modules["queue"]
        n = targets.shape[0]
        ce = F.cross_entropy(out.logits, targets)
        with torch.no_grad():
            full = enqueue(state.queue, state.count, state.ptr, out.pooled.detach(), targets)
            fill = state.count.sum().float() / state.queue.shape[0] / state.queue.shape[1]
        zero = torch.zeros((), device=out.logits.device)
        if not self.sampling():
            sums = {"l_unc": zero, "vos_active": zero, "e_id": zero, "e_ood": zero, "queue_fill": fill * n}
            return ce, sums
        w = self.modules["energy_weight"].weight
        v = self.outliers()
        e_id = weighted_logsumexp(out.logits, w)
        e_ood = weighted_logsumexp(v @ out.weight.float().T + out.bias.float(), w)
        l_unc = torch.where(full, uncertainty_loss(e_id, e_ood, self.modules["logistic"]), zero)
        on = full.float()
        with torch.no_grad():
            sums = {"l_unc": l_unc.detach() * n, "vos_active": on * n, "e_id": e_id.detach().mean() * on * n,
                    "e_ood": e_ood.detach().mean() * on * n, "queue_fill": fill * n}
        return ce + self.params["loss_weight"] * l_unc, sums

    # ------------------------------------------------------------------ log and guard
    def epoch_row(self, sums, n):
        n = max(n, 1)
        act = sums["vos_active"]
        per_active = (lambda k: sums[k] / act) if act > 0 else (lambda k: 0.0)
        if act > 0:
            self._ever_active = True
        return {"l_unc": per_active("l_unc"), "vos_active": act / n, "e_id": per_active("e_id"),
                "e_ood": per_active("e_ood"), "queue_fill": sums["queue_fill"] / n}

    def log_line(self, row):
        if not row["vos_active"]:
            return (f"VOS off (queues {100 * row['queue_fill']:.0f}% full, L_unc from epoch "
                    f"{self.params['start_epoch'] + 1} once all are full)")
        return (f"L_unc {row['l_unc']:.4f} on {100 * row['vos_active']:.0f}% of steps, E' ID {row['e_id']:.3f} "
                f"outliers {row['e_ood']:.3f}")

    def collapse(self, row):
        last = self._epochs is not None and self._epoch + 1 == self._epochs
        if last and not row["vos_active"]:
            return (f"L_unc was not active in the last epoch: vos.start_epoch = {self.params['start_epoch']} "
                    f"(0-based) with {self._epochs} epochs, queues {100 * row['queue_fill']:.0f}% full on average "
                    f"in the last epoch (vos.queue_size = {self.params['queue_size']} per class): "
                    f"the model is plain CE. Lower vos.start_epoch or vos.queue_size")
        return None

    def not_learned(self, change, threshold, stage_lr):
        if not self._ever_active or not self.params["loss_weight"]:  # no gradient for w and LR (yet)
            return None
        return super().not_learned(change, threshold, stage_lr)

    def collapse_advice(self):
        return "Lower the learning rate or vos.loss_weight (docs/troubleshooting.md, 'When training collapses')."
