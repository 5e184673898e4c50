# Stage 1: datasets. The embedded benchmark is generated offline from package data.


rule prepare_embedded:
    output:
        expand(f"{DATA}/{{bench}}/{{split}}.npz", split=EMBEDDED_SPLITS, allow_missing=True),
    params:
        dataset=lambda wc: bench(wc)["dataset"],
    wildcard_constraints:
        bench=_alt(b for b, c in BENCHMARKS.items() if c["dataset"]["source"] == "embedded"),
    log:
        f"{LOGS}/{{bench}}/prepare_embedded.log",
    benchmark:
        f"{BENCH}/{{bench}}/prepare_embedded.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/prepare_embedded.py"
