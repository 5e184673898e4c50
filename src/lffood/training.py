"""One training loop for every objective of the registry (``lffood.objectives``), none of them named here.

``train()`` runs one stage (a config section such as ``pretrain`` or ``finetune``, with a variant's
overrides) and calls the objective (``lffood.objectives``) for the loss. The loop owns what every
objective shares:

* batches: indices shuffled by a seeded generator, gathered and augmented on the device in one
  vectorised call (``TensorImages``); two independent views per image when the objective asks;
* the optimiser (its parameters: the network's and the objective's own modules; the objective's
  freshly initialised modules in a group of their own where it sets ``new_module_lr``:
  :func:`param_groups`), the learning-rate schedule, mixed precision on CUDA (bfloat16, or float16
  with a loss scaler);
* per-epoch statistics: every sum stays on the device and is read once per epoch (one host
  synchronisation per epoch, none per step), one history row and one log line per epoch; an epoch
  that runs longer than :data:`lffood.runtime.PROGRESS_EVERY_S` (paper sizes) adds a line with its
  progress that often, the only other read of a sum (its loss so far), never in a short epoch;
* hooks (:class:`lffood.hooks.Hook`): what a caller adds to every step and epoch without the loop
  knowing what it is, e.g. the workflow's local-vector monitor (:mod:`lffood.monitor`);
* the collapse guard: train accuracy at chance (objectives that train the classifier), vanished
  features, a non-finite loss, the objective's own collapse check, or freshly initialised modules
  that did not move from their initialisation (``guard.min_new_module_change``), for ``guard.patience``
  consecutive epochs (or at the last epoch) stops the run with a message naming the
  hyperparameters and the objective's advice (:meth:`Objective.collapse_advice`); no checkpoint is
  written;
* the resume state of a killed job (:class:`lffood.checkpoint.ResumeFile`).

:func:`train` is the loop itself; what is not the loop is in the helpers below it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from .checkpoint import ResumeFile, restore_rng, rng_state
from .data.loader import TensorImages
from .errors import CollapseError, LffoodError
from .hooks import Hook
from .objectives import Forward, Objective
from .runtime import Progress, duration

log = logging.getLogger("lffood.training")


def build_optimizer(params, stage: Mapping) -> torch.optim.Optimizer:
    """SGD or AdamW over ``params`` (a module, an iterable of parameters, or parameter groups as
    :func:`param_groups` builds them), as one fused kernel per group and step on the CPU and CUDA
    (instead of a loop over the tensors: the embedded model's AdamW step 3.6 -> 0.85 ms of a 106 ms
    training step on one CPU thread, SGD's 1.3 -> 0.4 ms). A group without its own ``lr`` takes the
    stage's."""
    if isinstance(params, torch.nn.Module):
        params = params.parameters()
    params = list(params)
    tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], Mapping) else params
    fused = {"fused": True} if tensors and all(p.device.type in ("cpu", "cuda") for p in tensors) else {}
    opt = stage["optimizer"]
    if opt == "sgd":
        return torch.optim.SGD(params, lr=stage["lr"], momentum=stage["momentum"],
                               weight_decay=stage["weight_decay"], nesterov=stage.get("nesterov", False), **fused)
    if opt == "adamw":
        return torch.optim.AdamW(params, lr=stage["lr"], weight_decay=stage["weight_decay"], **fused)
    raise LffoodError(f"optimizer '{opt}' is not supported (use sgd or adamw)")


def param_groups(model: torch.nn.Module, objective: Objective, stage: Mapping) -> list[dict]:
    """The optimiser's parameter groups for training ``model`` with ``objective``: one group at the
    stage's learning rate for the network and the objective's own modules, or, where the objective
    sets a rate for its freshly initialised parameters (:meth:`Objective.new_module_lr`: parameter
    ``<objective>.new_module_lr``), those parameters (:meth:`Objective.new_parameters`) in a second
    group at that rate. ``lr_scale`` is a group's rate over the stage's: the schedule scales every group alike
    (:func:`train` sets ``lr_at(stage, epoch) * lr_scale`` each epoch)."""
    every = [p for p in (*model.parameters(), *objective.modules.parameters()) if p.requires_grad]
    own_lr = objective.new_module_lr()
    new = objective.new_parameters() if own_lr is not None else []
    if not new:
        return [{"params": every}]
    ids = {id(p) for p in new}
    return [{"params": [p for p in every if id(p) not in ids]},
            {"params": list(new), "lr": own_lr, "lr_scale": own_lr / stage["lr"], "name": "new_modules"}]


