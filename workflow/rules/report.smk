# Stage 7: tables (CSV, Markdown, LaTeX, HTML) and figures. Rows and labels come from each
# benchmark's variants (config), never from names written here. Every table and figure rule passes
# config `watermark` on (stamped on what it reproduces; null: nothing). Which table to read
# (docs/tables.md): `table` writes each benchmark's primary table; `scorer_table`, `bench_paper_table`
# and `paper_table` the secondary ones (every scorer on every model; the paper's layouts). Table
# cells are mean ± half-width of the config `stats.level` interval (lffood.stats).
from lffood.report import figure_data

W = {"bench": "{bench}", "table": "{table}"}  # keep these wildcards when filling a pattern of P


rule table:
    input:
        metric_files,
    output:
        csv=update(path(P.table, **W, ext="csv")),
        md=update(path(P.table, **W, ext="md")),
        tex=update(path(P.table, **W, ext="tex")),
        html=update(report(path(P.table, **W, ext="html"), caption="../report/table.rst", category="Tables")),
        tidy=update(P.tidy),
    params:
        ood_sets=ood_sets,
        labels=variant_labels,
        scorers=lambda wc: {v: variant(bench(wc), v)["scorer"] for v in variant_names(bench(wc))},
        title=lambda wc: f"{wc.bench}, primary table: every method with its own scorer"
        + (f" ({bench(wc)['description']})" if bench(wc).get("description") else ""),
        level=config["stats"]["level"],
        watermark=config["watermark"],
    log:
        log_file("table", P.table, "ext"),
    benchmark:
        benchmark_file("table", P.table, "ext")
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
        monitors=per_seed_variant(P.monitor),
    output:
        norms=update(report(path(P.figure, **W, figure="feature_norms", ext="png"),
                            caption="../report/feature_norms.rst", category="Figures")),
        local=update(report(path(P.figure, **W, figure="local_norms", ext="png"), caption="../report/local_norms.rst",
                            category="Figures")),
        norms_pdf=update(path(P.figure, **W, figure="feature_norms", ext="pdf")),
        local_pdf=update(path(P.figure, **W, figure="local_norms", ext="pdf")),
    params:
        delta=lambda wc: monitor_delta(bench(wc)),
        title=lambda wc: bench(wc).get("description", wc.bench),
        watermark=config["watermark"],
        labels=variant_labels,
        seeds=seeds,
        ood_sets=ood_sets,
        compare=lambda wc: [v for v in (config["tables"]["ours"], config["tables"]["control"])
                            if v in bench(wc)["variants"]],
    log:
        log_file("figures", P.figure, "figure", "ext"),
    benchmark:
        benchmark_file("figures", P.figure, "figure", "ext")
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
        csv=update(path(P.scorer_table, **W, ext="csv")),
        md=update(path(P.scorer_table, **W, ext="md")),
        tex=update(path(P.scorer_table, **W, ext="tex")),
        html=update(report(path(P.scorer_table, **W, ext="html"), caption="../report/scorer_table.rst",
                           category="Tables")),
    params:
        ood_sets=ood_sets,
        scorers=lambda wc: benchmark_scorers(bench(wc)),
        labels=variant_labels,
        title=lambda wc: f"{wc.bench}, secondary table: every scorer on every model",
        level=config["stats"]["level"],
        watermark=config["watermark"],
    log:
        log_file("scorer_table", P.scorer_table, "ext"),
    benchmark:
        benchmark_file("scorer_table", P.scorer_table, "ext")
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
        png=update(report(path(P.figure, **W, figure="sensitivity", ext="png"), caption="../report/sensitivity.rst",
                          category="Figures")),
        pdf=update(path(P.figure, **W, figure="sensitivity", ext="pdf")),
        csv=update(path(P.sensitivity_table, **W)),
    params:
        points=lambda wc: sweep_table(bench(wc)),
        reference=lambda wc: config["tables"]["control"],
        reference_scorer=lambda wc: variant(bench(wc), config["tables"]["control"])["scorer"],
        labels=lambda wc: {v: variant(bench(wc), v)["label"] for v in variant_names(bench(wc), with_sweeps=True)},
        paper_reference=lambda wc: sensitivity_reference(wc.bench),
        title=lambda wc: bench(wc).get("description", wc.bench),
        watermark=config["watermark"],
    log:
        log_file("sensitivity", P.figure, "figure", "ext"),
    benchmark:
        benchmark_file("sensitivity", P.figure, "figure", "ext")
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
        csv=update(path(P.paper_table, **W, ext="csv")),
        md=update(path(P.paper_table, **W, ext="md")),
        tex=update(path(P.paper_table, **W, ext="tex")),
        html=update(report(path(P.paper_table, **W, ext="html"), caption="../report/paper_table.rst",
                           category="Paper tables")),
    wildcard_constraints:
        table="table[1-4]",
    params:
        ood_sets=lambda wc: {b: BENCHMARKS[b]["dataset"]["ood_sets"] for b in config["tables"][wc.table]},
        methods=lambda wc: paper_methods(config["tables"][wc.table]),
        roles={r: config["tables"][r] for r in ("baseline", "control", "ours")},
        title=lambda wc: paper_table_title(wc.table, config["tables"][wc.table]),
        level=config["stats"]["level"],
        watermark=config["watermark"],
    log:
        log_file("paper_table", P.paper_table, "ext"),
    benchmark:
        benchmark_file("paper_table", P.paper_table, "ext")
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
        csv=update(path(P.bench_paper_table, **W, shape="{shape}", ext="csv")),
        md=update(path(P.bench_paper_table, **W, shape="{shape}", ext="md")),
        tex=update(path(P.bench_paper_table, **W, shape="{shape}", ext="tex")),
        html=update(report(path(P.bench_paper_table, **W, shape="{shape}", ext="html"),
                           caption="../report/bench_paper_table.rst", category="Tables")),
    wildcard_constraints:
        shape="table1|table4",
    params:
        ood_sets=lambda wc: {wc.bench: ood_sets(wc)},
        methods=lambda wc: paper_methods([wc.bench]),
        roles={r: config["tables"][r] for r in ("baseline", "control", "ours")},
        title=lambda wc: paper_table_title(wc.shape, [wc.bench], shape=True),
        level=config["stats"]["level"],
        watermark=config["watermark"],
    log:
        log_file("bench_paper_table", P.bench_paper_table, "ext"),
    benchmark:
        benchmark_file("bench_paper_table", P.bench_paper_table, "ext")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/paper_table.py"


