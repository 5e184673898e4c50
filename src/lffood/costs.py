"""Cost models of the scoring jobs: runtime, memory and threads from the data's sizes.

The rules ``fit_stats`` and ``score`` (workflow/rules/evaluate.smk) take their ``threads``,
``runtime`` and ``mem_mb`` from :func:`job_resources`: each scorer's cost (floating-point work and
the arrays it holds) is computed from the benchmark's sizes, known before any file exists
(:func:`benchmark_sizes`: split sizes from the dataset section, the feature dimension from the
architecture, the class count), then turned into minutes with a rate measured on this code and a
safety margin.

Rates (one thread, float32 ``numpy.matmul`` through OpenBLAS, measured with the current
``kth_largest_similarity`` on a shared 2-core x86 machine under load; the unit test
``tests/unit/test_costs.py`` checks the estimate against a timed small case of the real scorers):

* k-NN search (KNN, CSD): ``bank x queries`` pairs cost ``2 x dim`` FLOPs of products at
  :data:`MATMUL_FLOPS` per thread, plus a selection cost per pair (:data:`SELECT_S_PER_PAIR`, with
  a part growing with k). A one-thread job searches in numpy; a job with more threads in torch
  (:mod:`lffood.scorers.knn_search`), whose products and selection both use the job's threads, so
  both scale with :data:`THREAD_EFFICIENCY`. Measured: 45-77 GFLOP/s on 64- to 2048-d products,
  4.6e-9 s per pair of selection at k=50, about 1e-8 at k=1000; CSD's search at 512-D, k=10 on an
  idle AMD EPYC core: 1.3e-8 s per pair in all (products and selection), 1.79x faster on 2 threads
  (``tests/perf/bench_scorers.py --csd-only``), so the model (2.6e-8) is about 2x pessimistic.
* statistics fits (Mahalanobis, ViM): float64 ``N x C^2`` scatter and a ``C^3`` eigensolver at
  :data:`FIT_FLOPS`; their scoring ``n x C^2``.
* every other scorer: products with the classifier head, ``N x C x K``: seconds at most.

The margin (:data:`RUNTIME_MARGIN`, :data:`MEM_MARGIN`) covers slower cluster cores and reading
the feature file; :data:`OVERHEAD_S` and :data:`BASE_MEM_MB` the process itself (Python, numpy,
h5py). A scorer can give its own estimate (:meth:`lffood.scorers.base.Scorer.cost_estimate`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: float32 matrix-product rate of one thread (FLOP/s): measured 45-77 GFLOP/s, taken low.
MATMUL_FLOPS = 50e9
#: float64 products and eigensolvers of the statistics fits (FLOP/s, one thread).
FIT_FLOPS = 15e9
#: top-k selection per (query, bank vector) pair, seconds: a fixed part and one per neighbour.
SELECT_S_PER_PAIR = 5e-9
SELECT_S_PER_PAIR_PER_K = 6e-12
#: fraction of a thread's rate that each further BLAS thread adds
THREAD_EFFICIENCY = 0.8
#: runtime = margin x (overhead + compute); memory = margin x (base + arrays)
RUNTIME_MARGIN = 1.5
MEM_MARGIN = 1.5
OVERHEAD_S = 60.0
BASE_MEM_MB = 500
#: a job whose one-thread compute estimate is below this runs on one thread (the embedded benchmark:
#: every job); above, one more thread per this many seconds, up to compute.score_max_threads
SECONDS_PER_THREAD = 600.0
#: the region vectors CSD compares per image (4 quadrants, global, centre)
CSD_VECTORS = 6
#: the k-NN search's chunk sizes (lffood.scorers.knn_search.numpy_kth_largest_similarity)
QUERY_CHUNK, BANK_CHUNK = 1024, 8192

KNN_SCORERS = ("knn", "csd")
FIT_SCORERS = ("mahalanobis", "vim")


@dataclass(frozen=True)
class Sizes:
    """What a benchmark's scoring jobs handle: ID training images, ID test images, images per OOD
    set, feature dimension and classes."""
    train: int
    test: int
    ood: tuple[int, ...]
    dim: int
    classes: int

    @property
    def queries(self) -> int:
        return self.test + sum(self.ood)

    @property
    def largest_split(self) -> int:
        return max([self.test, *self.ood])


@dataclass(frozen=True)
class Cost:
    """One job's work: ``flops`` (matrix products), ``select_s`` (seconds of the k-NN selection on one
    thread) and ``memory_bytes`` of the arrays it holds at once; both parts scale over the job's
    threads (:data:`THREAD_EFFICIENCY`)."""
    flops: float
    select_s: float
    memory_bytes: float
    rate: float = MATMUL_FLOPS

    def seconds(self, threads: int = 1) -> float:
        """Compute seconds (no process overhead, no margin) on ``threads`` threads."""
        speedup = 1 + THREAD_EFFICIENCY * (max(1, threads) - 1)
        return (self.flops / self.rate + self.select_s) / speedup


def benchmark_sizes(bench: Mapping) -> Sizes:
    """The sizes of a validated benchmark's data, from its config alone (the feature files may not
    exist yet): the embedded generator's counts, CIFAR's 50,000 / 10,000, ImageNet-100's estimate,
    OOD sets after ``dataset.ood_max_images`` (:func:`data_sizes`); the feature dimension of
    the architecture (lffood.config.model_shape)."""
    from .config import id_data, model_shape

    ds = bench["dataset"]
    facts = id_data(ds)
    if ds["source"] == "embedded":
        ood_size = int((ds.get("generator") or {}).get("ood_size", 500))  # lffood.data.embedded's default
        train, test, ood = facts["train"], facts["test"], tuple(ood_size for _ in ds["ood_sets"])
    else:
        sizes = data_sizes(bench)
        train, test, ood = sizes["train"], sizes["test"], tuple(sizes["ood"].values())
    shape = model_shape(bench["model"])
    if shape is None:
        raise ValueError(f"cannot tell the feature dimension of model {dict(bench['model'])}")
    return Sizes(int(train), int(test), ood, int(shape[1]), int(facts["classes"]))


# ----------------------------------------------------------------------------- cost models
def knn_search_cost(bank: int, queries: int, dim: int, k: int) -> tuple[float, float]:
    """(FLOPs, selection seconds on one thread) of the exact k-th-neighbour search of ``queries`` in ``bank``."""
    pairs = float(bank) * float(queries)
    return 2.0 * pairs * dim, pairs * (SELECT_S_PER_PAIR + SELECT_S_PER_PAIR_PER_K * k)


def scorer_cost(name: str, params: Mapping, sizes: Sizes, stage: str = "score") -> Cost:
    """The cost of scorer ``name`` with resolved ``params`` on a benchmark of ``sizes``: ``stage``
    ``"fit"`` (rule fit_stats) or ``"score"`` (rule score: every split but train)."""
    from .scorers import scorer_class

    cls = scorer_class(name)
    own = cls.cost_estimate(params, sizes, stage)
    if own is not None:
        return own
    if cls.cost_as is not None:  # the cost model of the scorer it shares its search or fit with
        return scorer_cost(cls.cost_as, params, sizes, stage)
    n, c, kc, q = sizes.train, sizes.dim, sizes.classes, sizes.queries
    train_bytes = 4.0 * n * (c + kc)  # the ID training features and logits, float32
    split_bytes = 4.0 * sizes.largest_split * (c + kc)
    if stage == "fit":
        if name in FIT_SCORERS:  # float64 scatter N x C^2, eigensolver ~10 C^3, C x C float64 matrices
            return Cost(2.0 * n * c * c + 10.0 * c ** 3, 0.0, train_bytes + 8 * 8.0 * c * c, FIT_FLOPS)
        return Cost(8.0 * n * c * kc, 0.0, 2 * train_bytes)
    if name == "knn":
        k = int(params.get("k", 50))
        flops, select = knn_search_cost(n, q, c, k)
        buffers = 4.0 * (QUERY_CHUNK * BANK_CHUNK + BANK_CHUNK * c + 2 * sizes.largest_split * k)
        return Cost(flops, select, train_bytes + 4.0 * n * c + 2 * split_bytes + buffers)
    if name == "csd":
        k = int(params.get("k", 10))
        per_type = params.get("bank") == "per_type"
        bank = n * (1 if per_type else CSD_VECTORS)
        flops, select = knn_search_cost(bank, q * CSD_VECTORS, c, k)
        if per_type:
            flops, select = flops * CSD_VECTORS, select * CSD_VECTORS
        region = 2.0 * CSD_VECTORS * c  # float16 bytes of one image's region vectors
        buffers = 4.0 * (QUERY_CHUNK * BANK_CHUNK + BANK_CHUNK * c + 2 * sizes.largest_split * CSD_VECTORS * k)
        held = (train_bytes + 2 * region * n  # the stored bank and its normalised copy
                + sizes.largest_split * (2 * region + 4.0 * CSD_VECTORS * c) + split_bytes + buffers)
        return Cost(flops, select, held)
    if name in FIT_SCORERS:
        return Cost(2.0 * q * c * c + 2.0 * q * c * kc, 0.0, train_bytes + 2 * split_bytes + 8 * 4.0 * c * c, FIT_FLOPS)
    return Cost(8.0 * q * c * kc, 0.0, train_bytes + 2 * split_bytes)  # products with the classifier head


# ----------------------------------------------------------------------------- job resources
def scorer_stages(bench: Mapping, name: str) -> list[tuple[str, dict]]:
    """The scoring jobs scorer ``name`` runs per model of ``bench``, ``[(stage, params), ...]``:
    ``("fit", its fit parameters)`` for a scorer with ID statistics (rule ``fit_stats``) and
    ``("score", its parameters)`` for one that scores cached features (rule ``score``)."""
    from .scorers import fit_params, resolved_params, scorer_class

    cls, p = scorer_class(name), bench["scorers"]["params"].get(name)
    out = [("fit", fit_params(name, p))] if cls.needs_fit else []
    return out + ([("score", resolved_params(name, p))] if cls.score_on == "features" else [])


def job_resources(bench: Mapping, name: str, params: Mapping, stage: str = "score") -> dict:
    """``{threads, runtime (minutes), mem_mb, estimate_s}`` of one fit_stats/score job: more threads
    for expensive scorers (up to ``compute.score_max_threads``), one below
    :data:`SECONDS_PER_THREAD` of one-thread compute; runtime and memory the estimate with its
    margin, never below ``compute.score_runtime`` / ``compute.score_mem_mb`` (floors) nor, for those
    floors, above ``compute.max_runtime_min`` / ``compute.max_mem_mb`` (limits; null: none)."""
    comp = bench["compute"]
    cost = scorer_cost(name, params, benchmark_sizes(bench), stage)
    one = cost.seconds(1)
    threads = max(1, min(int(comp.get("score_max_threads", 8)), math.ceil(one / SECONDS_PER_THREAD)))
    estimate_min = math.ceil(RUNTIME_MARGIN * (OVERHEAD_S + cost.seconds(threads)) / 60.0)
    estimate_mb = math.ceil(MEM_MARGIN * (BASE_MEM_MB + cost.memory_bytes / 2 ** 20))
    runtime = max(estimate_min, int(comp["score_runtime"]))
    mem_mb = max(estimate_mb, int(comp["score_mem_mb"]))
    if comp.get("max_runtime_min"):
        runtime = max(estimate_min, min(runtime, int(comp["max_runtime_min"])))
    if comp.get("max_mem_mb"):
        mem_mb = max(estimate_mb, min(mem_mb, int(comp["max_mem_mb"])))
    return {"threads": threads, "runtime": runtime, "mem_mb": mem_mb, "estimate_s": one,
            "estimate_min": estimate_min, "estimate_mb": estimate_mb}


def limit_problems(benchmarks: Mapping[str, Mapping], run: Sequence[str]) -> list[str]:
    """Every scoring job of the benchmarks in ``run`` whose estimate exceeds its benchmark's
    ``compute.max_runtime_min`` / ``compute.max_mem_mb``: one message each, naming the benchmark,
    scorer, estimate and key (the jobs: :func:`scorer_stages`)."""
    from .variants import benchmark_scorers

    problems = []
    for b in run:
        comp = benchmarks[b]["compute"]
        max_min, max_mb = comp.get("max_runtime_min"), comp.get("max_mem_mb")
        if not max_min and not max_mb:
            continue
        for scorer in benchmark_scorers(benchmarks[b]):
            for stage, params in scorer_stages(benchmarks[b], scorer):
                r = job_resources(benchmarks[b], scorer, params, stage)
                rule = "fit_stats" if stage == "fit" else "score"
                if max_min and r["estimate_min"] > max_min:
                    problems.append(
                        f"benchmark '{b}', scorer '{scorer}' (rule {rule}): estimated {r['estimate_min']} min on "
                        f"{r['threads']} thread(s) exceeds benchmarks.{b}.compute.max_runtime_min = {max_min}; "
                        f"raise the limit (a partition with a longer time limit) or compute.score_max_threads")
                if max_mb and r["estimate_mb"] > max_mb:
                    problems.append(
                        f"benchmark '{b}', scorer '{scorer}' (rule {rule}): estimated {r['estimate_mb']} MB exceeds "
                        f"benchmarks.{b}.compute.max_mem_mb = {max_mb}; raise the limit (a node with more memory)")
    return problems


# ----------------------------------------------------------------------------- several jobs per GPU
def measure_concurrent_training(jobs: Sequence[int] = (1, 2, 4), *, arch: str = "resnet34", n: int = 4096,
                                batch: int = 128, epochs: int = 1, objective: str = "ce", device_name: str = "auto",
                                size: int = 32, timeout_s: float = 600.0) -> list[dict]:
    """Aggregate training throughput of ``j`` jobs side by side on one GPU, for each ``j`` in ``jobs``:
    each job is a separate process running ``lffood smoke`` (the same launcher as the check's
    training: :func:`lffood.throughput.smoke`, one CE stage over ``n`` random CIFAR-sized images)
    with ``LFFOOD_JOBS_PER_GPU=j`` set, so that it claims a GPU slot as the workflow's train jobs
    do (:func:`lffood.runtime.claim_gpu_slot`). Returns one row per ``j``: ``jobs``, per-job
    images/s (each over its own training loop), ``summed_images_per_s`` (their sum: the GPU's
    throughput while the loops overlap), ``aggregate_images_per_s`` (total images / wall time from the
    first start to the last end, process start-up included) and ``speedup`` (summed, against one
    job). Size ``epochs`` so that each loop runs well beyond a process's start-up (seconds: importing
    torch, initialising CUDA), or the loops do not overlap and the sums overstate. Without a GPU the
    processes run on the CPU (a test)."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    rows = []
    with tempfile.TemporaryDirectory(prefix="lffood-slots-") as locks:
        for j in jobs:
            env = {**os.environ, "LFFOOD_JOBS_PER_GPU": str(j), "LFFOOD_GPU_LOCK_DIR": locks}
            cmd = [sys.executable, "-m", "lffood", "smoke", "--arch", arch, "--size", str(size), "--n", str(n),
                   "--batch", str(batch), "--epochs", str(epochs), "--device", device_name, "--objectives", objective]
            start = time.perf_counter()
            procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(j)]
            outs = [p.communicate(timeout=timeout_s) for p in procs]
            wall = time.perf_counter() - start
            failed = [e[-2000:] for p, (_, e) in zip(procs, outs) if p.returncode]
            if failed:
                raise RuntimeError(f"{j} concurrent training jobs: {len(failed)} failed:\n{failed[0]}")
            per_job = [_smoke_rate(o, f"train ({objective})") for o, _ in outs]
            images = j * n * epochs
            summed = sum(per_job) if None not in per_job else None
            rows.append({"jobs": j, "epochs": epochs, "per_job_images_per_s": per_job, "summed_images_per_s": summed,
                         "wall_s": wall, "aggregate_images_per_s": images / wall})
    base = rows[0]["summed_images_per_s"] if rows else None
    for r in rows:
        r["speedup"] = r["summed_images_per_s"] / base if base and r["summed_images_per_s"] else None
    return rows