def relative_change(params, init) -> float:
    """``||w - w_0|| / ||w_0||`` over all of ``params`` together, ``init`` their values w_0 (one host read)."""
    with torch.no_grad():
        moved = torch.stack([(p.detach().float() - p0.float()).pow(2).sum() for p, p0 in zip(params, init)]).sum()
        size = torch.stack([p0.float().pow(2).sum() for p0 in init]).sum()
        return float((moved / size.clamp_min(1e-30)).sqrt())


def lr_at(stage: Mapping, epoch: int) -> float:
    """Learning rate for 0-based ``epoch``: step decay at milestone epochs, cosine, or constant."""
    base, sched = stage["lr"], stage["schedule"]
    if sched["type"] == "step":
        return base * sched["gamma"] ** sum(epoch >= m for m in sched["milestones"])
    if sched["type"] == "cosine":
        return 0.5 * base * (1 + math.cos(math.pi * epoch / stage["epochs"]))
    return base


def mixed_precision(device: torch.device, enabled: bool):
    """Mixed precision on CUDA: bfloat16 where supported (no loss scaling needed), else float16
    with a GradScaler. Returns ``(context manager, scaler or None)``; the context is reusable."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def channels_last_allowed(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether :func:`train`, extraction and the network scorers may run ``model`` in channels-last
    layout on ``device``: on CUDA, and on the CPU for the models that opt in (1.2x faster per training
    step for the embedded model, `lffood bench`; 1.3x per forward pass).
    torch 2.12's CPU backward of a strided 1x1 convolution in that layout corrupts memory, so models
    opt in only without one (models.base.cpu_channels_last)."""
    return device.type == "cuda" or getattr(model, "cpu_channels_last", False)


def _batch(data: TensorImages, idx, gathered, augment, gen, channels_last: bool, views: int):
    """One batch: the images ``idx`` once, or ``views`` independently augmented times (all first views,
    then all second views, labels repeated to match)."""
    if views == 1:
        return data.batch(idx, augment=augment, gen=gen, channels_last=channels_last, gathered=gathered)
    xs, ys = zip(*(data.batch(idx, augment=augment, gen=gen, channels_last=channels_last, gathered=gathered)
                   for _ in range(views)))
    x = torch.cat(xs)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), torch.cat(ys)


def _add(sums: dict, *new: Mapping) -> None:
    for part in new:
        for k, v in part.items():
            sums[k] = sums[k] + v if k in sums else v


def _read(sums: Mapping) -> dict:
    """The epoch's sums on the host: device tensors in one transfer (the loop's only synchronisation),
    a float per 0-d sum and a list of floats per larger one (a hook's bins); counts known on the host
    (plain numbers) as they are."""
    tensors = [k for k, v in sums.items() if isinstance(v, torch.Tensor)]
    out = {k: float(v) for k, v in sums.items() if k not in tensors}
    if tensors:
        flat, at = torch.cat([sums[k].double().reshape(-1) for k in tensors]).tolist(), 0
        for k in tensors:
            size = sums[k].numel()
            out[k] = flat[at:at + size] if sums[k].dim() else flat[at]
            at += size
    return out


