# Stages 2-3: training. One rule for every variant of lffood.variants: CE pretraining and the other
# from-scratch methods (LogitNorm), and everything fine-tuned from a parent checkpoint (the CE
# control, LFF, SSOD, MODE, sweep points). Which objective, parent and schedule is configuration
# (benchmarks.<b>.variants); the job's params are exactly what the variant's training reads.


rule train:
    input:
        unpack(train_inputs),
    output:
        ckpt=P.ckpt,
        history=P.history,
    params:
        spec=training_params,
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/train_{{variant}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/train_{{variant}}.tsv"
    threads: compute("train_threads")
    resources:
        gpu=1,
        mem_mb=compute("train_mem_mb"),
        runtime=compute("train_runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
