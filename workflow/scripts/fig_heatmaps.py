"""Rule heatmaps: local-vector norms over ID test and OOD images for every model (paper Fig. 7)."""
from lffood.report.figures import write_heatmaps
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    p = smk.params
    write_heatmaps(dict(zip(p.variants, smk.input.features)), {s: smk.input[s] for s in p.splits},
                   png=smk.output.png, pdf=smk.output.pdf, labels=p.labels, n_id=p.n_id, per_ood=p.per_ood,
                   seed=p.seed, title=p.title, watermark=p.watermark)


run_rule(smk, main)
