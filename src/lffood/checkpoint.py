"""Checkpoints and the resume state of a training job.

* :func:`save_checkpoint` / :func:`load_checkpoint`: a trained model (the network's weights, the
  objective's own modules and the job's metadata), the artifact every later stage reads;
* :func:`import_checkpoint`: CE weights trained elsewhere (config key ``variants.<name>.checkpoint``);
* :class:`ResumeFile`: the end-of-epoch training state of a running job, so a killed job continues
  after its last saved epoch (:func:`lffood.training.train` writes and reads it), and the random
  generators' states it keeps (:func:`rng_state`, :func:`restore_rng`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import LffoodError
from .integrity import verify, write_bytes_sealed
from .io import atomic_path

if TYPE_CHECKING:
    from .objectives import Objective

log = logging.getLogger("lffood.checkpoint")


def save_checkpoint(path, model: torch.nn.Module, meta: Mapping, objective: Objective | None = None,
                    inputs=None) -> None:
    """Write the network's weights, the objective's own modules (SSOD's OOD head, ALPA's projectors)
    and ``meta``. The bytes depend only on the content (serialised in memory, so no file name is
    recorded in the archive): identical runs give identical files, whose hash identifies a model.
    The integrity manifest (lffood.integrity) records that hash and those of ``inputs`` (the parent)."""
    import io

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    obj = {"state_dict": state, "meta": dict(meta),
           "objective_state": objective.state_dict() if objective is not None else {}}
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_sealed(path, buf.getbuffer(), inputs=inputs)


def _read_checkpoint(path, device):
    """The checkpoint's content, its bytes verified against its integrity manifest first (read once)."""
    import io

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise LffoodError(f"{path}: checkpoint not found. Build it with snakemake {path}.") from None
    verify(path, data)
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
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


