# Stage 5-6: one job per (model, scorer) from the HDF5 cache, then metrics per model.


rule score:
    input:
        features=f"{R}/{{bench}}/seed{{seed}}/features/{{variant}}.h5",
    output:
        f"{R}/{{bench}}/seed{{seed}}/scores/{{variant}}/{{scorer}}.h5",
    params:
        scorer_params=lambda wc: bench(wc)["scorers"]["params"].get(wc.scorer, {}),
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/score_{{variant}}_{{scorer}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/score_{{variant}}_{{scorer}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/score.py"


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