def train(model: torch.nn.Module, data: TensorImages, stage: Mapping, *, objective: Objective, seed: int,
          device: torch.device, guard: Mapping | None = None, stage_name: str = "train", amp: bool = True,
          channels_last: bool = True, hooks: Sequence[Hook] = (), resume: ResumeFile | None = None,
          job: str = "", compile: bool = False) -> list[dict]:
    """Train ``model`` (and the objective's own modules) in place for ``stage['epochs']`` epochs with
    ``objective``; returns the per-epoch history.

    ``hooks`` (:class:`lffood.hooks.Hook`) see every step and every epoch's end: e.g. the workflow's
    local-vector monitor (:class:`lffood.monitor.LocalMonitor`) or a progress callback
    (:class:`lffood.hooks.OnEpoch`). With ``resume``, the complete training state (model, objective
    modules, optimiser, loss scaler, random generators, hooks, history, collapse counter) is written
    atomically at the end of an epoch, as often as costs at most 1% of the training time
    (:meth:`ResumeFile.due`), and a run that finds a state of the same training (same fingerprint)
    continues after its saved epoch: a job killed at any point and rerun ends with the weights of an
    uninterrupted run. ``job`` names the job in every log line (``<bench> seed <seed> <variant>``).
    ``compile``: run the forward pass through ``torch.compile`` (config key ``compile``)."""
    from .distributed import world

    rank, size = world()  # (0, 1) unless launched by torchrun (lffood.distributed)
    net, use_cl = _network(model, objective, device, channels_last, size, compile)
    opt = build_optimizer(param_groups(model, objective, stage), stage)
    fresh = _NewModules(objective, opt)  # their initialisation, taken before a resumed state loads
    autocast, scaler = mixed_precision(device, amp)  # one GradScaler for the whole run (fp16 only)
    gen, aug_gen = _generators(seed, device)
    state = _TrainingState(model, objective, opt, scaler, gen, aug_gen, hooks)
    history, collapsed, first = state.resume(resume, device, stage_name, stage["epochs"])
    guard = _CollapseGuard(guard or {}, objective, model.num_classes, stage_name, stage, collapsed)
    views = 2 if objective.two_views else 1
    started = time.perf_counter()
    for epoch in range(first, stage["epochs"]):
        lr = _set_lr(opt, stage, epoch)
        _train_mode(model, objective)
        objective.on_epoch_start(epoch, stage["epochs"])
        t0, sums, n, images = time.perf_counter(), {}, 0, 0
        progress = Progress(_steps_per_epoch(len(data), stage["batch_size"]))
        for step, (idx, gathered) in enumerate(data.prefetched(_batches(data, stage, gen, rank, size)), 1):
            x, y = objective.transform_batch(*_batch(data, idx, gathered, stage["augment"], aug_gen, use_cl, views),
                                             aug_gen)
            with autocast:
                logits, pooled, fmap = net(x, return_features=True)
            out = Forward(logits.float(), pooled, fmap, model.head.weight, model.head.bias, views)
            loss, obj_sums = objective.loss(out, y)
            seen = [h.on_step(model, out, y) for h in hooks]  # the head as the loss saw it: before the step
            _step(opt, scaler, loss, objective, size)
            _add(sums, _step_sums(loss, out, y), obj_sums, *seen)  # objectives return detached sums
            n, images = n + y.shape[0], images + len(idx)
            if progress.due(step):  # a long epoch (paper sizes): a line every PROGRESS_EVERY_S; reads the loss only then
                log.info("%s", _progress_line(job, stage_name, stage, epoch, progress, step, sums, n))
        tot, n, images = _pooled(sums, n, images, device, size)
        row = _epoch_row(epoch, lr, tot, n, images, time.perf_counter() - t0, objective, fresh)
        history.append(row)
        guard.check_finite(tot, epoch)
        texts = [objective.log_line(row), fresh.log_text(row, history), *(h.on_epoch(row, tot) for h in hooks)]
        eta = _eta(started, done=epoch + 1 - first, left=stage["epochs"] - epoch - 1)
        log.info("%s", _log_line(job, stage_name, stage, row, texts, eta))
        guard.check(row, epoch)
        if resume is not None and rank == 0 and epoch + 1 < stage["epochs"] and resume.due():
            resume.save(state.save(epoch + 1, history, guard.collapsed))
    if use_cl:  # the trained model leaves in the standard layout, as a checkpoint loads
        model.to(memory_format=torch.contiguous_format)
    return history


