"""A variant trained from scratch may start from ImageNet-1k (or any torchvision-layout) weights:
config key ``variants.<name>.init`` (lffood.checkpoint.load_initial_weights)."""

from __future__ import annotations

import copy

import pytest
import torch

from lffood.checkpoint import load_initial_weights
from lffood.config import load_config, validate_config
from lffood.data import sources, upstream
from lffood.errors import LffoodError
from lffood.models import build_model
from lffood.resources import CONFIG_SCHEMA
from lffood.variants import training_spec


@pytest.fixture(scope="module")
def cfg():
    return load_config("config.yaml", CONFIG_SCHEMA)


def test_every_weight_but_the_head_comes_from_the_file(tmp_path):
    weights = tmp_path / "resnet50-0676ba61.pth"
    weights.write_bytes(upstream.torchvision_weights("resnet50", 1000, seed=3))
    ref = torch.load(weights, weights_only=True)
    torch.manual_seed(0)
    model = build_model({"arch": "resnet50"}, 100)
    head_before = model.head.weight.detach().clone()
    load_initial_weights(model, weights)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in ref.items() if not k.startswith("fc."))
    assert torch.equal(model.head.weight, head_before) and model.head.weight.shape == (100, 2048)


def test_a_file_of_another_architecture_or_none_is_refused_naming_the_key(tmp_path):
    model = build_model({"arch": "resnet", "blocks": [1], "widths": [8]}, 4)
    wrong = tmp_path / "w.pth"
    wrong.write_bytes(upstream.torchvision_weights("resnet18", 1000))
    with pytest.raises(LffoodError, match="variants.ce.init"):
        load_initial_weights(model, wrong, key="variants.ce.init")
    with pytest.raises(LffoodError, match="not found.*variants.ce.init"):
        load_initial_weights(model, tmp_path / "missing.pth", key="variants.ce.init")


def _with_init(cfg, bench, value, variant="ce"):
    c = copy.deepcopy(cfg)
    variants = c["benchmarks"][bench]["variants"] = copy.deepcopy(c["benchmarks"][bench]["variants"])  # YAML anchor
    variants[variant] = {**variants[variant], "init": value}
    return c


def test_config_checks_init(cfg, tmp_path):
    validate_config(_with_init(cfg, "imagenet100_resnet50", "imagenet1k"), CONFIG_SCHEMA)
    with pytest.raises(Exception, match=r"variants\.ce\.init.*no ImageNet-1k weights"):
        validate_config(_with_init(cfg, "cifar10_resnet34", "imagenet1k"), CONFIG_SCHEMA)
    with pytest.raises(Exception, match=r"variants\.ce\.init.*not found"):
        validate_config(_with_init(cfg, "cifar10_resnet34", str(tmp_path / "none.pth")), CONFIG_SCHEMA)
    with pytest.raises(Exception, match=r"variants\.lff\.init.*parent"):
        validate_config(_with_init(cfg, "imagenet100_resnet50", "imagenet1k", "lff"), CONFIG_SCHEMA)


def test_init_is_part_of_the_training_job_only_when_set(cfg):
    bench = cfg["benchmarks"]["imagenet100_resnet50"]
    assert "init" not in training_spec(bench, "ce")  # jobs trained before the key existed do not rerun
    c = _with_init(cfg, "imagenet100_resnet50", "imagenet1k")
    assert training_spec(c["benchmarks"]["imagenet100_resnet50"], "ce")["init"] == "imagenet1k"
    assert sources.IMAGENET1K_WEIGHTS["resnet50"] in sources.ARCHIVES
