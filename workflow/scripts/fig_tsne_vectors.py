"""Rule tsne_vectors: pooled ID and OOD features and ID background local vectors of a seeded
subsample, from each compared checkpoint (paper Fig. 2's data; needs the network)."""
from lffood.report.figure_data import write_tsne_vectors
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    p, i, wc = smk.params, smk.input, smk.wildcards
    write_tsne_vectors(dict(zip(p.variants, i.ckpts)), train=i.train, test=i.test, ood=i.ood, ood_set=p.ood_set,
                       out=smk.output[0], per_group=p.per_group, delta=p.delta, seed=p.seed,
                       device_name=smk.config["device"], threads=smk.threads, batch_size=p.batch_size,
                       center_crop=p.center_crop, attrs={"benchmark": wc.bench})


run_rule(smk, main)
