"""The registry of feature-file fields (lffood.fields): it alone says what extraction computes and what
the HDF5 schema accepts, and a scorer that needs a new field is one module plus config (the toy
below: a field, the scorer that requests and reads it, and its name in the config)."""

import copy
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from lffood import fields, h5schema, pipeline
from lffood.checkpoint import save_checkpoint
from lffood.config import validate_config
from lffood.data.arrays import Split, load_split, save_split
from lffood.data.loader import TensorImages
from lffood.errors import SchemaError
from lffood.extraction import extract_split
from lffood.models import build_model
from lffood.scorers import base as scorers_base
from lffood.variants import extraction_fields, extraction_params, variant_scorers

from conftest import SCHEMA

#: the whole of a new scorer that needs a new feature-file field
TOY = '''
"""Toy scorer: the largest activation of the last feature map, times ``scale``, stored at extraction."""
import numpy as np

from lffood.checks import Param
from lffood.fields import Field, register_field
from lffood.scorers import Scorer, register

register_field(Field("toy_peak", np.float32, ("N",), "largest activation of the last map, times scale",
                     lambda batch, split: batch.fmap.float().flatten(1).amax(1) * split.settings["scale"],
                     optional=True))


@register("toy_peak", "Toy peak")
class ToyPeak(Scorer):
    defaults = {"scale": 2.0}
    params_spec = {"scale": Param("float", 0, min_open=True)}
    requires = ("toy_peak",)

    @classmethod
    def extraction_request(cls, params):
        return {"toy_peak": {"scale": params["scale"]}}

    def score(self, data):
        return np.asarray(data.extras["toy_peak"], dtype=np.float64)
'''
MODEL = {"arch": "resnet", "blocks": [1], "widths": [4]}
META = {"classes": ["a", "b"], "mean": [0.5] * 3, "std": [0.25] * 3}


@pytest.fixture
def registries(monkeypatch):
    """The field and scorer registries as they are, restored after the test."""
    monkeypatch.setattr(fields, "_REGISTRY", dict(fields._REGISTRY))
    monkeypatch.setattr(scorers_base, "_REGISTRY", dict(scorers_base._REGISTRY))


