"""Rule train: one variant (CE pretraining, the CE control, LFF, LogitNorm, SSOD, MODE, sweep points)."""
from lffood import pipeline
from lffood.runtime import bench_setting, run_rule

smk = snakemake  # noqa: F821


def main():
    pipeline.run_training(
        smk.params.spec, variant=smk.wildcards.variant, seed=int(smk.wildcards.seed), train_path=smk.input.train,
        ckpt_out=smk.output.ckpt, history_out=smk.output.history, device_name=smk.config["device"],
        threads=smk.threads, parent_ckpt=smk.input.get("parent"),
        job=f"{smk.wildcards.bench} seed {smk.wildcards.seed} {smk.wildcards.variant}",
        compile=bench_setting(smk, "compile"))


run_rule(smk, main)
