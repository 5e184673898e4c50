"""The one scorer registry and the :class:`Scorer` interface.

A scorer has

* ``defaults``: its hyperparameters and their reference values (config key
  ``benchmarks.<b>.scorers.params.<name>`` overrides them);
* ``needs_fit`` / ``fit_keys``: whether it uses ID statistics fitted once on the ID training split,
  and which of its parameters those statistics depend on (so that changing any other parameter
  reruns scoring only, never the fit);
* ``score_on``: ``"features"`` (cached HDF5 features and logits) or ``"network"`` (the checkpoint
  must be loaded: ODIN's input perturbation). Statistics are always fitted from cached features;
  what a scorer needs of the network beyond logits and features it asks extraction for
  (``extraction_request``: FeatureNorm's block norms), so that it scores from the cache too;
* ``stats``: the fitted ID statistics, a flat ``{name: array}`` dict that
  :func:`lffood.h5schema.write_stats` stores as the scorer's statistics artifact.

Higher score = more in-distribution, for every scorer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

_REGISTRY: dict[str, type["Scorer"]] = {}
MODES = ("features", "network")


@dataclass
class FeatureSet:
    """What a scorer sees of one split: logits (N, K), penultimate features (N, C), and the extra
    feature-file fields it ``requires`` (e.g. ``multiscale`` (N, 6, C), ``ood_head_global`` (N,))."""

    logits: np.ndarray
    features: np.ndarray
    labels: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Head:
    """The linear classifier ``logits = features @ weight.T + bias``."""

    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T.astype(np.float64) + self.bias.astype(np.float64)


class Scorer:
    name: ClassVar[str] = ""
    #: how tables print the scorer (paper spelling)
    label: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}
    needs_fit: ClassVar[bool] = False
    #: parameters the fitted statistics depend on (the statistics rule's params)
    fit_keys: ClassVar[tuple[str, ...]] = ()
    score_on: ClassVar[str] = "features"
    #: config parameters that are percentiles (checked to lie in [0, 100])
    percentile_keys: ClassVar[tuple[str, ...]] = ()
    #: config parameters that must be positive integers (neighbour counts, chunk sizes)
    positive_int_keys: ClassVar[tuple[str, ...]] = ()
    #: scoring compares with the ID training features themselves (KNN, CSD); read from the feature file
    uses_train_bank: ClassVar[bool] = False
    #: optional feature-file fields it reads (lffood.h5schema.OPTIONAL_FIELDS): only models whose
    #: feature file has them are scored with it (SSOD's OOD head outputs: SSOD models only)
    requires: ClassVar[tuple[str, ...]] = ()
    #: what fitting reads of the ID training split beyond ``requires`` (None: ``requires``)
    fit_requires: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"scorer '{self.name}': unknown parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}
        problems = self.check_params(self.params)
        if problems:
            raise ValueError(f"scorer '{self.name}': " + "; ".join(problems))
        self.head: Head | None = None
        self.stats: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ parameters
    @classmethod
    def check_params(cls, params: Mapping) -> list[str]:
        """Problems with fully resolved ``params`` (empty when valid). Subclasses extend this."""
        problems = []
        for key in cls.percentile_keys:
            v = params.get(key)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 100):
                problems.append(f"parameter '{key}' must be a number in [0, 100], got {v!r}")
        for key in cls.positive_int_keys:
            v = params.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                problems.append(f"parameter '{key}' must be a positive integer, got {v!r}")
        return problems

    @property
    def fit_params(self) -> dict:
        return {k: self.params[k] for k in self.fit_keys}

    @classmethod
    def fit_fields(cls) -> tuple[str, ...]:
        """The optional feature-file fields fitting reads of the ID training split."""
        return cls.requires if cls.fit_requires is None else cls.fit_requires

    @classmethod
    def extraction_request(cls, params: Mapping) -> dict:
        """What extraction must compute for this scorer, ``{field: settings}`` (resolved ``params``):
        part of the extraction job's identity, so a change re-extracts. Empty for most scorers."""
        return {}

    @classmethod
    def cost_estimate(cls, params: Mapping, sizes, stage: str):
        """This scorer's own cost (:class:`lffood.costs.Cost`) with resolved ``params`` on data of
        ``sizes`` (:class:`lffood.costs.Sizes`) for ``stage`` ``"fit"`` or ``"score"``, or None: the
        cost model of :func:`lffood.costs.scorer_cost` (k-NN search, statistics fits, head products)."""
        return None

    # ------------------------------------------------------------------ fitting
    def fit(self, train: FeatureSet | None, head: Head) -> "Scorer":
        """Fit the ID statistics from the ID training split's cached features."""
        self.head = head
        if self.needs_fit:
            self.stats = {k: np.asarray(v) for k, v in self.compute_stats(train, head).items()}
        return self

    def compute_stats(self, train: FeatureSet, head: Head) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def load(self, head: Head, stats: Mapping[str, np.ndarray] | None = None) -> "Scorer":
        """Set the head and previously fitted statistics (read from the statistics artifact)."""
        self.head = head
        if self.needs_fit:
            if not stats:
                raise ValueError(f"scorer '{self.name}' needs its fitted ID statistics")
            self.stats = {k: np.asarray(v) for k, v in stats.items()}
        return self

    # ------------------------------------------------------------------ scoring
    def score(self, data: FeatureSet) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def register(name: str, label: str | None = None):
    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"scorer '{name}' registered twice")
        if cls.score_on not in MODES:
            raise ValueError(f"scorer '{name}': score_on must be in {MODES}")
        unknown = set(cls.fit_keys) - set(cls.defaults)
        if unknown:
            raise ValueError(f"scorer '{name}': fit_keys {sorted(unknown)} are not parameters")
        cls.name = name
        cls.label = label or cls.label or name
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_scorers() -> dict[str, type[Scorer]]:
    return dict(_REGISTRY)


def scorer_class(name: str) -> type[Scorer]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown scorer '{name}'; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def scorer_applies(name: str, provides) -> bool:
    """Whether scorer ``name`` runs on a model whose feature file has the optional fields ``provides``."""
    return set(scorer_class(name).requires) <= set(provides)


def build_scorer(name: str, params: Mapping | None = None) -> Scorer:
    return scorer_class(name)(**dict(params or {}))


def resolved_params(name: str, params: Mapping | None = None) -> dict:
    """All parameters of scorer ``name`` with defaults filled in (validated)."""
    return build_scorer(name, params).params


def fit_params(name: str, params: Mapping | None = None) -> dict:
    """The parameters the statistics of ``name`` depend on (the statistics rule's params)."""
    return build_scorer(name, params).fit_params


def param_problems(name: str, params: Mapping | None) -> list[str]:
    """Problems with a config's ``params`` for scorer ``name``: unknown keys, out-of-range values."""
    cls = scorer_class(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(cls.defaults))
    if unknown:
        return [f"unknown parameter(s) {unknown}; known: {sorted(cls.defaults)}"]
    return cls.check_params({**cls.defaults, **params})
