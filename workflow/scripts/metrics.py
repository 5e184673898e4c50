"""Rule metrics: AUROC, FPR95, AUPR-In/Out (with their bootstrap standard errors over test images) and
ID accuracy for every scorer of one model."""
from lffood import pipeline
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    wc = smk.wildcards
    pipeline.run_metrics(smk.input.features, {s: smk.input[s] for s in smk.params.scorers}, smk.output[0],
                         labels={"benchmark": wc.bench, "seed": int(wc.seed), "variant": wc.variant},
                         n_boot=smk.params.bootstrap["bootstrap"], boot_seed=smk.params.bootstrap["seed"])


run_rule(smk, main)
