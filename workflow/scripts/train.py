"""Rule train: one variant (CE pretraining, the CE control, LFF, LogitNorm, SSOD, MODE, sweep points)."""
from lffood import ddp, pipeline
from lffood.data.sources import init_weights_path
from lffood.runtime import bench_setting, run_rule

smk = snakemake  # noqa: F821


def main():
    wc = smk.wildcards
    kwargs = dict(spec=smk.params.spec, variant=wc.variant, seed=int(wc.seed), train_path=smk.input.train,
                  ckpt_out=smk.output.ckpt, history_out=smk.output.history,
                  monitor_out=smk.output.monitor, device_name=smk.config["device"],
                  threads=smk.threads, parent_ckpt=smk.input.get("parent"),
                  init_weights=init_weights_path(smk.config, smk.params.spec["model"], smk.params.spec.get("init")), job=f"{wc.bench} seed {wc.seed} {wc.variant}",
                  compile=bench_setting(smk, "compile"))
    gpus = bench_setting(smk, "compute", "train_gpus")
    if gpus > 1:  # one process per GPU of this node (DDP, started by torchrun)
        ddp.launch(kwargs, nproc=gpus)
    else:
        pipeline.run_training(**kwargs)


run_rule(smk, main)
