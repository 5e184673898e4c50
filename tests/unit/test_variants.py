"""Variants as configuration (lffood.variants): what each variant's training reads, sweeps, which
scorers apply, config errors, and adding an objective as one new class plus a config entry."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from lffood.config import load_config, validate_config
from lffood.errors import ConfigError
from lffood.variants import (extraction_params, objective_params, stage_config, sweep_points, sweep_value_names,
                             training_spec, variant, variant_names, variant_scorers)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "src" / "lffood" / "resources" / "config.schema.yaml"
METHODS = {
    "ce": {"objective": "ce"},
    "ce_control": {"objective": "ce", "parent": "ce", "label": "CE control"},
    "lff": {"objective": "lff", "parent": "ce", "label": "LFF"},
    "ssod": {"objective": "ssod", "parent": "ce", "scorer": "ssod"},
    "logitnorm": {"objective": "logitnorm", "scorer": "msp", "stage_overrides": {"epochs": 7}},
}


def _cfg(variants=None, **bench_extra):
    bench = {"dataset": {"source": "embedded", "ood_sets": ["far"]}, "lff": {"delta": 0.1, "mu": 1.0, "lambda": 0.2},
             "variants": copy.deepcopy(variants if variants is not None else METHODS), **bench_extra}
    return {"run": ["b"], "benchmarks": {"b": bench}}


def _bench(**kw):
    return validate_config(_cfg(**kw), SCHEMA)["benchmarks"]["b"]


def _error(**kw) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_config(_cfg(**kw), SCHEMA)
    return str(exc.value)


def test_training_spec_is_what_each_variant_reads():
    b = _bench()
    ce, control, lff = (training_spec(b, v) for v in ("ce", "ce_control", "lff"))
    assert ce["objective"] == "ce" and ce["parent"] is None and ce["stage_name"] == "pretrain"
    assert ce["stage"] == b["pretrain"]
    assert control["objective"] == "ce" and control["parent"] == "ce" and control["stage"] == b["finetune"]
    assert control["params"] == {}  # the control is configuration: CE with the fine-tuning schedule
    assert lff["params"] == {"delta": 0.1, "mu": 1.0, "lambda": 0.2}
    assert training_spec(b, "logitnorm")["stage"]["epochs"] == 7  # stage_overrides
    assert training_spec(b, "logitnorm")["stage"]["lr"] == b["pretrain"]["lr"]
    assert set(ce) == {"objective", "params", "parent", "stage_name", "stage", "checkpoint", "model", "guard", "amp",
                       "deterministic"}
    # changing lambda changes the LFF job's params only; a scorer change changes no training params
    other = _bench(lff={"delta": 0.1, "mu": 1.0, "lambda": 0.5})
    assert training_spec(other, "ce_control") == control and training_spec(other, "lff") != lff
    other = _bench(scorers={"params": {"react": {"percentile": 80}}})
    assert all(training_spec(other, v) == training_spec(b, v) for v in METHODS)


def test_lff_delta_and_the_figure_delta_retrain_no_other_model():
    """lff.delta is LFF's parameter only: the CE model, the CE control and SSOD train the same whatever it
    is. The figures' threshold (figures.monitor.delta, default lff.delta) is no training job's params."""
    from lffood.variants import monitor_delta

    b = _bench()
    other = _bench(lff={"delta": 0.01, "mu": 1.0, "lambda": 0.2})
    for v in ("ce", "ce_control", "ssod", "logitnorm"):
        assert training_spec(other, v) == training_spec(b, v), v
    assert training_spec(other, "lff") != training_spec(b, "lff")
    assert monitor_delta(b) == 0.1 and monitor_delta(other) == 0.01  # null: the benchmark's lff.delta
    own = _bench(figures={"monitor": {"delta": 0.25}})
    assert monitor_delta(own) == 0.25
    assert all(training_spec(own, v) == training_spec(b, v) for v in METHODS)


def test_variant_params_override_the_objective_section():
    b = _bench(variants={**METHODS, "lff_strong": {"objective": "lff", "parent": "ce", "params": {"lambda": 1.0}}})
    assert objective_params(b, "lff_strong") == {"delta": 0.1, "mu": 1.0, "lambda": 1.0}
    assert b["lff"]["lambda"] == 0.2 and variant(b, "lff_strong")["label"] == "lff_strong"


def test_sweeps_make_one_variant_per_new_value():
    b = _bench(sweeps=[{"variant": "lff", "param": "lambda", "values": [0.1, 0.2, 0.5]},
                       {"variant": "ssod", "param": "gamma", "values": [0.9, 0.99]}])
    points = sweep_points(b)
    assert list(points) == ["lff_lambda0.1", "lff_lambda0.5", "ssod_gamma0.9", "ssod_gamma0.99"]
    assert sweep_value_names(b, b["sweeps"][0]) == [(0.1, "lff_lambda0.1"), (0.2, "lff"), (0.5, "lff_lambda0.5")]
    assert variant_names(b) == list(METHODS) and variant_names(b, with_sweeps=True)[-4:] == list(points)
    spec = training_spec(b, "lff_lambda0.5")
    assert spec["params"] == {"delta": 0.1, "mu": 1.0, "lambda": 0.5} and spec["parent"] == "ce"
    assert spec["stage"] == training_spec(b, "lff")["stage"]
    assert variant_scorers(b, "lff_lambda0.5") == ["react"]  # the base variant's own scorer only
    assert variant_scorers(b, "ssod_gamma0.9") == ["ssod"]
    assert "lambda = 0.5" in variant(b, "lff_lambda0.5")["label"]


def test_scorers_apply_by_what_the_objective_provides():
    b = _bench()
    assert "ssod" in variant_scorers(b, "ssod") and "ssod_global" in variant_scorers(b, "ssod")
    assert not {"ssod", "ssod_global", "ssod_local"} & set(variant_scorers(b, "lff"))
    assert "csd" in variant_scorers(b, "lff")
    no_ms = _bench(extraction={"multiscale": False},
                   scorers={"names": ["msp", "energy", "react", "ssod"]})
    assert variant_scorers(no_ms, "lff") == ["msp", "energy", "react"]


def test_scorer_list_defaults_to_every_registered_scorer_in_table_order():
    """scorers.names null (the schema's default): every registered scorer, in the registry's order, each
    model running those that apply to it; a list given keeps its own order."""
    from lffood.scorers import registered_scorers, scorer_names
    from lffood.variants import benchmark_scorers

    b = _bench()
    assert b["scorers"]["names"] is None
    assert benchmark_scorers(b) == scorer_names() and set(scorer_names()) == set(registered_scorers())
    assert scorer_names()[:6] == ["msp", "odin", "mahalanobis", "energy", "vim", "knn"]  # Table I, KNN after ViM
    # a method's own score (Scorer.objectives: CIDER's, NPOS's, SSD+'s, CSI's) runs on that method's models only
    own = {s for s, cls in registered_scorers().items() if cls.objectives is not None}
    assert {"cider_knn", "npos_knn", "ssd", "csi"} <= own
    assert variant_scorers(b, "ssod") == [s for s in scorer_names() if s not in own]
    assert variant_scorers(b, "lff") == [s for s in scorer_names() if not s.startswith("ssod") and s not in own]
    mine = _bench(scorers={"names": ["react", "msp", "ssod"]})
    assert benchmark_scorers(mine) == ["react", "msp", "ssod"] and variant_scorers(mine, "lff") == ["react", "msp"]


def test_extraction_params_carry_the_scorers_requests():
    """A model scored with FeatureNorm is extracted with its block norms (jigsaw grid and seed are part
    of the extraction job's identity); a sweep point scored with its base's scorer only is not."""
    b = _bench(sweeps=[{"variant": "lff", "param": "lambda", "values": [0.5]}],
               variants={**METHODS, "lff": {**METHODS["lff"], "scorer": "react"}},
               scorers={"names": ["msp", "react", "featurenorm", "ssod"], "params": {"featurenorm": {"jigsaw_grid": 4}}},
               extraction={"batch_size": 64, "multiscale": False})
    p = extraction_params(b, "lff")
    assert p == {"amp": b["amp"], "multiscale": False, "center_crop": None,
                 "block_norms": {"jigsaw_grid": 4, "jigsaw_seed": 0}}
    assert "block_norms" not in extraction_params(b, "lff_lambda0.5")  # scored with react only
    assert "batch_size" not in p  # the speed, not the identity


BASELINES = ["vos", "npos", "cider", "ssd_plus", "csi_pre", "csi"]  # the paper's training baselines (issue 21)


def test_shipped_config_every_benchmark_has_the_six_methods():
    """Every benchmark of `all` and of run=paper trains the six methods; the paper benchmarks also the training
    baselines; embedded_baselines (run=baselines) the baselines beside CE, the control and LFF."""
    cfg = load_config(ROOT / "config.yaml", SCHEMA)
    for name, b in cfg["benchmarks"].items():
        if name == "embedded_baselines":
            assert list(b["variants"]) == ["ce", "ce_control", "lff", *BASELINES]
            continue
        six = ["ce", "ce_control", "lff", "ssod", "mode", "logitnorm"]
        assert list(b["variants"]) == (six if name == "embedded" else [*six, *BASELINES]), name
        assert stage_config(b, "ssod") == stage_config(b, "lff") == stage_config(b, "ce_control")  # one protocol
        scratch = name != "embedded"  # the embedded benchmark fine-tunes LogitNorm (minutes budget, README)
        assert (variant(b, "logitnorm")["parent"] is None) == scratch, name
        assert stage_config(b, "mode") != stage_config(b, "lff"), name  # embedded: batch 64; paper: MODE's own
    assert stage_config(cfg["benchmarks"]["embedded"], "mode")["batch_size"] == 64
    assert training_spec(cfg["benchmarks"]["cifar100_resnet34"], "logitnorm")["stage"]["epochs"] == 200
    assert training_spec(cfg["benchmarks"]["imagenet100_resnet50"], "logitnorm")["stage"]["epochs"] == 90
    assert training_spec(cfg["benchmarks"]["cifar100_resnet34"], "logitnorm")["params"] == {"tau": 0.0085}
    assert training_spec(cfg["benchmarks"]["cifar10_resnet34"], "logitnorm")["params"] == {"tau": 0.04}
    # the paper's Fig. 6 ranges on CIFAR-100 and ImageNet-100
    for bench in ("cifar100_resnet34", "imagenet100_resnet50"):
        params = {(s["variant"], s["param"]) for s in cfg["benchmarks"][bench]["sweeps"]}
        assert params == {("lff", "delta"), ("lff", "mu"), ("lff", "lambda"), ("ssod", "gamma")}


@pytest.mark.parametrize("variants,needle", [
    ({**METHODS, "x": {"objective": "nope"}}, "benchmarks.b.variants.x.objective': unknown objective 'nope'"),
    ({**METHODS, "x": {"objective": "ce", "parent": "zz"}}, "variants.x.parent': 'zz' is not a variant"),
    ({"a": {"objective": "ce", "parent": "b"}, "b": {"objective": "ce", "parent": "a"}}, "cycle"),
    ({**METHODS, "x": {"objective": "lff", "parent": "ce", "params": {"delta": 1.0}}},
     "variants.x.params.delta': 1.0 is greater than or equal to the maximum"),
    ({**METHODS, "x": {"objective": "lff", "parent": "ce", "params": {"detla": 0.1}}},
     "variants.x.params': unknown parameter(s) ['detla']"),
    ({**METHODS, "x": {"objective": "ssod", "parent": "ce", "params": {"gamma": 0.5}}},
     "variants.x.params.gamma': 0.5 is less than or equal to the minimum of 0.5"),
    ({**METHODS, "x": {"objective": "ce", "parent": "ce", "stage_overrides": {"lr": -1}}},
     "variants.x.stage_overrides.lr'"),
    ({**METHODS, "x": {"objective": "ce", "checkpoint": "/no/such/file.pt"}},
     "variants.x.checkpoint': file '/no/such/file.pt' not found"),
    ({**METHODS, "x": {"objective": "ce", "parent": "ce", "checkpoint": "x.pt"}}, "only a variant without a parent"),
    ({**METHODS, "x": {"objective": "lff", "parent": "ce", "scorer": "ssod"}},
     "variants.x.scorer': 'ssod' needs ['ood_head_global']"),
    ({**METHODS, "x": {"objective": "ce", "scorer": "reactt"}}, "'reactt' is not in benchmarks.b.scorers.names"),
])
def test_variant_errors_name_the_key(variants, needle):
    assert needle in _error(variants=variants)


@pytest.mark.parametrize("sweep,needle", [
    ({"variant": "nope", "param": "delta", "values": [0.1]}, "sweeps[0].variant': 'nope' is not a variant"),
    ({"variant": "lff", "param": "margin", "values": [0.1]}, "has no parameter 'margin'"),
    ({"variant": "lff", "param": "delta", "values": [0.1, 1.5]}, "sweeps[0].values': 1.5 is greater than"),
    ({"variant": "logitnorm", "param": "tau", "values": [0.1]}, "trains from scratch"),
])
def test_sweep_errors_name_the_key(sweep, needle):
    assert needle in _error(sweeps=[sweep])


def test_tables_need_their_roles_in_benchmarks_that_all_builds():
    cfg = _cfg(variants={"ce": {"objective": "ce"}})
    cfg["benchmarks"]["cifar10_resnet34"] = cfg["benchmarks"]["b"]
    validate_config(cfg, SCHEMA)  # not in run: the paper_table rule checks it when asked for
    cfg["run"] = ["b", "cifar10_resnet34"]
    with pytest.raises(ConfigError, match=r"table1 needs the variants \{'control': 'ce_control', 'ours': 'lff'\}"):
        validate_config(cfg, SCHEMA)


def test_a_toy_objective_is_one_class_plus_a_config_entry(tmp_path):
    """The README's "Adding a method": register a class, name it in a variant; the config section, its
    validation, the training loop, the checkpoint and the extraction take it from there."""
    from lffood import h5schema, pipeline
    from lffood.data.arrays import Split, save_split
    from lffood.objectives import Objective, register, unregister
    from lffood.objectives.base import F

    @register("toy_margin", "Toy margin")
    class ToyMargin(Objective):
        """CE plus a hinge on the pooled feature norm (a toy)."""

        params_schema = {"margin": {"description": "norm margin", "type": "number", "minimum": 0, "default": 2.0}}
        stats = {"hinge": "mean hinge"}

        def loss(self, out, targets):
            hinge = (out.pooled.float().norm(dim=1) - self.params["margin"]).clamp(min=0)
            return F.cross_entropy(out.logits, targets) + hinge.mean(), {"hinge": hinge.detach().sum()}

    try:
        small = {"arch": "resnet", "blocks": [1], "widths": [4]}
        cfg = _cfg(variants={"ce": {"objective": "ce"}, "toy": {"objective": "toy_margin", "parent": "ce"}},
                   toy_margin={"margin": 1.5}, model=small, guard={"enabled": False},
                   pretrain={"epochs": 1, "batch_size": 8, "schedule": {"type": "constant"}},
                   finetune={"epochs": 1, "batch_size": 8, "schedule": {"type": "constant"}})
        b = validate_config(cfg, SCHEMA)["benchmarks"]["b"]
        assert training_spec(b, "toy")["params"] == {"margin": 1.5}
        with pytest.raises(ConfigError, match="benchmarks.b.toy_margin.margin"):
            validate_config(_cfg(variants={"ce": {"objective": "ce"}}, toy_margin={"margin": -1}), SCHEMA)
        rng = np.random.default_rng(0)
        meta = {"role": "id_train", "classes": ["a", "b"], "mean": [0.5] * 3, "std": [0.25] * 3}
        save_split(tmp_path / "train.npz", Split(rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8),
                                                 np.arange(16) % 2, meta))
        for v, parent in (("ce", None), ("toy", str(tmp_path / "ce.pt"))):
            hist = pipeline.run_training(training_spec(b, v), variant=v, seed=0, train_path=str(tmp_path / "train.npz"),
                                         ckpt_out=str(tmp_path / f"{v}.pt"), history_out=str(tmp_path / f"{v}.csv"),
                                         device_name="cpu", parent_ckpt=parent)
        assert "hinge" in hist[0] and np.isfinite(hist[0]["hinge"])
        save_split(tmp_path / "test.npz", Split(rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), np.arange(6) % 2,
                                                {**meta, "role": "id_test"}))
        pipeline.run_extraction(b["extraction"], amp=False, checkpoint=str(tmp_path / "toy.pt"),
                                split_paths={"train": str(tmp_path / "train.npz"), "test": str(tmp_path / "test.npz")},
                                out=str(tmp_path / "toy.h5"), attrs={"variant": "toy"}, device_name="cpu")
        assert h5schema.read_split(tmp_path / "toy.h5", "test", ["multiscale"])["multiscale"].shape == (6, 6, 4)
        ck = torch.load(tmp_path / "toy.pt", weights_only=True)
        assert ck["meta"]["objective"] == {"name": "toy_margin", "params": {"margin": 1.5}}
    finally:
        unregister("toy_margin")


def test_fields_on_request_come_from_the_scorers():
    from lffood.variants import on_request_fields

    assert on_request_fields() == {"block_norms"}  # FeatureNorm's request; no other scorer asks
