"""The one configuration schema, applied with defaults, plus checks a JSON schema cannot express.

The schema file is ``workflow/schemas/config.schema.yaml``; the Snakefile and the tests both call
:func:`validate_config` with it, so there is exactly one definition of what a valid config is.
Every error names the file, the key (dotted path) and what to do.

Snakemake's ``--config KEY=VALUE`` overrides are applied here too (:func:`apply_overrides`), so that
they mean what users expect (``seeds=[0]`` is a list of integers, ``lff={lambda: 0.5}`` changes
``lff.lambda`` of every benchmark in ``run``) and an error they cause names the override, not the
config file.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
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


#: libyaml's loader where PyYAML has it (about 8x faster on the schema, which every validation reads)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found. Pass an existing config file (snakemake --configfile PATH).")
    try:
        data = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Fix the syntax at the line shown.") from exc
    return data or {}


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
    scalar a string: ``seeds=[0]`` arrives as ``['0']`` and ``lff={lambda: 0.5}`` as
    ``{'lambda': '0.5'}``. Every string that is a literal of YAML 1.2's core schema becomes that value
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
        """How the override of ``key`` was given, e.g. ``--config lff={delta: 2}``."""
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

    * Values are YAML (:func:`yaml_value`): ``seeds=[0]``, ``lff={lambda: 0.5}``, ``device=cpu``.
    * A mapping is merged key by key into what is there (``lff={lambda: 0.5}`` keeps ``delta`` and
      ``mu``); any other value, lists included, replaces it.
    * A key with dots is a path: ``benchmarks.embedded.lff.lambda``. Snakemake 9's command line
      refuses dots in ``--config`` keys (before the workflow is read), so this form is for callers of
      this function; on the command line, nest the value instead.
    * A key (or the first part of a dotted key) that is a key of a benchmark section (``lff``,
      ``finetune``, ``variants``, ``scorers``, ...: :func:`benchmark_sections`) and not a top-level
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
    validator = _DefaultingValidator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        problems = []
        for err in errors:
            key = _key(err.absolute_path)
            extra = []
            if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
                extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
            if err.validator == "additionalProperties" and "'checkpoint'" in err.message and key.endswith(
                    ("pretrain", "finetune")):
                msg = (f"key '{key}.checkpoint': a model trained elsewhere is now a variant's key: move it to "
                       "variants.<name>.checkpoint (e.g. variants.ce.checkpoint for the CE model LFF starts from).")
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
            else:
                msg = f"key '{key}': {err.message}."
            problems.append((msg, _blame(key, origins, extra)))
        raise _report(source, problems, overrides, schema_path)
    problems = _semantic_problems(cfg, schema)
    if problems:
        blamed = []
        for msg in problems:
            m = re.match(r"key '([^']+)'", msg)
            related = getattr(msg, "related", ())
            blamed.append((str(msg), _blame(m.group(1), origins, related=related) if m else []))
        raise _report(source, blamed, overrides, schema_path)
    return cfg


def _semantic_problems(cfg: dict, schema: Mapping) -> list[str]:
    """Problems a JSON schema cannot express (names that must exist, keys that constrain each other),
    each starting with its dotted key. Resolves a suite name in ``run`` to its list."""
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
        problems += _dataset_problems(bname, bench)
        problems += _model_problems(bname, bench["model"])
        if not _scorer_param_problems(bname, bench["scorers"]["params"], known):
            problems += _scorer_size_problems(bname, bench)
        problems += _variant_problems(bname, bench, schema)
    problems += _table_problems(cfg)
    return problems


# ----------------------------------------------------------------------------- what the config determines
#: The embedded generator's defaults that the checks below depend on. They are
#: ``lffood.data.embedded.DEFAULTS``, which imports torch (the Snakefile validates without it); a unit
#: test keeps the two equal.
EMBEDDED_DEFAULTS = {"image_size": 16, "num_classes": 8, "train_per_class": 600, "test_per_class": 100}
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
    can tell: ImageNet-100's training images) and ``what`` (how the training count comes about)."""
    if dataset["source"] == "embedded":
        g = {**EMBEDDED_DEFAULTS, **dataset.get("generator", {})}
        k = g["num_classes"]
        return {"train": g["train_per_class"] * k, "test": g["test_per_class"] * k, "classes": k,
                "side": g["image_size"],
                "what": f"the generator's train_per_class x num_classes = {g['train_per_class']} x {k}"}
    facts = dict(PAPER_DATA[dataset["source"]])
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


def _scorer_size_problems(bname: str, bench: Mapping) -> list[str]:
    """Scorer parameters bounded by the data or the backbone, for the scorers the benchmark runs:
    KNN's and CSD's k (at most the ID training vectors), ViM's dim (below the feature dimension),
    FeatureNorm's block (an index into the backbone's blocks) and jigsaw grid (at most the image side)."""
    from .scorers import resolved_params

    names, params = bench["scorers"]["names"], bench["scorers"]["params"]
    data, shape = id_data(bench["dataset"]), model_shape(bench["model"])
    key, problems = f"benchmarks.{bname}.scorers.params", []
    ds_key, model_key = f"benchmarks.{bname}.dataset", f"benchmarks.{bname}.model"

    def get(name):
        return resolved_params(name, params.get(name))

    n = data["train"]
    if n is not None:
        if "knn" in names and get("knn")["k"] > n:
            problems.append(_problem(
                f"key '{key}.knn.k': {get('knn')['k']} is larger than the {n} ID training images ({data['what']}); "
                f"KNN's k must be at most {n}. Lower it (reference: 50 for CIFAR-10, 300 for CIFAR-100).", ds_key))
        if "csd" in names:
            p = get("csd")
            bank = 6 * n if p["bank"] == "pooled" else n
            if p["k"] > bank:
                problems.append(_problem(
                    f"key '{key}.csd.k': {p['k']} is larger than the {bank} vectors of CSD's bank "
                    f"({'6 region vectors x ' if p['bank'] == 'pooled' else ''}{n} ID training images, {data['what']}); "
                    f"lower it to at most {bank} (MODE: 10).", ds_key, f"{key}.csd.bank"))
    if shape is not None:
        n_blocks, dim = shape
        if "vim" in names and get("vim")["dim"] is not None and not 1 <= get("vim")["dim"] < dim:
            problems.append(_problem(
                f"key '{key}.vim.dim': {get('vim')['dim']} must lie below the feature dimension {dim} of "
                f"model.arch '{bench['model']['arch']}'; lower it, or null for ViM's rule (D = {dim // 2} here).",
                model_key))
        block = get("featurenorm")["block"] if "featurenorm" in names else None
        if block is not None and block >= n_blocks:
            problems.append(_problem(
                f"key '{key}.featurenorm.block': {block} is not a block of model.arch '{bench['model']['arch']}', "
                f"which has {n_blocks} (0-based: 0..{n_blocks - 1}); choose one, or null to select by the "
                "norm ratio.", model_key))
    if "featurenorm" in names and data["side"] is not None and get("featurenorm")["jigsaw_grid"] > data["side"]:
        problems.append(_problem(
            f"key '{key}.featurenorm.jigsaw_grid': {get('featurenorm')['jigsaw_grid']} is larger than the "
            f"{data['side']} x {data['side']} training images; lower it (reference: 3).", ds_key))
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
