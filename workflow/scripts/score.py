"""Rule score: one cached-feature scorer on one feature file (HDF5 and fitted statistics, never the network)."""
from lffood import pipeline
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    pipeline.run_scoring(smk.input.features, smk.wildcards.scorer, smk.params.scorer_params, smk.output[0],
                         stats_path=smk.input.get("stats"))


run_rule(smk, main)
