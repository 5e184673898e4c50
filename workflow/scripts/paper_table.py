"""Rule paper_table: one of the paper's Tables I-IV from the metrics of its benchmarks."""
from lffood.report.paper_tables import write_paper_table
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    files = {b: list(smk.input[b]) for b in smk.params.ood_sets}
    write_paper_table(smk.wildcards.table, files, smk.params.ood_sets, csv=smk.output.csv, md=smk.output.md,
                      methods=smk.params.methods, roles=smk.params.roles)


run_rule(smk, main)
