"""The one configuration schema, applied with defaults, plus checks a JSON schema cannot express.

The schema file is ``src/lffood/resources/config.schema.yaml`` (package data,
:data:`lffood.resources.CONFIG_SCHEMA`); the Snakefile and the tests both call
:func:`validate_config` with it, so there is exactly one definition of what a valid config is.
Every error names the file, the key (dotted path) and what to do.

Snakemake's ``--config KEY=VALUE`` overrides are applied here too (:func:`apply_overrides`), so that
they mean what users expect (``seeds=[0]`` is a list of integers, ``finetune={lr: 0.01}`` changes
``finetune.lr`` of every benchmark in ``run``) and an error they cause names the override, not the
config file.

Plug-ins (scorers, training objectives) check their own parameters: this module calls their one
hook, ``check(params, facts)`` (:mod:`lffood.checks`), for every scorer that runs and every
objective a variant trains with, and names no plug-in itself. Every value is checked here before
any job: finite numbers only, integers that are ints (``epochs: 8.0`` is refused), bounds, names
that become path components, table roles.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import validators

from .checks import Facts, Issue, StrictValidator, nonfinite_problems
from .errors import ConfigError

#: The schema: package data, so that an installed lffood validates configs without the repository.
from .resources import CONFIG_SCHEMA as SCHEMA  # noqa: F401


def _with_defaults(cls):
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


#: integers that are ints (``epochs: 8.0`` refused: JSON Schema's own rule accepts it, and the job fails)
_DefaultingValidator = _with_defaults(StrictValidator)


#: libyaml's loader where PyYAML has it (about 8x faster on the schema, which every validation reads)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found. Pass an existing config file (snakemake --configfile PATH).")
    try:
        data = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_message(path, exc)) from exc
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the file holds a YAML {type(data).__name__}, not a mapping of config keys; "
                          "write it as `key: value` lines (config.yaml shows every section).")
    return data or {}


def yaml_error_message(path: str | Path, exc: yaml.YAMLError) -> str:
    """A YAML syntax error as ``FILE:LINE:COLUMN: not valid YAML: <problem> (<context>)``, then the line
    itself with a caret under the column, and what to do."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return f"{path}: not valid YAML ({exc}). Fix the syntax."
    what = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    lines = Path(path).read_text().splitlines() if Path(path).is_file() else []
    shown = ""
    if 0 <= mark.line < len(lines):
        shown = f"\n    {lines[mark.line]}\n    {' ' * mark.column}^"
    return (f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {what}"
            + (f" ({context}" + (f", line {exc.context_mark.line + 1})" if getattr(exc, "context_mark", None) else ")")
               if context else "")
            + f"{shown}\nFix the syntax at line {mark.line + 1}, column {mark.column + 1} of {path}.")


