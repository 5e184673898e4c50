"""Model variants: what is trained, from what, with which schedule. Configuration, not code.

A benchmark's ``variants`` section maps a name to

* ``objective``: a registered training objective (``lffood.objectives``);
* ``params``: overrides of that objective's section ``benchmarks.<b>.<objective>``;
* ``parent``: the variant whose checkpoint it starts from, or null (from scratch);
* ``stage``: the stage section it trains with (``pretrain`` or ``finetune``; default ``pretrain``
  from scratch, ``finetune`` from a parent) and ``stage_overrides`` on top of it;
* ``checkpoint``: import a model trained elsewhere instead of training (no parent only);
* ``label``, ``scorer`` (the method's own scorer, for the paper tables' rows) and ``scorers``
  (restrict which scorers run on it; default every applicable one).

A benchmark's ``sweeps`` add one variant per value of one parameter of a variant's objective
(:func:`sweep_points`), each fine-tuned from the same parent; they are built for the sensitivity
figure only. This module imports no torch: the Snakefile uses it at parse time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import NamedTuple

STAGES = ("pretrain", "finetune")


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """``base`` with ``override`` laid on top, nested mappings merged key by key."""
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


class SweepPoint(NamedTuple):
    base: str
    param: str
    value: float


def format_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_points(bench: Mapping) -> dict[str, SweepPoint]:
    """Variant name -> sweep point, for every value of every sweep of ``bench`` (config order). A
    value equal to the base variant's own is not a new variant: the base variant is that point."""
    out = {}
    for sw in bench.get("sweeps", []):
        for value, name in sweep_value_names(bench, sw):
            if name != sw["variant"]:
                out[name] = SweepPoint(sw["variant"], sw["param"], value)
    return out


def sweep_value_names(bench: Mapping, sweep: Mapping) -> list[tuple[float, str]]:
    """``(value, variant name)`` of each point of one sweep, the base variant where the value is its own."""
    current = objective_params(bench, sweep["variant"])[sweep["param"]]
    return [(v, sweep["variant"] if v == current else f"{sweep['variant']}_{sweep['param']}{format_value(v)}")
            for v in sweep["values"]]


def variant_names(bench: Mapping, with_sweeps: bool = False) -> list[str]:
    """The benchmark's variants in config order (then its sweep points when asked)."""
    names = list(bench["variants"])
    return names + list(sweep_points(bench)) if with_sweeps else names


def variant(bench: Mapping, name: str) -> dict:
    """The variant's entry with defaults filled in; a sweep point is its base variant with the one
    parameter changed, running only the base variant's scorer."""
    if name in bench["variants"]:
        v = copy.deepcopy(dict(bench["variants"][name]))  # schema defaults are filled in (validate_config)
        v.setdefault("stage", "pretrain" if v["parent"] is None else "finetune")
        v.setdefault("label", name)
        return v
    points = sweep_points(bench)
    if name not in points:
        raise KeyError(f"unknown variant '{name}'; the benchmark defines {list(bench['variants'])} "
                       f"and sweep points {list(points)}")
    p = points[name]
    v = variant(bench, p.base)
    v["params"] = {**v["params"], p.param: p.value}
    v["label"] = f"{v['label']} ({p.param} = {format_value(p.value)})"
    v["scorers"] = [v["scorer"]]
    v["sweep"] = {"base": p.base, "param": p.param, "value": p.value}
    return v


def objective_params(bench: Mapping, name: str) -> dict:
    """The objective's resolved parameters for variant ``name``: its section, then the overrides."""
    v = variant(bench, name)
    return {**bench.get(v["objective"], {}), **v["params"]}


def stage_config(bench: Mapping, name: str) -> dict:
    v = variant(bench, name)
    return deep_merge(bench[v["stage"]], v["stage_overrides"])


def monitor_delta(bench: Mapping) -> float | None:
    """The threshold of the figures that split local vectors by p_j(y|x) < delta (the local-norm figure,
    drawn from the training jobs' monitor files, and the t-SNE's background vectors):
    ``figures.monitor.delta``, or the benchmark's ``lff.delta``. Only the rules that draw them read it;
    no training job does (:mod:`lffood.monitor`)."""
    from .monitor import figure_delta

    return figure_delta(bench)


