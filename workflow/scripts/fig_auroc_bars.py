"""Rule auroc_bars: AUROC of every method with its own scorer, per OOD set and on average (paper Fig. 3)."""
from lffood.report.figures import write_auroc_bars
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    p = smk.params
    write_auroc_bars(list(smk.input), {v: tuple(m) for v, m in p.methods.items()}, roles=p.roles,
                     png=smk.output.png, pdf=smk.output.pdf, csv=smk.output.csv, title=p.title, ood_order=p.ood_sets,
                     watermark=p.watermark)


run_rule(smk, main)
