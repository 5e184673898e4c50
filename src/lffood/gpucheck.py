"""``lffood gpu-check``: one prepared check of a GPU machine, run once; sized to finish within 8 minutes
on one H100 (``--budget-s 480``).

It writes one JSON file (``--out``) and prints a short summary. Sections of the file:

* ``device``: what ran it (GPU name, memory, torch, CUDA and cuDNN versions) and ``provenance``
  (commit, machine, date: :func:`lffood.runtime.provenance`);
* ``settings``: what every measurement used, read from the paper benchmarks' config as the workflow
  does: mixed precision (``amp``, bfloat16 where the GPU has it), channels-last layout where the
  model allows it (:func:`lffood.training.channels_last_allowed`), ``deterministic`` (cuDNN
  autotuning off), the number of warm-up and timed steps;
* ``training``: one row per objective and architecture at the paper's sizes (CIFAR ResNet-34 and
  WRN-28-10 at 32 x 32, batch 128; ResNet-50 at 224 x 224 from images stored at 256, batch 256),
  each the variant's own stage and parameters through the one training loop on random images:
  ``images_per_s`` (images through the network: both views of a two-view objective count),
  ``syncs_per_step`` (value reads to the host per step, :class:`lffood.bench.SyncCounter`; 0 is the
  target), ``cuda_syncs_per_step`` (synchronising operations CUDA itself reports per step, from
  ``torch.cuda.set_sync_debug_mode``; null off CUDA) and ``peak_memory_gb`` (null off CUDA);
* ``extraction``: images/s of feature extraction with the benchmark's fields (multiscale vectors,
  FeatureNorm's block norms), on the ID training split (its jigsaw pass and centre crop included)
  and on test-size images (test and OOD splits);
* ``scorers``: the GPU side of the scorers, the scorers that run the network (ODIN), images/s;
* ``ddp``: one short training through the real multi-GPU launcher (:func:`lffood.ddp.launch`, which
  the train rule uses when ``compute.train_gpus`` > 1) with one process: whether it succeeded, its
  images/s;
* ``rehearsal``: :func:`lffood.rehearsal.rehearse` on this device (every rule of the paper benchmarks
  on tiny upstream-format data), its exit code and wall time (``--no-rehearsal`` skips it);
* ``projection``: the projected time of each paper benchmark as configured (every variant, every
  seed) on this GPU and this machine's CPU cores, per stage: training, extraction, network scoring
  and the k-NN searches from the measured rates, the other scorers from the CPU cost model
  (:func:`lffood.projection.benchmark_projection`, the same projection ``lffood project`` prints from
  counted FLOPs).

``--tiny`` runs every section with the embedded benchmark's small model at 16 x 16 and a few images
(the CPU test, so that the check cannot rot); the projection then uses the tiny model's rates and
means nothing. Every measurement runs a fixed small number of steps; measurements that would start
after the time budget (less what the DDP run and the rehearsal need) are skipped, with the reason.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .costs import data_sizes
from .projection import data_classes, measured, text
from .resources import CONFIG_SCHEMA

log = logging.getLogger("lffood.gpucheck")


# ----------------------------------------------------------------------------- what is measured
#: The embedded benchmark's model: what ``--tiny`` measures instead of every paper architecture.
TINY_MODEL = {"arch": "resnet", "blocks": [1, 1, 1], "widths": [16, 32, 64]}


@dataclass(frozen=True)
class Steps:
    """How long each measurement runs: untimed warm-up steps, timed steps, the two epoch lengths
    whose difference gives the synchronisations per step, batches of extraction and network
    scoring (after one warm-up batch), and the steps of each of the DDP run's two epochs."""
    warmup: int
    timed: int
    sync: tuple[int, int]
    batches: int
    ddp: int


#: At the paper's sizes on a GPU (ResNet-50 at batch 256: about 0.1-0.4 s per step on an H100).
PAPER_STEPS = Steps(warmup=3, timed=10, sync=(2, 4), batches=4, ddp=10)
#: ``--tiny`` (the CPU test).
TINY_STEPS = Steps(warmup=1, timed=2, sync=(1, 2), batches=2, ddp=2)
#: ``--tiny`` sizes: batches and image sides (stored, and cropped where the benchmark crops).
TINY_BATCH, TINY_EVAL_BATCH, TINY_SIDE, TINY_STORED = 16, 32, 16, 20
#: Seconds kept free for the DDP run and for the rehearsal when the measurements are planned (estimates:
#: the DDP run starts Python, torch and a process group; the rehearsal runs about 800 Snakemake jobs).
DDP_RESERVE_S, REHEARSAL_RESERVE_S = 45, 240
#: The jobs-per-GPU measurement: each job's training loop runs about this long alone (sized from the
#: measured CE rate), so 1 + 2 + 4 jobs on a saturated GPU take about 7 times it, plus three start-ups.
JOBS_PER_GPU_LOOP_S, JOBS_PER_GPU_RESERVE_S = 10.0, 100


