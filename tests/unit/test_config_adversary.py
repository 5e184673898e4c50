"""The config check tried as an adversary would (issue 19): every parameter of every registered
plug-in and every numeric or name key of the schema, set out of range, non-finite and wrongly typed,
is refused at workflow start by :func:`lffood.config.validate_config` with its key named; so are the
same values as Snakemake's ``--config`` forms, misspelled table roles and YAML syntax errors."""

import copy
import math
from pathlib import Path

import pytest

from lffood.checks import Param
from lffood.config import (Overrides, full_schema, load_config, load_configfiles, load_yaml, table_problems,
                           validate_config)
from lffood.errors import ConfigError
from lffood.objectives import registered_objectives
from lffood.scorers import build_scorer, registered_scorers

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "src" / "lffood" / "resources" / "config.schema.yaml"
NONFINITE = (float("nan"), float("inf"), float("-inf"))


def _minimal(**bench_extra):
    return {"run": ["b"], "benchmarks": {"b": {"dataset": {"source": "embedded", "ood_sets": ["far"]}, **bench_extra}}}


def _error(cfg, overrides=None) -> str | None:
    """The config check's message, or None when the config is accepted."""
    try:
        validate_config(cfg, SCHEMA, overrides=overrides)
    except ConfigError as exc:
        return str(exc)
    return None


def _refused(cfg, key: str, overrides=None) -> bool:
    msg = _error(cfg, overrides)
    return msg is not None and f"key '{key}'" in msg


# ----------------------------------------------------------------------------- scorers
SCORER_PARAMS = [(s, k) for s, cls in sorted(registered_scorers().items()) for k in cls.params_spec]


def test_every_scorer_parameter_has_a_domain():
    """Registration refuses a scorer without one (lffood.scorers.base.register); the defaults lie in it."""
    for name, cls in registered_scorers().items():
        assert set(cls.params_spec) == set(cls.defaults), name
        for k, spec in cls.params_spec.items():
            assert spec.problem(cls.defaults[k]) is None, (name, k)
            if spec.kind != "choice":
                assert spec.min is not None, f"{name}.{k} has no lower bound"


@pytest.mark.parametrize("scorer,param", SCORER_PARAMS)
def test_every_scorer_parameter_refuses_bad_values_with_its_key(scorer, param):
    spec = registered_scorers()[scorer].params_spec[param]
    key = f"benchmarks.b.scorers.params.{scorer}.{param}"
    passed = [v for v in spec.bad_values() if not _refused(_minimal(scorers={"params": {scorer: {param: v}}}), key)]
    assert not passed, f"{key} accepted {passed}"
    # and building the scorer refuses them too (the jobs' own check)
    for v in spec.bad_values():
        with pytest.raises(ValueError, match=param):
            build_scorer(scorer, {param: v})


@pytest.mark.parametrize("scorer,param,value", [
    ("energy", "temperature", 0), ("msp", "temperature", 0.0), ("react", "temperature", 1e-320),
    ("odin", "temperature", 0), ("react", "threshold", 0.0), ("react", "percentile", 0),
    ("dice", "percentile", 100), ("dice_react", "dice_percentile", 100), ("dice_react", "react_threshold", -1.0),
    ("line", "p_w", 100), ("line", "p_a", 100.0), ("line", "clip_percentile", 0), ("line", "clip_threshold", 0),
])
def test_values_that_make_every_score_nan_or_equal_are_refused(scorer, param, value):
    """Energy, MSP and ReAct at temperature 0 score NaN for every image (logits / 0: the metrics job then
    failed late, naming no key); the others make every score the same (nothing kept above the 100th
    percentile, everything clipped to the smallest activation)."""
    import numpy as np

    from lffood.scorers import FeatureSet

    assert _refused(_minimal(scorers={"params": {scorer: {param: value}}}),
                    f"benchmarks.b.scorers.params.{scorer}.{param}")
    if scorer in ("energy", "msp") and value == 0:  # what the bound prevents
        cls = registered_scorers()[scorer]
        s = cls.__new__(cls)
        s.params = {param: value}
        rng = np.random.default_rng(0)
        with np.errstate(all="ignore"):
            scores = s.score(FeatureSet(rng.standard_normal((5, 3)), rng.standard_normal((5, 4))))
        assert np.isnan(scores).all()


