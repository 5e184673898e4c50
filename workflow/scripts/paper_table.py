"""Rules paper_table and bench_paper_table: one of the paper's Tables I-IV side by side with the paper's
printed numbers, or that table's shape for one benchmark without them (secondary tables: the paper's
layouts; a benchmark's primary table is rule table's)."""
from lffood.report.html import write_html_from_markdown
from lffood.report.paper_tables import write_paper_table
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    files = {b: list(smk.input[b]) for b in smk.params.ood_sets} if smk.rule == "paper_table" else \
        {smk.wildcards.bench: list(smk.input)}
    write_paper_table(smk.wildcards.get("table", smk.wildcards.get("shape")), files, smk.params.ood_sets,
                      csv=smk.output.csv, md=smk.output.md, tex=smk.output.tex, methods=smk.params.methods,
                      roles=smk.params.roles, title=smk.params.title,
                      paper_path=smk.input.paper if smk.rule == "paper_table" else None, watermark=smk.params.watermark,
                      level=smk.params.level)
    write_html_from_markdown(smk.output.md, smk.output.html)  # rendered inline by snakemake --report


run_rule(smk, main)
