# Paths, wildcards and parameter helpers shared by every rule file. Every artifact path pattern is
# defined once, here (P); rules and helpers fill it in with path(P.<name>, wildcards, ...).
import os
import re
from types import SimpleNamespace

from lffood import h5schema
from lffood.data import sources as data_sources
from lffood.names import EMBEDDED_SPLITS, OOD_SETS, PAPER_NUMBERS, split_names
from lffood.report import compare as compare_report
from lffood.report import figure_data
from lffood.scorers import fit_params, registered_scorers, resolved_params
from lffood.variants import (benchmark_scorers, extraction_params, monitor_delta, sweep_value_names, training_spec,
                             variant, variant_names, variant_scorers)

R = config["results_dir"]
DATA = config["data_dir"]
BENCHMARKS = config["benchmarks"]
LOGS = "logs"
BENCH = "benchmarks"
DL = data_sources.downloads_dir(config)

P = SimpleNamespace(
    receipt=f"{DL}/{{archive}}/{{archive}}.verified.json",  # a verified download (data.smk)
    split=f"{DATA}/{{bench}}/{{split}}.npz",
    split_files=f"{DATA}/{{bench}}/{{split}}.files.txt",  # the source file of every image (paper datasets)
    ckpt=f"{R}/{{bench}}/seed{{seed}}/models/{{variant}}.pt",
    history=f"{R}/{{bench}}/seed{{seed}}/models/{{variant}}_history.csv",
    monitor=f"{R}/{{bench}}/seed{{seed}}/models/{{variant}}_monitor.csv",  # lffood.monitor
    features=f"{R}/{{bench}}/seed{{seed}}/features/{{variant}}.h5",
    stats=f"{R}/{{bench}}/seed{{seed}}/stats/{{variant}}/{{scorer}}.h5",
    scores=f"{R}/{{bench}}/seed{{seed}}/scores/{{variant}}/{{scorer}}.h5",
    metrics=f"{R}/{{bench}}/seed{{seed}}/metrics/{{variant}}.csv",
    tidy=f"{R}/{{bench}}/metrics_all.csv",
    table=f"{R}/tables/{{bench}}.{{ext}}",
    scorer_table=f"{R}/tables/{{bench}}_scorers.{{ext}}",
    paper_table=f"{R}/tables/{{table}}.{{ext}}",
    bench_paper_table=f"{R}/tables/{{bench}}_{{shape}}.{{ext}}",
    sensitivity_table=f"{R}/tables/{{bench}}_sensitivity.csv",
    compare=f"{R}/{compare_report.RELATIVE}",  # results/tables/{bench}_vs_control.{ext} (lffood results reads it)
    figure=f"{R}/figures/{{bench}}_{{figure}}.{{ext}}",
    tsne_vectors=f"{R}/{{bench}}/figure_data/tsne_vectors.npz",
)


def path(pattern, wildcards=None, **values):
    """``pattern`` (one of P) filled with the job's wildcards and ``values``."""
    return pattern.format(**{**(dict(wildcards.items()) if wildcards is not None else {}), **values})


def _job_name(pattern, fixed):
    """What names one job in artifact ``pattern`` (one of P), whose wildcards ``fixed`` the rule fills in
    itself (e.g. ``ext``): the path components holding its other wildcards, without the fixed ones and
    the file extension. P.ckpt -> ``{bench}/seed{seed}/{variant}``; P.figure, fixed figure and ext -> ``{bench}``."""
    parts, seen = [], set()
    for comp in pattern.split("/"):
        names = re.findall(r"\{(\w+)\}", comp)
        free = {n for n in names if n not in fixed}
        if not free or free <= seen:  # a folder of no job's own, or the job's name again (P.receipt)
            continue
        seen |= free
        for n in names:
            if n in fixed:
                comp = re.sub(rf"[._-]?\{{{n}\}}", "", comp)
        parts.append(re.sub(r"\.[^{}]*$", "", comp))
    return "/".join(parts)


