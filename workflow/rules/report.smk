# Stage 7: tables (CSV + Markdown, mean and standard deviation over seeds) and figures. Rows and
# labels come from each benchmark's variants (config), never from names written here.

W = {"bench": "{bench}", "table": "{table}"}  # keep these wildcards when filling a pattern of P


rule table:
    input:
        metric_files,
    output:
        csv=path(P.table, **W, ext="csv"),
        md=path(P.table, **W, ext="md"),
        tex=path(P.table, **W, ext="tex"),
        html=report(path(P.table, **W, ext="html"), caption="../report/table.rst", category="Tables"),
        tidy=P.tidy,
    params:
        ood_sets=ood_sets,
        labels=variant_labels,
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
        features=per_seed_variant(P.features),
        histories=per_seed_variant(P.history),
    output:
        norms=report(path(P.figure, **W, figure="feature_norms", ext="png"), caption="../report/feature_norms.rst",
                     category="Figures"),
        local=report(path(P.figure, **W, figure="local_norms", ext="png"), caption="../report/local_norms.rst",
                     category="Figures"),
    params:
        delta=lambda wc: monitor_delta(bench(wc)),
        title=lambda wc: bench(wc).get("description", wc.bench),
        labels=variant_labels,
        seeds=SEEDS,
        ood_sets=ood_sets,
        compare=lambda wc: [v for v in (config["tables"]["ours"], config["tables"]["control"])
                            if v in bench(wc)["variants"]],
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
        csv=path(P.scorer_table, **W, ext="csv"),
        md=path(P.scorer_table, **W, ext="md"),
        tex=path(P.scorer_table, **W, ext="tex"),
        html=report(path(P.scorer_table, **W, ext="html"), caption="../report/scorer_table.rst", category="Tables"),
    params:
        ood_sets=ood_sets,
        scorers=lambda wc: bench(wc)["scorers"]["names"],
        labels=variant_labels,
        title=lambda wc: f"{wc.bench}: every scorer on every model",
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


rule sensitivity:
    input:
        sensitivity_inputs,
    output:
        png=report(path(P.figure, **W, figure="sensitivity", ext="png"), caption="../report/sensitivity.rst",
                   category="Figures"),
        pdf=path(P.figure, **W, figure="sensitivity", ext="pdf"),
        csv=path(P.sensitivity_table, **W),
    params:
        points=lambda wc: sweep_table(bench(wc)),
        reference=lambda wc: config["tables"]["control"],
        labels=lambda wc: {v: variant(bench(wc), v)["label"] for v in variant_names(bench(wc), with_sweeps=True)},
        title=lambda wc: bench(wc).get("description", wc.bench),
    log:
        f"{LOGS}/{{bench}}/sensitivity.log",
    benchmark:
        f"{BENCH}/{{bench}}/sensitivity.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/sensitivity.py"


rule paper_table:
    input:
        unpack(paper_table_inputs),
        paper=str(PAPER_NUMBERS),
    output:
        csv=path(P.paper_table, **W, ext="csv"),
        md=path(P.paper_table, **W, ext="md"),
        tex=path(P.paper_table, **W, ext="tex"),
        html=report(path(P.paper_table, **W, ext="html"), caption="../report/paper_table.rst", category="Paper tables"),
    wildcard_constraints:
        table="table[1-4]",
    params:
        ood_sets=lambda wc: {b: BENCHMARKS[b]["dataset"]["ood_sets"] for b in config["tables"][wc.table]},
        methods=lambda wc: paper_methods(config["tables"][wc.table]),
        roles={r: config["tables"][r] for r in ("baseline", "control", "ours")},
        title=lambda wc: paper_table_title(wc.table, config["tables"][wc.table]),
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


rule bench_paper_table:
    input:
        metric_files,
    output:
        csv=path(P.bench_paper_table, **W, shape="{shape}", ext="csv"),
        md=path(P.bench_paper_table, **W, shape="{shape}", ext="md"),
        tex=path(P.bench_paper_table, **W, shape="{shape}", ext="tex"),
        html=report(path(P.bench_paper_table, **W, shape="{shape}", ext="html"),
                    caption="../report/bench_paper_table.rst", category="Tables"),
    wildcard_constraints:
        shape="table1|table4",
    params:
        ood_sets=lambda wc: {wc.bench: ood_sets(wc)},
        methods=lambda wc: paper_methods([wc.bench]),
        roles={r: config["tables"][r] for r in ("baseline", "control", "ours")},
        title=lambda wc: paper_table_title(wc.shape, [wc.bench], shape=True),
    log:
        f"{LOGS}/{{bench}}/{{shape}}.log",
    benchmark:
        f"{BENCH}/{{bench}}/bench_paper_table_{{shape}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/paper_table.py"
