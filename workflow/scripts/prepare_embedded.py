"""Rule prepare_embedded: generate the embedded benchmark's splits."""
from pathlib import Path

from lffood import pipeline
from lffood.runtime import run_rule


def main():
    outputs = {Path(p).stem: p for p in snakemake.output}  # noqa: F821
    pipeline.prepare_embedded({"dataset": snakemake.params.dataset}, outputs)  # noqa: F821


run_rule(snakemake, main)  # noqa: F821
