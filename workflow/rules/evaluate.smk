# Stage 5-6: ID statistics fitted once per (model, scorer), one scoring job per (model, scorer),
# then metrics per model. Cached-feature scorers read the HDF5 cache only; ODIN and FeatureNorm
# (and FeatureNorm's block selection) load the checkpoint in their own rules. Every job's params
# are its scorer's resolved parameters (statistics jobs: only those the statistics depend on), so
# changing one scorer's parameters reruns only that scorer's jobs.


rule fit_stats:
    input:
        features=f"{R}/{{bench}}/seed{{seed}}/features/{{variant}}.h5",
    output:
        f"{R}/{{bench}}/seed{{seed}}/stats/{{variant}}/{{scorer}}.h5",
    wildcard_constraints:
        scorer=_alt(FEATURE_FITS),
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


rule fit_stats_network:
    input:
        ckpt=f"{R}/{{bench}}/seed{{seed}}/models/{{variant}}.pt",
        train=f"{DATA}/{{bench}}/train.npz",
    output:
        f"{R}/{{bench}}/seed{{seed}}/stats/{{variant}}/{{scorer}}.h5",
    wildcard_constraints:
        scorer=_alt(NETWORK_FITS),
    params:
        fit_params=scorer_fit_params,
        batch_size=lambda wc: bench(wc)["scorers"]["network"]["batch_size"],
        device=config["device"],
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/stats_{{variant}}_{{scorer}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/fit_stats_network_{{variant}}_{{scorer}}.tsv"
    threads: compute("train_threads")
    resources:
        gpu=1,
        mem_mb=lambda wc: bench(wc)["scorers"]["network"]["mem_mb"],
        runtime=lambda wc: bench(wc)["scorers"]["network"]["runtime"],
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/fit_stats_network.py"


rule score:
    input:
        unpack(lambda wc: {"features": f"{R}/{wc.bench}/seed{wc.seed}/features/{wc.variant}.h5", **stats_input(wc)}),
    output:
        f"{R}/{{bench}}/seed{{seed}}/scores/{{variant}}/{{scorer}}.h5",
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
        unpack(lambda wc: {"ckpt": f"{R}/{wc.bench}/seed{wc.seed}/models/{wc.variant}.pt", **split_paths(wc),
                           **stats_input(wc)}),
    output:
        f"{R}/{{bench}}/seed{{seed}}/scores/{{variant}}/{{scorer}}.h5",
    wildcard_constraints:
        scorer=_alt(NETWORK_SCORERS),
    params:
        scorer_params=scorer_params,
        splits=lambda wc: split_names(bench(wc)),
        batch_size=lambda wc: bench(wc)["scorers"]["network"]["batch_size"],
        device=config["device"],
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
        unpack(lambda wc: {"features": f"{R}/{wc.bench}/seed{wc.seed}/features/{wc.variant}.h5", **score_files(wc)}),
    output:
        f"{R}/{{bench}}/seed{{seed}}/metrics/{{variant}}.csv",
    params:
        scorers=lambda wc: bench(wc)["scorers"]["names"],
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
