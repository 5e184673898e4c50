"""The configuration schema: the shipped config, paper defaults, and clear errors."""

import copy
from pathlib import Path

import pytest
import yaml

from lffood.config import benchmark, load_config, load_yaml, validate_config
from lffood.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
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
    assert cfg["seeds"] == [0, 1, 2]
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
    assert b["scorers"]["names"] == ["msp", "odin", "mahalanobis", "energy", "vim", "knn", "dice", "react",
                                     "dice_react", "featurenorm", "line", "csd", "ssod", "ssod_global", "ssod_local"]
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
    ("knn", {"k": 0}, "'k'"),
    ("vim", {"dim": 2.5}, "'dim'"),
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


def test_type_errors_and_missing_required():
    assert "benchmarks.b.finetune.epochs" in _error(_minimal(finetune={"epochs": "ten"}))
    assert "seeds" in _error({**_minimal(), "seeds": [-1]})
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
