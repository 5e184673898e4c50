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


def validate_config(config: Mapping[str, Any], schema_path: str | Path, source: str = "config.yaml") -> dict:
    """Validate ``config`` against the schema, fill in defaults, run semantic checks.

    Returns a new dict (the input is not modified). Raises :class:`ConfigError` listing every
    problem, each with its dotted key.
    """
    schema = load_yaml(schema_path)
    cfg = copy.deepcopy(dict(config))
    validator = _DefaultingValidator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors:
            key = _key(err.absolute_path)
            if err.validator == "additionalProperties":
                lines.append(f"  - key '{key}': {err.message}. Remove or rename it (check spelling against "
                             f"{Path(schema_path).name}).")
            else:
                lines.append(f"  - key '{key}': {err.message}.")
        raise ConfigError(f"{source}: invalid configuration ({len(errors)} problem(s)):\n" + "\n".join(lines)
                          + f"\nFix these keys in {source} (or in --config overrides); the schema with every key "
                            f"and its default is {schema_path}.")
    _semantic_checks(cfg, source)
    return cfg


def _semantic_checks(cfg: dict, source: str) -> None:
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
        if bench["finetune"].get("checkpoint"):
            problems.append(f"key 'benchmarks.{bname}.finetune.checkpoint': only pretrain takes a checkpoint "
                            "(the CE model LFF starts from). Remove it.")
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


def load_config(path: str | Path, schema_path: str | Path) -> dict:
    """Read a YAML config file and validate it (used by tests and the ``lffood`` CLI)."""
    return validate_config(load_yaml(path), schema_path, source=str(path))


def benchmark(cfg: Mapping[str, Any], name: str) -> dict:
    try:
        return cfg["benchmarks"][name]
    except KeyError:
        raise ConfigError(f"benchmark '{name}' is not defined under 'benchmarks' in the config "
                          f"(defined: {sorted(cfg.get('benchmarks', {}))}).") from None
