"""Rules prepare_cifar, prepare_imagenet100, prepare_ood: preprocess one paper benchmark's splits."""
from lffood.data import preprocess, sources
from lffood.runtime import run_rule


def main():
    smk = snakemake  # noqa: F821
    ds = smk.params.dataset
    if smk.rule == "prepare_cifar":
        archive = sources.archive_path(smk.config, sources.ID_ARCHIVE[ds["source"]])
        preprocess.prepare_cifar(ds, archive, {"train": smk.output.train, "test": smk.output.test})
    elif smk.rule == "prepare_imagenet100":
        preprocess.prepare_imagenet(ds, smk.wildcards.split, smk.output.npz, smk.output.files, threads=smk.threads)
    else:
        split = smk.wildcards.split
        archive = sources.archive_path(smk.config, sources.ood_archive(ds["source"], split))
        preprocess.prepare_ood(ds, split, archive, smk.output.npz, smk.output.files, threads=smk.threads)


run_rule(snakemake, main)  # noqa: F821
