"""One training loop for every objective: CE pretraining, the CE control, LFF, LogitNorm, SSOD, ALPA.

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
  synchronisation per epoch, none per step); every run also logs LFF's background selection at
  the benchmark's monitor delta, so logs of all models compare;
* the collapse guard: train accuracy at chance (objectives that train the classifier), vanished
  features, a non-finite loss, the objective's own collapse check, or freshly initialised modules
  that did not move from their initialisation (``guard.min_new_module_change``), for ``guard.patience``
  consecutive epochs (or at the last epoch) stops the run with a message naming the
  hyperparameters; no checkpoint is written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from .data.loader import TensorImages
from .errors import CollapseError, LffoodError
from .io import atomic_path
from .local import background_row, background_sums, local_gt_prob, local_norms
from .objectives import Forward, Objective

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
    sets a rate for its freshly initialised parameters (:meth:`Objective.new_module_lr`, e.g.
    ``ssod.new_module_lr``), those parameters (:meth:`Objective.new_parameters`) in a second group at
    that rate. ``lr_scale`` is a group's rate over the stage's: the schedule scales every group alike
    (:func:`train` sets ``lr_at(stage, epoch) * lr_scale`` each epoch)."""
    every = [*model.parameters(), *objective.modules.parameters()]
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


def _add(sums: dict, new: Mapping) -> None:
    for k, v in new.items():
        sums[k] = sums[k] + v if k in sums else v


def _read(sums: Mapping) -> dict[str, float]:
    """The epoch's sums on the host: device tensors in one transfer (the loop's only synchronisation);
    counts known on the host (plain numbers) as they are."""
    tensors = [k for k, v in sums.items() if isinstance(v, torch.Tensor)]
    out = {k: float(v) for k, v in sums.items() if k not in tensors}
    if tensors:
        out.update(zip(tensors, torch.stack([sums[k].float().reshape(()) for k in tensors]).tolist()))
    return out


