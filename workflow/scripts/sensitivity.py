"""Rule sensitivity: AUROC against each swept parameter, CE control and (where configured) the paper's
printed baseline as references (paper Fig. 6)."""
from lffood.report.sensitivity import write_sensitivity
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    p = smk.params
    write_sensitivity(list(smk.input), p.points, reference=p.reference, reference_scorer=p.reference_scorer,
                      labels=p.labels, title=p.title, paper_reference=p.paper_reference,
                      csv=smk.output.csv, png=smk.output.png, pdf=smk.output.pdf, watermark=p.watermark)


run_rule(smk, main)
