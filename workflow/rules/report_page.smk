# The results page, results/report/index.html (lffood.report.page): for each benchmark of `run` its
# primary table, the verdicts against the CE control, every figure with its caption under it, the
# further tables; then the paper tables the run builds. One self-contained file; `snakemake all`
# builds it, and `snakemake --report` shows it under "Results".
#
# Captions: the caption files of workflow/report, rendered here in the Snakemake process as
# `snakemake --report` renders them (Jinja, then docutils: both always installed with Snakemake, not
# in the report environment), and passed to the job as a param, so that editing a caption rewrites
# the page. Helpers: report_page_common.smk.

include: "report_page_common.smk"


rule report_page:
    input:
        page_inputs,
    output:
        update(report(P.report_page, caption="../report/report_page.rst", category="Results")),
    params:
        benches=lambda wc: [page_bench(b) for b in config["run"]],
        paper_tables=lambda wc: page_paper_tables(),
        captions=page_captions,
        title="LFF and the related OOD-detection methods: results",
        intro=("A reproduction of \"Local Background Features Matter in Out-of-Distribution Detection\" "
               "(arXiv 2510.12259), compared under one protocol with SSOD, MODE, LogitNorm and the training "
               "baselines. Every number is the mean over seeds with its 95% interval (seeds and test images; "
               "docs/statistics.md); docs/configuration.md and docs/methods.md give the sources of every "
               "hyperparameter."),
        watermark=config["watermark"],
        repo=workflow.basedir,  # the page names the commit and machine that wrote it
    log:
        f"{LOGS}/report_page/index.log",
    benchmark:
        f"{BENCH}/report_page/index.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_page.py"