#: What the numbers of the JSON file do and do not say (written into it).
NOTES = [
    "images_per_s of training counts images through the network: both views of a two-view objective (ALPA).",
    "syncs_per_step counts what would synchronise on a GPU (lffood.bench.SyncCounter: value reads, and copies of "
    "host data to a device that are not non-blocking from pinned memory); on CUDA, cuda_syncs_per_step is CUDA's "
    "own count of synchronising operations.",
    "Measurements use random images at the benchmark's sizes and its stage, objective parameters, batch size, AMP, "
    "channels-last and deterministic settings; torch.compile (config key compile, off by default) is not used.",
    "The projection is the time of each stage on one GPU and this machine's CPU cores (the cached-feature scorers "
    "but the k-NN searches: lffood.costs' model); it leaves out data preparation, figures and report, and each "
    "job's start (imports, loading).",
]


@dataclass
class Training:
    """One training measurement: ``objective`` at batch ``batch`` stands for every variant of the
    setup's benchmarks that trains with that objective and batch size (``key``: as configured)."""
    key: tuple[str, int]
    variant: str
    bench: str
    spec: dict          # lffood.variants.training_spec of the variant (tiny: smaller batch and crop)


@dataclass
class Setup:
    """One architecture at one image size, measured once for the benchmarks that share it (CIFAR-10
    and CIFAR-100 differ only in the head's 10 or 100 outputs: measured with the first's)."""
    name: str
    benchmarks: list[str]
    model: dict
    classes: int
    stored: int                  # side of the stored training images
    side: int                    # side of the test and OOD images (and of the training crop)
    crop: int | None             # random-resized crop in training, centre crop in extraction (ImageNet)
    host_kept: bool              # the real training split stays on the host (above the loader's device limit)
    amp: bool
    deterministic: bool
    trainings: list[Training] = field(default_factory=list)
    extraction: dict = field(default_factory=dict)    # lffood.variants.extraction_params of the first variant
    extraction_batch: int = 512
    network: dict = field(default_factory=dict)       # network scorer -> resolved parameters
    network_batch: int = 256


def _tiny_spec(spec: Mapping, crop: int | None) -> dict:
    """A variant's training spec at ``--tiny`` sizes: the embedded model, batch 16, the crop's new size."""
    spec = copy.deepcopy(dict(spec))
    spec["model"] = dict(TINY_MODEL)
    spec["stage"]["batch_size"] = TINY_BATCH
    rrc = spec["stage"]["augment"].get("random_resized_crop")
    if rrc:  # a crop to the benchmark's size (ImageNet's 224, MODE's 32) becomes one to the tiny size
        spec["stage"]["augment"]["random_resized_crop"] = {**rrc, "size": crop or TINY_SIDE}
    return spec


