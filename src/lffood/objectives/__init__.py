"""The training-objective registry: one place that maps a name to what a training stage optimises.

Adding an objective is one module here with a class derived from :class:`Objective`, decorated
with :func:`register` and imported below, plus a variant in the config that names it
(README, "Adding a method"). The package imports torch lazily (see ``base``), so the Snakefile can
validate objective parameters at parse time without loading torch.
"""

from __future__ import annotations

from .base import (Forward, Objective, build_objective, objective_class, register,  # noqa: F401
                   registered_objectives, unregister)
from . import ce  # noqa: F401,E402
from . import lff  # noqa: F401,E402
from . import logitnorm  # noqa: F401,E402
from . import ssod  # noqa: F401,E402
from . import alpa  # noqa: F401,E402
