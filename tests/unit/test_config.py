"""The configuration schema: the shipped config, paper defaults, and clear errors."""

import copy
from pathlib import Path

import pytest
import yaml

from lffood.config import benchmark, load_config, load_yaml, validate_config
from lffood.errors import ConfigError
from lffood.variants import benchmark_scorers

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "src" / "lffood" / "resources" / "config.schema.yaml"
CONFIG = ROOT / "config.yaml"


def _minimal(**bench_extra):
    return {"run": ["b"], "benchmarks": {"b": {"dataset": {"source": "embedded", "ood_sets": ["far"]}, **bench_extra}}}


def _error(cfg) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg, SCHEMA)
    return str(exc.value)


def test_shipped_config_validates_with_defaults():
    cfg = load_config(CONFIG, SCHEMA)
    b = cfg["benchmarks"]["embedded"]
    assert cfg["run"] == ["embedded"]
    assert b["guard"]["patience"] == 3
    assert b["guard"]["enabled"] is True
    assert b["extraction"]["batch_size"] == 512
    assert b["amp"] is True
    assert b["deterministic"] is True
    # explicit values are kept
    assert b["lff"] == {"delta": 0.1, "mu": 1.0, "lambda": 0.2}
    assert b["finetune"]["epochs"] == 8
    assert b["finetune"]["nesterov"] is False  # default filled inside an explicit section
    assert b["pretrain"]["momentum"] == 0.9
    assert b["model"] == {"arch": "resnet", "blocks": [1, 1, 1], "widths": [16, 32, 64]}
    assert benchmark(cfg, "embedded") is b


def test_minimal_config_gets_paper_defaults():
    cfg = validate_config(_minimal(), SCHEMA)
    assert cfg["benchmarks"]["b"]["seeds"] == [0, 1, 2]
    assert cfg["device"] == "auto"
    b = cfg["benchmarks"]["b"]
    ft = b["finetune"]
    assert ft["optimizer"] == "sgd"
    assert ft["lr"] == 0.1
    assert ft["momentum"] == 0.9
    assert ft["weight_decay"] == pytest.approx(1e-4)
    assert ft["epochs"] == 30
    assert ft["schedule"] == {"type": "step", "milestones": [15], "gamma": 0.1}
    assert ft["augment"]["color_jitter"] == 0.0
    assert b["lff"] == {"delta": 0.1, "mu": 1.0, "lambda": 1.0}
    assert b["model"]["arch"] == "resnet34"
    assert b["dataset"]["seed"] == 0
    assert b["scorers"]["names"] is None  # every registered scorer, in the registry's table order:
    assert benchmark_scorers(b) == ["msp", "odin", "mahalanobis", "energy", "vim", "knn", "dice", "react",
                                    "dice_react", "featurenorm", "line", "csd", "ssod", "ssod_global", "ssod_local",
                                    "cider_knn", "npos_knn", "csi", "ssd"]
    assert b["scorers"]["params"] == {}
    assert b["scorers"]["network"]["batch_size"] == 256
    # the pretrain default section is itself completed with the stage defaults
    pt = b["pretrain"]
    assert pt["schedule"]["type"] == "cosine" and pt["epochs"] == 100 and pt["weight_decay"] == 0.0005
    assert pt["augment"]["color_jitter"] == 0.4 and pt["lr"] == 0.1


def test_minimal_config_without_run_names_the_run_key():
    """'run' defaults to [embedded]; a config that defines only another benchmark must say so clearly."""
    cfg = _minimal()
    del cfg["run"]
    msg = _error(cfg)
    assert "'run'" in msg and "embedded" in msg


def test_defaults_are_not_shared_between_benchmarks():
    cfg = _minimal()
    cfg["benchmarks"]["c"] = copy.deepcopy(cfg["benchmarks"]["b"])
    out = validate_config(cfg, SCHEMA)
    out["benchmarks"]["b"]["finetune"]["schedule"]["milestones"].append(20)
    assert out["benchmarks"]["c"]["finetune"]["schedule"]["milestones"] == [15]
    again = validate_config(_minimal(), SCHEMA)
    assert again["benchmarks"]["b"]["finetune"]["schedule"]["milestones"] == [15]