def log_file(rule_name, pattern, *fixed):
    """The log of each job of ``rule_name`` is ``logs/<rule_name>/<job>.log``, the job named as its artifact
    ``pattern`` names it (:func:`_job_name`): the first folder is the rule's (``lffood benchmarks`` reads it)."""
    return f"{LOGS}/{rule_name}/{_job_name(pattern, fixed)}.log"


def benchmark_file(rule_name, pattern, *fixed):
    """The Snakemake benchmark file of each job of ``rule_name``: ``benchmarks/<rule_name>/<job>.tsv`` (as
    :func:`log_file`)."""
    return f"{BENCH}/{rule_name}/{_job_name(pattern, fixed)}.tsv"


def _alt(names):
    return "|".join(re.escape(n) for n in names)


# every variant of every benchmark, sweep points included (the rules check membership per benchmark)
ALL_VARIANTS = sorted({v for b in BENCHMARKS.values() for v in variant_names(b, with_sweeps=True)})


wildcard_constraints:
    bench=_alt(BENCHMARKS),
    seed=r"\d+",
    variant=_alt(ALL_VARIANTS),
    scorer=_alt(registered_scorers()),
    split=r"[A-Za-z0-9_\-]+",


def bench(wildcards):
    return BENCHMARKS[wildcards.bench]


def seeds(wildcards):
    """The training seeds of the job's benchmark (``benchmarks.<name>.seeds``)."""
    return bench(wildcards)["seeds"]


def split_paths(wildcards):
    return {s: path(P.split, wildcards, split=s) for s in split_names(bench(wildcards))}


def training_params(wildcards):
    """Only what training this variant reads, so that changing e.g. a scorer or another variant never
    retrains it (lffood.variants.training_spec)."""
    return training_spec(bench(wildcards), wildcards.variant)


def train_inputs(wildcards):
    """The ID training split; the parent's checkpoint (fine-tuning); the imported checkpoint when the
    variant names one (a new file then reruns what follows); the initial weights of ``init``."""
    v = variant(bench(wildcards), wildcards.variant)
    inputs = {"train": path(P.split, wildcards, split="train")}
    if v["parent"] is not None:
        inputs["parent"] = path(P.ckpt, wildcards, variant=v["parent"])
    elif v["checkpoint"]:
        inputs["imported"] = v["checkpoint"]
    elif v.get("init") == "imagenet1k":  # torchvision's weights, downloaded and verified (rule download)
        key = data_sources.IMAGENET1K_WEIGHTS[bench(wildcards)["model"]["arch"]]
        inputs["init_receipt"] = receipt(key)  # the file: lffood.data.sources.init_weights_path
    elif v.get("init"):
        inputs["init"] = v["init"]
    return inputs


def ood_sets(wildcards):
    return bench(wildcards)["dataset"]["ood_sets"]


def compute(key):
    return lambda wildcards: bench(wildcards)["compute"][key]


# Scorers by where they score (lffood.scorers.base.Scorer); statistics are always fitted from the
# cached features (rule fit_stats).
SCORERS = registered_scorers()
FEATURE_SCORERS = [n for n, c in SCORERS.items() if c.score_on == "features"]
NETWORK_SCORERS = [n for n, c in SCORERS.items() if c.score_on == "network"]
FITTED_SCORERS = [n for n, c in SCORERS.items() if c.needs_fit]
# cached-feature scorers that search the ID training bank (CSD, KNN): a GPU job of their own (score_search)
SEARCH_SCORERS = [n for n in FEATURE_SCORERS if SCORERS[n].uses_train_bank]
CPU_FEATURE_SCORERS = [n for n in FEATURE_SCORERS if n not in SEARCH_SCORERS]


