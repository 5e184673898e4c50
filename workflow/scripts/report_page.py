"""Rule report_page: the results page results/report/index.html (lffood.report.page)."""
from lffood.report.page import write_page
from lffood.runtime import provenance, run_rule

smk = snakemake  # noqa: F821


def main():
    p = smk.params
    write_page(smk.output[0], p.benches, paper_tables=p.paper_tables, captions=p.captions, title=p.title,
               intro=p.intro, watermark=p.watermark, provenance=provenance(p.repo, load_torch=False))


run_rule(smk, main)