@pytest.mark.parametrize("params,key", [
    ({"knn": {"k": 4801}}, "knn.k"),  # the embedded default: 600 x 8 = 4800 training images
    ({"csd": {"k": 28801}}, "csd.k"),  # 6 region vectors per training image
    ({"csd": {"k": 4801, "bank": "per_type"}}, "csd.k"),
    ({"vim": {"dim": 512}}, "vim.dim"),  # resnet34: 512 features
    ({"featurenorm": {"block": 16}}, "featurenorm.block"),  # resnet34: 16 blocks
    ({"featurenorm": {"jigsaw_grid": 17}}, "featurenorm.jigsaw_grid"),  # 16 x 16 images
])
def test_scorer_parameters_against_the_data_and_the_model(params, key):
    assert _refused(_minimal(scorers={"params": params}), f"benchmarks.b.scorers.params.{key}")


def test_a_default_against_small_data_is_named_too():
    """KNN's default k (50) with 20 training images: the scorer runs with its default, so its key is named."""
    cfg = _minimal(dataset={"source": "embedded", "ood_sets": ["far"],
                            "generator": {"train_per_class": 10, "num_classes": 2}})
    assert _refused(cfg, "benchmarks.b.scorers.params.knn.k")


# ----------------------------------------------------------------------------- objectives
def _objective_bad_values(spec: dict) -> list:
    types = spec.get("type") if isinstance(spec.get("type"), list) else [spec.get("type")]
    out = ["x", [1], {"a": 1}] + ([] if "null" in types else [None])
    if "boolean" in types:
        return out + [0, 1.5]
    out += list(NONFINITE)
    if "integer" in types:
        out.append(float(spec.get("minimum", 1)))  # 8.0 where 8 is meant
    step = 1 if "integer" in types else 1e-3
    for bound, bad in (("minimum", lambda v: v - step), ("exclusiveMinimum", lambda v: v),
                       ("maximum", lambda v: v + step), ("exclusiveMaximum", lambda v: v)):
        if bound in spec:
            out.append(bad(spec[bound]))
    return out


OBJECTIVE_PARAMS = [(o, k) for o, cls in sorted(registered_objectives().items()) for k in cls.params_schema]
#: objective parameters without an upper bound in their schema, and why
UNBOUNDED_OBJECTIVE_PARAMS = {("alpa", "dim"): "at most the feature dimension: the objective's own check"}


def test_every_numeric_objective_parameter_is_bounded_on_both_sides():
    for name, key in OBJECTIVE_PARAMS:
        spec = registered_objectives()[name].params_schema[key]
        types = spec.get("type") if isinstance(spec.get("type"), list) else [spec.get("type")]
        if not {"number", "integer"} & set(types):
            continue
        assert "minimum" in spec or "exclusiveMinimum" in spec, f"{name}.{key}"
        assert ("maximum" in spec or "exclusiveMaximum" in spec or (name, key) in UNBOUNDED_OBJECTIVE_PARAMS), \
            f"{name}.{key} has no upper bound"


@pytest.mark.parametrize("objective,param", OBJECTIVE_PARAMS)
def test_every_objective_parameter_refuses_bad_values_with_its_key(objective, param):
    """In the objective's section and in a variant's params (the variant's key is named then)."""
    spec = registered_objectives()[objective].params_schema[param]
    variants = {"ce": {"objective": "ce"}, "v": {"objective": objective, "parent": "ce"}}
    passed = []
    for bad in _objective_bad_values(spec):
        if not _refused(_minimal(variants=variants, **{objective: {param: bad}}), f"benchmarks.b.{objective}.{param}"):
            passed.append(("section", bad))
        with_params = copy.deepcopy(variants)
        with_params["v"]["params"] = {param: bad}
        if not _refused(_minimal(variants=with_params), f"benchmarks.b.variants.v.params.{param}"):
            passed.append(("variant", bad))
    assert not passed, f"{objective}.{param} accepted {passed}"


def test_an_objective_checks_its_parameters_against_the_model():
    """ALPA's projection dimension against the feature dimension (resnet34: 512), from the section or a
    variant's params."""
    variants = {"ce": {"objective": "ce"}, "mode": {"objective": "alpa", "parent": "ce"}}
    assert _refused(_minimal(variants=variants, alpa={"dim": 513}), "benchmarks.b.alpa.dim")
    variants["mode"]["params"] = {"dim": 513}
    assert _refused(_minimal(variants=variants), "benchmarks.b.variants.mode.params.dim")
    variants["mode"]["params"] = {"dim": 512}
    validate_config(_minimal(variants=variants), SCHEMA)