def training_spec(bench: Mapping, name: str) -> dict:
    """Exactly what training variant ``name`` reads. It is the Snakemake job's params (a change reruns
    that variant and what follows, nothing else) and what :func:`lffood.pipeline.run_training` uses.
    An objective parameter that is null and null by default (e.g. ``ssod.new_module_lr``: the stage's
    rate) is left out, as the objective fills it in the same: adding such a parameter to an objective
    does not rerun the models trained before it existed."""
    from .objectives import objective_class

    v = variant(bench, name)
    schema = objective_class(v["objective"]).params_schema
    params = {k: x for k, x in objective_params(bench, name).items()
              if not (x is None and k in schema and schema[k].get("default", 0) is None)}
    return {"objective": v["objective"], "params": params, "parent": v["parent"], "stage_name": v["stage"],
            "stage": stage_config(bench, name), "checkpoint": v["checkpoint"], "model": dict(bench["model"]),
            "guard": dict(bench["guard"]), "amp": bench["amp"], "deterministic": bench["deterministic"],
            **({"init": v["init"]} if v.get("init") else {})}  # absent when null: older jobs do not rerun


def benchmark_scorers(bench: Mapping) -> list[str]:
    """The benchmark's scorers: its ``scorers.names``, or, where that is null (the default), every
    registered scorer in table order (:func:`lffood.scorers.scorer_names`)."""
    from .scorers import scorer_names

    names = bench["scorers"]["names"]
    return list(names) if names is not None else scorer_names()


def variant_scorers(bench: Mapping, name: str) -> list[str]:
    """The scorers run on variant ``name``: the benchmark's scorers (:func:`benchmark_scorers`, or the
    variant's own ``scorers``) that apply to its objective (a scorer's ``requires`` must be among the
    fields the objective's models provide, e.g. SSOD's OOD head, and its ``objectives``, where it
    names them, must include the variant's)."""
    from .objectives import objective_class
    from .scorers import scorer_applies

    v = variant(bench, name)
    names = v["scorers"] if v["scorers"] is not None else benchmark_scorers(bench)
    provides = set(objective_class(v["objective"]).provides) | extraction_fields(bench)
    return [s for s in names if scorer_applies(s, provides, v["objective"])]


def on_request_fields() -> set[str]:
    """Optional feature-file fields of every split that extraction computes for a model when one of its
    scorers asks (:mod:`lffood.fields` answering the registered scorers' ``Scorer.extraction_request``:
    FeatureNorm's block norms)."""
    from .fields import every_split_fields
    from .scorers import registered_scorers

    requests = {key for cls in registered_scorers().values() for key in cls.extraction_request(cls.defaults)}
    return every_split_fields(requests)


def extraction_fields(bench: Mapping) -> set[str]:
    """Optional feature-file fields of every split that every model of the benchmark can have: those
    its ``extraction`` section requests (MODE's region vectors, ``extraction.multiscale``) and those
    extraction computes on a scorer's request."""
    from .fields import every_split_fields, requests_in

    return every_split_fields(requests_in(bench["extraction"])) | on_request_fields()


def extraction_params(bench: Mapping, name: str) -> dict:
    """Exactly what the feature file of variant ``name`` depends on: AMP, the benchmark's
    ``extraction`` section but its batch size (which changes only the speed; its other keys are
    settings such as ``center_crop`` or requests of optional fields such as ``multiscale``), and the
    requests of the variant's scorers (FeatureNorm: ``block_norms: {jigsaw_grid, jigsaw_seed}``). It
    is the extraction job's params: a change re-extracts that model and reruns its scorers."""
    from .scorers import resolved_params, scorer_class

    out = {"amp": bench["amp"], **{k: v for k, v in bench["extraction"].items() if k != "batch_size"}}
    for s in variant_scorers(bench, name):
        for key, settings in scorer_class(s).extraction_request(resolved_params(s, bench["scorers"]["params"].get(s))).items():
            if key in out and out[key] != settings:
                raise ValueError(f"variant '{name}': scorers ask extraction for {key}={out[key]!r} and {settings!r}")
            out[key] = settings
    return out