def _unshared(node):
    """``node`` rebuilt so that no two places share a mapping or list: a YAML alias (``*methods``) becomes
    its own copy, so that a later config file or override changing one benchmark's variant does not
    change every benchmark that shares the anchor (``copy.deepcopy`` would keep the sharing)."""
    if isinstance(node, Mapping):
        return {k: _unshared(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshared(v) for v in node]
    return node


def _merge(base: dict, update: Mapping) -> dict:
    """Merge ``update`` into ``base`` key by key, mappings recursively, anything else replaced (the rule
    Snakemake applies to several --configfile files)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_configfiles(paths: Sequence[str | Path]) -> dict:
    """The config files laid over one another in order, every YAML alias its own copy (:func:`_unshared`).
    The Snakefile validates this instead of the config Snakemake merged, in which an anchor shared
    between benchmarks stays one object and an overlay of one benchmark leaks into the others."""
    merged: dict = {}
    for path in paths:
        _merge(merged, _unshared(load_yaml(path)))
    return merged


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


# ----------------------------------------------------------------------------- --config overrides
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_LITERALS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
             "null": None, "Null": None, "NULL": None, "~": None, "": None}


def yaml_value(value: Any) -> Any:
    """A ``--config`` value as the user typed it. Snakemake turns a top-level value into an int, a float
    or True/False when it can, and reads anything else with YAML's BaseLoader, which keeps every
    scalar a string: ``seeds=[0]`` arrives as ``['0']`` and ``finetune={lr: 0.5}`` as
    ``{'lr': '0.5'}``. Every string that is a literal of YAML 1.2's core schema becomes that value
    (integers, floats such as ``0.5`` or ``1e-3``, ``true``/``false``, ``null``/``~``), and a string
    that starts with ``[`` or ``{`` is read as a flow sequence or mapping, item by item alike. Any
    other string stays a string (``yes``, ``off`` and ``2024-01-01`` too)."""
    if isinstance(value, Mapping):
        return {k: yaml_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [yaml_value(v) for v in value]
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in _LITERALS:
        return _LITERALS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text[0] in "[{":
        try:
            parsed = yaml.load(text, Loader=yaml.BaseLoader)  # every scalar a string: the rules above apply
        except yaml.YAMLError:
            return value
        if isinstance(parsed, (Mapping, list)):
            return yaml_value(parsed)
    return value


class Overrides:
    """Snakemake's ``--config`` overrides: the values as Snakemake parsed them
    (``workflow.config_settings.config``) and the text typed for each key
    (``workflow.config_settings.config_args``), which error messages quote."""

    def __init__(self, values: Mapping | None = None, args: Sequence[str] | None = None):
        self.values = dict(values or {})
        typed: dict[str, list[str]] = {}
        for arg in args or ():
            typed.setdefault(str(arg).split("=", 1)[0], []).append(str(arg))
        self._typed = typed

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, key: str) -> str:
        """How the override of ``key`` was given, e.g. ``--config finetune={lr: 2}``."""
        args = self._typed.get(key) or [f"{key}={self.values[key]}"]
        return "--config " + " ".join(args)

    def texts(self) -> str:
        return "--config " + " ".join(t.removeprefix("--config ") for t in map(self.text, self.values))


def benchmark_sections(schema: Mapping) -> list[str]:
    """The keys of a benchmark section (``benchmarks.<name>.<key>``), objectives' sections included:
    a ``--config`` key of this name applies to every benchmark in ``run``."""
    return list(schema["$defs"]["benchmark"]["properties"])


def apply_overrides(config: Mapping, overrides: Overrides | Mapping, schema: Mapping) -> tuple[dict, dict[str, str]]:
    """``config`` with the ``--config`` overrides laid on top as users expect, and where each one went.

    * Values are YAML (:func:`yaml_value`): ``seeds=[0]``, ``finetune={lr: 0.5}``, ``device=cpu``.
    * A mapping is merged key by key into what is there (``finetune={lr: 0.5}`` keeps ``epochs``
      and the rest); any other value, lists included, replaces it.
    * A key with dots is a path: ``benchmarks.embedded.finetune.lr``. Snakemake 9's command line
      refuses dots in ``--config`` keys (before the workflow is read), so this form is for callers of
      this function; on the command line, nest the value instead.
    * A key (or the first part of a dotted key) that is a key of a benchmark section (an objective's
      section, ``finetune``, ``variants``, ``scorers``, ...: :func:`benchmark_sections`) and not a top-level
      key applies to every benchmark in ``run``, after the other overrides (``run`` included).

    ``config`` may already hold the overrides as Snakemake merged them (it does, in the Snakefile):
    laying them on again is harmless, and the top-level copies of benchmark sections are removed.
    Returns the new config and ``{dotted key: override text}`` for every value set.
    """
    if not isinstance(overrides, Overrides):
        overrides = Overrides(overrides)
    cfg = copy.deepcopy(dict(config))
    top, sections = set(schema["properties"]), set(benchmark_sections(schema))
    origins: dict[str, str] = {}
    per_benchmark = []
    for key, raw in overrides.values.items():
        path, value, text = str(key).split("."), yaml_value(raw), overrides.text(key)
        if path[0] in sections and path[0] not in top:
            cfg.pop(key, None)  # Snakemake put it at the top level; it belongs to the benchmarks
            per_benchmark.append((path, value, text))
        else:
            if len(path) > 1:
                cfg.pop(key, None)
            _lay(cfg, path, value, text, origins)
    benches = cfg.get("benchmarks")
    for path, value, text in per_benchmark:
        for name in _run_names(cfg, schema):
            if isinstance(benches, Mapping) and isinstance(benches.get(name), Mapping):
                _lay(cfg, ["benchmarks", name, *path], value, text, origins)
    return cfg, origins


def _lay(cfg: dict, path: Sequence[str], value: Any, text: str, origins: dict[str, str]) -> None:
    """Set ``path`` in ``cfg`` to ``value`` (a mapping is merged into a mapping there, key by key),
    recording the dotted key of every value set in ``origins``."""
    node = cfg
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    last = path[-1]
    if isinstance(value, Mapping) and isinstance(node.get(last), dict):
        for k, v in value.items():
            _lay(cfg, [*path, str(k)], v, text, origins)
    else:
        node[last] = copy.deepcopy(value)
        _record(".".join(path), value, text, origins)


def _record(key: str, value: Any, text: str, origins: dict[str, str]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _record(f"{key}.{k}", v, text, origins)
    else:
        origins[key] = text


def _run_names(cfg: Mapping, schema: Mapping) -> list[str]:
    """The benchmarks ``run`` names (a list, a suite or one benchmark), as far as they can be known
    before validation."""
    run = cfg.get("run", schema["properties"]["run"].get("default", []))
    if isinstance(run, str):
        suites = cfg.get("suites")
        suite = suites.get(run) if isinstance(suites, Mapping) else None
        return [str(n) for n in suite] if isinstance(suite, list) else [run]
    return [str(n) for n in run] if isinstance(run, list) else []


class _Problem(str):
    """A problem message that also names the other keys it depends on (a cross-key constraint), so
    that an override of any of them is named with it."""

    related: tuple[str, ...] = ()


def _problem(message: str, *related: str) -> str:
    p = _Problem(message)
    p.related = related
    return p


def _blame(key: str, origins: Mapping[str, str], extra: Sequence[str] = (), related: Sequence[str] = ()) -> list[str]:
    """The overrides behind a problem at dotted ``key``: those that set it, a key under it or a key
    above it. ``extra``: keys under it that the problem is about (unexpected properties);
    ``related``: other dotted keys it depends on."""
    keys = [key, *(f"{key}.{e}" if key != "<top level>" else str(e) for e in extra), *related]

    def hit(k: str, origin: str) -> bool:
        return k == origin or k.startswith((origin + ".", origin + "[")) or origin.startswith(k + ".")

    return sorted({text for origin, text in origins.items() if any(hit(k, origin) for k in keys)})


def _report(source: str, problems: list[tuple[str, list[str]]], overrides: Overrides | None,
            schema_path: str | Path) -> ConfigError:
    """One error listing every problem; a problem an override caused starts with that override, and
    the config file is named only for the others."""
    lines = [f"  - {' '.join(blamed)}: {msg}" if blamed else f"  - {msg}" for msg, blamed in problems]
    n_blamed = sum(bool(blamed) for _, blamed in problems)
    if not overrides:
        where, fix = source, f"Fix these keys in {source}"
    elif n_blamed == len(problems):
        where, fix = overrides.texts(), "Fix the --config value(s) named above (README, section Configuration)"
    elif n_blamed:
        where = f"{source} + {overrides.texts()}"
        fix = f"Fix the --config value(s) named above, and the other keys in {source}"
    else:
        where = f"{source} + {overrides.texts()}"
        fix = f"Fix these keys in {source} (or in the --config values)"
    return ConfigError(f"{where}: invalid configuration ({len(problems)} problem(s)):\n" + "\n".join(lines)
                       + f"\n{fix}; the schema with every key and its default is {schema_path}.")


def validate_config(config: Mapping[str, Any], schema_path: str | Path, source: str = "config.yaml",
                    overrides: Overrides | Mapping | None = None) -> dict:
    """Apply ``--config`` overrides, validate against the schema, fill in defaults, run semantic checks.

    ``overrides`` are Snakemake's ``--config`` values (:class:`Overrides`, or a mapping of key to value;
    :func:`apply_overrides` says how they apply). Returns a new dict (the input is not modified).
    Raises :class:`ConfigError` listing every problem, each with its dotted key and, when an override
    caused it, that override.
    """
    schema = full_schema(schema_path)
    if overrides is not None and not isinstance(overrides, Overrides):
        overrides = Overrides(overrides)
    cfg = copy.deepcopy(dict(config))
    origins: dict[str, str] = {}
    if overrides:
        cfg, origins = apply_overrides(cfg, overrides, schema)
    # NaN and infinity anywhere (YAML's .inf, or 1e400 on the command line): JSON Schema's bounds let
    # them through (nan compares false with every bound), and an infinite margin trains the control
    nonfinite = {_key(path): value for path, value in nonfinite_problems(cfg)}
    problems = [(f"key '{key}': {value!r} is not a finite number; use a finite value (README, section "
                 "Configuration).", _blame(key, origins)) for key, value in nonfinite.items()]
    validator = _DefaultingValidator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    errors = [e for e in _branch_errors(errors) if _key(e.absolute_path) not in nonfinite]
    if errors or problems:
        for err in errors:
            key = _key(err.absolute_path)
            extra = []
            if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
                extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
            if err.validator == "additionalProperties" and "'checkpoint'" in err.message and key.endswith(
                    ("pretrain", "finetune")):
                msg = (f"key '{key}.checkpoint': a model trained elsewhere is now a variant's key: move it to "
                       "variants.<name>.checkpoint (e.g. that of the parent a fine-tuned variant starts from).")
            elif err.validator == "additionalProperties" and key == "<top level>" and extra == ["seeds"]:
                default = schema["$defs"]["benchmark"]["properties"]["seeds"]["default"]
                msg = ("key 'seeds': the seeds are now a key of each benchmark: move them to "
                       f"benchmarks.<name>.seeds (a benchmark without one trains seeds {default}); "
                       "--config seeds=[...] still sets them for every benchmark in 'run'.")
            elif err.validator == "additionalProperties":
                msg = (f"key '{key}': {err.message}. Remove or rename it (check spelling against "
                       f"{Path(schema_path).name}).")
                if key == "<top level>" and _blame(key, origins, extra):
                    msg += (" A --config key is a top-level key or a key of benchmarks.<name> (then it applies to "
                            f"every benchmark in 'run': {', '.join(benchmark_sections(schema))}).")
            elif err.validator == "oneOf" and key.endswith(".seeds"):
                msg = (f"key '{key}': {err.instance!r} is neither a list of distinct integers 0 .. 2^32 - 1 "
                       "(e.g. [0, 1, 2]) nor a number of seeds from 1 to 1000 (e.g. 5: seeds 0 .. 4).")
            elif err.validator == "pattern" and err.schema.get("$comment"):
                msg = f"key '{key}': {err.instance!r} is not allowed: {err.schema['$comment']}."
            elif err.validator == "type" and isinstance(err.instance, float) and "integer" in err.validator_value:
                msg = (f"key '{key}': {err.instance!r} is not an integer; write it without a decimal point "
                       f"({int(err.instance) if err.instance.is_integer() else 'a whole number'}).")
            else:
                msg = f"key '{key}': {err.message}."
            problems.append((msg, _blame(key, origins, extra)))
        raise _report(source, problems, overrides, schema_path)
    normalize_seeds(cfg)
    problems = _semantic_problems(cfg, schema)
    if problems:
        blamed = []
        for msg in problems:
            m = re.match(r"key '([^']+)'", msg)
            related = getattr(msg, "related", ())
            blamed.append((str(msg), _blame(m.group(1), origins, related=related) if m else []))
        raise _report(source, blamed, overrides, schema_path)
    return cfg


def _branch_errors(errors: list) -> list:
    """A ``oneOf`` of a list and a number (``seeds``): the errors of the branch the value's type
    chose, so that they name the item and the bound (``benchmarks.b.seeds.0``: 4294967296 is greater
    than the maximum) instead of 'not valid under any of the given schemas'."""
    out = []
    for err in errors:
        branch = None
        if err.validator == "oneOf" and err.context:
            types = [b.get("type") for b in err.validator_value]
            kind = "array" if isinstance(err.instance, list) else (
                "integer" if isinstance(err.instance, int) and not isinstance(err.instance, bool) else None)
            branch = types.index(kind) if kind in types else None
        if branch is None:
            out.append(err)
        else:
            out += sorted((e for e in err.context if e.relative_schema_path[0] == branch),
                          key=lambda e: list(map(str, e.absolute_path)))
    return out


def normalize_seeds(cfg: dict) -> None:
    """Every benchmark's ``seeds`` as a list: a number N (the one key to change for more seeds,
    ``seeds: 5``) becomes ``[0, ..., N-1]``, once, here, so every reader sees a list."""
    for bench in cfg.get("benchmarks", {}).values():
        if isinstance(bench, dict) and isinstance(bench.get("seeds"), int) and not isinstance(bench["seeds"], bool):
            bench["seeds"] = list(range(bench["seeds"]))


def _semantic_problems(cfg: dict, schema: Mapping) -> list[str]:
    """Problems a JSON schema cannot express (names that must exist, keys that constrain each other),
    each starting with its dotted key. Resolves a suite name in ``run`` to its list."""
    from .monitor import figure_delta_problems
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
            return [f"key 'run': '{cfg['run']}' is neither a suite (defined under 'suites': "
                    f"{sorted(suites)}) nor a benchmark ({sorted(benches)})."]
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
            for sub, msg, related in _stage_problems(bench[stage]):
                problems.append(_problem(f"key 'benchmarks.{bname}.{stage}.{sub}': {msg}",
                                         *(f"benchmarks.{bname}.{stage}.{r}" for r in related)))
        for s in bench["scorers"]["names"] or []:  # null: every registered scorer
            if s not in known:
                problems.append(f"key 'benchmarks.{bname}.scorers.names': unknown scorer '{s}'. "
                                f"Known: {sorted(known)}.")
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
            problems.append(_problem(f"key 'benchmarks.{bname}.dataset.ood_crop': {ds['ood_crop']} is larger than "
                                     f"ood_resize={ds['ood_resize']}; the center crop must fit in the resized image "
                                     f"(CIFAR: 32/32, ImageNet: 256/224).", f"benchmarks.{bname}.dataset.ood_resize"))
        if len(set(ood)) != len(ood):
            problems.append(f"key 'benchmarks.{bname}.dataset.ood_sets': duplicate names in {ood}.")
        tsne = bench["figures"]["tsne"]
        if tsne["ood_set"] is not None and tsne["ood_set"] not in ood:
            problems.append(_problem(f"key 'benchmarks.{bname}.figures.tsne.ood_set': '{tsne['ood_set']}' is not "
                                     f"one of the benchmark's OOD sets {ood}.", f"benchmarks.{bname}.dataset.ood_sets"))
        undefined = [v for v in tsne["variants"] or [] if v not in bench["variants"]]
        if undefined:
            problems.append(_problem(f"key 'benchmarks.{bname}.figures.tsne.variants': {undefined} are not variants "
                                     f"of this benchmark ({list(bench['variants'])}).", f"benchmarks.{bname}.variants"))
        undefined = [v for v in bench["figures"]["heatmaps"]["variants"] or [] if v not in bench["variants"]]
        if undefined:  # else the figure's job fails while the job graph is built, after this check
            problems.append(_problem(f"key 'benchmarks.{bname}.figures.heatmaps.variants': {undefined} are not "
                                     f"variants of this benchmark ({list(bench['variants'])}).",
                                     f"benchmarks.{bname}.variants"))
        problems += [_problem(p, *related) for p, related in figure_delta_problems(bname, bench)]
        problems += _dataset_problems(bname, bench)
        problems += _size_problems(bname, bench, schema)
        problems += _model_problems(bname, bench["model"])
        problems += _scorer_problems(bname, bench, known)
        problems += _variant_problems(bname, bench, schema)
    problems += table_problems(cfg, schema)
    return list(dict.fromkeys(problems))  # an objective section's problem once, not once per variant


# ----------------------------------------------------------------------------- what the config determines
#: The embedded generator's defaults that the checks below depend on. They are
#: ``lffood.data.embedded.DEFAULTS``, which imports torch (the Snakefile validates without it); a unit
#: test keeps the two equal.
EMBEDDED_DEFAULTS = {"image_size": 16, "num_classes": 8, "train_per_class": 600, "test_per_class": 100,
                     "ood_size": 500}
#: The paper datasets as the workflow stores them: ID training and test images, classes, side of the
#: stored training images (None: known only after building; ImageNet-100's side is dataset.train_size).
PAPER_DATA = {
    "cifar10": {"train": 50000, "test": 10000, "classes": 10, "side": 32, "what": "CIFAR-10's training split"},
    "cifar100": {"train": 50000, "test": 10000, "classes": 100, "side": 32, "what": "CIFAR-100's training split"},
    "imagenet100": {"train": None, "test": 5000, "classes": 100, "side": None, "what": "ImageNet-100"},
}
#: CIFAR ResNet presets (``lffood.models.resnet.PRESETS``, which imports torch; a unit test keeps them equal).
RESNET_PRESETS = {"resnet18": {"blocks": [2, 2, 2, 2], "widths": [64, 128, 256, 512]},
                  "resnet34": {"blocks": [3, 4, 6, 3], "widths": [64, 128, 256, 512]}}
#: Which ``model.arch`` reads each optional model key (``lffood.models.build.build_model``).
MODEL_KEYS = {"blocks": ("resnet",), "widths": ("resnet",), "depth": ("wrn",), "widen": ("wrn",),
              "dropout": ("wrn", "wrn28_10")}
#: FPR95 needs at least this many ID test scores (the threshold keeps 95% of them: lffood.metrics).
MIN_ID_TEST = 20


def id_data(dataset: Mapping) -> dict:
    """What a (validated) ``dataset`` section determines about the ID data: ``train`` and ``test``
    image counts, ``classes``, ``side`` of the stored training images (None where only the built data
    can tell: ImageNet-100's training images), ``ood``: the images of each OOD set where the config
    fixes it (the embedded generator's ``ood_size``; None for the paper sets, whose archives decide)
    and ``what`` (how the training count comes about)."""
    if dataset["source"] == "embedded":
        g = {**EMBEDDED_DEFAULTS, **dataset.get("generator", {})}
        k = g["num_classes"]
        return {"train": g["train_per_class"] * k, "test": g["test_per_class"] * k, "classes": k,
                "side": g["image_size"], "ood": g["ood_size"],
                "what": f"the generator's train_per_class x num_classes = {g['train_per_class']} x {k}"}
    facts = {**PAPER_DATA[dataset["source"]], "ood": None}
    if dataset["source"] == "imagenet100":
        facts["side"] = dataset["train_size"]
    return facts


def model_shape(model: Mapping) -> tuple[int, int] | None:
    """``(residual blocks, feature dimension)`` of the backbone a (validated) ``model`` section builds
    (``model.blocks()`` and the width of the pooled features), or None when the section is invalid."""
    arch = model["arch"]
    if arch in RESNET_PRESETS or arch == "resnet":
        spec = RESNET_PRESETS.get(arch, model)
        blocks, widths = spec.get("blocks"), spec.get("widths")
        return (sum(blocks), widths[-1]) if blocks and widths and len(blocks) == len(widths) else None
    if arch in ("wrn", "wrn28_10"):
        depth, widen = (28, 10) if arch == "wrn28_10" else (model.get("depth", 28), model.get("widen", 10))
        return (3 * ((depth - 4) // 6), 64 * widen) if (depth - 4) % 6 == 0 else None
    if arch == "resnet50":
        return 16, 2048
    return None


def _model_problems(bname: str, model: Mapping) -> list[str]:
    """What ``lffood.models.build.build_model`` would refuse (or silently ignore) inside a job."""
    key, arch, problems = f"benchmarks.{bname}.model", model["arch"], []
    if arch == "resnet":
        missing = [k for k in ("blocks", "widths") if k not in model]
        if missing:
            problems.append(f"key '{key}': arch 'resnet' needs {missing}: one entry per stage, the number of "
                            "residual blocks and their width (e.g. blocks: [1, 1, 1], widths: [16, 32, 64]); or "
                            "choose a preset arch (resnet18, resnet34).")
        elif len(model["blocks"]) != len(model["widths"]):
            problems.append(_problem(f"key '{key}.widths': {len(model['widths'])} entries, but blocks has "
                                     f"{len(model['blocks'])} ({model['blocks']}); give one width per stage "
                                     f"(stage i: blocks[i] residual blocks of widths[i] channels).", f"{key}.blocks"))
    for k, archs in MODEL_KEYS.items():
        if k in model and arch not in archs:
            problems.append(_problem(f"key '{key}.{k}': arch '{arch}' does not read it (only {list(archs)} "
                                     "do); remove it, or choose an arch that does.", f"{key}.arch"))
    if arch == "wrn" and (model.get("depth", 28) - 4) % 6:
        problems.append(f"key '{key}.depth': {model['depth']} is not 6n + 4 (n blocks in each of the three "
                        "groups); use e.g. 10, 16, 22, 28 or 40.")
    return problems


def _dataset_problems(bname: str, bench: Mapping) -> list[str]:
    """Constraints between dataset keys and what depends on the number of classes."""
    ds, key, problems = bench["dataset"], f"benchmarks.{bname}.dataset", []
    gen = ds.get("generator", {})
    for k in ("digit_scale", "crop_scale"):
        if k in gen and gen[k][0] > gen[k][1]:
            problems.append(f"key '{key}.generator.{k}': {gen[k]} is not [min, max]; swap the two values.")
    data = id_data(ds)
    if data["test"] < MIN_ID_TEST:
        problems.append(_problem(
            f"key '{key}.generator.test_per_class': {data['test'] // data['classes']} x {data['classes']} classes = "
            f"{data['test']} ID test images; FPR95 needs at least {MIN_ID_TEST} (its threshold keeps 95% of them). "
            "Raise test_per_class.", f"{key}.generator.num_classes"))
    guard = bench["guard"]
    if guard["enabled"] and guard["chance_factor"] >= data["classes"]:
        problems.append(_problem(
            f"key 'benchmarks.{bname}.guard.chance_factor': {guard['chance_factor']} / {data['classes']} classes >= 1, "
            "so every epoch counts as chance and the collapse guard stops every training run. Use a value below "
            f"{data['classes']} (default 1.5), or guard.enabled: false.",
            f"{key}.generator.num_classes", f"{key}.source"))
    return problems


def benchmark_facts(bench: Mapping) -> Facts:
    """What a (validated) benchmark section determines about its data and model (:class:`Facts`),
    which the plug-ins' hooks check their parameters against."""
    data, shape = id_data(bench["dataset"]), model_shape(bench["model"])
    return Facts(train=data["train"], test=data["test"], classes=data["classes"], side=data["side"],
                 ood=data["ood"], what=data["what"], arch=bench["model"]["arch"],
                 blocks=shape[0] if shape else None, feature_dim=shape[1] if shape else None)


def issue_problem(issue: Issue, key: str, bench_key: str, depends_key=None) -> str:
    """A plug-in's :class:`Issue` as a problem of the config check: ``key`` the dotted key of the
    plug-in's parameters, ``bench_key`` that of the benchmark; a fact the issue depends on names the
    benchmark section it comes from (``Facts.SOURCES``), another parameter its key (``depends_key``:
    parameter -> dotted key; default under ``key``)."""
    where = f"{key}.{issue.key}" if issue.key else key
    related = [f"{bench_key}.{Facts.SOURCES[d]}" if d in Facts.SOURCES else
               (depends_key(d) if depends_key else f"{key}.{d}") for d in issue.depends]
    return _problem(f"key '{where}': {issue.message}", *related)


def _running_scorers(bench: Mapping) -> set[str]:
    """The scorers that run on some variant of the benchmark (those that apply to its models)."""
    from .variants import variant_scorers

    running = set()
    for name in bench["variants"]:
        try:
            running.update(variant_scorers(bench, name))
        except (KeyError, TypeError, ValueError):  # an unknown objective or scorer: reported on its own
            continue
    return running


#: A name that becomes a path component (a sweep point's variant name, ``<variant>_<param><value>``,
#: may hold the exponent's '+'): the schema's ``$defs.name``, checked for the names the config makes.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _size_problems(bname: str, bench: Mapping, schema: Mapping) -> list[str]:
    """Counts bounded by the data (:func:`benchmark_facts`): each training stage's batch (at most the
    ID training images, and divisible by the GPUs of a distributed job), the figures' samples (at
    most the ID test images, or the images of an OOD set where the config fixes it; a schema default
    is a cap, which small data lowers); and the names that sweeps make (path components,
    :data:`SAFE_NAME`)."""
    from .variants import stage_config, variant, variant_names

    facts, problems = benchmark_facts(bench), []
    base, ds_key = f"benchmarks.{bname}", f"benchmarks.{bname}.dataset"
    gpus = bench["compute"]["train_gpus"]
    seen = set()
    for name in bench["variants"]:
        try:
            v, stage = variant(bench, name), stage_config(bench, name)
        except (KeyError, TypeError, ValueError):
            continue
        own = "batch_size" in v["stage_overrides"]
        key = f"{base}.variants.{name}.stage_overrides.batch_size" if own else f"{base}.{v['stage']}.batch_size"
        batch = stage.get("batch_size")
        if key in seen or not isinstance(batch, int):
            continue
        seen.add(key)
        if facts.train is not None and batch > facts.train:
            problems.append(_problem(
                f"key '{key}': {batch} is larger than the {facts.train} ID training images ({facts.what}); every "
                f"epoch would be one batch of all of them. Use at most {facts.train}.", ds_key))
        if gpus > 1 and batch % gpus:
            problems.append(_problem(
                f"key '{key}': {batch} images per batch cannot be split over compute.train_gpus = {gpus} processes; "
                f"use a multiple of {gpus}.", f"{base}.compute.train_gpus"))
    figs, fig_schema = bench["figures"], schema["$defs"]["benchmark"]["properties"]["figures"]["properties"]
    counts = [("tsne.per_group", figs["tsne"]["per_group"], facts.test, "ID test images"),
              ("heatmaps.n_id", figs["heatmaps"]["n_id"], facts.test, "ID test images"),
              ("heatmaps.per_ood", figs["heatmaps"]["per_ood"], facts.ood, "images of each OOD set")]
    for sub, n, limit, what in counts:
        fig, k = sub.split(".")
        default = fig_schema[fig]["properties"][k].get("default")
        if limit is not None and n > limit and n != default:  # a default larger than small data caps at it
            problems.append(_problem(f"key '{base}.figures.{sub}': {n} is larger than the {limit} {what} (dataset"
                                     f"{'.generator' if bench['dataset']['source'] == 'embedded' else ''}); the "
                                     f"figure would show fewer than asked. Use at most {limit}.", ds_key))
    names = []
    if all(sw["variant"] in bench["variants"] for sw in bench["sweeps"]):
        try:
            names = variant_names(bench, with_sweeps=True)
        except (KeyError, TypeError, ValueError):  # an unknown objective or parameter: reported on its own
            pass
    for name in names:
        if not SAFE_NAME.fullmatch(name):
            problems.append(f"key '{base}.sweeps': the sweep point '{name}' is not a safe file name (letters, "
                            "digits, '_', '.', '+', '-'); rename the variant or choose other values.")
    return problems


def _stage_problems(stage: Mapping) -> list[tuple[str, str, tuple[str, ...]]]:
    """Constraints between the keys of one (validated) stage section: ``(key under the stage, message,
    the other keys under the stage it depends on)``."""
    problems = []
    sched = stage["schedule"]
    if sched["type"] == "step":
        bad = [m for m in sched["milestones"] if m >= stage["epochs"]]
        if bad:
            problems.append(("schedule.milestones", f"{bad} not below epochs={stage['epochs']}; a decay at or "
                             "after the last epoch never happens.", ("epochs",)))
    if stage["nesterov"] and (stage["optimizer"] != "sgd" or stage["momentum"] == 0):
        problems.append(("nesterov", f"Nesterov momentum needs optimizer 'sgd' with momentum > 0 (optimizer is "
                         f"'{stage['optimizer']}', momentum {stage['momentum']}); set nesterov: false or change "
                         "those.", ("optimizer", "momentum")))
    crop = stage["augment"]["random_resized_crop"]
    for k in ("scale", "ratio"):
        if crop is not None and crop[k][0] > crop[k][1]:
            problems.append((f"augment.random_resized_crop.{k}", f"{crop[k]} is not [min, max]; swap the two "
                             "values.", ()))
    return problems


def _scorer_problems(bname: str, bench: Mapping, known: set) -> list[str]:
    """Unknown scorer names under ``scorers.params``, unknown parameters, and each scorer's own check
    (``Scorer.check``) of its resolved parameters: against their domains for every scorer named there,
    and against the benchmark's data and model (:func:`benchmark_facts`) for the scorers that run."""
    from .scorers import scorer_class

    problems = []
    params = bench["scorers"]["params"]
    running = _running_scorers(bench)
    facts = benchmark_facts(bench)
    for s, p in params.items():
        key = f"benchmarks.{bname}.scorers.params.{s}"
        if s not in known:
            problems.append(f"key '{key}': unknown scorer '{s}'. Known: {sorted(known)}.")
            continue
        cls = scorer_class(s)
        unknown = sorted(set(p) - set(cls.defaults))
        if unknown:
            problems.append(f"key '{key}': unknown parameter(s) {unknown}; known: {sorted(cls.defaults)}. "
                            f"Reference defaults: {cls.defaults} (README, section Scorers).")
            continue
        for issue in cls.check({**cls.defaults, **p}, facts if s in running else None):
            problems.append(issue_problem(issue, key, f"benchmarks.{bname}"))
    for s in running - set(params):  # defaults against the data and the model (k against a small bank)
        if s in known:
            cls = scorer_class(s)
            problems += [issue_problem(issue, f"benchmarks.{bname}.scorers.params.{s}", f"benchmarks.{bname}")
                         for issue in cls.check(dict(cls.defaults), facts)]
    return problems


def _schema_problems(instance: Any, schema: Mapping, root: Mapping, key: str) -> list[str]:
    """Problems of ``instance`` against a sub-schema (``$ref``s resolved in ``root``), each with its key."""
    validator = StrictValidator({**schema, "$defs": root["$defs"]})
    return [f"key '{key}{'.' if err.absolute_path else ''}{_key(err.absolute_path) if err.absolute_path else ''}': "
            f"{err.message}." for err in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))]


def _variant_problems(bname: str, bench: dict, schema: Mapping) -> list[str]:
    """Variants and sweeps: objectives, parents, stages, parameters, imported checkpoints and scorers."""
    from .objectives import objective_class, registered_objectives
    from .scorers import registered_scorers, scorer_applies
    from .variants import benchmark_scorers, extraction_fields, objective_params, stage_config, variant

    problems = []
    facts = benchmark_facts(bench)
    objectives = registered_objectives()
    variants = bench["variants"]
    base = f"benchmarks.{bname}.variants"
    scorers = benchmark_scorers(bench)
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
        problems += _init_problems(key, v, bench)
        unknown = sorted(set(v["params"]) - set(cls.params_schema))
        if unknown:
            problems.append(f"key '{key}.params': unknown parameter(s) {unknown} of objective '{v['objective']}'; "
                            f"known: {sorted(cls.params_schema)}.")
        else:  # the objective's own check of the variant's parameters (section, then the variant's params)
            section = f"benchmarks.{bname}.{v['objective']}"

            def where(p, own=v["params"], key=key, section=section):
                return f"{key}.params.{p}" if p in own else f"{section}.{p}"

            for issue in cls.check(objective_params(bench, name), facts):
                at = f"{key}.params" if issue.key in v["params"] else section
                problems.append(issue_problem(issue, at, f"benchmarks.{bname}", where))
        stage_problems = _schema_problems(stage_config(bench, name), {"$ref": "#/$defs/stage"}, schema,
                                          f"{key}.stage_overrides")
        problems += stage_problems
        if not stage_problems and v["stage_overrides"]:  # the stage section's own problems are reported once
            stage_name = variant(bench, name)["stage"]
            section = {(sub, msg) for sub, msg, _ in _stage_problems(bench[stage_name])}
            for sub, msg, related in _stage_problems(stage_config(bench, name)):
                if (sub, msg) not in section:
                    problems.append(_problem(
                        f"key '{key}.stage_overrides': {stage_name}.{sub} with these overrides: {msg}",
                        *(f"benchmarks.{bname}.{stage_name}.{k}" for k in (sub, *related))))
        provides = set(cls.provides) | extraction_fields(bench)
        for s in [v["scorer"], *(v["scorers"] or [])]:
            if s not in scorers:
                problems.append(f"key '{key}.scorer{'s' if s != v['scorer'] else ''}': '{s}' is not in "
                                f"benchmarks.{bname}.scorers.names {scorers}. Add it there or choose one of them.")
            elif s in registered_scorers() and not scorer_applies(s, provides, v["objective"]):
                cls = registered_scorers()[s]
                problems.append(f"key '{key}.scorer': '{s}' needs {sorted(cls.requires)} and scores the models of "
                                f"{list(cls.objectives) if cls.objectives else 'every objective'}; models of "
                                f"objective '{v['objective']}' do not qualify.")
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
        base_params = objective_params(bench, sw["variant"])
        for value in sw["values"]:  # each point: the objective's own check with the swept value
            for issue in cls.check({**base_params, sw["param"]: value}, facts):
                if issue.key == sw["param"]:
                    problems.append(issue_problem(issue._replace(key=""), f"{key}.values", f"benchmarks.{bname}"))
    return problems


def _init_problems(key: str, v: Mapping, bench: Mapping) -> list[str]:
    """``variants.<name>.init``: only from scratch; ``imagenet1k`` needs an architecture with published
    weights; a path must exist before any job runs."""
    from .data.sources import IMAGENET1K_WEIGHTS

    init = v.get("init")
    if init is None:
        return []
    if v["parent"] is not None or v["checkpoint"] is not None:
        return [f"key '{key}.init': initial weights apply to a variant trained from scratch; this one has a "
                f"{'parent' if v['parent'] is not None else 'checkpoint'}. Remove one of the two keys."]
    if init == "imagenet1k":
        arch = bench["model"]["arch"]
        if arch not in IMAGENET1K_WEIGHTS:
            return [f"key '{key}.init': no ImageNet-1k weights are registered for model.arch '{arch}' (only for "
                    f"{sorted(IMAGENET1K_WEIGHTS)}). Give the path of a state_dict file instead, or null."]
        return []
    if not Path(init).is_file():
        return [f"key '{key}.init': file '{init}' not found (relative paths are relative to the directory "
                "snakemake runs in). Place the weights there, use 'imagenet1k' to download torchvision's, or set "
                "it to null to start from a random initialisation."]
    return []


def table_problems(cfg: Mapping, schema: Mapping | None = None, asked: Sequence[str] = ()) -> list[str]:
    """The one check of the table roles (the keys of ``tables`` that name a variant: baseline, control,
    ours, ...) against the variants of every benchmark where a table is built, each problem with its
    key. ``cfg`` is validated (``run`` a list).

    * A paper table (a key of ``tables`` that lists benchmarks) needs every role in every benchmark
      behind it: at workflow start for the benchmarks `run` builds; for the others when the table is
      asked for (``asked``: the tables the paper_table rule builds, whose benchmarks must then also
      be defined).
    * At workflow start, every benchmark in `run` shows the roles in its own tables of the paper's
      shapes and its figures: a role set to another value than its default (``schema``'s) must be a
      variant of each, so that a misspelling cannot leave those rows out silently. A role at its
      default may be missing there (a benchmark that trains only the baseline).
    """
    tables, benches = cfg["tables"], cfg["benchmarks"]
    roles = {r: v for r, v in tables.items() if isinstance(v, str)}
    problems = []

    def defines(b: str) -> list[str]:
        return list(benches[b]["variants"])

    for table, names in tables.items():
        if table in roles or (asked and table not in asked):
            continue
        undefined = [b for b in names if b not in benches]
        if asked and undefined:
            problems.append(f"key 'tables.{table}': results/tables/{table}.csv needs benchmark(s) {undefined}, which "
                            "the config does not define. Define them under 'benchmarks' (config.yaml ships them) or "
                            f"change tables.{table}.")
        for b in names:
            if b in undefined or not (asked or b in cfg["run"]):
                continue
            missing = {r: v for r, v in roles.items() if v not in benches[b]["variants"]}
            if missing:
                problems.append(_problem(
                    f"key 'tables.{table}': {table} needs the variants {missing} (tables.<role>) in benchmark "
                    f"'{b}', which defines {defines(b)}. Add them to benchmarks.{b}.variants or change "
                    f"tables.{table} (or the roles).", *(f"tables.{r}" for r in missing), f"benchmarks.{b}.variants"))
    if asked or schema is None:
        return problems
    for b in cfg["run"]:  # the sensitivity figure `all` builds compares the sweep with tables.control
        bench = benches.get(b)
        control = roles.get("control")
        if bench and bench["sweeps"] and bench["figures"]["sensitivity"]["in_all"] and control is not None \
                and control not in bench["variants"]:
            problems.append(_problem(
                f"key 'tables.control': '{control}' is not a variant of benchmark '{b}', whose sensitivity figure "
                f"(figures.sensitivity.in_all) compares its sweeps with it; it defines {defines(b)}.",
                f"benchmarks.{b}.variants", f"benchmarks.{b}.figures.sensitivity.in_all"))
    defaults = {r: spec.get("default") for r, spec in schema["properties"]["tables"]["properties"].items()}
    for role, name in roles.items():
        if name == defaults.get(role):
            continue
        for b in cfg["run"]:
            if b in benches and name not in benches[b]["variants"]:
                problems.append(_problem(
                    f"key 'tables.{role}': '{name}' is not a variant of benchmark '{b}', which `run` builds and "
                    f"whose tables in the paper's shapes (results/tables/{b}_table1.csv, {b}_table4.csv) and "
                    f"figures show tables.{role}; it defines {defines(b)}. Fix the name, or add that variant to "
                    f"benchmarks.{b}.variants.", f"benchmarks.{b}.variants"))
    return problems


def check_local_device(cfg: Mapping[str, Any], source: str = "config.yaml", overrides: Overrides | None = None,
                       cuda_available=None) -> None:
    """``device: cuda`` for jobs that run on this host: raise :class:`ConfigError` (naming the key, or
    the override, and the fix) when no CUDA device is visible here. The Snakefile calls it before the
    first job of a local, non-dry run; it imports torch (about 3 s) only when ``device`` is ``cuda``.
    ``cuda_available``: a function returning whether CUDA is usable (default: torch's answer)."""
    if cfg.get("device") != "cuda":
        return
    if cuda_available is None:
        def cuda_available():
            import torch

            return torch.cuda.is_available()
    if cuda_available():
        return
    where = overrides.text("device") if overrides and "device" in overrides.values else source
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
    raise ConfigError(f"{where}: key 'device': 'cuda', but no CUDA device is visible on this host "
                      f"(CUDA_VISIBLE_DEVICES={cvd!r}), where the jobs would run; no job has started. Set device: "
                      "auto (CUDA when available, else the CPU) or cpu, or run on a GPU node (a GPU host, or a "
                      "cluster: --profile profiles/slurm).")


def load_config(path: str | Path, schema_path: str | Path) -> dict:
    """Read a YAML config file and validate it (used by tests and the ``lffood`` CLI)."""
    return validate_config(load_yaml(path), schema_path, source=str(path))


def benchmark(cfg: Mapping[str, Any], name: str) -> dict:
    try:
        return cfg["benchmarks"][name]
    except KeyError:
        raise ConfigError(f"benchmark '{name}' is not defined under 'benchmarks' in the config "
                          f"(defined: {sorted(cfg.get('benchmarks', {}))}).") from None