def test_a_sweep_value_gets_the_objective_check():
    variants = {"ce": {"objective": "ce"}, "lff": {"objective": "lff", "parent": "ce"}}
    for bad in (1.5, float("inf"), "x"):
        sweeps = [{"variant": "lff", "param": "delta", "values": [0.1, bad]}]
        assert "benchmarks.b.sweeps" in (_error(_minimal(variants=variants, sweeps=sweeps)) or ""), bad


# ----------------------------------------------------------------------------- the schema's own keys
def _walk(schema):
    """(dotted key pattern, node) of every property of the config schema, objectives' sections
    included: '*' for a benchmark's name, '[]' for a list item."""
    out = []

    def resolve(node):
        while "$ref" in node:
            target = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def walk(node, path):
        node = resolve(node)
        out.append((".".join(path), node))
        for k, sub in node.get("properties", {}).items():
            walk(sub, path + [k])
        if isinstance(node.get("additionalProperties"), dict) and path in ([], ["benchmarks"]):
            walk(node["additionalProperties"], path + ["*"])
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + ["[]"])

    walk(schema, [])
    return out


def _types(node):
    return node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]


SCHEMA_FULL = full_schema(SCHEMA)
NUMERIC_KEYS = [(k, n) for k, n in _walk(SCHEMA_FULL) if {"integer", "number"} & set(_types(n))
                and k.startswith(("benchmarks.*", "downloads"))]
#: numbers whose domain is another key's (each sweep value is checked against its parameter's schema)
NOT_WALKED = {"benchmarks.*.sweeps.[].values.[]"}
#: numeric keys without an upper bound in the schema, and why none is needed or where it is checked
UNBOUNDED_ABOVE = {
    "downloads.max_bytes.*": "a size in bytes: any archive",
    "downloads.deadline_s": "a total time: any archive size",
    "benchmarks.*.dataset.ood_resize": "a resize side: any image size",
    "benchmarks.*.dataset.ood_crop": "at most ood_resize (checked)",
    "benchmarks.*.dataset.ood_max_images": "a cap: any set size",
    "benchmarks.*.dataset.train_size": "a resize side: any image size",
    "benchmarks.*.dataset.generator.*": "data sizes: any (image_size, train/test per class, ood_size)",
    "benchmarks.*.model.*": "network sizes: any (blocks, widths, depth, widen)",
    "benchmarks.*.*.epochs": "any count of epochs trains",
    "benchmarks.*.*.batch_size": "at most the ID training images (checked) or, for evaluation, any",
    "benchmarks.*.*.schedule.milestones.[]": "below the stage's epochs (checked)",
    "benchmarks.*.*.augment.crop_padding": "any padding: the crop is taken from the padded image",
    "benchmarks.*.*.augment.random_resized_crop.*": "a crop size and aspect ratios: any",
    "benchmarks.*.figures.tsne.per_group": "at most the ID test images (checked)",
    "benchmarks.*.figures.tsne.perplexity": "capped at a third of the points by the figure",
    "benchmarks.*.figures.tsne.max_iter": "any count of iterations",
    "benchmarks.*.figures.heatmaps.n_id": "at most the ID test images (checked)",
    "benchmarks.*.figures.heatmaps.per_ood": "at most the images of an OOD set the config fixes (checked)",
    "benchmarks.*.guard.chance_factor": "below the number of classes (checked)",
    "benchmarks.*.guard.min_feature_norm": "a norm: any scale",
    "benchmarks.*.guard.patience": "any count of epochs",
    "benchmarks.*.guard.min_new_module_change": "a relative change: any",
    "benchmarks.*.scorers.network.*": "job resources: any",
    "benchmarks.*.extraction.*": "a batch or crop size: any",
    "benchmarks.*.compute.*": "job resources: any",
    "benchmarks.*.alpa.dim": "at most the feature dimension (the objective's check)",
}


def _unbounded_reason(key: str):
    import fnmatch

    return next((why for pat, why in UNBOUNDED_ABOVE.items() if why and fnmatch.fnmatchcase(key, pat)), None)


