"""Config keys for the paper benchmarks: suites as `run`, paper-table names, a CE checkpoint to
start from, the backbones, and ImageNet crops."""

from pathlib import Path

import pytest

from lffood.config import validate_config
from lffood.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


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
                                                         "params": {}, "checkpoint": None, "scorer": "react",
                                                         "scorers": None}}
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
