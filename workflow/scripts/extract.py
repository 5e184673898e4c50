"""Rule extract: run a checkpoint over every split and write the HDF5 feature file."""
from lffood import pipeline
from lffood.runtime import bench_setting, run_rule

smk = snakemake  # noqa: F821


def main():
    wc = smk.wildcards
    p = dict(smk.params.extraction)
    pipeline.run_extraction(
        p, amp=p.pop("amp"), batch_size=bench_setting(smk, "extraction", "batch_size"),
        checkpoint=smk.input.ckpt, split_paths={s: smk.input[s] for s in smk.params.splits}, out=smk.output[0],
        attrs={"benchmark": wc.bench, "variant": wc.variant, "seed": int(wc.seed)},
        device_name=smk.config["device"], threads=smk.threads)


run_rule(smk, main)