def test_validate_does_not_mutate_input():
    cfg = _minimal(lff={"delta": 0.2})
    before = copy.deepcopy(cfg)
    out = validate_config(cfg, SCHEMA)
    assert cfg == before
    assert out["benchmarks"]["b"]["lff"]["mu"] == 1.0
    assert "mu" not in cfg["benchmarks"]["b"]["lff"]


def test_negative_delta_names_dotted_key():
    msg = _error(_minimal(lff={"delta": -0.1}))
    assert "benchmarks.b.lff.delta" in msg


def test_misspelled_key_is_named():
    msg = _error(_minimal(lff={"detla": 0.1}))
    assert "detla" in msg
    assert "benchmarks.b.lff" in msg


def test_milestone_not_below_epochs():
    msg = _error(_minimal(finetune={"epochs": 10, "schedule": {"milestones": [5, 10]}}))
    assert "benchmarks.b.finetune.schedule.milestones" in msg
    assert "[10]" in msg
    # a cosine schedule ignores milestones
    validate_config(_minimal(finetune={"epochs": 10, "schedule": {"type": "cosine", "milestones": [15]}}), SCHEMA)


def test_unknown_scorer():
    msg = _error(_minimal(scorers={"names": ["msp", "mahalanobs"]}))
    assert "benchmarks.b.scorers.names" in msg and "mahalanobs" in msg


def test_unknown_scorer_under_params():
    msg = _error(_minimal(scorers={"params": {"vimm": {"dim": 3}}}))
    assert "benchmarks.b.scorers.params.vimm" in msg and "unknown scorer" in msg and "vim" in msg


def test_unknown_scorer_parameter_names_key_and_known_ones():
    msg = _error(_minimal(scorers={"params": {"knn": {"K": 50}}}))
    assert "benchmarks.b.scorers.params.knn" in msg and "'K'" in msg and "'k'" in msg and "chunk_size" in msg


@pytest.mark.parametrize("scorer,params,needle", [
    ("react", {"percentile": 150}, "percentile"),
    ("line", {"p_w": -1}, "p_w"),
    ("knn", {"k": 0}, "knn.k'"),
    ("vim", {"dim": 2.5}, "vim.dim'"),
    ("featurenorm", {"jigsaw_grid": 1}, "jigsaw_grid"),
    ("odin", {"temperature": 0}, "temperature"),
])
def test_out_of_range_scorer_parameter(scorer, params, needle):
    msg = _error(_minimal(scorers={"params": {scorer: params}}))
    assert f"benchmarks.b.scorers.params.{scorer}" in msg and needle in msg


def test_scorer_network_section():
    msg = _error(_minimal(scorers={"network": {"batch_size": 0}}))
    assert "benchmarks.b.scorers.network.batch_size" in msg


def test_run_names_undefined_benchmark():
    cfg = _minimal()
    cfg["run"] = ["b", "cifar10"]
    msg = _error(cfg)
    assert "'run'" in msg and "cifar10" in msg


def test_duplicate_ood_sets():
    cfg = _minimal()
    cfg["benchmarks"]["b"]["dataset"]["ood_sets"] = ["far", "far"]
    assert "benchmarks.b.dataset.ood_sets" in _error(cfg)


def test_top_level_seeds_say_where_they_moved():
    """`seeds` was a top-level key; a config file that still has one is told where it went."""
    msg = _error({**_minimal(), "seeds": [0]})
    assert "key 'seeds'" in msg and "benchmarks.<name>.seeds" in msg and "--config seeds=" in msg
    # on the command line it sets every benchmark in `run`
    cfg = validate_config({**_minimal(), "run": ["b"]}, SCHEMA, overrides={"seeds": ["4"]})
    assert cfg["benchmarks"]["b"]["seeds"] == [4] and "seeds" not in cfg


