"""Rule table: mean and standard deviation over seeds, per OOD set and on average."""
from lffood.report.html import write_html_from_markdown
from lffood.report.tables import write_tables
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    write_tables(list(smk.input), csv=smk.output.csv, md=smk.output.md, tex=smk.output.tex, tidy=smk.output.tidy,
                 title=smk.params.title, labels=smk.params.labels, ood_order=smk.params.ood_sets,
                 watermark=smk.params.watermark)
    write_html_from_markdown(smk.output.md, smk.output.html)  # rendered inline by snakemake --report


run_rule(smk, main)