def test_every_numeric_schema_key_has_bounds_or_a_reason():
    assert len(NUMERIC_KEYS) > 60
    missing_low = [k for k, n in NUMERIC_KEYS if k not in NOT_WALKED and "minimum" not in n
                   and "exclusiveMinimum" not in n]
    missing_high = [k for k, n in NUMERIC_KEYS if k not in NOT_WALKED and "maximum" not in n
                    and "exclusiveMaximum" not in n and _unbounded_reason(k) is None]
    assert not missing_low and not missing_high, (missing_low, missing_high)


def _set(cfg: dict, parts: list, value) -> None:
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    if "random_resized_crop" in parts:
        node.setdefault("size", 8)


def _schema_bad_values(node) -> list:
    types = _types(node)
    out = ["x", {"a": 1}] + ([] if "null" in types else [None]) + list(NONFINITE)
    if "integer" in types:
        out.append(float(node.get("minimum", 1)) + 1.0)  # 8.0 where 8 is meant
    step = 1 if "integer" in types else 1e-3
    for bound, bad in (("minimum", lambda v: v - step), ("exclusiveMinimum", lambda v: v),
                       ("maximum", lambda v: v + step), ("exclusiveMaximum", lambda v: v)):
        if bound in node:
            out.append(bad(node[bound]))
    return out


@pytest.mark.parametrize("key,node", [pytest.param(k, n, id=k) for k, n in NUMERIC_KEYS if k not in NOT_WALKED])
def test_every_numeric_schema_key_refuses_bad_values_with_its_key(key, node):
    parts = key.replace("*", "b").split(".")
    passed = []
    for bad in _schema_bad_values(node):
        value, expected, where = bad, ".".join(parts), parts
        if parts[-1] == "[]":  # a list of numbers: its first item bad
            where = parts[:-1]
            value = [bad, bad] if where[-1] in ("digit_scale", "crop_scale", "scale", "ratio") else [bad]
            expected = ".".join(where) + ".0"
        cfg = _minimal()
        if where[0] == "benchmarks":
            _set(cfg["benchmarks"]["b"], where[2:], value)
        else:
            _set(cfg, where, value)
        if not _refused(cfg, expected):
            passed.append(bad)
    assert not passed, f"{key} accepted {passed}"


NAME_KEYS = ["results_dir", "data_dir", "downloads.dir"]
BAD_PATHS = ["../x", "a/../b", "x/..", "..", "", "a b", "a\nb", "results\n", 3, ["x"]]
BAD_NAMES = ["../../../x", "a/b", "..", ".hidden", "-x", "", "a b", "a\\b", "x\n"]


def test_every_path_key_of_the_schema_is_walked():
    """The keys the walk below tries: every string the schema restricts to a safe path."""
    path_def = SCHEMA_FULL["$defs"]["path"]
    found = sorted(k for k, n in _walk(SCHEMA_FULL) if n.get("pattern") == path_def["pattern"] and k != "")
    assert found == sorted(NAME_KEYS)


@pytest.mark.parametrize("key", NAME_KEYS)
def test_directories_refuse_unsafe_paths(key):
    passed = []
    for bad in BAD_PATHS:
        cfg = _minimal()
        _set(cfg, key.split("."), bad)
        if not _refused(cfg, key):
            passed.append(bad)
    assert not passed, f"{key} accepted {passed}"
    for good in ("results", "/scratch/user/results", "./out", "a..b/c"):
        cfg = _minimal()
        _set(cfg, key.split("."), good)
        validate_config(cfg, SCHEMA)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_benchmark_and_variant_names_are_safe_path_components(bad):
    cfg = _minimal()
    cfg["benchmarks"][bad] = cfg["benchmarks"].pop("b")
    cfg["run"] = [bad]
    assert _refused(cfg, "benchmarks"), bad
    cfg = _minimal(variants={"ce": {"objective": "ce"}, bad: {"objective": "ce", "parent": "ce"}})
    assert _refused(cfg, "benchmarks.b.variants"), bad


def test_every_name_keyed_mapping_of_the_schema_is_walked():
    found = sorted(k for k, n in _walk(SCHEMA_FULL) if "propertyNames" in n)
    assert found == ["benchmarks", "benchmarks.*.variants"]