def test_type_errors_and_missing_required():
    assert "benchmarks.b.finetune.epochs" in _error(_minimal(finetune={"epochs": "ten"}))
    assert "benchmarks.b.seeds" in _error(_minimal(seeds=[-1]))
    cfg = _minimal()
    del cfg["benchmarks"]["b"]["dataset"]["ood_sets"]
    assert "benchmarks.b.dataset" in _error(cfg)
    assert "<top level>" in _error({"run": ["b"]})


def test_all_problems_reported_at_once():
    msg = _error(_minimal(lff={"delta": -1.0, "mu": -1.0}))
    assert "benchmarks.b.lff.delta" in msg and "benchmarks.b.lff.mu" in msg
    assert "2 problem(s)" in msg


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", SCHEMA)
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmarks: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_yaml(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(_minimal(lff={"delta": 2.0})))
    with pytest.raises(ConfigError) as exc:
        load_config(wrong, SCHEMA)
    assert str(wrong) in str(exc.value) and "benchmarks.b.lff.delta" in str(exc.value)


def test_benchmark_lookup_error():
    cfg = validate_config(_minimal(), SCHEMA)
    with pytest.raises(ConfigError, match="nope"):
        benchmark(cfg, "nope")


def test_unknown_embedded_ood_set_is_named():
    from lffood.config import validate_config

    cfg = {"run": ["b"], "benchmarks": {"b": {"dataset": {"source": "embedded", "ood_sets": ["far", "svhn"]}}}}
    with pytest.raises(ConfigError, match=r"benchmarks\.b\.dataset\.ood_sets.*svhn"):
        validate_config(cfg, SCHEMA)


# ----------------------------------------------------------------------------- checks before any job
# Each configuration below used to pass validation and fail inside a job (after Snakemake had removed
# the outputs that job replaces); each is now an error naming its key and the fix.
@pytest.mark.parametrize("model,needle", [
    ({"arch": "resnet", "blocks": [1, 1]}, "key 'benchmarks.b.model': arch 'resnet' needs ['widths']"),
    ({"arch": "resnet"}, "needs ['blocks', 'widths']"),
    ({"arch": "resnet", "blocks": [1, 1], "widths": [8, 16, 32]},
     "key 'benchmarks.b.model.widths': 3 entries, but blocks has 2 ([1, 1]); give one width per stage"),
    ({"arch": "resnet34", "blocks": [1, 1, 1]}, "key 'benchmarks.b.model.blocks': arch 'resnet34' does not read it"),
    ({"arch": "resnet50", "widen": 2}, "key 'benchmarks.b.model.widen': arch 'resnet50' does not read it"),
    ({"arch": "resnet", "blocks": [1], "widths": [8], "dropout": 0.1}, "model.dropout': arch 'resnet' does not"),
    ({"arch": "wrn", "depth": 20}, "key 'benchmarks.b.model.depth': 20 is not 6n + 4"),
])
def test_model_sections_that_cannot_be_built(model, needle):
    assert needle in _error(_minimal(model=model))


@pytest.mark.parametrize("model", [{"arch": "resnet", "blocks": [1, 2], "widths": [8, 16]}, {"arch": "resnet18"},
                                   {"arch": "wrn", "depth": 16, "widen": 2, "dropout": 0.3},
                                   {"arch": "wrn28_10", "dropout": 0.0}, {"arch": "resnet50"}])
def test_model_sections_that_build(model):
    validate_config(_minimal(model=model), SCHEMA)


