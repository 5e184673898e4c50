"""The one registry of feature-file fields: what extraction computes and the feature file stores.

A field (:class:`Field`) declares its name, its stored dtype and shape, which splits have it, a
description, and how it is computed from one batch's forward pass. Extraction
(:func:`lffood.extraction.extract_split`) loops over this registry; the HDF5 schema
(:mod:`lffood.h5schema`) validates feature files against it. Nothing else keeps the list.

* Required fields (``optional=False``) are in every split of a role in ``roles`` (logits, features,
  ..., and ``local_gt_prob`` on ID splits only).
* Optional fields are computed when something asks (a *request*, ``{request name: settings}``):
  the benchmark's ``extraction`` section (``multiscale: true``), a scorer's
  :meth:`~lffood.scorers.base.Scorer.extraction_request` (FeatureNorm's ``block_norms``) or an
  objective's ``provides`` (SSOD's OOD head). A request is named after the field it adds; a field
  may answer another one's request (``request``: FeatureNorm's jigsaw norms come with its block
  norms) and be computed on some roles only (``roles``: the ID training split).

The core fields are registered here; a plug-in registers its own in its module (FeatureNorm's in
``lffood.scorers.featurenorm``, SSOD's in ``lffood.objectives.ssod``), so that the registry is whole
once ``lffood.scorers`` and ``lffood.objectives`` are imported (``lffood.h5schema`` imports them).
Adding a scorer that needs a new field is one module: the field, the scorer that ``requires`` and
requests it, and its name in the config (``tests/unit/test_fields.py``).

A field's ``compute(batch, state)`` returns a tensor with one row per image of the batch
(:class:`Batch`: the model, the images, labels, float32 logits, pooled features, last feature map,
and ``forward`` for another pass under the same mixed precision). ``state`` is what its ``setup``
made of the split (:class:`Split`: model, size, role, the request's settings, the objective): a
context manager entered for the whole split (forward hooks, random keys drawn once per split);
fields with the same ``setup`` share one. Without ``setup``, ``state`` is the :class:`Split`.

This module imports no torch at module level (the Snakefile and :mod:`lffood.variants` read field
names at parse time); compute functions import it through :mod:`lffood.lazy`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .lazy import F
from .local import local_gt_prob, local_norms, multiscale_vectors

ROLES = ("id_train", "id_test", "ood")
ID_ROLES = ("id_train", "id_test")


@dataclass(frozen=True)
class Split:
    """What a field's per-split state is made from: one split's extraction."""

    model: Any
    size: int
    role: str
    #: the settings of the request the field answers (None for a required field)
    settings: Any = None
    #: the model's training objective (its own modules: SSOD's OOD head), or None
    objective: Any = None


@dataclass(frozen=True)
class Batch:
    """One batch's forward pass, as the fields' ``compute`` see it."""

    model: Any
    x: Any
    y: Any
    logits: Any  # float32
    pooled: Any
    fmap: Any
    #: position of the batch's first image in the split
    start: int
    objective: Any
    #: ``forward(x)``: the model on other images, under the extraction's mixed precision
    forward: Callable


@dataclass(frozen=True)
class Field:
    """One feature-file field: ``/splits/<name>/<field>`` of every feature file that has it."""

    name: str
    dtype: type
    #: axis names, the first one the images: ("N", "K") is (N, K)
    shape: tuple[str, ...]
    description: str
    #: ``compute(batch, state)``: a tensor with one row per image of the batch
    compute: Callable[[Batch, Any], Any]
    #: the roles whose splits have it (an optional field: when requested)
    roles: tuple[str, ...] = ROLES
    #: computed on request only (``requires`` of the scorers that read it)
    optional: bool = False
    #: the request it answers (optional fields; default its own name)
    request: str | None = None
    #: ``setup(split)``: a context manager whose value is the per-split ``state`` of ``compute``
    setup: Callable[[Split], Any] | None = None
    #: gzip it (large, incompressible fields are stored without: it would cost seconds for nothing)
    compressed: bool = True

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def requested_by(self) -> str | None:
        """The name of the request that adds it (None: a required field)."""
        return (self.request or self.name) if self.optional else None

    @property
    def required_for(self) -> tuple[str, ...]:
        """The roles whose splits must have it (empty for an optional field)."""
        return () if self.optional else self.roles

    def on(self, role: str, requests: Mapping[str, Any]) -> bool:
        """Whether a split of ``role`` extracted with ``requests`` has this field."""
        return role in self.roles and (not self.optional or self.requested_by in requests)

    @property
    def state_key(self):
        """Fields with the same ``setup`` share one state per split."""
        return self.setup or self.name

    def start(self, split: Split):
        """The per-split state's context manager (the :class:`Split` itself without ``setup``)."""
        return self.setup(split) if self.setup is not None else contextlib.nullcontext(split)


