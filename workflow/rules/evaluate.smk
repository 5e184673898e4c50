# Stage 5-6: ID statistics fitted once per (model, scorer) from the cached features, one scoring job
# per (model, scorer), then metrics per model (the scorers that apply to its objective). Only ODIN
# loads the checkpoint (score_network): what other scorers need of the network beyond logits and
# features is computed by extraction on their request (FeatureNorm's block norms). Every job's params
# are its scorer's resolved parameters (statistics jobs: only those the statistics depend on), so
# changing one scorer's parameters reruns only its jobs.


rule fit_stats:
    input:
        features=P.features,
    output:
        P.stats,
    wildcard_constraints:
        scorer=_alt(FITTED_SCORERS),
    params:
        fit_params=scorer_fit_params,
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/stats_{{variant}}_{{scorer}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/fit_stats_{{variant}}_{{scorer}}.tsv"
    threads: 1
    resources:
        mem_mb=compute("score_mem_mb"),
        runtime=compute("score_runtime"),
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/fit_stats.py"


rule score:
    input:
        unpack(lambda wc: {"features": path(P.features, wc), **stats_input(wc)}),
    output:
        P.scores,
    wildcard_constraints:
        scorer=_alt(FEATURE_SCORERS),
    params:
        scorer_params=scorer_params,
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/score_{{variant}}_{{scorer}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/score_{{variant}}_{{scorer}}.tsv"
    threads: 1
    resources:
        mem_mb=compute("score_mem_mb"),
        runtime=compute("score_runtime"),
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/score.py"


rule score_network:
    input:
        unpack(lambda wc: {"ckpt": path(P.ckpt, wc), **split_paths(wc), **stats_input(wc)}),
    output:
        P.scores,
    wildcard_constraints:
        scorer=_alt_or_never(NETWORK_SCORERS),
    params:
        scorer_params=scorer_params,
        splits=lambda wc: split_names(bench(wc)),
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/score_{{variant}}_{{scorer}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/score_network_{{variant}}_{{scorer}}.tsv"
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
        P.metrics,
    params:
        scorers=lambda wc: variant_scorers(bench(wc), wc.variant),
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/metrics_{{variant}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/metrics_{{variant}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/metrics.py"