def score_resources(stage):
    """Resource function of the scoring rules (fit_stats: ``stage`` "fit", score: "score"): the job's
    ``{threads, runtime, mem_mb, ...}`` from its scorer's cost model and the benchmark's sizes
    (lffood.costs.job_resources); ``score_resource(stage, key)`` picks one."""
    from lffood.costs import job_resources

    def resources(wildcards):
        params = scorer_fit_params(wildcards) if stage == "fit" else scorer_params(wildcards)
        return job_resources(bench(wildcards), wildcards.scorer, params, stage)

    return resources


def score_resource(stage, key):
    res = score_resources(stage)
    return lambda wildcards, **_: res(wildcards)[key]


def check_score_limits():
    """Stop before any job when a scoring job's estimate exceeds compute.max_runtime_min/max_mem_mb."""
    from lffood.costs import limit_problems

    problems = limit_problems(BENCHMARKS, [b for b in config["run"] if b in BENCHMARKS])
    if problems:
        raise WorkflowError("scoring jobs cannot fit the configured limits (README \"Cluster (SLURM)\"):\n"
                            + "\n".join(f"  - {p}" for p in problems))


def scorer_params(wildcards):
    """All parameters of the job's scorer, defaults filled in: a change reruns only that scorer."""
    return resolved_params(wildcards.scorer, bench(wildcards)["scorers"]["params"].get(wildcards.scorer))


def scorer_fit_params(wildcards):
    """Only the parameters the scorer's ID statistics depend on."""
    return fit_params(wildcards.scorer, bench(wildcards)["scorers"]["params"].get(wildcards.scorer))


def stats_input(wildcards):
    if not SCORERS[wildcards.scorer].needs_fit:
        return {}
    return {"stats": path(P.stats, wildcards)}


def score_files(wildcards):
    return {s: path(P.scores, wildcards, scorer=s) for s in variant_scorers(bench(wildcards), wildcards.variant)}


def bench_metric_files(b, variants=None):
    """The metrics of every seed and variant (or ``variants``) of benchmark ``b``."""
    names = variant_names(BENCHMARKS[b]) if variants is None else variants
    return [path(P.metrics, bench=b, seed=seed, variant=v) for seed in BENCHMARKS[b]["seeds"] for v in names]


def metric_files(wildcards):
    return bench_metric_files(wildcards.bench)


def per_seed_variant(pattern):
    """Input function: ``pattern`` for every variant and seed of the job's benchmark, variant-major."""
    return lambda wc: [path(pattern, wc, seed=s, variant=v) for v in variant_names(bench(wc)) for s in seeds(wc)]


def variant_labels(wildcards):
    b = bench(wildcards)
    return {v: variant(b, v)["label"] for v in variant_names(b)}


TABLE_EXTS = ("csv", "md", "tex", "html")


def table_targets(b):
    return [path(P.table, bench=b, ext=e) for e in TABLE_EXTS]


def scorer_table_targets(b):
    return [path(P.scorer_table, bench=b, ext=e) for e in TABLE_EXTS]


def bench_paper_table_targets(b):
    """The paper's Table I and Table IV shapes for one benchmark, without the paper column."""
    return [path(P.bench_paper_table, bench=b, shape=t, ext=e) for t in ("table1", "table4") for e in TABLE_EXTS]


def paper_table_targets():
    """Tables I-IV whose benchmarks `run` builds (all of them with `--config run=paper`)."""
    return [path(P.paper_table, table=t, ext=e) for t, names in config["tables"].items()
            if t.startswith("table") and names and set(names) <= set(config["run"]) for e in TABLE_EXTS]


FIGURES = ("feature_norms", "local_norms", "auroc_bars", "heatmaps", "tsne")  # results/figures/<bench>_<figure>


def fig(figure, key):
    """Param function: the job's benchmark's ``figures.<figure>.<key>`` (config)."""
    return lambda wc: bench(wc)["figures"][figure][key]


