"""``lffood bench``: one command that measures, side by side in one run, what the performance
targets are about, and prints ratios (the verdict) next to the absolute figures (which depend on
the machine):

* data: the project's tensor pipeline (:class:`lffood.data.loader.TensorImages`: gather, augment and
  normalise a batch in one vectorised call on the device) against the usual torchvision pipeline
  (a ``Dataset`` of PIL images, ``RandomCrop``/``ToTensor``/``Normalize`` per image, a ``DataLoader``)
  on the same images and model, each feeding the same training step;
* training: every objective's step against the CE step (time per image), and the host
  synchronisations per step of each (counted with :class:`SyncCounter`, and on a GPU also by CUDA
  itself, :class:`CudaSyncCounter`; 0 is the target);
* layout: the CE step in channels-last memory layout (the default where the model allows it)
  against contiguous NCHW;
* extraction: images/s;
* scorers: each cached-feature scorer's fit and score time on one model's cached features;
* the loader of host-kept splits (ImageNet-100 train, memory-mapped): one epoch of gather + step with
  the next batch gathered serially or in a background thread (:meth:`TensorImages.prefetched`), each
  from a cold page cache (the file's pages are evicted first).

On a CPU it runs in about a minute with the defaults; with a GPU it runs there (``--device``). It runs
with the workflow's cuDNN setting: config key ``deterministic``, true by default and in every
benchmark of config.yaml, the paper's included (no cuDNN autotuning: a rerun, or a run resumed after
a kill, gives the same numbers on the same GPU), so its figures are those of the workflow's steps.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .throughput import device_time as _timed

#: timed runs of each objective's epoch; the fastest counts
REPEATS = 3

log = logging.getLogger("lffood.bench")


# ----------------------------------------------------------------------------- host synchronisations
_INHERITED = object()


class _Counts:
    """What both sync counters report: ``calls`` (which call, how often) and their ``count``."""

    def __init__(self):
        self.calls: dict[str, int] = {}

    @property
    def count(self) -> int:
        return sum(self.calls.values())


class SyncCounter(_Counts):
    """Counts, by the Python calls that make them, the operations that make the host wait for a GPU:

    * value reads (``METHODS``): ``item``, ``tolist``, ``numpy``, ``cpu``, ``bool``/``float``/``int`` of
      a tensor;
    * blocking copies from the host: ``torch.tensor``, ``torch.as_tensor`` or ``torch.asarray`` of host
      data (a Python number or list, a NumPy array) with a ``device`` (on CUDA a copy from pageable
      memory, which waits for the GPU's queue), and ``Tensor.to`` / ``Tensor.copy_`` between the host
      and a GPU unless asynchronous (``non_blocking``, from pinned memory).

    The same code runs on the CPU, where it counts what the step would do on a GPU: this is what the
    tests use (a ``torch.tensor([0.5, 0.5, 0.5], device=dev)`` counts on any device). What Python does
    not see (a synchronisation inside an operator, such as boolean-mask indexing) CUDA counts:
    :class:`CudaSyncCounter`, on a GPU.

    ::

        with SyncCounter() as c:
            step()
        c.count, c.calls  # number, and which calls
    """

    METHODS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__")
    FACTORIES = ("tensor", "as_tensor", "asarray")

    def __enter__(self) -> "SyncCounter":
        import torch

        # what torch.Tensor itself defines (most of these are inherited from its C base class): restored
        # exactly on exit, so no slower Python-level override stays behind
        self._own = {m: torch.Tensor.__dict__.get(m, _INHERITED) for m in (*self.METHODS, "to", "copy_")}
        self._factories = {f: getattr(torch, f) for f in self.FACTORIES}
        for m in self.METHODS:
            setattr(torch.Tensor, m, self._wrap(m, getattr(torch.Tensor, m)))
        torch.Tensor.to = self._wrap("to", torch.Tensor.to, _blocking_to)
        torch.Tensor.copy_ = self._wrap("copy_", torch.Tensor.copy_, _blocking_copy)
        for f, original in self._factories.items():
            setattr(torch, f, self._wrap(f"torch.{f}", original, _from_host))
        return self

    def _wrap(self, name, original, waits=None):
        def counted(*args, **kwargs):
            if waits is None or waits(*args, **kwargs):
                self.calls[name] = self.calls.get(name, 0) + 1
            return original(*args, **kwargs)

        return counted

    def __exit__(self, *exc) -> None:
        import torch

        for m, own in self._own.items():
            if own is _INHERITED:
                delattr(torch.Tensor, m)
            else:
                setattr(torch.Tensor, m, own)
        for f, original in self._factories.items():
            setattr(torch, f, original)


def _from_host(data, *args, **kwargs) -> bool:
    """``torch.tensor/as_tensor/asarray(data, ...)``: a blocking copy when a device is named and
    ``data`` is host data (any device: the call names the device it is meant for), or a host
    tensor bound for another device (such a copy blocks even from pinned memory)."""
    import torch

    device = kwargs.get("device")  # keyword-only in all three
    if device is None:
        return False
    if isinstance(data, torch.Tensor):
        return data.is_cpu and torch.device(device).type not in ("cpu", "meta")
    return True


def _crosses(src, dst, non_blocking: bool, host) -> bool:
    """A copy between the host and a GPU that waits: not asynchronous, or from unpinned host memory
    (``host``: the host-side tensor; None where the copy allocates it, pinned)."""
    types = {src.type, dst.type}
    if "cpu" not in types or len(types) != 2 or "meta" in types:
        return False
    return not (non_blocking and (host is None or host.is_pinned()))


def _blocking_to(tensor, *args, **kwargs) -> bool:
    import torch

    kwargs.pop("copy", None)  # to()'s own argument, which _parse_to does not take
    device, _, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
    return device is not None and _crosses(tensor.device, device, non_blocking, tensor if tensor.is_cpu else None)


def _blocking_copy(dst, src, non_blocking: bool = False) -> bool:
    return _crosses(src.device, dst.device, non_blocking, dst if dst.is_cpu else src)


class CudaSyncCounter(_Counts):
    """Counts the synchronising CUDA operations that CUDA itself reports while the block runs
    (``torch.cuda.set_sync_debug_mode("warn")``: a blocking copy to or from pageable host memory, a
    stream synchronisation, an ``item``...), whatever Python call caused them. The same interface
    as :class:`SyncCounter` (``count``, ``calls``); CUDA only. Other warnings raised meanwhile are
    passed on."""

    MESSAGE = "synchronizing CUDA operation"

    def __enter__(self) -> "CudaSyncCounter":
        import warnings

        import torch

        self._mode = torch.cuda.get_sync_debug_mode()
        self._catcher = warnings.catch_warnings(record=True)
        self._records = self._catcher.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc) -> None:
        import warnings

        import torch

        torch.cuda.set_sync_debug_mode(self._mode)
        self._catcher.__exit__(*exc)
        for w in self._records:
            if self.MESSAGE in str(w.message):
                self.calls["cuda sync"] = self.calls.get("cuda sync", 0) + 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def syncs_per_step(train_fn, steps_a: int, steps_b: int, counter=SyncCounter) -> float:
    """Host synchronisations per training step: ``train_fn(steps)`` runs one epoch of ``steps`` steps;
    the difference between two epoch lengths cancels what happens once per epoch. ``counter``:
    :class:`SyncCounter` (value reads, any device) or :class:`CudaSyncCounter` (CUDA's own count)."""
    counts = []
    for steps in (steps_a, steps_b):
        with counter() as c:
            train_fn(steps)
        counts.append(c.count)
    return (counts[1] - counts[0]) / (steps_b - steps_a)


# ----------------------------------------------------------------------------- figures
@dataclass
class Figure:
    group: str
    name: str
    value: float
    unit: str
    ratio: float | None = None  # against the group's reference (the verdict)
    note: str = ""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The training loop logs every epoch; the benchmark prints its own table."""
    logger = logging.getLogger("lffood.training")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass
class StepFigures:
    """One objective's training step, measured by :func:`measure_training`."""
    images: int                        # images through the network in the timed epoch (two views count twice)
    seconds: float                     # wall time of the timed epoch, the device's queue drained
    syncs_per_step: float              # host synchronisations per step (SyncCounter); 0 is the target
    cuda_syncs_per_step: float | None  # synchronising operations CUDA reports per step; None off CUDA
    peak_bytes: int | None             # peak GPU memory allocated during the timed epoch; None off CUDA

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def measure_training(model, data_for, stage, objective, *, device, amp: bool = True, seed: int = 0,
                     warmup_steps: int = 1, steps: int = 10, sync_steps: tuple[int, int] = (2, 4),
                     monitor: bool = True) -> StepFigures:
    """Time ``steps`` training steps of ``objective`` through the one training loop (one epoch, the
    collapse guard off) after ``warmup_steps`` untimed ones, then count host synchronisations per
    step (:func:`syncs_per_step` over epochs of ``sync_steps`` steps; with CUDA's own count too on a
    GPU). ``data_for(k)``: a ``TensorImages`` of exactly ``k`` batches of ``stage['batch_size']``.
    ``monitor``: with the local-vector monitor every workflow training job runs (:mod:`lffood.monitor`)."""
    from .monitor import LocalMonitor
    from .throughput import timed_peak
    from .training import train

    one_epoch = {**stage, "epochs": 1}
    views = 2 if objective.two_views else 1

    def run(data):
        train(model, data, one_epoch, objective=objective, seed=seed, device=device, guard={"enabled": False},
              amp=amp, stage_name=f"measure[{objective.name}]", hooks=[LocalMonitor()] if monitor else [])

    with _quiet():
        if warmup_steps:
            run(data_for(warmup_steps))
        data = data_for(steps)  # made before the clock starts: the copy to the device is not a step
        seconds, peak = timed_peak(lambda: run(data), device)
        syncs = syncs_per_step(lambda k: run(data_for(k)), *sync_steps)
        cuda_syncs = (syncs_per_step(lambda k: run(data_for(k)), *sync_steps, counter=CudaSyncCounter)
                      if device.type == "cuda" else None)
    return StepFigures(steps * stage["batch_size"] * views, seconds, syncs, cuda_syncs, peak)


def run_bench(*, arch: str | dict = {"arch": "resnet", "blocks": [1, 1, 1], "widths": [16, 32, 64]}, size: int = 16,
              classes: int = 8, n: int = 1024, batch: int = 128, device_name: str = "auto", amp: bool = True,
              workers: int = 2, seed: int = 0, deterministic: bool = True) -> list[Figure]:
    """Every figure of the benchmark (module docstring). Defaults: the embedded benchmark's model and
    image size; ``--arch resnet34 --size 32 --classes 10`` for CIFAR's; ``deterministic``: the
    workflow's default (config key ``deterministic``)."""
    import torch

    from .data.arrays import Split
    from .data.loader import TensorImages
    from .extraction import extract_split
    from .models import build_model
    from .objectives import build_objective, registered_objectives
    from .runtime import seed_everything, select_device
    from .monitor import LocalMonitor
    from .scorers import build_scorer
    from .training import channels_last_allowed, train

    seed_everything(seed, deterministic=deterministic)
    device = select_device(device_name)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    model_cfg = arch if isinstance(arch, dict) else {"arch": arch}
    model = build_model(model_cfg, classes).to(device)
    mean, std = [0.5] * 3, [0.25] * 3
    augment = {"crop_padding": 2, "hflip": True, "color_jitter": 0.0}
    stage = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "epochs": 1,
             "batch_size": batch, "schedule": {"type": "constant"}, "augment": augment}
    figures: list[Figure] = []
    steps = n // batch
    trained = steps * batch

    # ---- data pipelines, each feeding the same CE step
    data = TensorImages(Split(images, labels, {"role": "id_train"}), mean, std, device)
    ce = build_objective("ce", {}, feature_dim=model.feature_dim, num_classes=classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    gen = torch.Generator().manual_seed(seed)
    # augmentation draws on the device, as in train(): a host generator would copy them to a GPU every batch
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1) if device.type == "cuda" else gen

    def ours(with_step: bool):
        for idx in data.index_batches(batch, shuffle=True, gen=gen, drop_last=True):
            x, y = data.batch(idx, augment=augment, gen=aug_gen)
            if with_step:
                step(x, y)

    loader = _torchvision_loader(images, labels, batch, workers, padding=2, mean=mean, std=std, seed=seed)

    def theirs(with_step: bool):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if with_step:
                step(x, y)

    model.train()
    ours(True), theirs(True)  # warm-up: kernels, worker processes, allocator
    t_ours_data, t_theirs_data = _timed(lambda: ours(False), device), _timed(lambda: theirs(False), device)
    t_ours, t_theirs = _timed(lambda: ours(True), device), _timed(lambda: theirs(True), device)
    figures += [
        Figure("data", "project pipeline (batches only)", trained / t_ours_data, "img/s", 1.0),
        Figure("data", f"torchvision DataLoader, {workers} workers (batches only)", trained / t_theirs_data, "img/s",
               t_ours_data / t_theirs_data, "ratio: time of ours / theirs (below 1 = ours faster)"),
        Figure("data", "project pipeline + CE step", trained / t_ours, "img/s", 1.0),
        Figure("data", "torchvision DataLoader + CE step", trained / t_theirs, "img/s", t_ours / t_theirs,
               "ratio: time of ours / theirs"),
    ]

    # ---- every objective's step against CE's, and host synchronisations per step
    with _quiet():
        times, notes = {}, {}
        train(model, data, stage, objective=ce, seed=seed, device=device, guard={"enabled": False}, amp=amp)  # warm-up
        # CE is timed first and again last: its reference is the faster of the two (the first runs of a
        # process were measured up to 2.5x slower than the same epoch later)
        for name in [*sorted(registered_objectives(), key=lambda o: o != "ce"), "ce"]:
            obj = build_objective(name, {}, feature_dim=model.feature_dim, num_classes=classes)
            # the best of three: one short run is at the mercy of the machine (a first run measured CE
            # at 0.4x its own later speed, so every other objective looked faster than CE)
            secs = min(_timed(lambda: train(model, data, stage, objective=obj, seed=seed, device=device,
                                            guard={"enabled": False}, amp=amp, hooks=[LocalMonitor()]), device)
                       for _ in range(REPEATS))
            if name in times:  # CE's second timing
                times[name] = min(times[name], secs / trained)
                continue
            times[name] = secs / trained

            def one_epoch(k, obj=obj):
                sub = TensorImages(Split(images[:k * batch], labels[:k * batch], {}), mean, std, device)
                train(model, sub, stage, objective=obj, seed=seed, device=device, guard={"enabled": False}, amp=amp,
                      hooks=[LocalMonitor()])

            note = f"{syncs_per_step(one_epoch, 2, 4):.0f} host syncs/step"
            if device.type == "cuda":
                note += f" ({syncs_per_step(one_epoch, 2, 4, counter=CudaSyncCounter):.0f} by CUDA's count)"
            notes[name] = note + (" (CE: reference)" if name == "ce" else "")
        figures += [Figure("train", f"{name} step", 1.0 / t, "img/s", t / times["ce"], notes[name])
                    for name, t in times.items()]

    # ---- memory layout of the training step: channels-last (train's default on CUDA, and on the CPU
    # for the models that opt in: models.base.cpu_channels_last) against contiguous NCHW
    with _quiet():
        run = {cl: (lambda cl=cl: train(model, data, stage, objective=ce, seed=seed, device=device,
                                        guard={"enabled": False}, amp=amp, channels_last=cl)) for cl in (True, False)}
        t_cl, t_nchw = _timed(run[True], device), _timed(run[False], device)
    figures += [
        Figure("layout", "CE step, channels-last" if channels_last_allowed(model, device) else "CE step (the model keeps NCHW here)", trained / t_cl,
               "img/s", 1.0),
        Figure("layout", "CE step, NCHW", trained / t_nchw, "img/s", t_nchw / t_cl,
               "ratio: time of NCHW / channels-last (above 1 = channels-last faster)"),
    ]

    # ---- extraction
    extracted = {}
    requests = {"multiscale": True}
    t = _timed(lambda: extracted.update(extract_split(model, data, batch_size=2 * batch, device=device, amp=amp,
                                                      role="id_train", requests=requests)), device)
    figures.append(Figure("extract", "extraction (all fields, multiscale)", n / t, "img/s"))
    featurenorm = build_scorer("featurenorm")
    with_fn = {**requests, **featurenorm.extraction_request(featurenorm.params)}
    t_fn = _timed(lambda: extracted.update(extract_split(
        model, data, batch_size=2 * batch, device=device, amp=amp, role="id_train", requests=with_fn)), device)
    figures.append(Figure("extract", "+ FeatureNorm's block norms, ID train split", n / t_fn, "img/s", t_fn / t,
                          "ratio: time with / without (block norms of the images and of their jigsaw versions)"))

    # ---- cached-feature scorers on these features
    figures += _scorer_figures(model, extracted)
    figures += _prefetch_figures(model, step, device, batch, seed)
    return figures


def _prefetch_figures(model, step, device, batch, seed, n=1536, size=96) -> list[Figure]:
    """Serial vs background gathering of a memory-mapped, host-kept split, cold page cache each time."""
    import os
    import tempfile

    import torch

    from .data.arrays import Split, load_split, save_split
    from .data.loader import TensorImages

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "host.npz")
        save_split(path, Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                               rng.integers(0, 2, n), {"role": "id_train"}))
        data = TensorImages(load_split(path, verify=False), [0.5] * 3, [0.25] * 3, device, device_max_bytes=0)
        times = {0: [], 2: []}
        for depth in (0, 2, 0, 2):  # alternated, best of two: the machine's drift cancels
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # cold: the pages come from the disk again
            os.close(fd)
            gen = torch.Generator().manual_seed(seed)

            def epoch():
                for idx, gathered in data.prefetched(data.index_batches(batch, shuffle=True, gen=gen), depth=depth):
                    x, y = data.batch(idx, gathered=gathered)
                    step(x[:, :, :16, :16].contiguous(), y % 2)  # the benchmark's model on a crop

            times[depth].append(_timed(epoch, device))
        times = {d: min(t) for d, t in times.items()}
    return [Figure("loader", "host-kept split, serial gather", n / times[0], "img/s", 1.0),
            Figure("loader", "host-kept split, background gather (depth 2)", n / times[2], "img/s",
                   times[2] / times[0], "ratio: time with / without the background thread")]