# ----------------------------------------------------------------------------- counts against the data
@pytest.mark.parametrize("extra,key", [
    ({"pretrain": {"batch_size": 4801}}, "benchmarks.b.pretrain.batch_size"),  # 600 x 8 training images
    ({"variants": {"ce": {"objective": "ce"}, "ft": {"objective": "ce", "parent": "ce"}},
      "finetune": {"batch_size": 4801}}, "benchmarks.b.finetune.batch_size"),
    ({"variants": {"ce": {"objective": "ce", "stage_overrides": {"batch_size": 5000}}}},
     "benchmarks.b.variants.ce.stage_overrides.batch_size"),
    ({"compute": {"train_gpus": 3}}, "benchmarks.b.pretrain.batch_size"),  # 128 images over 3 GPUs
    ({"figures": {"tsne": {"per_group": 801}}}, "benchmarks.b.figures.tsne.per_group"),  # 100 x 8 test images
    ({"figures": {"heatmaps": {"n_id": 801}}}, "benchmarks.b.figures.heatmaps.n_id"),
    ({"figures": {"heatmaps": {"per_ood": 501}}}, "benchmarks.b.figures.heatmaps.per_ood"),  # ood_size 500
])
def test_counts_against_the_data(extra, key):
    assert _refused(_minimal(**extra), key)


def test_counts_at_their_limits_and_defaults_that_cap():
    validate_config(_minimal(pretrain={"batch_size": 4800}, figures={"tsne": {"per_group": 800},
                                                                    "heatmaps": {"n_id": 800, "per_ood": 500}}),
                    SCHEMA)
    small = {"source": "embedded", "ood_sets": ["far"], "generator": {"test_per_class": 10, "num_classes": 2}}
    validate_config(_minimal(dataset=small), SCHEMA)  # t-SNE's default 300 points cap at the 20 test images


@pytest.mark.parametrize("extra,key", [
    ({"figures": {"heatmaps": {"variants": ["nope"]}}}, "benchmarks.b.figures.heatmaps.variants"),
    ({"variants": {"ce": {"objective": "ce", "label": ""}}}, "benchmarks.b.variants.ce.label"),
    ({"variants": {"ce": {"objective": "ce"}, "x": {"objective": "ce", "parent": "ce",
                                                     "stage_overrides": {"epochs": 8.0}}}},
     "benchmarks.b.variants.x.stage_overrides.epochs"),
    ({"variants": {"ce": {"objective": "ce"}, "x": {"objective": "ce", "parent": "ce",
                                                     "stage_overrides": {"lr": float("inf")}}}},
     "benchmarks.b.variants.x.stage_overrides.lr"),
    ({"seeds": [True]}, "benchmarks.b.seeds.0"),
    ({"finetune": {"epochs": True}}, "benchmarks.b.finetune.epochs"),
    ({"scorers": {"params": {"knn": {"k": True}}}}, "benchmarks.b.scorers.params.knn.k"),
])
def test_other_values_an_adversary_tries(extra, key):
    assert _refused(_minimal(**extra), key)


def test_duplicate_benchmarks_in_a_table_or_in_run():
    cfg = _minimal()
    cfg["tables"] = {"table1": ["b", "b"]}
    assert _refused(cfg, "tables.table1")
    cfg = _minimal()
    cfg["run"] = ["b", "b"]
    assert _refused(cfg, "run")


# ----------------------------------------------------------------------------- --config forms
def _snakemake_overrides(*args):
    """The overrides exactly as Snakemake 9 hands them to the Snakefile."""
    from snakemake.cli import parse_config

    return Overrides(parse_config(list(args)), list(args))


@pytest.mark.parametrize("arg,key", [
    ("lff={mu: 1e400}", "benchmarks.b.lff.mu"),  # YAML reads 1e400 as infinity
    ("lff={lambda: .nan}", "benchmarks.b.lff.lambda"),
    ("seeds=[0.0]", "benchmarks.b.seeds.0"),
    ("seeds=[0.0, 1.0]", "benchmarks.b.seeds.0"),
    ("finetune={epochs: 8.0}", "benchmarks.b.finetune.epochs"),
    ("finetune={batch_size: 32.0}", "benchmarks.b.finetune.batch_size"),
    ("finetune={lr: 1e400}", "benchmarks.b.finetune.lr"),
    ("variants={../x: {objective: ce}}", "benchmarks.b.variants"),
    ("results_dir=../x", "results_dir"),
    ("scorers={params: {energy: {temperature: 0}}}", "benchmarks.b.scorers.params.energy.temperature"),
    ("scorers={params: {knn: {k: 1e400}}}", "benchmarks.b.scorers.params.knn.k"),
    ("tables={ours: lfff}", "tables.ours"),
])
def test_config_forms_are_refused_with_the_key_and_the_override_named(arg, key):
    cfg = _minimal(variants={"ce": {"objective": "ce"}, "lff": {"objective": "lff", "parent": "ce"}})
    msg = _error(cfg, _snakemake_overrides(arg))
    assert msg is not None and f"key '{key}'" in msg and f"--config {arg}" in msg, msg