def test_model_shape_and_presets_match_the_built_networks():
    """config.py knows each backbone's block count and feature width without torch (the Snakefile
    validates at parse time); they must be what lffood.models builds."""
    from lffood.config import RESNET_PRESETS, model_shape
    from lffood.models.build import ARCHS, build_model
    from lffood.models.resnet import PRESETS

    assert RESNET_PRESETS == PRESETS
    schema = yaml.safe_load(SCHEMA.read_text())
    assert set(schema["$defs"]["benchmark"]["properties"]["model"]["properties"]["arch"]["enum"]) == set(ARCHS)
    for model in ({"arch": "resnet", "blocks": [1, 2], "widths": [4, 8]}, {"arch": "resnet18"}, {"arch": "resnet34"},
                  {"arch": "wrn", "depth": 10, "widen": 1}, {"arch": "wrn28_10"}, {"arch": "resnet50"}):
        net = build_model(model, 3)
        assert model_shape(model) == (len(net.blocks()), net.feature_dim), model


def test_data_facts_match_the_generator_and_the_registries():
    from lffood.config import EMBEDDED_DEFAULTS, id_data
    from lffood.data import embedded, sources
    from lffood.names import OOD_SETS_BY_SOURCE, SOURCES

    assert EMBEDDED_DEFAULTS == {k: embedded.DEFAULTS[k] for k in EMBEDDED_DEFAULTS}
    assert id_data({"source": "embedded", "generator": {"num_classes": 3}})["train"] == 3 * 600
    schema = yaml.safe_load(SCHEMA.read_text())
    ds = schema["$defs"]["benchmark"]["properties"]["dataset"]["properties"]
    assert set(ds["source"]["enum"]) == set(SOURCES) == set(OOD_SETS_BY_SOURCE)
    assert set(ds["class_list"]["enum"]) == set(sources.CLASS_LISTS)
    assert set(schema["properties"]["downloads"]["properties"]["urls"]["properties"]) == set(sources.ARCHIVES)


def _cifar(**bench_extra):
    return {"run": ["c"], "benchmarks": {"c": {"dataset": {"source": "cifar10", "ood_sets": ["svhn"]},
                                               **bench_extra}}}


@pytest.mark.parametrize("cfg,needle", [
    # the embedded default: 600 x 8 = 4800 training images
    (_minimal(scorers={"params": {"knn": {"k": 4801}}}),
     "key 'benchmarks.b.scorers.params.knn.k': 4801 is larger than the 4800 ID training images (the generator's "
     "train_per_class x num_classes = 600 x 8)"),
    (_minimal(dataset={"source": "embedded", "ood_sets": ["far"], "generator": {"train_per_class": 10,
                                                                              "num_classes": 2}}),
     "knn.k': 50 is larger than the 20 ID training images"),  # KNN's default k
    (_cifar(scorers={"params": {"knn": {"k": 50001}}}), "knn.k': 50001 is larger than the 50000 ID training images "
                                                        "(CIFAR-10's training split)"),
    (_minimal(scorers={"params": {"csd": {"k": 6 * 4800 + 1}}}), "csd.k': 28801 is larger than the 28800 vectors"),
    (_minimal(scorers={"params": {"csd": {"k": 4801, "bank": "per_type"}}}), "csd.k': 4801 is larger than the 4800"),
    (_minimal(scorers={"params": {"vim": {"dim": 64}}}, model={"arch": "resnet", "blocks": [1], "widths": [64]}),
     "key 'benchmarks.b.scorers.params.vim.dim': 64 must lie below the feature dimension 64"),
    (_cifar(scorers={"params": {"vim": {"dim": 512}}}), "vim.dim': 512 must lie below the feature dimension 512 of "
                                                        "model.arch 'resnet34'"),
    (_cifar(scorers={"params": {"featurenorm": {"block": 16}}}),
     "key 'benchmarks.c.scorers.params.featurenorm.block': 16 is not a block of model.arch 'resnet34', which has 16"),
    (_minimal(scorers={"params": {"featurenorm": {"jigsaw_grid": 17}}}),
     "featurenorm.jigsaw_grid': 17 is larger than the 16 x 16 training images"),
])
def test_scorer_parameters_bounded_by_the_data_or_the_backbone(cfg, needle):
    assert needle in _error(cfg)


