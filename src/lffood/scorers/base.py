"""The one scorer registry and the :class:`Scorer` interface.

A scorer has

* ``defaults``: its hyperparameters and their reference values (config key
  ``benchmarks.<b>.scorers.params.<name>`` overrides them), and ``params_spec``: the domain of each
  (:class:`lffood.checks.Param`); ``check(params, facts)``, the one hook the config check calls at
  workflow start, checks them against those domains and against the benchmark's data and model;
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

from ..checks import Facts, Issue, Param, spec_issues
from ..fields import registered_fields, request_names

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
    #: how tables print the scorer (the paper's spelling, Table I)
    label: ClassVar[str] = ""
    #: its place in every scorer list and table (:func:`scorer_names`): the paper's post-hoc scorers in
    #: Table I's order, the others where the project shows them (KNN after ViM; CSD, SSOD last); None:
    #: after those, in registration order
    order: ClassVar[int | None] = None
    #: one of the paper's post-hoc rows (Tables I-IV print it as ``label``)
    in_paper: ClassVar[bool] = False
    defaults: ClassVar[dict] = {}
    needs_fit: ClassVar[bool] = False
    #: parameters the fitted statistics depend on (the statistics rule's params)
    fit_keys: ClassVar[tuple[str, ...]] = ()
    score_on: ClassVar[str] = "features"
    #: the domain of every parameter in ``defaults`` (:class:`lffood.checks.Param`: int/float/choice,
    #: bounds, null allowed), checked by :meth:`check` at workflow start and when a scorer is built;
    #: ``lffood scorers`` prints them
    params_spec: ClassVar[dict[str, Param]] = {}
    #: scoring compares with the ID training features themselves (KNN, CSD); read from the feature file
    uses_train_bank: ClassVar[bool] = False
    #: optional feature-file fields it reads (lffood.fields): only models whose
    #: feature file has them are scored with it (SSOD's OOD head outputs: SSOD models only)
    requires: ClassVar[tuple[str, ...]] = ()
    #: the training objectives whose models it scores (a method's own inference score that means
    #: nothing on other models, e.g. SSD+'s); None: every model with the fields it ``requires``
    objectives: ClassVar[tuple[str, ...] | None] = None
    #: what fitting reads of the ID training split beyond ``requires`` (None: ``requires``)
    fit_requires: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"scorer '{self.name}': unknown parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}
        problems = self.check(self.params)
        if problems:
            raise ValueError(f"scorer '{self.name}': "
                             + "; ".join(f"parameter '{i.key}': {i.message}" for i in problems))
        self.head: Head | None = None
        self.stats: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ parameters
    @classmethod
    def check(cls, params: Mapping, facts: Facts | None = None) -> list[Issue]:
        """The one check of this scorer's fully resolved ``params``: each against its domain
        (``params_spec``), then, where ``facts`` (:class:`lffood.checks.Facts`: the benchmark's data
        and model as its config determines them) are given, against the data and the model (a
        subclass extends this: k against the bank, a dimension against the features, a block
        against the model). The config check calls it for every scorer that runs, at workflow start;
        building a scorer calls it without facts. Empty when valid."""
        return spec_issues(cls.params_spec, params)

    @property
    def fit_params(self) -> dict:
        return {k: self.params[k] for k in self.fit_keys}

    @classmethod
    def fit_fields(cls) -> tuple[str, ...]:
        """The optional feature-file fields fitting reads of the ID training split."""
        return cls.requires if cls.fit_requires is None else cls.fit_requires

    @classmethod
    def extraction_request(cls, params: Mapping) -> dict:
        """What extraction must compute for this scorer, ``{request: settings}`` (resolved ``params``; a
        request is named after the optional field it adds, :mod:`lffood.fields`): part of the
        extraction job's identity, so a change re-extracts. Empty for most scorers."""
        return {}

    #: the registered scorer whose cost model this one shares (the same search or fit with other
    #: parameters: a method's own KNN, SSD+'s Mahalanobis), or None: its own name
    cost_as: ClassVar[str | None] = None

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


def register(name: str, label: str | None = None, *, order: int | None = None, in_paper: bool = False):
    """Class decorator: scorer ``name``, printed as ``label`` (the paper's spelling), at place ``order``
    of every scorer list and table (:attr:`Scorer.order`); ``in_paper``: one of the paper's post-hoc rows."""
    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"scorer '{name}' registered twice")
        same = [n for n, c in _REGISTRY.items() if order is not None and c.order == order]
        if same:
            raise ValueError(f"scorer '{name}': order {order} is taken by scorer '{same[0]}'")
        if cls.score_on not in MODES:
            raise ValueError(f"scorer '{name}': score_on must be in {MODES}")
        unknown = set(cls.fit_keys) - set(cls.defaults)
        if unknown:
            raise ValueError(f"scorer '{name}': fit_keys {sorted(unknown)} are not parameters")
        if set(cls.params_spec) != set(cls.defaults):
            raise ValueError(f"scorer '{name}': params_spec must declare the domain of every parameter in "
                             f"defaults, and only those (defaults {sorted(cls.defaults)}, params_spec "
                             f"{sorted(cls.params_spec)})")
        bad = {k: msg for k, p in cls.params_spec.items() if (msg := p.problem(cls.defaults[k])) is not None}
        if bad:
            raise ValueError(f"scorer '{name}': defaults outside their params_spec: {bad}")
        unknown = ({*cls.requires, *cls.fit_fields()} - set(registered_fields())) | \
            (set(cls.extraction_request(cls.defaults)) - request_names())
        if unknown:
            raise ValueError(f"scorer '{name}': reads or requests {sorted(unknown)}, which no registered feature-file "
                             f"field is (lffood.fields.register_field)")
        cls.name = name
        cls.label = label or cls.label or name
        cls.order, cls.in_paper = order, in_paper
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_scorers() -> dict[str, type[Scorer]]:
    return dict(_REGISTRY)


def scorer_names() -> list[str]:
    """Every registered scorer in table order (:attr:`Scorer.order`): what a benchmark runs when its
    ``scorers.names`` is null (each model: those that apply to it), and the order of the tables."""
    ordered = sorted((c.order, n) for n, c in _REGISTRY.items() if c.order is not None)
    return [n for _, n in ordered] + [n for n, c in _REGISTRY.items() if c.order is None]


def paper_scorers() -> list[str]:
    """The paper's post-hoc scorers (:attr:`Scorer.in_paper`) in Table I's order."""
    return [n for n in scorer_names() if _REGISTRY[n].in_paper]


def scorer_class(name: str) -> type[Scorer]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown scorer '{name}'; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def scorer_applies(name: str, provides, objective: str | None = None) -> bool:
    """Whether scorer ``name`` runs on a model whose feature file has the optional fields ``provides``,
    trained with ``objective`` (checked against :attr:`Scorer.objectives` where given)."""
    cls = scorer_class(name)
    return set(cls.requires) <= set(provides) and (cls.objectives is None or objective is None
                                                   or objective in cls.objectives)


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
    return [f"parameter '{i.key}': {i.message}" for i in cls.check({**cls.defaults, **params})]