@pytest.fixture
def toy(tmp_path, registries):
    """The toy module, imported from a file of its own (registered until the test ends)."""
    path = tmp_path / "toy_peak.py"
    path.write_text(TOY)
    spec = importlib.util.spec_from_file_location("toy_peak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench(**scorers):
    bench = {"dataset": {"source": "embedded", "ood_sets": ["far"]}, "scorers": scorers,
             "variants": {"ce": {"objective": "ce", "scorer": "msp"}}}
    cfg = {"run": ["b"], "benchmarks": {"b": bench}}
    return validate_config(cfg, SCHEMA)["benchmarks"]["b"]


def _splits(tmp_path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    paths = {}
    for name, n, role in (("train", 12, "id_train"), ("test", 7, "id_test"), ("far", 5, "ood")):
        labels = np.arange(n) % 2 if role != "ood" else np.full(n, -1)
        paths[name] = str(tmp_path / f"{name}.npz")
        images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        save_split(paths[name], Split(images, labels, {**META, "role": role}))
    return paths


# ----------------------------------------------------------------------------- one module plus config
def test_a_scorer_needing_a_new_field_is_one_module_plus_config(toy, tmp_path):
    """Config alone puts the toy scorer on a model: its request joins the extraction job's params,
    extraction computes the field, the feature file stores it (schema-checked) and the scorer scores
    from it; a feature file extracted with other settings is refused."""
    plain = _bench(names=["msp", "energy"])
    b = _bench(names=["msp", "toy_peak"], params={"toy_peak": {"scale": 3.0}})
    assert variant_scorers(b, "ce") == ["msp", "toy_peak"]
    params = extraction_params(b, "ce")
    assert params == {**extraction_params(plain, "ce"), "toy_peak": {"scale": 3.0}}
    assert "toy_peak" in extraction_fields(b) and "toy_peak" in h5schema.OPTIONAL_FIELDS

    torch.manual_seed(0)
    model = build_model(MODEL, 2)
    ckpt = tmp_path / "ce.pt"
    save_checkpoint(ckpt, model, {"model": MODEL, "num_classes": 2, "classes": META["classes"]})
    paths = _splits(tmp_path)
    features = str(tmp_path / "ce.h5")
    p = dict(params)
    pipeline.run_extraction(p, amp=p.pop("amp"), checkpoint=str(ckpt), split_paths=paths, out=features, attrs={},
                            batch_size=4, device_name="cpu")
    for name, path in paths.items():
        stored = h5schema.read_split(features, name, ["toy_peak"])["toy_peak"]
        x, _ = TensorImages(load_split(path), META["mean"], META["std"]).batch(torch.arange(len(stored)))
        with torch.no_grad():
            _, _, fmap = model.eval()(x, return_features=True)
        assert stored.dtype == np.float32 and stored.shape == (len(x),)
        np.testing.assert_allclose(stored, 3.0 * fmap.flatten(1).amax(1).numpy(), rtol=1e-5)
    scores = pipeline.run_scoring(features, "toy_peak", {"scale": 3.0}, str(tmp_path / "toy.h5"))
    assert set(scores) == {"test", "far"}
    np.testing.assert_array_equal(scores["far"], h5schema.read_split(features, "far", ["toy_peak"])["toy_peak"])
    with pytest.raises(SchemaError, match="toy_peak"):  # extracted with scale 3, asked for 2
        pipeline.run_scoring(features, "toy_peak", {"scale": 2.0}, str(tmp_path / "stale.h5"))


def test_without_the_scorer_nothing_changes(toy):
    """A benchmark that does not run the toy scorer extracts with the same params as before it existed."""
    b = _bench(names=["msp", "featurenorm"])
    assert "toy_peak" not in extraction_params(b, "ce") and "toy_peak" not in variant_scorers(b, "ce")


# ----------------------------------------------------------------------------- the schema follows the registry
def _split(n, role, **extra):
    rng = np.random.default_rng(0)
    d = {"logits": rng.normal(size=(n, 3)).astype(np.float32), "features": rng.normal(size=(n, 4)).astype(np.float32),
         "labels": np.zeros(n, np.int64), "preds": np.zeros(n, np.int64),
         "local_norms": rng.uniform(size=(n, 4)).astype(np.float32)}
    if role != "ood":
        d["local_gt_prob"] = rng.uniform(size=(n, 4)).astype(np.float32)
    return {**d, **extra}


def _write(path, split, role="id_test"):
    h5schema.write_features(path, head_weight=np.eye(3, 4), head_bias=np.zeros(3), splits={"s": split},
                            roles={"s": role}, attrs={})


def test_schema_is_the_registry():
    reg = fields.registered_fields()
    assert h5schema.FIELDS == {f.name: (f.dtype, f.ndim, f.required_for) for f in reg.values()}
    assert set(h5schema.OPTIONAL_FIELDS) == {n for n, f in reg.items() if f.optional} >= {
        "multiscale", "block_norms", "jigsaw_block_norms", "ood_head_global", "ood_head_local"}
    assert h5schema.UNCOMPRESSED == ("multiscale",)
    for name in reg:  # the docstring lists every field, from the registry
        assert f"\n    {name} " in h5schema.__doc__


def test_schema_refuses_what_the_registry_does_not_know(tmp_path, registries):
    with pytest.raises(SchemaError, match="'bogus'"):
        _write(tmp_path / "a.h5", _split(3, "id_test", bogus=np.zeros(3, np.float32)))
    with pytest.raises(SchemaError, match="'logits': expected 2-D"):
        _write(tmp_path / "b.h5", {**_split(3, "id_test"), "logits": np.zeros(3, np.float32)})
    with pytest.raises(SchemaError, match="'labels': int64 values, got float64"):
        _write(tmp_path / "c.h5", {**_split(3, "id_test"), "labels": np.zeros(3)})
    with pytest.raises(SchemaError, match="lacks required field 'local_gt_prob'"):
        _write(tmp_path / "d.h5", _split(3, "ood"), role="id_train")
    fields.register_field(fields.Field("extra", np.float16, ("N", "D"), "a new optional field",
                                       lambda b, s: None, optional=True))
    _write(tmp_path / "e.h5", _split(3, "ood", extra=np.ones((3, 2))), role="ood")  # registered: stored, cast
    back = h5schema.read_split(tmp_path / "e.h5", "s", ["extra"])["extra"]
    assert back.dtype == np.float16 and back.shape == (3, 2)
    with pytest.raises(SchemaError, match="'extra': expected 2-D \\(N, D\\)"):
        _write(tmp_path / "f.h5", _split(3, "ood", extra=np.ones(3)), role="ood")


# ----------------------------------------------------------------------------- which split has which field
def test_fields_by_role_and_request():
    names = lambda role, req: [f.name for f in fields.fields_on(role, req)]  # noqa: E731
    core = ["logits", "features", "labels", "preds", "local_norms"]
    assert names("ood", {}) == core
    assert names("id_test", {}) == core + ["local_gt_prob"]
    fn = {"block_norms": {"jigsaw_grid": 3, "jigsaw_seed": 0}}
    assert set(names("id_train", fn)) - set(names("id_train", {})) == {"block_norms", "jigsaw_block_norms"}
    assert set(names("id_test", fn)) - set(names("id_test", {})) == {"block_norms"}
    with pytest.raises(ValueError, match="jigsaw_block_norms"):  # answers block_norms' request, has none
        fields.fields_on("ood", {"jigsaw_block_norms": True})
    assert fields.requests_in({"multiscale": False, "center_crop": 6, "batch_size": 8, **fn},
                              provides=("ood_head_global",)) == {**fn, "ood_head_global": True}
    assert fields.every_split_fields({**fn, "multiscale": True}) == {"block_norms", "multiscale"}


def test_extraction_computes_requested_fields_only():
    torch.manual_seed(0)
    model = build_model(MODEL, 2)
    split = Split(np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8), np.arange(5) % 2, META)
    data = TensorImages(split, META["mean"], META["std"])
    out = extract_split(model, data, batch_size=2, device=torch.device("cpu"), role="ood",
                        requests={"multiscale": True})
    assert list(out) == ["logits", "features", "labels", "preds", "local_norms", "multiscale"]
    assert all(out[k].dtype == fields.field(k).dtype for k in out)
    with pytest.raises(ValueError, match="SSOD models"):  # an SSOD field of a model without the OOD head
        extract_split(model, data, batch_size=2, device=torch.device("cpu"), role="ood",
                      requests={"ood_head_global": True})


def test_plug_ins_name_registered_fields_only(registries):
    from lffood.objectives import Objective, register as register_objective, unregister

    with pytest.raises(ValueError, match="no_such_field"):
        @scorers_base.register("needs_nothing_known")
        class Bad(scorers_base.Scorer):
            requires = ("no_such_field",)
    try:
        with pytest.raises(ValueError, match="no_such_field"):
            @register_objective("provides_nothing_known")
            class BadObjective(Objective):
                provides = ("no_such_field",)
    finally:
        unregister("provides_nothing_known")
    with pytest.raises(ValueError, match="registered twice"):
        fields.register_field(copy.copy(fields.field("logits")))


def test_registry_imports_without_torch():
    code = "import sys, lffood.fields, lffood.h5schema, lffood.variants; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
