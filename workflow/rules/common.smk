# Paths, wildcards and parameter helpers shared by every rule file.
import re

from lffood.names import EMBEDDED_SPLITS, VARIANTS, split_names, training_config
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


def metric_files(wildcards):
    return [
        f"{R}/{wildcards.bench}/seed{seed}/metrics/{variant}.csv"
        for seed in SEEDS
        for variant in VARIANTS
    ]


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