_REGISTRY: dict[str, Field] = {}


def register_field(field: Field) -> Field:
    """Add ``field`` to the registry (at import of the module that defines it)."""
    if field.name in _REGISTRY:
        raise ValueError(f"feature-file field '{field.name}' registered twice")
    bad = set(field.roles) - set(ROLES)
    if bad or not field.roles:
        raise ValueError(f"field '{field.name}': roles {list(field.roles)} must be among {list(ROLES)}")
    if field.request is not None and not field.optional:
        raise ValueError(f"field '{field.name}': only an optional field answers a request")
    if np.dtype(field.dtype).kind not in "biuf" or not field.shape:
        raise ValueError(f"field '{field.name}': a numeric dtype and at least one axis (the images)")
    _REGISTRY[field.name] = field
    return field


def unregister_field(name: str) -> None:
    """Remove a field (tests that register a toy field clean up with this)."""
    _REGISTRY.pop(name, None)


def registered_fields() -> dict[str, Field]:
    """Every registered field, in registration order (the core fields first)."""
    return dict(_REGISTRY)


def field(name: str) -> Field:
    if name not in _REGISTRY:
        raise KeyError(f"unknown feature-file field '{name}'; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def request_names() -> set[str]:
    """The names of the requests some registered field answers."""
    return {f.requested_by for f in _REGISTRY.values() if f.optional}


def requests_in(settings: Mapping[str, Any], provides=()) -> dict[str, Any]:
    """The requests in an extraction job's settings (``extraction`` section or
    :func:`lffood.variants.extraction_params`: the keys that name a request, unless false or null),
    with the fields an objective ``provides`` (settings ``True``)."""
    names = request_names()
    out = {k: v for k, v in settings.items() if k in names and v is not None and v is not False}
    return {**out, **{name: True for name in provides}}


def fields_on(role: str, requests: Mapping[str, Any]) -> list[Field]:
    """The fields a split of ``role`` extracted with ``requests`` has, in registry order."""
    unknown = set(requests) - request_names()
    if unknown:
        raise ValueError(f"no feature-file field answers the request(s) {sorted(unknown)}; "
                         f"requests: {sorted(request_names())}")
    return [f for f in _REGISTRY.values() if f.on(role, requests)]


def every_split_fields(requests) -> set[str]:
    """The optional fields that ``requests`` add to every split (what scorers can ``require``)."""
    return {f.name for f in _REGISTRY.values() if f.optional and f.requested_by in requests and f.roles == ROLES}


def table() -> str:
    """The registered fields, one line each (name, dtype, shape, which splits, description)."""
    lines = []
    for f in _REGISTRY.values():
        which = ("every split" if f.roles == ROLES else " and ".join(f.roles) + " splits") if not f.optional else \
            f"on request '{f.requested_by}'" + ("" if f.roles == ROLES else f", {' and '.join(f.roles)} splits")
        shape = f"({', '.join(f.shape)}{',' if f.ndim == 1 else ''})"
        lines.append(f"{f.name:18s} {np.dtype(f.dtype).name:7s} {shape:9s} {which}: {f.description}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the core fields
for _field in (
    Field("logits", np.float32, ("N", "K"), "the classifier's logits", lambda b, _: b.logits),
    Field("features", np.float32, ("N", "C"), "penultimate (global-average-pooled) features",
          lambda b, _: b.pooled.float()),
    Field("labels", np.int64, ("N",), "class index, -1 for OOD", lambda b, _: b.y),
    Field("preds", np.int64, ("N",), "argmax of logits", lambda b, _: b.logits.argmax(1)),
    Field("local_norms", np.float32, ("N", "L"), "L2 norm of each of the L = H*W local vectors of the last map",
          lambda b, _: local_norms(b.fmap)),
    Field("local_gt_prob", np.float32, ("N", "L"), "p_j(y_i | x_i) per location",
          lambda b, _: local_gt_prob(b.fmap, b.model.head.weight, b.model.head.bias, b.y), roles=ID_ROLES),
    # unit vectors: CSD uses only their directions, and float16 overflows past 65504 (a diverged model)
    Field("multiscale", np.float16, ("N", "6", "C"),
          "MODE's region vectors, L2-normalised: 4 quadrant means, global mean, centre mean (config "
          "extraction.multiscale; CSD reads it)",
          lambda b, _: F.normalize(multiscale_vectors(b.fmap), dim=-1).half(), optional=True, compressed=False),
):
    register_field(_field)
del _field
