"""Rule score: one scorer on one feature file (reads HDF5 only, never the network)."""
from lffood import pipeline
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    pipeline.run_scoring(smk.input.features, smk.wildcards.scorer, smk.params.scorer_params, smk.output[0])


run_rule(smk, main)
