# Stage 4: logits, penultimate features and local-vector statistics to HDF5 (lffood.h5schema).


rule extract:
    input:
        unpack(lambda wc: {"ckpt": f"{R}/{wc.bench}/seed{wc.seed}/models/{wc.variant}.pt", **split_paths(wc)}),
    output:
        f"{R}/{{bench}}/seed{{seed}}/features/{{variant}}.h5",
    params:
        extraction=lambda wc: {k: bench(wc)[k] for k in ("extraction", "amp")},
        splits=lambda wc: split_names(bench(wc)),
        device=config["device"],
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/extract_{{variant}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/extract_{{variant}}.tsv"
    threads: compute("train_threads")
    resources:
        gpu=1,
        mem_mb=compute("extract_mem_mb"),
        runtime=compute("extract_runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/extract.py"
