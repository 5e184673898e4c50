"""Rule figures: feature-norm distributions (paper Fig. 5) and background-selection norms, PNG and PDF."""
from lffood.report.figures import render_figures
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    p = smk.params
    n = len(p.seeds)
    by_variant = lambda files: {v: list(files[i * n:(i + 1) * n]) for i, v in enumerate(p.labels)}  # noqa: E731
    render_figures(by_variant(smk.input.features), by_variant(smk.input.monitors), delta=p.delta, title=p.title,
                   norms_png=smk.output.norms, local_png=smk.output.local, labels=p.labels, ood_order=p.ood_sets,
                   compare=p.compare, norms_pdf=smk.output.norms_pdf, local_pdf=smk.output.local_pdf,
                   watermark=p.watermark)


run_rule(smk, main)