def plan_setups(cfg: Mapping, benchmarks: Sequence[str], tiny: bool = False) -> list[Setup]:
    """The measurements the projection of ``benchmarks`` needs, grouped by architecture and image
    size: one training row per (objective, batch size) that a variant uses, extraction with the
    benchmark's fields, and each network scorer a variant runs. ``tiny``: the embedded model at
    16 x 16 (20 stored where the benchmark crops), batch 16, in place of every architecture."""
    from .data.loader import DEVICE_MAX_BYTES
    from .scorers import resolved_params, scorer_class
    from .variants import extraction_params, training_spec, variant_names, variant_scorers

    setups: dict[str, Setup] = {}
    for name in benchmarks:
        b = cfg["benchmarks"][name]
        ds, sizes = b["dataset"], data_sizes(b)
        stored = ds["train_size"] if ds["source"] == "imagenet100" else ds["ood_crop"]
        side = ds["ood_crop"]
        crop = side if stored != side else None
        host_kept = sizes["train"] * stored * stored * 3 > DEVICE_MAX_BYTES
        model = dict(b["model"])
        if tiny:
            model, side = dict(TINY_MODEL), TINY_SIDE
            stored, crop = (TINY_STORED, TINY_SIDE) if crop else (TINY_SIDE, None)
        key = f"{model['arch'] if not tiny else 'tiny'} {stored}px" + (f"->{crop}" if crop else "")
        s = setups.get(key)
        if s is None:
            s = setups[key] = Setup(key, [], model, data_classes(b), stored, side, crop, host_kept, bool(b["amp"]),
                                    bool(b["deterministic"]))
            first = variant_names(b)[0]
            s.extraction = extraction_params(b, first)
            if crop:
                s.extraction["center_crop"] = crop
            s.extraction_batch = TINY_EVAL_BATCH if tiny else b["extraction"]["batch_size"]
            s.network_batch = TINY_EVAL_BATCH if tiny else b["scorers"]["network"]["batch_size"]
        s.benchmarks.append(name)
        known = {t.key for t in s.trainings}
        for v in variant_names(b):
            spec = training_spec(b, v)
            k = (spec["objective"], int(spec["stage"]["batch_size"]))
            if k not in known and not spec["checkpoint"]:
                known.add(k)
                s.trainings.append(Training(k, v, name, _tiny_spec(spec, crop) if tiny else spec))
            for sc in variant_scorers(b, v):
                if scorer_class(sc).score_on == "network" and sc not in s.network:
                    s.network[sc] = resolved_params(sc, b["scorers"]["params"].get(sc))
    return list(setups.values())


# ----------------------------------------------------------------------------- measuring
class Deadline:
    """The time budget of the measurements: ``over()`` once they should start nothing new."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def over(self) -> bool:
        return time.monotonic() > self.end


def _random_images(n: int, side: int, classes: int, seed: int):
    """``n`` random uint8 images (N, side, side, 3) and labels: throughput does not depend on content."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), rng.integers(0, classes, n)


def _data(images, labels, device, host_kept: bool):
    from .data.arrays import Split
    from .data.loader import TensorImages

    return TensorImages(Split(images, labels, {"role": "id_train"}), [0.5] * 3, [0.25] * 3, device,
                        device_max_bytes=0 if host_kept else None)


