# Stage 1: datasets. The embedded benchmark is generated offline from package data.


rule prepare_embedded:
    output:
        update(expand(P.split, split=EMBEDDED_SPLITS, allow_missing=True)),
    params:
        dataset=lambda wc: bench(wc)["dataset"],
    wildcard_constraints:
        bench=_alt_or_never(_benches_with("embedded")),
    log:
        log_file("prepare_embedded", P.split, "split"),
    benchmark:
        benchmark_file("prepare_embedded", P.split, "split")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/prepare_embedded.py"


# Paper datasets (docs/datasets.md). Archives are downloaded once into the downloads folder
# (shared by every benchmark) and read from there; each benchmark's splits are preprocessed into
# {DATA}/{bench}/{split}.npz. A download job's output is a small receipt next to the archive, not the
# archive itself, so Snakemake never deletes a multi-GB archive when it decides to re-run a job: the
# job then only re-verifies the existing file. ImageNet-100 comes from the user's ILSVRC-2012 folder.
# Helpers (DL, receipt, imagenet_input, ...) are in common.smk.

localrules:
    download,


rule download:
    output:
        update(P.receipt),
    wildcard_constraints:
        archive=_alt(data_sources.ARCHIVES),
    log:
        log_file("download", P.receipt),
    benchmark:
        benchmark_file("download", P.receipt)
    threads: 1
    resources:
        mem_mb=500,
        runtime=480,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/download.py"


rule prepare_cifar:
    input:
        receipt=lambda wc: receipt(data_sources.ID_ARCHIVE[bench(wc)["dataset"]["source"]]),
    output:
        train=update(path(P.split, bench="{bench}", split="train")),
        test=update(path(P.split, bench="{bench}", split="test")),
    params:
        dataset=lambda wc: {k: bench(wc)["dataset"][k] for k in ("source", "seed")},
    wildcard_constraints:
        bench=_alt_or_never(_benches_with("cifar10", "cifar100")),
    log:
        log_file("prepare_cifar", P.split, "split"),
    benchmark:
        benchmark_file("prepare_cifar", P.split, "split")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/prepare_paper.py"


rule prepare_imagenet100:
    input:
        unpack(imagenet_input),
    output:
        npz=update(P.split),
        files=update(P.split_files),
    params:
        dataset=lambda wc: {k: bench(wc)["dataset"][k]
                            for k in ("source", "seed", "imagenet_root", "class_list", "train_size", "ood_resize",
                                      "ood_crop")},
    wildcard_constraints:
        bench=_alt_or_never(_benches_with("imagenet100")),
        split="train|test",
    log:
        log_file("prepare_imagenet100", P.split),
    benchmark:
        benchmark_file("prepare_imagenet100", P.split)
    threads: 8
    resources:
        mem_mb=4000,
        runtime=600,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/prepare_paper.py"


rule prepare_ood:
    input:
        receipt=lambda wc: receipt(data_sources.ood_archive(bench(wc)["dataset"]["source"], wc.split)),
    output:
        npz=update(P.split),
        files=update(P.split_files),
    params:
        dataset=ood_params,
    wildcard_constraints:
        bench=_alt_or_never(_benches_with(*data_sources.PAPER_SOURCES)),
        split=_alt(PAPER_OOD),
    log:
        log_file("prepare_ood", P.split),
    benchmark:
        benchmark_file("prepare_ood", P.split)
    threads: 4
    resources:
        mem_mb=_dataset_mem(2000, 6000),
        runtime=60,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/prepare_paper.py"