def _load_weights_file(path, what: str, key: str, fix: str):
    """The object ``torch.load`` reads from a weights file (weights only), or an error naming ``what`` the
    file is, the config ``key`` that names it and how to ``fix`` a missing file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LffoodError(f"{path}: {what} not found (config key {key}). {fix}") from None
    except Exception as exc:
        raise LffoodError(f"{path}: cannot read the {what} named by {key} ({exc}). It must be a torch.save'd "
                          "state_dict (weights only).") from exc


def _tensors(obj, path, key: str, under=("state_dict", "model", "net")) -> dict:
    """The ``state_dict`` in ``obj``: bare or under one of ``under``, without DataParallel's ``module.``."""
    state = obj
    for k in under:
        if isinstance(state, Mapping) and isinstance(state.get(k), Mapping):
            state = state[k]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LffoodError(f"{path}: no state_dict of tensors found (looked at the top level and under "
                          f"{', '.join(repr(k) for k in under)}); key {key}.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def import_checkpoint(path, model_cfg: Mapping, num_classes: int, device="cpu") -> torch.nn.Module:
    """Build ``model_cfg`` and load CE weights trained elsewhere (config key ``variants.<name>.checkpoint``).

    Accepts an lffood checkpoint, or a plain ``state_dict`` of the same architecture, bare or under a
    ``state_dict`` / ``model`` / ``net`` key, with or without DataParallel's ``module.`` prefix (so a
    torchvision-layout ResNet-50 trained on ImageNet-100 loads as it is). Strict: every weight must
    match, so a wrong architecture or class count fails here with the offending keys named."""
    from .models import build_model

    obj = _load_weights_file(path, "CE checkpoint", "variants.<name>.checkpoint",
                             "Fix the path, or set variants.<name>.checkpoint: null to pretrain with the workflow.")
    if isinstance(obj, Mapping) and "meta" in obj and "state_dict" in obj:
        meta = obj["meta"]
        if dict(meta.get("model", {})) != dict(model_cfg) or meta.get("num_classes") != num_classes:
            raise LffoodError(f"{path}: this lffood checkpoint is a {meta.get('model')} with {meta.get('num_classes')} "
                              f"classes; the benchmark needs {dict(model_cfg)} with {num_classes} (keys model and "
                              "variants.<name>.checkpoint).")
    state = _tensors(obj, path, "variants.<name>.checkpoint")
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
    ``max_cost=None``: every epoch.

    Integrity: the file is :data:`MAGIC`, the sha256 of the rest, then the serialised state; a state
    whose bytes do not hash to the recorded digest (flipped bytes, a truncation) is never resumed
    from. The hash is embedded rather than in a manifest beside the file (lffood.integrity), so that
    no kill between two writes can leave a good state refused: this file is its own record."""

    MAGIC = b"lffood resume state sha256\n"
    VERSION = 2  # 2: with the training hooks' states (the local-vector monitor's epochs)
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
        """The saved state, or None (training starts over) when there is none, or it is unreadable, or
        its bytes differ from its integrity manifest (a damaged state is never resumed from), or it
        belongs to another training."""
        import hashlib
        import io

        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        head = len(self.MAGIC) + 32
        if not data.startswith(self.MAGIC) or len(data) < head:
            log.warning("ignoring the resume state %s: it has no integrity header (torn, or written by an older "
                        "lffood); training from the first epoch", self.path)
            return None
        payload = memoryview(data)[head:]
        found, recorded = hashlib.sha256(payload).hexdigest(), data[len(self.MAGIC):head].hex()
        if found != recorded:
            log.warning("ignoring the resume state %s: content sha256 %s, but it records %s (%d bytes): damaged "
                        "(flipped bytes or truncated); training from the first epoch", self.path, found, recorded,
                        len(data))
            return None
        try:
            state = torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
        except Exception as exc:  # a torn or foreign file: start over, but say so
            log.warning("ignoring the unreadable resume state %s (%s); training from the first epoch", self.path, exc)
            return None
        if state.get("version") != self.VERSION or state.get("fingerprint") != self.fingerprint:
            log.warning("ignoring the resume state %s: it belongs to another training configuration, seed, parent "
                        "or dataset; training from the first epoch", self.path)
            return None
        return state

    def save(self, state: Mapping) -> None:
        import hashlib
        import io

        started = time.perf_counter()
        buf = io.BytesIO()
        torch.save({"version": self.VERSION, "fingerprint": self.fingerprint, **state}, buf)
        payload = buf.getbuffer()  # no copy of the serialised state
        with atomic_path(self.path, suffix=".pt") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(self.MAGIC + hashlib.sha256(payload).digest())
                fh.write(payload)
        ended = time.perf_counter()
        self.last_write = (ended, ended - started)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def rng_state(gen: torch.Generator, aug_gen: torch.Generator) -> dict:
    """The states of the training's generators and torch's global ones (CPU, and CUDA once initialised)."""
    out = {"gen": gen.get_state(), "torch": torch.get_rng_state()}
    if aug_gen is not gen:
        out["aug_gen"] = aug_gen.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(gen: torch.Generator, aug_gen: torch.Generator, state: Mapping) -> None:
    """Restore what :func:`rng_state` saved: the resumed run draws what the uninterrupted one would."""
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch"])
    if aug_gen is not gen:
        aug_gen.set_state(state["aug_gen"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def load_initial_weights(model: torch.nn.Module, path, key: str = "variants.<name>.init") -> torch.nn.Module:
    """Load every weight of ``model`` but its classifier head from a torchvision-layout ``state_dict``
    file (bare or under ``state_dict``/``model``, with or without DataParallel's ``module.``): the
    initial weights of a variant trained from scratch (config key ``key``), e.g. torchvision's
    ImageNet-1k ResNet-50 for an ImageNet-100 model. The head keeps its random initialisation (the
    file's has another class count); every other weight must be there with its shape."""
    obj = _load_weights_file(path, "initial weights", key, "Place the file there, use 'imagenet1k' to download "
                             "torchvision's, or set the key to null.")
    state = _tensors(obj, path, key)
    head = {f"{name}.{p}" for name, mod in model.named_modules() if mod is model.head
            for p, _ in mod.named_parameters()}
    own = model.state_dict()
    missing = [k for k in own if k not in head and k not in state]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k not in head and k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or shapes:
        raise LffoodError(f"{path}: the weights do not fit model.arch (key {key}). Missing: {missing[:5]}"
                          f"{' ...' if len(missing) > 5 else ''}; shape mismatches: {shapes[:5]}.")
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in head}, strict=False)
    return model
