# Stage 4: logits, penultimate features, local-vector statistics, MODE's region vectors, FeatureNorm's
# block norms (a scorer's extraction request) and an objective's own outputs (SSOD's OOD head) to
# HDF5 (lffood.h5schema). The schema version is a param, so files of an older layout are rebuilt by a
# plain rerun.


rule extract:
    input:
        unpack(lambda wc: {"ckpt": path(P.ckpt, wc), **split_paths(wc)}),
    output:
        update(P.features),
    params:
        # what the features depend on (lffood.variants.extraction_params, with the scorers' requests);
        # the batch size and the device are read by the job itself
        extraction=lambda wc: extraction_params(bench(wc), wc.variant),
        splits=lambda wc: split_names(bench(wc)),
        schema_version=h5schema.SCHEMA_VERSION,
    log:
        log_file("extract", P.features),
    benchmark:
        benchmark_file("extract", P.features)
    threads: compute("train_threads")
    resources:
        gpu=1,
        mem_mb=compute("extract_mem_mb"),
        runtime=compute("extract_runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/extract.py"