# ----------------------------------------------------------------------------- what the loop calls
def _network(model, objective: Objective, device, channels_last: bool, size: int, compile: bool):
    """``model`` and the objective's modules on ``device`` (channels-last where allowed); returns the
    module the loop runs (DDP's wrapper under torchrun, compiled with ``compile``: same parameters,
    the checkpoint is the model's) and whether the layout is channels-last."""
    model.to(device)
    objective.modules.to(device)
    if objective.freeze_backbone:  # before the optimiser is built: it takes the parameters that train
        head = {id(p) for p in model.head.parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in head)
    use_cl = channels_last and channels_last_allowed(model, device)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    net = model
    if size > 1:  # DDP: gradients averaged over the processes; batch-norm statistics too on CUDA
        if device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    return (torch.compile(net) if compile else net), use_cl


def _train_mode(model, objective: Objective) -> None:
    """Training mode for the epoch; with :attr:`Objective.freeze_backbone`, only the linear head and the
    objective's modules train: the rest of the network is in eval mode and takes no gradient."""
    objective.modules.train()
    if not objective.freeze_backbone:
        model.train()
        return
    model.eval()
    model.head.train()


def _generators(seed: int, device) -> tuple[torch.Generator, torch.Generator]:
    """The data order's generator (on the host) and the augmentation's: on the device on CUDA (a host
    generator would copy its draws to the GPU every batch), else the same one."""
    gen = torch.Generator().manual_seed(int(seed))
    return gen, (torch.Generator(device=device).manual_seed(int(seed) + 1) if device.type == "cuda" else gen)


def _set_lr(opt: torch.optim.Optimizer, stage: Mapping, epoch: int) -> float:
    """The epoch's learning rate (:func:`lr_at`) on every parameter group, times the group's ``lr_scale``."""
    lr = lr_at(stage, epoch)
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr


def _batches(data: TensorImages, stage: Mapping, gen, rank: int, size: int):
    """The epoch's batches of indices in a seeded order; under DDP this process's share of each."""
    from .distributed import shard

    batches = data.index_batches(stage["batch_size"], shuffle=True, gen=gen, drop_last=True)
    return shard(batches, rank, size) if size > 1 else batches


def _step(opt, scaler, loss, objective: Objective, size: int) -> None:
    """Backward pass and optimiser step (through the float16 loss scaler where there is one). Under DDP
    the network's gradients are averaged during backward, the objective's own modules' here."""
    from .distributed import average_gradients

    opt.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if size > 1:
        average_gradients(objective.modules.parameters())
    _late_momentum_buffers(opt, objective.new_parameters())
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()


def _late_momentum_buffers(opt: torch.optim.Optimizer, params) -> None:
    """Fused SGD takes the momentum steps of a group's parameters all together and fails on a parameter
    whose first gradient comes after the others have stepped (an objective's term that starts at an
    epoch: VOS's energy weights and logistic regression). Such a parameter gets a zero momentum buffer,
    with which its first step is torch's own (buffer = gradient, dampening 0). Nothing changes for
    parameters whose first gradient comes with the others'."""
    ids = {id(p) for p in params}
    if not ids or not isinstance(opt, torch.optim.SGD):
        return
    buffer = lambda p: opt.state.get(p, {}).get("momentum_buffer")  # noqa: E731  (no empty state entries)
    for group in opt.param_groups:
        if not group["momentum"] or all(buffer(p) is None for p in group["params"]):
            continue
        for p in group["params"]:
            if id(p) in ids and p.grad is not None and buffer(p) is None:
                opt.state[p]["momentum_buffer"] = torch.zeros_like(p)


def _step_sums(loss, out: Forward, y) -> dict:
    """What every run logs, summed over the batch on the device."""
    with torch.no_grad():
        return {"loss": loss.detach().float() * y.shape[0],
                "ce": F.cross_entropy(out.logits.detach(), y, reduction="sum"),
                "correct": (out.logits.detach().argmax(1) == y).sum().float(),
                "feature_norm": out.pooled.detach().float().norm(dim=1).sum(),
                "nonfinite": (~torch.isfinite(loss.detach())).float()}


def _pooled(sums: Mapping, n: int, images: int, device, size: int) -> tuple[dict, int, int]:
    """The epoch's sums, samples and images on the host, summed over the processes under DDP."""
    if size == 1:
        return _read(sums), n, images
    from .distributed import all_reduce_sums

    tot = all_reduce_sums({**sums, "_n": float(n), "_images": float(images)}, device)
    return tot, int(tot.pop("_n")), int(tot.pop("_images"))


