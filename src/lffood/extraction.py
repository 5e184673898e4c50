"""Run a trained model over every split and collect what the scorers and figures need."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .data.augment import center_crop as crop
from .data.loader import TensorImages
from .local import local_gt_prob, local_norms, multiscale_vectors
from .scorers.featurenorm import BlockNormRecorder, jigsaw
from .training import channels_last_allowed, mixed_precision

log = logging.getLogger("lffood.extraction")


@torch.no_grad()
def extract_split(model: torch.nn.Module, data: TensorImages, *, batch_size: int, device: torch.device,
                  amp: bool = True, with_gt_prob: bool = False, center_crop: int | None = None,
                  multiscale: bool = False, extras: Callable | None = None, block_norms: Mapping | None = None,
                  with_jigsaw: bool = False) -> dict[str, np.ndarray]:
    """Logits, pooled features, labels, predictions, local-vector norms (and GT probability per location),
    MODE's six region vectors (``multiscale``, float16) and an objective's own outputs (``extras(fmap,
    pooled) -> {name: tensor}``, e.g. SSOD's OOD head). ``center_crop`` crops larger stored images
    (ImageNet-100 train, kept at 256) to the test size. ``block_norms`` (FeatureNorm's request,
    ``{jigsaw_grid, jigsaw_seed}``) adds every block's FeatureNorm, recorded during the same forward
    pass, and with ``with_jigsaw`` (the ID training split) that of the jigsaw-shuffled images too."""
    model.eval().to(device)
    use_cl = channels_last_allowed(model, device)  # as in training: CUDA, and CPU models that opt in
    if use_cl:
        model.to(memory_format=torch.channels_last)
    out: dict[str, list] = {k: [] for k in ("logits", "features", "labels", "preds", "local_norms")}
    if with_gt_prob:
        out["local_gt_prob"] = []
    if multiscale:
        out["multiscale"] = []
    recorder = BlockNormRecorder(model.blocks()) if block_norms else None
    if recorder is not None:
        out["block_norms"] = []
        if with_jigsaw:
            out["jigsaw_block_norms"] = []
            grid = block_norms["jigsaw_grid"]
            keys = torch.rand(len(data), grid * grid, generator=torch.Generator().manual_seed(block_norms["jigsaw_seed"]))
    done = 0
    autocast, _ = mixed_precision(device, amp)
    with recorder or contextlib.nullcontext():
        for idx, gathered in data.prefetched(data.index_batches(batch_size)):
            x, y = data.batch(idx, channels_last=use_cl, gathered=gathered)
            if center_crop:
                x = crop(x, center_crop)
                if use_cl:
                    x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits, pooled, fmap = model(x, return_features=True)
            _collect(out, model, y, logits, pooled, fmap, with_gt_prob, multiscale, extras)
            if recorder is not None:
                out["block_norms"].append(recorder.take().cpu())
                if with_jigsaw:
                    with autocast:
                        model(jigsaw(x, grid, keys=keys[done:done + len(x)]))
                    out["jigsaw_block_norms"].append(recorder.take().cpu())
            done += len(x)
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def _collect(out, model, y, logits, pooled, fmap, with_gt_prob, multiscale, extras) -> None:
    """Append one batch's fields to ``out`` (on the host)."""
    logits = logits.float()
    out["logits"].append(logits.cpu())
    out["features"].append(pooled.float().cpu())
    out["labels"].append(y.cpu())
    out["preds"].append(logits.argmax(1).cpu())
    out["local_norms"].append(local_norms(fmap).cpu())
    if with_gt_prob:
        out["local_gt_prob"].append(local_gt_prob(fmap, model.head.weight, model.head.bias, y).cpu())
    if multiscale:
        # unit vectors: CSD uses only their directions, and float16 overflows past 65504 (a diverged model)
        out["multiscale"].append(F.normalize(multiscale_vectors(fmap), dim=-1).half().cpu())
    if extras is not None:
        for name, value in extras(fmap, pooled).items():
            out.setdefault(name, []).append(value.float().cpu())