# ----------------------------------------------------------------------------- table roles
def test_a_misspelled_role_is_refused_for_the_benchmarks_run_builds():
    cfg = _minimal(variants={"ce": {"objective": "ce"}, "lff": {"objective": "lff", "parent": "ce"}})
    cfg["tables"] = {"ours": "lfff"}
    assert _refused(cfg, "tables.ours")
    cfg["tables"] = {"baseline": "cee"}
    assert _refused(cfg, "tables.baseline")
    cfg["tables"] = {"control": "ce_contrl"}
    assert _refused(cfg, "tables.control")
    # a role at its default may be missing: a benchmark that trains only the baseline
    validate_config(_minimal(), SCHEMA)


def test_the_sensitivity_figure_in_all_needs_the_control():
    variants = {"ce": {"objective": "ce"}, "lff": {"objective": "lff", "parent": "ce"}}
    sweeps = [{"variant": "lff", "param": "mu", "values": [0.5, 2.0]}]
    assert _refused(_minimal(variants=variants, sweeps=sweeps, figures={"sensitivity": {"in_all": True}}),
                    "tables.control")
    validate_config(_minimal(variants=variants, sweeps=sweeps), SCHEMA)  # built only when asked for


def test_a_paper_table_needs_its_roles_where_it_is_built():
    """One function for both places: at workflow start for the benchmarks `run` builds, and in the
    paper_table rule for a table asked for by name (its benchmarks must then be defined too)."""
    cfg = validate_config(_minimal(), SCHEMA)
    cfg["tables"]["table1"] = ["b", "nope"]
    problems = table_problems(cfg, asked=["table1"])
    assert any("key 'tables.table1'" in p and "['nope']" in p for p in problems)
    assert any("table1 needs the variants" in p and "'b'" in p for p in problems)
    cfg["tables"]["table2"] = ["b"]
    assert not any("nope" in p for p in table_problems(cfg, asked=["table2"]))
    cfg = _minimal()
    cfg["tables"] = {"table1": ["b"]}
    assert _refused(cfg, "tables.table1")  # `run` builds b: checked at start


# ----------------------------------------------------------------------------- YAML syntax
@pytest.mark.parametrize("text,line,column", [
    ("run: [b]\nbenchmarks:\n  b: {dataset: [a, b}\n", 3, 21),  # the '}'
    ("run: [b]\nbenchmarks:\n  b:\n    dataset: {source: embedded\n  ood: 1\n", 5, 6),
    ("run: [b]\n\tbenchmarks: {}\n", 2, 1),
])
def test_a_yaml_syntax_error_names_its_file_line_and_column(tmp_path, text, line, column):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    for load in (load_yaml, lambda p: load_configfiles([ROOT / "config.yaml", p]), lambda p: load_config(p, SCHEMA)):
        with pytest.raises(ConfigError) as exc:
            load(bad)
        msg = str(exc.value)
        assert msg.startswith(f"{bad}:{line}:") and "not valid YAML" in msg and f"line {line}" in msg, msg
    assert f"{bad}:{line}:{column}:" in msg


def test_a_config_file_that_is_not_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        load_yaml(bad)


def test_param_describes_its_domain():
    assert Param("int", 1, 65536).describe() == "an integer in [1, 65536]"
    assert Param("float", 0, 100, min_open=True, null=True).describe() == "null or a finite number in (0, 100]"
    assert Param("float", 0, 100, max_open=True).problem(100) is not None
    assert Param("int", 1).problem(8.0) == "8.0 is not an integer: must be an integer >= 1"
    assert Param("int", 1).problem(True) is not None and Param("float").problem(math.nan) is not None
