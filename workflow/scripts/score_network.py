"""Rule score_network: one scorer that runs the network (ODIN) on every non-training split."""
from lffood import pipeline
from lffood.runtime import bench_setting, run_rule

smk = snakemake  # noqa: F821


def main():
    pipeline.run_scoring_network(smk.wildcards.scorer, smk.params.scorer_params, checkpoint=smk.input.ckpt,
                                 split_paths={s: smk.input[s] for s in smk.params.splits}, out=smk.output[0],
                                 stats_path=smk.input.get("stats"),
                                 batch_size=bench_setting(smk, "scorers", "network", "batch_size"),
                                 device_name=smk.config["device"], threads=smk.threads)


run_rule(smk, main)
