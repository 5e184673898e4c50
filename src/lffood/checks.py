"""What plug-ins (scorers, training objectives) check of their own parameters at workflow start.

The config check (:func:`lffood.config.validate_config`) knows no plug-in by name. For every scorer
that runs on some variant and every objective a variant trains with, it calls the plug-in's one hook,
``check(params, facts)`` (:meth:`lffood.scorers.base.Scorer.check`,
:meth:`lffood.objectives.base.Objective.check`), with the resolved parameters and the
:class:`Facts` of the benchmark: what its config determines about the data and the model, without
torch and without the data. The hook returns :class:`Issue` s; the config check names the full key
of each (``benchmarks.<b>.scorers.params.<scorer>.<param>``, or the objective's section, or the
variant's ``params`` where the value comes from there).

Scorers declare the domain of each parameter as data (:class:`Param`: type, bounds, null allowed),
which the hook, ``lffood scorers`` and the README read; objectives declare theirs as JSON-Schema
properties (``params_schema``), checked with :func:`strict_validator`. This module imports neither
numpy nor torch: the Snakefile uses it at parse time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from jsonschema import Draft202012Validator, validators


@dataclass(frozen=True)
class Facts:
    """What a benchmark's (validated) config determines about its data and its model. None where only
    the built data can tell (ImageNet-100's training images) or the model section is invalid."""

    #: ID training images
    train: int | None
    #: ID test images
    test: int | None
    #: ID classes
    classes: int | None
    #: side of the stored training images
    side: int | None
    #: images of each OOD set, where the config fixes it (the embedded generator)
    ood: int | None
    #: how the training count comes about (for messages)
    what: str
    #: the model's ``arch``
    arch: str
    #: residual blocks of the backbone (``model.blocks()``)
    blocks: int | None
    #: dimension of the pooled penultimate features
    feature_dim: int | None

    #: the benchmark section that determines each fact (``benchmarks.<b>.<section>``): an Issue that
    #: depends on a fact also names an override of that section
    SOURCES = {"train": "dataset", "test": "dataset", "classes": "dataset", "side": "dataset", "ood": "dataset",
               "arch": "model", "blocks": "model", "feature_dim": "model"}


class Issue(NamedTuple):
    """A problem a plug-in's hook found. ``key``: the parameter (relative to the plug-in's parameters;
    "" for the whole section); ``message``: what is wrong and what to do (the value first, the key
    is prefixed by the caller); ``depends``: the facts (:attr:`Facts.SOURCES`) and the plug-in's other
    parameters it also depends on."""

    key: str
    message: str
    depends: tuple[str, ...] = ()


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Param:
    """The domain of one plug-in parameter: ``kind`` "int" (a true integer: 8.0 is refused), "float"
    (any finite number) or "choice" (one of ``choices``); bounds ``min``/``max`` (open where
    ``min_open``/``max_open``); ``null``: None is allowed (the parameter's automatic or "off"
    value); ``why``: what the bounds protect against (docs and messages)."""

    kind: str
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    null: bool = False
    choices: tuple = ()
    why: str = ""

    def __post_init__(self):
        if self.kind not in ("int", "float", "choice"):
            raise ValueError(f"Param kind must be int, float or choice, not {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError("a choice Param needs its choices")

    def describe(self) -> str:
        """The domain in words: ``an integer >= 1``, ``a number in (0, 100]``, ``null or ...``."""
        if self.kind == "choice":
            text = f"one of {list(self.choices)}"
        else:
            what = "an integer" if self.kind == "int" else "a finite number"
            lo, hi = self.min, self.max
            if lo is not None and hi is not None:
                text = f"{what} in {'(' if self.min_open else '['}{_num(lo)}, {_num(hi)}{')' if self.max_open else ']'}"
            elif lo is not None:
                text = f"{what} {'>' if self.min_open else '>='} {_num(lo)}"
            elif hi is not None:
                text = f"{what} {'<' if self.max_open else '<='} {_num(hi)}"
            else:
                text = what
        return f"null or {text}" if self.null else text

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside the domain (e.g. ``2.5 is not an integer: must be an integer >= 1``),
        or None."""
        if value is None:
            return None if self.null else f"null is not allowed: must be {self.describe()}"
        if self.kind == "choice":
            return None if value in self.choices else f"{value!r} is not allowed: must be {self.describe()}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number: must be {self.describe()}"
        if self.kind == "int" and not isinstance(value, int):
            return f"{value!r} is not an integer: must be {self.describe()}"
        if not math.isfinite(value):
            return f"{value!r} is not a finite number: must be {self.describe()}"
        lo, hi = self.min, self.max
        if (lo is not None and (value < lo or (self.min_open and value == lo))) or \
                (hi is not None and (value > hi or (self.max_open and value == hi))):
            return f"{value!r} is out of range: must be {self.describe()}" + (f" ({self.why})" if self.why else "")
        return None

    def bad_values(self) -> list:
        """Values just outside the domain, one per bound, plus a wrongly typed and the non-finite ones
        (the adversary tests walk every registered parameter with these)."""
        out: list = ["x", [1]] + ([] if self.null else [None])
        if self.kind == "choice":
            return out + ["not-" + str(self.choices[0])]
        out += [float("nan"), float("inf"), float("-inf")]
        if self.kind == "int":
            out.append(float(self.min if self.min is not None else 1))  # 8.0 where 8 is meant
        step = 1 if self.kind == "int" else 1e-3
        if self.min is not None:
            out.append(self.min if self.min_open else self.min - step)
        if self.max is not None:
            out.append(self.max if self.max_open else self.max + step)
        return out


def spec_issues(specs: Mapping[str, Param], params: Mapping) -> list[Issue]:
    """Every parameter of ``params`` that :class:`Param` ``specs`` declare, against its domain."""
    return [Issue(k, msg) for k, p in specs.items() if k in params and (msg := p.problem(params[k])) is not None]


# ----------------------------------------------------------------------------- JSON schema, strictly
def _is_integer(checker, instance) -> bool:
    """An integer is an int (not a bool, and not a float with an integral value: ``epochs: 8.0`` is
    refused, where JSON Schema's own rule accepts it and the job fails later)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


#: Draft 2020-12 with integers that are ints. Non-finite numbers are refused before the schema is
#: applied (:func:`nonfinite_problems`), by every caller of this module's validators.
StrictValidator = validators.extend(
    Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


def strict_validator(schema: Mapping, cls=StrictValidator):
    return cls(dict(schema))


def nonfinite_problems(node: Any, path: tuple = ()) -> list[tuple[tuple, float]]:
    """``(path, value)`` of every NaN or infinite float in a nested config (YAML's ``.inf``, ``.nan``,
    or ``1e400`` on the command line, which YAML reads as infinity)."""
    if isinstance(node, float) and not math.isfinite(node):
        return [(path, node)]
    if isinstance(node, Mapping):
        return [p for k, v in node.items() for p in nonfinite_problems(v, (*path, k))]
    if isinstance(node, (list, tuple)):
        return [p for i, v in enumerate(node) for p in nonfinite_problems(v, (*path, i))]
    return []
