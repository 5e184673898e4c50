"""Rule fit_stats_network: one scorer's ID statistics that need the network (FeatureNorm's block selection)."""
from lffood import pipeline
from lffood.runtime import bench_setting, run_rule

smk = snakemake  # noqa: F821


def main():
    pipeline.run_fit_stats_network(smk.wildcards.scorer, smk.params.fit_params, checkpoint=smk.input.ckpt,
                                   split_paths={"train": smk.input.train}, out=smk.output[0],
                                   batch_size=bench_setting(smk, "scorers", "network", "batch_size"), device_name=smk.config["device"],
                                   threads=smk.threads)


run_rule(smk, main)
