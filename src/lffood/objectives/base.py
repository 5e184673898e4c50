"""The one registry of training objectives and the :class:`Objective` interface.

An objective is what a training stage optimises: plain cross-entropy, LFF, LogitNorm, SSOD, ALPA
(MODE). The training loop (:func:`lffood.training.train`) is the same for all of them: it draws
batches (two augmented views per image when ``two_views``), runs the model once, and hands the
result to the objective's :meth:`Objective.loss`, which returns the loss and 0-d tensors to sum
over the epoch. The loop owns the optimiser, the learning-rate schedule, mixed precision and the
collapse guard.

An objective declares

* ``params_schema``: its hyperparameters as JSON-Schema properties (type, bounds, default,
  description). They become the config section ``benchmarks.<b>.<name>`` of the one config
  schema (:func:`lffood.config.validate_config` adds them), so values are checked and defaults
  filled in before any job runs; a variant may override them (``variants.<v>.params``). The config
  check calls the objective's one hook, ``check(params, facts)``, with every variant's resolved
  parameters (domains, then the benchmark's data and model: :mod:`lffood.checks`);
* ``build_modules``: trainable modules besides the network (SSOD's OOD head, ALPA's projectors),
  optimised with the network and saved in the checkpoint. They are freshly initialised (not in the
  parent checkpoint): ``new_parameters`` lists them, and an objective that has them declares the
  parameter ``new_module_lr`` (:func:`new_module_lr_schema`), their own learning rate (null: the
  stage's). The loop puts them in a parameter group of their own at that rate, logs how far they
  moved from their initialisation, and its guard stops a run in which they did not learn
  (``not_learned``);
* ``two_views``: whether each image enters the batch twice, with independent augmentations;
* ``loss``: the loss and the per-batch statistic sums it logs (``stats``: name -> description);
* ``epoch_row``: the per-epoch log fields from the pooled sums; ``collapse``: a message when the
  epoch looks like a collapse (the loop stops after ``guard.patience`` such epochs);
  ``collapse_advice``: what to change then (the end of the guard's message);
* ``provides``: feature-file fields its models add at extraction (SSOD's OOD head outputs,
  registered with how to compute them in the objective's module: :mod:`lffood.fields`); scorers
  that read them (``Scorer.requires``) apply to these models only.

This module, like every objective module, imports torch lazily (``lffood.lazy``): the Snakefile
imports the registry at parse time (every snakemake call), which must stay fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..checks import Facts, Issue, strict_validator
from ..lazy import F, nn, torch  # noqa: F401  (re-exported for objective modules)
from ..fields import registered_fields

_REGISTRY: dict[str, type["Objective"]] = {}


def new_module_lr_schema(modules: str) -> dict:
    """The parameter ``new_module_lr`` of an objective with freshly initialised modules (``modules`` names
    them for the description): their learning rate, or null for the stage's."""
    return {"description": f"Learning rate of {modules} (freshly initialised: random weights, while the network "
                           "starts from the parent checkpoint): an optimiser parameter group of their own at this "
                           "rate, scaled by the stage's schedule as the network's rate is. null: the stage's lr, "
                           "like the network. The training log shows how far they moved from their initialisation; "
                           "the collapse guard stops a run in which they did not (guard.min_new_module_change).",
            "type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 10, "default": None}



@dataclass
class Forward:
    """One forward pass of the network over a batch (both views concatenated when ``views == 2``).

    ``logits`` are float32; ``fmap`` is the last map z (N, C, H, W), ``pooled`` = GAP(z);
    ``weight``/``bias`` the linear head (so objectives can apply it to local vectors)."""

    logits: Any
    pooled: Any
    fmap: Any
    weight: Any
    bias: Any
    views: int = 1


class Objective:
    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    params_schema: ClassVar[dict] = {}
    two_views: ClassVar[bool] = False
    provides: ClassVar[tuple[str, ...]] = ()
    #: per-batch sums this objective logs (name -> what it is); pooled on the device over the epoch
    stats: ClassVar[dict[str, str]] = {}
    #: whether the loop's generic guard (train accuracy at chance) applies; an objective that does
    #: not train the classifier (ALPA alone) turns it off and checks its own statistics
    accuracy_guard: ClassVar[bool] = True
    #: the statistic (a key of ``stats``) that is the objective's own loss term: the training log shows its
    #: trend (this epoch over the first) beside how far the freshly initialised modules moved
    own_loss: ClassVar[str | None] = None
    #: train only the linear head and the objective's own modules on a frozen network (kept in eval
    #: mode, so batch-norm statistics stay as the parent left them, and given no gradient): a second,
    #: linear-evaluation stage on top of a representation trained before it (CSI's)
    freeze_backbone: ClassVar[bool] = False

    def __init__(self, params: Mapping | None = None, *, feature_dim: int, num_classes: int):
        self.params = {**self.defaults(), **dict(params or {})}
        unknown = set(self.params) - set(self.params_schema)
        if unknown:
            raise ValueError(f"objective '{self.name}': unknown parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.params_schema)}")
        self.feature_dim, self.num_classes = feature_dim, num_classes
        self.modules = nn.ModuleDict(self.build_modules(feature_dim, num_classes))

    # ------------------------------------------------------------------ declaration
    @classmethod
    def defaults(cls) -> dict:
        return {k: v["default"] for k, v in cls.params_schema.items() if "default" in v}

    @classmethod
    def section_schema(cls) -> dict:
        """The JSON schema of the config section ``benchmarks.<b>.<name>``."""
        return {"type": "object", "additionalProperties": False, "properties": dict(cls.params_schema),
                "default": {}, "description": f"{cls.label}: parameters of the '{cls.name}' objective "
                                               f"(lffood.objectives.{cls.__module__.rsplit('.', 1)[-1]})."}

    @classmethod
    def check(cls, params: Mapping, facts: Facts | None = None) -> list[Issue]:
        """The one check of this objective's resolved ``params`` (its section laid under a variant's
        ``params``): each against its ``params_schema`` (type, integers that are ints, finite numbers,
        bounds), then, where ``facts`` (:class:`lffood.checks.Facts`: the benchmark's data and model
        as its config determines them) are given, against the data and the model (a subclass extends
        this). The config check calls it for every variant that trains with this objective, at
        workflow start. Empty when valid."""
        issues = []
        for key, value in params.items():
            spec = cls.params_schema.get(key)
            if spec is None:
                issues.append(Issue(key, f"unknown parameter of objective '{cls.name}'; known: "
                                         f"{sorted(cls.params_schema)}."))
            elif isinstance(value, float) and not math.isfinite(value):
                issues.append(Issue(key, f"{value!r} is not a finite number."))
            else:
                issues += [Issue(key, f"{err.message}.") for err in strict_validator(spec).iter_errors(value)]
        return issues

    def build_modules(self, feature_dim: int, num_classes: int) -> dict:
        """Trainable modules besides the network, by name (saved with the checkpoint)."""
        return {}

    # ------------------------------------------------------------------ training
    def loss(self, out: Forward, targets) -> tuple[Any, dict[str, Any]]:  # pragma: no cover - abstract
        """``(loss, {stat: 0-d tensor sum over the batch})``; no host synchronisation."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Called by the training loop before each epoch (0-based ``epoch`` of ``epochs``), also after a
        resumed state loads: e.g. a regulariser that starts at an epoch. State that must survive a
        resume lives in the objective's modules (buffers are saved with the checkpoint and the resume
        state)."""

    def transform_batch(self, x, y, gen):
        """The batch the network sees, from the augmented images ``x`` (all first views, then all second
        views where ``two_views``) and their labels ``y``: by default as they are. An objective that
        trains on transformed copies (CSI's rotations) returns them here with their labels, on the
        device, drawing randomness from ``gen`` only and without a host synchronisation."""
        return x, y

    def epoch_row(self, sums: Mapping[str, float], n: int) -> dict[str, float]:
        """Per-epoch log fields from the epoch's pooled sums (``n`` images seen): by default the mean
        per image of every statistic."""
        return {k: sums[k] / max(n, 1) for k in self.stats}

    def collapse(self, row: Mapping[str, float]) -> str | None:
        """A description of what looks collapsed in this epoch's ``row``, or None."""
        return None

    def collapse_advice(self) -> str:
        """What to change when a run with this objective collapses: the end of the collapse guard's message."""
        return "Lower the learning rate or the objective's weight (docs/troubleshooting.md, 'When training collapses')."

    # ------------------------------------------------------------------ freshly initialised modules
    def new_parameters(self) -> list:
        """The trainable parameters that start from a random initialisation rather than from the parent
        checkpoint: by default every parameter of the objective's own modules (``build_modules``)."""
        return [p for p in self.modules.parameters() if p.requires_grad]

    def new_module_lr(self) -> float | None:
        """The learning rate of :meth:`new_parameters` (parameter ``new_module_lr``), or None: the stage's."""
        return self.params.get("new_module_lr")

    def not_learned(self, change: float, threshold: float, stage_lr: float) -> str | None:
        """A description of why the freshly initialised modules did not learn, or None. ``change`` is
        ``||w - w_0|| / ||w_0||`` over :meth:`new_parameters` after this epoch (w_0: their initialisation),
        ``threshold`` the guard's ``min_new_module_change``, ``stage_lr`` the stage's base learning rate."""
        if change >= threshold:
            return None
        own = self.new_module_lr()
        lr = f"{self.name}.new_module_lr = {own:g}" if own is not None else \
            f"the stage's lr {stage_lr:g} ({self.name}.new_module_lr is null)"
        return (f"the freshly initialised modules ({', '.join(self.modules)}) moved {100 * change:.3g}% from their "
                f"initialisation (below guard.min_new_module_change = {100 * threshold:g}%): they do not learn at "
                f"{lr}; raise {self.name}.new_module_lr (benchmark section or the variant's params)")

    def hyperparameters(self) -> str:
        """``<name>.<key>=<value>`` for messages (collapse, logs)."""
        return ", ".join(f"{self.name}.{k}={v}" for k, v in self.params.items())

    def log_line(self, row: Mapping[str, float]) -> str:
        return " ".join(f"{k} {row[k]:.4g}" for k in self.stats if k in row)

    def state_dict(self) -> dict:
        return {k: v.detach().cpu().contiguous() for k, v in self.modules.state_dict().items()}

    def load_state_dict(self, state: Mapping) -> None:
        self.modules.load_state_dict(dict(state))


def projection_head(dim: int, out: int):
    """The contrastive methods' projection head (SupCon's, as CIDER, NPOS, SSD+ and CSI use it):
    ``Linear(dim, dim) -> ReLU -> Linear(dim, out)``."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out))


def register(name: str, label: str | None = None):
    """Class decorator: make an :class:`Objective` available under ``name`` (config ``objective:``)."""

    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"objective '{name}' registered twice")
        for key, spec in cls.params_schema.items():
            if "default" not in spec:
                raise ValueError(f"objective '{name}': parameter '{key}' has no default")
        optional = {f.name for f in registered_fields().values() if f.optional}
        if not set(cls.provides) <= optional:
            raise ValueError(f"objective '{name}': provides {sorted(set(cls.provides) - optional)}, which are not "
                             f"optional feature-file fields (register them with lffood.fields.register_field)")
        cls.name = name
        cls.label = label or cls.label or name
        _REGISTRY[name] = cls
        return cls

    return deco


def unregister(name: str) -> None:
    """Remove an objective (tests that register a toy objective clean up with this)."""
    _REGISTRY.pop(name, None)


def registered_objectives() -> dict[str, type[Objective]]:
    return dict(_REGISTRY)


def objective_class(name: str) -> type[Objective]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown objective '{name}'; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def build_objective(name: str, params: Mapping | None, *, feature_dim: int, num_classes: int) -> Objective:
    return objective_class(name)(params, feature_dim=feature_dim, num_classes=num_classes)
