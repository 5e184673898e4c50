"""Config keys for the paper benchmarks: suites as `run`, paper-table names, a CE checkpoint to
start from, the backbones, ImageNet crops, the learning rate of freshly initialised modules, and
each method's protocol as config.yaml ships it."""

import copy
from pathlib import Path

import pytest

from lffood.config import load_config, validate_config
from lffood.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "src" / "lffood" / "resources" / "config.schema.yaml"


def _cfg(run, **extra):
    bench = {"dataset": {"source": "embedded", "ood_sets": ["far"]}}
    return {"run": run, "benchmarks": {"a": bench, "b": dict(bench)}, **extra}


def test_run_accepts_a_suite_or_a_benchmark_name():
    cfg = validate_config(_cfg("both", suites={"both": ["a", "b"]}), SCHEMA)
    assert cfg["run"] == ["a", "b"]
    assert validate_config(_cfg("b"), SCHEMA)["run"] == ["b"]
    with pytest.raises(ConfigError, match=r"key 'run': 'nope' is neither a suite"):
        validate_config(_cfg("nope", suites={"both": ["a"]}), SCHEMA)


def test_suite_naming_an_undefined_benchmark():
    with pytest.raises(ConfigError, match=r"key 'suites.s': \['zz'\]"):
        validate_config(_cfg(["a"], suites={"s": ["a", "zz"]}), SCHEMA)


def test_table_defaults_and_name_clash():
    cfg = validate_config(_cfg(["a"]), SCHEMA)
    assert cfg["tables"]["table1"] == ["cifar10_resnet34", "cifar100_resnet34"]
    assert cfg["tables"]["table3"] == ["imagenet100_resnet50"]
    assert (cfg["tables"]["baseline"], cfg["tables"]["control"], cfg["tables"]["ours"]) == ("ce", "ce_control", "lff")
    bad = _cfg(["a"])
    bad["benchmarks"]["table2"] = bad["benchmarks"]["a"]
    with pytest.raises(ConfigError, match="benchmarks.table2.*paper table"):
        validate_config(bad, SCHEMA)


def test_a_stage_checkpoint_points_to_the_variant_key():
    cfg = validate_config(_cfg(["a"]), SCHEMA)
    assert cfg["benchmarks"]["a"]["variants"] == {"ce": {"objective": "ce", "parent": None, "stage_overrides": {},
                                                         "params": {}, "checkpoint": None, "init": None,
                                                         "scorer": "react", "scorers": None}}
    for stage in ("pretrain", "finetune"):
        bad = _cfg(["a"])
        bad["benchmarks"]["a"][stage] = {"checkpoint": "x.pt"}
        with pytest.raises(ConfigError, match=rf"{stage}.checkpoint.*variants.<name>.checkpoint"):
            validate_config(bad, SCHEMA)


def test_backbone_and_crop_keys():
    cfg = _cfg(["a"])
    cfg["benchmarks"]["a"].update(model={"arch": "wrn28_10", "dropout": 0.0},
                                  finetune={"augment": {"random_resized_crop": {"size": 224}}},
                                  extraction={"center_crop": 224})
    out = validate_config(cfg, SCHEMA)["benchmarks"]["a"]
    assert out["finetune"]["augment"]["random_resized_crop"] == {"size": 224, "scale": [0.08, 1.0],
                                                                  "ratio": [0.75, 1.3333333333]}
    assert out["pretrain"]["augment"]["random_resized_crop"] is None
    assert out["extraction"]["center_crop"] == 224
    cfg["benchmarks"]["a"]["model"] = {"arch": "vgg"}
    with pytest.raises(ConfigError, match="benchmarks.a.model.arch"):
        validate_config(cfg, SCHEMA)


# ----------------------------------------------------------------------------- freshly initialised modules
METHODS = {"ce": {"objective": "ce"}, "lff": {"objective": "lff", "parent": "ce"},
           "ssod": {"objective": "ssod", "parent": "ce", "scorer": "ssod"},
           "mode": {"objective": "alpa", "parent": "ce", "scorer": "csd"}}


def _methods(**sections):
    cfg = _cfg(["a"])
    cfg["benchmarks"]["a"].update(variants=copy.deepcopy(METHODS), **sections)
    return cfg