def test_scorer_bounds_apply_where_known_and_to_scorers_that_run():
    at_limit = {"knn": {"k": 4800}, "csd": {"k": 28800}, "vim": {"dim": 511}, "featurenorm": {"block": 15,
                                                                                               "jigsaw_grid": 16}}
    validate_config(_minimal(model={"arch": "resnet34"}, scorers={"params": at_limit}), SCHEMA)
    # not run: the parameter cannot fail a job
    validate_config(_minimal(scorers={"names": ["msp", "react"], "params": {"knn": {"k": 10 ** 6}}}), SCHEMA)
    # ImageNet-100's training set is known only once built
    validate_config({"run": ["i"], "benchmarks": {"i": {"dataset": {"source": "imagenet100", "ood_sets": ["sun"]},
                                                        "scorers": {"params": {"knn": {"k": 10 ** 6}}}}}}, SCHEMA)


@pytest.mark.parametrize("cfg,needle", [
    (_minimal(guard={"chance_factor": 8}), "key 'benchmarks.b.guard.chance_factor': 8 / 8 classes >= 1"),
    (_cifar(guard={"chance_factor": 10.0}), "chance_factor': 10.0 / 10 classes >= 1"),
    (_minimal(dataset={"source": "embedded", "ood_sets": ["far"], "generator": {"test_per_class": 9,
                                                                              "num_classes": 2}}),
     "key 'benchmarks.b.dataset.generator.test_per_class': 9 x 2 classes = 18 ID test images; FPR95 needs at least 20"),
    (_minimal(dataset={"source": "embedded", "ood_sets": ["far"], "generator": {"crop_scale": [0.3, 0.1]}}),
     "key 'benchmarks.b.dataset.generator.crop_scale': [0.3, 0.1] is not [min, max]"),
    (_minimal(finetune={"augment": {"random_resized_crop": {"size": 8, "scale": [0.9, 0.2]}}}),
     "key 'benchmarks.b.finetune.augment.random_resized_crop.scale': [0.9, 0.2] is not [min, max]"),
    (_minimal(pretrain={"augment": {"random_resized_crop": {"size": 8, "ratio": [1.5, 0.5]}}}),
     "pretrain.augment.random_resized_crop.ratio': [1.5, 0.5] is not [min, max]"),
    (_minimal(finetune={"nesterov": True, "momentum": 0.0}), "key 'benchmarks.b.finetune.nesterov': Nesterov"),
    (_minimal(pretrain={"nesterov": True, "optimizer": "adamw"}), "optimizer is 'adamw'"),
    (_minimal(figures={"tsne": {"ood_set": "textures"}}),
     "key 'benchmarks.b.figures.tsne.ood_set': 'textures' is not one of the benchmark's OOD sets ['far']"),
    (_minimal(figures={"tsne": {"variants": ["ce", "lff"]}}),
     "key 'benchmarks.b.figures.tsne.variants': ['lff'] are not variants of this benchmark (['ce'])"),
])
def test_cross_key_constraints(cfg, needle):
    assert needle in _error(cfg)


def test_cross_key_constraints_accept_their_limits():
    validate_config(_minimal(guard={"chance_factor": 7.9}), SCHEMA)
    validate_config(_minimal(guard={"chance_factor": 8, "enabled": False}), SCHEMA)
    validate_config(_minimal(dataset={"source": "embedded", "ood_sets": ["far"],
                                      "generator": {"test_per_class": 10, "num_classes": 2,
                                                    "crop_scale": [0.2, 0.2]}}), SCHEMA)
    validate_config(_minimal(finetune={"nesterov": True}), SCHEMA)  # sgd with momentum 0.9
    cfg = validate_config(_minimal(figures={"tsne": {"ood_set": "far", "variants": ["ce"]}}), SCHEMA)
    assert cfg["benchmarks"]["b"]["figures"] == {  # the rest from the schema's defaults
        "tsne": {"ood_set": "far", "variants": ["ce"], "per_group": 300, "seed": 0, "random_state": 0,
                 "perplexity": 30.0, "max_iter": 1000},
        "heatmaps": {"n_id": 2, "per_ood": 1, "seed": 0, "variants": None},
        "monitor": {"delta": None},
        "sensitivity": {"in_all": False, "paper_reference": None}}