def figure_targets(b):
    """The figures of one benchmark. The t-SNE compares two models (tables.baseline and tables.ours):
    a benchmark that lacks one of them (e.g. CE only) leaves it out of `all`; asked for by name, it
    fails with the missing variant named (figure_data.tsne_choice). The sensitivity figure (paper
    Fig. 6) is in `all` where the benchmark opts in (figures.sensitivity.in_all) and sweeps."""
    shown = [f for f in FIGURES if f != "tsne" or not figure_data.tsne_variants(BENCHMARKS[b], config["tables"])[1]]
    if BENCHMARKS[b]["figures"]["sensitivity"]["in_all"] and BENCHMARKS[b]["sweeps"]:
        shown.append("sensitivity")
    return [path(P.figure, bench=b, figure=f, ext=e) for f in shown for e in ("png", "pdf")]


_PRINTED = {}


def printed_numbers():
    """The paper's printed numbers (src/lffood/resources/paper/lff_tables.csv), read once, when first needed."""
    if "df" not in _PRINTED:
        from lffood.report import paper_numbers

        _PRINTED["df"] = paper_numbers.load()
    return _PRINTED["df"]


def bars_paper_table(b):
    """The paper table whose printed averages the AUROC bars of benchmark `b` show beside the
    reproduced ones (paper Fig. 3), or None: the embedded benchmark's figure has no paper values."""
    if not any(b in (config["tables"].get(t) or []) for t in figure_data.PRINTED_TABLES):
        return None
    return figure_data.printed_table(b, config["tables"], printed_numbers())


def bars_inputs(wildcards):
    """The metrics of every seed and variant, and the paper's numbers where the figure shows them."""
    inputs = {"metrics": metric_files(wildcards)}
    if bars_paper_table(wildcards.bench):
        inputs["paper"] = str(PAPER_NUMBERS)
    return inputs


def sensitivity_reference(b):
    """The paper's reference line of the sensitivity figure (figures.sensitivity.paper_reference):
    {method, table, auroc, fpr95} printed for benchmark `b`, or None."""
    from lffood.errors import ConfigError

    if not BENCHMARKS[b]["figures"]["sensitivity"]["paper_reference"]:
        return None
    try:
        return figure_data.sensitivity_reference(b, BENCHMARKS[b], config["tables"], printed_numbers())
    except ConfigError as exc:
        raise WorkflowError(str(exc)) from None


def heatmap_variants(wildcards):
    """The heat maps' models (figures.heatmaps.variants; null: every variant), checked to exist."""
    from lffood.errors import ConfigError

    try:
        return figure_data.heatmap_variants(bench(wildcards))
    except ConfigError as exc:
        raise WorkflowError(str(exc)) from None


def compare_targets(b):
    """Every method against the CE control (rule compare), where the benchmark has the control variant."""
    if not compare_report.comparisons(BENCHMARKS[b], config["tables"]["control"]):
        return []
    return [path(P.compare, bench=b, ext=e) for e in ("csv", "md")]


def compare_files(wildcards):
    """``[variant, scorer, seed]`` of every score file the comparison reads: every method (its own scorer)
    and the control (the scorer it is compared with: lffood.report.compare.comparisons), every seed."""
    b, control = bench(wildcards), config["tables"]["control"]
    comps = compare_report.comparisons(b, control)
    if not comps:
        raise WorkflowError(f"{path(P.compare, wildcards, ext='csv')}: benchmark '{wildcards.bench}' has no variant "
                            f"'{control}' (key tables.control) to compare with.")
    return [[v, sc, s] for v, sc in compare_report.needed(comps, control) for s in seeds(wildcards)]


def all_targets():
    out = []
    for b in config["run"]:
        out += (table_targets(b) + scorer_table_targets(b) + bench_paper_table_targets(b) + figure_targets(b)
                + compare_targets(b))
    return out + paper_table_targets()


