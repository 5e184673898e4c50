"""Import every module of a plug-in package (the scorer and objective registries), so that adding a
plug-in is one new file: its ``@register`` runs when the package is imported."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable


def import_all(package: str, path: Iterable[str]) -> list[str]:
    """Import the modules of ``package`` (its ``__path__``) in name order, private ones (``_x``)
    excepted; return their names."""
    names = sorted(m.name for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