def _epoch_row(epoch: int, lr: float, tot: Mapping, n: int, images: int, secs: float, objective: Objective,
               fresh: _NewModules) -> dict:
    """The epoch's history row: means per sample of the loop's sums, the objective's fields, the fresh modules'."""
    n = max(n, 1)
    row = {"epoch": epoch + 1, "lr": lr, "loss": tot.get("loss", 0.0) / n, "ce": tot.get("ce", 0.0) / n,
           "acc": tot.get("correct", 0.0) / n, "feature_norm": tot.get("feature_norm", 0.0) / n,
           "seconds": secs, "images_per_s": images / max(secs, 1e-9)}
    row.update(objective.epoch_row(tot, n))
    row.update(fresh.row())
    return row


def _log_line(job: str, stage_name: str, stage: Mapping, row: Mapping, texts: Sequence[str], eta: str) -> str:
    """The epoch's log line: the loop's numbers, then ``texts`` (the objective's, the fresh modules', the
    hooks'), separated by semicolons."""
    loop = (f"{f'[{job}] ' if job else ''}{stage_name} epoch {row['epoch']}/{stage['epochs']} lr {row['lr']:.3g} "
            f"loss {row['loss']:.4f} ce {row['ce']:.4f} acc {100 * row['acc']:.1f}% |f| {row['feature_norm']:.3f}")
    return (f"{'; '.join([loop, *(t for t in texts if t)])} ({row['seconds']:.1f}s, {row['images_per_s']:.0f} img/s, "
            f"about {eta} left)")


