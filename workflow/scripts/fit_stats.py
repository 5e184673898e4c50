"""Rule fit_stats: one scorer's ID statistics from the cached ID training features."""
from lffood import pipeline
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    pipeline.run_fit_stats(smk.input.features, smk.wildcards.scorer, smk.params.fit_params, smk.output[0])


run_rule(smk, main)
