"""Run a trained model over every split and collect what the scorers and figures need: the fields of
the feature-file registry (:mod:`lffood.fields`) that the split's role and the requests ask for."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

import numpy as np
import torch

from . import objectives, scorers  # noqa: F401  (their modules register their fields)
from .data.augment import center_crop as crop
from .data.loader import TensorImages
from .fields import Batch, Split, fields_on
from .runtime import Progress
from .training import channels_last_allowed, mixed_precision

log = logging.getLogger("lffood.extraction")


@torch.no_grad()
def extract_split(model: torch.nn.Module, data: TensorImages, *, batch_size: int, device: torch.device, role: str,
                  amp: bool = True, center_crop: int | None = None, requests: Mapping | None = None,
                  objective=None) -> dict[str, np.ndarray]:
    """Every field of the registry (:mod:`lffood.fields`) that a split of ``role`` has with ``requests``
    (``{request name: settings}``, :func:`lffood.fields.requests_in`): the fields required for the
    role, then the requested ones (``objective``: the checkpoint's, whose modules compute the fields
    it provides), each computed from the same forward pass and returned in its registered dtype.
    ``center_crop`` crops larger stored images (ImageNet-100 train, kept at 256) to the test size."""
    requests = dict(requests or {})
    model.eval().to(device)
    use_cl = channels_last_allowed(model, device)  # as in training: CUDA, and CPU models that opt in
    if use_cl:
        model.to(memory_format=torch.channels_last)
    wanted = fields_on(role, requests)
    out: dict[str, list] = {f.name: [] for f in wanted}
    autocast, _ = mixed_precision(device, amp)

    def forward(x):
        with autocast:
            return model(x)

    done, progress = 0, Progress(len(data))  # a line every PROGRESS_EVERY_S in a long split (ImageNet-100 train)
    with contextlib.ExitStack() as stack:
        states = {}  # per split: entered before the first forward pass (hooks), left after the last
        for f in wanted:
            if f.state_key not in states:
                states[f.state_key] = stack.enter_context(
                    f.start(Split(model, len(data), role, requests.get(f.requested_by), objective)))
        for idx, gathered in data.prefetched(data.index_batches(batch_size)):
            x, y = data.batch(idx, channels_last=use_cl, gathered=gathered)
            if center_crop:
                x = crop(x, center_crop)
                if use_cl:
                    x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits, pooled, fmap = model(x, return_features=True)
            batch = Batch(model, x, y, logits.float(), pooled, fmap, done, objective, forward)
            for f in wanted:
                out[f.name].append(f.compute(batch, states[f.state_key]).cpu())
            done += len(x)
            if progress.due(done):
                log.info("extracting a split of role %s: %s", role, progress.text(done, "images"))
    return {f.name: np.asarray(torch.cat(out[f.name]).numpy(), dtype=f.dtype) for f in wanted}