# Paper Figs. 2, 3 and 7. Their parameters: each benchmark's `figures` section (config schema).
# Every figure uses the first seed's models; the bars use every seed. The bars of a benchmark the
# paper prints (config `tables`) show the paper's printed averages beside the reproduced ones.
TSNE = lambda wc: figure_data.tsne_choice(bench(wc), config["tables"])  # noqa: E731  variants, ood_set


rule tsne_vectors:
    input:
        unpack(lambda wc: {**{s: path(P.split, wc, split=s) for s in ("train", "test")},
                           "ood": path(P.split, wc, split=TSNE(wc)["ood_set"]),
                           "ckpts": [path(P.ckpt, wc, seed=seeds(wc)[0], variant=v) for v in TSNE(wc)["variants"]]}),
    output:
        update(P.tsne_vectors),
    params:
        variants=lambda wc: TSNE(wc)["variants"],
        ood_set=lambda wc: TSNE(wc)["ood_set"],
        per_group=fig("tsne", "per_group"),
        seed=fig("tsne", "seed"),
        delta=lambda wc: monitor_delta(bench(wc)),
        batch_size=lambda wc: bench(wc)["extraction"]["batch_size"],
        center_crop=lambda wc: bench(wc)["extraction"].get("center_crop"),
    log:
        log_file("tsne_vectors", P.tsne_vectors),
    benchmark:
        benchmark_file("tsne_vectors", P.tsne_vectors)
    threads: compute("train_threads")
    resources:
        gpu=1,
        mem_mb=compute("extract_mem_mb"),
        runtime=compute("extract_runtime"),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/fig_tsne_vectors.py"


