"""Projected wall time of each paper benchmark, per stage, on one GPU and the CPU cores beside it.

One projection, two sources of rates:

* **Bounds from counted work** (``lffood project``; no GPU needed). Training, extraction and ODIN:
  floating-point operations per image counted on the real network
  (``torch.utils.flop_counter`` on the meta device: every convolution and product of the forward
  pass, and of the backward pass where the stage has one) over the GPU's dense peak, bfloat16
  Tensor cores with AMP (every paper benchmark), TF32 without (PyTorch's default for
  convolutions). The k-NN searches of CSD and KNN: ``2 x bank x queries x dim`` over the GPU's
  FP32 peak (the search switches TF32 off). Every other cached-feature scorer (fits, products
  with the head): :mod:`lffood.costs`' cost model, rates measured on this code, on the node's CPU
  cores. No run can beat the GPU figures: they are *floors*. Eager small-batch steps (CIFAR at
  batch 128: about 530 kernels a step for ResNet-34) are bound by kernel launches rather than by
  FLOPs, so a measured run can be several times slower.
* **Measured rates** (``lffood gpu-check``; ``lffood project --gpu-check FILE``): images/s of every
  training objective, extraction and ODIN at the paper's sizes, and the k-NN search's pairs/s, on
  the GPU that ran the check; the CPU scorers from the same cost model.

Per benchmark and per stage, in minutes for every variant and seed of ``all`` (sweep points apart):
training, extraction, network scoring (ODIN), the k-NN searches on the GPU, and the other scorers
on the CPU cores, plus what the k-NN searches would take on those CPU cores instead (a node without a
GPU for scoring). Left out: data preparation, figures and report, each job's start (imports,
loading), and queueing. Stages run one after another here; Snakemake overlaps CPU scoring with GPU
jobs, so the wall time of a run lies between the largest stage and the sum.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .costs import benchmark_sizes, data_sizes, scorer_cost, scorer_stages


# ----------------------------------------------------------------------------- machines
@dataclass(frozen=True)
class Machine:
    """A GPU node: dense peak rates of the GPU (FLOP/s, no structured sparsity) and its CPU cores."""
    name: str
    bf16: float    # Tensor-core bfloat16 / float16 (AMP)
    tf32: float    # Tensor-core TF32 (convolutions without AMP, PyTorch's default)
    fp32: float    # CUDA-core float32 (the k-NN search: TF32 off)
    cores: int
    source: str

    @property
    def label(self) -> str:
        return f"{self.name} and {self.cores} CPU cores"


#: The lent GPU machines' kind: one H100 SXM5 80 GB and 16 CPU cores. Peaks from NVIDIA's H100
#: datasheet (dense, i.e. half the "with sparsity" figures): BF16 989.4, TF32 494.7, FP32 66.9 TFLOP/s.
#: The PCIe card is about 0.76x of these.
H100 = Machine("one NVIDIA H100 SXM 80 GB", bf16=989.4e12, tf32=494.7e12, fp32=66.9e12, cores=16,
               source="NVIDIA's H100 SXM datasheet (BF16 989.4, TF32 494.7, FP32 66.9 TFLOP/s)")


def data_classes(bench: Mapping) -> int:
    """The number of ID classes of a benchmark (the network's outputs)."""
    from .config import id_data

    return int(id_data(bench["dataset"])["classes"])


# ----------------------------------------------------------------------------- counted work
@dataclass(frozen=True)
class Work:
    """FLOPs per image of one network at one input size: ``forward``; ``train`` (forward and the
    backward pass of every weight and activation); ``odin`` (ODIN: forward, backward to the input
    only, forward of the perturbed input); ``ops_per_step``: ATen operations of one training step's
    forward and backward (what eager PyTorch launches, roughly one kernel each)."""
    forward: float
    train: float
    odin: float
    ops_per_step: int


@functools.lru_cache(maxsize=None)
def _count(model_json: str, classes: int, side: int) -> Work:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    from .models.build import build_model

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    n = 2  # batch norm in training mode needs more than one value per channel
    with torch.device("meta"):
        net = build_model(json.loads(model_json), classes)
        x = torch.empty(n, 3, side, side)

    def logits(inp):
        out = net(inp)
        return out[0] if isinstance(out, tuple) else out

    def flops(fn) -> float:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return counter.get_total_flops() / n

    net.eval()
    forward = flops(lambda: logits(x))
    for p in net.parameters():
        p.requires_grad_(False)

    def odin():
        xi = x.clone().requires_grad_(True)
        logits(xi).sum().backward()
        logits(xi.detach())

    odin_flops = flops(odin)
    for p in net.parameters():
        p.requires_grad_(True)
    net.train()
    ops = Ops()
    with ops:  # the training step's operations, counted in the same pass as its FLOPs
        train = flops(lambda: logits(x).sum().backward())
    return Work(forward, train, odin_flops, ops.n)


def count_work(model: Mapping, classes: int, side: int) -> Work:
    """:class:`Work` of the network of config section ``model`` with ``classes`` outputs on
    ``side`` x ``side`` images (counted once per process; about a second on the CPU)."""
    return _count(json.dumps(dict(model), sort_keys=True), int(classes), int(side))


def _network_side(bench: Mapping) -> int:
    """The side of the images the network sees: CIFAR's 32; ImageNet's 224 crop (training's random
    crop, extraction's centre crop of the stored 256)."""
    return int(bench["dataset"]["ood_crop"])


# ----------------------------------------------------------------------------- rates
@dataclass
class Rates:
    """Throughputs on one GPU that one benchmark's projection uses, in images per second.

    ``train``: (objective, batch size as configured) -> images through the network per second (both
    views of a two-view objective count); ``extract_train``: extraction of the ID training split;
    ``extract_eval``: extraction of the test and OOD splits; ``network``: network scorer -> images
    scored per second; ``search_pairs_per_s``: the k-NN search's (query, bank vector) pairs per
    second at 512-D (None: none measured; the searches are then projected on the CPU only)."""
    train: dict[tuple[str, int], float]
    extract_train: float | None
    extract_eval: float | None
    network: dict[str, float]
    search_pairs_per_s: float | None = None


def rates_for(bench_name: str, training: list[dict], extraction: list[dict], scorers: list[dict],
              knn_search: Mapping | None = None) -> Rates:
    """The rates ``lffood gpu-check`` measured for ``bench_name`` (rows of its sections; skipped rows
    have none); ``knn_search``: its k-NN section (pairs/s scaled to 512-D by the dimension)."""
    mine = [r for r in training + extraction + scorers if bench_name in r["benchmarks"] and "images_per_s" in r]
    ext = {r["split"]: r["images_per_s"] for r in mine if "split" in r}
    search = None
    if knn_search and knn_search.get("ok") and knn_search.get("pairs_per_s"):
        search = knn_search["pairs_per_s"] * knn_search["dim"] / 512
    return Rates(train={(r["objective"], r["configured_batch"]): r["images_per_s"] for r in mine if "objective" in r},
                 extract_train=ext.get("train"), extract_eval=ext.get("eval"),
                 network={r["scorer"]: r["images_per_s"] for r in mine if "scorer" in r},
                 search_pairs_per_s=search)


def flop_limit_rates(bench: Mapping, machine: Machine = H100) -> Rates:
    """The fastest rates ``machine``'s GPU could reach on ``bench``: its peak (bfloat16 with AMP, else
    TF32) over the counted FLOPs per image (:func:`count_work`) of every stage; the training split's
    extraction counts FeatureNorm's jigsaw pass where a variant's scorers ask for it; the k-NN search
    at the FP32 peak over 2 x 512 FLOPs per pair."""
    from .scorers import scorer_class
    from .variants import extraction_params, training_spec, variant_names, variant_scorers

    work = count_work(bench["model"], data_classes(bench), _network_side(bench))
    peak = machine.bf16 if bench["amp"] else machine.tf32
    train, network, jigsaw = {}, {}, False
    for v in variant_names(bench, with_sweeps=True):
        spec = training_spec(bench, v)
        train[(spec["objective"], int(spec["stage"]["batch_size"]))] = peak / work.train
        jigsaw = jigsaw or "block_norms" in extraction_params(bench, v)
        for sc in variant_scorers(bench, v):
            if scorer_class(sc).score_on == "network":
                network[sc] = peak / work.odin
    return Rates(train=train, extract_train=peak / (work.forward * (2 if jigsaw else 1)),
                 extract_eval=peak / work.forward, network=network,
                 search_pairs_per_s=machine.fp32 / (2.0 * 512))


# ----------------------------------------------------------------------------- the projection
def _stage(stage: str, variant: str, images: int, seconds: float | None, seeds: int, **extra) -> dict:
    """One row of a projection: ``images`` per seed; ``minutes`` for every seed (None: no rate)."""
    return {"stage": stage, "variant": variant, "images": int(images), **extra,
            "images_per_s": round(images / seconds, 2) if seconds else None,
            "minutes": seconds * seeds / 60 if seconds is not None else None}


def _variant_stages(bench: Mapping, name: str, rates: Rates, sizes: Mapping, seeds: int) -> list[dict]:
    """Training (unless imported), extraction and network scoring of one variant, every seed."""
    from .objectives import objective_class
    from .scorers import scorer_class
    from .variants import training_spec, variant_scorers

    spec = training_spec(bench, name)
    eval_images = sizes["test"] + sum(sizes["ood"].values())
    rows = []
    if not spec["checkpoint"]:
        stage, objective = spec["stage"], spec["objective"]
        batch = int(stage["batch_size"])
        views = 2 if objective_class(objective).two_views else 1
        images = stage["epochs"] * (sizes["train"] // batch * batch) * views  # the loop drops the last partial batch
        rate = rates.train.get((objective, batch))
        rows.append(_stage("train", name, images, images / rate if rate else None, seeds, objective=objective,
                           epochs=stage["epochs"], batch=batch, views=views))
    ok = rates.extract_train and rates.extract_eval
    seconds = sizes["train"] / rates.extract_train + eval_images / rates.extract_eval if ok else None
    rows.append(_stage("extract", name, sizes["train"] + eval_images, seconds, seeds))
    for sc in variant_scorers(bench, name):
        if scorer_class(sc).score_on == "network":
            rate = rates.network.get(sc)
            rows.append(_stage(sc, name, eval_images, eval_images / rate if rate else None, seeds))
    return rows


def _total(rows: list[dict]) -> dict:
    missing = sorted({f"{r['stage']} {r['variant']}" for r in rows if r["minutes"] is None})
    by_stage: dict[str, float] = {}
    for r in rows:
        key = r["stage"]
        by_stage[key] = by_stage.get(key, 0.0) + (r["minutes"] or 0.0)
    total = None if missing else sum(by_stage.values())
    return {"minutes_by_stage": {k: round(v, 3) for k, v in by_stage.items()},
            "total_minutes": round(total, 3) if total is not None else None, "missing": missing}


def project(bench: Mapping, rates: Rates, sizes: Mapping | None = None) -> dict:
    """Projected GPU time of one (validated) benchmark section on one GPU, every variant and seed:

    * training of each variant: epochs of its stage (pretrain, finetune and its ``stage_overrides``,
      :func:`lffood.variants.training_spec`) x the images of one epoch (the training split less the
      last partial batch) x views per image (2 for a two-view objective such as MODE's ALPA) / the
      rate of that objective at that batch size; none for a variant imported from a checkpoint;
    * extraction of each variant's model: training split / ``extract_train`` + (test + every OOD set) /
      ``extract_eval``;
    * each network scorer (ODIN) the variant runs: (test + every OOD set) / its rate;

    each times the number of seeds, in minutes. ``sizes``: :func:`lffood.costs.data_sizes` by
    default. Sweep points (the sensitivity figure, not part of ``all``) are projected apart. Not
    included: data preparation, the cached-feature scorers (:func:`scoring`), figures and report, and
    each job's start (imports, loading)."""
    from .variants import sweep_points, variant_names

    sizes = dict(sizes or data_sizes(bench))
    seeds = len(bench["seeds"])

    rows = [r for v in variant_names(bench) for r in _variant_stages(bench, v, rates, sizes, seeds)]
    sweeps = [r for v in sweep_points(bench) for r in _variant_stages(bench, v, rates, sizes, seeds)]
    for r in rows + sweeps:
        r["minutes"] = round(r["minutes"], 3) if r["minutes"] is not None else None
    out = {"seeds": seeds, "sizes": sizes, "train_gpus": bench.get("compute", {}).get("train_gpus", 1),
           "stages": rows, **_total(rows)}
    sweep_total = _total(sweeps)
    out["sweeps"] = {"points": len(sweep_points(bench)), "total_minutes": sweep_total["total_minutes"],
                     "missing": sweep_total["missing"]}
    return out


def scoring(bench: Mapping, cores: int, search_pairs_per_s: float | None) -> dict:
    """Minutes of the cached-feature scorers of every variant and seed (rules ``fit_stats`` and
    ``score``), from :mod:`lffood.costs`' cost model at the benchmark's sizes:

    * ``knn_gpu``: the k-NN searches (scorers that search the ID training bank: CSD, KNN and the
      baselines' own k-NN scores) at ``search_pairs_per_s`` (pairs at 512-D, scaled by the
      dimension); None without a rate;
    * ``knn_cpu``: the same searches on ``cores`` CPU threads instead;
    * ``cpu``: every other fit and score on ``cores`` threads (each job's own thread count is
      :func:`lffood.costs.job_resources`'; a node runs several such jobs at once, so the node's cores
      are the divisor here).
    """
    from .scorers import scorer_class
    from .variants import variant_names, variant_scorers

    sizes = benchmark_sizes(bench)
    seeds = len(bench["seeds"])
    out = {"knn_gpu": 0.0, "knn_cpu": 0.0, "cpu": 0.0}
    for v in variant_names(bench):
        for sc in variant_scorers(bench, v):
            for stage, params in scorer_stages(bench, sc):
                cost = scorer_cost(sc, params, sizes, stage)
                if scorer_class(sc).uses_train_bank and stage == "score":
                    out["knn_cpu"] += cost.seconds(cores)
                    if search_pairs_per_s:
                        # the search's products at 2 x 512 FLOPs a pair: its pairs counted at 512-D
                        out["knn_gpu"] += cost.flops / (2.0 * 512) / search_pairs_per_s
                else:
                    out["cpu"] += cost.seconds(cores)
    minutes = {k: round(v * seeds / 60, 3) for k, v in out.items()}
    if not search_pairs_per_s:
        minutes["knn_gpu"] = None
    return minutes


def benchmark_projection(bench: Mapping, rates: Rates, cores: int) -> dict:
    """:func:`project` (GPU stages) and :func:`scoring` (cached-feature scorers) of one benchmark, with
    the stages the docs show: ``train``, ``extract``, ``network`` (ODIN and any other network
    scorer), ``knn_gpu``, ``cpu_scorers``; ``total_minutes`` their sum (None where a rate is
    missing); ``knn_cpu`` what the k-NN searches would take on the CPU cores instead."""
    gpu = project(bench, rates)
    sc = scoring(bench, cores, rates.search_pairs_per_s)
    by = gpu["minutes_by_stage"]
    network = sum(m for k, m in by.items() if k not in ("train", "extract"))
    stages = {"train": by.get("train", 0.0), "extract": by.get("extract", 0.0), "network": round(network, 3),
              "knn_gpu": sc["knn_gpu"], "cpu_scorers": sc["cpu"]}
    missing = list(gpu["missing"]) + (["k-NN search rate"] if sc["knn_gpu"] is None else [])
    total = None if missing else round(sum(stages.values()), 3)
    return {"seeds": gpu["seeds"], "sizes": gpu["sizes"], "stages": stages, "knn_cpu": sc["knn_cpu"],
            "total_minutes": total, "missing": missing, "sweeps": gpu["sweeps"], "cores": cores,
            "rows": gpu["stages"]}


def measured(cfg: Mapping, benchmarks: Sequence[str], result: Mapping, cores: int) -> dict:
    """:func:`benchmark_projection` of each of ``benchmarks`` with the rates of a ``lffood gpu-check``
    result (its sections ``training``, ``extraction``, ``scorers`` and ``knn_search``) and the CPU
    scorers on ``cores``."""
    sections = (result["training"], result["extraction"], result["scorers"])
    return {b: benchmark_projection(cfg["benchmarks"][b], rates_for(b, *sections, result.get("knn_search")), cores)
            for b in benchmarks}


def flop_limit(bench: Mapping, machine: Machine = H100) -> dict:
    """:func:`benchmark_projection` at :func:`flop_limit_rates`, with the work behind it: the
    network's :class:`Work` and the training FLOPs of every variant and seed."""
    rates = flop_limit_rates(bench, machine)
    out = benchmark_projection(bench, rates, machine.cores)
    work = count_work(bench["model"], data_classes(bench), _network_side(bench))
    images = sum(r["images"] for r in out["rows"] if r["stage"] == "train") * out["seeds"]
    out["work"] = {"forward_gflop": round(work.forward / 1e9, 3), "train_gflop": round(work.train / 1e9, 3),
                   "odin_gflop": round(work.odin / 1e9, 3), "ops_per_step": work.ops_per_step,
                   "train_flop": images * work.train}
    return out


# ----------------------------------------------------------------------------- output
STAGE_LABELS = {"train": "training", "extract": "extraction", "network": "ODIN", "knn_gpu": "k-NN (GPU)",
                "cpu_scorers": "other scorers (CPU)"}


def _minutes(m: float | None) -> str:
    if m is None:
        return "-"
    if m >= 600:
        return f"{m / 60:,.0f} h"
    if m >= 60:
        return f"{m / 60:.1f} h"
    return f"{m:.1f} min" if m >= 0.1 else "<0.1 min"


def markdown(projections: Mapping[str, dict], machine: Machine, measured: bool) -> str:
    """One table: a row per benchmark, a column per stage, the total, and the k-NN searches on the CPU
    cores instead of the GPU."""
    kind = "measured rates" if measured else "FLOP limit (a floor)"
    head = ["benchmark", "seeds", *[STAGE_LABELS[k] for k in STAGE_LABELS], "total",
            f"k-NN on {machine.cores} CPU cores instead"]
    lines = [f"Projected time of `all` on {machine.label}, every variant and seed; GPU stages at the {kind}.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, p in projections.items():
        cells = [f"`{name}`", str(p["seeds"]), *[_minutes(p["stages"][k]) for k in STAGE_LABELS],
                 _minutes(p["total_minutes"]), _minutes(p["knn_cpu"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def text(projections: Mapping[str, dict], title: str) -> str:
    """The projection as aligned text lines (``lffood project``, ``lffood gpu-check``)."""
    lines = [f"{title} (every variant and seed of all):"]
    for name, p in projections.items():
        stages = "  ".join(f"{STAGE_LABELS[k]} {_minutes(v)}" for k, v in p["stages"].items())
        more = " ..." if len(p["missing"]) > 3 else ""
        total = (f"total {_minutes(p['total_minutes'])}" if p["total_minutes"] is not None
                 else f"incomplete: no rate for {', '.join(p['missing'][:3])}{more}")
        lines.append(f"  {name:22s} {p['seeds']} seeds  {stages}  {total}  "
                     f"(k-NN on {p['cores']} CPU cores instead: {_minutes(p['knn_cpu'])})")
    return "\n".join(lines)


def work_table(projections: Mapping[str, dict], cfg: Mapping) -> str:
    """The counted work behind the FLOP limit: per benchmark, the network, image side, GFLOP per image
    of the forward pass, a training step and ODIN, ATen operations per training step, and the
    training FLOPs of every variant and seed."""
    lines = ["| benchmark | network | image | forward GFLOP | training GFLOP | ODIN GFLOP | ops per step "
             "| training in all |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, p in projections.items():
        bench, w = cfg["benchmarks"][name], p["work"]
        lines.append(f"| `{name}` | {bench['model']['arch']} | {_network_side(bench)} | {w['forward_gflop']:.2f} | "
                     f"{w['train_gflop']:.2f} | {w['odin_gflop']:.2f} | {w['ops_per_step']} | "
                     f"{w['train_flop']:.2e} FLOP |")
    return "\n".join(lines)


START, END = "<!-- projection:start -->", "<!-- projection:end -->"


def block(projections: Mapping[str, dict], cfg: Mapping, machine: Machine, command: str, config: str) -> str:
    """The docs' generated block (between :data:`START` and :data:`END`): the FLOP-limit table and the
    work behind it."""
    return (f"{START}\n_Generated by `{command}` from `{config}`: FLOPs counted on the networks at the paper's "
            f"sizes, over the dense peaks of {machine.source}; the other scorers from the CPU cost model "
            f"(`lffood.costs`). Nothing here was measured on a GPU._\n\n"
            f"{markdown(projections, machine, measured=False)}\n\nThe work behind it: FLOPs per image (forward "
            f"pass, training step, ODIN), ATen operations per training step, and the training FLOPs of every "
            f"variant and seed.\n\n{work_table(projections, cfg)}\n{END}")


def paper_projection(cfg: Mapping, benchmarks: Sequence[str] | None = None, machine: Machine = H100) -> dict:
    """:func:`flop_limit` of every benchmark (default: the ``paper`` suite) of a validated config."""
    names = list(benchmarks or cfg["suites"]["paper"])
    return {b: flop_limit(cfg["benchmarks"][b], machine) for b in names}