def sensitivity_inputs(wildcards):
    """Metrics of every sweep point and seed, and of the variants the figure compares with."""
    b = bench(wildcards)
    if not b["sweeps"]:
        raise WorkflowError(f"results/figures/{wildcards.bench}_sensitivity.png needs sweeps: the benchmark "
                            f"defines none (key benchmarks.{wildcards.bench}.sweeps).")
    names = {name for sw in b["sweeps"] for _, name in sweep_value_names(b, sw)}
    names.add(config["tables"]["control"])
    missing = [n for n in names if n not in variant_names(b, with_sweeps=True)]
    if missing:
        raise WorkflowError(f"the sensitivity figure of '{wildcards.bench}' compares with the variant(s) {missing} "
                            f"(key tables.control), which the benchmark does not define.")
    return bench_metric_files(wildcards.bench, sorted(names))


def sweep_table(b):
    """One entry per sweep point: parameter, value, the variant that is that point, and the scorer
    of the sweep's base variant (the sensitivity figure's params)."""
    return [{"param": sw["param"], "value": value, "variant": name, "base": sw["variant"],
             "scorer": variant(b, sw["variant"])["scorer"]}
            for sw in b["sweeps"] for value, name in sweep_value_names(b, sw)]


def paper_table_title(table, benches, shape=False):
    """The title of a paper table: which paper table (or its shape), and the benchmarks and backbones used."""
    from lffood.report.paper_tables import TITLES

    used = "; ".join(f"{b}: {BENCHMARKS[b].get('description', b)}, model {BENCHMARKS[b]['model']['arch']}"
                     for b in benches)
    head = TITLES[table].split(":")[0] + "'s shape" if shape else TITLES[table].split(":")[0]
    rest = TITLES[table].split(":", 1)[1].strip()
    return f"{head}: {rest} ({used})"


def paper_methods(benches):
    """Variant -> (label, scorer) over the benchmarks behind a paper table, in config order."""
    out = {}
    for b in benches:
        for v in variant_names(BENCHMARKS[b]):
            out.setdefault(v, [variant(BENCHMARKS[b], v)["label"], variant(BENCHMARKS[b], v)["scorer"]])
    return out


def paper_table_inputs(wildcards):
    """Metrics of every seed and model variant of each benchmark behind a paper table."""
    from lffood.config import table_problems

    # the one check of the table roles (also run at workflow start for the benchmarks `run` builds)
    problems = table_problems(config, asked=[wildcards.table])
    if problems:
        raise WorkflowError(f"results/tables/{wildcards.table}.csv cannot be built:\n"
                            + "\n".join(f"  - {p}" for p in problems))
    return {b: bench_metric_files(b) for b in config["tables"][wildcards.table]}


# ----------------------------------------------------------------------------- paper datasets (data.smk)
PAPER_OOD = sorted({s.name for s in OOD_SETS if s.preprocess == "resize_crop"})  # the splits of rule prepare_ood


def _benches_with(*srcs):
    return [b for b, c in BENCHMARKS.items() if c["dataset"]["source"] in srcs]


def _alt_or_never(names):
    names = list(names)
    return _alt(names) if names else "(?!x)x"


def receipt(key):
    return path(P.receipt, archive=key)


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
    out = path(P.split, wc)
    if not workflow.dryrun and not os.path.exists(out):
        wnids = data_sources.read_class_list(ds["class_list"])
        key = f"benchmarks.{wc.bench}.dataset.imagenet_root"
        problems = data_sources.check_imagenet_root(ds["imagenet_root"], wnids, key=key)
        if problems:
            raise WorkflowError(f"ImageNet-100 for benchmark '{wc.bench}' cannot be built:\n"
                                + "\n".join(f"  - {p}" for p in problems)
                                + f"\nFix config key '{key}' ({', '.join(map(str, workflow.configfiles))}).")
    inputs = {"class_list": str(data_sources.class_list_path(ds["class_list"]))}
    root = ds["imagenet_root"]
    if wc.split == "test" and root and os.path.isfile(os.path.join(root, data_sources.DEVKIT)):
        inputs["devkit"] = os.path.join(root, data_sources.DEVKIT)  # the flat val folder's labels
    return inputs
