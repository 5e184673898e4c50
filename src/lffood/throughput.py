"""A short smoke run of the training and extraction code paths on random data in the preprocessed
split format, reporting images per second: one training stage per registered objective (CE, LFF,
LogitNorm, SSOD, ALPA, ...) through the one training loop, then extraction. For checking a GPU node
before a long run:

    lffood smoke --arch resnet34 --size 32 --classes 10           # CIFAR-shaped
    lffood smoke --arch resnet50 --size 256 --crop 224 --classes 100 --batch 128   # ImageNet-shaped
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("lffood.throughput")


@dataclass
class SmokeResult:
    stage: str
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def device_time(fn, device) -> float:
    """Wall seconds of ``fn()``, with the GPU's queued work finished before and after (CUDA runs
    asynchronously: without the synchronisations the time would be that of queueing the work)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def timed_peak(fn, device) -> tuple[float, int | None]:
    """:func:`device_time` of ``fn()`` and the peak GPU memory allocated while it ran, in bytes (the
    allocator's peak is reset first; None off CUDA)."""
    import torch

    if device.type != "cuda":
        return device_time(fn, device), None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    seconds = device_time(fn, device)
    return seconds, int(torch.cuda.max_memory_allocated(device))


def smoke(arch: str | dict = "resnet34", size: int = 32, crop: int | None = None, classes: int = 10, n: int = 1024,
          batch: int = 128, epochs: int = 1, device_name: str = "auto", amp: bool = True, seed: int = 0,
          objectives: dict | None = None) -> list[SmokeResult]:
    """One training stage per objective (``objectives``: name -> parameters; default every registered
    objective with its defaults, CE first) and extraction, ``epochs`` epochs each over ``n`` random
    images. ``arch`` is a ``model.arch`` name or a whole ``model`` config section."""
    import torch

    from .data.arrays import Split
    from .data.loader import TensorImages
    from .extraction import extract_split
    from .models import build_model
    from .monitor import LocalMonitor
    from .objectives import build_objective, registered_objectives
    from .runtime import seed_everything, select_device
    from .training import train

    seed_everything(seed, deterministic=False)
    device = select_device(device_name)
    rng = np.random.default_rng(seed)
    split = Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, classes, n),
                  {"role": "id_train"})
    data = TensorImages(split, [0.5] * 3, [0.25] * 3, device)
    augment = ({"random_resized_crop": {"size": crop, "scale": [0.08, 1.0], "ratio": [0.75, 4 / 3]}, "hflip": True,
                "color_jitter": 0.0} if crop else {"crop_padding": 4, "hflip": True, "color_jitter": 0.0})
    stage = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False,
             "epochs": epochs, "batch_size": batch, "schedule": {"type": "constant"}, "augment": augment}
    objectives = objectives if objectives is not None else {name: {} for name in registered_objectives()}
    model = build_model(arch if isinstance(arch, dict) else {"arch": arch}, classes)
    results = []

    def timed(stage_name, fn, images):
        results.append(SmokeResult(stage_name, images, device_time(fn, device)))
        log.info("%s: %d images in %.2f s = %.0f img/s", stage_name, images, results[-1].seconds,
                 results[-1].images_per_s)

    no_guard = {"enabled": False}
    trained = (n // batch) * batch * epochs
    for name, params in sorted(objectives.items(), key=lambda kv: kv[0] != "ce"):
        objective = build_objective(name, params, feature_dim=model.feature_dim, num_classes=classes)
        timed(f"train ({name})", lambda: train(model, data, stage, objective=objective, seed=seed, device=device,
                                               guard=no_guard, amp=amp, stage_name=f"smoke[{name}]",
                                               hooks=[LocalMonitor()]), trained)
    timed("extract", lambda: extract_split(model, data, batch_size=2 * batch, device=device, amp=amp,
                                           role="id_train", center_crop=crop, requests={"multiscale": True}), n)
    return results
