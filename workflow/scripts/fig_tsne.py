"""Rule tsne: t-SNE of ID and OOD features and ID background local vectors (paper Fig. 2)."""
from lffood.report.figures import write_tsne
from lffood.runtime import run_rule

smk = snakemake  # noqa: F821


def main():
    p = smk.params
    write_tsne(smk.input[0], png=smk.output.png, pdf=smk.output.pdf, labels=p.labels, title=p.title,
               random_state=p.random_state, perplexity=p.perplexity, n_jobs=smk.threads,
               max_iter=p.max_iter, watermark=p.watermark)


run_rule(smk, main)
