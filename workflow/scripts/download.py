"""Rule download: fetch (or verify an existing copy of) one archive; write its receipt."""
from lffood.data import download
from lffood.runtime import run_rule


def main():
    download.fetch_archive(snakemake.config, snakemake.wildcards.archive, receipt=snakemake.output[0])  # noqa: F821


run_rule(snakemake, main)  # noqa: F821
