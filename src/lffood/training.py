"""CE pretraining and LFF / CE-control fine-tuning: one training loop for all three.

``train()`` runs one stage (a config section such as ``pretrain`` or ``finetune``). With an
``lff`` section it optimises CE + lambda * L_LFF (lambda = 0 gives the CE-only control with the
identical schedule and augmentation) and logs, every epoch, CE, L_LFF, the fraction of local
vectors selected as background, the mean norm of selected and unselected vectors, and accuracy.
A collapse guard stops a run whose accuracy falls to chance or whose features vanish.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping

import torch

from .data.loader import TensorImages
from .errors import CollapseError, LffoodError
from .io import atomic_path
from .losses import lff_objective

log = logging.getLogger("lffood.training")


def build_optimizer(model: torch.nn.Module, stage: Mapping) -> torch.optim.Optimizer:
    opt = stage["optimizer"]
    if opt == "sgd":
        return torch.optim.SGD(model.parameters(), lr=stage["lr"], momentum=stage["momentum"],
                               weight_decay=stage["weight_decay"], nesterov=stage.get("nesterov", False))
    if opt == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=stage["lr"], weight_decay=stage["weight_decay"])
    raise LffoodError(f"optimizer '{opt}' is not supported (use sgd or adamw)")


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


def train(model: torch.nn.Module, data: TensorImages, stage: Mapping, *, seed: int, device: torch.device,
          lff: Mapping | None = None, guard: Mapping | None = None, stage_name: str = "train",
          amp: bool = True, channels_last: bool = True, progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``model`` in place for ``stage['epochs']`` epochs; returns the per-epoch history."""
    model.to(device)
    use_cl = channels_last and device.type == "cuda"
    if use_cl:
        model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, stage)
    gen = torch.Generator().manual_seed(int(seed))
    aug_gen = torch.Generator(device=device).manual_seed(int(seed) + 1) if device.type == "cuda" else gen
    delta, mu, lam = (lff["delta"], lff["mu"], lff["lambda"]) if lff else (None, None, 0.0)
    weight_of = model.head.weight, model.head.bias
    k = model.num_classes
    guard = guard or {}
    chance = 1.0 / k
    collapsed_epochs = 0
    history: list[dict] = []
    autocast, scaler = mixed_precision(device, amp)  # one GradScaler for the whole run (fp16 only)
    for epoch in range(stage["epochs"]):
        lr = lr_at(stage, epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        t0 = time.perf_counter()
        tot = {"n": 0, "correct": 0, "ce": 0.0, "lff": 0.0, "loss": 0.0, "loc": 0, "sel": 0,
               "norm_sel": 0.0, "norm_unsel": 0.0, "feat_norm": 0.0}
        for idx in data.index_batches(stage["batch_size"], shuffle=True, gen=gen, drop_last=True):
            x, y = data.batch(idx, augment=stage["augment"], gen=aug_gen, channels_last=use_cl)
            with autocast:
                logits, pooled, fmap = model(x, return_features=True)
            logits = logits.float()
            if lff is not None:
                loss, ce, l_lff, st = lff_objective(logits, fmap, *weight_of, y, delta, mu, lam)
                tot["lff"] += float(l_lff.detach()) * len(y)
                tot["loc"] += st.n_locations
                tot["sel"] += st.n_selected
                tot["norm_sel"] += st.norm_selected_sum
                tot["norm_unsel"] += st.norm_unselected_sum
            else:
                loss = ce = torch.nn.functional.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise CollapseError(f"{stage_name}: loss became {float(loss)} at epoch {epoch + 1}. "
                                    f"Hyperparameters: lr={stage['lr']}"
                                    + (f", lff.delta={delta}, lff.mu={mu}, lff.lambda={lam}" if lff else "")
                                    + ". Lower the learning rate or lambda.")
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            with torch.no_grad():
                n = len(y)
                tot["n"] += n
                tot["correct"] += int((logits.argmax(1) == y).sum())
                tot["ce"] += float(ce) * n
                tot["loss"] += float(loss) * n
                tot["feat_norm"] += float(pooled.float().norm(dim=1).sum())
        secs = time.perf_counter() - t0
        n = max(tot["n"], 1)
        row = {"epoch": epoch + 1, "lr": lr, "loss": tot["loss"] / n, "ce": tot["ce"] / n,
               "acc": tot["correct"] / n, "feature_norm": tot["feat_norm"] / n,
               "seconds": secs, "images_per_s": tot["n"] / max(secs, 1e-9)}
        if lff is not None:
            sel, loc = tot["sel"], max(tot["loc"], 1)
            row.update({"lff": tot["lff"] / n, "frac_selected": sel / loc,
                        "norm_selected": tot["norm_sel"] / sel if sel else float("nan"),
                        "norm_unselected": tot["norm_unsel"] / (loc - sel) if loc > sel else float("nan")})
        history.append(row)
        msg = (f"{stage_name} epoch {epoch + 1}/{stage['epochs']} lr {lr:.3g} ce {row['ce']:.4f} "
               f"acc {100 * row['acc']:.1f}% |f| {row['feature_norm']:.3f}")
        if lff is not None:
            msg += (f" L_lff {row['lff']:.4f} selected {100 * row['frac_selected']:.1f}% "
                    f"norm sel/unsel {row['norm_selected']:.3f}/{row['norm_unselected']:.3f}")
        log.info("%s (%.1fs, %.0f img/s)", msg, secs, row["images_per_s"])
        if progress:
            progress(row)
        # collapse guard
        at_chance = row["acc"] <= guard.get("chance_factor", 1.5) * chance
        vanished = row["feature_norm"] <= guard.get("min_feature_norm", 1e-3)
        collapsed_epochs = collapsed_epochs + 1 if (at_chance or vanished) else 0
        last = epoch + 1 == stage["epochs"]
        if guard.get("enabled", True) and (collapsed_epochs >= guard.get("patience", 3) or (last and collapsed_epochs)):
            what = (f"train accuracy {100 * row['acc']:.1f}% is at chance (1/{k} = {100 * chance:.1f}%)" if at_chance
                    else f"the pooled features vanished (mean L2 norm {row['feature_norm']:.2e})")
            key = stage_name.split("[")[0]  # the config section: pretrain or finetune
            hp = f"{key}.lr={stage['lr']}, {key}.epochs={stage['epochs']}"
            if lff is not None:
                hp += f", lff.delta={delta}, lff.mu={mu}, lff.lambda={lam}"
            raise CollapseError(
                f"{stage_name} collapsed at epoch {epoch + 1}: {what}. Hyperparameters: {hp}. "
                "No checkpoint was written. For LFF, a margin mu far below the feature scale or a large "
                "lambda pushes all local vectors to zero; once local predictions are near uniform "
                "(1/K > delta) nothing is selected and training cannot recover. Lower lambda, raise mu, "
                "or lower the learning rate (README: 'When LFF collapses').")
    return history


def save_checkpoint(path, model: torch.nn.Module, meta: Mapping) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "meta": dict(meta)}, tmp)