def _smoke_rate(stdout: str, stage: str) -> float | None:
    """The img/s column of ``stage``'s line in ``lffood smoke``'s table."""
    for line in stdout.splitlines():
        if line.startswith(stage):
            try:
                return float(line[len(stage):].split()[2])
            except (IndexError, ValueError):
                return None
    return None


#: ImageNet-100's training split: ILSVRC-2012's train holds 1,281,167 images in 1,000 classes (732 to
#: 1,300 per class), so 100 classes hold about 100 x 1,281; the exact count depends on
#: ``dataset.class_list``. Its test split is ILSVRC-2012 val, 50 per class (lffood.config.PAPER_DATA).
IMAGENET_TRAIN_PER_CLASS = 1_281


def data_sizes(bench: Mapping) -> dict:
    """Images per split of a (validated) paper benchmark: ``train``, ``test`` and ``ood`` (set ->
    images after the ``ood_max_images`` cap). CIFAR's 50,000 / 10,000 come from
    :func:`lffood.config.id_data`; ImageNet-100's training count is estimated
    (:data:`IMAGENET_TRAIN_PER_CLASS`)."""
    from .config import id_data
    from .names import ood_set

    ds = bench["dataset"]
    facts = id_data(ds)
    train = facts["train"] if facts["train"] is not None else IMAGENET_TRAIN_PER_CLASS * facts["classes"]
    cap = ds.get("ood_max_images")
    images = {name: ood_set(ds["source"], name).images for name in ds["ood_sets"]}
    ood = {name: min(n, cap) if cap else n for name, n in images.items()}
    return {"train": int(train), "test": int(facts["test"]), "ood": ood}
