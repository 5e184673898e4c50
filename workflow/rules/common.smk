# Paths, wildcards and parameter helpers shared by every rule file.
import os
import re

from lffood.data import sources as data_sources
from lffood.names import EMBEDDED_SPLITS, OOD_SETS_BY_SOURCE, VARIANTS, split_names, training_config
from lffood.scorers import fit_params, registered_scorers, resolved_params

R = config["results_dir"]
DATA = config["data_dir"]
SEEDS = config["seeds"]
BENCHMARKS = config["benchmarks"]
LOGS = "logs"
BENCH = "benchmarks"


def _alt(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    bench=_alt(BENCHMARKS),
    seed=r"\d+",
    variant=_alt(VARIANTS),
    scorer=_alt(registered_scorers()),
    split=r"[A-Za-z0-9_\-]+",


def bench(wildcards):
    return BENCHMARKS[wildcards.bench]


def split_paths(wildcards):
    return {s: f"{DATA}/{wildcards.bench}/{s}.npz" for s in split_names(bench(wildcards))}


def training_params(wildcards):
    """Only what training reads, so that changing e.g. a scorer never retrains a model."""
    return training_config(bench(wildcards), wildcards.get("variant", "ce"))


def pretrain_inputs(wildcards):
    """The ID training split, and the user's CE checkpoint when pretrain.checkpoint names one
    (then pretraining imports it instead of training, and a new file reruns what follows)."""
    inputs = {"train": f"{DATA}/{wildcards.bench}/train.npz"}
    if bench(wildcards)["pretrain"]["checkpoint"]:
        inputs["checkpoint"] = bench(wildcards)["pretrain"]["checkpoint"]
    return inputs


def ood_sets(wildcards):
    return bench(wildcards)["dataset"]["ood_sets"]


def compute(key):
    return lambda wildcards: bench(wildcards)["compute"][key]


# Scorers by where their statistics are fitted and where they score (lffood.scorers.base.Scorer).
SCORERS = registered_scorers()
FEATURE_SCORERS = [n for n, c in SCORERS.items() if c.score_on == "features"]
NETWORK_SCORERS = [n for n, c in SCORERS.items() if c.score_on == "network"]
FEATURE_FITS = [n for n, c in SCORERS.items() if c.needs_fit and c.fit_on == "features"]
NETWORK_FITS = [n for n, c in SCORERS.items() if c.needs_fit and c.fit_on == "network"]


def scorer_params(wildcards):
    """All parameters of the job's scorer, defaults filled in: a change reruns only that scorer."""
    return resolved_params(wildcards.scorer, bench(wildcards)["scorers"]["params"].get(wildcards.scorer))


def scorer_fit_params(wildcards):
    """Only the parameters the scorer's ID statistics depend on."""
    return fit_params(wildcards.scorer, bench(wildcards)["scorers"]["params"].get(wildcards.scorer))


def stats_input(wildcards):
    if not SCORERS[wildcards.scorer].needs_fit:
        return {}
    return {"stats": f"{R}/{wildcards.bench}/seed{wildcards.seed}/stats/{wildcards.variant}/{wildcards.scorer}.h5"}


def score_files(wildcards):
    return {
        s: f"{R}/{wildcards.bench}/seed{wildcards.seed}/scores/{wildcards.variant}/{s}.h5"
        for s in bench(wildcards)["scorers"]["names"]
    }


def bench_metric_files(b):
    """The metrics of every seed and model variant of benchmark ``b``."""
    return [f"{R}/{b}/seed{seed}/metrics/{variant}.csv" for seed in SEEDS for variant in VARIANTS]


def metric_files(wildcards):
    return bench_metric_files(wildcards.bench)


def table_targets(b):
    return [f"{R}/tables/{b}.csv", f"{R}/tables/{b}.md"]


def scorer_table_targets(b):
    return [f"{R}/tables/{b}_scorers.csv", f"{R}/tables/{b}_scorers.md"]


def figure_targets(b):
    return [f"{R}/figures/{b}_feature_norms.png", f"{R}/figures/{b}_local_norms.png"]


def all_targets():
    out = []
    for b in config["run"]:
        out += table_targets(b) + scorer_table_targets(b) + figure_targets(b)
    return out


def paper_table_inputs(wildcards):
    """Metrics of every seed and model variant of each benchmark behind a paper table."""
    names = config["tables"][wildcards.table]
    undefined = [b for b in names if b not in BENCHMARKS]
    if undefined:
        raise WorkflowError(
            f"results/tables/{wildcards.table}.csv needs benchmark(s) {undefined}, which the config does not define "
            f"(key tables.{wildcards.table}). Define them under 'benchmarks' (config.yaml ships them) or change the key."
        )
    return {b: bench_metric_files(b) for b in names}


# ----------------------------------------------------------------------------- paper datasets (data.smk)
DL = data_sources.downloads_dir(config)
PAPER_OOD = sorted({s for src in data_sources.PAPER_SOURCES for s in OOD_SETS_BY_SOURCE[src]})


def _benches_with(*srcs):
    return [b for b, c in BENCHMARKS.items() if c["dataset"]["source"] in srcs]


def _alt_or_never(names):
    names = list(names)
    return _alt(names) if names else "(?!x)x"


def receipt(key):
    return f"{DL}/{key}/{key}.verified.json"


def ood_params(wc):
    """Only what changes the OOD split's content (adding another OOD set must not rebuild this one)."""
    ds = bench(wc)["dataset"]
    keys = ("source", "seed", "ood_resize", "ood_crop", "ood_max_images")
    return {k: ds[k] for k in keys}


def _dataset_mem(ood_mb, imagenet_mb):
    return lambda wc: imagenet_mb if bench(wc)["dataset"]["source"] == "imagenet100" else ood_mb


def imagenet_input(wc):
    """The class list file; also checks dataset.imagenet_root while the job graph is built, so a
    missing or mis-organised ILSVRC folder stops the run before any job starts (skipped in dry runs,
    which must plan the whole graph with no data, and when the split already exists)."""
    ds = bench(wc)["dataset"]
    out = f"{DATA}/{wc.bench}/{wc.split}.npz"
    if not workflow.dryrun and not os.path.exists(out):
        wnids = data_sources.read_class_list(ds["class_list"])
        key = f"benchmarks.{wc.bench}.dataset.imagenet_root"
        problems = data_sources.check_imagenet_root(ds["imagenet_root"], wnids, key=key)
        if problems:
            raise WorkflowError(f"ImageNet-100 for benchmark '{wc.bench}' cannot be built:\n"
                                + "\n".join(f"  - {p}" for p in problems)
                                + f"\nFix config key '{key}' ({', '.join(map(str, workflow.configfiles))}).")
    return {"class_list": str(data_sources.class_list_path(ds["class_list"]))}
