"""The training-objective registry: one place that maps a name to what a training stage optimises.

Adding an objective is one module here with a class derived from :class:`Objective`, decorated
with :func:`register` (every module of the package is imported below), plus a variant in the config that names it
(docs/extending.md, "Adding a method"). The package imports torch lazily (see ``base``), so the Snakefile can
validate objective parameters at parse time without loading torch.
"""

from __future__ import annotations

from .base import (Forward, Objective, build_objective, objective_class, register,  # noqa: F401
                   registered_objectives, unregister)
from ..plugins import import_all  # noqa: E402

#: every module of the package, so that a new objective is one new file plus config
OBJECTIVE_MODULES = import_all(__name__, __path__)
