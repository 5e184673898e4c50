# Stage 5-6: ID statistics fitted once per (model, scorer) from the cached features, one scoring job
# per (model, scorer), then metrics per model (the scorers that apply to its objective). Only ODIN
# loads the checkpoint (score_network): what other scorers need of the network beyond logits and
# features is computed by extraction on their request (FeatureNorm's block norms). Every job's params
# are its scorer's resolved parameters (statistics jobs: only those the statistics depend on), so
# changing one scorer's parameters reruns only its jobs.
#
# Resources of fit_stats and score: threads, runtime and mem_mb from the scorer's cost model and the
# benchmark's sizes (lffood.costs; compute.score_runtime / score_mem_mb are floors, score_max_threads
# the most threads); compute.max_runtime_min / max_mem_mb (null: none) are checked here, before any job.

check_score_limits()


rule fit_stats:
    input:
        features=P.features,
    output:
        update(P.stats),
    wildcard_constraints:
        scorer=_alt(FITTED_SCORERS),
    params:
        fit_params=scorer_fit_params,
    log:
        log_file("fit_stats", P.stats),
    benchmark:
        benchmark_file("fit_stats", P.stats)
    threads: score_resource("fit", "threads")
    resources:
        mem_mb=score_resource("fit", "mem_mb"),
        runtime=score_resource("fit", "runtime"),
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/fit_stats.py"


rule score:
    input:
        unpack(lambda wc: {"features": path(P.features, wc), **stats_input(wc)}),
    output:
        update(P.scores),
    wildcard_constraints:
        scorer=_alt_or_never(CPU_FEATURE_SCORERS),
    params:
        scorer_params=scorer_params,
    log:
        log_file("score", P.scores),
    benchmark:
        benchmark_file("score", P.scores)
    threads: score_resource("score", "threads")
    resources:
        mem_mb=score_resource("score", "mem_mb"),
        runtime=score_resource("score", "runtime"),
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/score.py"


# The exact k-th-neighbour search of CSD and KNN (lffood.scorers.knn_search): the products belong on
# the GPU when there is one (a GPU job, training env with torch); on the CPU it uses the job's threads.
rule score_search:
    input:
        unpack(lambda wc: {"features": path(P.features, wc), **stats_input(wc)}),
    output:
        update(P.scores),
    wildcard_constraints:
        scorer=_alt_or_never(SEARCH_SCORERS),
    params:
        scorer_params=scorer_params,
    log:
        log_file("score_search", P.scores),
    benchmark:
        benchmark_file("score_search", P.scores)
    threads: score_resource("score", "threads")
    resources:
        gpu=1,
        mem_mb=score_resource("score", "mem_mb"),
        runtime=score_resource("score", "runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/score.py"


rule score_network:
    input:
        unpack(lambda wc: {"ckpt": path(P.ckpt, wc), **split_paths(wc), **stats_input(wc)}),
    output:
        update(P.scores),
    wildcard_constraints:
        scorer=_alt_or_never(NETWORK_SCORERS),
    params:
        scorer_params=scorer_params,
        splits=lambda wc: split_names(bench(wc)),
    log:
        log_file("score_network", P.scores),
    benchmark:
        benchmark_file("score_network", P.scores)
    threads: compute("train_threads")
    resources:
        gpu=1,
        mem_mb=lambda wc: bench(wc)["scorers"]["network"]["mem_mb"],
        runtime=lambda wc: bench(wc)["scorers"]["network"]["runtime"],
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/score_network.py"


rule metrics:
    input:
        unpack(lambda wc: {"features": path(P.features, wc), **score_files(wc)}),
    output:
        update(P.metrics),
    params:
        scorers=lambda wc: variant_scorers(bench(wc), wc.variant),
        # the bootstrap of the standard errors (lffood.stats); the level only shapes intervals later
        bootstrap={k: config["stats"][k] for k in ("bootstrap", "seed")},
    log:
        log_file("metrics", P.metrics),
    benchmark:
        benchmark_file("metrics", P.metrics)
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/metrics.py"
