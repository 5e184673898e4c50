# Stage 2-3: CE pretraining, then LFF and the CE-only control fine-tuned from the same checkpoint.


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        ckpt=f"{R}/{{bench}}/seed{{seed}}/models/ce.pt",
        history=f"{R}/{{bench}}/seed{{seed}}/models/ce_history.csv",
    params:
        train=training_params,
        variant="ce",
        device=config["device"],
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/pretrain.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/pretrain.tsv"
    threads: compute("train_threads")
    resources:
        gpu=1,
        mem_mb=compute("train_mem_mb"),
        runtime=compute("train_runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"


rule finetune:
    input:
        train=f"{DATA}/{{bench}}/train.npz",
        parent=f"{R}/{{bench}}/seed{{seed}}/models/ce.pt",
    output:
        ckpt=f"{R}/{{bench}}/seed{{seed}}/models/{{variant}}.pt",
        history=f"{R}/{{bench}}/seed{{seed}}/models/{{variant}}_history.csv",
    wildcard_constraints:
        variant="lff|ce_control",
    params:
        train=training_params,
        variant=lambda wc: wc.variant,
        device=config["device"],
    log:
        f"{LOGS}/{{bench}}/seed{{seed}}/finetune_{{variant}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/seed{{seed}}/finetune_{{variant}}.tsv"
    threads: compute("train_threads")
    resources:
        gpu=1,
        mem_mb=compute("train_mem_mb"),
        runtime=compute("train_runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
