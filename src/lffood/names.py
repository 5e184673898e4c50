"""Names shared by the workflow and the library, in a module with no heavy imports: the Snakefile
imports it at parse time (every snakemake call, every cluster job), so it must not pull in torch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: The paper's printed Tables I-IV (lffood.report.paper_numbers; an input of the paper-table rules).
PAPER_NUMBERS = Path(__file__).resolve().parents[2] / "resources" / "paper" / "lff_tables.csv"

#: ID splits every benchmark has.
ID_SPLITS = ("train", "test")
#: Splits the embedded generator writes (ID first, then its OOD sets).
EMBEDDED_SPLITS = ("train", "test", "backgrounds", "novel_digits", "textures", "far")
EMBEDDED_OOD_SETS = EMBEDDED_SPLITS[2:]

#: Values of ``dataset.source``: the offline embedded benchmark and the paper's ID datasets.
SOURCES = ("embedded", "cifar10", "cifar100", "imagenet100")
#: OOD sets of the paper's CIFAR benchmarks (Table I/II) and ImageNet-100 benchmark (Table III).
CIFAR_OOD_SETS = ("svhn", "lsun_crop", "lsun_resize", "isun", "textures", "places365")
IMAGENET_OOD_SETS = ("inaturalist", "sun", "places", "textures")
#: The OOD set names that are valid for each ``dataset.source``.
OOD_SETS_BY_SOURCE = {
    "embedded": EMBEDDED_OOD_SETS,
    "cifar10": CIFAR_OOD_SETS,
    "cifar100": CIFAR_OOD_SETS,
    "imagenet100": IMAGENET_OOD_SETS,
}


def split_names(bench: Mapping) -> list[str]:
    """All splits of a benchmark: ID train and test, then its OOD sets in config order."""
    return list(ID_SPLITS) + list(bench["dataset"]["ood_sets"])