def amp_dtype(device, amp: bool) -> str | None:
    """The autocast type the training loop uses (:func:`lffood.training.mixed_precision`): bfloat16 or
    float16 on CUDA with ``amp``, None (float32) otherwise."""
    from .training import mixed_precision

    autocast, _ = mixed_precision(device, amp)
    dtype = getattr(autocast, "fast_dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def _gb(n_bytes: int | None) -> float | None:
    return None if n_bytes is None else round(n_bytes / 2 ** 30, 3)


def _count(value: float | None):
    """A per-step count as an int when it is one (it is, unless a synchronisation happens every other step)."""
    if value is None:
        return None
    return int(round(value)) if abs(value - round(value)) < 1e-9 else round(value, 3)


def _attempt(row: dict, deadline: Deadline, device, what: str, measure) -> dict:
    """``row`` with what ``measure()`` returns; skipped once the budget is spent, and with the error
    when it fails (out of GPU memory, say): one failed measurement does not lose the others."""
    if deadline.over():
        return {**row, "skipped": "time budget spent"}
    log.info("measuring %s", what)
    try:
        return {**row, **measure()}
    except Exception as exc:  # noqa: BLE001 - recorded in the file and the summary, the check goes on
        log.exception("%s failed", what)
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
        return {**row, "error": f"{type(exc).__name__}: {exc}"[:500]}


def _rate(images: int, seconds: float, peak: int | None) -> dict:
    return {"images": images, "seconds": round(seconds, 4), "images_per_s": round(images / seconds, 2),
            "peak_memory_gb": _gb(peak)}


def measure_training(setup: Setup, model, device, steps: Steps, deadline: Deadline, seed: int = 0) -> list[dict]:
    """Section ``training``: each (objective, batch size) of the setup through the training loop
    (:func:`lffood.bench.measure_training`), the variant's stage and objective parameters as configured."""
    from . import bench as bench_mod
    from .objectives import build_objective
    from .training import channels_last_allowed

    batch_max = max(t.spec["stage"]["batch_size"] for t in setup.trainings)
    images, labels = _random_images(max(steps.warmup, steps.timed, steps.sync[1]) * batch_max, setup.stored,
                                    setup.classes, seed)

    def measure(t: Training) -> dict:
        spec, batch = t.spec, t.spec["stage"]["batch_size"]
        objective = build_objective(spec["objective"], spec["params"], feature_dim=model.feature_dim,
                                    num_classes=setup.classes)
        fig = bench_mod.measure_training(
            model, lambda k: _data(images[:k * batch], labels[:k * batch], device, setup.host_kept), spec["stage"],
            objective, device=device, amp=spec["amp"], seed=seed, warmup_steps=steps.warmup, steps=steps.timed,
            sync_steps=steps.sync)  # with the local-vector monitor, as every workflow training job
        return {"views": 2 if objective.two_views else 1, "steps": steps.timed,
                **_rate(fig.images, fig.seconds, fig.peak_bytes), "syncs_per_step": _count(fig.syncs_per_step),
                "cuda_syncs_per_step": _count(fig.cuda_syncs_per_step)}

    rows = []
    for t in setup.trainings:
        row = {"setup": setup.name, "benchmarks": setup.benchmarks, "model": setup.model, "objective": t.key[0],
               "variant": t.variant, "batch": t.spec["stage"]["batch_size"], "configured_batch": t.key[1],
               "image_size": setup.stored, "crop": setup.crop, "host_kept": setup.host_kept,
               "amp": amp_dtype(device, t.spec["amp"]), "channels_last": channels_last_allowed(model, device)}
        rows.append(_attempt(row, deadline, device, f"training: {setup.name}, {t.key[0]} (variant {t.variant})",
                             lambda t=t: measure(t)))
    return rows


def measure_extraction(setup: Setup, model, device, steps: Steps, deadline: Deadline, seed: int = 0) -> list[dict]:
    """Section ``extraction``: :func:`lffood.extraction.extract_split` with the benchmark's fields over
    ``steps.batches`` batches (after one warm-up batch), on training-size images (the ID training
    split: local GT probabilities, FeatureNorm's jigsaw pass, the centre crop) and on test-size images
    (the test split's fields; OOD splits skip the GT probabilities, a small part)."""
    from .extraction import extract_split
    from .fields import requests_in
    from .throughput import timed_peak

    ext, batch = setup.extraction, setup.extraction_batch
    requests = requests_in(ext)
    n = (steps.batches + 1) * batch

    def measure(side: int, host_kept: bool, is_train: bool) -> dict:
        images, labels = _random_images(n, side, setup.classes, seed + 1)

        def extract(k: int):
            data = _data(images[:k], labels[:k], device, host_kept)  # made before the clock starts
            return lambda: extract_split(model, data, batch_size=batch, device=device, amp=ext["amp"],
                                         role="id_train" if is_train else "id_test", requests=requests,
                                         center_crop=ext.get("center_crop") if is_train else None)

        extract(batch)()  # warm-up
        return _rate(n - batch, *timed_peak(extract(n - batch), device))

    fields = sorted(requests)
    cases = {"train": (setup.stored, setup.host_kept, True), "eval": (setup.side, False, False)}
    rows = []
    for split, case in cases.items():
        row = {"setup": setup.name, "benchmarks": setup.benchmarks, "split": split, "image_size": case[0],
               "batch": batch, "fields": fields}
        rows.append(_attempt(row, deadline, device, f"extraction: {setup.name}, {split} split",
                             lambda case=case: measure(*case)))
    return rows


def measure_network_scorers(setup: Setup, model, device, steps: Steps, deadline: Deadline, seed: int = 0) -> list[dict]:
    """Section ``scorers``: the scorers that run the network (ODIN: a forward and a backward pass per
    image for its input perturbation, then a forward pass) on test-size images, with the benchmark's
    parameters and batch size, the model laid out as the scoring job lays it out."""
    import torch

    from .scorers import Head, build_scorer
    from .throughput import timed_peak
    from .training import channels_last_allowed

    batch = setup.network_batch
    n = (steps.batches + 1) * batch
    images, labels = _random_images(n, setup.side, setup.classes, seed + 2)

    def measure(name: str, params: Mapping) -> dict:
        model.eval()
        if channels_last_allowed(model, device):
            model.to(memory_format=torch.channels_last)
        try:
            sc = build_scorer(name, params)
            sc.load(Head(model.head.weight.detach().cpu().numpy(), model.head.bias.detach().cpu().numpy()))
            sc.score_network(model, _data(images[:batch], labels[:batch], device, False), batch_size=batch,
                             device=device)  # warm-up
            data = _data(images[batch:], labels[batch:], device, False)
            return _rate(n - batch, *timed_peak(lambda: sc.score_network(model, data, batch_size=batch, device=device),
                                                device))
        finally:
            model.to(memory_format=torch.contiguous_format)

    rows = []
    for name, params in setup.network.items():
        row = {"setup": setup.name, "benchmarks": setup.benchmarks, "scorer": name, "params": params,
               "image_size": setup.side, "batch": batch}
        rows.append(_attempt(row, deadline, device, f"network scorer: {setup.name}, {name}",
                             lambda name=name, params=params: measure(name, params)))
    return rows


def check_ddp(setup: Setup, device, steps: Steps, workdir: Path, threads: int, seed: int = 0) -> dict:
    """Section ``ddp``: the setup's first training (CE pretraining) for two short epochs through the
    launcher the train rule uses when ``compute.train_gpus`` > 1 (:func:`lffood.ddp.launch`: torchrun,
    ``lffood.ddp`` in each process, NCCL on CUDA, gloo on the CPU), with one process. With one
    process the training loop sees a world of size 1: what runs is the launcher, the process group,
    the device choice by local rank and process 0's writing; the DDP wrapper, SyncBatchNorm and the
    per-epoch all-reduce need two or more processes (GPUs)."""
    import pandas as pd

    from . import ddp
    from .data.arrays import Split, save_split
    from .errors import LffoodError

    t = setup.trainings[0]
    spec = copy.deepcopy(t.spec)
    spec["stage"]["epochs"] = 2
    spec["guard"] = {"enabled": False}
    n = steps.ddp * spec["stage"]["batch_size"]
    images, labels = _random_images(n, setup.stored, setup.classes, seed + 3)
    folder = workdir / "ddp"
    meta = {"role": "id_train", "classes": [f"c{i}" for i in range(setup.classes)], "mean": [0.5] * 3,
            "std": [0.25] * 3}
    save_split(folder / "train.npz", Split(images, labels, meta))
    kwargs = {"spec": spec, "variant": t.variant, "seed": seed, "train_path": str(folder / "train.npz"),
              "ckpt_out": str(folder / "model.pt"), "history_out": str(folder / "history.csv"),
              "monitor_out": str(folder / "monitor.csv"), "device_name": device.type, "threads": threads, "job": f"gpu-check ddp {setup.name}"}
    out = {"setup": setup.name, "variant": t.variant, "objective": t.key[0], "processes": 1,
           "backend": "nccl" if device.type == "cuda" else "gloo", "epochs": 2, "steps_per_epoch": steps.ddp,
           "ddp_wrapper_exercised": False,
           "note": "one process is a world of size 1: train() takes its single-process path (no DDP wrapper, "
                   "SyncBatchNorm or all-reduce, which need two or more GPUs)"}
    log.info("ddp: %s through torchrun, one process", setup.name)
    t0 = time.monotonic()
    try:
        ddp.launch(kwargs, nproc=1)
        history = pd.read_csv(folder / "history.csv")
    except (LffoodError, OSError) as exc:
        return {**out, "ok": False, "wall_s": round(time.monotonic() - t0, 1), "error": str(exc)}
    return {**out, "ok": True, "wall_s": round(time.monotonic() - t0, 1),
            "images_per_s": round(float(history["images_per_s"].iloc[-1]), 2),
            "checkpoint_written": (folder / "model.pt").exists()}


def check_rehearsal(workdir: Path, benchmarks: Sequence[str] | None, device, repo: Path | None = None) -> dict:
    """Section ``rehearsal``: :func:`lffood.rehearsal.rehearse` on this device with every CPU core,
    without the HTML report; its exit code and wall time."""
    from .rehearsal import rehearse

    folder = workdir / "rehearsal"
    out = {"ran": True, "benchmarks": list(benchmarks) if benchmarks else "suite paper", "device": device.type,
           "cores": os.cpu_count() or 1, "workdir": str(folder)}
    t0 = time.monotonic()
    try:
        rc = rehearse(folder, benchmarks=benchmarks or None, cores=out["cores"], device=device.type, report=False,
                      repo=repo)
    except (ValueError, OSError) as exc:
        return {**out, "ok": False, "exit_code": None, "wall_s": round(time.monotonic() - t0, 1), "error": str(exc)}
    return {**out, "ok": rc == 0, "exit_code": rc, "wall_s": round(time.monotonic() - t0, 1)}


def device_info(device) -> dict:
    """What ran the check."""
    import platform

    import torch

    info = {"type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(name=p.name, memory_gb=round(p.total_memory / 2 ** 30, 1), capability=f"{p.major}.{p.minor}",
                    bf16=torch.cuda.is_bf16_supported(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn=torch.backends.cudnn.allow_tf32)
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def _free_device(device) -> None:
    """Return the cached GPU memory and this process's GPU slot before the jobs of the DDP run and
    the rehearsal start."""
    import gc

    import torch

    from .runtime import release_gpu_slot

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    release_gpu_slot()


def _write(path: Path, result: Mapping) -> None:
    from .io import write_text_atomic

    write_text_atomic(path, json.dumps(result, indent=1, default=str) + "\n")


def measure_setups(setups: Sequence[Setup], device, steps: Steps, deadline: Deadline, result: dict,
                   out: Path) -> None:
    """Sections ``training``, ``extraction`` and ``scorers``, setup by setup on one model each (the
    training measurements train it in place; extraction and scoring use it); the file is rewritten
    after each setup."""
    from .models import build_model
    from .runtime import seed_everything

    for s in setups:
        seed_everything(0, s.deterministic)  # the benchmark's cuDNN setting: autotuning off when deterministic
        model = build_model(s.model, s.classes).to(device)
        result["training"] += measure_training(s, model, device, steps, deadline)
        result["extraction"] += measure_extraction(s, model, device, steps, deadline)
        result["scorers"] += measure_network_scorers(s, model, device, steps, deadline)
        del model
        _write(out, result)
    _free_device(device)


def projection_section(cfg: Mapping, benchmarks: Sequence[str], result: Mapping, cores: int | None = None) -> dict:
    """Section ``projection``: :func:`lffood.projection.measured` of every benchmark with
    the rates measured for it (the GPU stages and the k-NN search) and the CPU scorers on ``cores``
    (default: this machine's) from the cost model, the same projection as ``lffood project``."""
    cores = cores or os.cpu_count() or 1
    return {"what": f"minutes on one GPU and {cores} CPU cores, every variant and seed: training, extraction, "
                    "network scorers and the k-NN search on the GPU, the other scorers on the CPU cores",
            "cores": cores, "benchmarks": measured(cfg, benchmarks, result, cores)}


def run_check(out: str | os.PathLike = "gpu_check.json", *, device_name: str = "auto", tiny: bool = False,
              rehearsal: bool = True, rehearsal_benchmarks: Sequence[str] | None = None,
              workdir: str | os.PathLike | None = None, budget_s: float = 480.0, ddp: bool = True,
              config: str | os.PathLike | None = None, schema: str | os.PathLike = CONFIG_SCHEMA,
              repo: str | os.PathLike | None = None, argv: Sequence[str] = (),
              echo=print) -> int:
    """Run every section (module docstring), write the JSON file ``out`` (rewritten after each step, so
    a run cut short leaves what it measured) and print the summary. Returns 0 when everything that ran
    succeeded, else 1. ``workdir``: where the DDP run and the rehearsal write (default: a temporary
    folder, removed unless something failed). ``budget_s``: measurements that would start later than
    the budget less what the DDP run and the rehearsal need (:data:`DDP_RESERVE_S`,
    :data:`REHEARSAL_RESERVE_S`) are skipped. ``repo``: the clone of the workflow (default: the one at or
    above the current folder, :func:`lffood.runtime.workflow_checkout`); ``config``: default its config.yaml."""
    import torch

    from .config import load_config
    from .errors import LffoodError
    from .runtime import provenance, select_device, workflow_checkout

    t0 = time.monotonic()
    checkout = workflow_checkout(repo)  # the clone whose Snakefile the rehearsal runs
    config = config or checkout / "config.yaml"
    cfg = load_config(config, schema)
    benchmarks = list(cfg["suites"]["paper"])
    device = select_device(device_name)
    if device.type != "cuda" and not tiny:
        raise LffoodError("gpu-check measures the paper's sizes on a GPU (a ResNet-50 step at batch 256 takes about a "
                          f"minute on a CPU) and found none ({device}); on the CPU run it with --tiny")
    steps = TINY_STEPS if tiny else PAPER_STEPS
    own_workdir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="lffood-gpu-check-") if own_workdir else workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = Path(out)
    reserve = ((DDP_RESERVE_S if ddp else 0) + (REHEARSAL_RESERVE_S if rehearsal else 0)
               + (JOBS_PER_GPU_RESERVE_S if device.type == "cuda" and not tiny else 0))
    setups = plan_setups(cfg, benchmarks, tiny)
    result: dict = {
        "format": 1, "command": " ".join(["lffood gpu-check", *argv]), "device": device_info(device),
        "provenance": provenance(checkout), "config": str(config),
        "settings": {"tiny": tiny, "budget_s": budget_s, "steps": asdict(steps), "compile": False, "notes": NOTES,
                     "setups": [{"name": s.name, "benchmarks": s.benchmarks, "model": s.model, "stored": s.stored,
                                 "side": s.side, "crop": s.crop, "host_kept": s.host_kept, "amp": s.amp,
                                 "deterministic": s.deterministic} for s in setups]},
        "training": [], "extraction": [], "scorers": [],
    }
    measure_setups(setups, device, steps, Deadline(max(budget_s - reserve, 0.0)), result, out)
    if ddp:
        # the training job's threads on a GPU machine; on the CPU as many as this process uses
        threads = (min(cfg["benchmarks"][setups[0].benchmarks[0]]["compute"]["train_threads"], os.cpu_count() or 1)
                   if device.type == "cuda" else torch.get_num_threads())
        result["ddp"] = check_ddp(setups[0], device, steps, work, threads)
    else:
        result["ddp"] = {"ok": None, "skipped": "--no-ddp"}
    result["knn_search"] = check_knn_search(device, tiny)
    ce = [r for r in result["training"] if r["setup"].startswith("resnet34") and r.get("objective") == "ce"
          and r.get("images_per_s")]
    result["jobs_per_gpu"] = check_jobs_per_gpu(device, tiny, ce[0]["images_per_s"] if ce else None)
    _write(out, result)
    result["rehearsal"] = (check_rehearsal(work, rehearsal_benchmarks, device, checkout) if rehearsal
                           else {"ran": False, "ok": None, "skipped": "--no-rehearsal"})
    result["projection"] = projection_section(cfg, benchmarks, result)
    failed = [k for k in ("ddp", "rehearsal", "knn_search", "jobs_per_gpu") if result[k].get("ok") is False]
    failed += [f"{k} {r['setup']}" for k in ("training", "extraction", "scorers") for r in result[k] if "error" in r]
    result.update(ok=not failed, failed=failed, wall_s=round(time.monotonic() - t0, 1))
    result["within_budget"] = result["wall_s"] <= budget_s
    if own_workdir and not failed:
        shutil.rmtree(work, ignore_errors=True)
    result["workdir"] = None if own_workdir and not failed else str(work)
    _write(out, result)
    echo(format_summary(result, out))
    return 0 if not failed else 1


def check_knn_search(device, tiny: bool) -> dict:
    """The GPU side of the k-NN scorers: one exact k-th-neighbour search of CSD's size for one CIFAR
    model (:data:`lffood.scorers.knn_search.PAPER_CSD`; target: at most 30 s on one H100), or a small
    one with ``tiny``."""
    from .scorers import knn_search

    sizes = {"bank": 3000, "queries": 2000} if tiny else {}
    try:
        return {"ok": True, "target_s": None if tiny else 30.0, **knn_search.measure(device, **sizes)}
    except Exception as exc:  # recorded, the check goes on
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def jobs_per_gpu_epochs(ce_rate: float | None, n: int = 4096) -> int:
    """Epochs of ``n`` images that one CIFAR job trains for about :data:`JOBS_PER_GPU_LOOP_S` seconds at
    the measured CE rate (20 without one), at most 200."""
    if not ce_rate:
        return 20
    return int(min(200, max(1, math.ceil(JOBS_PER_GPU_LOOP_S * ce_rate / n))))


def check_jobs_per_gpu(device, tiny: bool, ce_rate: float | None = None) -> dict:
    """Training throughput of one CIFAR job against two and four side by side on one GPU
    (:func:`lffood.costs.measure_concurrent_training`), each job's loop sized from the CE rate the
    check measured (:func:`jobs_per_gpu_epochs`); GPU only."""
    if device.type != "cuda" or tiny:
        return {"ok": None, "skipped": "needs a GPU at paper sizes"}
    from .costs import measure_concurrent_training

    try:
        return {"ok": True, "rows": measure_concurrent_training((1, 2, 4), arch="resnet34", device_name="cuda",
                                                                epochs=jobs_per_gpu_epochs(ce_rate))}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


# ----------------------------------------------------------------------------- the summary
def _num(v, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def format_summary(result: Mapping, out: Path | str) -> str:
    """A line per measurement, the DDP run and the rehearsal, then the projection per benchmark."""
    d = result["device"]
    tiny = " [--tiny: the embedded model at 16x16; the projection means nothing]" if result["settings"]["tiny"] else ""
    lines = [f"gpu-check on {d['type']} ({d.get('name')}), torch {d['torch']}, CUDA {d['cuda']}{tiny}",
             f"{'measurement':58s} {'img/s':>10s} {'syncs/step':>10s} {'CUDA syncs':>10s} {'peak GB':>8s}"]

    def line(what, r, syncs=None, cuda=None):
        if "skipped" in r:
            return f"{what:58s} skipped: {r['skipped']}"
        if "error" in r:
            return f"{what:58s} FAILED: {r['error'][:200]}"
        return (f"{what:58s} {_num(r['images_per_s']):>10s} {_num(syncs, '{}'):>10s} {_num(cuda, '{}'):>10s} "
                f"{_num(r['peak_memory_gb'], '{:.2f}'):>8s}")

    for r in result["training"]:
        what = (f"train {r['setup']} {r['objective']} b{r['batch']}" + (" x2 views" if r.get("views") == 2 else "")
                + (f" {r['amp']}" if r["amp"] else "") + (" CL" if r["channels_last"] else ""))
        lines.append(line(what, r, r.get("syncs_per_step"), r.get("cuda_syncs_per_step")))
    for r in result["extraction"]:
        lines.append(line(f"extract {r['setup']} {r['split']} split b{r['batch']}", r))
    for r in result["scorers"]:
        lines.append(line(f"score {r['setup']} {r['scorer']} b{r['batch']}", r))
    dd = result["ddp"]
    if "skipped" in dd:
        lines.append(f"ddp: skipped ({dd['skipped']})")
    else:
        state = f"ok, {dd['images_per_s']:.0f} img/s" if dd["ok"] else f"FAILED: {dd.get('error', '')}"
        lines.append(f"ddp: torchrun, 1 process ({dd['backend']}), {dd['setup']} {dd['objective']}: {state} "
                     f"({dd['wall_s']:.0f} s)")
    kn = result.get("knn_search", {})
    if kn.get("ok"):
        target = f" (target {kn['target_s']:.0f} s)" if kn.get("target_s") else ""
        lines.append(f"k-NN search {kn['bank']} x {kn['queries']} x {kn['dim']}, k {kn['k']} on {kn['device']}: "
                     f"{kn['seconds']:.1f} s{target}")
    elif kn:
        lines.append(f"k-NN search: FAILED: {kn.get('error', '')[:200]}")
    jg = result.get("jobs_per_gpu", {})
    if jg.get("ok"):
        lines.append("jobs per GPU (summed img/s of the loops; speed-up): " + ", ".join(
            f"{r['jobs']}: {_num(r['summed_images_per_s'])} ({_num(r['speedup'], '{:.2f}')}x)" for r in jg["rows"]))
    elif jg:
        lines.append(f"jobs per GPU: {jg.get('skipped') or 'FAILED: ' + jg.get('error', '')[:200]}")
    rh = result["rehearsal"]
    if not rh["ran"]:
        lines.append(f"rehearsal: skipped ({rh['skipped']})")
    else:
        state = "ok" if rh["ok"] else f"FAILED (exit {rh['exit_code']}{'; ' + rh['error'] if rh.get('error') else ''})"
        lines.append(f"rehearsal on {rh['device']} with {rh['cores']} cores: {state} in {rh['wall_s']:.0f} s")
    pr = result["projection"]
    lines.append(text(pr["benchmarks"],
                      f"projected on this device and {pr['cores']} CPU cores from the measured rates"))
    failed = f"; FAILED: {', '.join(result['failed'])}" if result["failed"] else ""
    lines.append(f"wrote {out} in {result['wall_s']:.0f} s (budget {result['settings']['budget_s']:.0f} s"
                 f"{'' if result['within_budget'] else ', OVER'}){failed}")
    return "\n".join(lines)
