"""Names shared by the workflow and the library, in a module with no heavy imports: the Snakefile
imports it at parse time (every snakemake call, every cluster job), so it must not pull in torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: The paper's printed Tables I-IV (lffood.report.paper_numbers; an input of the paper-table rules):
#: package data (lffood.resources).
from .resources import PAPER_NUMBERS  # noqa: F401

#: ID splits every benchmark has.
ID_SPLITS = ("train", "test")

#: Values of ``dataset.source``: the offline embedded benchmark and the paper's ID datasets.
SOURCES = ("embedded", "cifar10", "cifar100", "imagenet100")

#: How an OOD set becomes a split (``OODSet.preprocess``): ``generated`` by the embedded generator with
#: the ID splits (:mod:`lffood.data.embedded`, rule prepare_embedded); ``resize_crop``: read from its
#: archive, the seeded subset ``dataset.ood_max_images``, then the test transform Resize(``dataset.ood_resize``)
#: + CenterCrop(``dataset.ood_crop``) (:func:`lffood.data.preprocess.prepare_ood`, rule prepare_ood).
PREPROCESSING = ("generated", "resize_crop")


@dataclass(frozen=True)
class OODSet:
    """One OOD test set of one family of benchmarks: the one entry that says what it is."""

    #: the name in ``dataset.ood_sets``, file names and tables
    name: str
    #: the ``dataset.source`` values whose benchmarks test on it (its family)
    sources: tuple[str, ...]
    #: how its split is made (:data:`PREPROCESSING`)
    preprocess: str
    #: the downloaded archive it is read from (a key of :data:`lffood.data.sources.ARCHIVES`, which says
    #: how the file is read); None for a generated set
    archive: str | None = None
    #: images in the upstream set, before the seeded cap ``dataset.ood_max_images`` (the cost model and
    #: the GPU check's projections: lffood.costs.data_sizes); None for a generated set (its config says)
    images: int | None = None


_EMBEDDED, _CIFAR, _IMAGENET = ("embedded",), ("cifar10", "cifar100"), ("imagenet100",)
#: Every OOD set, each family's in its table order (the paper's columns: Table I/II for CIFAR, Table III
#: for ImageNet-100). Image counts: SVHN test_32x32.mat 26,032; the ODIN release's LSUN-Crop and
#: LSUN-Resize 10,000 each, iSUN 8,925; DTD r1.0.1 5,640, used whole; Places365 test_256 328,500; the
#: MOS subsets iNaturalist, SUN and Places 10,000 each. Textures (DTD) is a set of both paper families: one entry each, as each table has
#: its own column; the embedded ``textures`` is another set of the same name.
OOD_SETS: tuple[OODSet, ...] = (
    OODSet("backgrounds", _EMBEDDED, "generated"),
    OODSet("novel_digits", _EMBEDDED, "generated"),
    OODSet("textures", _EMBEDDED, "generated"),
    OODSet("far", _EMBEDDED, "generated"),
    OODSet("svhn", _CIFAR, "resize_crop", "svhn", 26_032),
    OODSet("lsun_crop", _CIFAR, "resize_crop", "lsun_crop", 10_000),
    OODSet("lsun_resize", _CIFAR, "resize_crop", "lsun_resize", 10_000),
    OODSet("isun", _CIFAR, "resize_crop", "isun", 8_925),
    OODSet("textures", _CIFAR, "resize_crop", "dtd", 5_640),
    OODSet("places365", _CIFAR, "resize_crop", "places365", 328_500),
    OODSet("inaturalist", _IMAGENET, "resize_crop", "inaturalist", 10_000),
    OODSet("sun", _IMAGENET, "resize_crop", "sun", 10_000),
    OODSet("places", _IMAGENET, "resize_crop", "places", 10_000),
    OODSet("textures", _IMAGENET, "resize_crop", "dtd", 5_640),
)

#: The OOD set names that are valid for each ``dataset.source``, in table order.
OOD_SETS_BY_SOURCE = {src: tuple(s.name for s in OOD_SETS if src in s.sources) for src in SOURCES}
#: Splits the embedded generator writes (ID first, then its OOD sets).
EMBEDDED_OOD_SETS = OOD_SETS_BY_SOURCE["embedded"]
EMBEDDED_SPLITS = ID_SPLITS + EMBEDDED_OOD_SETS


def ood_set(source: str, name: str) -> OODSet:
    """The OOD set ``name`` of the benchmarks with ``dataset.source`` ``source``."""
    for s in OOD_SETS:
        if s.name == name and source in s.sources:
            return s
    raise KeyError(f"unknown OOD set {name!r} for dataset source {source!r}; "
                   f"known: {list(OOD_SETS_BY_SOURCE.get(source, ()))}")


def split_names(bench: Mapping) -> list[str]:
    """All splits of a benchmark: ID train and test, then its OOD sets in config order."""
    return list(ID_SPLITS) + list(bench["dataset"]["ood_sets"])