def train(model: torch.nn.Module, data: TensorImages, stage: Mapping, *, objective: Objective, seed: int,
          device: torch.device, guard: Mapping | None = None, stage_name: str = "train", amp: bool = True,
          channels_last: bool = True, monitor_delta: float | None = None,
          progress: Callable[[dict], None] | None = None, resume: "ResumeFile | None" = None,
          job: str = "", compile: bool = False) -> list[dict]:
    """Train ``model`` (and the objective's own modules) in place for ``stage['epochs']`` epochs with
    ``objective``; returns the per-epoch history.

    With ``resume``, the complete training state (model, objective modules, optimiser, loss scaler,
    random generators, history, collapse counter) is written atomically at the end of an epoch, as
    often as costs at most 1% of the training time (:meth:`ResumeFile.due`), and a run that finds a
    state of the same training (same fingerprint) continues after its saved epoch: a job killed at any point and rerun ends with the weights of an uninterrupted run. ``job``
    names the job in every log line (e.g. ``embedded seed 0 lff``). ``compile``: run the forward pass
    through ``torch.compile`` (config key ``compile``)."""
    from .distributed import all_reduce_sums, average_gradients, shard, world

    rank, size = world()  # (0, 1) unless launched by torchrun (lffood.distributed)
    model.to(device)
    objective.modules.to(device)
    use_cl = channels_last and channels_last_allowed(model, device)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    net = model
    if size > 1:  # DDP: gradients averaged over the processes; batch-norm statistics too on CUDA
        if device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    opt = build_optimizer(param_groups(model, objective, stage), stage)
    # the freshly initialised parameters as this seed initialised them (taken before a resumed state loads)
    fresh = objective.new_parameters()
    fresh_init = [p.detach().clone() for p in fresh]
    net = torch.compile(net) if compile else net  # same parameters; the checkpoint is the model's
    gen = torch.Generator().manual_seed(int(seed))
    aug_gen = torch.Generator(device=device).manual_seed(int(seed) + 1) if device.type == "cuda" else gen
    views = 2 if objective.two_views else 1
    chance = 1.0 / model.num_classes
    guard = guard or {}
    monitor = monitor_delta is not None and not objective.reports_background
    collapsed_epochs = 0
    history: list[dict] = []
    autocast, scaler = mixed_precision(device, amp)  # one GradScaler for the whole run (fp16 only)
    first = 0
    if resume is not None:
        state = resume.load(device)
        if state is not None:
            model.load_state_dict(state["model"])
            objective.load_state_dict(state["objective"])
            opt.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            _set_rng(gen, aug_gen, state["rng"])
            history, collapsed_epochs, first = list(state["history"]), state["collapsed_epochs"], state["epoch"]
            log.info("%s: resuming after epoch %d/%d from %s", stage_name, first, stage["epochs"], resume.path)
    started = time.perf_counter()
    for epoch in range(first, stage["epochs"]):
        lr = lr_at(stage, epoch)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        model.train()
        objective.modules.train()
        t0 = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        n = images = 0
        batches = data.index_batches(stage["batch_size"], shuffle=True, gen=gen, drop_last=True)
        if size > 1:
            batches = shard(batches, rank, size)  # this process's share of every global batch
        for idx, gathered in data.prefetched(batches):  # host-kept splits: the next batch loads meanwhile
            x, y = _batch(data, idx, gathered, stage["augment"], aug_gen, use_cl, views)
            with autocast:
                logits, pooled, fmap = net(x, return_features=True)
            out = Forward(logits.float(), pooled, fmap, model.head.weight, model.head.bias, views)
            loss, obj_sums = objective.loss(out, y)
            if monitor:  # with the head as the loss saw it, before the step (as LFF selects)
                with torch.no_grad():
                    fm = fmap.detach()
                    obj_sums = {**obj_sums, **background_sums(
                        local_norms(fm), local_gt_prob(fm, model.head.weight, model.head.bias, y) < monitor_delta)}
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if size > 1:
                    average_gradients(objective.modules.parameters())
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                if size > 1:
                    average_gradients(objective.modules.parameters())  # the network's: DDP, during backward
                opt.step()
            with torch.no_grad():
                k = y.shape[0]
                step = {"loss": loss.detach().float() * k,
                        "ce": F.cross_entropy(out.logits.detach(), y, reduction="sum"),
                        "correct": (out.logits.detach().argmax(1) == y).sum().float(),
                        "feature_norm": pooled.detach().float().norm(dim=1).sum(),
                        "nonfinite": (~torch.isfinite(loss.detach())).float()}
                _add(sums, step)
                _add(sums, obj_sums)  # objectives return detached sums
            n += k
            images += len(idx)
        if size > 1:
            tot = all_reduce_sums({**sums, "_n": float(n), "_images": float(images)}, device)
            n, images = int(tot.pop("_n")), int(tot.pop("_images"))
        else:
            tot = _read(sums)
        secs = time.perf_counter() - t0
        n = max(n, 1)
        row = {"epoch": epoch + 1, "lr": lr, "loss": tot.get("loss", 0.0) / n, "ce": tot.get("ce", 0.0) / n,
               "acc": tot.get("correct", 0.0) / n, "feature_norm": tot.get("feature_norm", 0.0) / n,
               "seconds": secs, "images_per_s": images / max(secs, 1e-9)}
        if "locations" in tot:
            row.update(background_row(tot))
        row.update(objective.epoch_row(tot, n))
        if fresh:  # how far the freshly initialised modules moved from their initialisation, and at what rate
            row["new_modules_change"] = relative_change(fresh, fresh_init)
            row["new_modules_lr"] = opt.param_groups[-1]["lr"]
        history.append(row)
        hp = _hyperparameters(stage_name, stage, objective)
        if tot.get("nonfinite", 0.0):
            raise CollapseError(f"{stage_name}: the loss became NaN or infinite in epoch {epoch + 1} "
                                f"({int(tot['nonfinite'])} batch(es)). Hyperparameters: {hp}. No checkpoint was "
                                "written. Lower the learning rate or the objective's weight.")
        elapsed = time.perf_counter() - started
        eta = elapsed / (epoch + 1 - first) * (stage["epochs"] - epoch - 1)
        parts = [f"[{job}]" if job else "",
                 f"{stage_name} epoch {epoch + 1}/{stage['epochs']} lr {lr:.3g} loss {row['loss']:.4f} "
                 f"ce {row['ce']:.4f} acc {100 * row['acc']:.1f}% |f| {row['feature_norm']:.3f}",
                 objective.log_line(row)]
        if fresh:
            trend = objective.own_loss and history[0].get(objective.own_loss)
            parts.append(f"new modules ({', '.join(objective.modules)}) lr {row['new_modules_lr']:.3g} moved "
                         f"{100 * row['new_modules_change']:.3g}% from init"
                         + (f", {objective.own_loss} {row[objective.own_loss] / trend:.3g}x epoch 1" if trend else ""))
        if monitor:
            parts.append(f"background@{monitor_delta:g} {100 * row['frac_selected']:.1f}%")
        log.info("%s (%.1fs, %.0f img/s, about %s left)", " ".join(p for p in parts if p), secs, row["images_per_s"],
                 _duration(eta))
        if progress:
            progress(row)
        # collapse guard
        problems = []
        if objective.accuracy_guard and row["acc"] <= guard.get("chance_factor", 1.5) * chance:
            problems.append(f"train accuracy {100 * row['acc']:.1f}% is at chance (1/{model.num_classes} = "
                            f"{100 * chance:.1f}%)")
        if row["feature_norm"] <= guard.get("min_feature_norm", 1e-3):
            problems.append(f"the pooled features vanished (mean L2 norm {row['feature_norm']:.2e})")
        own = objective.collapse(row)
        if own:
            problems.append(own)
        if fresh:
            stuck = objective.not_learned(row["new_modules_change"], guard.get("min_new_module_change", 0.01),
                                          stage["lr"])
            if stuck:
                problems.append(stuck)
        collapsed_epochs = collapsed_epochs + 1 if problems else 0
        last = epoch + 1 == stage["epochs"]
        if guard.get("enabled", True) and (collapsed_epochs >= guard.get("patience", 3) or (last and collapsed_epochs)):
            raise CollapseError(
                f"{stage_name} collapsed at epoch {epoch + 1}: {'; '.join(problems)}. Hyperparameters: {hp}. "
                "No checkpoint was written. For LFF, a margin mu far below the feature scale or a large "
                "lambda pushes all local vectors to zero; once local predictions are near uniform "
                "(1/K > delta) nothing is selected and training cannot recover. Lower the objective's weight, "
                "raise lff.mu, or lower the learning rate (README: 'When training collapses').")
        if resume is not None and rank == 0 and epoch + 1 < stage["epochs"] and resume.due():
            resume.save({"epoch": epoch + 1, "model": model.state_dict(), "objective": objective.state_dict(),
                         "optimizer": opt.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
                         "rng": _get_rng(gen, aug_gen), "history": history, "collapsed_epochs": collapsed_epochs})
    if use_cl:  # the trained model leaves in the standard layout, as a checkpoint loads
        model.to(memory_format=torch.contiguous_format)
    return history