def test_variant_stage_overrides_get_the_stage_checks():
    """A variant's own epochs against the stage's milestones; a problem of the stage section itself is
    reported once, at the section."""
    variants = {"ce": {"objective": "ce"}, "short": {"objective": "ce", "parent": "ce",
                                                     "stage_overrides": {"epochs": 10}}}
    msg = _error(_minimal(variants=variants))  # finetune: 30 epochs, milestone 15
    assert ("key 'benchmarks.b.variants.short.stage_overrides': finetune.schedule.milestones with these "
            "overrides: [15] not below epochs=10") in msg
    variants["short"]["stage_overrides"] = {"epochs": 10, "schedule": {"milestones": [5]}}
    validate_config(_minimal(variants=variants), SCHEMA)
    variants["short"]["stage_overrides"] = {"batch_size": 8}
    msg = _error(_minimal(variants=variants, finetune={"epochs": 10}))
    assert "benchmarks.b.finetune.schedule.milestones" in msg and "variants.short" not in msg


# ----------------------------------------------------------------------------- the schema's value domains
def _numeric_keys():
    """(dotted key pattern, schema) of every number in the config schema, objectives' sections
    included: '*' for a name, '[]' for a list item."""
    from lffood.config import full_schema

    schema = full_schema(SCHEMA)
    out = []

    def walk(node, path):
        if "$ref" in node:
            node = {**schema["$defs"][node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        types = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
        if {"integer", "number"} & set(types):
            out.append((".".join(path), node))
        for k, sub in node.get("properties", {}).items():
            walk(sub, path + [k])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + ["*"])
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + ["[]"])
        for alt in node.get("oneOf", []):
            walk(alt, path)

    walk(schema, [])
    return out


#: numbers without a bound of their own: each value is checked against the swept parameter's schema
UNBOUNDED = {"benchmarks.*.sweeps.[].values.[]"}


def test_every_number_in_the_schema_has_a_lower_bound():
    keys = _numeric_keys()
    assert len(keys) > 60  # the walk reaches the stages, the benchmark sections and the objectives
    missing = [k for k, node in keys if k not in UNBOUNDED and "minimum" not in node and "exclusiveMinimum" not in node]
    assert not missing, f"numeric keys without a lower bound: {missing}"


def _bound_cases():
    cases = []
    for key, node in _numeric_keys():
        if key in UNBOUNDED:
            continue
        step = 1 if node.get("type") == "integer" or "integer" in node.get("type", []) else 0.001
        for bound, bad in (("minimum", lambda v: v - step), ("exclusiveMinimum", lambda v: v),
                           ("maximum", lambda v: v + step), ("exclusiveMaximum", lambda v: v)):
            if bound in node:
                cases.append(pytest.param(key, bad(node[bound]), id=f"{key}-{bound}"))
    return cases


@pytest.mark.parametrize("key,bad", _bound_cases())
def test_every_bound_is_enforced_with_the_key_named(key, bad):
    parts = key.replace("*", "b").split(".")
    value, expected = bad, ".".join(parts)
    if parts[-1] == "[]":  # a list of numbers (seeds, milestones, scale pairs): its first item out of range
        parts = parts[:-1]
        value = [bad, bad] if parts[-1] in ("digit_scale", "crop_scale", "scale", "ratio") else [bad]
        expected = ".".join(parts) + ".0"
    cfg = _minimal()
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    if "random_resized_crop" in parts:
        node.setdefault("size", 8)
    assert f"key '{expected}': {bad!r} is " in _error(cfg)


