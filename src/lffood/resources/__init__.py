"""The files the library ships with it (package data, declared in pyproject.toml), found through
:mod:`importlib.resources`, so that an installed copy of lffood has them without this repository:

* ``paper/lff_tables.csv``: the paper's printed Tables I-IV (:mod:`lffood.report.paper_numbers`;
  ``paper/README.md`` documents the transcription);
* ``imagenet100/class_list_{I,II}.txt``: the ImageNet-100 class lists (``dataset.class_list``;
  ``imagenet100/README.md`` gives their provenance);
* ``config.schema.yaml``: the workflow's config schema (:func:`lffood.config.validate_config`, the
  Snakefile, ``lffood check-config``).

Torch-free: the Snakefile imports it at parse time. lffood is installed as files (never zipped), so
each resource is a :class:`pathlib.Path`: Snakemake takes them as rule inputs.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

#: This package's folder.
ROOT = Path(os.fspath(files("lffood") / "resources"))
#: The paper's printed Tables I-IV.
PAPER_NUMBERS = ROOT / "paper" / "lff_tables.csv"
#: The folder of the ImageNet-100 class lists ``class_list_<name>.txt``.
CLASS_LIST_DIR = ROOT / "imagenet100"
#: The config schema (JSON Schema 2020-12 in YAML).
CONFIG_SCHEMA = ROOT / "config.schema.yaml"
