"""Rule compare: every method against the CE control, paired intervals and verdicts (lffood.report.compare)."""
from lffood.report.compare import Comparison, write_comparison
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    p = smk.params
    files = {(v, sc, int(s)): f for (v, sc, s), f in zip(p.files, smk.input)}
    write_comparison(files, [Comparison(*c) for c in p.comparisons], csv=smk.output.csv, md=smk.output.md,
                     control=p.control, seeds=p.seeds, ood_sets=p.ood_sets, title=p.title,
                     n_boot=p.stats["bootstrap"], seed=p.stats["seed"], level=p.stats["level"], watermark=p.watermark)


run_rule(smk, main)