def _torchvision_loader(images, labels, batch, workers, *, padding, mean, std, seed):
    """The usual pipeline: a Dataset of PIL images with per-image torchvision transforms, a DataLoader."""
    import torch
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose([transforms.RandomCrop(images.shape[1], padding=padding), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(mean, std)])

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return tf(Image.fromarray(images[i])), int(labels[i])

    return torch.utils.data.DataLoader(Images(), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                       generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0)


def _scorer_figures(model, out) -> list[Figure]:
    """Fit and score time of every cached-feature scorer on ``out``, features extracted from ``model``."""
    from .fields import registered_fields
    from .scorers import FeatureSet, Head, build_scorer, registered_scorers

    head = Head(model.head.weight.detach().cpu().numpy(), model.head.bias.detach().cpu().numpy())
    fields = {k: v for k, v in out.items() if registered_fields()[k].optional}
    train = FeatureSet(out["logits"], out["features"], out["labels"], fields)
    test = FeatureSet(out["logits"], out["features"], None, fields)
    figures = []
    for name, cls in registered_scorers().items():
        if cls.score_on != "features" or not {*cls.requires, *cls.fit_fields()} <= set(fields):
            continue
        params = {"k": 10} if name in ("knn", "csd") else {}
        sc = build_scorer(name, params)
        t0 = time.perf_counter()
        sc.fit(train, head)
        t1 = time.perf_counter()
        sc.score(test)
        t2 = time.perf_counter()
        figures.append(Figure("scorers", f"{name} fit + score", (t2 - t0) * 1000, "ms",
                              note=f"fit {1000 * (t1 - t0):.1f} ms, score {1000 * (t2 - t1):.1f} ms, {len(test.logits)} samples"))
    return figures


def format_figures(figures: list[Figure]) -> str:
    lines = [f"{'group':8s} {'what':44s} {'value':>10s} {'unit':6s} {'ratio':>7s}  note"]
    for f in figures:
        ratio = f"{f.ratio:7.2f}" if f.ratio is not None else " " * 7
        lines.append(f"{f.group:8s} {f.name:44s} {f.value:10.1f} {f.unit:6s} {ratio}  {f.note}")
    return "\n".join(lines)
