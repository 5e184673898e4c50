"""Rule auroc_bars: AUROC of every method with its own scorer, per OOD set and on average; for a benchmark
the paper prints, the average AUROC of every method of its table beside the printed value (paper Fig. 3)."""
from lffood.report.figures import write_auroc_bars
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    p = smk.params
    write_auroc_bars(list(smk.input.metrics), {v: tuple(m) for v, m in p.methods.items()}, roles=p.roles,
                     png=smk.output.png, pdf=smk.output.pdf, csv=smk.output.csv, title=p.title, ood_order=p.ood_sets,
                     watermark=p.watermark, paper=smk.input.get("paper"), paper_table=p.paper_table,
                     bench=smk.wildcards.bench)


run_rule(smk, main)
