"""Rule score: one cached-feature scorer on one feature file (HDF5 and fitted statistics, never the network).

The k-NN scorers (KNN, CSD: ``uses_train_bank``) search the ID bank with torch on the job's threads,
and on a GPU only where the rule gives the job one (``resources: gpu``) and the config's ``device``
allows it: a CPU job never takes a GPU that the scheduler did not count."""
from lffood import pipeline
from lffood.runtime import run_rule
from lffood.scorers import scorer_class

smk = snakemake  # noqa: F821


def main():
    if scorer_class(smk.wildcards.scorer).uses_train_bank:
        from lffood.scorers import knn_search

        knn_search.configure(device=smk.config["device"] if smk.resources.get("gpu", 0) else "cpu",
                             threads=smk.threads)
    pipeline.run_scoring(smk.input.features, smk.wildcards.scorer, smk.params.scorer_params, smk.output[0],
                         stats_path=smk.input.get("stats"))


run_rule(smk, main)
