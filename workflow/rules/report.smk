# Stage 7: tables (CSV + Markdown, mean and standard deviation over seeds) and figures.


rule table:
    input:
        metric_files,
    output:
        csv=report(f"{R}/tables/{{bench}}.csv", caption="../report/table.rst", category="Tables"),
        md=f"{R}/tables/{{bench}}.md",
        tidy=f"{R}/{{bench}}/metrics_all.csv",
    params:
        ood_sets=ood_sets,
        title=lambda wc: f"{wc.bench}: {bench(wc).get('description', '')}".rstrip(": "),
    log:
        f"{LOGS}/{{bench}}/table.log",
    benchmark:
        f"{BENCH}/{{bench}}/table.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/table.py"


rule figures:
    input:
        features=lambda wc: [f"{R}/{wc.bench}/seed{s}/features/{v}.h5" for v in VARIANTS for s in SEEDS],
        histories=lambda wc: [f"{R}/{wc.bench}/seed{s}/models/{v}_history.csv" for v in VARIANTS for s in SEEDS],
    output:
        norms=report(
            f"{R}/figures/{{bench}}_feature_norms.png", caption="../report/feature_norms.rst", category="Figures"
        ),
        local=report(f"{R}/figures/{{bench}}_local_norms.png", caption="../report/local_norms.rst", category="Figures"),
    params:
        delta=lambda wc: bench(wc)["lff"]["delta"],
        title=lambda wc: bench(wc).get("description", wc.bench),
        variants=VARIANTS,
        seeds=SEEDS,
        ood_sets=ood_sets,
    log:
        f"{LOGS}/{{bench}}/figures.log",
    benchmark:
        f"{BENCH}/{{bench}}/figures.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/figures.py"


rule scorer_table:
    input:
        metric_files,
    output:
        csv=report(f"{R}/tables/{{bench}}_scorers.csv", caption="../report/scorer_table.rst", category="Tables"),
        md=f"{R}/tables/{{bench}}_scorers.md",
    params:
        ood_sets=ood_sets,
        scorers=lambda wc: bench(wc)["scorers"]["names"],
        title=lambda wc: f"{wc.bench}: every post-hoc scorer on the CE, CE-control and LFF models",
    log:
        f"{LOGS}/{{bench}}/scorer_table.log",
    benchmark:
        f"{BENCH}/{{bench}}/scorer_table.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/scorer_table.py"


rule paper_table:
    input:
        unpack(paper_table_inputs),
    output:
        csv=report(f"{R}/tables/{{table}}.csv", caption="../report/paper_table.rst", category="Paper tables"),
        md=f"{R}/tables/{{table}}.md",
    wildcard_constraints:
        table="table[1-4]",
    params:
        ood_sets=lambda wc: {b: BENCHMARKS[b]["dataset"]["ood_sets"] for b in config["tables"][wc.table]},
        ours_scorer=config["tables"]["ours_scorer"],
    log:
        f"{LOGS}/tables/{{table}}.log",
    benchmark:
        f"{BENCH}/tables/paper_table_{{table}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/paper_table.py"
