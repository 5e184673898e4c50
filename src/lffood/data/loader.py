"""Serve a split as batches of tensors: batches are gathered by index and augmented in one vectorised
call (no DataLoader workers, no per-image PIL).

Where the uint8 images live depends on their size (``device_max_bytes``):

* up to the threshold (default 4 GiB: every 32x32 split, the ImageNet-100 test and OOD splits at
  224x224) the whole split is copied to the device once;
* above it (the ImageNet-100 train split: ~25 GB at 256x256) the images stay on the host as the
  memory-mapped file from :func:`lffood.data.arrays.load_split`; each batch is gathered by index
  there (only its pages are read), pinned when the device is CUDA, and copied asynchronously.

Labels, and the normalisation's mean and std (built once), are always on the device. Nothing a
training step does waits for the GPU: what a step copies from the host (the gathered images and the
indices of a host-kept split) is pinned and copied asynchronously on CUDA (a copy from pageable
memory, e.g. of a Python list, synchronises the host with the GPU). Pass ``device_max_bytes=None``
to force device residency, 0 to force host residency.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .arrays import Split
from .augment import apply_train_augment, normalize, to_float


#: Splits up to this many bytes of uint8 images are copied to the device; bigger ones stay on the host.
DEVICE_MAX_BYTES = 4 * 2 ** 30


class TensorImages:
    def __init__(self, split: Split, mean: Sequence[float], std: Sequence[float], device="cpu",
                 device_max_bytes: int | None = DEVICE_MAX_BYTES):
        self.device = torch.device(device)
        images = split.images
        self.on_device = device_max_bytes is None or images.nbytes <= device_max_bytes
        if self.on_device:
            if isinstance(images, np.memmap) or not images.flags.writeable:
                images = np.array(images)  # read the file once, into ordinary memory
            self.images = torch.from_numpy(images).to(self.device)
        else:
            with warnings.catch_warnings():  # the memory map is read-only; it is only ever read
                warnings.filterwarnings("ignore", message=".*not writable.*")
                self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(np.asarray(split.labels)).to(self.device)
        self.mean, self.std = list(mean), list(std)
        # on the device once: normalize() built them from the lists for every batch, 2 copies per step
        self._mean, self._std = (torch.tensor(v, dtype=torch.float32, device=self.device) for v in (mean, std))
        self.meta = split.meta

    @property
    def index_device(self) -> torch.device:
        """Where batch indices live: with the images."""
        return self.device if self.on_device else torch.device("cpu")

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the device; a host tensor bound for a GPU is pinned first and copied asynchronously,
        so that the host does not wait for the GPU's queue to drain."""
        if t.is_cpu and self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 images ``idx`` (on :attr:`index_device`) on the device: from device memory, or gathered
        on the host and copied."""
        if self.on_device:
            return self.images[self.to_device(idx)]
        return self.to_device(self.images[idx])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def index_batches(self, batch_size: int, shuffle: bool = False, gen: torch.Generator | None = None,
                      drop_last: bool = False) -> Iterator[torch.Tensor]:
        """Batches of indices. The order is drawn with ``gen`` (a shuffle without a generator would use
        torch's global state: refused) and moved to the images' device once per epoch, so a step makes
        no host-to-device copy of indices (the epoch's one is asynchronous)."""
        if shuffle and gen is None:
            raise ValueError("index_batches(shuffle=True) needs a seeded torch.Generator (gen=...)")
        n = len(self)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        order = self.to_device(order) if self.on_device else order
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            yield order[start:start + batch_size]

    def batch(self, idx: torch.Tensor, augment: Mapping | None = None, gen: torch.Generator | None = None,
              channels_last: bool = False, gathered: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``idx`` as a normalised float batch (augmented with ``augment`` and ``gen``) and their
        labels. ``gathered``: the uint8 images when :meth:`prefetched` gathered them already."""
        x = to_float(self.gather(idx) if gathered is None else gathered)
        if augment:
            x = apply_train_augment(x, augment, gen)
        x = normalize(x, self._mean, self._std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[self.to_device(idx)]

    def prefetched(self, batches: Iterable[torch.Tensor], depth: int = 2) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(idx, uint8 images)`` for each index batch. For a split kept on the host (ImageNet-100
        train), a background thread gathers the next ``depth`` batches from the memory-mapped file (and
        pins and copies them to the GPU) while the current one computes: torch releases the GIL in both
        the gather and the compute. On the device there is nothing to overlap: gathered in place."""
        if self.on_device or depth < 1:
            for idx in batches:
                yield idx, self.gather(idx)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lffood-gather") as pool:
            pending = deque()
            for idx in batches:
                pending.append((idx, pool.submit(self.gather, idx)))
                if len(pending) > depth:
                    i, f = pending.popleft()
                    yield i, f.result()
            while pending:
                i, f = pending.popleft()
                yield i, f.result()
