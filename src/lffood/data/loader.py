"""Serve a split as batches of tensors: the whole uint8 split lives on the device, batches are
gathered by index and augmented in one vectorised call (no DataLoader workers, no per-image PIL)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch

from .arrays import Split
from .augment import apply_train_augment, normalize, to_float


class TensorImages:
    def __init__(self, split: Split, mean: Sequence[float], std: Sequence[float], device="cpu"):
        self.images = torch.from_numpy(split.images).to(device)
        self.labels = torch.from_numpy(split.labels).to(device)
        self.mean, self.std = list(mean), list(std)
        self.meta = split.meta
        self.device = torch.device(device)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def index_batches(self, batch_size: int, shuffle: bool = False, gen: torch.Generator | None = None,
                      drop_last: bool = False) -> Iterator[torch.Tensor]:
        n = len(self)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            yield order[start:start + batch_size].to(self.device)

    def batch(self, idx: torch.Tensor, augment: Mapping | None = None, gen: torch.Generator | None = None,
              channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_float(self.images[idx])
        if augment:
            x = apply_train_augment(x, augment, gen)
        x = normalize(x, self.mean, self.std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx]
