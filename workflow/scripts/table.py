"""Rule table: a benchmark's primary table, every method with its own scorer (lffood.report.tables)."""
from lffood.report.html import write_html_from_markdown
from lffood.report.tables import write_tables
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    write_tables(list(smk.input), csv=smk.output.csv, md=smk.output.md, tex=smk.output.tex, tidy=smk.output.tidy,
                 title=smk.params.title, labels=smk.params.labels, scorers=smk.params.scorers,
                 ood_order=smk.params.ood_sets, level=smk.params.level, watermark=smk.params.watermark)
    write_html_from_markdown(smk.output.md, smk.output.html)  # rendered inline by snakemake --report


run_rule(smk, main)