@pytest.mark.parametrize("section", ["ssod", "alpa"])
def test_new_module_lr_is_validated_with_its_key(section):
    assert validate_config(_methods(**{section: {"new_module_lr": None}}), SCHEMA)["benchmarks"]["a"][section][
        "new_module_lr"] is None
    assert validate_config(_methods(), SCHEMA)["benchmarks"]["a"][section]["new_module_lr"] is None  # the default
    assert validate_config(_methods(**{section: {"new_module_lr": 0.1}}), SCHEMA)["benchmarks"]["a"][section][
        "new_module_lr"] == 0.1
    for bad in (0, -0.1, "fast"):
        with pytest.raises(ConfigError, match=rf"benchmarks.a.{section}.new_module_lr"):
            validate_config(_methods(**{section: {"new_module_lr": bad}}), SCHEMA)
    cfg = _methods()
    variant = "ssod" if section == "ssod" else "mode"
    cfg["benchmarks"]["a"]["variants"][variant]["params"] = {"new_module_lr": 0}
    with pytest.raises(ConfigError, match=rf"variants.{variant}.params.new_module_lr"):
        validate_config(cfg, SCHEMA)
    for other in ("lff", "logitnorm"):  # objectives without fresh modules have no such key
        with pytest.raises(ConfigError, match="new_module_lr"):
            validate_config(_methods(**{other: {"new_module_lr": 0.1}}), SCHEMA)


def test_guard_min_new_module_change_is_checked_and_not_filled_in():
    assert "min_new_module_change" not in validate_config(_methods(), SCHEMA)["benchmarks"]["a"]["guard"]
    assert validate_config(_methods(guard={"min_new_module_change": 0.05}), SCHEMA)["benchmarks"]["a"]["guard"][
        "min_new_module_change"] == 0.05
    with pytest.raises(ConfigError, match="guard.min_new_module_change"):
        validate_config(_methods(guard={"min_new_module_change": -1}), SCHEMA)


def test_new_module_lr_changes_only_its_methods_training_job():
    """A null new_module_lr (the default) is not part of the training job's params, so models trained before
    the key existed are not rerun; a value is, for the variants of that objective only."""
    from lffood.variants import training_spec

    base = validate_config(_methods(), SCHEMA)["benchmarks"]["a"]
    specs = {v: training_spec(base, v) for v in METHODS}
    assert all("new_module_lr" not in s["params"] for s in specs.values())
    ssod = validate_config(_methods(ssod={"new_module_lr": 0.1}), SCHEMA)["benchmarks"]["a"]
    assert training_spec(ssod, "ssod")["params"]["new_module_lr"] == 0.1
    assert all(training_spec(ssod, v) == specs[v] for v in METHODS if v != "ssod")
    cfg = _methods()
    cfg["benchmarks"]["a"]["variants"]["mode"]["params"] = {"new_module_lr": 0.2}
    mode = validate_config(cfg, SCHEMA)["benchmarks"]["a"]
    assert training_spec(mode, "mode")["params"]["new_module_lr"] == 0.2
    assert all(training_spec(mode, v) == specs[v] for v in METHODS if v != "mode")


# ----------------------------------------------------------------------------- the shipped protocols
SHIPPED = load_config(ROOT / "config.yaml", SCHEMA)["benchmarks"]
CIFAR = ["cifar10_resnet34", "cifar100_resnet34", "cifar10_wrn28_10", "cifar100_wrn28_10"]


def _spec(bench, v):
    from lffood.variants import training_spec

    return training_spec(SHIPPED[bench], v)


def _sgd(stage):
    return (stage["optimizer"], stage["lr"], stage["momentum"], stage["nesterov"], stage["weight_decay"],
            stage["batch_size"], stage["epochs"])


SUPCON = {"hflip": True, "color_jitter": 0.4, "color_jitter_p": 0.8, "grayscale_p": 0.2}


