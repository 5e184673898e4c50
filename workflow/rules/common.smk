# Paths, wildcards and parameter helpers shared by every rule file.
import re

from lffood.names import EMBEDDED_SPLITS, VARIANTS, split_names, training_config
from lffood.scorers import registered_scorers

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


def score_files(wildcards):
    return {
        s: f"{R}/{wildcards.bench}/seed{wildcards.seed}/scores/{wildcards.variant}/{s}.h5"
        for s in bench(wildcards)["scorers"]["names"]
    }


def metric_files(wildcards):
    return [
        f"{R}/{wildcards.bench}/seed{seed}/metrics/{variant}.csv"
        for seed in SEEDS
        for variant in VARIANTS
    ]


def table_targets(b):
    return [f"{R}/tables/{b}.csv", f"{R}/tables/{b}.md"]


def figure_targets(b):
    return [f"{R}/figures/{b}_feature_norms.png", f"{R}/figures/{b}_local_norms.png"]


def all_targets():
    out = []
    for b in config["run"]:
        out += table_targets(b) + figure_targets(b)
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
    return {
        b: [f"{R}/{b}/seed{seed}/metrics/{variant}.csv" for seed in SEEDS for variant in VARIANTS] for b in names
    }