def _get_rng(gen: torch.Generator, aug_gen: torch.Generator) -> dict:
    out = {"gen": gen.get_state(), "torch": torch.get_rng_state()}
    if aug_gen is not gen:
        out["aug_gen"] = aug_gen.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng(gen: torch.Generator, aug_gen: torch.Generator, state: Mapping) -> None:
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch"])
    if aug_gen is not gen:
        aug_gen.set_state(state["aug_gen"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeFile:
    """The end-of-epoch training state of one training job, next to its checkpoint but not a declared
    output (Snakemake neither deletes nor tracks it). ``fingerprint`` identifies the training (its
    configuration, seed, parent model and data): a state written for another one is ignored and
    replaced, never resumed from. The state is written atomically and removed when the job succeeds.

    How often: a write keeps the GPU idle (serialising, writing and syncing 160-280 MB for ResNet-34
    and WRN-28-10: 0.5-1.1 s on a CPU, 0.9-1.7 s measured on a GPU node), a third of an H100 epoch
    (3-5 s) if done every epoch. So the state is written after the first epoch, then only once the
    training time since the last write is at least ``1 / max_cost`` times what that write took
    (:meth:`due`): the writes cost about ``max_cost`` (1%) of the training time whatever the machine
    and filesystem (1-1.9% for the shortest paper jobs, 30 epochs of 3-5 s, with the first write), a
    small model or a long epoch is still saved every epoch, and a killed job redoes at most about
    ``1 / max_cost`` writes' worth of training (90-170 s on an H100) besides its current epoch.
    Which epochs are saved changes nothing else: any of them resumes to the same weights.
    ``max_cost=None``: every epoch."""

    VERSION = 1
    MAX_COST = 0.01

    def __init__(self, path, fingerprint: str, max_cost: float | None = MAX_COST):
        self.path, self.fingerprint, self.max_cost = Path(path), fingerprint, max_cost
        self.last_write: tuple[float, float] | None = None  # (when it ended, seconds it took), perf_counter

    def due(self) -> bool:
        """Whether the state should be written at this epoch's end: always the first time, then once
        the time since the last write is ``1 / max_cost`` times as long as that write."""
        if self.max_cost is None or self.last_write is None:
            return True
        ended, took = self.last_write
        return time.perf_counter() - ended >= took / self.max_cost

    def load(self, device) -> dict | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=True)
        except Exception as exc:  # a torn or foreign file: start over, but say so
            log.warning("ignoring the unreadable resume state %s (%s); training from the first epoch", self.path, exc)
            return None
        if state.get("version") != self.VERSION or state.get("fingerprint") != self.fingerprint:
            log.warning("ignoring the resume state %s: it belongs to another training configuration, seed, parent "
                        "or dataset; training from the first epoch", self.path)
            return None
        return state

    def save(self, state: Mapping) -> None:
        import io

        started = time.perf_counter()
        buf = io.BytesIO()
        torch.save({"version": self.VERSION, "fingerprint": self.fingerprint, **state}, buf)
        with atomic_path(self.path, suffix=".pt") as tmp:
            tmp.write_bytes(buf.getbuffer())  # no copy of the serialised state
        ended = time.perf_counter()
        self.last_write = (ended, ended - started)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _hyperparameters(stage_name: str, stage: Mapping, objective: Objective) -> str:
    key = stage_name.split("[")[0]  # the config section: pretrain or finetune
    hp = f"{key}.lr={stage['lr']}, {key}.epochs={stage['epochs']}"
    return f"{hp}, {objective.hyperparameters()}" if objective.params else hp


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def save_checkpoint(path, model: torch.nn.Module, meta: Mapping, objective: Objective | None = None) -> None:
    """Write the network's weights, the objective's own modules (SSOD's OOD head, ALPA's projectors)
    and ``meta``. The bytes depend only on the content (serialised in memory, so no file name is
    recorded in the archive): identical runs give identical files, whose hash identifies a model."""
    import io

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    obj = {"state_dict": state, "meta": dict(meta),
           "objective_state": objective.state_dict() if objective is not None else {}}
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _read_checkpoint(path, device):
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise LffoodError(f"{path}: checkpoint not found. Build it with snakemake {path}.") from None
    except Exception as exc:
        raise LffoodError(f"{path}: not a readable lffood checkpoint ({exc}). Delete it and rebuild with snakemake, "
                          "or point the config at a valid file.") from exc


def load_checkpoint(path, device="cpu", with_objective: bool = False):
    """Return ``(model, meta)`` rebuilt from a checkpoint written by :func:`save_checkpoint`; with
    ``with_objective``, ``(model, meta, objective)`` where the objective (and its trained modules) is
    rebuilt from ``meta['objective']`` (None for checkpoints without one, e.g. imported models)."""
    from .models import build_model
    from .objectives import build_objective

    ckpt = _read_checkpoint(path, device)
    meta = ckpt["meta"]
    model = build_model(meta["model"], meta["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(device)
    if not with_objective:
        return model, meta
    spec = meta.get("objective")
    objective = None
    if spec:
        objective = build_objective(spec["name"], spec["params"], feature_dim=model.feature_dim,
                                    num_classes=meta["num_classes"])
        objective.load_state_dict(ckpt.get("objective_state", {}))
        objective.modules.to(device).eval()
    return model, meta, objective


def import_checkpoint(path, model_cfg: Mapping, num_classes: int, device="cpu") -> torch.nn.Module:
    """Build ``model_cfg`` and load CE weights trained elsewhere (config key ``variants.<name>.checkpoint``).

    Accepts an lffood checkpoint, or a plain ``state_dict`` of the same architecture, bare or under a
    ``state_dict`` / ``model`` / ``net`` key, with or without DataParallel's ``module.`` prefix (so a
    torchvision-layout ResNet-50 trained on ImageNet-100 loads as it is). Strict: every weight must
    match, so a wrong architecture or class count fails here with the offending keys named."""
    from .models import build_model

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LffoodError(f"{path}: CE checkpoint not found (config key variants.<name>.checkpoint). Fix the path, or set "
                          "variants.<name>.checkpoint: null to pretrain with the workflow.") from None
    except Exception as exc:
        raise LffoodError(f"{path}: cannot read the CE checkpoint named by variants.<name>.checkpoint ({exc}). It must be a "
                          "torch.save'd state_dict (weights only).") from exc
    if isinstance(obj, Mapping) and "meta" in obj and "state_dict" in obj:
        meta = obj["meta"]
        if dict(meta.get("model", {})) != dict(model_cfg) or meta.get("num_classes") != num_classes:
            raise LffoodError(f"{path}: this lffood checkpoint is a {meta.get('model')} with {meta.get('num_classes')} "
                              f"classes; the benchmark needs {dict(model_cfg)} with {num_classes} (keys model and "
                              "variants.<name>.checkpoint).")
    state = obj
    for key in ("state_dict", "model", "net"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LffoodError(f"{path}: no state_dict of tensors found (looked at the top level and under "
                          "'state_dict', 'model', 'net'); key variants.<name>.checkpoint.")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = build_model(model_cfg, num_classes)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        raise LffoodError(
            f"{path}: the weights do not fit model {dict(model_cfg)} with {num_classes} classes (key "
            f"variants.<name>.checkpoint). Missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}; unexpected: "
            f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}; shape mismatches: {shapes[:5]}. Train the "
            "checkpoint with the same architecture and class count (the head must have one row per ID class).")
    model.load_state_dict(state)
    return model.to(device)