@pytest.mark.parametrize("bench", CIFAR)
def test_cifar_methods_follow_their_own_protocols(bench):
    """config.yaml's comments: SSOD with LFF's fine-tuning and its head at 0.1; MODE-F as JimZAI/MODE-OOD runs
    it; LogitNorm as hongxin001/logitnorm_ood runs it."""
    lff, ssod, mode, logitnorm = (_spec(bench, v) for v in ("lff", "ssod", "mode", "logitnorm"))
    assert ssod["stage"] == lff["stage"] and ssod["parent"] == "ce" and ssod["params"]["new_module_lr"] == 0.1
    st = mode["stage"]
    assert mode["parent"] == "ce" and mode["params"]["ce_weight"] == 0.0 and mode["params"]["new_module_lr"] == 0.1
    assert (mode["params"]["dim"], mode["params"]["scale"]) == (80, 10.0)
    assert _sgd(st) == ("sgd", 0.1, 0.9, False, 1e-4, 128, 500) and st["schedule"]["type"] == "cosine"
    assert st["augment"]["random_resized_crop"] == {"size": 32, "scale": [0.2, 1.0], "ratio": [0.75, 1.3333333333]}
    assert {k: st["augment"][k] for k in SUPCON} == SUPCON
    st = logitnorm["stage"]
    assert logitnorm["parent"] is None and logitnorm["stage_name"] == "pretrain"
    assert _sgd(st) == ("sgd", 0.1, 0.9, False, 5e-4, 128, 200)
    assert st["schedule"] == {"type": "step", "milestones": [80, 140], "gamma": 0.1}
    aug = st["augment"]
    assert (aug["random_resized_crop"], aug["crop_padding"], aug["hflip"], aug["color_jitter"], aug["grayscale_p"]) \
        == (None, 4, True, 0.0, 0.0)


def test_imagenet100_methods_follow_the_stated_choices():
    b = "imagenet100_resnet50"
    lff, ssod, mode, logitnorm, ce = (_spec(b, v) for v in ("lff", "ssod", "mode", "logitnorm", "ce"))
    assert ssod["stage"] == lff["stage"] and lff["stage"]["lr"] == 5e-5
    assert ssod["params"]["new_module_lr"] == mode["params"]["new_module_lr"] == SHIPPED[b]["pretrain"]["lr"] == 0.1
    # MODE-F: the network on LFF's ImageNet schedule, MODE's two-view augmentation at 224
    assert {k: v for k, v in mode["stage"].items() if k != "augment"} == \
        {k: v for k, v in lff["stage"].items() if k != "augment"}
    aug = mode["stage"]["augment"]
    assert aug["random_resized_crop"]["size"] == 224 and aug["random_resized_crop"]["scale"] == [0.2, 1.0]
    assert {k: aug[k] for k in SUPCON} == SUPCON
    # LogitNorm: from scratch with the CE recipe, crop and flip only
    assert logitnorm["parent"] is None
    assert {k: v for k, v in logitnorm["stage"].items() if k != "augment"} == \
        {k: v for k, v in ce["stage"].items() if k != "augment"}
    aug = logitnorm["stage"]["augment"]
    assert (aug["random_resized_crop"]["size"], aug["hflip"], aug["color_jitter"], aug["grayscale_p"]) == \
        (224, True, 0.0, 0.0)
    assert ce["stage"]["augment"]["color_jitter"] == 0.4


def test_embedded_methods_keep_their_training_jobs():
    """The embedded benchmark sets no new_module_lr: its SSOD and MODE-F jobs' params are what they were."""
    assert _spec("embedded", "ssod")["params"] == {"gamma": 0.95, "alpha": 0.2, "detach_features": False}
    assert _spec("embedded", "mode")["params"] == {"dim": 16, "scale": 10.0, "ce_weight": 0.0}
    assert "min_new_module_change" not in SHIPPED["embedded"]["guard"]


