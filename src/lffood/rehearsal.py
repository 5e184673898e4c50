"""A rehearsal of the paper benchmarks: every rule of ``snakemake all --config run=paper`` on tiny data
in the real upstream formats, with the real backbones, in minutes on a CPU.

What it does (``lffood rehearse``; docs/paper.md):

1. writes every archive the paper benchmarks download, in its upstream format (CIFAR python pickles,
   the SVHN ``.mat``, the ODIN LSUN/iSUN tarballs, DTD, Places365's ``test_256.tar``, the MOS
   iNaturalist/SUN/Places subsets) with a few images each, and an ILSVRC-2012-style folder (train
   layout, flat validation folder with the devkit's labels) for ImageNet-100
   (:mod:`lffood.data.upstream`);
2. serves the archives from a loopback HTTP server that it starts and stops itself;
3. runs the repository's Snakefile with the shipped ``config.yaml`` and one overlay config file
   (:func:`overlay`) that changes only URLs, checksums, data sizes, epochs, batch sizes, seeds and
   the size-dependent scorer and figure parameters, and sets ``watermark``, so that every reproduced
   table cell, figure title and the report say ``REHEARSAL (not a result)``;
4. builds the HTML report.

Nothing inside the pipeline knows it is a rehearsal: the download, preprocessing, training,
extraction, scoring and report code run exactly as for the real datasets. What a rehearsal proves:
every rule and every format of the paper path runs, on the paper's architectures at their real
widths. What it does not: any number (one epoch on a few random images per class).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from .data import sources, upstream

WATERMARK = "REHEARSAL (not a result)"


@dataclass(frozen=True)
class Sizes:
    """How much data a rehearsal makes: enough that every scorer has a bank larger than its k and
    every class of every ID set has a training image, as little as that allows."""
    cifar10_per_batch: int = 4      # 5 training batches: 20 images, 2 per class
    cifar100_train: int = 100       # 1 per class
    cifar_test: int = 20
    ood_images: int = 12            # per archive
    ood_max_images: int = 8         # dataset.ood_max_images: the seeded cap is exercised too
    imagenet_train_per_class: int = 1
    imagenet_val_per_class: int = 1


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _cifar(kind: str, sizes: Sizes, seed: int) -> bytes:
    n_train = sizes.cifar10_per_batch if kind == "cifar10" else sizes.cifar100_train
    return upstream.cifar_tgz(kind, per_batch=n_train, n_test=sizes.cifar_test, seed=seed, cover_classes=True)[0]


def make_archives(folder: str | os.PathLike, sizes: Sizes = Sizes(), seed: int = 0) -> dict[str, str]:
    """Every archive of :data:`lffood.data.sources.ARCHIVES` in its upstream format, written to
    ``folder/<file name>``; returns ``{archive key: "sha256:<hex>"}``."""
    folder = Path(folder)
    n = sizes.ood_images
    makers = {
        "cifar10": lambda: _cifar("cifar10", sizes, seed),
        "cifar100": lambda: _cifar("cifar100", sizes, seed + 1),
        "svhn": lambda: upstream.svhn_mat(n, seed=seed + 2)[0],
        "lsun_crop": lambda: upstream.odin_tgz("LSUN/test", n, size=36, seed=seed + 3),
        "lsun_resize": lambda: upstream.odin_tgz("LSUN_resize", n, size=32, seed=seed + 4),
        "isun": lambda: upstream.odin_tgz("iSUN/iSUN_patches", n, size=32, seed=seed + 5),
        "dtd": lambda: upstream.dtd_tgz(("banded", "woven", "zigzagged"), per_class=n // 3, seed=seed + 6),
        "places365": lambda: upstream.places_tar(n, size=256, seed=seed + 7),
        "inaturalist": lambda: upstream.mos_tgz("iNaturalist", n, seed=seed + 8),
        "sun": lambda: upstream.mos_tgz("SUN", n, seed=seed + 9),
        "places": lambda: upstream.mos_tgz("Places", n, seed=seed + 10),
        "resnet50_imagenet1k": lambda: upstream.torchvision_weights("resnet50", 1000, seed=seed + 11),
    }
    missing = set(sources.ARCHIVES) - set(makers)
    if missing:
        raise RuntimeError(f"the rehearsal makes no archive for {sorted(missing)}: add it to lffood.rehearsal")
    return {key: _write(folder / sources.archive(key).filename, make()) for key, make in makers.items()}


def make_imagenet(root: str | os.PathLike, class_list: str, sizes: Sizes = Sizes(), seed: int = 0) -> Path:
    """An ILSVRC-2012-style folder for ImageNet-100 (train/<wnid>/, flat val/ with the devkit's labels)."""
    wnids = sources.read_class_list(class_list)
    return upstream.ilsvrc_folder(Path(root), wnids, train_per_class=sizes.imagenet_train_per_class,
                                  val_per_class=sizes.imagenet_val_per_class, flat_val=True, seed=seed)


# ----------------------------------------------------------------------------- configuration
#: Per-benchmark batch sizes: small enough for two training jobs of the real backbones side by side
#: in a 24 GB machine, large enough for BatchNorm (a batch of one is refused by training mode).
_BATCH = {"imagenet100": 16}
_BATCH_DEFAULT = 32
#: Objectives that train on several transformed copies of each image (CSI's stage 1: two views x four
#: rotations): their batch is divided by that many, so that a step holds about the images of the others'
#: (CSI's stage 1 at batch 16 put 128 ImageNet images of 224 x 224 through ResNet-50: 12.5 GB on the CPU)
_COPIES = {"csi": 8}


def _bench_overlay(name: str, b: Mapping, sizes: Sizes, imagenet_root: str | None, sweep: bool) -> dict:
    source = b["dataset"]["source"]
    batch = _BATCH.get(source, _BATCH_DEFAULT)
    # one epoch: a step schedule keeps its type and loses its milestones (a decay at or after the
    # last epoch is refused by the config check)
    stage = {"epochs": 1, "batch_size": batch, "schedule": {"milestones": []}}
    out = {
        "seeds": [0],
        "dataset": {"ood_max_images": sizes.ood_max_images},
        "pretrain": stage,
        "finetune": stage,
        # every variant keeps its objective, parent and scorer; only its own stage overrides shrink
        "variants": {v: {"stage_overrides": {**stage, "batch_size": max(4, batch // _COPIES.get(spec["objective"], 1))}}
                     for v, spec in b.get("variants", {}).items()},
        # size-dependent scorer parameters: k below the bank (the smallest training split has 20 images),
        # ViM's principal space below the number of training features
        "scorers": {"params": {"knn": {"k": 5}, "csd": {"k": 5}, "vim": {"dim": 8}, "cider_knn": {"k": 5},
                               "npos_knn": {"k": 5}},
                    "network": {"batch_size": batch}},
        # the training baselines' queues sized to the few images per class, so that VOS's and NPOS's
        # outlier synthesis runs in the one epoch (from its first step: start epoch 0) instead of waiting
        # for queues of 1000 per class that a rehearsal never fills
        "vos": {"queue_size": 1, "start_epoch": 0, "sample_from": 100},
        "npos": {"queue_size": 2, "start_epoch": 0, "k": 1, "select": 2, "pick_nums": 1, "sample_from": 4,
                 "id_points_num": 2},
        "extraction": {"batch_size": batch},
        "figures": {"tsne": {"per_group": 20, "perplexity": 5.0, "max_iter": 250}},
        # one epoch on a few random images per class is at chance by construction: the collapse guard
        # would stop every training job (it is tested on its own in the suite)
        "guard": {"enabled": False},
        # one thread per torch job: each spends seconds single-threaded (imports, loading, saving), which
        # left the second core idle while a two-thread job held both
        "compute": {"train_threads": 1, "train_mem_mb": 6000, "extract_mem_mb": 4000, "train_runtime": 60,
                    "extract_runtime": 30},
        # one point per swept parameter, on one benchmark; the others sweep nothing
        "sweeps": [],
    }
    if source == "imagenet100":
        out["dataset"]["imagenet_root"] = imagenet_root
    if sweep:
        out["sweeps"] = [{"variant": "lff", "param": "delta", "values": [0.05]},
                         {"variant": "lff", "param": "mu", "values": [2.0]},
                         {"variant": "lff", "param": "lambda", "values": [0.5]},
                         {"variant": "ssod", "param": "gamma", "values": [0.9]}]
    return out


def overlay(cfg: Mapping, benchmarks: Sequence[str], *, url_base: str, checksums: Mapping[str, str],
            imagenet_root: str | None, sizes: Sizes = Sizes(), sweep_bench: str | None = None) -> dict:
    """The config file laid over ``config.yaml`` for a rehearsal of ``benchmarks``. ``cfg`` is the
    shipped config (read, not validated: only the benchmarks' sources, schedules and variants are used)."""
    return {
        "run": list(benchmarks),
        "watermark": WATERMARK,
        "results_dir": "results",
        "data_dir": "data",
        "downloads": {
            "dir": "data/downloads",
            "lock_file": "checksums.lock",   # never the repository's lock file
            "urls": {k: f"{url_base}/{sources.archive(k).filename}" for k in sources.ARCHIVES},
            "checksums": dict(checksums),
            "timeout_s": 30,
            "retries": 1,
        },
        "benchmarks": {b: _bench_overlay(b, cfg["benchmarks"][b], sizes, imagenet_root, b == sweep_bench)
                       for b in benchmarks},
    }


# ----------------------------------------------------------------------------- running it
@contextlib.contextmanager
def serve(folder: str | os.PathLike) -> Iterator[str]:
    """Serve every file of ``folder`` from a loopback HTTP server; yields its base URL."""
    srv = upstream.FixtureServer()
    for p in sorted(Path(folder).iterdir()):
        srv.add(p.name, p.read_bytes())
    with srv:
        yield srv.url("").rstrip("/")


def sweep_benchmark(cfg: Mapping, benchmarks: Sequence[str]) -> str | None:
    """The benchmark that sweeps in a rehearsal: the first whose sensitivity figure (Fig. 6) is part
    of `all` (``figures.sensitivity.in_all``), else the first; the others sweep nothing."""
    def in_all(b):
        return ((cfg["benchmarks"][b].get("figures") or {}).get("sensitivity") or {}).get("in_all", False)
    return next((b for b in benchmarks if in_all(b)), benchmarks[0] if benchmarks else None)


def targets(benchmarks: Sequence[str], sweep_bench: str | None) -> list[str]:
    """``all`` plus the sensitivity figure of the benchmark that sweeps (not part of ``all``)."""
    out = ["all"]
    if sweep_bench:
        out.append(f"results/figures/{sweep_bench}_sensitivity.png")
    return out


def rehearse(workdir: str | os.PathLike, *, benchmarks: Sequence[str] | None = None, cores: int = 2,
             device: str = "cpu", sizes: Sizes = Sizes(), snakemake_args: Sequence[str] = (),
             report: bool = True, config_file: str | os.PathLike | None = None,
             repo: str | os.PathLike | None = None, log=print) -> int:
    """Run the rehearsal in ``workdir`` (created; everything it writes stays there) with the Snakefile
    of the clone ``repo`` (default: the one at or above the current folder,
    :func:`lffood.runtime.workflow_checkout`) and its ``config.yaml`` unless ``config_file``. Returns
    Snakemake's exit code (the report's, when the run succeeded and ``report``)."""
    from .runtime import workflow_checkout

    repo = workflow_checkout(repo)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = Path(config_file or repo / "config.yaml").resolve()
    cfg = yaml.safe_load(config_file.read_text())
    benchmarks = list(benchmarks or cfg["suites"]["paper"])
    unknown = [b for b in benchmarks if b not in cfg["benchmarks"]]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; {config_file} defines {sorted(cfg['benchmarks'])}")
    sweep_bench = sweep_benchmark(cfg, benchmarks)
    t0 = time.monotonic()
    log(f"rehearsal in {workdir}: making upstream-format archives")
    checksums = make_archives(workdir / "upstream", sizes)
    imagenet = next((cfg["benchmarks"][b]["dataset"] for b in benchmarks
                     if cfg["benchmarks"][b]["dataset"]["source"] == "imagenet100"), None)
    imagenet_root = (str(make_imagenet(workdir / "ILSVRC2012", imagenet.get("class_list", "II"), sizes))
                     if imagenet else None)
    with serve(workdir / "upstream") as url:
        over = overlay(cfg, benchmarks, url_base=url, checksums=checksums, imagenet_root=imagenet_root,
                       sizes=sizes, sweep_bench=sweep_bench)
        over["device"] = device
        over_path = workdir / "rehearsal.yaml"
        over_path.write_text("# written by lffood rehearse: laid over config.yaml for this run only\n"
                             + yaml.safe_dump(over, sort_keys=False))
        base = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
                "--configfile", str(config_file), str(over_path), "--cores", str(cores),
                # Snakemake's default ILP scheduler solves a problem over every ready job at each step:
                # with hundreds of small scoring jobs ready it took a third of a core
                "--scheduler", "greedy"]
        log(f"serving {len(checksums)} archives at {url}; running Snakemake ({', '.join(benchmarks)})")
        rc = subprocess.call([*base, *targets(benchmarks, sweep_bench), *snakemake_args])
    if rc == 0 and report:
        rc = subprocess.call([*base, "--report", str(workdir / "report.html"), *targets(benchmarks, sweep_bench)])
    log(f"rehearsal {'finished' if rc == 0 else f'FAILED (exit {rc})'} in {time.monotonic() - t0:.0f} s; "
        f"outputs in {workdir}")
    return rc
