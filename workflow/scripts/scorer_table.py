"""Rule scorer_table: a benchmark's secondary table, every scorer on every model it applies to."""
from lffood.report.html import write_html_from_markdown
from lffood.report.tables import write_scorer_table
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    write_scorer_table(list(smk.input), csv=smk.output.csv, md=smk.output.md, tex=smk.output.tex,
                       title=smk.params.title, labels=smk.params.labels, ood_order=smk.params.ood_sets,
                       scorers=smk.params.scorers, level=smk.params.level, watermark=smk.params.watermark)
    write_html_from_markdown(smk.output.md, smk.output.html)  # rendered inline by snakemake --report


run_rule(smk, main)