@pytest.mark.parametrize("bench", CIFAR)
def test_cifar_training_baselines_follow_their_recipes(bench):
    """config.yaml's comments above &methods: VOS, NPOS, CIDER, SSD+ and CSI from scratch with their own recipes,
    labelled as the paper prints them (the paper tables match a printed row to the variant's label), each with
    its own score."""
    b = SHIPPED[bench]
    labels = {v: (b["variants"][v]["label"], b["variants"][v]["scorer"]) for v in b["variants"]}
    assert {v: labels[v] for v in ("vos", "npos", "cider", "ssd_plus", "csi_pre", "csi")} == {
        "vos": ("VOS", "energy"), "npos": ("NPOS", "npos_knn"), "cider": ("CIDER", "cider_knn"),
        "ssd_plus": ("SSD+", "ssd"), "csi_pre": ("CSI (stage 1)", "msp"), "csi": ("CSI", "csi")}
    vos, npos, cider, ssd, pre, csi = (_spec(bench, v) for v in ("vos", "npos", "cider", "ssd_plus", "csi_pre", "csi"))
    assert all(s["parent"] is None for s in (vos, npos, cider, ssd, pre)) and csi["parent"] == "csi_pre"
    assert _sgd(vos["stage"]) == ("sgd", 0.1, 0.9, True, 5e-4, 128, 100) and "new_module_lr" not in vos["params"]
    assert (vos["params"]["start_epoch"], vos["params"]["queue_size"], vos["params"]["sampler"]) == (40, 1000, "gaussian")
    assert _sgd(npos["stage"]) == ("sgd", 0.5, 0.9, True, 1e-4, 256, 500) and npos["params"]["start_epoch"] == 200
    assert _sgd(cider["stage"]) == ("sgd", 0.5, 0.9, True, 1e-4, 512, 500)
    wrn = "wrn" in bench
    assert _sgd(ssd["stage"]) == ("sgd", 0.25 if wrn else 0.5, 0.9, False, 1e-4, 256 if wrn else 512, 200)
    assert ssd["params"]["temperature"] == 0.5
    assert _sgd(pre["stage"]) == ("sgd", 0.1, 0.9, False, 1e-6, 128, 100) and pre["params"]["tau"] == 0.07
    assert _sgd(csi["stage"]) == ("sgd", 0.1, 0.0, False, 1e-6, 32, 100)
    assert csi["stage"]["schedule"] == {"type": "step", "milestones": [60, 75, 90], "gamma": 0.1}
    for s in (npos, cider, ssd):
        assert s["stage"]["augment"]["random_resized_crop"]["scale"] == [0.2, 1.0]
        assert {k: s["stage"]["augment"][k] for k in SUPCON} == SUPCON
    assert vos["stage"]["augment"]["crop_padding"] == 4 and vos["stage"]["augment"]["color_jitter"] == 0.0
    c100 = "cifar100" in bench
    assert (cider["params"]["w"], cider["params"]["proto_m"]) == ((1.0, 0.5) if c100 else (2.0, 0.95))
    assert npos["params"]["proto_m"] == (0.5 if c100 else 0.95)
    assert b["scorers"]["params"]["cider_knn"]["k"] == (300 if c100 else 100)
    assert b["scorers"]["params"]["npos_knn"]["k"] == 300


def test_imagenet100_training_baselines_fine_tune_from_ce():
    b = "imagenet100_resnet50"
    specs = {v: _spec(b, v) for v in ("vos", "npos", "cider", "ssd_plus", "csi_pre", "csi")}
    assert {v: s["parent"] for v, s in specs.items()} == {"vos": "ce", "npos": "ce", "cider": "ce", "ssd_plus": "ce",
                                                          "csi_pre": "ce", "csi": "csi_pre"}
    assert _sgd(specs["vos"]["stage"]) == ("sgd", 0.001, 0.9, True, 5e-4, 128, 30)
    assert specs["vos"]["params"]["new_module_lr"] == 0.1 and specs["vos"]["params"]["start_epoch"] == 0
    assert _sgd(specs["npos"]["stage"]) == ("sgd", 0.001, 0.9, True, 1e-4, 256, 30)
    assert (specs["npos"]["params"]["k"], specs["npos"]["params"]["start_epoch"]) == (400, 1)
    assert _sgd(specs["cider"]["stage"]) == ("sgd", 0.005, 0.9, True, 1e-4, 256, 10)
    assert _sgd(specs["ssd_plus"]["stage"]) == ("sgd", 0.005, 0.9, False, 1e-4, 256, 10)
    assert specs["ssd_plus"]["params"]["temperature"] == 0.1
    assert _sgd(specs["csi_pre"]["stage"]) == ("sgd", 0.01, 0.9, False, 1e-6, 64, 10)
    assert _sgd(specs["csi"]["stage"]) == ("sgd", 0.1, 0.0, False, 1e-6, 32, 20)
    assert all(s["stage"]["augment"]["random_resized_crop"]["size"] == 224 for s in specs.values())


def test_embedded_baselines_is_the_embedded_benchmark_with_the_baselines():
    """The switch run=baselines: embedded_baselines reuses the embedded benchmark (YAML merge key) and adds the
    baselines, fine-tuned from CE; the embedded benchmark itself is unchanged (no baseline variants)."""
    e, eb = SHIPPED["embedded"], SHIPPED["embedded_baselines"]
    for key in ("dataset", "model", "pretrain", "finetune", "scorers", "compute", "seeds", "guard"):
        assert eb[key] == e[key], key
    assert eb["sweeps"] == [] and e["sweeps"]
    assert list(eb["variants"]) == ["ce", "ce_control", "lff", "vos", "npos", "cider", "ssd_plus", "csi_pre", "csi"]
    assert all(eb["variants"][v]["parent"] for v in eb["variants"] if v != "ce")
    assert "vos" not in e["variants"]
    assert load_config(ROOT / "config.yaml", SCHEMA)["suites"]["baselines"] == ["embedded_baselines"]