def _steps_per_epoch(images: int, batch_size: int) -> int:
    """Steps of one epoch: full batches only (``drop_last``), one when the split is smaller than a batch."""
    return max(images // batch_size, 1)


def _progress_line(job: str, stage_name: str, stage: Mapping, epoch: int, progress: Progress, step: int,
                   sums: Mapping, n: int) -> str:
    """A line within a long epoch: where it is, the mean loss of its steps so far (read from the device
    here, the one synchronisation it costs) and how long the rest of the epoch takes at this pace."""
    loss = float(sums["loss"]) / max(n, 1)
    return (f"{f'[{job}] ' if job else ''}{stage_name} epoch {epoch + 1}/{stage['epochs']}: "
            f"{progress.text(step)} in this epoch; loss so far {loss:.4f}")


def _eta(started: float, done: int, left: int) -> str:
    """How long ``left`` more epochs take at the pace of the ``done`` ones of this run."""
    return duration((time.perf_counter() - started) / max(done, 1) * left)


class _NewModules:
    """The objective's freshly initialised parameters (:meth:`Objective.new_parameters`) and the values this
    seed initialised them with: how far they moved (history row, log line, collapse guard) and at what rate."""

    def __init__(self, objective: Objective, opt: torch.optim.Optimizer):
        self.objective, self.opt = objective, opt
        self.params = objective.new_parameters()
        self.init = [p.detach().clone() for p in self.params]

    def row(self) -> dict:
        if not self.params:
            return {}
        return {"new_modules_change": relative_change(self.params, self.init),
                "new_modules_lr": self.opt.param_groups[-1]["lr"]}

    def log_text(self, row: Mapping, history: Sequence[Mapping]) -> str:
        if not self.params:
            return ""
        own = self.objective.own_loss
        trend = own and history[0].get(own)
        return (f"new modules ({', '.join(self.objective.modules)}) lr {row['new_modules_lr']:.3g} moved "
                f"{100 * row['new_modules_change']:.3g}% from init"
                + (f", {own} {row[own] / trend:.3g}x epoch 1" if trend else ""))


class _CollapseGuard:
    """The collapse guard (module docstring): a non-finite loss stops the run at once; an epoch with a
    problem counts, ``guard.patience`` consecutive ones (or one at the last epoch) stop it. The message
    names the hyperparameters and ends with the objective's advice (:meth:`Objective.collapse_advice`)."""

    def __init__(self, settings: Mapping, objective: Objective, num_classes: int, stage_name: str, stage: Mapping,
                 collapsed: int = 0):
        self.settings, self.objective, self.num_classes = settings, objective, num_classes
        self.stage_name, self.stage, self.collapsed = stage_name, stage, collapsed
        self.hp = _hyperparameters(stage_name, stage, objective)

    def _fail(self, what: str) -> CollapseError:
        return CollapseError(f"{what}. Hyperparameters: {self.hp}. No checkpoint was written. "
                             f"{self.objective.collapse_advice()}")

    def check_finite(self, tot: Mapping, epoch: int) -> None:
        if tot.get("nonfinite", 0.0):
            raise self._fail(f"{self.stage_name}: the loss became NaN or infinite in epoch {epoch + 1} "
                             f"({int(tot['nonfinite'])} batch(es))")

    def problems(self, row: Mapping) -> list[str]:
        s, chance, out = self.settings, 1.0 / self.num_classes, []
        if self.objective.accuracy_guard and row["acc"] <= s.get("chance_factor", 1.5) * chance:
            out.append(f"train accuracy {100 * row['acc']:.1f}% is at chance (1/{self.num_classes} = "
                       f"{100 * chance:.1f}%)")
        if row["feature_norm"] <= s.get("min_feature_norm", 1e-3):
            out.append(f"the pooled features vanished (mean L2 norm {row['feature_norm']:.2e})")
        out.append(self.objective.collapse(row))
        if "new_modules_change" in row:
            out.append(self.objective.not_learned(row["new_modules_change"], s.get("min_new_module_change", 0.01),
                                                  self.stage["lr"]))
        return [p for p in out if p]

    def check(self, row: Mapping, epoch: int) -> None:
        problems = self.problems(row)
        self.collapsed = self.collapsed + 1 if problems else 0
        last = epoch + 1 == self.stage["epochs"]
        if self.settings.get("enabled", True) and (self.collapsed >= self.settings.get("patience", 3)
                                                   or (last and self.collapsed)):
            raise self._fail(f"{self.stage_name} collapsed at epoch {epoch + 1}: {'; '.join(problems)}")


class _TrainingState:
    """What a resume state (:class:`lffood.checkpoint.ResumeFile`) holds of a run, and its restoring."""

    def __init__(self, model, objective: Objective, opt, scaler, gen, aug_gen, hooks: Sequence[Hook]):
        self.model, self.objective, self.opt, self.scaler = model, objective, opt, scaler
        self.gen, self.aug_gen, self.hooks = gen, aug_gen, hooks

    def _hook_keys(self) -> list[str]:
        return [f"{i}:{type(h).__name__}" for i, h in enumerate(self.hooks)]

    def save(self, epoch: int, history: list[dict], collapsed: int) -> dict:
        return {"epoch": epoch, "model": self.model.state_dict(), "objective": self.objective.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": rng_state(self.gen, self.aug_gen),
                "hooks": {k: h.state_dict() for k, h in zip(self._hook_keys(), self.hooks)},
                "history": history, "collapsed_epochs": collapsed}

    def resume(self, resume: ResumeFile | None, device, stage_name: str, epochs: int) -> tuple[list[dict], int, int]:
        """``(history, collapse counter, first epoch)``: those of the saved state when ``resume`` has one of
        this training (which is then loaded into the run), else a fresh start's."""
        state = resume.load(device) if resume is not None else None
        if state is None:
            return [], 0, 0
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.opt.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_rng(self.gen, self.aug_gen, state["rng"])
        saved = state.get("hooks", {})
        for key, hook in zip(self._hook_keys(), self.hooks):
            if key in saved:
                hook.load_state_dict(saved[key])
        log.info("%s: resuming after epoch %d/%d from %s", stage_name, state["epoch"], epochs, resume.path)
        return list(state["history"]), state["collapsed_epochs"], state["epoch"]


def _hyperparameters(stage_name: str, stage: Mapping, objective: Objective) -> str:
    key = stage_name.split("[")[0]  # the config section: pretrain or finetune
    hp = f"{key}.lr={stage['lr']}, {key}.epochs={stage['epochs']}"
    return f"{hp}, {objective.hyperparameters()}" if objective.params else hp
