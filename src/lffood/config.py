"""The one configuration schema, applied with defaults, plus checks a JSON schema cannot express.

The schema file is ``workflow/schemas/config.schema.yaml``; the Snakefile and the tests both call
:func:`validate_config` with it, so there is exactly one definition of what a valid config is.
Every error names the file, the key (dotted path) and what to do.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from .errors import ConfigError

#: Where the schema lives relative to the repository root.
SCHEMA_RELPATH = Path("workflow") / "schemas" / "config.schema.yaml"


def _with_defaults(cls):
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(Draft202012Validator)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found. Pass an existing config file (snakemake --configfile PATH).")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Fix the syntax at the line shown.") from exc
    return data or {}


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def full_schema(schema_path: str | Path) -> dict:
    """The one config schema: the schema file plus, for every registered training objective, its
    section ``benchmarks.<b>.<objective>`` (declared by the objective, ``Objective.params_schema``)."""
    from .objectives import registered_objectives

    schema = load_yaml(schema_path)
    props = schema["$defs"]["benchmark"]["properties"]
    for name, cls in registered_objectives().items():
        if not cls.params_schema:
            continue
        if name in props:
            raise ConfigError(f"objective '{name}' cannot declare a config section: 'benchmarks.<b>.{name}' is "
                              f"already a key of {schema_path}. Register it under another name.")
        props[name] = cls.section_schema()
    return schema


def validate_config(config: Mapping[str, Any], schema_path: str | Path, source: str = "config.yaml") -> dict:
    """Validate ``config`` against the schema, fill in defaults, run semantic checks.

    Returns a new dict (the input is not modified). Raises :class:`ConfigError` listing every
    problem, each with its dotted key.
    """
    schema = full_schema(schema_path)
    cfg = copy.deepcopy(dict(config))
    validator = _DefaultingValidator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors:
            key = _key(err.absolute_path)
            if err.validator == "additionalProperties" and "'checkpoint'" in err.message and key.endswith(
                    ("pretrain", "finetune")):
                lines.append(f"  - key '{key}.checkpoint': a model trained elsewhere is now a variant's key: move it to "
                             "variants.<name>.checkpoint (e.g. variants.ce.checkpoint for the CE model LFF starts "
                             "from).")
            elif err.validator == "additionalProperties":
                lines.append(f"  - key '{key}': {err.message}. Remove or rename it (check spelling against "
                             f"{Path(schema_path).name}).")
            else:
                lines.append(f"  - key '{key}': {err.message}.")
        raise ConfigError(f"{source}: invalid configuration ({len(errors)} problem(s)):\n" + "\n".join(lines)
                          + f"\nFix these keys in {source} (or in --config overrides); the schema with every key "
                            f"and its default is {schema_path}.")
    _semantic_checks(cfg, source, schema)
    return cfg


def _semantic_checks(cfg: dict, source: str, schema: Mapping) -> None:
    from .scorers import registered_scorers  # local import: scorers import numpy only

    problems = []
    benches = cfg.get("benchmarks", {})
    if isinstance(cfg["run"], str):
        suites = cfg["suites"]
        if cfg["run"] in suites:
            cfg["run"] = list(suites[cfg["run"]])
        elif cfg["run"] in benches:
            cfg["run"] = [cfg["run"]]
        else:
            raise ConfigError(f"{source}: key 'run': '{cfg['run']}' is neither a suite (defined under 'suites': "
                              f"{sorted(suites)}) nor a benchmark ({sorted(benches)}).")
    for suite, names in cfg["suites"].items():
        undefined = [n for n in names if n not in benches]
        if undefined:
            problems.append(f"key 'suites.{suite}': {undefined} have no section under 'benchmarks'.")
    for table in cfg["tables"]:
        if table in benches:
            problems.append(f"key 'benchmarks.{table}': '{table}' is the name of a paper table "
                            f"(results/tables/{table}.csv); rename the benchmark.")
    for name in cfg["run"]:
        if name not in benches:
            problems.append(f"key 'run': benchmark '{name}' has no section under 'benchmarks' "
                            f"(defined: {sorted(benches)}). Add it or remove it from 'run'.")
    known = set(registered_scorers())
    for bname, bench in benches.items():
        for stage in ("pretrain", "finetune"):
            st = bench[stage]
            sched = st["schedule"]
            if sched["type"] == "step":
                bad = [m for m in sched["milestones"] if m >= st["epochs"]]
                if bad:
                    problems.append(f"key 'benchmarks.{bname}.{stage}.schedule.milestones': {bad} not below "
                                    f"epochs={st['epochs']}; a decay at or after the last epoch never happens.")
        for s in bench["scorers"]["names"]:
            if s not in known:
                problems.append(f"key 'benchmarks.{bname}.scorers.names': unknown scorer '{s}'. "
                                f"Known: {sorted(known)}.")
        problems += _scorer_param_problems(bname, bench["scorers"]["params"], known)
        ds = bench["dataset"]
        ood = ds["ood_sets"]
        from .names import OOD_SETS_BY_SOURCE

        valid = OOD_SETS_BY_SOURCE[ds["source"]]
        unknown = [s for s in ood if s not in valid]
        if unknown:
            what = "the embedded benchmark" if ds["source"] == "embedded" else f"source '{ds['source']}'"
            problems.append(f"key 'benchmarks.{bname}.dataset.ood_sets': {unknown} are not OOD sets of {what}; "
                            f"choose from {list(valid)}.")
        if ds["source"] != "embedded" and "generator" in ds:
            problems.append(f"key 'benchmarks.{bname}.dataset.generator': only the embedded source has a generator; "
                            f"remove it (source is '{ds['source']}').")
        if ds["ood_crop"] > ds["ood_resize"]:
            problems.append(f"key 'benchmarks.{bname}.dataset.ood_crop': {ds['ood_crop']} is larger than "
                            f"ood_resize={ds['ood_resize']}; the center crop must fit in the resized image "
                            f"(CIFAR: 32/32, ImageNet: 256/224).")
        if len(set(ood)) != len(ood):
            problems.append(f"key 'benchmarks.{bname}.dataset.ood_sets': duplicate names in {ood}.")
        problems += _variant_problems(bname, bench, schema)
    problems += _table_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _scorer_param_problems(bname: str, params: Mapping, known: set) -> list[str]:
    """Unknown scorer names under ``params`` and unknown or out-of-range parameters, each with its key."""
    from .scorers import param_problems, scorer_class

    problems = []
    for s, p in params.items():
        key = f"benchmarks.{bname}.scorers.params.{s}"
        if s not in known:
            problems.append(f"key '{key}': unknown scorer '{s}'. Known: {sorted(known)}.")
            continue
        for msg in param_problems(s, p):
            problems.append(f"key '{key}': {msg}. Reference defaults: {scorer_class(s).defaults} "
                            "(README, section Scorers).")
    return problems


def _schema_problems(instance: Any, schema: Mapping, root: Mapping, key: str) -> list[str]:
    """Problems of ``instance`` against a sub-schema (``$ref``s resolved in ``root``), each with its key."""
    validator = Draft202012Validator({**schema, "$defs": root["$defs"]})
    return [f"key '{key}{'.' if err.absolute_path else ''}{_key(err.absolute_path) if err.absolute_path else ''}': "
            f"{err.message}." for err in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))]


def _variant_problems(bname: str, bench: dict, schema: Mapping) -> list[str]:
    """Variants and sweeps: objectives, parents, stages, parameters, imported checkpoints and scorers."""
    from .objectives import objective_class, registered_objectives
    from .scorers import registered_scorers, scorer_applies
    from .variants import extraction_fields, stage_config, variant

    problems = []
    objectives = registered_objectives()
    variants = bench["variants"]
    base = f"benchmarks.{bname}.variants"
    scorers = bench["scorers"]["names"]
    for name, v in variants.items():
        key = f"{base}.{name}"
        if v["objective"] not in objectives:
            problems.append(f"key '{key}.objective': unknown objective '{v['objective']}'. Registered: "
                            f"{sorted(objectives)} (lffood objectives).")
            continue
        cls = objective_class(v["objective"])
        parent = v["parent"]
        if parent is not None and parent not in variants:
            problems.append(f"key '{key}.parent': '{parent}' is not a variant of this benchmark "
                            f"(defined: {list(variants)}).")
            continue
        seen, p = [name], parent
        while p is not None and p in variants:
            if p in seen:
                problems.append(f"key '{key}.parent': the parents form a cycle {' -> '.join(seen + [p])}; one "
                                "variant must train from scratch (parent: null).")
                break
            seen.append(p)
            p = variants[p]["parent"]
        if v["checkpoint"] is not None:
            if parent is not None:
                problems.append(f"key '{key}.checkpoint': only a variant without a parent can be imported; "
                                "remove the checkpoint or the parent.")
            elif not Path(v["checkpoint"]).is_file():
                problems.append(f"key '{key}.checkpoint': file '{v['checkpoint']}' not found (relative paths are "
                                "relative to the directory snakemake runs in). Fix the path, or set it to null to "
                                "train this variant here.")
        params_schema = cls.section_schema()
        unknown = sorted(set(v["params"]) - set(cls.params_schema))
        if unknown:
            problems.append(f"key '{key}.params': unknown parameter(s) {unknown} of objective '{v['objective']}'; "
                            f"known: {sorted(cls.params_schema)}.")
        else:
            problems += _schema_problems({**bench.get(v["objective"], {}), **v["params"]}, params_schema, schema,
                                         f"{key}.params")
        problems += _schema_problems(stage_config(bench, name), {"$ref": "#/$defs/stage"}, schema,
                                     f"{key}.stage_overrides")
        provides = set(cls.provides) | extraction_fields(bench)
        for s in [v["scorer"], *(v["scorers"] or [])]:
            if s not in scorers:
                problems.append(f"key '{key}.scorer{'s' if s != v['scorer'] else ''}': '{s}' is not in "
                                f"benchmarks.{bname}.scorers.names {scorers}. Add it there or choose one of them.")
            elif s in registered_scorers() and not scorer_applies(s, provides):
                problems.append(f"key '{key}.scorer': '{s}' needs {sorted(registered_scorers()[s].requires)}, which "
                                f"models of objective '{v['objective']}' do not provide.")
    for i, sw in enumerate(bench["sweeps"]):
        key = f"benchmarks.{bname}.sweeps[{i}]"
        if sw["variant"] not in variants:
            problems.append(f"key '{key}.variant': '{sw['variant']}' is not a variant of this benchmark "
                            f"(defined: {list(variants)}).")
            continue
        v = variant(bench, sw["variant"])
        cls = objectives.get(v["objective"])
        if cls is None:
            continue
        if v["parent"] is None:
            problems.append(f"key '{key}.variant': '{sw['variant']}' trains from scratch; sweep a fine-tuned variant "
                            "(each point is fine-tuned from the same parent).")
        if sw["param"] not in cls.params_schema:
            problems.append(f"key '{key}.param': objective '{v['objective']}' has no parameter '{sw['param']}'; "
                            f"known: {sorted(cls.params_schema)}.")
            continue
        for value in sw["values"]:
            problems += _schema_problems(value, cls.params_schema[sw["param"]], schema, f"{key}.values")
    return problems


def _table_problems(cfg: Mapping) -> list[str]:
    """The variants a paper table's rows need exist in every benchmark behind it that `all` builds
    (the paper_table rule checks the others when that table is asked for)."""
    problems = []
    roles = {r: cfg["tables"][r] for r in ("baseline", "control", "ours")}
    for table, names in cfg["tables"].items():
        if table in roles:
            continue
        for b in names:
            bench = cfg["benchmarks"].get(b)
            if bench is None or b not in cfg["run"]:
                continue
            missing = {r: v for r, v in roles.items() if v not in bench["variants"]}
            if missing:
                problems.append(f"key 'tables': {table} needs the variants {missing} (tables.<role>) in benchmark "
                                f"'{b}', which defines {list(bench['variants'])}. Add them to "
                                f"benchmarks.{b}.variants or change tables.{table}.")
    return problems


def load_config(path: str | Path, schema_path: str | Path) -> dict:
    """Read a YAML config file and validate it (used by tests and the ``lffood`` CLI)."""
    return validate_config(load_yaml(path), schema_path, source=str(path))


def benchmark(cfg: Mapping[str, Any], name: str) -> dict:
    try:
        return cfg["benchmarks"][name]
    except KeyError:
        raise ConfigError(f"benchmark '{name}' is not defined under 'benchmarks' in the config "
                          f"(defined: {sorted(cfg.get('benchmarks', {}))}).") from None