rule tsne:
    input:
        P.tsne_vectors,
    output:
        png=update(report(path(P.figure, **W, figure="tsne", ext="png"), caption="../report/tsne.rst",
                          category="Figures")),
        pdf=update(path(P.figure, **W, figure="tsne", ext="pdf")),
    params:
        labels=variant_labels,
        title=lambda wc: bench(wc).get("description", wc.bench),
        watermark=config["watermark"],
        random_state=fig("tsne", "random_state"),
        perplexity=fig("tsne", "perplexity"),
        max_iter=fig("tsne", "max_iter"),
    log:
        log_file("tsne", P.figure, "figure", "ext"),
    benchmark:
        benchmark_file("tsne", P.figure, "figure", "ext")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/fig_tsne.py"


rule auroc_bars:
    input:
        unpack(bars_inputs),
    output:
        png=update(report(path(P.figure, **W, figure="auroc_bars", ext="png"), caption="../report/auroc_bars.rst",
                          category="Figures")),
        pdf=update(path(P.figure, **W, figure="auroc_bars", ext="pdf")),
        csv=update(path(P.figure, **W, figure="auroc_bars", ext="csv")),
    params:
        methods=lambda wc: {v: [variant(bench(wc), v)["label"], variant(bench(wc), v)["scorer"]]
                            for v in variant_names(bench(wc))},
        roles={r: config["tables"][r] for r in ("baseline", "control", "ours")},
        ood_sets=ood_sets,
        paper_table=lambda wc: bars_paper_table(wc.bench),
        title=lambda wc: bench(wc).get("description", wc.bench),
        watermark=config["watermark"],
    log:
        log_file("auroc_bars", P.figure, "figure", "ext"),
    benchmark:
        benchmark_file("auroc_bars", P.figure, "figure", "ext")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/fig_auroc_bars.py"


rule heatmaps:
    input:
        unpack(lambda wc: {"features": [path(P.features, wc, seed=seeds(wc)[0], variant=v)
                                        for v in heatmap_variants(wc)],
                           **{s: path(P.split, wc, split=s) for s in ["test", *ood_sets(wc)]}}),
    output:
        png=update(report(path(P.figure, **W, figure="heatmaps", ext="png"), caption="../report/heatmaps.rst",
                          category="Figures")),
        pdf=update(path(P.figure, **W, figure="heatmaps", ext="pdf")),
    params:
        variants=heatmap_variants,
        splits=lambda wc: ["test", *ood_sets(wc)],
        labels=variant_labels,
        n_id=fig("heatmaps", "n_id"),
        per_ood=fig("heatmaps", "per_ood"),
        seed=fig("heatmaps", "seed"),
        title=lambda wc: bench(wc).get("description", wc.bench),
        watermark=config["watermark"],
    log:
        log_file("heatmaps", P.figure, "figure", "ext"),
    benchmark:
        benchmark_file("heatmaps", P.figure, "figure", "ext")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/fig_heatmaps.py"


# Every method against the CE control (lffood.report.compare): paired differences of AUROC and FPR95
# per OOD set and on average, with intervals over seeds and test images and the win / tie / loss rule
# (lffood.stats, docs/statistics.md). Reads the score files (the bootstrap resamples test images);
# `lffood results` reads its CSV for the README. Its inputs: compare_files (common.smk).
rule compare:
    input:
        lambda wc: [path(P.scores, wc, variant=v, scorer=sc, seed=s) for v, sc, s in compare_files(wc)],
    output:
        csv=update(path(P.compare, **W, ext="csv")),
        md=update(path(P.compare, **W, ext="md")),
    params:
        files=compare_files,  # [variant, scorer, seed] of each input, in order
        comparisons=lambda wc: [list(c) for c in compare_report.comparisons(bench(wc), config["tables"]["control"])],
        control=config["tables"]["control"],
        seeds=seeds,
        ood_sets=ood_sets,
        stats=config["stats"],
        title=lambda wc: f"{wc.bench}: every method − {variant(bench(wc), config['tables']['control'])['label']}",
        watermark=config["watermark"],
    log:
        log_file("compare", P.compare, "ext"),
    benchmark:
        benchmark_file("compare", P.compare, "ext")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/compare.py"