def load_checkpoint(path, device="cpu"):
    """Return ``(model, meta)`` rebuilt from a checkpoint written by :func:`save_checkpoint`."""
    from .models import build_model

    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise LffoodError(f"{path}: checkpoint not found. Build it with snakemake {path}.") from None
    except Exception as exc:
        raise LffoodError(f"{path}: not a readable lffood checkpoint ({exc}). Delete it and rebuild with snakemake, "
                          "or point the config at a valid file.") from exc
    meta = ckpt["meta"]
    model = build_model(meta["model"], meta["num_classes"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device), meta


def import_checkpoint(path, model_cfg: Mapping, num_classes: int, device="cpu") -> torch.nn.Module:
    """Build ``model_cfg`` and load CE weights trained elsewhere (config key ``pretrain.checkpoint``).

    Accepts an lffood checkpoint, or a plain ``state_dict`` of the same architecture, bare or under a
    ``state_dict`` / ``model`` / ``net`` key, with or without DataParallel's ``module.`` prefix (so a
    torchvision-layout ResNet-50 trained on ImageNet-100 loads as it is). Strict: every weight must
    match, so a wrong architecture or class count fails here with the offending keys named."""
    from .models import build_model

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LffoodError(f"{path}: CE checkpoint not found (config key pretrain.checkpoint). Fix the path, or set "
                          "pretrain.checkpoint: null to pretrain with the workflow.") from None
    except Exception as exc:
        raise LffoodError(f"{path}: cannot read the CE checkpoint named by pretrain.checkpoint ({exc}). It must be a "
                          "torch.save'd state_dict (weights only).") from exc
    if isinstance(obj, Mapping) and "meta" in obj and "state_dict" in obj:
        meta = obj["meta"]
        if dict(meta.get("model", {})) != dict(model_cfg) or meta.get("num_classes") != num_classes:
            raise LffoodError(f"{path}: this lffood checkpoint is a {meta.get('model')} with {meta.get('num_classes')} "
                              f"classes; the benchmark needs {dict(model_cfg)} with {num_classes} (keys model and "
                              "pretrain.checkpoint).")
    state = obj
    for key in ("state_dict", "model", "net"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LffoodError(f"{path}: no state_dict of tensors found (looked at the top level and under "
                          "'state_dict', 'model', 'net'); key pretrain.checkpoint.")
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
            f"pretrain.checkpoint). Missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}; unexpected: "
            f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}; shape mismatches: {shapes[:5]}. Train the "
            "checkpoint with the same architecture and class count (the head must have one row per ID class).")
    model.load_state_dict(state)
    return model.to(device)
