"""The on-disk format of a preprocessed split, shared by every benchmark.

One split is one uncompressed ``.npz`` file holding

* ``images``: ``uint8`` array of shape ``(N, H, W, 3)`` (RGB, channels last);
* ``labels``: ``int64`` array of shape ``(N,)``; class index for ID splits, ``-1`` for OOD splits;
* ``meta``: a 0-d string array with a JSON object (dataset name, role, source, class names, ...).

Uncompressed so that loading is a memory copy; written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_path

OOD_LABEL = -1


@dataclass
class Split:
    images: np.ndarray
    labels: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise DataError(f"split images must be uint8 (N, H, W, 3); got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"labels shape {self.labels.shape} does not match {self.images.shape[0]} images")
        self.labels = self.labels.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def save_split(path: str | Path, split: Split) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=split.images, labels=split.labels, meta=np.array(json.dumps(split.meta)))


def load_split(path: str | Path) -> Split:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: split file not found. Build it with the workflow's data rules "
                        f"(snakemake {path}) or check data_dir in the config.")
    try:
        with np.load(path, allow_pickle=False) as z:
            return Split(images=z["images"], labels=z["labels"], meta=json.loads(str(z["meta"])))
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{path}: not a valid split file ({exc}). Delete it and rebuild it with snakemake.") from exc