@pytest.mark.parametrize("cfg,key", [
    (_minimal(seeds=[2 ** 32]), "benchmarks.b.seeds.0"),  # np.random.seed takes at most 2^32 - 1
    (_minimal(dataset={"source": "embedded", "ood_sets": ["far"], "seed": 2 ** 32}), "benchmarks.b.dataset.seed"),
    (_minimal(model={"arch": "wrn28_10", "dropout": 1.0}), "benchmarks.b.model.dropout"),  # drops everything
    ({**_minimal(), "tables": {"table1": []}}, "tables.table1"),  # a table without benchmarks
    (_minimal(variants={"ce": {"objective": "ce", "scorers": []}}), "benchmarks.b.variants.ce.scorers"),
])
def test_bounds_added_by_the_audit(cfg, key):
    assert f"key '{key}'" in _error(cfg)


def test_cuda_on_a_host_without_one_is_named_before_any_job():
    """The Snakefile calls this before the first job of a local run (tests/unit/test_overrides.py runs it)."""
    from lffood.config import Overrides, check_local_device

    def never():
        raise AssertionError("CUDA is only looked for when device is cuda (importing torch costs seconds)")

    check_local_device({"device": "auto"}, cuda_available=never)
    check_local_device({"device": "cpu"}, cuda_available=never)
    check_local_device({"device": "cuda"}, cuda_available=lambda: True)
    with pytest.raises(ConfigError) as exc:
        check_local_device({"device": "cuda"}, "config.yaml", cuda_available=lambda: False)
    msg = str(exc.value)
    assert msg.startswith("config.yaml: key 'device': 'cuda', but no CUDA device is visible on this host")
    assert "device: auto" in msg and "cpu" in msg and "GPU node" in msg and "no job has started" in msg
    with pytest.raises(ConfigError, match=r"^--config device=cuda: key 'device'"):
        check_local_device({"device": "cuda"}, "config.yaml", Overrides({"device": "cuda"}, ["device=cuda"]),
                           cuda_available=lambda: False)


def test_seeds_are_a_list_or_a_number_of_seeds():
    """`seeds: N` is seeds 0 .. N-1, normalised once at load; a list names them; errors name the key."""
    assert validate_config(_minimal(seeds=3), SCHEMA)["benchmarks"]["b"]["seeds"] == [0, 1, 2]
    assert validate_config(_minimal(seeds=[4, 7]), SCHEMA)["benchmarks"]["b"]["seeds"] == [4, 7]
    # on the command line, either form for every benchmark in `run`
    cfg = validate_config({**_minimal(), "run": ["b"]}, SCHEMA, overrides={"seeds": "5"})
    assert cfg["benchmarks"]["b"]["seeds"] == [0, 1, 2, 3, 4]
    assert "key 'benchmarks.b.seeds': 0 is less than the minimum of 1" in _error(_minimal(seeds=0))
    assert "key 'benchmarks.b.seeds.0': -1 is less than" in _error(_minimal(seeds=[-1]))
    msg = _error(_minimal(seeds="two"))
    assert "key 'benchmarks.b.seeds': 'two' is neither a list" in msg and "number of seeds" in msg
    # the shipped config's embedded benchmarks (one anchor) train two seeds, written as a number
    shipped = load_config(CONFIG, SCHEMA)
    assert load_yaml(CONFIG)["benchmarks"]["embedded"]["seeds"] == 2
    assert shipped["benchmarks"]["embedded"]["seeds"] == shipped["benchmarks"]["embedded_baselines"]["seeds"] == [0, 1]


def test_stats_section_defaults_and_bounds():
    assert validate_config(_minimal(), SCHEMA)["stats"] == {"bootstrap": 1000, "level": 0.95, "seed": 0}
    assert load_config(CONFIG, SCHEMA)["stats"] == {"bootstrap": 1000, "level": 0.95, "seed": 0}
    msg = _error({**_minimal(), "stats": {"bootstrap": 99}})
    assert "key 'stats.bootstrap': 99 is less than the minimum of 100" in msg
    assert "key 'stats.level'" in _error({**_minimal(), "stats": {"level": 1.0}})
