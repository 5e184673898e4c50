# Stages 2-3: training. One rule for every variant of lffood.variants: CE pretraining and the other
# from-scratch methods (LogitNorm), and everything fine-tuned from a parent checkpoint (the CE
# control, LFF, SSOD, MODE, sweep points). Which objective, parent and schedule is configuration
# (benchmarks.<b>.variants); the job's params are exactly what the variant's training reads.
# Outputs are update(), as every rule's (lffood.jobcontrol): when a changed configuration reruns a
# trained model, Snakemake keeps a copy of the old checkpoint instead of deleting it first, and
# restores it if the new job fails (the Snakefile's onerror puts its metadata back). A job killed
# mid-training resumes after its last finished epoch (lffood.pipeline.resume_path). Every job also
# records its local vectors' norms per bin of p_j(y|x) (lffood.monitor), with no threshold: the
# figures read them at figures.monitor.delta, which is no training job's params.


rule train:
    input:
        unpack(train_inputs),
    output:
        ckpt=update(P.ckpt),
        history=update(P.history),
        monitor=update(P.monitor),
    params:
        spec=training_params,
    log:
        log_file("train", P.ckpt),
    benchmark:
        benchmark_file("train", P.ckpt)
    threads: compute("train_threads")
    resources:
        gpu=compute("train_gpus"),
        mem_mb=compute("train_mem_mb"),
        runtime=compute("train_runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
