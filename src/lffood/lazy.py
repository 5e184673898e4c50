"""torch, imported on first use.

The Snakefile imports the objective and scorer registries at parse time, on every snakemake call
and in every cluster job; importing torch there would add seconds to each. Modules whose classes
must be registered at parse time (``lffood.objectives``, ``lffood.local``) therefore refer to torch
through these stand-ins, which import it when an attribute is first used::

    from ..lazy import F, nn, torch
"""

from __future__ import annotations

import importlib


class LazyModule:
    """A module imported on first attribute access."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")
nn = LazyModule("torch.nn")
