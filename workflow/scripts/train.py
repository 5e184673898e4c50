"""Rules pretrain and finetune: CE pretraining, LFF or CE-control fine-tuning."""
from lffood import pipeline
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    pipeline.run_training(
        smk.params.train, variant=smk.params.variant, seed=int(smk.wildcards.seed), train_path=smk.input.train,
        ckpt_out=smk.output.ckpt, history_out=smk.output.history, device_name=smk.params.device,
        threads=smk.threads, parent_ckpt=smk.input.get("parent"))


run_rule(smk, main)
